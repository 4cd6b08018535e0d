/// Walks the positions of a shape in row-major order while keeping a strided offset in step: the offset of
/// position p is Σ coordinate[axis] · strides[axis]. Used to read transposed or broadcast views without index arrays.
struct StridedOdometer {
    let shape: [Int]
    let strides: [Int]
    private var coordinates: [Int]
    /// The offset of the current position.
    private(set) var offset: Int

    /// Starts at flat position `start` (row-major over `shape`), from a base offset.
    init(shape: [Int], strides: [Int], start: Int = 0, base: Int = 0) {
        self.shape = shape
        self.strides = strides
        coordinates = [Int](repeating: 0, count: shape.count)
        offset = base
        var rest = start
        for axis in stride(from: shape.count - 1, through: 0, by: -1) where shape[axis] > 0 {
            coordinates[axis] = rest % shape[axis]
            rest /= shape[axis]
            offset += coordinates[axis] * strides[axis]
        }
    }

    /// The coordinate along `axis` of the current position.
    func coordinate(_ axis: Int) -> Int { coordinates[axis] }

    /// Moves to the next position (the last axis fastest).
    @inline(__always)
    mutating func advance() {
        var axis = shape.count - 1
        while axis >= 0 {
            coordinates[axis] += 1
            offset += strides[axis]
            if coordinates[axis] < shape[axis] { return }
            offset -= strides[axis] * shape[axis]
            coordinates[axis] = 0
            axis -= 1
        }
    }
}
