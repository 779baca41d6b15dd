import Foundation
import XCTest

/// The drawing guest (svga-draw on the SVGA plugin) through hvhost's remote consoles:
/// a real VNC client (Net::VNC) and headless Chromium see the same pixels as
/// `screenshot`, and what they type and click reaches the guest (echoed on serial).
final class RemoteConsoleSVGATests: XCTestCase {
    private func serialText(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    private func waitFor(_ what: String, _ done: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(60)
        while !done() {
            if Date() > deadline { XCTFail("timed out waiting for \(what)"); return false }
            usleep(20_000)
        }
        return true
    }

    private struct WebDriver {
        let base: String
        var session = ""
        func call(_ method: String, _ path: String, _ body: Any? = nil) throws -> Any? {
            var args = ["-s", "-X", method, base + path, "-H", "Content-Type: application/json"]
            if let body { args += ["--data-binary", String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)] }
            let r = HostHarness.run("/usr/bin/curl", args, timeout: 90)
            let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            if let value = json?["value"] as? [String: Any], let error = value["error"] as? String {
                throw FixtureBuildError(message: "webdriver \(path): \(error): \(value["message"] ?? "")")
            }
            return json?["value"]
        }
    }

    func testVNCAndBrowserShowTheDrawingAndTheirInputReachesTheGuest() throws {
        try HostHarness.requireHost()
        let lib = URL(fileURLWithPath: HostHarness.hvhost).deletingLastPathComponent().appendingPathComponent("libSVGA.so").path
        XCTAssertTrue(FileManager.default.fileExists(atPath: lib), "\(lib) is not built (swift build)")
        let perlOK = HostHarness.run("/usr/bin/perl", ["-MNet::VNC", "-MImage::Imlib2", "-e", "1"], timeout: 30).status == 0
        guard perlOK else { throw XCTSkip("Net::VNC not installed (apt-get install libnet-vnc-perl)") }

        let name = "console-svga"
        let dir = HostHarness.workDir + "/" + name
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let serial = dir + "/serial.txt", socket = dir + "/console.sock"
        let vmx = HostHarness.vmx(name, guest: "svga-draw", extra: [
            "svga.present": "TRUE", "hv.serial": "file:" + serial,
            "RemoteDisplay.vnc.enabled": "TRUE", "RemoteDisplay.vnc.port": "0"])
        var failures: [String] = []
        let run = HostHarness.hvhostRun(["run", "--console", socket, "--web-console", "127.0.0.1:0", vmx], timeout: 240) { _ in
            defer { _ = HostHarness.hvhostRun(["console", "--socket", socket, "poweroff", name], timeout: 10) }
            guard self.waitFor("input: ready", { self.serialText(serial).contains("input: ready") }) else { return }
            do { try self.drive(name: name, dir: dir, socket: socket, serial: serial) } catch { failures.append("\(error)") }
        }
        XCTAssertFalse(run.timedOut, run.stderr)
        XCTAssertEqual(failures, [])
    }

    private func drive(name: String, dir: String, socket: String, serial: String) throws {
        let consoles = HostHarness.hvhostRun(["console", "--socket", socket, "consoles"], timeout: 30)
        XCTAssertEqual(consoles.status, 0, consoles.stderr)
        let row = try XCTUnwrap(consoles.stdout.split(separator: "\n").first { $0.hasPrefix(name + "\t") }, consoles.stdout)
        let fields = row.split(separator: "\t").map(String.init)
        guard fields.count == 3 else { return XCTFail("a consoles row has VM, VNC address and URL: \(row)") }
        let vncPort = try XCTUnwrap(fields[1].split(separator: " ").first?.split(separator: ":").last.flatMap { Int($0) }, String(row))
        let url = fields[2]
        XCTAssertTrue(url.hasPrefix("http://127.0.0.1:") && url.hasSuffix("/console?vm=\(name)"), url)

        let shot = HostHarness.hvhostRun(["console", "--socket", socket, "screenshot", name, dir + "/plain.png", "nocursor"], timeout: 30)
        XCTAssertEqual(shot.status, 0, shot.stdout + shot.stderr)
        let picture = try SVGADisplayTests.decodePNG(dir + "/plain.png")

        // A real VNC client: the same pixels, then a key and a click.
        let perl = HostHarness.run("/usr/bin/perl", ["-e", """
            use Net::VNC;
            my $vnc = Net::VNC->new({hostname => '127.0.0.1', port => \(vncPort), hide_cursor => 1});
            $vnc->depth(24);
            $vnc->login;
            my $img = $vnc->capture;
            my ($w, $h) = ($img->width, $img->height);
            print "$w $h\\n";
            for my $y (0 .. $h - 1) { for my $x (0 .. $w - 1) {
                my ($r, $g, $b) = $img->query_pixel($x, $y);
                printf "%02x%02x%02x\\n", $r, $g, $b;
            } }
            $vnc->send_key_event_string('a');
            $vnc->mouse_move_to(400, 300);
            $vnc->mouse_click;
            """], timeout: 120)
        XCTAssertEqual(perl.status, 0, perl.stderr)
        var lines = perl.stdout.split(separator: "\n")
        XCTAssertEqual(lines.first.map(String.init), "\(picture.width) \(picture.height)")
        lines.removeFirst()
        var differ = 0
        for (i, line) in lines.enumerated() where UInt32(line, radix: 16) != picture.pixel(i % picture.width, i / picture.width) { differ += 1 }
        XCTAssertEqual(lines.count, picture.width * picture.height)
        XCTAssertEqual(differ, 0, "pixels of the VNC capture that differ from the screenshot")
        let x = 400 * 0xFFFF / (picture.width - 1), y = 300 * 0xFFFF / (picture.height - 1)
        _ = waitFor("the key and the click on serial") {
            let s = serialText(serial)
            return s.contains("key 1e\n") && s.contains("key 9e\n") && s.contains("abs x=\(x) y=\(y) buttons=1\n")
        }

        // Headless Chromium on the browser console.
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"),
              FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver"),
              FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else {
            print("RemoteConsoleSVGATests: browser part skipped: apt-get install chromium chromium-driver curl")
            return
        }
        try browser(url: url, picture: picture, serial: serial)
    }

