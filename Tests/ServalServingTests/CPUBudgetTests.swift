import Foundation
import ServalServing
import Testing

struct CPUBudgetTests {
    func cgroup(_ files: [String: String]) throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cgroup-\(UUID().uuidString)")
        for (path, text) in files {
            let url = root.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        return root
    }

    @Test func readsCgroupV2Quota() throws {
        let root = try cgroup(["cpu.max": "150000 100000\n"])
        #expect(CPUBudget.available(cgroupRoot: root) == min(2, ProcessInfo.processInfo.activeProcessorCount))
    }

    @Test func unlimitedV2QuotaFallsBackToProcessors() throws {
        let root = try cgroup(["cpu.max": "max 100000\n"])
        #expect(CPUBudget.available(cgroupRoot: root) == ProcessInfo.processInfo.activeProcessorCount)
    }

    @Test func readsCgroupV1Quota() throws {
        let root = try cgroup(["cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"])
        #expect(CPUBudget.available(cgroupRoot: root) == 1)
    }

    @Test func threadsAreLoweredToFitInstancesIntoTheBudget() {
        #expect(CPUBudget.threadsPerInstance(requested: 4, instances: 2, budget: 4) == 2)
        #expect(CPUBudget.threadsPerInstance(requested: 1, instances: 8, budget: 2) == 1)
        #expect(CPUBudget.threadsPerInstance(requested: nil, instances: 1, budget: 16) == 1)
    }
}
