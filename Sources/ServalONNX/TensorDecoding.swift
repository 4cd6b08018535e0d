import Foundation
import ServalEngine
import ServalTensor

/// Turns `TensorProto`s into `Tensor`s: raw little-endian bytes, typed repeated fields, or external files.
enum TensorDecoding {
    static func tensor(from proto: Onnx_TensorProto, baseDirectory: URL?) throws -> Tensor {
        let name = proto.name
        guard let dtype = DType(onnxCode: Int(proto.dataType)) else {
            throw ONNXImportError.unsupportedTensorType(tensor: name, typeCode: Int(proto.dataType))
        }
        let shape = proto.dims.map { Int($0) }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw ONNXImportError.malformedTensor(tensor: name, reason: "negative dimension in \(shape)") }
        let count = try elementCount(shape, dtype: dtype, name: name)
        if dtype == .string {
            guard proto.stringData.count == count else {
                throw ONNXImportError.malformedTensor(tensor: name, reason: "\(proto.stringData.count) strings for shape \(shape)")
            }
            return Tensor(shape: shape, strings: proto.stringData.map { String(decoding: $0, as: UTF8.self) })
        }
        if proto.hasDataLocation && proto.dataLocation == .external {
            return try fromBytes(try externalBytes(proto, baseDirectory: baseDirectory, expected: count * dtype.byteSize), dtype: dtype, shape: shape, name: name)
        }
        if proto.hasRawData || !proto.rawData.isEmpty {
            return try fromBytes(proto.rawData, dtype: dtype, shape: shape, name: name)
        }
        func check(_ available: Int) throws {
            guard available == count else {
                throw ONNXImportError.malformedTensor(tensor: name, reason: "\(available) values for shape \(shape)")
            }
        }
        switch dtype {
        case .float32:
            try check(proto.floatData.count)
            return Tensor(shape: shape, scalars: proto.floatData)
        case .float64:
            try check(proto.doubleData.count)
            return Tensor(shape: shape, scalars: proto.doubleData)
        case .int64:
            try check(proto.int64Data.count)
            return Tensor(shape: shape, scalars: proto.int64Data)
        case .uint32, .uint64:
            try check(proto.uint64Data.count)
            return try Tensor(shape: shape, scalars: proto.uint64Data).converted(to: dtype)
        case .float16:
            try check(proto.int32Data.count)
            return Tensor(shape: shape, scalars: proto.int32Data.map { Float16(bitPattern: UInt16(truncatingIfNeeded: $0)) })
        case .bool:
            try check(proto.int32Data.count)
            return Tensor(shape: shape, scalars: proto.int32Data.map { $0 != 0 })
        default:
            try check(proto.int32Data.count)
            return try Tensor(shape: shape, scalars: proto.int32Data).converted(to: dtype)
        }
    }

    /// The elements `shape` declares, refused when the count (or its size in bytes) does not fit an Int: the sizes
    /// are checked against the bytes present before anything is allocated, so a small file declaring a huge
    /// tensor costs nothing.
    static func elementCount(_ shape: [Int], dtype: DType, name: String) throws -> Int {
        var count = 1
        for dimension in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow, !product.multipliedReportingOverflow(by: max(dtype.byteSize, 1)).overflow else {
                throw ONNXImportError.malformedTensor(tensor: name, reason: "shape \(shape) declares more elements than can exist")
            }
            count = product
        }
        return count
    }

    static func fromBytes(_ data: Data, dtype: DType, shape: [Int], name: String) throws -> Tensor {
        let count = try elementCount(shape, dtype: dtype, name: name)
        guard data.count == count * dtype.byteSize else {
            throw ONNXImportError.malformedTensor(tensor: name, reason: "\(data.count) bytes for \(count) elements of \(dtype)")
        }
        var tensor = Tensor(uninitialized: dtype, shape: shape)
        tensor.withUnsafeMutableRawBytes { target in
            data.withUnsafeBytes { source in
                if let base = source.baseAddress, source.count > 0 { target.baseAddress!.copyMemory(from: base, byteCount: source.count) }
            }
        }
        if dtype == .bool {
            // Any non-zero byte is true; normalise so Swift's Bool invariant (0 or 1) holds.
            tensor.withUnsafeMutableRawBytes { bytes in
                for i in 0..<bytes.count where bytes[i] > 1 { bytes[i] = 1 }
            }
        }
        return tensor
    }

    /// Reads `location` (relative to the model's folder), honouring `offset` and `length`. `expected` (what the
    /// shape needs) is checked against the file's size before any read, so nothing is allocated for a declared
    /// size the file does not hold.
    static func externalBytes(_ proto: Onnx_TensorProto, baseDirectory: URL?, expected: Int) throws -> Data {
        let name = proto.name
        var entries: [String: String] = [:]
        for entry in proto.externalData { entries[entry.key] = entry.value }
        guard let location = entries["location"], !location.isEmpty else {
            throw ONNXImportError.externalData(tensor: name, reason: "no location given")
        }
        guard let baseDirectory else { throw ONNXImportError.externalData(tensor: name, reason: "model was not loaded from a file") }
        guard !location.hasPrefix("/"), !location.split(separator: "/").contains("..") else {
            throw ONNXImportError.externalData(tensor: name, reason: "location '\(location)' must stay inside the model's folder")
        }
        let url = baseDirectory.appendingPathComponent(location)
        guard let handle = try? FileHandle(forReadingFrom: url) else {
            throw ONNXImportError.externalData(tensor: name, reason: "cannot open \(url.path)")
        }
        defer { try? handle.close() }
        guard let offset = UInt64(entries["offset"] ?? "0"), offset <= UInt64(Int.max) else {
            throw ONNXImportError.externalData(tensor: name, reason: "offset '\(entries["offset"] ?? "")' is not a byte offset")
        }
        var length: Int?
        if let lengthText = entries["length"] {
            guard let value = Int(lengthText), value >= 0 else { throw ONNXImportError.externalData(tensor: name, reason: "length '\(lengthText)' is not a byte count") }
            length = value
        }
        do {
            let size = try handle.seekToEnd()
            let available = size >= offset ? Int(size - offset) : 0
            guard expected <= available, (length ?? expected) <= available else {
                throw ONNXImportError.externalData(
                    tensor: name, reason: "\(url.lastPathComponent) holds \(available) bytes after offset \(offset); the tensor declares \(length ?? expected)")
            }
            guard length == nil || length == expected else {
                throw ONNXImportError.malformedTensor(tensor: name, reason: "external length \(length!) for \(expected) bytes of data")
            }
            try handle.seek(toOffset: offset)
            let data: Data?
            if let length {
                data = try handle.read(upToCount: length)
                guard (data?.count ?? 0) == length else {
                    throw ONNXImportError.externalData(tensor: name, reason: "\(url.lastPathComponent) is shorter than offset \(offset) + length \(length)")
                }
            } else {
                data = try handle.readToEnd()
            }
            return data ?? Data()
        } catch let error as ONNXImportError {
            throw error
        } catch {
            throw ONNXImportError.externalData(tensor: name, reason: "\(error)")
        }
    }
}
