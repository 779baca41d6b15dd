import Foundation
import XCTest
@testable import HVKernel

/// The service console over a real Unix socket, and the virtual-switch commands.
final class ConsoleTests: XCTestCase {
    var console: ServiceConsole!
    var path: String!

    override func setUpWithError() throws {
        path = NSTemporaryDirectory() + "hv-console-\(getpid())-\(UUID().uuidString.prefix(6)).sock"
        console = try ServiceConsole(path: path)
        console.start()
    }

    override func tearDown() { console.stop() }

    func testRequestsOverTheSocket() throws {
        console.register("echo", summary: "echo words") { $0.joined(separator: "+") }
        XCTAssertEqual(try ServiceConsole.request("echo a b c", at: path), "a+b+c\n")
        XCTAssertTrue(try ServiceConsole.request("help", at: path).contains("echo\techo words"))
        XCTAssertTrue(try ServiceConsole.request("nope", at: path).hasPrefix("error: unknown command 'nope'"))
        console.register("fail", summary: "throws") { _ in throw ServiceConsole.CommandError("it broke") }
        XCTAssertEqual(try ServiceConsole.request("fail", at: path), "error: it broke\n")
        XCTAssertThrowsError(try ServiceConsole.request("help", at: path + ".missing"))
    }

    func testNetPortsCountersAndLinkControl() throws {
        let switches = SwitchRegistry()
        let lab = switches.virtualSwitch(named: "lab")
        let received = LockedCount()
        let a = lab.makePort(name: "vm1.ethernet0", mac: [0x00, 0x50, 0x56, 0, 0, 1], receive: { _ in .taken }, linkChanged: { _ in })
        let b = lab.makePort(name: "vm2.ethernet0", mac: [0x00, 0x50, 0x56, 0, 0, 2], receive: { _ in received.add(); return .taken },
                             linkChanged: { _ in })
        defer { for p in [a, b] { lab.removePort(p) } }
        _ = switches.virtualSwitch(named: "other")
        console.registerNetCommands(switches)

        XCTAssertEqual(a.send([UInt8](repeating: 0xFF, count: 6) + [0x00, 0x50, 0x56, 0, 0, 1, 0x08, 0x00] + [UInt8](repeating: 0, count: 46)), .sent)
        XCTAssertTrue(lab.waitUntilDelivered())
        let switchesText = console.execute("net switches")
        XCTAssertTrue(switchesText.contains("lab\t2") && switchesText.contains("other\t0"), switchesText)
        let ports = console.execute("net ports lab")
        XCTAssertTrue(ports.contains("lab\tvm1.ethernet0\t00:50:56:00:00:01\tup\t1\t60\t0\t0"), ports)
        XCTAssertTrue(ports.contains("lab\tvm2.ethernet0\t00:50:56:00:00:02\tup\t0\t0\t1\t60"), ports)

        XCTAssertEqual(console.execute("net link vm2 ethernet0 down"), "vm2.ethernet0: link down")
        XCTAssertEqual(a.send([UInt8](repeating: 0xFF, count: 60)), .sent)
        XCTAssertTrue(lab.waitUntilDelivered())
        XCTAssertEqual(received.value, 1, "a port whose link is down receives nothing")
        XCTAssertTrue(console.execute("net ports").contains("vm2.ethernet0\t00:50:56:00:00:02\tdown"))
        XCTAssertEqual(console.execute("net link vm2 ethernet0 up"), "vm2.ethernet0: link up")
        XCTAssertTrue(console.execute("net link vm9 ethernet0 up").hasPrefix("error: no port 'vm9.ethernet0'"))
        XCTAssertTrue(console.execute("net link vm2 ethernet0 sideways").hasPrefix("error: usage"))
    }
}

final class LockedCount: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.withLock { n += 1 } }
    var value: Int { lock.withLock { n } }
}
