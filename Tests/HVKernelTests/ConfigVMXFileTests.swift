import Testing
@testable import HVBackendKVM
@testable import HVDevices
@testable import HVHostIO
@testable import HVKernel
@testable import HVMemory
@testable import HVSched
@testable import HVSupport

@Suite struct ConfigVMXFileTests {
    let path = "/vms/web01/web01.vmx"

    func parse(_ text: String) throws -> VMXFile { try VMXFile(parsing: text, path: path) }

    /// The only problem parsing `text` (nil when it parses; a failure when there are more).
    func parseError(_ text: String) -> ConfigError? {
        do {
            _ = try VMXFile(parsing: text, path: path)
            return nil
        } catch {
            #expect(error.errors.count == 1, "\(error)")
            return error.errors.first
        }
    }

    @Test func parsesKeysValuesAndLines() throws {
        let f = try parse("""
            #!/usr/bin/vmware
            config.version = "6"
            displayName = "web 01"

            memSize = "256"
            scsi0:0.fileName = "/vmfs/vmhba0:0:0:5/web01.vmdk"
            """)
        #expect(f.entries.count == 4)
        #expect(f.value(forKey: "MEMSIZE") == "256")
        #expect(f["memsize"] == "256")
        let e = try #require(f.entry(forKey: "memsize"))
        #expect(e.key == "memSize")
        #expect(e.normalizedKey == "memsize")
        #expect(e.line == 5)
        #expect(e.path == path)
        #expect(e.location == "/vms/web01/web01.vmx:5")
        #expect(f.value(forKey: "displayname") == "web 01")
        #expect(f.value(forKey: "SCSI0:0.FILENAME") == "/vmfs/vmhba0:0:0:5/web01.vmdk")
        #expect(f.entries.map(\.line) == [2, 3, 5, 6])
        #expect(f.value(forKey: "absent") == nil)
    }

    @Test func commentsAreSkippedButHashInsideQuotesIsKept() throws {
        let f = try parse("""
            # whole-line comment
               # indented comment
            guestOS = "linux" # trailing comment
            annotation = "build #42"   #comment
            a = "x"#no space
            """)
        #expect(f.entries.count == 3)
        #expect(f["guestOS"] == "linux")
        #expect(f["annotation"] == "build #42")
        #expect(f["a"] == "x")
    }

    @Test func crlfLineEnds() throws {
        let f = try parse("memsize = \"128\"\r\n\r\n# c\r\nnumvcpus = 2\r\nguestOS = \"other\"")
        #expect(f["memsize"] == "128")
        #expect(f["numvcpus"] == "2")
        #expect(f.entry(forKey: "numvcpus")?.line == 4)
        #expect(f.entry(forKey: "guestOS")?.line == 5)
        #expect(f.entries.allSatisfy { !$0.value.contains("\r") })
    }

    @Test func unquotedAndEmptyValues() throws {
        let f = try parse("""
            memsize = 256
            numvcpus=2   # two
            displayName =   My VM
            empty = ""
            bare =
            """)
        #expect(f["memsize"] == "256")
        #expect(f["numvcpus"] == "2")
        #expect(f["displayName"] == "My VM")
        #expect(f["empty"] == "")
        #expect(f["bare"] == "")
    }

    @Test func byteOrderMarkAndEmptyFile() throws {
        #expect(try parse("\u{FEFF}memsize = \"4\"")["memsize"] == "4")
        #expect(try parse("").entries.isEmpty)
        #expect(try parse("\n\n").entries.isEmpty)
    }

