import CZlib

/// Encodes 8-bit RGB or RGBA pixels as a PNG file: no interlace, each scanline with the
/// filter (of None, Sub, Up) that makes it smallest, the image data deflated by the
/// system zlib, every chunk with its CRC-32 (RFC 2083). Charts and screenshots use it.
package enum PNGEncoder {
    package enum Format: Sendable {
        case rgb, rgba

        var bytesPerPixel: Int { self == .rgb ? 3 : 4 }
        var colourType: UInt8 { self == .rgb ? 2 : 6 }
    }

    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// `pixels`: width × height × 4 (RGBA) bytes, rows top to bottom.
    package static func encode(width: Int, height: Int, rgba pixels: [UInt8]) -> [UInt8] {
        encode(width: width, height: height, pixels: pixels, format: .rgba)
    }

    /// `pixels`: width × height × 3 (RGB) or × 4 (RGBA) bytes, rows top to bottom.
    package static func encode(width: Int, height: Int, pixels: [UInt8], format: Format) -> [UInt8] {
        let bpp = format.bytesPerPixel
        precondition(width > 0 && height > 0 && pixels.count == width * height * bpp,
                     "pixels must hold width × height × \(bpp) bytes")
        var out = signature
        var ihdr: [UInt8] = []
        ihdr.appendBigEndian(UInt32(width))
        ihdr.appendBigEndian(UInt32(height))
        ihdr += [8, format.colourType, 0, 0, 0]    // depth 8, deflate, adaptive filtering, no interlace
        appendChunk("IHDR", ihdr, to: &out)
        appendChunk("IDAT", deflate(filtered(width: width, height: height, pixels: pixels, bpp: bpp)), to: &out)
        appendChunk("IEND", [], to: &out)
        return out
    }

    /// Scanlines, each prefixed by its filter type: the one of None (0), Sub (1) and Up
    /// (2) with the smallest sum of absolute residuals (the usual heuristic).
    static func filtered(width: Int, height: Int, pixels: [UInt8], bpp: Int) -> [UInt8] {
        let stride = width * bpp
        var raw: [UInt8] = []
        raw.reserveCapacity((stride + 1) * height)
        var sub = [UInt8](repeating: 0, count: stride), up = sub
        for y in 0..<height {
            let row = y * stride
            var costNone = 0, costSub = 0, costUp = 0
            for i in 0..<stride {
                let x = pixels[row + i]
                let left = i >= bpp ? pixels[row + i - bpp] : 0
                let above = y > 0 ? pixels[row - stride + i] : 0
                sub[i] = x &- left
                up[i] = x &- above
                costNone += Int(Int8(bitPattern: x).magnitude)
                costSub += Int(Int8(bitPattern: sub[i]).magnitude)
                costUp += Int(Int8(bitPattern: up[i]).magnitude)
            }
            if costSub <= costUp && costSub < costNone {
                raw.append(1); raw += sub
            } else if costUp < costNone {
                raw.append(2); raw += up
            } else {
                raw.append(0); raw += pixels[row..<(row + stride)]
            }
        }
        return raw
    }

    /// A zlib stream (RFC 1950) of `data` at the best compression.
    static func deflate(_ data: [UInt8]) -> [UInt8] {
        var size = compressBound(uLong(data.count))
        var out = [UInt8](repeating: 0, count: Int(size))
        let rc = out.withUnsafeMutableBufferPointer { dst in
            data.withUnsafeBufferPointer { src in
                compress2(dst.baseAddress, &size, src.baseAddress, uLong(src.count), Z_BEST_COMPRESSION)
            }
        }
        precondition(rc == Z_OK, "zlib compress2 failed (\(rc)) with a buffer of compressBound bytes")
        out.removeSubrange(Int(size)...)
        return out
    }

    /// CRC-32 (ISO 3309, as in PNG chunks), zlib's.
    package static func crc32<S: Sequence>(_ data: S) -> UInt32 where S.Element == UInt8 {
        let bytes = Array(data)
        return bytes.withUnsafeBufferPointer { UInt32(CZlib.crc32(0, $0.baseAddress, uInt($0.count))) }
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
