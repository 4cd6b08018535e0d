"""`serval batch` end to end against onnxruntime.

    python scripts/e2e/batch.py PATH_TO_SERVAL [--rows 1000000] [--mlp-rows 1000000]

1. ROWS generated iris rows: exit 0, every label and probability equal to onnxruntime's
2. MLP-ROWS generated rows of the 64-feature MLP: outputs equal to onnxruntime's
3. peak RSS does not grow with the file: ROWS/10 and ROWS rows
4. a file with 10 bad rows: exit 2, exactly those line numbers in --errors, every other row scored
5. --shard 1/3, 2/3, 3/3 concatenated equal the unsharded output byte for byte
6. kill -9 in the middle of a run, then --resume: byte-identical to the uninterrupted output
7. --format jsonl and --format npy (iris and the MLP): outputs equal to onnxruntime's, read back with json and numpy
Prints one "ok"/"FAIL" line per check and exits non-zero on any failure.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("serval")
parser.add_argument("--rows", type=int, default=1_000_000)
parser.add_argument("--mlp-rows", type=int, default=1_000_000)
args = parser.parse_args()
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IRIS = os.path.join(root, "examples/models/iris/1/model.onnx")
MLP = os.path.join(root, "examples/models/mlp/1/model.onnx")
check = Checks()
work = tempfile.mkdtemp(prefix="serval-e2e-batch-")


def generate(path, rows, width, seed, names=None):
    generator = np.random.default_rng(seed)
    values = generator.uniform(0.1, 8, size=(rows, width)).astype(np.float32).round(3)
    header = ",".join(names or [f"f{j}" for j in range(width)])
    np.savetxt(path, values, fmt="%.3f", delimiter=",", header=header, comments="")
    return values


def batch(*arguments):
    """Runs serval batch; returns (exit code, stderr, its peak RSS in kB).

    The peak is the kernel's VmHWM for the process after exec, read until it exits (wait4's ru_maxrss would also
    count the pages of this Python process, which the child holds between fork and exec)."""
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen([args.serval, "batch", *arguments], stdout=subprocess.DEVNULL, stderr=stderr)
        peak = 0
        while True:
            try:
                with open(f"/proc/{process.pid}/status") as proc_status:
                    for line in proc_status:
                        if line.startswith("VmHWM:"):
                            peak = max(peak, int(line.split()[1]))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
            pid, status, _ = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.01)  # sampling the peak, not synchronising: VmHWM only grows, so the last reading is the peak
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        return process.returncode, stderr.read().decode(errors="replace"), peak


def read_output(path):
    with open(path) as f:
        header = f.readline().strip().split(",")
    return header, np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)


# 1. iris against onnxruntime
iris_input = os.path.join(work, "iris.csv")
iris_values = generate(iris_input, args.rows, 4, 1, ["sepal_length", "sepal_width", "petal_length", "petal_width"])
iris_output = os.path.join(work, "iris.out.csv")
code, stderr, rss_large = batch("--model-file", IRIS, "--input", iris_input, "--output", iris_output)
check(f"iris: {args.rows} rows exit 0", code == 0, stderr[-2000:])
session = onnxruntime.InferenceSession(IRIS, providers=["CPUExecutionProvider"])
labels, probabilities = session.run(None, {"X": iris_values})
header, scored = read_output(iris_output)
check("iris: header is the label and one probability column per class",
      header == ["label", "probability_0", "probability_1", "probability_2"], header)
check("iris: every row is scored, in input order", scored.shape == (args.rows, 4), scored.shape)
check("iris: labels equal onnxruntime's", np.array_equal(scored[:, 0].astype(np.int64), labels))
check("iris: probabilities equal onnxruntime's (within 1e-6)", np.allclose(scored[:, 1:], probabilities, atol=1e-6),
      np.abs(scored[:, 1:] - probabilities).max())

# 2. the MLP against onnxruntime
mlp_input = os.path.join(work, "mlp.csv")
mlp_values = generate(mlp_input, args.mlp_rows, 64, 2)
mlp_output = os.path.join(work, "mlp.out.csv")
code, stderr, _ = batch("--model-file", MLP, "--input", mlp_input, "--output", mlp_output, "--threads", "2")
check(f"mlp: {args.mlp_rows} rows exit 0", code == 0, stderr[-2000:])
mlp = onnxruntime.InferenceSession(MLP, providers=["CPUExecutionProvider"])
expected = mlp.run(None, {mlp.get_inputs()[0].name: mlp_values})[0]
_, scored = read_output(mlp_output)
check("mlp: outputs equal onnxruntime's (within 1e-5 relative)", scored.shape == expected.shape and np.allclose(scored, expected, rtol=1e-5, atol=1e-6),
      (scored.shape, expected.shape))

# 3. memory does not grow with the file
small_input = os.path.join(work, "small.csv")
with open(iris_input) as source, open(small_input, "w") as target:
    for index, line in enumerate(source):
        if index > args.rows // 10:
            break
        target.write(line)
code, stderr, rss_small = batch("--model-file", IRIS, "--input", small_input, "--output", os.path.join(work, "small.out.csv"))
check(f"peak RSS with {args.rows // 10} rows {rss_small} kB and with {args.rows} rows {rss_large} kB: within 20% + 8 MB",
      code == 0 and rss_large <= rss_small * 1.2 + 8192, stderr[-500:])

# 4. ten bad rows
bad_input = os.path.join(work, "bad.csv")
bad_lines = []
with open(bad_input, "w") as f:
    f.write("a,b,c,d\n")
    line = 1
    for index in range(1000):
        line += 1
        if index % 97 == 5 and len(bad_lines) < 10:
            f.write(["1,2,three,4", "1,2,3", "1,2,3,4,5", "x,1,1,1", "1,,1,1"][len(bad_lines) % 5] + "\n")
            bad_lines.append(line)
        else:
            f.write(f"{5 + index % 3}.1,3.5,1.4,0.2\n")
errors = os.path.join(work, "bad.errors.jsonl")
code, stderr, _ = batch("--model-file", IRIS, "--input", bad_input, "--output", os.path.join(work, "bad.out.csv"), "--errors", errors)
reported = [json.loads(line)["line"] for line in open(errors)]
check("10 bad rows: exit 2", code == 2, (code, stderr[-500:]))
check("10 bad rows: exactly those line numbers reported", reported == bad_lines, (reported, bad_lines))
check("10 bad rows: every other row scored", sum(1 for _ in open(os.path.join(work, "bad.out.csv"))) == 1 + 1000 - 10)

# 5. shards
joined = b""
for index in (1, 2, 3):
    part = os.path.join(work, f"part{index}.csv")
    code, stderr, _ = batch("--model-file", IRIS, "--input", iris_input, "--output", part, "--shard", f"{index}/3")
    check(f"shard {index}/3 exit 0", code == 0, stderr[-500:])
    joined += open(part, "rb").read()
check("3 shards concatenated equal the unsharded output", joined == open(iris_output, "rb").read())

# 6. kill -9 and --resume (the reference run uses the same batch size)
reference = os.path.join(work, "reference512.csv")
batch("--model-file", IRIS, "--input", iris_input, "--output", reference, "--batch-size", "512")
resumed = os.path.join(work, "resumed.csv")
checkpoint = resumed + ".serval-checkpoint"
process = subprocess.Popen([args.serval, "batch", "--model-file", IRIS, "--input", iris_input, "--output", resumed, "--batch-size", "512"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 300
while time.monotonic() < deadline and process.poll() is None:
    if os.path.exists(checkpoint) and json.load(open(checkpoint)).get("records", 0) > 0:  # checkpoints come about once a second
        break
    time.sleep(0.05)
killed = process.poll() is None
process.kill()
process.wait()
check("kill -9 in the middle of the run", killed)
code, stderr, _ = batch("--model-file", IRIS, "--input", iris_input, "--output", resumed, "--batch-size", "512", "--resume")
check("--resume exits 0", code == 0, stderr[-500:])
check("the resumed output is byte-identical to the uninterrupted one", open(resumed, "rb").read() == open(reference, "rb").read())
check("a finished run leaves no checkpoint", not os.path.exists(checkpoint))

# 7. JSON Lines and .npy folders
def npy_name(name):
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".npy"


count = min(args.rows, 20000)
jsonl_input = os.path.join(work, "iris.jsonl")
with open(jsonl_input, "w") as f:
    for index, row in enumerate(iris_values[:count]):
        f.write(json.dumps({"id": index, "X": [float(v) for v in row]}) + "\n")
jsonl_output = os.path.join(work, "iris.out.jsonl")
code, stderr, _ = batch("--model-file", IRIS, "--input", jsonl_input, "--output", jsonl_output)
check("jsonl: exit 0 (format taken from the .jsonl name)", code == 0, stderr[-500:])
objects = [json.loads(line) for line in open(jsonl_output)]
check("jsonl: one object per row, in order, with its row index", [o["row"] for o in objects] == list(range(count)))
check("jsonl: labels equal onnxruntime's", np.array_equal(np.array([o["label"] for o in objects]), labels[:count]))
check("jsonl: probabilities equal onnxruntime's (within 1e-6)",
      np.allclose(np.array([o["probabilities"] for o in objects]), probabilities[:count], atol=1e-6))

for name, model, values, reference_session in (("iris", IRIS, iris_values[:count], session), ("mlp", MLP, mlp_values[:count], mlp)):
    folder = os.path.join(work, f"{name}-npy")
    os.makedirs(folder)
    np.save(os.path.join(folder, npy_name(reference_session.get_inputs()[0].name)), values)
    out = os.path.join(work, f"{name}-npy-out")
    code, stderr, _ = batch("--model-file", model, "--input", folder, "--output", out, "--format", "npy")
    check(f"npy {name}: exit 0", code == 0, stderr[-500:])
    expected = reference_session.run(None, {reference_session.get_inputs()[0].name: values})
    for output, want in zip(reference_session.get_outputs(), expected):
        path = os.path.join(out, npy_name(output.name))
        got = np.load(path) if os.path.exists(path) else None
        same = got is not None and got.shape == want.shape and got.dtype == want.dtype and (
            np.array_equal(got, want) if want.dtype.kind in "iub" else np.allclose(got, want, rtol=1e-5, atol=1e-6))
        check(f"npy {name}: {output.name}.npy loads in numpy and equals onnxruntime's", same,
              None if got is None else (got.shape, got.dtype, want.shape, want.dtype))

shutil.rmtree(work, ignore_errors=True)
check.finish()
