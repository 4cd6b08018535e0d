import ServalTensor

/// ai.onnx.ml TreeEnsembleClassifier / TreeEnsembleRegressor.
///
/// At load the attribute lists are packed into one flat node array per ensemble (children as indices,
/// leaves pointing into a weight table), so evaluation is a pointer chase per tree with no lookups.
struct TreeEnsemble: Sendable {
    enum Mode: UInt8, Sendable { case leq, lt, gte, gt, eq, neq, leaf }

    struct Node: Sendable {
        var feature: Int32
        var threshold: Float
        var trueIndex: Int32
        var falseIndex: Int32
        var mode: Mode
        var missingTracksTrue: Bool
        /// Leaves: range into `weightTargets` / `weightValues`.
        var weightStart: Int32
        var weightCount: Int32
    }

    /// 16-byte form of the nodes for the all-BRANCH_LEQ fast path: `feature < 0` marks a leaf, whose
    /// `trueIndex`/`falseIndex` then hold its weight range (start, count).
    struct CompactNode: Sendable {
        var feature: Int32
        var threshold: Float
        var trueIndex: Int32
        var falseIndex: Int32
    }

    let nodes: [Node]
    let compactNodes: [CompactNode]
    let roots: [Int32]
    let weightTargets: [Int32]
    let weightValues: [Float]
    let maxFeature: Int
    /// True when every split is BRANCH_LEQ with no NaN routing to the true branch (what skl2onnx emits).
    let allLessOrEqual: Bool

    init(_ build: KernelBuildContext, weightPrefix: String) throws {
        func ints(_ name: String) throws -> [Int] { try build.ints(name) ?? [] }
        func floatsOrTensor(_ name: String) throws -> [Float] {
            if let values = try build.floats(name), !values.isEmpty { return values }
            if let tensor = try build.tensor(name + "_as_tensor") { return try tensor.converted(to: .float32).scalars(as: Float.self) }
            return []
        }
        let treeIDs = try ints("nodes_treeids"), nodeIDs = try ints("nodes_nodeids"), featureIDs = try ints("nodes_featureids")
        let values = try floatsOrTensor("nodes_values"), modes = try build.strings("nodes_modes") ?? []
        let trueIDs = try ints("nodes_truenodeids"), falseIDs = try ints("nodes_falsenodeids")
        let missing = try ints("nodes_missing_value_tracks_true")
        let count = treeIDs.count
        guard nodeIDs.count == count, featureIDs.count == count, modes.count == count, trueIDs.count == count, falseIDs.count == count,
              values.count == count || values.isEmpty else {
            throw build.invalid("tree node attribute lists have different lengths")
        }
        struct Key: Hashable { let tree: Int; let node: Int }
        var index: [Key: Int] = [:]
        var roots: [Int32] = []
        var seenTrees = Set<Int>()
        for i in 0..<count {
            index[Key(tree: treeIDs[i], node: nodeIDs[i])] = i
            if seenTrees.insert(treeIDs[i]).inserted { roots.append(Int32(i)) }
        }
        var nodes: [Node] = []
        nodes.reserveCapacity(count)
        var allLEQ = true
        for i in 0..<count {
            let mode: Mode
            switch modes[i] {
            case "BRANCH_LEQ": mode = .leq
            case "BRANCH_LT": mode = .lt
            case "BRANCH_GTE": mode = .gte
            case "BRANCH_GT": mode = .gt
            case "BRANCH_EQ": mode = .eq
            case "BRANCH_NEQ": mode = .neq
            case "LEAF": mode = .leaf
            default: throw build.invalid("unknown node mode \(modes[i])")
            }
            var trueIndex: Int32 = -1, falseIndex: Int32 = -1
            if mode != .leaf {
                guard let t = index[Key(tree: treeIDs[i], node: trueIDs[i])], let f = index[Key(tree: treeIDs[i], node: falseIDs[i])] else {
                    throw build.invalid("tree \(treeIDs[i]) node \(nodeIDs[i]) points to a missing child")
                }
                trueIndex = Int32(t)
                falseIndex = Int32(f)
            }
            let tracksTrue = i < missing.count && missing[i] != 0
            if mode != .leaf && (mode != .leq || tracksTrue) { allLEQ = false }
            nodes.append(Node(feature: Int32(featureIDs[i]), threshold: values.isEmpty ? 0 : values[i], trueIndex: trueIndex,
                              falseIndex: falseIndex, mode: mode, missingTracksTrue: tracksTrue, weightStart: 0, weightCount: 0))
        }
        let weightTree = try ints("\(weightPrefix)_treeids"), weightNode = try ints("\(weightPrefix)_nodeids")
        let weightTarget = try ints("\(weightPrefix)_ids"), weights = try floatsOrTensor("\(weightPrefix)_weights")
        guard weightTree.count == weightNode.count, weightNode.count == weightTarget.count, weightTarget.count == weights.count else {
            throw build.invalid("\(weightPrefix) weight attribute lists have different lengths")
        }
        var perLeaf: [Int: [(Int32, Float)]] = [:]
        for i in 0..<weights.count {
            guard let leaf = index[Key(tree: weightTree[i], node: weightNode[i])] else {
                throw build.invalid("weight for missing node \(weightNode[i]) of tree \(weightTree[i])")
            }
            perLeaf[leaf, default: []].append((Int32(weightTarget[i]), weights[i]))
        }
        var targets: [Int32] = [], weightValues: [Float] = []
        for leaf in perLeaf.keys.sorted() {
            nodes[leaf].weightStart = Int32(targets.count)
            nodes[leaf].weightCount = Int32(perLeaf[leaf]!.count)
            for (target, weight) in perLeaf[leaf]! { targets.append(target); weightValues.append(weight) }
        }
        self.nodes = nodes
        self.compactNodes = nodes.map { node in
            node.mode == .leaf
                ? CompactNode(feature: -1, threshold: 0, trueIndex: node.weightStart, falseIndex: node.weightCount)
                : CompactNode(feature: node.feature, threshold: node.threshold, trueIndex: node.trueIndex, falseIndex: node.falseIndex)
        }
        self.roots = roots
        self.weightTargets = targets
        self.weightValues = weightValues
        self.maxFeature = featureIDs.max() ?? 0
        self.allLessOrEqual = allLEQ
    }

