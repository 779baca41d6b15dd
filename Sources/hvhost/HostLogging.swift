import Logging

/// The service console's log: swift-log to standard error, set up once per process.
enum HostLogging {
    private static let bootstrapped: Bool = {
        LoggingSystem.bootstrap { label in StreamLogHandler.standardError(label: label) }
        return true
    }()

    static func logger(verbose: Bool) -> Logger {
        _ = bootstrapped
        var logger = Logger(label: "hvhost")
        logger.logLevel = verbose ? .debug : .info
        return logger
    }
}
