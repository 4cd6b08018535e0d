import ServalEngine
import ServalTensor
import Testing

/// Kernel semantics that the backend suite does not pin down, run through single-node graphs.
struct KernelTests {
    func run(_ op: String, _ inputs: [Tensor], attributes: [String: Attribute] = [:], opset: Int = 17, domain: String = "") throws -> [Tensor] {
        let names = inputs.indices.map { "in\($0)" }
        let graph = Graph(
            nodes: [Node(opType: op, domain: domain, inputs: names, outputs: ["out"], attributes: attributes)],
            inputs: names.map { ValueInfo(name: $0, type: .unknown) },
            outputs: [ValueInfo(name: "out", type: .unknown)], initializers: [:], opsets: domain.isEmpty ? ["": opset] : [domain: opset, "": 17])
        let session = try Session(graph: graph, options: SessionOptions(optimize: false))
        let results = try session.run(Dictionary(uniqueKeysWithValues: zip(names, inputs)))
        return [try #require(results["out"]?.tensor)]
    }

    @Test func addBroadcastsBiasOverChannels() throws {
        let x = Tensor(shape: [1, 2, 2, 2], scalars: (0..<8).map(Float.init))
        let bias = Tensor(shape: [2, 1, 1], scalars: [Float(100), 200])
        let out = try run("Add", [x, bias])[0]
        #expect(out.scalars(as: Float.self) == [100, 101, 102, 103, 204, 205, 206, 207])
    }

    @Test func integerDivisionByZeroDoesNotTrap() throws {
        let out = try run("Div", [Tensor(shape: [2], scalars: [Int32(7), Int32.min]), Tensor(shape: [2], scalars: [Int32(0), -1])])[0]
        #expect(out.scalars(as: Int32.self) == [0, Int32.min])
    }

    @Test func softmaxBeforeOpset13FlattensTrailingAxes() throws {
        let x = Tensor(shape: [1, 2, 2], scalars: [Float(0), 0, 0, 0])
        let old = try run("Softmax", [x], attributes: ["axis": .int(1)], opset: 11)[0]
        let new = try run("Softmax", [x], attributes: ["axis": .int(1)], opset: 13)[0]
        #expect(old.scalars(as: Float.self) == [0.25, 0.25, 0.25, 0.25])
        #expect(new.scalars(as: Float.self) == [0.5, 0.5, 0.5, 0.5])
    }

    @Test func treeEnsembleFollowsBranchModesAndMissingValues() throws {
        // One tree: x0 < 0.5 ? leaf 1 (weight 10) : leaf 2 (weight 20); NaN goes to the true branch.
        let attributes: [String: Attribute] = [
            "nodes_treeids": .ints([0, 0, 0]), "nodes_nodeids": .ints([0, 1, 2]), "nodes_featureids": .ints([0, 0, 0]),
            "nodes_values": .floats([0.5, 0, 0]), "nodes_modes": .strings(["BRANCH_LT", "LEAF", "LEAF"]),
            "nodes_truenodeids": .ints([1, 0, 0]), "nodes_falsenodeids": .ints([2, 0, 0]),
            "nodes_missing_value_tracks_true": .ints([1, 0, 0]),
            "target_treeids": .ints([0, 0]), "target_nodeids": .ints([1, 2]), "target_ids": .ints([0, 0]),
            "target_weights": .floats([10, 20]), "n_targets": .int(1),
        ]
        let x = Tensor(shape: [3, 1], scalars: [Float(0.2), 0.5, .nan])
        let out = try run("TreeEnsembleRegressor", [x], attributes: attributes, opset: 3, domain: "ai.onnx.ml")[0]
        #expect(out.scalars(as: Float.self) == [10, 20, 10])
    }

    @Test func gatherRejectsOutOfRangeIndex() {
        let data = Tensor(shape: [3], scalars: [Float(1), 2, 3])
        #expect { try run("Gather", [data, Tensor(shape: [1], scalars: [Int64(5)])]) } throws: { error in
            "\(error)".contains("index 5 out of range")
        }
    }
}
