import ServalTensor

/// Builds JSON text directly (no dictionaries, no `JSONEncoder`): tensors are written from their storage.
/// Shared by the frontends (REST bodies, JSON-encoded map outputs on gRPC).
public struct JSONWriter {
    public private(set) var text = ""

    public init(capacity: Int = 256) { text.reserveCapacity(capacity) }

    public mutating func raw(_ fragment: String) { text += fragment }

    public mutating func string(_ value: String) {
        text.append("\"")
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20: text += "\\u" + String(format4(scalar.value))
            default: text.unicodeScalars.append(scalar)
            }
        }
        text.append("\"")
    }

    private func format4(_ value: UInt32) -> String {
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }

    /// A finite number as JSON; NaN and ±infinity, which strict JSON has no literal for, as the strings
    /// `"NaN"`, `"Infinity"` and `"-Infinity"` (protobuf's JSON mapping does the same, and numpy turns them back
    /// into floats when a client builds an array of the output's datatype).
    public mutating func number(_ value: Double) {
        if !value.isFinite { text += Self.nonFiniteLiteral(value) } else if value == value.rounded(), abs(value) < 1e15 {
            text += String(Int64(value))
        } else {
            text += String(value)
        }
    }

    public mutating func float(_ value: Float) {
        if !value.isFinite { text += Self.nonFiniteLiteral(Double(value)) } else { text += value.description }
    }

    private static func nonFiniteLiteral(_ value: Double) -> String {
        value.isNaN ? "\"NaN\"" : value > 0 ? "\"Infinity\"" : "\"-Infinity\""
    }

    /// The value a non-finite string stands for (`"NaN"`, `"Infinity"`, `"-Infinity"`), nil for any other text.
    public static func nonFinite(_ text: String) -> Double? {
        switch text {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default: return nil
        }
    }

    public mutating func parameter(_ value: InferenceParameter) {
        switch value {
        case .bool(let flag): raw(flag ? "true" : "false")
        case .int(let number): raw(String(number))
        case .double(let number): self.number(number)
        case .string(let word): string(word)
        }
    }

    public mutating func parameters(_ values: [String: InferenceParameter]) {
        raw("{")
        for (index, key) in values.keys.sorted().enumerated() {
            if index > 0 { raw(",") }
            string(key)
            raw(":")
            parameter(values[key]!)
        }
        raw("}")
    }

    /// The elements of `range` of a tensor, comma-separated, as JSON scalars.
    public mutating func elements(_ tensor: Tensor, _ range: Range<Int>) {
        func each<T: TensorScalar>(_ type: T.Type, _ write: (inout JSONWriter, T) -> Void) {
            tensor.withUnsafeBufferPointer(as: T.self) { buffer in
                for i in range {
                    if i > range.lowerBound { text.append(",") }
                    write(&self, buffer[i])
                }
            }
        }
        switch tensor.dtype {
        case .float32: each(Float.self) { $0.float($1) }
        case .float64: each(Double.self) { $0.number($1) }
        case .float16: each(Float16.self) { $0.float(Float($1)) }
        case .int8: each(Int8.self) { $0.raw(String($1)) }
        case .uint8: each(UInt8.self) { $0.raw(String($1)) }
        case .int16: each(Int16.self) { $0.raw(String($1)) }
        case .uint16: each(UInt16.self) { $0.raw(String($1)) }
        case .int32: each(Int32.self) { $0.raw(String($1)) }
        case .uint32: each(UInt32.self) { $0.raw(String($1)) }
        case .int64: each(Int64.self) { $0.raw(String($1)) }
        case .uint64: each(UInt64.self) { $0.raw(String($1)) }
        case .bool: each(Bool.self) { $0.raw($1 ? "true" : "false") }
        case .string:
            for i in range {
                if i > range.lowerBound { text.append(",") }
                string(tensor.strings[i])
            }
        }
    }

    /// A tensor as nested JSON arrays following its shape (TF Serving style); a scalar as a bare value.
    public mutating func nested(_ tensor: Tensor, dims: ArraySlice<Int>, offset: Int) {
        guard let first = dims.first else {
            elements(tensor, offset..<(offset + 1))
            return
        }
        let inner = dims.dropFirst().reduce(1, *)
        raw("[")
        if dims.count == 1 {
            elements(tensor, offset..<(offset + first))
        } else {
            for i in 0..<first {
                if i > 0 { raw(",") }
                nested(tensor, dims: dims.dropFirst(), offset: offset + i * inner)
            }
        }
        raw("]")
    }

    /// ZipMap output: one JSON object per row, label → probability.
    public mutating func maps(_ maps: MapSequence, rows: Range<Int>) {
        let keys = (try? maps.keys.elementStrings()) ?? []
        maps.values.withUnsafeBufferPointer(as: Float.self) { values in
            for row in rows {
                if row > rows.lowerBound { raw(",") }
                raw("{")
                for (k, key) in keys.enumerated() {
                    if k > 0 { raw(",") }
                    string(key)
                    raw(":")
                    float(values[row * keys.count + k])
                }
                raw("}")
            }
        }
    }
}
