import Foundation

/// Reads and writes numpy `.npy` files (format versions 1-3, little-endian, C order) for numeric, bool and
/// fixed-width unicode (`<U`) tensors, whole or a range of rows at a time (the header says where the data starts).
public enum NPYFormat {
    public struct FormatError: Error, CustomStringConvertible {
        public let description: String
        init(_ message: String) { description = message }
    }

    /// What an `.npy` header says: the element type, the shape, and where the data starts.
    public struct Header: Sendable, Equatable {
        /// The element type; `.string` for numpy unicode arrays, whose elements are `unicodeWidth` code points.
        public var dtype: DType
        public var unicodeWidth: Int
        public var shape: [Int]
        /// Bytes before the data: magic, version, header length and the header itself.
        public var dataOffset: Int

        public init(dtype: DType, unicodeWidth: Int = 0, shape: [Int], dataOffset: Int) {
            self.dtype = dtype
            self.unicodeWidth = unicodeWidth
            self.shape = shape
            self.dataOffset = dataOffset
        }

        /// Bytes per element in the file.
        public var itemSize: Int { dtype == .string ? unicodeWidth * 4 : dtype.byteSize }
        /// Bytes per row (dimension 0) in the file.
        public var rowSize: Int { (try? NPYFormat.byteCount(self, rows: 1).bytes) ?? Int.max }
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

    /// The bytes before the data (magic, version, header length, header), from the file's first 12 bytes (10 for
    /// format version 1).
    public static func headerSize<Bytes: RandomAccessCollection>(_ bytes: Bytes) throws -> Int where Bytes.Element == UInt8, Bytes.Index == Int {
        let start = bytes.startIndex
        func byte(_ offset: Int) -> Int { Int(bytes[start + offset]) }
        guard bytes.count >= 10, (0..<6).allSatisfy({ UInt8(byte($0)) == magic[$0] }) else { throw FormatError("not a .npy file (bad magic)") }
        if byte(6) == 1 { return 10 + (byte(8) | byte(9) << 8) }
        guard bytes.count >= 12 else { throw FormatError("truncated .npy header") }
        return 12 + (byte(8) | byte(9) << 8 | byte(10) << 16 | byte(11) << 24)
    }

    /// Parses the header at the start of `bytes` (the whole file, or at least `headerSize` bytes of it).
    public static func header<Bytes: RandomAccessCollection>(_ bytes: Bytes) throws -> Header where Bytes.Element == UInt8, Bytes.Index == Int {
        let start = bytes.startIndex
        let dataOffset = try headerSize(bytes)
        let headerStart = bytes[start + 6] == 1 ? 10 : 12
        guard bytes.count >= dataOffset else { throw FormatError("truncated .npy header") }
        let headerLength = dataOffset - headerStart
        let text = String(decoding: bytes[(start + headerStart)..<(start + headerStart + headerLength)], as: UTF8.self)
        guard let descr = field("descr", in: text)?.trimmingCharacters(in: CharacterSet(charactersIn: "'\" ")) else {
            throw FormatError("npy header has no descr")
        }
        if let fortran = field("fortran_order", in: text), fortran.contains("True") {
            throw FormatError("Fortran-ordered arrays are not supported; save with np.ascontiguousarray")
        }
        guard let shapeText = field("shape", in: text) else { throw FormatError("npy header has no shape") }
        let shape = try shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
            .split(separator: ",").map { piece -> Int in
                guard let dimension = Int(piece.trimmingCharacters(in: .whitespaces)), dimension >= 0 else {
                    throw FormatError("npy shape \(shapeText) must be a tuple of non-negative integers")
                }
                return dimension
            }
        let normalized = descr.replacingOccurrences(of: "=", with: "<")
        if normalized.hasPrefix("<U"), let width = Int(normalized.dropFirst(2)) {
            guard (1...(1 << 20)).contains(width) else { throw FormatError("npy unicode width \(width) is out of range (1 to 1048576)") }
            let header = Header(dtype: .string, unicodeWidth: width, shape: shape, dataOffset: dataOffset)
            _ = try byteCount(header, rows: shape.first ?? 1)
            return header
        }
        guard let dtype = DType.allCases.first(where: { descriptor($0) == normalized || descriptor($0)?.replacingOccurrences(of: "|", with: "<") == normalized }) else {
            throw FormatError("unsupported npy dtype \(descr)")
        }
        let header = Header(dtype: dtype, unicodeWidth: 0, shape: shape, dataOffset: dataOffset)
        _ = try byteCount(header, rows: shape.first ?? 1)
        return header
    }