    /// Adds every tree's leaf weights for `row` into `scores` (length = number of targets); counts hits per target.
    @inline(__always)
    func accumulate(_ row: UnsafePointer<Float>, _ nodes: UnsafePointer<Node>, into scores: UnsafeMutablePointer<Float>, hits: UnsafeMutablePointer<Bool>?) {
        for root in roots {
            var index = Int(root)
            if allLessOrEqual {
                while nodes[index].mode != .leaf {
                    let node = nodes[index]
                    index = Int(row[Int(node.feature)] <= node.threshold ? node.trueIndex : node.falseIndex)
                }
            } else {
                while true {
                    let node = nodes[index]
                    let x = row[Int(node.feature)]
                    let goTrue: Bool
                    switch node.mode {
                    case .leaf: goTrue = false
                    case _ where x.isNaN: goTrue = node.missingTracksTrue
                    case .leq: goTrue = x <= node.threshold
                    case .lt: goTrue = x < node.threshold
                    case .gte: goTrue = x >= node.threshold
                    case .gt: goTrue = x > node.threshold
                    case .eq: goTrue = x == node.threshold
                    case .neq: goTrue = x != node.threshold
                    }
                    if node.mode == .leaf { break }
                    index = Int(goTrue ? node.trueIndex : node.falseIndex)
                }
            }
            let leaf = nodes[index]
            let start = Int(leaf.weightStart)
            for w in start..<(start + Int(leaf.weightCount)) {
                scores[Int(weightTargets[w])] += weightValues[w]
                hits?[Int(weightTargets[w])] = true
            }
        }
    }

    /// Raw per-target sums for every row of `x`, computed over the session's threads.
    ///
    /// Rows go in blocks; within a block the loop runs tree by tree, so one tree's nodes stay in cache while
    /// every row of the block walks it.
    func evaluate(_ x: Tensor, targets: Int, context: RunContext) throws -> (scores: [Float], hits: [Bool], rows: Int) {
        let (values, rows, features) = try featureMatrix(x)
        guard features > maxFeature else { throw KernelError("input has \(features) features; the trees read feature \(maxFeature)") }
        var scores = [Float](repeating: 0, count: rows * targets)
        var hits = [Bool](repeating: false, count: rows * targets)
        values.withUnsafeBufferPointer { px in
            scores.withUnsafeMutableBufferPointer { ps in
                hits.withUnsafeMutableBufferPointer { ph in
                    let (input, output, hitBase) = (px.baseAddress!, ps.baseAddress!, ph.baseAddress!)
                    let chunk = 128
                    context.parallelFor((rows + chunk - 1) / chunk) { block in
                        let range = (block * chunk)..<min(rows, (block + 1) * chunk)
                        if allLessOrEqual {
                            accumulateLessOrEqual(input, features: features, rows: range, into: output, hits: hitBase, targets: targets)
                        } else {
                            nodes.withUnsafeBufferPointer { pn in
                                for row in range {
                                    accumulate(input + row * features, pn.baseAddress!, into: output + row * targets, hits: hitBase + row * targets)
                                }
                            }
                        }
                    }
                }
            }
        }
        return (scores, hits, rows)
    }

