import Foundation
import ServalEngine
import ServalJobs
import ServalONNX
import ServalTensor
import ServalWire
import Testing

/// `serval batch`'s readers, writers and scorer: CSV and JSON Lines edge cases, `.npy` folders, bad rows by line
/// (or row), shards that concatenate to the whole, and a resumed run that writes the same bytes as an
/// uninterrupted one.
@Suite("Batch scoring over CSV, JSON Lines and .npy")
struct BatchTests {
    static let iris = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("examples/models/iris/1/model.onnx")

    static func folder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("serval-batch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func file(_ text: String, in folder: URL, name: String = "in.csv") throws -> URL {
        let url = folder.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url
    }

    static func records(_ text: String) throws -> [CSVRecord] {
        var reader = try CSVReader(url: try file(text, in: try folder()), chunkSize: 7)  // small reads cross every boundary
        var records: [CSVRecord] = []
        while let record = try reader.next() { records.append(record) }
        return records
    }

    static func fixture(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)")
    }

    static func lines(_ text: String) throws -> [String] {
        var reader = try LineReader(url: try file(text, in: try folder()), chunkSize: 5)
        var lines: [String] = []
        while let (line, bytes) = try reader.next() { lines.append("\(line):" + String(decoding: bytes, as: UTF8.self)) }
        return lines
    }

    static func npy(_ url: URL) throws -> Tensor { try NPYFormat.decode(try Data(contentsOf: url)) }

    static func scorer(_ model: URL = iris) throws -> (BatchScorer, Session) {
        let model = try ONNXModel(contentsOf: model)
        let session = try Session(graph: model.graph)
        return (BatchScorer(session: session, graph: model.graph), session)
    }

    static func irisCSV(rows: Int) -> String {
        var text = "sepal_length,sepal_width,petal_length,petal_width\n"
        for index in 0..<rows {
            let i = Double(index)
            text += "\(4.3 + (i * 0.37).truncatingRemainder(dividingBy: 3.6)),\(2.0 + (i * 0.11).truncatingRemainder(dividingBy: 2.4)),"
                + "\(1.0 + (i * 0.53).truncatingRemainder(dividingBy: 5.9)),\(0.1 + (i * 0.07).truncatingRemainder(dividingBy: 2.4))\n"
        }
        return text
    }

    @Test func theReaderHandlesQuotesLineEndsAByteOrderMarkAndEmptyLines() throws {
        let text = "\u{FEFF}a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\r\n\r\n2,\"two\nlines\",3\n\n4,5,6"
        let records = try Self.records(text)
        #expect(records == [
            CSVRecord(line: 1, fields: ["a", "b", "c"]),
            CSVRecord(line: 2, fields: ["1", "x, y", "say \"hi\""]),
            CSVRecord(line: 4, fields: ["2", "two\nlines", "3"]),
            CSVRecord(line: 7, fields: ["4", "5", "6"]),
        ])
        #expect(try Self.records("h\n").count == 1)
        #expect(try Self.records("").isEmpty)
        #expect(try Self.records("h\n\"\"\n").map(\.fields) == [["h"], [""]])  // a quoted empty field is a record
    }

    @Test func rowsAreScoredInOrderAsTheEngineAnswersThemAndBadRowsAreReportedByLine() throws {
        let folder = try Self.folder()
        let input = try Self.file("f0,f1,f2,f3,name\n5.1,3.5,1.4,0.2,a\n6.7,3.0,5.2,2.3,\"b, c\"\n5.0,abc,1.4,0.2,d\n\n5.9,3.0\n6.1,2.8,4.7,inf,e\n6.1,2.8,4.7,1.2,f\n", in: folder)
        var options = BatchOptions(input: input, output: folder.appendingPathComponent("out.csv"))
        options.errors = folder.appendingPathComponent("errors.jsonl")
        options.keepColumns = true
        options.batchSize = 2
        let (scorer, session) = try Self.scorer()
        let summary = try scorer.run(options)
        #expect(summary.rows == 3)
        #expect(summary.errors == 3)
        #expect(!summary.aborted)
        let lines = try String(contentsOf: options.output, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.first == "f0,f1,f2,f3,name,label,probability_0,probability_1,probability_2")
        let rows: [[Float]] = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [6.1, 2.8, 4.7, 1.2]]
        let expected = try session.run(["X": .tensor(Tensor(shape: [3, 4], scalars: rows.flatMap { $0 }))])
        let labels = try #require(expected["label"]?.tensor).scalars(as: Int64.self)
        let probabilities = try #require(expected["probabilities"]?.tensor).scalars(as: Float.self)
        for (index, line) in lines.dropFirst().enumerated() {
            let tail = line.split(separator: ",").suffix(4).map(String.init)
            #expect(tail[0] == String(labels[index]))
            #expect(tail[1...].map { Float($0)! } == Array(probabilities[(index * 3)..<(index * 3 + 3)]))
        }
        #expect(lines[2].hasPrefix("6.7,3.0,5.2,2.3,\"b, c\","))
        let errors = try String(contentsOf: try #require(options.errors), encoding: .utf8).split(separator: "\n").map { line in
            try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        }
        #expect(errors.compactMap { $0["line"] as? Int } == [4, 6, 7])
        #expect(errors[0]["column"] as? String == "f1")
        #expect(errors[0]["reason"] as? String == "'abc' is not a number")
        #expect(errors[1]["reason"] as? String == "expected 5 fields, found 2")
        #expect(errors[2]["reason"] as? String == "'inf' is not a finite number")
        #expect(!FileManager.default.fileExists(atPath: options.checkpoint.path), "a finished run leaves no checkpoint")
    }

    @Test func aRunStopsOnceMoreRowsThanTheLimitFailed() throws {
        let folder = try Self.folder()
        let input = try Self.file("a,b,c,d\n" + String(repeating: "1,2,x,4\n", count: 5) + "1,2,3,4\n", in: folder)
        var options = BatchOptions(input: input, output: folder.appendingPathComponent("out.csv"))
        options.maxErrors = 2
        options.batchSize = 1
        let summary = try Self.scorer().0.run(options)
        #expect(summary.aborted)
        #expect(summary.errors == 3)
        #expect(summary.rows == 0)
    }

    @Test func shardsConcatenateToTheUnshardedOutput() throws {
        let folder = try Self.folder()
        let input = try Self.file(Self.irisCSV(rows: 1000), in: folder)
        let scorer = try Self.scorer().0
        var whole = BatchOptions(input: input, output: folder.appendingPathComponent("whole.csv"))
        whole.batchSize = 64
        _ = try scorer.run(whole)
        var joined = Data()
        var rows = 0
        for index in 1...3 {
            var part = whole
            part.output = folder.appendingPathComponent("part\(index).csv")
            part.shard = (index, 3)
            rows += try scorer.run(part).rows
            joined += try Data(contentsOf: part.output)
        }
        #expect(rows == 1000)
        #expect(joined == (try Data(contentsOf: whole.output)))
    }

    @Test func aResumedRunWritesTheSameBytesAsAnUninterruptedOne() throws {
        let folder = try Self.folder()
        let input = try Self.file(Self.irisCSV(rows: 700) + "1,2,x,4\n" + Self.irisCSV(rows: 300).split(separator: "\n", maxSplits: 1)[1], in: folder)
        let scorer = try Self.scorer().0
        var whole = BatchOptions(input: input, output: folder.appendingPathComponent("whole.csv"))
        whole.batchSize = 100
        whole.errors = folder.appendingPathComponent("whole.errors")
        let expected = try scorer.run(whole)
        var interrupted = whole
        interrupted.output = folder.appendingPathComponent("resumed.csv")
        interrupted.errors = folder.appendingPathComponent("resumed.errors")
        interrupted.stopAfterChunks = 3
        #expect(throws: BatchInterrupted.self) { try scorer.run(interrupted) }
        #expect(FileManager.default.fileExists(atPath: interrupted.checkpoint.path))
        // What a kill leaves after the checkpoint: output written past it, which the resume must cut off.
        let handle = try FileHandle(forWritingTo: interrupted.output)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("garbage past the checkpoint\n".utf8))
        try handle.close()
        var resumed = interrupted
        resumed.stopAfterChunks = nil
        resumed.resume = true
        let summary = try scorer.run(resumed)
        #expect(summary.rows == expected.rows)
        #expect(summary.errors == expected.errors)
        #expect(try Data(contentsOf: resumed.output) == (try Data(contentsOf: whole.output)))
        #expect(try Data(contentsOf: try #require(resumed.errors)) == (try Data(contentsOf: try #require(whole.errors))))
    }

    @Test func theLineReaderHandlesAByteOrderMarkCRLFBlankLinesAndAMissingLastLineEnd() throws {
        #expect(try Self.lines("\u{FEFF}{\"a\":1}\r\n\r\n  \n{\"b\": [1, 2]}\n{\"c\":3}") == ["1:{\"a\":1}", "4:{\"b\": [1, 2]}", "5:{\"c\":3}"])
        #expect(try Self.lines("").isEmpty)
        #expect(try Self.lines("\n\n").isEmpty)
        #expect(try Self.lines("0123456789abcdef\n") == ["1:0123456789abcdef"])  // longer than a read
    }

    @Test func aZipMapOutputGetsProbabilityColumnsNamedByItsKeysWithOnnxruntimesValues() throws {
        let fixture = Self.fixture("sklearn_decision_tree_zipmap")
        let rows = try Self.npy(fixture.appendingPathComponent("input_0.npy"))
        let folder = try Self.folder()
        var text = "a,b,c,d\n"
        let values = rows.scalars(as: Float.self)
        for row in 0..<rows.shape[0] { text += values[(row * 4)..<(row * 4 + 4)].map { String($0) }.joined(separator: ",") + "\n" }
        let options = BatchOptions(input: try Self.file(text, in: folder), output: folder.appendingPathComponent("out.csv"))
        _ = try Self.scorer(fixture.appendingPathComponent("model.onnx")).0.run(options)
        let lines = try String(contentsOf: options.output, encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
        let keys = try Self.npy(fixture.appendingPathComponent("output_1_keys.npy")).scalars(as: Int64.self)
        #expect(lines[0] == ["output_label"] + keys.map { "probability_\($0)" })
        let labels = try Self.npy(fixture.appendingPathComponent("output_0.npy")).scalars(as: Int64.self)
        let probabilities = try Self.npy(fixture.appendingPathComponent("output_1_values.npy")).scalars(as: Float.self)
        #expect(lines.count == labels.count + 1)
        for (row, line) in lines.dropFirst().enumerated() {
            #expect(Int64(line[0]) == labels[row])
            #expect(line.dropFirst().map { Float($0)! } == Array(probabilities[(row * keys.count)..<((row + 1) * keys.count)]))
        }
    }

    @Test func jsonLinesAreScoredInOrderWithTheirRowAndBadLinesAreReportedByLine() throws {
        let folder = try Self.folder()
        let text = """
            {"X": [5.1, 3.5, 1.4, 0.2], "id": "a"}
            {"X": [[6.7, 3.0, 5.2, 2.3]]}

            {"X": [5.0, 3.4, 1.4]}
            not json
            {"Y": [1, 2, 3, 4]}
            {"X": [5.0, "x", 1.4, 0.2]}
            [1, 2, 3, 4]
            {"X": [6.1, 2.8, 4.7, 1.2]}
            """
        var options = BatchOptions(input: try Self.file(text, in: folder, name: "in.jsonl"), output: folder.appendingPathComponent("out.jsonl"))
        options.format = .jsonl
        options.errors = folder.appendingPathComponent("errors.jsonl")
        options.batchSize = 3
        let (scorer, session) = try Self.scorer()
        let summary = try scorer.run(options)
        #expect(summary.rows == 3)
        #expect(summary.errors == 5)
        let objects = try String(contentsOf: options.output, encoding: .utf8).split(separator: "\n").map { line in
            try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        }
        #expect(objects.map { $0["row"] as? Int } == [0, 1, 7])
        let rows: [[Float]] = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [6.1, 2.8, 4.7, 1.2]]
        let expected = try session.run(["X": .tensor(Tensor(shape: [3, 4], scalars: rows.flatMap { $0 }))])
        let labels = try #require(expected["label"]?.tensor).scalars(as: Int64.self)
        let probabilities = try #require(expected["probabilities"]?.tensor).scalars(as: Float.self)
        for (index, object) in objects.enumerated() {
            #expect((object["label"] as? NSNumber)?.int64Value == labels[index])
            let row = try #require(object["probabilities"] as? [NSNumber]).map(\.floatValue)
            #expect(row == Array(probabilities[(index * 3)..<(index * 3 + 3)]))
        }
        let errors = try String(contentsOf: try #require(options.errors), encoding: .utf8).split(separator: "\n").map { line in
            try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        }
        #expect(errors.compactMap { $0["line"] as? Int } == [4, 5, 6, 7, 8])
        #expect(errors[0]["reason"] as? String == "input 'X' takes rows of shape [4] (4 values); found 3")
        #expect(errors[2]["reason"] as? String == "no value for input 'X'")
        #expect(errors[3]["reason"] as? String == "'x' is not a number")
        #expect(errors[3]["column"] as? String == "X")
    }

    @Test func aZipMapBecomesOneJSONObjectPerRowAndStringLabelsStayStrings() throws {
        let folder = try Self.folder()
        for (name, outputs) in [("sklearn_decision_tree_zipmap", ["output_label", "output_probability"]), ("sklearn_string_labels", ["label", "probabilities"])] {
            let fixture = Self.fixture(name)
            let rows = try Self.npy(fixture.appendingPathComponent("input_0.npy"))
            let values = rows.scalars(as: Float.self)
            let text = (0..<rows.shape[0]).map { row in "{\"X\": [" + values[(row * 4)..<(row * 4 + 4)].map { String($0) }.joined(separator: ",") + "]}" }.joined(separator: "\n")
            var options = BatchOptions(input: try Self.file(text, in: folder, name: "\(name).jsonl"), output: folder.appendingPathComponent("\(name).out.jsonl"))
            options.format = .jsonl
            let (scorer, session) = try Self.scorer(fixture.appendingPathComponent("model.onnx"))
            _ = try scorer.run(options)
            let expected = try session.run(["X": .tensor(rows)])
            let objects = try String(contentsOf: options.output, encoding: .utf8).split(separator: "\n").map { line in
                try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            }
            #expect(objects.count == rows.shape[0])
            if case .mapSequence(let maps)? = expected[outputs[1]] {
                let keys = try maps.keys.elementStrings()
                let probabilities = maps.values.scalars(as: Float.self)
                for (row, object) in objects.enumerated() {
                    let map = try #require(object[outputs[1]] as? [String: NSNumber])
                    #expect(Set(map.keys) == Set(keys))
                    for (k, key) in keys.enumerated() { #expect(map[key]?.floatValue == probabilities[row * keys.count + k]) }
                }
            } else {
                let labels = try #require(expected[outputs[0]]?.tensor).strings
                #expect(objects.map { $0[outputs[0]] as? String } == labels)
            }
        }
    }

    @Test func anNPYFolderIsScoredIntoOneNPYPerOutputAndNonFiniteRowsFail() throws {
        let folder = try Self.folder()
        let input = folder.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        var values = Self.irisCSV(rows: 250).split(separator: "\n").dropFirst().flatMap { $0.split(separator: ",").map { Double($0)! } }
        values[4 * 17 + 2] = .nan
        values[4 * 200] = .infinity
        try NPYFormat.encode(Tensor(shape: [250, 4], scalars: values)).write(to: input.appendingPathComponent("X.npy"))  // float64: converted
        var options = BatchOptions(input: input, output: folder.appendingPathComponent("out"))
        options.format = .npy
        options.batchSize = 64
        options.errors = folder.appendingPathComponent("errors.jsonl")
        let (scorer, session) = try Self.scorer()
        let summary = try scorer.run(options)
        #expect(summary.rows == 248)
        #expect(summary.errors == 2)
        let good = (0..<250).filter { $0 != 17 && $0 != 200 }
        let expected = try session.run(["X": .tensor(Tensor(shape: [248, 4], scalars: good.flatMap { row in values[(row * 4)..<(row * 4 + 4)].map { Float($0) } }))])
        let label = try Self.npy(options.output.appendingPathComponent("label.npy"))
        let probabilities = try Self.npy(options.output.appendingPathComponent("probabilities.npy"))
        #expect(label.shape == [248])
        #expect(probabilities.shape == [248, 3])
        #expect(label.scalars(as: Int64.self) == (try #require(expected["label"]?.tensor)).scalars(as: Int64.self))
        #expect(probabilities.scalars(as: Float.self) == (try #require(expected["probabilities"]?.tensor)).scalars(as: Float.self))
        let errors = try String(contentsOf: try #require(options.errors), encoding: .utf8).split(separator: "\n").map { line in
            try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        }
        #expect(errors.compactMap { $0["row"] as? Int } == [17, 200])
        #expect(errors.allSatisfy { $0["column"] as? String == "X" })
    }

    @Test func stringLabelsGoToAUnicodeNPYAsWideAsTheLongestClassLabel() throws {
        let fixture = Self.fixture("sklearn_string_labels")
        let folder = try Self.folder()
        let input = folder.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixture.appendingPathComponent("input_0.npy"), to: input.appendingPathComponent("X.npy"))
        var options = BatchOptions(input: input, output: folder.appendingPathComponent("out"))
        options.format = .npy
        options.batchSize = 5
        _ = try Self.scorer(fixture.appendingPathComponent("model.onnx")).0.run(options)
        let labels = try Self.npy(options.output.appendingPathComponent("label.npy"))
        #expect(labels.strings == (try Self.npy(fixture.appendingPathComponent("output_0.npy"))).strings)
        let data = try Data(contentsOf: options.output.appendingPathComponent("label.npy"))
        #expect(try NPYFormat.header(Array(data)).unicodeWidth == 10)  // "versicolor"
    }

    @Test func npyShardsCoverTheRowsAndAResumedNPYRunWritesTheSameBytes() throws {
        let folder = try Self.folder()
        let input = folder.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        let values = Self.irisCSV(rows: 1000).split(separator: "\n").dropFirst().flatMap { $0.split(separator: ",").map { Float($0)! } }
        try NPYFormat.encode(Tensor(shape: [1000, 4], scalars: values)).write(to: input.appendingPathComponent("X.npy"))
        let scorer = try Self.scorer().0
        var whole = BatchOptions(input: input, output: folder.appendingPathComponent("whole"))
        whole.format = .npy
        whole.batchSize = 100
        _ = try scorer.run(whole)
        var labels: [Int64] = []
        for index in 1...3 {
            var part = whole
            part.output = folder.appendingPathComponent("part\(index)")
            part.shard = (index, 3)
            _ = try scorer.run(part)
            labels += try Self.npy(part.output.appendingPathComponent("label.npy")).scalars(as: Int64.self)
        }
        #expect(labels == (try Self.npy(whole.output.appendingPathComponent("label.npy"))).scalars(as: Int64.self))
        var interrupted = whole
        interrupted.output = folder.appendingPathComponent("resumed")
        interrupted.stopAfterChunks = 4
        #expect(throws: BatchInterrupted.self) { try scorer.run(interrupted) }
        var resumed = interrupted
        resumed.stopAfterChunks = nil
        resumed.resume = true
        #expect(try scorer.run(resumed).rows == 1000)
        for name in ["label.npy", "probabilities.npy"] {
            #expect(try Data(contentsOf: resumed.output.appendingPathComponent(name)) == (try Data(contentsOf: whole.output.appendingPathComponent(name))))
        }
    }

    @Test func optionsThatChooseCSVColumnsAreRefusedForOtherFormats() throws {
        let folder = try Self.folder()
        var options = BatchOptions(input: try Self.file("{\"X\": [1, 2, 3, 4]}\n", in: folder, name: "in.jsonl"), output: folder.appendingPathComponent("out.jsonl"))
        options.format = .jsonl
        options.columns = ["a"]
        #expect(throws: BatchError.self) { try Self.scorer().0.run(options) }
        options.columns = nil
        options.keepColumns = true
        #expect(throws: BatchError.self) { try Self.scorer().0.run(options) }
        options.keepColumns = false
        options.format = .npy
        options.input = folder
        let error = #expect(throws: BatchError.self) { try Self.scorer().0.run(options) }
        #expect(error?.description.contains("no X.npy for the model's input 'X'") == true)
    }
}
