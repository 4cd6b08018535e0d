import Dispatch
import Synchronization
import ServalTensor

/// Options that shape how a `Session` compiles and runs a graph.
public struct SessionOptions: Sendable {
    /// Threads a single run may use inside kernels (and for OpenBLAS). Default 1: scale by running sessions concurrently.
    public var intraOpThreads: Int
    /// Run the optimizer passes (constant folding, Identity removal, Conv+BatchNorm folding, fusion).
    public var optimize: Bool
    /// How many input-shape-specialised plans to keep (0: never specialise). Only graphs whose shape arithmetic
    /// depends on symbolic input dimensions (a BERT's (batch, sequence)) get them.
    public var shapePlanCacheSize: Int

    public init(intraOpThreads: Int = 1, optimize: Bool = true, shapePlanCacheSize: Int = 8) {
        self.intraOpThreads = max(1, intraOpThreads)
        self.optimize = optimize
        self.shapePlanCacheSize = max(0, shapePlanCacheSize)
    }
}

/// A compiled model ready to run. `run` is safe to call from many tasks at once: kernels are immutable
/// and each run takes its own slots and buffer pool.
public final class Session: Sendable {
    public let inputs: [ValueInfo]
    public let outputs: [ValueInfo]
    public let options: SessionOptions
    /// The graph after optimization (what actually runs).
    public let optimizedGraph: Graph
    /// Inferred type of every value of the optimized graph (symbolic dimensions kept by name).
    public let valueTypes: [String: ValueType]
    /// The graph outputs with their declared types refined by inference (e.g. a shape the model left out).
    public var outputTypes: [ValueInfo] { outputs.map { ValueInfo(name: $0.name, type: valueTypes[$0.name] ?? $0.type) } }
    let plan: ExecutionPlan
    let registry: KernelRegistry
    /// Plans specialised to one set of input shapes, with the shape subgraphs folded (when the general plan has any).
    let shapePlans: ShapePlanCache?
    private let idlePools = Mutex<[BufferPool]>([])

    public init(graph: Graph, options: SessionOptions = SessionOptions(), registry: KernelRegistry = .standard) throws {
        let unsupported = Session.unsupportedOperators(in: graph, registry: registry)
        if !unsupported.isEmpty { throw EngineError.unsupportedOperators(unsupported) }
        // OpenBLAS stays single-threaded: kernels split their GEMMs over the engine's own pool (RunContext.sgemm).
        BLAS.setThreadCount(1)
        let optimized = options.optimize ? try Optimizer(registry: registry).optimize(graph) : graph
        self.inputs = graph.inputs
        self.outputs = graph.outputs
        self.options = options
        self.optimizedGraph = optimized
        self.valueTypes = ShapeInference.infer(optimized)
        self.plan = try ExecutionPlan(graph: optimized, registry: registry)
        self.registry = registry
        // Shape left in the graph means its shape arithmetic depends on the inputs' symbolic dimensions.
        self.shapePlans = options.optimize && options.shapePlanCacheSize > 0 && optimized.nodes.contains { $0.domain.isEmpty && $0.opType == "Shape" }
            ? ShapePlanCache(capacity: options.shapePlanCacheSize) : nil
    }

    /// The op types the plan for these feeds runs, in order (after shape specialisation), for inspection and tests.
    public func steps(for feeds: [String: Value]) -> [String] { plan(for: feeds).steps.map(\.node.qualifiedOpType) }

    /// Bytes this session keeps resident now: weights, what kernels packed or converted at load, specialised plans'
    /// folded constants, and the buffers its pools keep between runs (`MemoryFootprint`). Walks every kernel once:
    /// call it at load, not per request.
    public func residentBytes() -> Int {
        let pooled = idlePools.withLock { pools in pools.reduce(0) { $0 + $1.idleBytes } }
        return MemoryFootprint.bytes(graph: optimizedGraph, plans: [plan] + (shapePlans?.plans ?? []), pooledBytes: pooled)
    }

    /// How many shape-specialised plans are cached now.
    public var specialisedPlanCount: Int { shapePlans?.count ?? 0 }

    /// The plan for these (validated) feeds: the general one, or one specialised to their shapes, built on first use
    /// (the general plan stands in if specialising fails).
    func plan(for feeds: [String: Value]) -> ExecutionPlan {
        guard let shapePlans else { return plan }
        let key = inputs.map { feeds[$0.name]?.tensor?.shape ?? [] }
        if let cached = shapePlans.plan(for: key) { return cached }
        let specialised = (try? specialise(to: key)) ?? plan
        shapePlans.store(specialised, for: key)
        return specialised
    }

    /// The optimized graph with the inputs' dimensions fixed to `shapes`, shape subgraphs folded, compiled with the
    /// general plan's kernels wherever a node is unchanged.
    private func specialise(to shapes: [[Int]]) throws -> ExecutionPlan {
        let key = shapes
        var graph = optimizedGraph
        graph.inputs = zip(graph.inputs, key).map { input, shape in
            guard case .tensor(let dtype, _) = input.type else { return input }
            return ValueInfo(name: input.name, type: .tensor(dtype: dtype, shape: shape.map { .fixed($0) }))
        }
        for _ in 0..<3 where foldStaticShapes(&graph, facts: ShapeInference.infer(graph)) {
            try foldConstants(&graph, registry: registry)
        }
        try foldConstants(&graph, registry: registry)
        removeDeadNodes(&graph)
        graph.inputs = optimizedGraph.inputs
        return try ExecutionPlan(graph: graph, registry: registry, reusing: plan)
    }

