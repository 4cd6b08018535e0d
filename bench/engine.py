#!/usr/bin/env python3
"""Engine benchmark: `serval bench` and onnxruntime side by side, same models, inputs and thread count.

Each (model, batch, threads) cell runs serval and onnxruntime alternately, ROUNDS times, each in a fresh
process (so peak RSS belongs to that model and batch); the best median of each is compared.
Writes bench/RESULTS.md (engine section) and prints the table.

Usage: python bench/engine.py [--serval .build/release/serval] [--rounds 2] [--seconds 1.5] [--only NAME]
Needs: onnx, onnxruntime, scikit-learn, skl2onnx (pip), and a release build of serval.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts", "fixtures"))
sys.path.insert(0, HERE)
import models  # noqa: E402
from results import write_section  # noqa: E402

WORK = os.path.join(ROOT, ".build", "bench-engine")
CLASSIC = "## Engine: serval vs onnxruntime"
TRANSFORMER = "## Engine: transformer encoder, serval vs onnxruntime"


def build_models():
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    rng = np.random.default_rng(0)
    digits, cancer = load_digits(), load_breast_cancer()
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(digits.data, digits.target)
    boosting = GradientBoostingClassifier(n_estimators=100, random_state=0).fit(cancer.data, cancer.target)

    def sklearn(model, x):
        return to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": False}},
                       target_opset={"": 17, "ai.onnx.ml": 3})

    def rows(data, n):
        return data[rng.integers(0, len(data), n)].astype(np.float32)

    def single(name, make):
        return lambda b: {name: make(b)}

    # section, name, model, input maker(batch) -> feeds, batches
    return [
        (CLASSIC, "mlp_784_512_512_10", models.mlp_gemm([784, 512, 512, 10]),
         single("input", lambda b: rng.standard_normal((b, 784)).astype(np.float32)), [1, 64, 256]),
        (CLASSIC, "resnet18_224", models.resnet18(), single("input", lambda b: rng.standard_normal((b, 3, 224, 224)).astype(np.float32)), [1]),
        # The same ResNet after `serval quantize --calibration` (static int8 QLinearConv, calibrated on the bench input).
        (CLASSIC, "resnet18_224_int8", "quantize-static:resnet18_224",
         single("input", lambda b: rng.standard_normal((b, 3, 224, 224)).astype(np.float32)), [1]),
        (CLASSIC, "mobilenet_v2_224", models.mobilenet_v2(),
         single("input", lambda b: rng.standard_normal((b, 3, 224, 224)).astype(np.float32)), [1]),
        (CLASSIC, "random_forest_100_digits", sklearn(forest, digits.data), single("X", lambda b: rows(digits.data, b)), [1, 1000]),
        (CLASSIC, "gradient_boosting_100_breast_cancer", sklearn(boosting, cancer.data), single("X", lambda b: rows(cancer.data, b)), [1, 1000]),
        # The encoder: 6 layers, hidden 384, 12 heads, vocabulary 30522; batch 1 x sequence 128, padded rows.
        (TRANSFORMER, "bert_6x384_seq128", models.bert_encoder(), lambda b: models.bert_inputs(b, 128, 30522), [1]),
        # The same encoder after `serval quantize` (dynamic int8 weights); onnxruntime runs the same quantized file.
        (TRANSFORMER, "bert_6x384_seq128_int8", "quantize:bert_6x384_seq128", lambda b: models.bert_inputs(b, 128, 30522), [1]),
    ]


def run_json(command):
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads([line for line in output.splitlines() if line.startswith("{")][-1])


def foreign_load():
    """Fraction of the machine busy before a cell starts (other jobs make numbers noisy)."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]
    total0, idle0 = sample()
    time.sleep(0.5)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--serval", default=os.path.join(ROOT, ".build", "release", "serval"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--threads", default="1")
    parser.add_argument("--only", default=None)
    args = parser.parse_args()
    os.makedirs(WORK, exist_ok=True)
    rows = []
    entries = build_models()
    for section, name, model, make_feeds, batches in entries:
        if args.only and args.only not in name:
            continue
        path = os.path.join(WORK, f"{name}.onnx")
        if isinstance(model, str):
            mode, base = model.split(":", 1)
            source = os.path.join(WORK, base + ".onnx")
            if not os.path.exists(source):
                onnx.save(next(m for _, n, m, _, _ in entries if n == base), source)
            command = [args.serval, "quantize", source, path, "--seconds", "0"]
            if mode == "quantize-static":
                calibration = os.path.join(WORK, f"{name}_calibration")
                os.makedirs(calibration, exist_ok=True)
                for input_name, value in make_feeds(1).items():
                    np.save(os.path.join(calibration, f"{input_name}.npy"), value)
                command += ["--per-channel", "--calibration", calibration]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            onnx.save(model, path)
        for threads in [int(t) for t in args.threads.split(",")]:
            for batch in batches:
                feeds = []
                for input_name, value in make_feeds(batch).items():
                    data = os.path.join(WORK, f"{name}_b{batch}_{input_name}.npy")
                    np.save(data, value)
                    feeds.append(f"{input_name}={data}")
                serval, reference = [], []
                load = foreign_load()
                for _ in range(args.rounds):
                    serval.append(run_json([args.serval, "bench", path] + [a for f in feeds for a in ("--input", f)]
                                           + ["--threads", str(threads), "--seconds", str(args.seconds), "--json"]))
                    reference.append(run_json([sys.executable, os.path.join(HERE, "ort_bench.py"), path, str(threads),
                                               str(args.seconds)] + feeds))
                s = min(serval, key=lambda r: r["median_ms"])
                r = min(reference, key=lambda r: r["median_ms"])
                row = {"section": section, "model": name, "batch": batch, "threads": threads, "serval_ms": s["median_ms"], "ort_ms": r["median_ms"],
                       "ratio": s["median_ms"] / r["median_ms"], "serval_p90": s["p90_ms"], "ort_p90": r["p90_ms"],
                       "serval_rss": max(x["peak_rss_mb"] for x in serval), "ort_rss": max(x["peak_rss_mb"] for x in reference),
                       "load": load}
                rows.append(row)
                print(json.dumps(row), flush=True)
    write_results(rows, " ".join(["python", "bench/engine.py"] + sys.argv[1:]))