    /// The BRANCH_LEQ-only walk over compact nodes, tree-major within a block of rows.
    @inline(__always)
    private func accumulateLessOrEqual(
        _ input: UnsafePointer<Float>, features: Int, rows: Range<Int>, into output: UnsafeMutablePointer<Float>,
        hits: UnsafeMutablePointer<Bool>, targets: Int
    ) {
        compactNodes.withUnsafeBufferPointer { pn in
            weightTargets.withUnsafeBufferPointer { pt in
                weightValues.withUnsafeBufferPointer { pv in
                    let nodes = pn.baseAddress!
                    for root in roots {
                        for row in rows {
                            let sample = input + row * features
                            var index = Int(root)
                            var node = nodes[index]
                            while node.feature >= 0 {
                                index = Int(sample[Int(node.feature)] <= node.threshold ? node.trueIndex : node.falseIndex)
                                node = nodes[index]
                            }
                            let start = Int(node.trueIndex), end = start + Int(node.falseIndex)
                            let scores = output + row * targets, flags = hits + row * targets
                            for w in start..<end {
                                let target = Int(pt[w])
                                scores[target] += pv[w]
                                flags[target] = true
                            }
                        }
                    }
                }
            }
        }
    }
}

struct TreeEnsembleClassifierKernel: Kernel {
    let ensemble: TreeEnsemble
    let labels: ClassLabels
    let baseValues: [Float]
    let transform: PostTransform
    /// Two labels but weights for one class only (gradient boosting's binary form).
    let binaryOneScore: Bool
    let weightsAllPositive: Bool

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let classes = labels.count
        let (raw, hits, rows) = try ensemble.evaluate(try inputs.tensor(0), targets: classes, context: context)
        var chosen = [Int](repeating: 0, count: rows)
        var output = [Float](repeating: 0, count: rows * classes)
        for row in 0..<rows {
            var scores = Array(raw[(row * classes)..<((row + 1) * classes)])
            if classes > 2 {
                for c in 0..<min(baseValues.count, classes) { scores[c] += baseValues[c] }
                var best = 0
                for c in 1..<classes where scores[c] > scores[best] { best = c }
                chosen[row] = best
                transform.apply(&scores)
                output.replaceSubrange((row * classes)..<((row + 1) * classes), with: scores)
                continue
            }
            // Binary: follows onnxruntime's handling of one-score and two-score forms.
            let secondHit = hits[row * classes + 1]
            var pair: [Float]
            if secondHit || !binaryOneScore {
                if baseValues.count == 2 {
                    if secondHit && binaryOneScore {
                        scores[1] = baseValues[1] + scores[0]
                        scores[0] = -scores[1]
                    } else {
                        scores[0] += baseValues[0]
                        scores[1] += baseValues[1]
                    }
                } else if baseValues.count == 1 {
                    scores[0] += baseValues[0]
                }
                chosen[row] = scores[1] > scores[0] ? 1 : 0
                pair = scores
                transform.apply(&pair)
            } else {
                var score = scores[0]
                if let base = baseValues.first { score += base }
                if weightsAllPositive {
                    chosen[row] = score > 0.5 ? 1 : 0
                    pair = [1 - score, score]
                    if transform != .none && transform != .probit { var p = pair; transform.apply(&p); pair = p }
                } else {
                    chosen[row] = score > 0 ? 1 : 0
                    switch transform {
                    case .logistic: pair = [logisticFunction(-score), logisticFunction(score)]
                    case .probit: pair = [probitFunction(-score), probitFunction(score)]
                    default:
                        pair = [-score, score]
                        transform.apply(&pair)
                    }
                }
            }
            output[row * 2] = pair[0]
            output[row * 2 + 1] = pair[1]
        }
        return [.tensor(labels.tensor(chosen)), .tensor(Tensor(shape: [rows, classes], scalars: output))]
    }
}