    /// Every (domain, op, opset) in `graph` that has no kernel, in first-seen order.
    public static func unsupportedOperators(in graph: Graph, registry: KernelRegistry = .standard) -> [UnsupportedOperator] {
        var seen = Set<UnsupportedOperator>()
        var result: [UnsupportedOperator] = []
        for node in graph.nodes {
            let opset = graph.opset(for: node.domain)
            if registry.factory(domain: node.domain, opType: node.opType, opset: opset) == nil {
                let op = UnsupportedOperator(domain: node.domain, opType: node.opType, opset: opset)
                if seen.insert(op).inserted { result.append(op) }
            }
        }
        return result
    }

    /// Runs the graph on `feeds` (one value per graph input) and returns every graph output by name.
    /// With a `profile`, the time of every step is added to it under the step's op type. `threads` overrides the
    /// session's intra-op thread count for this run (background work passes 1 so it never takes the shared pool).
    public func run(_ feeds: [String: Value], profile: RunProfile? = nil, threads: Int? = nil) throws -> [String: Value] {
        for (name, value) in feeds {
            guard plan.inputSlots[name] != nil else { throw EngineError.unexpectedInput(name: name, known: inputs.map(\.name)) }
            try validate(name: name, value: value)
        }
        for input in inputs where feeds[input.name] == nil {
            throw EngineError.missingInput(name: input.name)
        }
        let plan = self.plan(for: feeds)
        var slots = plan.initialSlots
        for (name, value) in feeds { slots[plan.inputSlots[name]!] = value }
        let pool = idlePools.withLock { $0.popLast() } ?? BufferPool()
        defer { idlePools.withLock { $0.append(pool) } }
        let context = RunContext(pool: pool, threads: max(1, threads ?? options.intraOpThreads))
        for step in plan.steps {
            let arguments = step.inputs.map { $0 < 0 ? nil : slots[$0] }
            let results: [Value]
            let started = profile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            do {
                results = try step.kernel.run(arguments, context)
                if let profile { profile.record(step.node.qualifiedOpType, nanoseconds: DispatchTime.now().uptimeNanoseconds - started) }
            } catch let error as EngineError {
                throw error
            } catch {
                throw EngineError.kernelFailure(node: step.node.displayName, message: "\(error)")
            }
            for (index, slot) in step.outputs.enumerated() where slot >= 0 && index < results.count {
                slots[slot] = results[index]
            }
            for slot in step.releases {
                var value: Value? = nil
                swap(&value, &slots[slot])
                if case .tensor(var tensor)? = value {
                    value = nil
                    pool.recycle(&tensor)
                }
            }
        }
        var results: [String: Value] = [:]
        for (name, slot) in plan.outputSlots {
            guard let value = slots[slot] else { throw EngineError.invalidModel("graph output '\(name)' was not computed") }
            results[name] = value
        }
        return results
    }

    /// Convenience for tensor-only feeds.
    public func run(_ feeds: [String: Tensor]) throws -> [String: Value] {
        try run(feeds.mapValues { Value.tensor($0) })
    }

    private func validate(name: String, value: Value) throws {
        guard let declared = inputs.first(where: { $0.name == name }) else { return }
        guard case .tensor(let tensor) = value else {
            throw EngineError.inputTypeMismatch(name: name, expected: declared.type.description, actual: value.typeDescription)
        }
        guard case .tensor(let dtype, let shape) = declared.type else { return }
        if let dtype, dtype != tensor.dtype {
            throw EngineError.inputTypeMismatch(name: name, expected: dtype.description, actual: tensor.dtype.description)
        }
        if let shape {
            let expected = "[" + shape.map(\.description).joined(separator: ", ") + "]"
            let actual = "[" + tensor.shape.map(String.init).joined(separator: ", ") + "]"
            guard shape.count == tensor.rank else { throw EngineError.inputShapeMismatch(name: name, expected: expected, actual: actual) }
            for (dim, size) in zip(shape, tensor.shape) {
                if case .fixed(let value) = dim, value != size {
                    throw EngineError.inputShapeMismatch(name: name, expected: expected, actual: actual)
                }
            }
        }
    }
}

/// The most recently used specialised plans, keyed by the input shapes (least recently used dropped first).
final class ShapePlanCache: Sendable {
    private let entries = Mutex<[(key: [[Int]], plan: ExecutionPlan)]>([])
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func plan(for key: [[Int]]) -> ExecutionPlan? {
        entries.withLock { entries in
            guard let index = entries.firstIndex(where: { $0.key == key }) else { return nil }
            let entry = entries.remove(at: index)
            entries.append(entry)
            return entry.plan
        }
    }

    func store(_ plan: ExecutionPlan, for key: [[Int]]) {
        entries.withLock { entries in
            entries.removeAll { $0.key == key }
            entries.append((key, plan))
            if entries.count > capacity { entries.removeFirst(entries.count - capacity) }
        }
    }

    var count: Int { entries.withLock { $0.count } }
    var plans: [ExecutionPlan] { entries.withLock { $0.map(\.plan) } }
}

/// Time spent per op type over one or more runs (`serval bench --profile`). Thread-safe.
public final class RunProfile: Sendable {
    private let totals = Mutex<[String: (count: Int, nanoseconds: UInt64)]>([:])

    public init() {}

    func record(_ opType: String, nanoseconds: UInt64) {
        totals.withLock { entries in
            let current = entries[opType] ?? (0, 0)
            entries[opType] = (current.count + 1, current.nanoseconds + nanoseconds)
        }
    }

    /// (op type, calls, total nanoseconds), most expensive first.
    public var entries: [(opType: String, calls: Int, nanoseconds: UInt64)] {
        totals.withLock { $0.map { ($0.key, $0.value.count, $0.value.nanoseconds) } }.sorted { $0.nanoseconds > $1.nanoseconds }
    }
}
