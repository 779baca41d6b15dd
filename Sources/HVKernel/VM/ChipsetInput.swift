import HVDevices
import HVHostIO
import HVSupport

/// The chipset's keyboard and pointers as the VM's last input client: keys go to the
/// PS/2 keyboard; an absolute pointer event goes to the VMware absolute pointer when
/// the guest enabled it, else becomes PS/2 relative motion from the previous absolute
/// position (in screen pixels, so the guest's pointer follows at its own acceleration);
/// relative events go to the PS/2 mouse.
final class ChipsetInput: InputClient {
    private let chipset: Chipset
    private let display: DisplaySurface
    /// The last absolute position in screen pixels, for the PS/2 fallback.
    private let lastPosition = HostLocked<(x: Int, y: Int)?>(nil)

    init(chipset: Chipset, display: DisplaySurface) {
        self.chipset = chipset
        self.display = display
    }

    func key(scancode: UInt32, pressed: Bool) -> Bool {
        chipset.keyboardKey(scancode, pressed: pressed)
    }

    func pointer(_ event: PointerEvent) -> Bool {
        let buttons = UInt8(truncatingIfNeeded: event.buttons.rawValue & 0x07)
        let wheel = Int(event.wheel)
        switch event.kind {
        case .relative:
            return chipset.pointerMotion(dx: Int(event.x), dy: Int(event.y), wheel: wheel, buttons: buttons)
        case .absolute:
            if chipset.pointerAbsolute(x: UInt32(event.x), y: UInt32(event.y), wheel: wheel, buttons: buttons) {
                return true
            }
            let mode = display.mode
            let px = Int(event.x) * (mode?.width ?? 640) / 0x10000
            let py = Int(event.y) * (mode?.height ?? 480) / 0x10000
            let previous = lastPosition.withLock { last in
                defer { last = (px, py) }
                return last
            }
            let (dx, dy) = previous.map { (px - $0.x, py - $0.y) } ?? (0, 0)
            return chipset.pointerMotion(dx: dx, dy: dy, wheel: wheel, buttons: buttons)
        }
    }
}
