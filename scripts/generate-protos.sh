#!/usr/bin/env bash
# Regenerates the committed Swift code for the .proto files in Protos/.
# Run by hand when a .proto or the swift-protobuf version changes; never in CI.
# Needs: apt-get install -y protobuf-compiler
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --package-path codegen --product protoc-gen-swift
plugins=codegen/.build/debug
protoc -I Protos \
  --plugin=protoc-gen-swift="$plugins/protoc-gen-swift" \
  --swift_out=Sources/ServalONNX/Generated --swift_opt=Visibility=Public \
  Protos/onnx-ml.proto
