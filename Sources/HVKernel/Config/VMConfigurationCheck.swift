/// What one `.vmx` file says, checked: every problem, and the parts that were valid, so
/// the checks that need them (device plugins, the kernel image) still run when other
/// keys are wrong — `hvhost validate` reports everything in one pass.
package struct VMConfigurationCheck: Sendable {
    /// The file as far as it parsed (lines with syntax errors left out); nil when it
    /// could not be read.
    package let file: VMXFile?
    /// Every problem, in file order (absent required keys last). Empty when valid.
    package let problems: [ConfigError]
    /// The configuration, when there is no problem.
    package let configuration: VMConfiguration?
    /// The devices the VM would create whose model key is valid, in creation order.
    package let devices: [DeviceConfiguration]
    /// `hv.kernel`, `hv.cmdline` and `hv.boot`, when `hv.kernel` and `hv.boot` are valid.
    package let boot: BootConfiguration?
    /// `memsize` in MiB, when valid.
    package let memoryMiB: Int?
}
