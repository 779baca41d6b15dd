import Foundation
import HVBackendKVM
import HVHostIO
import HVKernel
import HVSupport
import Logging
import XCTest

/// A VM's VNC server end to end: the console-input guest echoes on serial what a real
/// VNC client (Perl's Net::VNC from Debian) types and clicks, through the PS/2
/// keyboard, the VMware absolute pointer and the PS/2 mouse.
final class RemoteConsoleTests: XCTestCase {
    private struct Booted {
        let vm: VirtualMachine
        let log: String
        func serial() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        /// Waits (up to 60 s) for a serial line starting with `prefix`.
        func waitFor(_ done: (String) -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(60)
            while !done(serial()) && Date() < deadline { usleep(10_000) }
            return done(serial())
        }
    }

    private func boot(_ name: String, cmdline: String, password: String? = nil) throws -> Booted {
        try HostHarness.requireHost()
        let log = HostHarness.workDir + "/\(name).log"
        try? FileManager.default.removeItem(atPath: log)
        var keys = ["hv.serial": "file:\(log)", "hv.cmdline": cmdline,
                    "RemoteDisplay.vnc.enabled": "TRUE", "RemoteDisplay.vnc.port": "0"]
        if let password { keys["RemoteDisplay.vnc.password"] = password }
        let vmx = HostHarness.vmx(name, guest: "console-input", extra: keys)
        let services = HostServices(kvm: try KVMSystem(), switches: SwitchRegistry(), diskQueue: DiskIOQueue(name: "\(name)-disk"),
                                    resolveModel: { d in throw VMError("no plugins here (\(d.prefix))") })
        var logger = Logger(label: name)
        logger.logLevel = .warning
        let vm = try VirtualMachine(configuration: VMConfiguration(contentsOf: vmx), host: services, logger: logger)
        vm.start()
        return Booted(vm: vm, log: log)
    }

    private func perl(_ script: String) throws -> (Int32, String) {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/perl") else { throw XCTSkip("perl not installed") }
        let check = HostHarness.run("/usr/bin/perl", ["-MNet::VNC", "-e", "1"], timeout: 30)
        guard check.status == 0 else { throw XCTSkip("Net::VNC not installed (apt-get install libnet-vnc-perl)") }
        let r = HostHarness.run("/usr/bin/perl", ["-e", script], timeout: 60)
        return (r.status, r.stdout + r.stderr)
    }

    func testVNCKeysAndClicksReachTheGuestThroughVMMouse() throws {
        let b = try boot("console-vmmouse", cmdline: "vmmouse=1", password: "hvhost")
        defer { b.vm.stop(.poweredOff); b.vm.waitUntilStopped() }
        XCTAssertTrue(b.waitFor { $0.contains("input: ready") }, b.serial())
        let port = try XCTUnwrap(b.vm.vncServer?.port)
        let (status, out) = try perl("""
            use Net::VNC;
            my $vnc = Net::VNC->new({hostname => '127.0.0.1', port => \(port), password => 'hvhost'});
            $vnc->depth(24);
            $vnc->login;
            print $vnc->width, 'x', $vnc->height, "\\n";
            $vnc->send_key_event_string('a');
            $vnc->mouse_move_to(320, 240);
            $vnc->mouse_click;
            """)
        XCTAssertEqual(status, 0, out)
        XCTAssertTrue(out.hasPrefix("640x480"), "a blank screen without a display device: \(out)")
        XCTAssertTrue(b.waitFor { $0.contains("key 1e\n") && $0.contains("key 9e\n") }, b.serial())
        let x = 320 * 0xFFFF / 639, y = 240 * 0xFFFF / 479
        XCTAssertTrue(b.waitFor { $0.contains("abs x=\(x) y=\(y) buttons=1\n") && $0.contains("abs x=\(x) y=\(y) buttons=0\n") },
                      b.serial())
        // Esc ends the guest.
        let (escStatus, escOut) = try perl("""
            use Net::VNC;
            my $vnc = Net::VNC->new({hostname => '127.0.0.1', port => \(port), password => 'hvhost'});
            $vnc->depth(24); $vnc->login; $vnc->send_key_event(0xff1b);
            """)
        XCTAssertEqual(escStatus, 0, escOut)
        XCTAssertTrue(b.waitFor { $0.contains("console-input: done") }, b.serial())
    }

    func testWithoutVMMouseTheClicksBecomePS2Motion() throws {
        let b = try boot("console-ps2", cmdline: "vmmouse=0")
        defer { b.vm.stop(.poweredOff); b.vm.waitUntilStopped() }
        XCTAssertTrue(b.waitFor { $0.contains("input: ready") }, b.serial())
        let port = try XCTUnwrap(b.vm.vncServer?.port)
        let (status, out) = try perl("""
            use Net::VNC;
            my $vnc = Net::VNC->new({hostname => '127.0.0.1', port => \(port)});
            $vnc->depth(24);
            $vnc->login;
            $vnc->mouse_move_to(100, 100);
            $vnc->mouse_move_to(300, 200);
            $vnc->mouse_click;
            $vnc->send_key_event(0xff52);
            """)
        XCTAssertEqual(status, 0, out)
        XCTAssertTrue(b.waitFor { $0.contains("ps2 dx=0 dy=0 buttons=1\n") && $0.contains("key e0 c8\n") }, b.serial())
        // The PS/2 motion adds up to the pointer's travel in screen pixels.
        // Complete lines only: the guest may be writing the button release's line now.
        var dx = 0, dy = 0
        let serial = b.serial()
        for line in serial.split(separator: "\n", omittingEmptySubsequences: false).dropLast() where line.hasPrefix("ps2 ") {
            let f = line.split(separator: " ")
            guard f.count >= 3 else { XCTFail("malformed line: \(line)"); continue }
            dx += Int(f[1].dropFirst(3)) ?? 0
            dy += Int(f[2].dropFirst(3)) ?? 0
        }
        XCTAssertEqual(dx, 200, serial)
        XCTAssertEqual(dy, 100, serial)
        XCTAssertTrue(b.serial().contains("key e0 48\n"), "cursor up make")
    }
}
