"""The soak test behind scripts/soak.sh: does a long-running server leak memory or descriptors?

1. warm-up: a few load/unload cycles and requests of every kind, then the baselines: RSS and open descriptors
2. --cycles load/unload cycles of the mlp model through the repository API (explicit mode), one inference
   between each load and unload
3. --seconds of mixed load from 4 threads: KServe REST, TF Serving REST, tritonclient gRPC, and bad requests
   (malformed JSON, wrong shapes, unknown models, oversized declarations) on both protocols
4. idle: descriptors must come back to the baseline (bounded wait for the clients' connections to close)

RSS and descriptors are sampled every second from /proc; the run passes when RSS at the end is less than 5% above
the post-warm-up baseline and the descriptors are back at it. The samples go to soak.csv in the work folder.
"""
import argparse
import json
import os
import sys
import tempfile
import threading
import time

import numpy as np
import requests
import tritonclient.grpc as grpcclient

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(here), "e2e"))
from checks import Checks, example_repository, free_port, start_serval, wait_for, wait_ready  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("serval")
parser.add_argument("--cycles", type=int, default=1000)
parser.add_argument("--seconds", type=float, default=600)
parser.add_argument("--max-growth", type=float, default=0.05)
args = parser.parse_args()
check = Checks()
work = tempfile.mkdtemp(prefix="serval-soak-")
grpc_port = free_port()
process, http_port, log_path = start_serval(args.serval, work, example_repository(work), "--model-control-mode", "explicit", "--load-model", "iris",
                                            grpc_port=grpc_port)
url = f"http://127.0.0.1:{http_port}"
IRIS = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
samples = []
stop_sampling = threading.Event()


