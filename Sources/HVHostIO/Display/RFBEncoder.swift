import CZlib

/// RFB encoding numbers (rectangle encodings and the pseudo-encodings this server
/// understands).
enum RFBEncoding {
    static let raw: Int32 = 0
    static let copyRect: Int32 = 1
    static let zrle: Int32 = 16
    static let cursor: Int32 = -239
    static let desktopSize: Int32 = -223
    /// QEMU's extended key event: the client sends PC scancodes with its keysyms.
    static let extendedKeyEvent: Int32 = -258
}

/// Encodes rectangles of 0x00RRGGBB pixels for one client: raw, or ZRLE (64×64 tiles,
/// each solid, packed-palette or raw, through one zlib stream that lasts as long as
/// the connection, as the encoding requires).
final class RFBEncoder {
    static let tileSize = 64

    var format = RFBPixelFormat.server
    private var stream = z_stream()
    private var streamReady = false

    init() {}

    deinit {
        if streamReady { deflateEnd(&stream) }
    }

    func raw(_ pixels: [UInt32], into out: inout [UInt8]) {
        out.reserveCapacity(out.count + pixels.count * format.bytesPerPixel)
        for p in pixels { format.append(p, to: &out) }
    }

    /// ZRLE data (the u32 length and the zlib bytes) for a `width`×`height` rectangle.
    func zrle(_ pixels: [UInt32], width: Int, height: Int, into out: inout [UInt8]) throws(RFBError) {
        var plain: [UInt8] = []
        plain.reserveCapacity(pixels.count)
        let t = Self.tileSize
        for ty in stride(from: 0, to: height, by: t) {
            for tx in stride(from: 0, to: width, by: t) {
                let tw = min(t, width - tx), th = min(t, height - ty)
                var tile: [UInt32] = []
                tile.reserveCapacity(tw * th)
                for y in ty..<(ty + th) { tile.append(contentsOf: pixels[(y * width + tx)..<(y * width + tx + tw)]) }
                encodeTile(tile, width: tw, into: &plain)
            }
        }
        let compressed = try deflate(plain)
        let n = UInt32(compressed.count)
        out.append(contentsOf: [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)])
        out.append(contentsOf: compressed)
    }

    private func encodeTile(_ tile: [UInt32], width: Int, into out: inout [UInt8]) {
        var palette: [UInt32] = []
        for p in tile where !palette.contains(p) {
            palette.append(p)
            if palette.count > 16 { break }
        }
        if palette.count == 1 {
            out.append(1)
            format.appendCompact(palette[0], to: &out)
        } else if palette.count <= 16 {
            out.append(UInt8(palette.count))
            for p in palette { format.appendCompact(p, to: &out) }
            let bits = palette.count == 2 ? 1 : palette.count <= 4 ? 2 : 4
            let height = tile.count / width
            for y in 0..<height {
                var byte: UInt8 = 0, used = 0
                for x in 0..<width {
                    let index = UInt8(palette.firstIndex(of: tile[y * width + x])!)
                    byte |= index << UInt8(8 - bits - used)
                    used += bits
                    if used == 8 { out.append(byte); byte = 0; used = 0 }
                }
                if used > 0 { out.append(byte) }
            }
        } else {
            out.append(0)
            for p in tile { format.appendCompact(p, to: &out) }
        }
    }

    private func deflate(_ input: [UInt8]) throws(RFBError) -> [UInt8] {
        if !streamReady {
            guard deflateInit_(&stream, 6, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                throw RFBError("zlib deflateInit failed")
            }
            streamReady = true
        }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var input = input
        var status: Int32 = Z_OK
        input.withUnsafeMutableBufferPointer { inp in
            stream.next_in = inp.baseAddress
            stream.avail_in = UInt32(inp.count)
            repeat {
                chunk.withUnsafeMutableBufferPointer { c in
                    stream.next_out = c.baseAddress
                    stream.avail_out = UInt32(c.count)
                    status = CZlib.deflate(&stream, Z_SYNC_FLUSH)
                    output.append(contentsOf: c[0..<(c.count - Int(stream.avail_out))])
                }
            } while status == Z_OK && stream.avail_out == 0
            stream.next_in = nil
        }
        guard status == Z_OK || status == Z_BUF_ERROR else { throw RFBError("zlib deflate failed (\(status))") }
        return output
    }
}
