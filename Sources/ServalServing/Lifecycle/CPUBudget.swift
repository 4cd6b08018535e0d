import Foundation

/// How many CPUs this process may use: the cgroup CPU quota when one is set (containers, Kubernetes limits),
/// else the processors the OS reports. Instances × threads per instance are kept within it.
public enum CPUBudget {
    public static func available(cgroupRoot: URL = URL(fileURLWithPath: "/sys/fs/cgroup")) -> Int {
        let processors = ProcessInfo.processInfo.activeProcessorCount
        guard let quota = quota(cgroupRoot: cgroupRoot) else { return processors }
        return max(1, min(processors, Int(quota.rounded(.up))))
    }

    /// CPUs allowed by the quota, or nil when unlimited or unknown. cgroup v2: `cpu.max` = "QUOTA PERIOD" or "max PERIOD";
    /// cgroup v1: `cpu/cpu.cfs_quota_us` (-1 = unlimited) over `cpu/cpu.cfs_period_us`.
    static func quota(cgroupRoot: URL) -> Double? {
        if let text = try? String(contentsOf: cgroupRoot.appendingPathComponent("cpu.max"), encoding: .utf8) {
            let fields = text.split(whereSeparator: \.isWhitespace)
            guard fields.count == 2, let quota = Double(fields[0]), let period = Double(fields[1]), period > 0 else { return nil }
            return quota / period
        }
        let v1 = cgroupRoot.appendingPathComponent("cpu")
        guard let quotaText = try? String(contentsOf: v1.appendingPathComponent("cpu.cfs_quota_us"), encoding: .utf8),
              let periodText = try? String(contentsOf: v1.appendingPathComponent("cpu.cfs_period_us"), encoding: .utf8),
              let quota = Double(quotaText.trimmingCharacters(in: .whitespacesAndNewlines)),
              let period = Double(periodText.trimmingCharacters(in: .whitespacesAndNewlines)), quota > 0, period > 0 else { return nil }
        return quota / period
    }

    /// Threads per instance that fit `instances` into `budget` CPUs: the requested count, lowered if needed.
    public static func threadsPerInstance(requested: Int?, instances: Int, budget: Int) -> Int {
        let fair = max(1, budget / max(1, instances))
        return max(1, min(requested ?? 1, fair))
    }
}
