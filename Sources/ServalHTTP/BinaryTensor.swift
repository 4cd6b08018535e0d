import ServalServing
import ServalTensor

/// Triton's binary tensor encoding: little-endian, row-major, native element size; BOOL one byte;
/// BYTES elements as a 4-byte little-endian length followed by the bytes.
enum BinaryTensor {
    static func decode(_ bytes: UnsafeRawBufferPointer, dtype: DType, shape: [Int], name: String) throws -> Tensor {
        let count = shape.reduce(1, *)
        if dtype == .string {
            var strings: [String] = []
            strings.reserveCapacity(count)
            var offset = 0
            while offset < bytes.count {
                guard offset + 4 <= bytes.count else { throw ServingError.invalidArgument("input '\(name)': truncated BYTES element length") }
                let length = Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
                offset += 4
                guard offset + length <= bytes.count else { throw ServingError.invalidArgument("input '\(name)': BYTES element runs past its data") }
                strings.append(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)]), as: UTF8.self))
                offset += length
            }
            guard strings.count == count else {
                throw ServingError.invalidArgument("input '\(name)': binary data holds \(strings.count) BYTES elements, shape \(shape) needs \(count)")
            }
            return Tensor(shape: shape, strings: strings)
        }
        guard bytes.count == count * dtype.byteSize else {
            throw ServingError.invalidArgument("input '\(name)': binary_data_size is \(bytes.count) bytes, shape \(shape) of \(dtype.kserveName) needs \(count * dtype.byteSize)")
        }
        var tensor = Tensor(uninitialized: dtype, shape: shape)
        tensor.withUnsafeMutableRawBytes { target in
            if bytes.count > 0 { target.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
            if dtype == .bool { for i in 0..<target.count where target[i] > 1 { target[i] = 1 } }
        }
        return tensor
    }

    static func encode(_ tensor: Tensor) -> [UInt8]? {
        if tensor.dtype == .string {
            var bytes: [UInt8] = []
            for string in tensor.strings {
                let utf8 = Array(string.utf8)
                withUnsafeBytes(of: UInt32(utf8.count).littleEndian) { bytes += $0 }
                bytes += utf8
            }
            return bytes
        }
        return tensor.withUnsafeRawBytes { Array($0) }
    }
}
