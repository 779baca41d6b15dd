import Glibc
import PluginABI
import Synchronization

/// One Vmxnet NIC: a VMXNET3 (15ad:07b0) on a VMkernel virtual-switch port.
///
/// Threading (the model sets HV_DEVICE_THREAD_SAFE): `mutex` guards everything below.
/// Entry points are BAR accesses (vCPU threads), doorbells (the instance's doorbell
/// thread), `receive` (the port's receive thread), `link_changed`, the poll timer and the
/// control ops; each takes `mutex`. Under it the device calls only host services that
/// never call into a device (guest memory, interrupts, sends, rx_ready, clock, log).
final class VmxnetDevice {
    static let maxFrame = 65535
    /// Receive-ring poll while the switch holds frames for want of buffers and the driver
    /// does not write RXPROD (doubling up to the maximum).
    static let rxPollFirstNs: UInt64 = 20_000
    static let rxPollMaxNs: UInt64 = 2_000_000
    static let guestErrorLogLimit = 32
    /// Receive buffers one frame may take (ring 1's HEAD and BODY buffers and ring 2's).
    static let maxBuffersPerFrame = 256

    typealias MemRead = @convention(c) (OpaquePointer?, UInt64, UnsafeMutableRawPointer?, Int) -> Int32
    typealias MemWrite = @convention(c) (OpaquePointer?, UInt64, UnsafeRawPointer?, Int) -> Int32
    typealias MemMap = @convention(c) (OpaquePointer?, UInt64, Int, Int32) -> UnsafeMutableRawPointer?

