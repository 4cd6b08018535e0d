import Foundation
import ServalTensor
import Testing

struct TensorTests {
    @Test func storageIs64ByteAligned() {
        for count in [1, 3, 17, 1000] {
            let tensor = Tensor(zeros: .float32, shape: [count])
            tensor.withUnsafeRawBytes { #expect(Int(bitPattern: $0.baseAddress) % 64 == 0) }
        }
    }

    @Test func copiesShareStorageUntilWritten() {
        let original = Tensor(shape: [3], scalars: [Float(1), 2, 3])
        var copy = original
        #expect(copy.sharesStorage(with: original))
        copy.withUnsafeMutableBufferPointer(as: Float.self) { $0[0] = 10 }
        #expect(!copy.sharesStorage(with: original))
        #expect(original.scalars(as: Float.self) == [1, 2, 3])
        #expect(copy.scalars(as: Float.self) == [10, 2, 3])
    }

    @Test func reshapeKeepsElementsAndStorage() {
        let tensor = Tensor(shape: [2, 3], scalars: (0..<6).map(Int64.init))
        let reshaped = tensor.reshaped([3, 2])
        #expect(reshaped.shape == [3, 2])
        #expect(reshaped.sharesStorage(with: tensor))
        #expect(reshaped.scalars(as: Int64.self) == [0, 1, 2, 3, 4, 5])
    }

    @Test func castTruncatesFloatsTowardZero() throws {
        let floats = Tensor(shape: [4], scalars: [Float(1.9), -1.9, 0.5, -0.5])
        #expect(try floats.converted(to: .int32).scalars(as: Int32.self) == [1, -1, 0, 0])
        #expect(try floats.converted(to: .bool).scalars(as: Bool.self) == [true, true, true, true])
    }

    @Test func castBetweenIntegersWraps() throws {
        let values = Tensor(shape: [2], scalars: [Int64(300), -1])
        #expect(try values.converted(to: .uint8).scalars(as: UInt8.self) == [44, 255])
    }

    @Test func castHandlesFloat16AndStrings() throws {
        let halves = try Tensor(shape: [2], scalars: [Float(0.5), 65504]).converted(to: .float16)
        #expect(halves.scalars(as: Float16.self) == [0.5, 65504])
        let text = Tensor(shape: [3], strings: ["1.5", "-2", "inf"])
        #expect(try text.converted(to: .float32).scalars(as: Float.self) == [1.5, -2, .infinity])
    }

    @Test func broadcastShapesFollowNumpy() {
        #expect(Shape.broadcast([2, 3, 4], [4]) == [2, 3, 4])
        #expect(Shape.broadcast([2, 1, 4], [3, 1]) == [2, 3, 4])
        #expect(Shape.broadcast([], [5]) == [5])
        #expect(Shape.broadcast([2, 3], [4]) == nil)
    }

    @Test func npyRoundTrip() throws {
        let tensor = Tensor(shape: [2, 2], scalars: [Float(1), 2, 3, 4])
        let decoded = try NPYFormat.decode(try NPYFormat.encode(tensor))
        #expect(decoded.shape == [2, 2])
        #expect(decoded.scalars(as: Float.self) == [1, 2, 3, 4])
        let bools = try NPYFormat.decode(try NPYFormat.encode(Tensor(shape: [3], scalars: [true, false, true])))
        #expect(bools.scalars(as: Bool.self) == [true, false, true])
    }

    @Test func npyUnicodeArraysAndReservedHeadersRoundTrip() throws {
        let strings = Tensor(shape: [2, 2], strings: ["setosa", "", "vé", "virginica"])
        let decoded = try NPYFormat.decode(try NPYFormat.encode(strings))
        #expect(decoded.shape == [2, 2])
        #expect(decoded.strings == strings.strings)
        // A header given room for a large row count keeps that length when rewritten with a small one.
        let room = try NPYFormat.headerBytes(dtype: .float32, shape: [9_999_999_999_999, 3]).count
        let small = try NPYFormat.headerBytes(dtype: .float32, shape: [2, 3], length: room)
        #expect(small.count == room)
        #expect(small.count % 64 == 0)
        var file = small
        file.append(try NPYFormat.payload(Tensor(shape: [2, 3], scalars: [Float](repeating: 1.5, count: 6))))
        let header = try NPYFormat.header(Array(file))
        #expect(header.shape == [2, 3])
        #expect(header.dataOffset == room)
        #expect(try NPYFormat.decode(file).scalars(as: Float.self) == [Float](repeating: 1.5, count: 6))
        #expect(throws: NPYFormat.FormatError.self) { try NPYFormat.payload(Tensor(shape: [1], strings: ["toolong"]), unicodeWidth: 3) }
    }

    @Test func npyRejectsGarbage() {
        #expect(throws: NPYFormat.FormatError.self) { try NPYFormat.decode(Data([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])) }
    }

    @Test func bufferPoolReusesOnlyUnsharedStorage() {
        let pool = BufferPool()
        var first = pool.tensor(.float32, shape: [16])
        let alias = first
        withExtendedLifetime(alias) { pool.recycle(&first) }
        #expect(pool.idleBytes == 0, "storage still referenced by alias must not be reused")
        var second = pool.tensor(.float32, shape: [16])
        pool.recycle(&second)
        #expect(pool.idleBytes == 64)
        let reused = pool.tensor(.float32, shape: [4, 4])
        #expect(pool.idleBytes == 0)
        #expect(reused.byteCount == 64)
    }
}
