/// A PS/2 mouse behind the 8042's auxiliary port: stream and remote mode, 3-byte
/// packets (4 with the IntelliMouse wheel, ID 3, switched on by the sample-rate knock
/// 200, 100, 80), wrap (echo) mode, 1:1 and 2:1 scaling.
///
/// Commands: 0xFF reset (FA AA 00), 0xFE resend, 0xF6 defaults, 0xF5 disable,
/// 0xF4 enable, 0xF3 sample rate (10, 20, 40, 60, 80, 100, 200; others 0xFE),
/// 0xF2 identify, 0xF0 remote mode, 0xEE wrap, 0xEC end wrap, 0xEB read data,
/// 0xEA stream mode, 0xE9 status, 0xE8 resolution (0-3; others 0xFE),
/// 0xE7 / 0xE6 scaling 2:1 / 1:1. Unknown bytes get 0xFE.
///
/// Not thread-safe: the 8042 (and through it the chipset) serialises every call.
final class PS2Mouse {
    /// Bytes held for the controller: whole packets only, so a full queue delays motion
    /// (it accumulates) instead of splitting a packet.
    static let queueCapacity = 64
    static let sampleRates: Set<UInt8> = [10, 20, 40, 60, 80, 100, 200]

    var queue: [UInt8] = []
    var streaming = true
    var enabled = false
    var wrap = false
    var scaling21 = false
    var resolution: UInt8 = 2
    var sampleRate: UInt8 = 100
    /// 0 (standard) or 3 (IntelliMouse wheel).
    var deviceID: UInt8 = 0
    var recentRates: [UInt8] = []
    var pendingCommand: UInt8?
    var lastSent: UInt8 = 0xFA
    /// Left, right, middle (packet bits 0..2).
    var buttons: UInt8 = 0
    var dx = 0, dy = 0, dz = 0
    var buttonsChanged = false

    func reset() {
        queue.removeAll(keepingCapacity: true)
        pendingCommand = nil
        setDefaults()
        wrap = false
        deviceID = 0
        recentRates.removeAll()
        buttons = 0
    }

    private func setDefaults() {
        streaming = true
        enabled = false
        scaling21 = false
        resolution = 2
        sampleRate = 100
        dx = 0; dy = 0; dz = 0
        buttonsChanged = false
    }

    var packetSize: Int { deviceID == 3 ? 4 : 3 }

    func take() -> UInt8? {
        guard !queue.isEmpty else { return nil }
        let b = queue.removeFirst()
        lastSent = b
        flushMotion()
        return b
    }

    private func reply(_ bytes: UInt8...) {
        for b in bytes where queue.count < Self.queueCapacity { queue.append(b) }
    }

    /// Motion from the host: `dy` positive downwards (screen sense), `wheel` positive
    /// away from the user, `buttons` left 1, right 2, middle 4. False while the guest
    /// has not enabled streaming (the event is not taken).
    func motion(dx: Int, dy: Int, wheel: Int, buttons newButtons: UInt8) -> Bool {
        guard enabled, streaming, !wrap else { return false }
        // Bounded accumulation: a guest that never reads cannot make these grow.
        let limit = 1 << 20
        self.dx = max(-limit, min(limit, self.dx + dx))
        self.dy = max(-limit, min(limit, self.dy - dy))
        dz = max(-limit, min(limit, dz - wheel))
        if newButtons & 0x07 != buttons { buttonsChanged = true }
        buttons = newButtons & 0x07
        flushMotion()
        return true
    }

    /// Queues a packet even without motion (see ``I8042/mouseNudge()``).
    func nudge() {
        guard enabled, streaming, !wrap else { return }
        buttonsChanged = true
        flushMotion()
    }

    /// Queues packets for the accumulated motion while whole packets fit.
    func flushMotion() {
        guard enabled, streaming, !wrap else { return }
        while (dx != 0 || dy != 0 || dz != 0 || buttonsChanged),
              queue.count + packetSize <= Self.queueCapacity {
            queue.append(contentsOf: packet())
        }
    }

    /// One packet from the accumulated motion, consuming what it reports.
    private func packet() -> [UInt8] {
        func part(_ v: inout Int, _ lo: Int, _ hi: Int) -> Int {
            let p = max(lo, min(hi, v))
            v -= p
            return p
        }
        var x = part(&dx, -255, 255), y = part(&dy, -255, 255)
        let z = part(&dz, -8, 7)
        if scaling21 { x = Self.scaled(x); y = Self.scaled(y) }
        x = max(-255, min(255, x)); y = max(-255, min(255, y))
        buttonsChanged = false
        var b0: UInt8 = 0x08 | buttons
        if x < 0 { b0 |= 0x10 }
        if y < 0 { b0 |= 0x20 }
        var p: [UInt8] = [b0, UInt8(truncatingIfNeeded: x), UInt8(truncatingIfNeeded: y)]
        if deviceID == 3 { p.append(UInt8(truncatingIfNeeded: z)) }
        return p
    }

    /// 2:1 scaling as PS/2 mice apply it to each report.
    static func scaled(_ v: Int) -> Int {
        let table = [0, 1, 1, 3, 6, 9]
        let m = abs(v)
        let s = m < table.count ? table[m] : 2 * m
        return v < 0 ? -s : s
    }

    /// A byte the guest sent to the mouse (controller command 0xD4).
    func write(_ value: UInt8) {
        if let command = pendingCommand {
            pendingCommand = nil
            parameter(command, value)
            return
        }
        if wrap, value != 0xEC, value != 0xFF {
            reply(value)
            return
        }
        switch value {
        case 0xFF:
            reset()
            reply(0xFA, 0xAA, 0x00)
        case 0xFE:
            reply(lastSent)
        case 0xF6:
            setDefaults()
            reply(0xFA)
        case 0xF5:
            enabled = false
            reply(0xFA)
        case 0xF4:
            enabled = true
            reply(0xFA)
        case 0xF3, 0xE8:
            pendingCommand = value
            reply(0xFA)
        case 0xF2:
            reply(0xFA, deviceID)
        case 0xF0:
            streaming = false
            reply(0xFA)
        case 0xEE:
            wrap = true
            reply(0xFA)
        case 0xEC:
            wrap = false
            reply(0xFA)
        case 0xEB:
            reply(0xFA)
            if queue.count + packetSize <= Self.queueCapacity { queue.append(contentsOf: packet()) }
        case 0xEA:
            streaming = true
            reply(0xFA)
        case 0xE9:
            var status: UInt8 = buttons & 0x01 != 0 ? 0x04 : 0   // left
            if buttons & 0x04 != 0 { status |= 0x02 }              // middle
            if buttons & 0x02 != 0 { status |= 0x01 }              // right
            if scaling21 { status |= 0x10 }
            if enabled { status |= 0x20 }
            if !streaming { status |= 0x40 }
            reply(0xFA, status, resolution, sampleRate)
        case 0xE7:
            scaling21 = true
            reply(0xFA)
        case 0xE6:
            scaling21 = false
            reply(0xFA)
        default:
            reply(0xFE)
        }
    }

    private func parameter(_ command: UInt8, _ value: UInt8) {
        switch command {
        case 0xF3:
            guard Self.sampleRates.contains(value) else { reply(0xFE); return }
            sampleRate = value
            recentRates = Array((recentRates + [value]).suffix(3))
            if recentRates == [200, 100, 80] { deviceID = 3 }
            reply(0xFA)
        case 0xE8:
            guard value <= 3 else { reply(0xFE); return }
            resolution = value
            reply(0xFA)
        default:
            reply(0xFE)
        }
    }
}
