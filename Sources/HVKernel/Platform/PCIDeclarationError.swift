/// A resource a device asked for that its PCI function cannot have; `kind` lets the
/// plugin host answer with the right result code.
struct PCIDeclarationError: Error, CustomStringConvertible {
    enum Kind { case invalid, duplicate, full }
    let kind: Kind
    let description: String

    init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}
