import Foundation
import ServalTensor
import Testing
@testable import ServalMonitor

/// The three reference formats, and their errors naming the file, line and column.
@Suite struct ReferenceDataTests {
    static func file(_ name: String, _ contents: Data) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("serval-reference-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let url = folder.appendingPathComponent(name)
        try contents.write(to: url)
        return url
    }

    @Test func csvPicksTheFeaturesAndTheLabelColumn() throws {
        let url = try Self.file("reference.csv", Data("a,b,label,c\n1,2,x,3\n4,,y,6\n".utf8))
        let all = try ReferenceData.load(url, features: nil, labelColumn: "label")
        #expect(all.features == ["a", "b", "c"])
        #expect(all.columns[0] == [1, 4])
        #expect(all.columns[1][1].isNaN)  // an empty cell is missing, and drift tests skip it
        #expect(all.labels == ["x", "y"])
        let chosen = try ReferenceData.load(url, features: ["c", "a"], labelColumn: nil)
        #expect(chosen.features == ["c", "a"])
        #expect(chosen.columns == [[3, 6], [1, 4]])
        #expect(chosen.labels == nil)
        #expect(throws: MonitoringConfigError.self) { try ReferenceData.load(url, features: ["d"], labelColumn: nil) }
        let bad = try Self.file("bad.csv", Data("a,b\n1,2\n3,oops\n".utf8))
        #expect {
            try ReferenceData.load(bad, features: nil, labelColumn: nil)
        } throws: { "\($0)".contains("line 3") && "\($0)".contains("'b'") && "\($0)".contains("oops") }
    }

    @Test func npyIsOneColumnPerFeature() throws {
        let tensor = Tensor(shape: [3, 2], scalars: [Float(1), 2, 3, 4, 5, 6])
        let url = try Self.file("reference.npy", try NPYFormat.encode(tensor))
        let data = try ReferenceData.load(url, features: nil, labelColumn: nil)
        #expect(data.features == ["f0", "f1"])
        #expect(data.columns == [[1, 3, 5], [2, 4, 6]])
        #expect(try ReferenceData.load(url, features: ["x", "y"], labelColumn: nil).features == ["x", "y"])
        #expect(throws: MonitoringConfigError.self) { try ReferenceData.load(url, features: ["x"], labelColumn: nil) }
    }

    @Test func jsonLinesTakeObjectsOrArrays() throws {
        let objects = try Self.file("reference.jsonl", Data("{\"b\": 2, \"a\": 1, \"y\": \"cat\"}\n\n{\"a\": 3, \"b\": 4, \"y\": 2}\n".utf8))
        let data = try ReferenceData.load(objects, features: nil, labelColumn: "y")
        #expect(data.features == ["a", "b"])
        #expect(data.columns == [[1, 3], [2, 4]])
        #expect(data.labels == ["cat", "2"])
        let arrays = try Self.file("arrays.jsonl", Data("[1, 2]\n[3, 4]\n".utf8))
        #expect(try ReferenceData.load(arrays, features: nil, labelColumn: nil).columns == [[1, 3], [2, 4]])
        let ragged = try Self.file("ragged.jsonl", Data("[1, 2]\n[3]\n".utf8))
        #expect {
            try ReferenceData.load(ragged, features: nil, labelColumn: nil)
        } throws: { "\($0)".contains("line 2") }
        #expect(throws: MonitoringConfigError.self) { try ReferenceData.load(try Self.file("r.parquet", Data()), features: nil, labelColumn: nil) }
    }
}
