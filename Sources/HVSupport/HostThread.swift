import Glibc

/// glibc's pthread_setname_np is not visible through the Glibc module (it needs
/// _GNU_SOURCE); its C signature is stable, so bind it directly.
@_silgen_name("pthread_setname_np")
private func hostSetThreadName(_ thread: pthread_t, _ name: UnsafePointer<CChar>) -> Int32

/// Starts a joinable pthread running `body` (vCPU and service threads need pthread
/// identity for signals and per-thread CPU clocks, which Foundation's Thread hides).
package enum HostThread {
    private final class Box {
        let name: String?
        let body: () -> Void
        init(_ name: String?, _ body: @escaping () -> Void) { self.name = name; self.body = body }
    }

    /// `name` (at most 15 bytes are kept, Linux's limit) shows in `ps -L` and debuggers.
    package static func spawn(name: String? = nil, _ body: @escaping () -> Void) -> pthread_t {
        let box = Unmanaged.passRetained(Box(name, body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            if let name = box.name {
                _ = hostSetThreadName(pthread_self(), String(decoding: name.utf8.prefix(15), as: UTF8.self))
            }
            box.body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(String(cString: strerror(rc)))")
        return tid
    }
}
