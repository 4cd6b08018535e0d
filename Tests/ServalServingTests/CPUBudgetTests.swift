import Foundation
import ServalServing
import Testing

/// The CPU budget is the smallest of the processors, the cgroup quota, the affinity mask and the effective
/// cpuset; each source is read from a fake cgroup tree (or passed in), and the affinity reader is checked against
/// the kernel's own `Cpus_allowed_list`.
struct CPUBudgetTests {
    static let noCgroupFile = URL(fileURLWithPath: "/nonexistent/cgroup")

    func cgroup(_ files: [String: String]) throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cgroup-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        for (path, text) in files {
            let url = root.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        return root
    }

    func budget(_ root: URL, affinity: Int? = nil, selfCgroup: URL = noCgroupFile) -> CPUBudget.Limits {
        CPUBudget.limits(cgroupRoot: root, affinity: affinity, selfCgroup: selfCgroup)
    }

    static var processors: Int { ProcessInfo.processInfo.processorCount }

    @Test func readsCgroupV2Quota() throws {
        let limits = budget(try cgroup(["cpu.max": "150000 100000\n"]))
        #expect(limits.quota == 1.5)
        #expect(limits.budget == min(2, Self.processors))
    }

    @Test func unlimitedV2QuotaFallsBackToProcessors() throws {
        let limits = budget(try cgroup(["cpu.max": "max 100000\n"]))
        #expect(limits.quota == nil && limits.budget == Self.processors)
    }

    @Test func readsCgroupV1Quota() throws {
        #expect(budget(try cgroup(["cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"])).budget == 1)
    }

    @Test func theAffinityMaskLimitsTheBudget() throws {
        let limits = budget(try cgroup([:]), affinity: 1)
        #expect(limits.affinity == 1 && limits.budget == 1)
    }

    @Test func theEffectiveCpusetLimitsTheBudget() throws {
        #expect(budget(try cgroup(["cpuset.cpus.effective": "0\n"])).cpuset == 1)
        #expect(budget(try cgroup(["cpuset.cpus.effective": "0\n"])).budget == 1)
        #expect(budget(try cgroup(["cpuset/cpuset.effective_cpus": "2-3\n"])).cpuset == 2)
    }

    @Test func theSmallestSourceWins() throws {
        let root = try cgroup(["cpu.max": "400000 100000\n", "cpuset.cpus.effective": "0-2\n"])
        #expect(budget(root, affinity: 8).budget == min(3, Self.processors))
        #expect(budget(root, affinity: 2).budget == min(2, Self.processors))
    }

    @Test func theProcessOwnCgroupIsFoundThroughProcSelfCgroup() throws {
        let root = try cgroup(["kubepods/pod1/cgroup.procs": "", "kubepods/pod1/cpu.max": "100000 100000\n", "cpu.max": "max 100000\n"])
        let selfCgroup = try cgroup(["cgroup": "0::/kubepods/pod1\n"]).appendingPathComponent("cgroup")
        #expect(budget(root, selfCgroup: selfCgroup).quota == 1)
        // A path that is not under this mount (another namespace): the mount's root.
        let elsewhere = try cgroup(["cgroup": "0::/not/here\n"]).appendingPathComponent("cgroup")
        #expect(budget(root, selfCgroup: elsewhere).quota == nil)
    }

    @Test func cpuListsAreCountedAsTheKernelWritesThem() {
        #expect(CPUBudget.cpuListCount("0-3,6,8-9\n") == 7)
        #expect(CPUBudget.cpuListCount("5") == 1)
        #expect(CPUBudget.cpuListCount("0-1,1-2") == 3)
        #expect(CPUBudget.cpuListCount("") == nil)
        #expect(CPUBudget.cpuListCount("3-1") == nil)
        #expect(CPUBudget.cpuListCount("a") == nil)
    }

    @Test func theAffinityReaderAgreesWithTheKernelsAllowedList() throws {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") })
        let allowed = CPUBudget.cpuListCount(String(line.dropFirst("Cpus_allowed_list:".count)))
        #expect(CPUBudget.affinityCount() == allowed)
    }

    @Test func threadsAreLoweredToFitInstancesIntoTheBudget() {
        #expect(CPUBudget.threadsPerInstance(requested: 4, instances: 2, budget: 4) == 2)
        #expect(CPUBudget.threadsPerInstance(requested: 1, instances: 8, budget: 2) == 1)
        #expect(CPUBudget.threadsPerInstance(requested: nil, instances: 1, budget: 16) == 1)
    }
}
