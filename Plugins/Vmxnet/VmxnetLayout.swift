/// VMXNET3 facts from the public Linux driver headers (vmxnet3_defs.h, upt1_defs.h):
/// register offsets, command codes and the byte offsets of the guest-memory structures.

/// BAR0 ("PT"): registers the driver writes on its fast path, 8 bytes apart.
enum PTReg {
    static let imr: UInt64 = 0x000        // + 8 * vector: 1 masks the vector
    static let txProd: UInt64 = 0x600     // + 8 * tx queue
    static let rxProd: UInt64 = 0x800     // + 8 * rx queue (ring 1)
    static let rxProd2: UInt64 = 0xA00    // + 8 * rx queue (ring 2)
}

/// BAR1 ("VD"): configuration registers.
enum VDReg {
    static let vrrs: UInt64 = 0x00
    static let uvrs: UInt64 = 0x08
    static let dsal: UInt64 = 0x10
    static let dsah: UInt64 = 0x18
    static let cmd: UInt64 = 0x20
    static let macl: UInt64 = 0x28
    static let mach: UInt64 = 0x30
    static let icr: UInt64 = 0x38
    static let ecr: UInt64 = 0x40
}

enum Command {
    static let activateDev: UInt32 = 0xCAFE_0000
    static let quiesceDev: UInt32 = 0xCAFE_0001
    static let resetDev: UInt32 = 0xCAFE_0002
    static let updateRxMode: UInt32 = 0xCAFE_0003
    static let updateMacFilters: UInt32 = 0xCAFE_0004
    static let updateVlanFilters: UInt32 = 0xCAFE_0005
    static let updateRSSIDT: UInt32 = 0xCAFE_0006
    static let updateIML: UInt32 = 0xCAFE_0007
    static let updatePMCfg: UInt32 = 0xCAFE_0008
    static let updateFeature: UInt32 = 0xCAFE_0009
    static let setCoalesce: UInt32 = 0xCAFE_000E
    static let registerMemRegs: UInt32 = 0xCAFE_000F
    static let setRSSFields: UInt32 = 0xCAFE_0010

    static let getQueueStatus: UInt32 = 0xF00D_0000
    static let getStats: UInt32 = 0xF00D_0001
    static let getLink: UInt32 = 0xF00D_0002
    static let getPermMacLo: UInt32 = 0xF00D_0003
    static let getPermMacHi: UInt32 = 0xF00D_0004
    static let getDIDLo: UInt32 = 0xF00D_0005
    static let getDIDHi: UInt32 = 0xF00D_0006
    static let getDevExtraInfo: UInt32 = 0xF00D_0007
    static let getConfIntr: UInt32 = 0xF00D_0008
    static let getTxDataDescSize: UInt32 = 0xF00D_000A
    static let getCoalesce: UInt32 = 0xF00D_000B
    static let getRSSFields: UInt32 = 0xF00D_000C
}

/// Vmxnet3_DriverShared (720 bytes): offsets from its start.
enum Shared {
    static let size = 720
    static let magic = 0                  // u32, VMXNET3_REV1_MAGIC
    static let magicValue: UInt32 = 0xBABE_FEE1
    // devRead.misc
    static let uptFeatures = 24           // u64
    static let queueDescPA = 40           // u64
    static let queueDescLen = 52          // u32
    static let mtu = 56                   // u32
    static let numTxQueues = 62           // u8
    static let numRxQueues = 63           // u8
    // devRead.intrConf
    static let autoMask = 80              // u8
    static let numIntrs = 81              // u8
    static let eventIntrIdx = 82          // u8
    static let intrCtrl = 108             // u32, bit 0 disables all
    // devRead.rxFilterConf
    static let rxMode = 120               // u32
    static let mfTableLen = 124           // u16, bytes
    static let mfTablePA = 128            // u64
    static let vfTable = 136              // 128 x u32
    // devRead.rssConfDesc
    static let rssConfPA = 656            // u64
    static let ecr = 696                  // u32
    static let cmdInfo = 704              // 16 bytes
}

/// Vmxnet3_TxQueueDesc / Vmxnet3_RxQueueDesc: 256 bytes each, Tx first.
enum QueueDesc {
    static let size = 256
    // Tx ctrl
    static let txNumDeferred = 0          // u32
    static let txThreshold = 4            // u32
    // Rx ctrl
    static let updateRxProd = 0           // u8
    // Tx conf
    static let txRingBasePA = 16
    static let txCompRingBasePA = 32
    static let txRingSize = 56
    static let txCompRingSize = 64
    // Rx conf
    static let rxRingBasePA = 16          // [2] x u64
    static let rxCompRingBasePA = 32
    static let rxRingSize = 56            // [2] x u32
    static let rxCompRingSize = 64
    static let intrIdx = 72               // u8, both kinds
    // status and stats (written on GET_QUEUE_STATUS / GET_STATS)
    static let stopped = 80               // u8
    static let error = 84                 // u32
    static let stats = 88                 // 10 x u64
}

/// UPT1 features (uptFeatures).
enum Feature {
    static let rss: UInt64 = 0x2
    static let rxVlan: UInt64 = 0x4
    static let lro: UInt64 = 0x8
}

/// Receive modes (rxFilterConf.rxMode).
enum RxMode {
    static let ucast: UInt32 = 0x01
    static let mcast: UInt32 = 0x02
    static let bcast: UInt32 = 0x04
    static let allMulti: UInt32 = 0x08
    static let promisc: UInt32 = 0x10
}

/// Event cause bits (shared ecr, BAR1 ECR).
enum Event {
    static let rqErr: UInt32 = 0x1
    static let tqErr: UInt32 = 0x2
    static let link: UInt32 = 0x4
}

/// Queue error codes (QueueStatus.error).
enum QueueError {
    static let noEOP: UInt32 = 0x8000_0000
    static let bigPacket: UInt32 = 0x8000_0002
    static let descNotSupported: UInt32 = 0x8000_0003
}

enum Limits {
    static let maxTxQueues = 8
    static let maxRxQueues = 16
    static let maxIntrs = 25
    static let ringMax: UInt32 = 4096
    static let compRingMax: UInt32 = 8192
    static let ringAlign: UInt32 = 32
    static let maxMTU: UInt32 = 9000
    static let minMTU: UInt32 = 60
    /// Descriptors one frame may use (TSO frames use more than the 16 of a plain one).
    static let maxTxDescPerPacket = 64
    static let linkUp: UInt32 = 10000 << 16 | 1
}

/// UPT1_RSSConf: hashType u16, hashFunc u16, hashKeySize u16, indTableSize u16,
/// hashKey[40], indTable[128].
enum RSSConf {
    static let size = 176
    static let hashIPv4: UInt16 = 0x1
    static let hashTCPIPv4: UInt16 = 0x2
    static let toeplitz: UInt16 = 0x1
    static let maxKey = 40
    static let maxTable = 128
    /// VMXNET3_RSS_FIELDS_UDPIP4 (SET_RSS_FIELDS): hash UDP/IPv4 over the ports too.
    static let fieldsTCPIP4: UInt32 = 0x1
    static let fieldsUDPIP4: UInt32 = 0x4
}
