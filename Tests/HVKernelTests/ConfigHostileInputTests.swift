import Foundation
import Glibc
import Testing
@testable import HVKernel
@testable import HVSupport

/// `.vmx` input as an attacker or a careless operator writes it: `|XX` escapes that make
/// NUL and line breaks, files that are not regular or are huge, kernels that are not ELF,
/// and a mutation fuzzer over a complete file (`HV_FUZZ_ITERATIONS`, default 2000).
@Suite struct ConfigHostileInputTests {
    let path = "/vms/evil/evil.vmx"

    private func problems(_ text: String) -> [ConfigError] { VMXFile.parse(text, path: path).problems }

    @Test func escapedNULAndLineBreaksAreRefusedInNamesAndPaths() throws {
        let nul = problems(#"scsi0:0.fileName = "disk.vmdk|00.evil""#)
        #expect(nul.map(\.description) == [#"/vms/evil/evil.vmx:1: a NUL byte (|00) in the value of "scsi0:0.fileName", expected a value without control characters (names and paths cannot hold them)"#])
        let newline = problems("memsize = \"64\"\ndisplayName = \"web|0Aweb02\\t64 MiB\"")
        #expect(newline.count == 1 && newline[0].line == 2)
        #expect(newline[0].description.contains(#"control character U+A (|0A) in the value of "displayName""#))
        let escape = problems("displayName = \"\u{1B}[31mred\"")       // a raw terminal escape
        #expect(escape.count == 1 && escape[0].description.contains("(|1B)"))
        #expect(!escape[0].description.unicodeScalars.contains { $0.isControlCharacter }, "echoed escaped")
        // Free text keeps its line breaks (ESX writes annotations so), but never NUL.
        #expect(problems(#"annotation = "line one|0Aline two""#).isEmpty)
        #expect(try VMXFile(parsing: #"annotation = "a|0Ab""#, path: path)["annotation"] == "a\nb")
        #expect(problems(#"annotation = "a|00b""#).count == 1)
    }

    @Test func everyEchoedValueHasItsControlCharactersEscaped() {
        let e = ConfigError(path: "/x\n.vmx", line: 3, key: "k", value: "a\u{1B}]0;pwned\u{07}b", problem: "bad\r", expected: "good")
        #expect(e.description == #"/x\n.vmx:3: k = "a\u{1B}]0;pwned\u{7}b": bad\r, expected good"#)
    }

    @Test func aConfigurationMustBeARegularFileOfAtMostOneMiB() throws {
        let started = Date()
        for (file, why) in [("/dev/zero", "not a regular file"), ("/tmp", "not a regular file")] {
            let check = VMConfiguration.check(contentsOf: file)
            #expect(check.problems.map(\.description) == ["\(file): cannot read the file (\(why)), expected a readable .vmx file"])
        }
        let fifo = NSTemporaryDirectory() + "hv-fifo-\(getpid())"
        unlink(fifo)
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        #expect(VMConfiguration.check(contentsOf: fifo).problems.first?.description.contains("not a regular file") == true)
        let big = NSTemporaryDirectory() + "hv-big-\(getpid()).vmx"
        defer { unlink(big) }
        #expect(FileManager.default.createFile(atPath: big, contents: Data(count: (1 << 20) + 1)))
        #expect(VMConfiguration.check(contentsOf: big).problems.first?.description.contains("1048577 bytes, larger than 1 MiB") == true)
        #expect(Date().timeIntervalSince(started) < 5, "refused without reading")
    }

    @Test func aHugeKernelThatIsNotELFIsRefusedFromItsHeader() throws {
        let huge = NSTemporaryDirectory() + "hv-huge-kernel-\(getpid())"
        defer { unlink(huge) }
        let fd = open(huge, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        #expect(fd >= 0)
        #expect(ftruncate(fd, 3 << 30) == 0)           // 3 GiB, sparse: all zeros
        close(fd)
        let started = Date()
        #expect(throws: BootError.self) { _ = try ELFImage(contentsOf: huge) }
        do { _ = try ELFImage(contentsOf: huge) } catch { #expect(error.reason == .badMagic) }
        #expect(Date().timeIntervalSince(started) < 2, "refused from its first bytes")
        #expect(throws: BootError.self) { _ = try ELFImage(contentsOf: "/dev/zero") }
    }

    /// An existing file for hv.kernel (the check wants one; it is not read here).
    static let kernel: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path + "/Package.swift"
    }()

    @Test func vmxMutationFuzz() throws {
        let seed = """
            config.version = "8"
            virtualHW.version = "4"
            displayName = "fuzz01"
            memsize = "64"
            numvcpus = "2"
            hv.kernel = "\(Self.kernel)"
            hv.cmdline = "console=ttyS0 seconds=3"
            hv.serial = "file:/tmp/fuzz.log"
            hv.resetLimit = "5/10"
            hv.deviceCallLimit = "100/5000"
            sched.cpu.shares = "high"
            sched.cpu.min = "10"
            sched.cpu.max = "90"
            sched.cpu.affinity = "0,1"
            sched.mem.shares = "normal"
            ethernet0.present = "TRUE"
            ethernet0.virtualDev = "vlance"
            ethernet0.networkName = "VM Network"
            ethernet0.address = "00:50:56:00:00:01"
            scsi0.present = "TRUE"
            scsi0.virtualDev = "lsilogic"
            scsi0:0.present = "TRUE"
            scsi0:0.fileName = "disk.vmdk"
            scsi0:0.mode = "persistent"
            hv.device0.present = "TRUE"
            hv.device0.model = "edu"
            annotation = "a|0Ab"
            """
        let pieces = ["|00", "|0A", "|0D", "|1B", "|22", "|7C", "|", "\"", "=", "#", "\n", "\r\n", "\u{0}", "\u{1B}[2J",
                      "99999999999999999999", "-1", "0x10", "é", "\u{FEFF}", " ", "\t", ":", ".present", "scsi9:99",
                      String(repeating: "A", count: 5000), "hv.device7.model", "ethernet0.address"]
        let iterations = ProcessInfo.processInfo.environment["HV_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 2000
        var rng = UInt64(ProcessInfo.processInfo.environment["HV_FUZZ_SEED"].flatMap(UInt64.init) ?? 0xC0FFEE)
        func next() -> Int {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            return Int(truncatingIfNeeded: rng >> 33)
        }
        let original = Array(seed.unicodeScalars)
        let seedCheck = VMConfiguration.check(file: VMXFile.parse(seed, path: path).file)
        #expect(seedCheck.problems.isEmpty, "the seed is valid: \(seedCheck.problems)")
        var refused = 0, accepted = 0
        let started = Date()
        for _ in 0..<iterations {
            var text = original
            for _ in 0..<(1 + next() % 5) {
                let at = next() % (text.count + 1)
                switch next() % 4 {
                case 0: text.insert(contentsOf: pieces[next() % pieces.count].unicodeScalars, at: at)
                case 1: if at < text.count { text.remove(at: at) }
                case 2: if at < text.count { text[at] = Unicode.Scalar(UInt8(truncatingIfNeeded: next())) }
                default:                                    // duplicate a line elsewhere
                    let lines = String(String.UnicodeScalarView(text)).split(separator: "\n", omittingEmptySubsequences: false)
                    let line = lines[next() % lines.count]
                    text.insert(contentsOf: (String(line) + "\n").unicodeScalars, at: at)
                }
            }
            let check = VMConfiguration.check(file: VMXFile.parse(String(String.UnicodeScalarView(text)), path: path).file)
            if check.configuration == nil { refused += 1 } else { accepted += 1 }
            for p in check.problems {
                let shown = p.description
                #expect(!shown.unicodeScalars.contains { $0.isControlCharacter }, "raw control character in \(shown.debugDescription)")
            }
            if let c = check.configuration {
                #expect(!c.displayName.unicodeScalars.contains { $0.isControlCharacter })
                #expect(!(c.kernelPath ?? "").unicodeScalars.contains { $0.value == 0 })
            }
        }
        print(".vmx fuzz: \(iterations) mutations in \(String(format: "%.2f", Date().timeIntervalSince(started))) s: \(accepted) accepted, \(refused) refused")
        #expect(accepted + refused == iterations)
    }
}
