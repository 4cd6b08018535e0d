import Foundation
import ServalONNX
import ServalTensor

/// Reads CLI input files (.npy, .pb TensorProto, or KServe v2 JSON tensors) and writes outputs.
enum TensorFiles {
    struct InputError: Error, CustomStringConvertible {
        let description: String
    }

    /// Reads `--input NAME=PATH` arguments into named tensors.
    static func inputs(_ arguments: [String]) throws -> [String: Tensor] {
        var tensors: [String: Tensor] = [:]
        for argument in arguments {
            guard let equals = argument.firstIndex(of: "="), equals != argument.startIndex else {
                throw InputError(description: "--input takes NAME=PATH, got '\(argument)'")
            }
            tensors[String(argument[..<equals])] = try read(String(argument[argument.index(after: equals)...]))
        }
        return tensors
    }

    static func read(_ path: String) throws -> Tensor {
        guard let data = FileManager.default.contents(atPath: path) else { throw InputError(description: "cannot read \(path)") }
        switch URL(fileURLWithPath: path).pathExtension.lowercased() {
        case "npy": return try NPYFormat.decode(data)
        case "pb": return try ONNXModel.tensor(serialized: data)
        case "json": return try fromKServeJSON(data, path: path)
        default: throw InputError(description: "\(path): use a .npy, .pb or .json file")
        }
    }

    /// `{"shape": [...], "datatype": "FP32", "data": [...]}` with flat or nested data.
    static func fromKServeJSON(_ data: Data, path: String) throws -> Tensor {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw InputError(description: "\(path): expected a JSON object with shape, datatype and data")
        }
        guard let shape = object["shape"] as? [Int], let name = object["datatype"] as? String, let dtype = DType(kserveName: name) else {
            throw InputError(description: "\(path): 'shape' (list of ints) and 'datatype' (FP32, INT64, BOOL, BYTES...) are required")
        }
        var flat: [Any] = []
        func flatten(_ value: Any) { if let list = value as? [Any] { list.forEach(flatten) } else { flat.append(value) } }
        flatten(object["data"] ?? [])
        guard flat.count == shape.reduce(1, *) else {
            throw InputError(description: "\(path): data has \(flat.count) elements, shape \(shape) needs \(shape.reduce(1, *))")
        }
        if dtype == .string { return Tensor(shape: shape, strings: flat.map { "\($0)" }) }
        if dtype == .bool { return Tensor(shape: shape, scalars: flat.map { ($0 as? Bool) ?? (($0 as? NSNumber)?.boolValue ?? false) }) }
        let numbers = try flat.map { value -> Double in
            guard let number = value as? NSNumber else { throw InputError(description: "\(path): non-numeric element \(value)") }
            return number.doubleValue
        }
        return try Tensor(shape: shape, scalars: numbers).converted(to: dtype)
    }
}
