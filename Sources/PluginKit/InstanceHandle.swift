/// A device instance as the opaque `hv_device *` the host holds: a retained reference to
/// the Swift object from create until the destroy op releases it.
package enum InstanceHandle {
    package static func retain(_ object: AnyObject) -> OpaquePointer {
        OpaquePointer(Unmanaged.passRetained(object).toOpaque())
    }

    /// The object behind `handle`, without retaining it (valid while the host holds it).
    package static func object<T: AnyObject>(_ handle: OpaquePointer?, as _: T.Type) -> T? {
        guard let handle else { return nil }
        return Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
    }

    /// Gives up the host's reference (destroy, or a create that fails after `retain`).
    package static func release<T: AnyObject>(_ handle: OpaquePointer, as _: T.Type) {
        Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).release()
    }
}
