import Glibc
import HVSupport

/// `screenshot VM FILE [nocursor]`: the VM's screen as a PNG (path as the host process
/// sees it; `hvhost console` makes a relative one absolute). The pointer image is
/// blended in, as a VNC client without the cursor pseudo-encoding shows the screen,
/// unless `nocursor` is given (what QEMU's screendump shows).
extension ServiceConsole {
    func registerScreenshotCommands(_ host: VMHost) {
        let usage = "screenshot <vm> <file.png> [nocursor]"
        register("screenshot", summary: "screenshot VM FILE [nocursor]: save the VM's screen as a PNG") { args in
            guard args.count == 2 || (args.count == 3 && args[2] == "nocursor") else { throw CommandError("usage: " + usage) }
            guard let vm = host.vm(named: args[0]) else { throw CommandError("no VM named '\(args[0])'") }
            guard let picture = vm.display.picture(cursor: args.count == 2) else {
                throw CommandError("\(args[0]) shows no picture (no display device, or the guest has it off)")
            }
            let png = PNGEncoder.encode(width: picture.width, height: picture.height, pixels: picture.rgb, format: .rgb)
            let fd = open(args[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw CommandError("\(args[1]): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var written = 0
            while written < png.count {
                let n = png.withUnsafeBytes { write(fd, $0.baseAddress! + written, png.count - written) }
                guard n > 0 else { throw CommandError("\(args[1]): \(String(cString: strerror(errno)))") }
                written += n
            }
            return "\(args[0]): \(picture.width)x\(picture.height) saved to \(args[1])"
        }
    }
}