    let host: OpaquePointer
    let services: UnsafePointer<hv_host_services>
    let memRead: MemRead
    let memWrite: MemWrite
    let memMap: MemMap
    let irqSetLevel: @convention(c) (OpaquePointer?, Int32) -> Void
    let msiNotify: @convention(c) (OpaquePointer?, UInt32) -> Int32
    let msixNotify: @convention(c) (OpaquePointer?, UInt32) -> Int32
    let clockNs: @convention(c) (OpaquePointer?) -> UInt64
    let pciCommand: @convention(c) (OpaquePointer?) -> UInt16
    let logFn: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?) -> Void
    let timerArm: @convention(c) (OpaquePointer?, OpaquePointer?, UInt64) -> Void
    let netSend: @convention(c) (OpaquePointer?, UnsafeRawPointer?, Int) -> Int32
    let sendGuest: @convention(c) (OpaquePointer?, UnsafePointer<hv_net_segment>?, UInt32, UInt32) -> Int32
    let rxReady: @convention(c) (OpaquePointer?) -> Void
    let sendOffload: @convention(c) (OpaquePointer?, UnsafeRawPointer?, Int, UnsafePointer<hv_net_offload>?) -> Int32
    let setRxLarge: @convention(c) (OpaquePointer?, Int32) -> Int32
    let netLinkUp: @convention(c) (OpaquePointer?) -> Int32

    var port: OpaquePointer?
    var pollTimer: OpaquePointer?
    var timerCancelWait: (@convention(c) (OpaquePointer?, OpaquePointer?) -> Int32)?
    let permanentMAC: [UInt8]

    let mutex: UnsafeMutablePointer<pthread_mutex_t>

    // MARK: registers (under `mutex`)

    var mac: [UInt8]
    var revision: UInt32 = 0          // chosen through VRRS (0 until the driver picks)
    var uptVersion: UInt32 = 0
    var dsa: UInt64 = 0               // DSAL | DSAH << 32
    var cmdResult: UInt32 = 0
    var linkUp = true

    // MARK: activated configuration (under `mutex`)

    var active = false
    var shared: UnsafeMutableRawPointer?      // Vmxnet3_DriverShared, mapped at activation
    var features: UInt64 = 0
    var mtu: UInt32 = 1500
    var rxMode: UInt32 = 0
    var multicast: [[UInt8]] = []
    var vlanFilter = [UInt32](repeating: 0, count: 128)
    var rssEnabled = false
    var rssHashType: UInt16 = 0
    var rssKey = [UInt8](repeating: 0, count: RSSConf.maxKey)
    var rssTable = [UInt8](repeating: 0, count: RSSConf.maxTable)
    var rssTableSize = 1
    var rssFields: UInt32 = RSSConf.fieldsTCPIP4
    var txQueues: [TxQueue] = []
    var rxQueues: [RxQueue] = []

    // MARK: interrupts (under `mutex`)

    var numIntrs = 1
    var eventIntrIdx = 0
    var autoMask = false
    /// IMR: bit v masks vector v. Every vector starts masked.
    var imr: UInt32 = ~0
    /// Vectors raised but not delivered because they are masked.
    var pending: UInt32 = 0
    /// Vectors delivered on INTx: the pin stays asserted until the driver reads ICR.
    var intxRaised: UInt32 = 0
    var intxLevel = false

    // MARK: bookkeeping (under `mutex`)

    var rxWaiting = false
    var rxWaitQueue = 0
    var rxWaitRing = 0
    var rxPollDelay = VmxnetDevice.rxPollFirstNs
    var armAt: UInt64 = 0
    var pollArmed = false
    var guestErrors = 0
    var dead = false

    // MARK: buffers (under `mutex`)

    let txSegments: UnsafeMutablePointer<hv_net_segment>
    /// A transmit frame copied here when the device must change it or hand it over with
    /// offloads.
    let frameBuf: UnsafeMutablePointer<UInt8>
    /// A received frame with its VLAN tag removed.
    let scratch: UnsafeMutablePointer<UInt8>
    /// The receive buffers planned for the current frame.
    let rxPlan: UnsafeMutablePointer<RxBuffer>

    init?(services: UnsafePointer<hv_host_services>, host: OpaquePointer, mac: [UInt8],
          netQueue: UnsafePointer<hv_net_queue_ext>, netOffload: UnsafePointer<hv_net_offload_ext>,
          msix: UnsafePointer<hv_msix_ext>) {
        let s = services.pointee
        guard let memRead = s.mem_read, let memWrite = s.mem_write, let memMap = s.mem_map,
              let irq = s.irq_set_level, let msi = s.msi_notify, let msixNotify = msix.pointee.msix_notify,
              let clock = s.clock_ns, let command = s.pci_command, let log = s.log, let arm = s.timer_arm,
              let send = s.net_send, let linkUp = s.net_link_up,
              let sendGuest = netQueue.pointee.send_guest, let rxReady = netQueue.pointee.rx_ready,
              let sendOffload = netOffload.pointee.send_offload, let setRxLarge = netOffload.pointee.set_rx_large
        else { return nil }
        self.services = services
        self.host = host
        self.memRead = memRead
        self.memWrite = memWrite
        self.memMap = memMap
        self.irqSetLevel = irq
        self.msiNotify = msi
        self.msixNotify = msixNotify
        self.clockNs = clock
        self.pciCommand = command
        self.logFn = log
        self.timerArm = arm
        self.netSend = send
        self.netLinkUp = linkUp
        self.sendGuest = sendGuest
        self.rxReady = rxReady
        self.sendOffload = sendOffload
        self.setRxLarge = setRxLarge
        self.permanentMAC = mac
        self.mac = mac
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        txSegments = .allocate(capacity: Int(HV_NET_MAX_SEGMENTS))
        txSegments.initialize(repeating: hv_net_segment(), count: Int(HV_NET_MAX_SEGMENTS))
        frameBuf = .allocate(capacity: Self.maxFrame + 4)
        scratch = .allocate(capacity: Self.maxFrame + 4)
        rxPlan = .allocate(capacity: Self.maxBuffersPerFrame)
    }

    deinit {
        if !dead { freeBuffers() }
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    private func freeBuffers() {
        txSegments.deallocate()
        frameBuf.deallocate()
        scratch.deallocate()
        rxPlan.deallocate()
    }


    // MARK: locking

    @inline(__always) func lockLive() -> Bool {
        pthread_mutex_lock(mutex)
        if dead { pthread_mutex_unlock(mutex); return false }
        return true
    }

    /// Ends a locked operation: drives INTx, looks for receive room while the switch
    /// holds frames, unlocks, then arms the poll timer if asked.
    func finish() {
        if !dead {
            if rxWaiting { checkReceiveRoom() }
            updateINTx()
        }
        let deadline = armAt
        armAt = 0
        pthread_mutex_unlock(mutex)
        if deadline != 0, let t = pollTimer { timerArm(host, t, deadline) }
    }

    func requestPoll(after delay: UInt64) {
        let deadline = max(clockNs(host) &+ delay, 1)
        pollArmed = true
        if armAt == 0 || deadline < armAt { armAt = deadline }
    }

    // MARK: entry points

    func barRead(bar: UInt32, offset: UInt64, size: UInt32) -> UInt64 {
        let ones: UInt64 = size >= 8 ? ~0 : (UInt64(1) << (8 * UInt64(size))) &- 1
        guard lockLive() else { return ones }
        let v: UInt64 = (bar == 1 && size == 4) ? UInt64(vdRead(offset)) : (bar == 0 && size == 4 ? 0 : ones)
        finish()
        return v & ones
    }

    func barWrite(bar: UInt32, offset: UInt64, size: UInt32, value: UInt64) {
        guard size == 4, lockLive() else { return }
        let v = UInt32(truncatingIfNeeded: value)
        if bar == 0 { ptWrite(offset, v) } else if bar == 1 { vdWrite(offset, v) }
        finish()
    }

    /// A TXPROD doorbell (kind 0), RXPROD (1) or RXPROD2 (2) for queue `q`.
    func doorbell(kind: Int, queue q: Int) {
        guard lockLive() else { return }
        if active {
            if kind == 0 { if q < txQueues.count { transmit(txQueues[q]) } } else if rxWaiting { rxPollDelay = Self.rxPollFirstNs }
        }
        finish()
    }

    func receive(_ frame: UnsafeRawPointer?, _ len: Int) -> Int32 {
        guard let frame, len > 0 else { return HV_EINVAL }
        guard lockLive() else { return HV_EIO }
        let r = receiveFrame(UnsafeRawBufferPointer(start: frame, count: len))
        finish()
        return r
    }

    func linkChanged(_ up: Bool) {
        guard lockLive() else { return }
        setLink(up)
        finish()
    }

    func setLink(_ up: Bool) {
        guard up != linkUp else { return }
        linkUp = up
        if active { postEvent(Event.link) }
    }

    func pollTimerFired() {
        guard lockLive() else { return }
        pollArmed = false
        if rxWaiting { rxPollDelay = min(rxPollDelay &* 2, Self.rxPollMaxNs) }
        if active { transmitAll() }   // a pass that ran out of budget continues here
        finish()
    }

    func powerOnReset() {
        guard lockLive() else { return }
        hardReset()
        finish()
    }

    func resumed() {
        guard lockLive() else { return }
        if let port { setLink(netLinkUp(port) != 0) }
        pollArmed = false
        if rxWaiting { rxPollDelay = Self.rxPollFirstNs }
        // A TXPROD that rang just before the pause (or before a suspend) was not served.
        if active { transmitAll() }
        finish()
    }

    func shutdown() -> Bool {
        let quiet = pollTimer.map { timerCancelWait?(host, $0) == HV_OK } ?? true
        pthread_mutex_lock(mutex)
        dead = true
        pthread_mutex_unlock(mutex)
        freeBuffers()
        return quiet
    }

    // MARK: registers

    func vdRead(_ offset: UInt64) -> UInt32 {
        switch offset {
        case VDReg.vrrs: return revision == 0 ? 0x1 : revision   // revision 1 only
        case VDReg.uvrs: return uptVersion == 0 ? 0x1 : uptVersion
        case VDReg.dsal: return UInt32(truncatingIfNeeded: dsa)
        case VDReg.dsah: return UInt32(truncatingIfNeeded: dsa >> 32)
        case VDReg.cmd: return cmdResult
        case VDReg.macl: return UInt32(mac[0]) | UInt32(mac[1]) << 8 | UInt32(mac[2]) << 16 | UInt32(mac[3]) << 24
        case VDReg.mach: return UInt32(mac[4]) | UInt32(mac[5]) << 8
        case VDReg.icr:
            // INTx: whether this device interrupted; reading acknowledges.
            let ours = intxRaised != 0
            intxRaised = 0
            return ours ? 1 : 0
        case VDReg.ecr: return shared.map { $0.loadUnaligned(fromByteOffset: Shared.ecr, as: UInt32.self) } ?? 0
        default: return 0
        }
    }

    func vdWrite(_ offset: UInt64, _ v: UInt32) {
        switch offset {
        case VDReg.vrrs:
            if v & 0x1 == 0 { guestError("VRRS write 0x\(String(v, radix: 16)) selects no supported revision") }
            revision = v & 0x1
        case VDReg.uvrs:
            uptVersion = v & 0x1
        case VDReg.dsal: dsa = dsa & 0xFFFF_FFFF_0000_0000 | UInt64(v)
        case VDReg.dsah: dsa = dsa & 0xFFFF_FFFF | UInt64(v) << 32
        case VDReg.cmd: command(v)
        case VDReg.macl:
            for i in 0..<4 { mac[i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
        case VDReg.mach:
            mac[4] = UInt8(truncatingIfNeeded: v)
            mac[5] = UInt8(truncatingIfNeeded: v >> 8)
        case VDReg.ecr:
            // Write one to clear the events the driver has handled.
            if let shared {
                let e = shared.loadUnaligned(fromByteOffset: Shared.ecr, as: UInt32.self)
                shared.storeBytes(of: e & ~v, toByteOffset: Shared.ecr, as: UInt32.self)
            }
        default: break
        }
    }

    func ptWrite(_ offset: UInt64, _ v: UInt32) {
        switch offset {
        case 0..<PTReg.txProd where offset % 8 == 0:
            let vector = Int(offset / 8)
            guard vector < Limits.maxIntrs else { return }
            if v & 1 != 0 { imr |= 1 << vector } else { imr &= ~(1 << vector); deliver(vector) }
        case PTReg.txProd..<PTReg.rxProd where offset % 8 == 0:
            // A TXPROD write of another size than the doorbell's, or before doorbells.
            let q = Int((offset - PTReg.txProd) / 8)
            if active && q < txQueues.count { transmit(txQueues[q]) }
        default:
            break   // RXPROD: the receive path reads generation bits
        }
    }

    // MARK: commands

    func command(_ cmd: UInt32) {
        switch cmd {
        case Command.activateDev:
            cmdResult = activate() ? 0 : 1
        case Command.quiesceDev:
            deactivate()
            cmdResult = 0
        case Command.resetDev:
            deactivate()
            cmdResult = 0
        case Command.updateRxMode, Command.updateMacFilters, Command.updateVlanFilters:
            if active { readFilters() }
            cmdResult = 0
        case Command.updateRSSIDT, Command.updateFeature:
            if active { readFeatures() }
            cmdResult = 0
        case Command.updateIML, Command.updatePMCfg, Command.setCoalesce, Command.registerMemRegs:
            cmdResult = 0   // moderation, wake-up patterns, coalescing: nothing to do for a virtual wire
        case Command.setRSSFields:
            if let shared {
                rssFields = shared.loadUnaligned(fromByteOffset: Shared.cmdInfo, as: UInt32.self)
                    & (RSSConf.fieldsTCPIP4 | RSSConf.fieldsUDPIP4)
            }
            cmdResult = 0
        case Command.getRSSFields:
            cmdResult = rssFields
        case Command.getQueueStatus:
            writeQueueStatus()
            cmdResult = 0
        case Command.getStats:
            writeStats()
            cmdResult = 0
        case Command.getLink:
            cmdResult = linkUp ? Limits.linkUp : 0
        case Command.getPermMacLo:
            cmdResult = UInt32(permanentMAC[0]) | UInt32(permanentMAC[1]) << 8
                | UInt32(permanentMAC[2]) << 16 | UInt32(permanentMAC[3]) << 24
        case Command.getPermMacHi:
            cmdResult = UInt32(permanentMAC[4]) | UInt32(permanentMAC[5]) << 8
        case Command.getConfIntr:
            cmdResult = 0   // interrupt type auto (MSI-X, MSI, INTx), mask mode auto
        case Command.getTxDataDescSize:
            cmdResult = 128
        case Command.getDIDLo, Command.getDIDHi, Command.getDevExtraInfo, Command.getCoalesce:
            cmdResult = 0
        default:
            guestError("unknown command 0x\(String(cmd, radix: 16))")
            cmdResult = 0xFFFF_FFFF
        }
    }

    // MARK: interrupts

    /// Marks vector `v` raised and delivers it unless masked.
    func raise(_ v: Int) {
        guard v < Limits.maxIntrs else { return }
        pending |= 1 << v
        deliver(v)
    }

    func deliver(_ v: Int) {
        guard pending & (1 << v) != 0, imr & (1 << v) == 0 else { return }
        if let shared, shared.loadUnaligned(fromByteOffset: Shared.intrCtrl, as: UInt32.self) & 1 != 0 { return }
        var rc = msixNotify(host, UInt32(v))
        if rc == HV_ENOENT { rc = msiNotify(host, 0) }
        if rc == HV_ENOENT { intxRaised |= 1 << v }
        pending &= ~(1 << v)
        if rc == HV_ERANGE { guestError("interrupt vector \(v) is beyond the enabled MSI-X/MSI vectors") }
        if autoMask { imr |= 1 << v }
    }

    /// The INTx pin: asserted from a delivery until the driver reads ICR (all vectors
    /// share it), unless the driver disabled every interrupt in intrCtrl.
    func updateINTx() {
        var level = intxRaised != 0
        if level, let shared, shared.loadUnaligned(fromByteOffset: Shared.intrCtrl, as: UInt32.self) & 1 != 0 { level = false }
        if level != intxLevel {
            intxLevel = level
            irqSetLevel(host, level ? 1 : 0)
        }
    }

    func postEvent(_ bits: UInt32) {
        guard let shared else { return }
        let e = shared.loadUnaligned(fromByteOffset: Shared.ecr, as: UInt32.self)
        shared.storeBytes(of: e | bits, toByteOffset: Shared.ecr, as: UInt32.self)
        raise(eventIntrIdx)
    }

    // MARK: logging

    func log(_ level: Int32, _ message: String) {
        message.withCString { logFn(host, level, $0) }
    }

    func guestError(_ message: @autoclosure () -> String) {
        guard guestErrors <= Self.guestErrorLogLimit else { return }
        guestErrors += 1
        if guestErrors > Self.guestErrorLogLimit {
            log(HV_LOG_WARN, "guest error: further guest errors are not logged")
        } else {
            log(HV_LOG_WARN, "guest error: " + message())
        }
    }

    // MARK: reset

    func hardReset() {
        deactivate()
        revision = 0
        uptVersion = 0
        dsa = 0
        cmdResult = 0
        mac = permanentMAC
        imr = ~0
        pending = 0
        intxRaised = 0
        rssFields = RSSConf.fieldsTCPIP4
    }
}
