/// A minimal PNG encoder: 8-bit RGB, no interlace, every scanline with filter 0, the
/// image data in a zlib stream of stored (uncompressed) deflate blocks with its Adler-32,
/// every chunk with its CRC-32. Output is a valid PNG any decoder reads (RFC 2083,
/// RFC 1950, RFC 1951); it is as large as the raw image, which is fine for charts and
/// screenshots (shared by HVSchedSim and the service console).
package enum ChartPNG {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Encodes `rgb` (width × height × 3 bytes, rows top to bottom) as a PNG file.
    package static func encode(width: Int, height: Int, rgb: [UInt8]) -> [UInt8] {
        precondition(width > 0 && height > 0 && rgb.count == width * height * 3, "rgb must hold width × height × 3 bytes")
        var out = signature
        var ihdr: [UInt8] = []
        ihdr.appendBigEndian(UInt32(width))
        ihdr.appendBigEndian(UInt32(height))
        ihdr += [8, 2, 0, 0, 0]                // depth 8, colour type 2 (RGB), deflate, filter 0, no interlace
        appendChunk("IHDR", ihdr, to: &out)

        var raw: [UInt8] = []
        raw.reserveCapacity((width * 3 + 1) * height)
        for y in 0..<height {
            raw.append(0)                      // filter type None
            raw += rgb[(y * width * 3)..<((y + 1) * width * 3)]
        }
        appendChunk("IDAT", zlibStored(raw), to: &out)
        appendChunk("IEND", [], to: &out)
        return out
    }

    /// A zlib stream (RFC 1950) holding `data` in stored deflate blocks (RFC 1951 §3.2.4).
    static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var z: [UInt8] = [0x78, 0x01]          // CM 8 (deflate), 32 KiB window, no dictionary, FCHECK
        z.reserveCapacity(data.count + data.count / 65535 * 5 + 16)
        var offset = 0
        repeat {
            let n = min(65535, data.count - offset)
            let final: UInt8 = offset + n == data.count ? 1 : 0
            z.append(final)                    // BFINAL, BTYPE 00, padded to the byte
            z.append(UInt8(n & 0xFF)); z.append(UInt8(n >> 8))
            let nn = ~UInt16(n)
            z.append(UInt8(nn & 0xFF)); z.append(UInt8(nn >> 8))
            z += data[offset..<(offset + n)]
            offset += n
        } while offset < data.count
        z.appendBigEndian(adler32(data))
        return z
    }

    static func adler32(_ data: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        var i = 0
        while i < data.count {
            let end = min(data.count, i + 5552)   // the largest run before a,b can overflow
            while i < end {
                a &+= UInt32(data[i])
                b &+= a
                i += 1
            }
            a %= 65521
            b %= 65521
        }
        return b << 16 | a
    }

    private static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// CRC-32 (ISO 3309, as in PNG chunks) of `data`.
    static func crc32<S: Sequence>(_ data: S) -> UInt32 where S.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        for byte in data { c = crcTable[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    private static func appendChunk(_ type: String, _ data: [UInt8], to out: inout [UInt8]) {
        out.appendBigEndian(UInt32(data.count))
        let typeBytes = Array(type.utf8)
        out += typeBytes
        out += data
        out.appendBigEndian(crc32(typeBytes + data))
    }
}

extension Array where Element == UInt8 {
    fileprivate mutating func appendBigEndian(_ v: UInt32) {
        append(UInt8(v >> 24)); append(UInt8((v >> 16) & 0xFF)); append(UInt8((v >> 8) & 0xFF)); append(UInt8(v & 0xFF))
    }
}
