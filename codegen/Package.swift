// swift-tools-version:6.1
// Tools-only package: builds the protoc plugins used by scripts/generate-protos.sh.
// Not a dependency of Serval; never built by CI.
import PackageDescription

let package = Package(
    name: "ServalCodegen",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
    ]
)
