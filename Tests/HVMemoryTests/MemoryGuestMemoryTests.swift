import Testing
@testable import HVMemory

/// Guest RAM: the PC split around the PCI hole, bounds checks, and the VMM-side dirty log.
@Suite struct MemoryGuestMemoryTests {
    @Test func smallMemoryIsOneRegionAtZero() throws {
        let memory = try GuestMemory(size: 2 << 20)
        #expect(memory.regions.count == 1)
        #expect(memory.regions[0].guestAddress == 0 && memory.regions[0].size == 2 << 20)
        #expect(memory.contains(0, length: 2 << 20))
        #expect(!memory.contains(2 << 20, length: 1))
    }

    @Test func readsBackWhatItWroteAndRefusesRangesOutsideRAM() throws {
        let memory = try GuestMemory(size: 1 << 20)
        try memory.write([1, 2, 3, 4], at: 0x1000)
        #expect(try memory.read(at: 0x1000, count: 4) == [1, 2, 3, 4])
        try memory.store(UInt32(0xDEAD_BEEF), at: 0x2000)
        #expect(try memory.load(UInt32.self, at: 0x2000) == 0xDEAD_BEEF)
        try memory.write([9, 9, 9][1...], at: 0x3000)
        #expect(try memory.read(at: 0x3000, count: 2) == [9, 9])
        try memory.zero(at: 0x1000, count: 2)
        #expect(try memory.read(at: 0x1000, count: 4) == [0, 0, 3, 4])
        #expect(throws: GuestMemoryError.self) { try memory.write([1], at: 1 << 20) }
        #expect(throws: GuestMemoryError.self) { try memory.read(at: (1 << 20) - 2, count: 4) }
    }

    @Test func vmmWritesAreDirtyUntilTaken() throws {
        let memory = try GuestMemory(size: 1 << 20)
        _ = memory.takeDirtyPages()
        try memory.write([1], at: 5 * GuestMemory.pageSize + 10)
        try memory.zero(at: 64 * GuestMemory.pageSize, count: GuestMemory.pageSize + 1)
        let bits = memory.takeDirtyPages()
        #expect(bits[0] == 1 << 5)
        #expect(bits[1] == 0b11, "pages 64 and 65")
        #expect(memory.takeDirtyPages().allSatisfy { $0 == 0 })
    }
}
