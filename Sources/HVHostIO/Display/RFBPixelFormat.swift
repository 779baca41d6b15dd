/// Why a remote-console client was dropped.
package struct RFBError: Error, CustomStringConvertible, Equatable {
    let message: String
    init(_ message: String) { self.message = message }
    package var description: String { message }
}

/// A pixel format as RFB's PIXEL_FORMAT describes it (true colour only: colour-map
/// clients are refused, as every client in use today asks for true colour).
struct RFBPixelFormat: Equatable, Sendable {
    var bitsPerPixel: UInt8
    var depth: UInt8
    var bigEndian: Bool
    var redMax: UInt16, greenMax: UInt16, blueMax: UInt16
    var redShift: UInt8, greenShift: UInt8, blueShift: UInt8

    /// What the server offers: 32 bpp, depth 24, little-endian XRGB.
    static let server = RFBPixelFormat(bitsPerPixel: 32, depth: 24, bigEndian: false,
                                       redMax: 255, greenMax: 255, blueMax: 255,
                                       redShift: 16, greenShift: 8, blueShift: 0)

    init(bitsPerPixel: UInt8, depth: UInt8, bigEndian: Bool, redMax: UInt16, greenMax: UInt16, blueMax: UInt16,
         redShift: UInt8, greenShift: UInt8, blueShift: UInt8) {
        (self.bitsPerPixel, self.depth, self.bigEndian) = (bitsPerPixel, depth, bigEndian)
        (self.redMax, self.greenMax, self.blueMax) = (redMax, greenMax, blueMax)
        (self.redShift, self.greenShift, self.blueShift) = (redShift, greenShift, blueShift)
    }

    /// Parses and validates the 16 bytes of a SetPixelFormat message.
    init(bytes b: [UInt8]) throws(RFBError) {
        guard b.count == 16 else { throw RFBError("pixel format of \(b.count) bytes") }
        func u16(_ i: Int) -> UInt16 { UInt16(b[i]) << 8 | UInt16(b[i + 1]) }
        self.init(bitsPerPixel: b[0], depth: b[1], bigEndian: b[2] != 0,
                  redMax: u16(4), greenMax: u16(6), blueMax: u16(8),
                  redShift: b[10], greenShift: b[11], blueShift: b[12])
        guard [8, 16, 32].contains(bitsPerPixel) else { throw RFBError("bits per pixel \(bitsPerPixel) (expected 8, 16 or 32)") }
        guard b[3] != 0 else { throw RFBError("colour-map pixel formats are not supported") }
        for (maxValue, shift) in [(redMax, redShift), (greenMax, greenShift), (blueMax, blueShift)] {
            // A channel must be a contiguous run of bits inside the pixel.
            guard maxValue != 0, maxValue & (maxValue &+ 1) == 0,
                  Int(shift) + (16 - maxValue.leadingZeroBitCount) <= Int(bitsPerPixel) else {
                throw RFBError("colour channel max \(maxValue) shift \(shift) does not fit \(bitsPerPixel) bits per pixel")
            }
        }
    }

    var bytes: [UInt8] {
        [bitsPerPixel, depth, bigEndian ? 1 : 0, 1,
         UInt8(redMax >> 8), UInt8(redMax & 0xFF), UInt8(greenMax >> 8), UInt8(greenMax & 0xFF),
         UInt8(blueMax >> 8), UInt8(blueMax & 0xFF), redShift, greenShift, blueShift, 0, 0, 0]
    }

    var bytesPerPixel: Int { Int(bitsPerPixel) / 8 }

    /// The client's pixel value for 0x00RRGGBB.
    func value(_ xrgb: UInt32) -> UInt32 {
        let r = (xrgb >> 16 & 0xFF) * UInt32(redMax) / 255
        let g = (xrgb >> 8 & 0xFF) * UInt32(greenMax) / 255
        let b = (xrgb & 0xFF) * UInt32(blueMax) / 255
        return r << UInt32(redShift) | g << UInt32(greenShift) | b << UInt32(blueShift)
    }

    /// Appends a pixel in the client's byte order.
    func append(_ xrgb: UInt32, to out: inout [UInt8]) {
        appendValue(value(xrgb), count: bytesPerPixel, to: &out)
    }

    private func appendValue(_ v: UInt32, count: Int, to out: inout [UInt8]) {
        if bigEndian {
            for i in stride(from: count - 1, through: 0, by: -1) { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) }
        } else {
            for i in 0..<count { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) }
        }
    }

    /// ZRLE's compressed pixel (CPIXEL): the three bytes, in the client's byte order,
    /// that hold a 32-bpp, depth ≤ 24 pixel's colour bits; nil when all four are needed.
    var compactBytes: Range<Int>? {
        guard bitsPerPixel == 32, depth <= 24 else { return nil }
        let mask = value(0xFF_FFFF)
        if mask & 0xFF00_0000 == 0 { return bigEndian ? 1..<4 : 0..<3 }
        if mask & 0x0000_00FF == 0 { return bigEndian ? 0..<3 : 1..<4 }
        return nil
    }

    /// Appends a ZRLE CPIXEL.
    func appendCompact(_ xrgb: UInt32, to out: inout [UInt8]) {
        guard let range = compactBytes else { append(xrgb, to: &out); return }
        var four: [UInt8] = []
        four.reserveCapacity(4)
        append(xrgb, to: &four)
        out.append(contentsOf: four[range])
    }
}