def rss_kib():
    with open(f"/proc/{process.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def descriptors():
    return len(os.listdir(f"/proc/{process.pid}/fd"))


def sampler():
    start = time.monotonic()
    while not stop_sampling.is_set() and process.poll() is None:
        samples.append((round(time.monotonic() - start, 1), rss_kib(), descriptors()))
        stop_sampling.wait(1.0)


def mlp_input_name():
    metadata = requests.get(url + "/v2/models/mlp", timeout=10).json()
    first = metadata["inputs"][0]
    features = [d for d in first["shape"] if d > 0][-1] if first["shape"] else 1
    return {"inputs": [{"name": first["name"], "shape": [1, features], "datatype": first["datatype"], "data": [0.1] * features}]}


def cycle(session, body):
    loaded = session.post(url + "/v2/repository/models/mlp/load", timeout=60).status_code
    inferred = session.post(url + "/v2/models/mlp/infer", json=body, timeout=30).status_code
    unloaded = session.post(url + "/v2/repository/models/mlp/unload", timeout=60).status_code
    return loaded == 200 and inferred == 200 and unloaded == 200


BAD_REST = [
    ("/v2/models/iris/infer", b'{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2'),
    ("/v2/models/iris/infer", json.dumps({"inputs": [{"name": "X", "shape": [1, 5], "datatype": "FP32", "data": [1] * 5}]}).encode()),
    ("/v2/models/iris/infer", json.dumps({"inputs": [{"name": "X", "shape": [4294967296, 4294967296], "datatype": "FP32", "data": [1]}]}).encode()),
    ("/v2/models/nope/infer", json.dumps(IRIS).encode()),
    ("/v1/models/iris:predict", b'{"instances": [[1, 2, 3]]}'),
    ("/v2/models/iris/infer", b"[" * 1000),
]


def mixed(kind, deadline, counts, errors):
    session = requests.Session()
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}") if kind in ("grpc", "bad") else None
    good = grpcclient.InferInput("X", [1, 4], "FP32")
    good.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
    bad = grpcclient.InferInput("X", [1, 5], "FP32")
    bad.set_data_from_numpy(np.ones((1, 5), dtype=np.float32))
    index = 0
    while time.monotonic() < deadline and process.poll() is None:
        index += 1
        try:
            if kind == "rest":
                ok = session.post(url + "/v2/models/iris/infer", json=IRIS, timeout=30).status_code == 200
            elif kind == "tf":
                ok = session.post(url + "/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=30).status_code == 200
            elif kind == "grpc":
                ok = client.infer("iris", [good]).as_numpy("label") is not None
            else:  # bad requests, REST and gRPC in turn: each must be a clean 4xx / error status
                path, body = BAD_REST[index % len(BAD_REST)]
                status = session.post(url + path, data=body, headers={"Content-Type": "application/json"}, timeout=30).status_code
                ok = 400 <= status < 500
                try:
                    client.infer("iris", [bad])
                    ok = False
                except grpcclient.InferenceServerException as error:
                    ok = ok and "INVALID_ARGUMENT" in str(error.status())
            counts[kind] = counts.get(kind, 0) + 1
            if not ok:
                errors.append(kind)
        except Exception as error:  # noqa: BLE001
            errors.append(f"{kind}: {error}")
    session.close()
    if client:
        client.close()


sampling = threading.Thread(target=sampler, daemon=True)
try:
    wait_ready(url, process, log_path, requests.get)
    sampling.start()
    session = requests.Session()
    requests.post(url + "/v2/repository/models/mlp/load", timeout=60)
    body = mlp_input_name()
    warm = [cycle(session, body) for _ in range(max(5, args.cycles // 20))]
    for kind in ["rest", "tf", "grpc", "bad"]:
        mixed(kind, time.monotonic() + 2, {}, [])
    session.close()
    check("warm-up cycles and requests", all(warm))
    wait_for(lambda: descriptors() <= samples[0][2] + 2, 30)
    baseline_rss, baseline_fds = rss_kib(), descriptors()
    print(f"baseline after warm-up: RSS {baseline_rss / 1024:.1f} MiB, {baseline_fds} descriptors", flush=True)

    session = requests.Session()
    started = time.monotonic()
    failures = sum(not cycle(session, body) for _ in range(args.cycles))
    session.close()
    cycles_seconds = time.monotonic() - started
    after_cycles = rss_kib()
    print(f"{args.cycles} load/unload cycles in {cycles_seconds:.1f} s: RSS {after_cycles / 1024:.1f} MiB", flush=True)
    check(f"{args.cycles} load/unload cycles, each with an inference, all succeed", failures == 0, f"{failures} failed")

    counts, errors = {}, []
    deadline = time.monotonic() + args.seconds
    threads = [threading.Thread(target=mixed, args=(kind, deadline, counts, errors)) for kind in ["rest", "tf", "grpc", "bad"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"mixed load for {args.seconds:.0f} s: {counts}, {len(errors)} unexpected answers", flush=True)
    check("mixed load: every good request answered, every bad one a clean 4xx / INVALID_ARGUMENT", not errors, str(errors[:5]))
    check("the server is still serving", process.poll() is None and requests.get(url + "/v2/health/ready", timeout=10).status_code == 200)

    final_rss = rss_kib()
    growth = (final_rss - baseline_rss) / baseline_rss
    print(f"RSS: baseline {baseline_rss / 1024:.1f} MiB, end {final_rss / 1024:.1f} MiB ({growth * 100:+.2f}%), peak "
          f"{max(s[1] for s in samples) / 1024:.1f} MiB", flush=True)
    check(f"RSS after warm-up grows less than {args.max_growth * 100:.0f}%", growth < args.max_growth, f"{growth * 100:+.2f}%")
    back = wait_for(lambda: descriptors() <= baseline_fds, 30)
    print(f"descriptors: baseline {baseline_fds}, peak {max(s[2] for s in samples)}, end {descriptors()}", flush=True)
    check("open descriptors return to the baseline", back, f"{descriptors()} > {baseline_fds}")
finally:
    stop_sampling.set()
    process.terminate()
    process.wait(timeout=60)
    with open(os.path.join(work, "soak.csv"), "w") as f:
        f.write("seconds,rss_kib,fds\n" + "".join(f"{t},{r},{d}\n" for t, r, d in samples))
    print("samples:", os.path.join(work, "soak.csv"))
check.finish()
