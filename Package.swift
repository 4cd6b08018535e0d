// swift-tools-version:6.1
import PackageDescription

/// Kernels are compiled for AVX2 + FMA (x86-64 servers since 2013), which roughly doubles the throughput of
/// the engine's own SIMD loops. Set SERVAL_PORTABLE=1 to build for baseline x86-64 instead.
let engineSettings: [SwiftSetting] = {
    #if arch(x86_64)
    if Context.environment["SERVAL_PORTABLE"] == nil {
        return [.unsafeFlags(["-Xcc", "-mavx2", "-Xcc", "-mfma", "-target-cpu", "haswell"])]
    }
    #endif
    return []
}()

let package = Package(
    name: "Serval",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "serval", targets: ["serval"]),
        .library(name: "ServalEngine", targets: ["ServalEngine"]),
        .library(name: "ServalONNX", targets: ["ServalONNX"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/vapor/multipart-kit.git", from: "4.7.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        // OTLP over gRPC only: the OTLP/HTTP trait would bring async-http-client for nothing (gRPC is built anyway).
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPGRPC"]),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "ServalTensor", dependencies: ["CBLAS"], swiftSettings: engineSettings),
        // Hand-written SIMD kernels in C (int8 GEMM), compiled per function for AVX2 / AVX-512 VNNI with runtime dispatch.
        .target(name: "CServalKernels"),
        .target(name: "ServalEngine", dependencies: ["ServalTensor", "CServalKernels"], swiftSettings: engineSettings),
        .target(
            name: "ServalONNX",
            dependencies: ["ServalEngine", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .target(
            name: "ServalStore",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"), .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"), .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .target(name: "ServalRegistry", dependencies: ["ServalStore", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "ServalWire", dependencies: ["ServalTensor"]),
        .target(
            name: "ServalServing",
            dependencies: [
                "ServalEngine", "ServalONNX", "ServalRegistry", "ServalStore", "ServalWire", .product(name: "Crypto", package: "swift-crypto"), .product(name: "Yams", package: "Yams"), .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),
        .target(
            name: "ServalJobs",
            dependencies: [
                "ServalServing", "ServalWire", "ServalStore", "ServalRegistry", "ServalTensor", "ServalEngine",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "ServalMonitor",
            dependencies: [
                "ServalServing", "ServalWire", "ServalStore", "ServalRegistry", "ServalTensor",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "ServalPipeline",
            dependencies: [
                "ServalStore", "ServalWire", "ServalEngine", "ServalONNX", "ServalTensor", "ServalMonitor", "ServalRegistry",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"), .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "ServalHTTP",
            dependencies: [
                "ServalServing", "ServalRegistry", "ServalWire", "ServalJobs", "ServalMonitor", "ServalPipeline", "ServalAuth", "ServalTLS",
                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "MultipartKit", package: "multipart-kit"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "ServalGRPC",
            dependencies: [
                "ServalServing", "ServalWire", "ServalAuth", "ServalTLS",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "ServalServer",
            dependencies: [
                "ServalServing", "ServalHTTP", "ServalGRPC", "ServalRegistry", "ServalStore", "ServalWire", "ServalJobs", "ServalMonitor", "ServalPipeline", "ServalTLS",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "serval",
            dependencies: [
                "ServalServer", "ServalWire", "ServalAuth", "ServalJobs", "ServalPipeline", "ServalStore", "ServalTLS",
                .product(name: "Crypto", package: "swift-crypto"),
                "ServalONNX",
                "ServalEngine",
                "ServalServing",
                "ServalHTTP",
                "ServalGRPC",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(name: "ServalTestSupport", dependencies: ["ServalServing", "ServalWire", "ServalTensor", "ServalStore"], path: "Tests/ServalTestSupport"),
        .target(
            name: "ServalAuth",
            dependencies: [
                "ServalWire", .product(name: "Crypto", package: "swift-crypto"), .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Yams", package: "Yams"), .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "ServalTLS",
            dependencies: [
                .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "NIOCertificateReloading", package: "swift-nio-extras"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
        .target(name: "ServalFuzzTargets", dependencies: ["ServalWire", "ServalGRPC", "ServalONNX", "ServalServing", "ServalTensor"]),
        .testTarget(name: "ServalFuzzTests", dependencies: ["ServalFuzzTargets"]),
        .testTarget(name: "ServalAuthTests", dependencies: ["ServalAuth", "ServalTestSupport", .product(name: "JWTKit", package: "jwt-kit")]),
        .testTarget(name: "ServalTensorTests", dependencies: ["ServalTensor"]),
        .testTarget(name: "ServalStoreTests", dependencies: ["ServalStore", "ServalRegistry", "ServalTestSupport"]),
        .testTarget(name: "ServalMonitorTests", dependencies: ["ServalMonitor", "ServalServing", "ServalStore", "ServalWire", "ServalTensor", "ServalTestSupport"]),
        .testTarget(name: "ServalJobsTests", dependencies: ["ServalJobs", "ServalWire", "ServalStore", "ServalRegistry", "ServalTestSupport", "ServalEngine", "ServalONNX", "ServalTensor"]),
        .testTarget(name: "ServalPipelineTests", dependencies: ["ServalPipeline", "ServalStore", "ServalRegistry", "ServalMonitor", "ServalTestSupport"]),
        .testTarget(
            name: "ServalServingTests",
            dependencies: [
                "ServalServing", "ServalWire", "ServalRegistry", "ServalEngine", "ServalTensor", "ServalONNX", "ServalTestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .testTarget(
            name: "ServalHTTPTests",
            dependencies: [
                "ServalHTTP", "ServalServing", "ServalServer", "ServalRegistry", "ServalStore", "ServalWire", "ServalJobs", "ServalMonitor", "ServalTestSupport", "ServalAuth",
                "ServalTLS", .product(name: "X509", package: "swift-certificates"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SwiftASN1", package: "swift-asn1"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"), .product(name: "Crypto", package: "swift-crypto"), .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(
            name: "ServalGRPCTests",
            dependencies: [
                "ServalGRPC", "ServalServing", "ServalServer", "ServalWire", "ServalTestSupport", "ServalAuth",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ]
        ),
        .testTarget(name: "ServalEngineTests", dependencies: ["ServalEngine", "CServalKernels"]),
        .testTarget(
            name: "ServalONNXTests",
            dependencies: ["ServalONNX", "ServalEngine", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// Coverage-guided fuzzing (scripts/fuzz/run.sh): one libFuzzer executable over every decoder of untrusted bytes,
// built only with SERVAL_FUZZ=1 in its own build folder with -sanitize=fuzzer,address.
if Context.environment["SERVAL_FUZZ"] == "1" {
    package.targets += [
        .target(name: "CFuzzer", path: "Fuzz/CFuzzer"),
        .executableTarget(
            name: "serval-fuzz",
            dependencies: ["CFuzzer", "ServalFuzzTargets"],
            path: "Fuzz/serval-fuzz"
        ),
    ]
}
