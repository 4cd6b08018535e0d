import Foundation
import ServalONNX
import SwiftProtobuf

/// Builds `y = x + w` with `w` (4 floats) stored in an external file, as large models are saved.
enum ExternalDataModel {
    /// `dims` is what the initializer declares (4 floats unless a test declares more than the file holds).
    static func make(location: String, offset: Int, length: Int?, dims: [Int64] = [4]) throws -> Data {
        var weight = Onnx_TensorProto()
        weight.name = "w"
        weight.dataType = 1
        weight.dims = dims
        weight.dataLocation = .external
        let entries = [("location", location), ("offset", String(offset))] + (length.map { [("length", String($0))] } ?? [])
        weight.externalData = entries.map { key, value in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
        func info(_ name: String) -> Onnx_ValueInfoProto {
            var value = Onnx_ValueInfoProto()
            value.name = name
            var tensorType = Onnx_TypeProto.Tensor()
            tensorType.elemType = 1
            var dim = Onnx_TensorShapeProto.Dimension()
            dim.dimValue = 4
            tensorType.shape.dim = [dim]
            value.type.tensorType = tensorType
            return value
        }
        var add = Onnx_NodeProto()
        add.opType = "Add"
        add.input = ["x", "w"]
        add.output = ["y"]
        var graph = Onnx_GraphProto()
        graph.name = "external"
        graph.node = [add]
        graph.initializer = [weight]
        graph.input = [info("x")]
        graph.output = [info("y")]
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 17
        var model = Onnx_ModelProto()
        model.irVersion = 8
        model.opsetImport = [opset]
        model.graph = graph
        return try model.serializedData()
    }
}
