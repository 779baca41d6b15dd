import Foundation
import Logging
import Testing
@testable import HVBackendKVM
@testable import HVDevices
@testable import HVHostIO
@testable import HVKernel
@testable import HVMemory
@testable import HVSched
@testable import HVSupport

/// The VM side of scheduling: registration (pool, affinity, admission control, errors
/// naming the .vmx key), `sched set`, the console commands, and the AP start-up state.
@Suite struct SchedulerVMTests {
    private static let kernel: String = {
        let path = NSTemporaryDirectory() + "sched-vm-tests-kernel.elf"
        FileManager.default.createFile(atPath: path, contents: Data([0x7F, 0x45, 0x4C, 0x46]))
        return path
    }()

    private func config(_ text: String, name: String = "vm") throws -> VMConfiguration {
        try VMConfiguration(file: VMXFile(parsing: "displayName = \(name)\nmemsize = 64\nhv.kernel = \(Self.kernel)\n" + text,
                                          path: "\(name).vmx"))
    }

    private func scheduler(_ pcpus: String = "2", _ pools: [String] = []) throws -> Scheduler {
        try Scheduler(configuration: .parse(pcpus: pcpus, pools: pools, hostCPUs: 2), logger: Logger(label: "t"))
    }

    @Test func registrationTurnsSchedCPUKeysIntoPerVCPUParams() throws {
        let s = try scheduler("2", ["default:0", "batch:1"])
        let vm = try s.register(config("numvcpus = 2\nsched.cpu.shares = high\nsched.cpu.min = 20\nsched.cpu.max = 80\nsched.cpu.affinity = 1\nhv.sched.pool = batch"))
        #expect(vm.pool.name == "batch")
        #expect(vm.vcpuCount == 2)
        // high = 2000 per vCPU; affinity to host-wide slot 1 = pool-local slot 0.
        #expect(s.params(of: vm) == SchedulerParams(shares: 2000, minPercent: 20, maxPercent: 80, affinity: 0b1))
        defer { s.stop() }
    }

    @Test func errorsNameTheVMXKey() throws {
        let s = try scheduler("2", ["default:0", "batch:1"])
        defer { s.stop() }
        #expect { try s.register(config("hv.sched.pool = gpu")) } throws: {
            "\($0)".contains("vm.vmx:4: hv.sched.pool = \"gpu\": no scheduler pool 'gpu' on this host; pools: default, batch")
        }
        #expect { try s.register(config("sched.cpu.affinity = 1")) } throws: {
            "\($0)".contains("sched.cpu.affinity = \"1\": none of these pCPU slots is in pool 'default'")
        }
    }

    @Test func admissionControlRefusesAReservationBeyondThePool() throws {
        let s = try scheduler("1")
        defer { s.stop() }
        let a = try s.register(config("sched.cpu.min = 60", name: "a"))
        #expect { try s.register(config("sched.cpu.min = 50", name: "b")) } throws: {
            "\($0)".contains("b.vmx:4: sched.cpu.min = \"50\": pool 'default' cannot reserve 50% for VM 'b': 60% of its 100%")
        }
        s.unregister(a)
        _ = try s.register(config("sched.cpu.min = 50", name: "b"))
    }

    @Test func schedSetChangesParamsOfRunningVCPUsAndOfLaterOnes() throws {
        let s = try scheduler("1")
        defer { s.stop() }
        let vm = try s.register(config("numvcpus = 2", name: "smp"))
        let pool = vm.pool
        let m = try pool.join(id: 100, vmID: vm.id, vmName: vm.name, vcpuIndex: 0, params: s.params(of: vm),
                              cpuClock: nil, kick: {})
        let p = try s.setParameters(vm: "smp", shares: .custom(3000), minPercent: 10, maxPercent: 50)
        #expect(p == SchedulerParams(shares: 1500, minPercent: 10, maxPercent: 50))
        #expect(pool.locked { m.params } == p)
        #expect(s.params(of: vm) == p, "the AP joins later with the new parameters")
        #expect { try s.setParameters(vm: "smp", minPercent: 60) } throws: { "\($0)".contains("min 60% is above max 50%") }
        #expect { try s.setParameters(vm: "nope", maxPercent: 50) } throws: { "\($0)".contains("no VM named 'nope'") }
        pool.leave(m, ranNanoseconds: 0)
    }

    @Test func consoleCommands() throws {
        let s = try scheduler("1")
        defer { s.stop() }
        let vm = try s.register(config("", name: "web"))
        let m = try vm.pool.join(id: 7, vmID: vm.id, vmName: "web", vcpuIndex: 0, params: s.params(of: vm),
                                 cpuClock: nil, kick: {})
        defer { vm.pool.leave(m, ranNanoseconds: 0) }
        let path = NSTemporaryDirectory() + "sched-console-\(getpid()).sock"
        let console = try ServiceConsole(path: path)
        defer { console.stop() }
        console.registerSchedCommands(s, policyNames: { ["propshare"] })
        let pools = console.execute("sched pools")
        #expect(pools.contains("default\t0\tany\tfallback\tbuilt in\t1\tweb/0"), "\(pools)")
        #expect(pools.contains("policies: fallback, propshare"))
        #expect(console.execute("sched set web shares=low max=40%") == "web: shares=500 min=0% max=40% per vCPU")
        #expect(console.execute("sched set web shares=lots").hasPrefix("error: shares=lots: expected low, normal, high or a positive number"))
        #expect(console.execute("sched set web").hasPrefix("error: usage: sched set"))
        #expect(console.execute("sched policy default nope").hasPrefix("error: no scheduler policy 'nope'"))
        #expect(console.execute("sched policy default fallback") == "pool 'default': now running policy 'fallback' (built in)")
        let stats = console.execute("sched stats")
        #expect(stats.hasPrefix("VM "), "\(stats)")
        #expect(stats.contains("web"), "\(stats)")
        #expect(console.execute("sched stats raw").hasPrefix("vcpu 7 pool=default vm=web index=0 time="))
        #expect(console.execute("sched bogus").hasPrefix("error: usage: sched pools"))
    }

    @Test func aSIPIStartsTheAPInRealModeAtTheVectorPage() {
        let st = VCPURunner.startupState(vector: 0x9E)
        #expect(st.cs.selector == 0x9E00 && st.cs.base == 0x9E000 && st.cs.limit == 0xFFFF && st.cs.type == 0xB)
        #expect(st.cs.present && st.cs.s && !st.cs.db && !st.cs.l && !st.cs.g)
        #expect(st.rip == 0 && st.cr0 == 0x10 && st.efer == 0 && st.cr4 == 0 && st.rflags == 0x2)
        for seg in [st.ds, st.es, st.fs, st.gs, st.ss] {
            #expect(seg.selector == 0 && seg.base == 0 && seg.limit == 0xFFFF && seg.type == 0x3 && seg.present && seg.s)
        }
        #expect(st.tr.type == 0x3 && st.tr.limit == 0xFFFF && !st.tr.s && st.tr.present)
        #expect(st.ldtr.unusable)
    }
}
