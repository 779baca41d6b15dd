import Foundation
import XCTest

/// The ABI 1.1 device extensions as a guest sees them: the legacy-io guest drives the
/// devext probe plugin's fixed ports, its memory window (which must not be RAM, so
/// the VM maps memory around it), RAM right above it and its expansion ROM.
final class DeviceExtensionTests: XCTestCase {
    func testGuestReachesLegacyPortsTheWindowAndTheROM() throws {
        try HostHarness.requireHost()
        let dir = HostHarness.workDir + "/devext-plugins"
        _ = try HostHarness.buildFixturePlugin("../../HVPluginHostTests/Fixtures/devext_probe.c", into: dir)
        let vmx = HostHarness.vmx("legacy-io", guest: "legacy-io",
                                  extra: ["hv.device0.present": "TRUE", "hv.device0.model": "devext"])
        let r = HostHarness.hvhostRun(["run", "--plugin-path", dir, vmx])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        for line in ["legacy-io: backdoor version 6, magic 0x564d5868, product 2",
                     "legacy-io: port 0xe00 reads 0xc0de5eed, port 0x3d4 reads 0x3d4",
                     "legacy-io: window reads 0xa0010 at 0xa0010, write 0xbeef seen at 0xbfff0",
                     "legacy-io: RAM at 0xc0000 ok",
                     "legacy-io: ROM of 4096 bytes at 0xe0001000, signature 0xaa55",
                     "legacy-io: ok"] {
            XCTAssertTrue(r.stdout.contains(line), "missing '\(line)' in:\n\(r.stdout)")
        }
    }

    func testWithoutTheDeviceTheGuestSaysSo() throws {
        try HostHarness.requireHost()
        let r = HostHarness.hvhostRun(["run", HostHarness.vmx("legacy-io-nodev", guest: "legacy-io")])
        XCTAssertEqual(r.status, (3 << 1) | 1, r.stdout)
        XCTAssertTrue(r.stdout.contains("legacy-io: probe device 1234:11e2 not found"), r.stdout)
        XCTAssertTrue(r.stdout.contains("legacy-io: backdoor version 6, magic 0x564d5868, product 2"), r.stdout)
        XCTAssertTrue(r.stdout.contains("rt: entry=pvh32"), "RAM below the legacy hole still boots the guest")
    }
}
