import HVSupport

/// The charts' two fixed-width bitmap fonts, Terminus from Debian's console-setup
/// (`console-setup-linux`): 6×12 for labels and 8×16 for titles and axes. Loaded once
/// from the system's console-font directory; every ASCII character has its own glyph.
struct ChartFont: Sendable {
    enum Size: Sendable { case small, large }

    static let smallFile = "Lat15-Terminus12x6.psf.gz"
    static let largeFile = "Lat15-Terminus16.psf.gz"

    let small: PSFFont
    let large: PSFFont

    func font(_ size: Size) -> PSFFont { size == .small ? small : large }

    /// The fonts, loaded on first use.
    static func shared() throws -> ChartFont { try loaded.get() }

    private static let loaded: Result<ChartFont, SchedSimError> = {
        do {
            let dir = PSFFont.systemDirectory
            return .success(ChartFont(small: try PSFFont.load(dir + "/" + smallFile), large: try PSFFont.load(dir + "/" + largeFile)))
        } catch {
            return .failure(SchedSimError("charts need the Terminus console fonts of Debian's console-setup-linux package (apt-get install console-setup-linux): \(error)"))
        }
    }()
}
