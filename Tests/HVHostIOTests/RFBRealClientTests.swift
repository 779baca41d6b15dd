import Foundation
import HVSupport
import XCTest
@testable import HVHostIO

/// The VNC server and the browser console against real clients from Debian: Perl's
/// Net::VNC (libnet-vnc-perl), vncsnapshot, and headless Chromium driven through
/// chromedriver's W3C WebDriver. Each skips visibly when its tool is missing.
final class RFBRealClientTests: XCTestCase {
    private static func run(_ path: String, _ args: [String], stdin: String? = nil) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        if let stdin { inp.fileHandleForWriting.write(Data(stdin.utf8)) }
        try inp.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    private static func which(_ tool: String) -> String? {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(tool)") {
            return "\(dir)/\(tool)"
        }
        return nil
    }

    /// A screen of solid blocks (survives vncsnapshot's JPEG output) plus fine detail.
    private func blocks(_ f: ConsoleFixture) {
        let fb = f.framebuffer
        fb.fill(DisplayRect(x: 0, y: 0, width: fb.width, height: fb.height), 0x000000)
        fb.fill(DisplayRect(x: 0, y: 0, width: fb.width / 2, height: fb.height / 2), 0xFF0000)
        fb.fill(DisplayRect(x: fb.width / 2, y: 0, width: fb.width / 2, height: fb.height / 2), 0x00FF00)
        fb.fill(DisplayRect(x: 0, y: fb.height / 2, width: fb.width / 2, height: fb.height / 2), 0x0000FF)
        fb.fill(DisplayRect(x: fb.width / 2, y: fb.height / 2, width: fb.width / 2, height: fb.height / 2), 0xFFFFFF)
        fb.fill(DisplayRect(x: 10, y: 10, width: 3, height: 2), 0x123456)
        f.surface.update(x: 0, y: 0, width: UInt64(fb.width), height: UInt64(fb.height))
    }

    func testNetVNCCapturesTheScreenAndItsKeysAndClicksArrive() throws {
        guard let perl = Self.which("perl"), try Self.run(perl, ["-MNet::VNC", "-MImage::Imlib2", "-e", "1"]).status == 0 else {
            throw XCTSkip("Net::VNC not installed (apt-get install libnet-vnc-perl)")
        }
        let f = try ConsoleFixture(width: 160, height: 100, password: "s3cret")
        defer { f.server.stop() }
        let script = """
            use Net::VNC;
            my $vnc = Net::VNC->new({hostname => '127.0.0.1', port => \(f.server.port), password => 's3cret'});
            $vnc->depth(24);
            $vnc->login;
            my $img = $vnc->capture;
            my ($w, $h) = ($img->width, $img->height);
            print "$w $h\\n";
            for my $y (0 .. $h - 1) { for my $x (0 .. $w - 1) {
                my ($r, $g, $b) = $img->query_pixel($x, $y);
                printf "%02x%02x%02x\\n", $r, $g, $b;
            } }
            $vnc->send_key_event_string('ab');
            $vnc->mouse_move_to(120, 30);
            $vnc->mouse_click;
            """
        let r = try Self.run(perl, ["-e", script])
        XCTAssertEqual(r.status, 0, r.err)
        var lines = r.out.split(separator: "\n")
        XCTAssertEqual(lines.first, "160 100")
        lines.removeFirst()
        let pixels = lines.map { UInt32($0, radix: 16) ?? 0xFFFF_FFFF }
        XCTAssertEqual(pixels, f.framebuffer.all, "the captured screen is the framebuffer")
        XCTAssertTrue(f.input.wait { $0.keys.filter(\.1).map(\.0) == [0x1E, 0x30] && $0.pointers.contains { !$0.buttons.isEmpty } })
        let click = try XCTUnwrap(f.input.pointers.first { !$0.buttons.isEmpty })
        XCTAssertEqual(Int(click.x), 120 * 0xFFFF / 159)
        XCTAssertEqual(Int(click.y), 30 * 0xFFFF / 99)
    }

    func testVncsnapshotGrabsTheScreen() throws {
        guard let snap = Self.which("vncsnapshot") else { throw XCTSkip("vncsnapshot not installed (apt-get install vncsnapshot)") }
        guard let perl = Self.which("perl"), try Self.run(perl, ["-MImage::Imlib2", "-e", "1"]).status == 0 else {
            throw XCTSkip("Image::Imlib2 not installed (apt-get install libimage-imlib2-perl) to read the JPEG")
        }
        let f = try ConsoleFixture(width: 160, height: 100)
        defer { f.server.stop() }
        blocks(f)
        let file = NSTemporaryDirectory() + "vncsnapshot-\(getpid()).jpg"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let r = try Self.run(snap, ["-quiet", "-nojpeg", "-quality", "100", "127.0.0.1::\(f.server.port)", file])
        XCTAssertEqual(r.status, 0, r.err)
        let probe = try Self.run(perl, ["-MImage::Imlib2", "-e", """
            my $i = Image::Imlib2->load('\(file)'); print $i->width, ' ', $i->height, "\\n";
            for my $p ([40,25],[120,25],[40,75],[120,75]) { my ($r,$g,$b) = $i->query_pixel(@$p); print "$r $g $b\\n"; }
            """])
        XCTAssertEqual(probe.status, 0, probe.err)
        let lines = probe.out.split(separator: "\n").map { $0.split(separator: " ").compactMap { Int($0) } }
        XCTAssertEqual(lines.first, [160, 100])
        // JPEG: each quadrant's colour within a small error.
        let expected = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]
        for (got, want) in zip(lines.dropFirst(), expected) {
            XCTAssertEqual(got.count, 3)
            for (g, w) in zip(got, want) { XCTAssertLessThanOrEqual(abs(g - w), 12, "\(got) vs \(want)") }
        }
    }

    // MARK: Chromium

    private struct WebDriver {
        let base: String
        var session = ""

        func call(_ method: String, _ path: String, _ body: Any? = nil) throws -> Any? {
            var args = ["-s", "-X", method, base + path, "-H", "Content-Type: application/json"]
            if let body { args += ["--data-binary", String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)] }
            let r = try RFBRealClientTests.run("/usr/bin/curl", args)
            guard r.status == 0 else { throw RFBError("curl \(path): \(r.err)") }
            let json = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
            if let value = json?["value"] as? [String: Any], let error = value["error"] as? String {
                throw RFBError("webdriver \(path): \(error): \(value["message"] ?? "")")
            }
            return json?["value"]
        }

        func script(_ js: String) throws -> Any? {
            try call("POST", "/session/\(session)/execute/sync", ["script": js, "args": []])
        }
    }

    func testBrowserConsoleShowsTheScreenAndTypedKeysArrive() throws {
        guard let chromium = Self.which("chromium"), let driverPath = Self.which("chromedriver"), Self.which("curl") != nil else {
            throw XCTSkip("chromium, chromium-driver or curl not installed (apt-get install chromium chromium-driver curl)")
        }
        let f = try ConsoleFixture(width: 160, height: 100)
        defer { f.server.stop() }
        let web = try WebConsoleServer(address: "127.0.0.1", port: 0, consoles: { [f.console] })
        defer { web.stop() }

        // chromedriver on a port of its own; it prints when it listens.
        let port = 20000 + Int(getpid() % 20000)
        let driver = Process()
        driver.executableURL = URL(fileURLWithPath: driverPath)
        driver.arguments = ["--port=\(port)"]
        let driverOut = Pipe()
        driver.standardOutput = driverOut
        driver.standardError = FileHandle.nullDevice
        try driver.run()
        defer { driver.terminate(); driver.waitUntilExit() }
        var banner = ""
        while !banner.contains("successfully") {
            let d = driverOut.fileHandleForReading.availableData
            guard !d.isEmpty else { XCTFail("chromedriver exited: \(banner)"); return }
            banner += String(decoding: d, as: UTF8.self)
        }
        var wd = WebDriver(base: "http://127.0.0.1:\(port)")
        let created = try wd.call("POST", "/session", ["capabilities": ["alwaysMatch": ["goog:chromeOptions": [
            "binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]]]]])
        wd.session = try XCTUnwrap((created as? [String: Any])?["sessionId"] as? String)
        defer { _ = try? wd.call("DELETE", "/session/\(wd.session)") }

        _ = try wd.call("POST", "/session/\(wd.session)/url", ["url": web.url(for: "fixture")])
        // Wait (in the page) for the first full frame.
        _ = try wd.call("POST", "/session/\(wd.session)/timeouts", ["script": 60000])
        let frames = try wd.call("POST", "/session/\(wd.session)/execute/async", ["script": """
            const done = arguments[arguments.length - 1];
            (function poll() { const s = window.hvConsole; if (s && s.frames > 0) done(s.frames); else if (s && s.phase === 'failed') done(-1); else setTimeout(poll, 20); })();
            """, "args": []])
        XCTAssertGreaterThan(frames as? Int ?? 0, 0, "the page drew a frame")

        let hash = try wd.script("""
            const c = document.getElementById('screen');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let h = 2166136261;
            for (let i = 0; i < d.length; i++) { if ((i & 3) === 3) continue; h = Math.imul(h ^ d[i], 16777619) >>> 0; }
            return [c.width, c.height, h];
            """) as? [Int]
        var expected: UInt32 = 2_166_136_261
        for p in f.framebuffer.all {
            for byte in [p >> 16 & 0xFF, p >> 8 & 0xFF, p & 0xFF] { expected = (expected ^ byte) &* 16_777_619 }
        }
        XCTAssertEqual(hash, [160, 100, Int(expected)], "the canvas shows the framebuffer pixel for pixel")

        // The canvas updates on damage too.
        f.framebuffer.fill(DisplayRect(x: 20, y: 20, width: 30, height: 10), 0x00FF00)
        f.surface.update(x: 20, y: 20, width: 30, height: 10)
        let green = try wd.call("POST", "/session/\(wd.session)/execute/async", ["script": """
            const done = arguments[arguments.length - 1];
            (function poll() { const p = document.getElementById('screen').getContext('2d').getImageData(25, 25, 1, 1).data;
              if (p[1] === 255 && p[0] === 0) done(true); else setTimeout(poll, 20); })();
            """, "args": []])
        XCTAssertEqual(green as? Bool, true)

        let element = try wd.call("POST", "/session/\(wd.session)/element", ["using": "css selector", "value": "#screen"]) as? [String: Any]
        let id = try XCTUnwrap(element?.values.first as? String)
        _ = try wd.call("POST", "/session/\(wd.session)/element/\(id)/click", [:] as [String: Any])
        _ = try wd.call("POST", "/session/\(wd.session)/element/\(id)/value", ["text": "ab"])
        XCTAssertTrue(f.input.wait { $0.keys.filter(\.1).map(\.0) == [0x1E, 0x30] })
        XCTAssertTrue(f.input.wait { $0.pointers.contains { $0.buttons == .left } })
        let click = try XCTUnwrap(f.input.pointers.first { $0.buttons == .left })
        XCTAssertEqual(Double(click.x), Double(0x8000), accuracy: Double(0x10000) / 80, "the click lands in the canvas's middle")
    }
}
