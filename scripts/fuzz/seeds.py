"""Writes the committed seed corpus of each fuzz target (Fuzz/corpus/TARGET/): small valid inputs that the
fuzzer mutates from. Every seed must decode (FuzzRegressionTests checks it). Run from the repository root:

    .venv/bin/python scripts/fuzz/seeds.py
"""
import io
import json
import os
import shutil
import struct

import numpy as np
from tritonclient.grpc import service_pb2

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
corpus = os.path.join(root, "Fuzz", "corpus")


def put(target, name, data):
    folder = os.path.join(corpus, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


shutil.rmtree(corpus, ignore_errors=True)

# KServe v2 JSON.
put("kserve-json", "iris.json", json.dumps({"id": "r1", "inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32",
    "data": [5.1, 3.5, 1.4, 0.2, 6.2, 2.9, 4.3, 1.3]}], "outputs": [{"name": "label"}]}))
put("kserve-json", "types.json", json.dumps({"inputs": [
    {"name": "a", "shape": [2], "datatype": "INT64", "data": [1, -2]},
    {"name": "b", "shape": [1, 2], "datatype": "BOOL", "data": [[True, False]]},
    {"name": "c", "shape": [2], "datatype": "BYTES", "data": ["x", "yz"]},
    {"name": "d", "shape": [1], "datatype": "FP64", "data": [1e-300]},
    {"name": "e", "shape": [3], "datatype": "UINT8", "data": [0, 1, 255]}],
    "parameters": {"binary_data_output": True, "priority": 1}}))

# The binary tensor extension: 2 bytes of header length, the JSON header, then the raw tensor bytes.
def binary(header, payload):
    text = json.dumps(header).encode()
    return struct.pack("<H", len(text)) + text + payload

put("binary-tensor", "fp32.bin", binary({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32",
    "parameters": {"binary_data_size": 16}}]}, np.array([5.1, 3.5, 1.4, 0.2], dtype="<f4").tobytes()))
put("binary-tensor", "bytes.bin", binary({"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES",
    "parameters": {"binary_data_size": 11}}]}, struct.pack("<I", 2) + b"hi" + struct.pack("<I", 1) + b"x"))

# TF Serving REST: row ("instances") and columnar ("inputs") forms.
put("tfserving", "instances.json", json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]}))
put("tfserving", "named.json", json.dumps({"signature_name": "serving_default", "instances": [{"X": [5.1, 3.5, 1.4, 0.2]}]}))
put("tfserving", "columnar.json", json.dumps({"inputs": {"X": [[5.1, 3.5, 1.4, 0.2]]}}))

# gRPC ModelInferRequest: typed contents and raw_input_contents.
typed = service_pb2.ModelInferRequest(model_name="iris", id="g1")
tensor = typed.inputs.add(name="X", datatype="FP32", shape=[1, 4])
tensor.contents.fp32_contents.extend([5.1, 3.5, 1.4, 0.2])
typed.outputs.add(name="label")
put("grpc-infer", "typed.pb", typed.SerializeToString())
raw = service_pb2.ModelInferRequest(model_name="iris")
raw.inputs.add(name="X", datatype="FP32", shape=[2, 4])
raw.inputs.add(name="s", datatype="BYTES", shape=[1])
raw.raw_input_contents.append(np.arange(8, dtype="<f4").tobytes())
raw.raw_input_contents.append(struct.pack("<I", 3) + b"abc")
put("grpc-infer", "raw.pb", raw.SerializeToString())

# .npy files.
def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()

put("npy", "fp32.npy", npy(np.arange(8, dtype=np.float32).reshape(2, 4)))
put("npy", "int64.npy", npy(np.array([1, -2, 3], dtype=np.int64)))
put("npy", "bool.npy", npy(np.array([[True, False]])))
put("npy", "scalar.npy", npy(np.float64(2.5)))

# ONNX: the bundled iris model (518 bytes).
with open(os.path.join(root, "examples", "models", "iris", "1", "model.onnx"), "rb") as f:
    put("onnx", "iris.onnx", f.read())

# config.yaml: the bundled one and the other fields.
with open(os.path.join(root, "examples", "models", "iris", "config.yaml")) as f:
    put("config-yaml", "iris.yaml", f.read())
put("config-yaml", "fields.yaml", """max_batch_size: 8
dynamic_batching: {max_queue_delay_us: 500, preferred_batch_sizes: [4, 8], max_queue_size: 64, queue_timeout_us: 100000}
inputs: [{name: X, datatype: FP32, shape: [-1, 4]}]
outputs: [{name: label, datatype: INT64, shape: [-1]}]
instance_count: 1
threads_per_instance: 2
version_policy: {latest: 2}
version_labels: {stable: 1}
warmup: true
warmup_batch_sizes: [1, 8]
idle_unload_secs: 300
allow_non_finite: true
""")
print("seeds written under", corpus)
