/// Why a migration failed or was refused. The message says which side and why; the
/// source VM keeps running after every one of them.
package struct MigrationError: Error, CustomStringConvertible {
    package let message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}
