import Foundation
import ServalEngine
import ServalJobs
import ServalONNX
import ServalTensor
import ServalWire
import Testing

/// `serval batch`'s reader and scorer: CSV edge cases, bad rows by line, shards that concatenate to the whole,
/// and a resumed run that writes the same bytes as an uninterrupted one.
@Suite("Batch scoring over CSV")
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

    static func scorer() throws -> (BatchScorer, Session) {
        let model = try ONNXModel(contentsOf: iris)
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
}
