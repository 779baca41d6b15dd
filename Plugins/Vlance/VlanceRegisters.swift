// Register, descriptor and init-block constants of the AMD PCnet-PCI II (Am79C970A),
// from the chip's data sheet (AMD publication 19436) as described in README.md.

/// CSR0, the controller status register.
enum CSR0 {
    static let INIT: UInt16 = 0x0001
    static let STRT: UInt16 = 0x0002
    static let STOP: UInt16 = 0x0004
    static let TDMD: UInt16 = 0x0008
    static let TXON: UInt16 = 0x0010
    static let RXON: UInt16 = 0x0020
    static let INEA: UInt16 = 0x0040
    static let INTR: UInt16 = 0x0080
    static let IDON: UInt16 = 0x0100
    static let TINT: UInt16 = 0x0200
    static let RINT: UInt16 = 0x0400
    static let MERR: UInt16 = 0x0800
    static let MISS: UInt16 = 0x1000
    static let CERR: UInt16 = 0x2000
    static let BABL: UInt16 = 0x4000
    static let ERR: UInt16 = 0x8000
    /// Bits 8-14: status flags the host clears by writing 1.
    static let writeOneToClear: UInt16 = 0x7F00
    /// The flags that interrupt unless masked in CSR3 (CERR never interrupts).
    static let interruptSources: UInt16 = BABL | MISS | MERR | RINT | TINT | IDON
    /// ERR is the OR of these.
    static let errorSources: UInt16 = BABL | CERR | MISS | MERR
}

/// CSR3, interrupt masks and deferral control.
enum CSR3 {
    /// BABLM, MISSM, MERRM, RINTM, TINTM, IDONM and DXSUFLO: writable at any time.
    static let alwaysWritable: UInt16 = 0x5F00 | 0x0040
    static let DXSUFLO: UInt16 = 0x0040
    static let LAPPEN: UInt16 = 0x0020
    static let DXMT2PD: UInt16 = 0x0010
    static let EMBA: UInt16 = 0x0008
    static let BSWP: UInt16 = 0x0004
    /// Bits writable only while STOP or SPND (DXSUFLO and the masks are always writable).
    static let stoppedOnly: UInt16 = LAPPEN | DXMT2PD | EMBA | BSWP
}

/// CSR4, test and features control.
enum CSR4 {
    static let TXDPOLL: UInt16 = 0x1000
    static let APAD_XMT: UInt16 = 0x0800
    static let ASTRP_RCV: UInt16 = 0x0400
    static let MFCO: UInt16 = 0x0200
    static let MFCOM: UInt16 = 0x0100
    static let UINTCMD: UInt16 = 0x0080
    static let UINT: UInt16 = 0x0040
    static let RCVCCO: UInt16 = 0x0020
    static let RCVCCOM: UInt16 = 0x0010
    static let TXSTRT: UInt16 = 0x0008
    static let TXSTRTM: UInt16 = 0x0004
    static let JAB: UInt16 = 0x0002
    static let JABM: UInt16 = 0x0001
    /// Status flags cleared by writing 1.
    static let writeOneToClear: UInt16 = MFCO | UINT | RCVCCO | TXSTRT | JAB
    /// Plain read/write control bits (EN124/DMAPLUS/TIMER/TXDPOLL/APAD_XMT/ASTRP_RCV and the masks).
    static let control: UInt16 = 0xFC00 | MFCOM | RCVCCOM | TXSTRTM | JABM
    static let resetValue: UInt16 = 0x0115
}

/// CSR5, extended control and interrupt 1.
enum CSR5 {
    static let TOKINTD: UInt16 = 0x8000
    static let LTINTEN: UInt16 = 0x4000
    static let SINT: UInt16 = 0x0800
    static let SINTE: UInt16 = 0x0400
    static let EXDINT: UInt16 = 0x0080
    static let EXDINTE: UInt16 = 0x0040
    static let MPINT: UInt16 = 0x0010
    static let MPINTE: UInt16 = 0x0008
    static let SPND: UInt16 = 0x0001
    static let writeOneToClear: UInt16 = SINT | EXDINT | MPINT
    static let control: UInt16 = TOKINTD | LTINTEN | SINTE | EXDINTE | 0x0020 | MPINTE | 0x0004 | 0x0002 | SPND
}

/// CSR15, the mode register (also loaded from the init block).
enum CSR15 {
    static let PROM: UInt16 = 0x8000
    static let DRCVBC: UInt16 = 0x4000
    static let DRCVPA: UInt16 = 0x2000
    static let INTL: UInt16 = 0x0040
    static let DXMTFCS: UInt16 = 0x0008
    static let LOOP: UInt16 = 0x0004
    static let DTX: UInt16 = 0x0002
    static let DRX: UInt16 = 0x0001
    /// Bits a soft reset keeps (DRCVPA, PORTSEL, INTL, LOOP).
    static let keptBySoftReset: UInt16 = 0x21C4
}

/// Bus configuration registers (reached through RAP + BDP).
enum BCR {
    static let MSRDA = 0, MSWRA = 1, MC = 2, LNKST = 4, LED1 = 5, LED2 = 6, LED3 = 7
    static let FDC = 9, BSBC = 18, EECAS = 19, SWS = 20, PCILAT = 22
    static let count = 32

    /// BCR2: APROM write enable.
    static let APROMWE: UInt16 = 0x0100
    /// BCR18: the chip is in 32-bit I/O mode (read-only; set by a dword write to RDP).
    static let DWIO: UInt16 = 0x0080
    /// BCR20: bit 8 SSIZE32 (32-bit software structures), bit 9 CSRPCNET.
    static let SSIZE32: UInt16 = 0x0100
    static let CSRPCNET: UInt16 = 0x0200
    /// BCR4-7: LEDOUT (status, read-only) and LNKSTE (the LED shows link status).
    static let LEDOUT: UInt16 = 0x8000
    static let LNKSTE: UInt16 = 0x0040
}

/// Descriptor bits, in the 32-bit (SWSTYLE 2) layout of word 1 (status in 31:16) and
/// word 2. SWSTYLE 0 descriptors are converted to and from this layout.
enum Desc {
    static let OWN: UInt32 = 0x8000_0000
    static let ERR: UInt32 = 0x4000_0000
    static let STP: UInt32 = 0x0200_0000
    static let ENP: UInt32 = 0x0100_0000
    static let BCNT: UInt32 = 0x0000_0FFF

    // Receive status (RMD1)
    static let FRAM: UInt32 = 0x2000_0000
    static let OFLO: UInt32 = 0x1000_0000
    static let CRC: UInt32 = 0x0800_0000
    static let RBUFF: UInt32 = 0x0400_0000
    static let PAM: UInt32 = 0x0040_0000
    static let LAFM: UInt32 = 0x0020_0000
    static let BAM: UInt32 = 0x0010_0000

    // Transmit status (TMD1)
    static let ADD_FCS: UInt32 = 0x2000_0000
    static let LTINT: UInt32 = 0x1000_0000   // MORE unless CSR5.LTINTEN

    // Transmit errors (TMD2)
    static let TBUFF: UInt32 = 0x8000_0000
    static let UFLO: UInt32 = 0x4000_0000
    static let LCAR: UInt32 = 0x0800_0000
}
