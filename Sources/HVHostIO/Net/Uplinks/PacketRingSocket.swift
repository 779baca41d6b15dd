import CLinuxNet
import Glibc
import Synchronization

/// An AF_PACKET raw socket bound to one host interface, receiving through a TPACKET_V3
/// memory-mapped ring (the kernel fills blocks of frames; the receive thread walks a
/// block and hands it back, one syscall per block instead of one per frame) and sending
/// with `sendmsg` straight from the sender's buffers.
///
/// The interface is put in promiscuous mode (a membership of this socket only, dropped
/// when it closes): the VMs' MAC addresses are not the interface's own. Frames this socket
/// sends are not looped back to it (PACKET_IGNORE_OUTGOING).
final class PacketRingSocket: UplinkTransport, @unchecked Sendable {
    let interfaceName: String
    let interfaceIndex: Int32
    private let fd: Int32
    private let ring: UnsafeMutableRawPointer
    private let blockSize: Int
    private let blockCount: Int
    /// The next block the receive thread reads (receive thread only).
    private var nextBlock = 0

    /// 64 blocks of 128 KiB: 8 MiB, several thousand full-size frames of slack.
    private static let defaultBlockSize = 1 << 17
    private static let defaultBlockCount = 64
    /// A block is handed to user space after this many ms even when not full (latency).
    private static let blockRetireMilliseconds: UInt32 = 2

    // Offsets in struct tpacket_block_desc / tpacket3_hdr (linux/if_packet.h, TPACKET_V3).
    private enum Block {
        static let blockStatus = 8, packetCount = 12, firstPacket = 16
    }
    private enum Packet {
        static let nextOffset = 0, snapLength = 12, status = 20, macOffset = 24, vlanTCI = 32
    }

