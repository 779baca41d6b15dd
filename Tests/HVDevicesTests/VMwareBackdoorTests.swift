@testable import HVDevices
import XCTest

final class VMwareBackdoorTests: XCTestCase {
    func testGetVersionAnswersTheMagicAndTheProduct() {
        let backdoor = VMwareBackdoor()
        var r = BackdoorRegisters(rax: 0x564D_5868, rbx: 0xFFFF_FFFF, rcx: 10, rdx: 0x5658)
        XCTAssertTrue(backdoor.call(vcpu: 0, registers: &r))
        XCTAssertEqual(r, BackdoorRegisters(rax: 6, rbx: 0x564D_5868, rcx: 2, rdx: 0x5658))
    }

    func testWithoutTheMagicItIsNoCall() {
        let backdoor = VMwareBackdoor()
        var r = BackdoorRegisters(rax: 0x1234, rcx: 10)
        XCTAssertFalse(backdoor.call(vcpu: 0, registers: &r))
        XCTAssertEqual(r, BackdoorRegisters(rax: 0x1234, rcx: 10))
    }

    func testAClaimedCommandRunsWithTheCallersRegistersAndVCPU() throws {
        let backdoor = VMwareBackdoor()
        var seen: [Int] = []
        try backdoor.register(command: 0x1234, name: "probe") { vcpu, r in
            seen.append(vcpu)
            r.rax = r.rbx &+ r.rsi
            r.rdi = 7
        }
        // Only CX selects the command: ECX's high half is an argument in some protocols.
        var r = BackdoorRegisters(rax: 0x564D_5868, rbx: 40, rcx: 0xABCD_1234, rsi: 2)
        XCTAssertTrue(backdoor.call(vcpu: 3, registers: &r))
        XCTAssertEqual(r.rax, 42)
        XCTAssertEqual(r.rdi, 7)
        XCTAssertEqual(seen, [3])
        XCTAssertThrowsError(try backdoor.register(command: 0x1234, name: "other") { _, _ in }) { error in
            XCTAssertEqual("\(error)", "VMware backdoor command 4660 is already claimed by probe")
        }
        backdoor.unregister(command: 0x1234)
        var after = BackdoorRegisters(rax: 0x564D_5868, rbx: 40, rcx: 0x1234)
        XCTAssertTrue(backdoor.call(vcpu: 0, registers: &after))
        XCTAssertEqual(after, BackdoorRegisters(rax: 0x564D_5868, rbx: 40, rcx: 0x1234), "an unclaimed command changes nothing")
    }

    func testPlainAccessesReadAllOnes() {
        let backdoor = VMwareBackdoor()
        var word: UInt32 = 0
        withUnsafeMutableBytes(of: &word) { backdoor.read(offset: 0, data: $0) }
        XCTAssertEqual(word, 0xFFFF_FFFF)
    }
}
