/// The VMware absolute pointer ("vmmouse") behind the backdoor port 0x5658, as the
/// Linux `vmmouse` psmouse protocol and Xorg's vmmouse driver use it: the guest enables
/// it with ABSPOINTER_COMMAND, polls ABSPOINTER_STATUS for the queue length and reads
/// 4-word packets (flags + buttons, x, y, wheel) with ABSPOINTER_DATA. x and y span
/// 0...0xFFFF across the screen. Each packet is signalled with a PS/2 mouse packet that
/// reports nothing (``I8042/mouseNudge()``), which is what runs the guest's driver.
///
/// Not thread-safe: the chipset serialises every call.
final class VMMouse {
    /// Backdoor command numbers (ECX bits 15..0).
    enum Command {
        static let data: UInt16 = 39
        static let status: UInt16 = 40
        static let command: UInt16 = 41
    }

    /// ABSPOINTER_COMMAND subcommands (EBX).
    enum Request {
        static let enable: UInt32 = 0x4541_4552
        static let disable: UInt32 = 0x0000_00F5
        static let relative: UInt32 = 0x4C45_5252
        static let absolute: UInt32 = 0x5342_4152
    }

    static let version: UInt32 = 0x3442_554A
    static let errorStatus: UInt16 = 0xFFFF
    static let relativePacket: UInt32 = 0x0001_0000
    /// Words queued; a whole packet is dropped when it does not fit.
    static let queueCapacity = 256
    /// One ABSPOINTER_DATA call returns at most this many words (EAX..EDI).
    static let maxRead = 6

    var queue: [UInt32] = []
    /// 0 while enabled, 0xFFFF disabled or after a bad read.
    var status: UInt16 = errorStatus
    var absolute = false

    func reset() {
        queue.removeAll()
        status = Self.errorStatus
        absolute = false
    }

    /// Whether the guest enabled it and asked for absolute packets.
    var takesAbsolute: Bool { status == 0 && absolute }

    /// ABSPOINTER_STATUS: the error status in bits 31..16, queued words in 15..0.
    func readStatus() -> UInt32 {
        UInt32(status) << 16 | UInt32(queue.count)
    }

    /// ABSPOINTER_DATA for `count` words; nil (and the error status) for a count of 0,
    /// above ``maxRead`` or above what is queued.
    func read(count: UInt32) -> [UInt32]? {
        guard count >= 1, count <= UInt32(Self.maxRead), count <= UInt32(queue.count) else {
            status = Self.errorStatus
            return nil
        }
        let words = Array(queue.prefix(Int(count)))
        queue.removeFirst(Int(count))
        return words
    }

    /// ABSPOINTER_COMMAND `request` (EBX); unknown requests are ignored.
    func command(_ request: UInt32) {
        switch request {
        case Request.enable:
            // The guest confirms the device by reading the version back.
            queue.removeAll()
            queue.append(Self.version)
            status = 0
        case Request.disable:
            queue.removeAll()
            status = Self.errorStatus
            absolute = false
        case Request.absolute: absolute = true
        case Request.relative: absolute = false
        default: break
        }
    }

    /// An absolute pointer event (x, y 0...0xFFFF; `wheel` positive away from the user;
    /// `buttons` left 1, right 2, middle 4). False unless the guest takes absolute
    /// packets; true (taken) when the queue is full and the packet dropped.
    func pointer(x: UInt32, y: UInt32, wheel: Int, buttons: UInt8) -> Bool {
        guard takesAbsolute else { return false }
        guard queue.count + 4 <= Self.queueCapacity else { return true }
        var flags: UInt32 = 0
        if buttons & 0x01 != 0 { flags |= 0x20 }
        if buttons & 0x02 != 0 { flags |= 0x10 }
        if buttons & 0x04 != 0 { flags |= 0x08 }
        // The guest negates the wheel byte: positive there is towards the user.
        let z = UInt32(UInt8(truncatingIfNeeded: -max(-127, min(127, wheel))))
        queue.append(contentsOf: [flags, min(x, 0xFFFF), min(y, 0xFFFF), z])
        return true
    }
}