    @Test func vmwareEscapes() throws {
        let f = try parse(#"""
            a = "say |22hi|22"
            b = "pipe |7C and |zz and end|"
            c = "caf|C3|A9"
            """#)
        #expect(f["a"] == "say \"hi\"")
        #expect(f["b"] == "pipe | and |zz and end|")
        #expect(f["c"] == "café")
    }

    @Test func missingEquals() throws {
        let e = try #require(parseError("memsize = \"4\"\nnumvcpus \"2\""))
        #expect(e.line == 2)
        #expect(e.description.hasPrefix("/vms/web01/web01.vmx:2: missing \"=\""))
        #expect(e.description.contains(", expected key = \"value\""))
    }

    @Test func unterminatedQuote() throws {
        let e = try #require(parseError("displayName = \"web01\nmemsize = \"4\""))
        #expect(e.line == 1)
        #expect(e.description == "/vms/web01/web01.vmx:1: unterminated quote in the value of \"displayName\", expected a closing '\"'")
    }

    @Test func emptyKey() throws {
        let e = try #require(parseError("\n  = \"4\""))
        #expect(e.line == 2)
        #expect(e.description.hasPrefix("/vms/web01/web01.vmx:2: empty key"))
        #expect(e.description.contains("expected "))
    }

    @Test func badCharactersInKey() throws {
        let e = try #require(parseError("mem size = \"4\""))
        #expect(e.description.hasPrefix("/vms/web01/web01.vmx:1: bad character a space in key \"mem size\""))
        let e2 = try #require(parseError("ok = 1\nscsi0[0].fileName = \"x\""))
        #expect(e2.line == 2)
        #expect(e2.description.contains("'['"))
        #expect(e2.description.contains("expected a key of letters, digits"))
    }

    @Test func textAfterClosingQuote() throws {
        let e = try #require(parseError("memsize = \"4\" MB"))
        #expect(e.line == 1)
        #expect(e.description.contains("after the closing quote"))
        #expect(e.description.contains("expected end of line or a '#' comment"))
    }

    @Test func strayQuoteInUnquotedValue() throws {
        let e = try #require(parseError("memsize = 4\""))
        #expect(e.description.hasPrefix("/vms/web01/web01.vmx:1: stray"))
    }

    @Test func duplicateKeyNamesBothLines() throws {
        let e = try #require(parseError("""
            memsize = "256"
            numvcpus = "1"
            MemSize = "512"
            """))
        #expect(e.line == 3)
        #expect(e.key == "MemSize")
        #expect(e.description.hasPrefix("/vms/web01/web01.vmx:3: MemSize = \"512\": duplicate key, already set on line 1"))
        #expect(e.description.contains("memsize = \"256\""))
    }

    @Test func unreadableFile() throws {
        do {
            _ = try VMXFile(contentsOf: "/nonexistent/dir/x.vmx")
            Issue.record("expected an error")
        } catch {
            #expect(error.errors.count == 1)
            #expect(error.description.hasPrefix("/nonexistent/dir/x.vmx: cannot read the file"))
            #expect(error.errors[0].line == nil)
        }
        let (file, problems) = VMXFile.read(contentsOf: "/nonexistent/dir/x.vmx")
        #expect(file == nil)
        #expect(problems.map(\.line) == [nil])
    }

    /// Every bad line is reported, in file order, and the good lines around them are kept.
    @Test func everySyntaxErrorIsReportedAndGoodLinesKept() throws {
        let text = """
            memsize = "64"
            numvcpus "2"
            displayName = "web01
            guestOS = "linux"
            mem size = 4
            MemSize = "128"
            annotation = "a" b
            """
        let (file, problems) = VMXFile.parse(text, path: path)
        #expect(problems.map(\.line) == [2, 3, 5, 6, 7])
        #expect(problems[0].description.hasPrefix("\(path):2: missing \"=\""))
        #expect(problems[1].description.hasPrefix("\(path):3: unterminated quote in the value of \"displayName\""))
        #expect(problems[2].description.hasPrefix("\(path):5: bad character a space in key \"mem size\""))
        #expect(problems[3].description.hasPrefix("\(path):6: MemSize = \"128\": duplicate key, already set on line 1"))
        #expect(problems[4].description.hasPrefix("\(path):7: unexpected 'b' after the closing quote of \"annotation\""))
        #expect(problems.allSatisfy { $0.description.contains(", expected ") })
        #expect(file.entries.map(\.key) == ["memsize", "guestOS"])
        #expect(file["memsize"] == "64")
        // The throwing initializer reports the same list.
        do {
            _ = try VMXFile(parsing: text, path: path)
            Issue.record("expected an error")
        } catch {
            #expect(error.errors == problems)
            #expect(error.description.split(separator: "\n").count == 5)
        }
    }

    @Test func prefixLookup() throws {
        let f = try parse("ethernet0.present = TRUE\nEthernet0.Foo = bar\nethernet01.x = y\nscsi0.present = 1")
        #expect(f.entries(withPrefix: "ETHERNET0.").map(\.key) == ["ethernet0.present", "Ethernet0.Foo"])
    }
}
