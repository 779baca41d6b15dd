import HVSupport
import Logging

/// The service console's log: swift-log to standard error, set up once per process.
/// Messages are one line each with control characters escaped: names, paths and plugin
/// strings in them cannot forge log lines or send terminal escapes.
enum HostLogging {
    private static let bootstrapped: Bool = {
        LoggingSystem.bootstrap { label in EscapingLogHandler(StreamLogHandler.standardError(label: label)) }
        return true
    }()

    static func logger(verbose: Bool) -> Logger {
        _ = bootstrapped
        var logger = Logger(label: "hvhost")
        logger.logLevel = verbose ? .debug : .info
        return logger
    }
}

/// Forwards to another handler with the message's control characters escaped.
struct EscapingLogHandler: LogHandler {
    private var inner: any LogHandler

    init(_ inner: any LogHandler) { self.inner = inner }

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        event.message = "\(event.message.description.escapingControlCharacters)"
        inner.log(event: event)
    }
}
