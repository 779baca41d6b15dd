import Foundation

/// Builds the C probe plugins of Fixtures/ into a per-process directory, as a plugin
/// author would: `cc -shared` against the ABI header (or the frozen 1.0 copy).
enum ProbeFixtures {
    static let repoRoot: String = {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        return root.path
    }()
    static let fixtures = repoRoot + "/Tests/HVPluginHostTests/Fixtures"
    static let currentHeaders = repoRoot + "/Sources/PluginABI/include"
    static let frozen10Headers = fixtures + "/abi-1.0"

    /// Compiles `Fixtures/<source>` into `lib<name>.so` for each (include dir, name) and
    /// returns the directory. A failed compile leaves the library out; the test that
    /// looks the model up then fails naming it.
    static func build(_ source: String, into tag: String, std: String = "c99",
                      variants: [(include: String, name: String)], defineName: Bool = false) -> String {
        let out = NSTemporaryDirectory() + "hv-\(tag)-\(getpid())"
        try? FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        for v in variants {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
            p.arguments = ["-std=\(std)", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-I", v.include]
                + (defineName ? ["-DPROBE_NAME=\"\(v.name)\""] : [])
                + ["-o", out + "/lib\(v.name).so", fixtures + "/" + source]
            try? p.run()
            p.waitUntilExit()
        }
        return out
    }
}
