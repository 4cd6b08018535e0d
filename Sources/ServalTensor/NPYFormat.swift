import Foundation

/// Reads and writes numpy `.npy` files (format versions 1-3, little-endian, C order) for numeric and bool tensors.
public enum NPYFormat {
    public struct FormatError: Error, CustomStringConvertible {
        public let description: String
        init(_ message: String) { description = message }
    }

    private static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

    static func descriptor(_ dtype: DType) -> String? {
        switch dtype {
        case .float32: return "<f4"
        case .float64: return "<f8"
        case .float16: return "<f2"
        case .int8: return "|i1"
        case .uint8: return "|u1"
        case .int16: return "<i2"
        case .uint16: return "<u2"
        case .int32: return "<i4"
        case .uint32: return "<u4"
        case .int64: return "<i8"
        case .uint64: return "<u8"
        case .bool: return "|b1"
        case .string: return nil
        }
    }

    public static func decode(_ data: Data) throws -> Tensor {
        let bytes = [UInt8](data)
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw FormatError("not a .npy file (bad magic)") }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        if major == 1 {
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        } else {
            guard bytes.count >= 12 else { throw FormatError("truncated .npy header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        }
        guard bytes.count >= headerStart + headerLength else { throw FormatError("truncated .npy header") }
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        guard let descr = field("descr", in: header)?.trimmingCharacters(in: CharacterSet(charactersIn: "'\" ")) else {
            throw FormatError("npy header has no descr")
        }
        if let fortran = field("fortran_order", in: header), fortran.contains("True") {
            throw FormatError("Fortran-ordered arrays are not supported; save with np.ascontiguousarray")
        }
        let normalized = descr.replacingOccurrences(of: "=", with: "<")
        if normalized.hasPrefix("<U"), let width = Int(normalized.dropFirst(2)) {
            return try decodeUnicode(data.dropFirst(headerStart + headerLength), width: width, header: header)
        }
        guard let dtype = DType.allCases.first(where: { descriptor($0) == normalized || descriptor($0)?.replacingOccurrences(of: "|", with: "<") == normalized }) else {
            throw FormatError("unsupported npy dtype \(descr)")
        }
        guard let shapeText = field("shape", in: header) else { throw FormatError("npy header has no shape") }
        let shape = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
            .split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let payload = data.dropFirst(headerStart + headerLength)
        let expected = shape.reduce(1, *) * dtype.byteSize
        guard payload.count >= expected else { throw FormatError("npy data has \(payload.count) bytes, shape \(shape) needs \(expected)") }
        var tensor = Tensor(uninitialized: dtype, shape: shape)
        tensor.withUnsafeMutableRawBytes { target in
            payload.prefix(expected).withUnsafeBytes { source in
                if let base = source.baseAddress, expected > 0 { target.baseAddress!.copyMemory(from: base, byteCount: expected) }
            }
        }
        return tensor
    }

    /// numpy's fixed-width unicode arrays (`<U8`): UTF-32LE code points, zero-padded to `width` per element.
    private static func decodeUnicode(_ payload: Data, width: Int, header: String) throws -> Tensor {
        guard let shapeText = field("shape", in: header) else { throw FormatError("npy header has no shape") }
        let shape = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
            .split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let count = shape.reduce(1, *)
        let bytes = [UInt8](payload)
        guard bytes.count >= count * width * 4 else { throw FormatError("npy string data is truncated") }
        var strings: [String] = []
        strings.reserveCapacity(count)
        for index in 0..<count {
            var scalars = String.UnicodeScalarView()
            for position in 0..<width {
                let offset = (index * width + position) * 4
                let code = UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
                if code == 0 { break }
                if let scalar = Unicode.Scalar(code) { scalars.append(scalar) }
            }
            strings.append(String(scalars))
        }
        return Tensor(shape: shape, strings: strings)
    }

    public static func encode(_ tensor: Tensor) throws -> Data {
        guard let descr = descriptor(tensor.dtype) else { throw FormatError("\(tensor.dtype) tensors cannot be written as .npy") }
        let shape = tensor.shape.count == 1 ? "(\(tensor.shape[0]),)" : "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data(magic + [1, 0])
        let length = header.utf8.count
        data.append(contentsOf: [UInt8(length & 0xff), UInt8(length >> 8)])
        data.append(contentsOf: Array(header.utf8))
        tensor.withUnsafeRawBytes { data.append(contentsOf: $0) }
        return data
    }

    private static func field(_ name: String, in header: String) -> String? {
        guard let range = header.range(of: "'\(name)':") ?? header.range(of: "\"\(name)\":") else { return nil }
        let rest = header[range.upperBound...].trimmingCharacters(in: .whitespaces)
        if rest.hasPrefix("(") {
            guard let end = rest.firstIndex(of: ")") else { return nil }
            return String(rest[...end])
        }
        let end = rest.firstIndex(of: ",") ?? rest.endIndex
        return String(rest[..<end])
    }
}
