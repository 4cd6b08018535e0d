import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How many CPUs this process may use: the smallest of the cgroup CPU quota (containers, Kubernetes limits), the
/// affinity mask (`taskset`, `sched_setaffinity`), the cgroup's effective cpuset (Kubernetes' static CPU manager
/// gives a Guaranteed pod its own cores this way) and the processors the OS reports. Instances × threads per
/// instance are kept within it.
public enum CPUBudget {
    /// Each source's figure; nil where the source sets no limit or cannot be read.
    public struct Limits: Sendable, Equatable, CustomStringConvertible {
        public var processors: Int
        public var quota: Double?
        public var affinity: Int?
        public var cpuset: Int?

        /// The smallest of them, at least 1 (a fractional quota rounds up: 1.5 CPUs of quota run 2 threads).
        public var budget: Int {
            var budget = processors
            if let quota { budget = min(budget, Int(quota.rounded(.up))) }
            if let affinity { budget = min(budget, affinity) }
            if let cpuset { budget = min(budget, cpuset) }
            return max(1, budget)
        }

        public var description: String {
            "processors \(processors), quota \(quota.map { String(format: "%g", $0) } ?? "none"), affinity \(affinity.map(String.init) ?? "-"), "
                + "cpuset \(cpuset.map(String.init) ?? "-")"
        }
    }

    /// `cgroupRoot`: where the cgroup filesystem is mounted; the process's own cgroup under it is found through
    /// `/proc/self/cgroup` (inside a container it is the root itself). `affinity`: the affinity mask's CPU count.
    public static func limits(cgroupRoot: URL = URL(fileURLWithPath: "/sys/fs/cgroup"), affinity: Int? = affinityCount(),
                              selfCgroup: URL = URL(fileURLWithPath: "/proc/self/cgroup")) -> Limits {
        let folder = ownCgroup(root: cgroupRoot, selfCgroup: selfCgroup)
        return Limits(processors: ProcessInfo.processInfo.processorCount, quota: quota(cgroupRoot: folder), affinity: affinity,
                      cpuset: cpuset(cgroupRoot: folder))
    }

    public static func available(cgroupRoot: URL = URL(fileURLWithPath: "/sys/fs/cgroup"), affinity: Int? = affinityCount(),
                                 selfCgroup: URL = URL(fileURLWithPath: "/proc/self/cgroup")) -> Int {
        limits(cgroupRoot: cgroupRoot, affinity: affinity, selfCgroup: selfCgroup).budget
    }

    /// The process's cgroup v2 folder (`0::/path` in `/proc/self/cgroup`) when it exists under `root`, else `root`.
    static func ownCgroup(root: URL, selfCgroup: URL) -> URL {
        guard let text = try? String(contentsOf: selfCgroup, encoding: .utf8) else { return root }
        for line in text.split(separator: "\n") where line.hasPrefix("0::") {
            let path = line.dropFirst(3).trimmingCharacters(in: .whitespaces)
            guard path != "/", !path.isEmpty else { return root }
            let folder = root.appendingPathComponent(String(path.drop { $0 == "/" }))
            return FileManager.default.fileExists(atPath: folder.appendingPathComponent("cgroup.procs").path) ? folder : root
        }
        return root
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

    /// CPUs in the cgroup's effective cpuset: v2 `cpuset.cpus.effective`, v1 `cpuset/cpuset.effective_cpus`.
    static func cpuset(cgroupRoot: URL) -> Int? {
        for file in ["cpuset.cpus.effective", "cpuset/cpuset.effective_cpus"] {
            guard let text = try? String(contentsOf: cgroupRoot.appendingPathComponent(file), encoding: .utf8) else { continue }
            if let count = cpuListCount(text) { return count }
        }
        return nil
    }

    /// The CPUs a kernel CPU list names ("0-3,6,8-9" is 7); nil for an empty or malformed list.
    public static func cpuListCount(_ text: String) -> Int? {
        let list = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !list.isEmpty else { return nil }
        var cpus = Set<Int>()
        for part in list.split(separator: ",") {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            switch bounds.count {
            case 1:
                guard let cpu = bounds[0] else { return nil }
                cpus.insert(cpu)
            case 2:
                guard let low = bounds[0], let high = bounds[1], low <= high else { return nil }
                cpus.formUnion(low...high)
            default:
                return nil
            }
        }
        return cpus.count
    }

    /// The CPUs in this process's affinity mask (`sched_getaffinity`), nil when it cannot be read. Glibc's module
    /// map hides the call (it is a GNU extension), so it is looked up by name.
    public static func affinityCount() -> Int? {
        #if os(Linux)
        typealias GetAffinity = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sched_getaffinity") else { return nil }
        let call = unsafeBitCast(symbol, to: GetAffinity.self)
        // 1024 CPUs' worth of mask, glibc's cpu_set_t.
        var mask = [UInt64](repeating: 0, count: 16)
        let status = mask.withUnsafeMutableBytes { call(0, $0.count, $0.baseAddress!) }
        guard status == 0 else { return nil }
        return mask.reduce(0) { $0 + $1.nonzeroBitCount }
        #else
        return nil
        #endif
    }

    /// Threads per instance that fit `instances` into `budget` CPUs: the requested count, lowered if needed.
    public static func threadsPerInstance(requested: Int?, instances: Int, budget: Int) -> Int {
        let fair = max(1, budget / max(1, instances))
        return max(1, min(requested ?? 1, fair))
    }
}
