#!/usr/bin/env bash
# Regenerates the committed Swift code for the .proto files in Protos/.
# Run by hand when a .proto or the swift-protobuf / grpc-swift-protobuf version changes; never in CI.
# Needs: apt-get install -y protobuf-compiler
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --package-path codegen --product protoc-gen-swift
swift build --package-path codegen --product protoc-gen-grpc-swift-2
plugins=codegen/.build/debug

# ONNX model files (ServalONNX).
protoc -I Protos \
  --plugin=protoc-gen-swift="$plugins/protoc-gen-swift" \
  --swift_out=Sources/ServalONNX/Generated --swift_opt=Visibility=Public \
  Protos/onnx-ml.proto

# The inference gRPC service, Triton's model configuration subset, and grpc.health.v1 (ServalGRPC).
protoc -I Protos \
  --plugin=protoc-gen-swift="$plugins/protoc-gen-swift" \
  --swift_out=Sources/ServalGRPC/Generated --swift_opt=Visibility=Public \
  Protos/grpc_service.proto Protos/model_config.proto Protos/health.proto
protoc -I Protos \
  --plugin=protoc-gen-grpc-swift-2="$plugins/protoc-gen-grpc-swift-2" \
  --grpc-swift-2_out=Sources/ServalGRPC/Generated --grpc-swift-2_opt=Visibility=Public,Client=true,Server=true \
  Protos/grpc_service.proto Protos/health.proto
