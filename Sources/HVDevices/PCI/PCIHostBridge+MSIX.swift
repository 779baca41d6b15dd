/// MSI-X on the host bridge: sending, the table and PBA as the guest sees them, and
/// pending messages going out on unmask. Under the bridge's lock like the rest of PCI.
extension PCIHostBridge {
    /// Sends MSI-X `vector` of `f` with the address and data of its table entry.
    package func sendMSIX(_ f: PCIFunction, vector: Int) -> MSIResult {
        locked {
            guard let msix = f.msix else { return .notEnabled }
            guard vector >= 0, vector < msix.vectors else { return .outOfRange }
            guard msix.enabled(f.config) else { return .notEnabled }
            if msix.functionMasked(f.config) || msix.vectorMasked(vector) {
                f.msix!.setPending(vector, true)
                return .masked
            }
            deliverMSIX(f, msix, vector: vector)
            return .sent
        }
    }

    /// A guest read of the table or PBA (`offset` from the BAR's base); bytes outside
    /// both read as all ones.
    func msixRead(_ f: PCIFunction, offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        locked {
            for i in 0..<data.count { data[i] = f.msix?.byte(at: offset + UInt64(i)) ?? 0xFF }
        }
    }

    /// A guest write of the table (the PBA ignores writes); an unmasked vector that is
    /// pending goes out.
    func msixWrite(_ f: PCIFunction, offset: UInt64, data: UnsafeRawBufferPointer) {
        locked {
            guard f.msix != nil else { return }
            for i in 0..<data.count { _ = f.msix!.writeTableByte(at: offset + UInt64(i), data[i]) }
            flushPendingMSIX(f)
        }
    }

    /// Sends every pending vector that is no longer masked. Lock held.
    func flushPendingMSIX(_ f: PCIFunction) {
        guard let msix = f.msix, msix.enabled(f.config), !msix.functionMasked(f.config) else { return }
        for v in msix.pendingVectors where !msix.vectorMasked(v) {
            f.msix!.setPending(v, false)
            deliverMSIX(f, msix, vector: v)
        }
    }

    /// The guest's message; APICMessage drops addresses outside the interrupt window.
    private func deliverMSIX(_ f: PCIFunction, _ msix: MSIXCapability, vector: Int) {
        guard f.command & PCIFunction.commandBusMaster != 0 else { return }
        let m = msix.message(vector)
        interrupts?.deliverMSI(address: m.address, data: m.data)
    }
}
