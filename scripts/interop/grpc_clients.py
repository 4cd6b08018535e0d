#!/usr/bin/env python3
"""Interop check: Triton's gRPC client (tritonclient.grpc) against a running `serval serve`.

Server live/ready/metadata, model metadata and config, inference with raw contents (what tritonclient sends)
compared bit for bit with the REST binary-tensor answer and with onnxruntime, requested outputs, statistics,
repository index/unload/load (the server runs with --model-control-mode explicit), stream inference with an
in-band error, and the status codes of bad requests. Exits non-zero on any mismatch.

Usage: grpc_clients.py GRPC_HOST:PORT HTTP_HOST:PORT EXAMPLES_DIR
"""
import queue
import sys

import grpc
import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


def status_of(call):
    """The gRPC status name and message a call fails with (None if it succeeds)."""
    try:
        call()
    except InferenceServerException as error:
        return error.status(), error.message()
    return None, None


def mlp_input(rows):
    x = ((np.arange(rows * 64, dtype=np.float32) % 17) / 17 - 0.5).reshape(rows, 64)
    tensor = grpcclient.InferInput("input", [rows, 64], "FP32")
    tensor.set_data_from_numpy(x)
    return x, tensor


def main():
    grpc_url, http_url, examples = sys.argv[1], sys.argv[2], sys.argv[3]
    client = grpcclient.InferenceServerClient(url=grpc_url)
    check(client.is_server_live(), "tritonclient.grpc: server live")
    check(client.is_server_ready(), "tritonclient.grpc: server ready")
    check(client.get_server_metadata().name == "serval", "tritonclient.grpc: server metadata")
    check(client.is_model_ready("mlp"), "tritonclient.grpc: model ready")

    metadata = client.get_model_metadata("mlp", as_json=True)
    check(metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "64"]}], "tritonclient.grpc: model metadata inputs")
    check(metadata["outputs"][0]["name"] == "probabilities", "tritonclient.grpc: model metadata outputs")
    config = client.get_model_config("mlp", as_json=True)["config"]
    check(config["max_batch_size"] == 64 and config["input"][0]["dims"] == ["64"] and config["input"][0]["data_type"] == "TYPE_FP32",
          "tritonclient.grpc: model config (max_batch_size 64, dims without the batch dimension)")

    # Inference: raw contents, compared with REST's binary answer and with onnxruntime.
    x, tensor = mlp_input(3)
    result = client.infer("mlp", [tensor], request_id="grpc-1")
    probabilities = result.as_numpy("probabilities")
    check(result.get_response().id == "grpc-1", "tritonclient.grpc: request id echoed")
    rest = httpclient.InferenceServerClient(url=http_url)
    rest_input = httpclient.InferInput("input", [3, 64], "FP32")
    rest_input.set_data_from_numpy(x, binary_data=True)
    rest_answer = rest.infer("mlp", [rest_input], outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=True)])
    check(probabilities.shape == (3, 10) and np.array_equal(probabilities.view(np.uint32), rest_answer.as_numpy("probabilities").view(np.uint32)),
          "tritonclient.grpc: raw output bit-identical to the REST binary answer")
    reference = ort.InferenceSession(f"{examples}/mlp/1/model.onnx", providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    check(np.allclose(probabilities, reference, rtol=1e-4, atol=1e-6), "tritonclient.grpc: output matches onnxruntime")

    iris = ort.InferenceSession(f"{examples}/iris/1/model.onnx", providers=["CPUExecutionProvider"])
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32)
    expected_label, expected_probabilities = iris.run(None, {"X": rows})
    iris_input = grpcclient.InferInput("X", [2, 4], "FP32")
    iris_input.set_data_from_numpy(rows)
    both = client.infer("iris", [iris_input])
    check(np.array_equal(both.as_numpy("label"), expected_label), "tritonclient.grpc: iris labels (INT64) match onnxruntime")
    only = client.infer("iris", [iris_input], outputs=[grpcclient.InferRequestedOutput("probabilities")])
    check([o.name for o in only.get_response().outputs] == ["probabilities"]
          and np.allclose(only.as_numpy("probabilities"), expected_probabilities, rtol=1e-4), "tritonclient.grpc: requested output subset")

    # Errors carry the protocol's status codes and name what is wrong.
    code, message = status_of(lambda: client.infer("nope", [tensor]))
    check(code == "StatusCode.NOT_FOUND" and "nope" in message, f"tritonclient.grpc: unknown model is NOT_FOUND ({code})")
    bad = grpcclient.InferInput("input", [1, 63], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 63), np.float32))
    code, message = status_of(lambda: client.infer("mlp", [bad]))
    check(code == "StatusCode.INVALID_ARGUMENT" and "'input'" in message, f"tritonclient.grpc: wrong shape is INVALID_ARGUMENT naming the input ({message})")

    # Statistics count the rows served.
    stats = client.get_inference_statistics("mlp", as_json=True)["model_stats"][0]
    check(int(stats["inference_count"]) >= 3 and int(stats["inference_stats"]["success"]["count"]) >= 1, "tritonclient.grpc: statistics")

    # Streaming: answers arrive per request id; a bad request answers with an error and the stream goes on.
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for k in range(3):
        _, streamed = mlp_input(1)
        client.async_stream_infer("mlp", [streamed], request_id=f"s{k}")
    client.async_stream_infer("mlp", [bad], request_id="s-bad")
    received = [answers.get(timeout=30) for _ in range(4)]
    client.stop_stream()
    ok = {r.get_response().id: r.as_numpy("probabilities") for r, e in received if e is None}
    errors = [e for r, e in received if e is not None]
    single = client.infer("mlp", [mlp_input(1)[1]]).as_numpy("probabilities")
    check(sorted(ok) == ["s0", "s1", "s2"] and all(np.array_equal(v, single) for v in ok.values()), "tritonclient.grpc: stream infer answers by id")
    check(len(errors) == 1 and "'input'" in str(errors[0]), "tritonclient.grpc: stream reports a bad request in band")

    # Repository: index, unload, load (explicit model control).
    index = client.get_model_repository_index(as_json=True)["models"]
    check(sorted((m["name"], m.get("state")) for m in index) == [("iris", "READY"), ("mlp", "READY")], "tritonclient.grpc: repository index")
    client.unload_model("mlp")
    code, _ = status_of(lambda: client.get_model_metadata("mlp"))
    check(code == "StatusCode.NOT_FOUND", "tritonclient.grpc: unloaded model is gone")
    client.load_model("mlp")
    check(client.is_model_ready("mlp") and np.array_equal(client.infer("mlp", [tensor]).as_numpy("probabilities"), probabilities),
          "tritonclient.grpc: reloaded model serves the same answer")

    # Standard gRPC health service, as Kubernetes probes call it.
    channel = grpc.insecure_channel(grpc_url)
    check_health = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=lambda _: b"", response_deserializer=lambda b: b)
    check(check_health(None) == b"\x08\x01", "grpc.health.v1: Check answers SERVING")

    print(f"{len(failures)} interop failure(s)" if failures else "gRPC interop: all checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
