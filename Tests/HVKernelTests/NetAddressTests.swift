import XCTest
@testable import HVBackendKVM
@testable import HVDevices
@testable import HVHostIO
@testable import HVKernel
@testable import HVMemory
@testable import HVSched
@testable import HVSupport

/// Generated NIC addresses: stable per VM and device, in VMware's OUI, never static-range.
final class NetAddressTests: XCTestCase {
    func testGeneratedAddressesAreStableDistinctAndOutsideTheStaticRange() {
        let a = VirtualMachine.generatedMAC(seed: "/vms/web01.vmx/ethernet0")
        XCTAssertEqual(a, VirtualMachine.generatedMAC(seed: "/vms/web01.vmx/ethernet0"))
        var seen = Set<MACAddress>()
        for vm in 0..<200 {
            for nic in 0..<4 {
                let mac = VirtualMachine.generatedMAC(seed: "/vms/vm\(vm).vmx/ethernet\(nic)")
                XCTAssertEqual(Array(mac.array.prefix(3)), [0x00, 0x50, 0x56])
                XCTAssertFalse(mac.isVMwareStatic, "\(mac)")
                XCTAssertFalse(mac.isMulticast)
                seen.insert(mac)
            }
        }
        XCTAssertGreaterThan(seen.count, 790, "800 NICs should almost never collide in 22 bits")
    }
}
