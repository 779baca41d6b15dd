import Glibc
import PluginABI

/// Why a plugin library was refused. `description` names the library and exactly what
/// was wrong, e.g. `/opt/hv/plugins/libfoo.so: ABI major version 2, this host speaks 1`.
package struct PluginLoadError: Error, CustomStringConvertible, Equatable, Sendable {
    package enum Reason: Equatable, Sendable {
        /// `dlopen` failed; the text is `dlerror()`.
        case dlopenFailed(String)
        /// The library does not export `hv_plugin_entry_v1`.
        case noEntrySymbol
        /// The file is not a well-formed ELF shared object (never dlopen'ed).
        case notAPlugin(String)
        /// The file or its directory may be changed by someone else than root or this
        /// user (never dlopen'ed).
        case unsafeLocation(String)
        /// Loading it crashed or hung a metadata child process (`plugins`, `validate`).
        case crashedWhileLoading(String)
        /// `hv_plugin_entry_v1()` returned NULL.
        case entryReturnedNull
        /// A struct's `struct_size` is below what this host needs to read it.
        case structTooSmall(structName: String, size: UInt32, minimum: Int)
        /// The plugin (or one of its factories, `context` non-empty) was built for another ABI major.
        case abiMajorMismatch(context: String, major: UInt32)
        /// A mandatory string field is NULL or empty.
        case missingString(field: String)
        /// A string field is not NUL-terminated within `limit` bytes or has bad characters.
        case badString(field: String, problem: String)
        /// A mandatory function pointer of the entry is NULL.
        case missingFunction(String)
        /// `factory_ids` is NULL, empty or not NULL-terminated within the limit.
        case badFactoryList(String)
        /// `get_factory(id)` returned NULL for an id the plugin lists.
        case factoryMissing(id: String)
        /// A known factory (`id`) failed validation.
        case invalidFactory(id: String, problem: String)
        /// A device model failed validation (`model` is its name, or `#index` when unreadable).
        case invalidDeviceModel(model: String, problem: String)
        /// `init()` returned a negative result.
        case initFailed(code: Int32)
        /// Another plugin earlier in the search path has the same id.
        case duplicateID(id: String, firstPath: String)
    }

    /// The library path as found on the search path.
    package var path: String
    var reason: Reason

    package init(path: String, reason: Reason) {
        self.path = path
        self.reason = reason
    }

    package var description: String { "\(path): \(reason.text)" }
}

extension PluginLoadError.Reason {
    /// The library is some other shared object (skipped quietly beside the hvhost binary).
    var isNotAPlugin: Bool {
        switch self {
        case .noEntrySymbol, .notAPlugin: true
        default: false
        }
    }

    var text: String {
        switch self {
        case let .dlopenFailed(why):
            return "cannot be loaded: \(why)"
        case .noEntrySymbol:
            return "no symbol \(HV_PLUGIN_ENTRY_SYMBOL) (is it an hvhost plugin?)"
        case let .notAPlugin(why):
            return "not loaded: \(why), so it cannot be shown to be a plugin"
        case let .unsafeLocation(why):
            return "not loaded: \(why)"
        case let .crashedWhileLoading(why):
            return "loading it \(why); not loaded"
        case .entryReturnedNull:
            return "\(HV_PLUGIN_ENTRY_SYMBOL)() returned NULL"
        case let .structTooSmall(name, size, minimum):
            return "\(name).struct_size is \(size), smaller than the \(minimum) bytes this host reads (ABI \(HV_ABI_VERSION_MAJOR).\(HV_ABI_VERSION_MINOR))"
        case let .abiMajorMismatch(context, major):
            let prefix = context.isEmpty ? "" : context + ": "
            return "\(prefix)ABI major version \(major), this host speaks \(HV_ABI_VERSION_MAJOR)"
        case let .missingString(field):
            return "\(field) is NULL or empty"
        case let .badString(field, problem):
            return "\(field) \(problem)"
        case let .missingFunction(name):
            return "\(name) is NULL (mandatory)"
        case let .badFactoryList(problem):
            return "factory_ids \(problem)"
        case let .factoryMissing(id):
            return "get_factory(\"\(id)\") returned NULL although factory_ids lists it"
        case let .invalidFactory(id, problem):
            return "factory \"\(id)\": \(problem)"
        case let .invalidDeviceModel(model, problem):
            return "model '\(model)' \(problem)"
        case let .initFailed(code):
            return "init() failed: \(pluginResultName(code))"
        case let .duplicateID(id, firstPath):
            return "plugin id '\(id)' is already provided by \(firstPath) (the first in search order is used)"
        }
    }
}

/// "-22 (EINVAL: Invalid argument)" for an HV_E* result.
func pluginResultName(_ code: Int32) -> String {
    let names: [Int32: String] = [
        1: "EPERM", 2: "ENOENT", 5: "EIO", 11: "EAGAIN", 12: "ENOMEM", 14: "EFAULT", 16: "EBUSY",
        17: "EEXIST", 22: "EINVAL", 28: "ENOSPC", 34: "ERANGE", 38: "ENOSYS", 95: "ENOTSUP",
    ]
    guard code < 0, code != Int32.min else { return "\(code)" }
    let text = String(cString: strerror(-code))
    if let name = names[-code] { return "\(code) (\(name): \(text))" }
    return "\(code) (\(text))"
}
