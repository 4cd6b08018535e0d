#!/usr/bin/env python3
"""`serval batch` against the script a user would write: pandas.read_csv in chunks plus onnxruntime in batches.

Same 1,000,000-row CSV (iris features, generated), same model (examples/models/iris), same thread count, end to end:
reading the CSV, inference, and writing the scored CSV (label and per-class probabilities). Each tool runs
`--rounds` times, interleaved; the best wall time is kept. The ratio is the peer's time over serval's (above 1:
serval is faster).

Usage: python bench/batch.py [--serval .build/release/serval] [--rows 1000000] [--threads 1] [--rounds 3]
Writes the "Batch" section of bench/RESULTS.md. Needs pandas and onnxruntime (pip install pandas onnxruntime).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results import write_section  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "examples/models/iris/1/model.onnx")

PEER = r'''
import sys
import numpy as np
import onnxruntime as ort
import pandas as pd
source, target, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
session = ort.InferenceSession(sys.argv[4], options, providers=["CPUExecutionProvider"])
first = True
with open(target, "w") as out:
    for chunk in pd.read_csv(source, chunksize=1024):
        x = chunk.to_numpy(dtype=np.float32)
        labels, probabilities = session.run(None, {"X": x})
        frame = pd.DataFrame(probabilities, columns=[f"probability_{j}" for j in range(probabilities.shape[1])])
        frame.insert(0, "label", labels)
        frame.to_csv(out, header=first, index=False)
        first = False
'''


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--serval", default=".build/release/serval")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="serval-bench-batch-")
    try:
        source = os.path.join(work, "iris.csv")
        values = np.random.default_rng(7).uniform(0.1, 8, size=(args.rows, 4)).astype(np.float32).round(3)
        np.savetxt(source, values, fmt="%.3f", delimiter=",", header="sepal_length,sepal_width,petal_length,petal_width", comments="")
        peer_script = os.path.join(work, "peer.py")
        with open(peer_script, "w") as f:
            f.write(PEER)
        runs = {
            "serval batch": [args.serval, "batch", "--model-file", MODEL, "--input", source, "--output", os.path.join(work, "serval.csv"),
                             "--batch-size", "1024", "--threads", str(args.threads)],
            "pandas + onnxruntime": [sys.executable, peer_script, source, os.path.join(work, "peer.csv"), str(args.threads), MODEL],
        }
        best = {}
        for _ in range(args.rounds):
            for name, command in runs.items():
                started = time.monotonic()
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                seconds = time.monotonic() - started
                print(f"{name:22} {seconds:6.2f} s  {args.rows / seconds:9.0f} rows/s", flush=True)
                best[name] = min(best.get(name, seconds), seconds)
        # Same answers: labels equal, probabilities within float printing precision.
        ours = np.loadtxt(os.path.join(work, "serval.csv"), delimiter=",", skiprows=1)
        theirs = np.loadtxt(os.path.join(work, "peer.csv"), delimiter=",", skiprows=1)
        agree = ours.shape == theirs.shape and np.array_equal(ours[:, 0], theirs[:, 0]) and np.allclose(ours[:, 1:], theirs[:, 1:], atol=1e-6)
        ratio = best["pandas + onnxruntime"] / best["serval batch"]
        lines = [
            "## Batch: serval batch against pandas + onnxruntime",
            "",
            f"`python bench/batch.py --rows {args.rows} --threads {args.threads} --rounds {args.rounds}` (release build; iris, "
            f"{args.rows:,} generated rows; both read the CSV, score in batches of 1024 on {args.threads} thread(s) and write label "
            "and probabilities; best of the rounds, run interleaved). The outputs agree: " + ("yes" if agree else "NO") + ".",
            "",
            "| tool | wall s (best) | rows/s |",
            "|---|---|---|",
        ]
        for name, seconds in best.items():
            lines.append(f"| {name} | {seconds:.2f} | {args.rows / seconds:.0f} |")
        lines += ["", f"serval batch is {ratio:.2f}x the speed of pandas + onnxruntime (target: at least 1.5x)."]
        write_section("## Batch", "\n".join(lines) + "\n")
        print(f"ratio {ratio:.2f}, outputs agree: {agree}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