struct TreeEnsembleRegressorKernel: Kernel {
    enum Aggregate: String, Sendable { case sum = "SUM", average = "AVERAGE", min = "MIN", max = "MAX" }

    let ensemble: TreeEnsemble
    let targets: Int
    let aggregate: Aggregate
    let baseValues: [Float]
    let transform: PostTransform

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let x = try inputs.tensor(0)
        var scores: [Float]
        let rows: Int
        if aggregate == .sum || aggregate == .average {
            (scores, _, rows) = try ensemble.evaluate(x, targets: targets, context: context)
            if aggregate == .average { for i in scores.indices { scores[i] /= Float(ensemble.roots.count) } }
        } else {
            // MIN/MAX need each tree's contribution separately.
            let (values, count, features) = try featureMatrix(x)
            rows = count
            scores = [Float](repeating: aggregate == .min ? .infinity : -.infinity, count: rows * targets)
            var hit = [Bool](repeating: false, count: rows * targets)
            for root in ensemble.roots {
                let single = TreeEnsemble(subset: ensemble, root: root)
                for row in 0..<rows {
                    var partial = [Float](repeating: 0, count: targets)
                    var partialHits = [Bool](repeating: false, count: targets)
                    values.withUnsafeBufferPointer { px in
                        single.nodes.withUnsafeBufferPointer { pn in
                            partial.withUnsafeMutableBufferPointer { pp in
                                partialHits.withUnsafeMutableBufferPointer { ph in
                                    single.accumulate(px.baseAddress! + row * features, pn.baseAddress!, into: pp.baseAddress!, hits: ph.baseAddress!)
                                }
                            }
                        }
                    }
                    for t in 0..<targets where partialHits[t] {
                        let i = row * targets + t
                        scores[i] = aggregate == .min ? Swift.min(scores[i], partial[t]) : Swift.max(scores[i], partial[t])
                        hit[i] = true
                    }
                }
            }
            for i in scores.indices where !hit[i] { scores[i] = 0 }
        }
        for row in 0..<rows {
            var values = Array(scores[(row * targets)..<((row + 1) * targets)])
            for t in 0..<min(targets, baseValues.count) { values[t] += baseValues[t] }
            transform.apply(&values)
            scores.replaceSubrange((row * targets)..<((row + 1) * targets), with: values)
        }
        return [.tensor(Tensor(shape: [rows, targets], scalars: scores))]
    }
}

extension TreeEnsemble {
    /// The ensemble restricted to one tree (for MIN/MAX aggregation).
    init(subset: TreeEnsemble, root: Int32) {
        nodes = subset.nodes
        compactNodes = subset.compactNodes
        roots = [root]
        weightTargets = subset.weightTargets
        weightValues = subset.weightValues
        maxFeature = subset.maxFeature
        allLessOrEqual = subset.allLessOrEqual
    }
}

extension KernelRegistry {
    static func registerTreeEnsembles(into registry: inout KernelRegistry) {
        registry.register("TreeEnsembleClassifier", domain: "ai.onnx.ml") { build in
            guard let labels = try ClassLabels(build) else { throw build.invalid("class labels are required") }
            let ensemble = try TreeEnsemble(build, weightPrefix: "class")
            let classIDs = Set(try build.ints("class_ids") ?? [])
            let weights = try build.floats("class_weights") ?? []
            let base = try build.floats("base_values") ?? (try build.tensor("base_values_as_tensor")?.converted(to: .float32).scalars(as: Float.self)) ?? []
            return TreeEnsembleClassifierKernel(
                ensemble: ensemble, labels: labels, baseValues: base, transform: try PostTransform(build),
                binaryOneScore: labels.count == 2 && classIDs.count == 1, weightsAllPositive: weights.allSatisfy { $0 >= 0 })
        }
        registry.register("TreeEnsembleRegressor", domain: "ai.onnx.ml") { build in
            let name = try build.string("aggregate_function", default: "SUM")
            guard let aggregate = TreeEnsembleRegressorKernel.Aggregate(rawValue: name) else { throw build.invalid("unknown aggregate_function \(name)") }
            let base = try build.floats("base_values") ?? (try build.tensor("base_values_as_tensor")?.converted(to: .float32).scalars(as: Float.self)) ?? []
            return TreeEnsembleRegressorKernel(
                ensemble: try TreeEnsemble(build, weightPrefix: "target"), targets: try build.int("n_targets", default: 1),
                aggregate: aggregate, baseValues: base, transform: try PostTransform(build))
        }
    }
}
