import Foundation
@testable import ServalGRPC
import ServalServing
import ServalTensor
import Testing
import ServalWire

/// Typed `contents` for every datatype, both directions, and parameters of every kind.
struct InferenceCodecTests {
    /// One input per datatype with typed contents, as a client would fill them.
    static func typedRequest() -> Inference_ModelInferRequest {
        func input(_ datatype: String, _ fill: (inout Inference_InferTensorContents) -> Void) -> Inference_ModelInferRequest.InferInputTensor {
            .with {
                $0.name = "x_\(datatype.lowercased())"
                $0.datatype = datatype
                $0.shape = [2, 2]
                fill(&$0.contents)
            }
        }
        return .with {
            $0.modelName = "echo"
            $0.inputs = [
                input("BOOL") { $0.boolContents = [true, false, false, true] },
                input("UINT8") { $0.uintContents = [0, 1, 254, 255] },
                input("UINT16") { $0.uintContents = [0, 1, 65534, 65535] },
                input("UINT32") { $0.uintContents = [0, 7, .max - 1, .max] },
                input("UINT64") { $0.uint64Contents = [0, 9, .max - 1, .max] },
                input("INT8") { $0.intContents = [-128, -1, 0, 127] },
                input("INT16") { $0.intContents = [-32768, -1, 0, 32767] },
                input("INT32") { $0.intContents = [.min, -1, 0, .max] },
                input("INT64") { $0.int64Contents = [.min, -1, 0, .max] },
                input("FP32") { $0.fp32Contents = [-1.5, 0, .pi, 3.4e38] },
                input("FP64") { $0.fp64Contents = [-1.5, 0, .pi, 1e300] },
                input("BYTES") { $0.bytesContents = [Data("a".utf8), Data(), Data("héllo".utf8), Data("z".utf8)] },
            ]
        }
    }

    @Test func typedContentsDecodeToTensorsOfTheirDatatype() throws {
        let request = try InferenceCodec.decodeRequest(Self.typedRequest())
        #expect(request.inputs.count == 12)
        #expect(request.inputs["x_bool"]?.scalars(as: Bool.self) == [true, false, false, true])
        #expect(request.inputs["x_uint16"]?.scalars(as: UInt16.self) == [0, 1, 65534, 65535])
        #expect(request.inputs["x_int8"]?.scalars(as: Int8.self) == [-128, -1, 0, 127])
        #expect(request.inputs["x_uint64"]?.scalars(as: UInt64.self) == [0, 9, UInt64.max - 1, UInt64.max])
        #expect(request.inputs["x_fp64"]?.scalars(as: Double.self) == [-1.5, 0, .pi, 1e300])
        #expect(request.inputs["x_bytes"]?.strings == ["a", "", "héllo", "z"])
        for (name, tensor) in request.inputs {
            #expect(tensor.shape == [2, 2])
            #expect("x_" + tensor.dtype.kserveName.lowercased() == name)
        }
    }

    @Test func typedResponsesCarryTheSameValuesBack() throws {
        let message = Self.typedRequest()
        let request = try InferenceCodec.decodeRequest(message)
        let outputs = message.inputs.map { input in (name: "y" + input.name.dropFirst(), value: Value.tensor(request.inputs[input.name]!)) }
        let response = InferenceCodec.encodeResponse(InferenceResponse(modelName: "echo", modelVersion: "1", id: "7", outputs: outputs), raw: false)
        #expect(response.id == "7")
        #expect(response.rawOutputContents.isEmpty)
        #expect(response.outputs.map(\.datatype) == message.inputs.map(\.datatype))
        #expect(response.outputs.map(\.contents) == message.inputs.map(\.contents))
        #expect(response.outputs.allSatisfy { $0.shape == [2, 2] })
    }

    @Test func fp16OutputsSwitchTheResponseToRaw() throws {
        let half = Tensor(shape: [2], scalars: [Float16(1.5), Float16(-2)])
        let single = Tensor(shape: [1], scalars: [Float(3)])
        let response = InferenceCodec.encodeResponse(
            InferenceResponse(modelName: "m", modelVersion: "1", id: nil, outputs: [("h", .tensor(half)), ("s", .tensor(single))]), raw: false)
        #expect(response.outputs.allSatisfy { !$0.hasContents })
        #expect(response.rawOutputContents == [bytes([Float16(1.5), Float16(-2)]), bytes([Float(3)])])
    }

    @Test func typedFP16AndOutOfRangeValuesAreRefused() {
        var fp16 = Inference_ModelInferRequest()
        fp16.inputs = [.with { $0.name = "h"; $0.datatype = "FP16"; $0.shape = [1]; $0.contents.fp32Contents = [1] }]
        #expect { try InferenceCodec.decodeRequest(fp16) } throws: { ($0 as? ServingError)?.message.contains("raw_input_contents") == true }
        var int8 = Inference_ModelInferRequest()
        int8.inputs = [.with { $0.name = "i"; $0.datatype = "INT8"; $0.shape = [1]; $0.contents.intContents = [300] }]
        #expect { try InferenceCodec.decodeRequest(int8) } throws: { error in
            let message = (error as? ServingError)?.message ?? ""
            return message.contains("'i'") && message.contains("300") && message.contains("INT8")
        }
    }

    @Test func parametersOfEveryKind() throws {
        var message = Inference_ModelInferRequest()
        message.parameters = [
            "flag": .with { $0.boolParam = true }, "count": .with { $0.int64Param = -3 }, "big": .with { $0.uint64Param = 5 },
            "ratio": .with { $0.doubleParam = 0.5 }, "name": .with { $0.stringParam = "x" },
        ]
        let request = try InferenceCodec.decodeRequest(message)
        #expect(request.parameters == ["flag": .bool(true), "count": .int(-3), "big": .int(5), "ratio": .double(0.5), "name": .string("x")])
        #expect(request.id == nil)
        let response = InferenceCodec.encodeResponse(
            InferenceResponse(modelName: "m", modelVersion: "1", id: nil, outputs: [], parameters: request.parameters), raw: false)
        #expect(InferenceCodec.parameters(response.parameters) == request.parameters)
    }
}
