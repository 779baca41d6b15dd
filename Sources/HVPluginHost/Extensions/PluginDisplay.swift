import Glibc
import HVHostIO
import PluginABI

/// The framebuffer a plugin published with set_mode: its memory, which the header
/// keeps valid until the next set_mode returns or the instance is destroyed (the
/// surface copies only in between).
final class PluginFramebuffer: DisplayFramebuffer {
    let base: UnsafeRawPointer

    init(base: UnsafeRawPointer) { self.base = base }

    func copy(into buffer: inout [UInt8]) {
        buffer.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: base, byteCount: $0.count) }
    }
}

/// The runtime ops return HV_EINVAL without logging: their arguments often come from
/// guest-programmed registers, and a guest must not be able to flood the host's log.
extension PluginExtensions {
    static func displayTable() -> hv_display_ext {
        var t = hv_display_ext()
        t.struct_size = UInt32(MemoryLayout<hv_display_ext>.size)
        t.attach = { host in
            guard let d = PluginDevice.from(host), let surface = d.context.display else { return HV_EINVAL }
            guard d.creating else { return d.refuse(HV_EPERM, "display attached after create()") }
            guard surface.attach(publisher: d) else {
                return d.refuse(HV_EBUSY, "another device of the VM is its display already")
            }
            d.resources.withLock { d.extensionReleases.append { [unowned d] in surface.detach(publisher: d) } }
            return HV_OK
        }
        t.set_mode = { host, m in
            guard let surface = PluginExtensions.publishedSurface(host) else { return HV_EPERM }
            guard let m else {
                surface.blank()
                return HV_OK
            }
            let v = m.pointee
            guard v.struct_size >= UInt32(MemoryLayout<hv_display_mode>.size), let framebuffer = v.framebuffer,
                  let format = PixelFormat(rawValue: v.format), v.bits_per_pixel == format.bitsPerPixel,
                  let mode = try? DisplayMode(width: Int(v.width), height: Int(v.height), pitch: Int(v.pitch), format: format)
            else { return HV_EINVAL }
            surface.setMode(mode, framebuffer: PluginFramebuffer(base: framebuffer))
            return HV_OK
        }
        t.set_palette = { host, first, count, colors in
            guard let surface = PluginExtensions.publishedSurface(host) else { return HV_EPERM }
            guard count == 0 || colors != nil, count <= 256 else { return HV_EINVAL }
            let list = count == 0 ? [] : Array(UnsafeBufferPointer(start: colors, count: Int(count)))
            do { try surface.setPalette(first: Int(first), colors: list) } catch { return HV_EINVAL }
            return HV_OK
        }
        t.update = { host, x, y, width, height in
            guard let surface = PluginExtensions.publishedSurface(host) else { return HV_EPERM }
            surface.update(x: UInt64(x), y: UInt64(y), width: UInt64(width), height: UInt64(height))
            return HV_OK
        }
        t.cursor_define = { host, c in
            guard let surface = PluginExtensions.publishedSurface(host) else { return HV_EPERM }
            let limit = UInt32(DisplayCursor.maxDimension)
            guard let v = c?.pointee, v.struct_size >= UInt32(MemoryLayout<hv_display_cursor>.size), let pixels = v.pixels,
                  (1...limit).contains(v.width), (1...limit).contains(v.height) else { return HV_EINVAL }
            let image = Array(UnsafeBufferPointer(start: pixels, count: Int(v.width * v.height)))
            do {
                try surface.defineCursor(width: Int(v.width), height: Int(v.height), hotX: Int(v.hot_x), hotY: Int(v.hot_y),
                                         pixels: image)
            } catch { return HV_EINVAL }
            return HV_OK
        }
        t.cursor_move = { host, x, y in
            guard let surface = PluginExtensions.publishedSurface(host) else { return HV_EPERM }
            do { try surface.moveCursor(x: Int(x), y: Int(y)) } catch { return HV_EINVAL }
            return HV_OK
        }
        t.cursor_show = { host, visible in
            guard let surface = PluginExtensions.publishedSurface(host) else { return HV_EPERM }
            surface.showCursor(visible != 0)
            return HV_OK
        }
        t.copy = { host, srcX, srcY, dstX, dstY, width, height in
            guard let surface = PluginExtensions.publishedSurface(host) else { return HV_EPERM }
            return surface.copy(srcX: UInt64(srcX), srcY: UInt64(srcY), dstX: UInt64(dstX), dstY: UInt64(dstY),
                                width: UInt64(width), height: UInt64(height)) ? HV_OK : HV_EINVAL
        }
        return t
    }

    /// The VM's surface, when the device is its publisher.
    private static func publishedSurface(_ host: OpaquePointer?) -> DisplaySurface? {
        guard let d = PluginDevice.from(host), let surface = d.context.display, surface.isPublisher(d) else { return nil }
        return surface
    }
}
