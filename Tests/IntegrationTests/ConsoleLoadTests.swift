import Foundation
import XCTest

/// The console of a host running a VM: a thousand clients connected at once all get
/// their `vms` answer (none refused from the backlog), and a slow-loris client beside
/// them delays nobody by 100 ms.
final class ConsoleLoadTests: XCTestCase {
    private func connect(_ path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 { close(fd); return -1 }
        return fd
    }

    private func reply(_ fd: Int32) -> String {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    func testAThousandClientsAndASlowLorisWhileAVMRuns() throws {
        let env = try SchedulingEnv.require(policies: [])
        var answered = 0, refused = 0
        var median = Double.infinity
        let r = env.run([], [env.burn("console-load")]) { run in
            try run.waitForBurnLines(["console-load"])
            let loris = self.connect(run.socket)
            defer { close(loris) }
            _ = "v".withCString { write(loris, $0, 1) }          // never finishes its line
            let clients = (0..<1000).map { _ in self.connect(run.socket) }
            refused = clients.filter { $0 < 0 }.count
            for fd in clients where fd >= 0 { _ = "vms\n".withCString { write(fd, $0, 4) } }
            for fd in clients where fd >= 0 {
                if self.reply(fd).contains("console-load\t64 MiB") { answered += 1 }
                close(fd)
            }
            var latencies: [Double] = []
            for _ in 0..<11 {
                let started = Date()
                let fd = self.connect(run.socket)
                _ = "vms\n".withCString { write(fd, $0, 4) }
                XCTAssertTrue(self.reply(fd).contains("console-load"))
                close(fd)
                latencies.append(Date().timeIntervalSince(started) * 1000)
            }
            median = latencies.sorted()[5]
            print("1000 console clients beside a running VM: \(answered) answered, \(refused) refused; then 11 requests beside a slow-loris client: median \(median) ms")
        }
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertEqual(refused, 0)
        XCTAssertEqual(answered, 1000)
        XCTAssertLessThan(median, 100)
    }
}
