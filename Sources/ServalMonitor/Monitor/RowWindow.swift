/// The last `capacity` logged rows of one model version, as columns in ring buffers: features, the prediction
/// (encoded as a number), the predicted class's confidence (NaN without probabilities) and the time logged.
struct RowWindow: Sendable {
    let capacity: Int
    let width: Int
    private var features: [Double]
    private var predictions: [Double]
    private var confidences: [Double]
    private var times: [Double]
    private var head = 0
    private(set) var count = 0
    /// Rows ever appended, so evaluators can tell how many arrived since they last looked.
    private(set) var appended = 0

    init(capacity: Int, width: Int) {
        self.capacity = capacity
        self.width = width
        features = [Double](repeating: .nan, count: capacity * width)
        predictions = [Double](repeating: .nan, count: capacity)
        confidences = [Double](repeating: .nan, count: capacity)
        times = [Double](repeating: 0, count: capacity)
    }

    /// Appends one row; `row` holds `width` feature values.
    mutating func append(_ row: UnsafeBufferPointer<Double>, prediction: Double, confidence: Double, time: Double) {
        let slot = head
        for column in 0..<width { features[slot * width + column] = row[column] }
        predictions[slot] = prediction
        confidences[slot] = confidence
        times[slot] = time
        head = (head + 1) % capacity
        count = min(count + 1, capacity)
        appended += 1
    }

    /// Slots from oldest to newest.
    private var slots: [Int] {
        let start = (head - count + capacity) % capacity
        return (0..<count).map { (start + $0) % capacity }
    }

    func column(_ index: Int) -> [Double] { slots.map { features[$0 * width + index] } }

    /// Every feature column, oldest row first, with the slot order worked out once.
    func columns() -> [[Double]] {
        let order = slots
        return (0..<width).map { index in order.map { features[$0 * width + index] } }
    }
    var predictionColumn: [Double] { slots.map { predictions[$0] } }
    var confidenceColumn: [Double] { slots.map { confidences[$0] } }
    var timeRange: (from: Double, to: Double)? {
        guard count > 0 else { return nil }
        let order = slots
        return (times[order.first!], times[order.last!])
    }
}
