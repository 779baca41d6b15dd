// Register, capability and command numbers of the VMware SVGA II device, as Linux
// vmwgfx (svga_reg.h), QEMU's vmware_vga.c and X.org's vmware driver use them.

/// Offsets in the I/O BAR (BAR0).
enum SVGAPort {
    static let index: UInt64 = 0
    static let value: UInt64 = 1
    static let bios: UInt64 = 2
    static let irqStatus: UInt64 = 8
    static let size: UInt64 = 0x10
}

/// SVGA_REG_* indices written to the index port.
enum SVGAReg {
    static let id: UInt32 = 0
    static let enable: UInt32 = 1
    static let width: UInt32 = 2
    static let height: UInt32 = 3
    static let maxWidth: UInt32 = 4
    static let maxHeight: UInt32 = 5
    static let depth: UInt32 = 6
    static let bitsPerPixel: UInt32 = 7
    static let pseudoColor: UInt32 = 8
    static let redMask: UInt32 = 9
    static let greenMask: UInt32 = 10
    static let blueMask: UInt32 = 11
    static let bytesPerLine: UInt32 = 12
    static let fbStart: UInt32 = 13
    static let fbOffset: UInt32 = 14
    static let vramSize: UInt32 = 15
    static let fbSize: UInt32 = 16
    static let capabilities: UInt32 = 17
    static let memStart: UInt32 = 18
    static let memSize: UInt32 = 19
    static let configDone: UInt32 = 20
    static let sync: UInt32 = 21
    static let busy: UInt32 = 22
    static let guestID: UInt32 = 23
    static let cursorID: UInt32 = 24
    static let cursorX: UInt32 = 25
    static let cursorY: UInt32 = 26
    static let cursorOn: UInt32 = 27
    static let hostBitsPerPixel: UInt32 = 28
    static let scratchSize: UInt32 = 29
    static let memRegs: UInt32 = 30
    static let numDisplays: UInt32 = 31
    static let pitchlock: UInt32 = 32
    static let irqMask: UInt32 = 33
    /// SVGA_PALETTE_BASE: 256 entries of red, green, blue (one register each).
    static let paletteBase: UInt32 = 1024
    static let paletteCount: UInt32 = 768
    static let scratchBase: UInt32 = paletteBase + paletteCount
    static let scratchCount: UInt32 = 64
}

/// SVGA_ID_n: what the guest writes to SVGA_REG_ID to negotiate a version.
enum SVGAVersion {
    static let magic: UInt32 = 0x900000
    static let id0: UInt32 = magic << 8 | 0
    static let id1: UInt32 = magic << 8 | 1
    static let id2: UInt32 = magic << 8 | 2
    /// Written to SVGA_REG_ID when the guest asks for a version newer than id2.
    static let invalid: UInt32 = 0xFFFF_FFFF
}

/// SVGA_CAP_* in SVGA_REG_CAPABILITIES.
enum SVGACap {
    static let rectFill: UInt32 = 0x1
    static let rectCopy: UInt32 = 0x2
    static let cursor: UInt32 = 0x20
    static let cursorBypass: UInt32 = 0x40
    static let cursorBypass2: UInt32 = 0x80
    static let emulation8Bit: UInt32 = 0x100
    static let alphaCursor: UInt32 = 0x200
    static let extendedFIFO: UInt32 = 0x8000
    static let pitchlock: UInt32 = 0x20000
    static let irqMask: UInt32 = 0x40000
}

/// SVGA_IRQFLAG_* in the IRQ status port and SVGA_REG_IRQMASK.
enum SVGAIRQ {
    static let anyFence: UInt32 = 0x1
    static let fifoProgress: UInt32 = 0x2
    static let fenceGoal: UInt32 = 0x4
    static let all: UInt32 = 0x7
}

/// SVGA_FIFO_* register indices (32-bit words at the start of the FIFO BAR).
enum SVGAFIFOReg {
    static let min = 0
    static let max = 1
    static let nextCmd = 2
    static let stop = 3
    static let capabilities = 4
    static let flags = 5
    static let fence = 6
    static let hwVersion3D = 7
    static let pitchlock = 8
    static let cursorOn = 9
    static let cursorX = 10
    static let cursorY = 11
    static let cursorCount = 12
    static let cursorLastUpdated = 13
    static let busy = 290
    static let fenceGoal = 289
    /// The four registers before the command area a guest must leave room for.
    static let minimumMin: UInt32 = 4 * 4
}

/// SVGA_FIFO_CAP_*.
enum SVGAFIFOCap {
    static let fence: UInt32 = 0x1
    static let pitchlock: UInt32 = 0x4
    static let cursorBypass3: UInt32 = 0x10
}

/// SVGA_CMD_* opcodes and their argument counts in 32-bit words.
enum SVGACmd {
    static let update: UInt32 = 1            // x, y, width, height
    static let rectFill: UInt32 = 2          // color, x, y, width, height
    static let rectCopy: UInt32 = 3          // srcX, srcY, dstX, dstY, width, height
    static let defineCursor: UInt32 = 19     // id, hotX, hotY, width, height, andDepth, xorDepth, masks
    static let displayCursor: UInt32 = 20    // id, state
    static let moveCursor: UInt32 = 21       // x, y
    static let defineAlphaCursor: UInt32 = 22 // id, hotX, hotY, width, height, width*height ARGB
    static let updateVerbose: UInt32 = 25    // x, y, width, height, reason
    static let fence: UInt32 = 30            // fence id
}
