import HVSched

extension Scheduler {
    /// Registers a VM about to power on from its configuration: its pool
    /// (`hv.sched.pool`), `sched.cpu.*` as per-vCPU parameters and the reservation of
    /// `sched.cpu.min` (admission control). Errors name the `.vmx` line and key.
    func register(_ config: VMConfiguration) throws -> SchedulerVM {
        func located(_ key: String, default value: String? = nil) -> String {
            config.entry(forKey: key).map { "\($0.location): \(key) = \"\($0.value)\"" }
                ?? "\(config.path): \(key)" + (value.map { " (not set: \"\($0)\")" } ?? "")
        }
        let request = SchedulerVMRequest(name: config.displayName, vcpuCount: config.vcpuCount,
                                         poolName: config.schedulerPool, cpu: config.cpuScheduling)
        do {
            return try register(request)
        } catch {
            let key = switch error.setting {
            case .pool: located("hv.sched.pool", default: SchedulerConfiguration.defaultPoolName)
            case .affinity: located("sched.cpu.affinity")
            case .minimum: located("sched.cpu.min")
            }
            throw SchedulerPolicyError("\(key): \(error.message)")
        }
    }
}
