import Foundation
import ServalTensor

/// The raw tensor encoding shared by the REST binary tensor extension and gRPC `raw_input_contents` /
/// `raw_output_contents`: little-endian, row-major, native element size; BOOL one byte; BYTES elements as a
/// 4-byte little-endian length followed by the bytes.
public enum RawTensorCodec {
    /// Decodes the raw bytes of input `name`; errors name the input, the field the bytes came from (`source`)
    /// and what the shape needs.
    public static func decode(
        _ bytes: UnsafeRawBufferPointer, dtype: DType, shape: [Int], name: String, source: String, limits: WireLimits = .standard
    ) throws -> Tensor {
        let count = try limits.elements(of: shape, what: "input '\(name)'")
        if dtype == .string {
            var strings: [String] = []
            // Each element takes at least its 4-byte length: no more can be reserved than the bytes can hold.
            strings.reserveCapacity(min(count, bytes.count / 4))
            var offset = 0
            while offset < bytes.count {
                guard offset + 4 <= bytes.count else { throw ServingError.invalidArgument("input '\(name)': \(source) has a truncated BYTES element length") }
                let length = Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
                offset += 4
                try limits.checkBytesElement(length, what: "input '\(name)'")
                guard offset + length <= bytes.count else { throw ServingError.invalidArgument("input '\(name)': a BYTES element runs past the end of \(source)") }
                strings.append(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)]), as: UTF8.self))
                offset += length
            }
            guard strings.count == count else {
                throw ServingError.invalidArgument("input '\(name)': \(source) holds \(strings.count) BYTES elements, shape \(shape) needs \(count)")
            }
            return Tensor(shape: shape, strings: strings)
        }
        guard bytes.count == count * dtype.byteSize else {
            throw ServingError.invalidArgument("input '\(name)': \(source) is \(bytes.count) bytes, shape \(shape) of \(dtype.kserveName) needs \(count * dtype.byteSize)")
        }
        var tensor = Tensor(uninitialized: dtype, shape: shape)
        tensor.withUnsafeMutableRawBytes { target in
            if bytes.count > 0 { target.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
            if dtype == .bool { for i in 0..<target.count where target[i] > 1 { target[i] = 1 } }
        }
        return tensor
    }

    /// The raw bytes of a tensor.
    public static func encode(_ tensor: Tensor) -> Data {
        guard tensor.dtype == .string else { return tensor.withUnsafeRawBytes { Data($0) } }
        var bytes = Data()
        for string in tensor.strings {
            withUnsafeBytes(of: UInt32(string.utf8.count).littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: string.utf8)
        }
        return bytes
    }
}
