import ArgumentParser
import Glibc
import ServalHTTP
import ServalServing
import ServalWire

/// `serval serve` flags bounding what one request may declare; a request over one gets 400 naming the flag.
struct LimitOptions: ParsableArguments {
    @Option(name: .customLong("max-json-depth"), help: "Deepest nesting of a JSON request body.")
    var maxJSONDepth = WireLimits.standard.maxJSONDepth

    @Option(name: .customLong("max-json-elements"), help: "Most JSON values (array elements and members) in one request body.")
    var maxJSONElements = WireLimits.standard.maxJSONElements

    @Option(name: .customLong("max-tensor-elements"), help: "Most tensor elements in one inference request, over all its inputs.")
    var maxTensorElements = WireLimits.standard.maxTensorElements

    @Option(name: .customLong("max-bytes-element-size"), help: "Longest element of a BYTES tensor, in bytes.")
    var maxBytesElementSize = WireLimits.standard.maxBytesElementSize

    @Option(name: .customLong("max-model-size"), help: "Largest model file a registration (POST /v2/models/{m}/versions) may upload, e.g. 1GiB.")
    var maxModelSize = "1GiB"

    @Option(name: .customLong("max-model-nodes"), help: "Most graph nodes an uploaded model may have.")
    var maxModelNodes = 1_000_000

    @Option(name: .customLong("http-header-timeout-secs"), help: "Seconds from a request's first byte until its head must be complete (slow clients get 408).")
    var httpHeaderTimeoutSecs = 30.0

    @Option(name: .customLong("http-body-timeout-secs"), help: "Longest pause, in seconds, between two pieces of a request body (then 408).")
    var httpBodyTimeoutSecs = 60.0

    @Option(name: .customLong("http-idle-timeout-secs"), help: "Seconds a keep-alive connection may wait for its next request before it is closed.")
    var httpIdleTimeoutSecs = 75.0

    @Option(name: .customLong("http-max-connections"), help: "HTTP connections open at once; one more is answered 503 and closed. Default: 4096, or fewer if the open-file limit is lower.")
    var httpMaxConnections: Int?

    func validate() throws {
        guard httpHeaderTimeoutSecs > 0, httpBodyTimeoutSecs > 0, httpIdleTimeoutSecs > 0, (httpMaxConnections ?? 1) > 0 else {
            throw ValidationError("--http-header-timeout-secs, --http-body-timeout-secs, --http-idle-timeout-secs and --http-max-connections must be positive")
        }
        guard maxJSONDepth > 0, maxJSONElements > 0, maxTensorElements > 0, maxBytesElementSize > 0, maxModelNodes > 0 else {
            throw ValidationError("--max-json-depth, --max-json-elements, --max-tensor-elements, --max-bytes-element-size and --max-model-nodes must be positive")
        }
        guard let size = ByteCount.parse(maxModelSize), size > 0, size <= Int(Int32.max) else {
            throw ValidationError("--max-model-size must be a size from 1 byte to 2GiB (ONNX's protobuf limit), such as 512MiB, got '\(maxModelSize)'")
        }
    }

    /// Applies the limits to the HTTP settings.
    func apply(to http: inout HTTPConfiguration) {
        http.limits = wire
        http.maxModelSize = ByteCount.parse(maxModelSize) ?? http.maxModelSize
        http.maxModelNodes = maxModelNodes
        http.connections.headerTimeout = .milliseconds(Int64(httpHeaderTimeoutSecs * 1000))
        http.connections.bodyIdleTimeout = .milliseconds(Int64(httpBodyTimeoutSecs * 1000))
        http.connections.idleTimeout = .milliseconds(Int64(httpIdleTimeoutSecs * 1000))
        http.connections.maxConnections = httpMaxConnections ?? Self.defaultMaxConnections
    }

    /// 4096, or what the open-file limit leaves after room for models, the store, gRPC and logs.
    static var defaultMaxConnections: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < 1 << 40 else { return 4096 }
        return max(64, min(4096, Int(limit.rlim_cur) - 256))
    }

    var wire: WireLimits {
        var limits = WireLimits()
        limits.maxJSONDepth = maxJSONDepth
        limits.maxJSONElements = maxJSONElements
        limits.maxTensorElements = maxTensorElements
        limits.maxBytesElementSize = maxBytesElementSize
        return limits
    }
}
