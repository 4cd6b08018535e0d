/// Element-type conversion with ONNX Cast semantics, and convenience readers for small tensors.
extension Tensor {
    /// Converts every element to `target` (ONNX Cast: truncation toward zero for float to integer,
    /// non-zero is true for bool, decimal text for string).
    public func converted(to target: DType) throws -> Tensor {
        if target == dtype { return self }
        if dtype == .string { return try Tensor.parsing(strings, shape: shape, as: target) }
        if target == .string { return Tensor(shape: shape, strings: try elementStrings()) }
        if dtype == .bool {
            let bools = scalars(as: Bool.self)
            if target == .bool { return self }
            return try target.dispatch(FromBool(values: bools, shape: shape), context: "Cast")
        }
        if target == .bool {
            let values = try doubles()
            return Tensor(shape: shape, scalars: values.map { $0 != 0 })
        }
        return try dtype.dispatch(ConvertSource(tensor: self, target: target), context: "Cast")
    }

    /// Every element as a Double (numeric and bool tensors).
    public func doubles() throws -> [Double] {
        if dtype == .bool { return scalars(as: Bool.self).map { $0 ? 1 : 0 } }
        return try dtype.dispatch(ReadDoubles(tensor: self), context: "reading as double")
    }

    /// Every element as an Int64 (integer tensors exactly; floats truncated).
    public func int64s() throws -> [Int64] {
        if dtype == .int64 { return scalars(as: Int64.self) }
        if dtype == .bool { return scalars(as: Bool.self).map { $0 ? 1 : 0 } }
        return try dtype.dispatch(ReadInt64s(tensor: self), context: "reading as int64")
    }

    /// Every element rendered as text (for string output and Cast to string).
    public func elementStrings() throws -> [String] {
        if dtype == .string { return strings }
        if dtype == .bool { return scalars(as: Bool.self).map { $0 ? "1" : "0" } }
        if dtype.isInteger { return try int64s().map { String($0) } }
        return try doubles().map { value in
            if value.isNaN { return "NaN" }
            if value.isInfinite { return value > 0 ? "INF" : "-INF" }
            return dtype == .float32 ? String(Float(value)) : String(value)
        }
    }

    static func parsing(_ texts: [String], shape: [Int], as target: DType) throws -> Tensor {
        let values = texts.map { text -> Double in
            let trimmed = text.trimmingWhitespace()
            switch trimmed.lowercased() {
            case "nan", "+nan", "-nan": return .nan
            case "inf", "+inf", "infinity", "+infinity": return .infinity
            case "-inf", "-infinity": return -.infinity
            default: return Double(trimmed) ?? .nan
            }
        }
        let doubleTensor = Tensor(shape: shape, scalars: values)
        return try doubleTensor.converted(to: target)
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var view = Substring(self)
        while let first = view.first, first.isWhitespace { view.removeFirst() }
        while let last = view.last, last.isWhitespace { view.removeLast() }
        return String(view)
    }
}

private struct ConvertSource: NumericVisitor {
    let tensor: Tensor
    let target: DType
    func visit<Source: NumericScalar>(_ type: Source.Type) throws -> Tensor {
        try target.dispatch(ConvertTarget<Source>(tensor: tensor), context: "Cast")
    }
}

private struct ConvertTarget<Source: NumericScalar>: NumericVisitor {
    let tensor: Tensor
    func visit<Target: NumericScalar>(_ type: Target.Type) throws -> Tensor {
        var result = Tensor(uninitialized: Target.dtype, shape: tensor.shape)
        tensor.withUnsafeBufferPointer(as: Source.self) { source in
            result.withUnsafeMutableBufferPointer(as: Target.self) { target in
                for i in 0..<source.count { target[i] = Target(converting: source[i]) }
            }
        }
        return result
    }
}

private struct FromBool: NumericVisitor {
    let values: [Bool]
    let shape: [Int]
    func visit<T: NumericScalar>(_ type: T.Type) throws -> Tensor {
        Tensor(shape: shape, scalars: values.map { $0 ? T(integerBits: 1) : T(integerBits: 0) })
    }
}

private struct ReadDoubles: NumericVisitor {
    let tensor: Tensor
    func visit<T: NumericScalar>(_ type: T.Type) throws -> [Double] {
        tensor.withUnsafeBufferPointer(as: T.self) { $0.map { $0.doubleValue } }
    }
}

private struct ReadInt64s: NumericVisitor {
    let tensor: Tensor
    func visit<T: NumericScalar>(_ type: T.Type) throws -> [Int64] {
        tensor.withUnsafeBufferPointer(as: T.self) { buffer in
            T.isIntegerType ? buffer.map { $0.integerBits } : buffer.map { integerFromDouble($0.doubleValue) }
        }
    }
}
