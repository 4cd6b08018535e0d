/// A value flowing through a graph: a tensor, or the sequence of maps that ONNX-ML's ZipMap produces.
public enum Value: Sendable {
    case tensor(Tensor)
    case mapSequence(MapSequence)

    public var tensor: Tensor? {
        if case .tensor(let tensor) = self { return tensor }
        return nil
    }

    /// `tensor(float)[1, 4]` or `seq(map(int64, float))[3]`.
    public var typeDescription: String {
        switch self {
        case .tensor(let tensor): return tensor.description
        case .mapSequence(let maps): return "seq(map(\(maps.keys.dtype), float))[\(maps.count)]"
        }
    }
}

/// `seq(map(K, float))` in which every map has the same keys: one map per row of `values`.
///
/// ZipMap always yields that shape, so it is stored as the shared keys plus a [rows, keys] matrix.
public struct MapSequence: Sendable {
    /// 1-D int64 or string tensor of the map keys.
    public let keys: Tensor
    /// 2-D float tensor [count, keys.count].
    public let values: Tensor

    public init(keys: Tensor, values: Tensor) {
        precondition(keys.rank == 1 && values.rank == 2 && values.shape[1] == keys.count)
        self.keys = keys
        self.values = values
    }

    public var count: Int { values.shape[0] }
}
