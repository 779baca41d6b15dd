import Foundation
import XCTest

/// The kernel formats hvhost enters without firmware, each built from guests/kformats:
/// a PVH ELF32 (`ld -m elf_i386`), a multiboot v1 ELF32 with a module, and Linux
/// bzImages with an initrd: protocol 2.10 (32-bit entry) and 2.12 with XLF_KERNEL_64
/// (the probe built 64-bit, entered in long mode; its 32-bit entry fails). The probe prints what its
/// protocol handed over and exits 0 (status 1) only when it is all as specified.
final class KernelFormatTests: XCTestCase {
    private func boot(_ image: String, initrd: String? = nil) throws -> HostHarness.Result {
        try HostHarness.requireHost()
        var extra = ["hv.cmdline": "probe=\(image)", "hv.serial": "stdout"]
        if let initrd {
            let path = HostHarness.workDir + "/\(image).initrd"
            try initrd.write(toFile: path, atomically: true, encoding: .utf8)
            extra["hv.initrd"] = path
        }
        var lines = ["displayName": image, "memsize": "64", "hv.kernel": HostHarness.repoRoot + "/guests/build/\(image)"]
        lines.merge(extra) { $1 }
        return HostHarness.hvhostRun(["run", HostHarness.writeVMX(image, lines)], timeout: 60)
    }

    func testPVHELF32Boots() throws {
        let r = try boot("kformat-pvh32.elf")
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("kformat: pvh32 magic ok cmdline=probe=kformat-pvh32.elf memmap=5 ram_kib=64512"), r.stdout)
        XCTAssertTrue(r.stderr.contains("pvh boot"), r.stderr)
    }

    func testMultibootBootsWithMemoryMapAndModule() throws {
        let r = try boot("kformat-multiboot.elf", initrd: "module-zero")
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("kformat: multiboot magic ok mem_lower=639 mem_upper=64512 cmdline=probe=kformat-multiboot.elf mmap=5 ram_kib=64512 mods=1 mod0=initrd:module-zero"), r.stdout)
        XCTAssertTrue(r.stderr.contains("multiboot boot"), r.stderr)
    }

    func testLinuxBzImageWithA64BitEntryIsEnteredInLongMode() throws {
        let r = try boot("kformat-bzimage64.bin", initrd: "initrd-64")
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("kformat: linux64 header ok cmdline=probe=kformat-bzimage64.bin e820=5 ram_kib=64512 initrd=initrd-64"), r.stdout)
        XCTAssertTrue(r.stderr.contains("linux64 boot"), r.stderr)
    }

    func testLinuxBzImageBootsWithE820CommandLineAndInitrd() throws {
        let r = try boot("kformat-bzimage.bin", initrd: "initrd-bytes")
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("kformat: linux header ok cmdline=probe=kformat-bzimage.bin e820=5 ram_kib=64512 initrd=initrd-bytes"), r.stdout)
        XCTAssertTrue(r.stderr.contains("linux boot"), r.stderr)
    }

    /// hv.boot picks between ELF entries; a bzImage has its own, and a 64-bit entry
    /// into an ELF32 image is refused with a message naming the file.
    func testModeMismatchesAreRefused() throws {
        try HostHarness.requireHost()
        let bz = HostHarness.vmx("kf-bad1", guest: "hello", extra: [
            "hv.kernel": HostHarness.repoRoot + "/guests/build/kformat-bzimage.bin", "hv.boot": "elf64"])
        let r1 = HostHarness.hvhostRun(["validate", bz])
        XCTAssertEqual(r1.status, 2)
        XCTAssertTrue((r1.stdout + r1.stderr).contains("kformat-bzimage.bin: hv.boot = \"elf64\" chooses an ELF entry"), r1.stdout + r1.stderr)
        let elf32 = HostHarness.vmx("kf-bad2", guest: "hello", extra: [
            "hv.kernel": HostHarness.repoRoot + "/guests/build/kformat-pvh32.elf", "hv.boot": "elf64"])
        let r2 = HostHarness.hvhostRun(["validate", elf32])
        XCTAssertEqual(r2.status, 2)
        XCTAssertTrue((r2.stdout + r2.stderr).contains("ELF32 image has neither a PVH note"), r2.stdout + r2.stderr)
    }
}
