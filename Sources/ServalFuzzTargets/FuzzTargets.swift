import Foundation
import ServalGRPC
import ServalONNX
import ServalServing
import ServalTensor
import ServalWire

/// Every decoder that reads untrusted bytes, as one function of the bytes each: what the libFuzzer executable
/// (`Fuzz/serval-fuzz`, scripts/fuzz/run.sh) drives, and what `FuzzRegressionTests` replays every committed finding
/// and seed through. A thrown error is a clean refusal; a trap, a sanitizer report, a leak or a hang is a finding.
public enum FuzzTargets {
    /// The limits as `serval serve` sets them, smaller for element counts so that no single input may legitimately
    /// ask for gigabytes (the fuzzer's RSS limit would report that as a finding).
    public static let limits: WireLimits = {
        var limits = WireLimits.standard
        limits.maxTensorElements = 1 << 20
        limits.maxJSONElements = 1 << 20
        limits.maxBytesElementSize = 1 << 20
        return limits
    }()

    /// The TF Serving decoder needs the model's signature: iris's, one FP32 input of 4 features.
    static let signature = [TensorMetadata(name: "X", datatype: "FP32", shape: [-1, 4])]

    /// Target name → the decoder run on one input: whether it decoded (false: refused with an error).
    public static let all: [String: @Sendable (UnsafeRawBufferPointer) -> Bool] = [
        // POST /v2/models/{m}/infer with a JSON body.
        "kserve-json": { input in
            (try? KServeCodec.decodeRequest(body: input, headerLength: nil, limits: limits)) != nil
        },
        // The binary tensor extension: the first two bytes are Inference-Header-Content-Length (little-endian), the
        // rest the body; then the raw codec alone (what gRPC raw_input_contents reach) with a shape from the input.
        "binary-tensor": { input in
            guard input.count >= 2 else { return false }
            let headerLength = Int(input[0]) | Int(input[1]) << 8
            let body = UnsafeRawBufferPointer(rebasing: input[2...])
            let decoded = (try? KServeCodec.decodeRequest(body: body, headerLength: headerLength, limits: limits)) != nil
            let dtype = DType.allCases[Int(input[0]) % DType.allCases.count]
            _ = try? RawTensorCodec.decode(body, dtype: dtype, shape: [Int(input[1]), Int(input[0] >> 4)], name: "x", source: "fuzz", limits: limits)
            return decoded
        },
        // POST /v1/models/{m}:predict (row and columnar forms).
        "tfserving": { input in
            guard let body = try? JSONParser.parse(input, limits: limits) else { return false }
            return (try? TFServingCodec.decodeRequest(body, inputs: signature, limits: limits)) != nil
        },
        // gRPC ModelInfer: the protobuf message, then our decoding of its tensors.
        "grpc-infer": { input in
            guard let message = try? Inference_ModelInferRequest(serializedBytes: Data(input)) else { return false }
            return (try? InferenceCodec.decodeRequest(message, limits: limits)) != nil
        },
        // .npy files: batch inputs, monitoring references.
        "npy": { input in
            (try? NPYFormat.decode(Data(input))) != nil
        },
        // An uploaded model (POST /v2/models/{m}/versions), imported as the registry does, without its folder.
        "onnx": { input in
            (try? ONNXModel(serialized: Data(input), baseDirectory: nil)) != nil
        },
        // A model's config.yaml.
        "config-yaml": { input in
            (try? ModelConfig.parse(String(decoding: input, as: UTF8.self), file: "fuzz/config.yaml")) != nil
        },
    ]
}
