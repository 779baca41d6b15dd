/// A resource a device asked for that its PCI function cannot have; `kind` lets the
/// plugin host answer with the right result code.
package struct PCIDeclarationError: Error, CustomStringConvertible {
    package enum Kind { case invalid, duplicate, full }
    package let kind: Kind
    package let description: String

    package init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}