    /// Elements and bytes of `rows` rows as `header` lays them out, refusing products that overflow (a crafted
    /// header may declare any shape; the data must then be checked against the bytes present).
    static func byteCount(_ header: Header, rows: Int) throws -> (elements: Int, bytes: Int) {
        guard rows >= 0 else { throw FormatError("npy row count \(rows) is negative") }
        var elements = header.shape.isEmpty ? 1 : rows
        for dimension in header.shape.dropFirst() {
            let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw FormatError("npy shape \(header.shape) has more elements than can be addressed") }
            elements = product
        }
        let (bytes, overflow) = elements.multipliedReportingOverflow(by: header.itemSize)
        guard !overflow else { throw FormatError("npy shape \(header.shape) has more bytes than can be addressed") }
        return (elements, bytes)
    }

    public static func decode(_ data: Data) throws -> Tensor {
        let bytes = [UInt8](data)
        let header = try header(bytes)
        let rows = header.shape.first ?? 1
        return try tensor(header, rows: rows, payload: bytes[header.dataOffset...])
    }

    /// `rows` rows of data laid out as `header` says, from `payload` (which starts at the first of them). A
    /// 0-dimensional header takes `rows` 1.
    public static func tensor<Bytes: RandomAccessCollection>(_ header: Header, rows: Int, payload: Bytes) throws -> Tensor where Bytes.Element == UInt8, Bytes.Index == Int {
        let shape = header.shape.isEmpty ? [] : [rows] + header.shape.dropFirst()
        let (count, expected) = try byteCount(header, rows: rows)
        guard payload.count >= expected else { throw FormatError("npy data has \(payload.count) bytes, shape \(shape) needs \(expected)") }
        let start = payload.startIndex
        if header.dtype == .string {
            var strings: [String] = []
            strings.reserveCapacity(count)
            for index in 0..<count {
                var scalars = String.UnicodeScalarView()
                for position in 0..<header.unicodeWidth {
                    let offset = start + (index * header.unicodeWidth + position) * 4
                    let code = UInt32(payload[offset]) | UInt32(payload[offset + 1]) << 8 | UInt32(payload[offset + 2]) << 16 | UInt32(payload[offset + 3]) << 24
                    if code == 0 { break }
                    if let scalar = Unicode.Scalar(code) { scalars.append(scalar) }
                }
                strings.append(String(scalars))
            }
            return Tensor(shape: shape, strings: strings)
        }
        var tensor = Tensor(uninitialized: header.dtype, shape: shape)
        tensor.withUnsafeMutableRawBytes { target in
            guard expected > 0 else { return }
            if let copied = payload.withContiguousStorageIfAvailable({ target.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: expected) }) {
                return copied
            }
            for offset in 0..<expected { target[offset] = payload[start + offset] }
        }
        return tensor
    }

    public static func encode(_ tensor: Tensor) throws -> Data {
        let width = tensor.dtype == .string ? max(1, tensor.strings.map(\.unicodeScalars.count).max() ?? 1) : 0
        var data = try headerBytes(dtype: tensor.dtype, unicodeWidth: width, shape: tensor.shape)
        data.append(try payload(tensor, unicodeWidth: width))
        return data
    }

    /// A version 1 header for an array of `shape`, padded with spaces to `length` bytes in all (when given and
    /// large enough) or to the next multiple of 64, so a header rewritten later with a larger first dimension
    /// can take the same room.
    public static func headerBytes(dtype: DType, unicodeWidth: Int = 0, shape: [Int], length: Int? = nil) throws -> Data {
        guard let descr = dtype == .string ? "<U\(unicodeWidth)" : descriptor(dtype) else { throw FormatError("\(dtype) tensors cannot be written as .npy") }
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        let total = length.map { max($0, unpadded) } ?? unpadded
        header += String(repeating: " ", count: total - unpadded + (64 - total % 64) % 64) + "\n"
        guard header.utf8.count <= 0xffff else { throw FormatError("npy header of \(header.utf8.count) bytes is too long for format version 1") }
        var data = Data(magic + [1, 0])
        let count = header.utf8.count
        data.append(contentsOf: [UInt8(count & 0xff), UInt8(count >> 8)])
        data.append(contentsOf: Array(header.utf8))
        return data
    }

    /// The data of a tensor as an `.npy` file lays it out (strings as UTF-32LE, zero-padded to `unicodeWidth`).
    public static func payload(_ tensor: Tensor, unicodeWidth: Int = 0) throws -> Data {
        guard tensor.dtype == .string else { return tensor.withUnsafeRawBytes { Data($0) } }
        if let long = tensor.strings.first(where: { $0.unicodeScalars.count > unicodeWidth }) {
            throw FormatError("'\(long)' is longer than the array's \(unicodeWidth) characters")
        }
        var data = Data(count: tensor.strings.count * unicodeWidth * 4)
        data.withUnsafeMutableBytes { (target: UnsafeMutableRawBufferPointer) in
            for (index, string) in tensor.strings.enumerated() {
                for (position, scalar) in string.unicodeScalars.prefix(unicodeWidth).enumerated() {
                    target.storeBytes(of: scalar.value.littleEndian, toByteOffset: (index * unicodeWidth + position) * 4, as: UInt32.self)
                }
            }
        }
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
