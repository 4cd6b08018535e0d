import Testing
@testable import ServalServing

/// `config.yaml` parsing: an empty file or one of comments only derives everything; a wrong type names the field.
@Suite struct ModelConfigTests {
    @Test func commentsOnlyIsAnEmptyConfiguration() throws {
        #expect(try ModelConfig.parse("# nothing here yet\n", file: "m/config.yaml") == ModelConfig())
        #expect(try ModelConfig.parse("  \n", file: "m/config.yaml") == ModelConfig())
        #expect(try ModelConfig.parse("max_batch_size: 8\n# and a comment", file: "m/config.yaml").maxBatchSize == 8)
    }

    @Test func aWrongTypeNamesTheFile() {
        #expect {
            try ModelConfig.parse("max_batch_size: lots", file: "m/config.yaml")
        } throws: { "\($0)".contains("m/config.yaml") && "\($0)".contains("max_batch_size") }
    }

    @Test func idleUnloadSecondsAreReadAndANegativeValueIsRefused() throws {
        #expect(try ModelConfig.parse("idle_unload_secs: 300\n", file: "m/config.yaml").idleUnloadSecs == 300)
        #expect(try ModelConfig.parse("max_batch_size: 8\n", file: "m/config.yaml").idleUnloadSecs == nil)
        #expect {
            try ModelConfig.parse("idle_unload_secs: -1", file: "m/config.yaml")
        } throws: { "\($0)" == "m/config.yaml: idle_unload_secs must be a number of seconds ≥ 0 (0: never unload), got -1.0" }
    }
}