def write_results(all_rows, command):
    for heading in (CLASSIC, TRANSFORMER):
        rows = [r for r in all_rows if r["section"] == heading]
        if rows:
            write_table(heading, rows, command)


def write_table(heading, rows, command):
    import onnxruntime
    lines = [
        heading,
        "",
        f"Command: `{command}` (release build; onnxruntime {onnxruntime.__version__}, CPUExecutionProvider, sequential).",
        f"Measured {time.strftime('%Y-%m-%d')} on a shared 2-vCPU machine; each cell alternates serval and onnxruntime "
        "in fresh processes and keeps each side's best median. Ratio = serval / onnxruntime latency (< 1 is faster). "
        "Peak RSS is each process's VmHWM (onnxruntime's includes the Python interpreter). "
        "'busy' is the machine's load before the cell started.",
        "",
        "| model | batch | threads | serval median ms | onnxruntime median ms | ratio | serval p90 | ort p90 | serval peak RSS MB | ort peak RSS MB | busy |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['threads']} | {r['serval_ms']:.3f} | {r['ort_ms']:.3f} | **{r['ratio']:.2f}x** | "
                     f"{r['serval_p90']:.3f} | {r['ort_p90']:.3f} | {r['serval_rss']:.0f} | {r['ort_rss']:.0f} | {r['load'] * 100:.0f}% |")
    by_key = {(r["model"], r["threads"]): r for r in rows}
    speedups = [(m, t, by_key[(m, t)]["serval_ms"] / r["serval_ms"], by_key[(m, t)]["ort_ms"] / r["ort_ms"])
                for (name, t), r in by_key.items() if name.endswith("_int8") for m in [name[:-len("_int8")]] if (m, t) in by_key]
    if speedups:
        lines += ["", "Quantized (int8) speed-up over the same engine's float model (float median / int8 median):", ""]
        lines += [f"- {m}, {t} thread(s): serval **{s:.2f}x**, onnxruntime {o:.2f}x" for m, t, s, o in speedups]
    section = "\n".join(lines) + "\n"
    write_section(heading, section)
    print(section)


if __name__ == "__main__":
    main()
