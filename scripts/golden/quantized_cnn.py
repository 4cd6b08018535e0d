#!/usr/bin/env python3
"""Golden check of static Conv quantization: the CNN fixtures (LeNet, ResNet-18 and MobileNetV2 topologies at small
sizes) are quantized by `serval quantize --calibration` (per-channel int8 weights, uint8 activations, QLinearConv),
then run by Serval and by onnxruntime. Both int8 runs must stay within 1% cosine distance of onnxruntime's float
output, and agree with each other within 1e-3 cosine distance (requantization rounds in different precisions).

Usage: quantized_cnn.py PATH_TO_SERVAL WORK_DIR
"""
import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort

from common import int8_verdict  # the script's own folder is on sys.path

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures")


def main():
    serval, work = sys.argv[1], sys.argv[2]
    failures = 0
    for name in ["lenet", "resnet18_small", "mobilenet_v2_small"]:
        folder = os.path.join(FIXTURES, name)
        with open(os.path.join(folder, "case.json")) as f:
            case = json.load(f)
        feeds = {key: np.load(os.path.join(folder, file)) for key, file in case["inputs"].items()}
        calibration = os.path.join(work, f"{name}_calibration")
        os.makedirs(calibration, exist_ok=True)
        for key, value in feeds.items():
            np.save(os.path.join(calibration, f"{key}.npy"), value)
        quantized = os.path.join(work, f"{name}_int8.onnx")
        subprocess.run([serval, "quantize", os.path.join(folder, "model.onnx"), quantized, "--per-channel",
                        "--calibration", calibration, "--seconds", "0"], check=True, stdout=subprocess.DEVNULL)
        output = list(case["outputs"])[0]
        reference = np.load(os.path.join(folder, case["outputs"][output]))
        ort_int8 = ort.InferenceSession(quantized, providers=["CPUExecutionProvider"]).run([output], feeds)[0]
        out = os.path.join(work, f"{name}_int8_out")
        arguments = [a for key in feeds for a in ("--input", f"{key}={os.path.join(calibration, key + '.npy')}")]
        subprocess.run([serval, "run", quantized, *arguments, "--output-dir", out], check=True, stdout=subprocess.DEVNULL)
        actual = np.load(os.path.join(out, f"{output}.npy"))
        failures += 0 if int8_verdict(f"{name} int8 (static Conv)", actual, reference, ort_int8) else 1
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
