import Logging
import Testing
@testable import HVKernel

/// Memory targets by shares per page with the idle memory tax, and admission control.
@Suite struct MemoryPolicyTests {
    private func client(_ name: String, shares: UInt32, min: Int = 0, max: Int = 1000, wants: Int = 1000,
                        active: Double = 1) -> MemoryPolicy.Client {
        MemoryPolicy.Client(name: name, shares: shares, minPages: min, maxPages: max, wantedPages: wants, activeFraction: active)
    }

    @Test func withoutPressureEveryVMGetsWhatItWants() {
        let t = MemoryPolicy.targets(for: [client("a", shares: 1, wants: 300), client("b", shares: 1, wants: 400)],
                                     availablePages: 1000, idleTax: 0.75)
        #expect(t == [300, 400])
    }

    @Test func surplusAboveReservationsFollowsShares() {
        // The seed's example: shares 1:4:2 over a 204-page surplus → 29 / 116 / 58.
        let c = [client("low", shares: 1, min: 100), client("high", shares: 4, min: 100), client("normal", shares: 2, min: 100)]
        let t = MemoryPolicy.targets(for: c, availablePages: 504, idleTax: 0.75)
        #expect(t == [129, 216, 158])
    }

    @Test func twoToOneSharesSplitTwoToOne() {
        let t = MemoryPolicy.targets(for: [client("a", shares: 2000), client("b", shares: 1000)], availablePages: 900, idleTax: 0.75)
        #expect(t == [600, 300])
    }

    @Test func idleMemoryIsTaxed() {
        // Equal shares; b is idle. τ = 0.75 → k = 4: b's weight is a quarter of a's.
        #expect(MemoryPolicy.weight(shares: 1000, activeFraction: 0, idleTax: 0.75) == 250)
        #expect(MemoryPolicy.weight(shares: 1000, activeFraction: 1, idleTax: 0.75) == 1000)
        let t = MemoryPolicy.targets(for: [client("a", shares: 1000, active: 1), client("b", shares: 1000, active: 0)],
                                     availablePages: 1000, idleTax: 0.75)
        #expect(t == [800, 200])
        // Without a tax idleness does not matter.
        let untaxed = MemoryPolicy.targets(for: [client("a", shares: 1000, active: 1), client("b", shares: 1000, active: 0)],
                                           availablePages: 1000, idleTax: 0)
        #expect(untaxed == [500, 500])
    }

    @Test func aCappedVMLeavesItsRestToOthers() {
        // a wants only 100 although its weight would give it 500: b gets the rest.
        let t = MemoryPolicy.targets(for: [client("a", shares: 1, wants: 100), client("b", shares: 1, max: 2000, wants: 2000)],
                                     availablePages: 1000, idleTax: 0.75)
        #expect(t == [100, 900])
        // max caps like wants.
        let m = MemoryPolicy.targets(for: [client("a", shares: 9, max: 200), client("b", shares: 1)],
                                     availablePages: 1000, idleTax: 0.75)
        #expect(m == [200, 800])
    }

    @Test func reservationsHoldUnderHeavyPressure() {
        let t = MemoryPolicy.targets(for: [client("a", shares: 1, min: 400), client("b", shares: 100, min: 100)],
                                     availablePages: 500, idleTax: 0.75)
        #expect(t == [400, 100])
    }

    @Test func reclaimAsksTheBalloonFirstAndSwapForTheRest() {
        #expect(MemoryPolicy.split(excessPages: 100, balloonLimitPages: 650, balloonHeld: 0, balloonStalled: false)
                == .init(balloonPages: 100, swapPages: 0))
        // Beyond the balloon's limit, swap takes the rest.
        #expect(MemoryPolicy.split(excessPages: 800, balloonLimitPages: 650, balloonHeld: 650, balloonStalled: false)
                == .init(balloonPages: 650, swapPages: 150))
        // A stalled balloon (no driver): swap covers what it has not delivered.
        #expect(MemoryPolicy.split(excessPages: 100, balloonLimitPages: 650, balloonHeld: 30, balloonStalled: true)
                == .init(balloonPages: 100, swapPages: 70))
        #expect(MemoryPolicy.split(excessPages: -5, balloonLimitPages: 650, balloonHeld: 0, balloonStalled: true)
                == .init(balloonPages: 0, swapPages: 0))
    }

    @Test func admissionRefusesAReservationThatDoesNotFitAndNamesTheNumbers() throws {
        let s = try MemoryScheduler(budgetBytes: 256 << 20, sharing: false, logger: Logger(label: "test"))
        let overhead = MemoryScheduler.overheadPages(memoryMiB: 128, vcpus: 1) >> 8
        try s.admit(name: "a", memoryMiB: 128, vcpus: 1, parameters: .init(minMiB: 128, maxMiB: 128))
        s.register(.init(name: "a", memoryPages: 128 << 8, vcpus: 1, residentPages: { 0 }, sampleWrittenPages: { nil }, sharing: nil),
                   memoryMiB: 128, parameters: .init(minMiB: 128, maxMiB: 128))
        let error = #expect(throws: VMError.self) {
            try s.admit(name: "b", memoryMiB: 128, vcpus: 1, parameters: .init(minMiB: 100, maxMiB: 128))
        }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("'b'") && text.contains("sched.mem.min = 100 MiB") && text.contains("\(overhead) MiB overhead")
                && text.contains("budget (256 MiB)"), "\(text)")
        // Without a reservation it fits; a live min raise goes through admission too.
        try s.admit(name: "b", memoryMiB: 128, vcpus: 1, parameters: .init(minMiB: 0, maxMiB: 128))
        #expect(throws: VMError.self) { try s.setParameters(vm: "a", shares: nil, minMiB: 250, maxMiB: nil) }
        let p = try s.setParameters(vm: "a", shares: .high, minMiB: 64, maxMiB: nil)
        #expect(p.minMiB == 64 && p.shares == .high)
    }
}
