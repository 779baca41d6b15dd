import HVSupport

/// The browser console: an HTTP server that lists the host's consoles (`/`), serves the
/// console page (`/console?vm=NAME`) with its RFB client (`/rfb.js`), and carries RFB
/// over a WebSocket (`/websocket?vm=NAME`) to the VM's ``RemoteConsole``, the approach
/// noVNC takes. Consoles are looked up by VM name at each request, so VMs may come and go.
package final class WebConsoleServer: @unchecked Sendable {
    /// Request headers longer than this are refused (431).
    static let maxHeaderBytes = 16 * 1024

    private let listener: TCPListener
    private let consoles: @Sendable () -> [RemoteConsole]

    package init(address: String, port: Int, consoles: @escaping @Sendable () -> [RemoteConsole]) throws(RFBError) {
        self.consoles = consoles
        listener = try TCPListener(address: address, port: port)
        listener.start(name: "web-console") { [self] stream in
            RFBConnection.spawnDetached(name: "web-console-http") { self.handle(stream) }
        }
    }

    package var address: String { listener.address }
    package var port: Int { listener.port }

    /// The console page's URL for VM `name`.
    package func url(for name: String) -> String {
        "http://\(address):\(port)/console?vm=\(Self.percentEncoded(name))"
    }

    package func stop() { listener.stop() }

    private func handle(_ stream: SocketStream) {
        var buffer: [UInt8] = []
        var headerEnd: Int?
        while headerEnd == nil {
            guard buffer.count < Self.maxHeaderBytes, let more = try? stream.readSome(4096) else {
                if buffer.count >= Self.maxHeaderBytes { respond(stream, 431, "text/plain", "request header too large\n") }
                stream.shutdown()
                return
            }
            buffer += more
            headerEnd = Self.find([13, 10, 13, 10], in: buffer)
        }
        let header = String(decoding: buffer[0..<headerEnd!], as: UTF8.self)
        let rest = Array(buffer[(headerEnd! + 4)...])
        let lines = header.split(separator: "\r\n", omittingEmptySubsequences: false)
        let requestLine = lines.first?.split(separator: " ") ?? []
        guard requestLine.count == 3, requestLine[0] == "GET" else {
            respond(stream, 400, "text/plain", "only GET requests\n")
            stream.shutdown()
            return
        }
        var fields: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].lowercased()] = String(line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" })
        }
        let target = String(requestLine[1])
        let path = String(target.split(separator: "?", maxSplits: 1).first ?? "")
        let vmName = Self.query(target, "vm")
        let console = vmName.flatMap { n in consoles().first { $0.name == n } }
        switch path {
        case "/":
            let items = consoles().map { c in
                "<li><a href=\"/console?vm=\(Self.percentEncoded(c.name))\">\(Self.htmlEscaped(c.name))</a></li>"
            }.joined()
            respond(stream, 200, "text/html; charset=utf-8",
                    "<!doctype html><title>hvhost consoles</title><h1>Consoles</h1><ul>\(items)</ul>\n")
        case "/console":
            guard let console else { respond(stream, 404, "text/plain", "no such VM\n"); break }
            respond(stream, 200, "text/html; charset=utf-8", WebConsolePage.html(title: Self.htmlEscaped(console.name)))
        case "/rfb.js":
            respond(stream, 200, "application/javascript", WebConsolePage.script)
        case "/websocket":
            guard let console else { respond(stream, 404, "text/plain", "no such VM\n"); break }
            guard fields["upgrade"]?.lowercased() == "websocket", let key = fields["sec-websocket-key"] else {
                respond(stream, 400, "text/plain", "expected a WebSocket upgrade\n")
                break
            }
            var reply = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            reply += "Sec-WebSocket-Accept: \(WebSocketTransport.acceptKey(key))\r\n"
            if let protocols = fields["sec-websocket-protocol"], protocols.contains("binary") {
                reply += "Sec-WebSocket-Protocol: binary\r\n"
            }
            guard (try? stream.write(Array((reply + "\r\n").utf8))) != nil else { break }
            console.serve(WebSocketTransport(stream, buffered: rest))
            return
        default:
            respond(stream, 404, "text/plain", "not found\n")
        }
        stream.shutdown()
    }

    private func respond(_ stream: SocketStream, _ status: Int, _ type: String, _ body: String) {
        let reason = [200: "OK", 400: "Bad Request", 404: "Not Found", 431: "Request Header Fields Too Large"][status] ?? ""
        let bytes = Array(body.utf8)
        let head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(type)\r\nContent-Length: \(bytes.count)\r\n"
            + "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
        try? stream.write(Array(head.utf8) + bytes)
    }

    static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
        return nil
    }

    static func query(_ target: String, _ key: String) -> String? {
        guard let q = target.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.first.map(String.init) == key { return percentDecoded(kv.count > 1 ? String(kv[1]) : "") }
        }
        return nil
    }

    static func percentEncoded(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            if (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F || b == 0x2E {
                out.append(Character(Unicode.Scalar(b)))
            } else {
                out += "%" + (b < 16 ? "0" : "") + String(b, radix: 16, uppercase: true)
            }
        }
        return out
    }

    static func percentDecoded(_ s: String) -> String? {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == 0x25 {
                guard it.count >= 2, let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) else { return nil }
                bytes.append(v)
                it = it.dropFirst(2)
            } else {
                bytes.append(b == 0x2B ? 0x20 : b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    static func htmlEscaped(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }
}