    init(interface: String) throws {
        interfaceName = interface
        let index = if_nametoindex(interface)
        guard index != 0 else { throw UplinkError("uplink '\(interface)': no such host interface") }
        interfaceIndex = Int32(index)
        let protocolAll = UInt16(ETH_P_ALL).bigEndian
        let s = socket(AF_PACKET, Int32(SOCK_RAW.rawValue), Int32(protocolAll))
        guard s >= 0 else { throw UplinkError.system("socket(AF_PACKET)", interface) }
        var ok = false
        defer { if !ok { Glibc.close(s) } }

        var version = Int32(TPACKET_V3.rawValue)
        guard setsockopt(s, SOL_PACKET, PACKET_VERSION, &version, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw UplinkError.system("PACKET_VERSION TPACKET_V3", interface)
        }
        var ignore: Int32 = 1
        _ = setsockopt(s, SOL_PACKET, CLN_PACKET_IGNORE_OUTGOING, &ignore, socklen_t(MemoryLayout<Int32>.size))
        var request = tpacket_req3()
        request.tp_block_size = UInt32(Self.defaultBlockSize)
        request.tp_block_nr = UInt32(Self.defaultBlockCount)
        request.tp_frame_size = 2048
        request.tp_frame_nr = request.tp_block_size / request.tp_frame_size * request.tp_block_nr
        request.tp_retire_blk_tov = Self.blockRetireMilliseconds
        guard setsockopt(s, SOL_PACKET, PACKET_RX_RING, &request, socklen_t(MemoryLayout<tpacket_req3>.size)) == 0 else {
            throw UplinkError.system("PACKET_RX_RING", interface)
        }
        blockSize = Self.defaultBlockSize
        blockCount = Self.defaultBlockCount
        guard let map = mmap(nil, blockSize * blockCount, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, s, 0),
              map != MAP_FAILED else {
            throw UplinkError.system("mmap of the packet ring", interface)
        }
        ring = map
        var address = sockaddr_ll()
        address.sll_family = UInt16(AF_PACKET)
        address.sll_protocol = protocolAll
        address.sll_ifindex = Int32(index)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_ll>.size)) }
        }
        guard bound == 0 else {
            munmap(map, blockSize * blockCount)
            throw UplinkError.system("bind to the interface", interface)
        }
        var membership = packet_mreq()
        membership.mr_ifindex = Int32(index)
        membership.mr_type = UInt16(PACKET_MR_PROMISC)
        guard setsockopt(s, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &membership, socklen_t(MemoryLayout<packet_mreq>.size)) == 0 else {
            munmap(map, blockSize * blockCount)
            throw UplinkError.system("promiscuous mode", interface)
        }
        fd = s
        ok = true
    }

    func transmit(_ parts: [UnsafeRawBufferPointer]) -> Bool {
        withIOVecs(parts) { vecs, count in
            var message = msghdr()
            message.msg_iov = vecs
            message.msg_iovlen = Int(count)
            return sendmsg(fd, &message, Int32(MSG_DONTWAIT)) >= 0
        }
    }

    func receive(timeoutMilliseconds: Int32, _ deliver: (UnsafeRawBufferPointer, UInt16?) -> Void) {
        var block = ring + nextBlock * blockSize
        if block.load(fromByteOffset: Block.blockStatus, as: UInt32.self) & UInt32(TP_STATUS_USER) == 0 {
            var p = pollfd(fd: fd, events: Int16(POLLIN | POLLERR), revents: 0)
            _ = poll(&p, 1, timeoutMilliseconds)
        }
        // Every block the kernel has handed over, in ring order.
        while true {
            block = ring + nextBlock * blockSize
            let status = UnsafeMutableRawPointer(block + Block.blockStatus).assumingMemoryBound(to: UInt32.self)
            guard atomicLoadAcquire(status) & UInt32(TP_STATUS_USER) != 0 else { return }
            let count = Int(block.load(fromByteOffset: Block.packetCount, as: UInt32.self))
            var packet = block + Int(block.load(fromByteOffset: Block.firstPacket, as: UInt32.self))
            for _ in 0..<count {
                let length = Int(packet.load(fromByteOffset: Packet.snapLength, as: UInt32.self))
                let mac = Int(packet.load(fromByteOffset: Packet.macOffset, as: UInt16.self))
                let flags = packet.load(fromByteOffset: Packet.status, as: UInt32.self)
                let tag: UInt16? = flags & UInt32(TP_STATUS_VLAN_VALID) != 0
                    ? UInt16(truncatingIfNeeded: packet.load(fromByteOffset: Packet.vlanTCI, as: UInt32.self)) : nil
                // The host's own stack (a veth peer) leaves TCP/UDP checksums to the NIC;
                // the VMs' NICs expect them done.
                if flags & UInt32(TP_STATUS_CSUMNOTREADY) != 0,
                   let pending = FrameOffload.pendingChecksum(of: UnsafeRawBufferPointer(start: packet + mac, count: length)) {
                    pending.completeWhole(UnsafeMutableRawBufferPointer(start: packet + mac, count: length))
                }
                deliver(UnsafeRawBufferPointer(start: packet + mac, count: length), tag)
                packet += Int(packet.load(fromByteOffset: Packet.nextOffset, as: UInt32.self))
            }
            atomicStoreRelease(status, UInt32(TP_STATUS_KERNEL))
            nextBlock = (nextBlock + 1) % blockCount
        }
    }

    func close() {
        munmap(ring, blockSize * blockCount)
        Glibc.close(fd)
    }
}

/// The ring's block status word is shared with the kernel: read it with acquire and hand
/// the block back with release ordering, so frame data is never read before the status
/// says it is ours, nor the block returned before we are done reading.
@inline(__always)
private func atomicLoadAcquire(_ p: UnsafeMutablePointer<UInt32>) -> UInt32 {
    let v = UnsafeMutableRawPointer(p).load(as: UInt32.self)
    atomicMemoryFence(ordering: .acquiring)
    return v
}

@inline(__always)
private func atomicStoreRelease(_ p: UnsafeMutablePointer<UInt32>, _ value: UInt32) {
    atomicMemoryFence(ordering: .releasing)
    UnsafeMutableRawPointer(p).storeBytes(of: value, as: UInt32.self)
}
