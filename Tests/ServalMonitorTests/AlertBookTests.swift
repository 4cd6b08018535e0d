import Testing
@testable import ServalMonitor

/// Alert hysteresis with an injected clock: evaluations happen per full window, a condition must hold (and then
/// clear) for `for_windows` consecutive evaluations.
@Suite struct AlertBookTests {
    static func drift(_ breached: Bool) -> [AlertBook.Name: AlertBook.Verdict] {
        [.datasetDrift: .init(breached: breached, value: breached ? 0.75 : 0, threshold: 0.5)]
    }

    @Test func firesAfterForWindowsConsecutiveBreachesAndResolvesAfterAsManyClearOnes() {
        var book = AlertBook()
        var rows = 0
        func window(_ breached: Bool, at time: Double) -> [AlertBook.Transition] {
            rows += 100
            return book.evaluate(appendedRows: rows, labelledRows: 0, window: 100, forWindows: 2, now: time, verdicts: Self.drift(breached))
        }
        #expect(window(true, at: 10).isEmpty)  // one breach: pending
        #expect(window(false, at: 20).isEmpty)  // broken streak
        #expect(window(true, at: 30).isEmpty)
        let fired = window(true, at: 40)
        #expect(fired == [.init(name: .datasetDrift, firing: true, startsAt: 40, endsAt: nil, value: 0.75, threshold: 0.5)])
        #expect(book.firing == [.datasetDrift])
        #expect(window(false, at: 50).isEmpty)  // one clear window does not resolve
        #expect(window(true, at: 60).isEmpty)
        #expect(window(false, at: 70).isEmpty)
        let resolved = window(false, at: 80)
        #expect(resolved == [.init(name: .datasetDrift, firing: false, startsAt: 40, endsAt: 80, value: 0, threshold: 0.5)])
        #expect(book.firing.isEmpty)
    }

    @Test func evaluatesOnlyWhenAWindowOfNewRowsCompleted() {
        var book = AlertBook()
        #expect(book.evaluate(appendedRows: 99, labelledRows: 0, window: 100, forWindows: 1, now: 1, verdicts: Self.drift(true)).isEmpty)
        #expect(book.evaluate(appendedRows: 100, labelledRows: 0, window: 100, forWindows: 1, now: 2, verdicts: Self.drift(true)).count == 1)
        // The same window again (the evaluator runs every second): no new evaluation, so no resolve either.
        #expect(book.evaluate(appendedRows: 150, labelledRows: 0, window: 100, forWindows: 1, now: 3, verdicts: Self.drift(false)).isEmpty)
        #expect(book.firing == [.datasetDrift])
        #expect(book.evaluate(appendedRows: 200, labelledRows: 0, window: 100, forWindows: 1, now: 4, verdicts: Self.drift(false)).count == 1)
    }

    @Test func performanceAlertsCountLabelledRows() {
        var book = AlertBook()
        let verdicts: [AlertBook.Name: AlertBook.Verdict] = [.accuracy: .init(breached: true, value: 0.6, threshold: 0.9)]
        #expect(book.evaluate(appendedRows: 1000, labelledRows: 50, window: 100, forWindows: 1, now: 1, verdicts: verdicts).isEmpty)
        let fired = book.evaluate(appendedRows: 1000, labelledRows: 100, window: 100, forWindows: 1, now: 2, verdicts: verdicts)
        #expect(fired.map(\.name) == [.accuracy])
    }

    @Test func thePayloadIsAlertmanagers() throws {
        let body = AlertPayload.body(.init(name: .accuracy, firing: false, startsAt: 0, endsAt: 60, value: 0.6, threshold: 0.9), model: "iris", version: 3,
                                     externalURL: "http://h/monitoring/iris")
        #expect(body.contains("\"status\":\"resolved\""))
        #expect(body.contains("\"labels\":{\"alertname\":\"accuracy\",\"model\":\"iris\",\"severity\":\"warning\",\"version\":\"3\"}"))
        #expect(body.contains("\"startsAt\":\"1970-01-01T00:00:00.000Z\""))
        #expect(body.contains("\"endsAt\":\"1970-01-01T00:01:00.000Z\""))
        #expect(body.contains("\"version\":\"4\""))
    }
}
