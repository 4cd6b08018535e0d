#!/usr/bin/env python3
"""Times onnxruntime on one model and one set of inputs, the way `serval bench` does, in its own process.

Usage: ort_bench.py MODEL.onnx THREADS SECONDS NAME=FILE.npy ...
Prints one JSON object: median_ms, p90_ms, runs, peak_rss_mb (this process's VmHWM).
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    model, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    feeds = {}
    for argument in sys.argv[4:]:
        name, path = argument.split("=", 1)
        feeds[name] = np.load(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    for _ in range(3):
        session.run(None, feeds)
    samples = []
    start = time.perf_counter()
    while len(samples) < 10 or time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        session.run(None, feeds)
        samples.append((time.perf_counter() - begin) * 1000)
    samples.sort()
    print(json.dumps({"median_ms": samples[len(samples) // 2], "p90_ms": samples[min(len(samples) - 1, len(samples) * 9 // 10)],
                      "runs": len(samples), "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
