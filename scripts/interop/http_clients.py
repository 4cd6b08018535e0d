#!/usr/bin/env python3
"""Interop check: the peers' real clients against a running `serval serve` on the example repository.

- tritonclient.http: server live/ready/metadata, model metadata and config, JSON and binary-tensor inference
  (all outputs and a requested subset), statistics, repository index.
- TF Serving REST payloads (requests): :predict in row and columnar form, model status, metadata.
Expected values come from onnxruntime on the same model files. Exits non-zero on any mismatch.

Usage: http_clients.py HOST:PORT EXAMPLES_DIR
"""
import json
import sys

import numpy as np
import onnxruntime as ort
import requests
import tritonclient.http as httpclient

failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


def main():
    url, examples = sys.argv[1], sys.argv[2]
    iris = ort.InferenceSession(f"{examples}/iris/1/model.onnx", providers=["CPUExecutionProvider"])
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], np.float32)
    expected_label, expected_probabilities = iris.run(None, {"X": rows})

    client = httpclient.InferenceServerClient(url=url)
    check(client.is_server_live(), "tritonclient: server live")
    check(client.is_server_ready(), "tritonclient: server ready")
    check(client.get_server_metadata()["name"] == "serval", "tritonclient: server metadata")
    check(client.is_model_ready("iris"), "tritonclient: model ready")
    metadata = client.get_model_metadata("iris")
    check(metadata["inputs"][0] == {"name": "X", "datatype": "FP32", "shape": [-1, 4]}, "tritonclient: model metadata inputs")
    check("config" in client.get_model_config("iris"), "tritonclient: model config")

    tensor = httpclient.InferInput("X", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=False)
    result = client.infer("iris", [tensor], request_id="interop-1")
    check(np.array_equal(result.as_numpy("label"), expected_label), "tritonclient: infer labels match onnxruntime")
    check(np.allclose(result.as_numpy("probabilities"), expected_probabilities, rtol=1e-4, atol=1e-6),
          "tritonclient: infer probabilities match onnxruntime")
    check(result.get_response()["id"] == "interop-1", "tritonclient: request id echoed")
    binary = httpclient.InferInput("X", list(rows.shape), "FP32")
    binary.set_data_from_numpy(rows, binary_data=True)
    outputs = [httpclient.InferRequestedOutput("label", binary_data=True), httpclient.InferRequestedOutput("probabilities", binary_data=True)]
    binary_result = client.infer("iris", [binary], outputs=outputs)
    check(np.array_equal(binary_result.as_numpy("label"), expected_label)
          and np.array_equal(binary_result.as_numpy("probabilities"), result.as_numpy("probabilities")),
          "tritonclient: binary tensor infer matches the JSON answer bit for bit")
    default_result = client.infer("iris", [binary])  # tritonclient's defaults: binary input, binary_data_output
    check(np.array_equal(default_result.as_numpy("label"), expected_label), "tritonclient: infer with the client's defaults")
    stats = client.get_inference_statistics("iris")["model_stats"][0]
    check(stats["inference_count"] >= 9 and stats["execution_count"] >= 3 and stats["inference_stats"]["success"]["count"] >= 3,
          "tritonclient: statistics count rows and executions")
    only = client.infer("iris", [tensor], outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=False)])
    check(only.as_numpy("label") is None and only.as_numpy("probabilities").shape == (3, 3), "tritonclient: requested output subset")
    try:
        bad = httpclient.InferInput("X", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), np.float32), binary_data=False)
        client.infer("iris", [bad])
        check(False, "tritonclient: wrong shape is rejected")
    except Exception as error:  # tritonclient raises InferenceServerException with the server's message
        check("input 'X' has shape [1, 3], expected [-1, 4]" in str(error), f"tritonclient: wrong shape is rejected ({error})")
    index = client.get_model_repository_index()
    check({entry["name"] for entry in index} == {"iris", "mlp"} and all(e["state"] == "READY" for e in index),
          "tritonclient: repository index")

    base = f"http://{url}"
    row = requests.post(f"{base}/v1/models/iris:predict", data=json.dumps({"instances": rows.tolist()}))
    predictions = row.json().get("predictions", [])
    check(row.status_code == 200 and [p["label"] for p in predictions] == expected_label.tolist(), "TF Serving: :predict row format")
    column = requests.post(f"{base}/v1/models/iris/versions/1:predict", data=json.dumps({"inputs": {"X": rows.tolist()}}))
    outputs = column.json().get("outputs", {})
    check(column.status_code == 200 and np.allclose(outputs.get("probabilities"), expected_probabilities, rtol=1e-4, atol=1e-6),
          "TF Serving: :predict columnar format")
    status = requests.get(f"{base}/v1/models/iris").json()
    check(status["model_version_status"][0]["state"] == "AVAILABLE", "TF Serving: model status")
    check(requests.get(f"{base}/v1/models/iris/metadata").status_code == 200, "TF Serving: metadata")
    missing = requests.post(f"{base}/v1/models/absent:predict", data="{}")
    check(missing.status_code == 404 and "error" in missing.json(), "TF Serving: unknown model is 404 with error")

    print(f"{len(failures)} interop check(s) failed" if failures else "all interop checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
