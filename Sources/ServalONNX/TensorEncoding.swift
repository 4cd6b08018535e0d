import Foundation
import ServalTensor

/// Turns numeric `Tensor`s into `TensorProto`s with raw little-endian data, for the model writers (quantizer).
enum TensorEncoding {
    static func proto(_ tensor: Tensor, name: String) -> Onnx_TensorProto {
        precondition(tensor.dtype != .string, "string tensors are not written as raw data")
        var proto = Onnx_TensorProto()
        proto.name = name
        proto.dims = tensor.shape.map { Int64($0) }
        proto.dataType = Int32(tensor.dtype.onnxCode)
        proto.rawData = tensor.withUnsafeRawBytes { Data($0) }
        return proto
    }
}