    private func browser(url: String, picture: SVGADisplayTests.Picture, serial: String) throws {
        let port = 20000 + Int(getpid() % 20000) + 1
        let driver = Process()
        driver.executableURL = URL(fileURLWithPath: "/usr/bin/chromedriver")
        driver.arguments = ["--port=\(port)"]
        let out = Pipe()
        driver.standardOutput = out
        driver.standardError = FileHandle.nullDevice
        try driver.run()
        defer { driver.terminate(); driver.waitUntilExit() }
        var banner = ""
        while !banner.contains("successfully") {
            let d = out.fileHandleForReading.availableData
            guard !d.isEmpty else { XCTFail("chromedriver exited: \(banner)"); return }
            banner += String(decoding: d, as: UTF8.self)
        }
        var wd = WebDriver(base: "http://127.0.0.1:\(port)")
        let created = try wd.call("POST", "/session", ["capabilities": ["alwaysMatch": ["goog:chromeOptions": [
            "binary": "/usr/bin/chromium", "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]]]]])
        wd.session = try XCTUnwrap((created as? [String: Any])?["sessionId"] as? String)
        defer { _ = try? wd.call("DELETE", "/session/\(wd.session)") }
        _ = try wd.call("POST", "/session/\(wd.session)/timeouts", ["script": 60000])
        _ = try wd.call("POST", "/session/\(wd.session)/url", ["url": url])
        let frames = try wd.call("POST", "/session/\(wd.session)/execute/async", ["script": """
            const done = arguments[arguments.length - 1];
            (function poll() { const s = window.hvConsole; if (s && s.frames > 0) done(s.frames); else if (s && s.phase === 'failed') done(-1); else setTimeout(poll, 20); })();
            """, "args": []]) as? Int
        XCTAssertGreaterThan(frames ?? 0, 0, "the page drew the screen")
        let hash = try wd.call("POST", "/session/\(wd.session)/execute/sync", ["script": """
            const c = document.getElementById('screen');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let h = 2166136261;
            for (let i = 0; i < d.length; i++) { if ((i & 3) === 3) continue; h = Math.imul(h ^ d[i], 16777619) >>> 0; }
            return [c.width, c.height, h];
            """, "args": []]) as? [Int]
        var expected: UInt32 = 2_166_136_261
        for byte in picture.rgb { expected = (expected ^ UInt32(byte)) &* 16_777_619 }
        XCTAssertEqual(hash, [picture.width, picture.height, Int(expected)], "the canvas shows the guest's screen pixel for pixel")
        let element = try wd.call("POST", "/session/\(wd.session)/element", ["using": "css selector", "value": "#screen"]) as? [String: Any]
        let id = try XCTUnwrap(element?.values.first as? String)
        _ = try wd.call("POST", "/session/\(wd.session)/element/\(id)/click", [:] as [String: Any])
        _ = try wd.call("POST", "/session/\(wd.session)/element/\(id)/value", ["text": "b"])
        _ = waitFor("the browser's key and click on serial") {
            let s = serialText(serial)
            let clicks = s.split(separator: "\n").filter { $0.hasPrefix("abs ") && $0.hasSuffix("buttons=1") }
            return s.contains("key 30\n") && s.contains("key b0\n") && clicks.count >= 2
        }
    }
}
