import Glibc
import Testing
@testable import HVDevices
@testable import HVKernel
@testable import HVMemory

/// The VMkernel balloon against the protocol, without a guest: host memory goes at a
/// lock, a deflated page reads zero, and guest-controlled PPNs get error statuses.
@Suite struct BalloonTests {
    private func call(_ b: Balloon, _ cmd: UInt16, _ rbx: UInt64 = 0, _ rsi: UInt64 = 0) -> (UInt32, UInt64, UInt64) {
        var r = BackdoorRegisters(rax: UInt64(VMwareBackdoor.balloonMagic), rbx: rbx, rcx: UInt64(cmd),
                                  rdx: UInt64(VMwareBackdoor.balloonPort), rsi: rsi)
        b.call(&r)
        return (UInt32(r.rax), r.rbx, r.rcx)
    }

    @Test func lockReleasesHostMemoryAndUnlockReturnsZero() throws {
        let memory = try GuestMemory(size: 1 << 20, name: "balloon-test")
        memset(memory.base, 0xA5, 1 << 20)
        let resident = memory.residentBytes
        let b = Balloon(memory: memory)
        #expect(call(b, 1, 256).0 == 7, "GET_TARGET before START asks for a reset")
        let start = call(b, 0, 0xFF)
        #expect(start.0 == 0x0300_0000)
        #expect(start.2 == 0x6, "basic and batched only")
        b.setTarget(pages: 4)
        #expect(call(b, 1, 256) == (0, 4, 1))
        #expect(call(b, 2, 0x10).0 == 0)
        #expect(memory.residentBytes == resident - 4096)
        #expect(call(b, 2, 0x10).0 == 3)
        #expect(call(b, 3, 0x11).0 == 4)
        #expect(call(b, 2, 0x100).0 == 2, "PPN 0x100 is past 1 MiB of RAM")
        #expect(call(b, 3, 0x10).0 == 0)
        #expect(try memory.load(UInt64.self, at: 0x10000) == 0)
        #expect(try memory.load(UInt64.self, at: 0x11000) == 0xA5A5_A5A5_A5A5_A5A5)
        #expect(call(b, 42).0 == 1)
        #expect(b.stats.refused == 5)
    }

    @Test func batchesReportPerPageAndSurviveSuspend() throws {
        let memory = try GuestMemory(size: 1 << 20, name: "balloon-test")
        let b = Balloon(memory: memory)
        _ = call(b, 0, 0x6)
        b.setTarget(pages: 2)
        let entries: [UInt64] = [0x20 << 12, 0x21 << 12 | 0x1F, 0x20 << 12, 0x999 << 12, 0x22 << 12, 0x30 << 12]
        for (i, e) in entries.enumerated() { try memory.store(e, at: 0x30000 + UInt64(8 * i)) }
        #expect(call(b, 6, 0x30, UInt64(entries.count)).0 == 0)
        let statuses = try (0..<entries.count).map { try memory.load(UInt64.self, at: 0x30000 + UInt64(8 * $0)) & 0x1F }
        // locked, locked (stale bits cleared), twice, outside RAM, past the target, the batch page itself
        #expect(statuses == [0, 0, 3, 2, 6, 2])
        #expect(call(b, 6, 0x30, 513).0 == 2)
        #expect(call(b, 6, 0x20, 1).0 == 2, "a locked page cannot carry a batch")
        let restored = Balloon(memory: memory)
        try restored.loadState(b.saveState(), context: "test")
        #expect(restored.stats.size == 2)
        #expect(call(restored, 3, 0x21).0 == 0)
        #expect(call(restored, 3, 0x21).0 == 4)
    }
}

@Suite struct BalloonPortTests {
    /// Port 0x5670 takes the balloon's magic only; the backdoor's 0x5658 commands stay apart.
    @Test func balloonPortRoutesByPortAndMagic() {
        let backdoor = VMwareBackdoor()
        var calls = 0
        var r = BackdoorRegisters(rax: UInt64(VMwareBackdoor.balloonMagic), rcx: 1, rdx: 0x5670)
        #expect(!backdoor.call(vcpu: 0, registers: &r), "no balloon attached: not a call")
        backdoor.setBalloon { regs in calls += 1; regs.rax = 0 }
        #expect(backdoor.call(vcpu: 0, registers: &r))
        #expect(calls == 1 && r.rax == 0)
        var wrongMagic = BackdoorRegisters(rax: UInt64(VMwareBackdoor.magic), rcx: 1, rdx: 0x5670)
        #expect(!backdoor.call(vcpu: 0, registers: &wrongMagic))
        var elmoOnBackdoor = BackdoorRegisters(rax: UInt64(VMwareBackdoor.balloonMagic), rcx: 10, rdx: 0x5658)
        #expect(!backdoor.call(vcpu: 0, registers: &elmoOnBackdoor), "the balloon's magic is not the backdoor's")
        #expect(calls == 1)
    }
}
