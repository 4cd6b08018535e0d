#!/usr/bin/env python3
"""serval tune's recommended configuration against the default one, same model, same load.

`serval tune` runs pinned to CPU 0 (so its CPU budget is 1, as the server's will be) on the model at one client
concurrency and recommends a config.yaml block. Then one `serval serve` per configuration, pinned to CPU 0, takes
the same wrk load (KServe v2 JSON at batch 1, wrk pinned to CPU 1) at that concurrency; rounds alternate default
and tuned, and each side keeps its median. Ratio = tuned / default throughput (>= 1: tune is at least as fast).

Usage: bench/tune.sh [--model mlp] [--concurrency 16] [--rounds 3] [--duration 10] [--tune-duration 2]
Writes the "Tune" section of bench/RESULTS.md.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results import write_section  # noqa: E402
from server import REPOSITORY, free_port, get, wrk  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def serve(serval, repository, work):
    port = free_port()
    process = subprocess.Popen(["taskset", "-c", "0", serval, "serve", "--model-repository", repository, "--data-dir", os.path.join(work, "data"),
                                "--http-port", str(port), "--grpc-port", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        if get(f"http://127.0.0.1:{port}/v2/health/ready") == 200:
            return process, port
        time.sleep(0.05)
    raise RuntimeError("serval did not become ready")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--serval", default=os.path.join(ROOT, ".build", "release", "serval"))
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--tune-duration", type=float, default=2)
    args = parser.parse_args()

    tune_command = ["taskset", "-c", "0", args.serval, "tune", "--model-repository", REPOSITORY, "--model", args.model,
                    "--concurrency", str(args.concurrency), "--duration-secs", str(args.tune_duration), "--json"]
    started = time.monotonic()
    result = json.loads(subprocess.run(tune_command, check=True, capture_output=True, text=True).stdout)
    tune_seconds = time.monotonic() - started
    best = result["recommendation"]
    config = best["config"]
    block = (f"instance_count: {config['instance_count']}\nthreads_per_instance: {config['threads_per_instance']}\n"
             f"max_batch_size: {config['max_batch_size']}\ndynamic_batching:\n  max_queue_delay_us: {config['max_queue_delay_us']}\n")
    print(f"tune ({tune_seconds:.0f} s, {len(result['configs'])} measurements) recommends:\n{block}", flush=True)

    work = tempfile.mkdtemp(prefix="serval-tune-bench-")
    repositories = {}
    for side in ("default", "tuned"):
        repositories[side] = os.path.join(work, side)
        shutil.copytree(REPOSITORY, repositories[side])
    config_path = os.path.join(repositories["tuned"], args.model, "config.yaml")
    existing = open(config_path).read() if os.path.exists(config_path) else ""
    with open(config_path, "w") as f:
        f.write(existing + ("\n" if existing else "") + block)
    runs = {"default": [], "tuned": []}
    try:
        for _ in range(args.rounds):
            for side in ("default", "tuned"):
                process, port = serve(args.serval, repositories[side], os.path.join(work, side + "-state"))
                try:
                    wrk(port, args.model, args.concurrency, 2, work)  # warm-up
                    runs[side].append(wrk(port, args.model, args.concurrency, args.duration, work))
                    print(side, runs[side][-1], flush=True)
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def median(side, key):
        return statistics.median(run[key] for run in runs[side])

    errors = sum(run["errors"] for side in runs for run in runs[side])
    lines = [
        "## Tune: recommended configuration against the default",
        "",
        f"Command: `bench/tune.sh --model {args.model} --concurrency {args.concurrency} --rounds {args.rounds} --duration {args.duration}` "
        f"(release build). Measured {time.strftime('%Y-%m-%d')} on a shared 2-vCPU machine. `serval tune --concurrency {args.concurrency} "
        f"--duration-secs {args.tune_duration}` ran pinned to CPU 0 ({tune_seconds:.0f} s, {len(result['configs'])} configurations) and "
        f"recommended `{json.dumps(config)}` (in-process {best['throughput_rps']:.0f} req/s, p99 {best['p99_ms']:.3f} ms; per-replica "
        f"capacity {best['per_replica_capacity_rps']:.0f} req/s). Each server then ran pinned to CPU 0 under wrk (1 thread, "
        f"{args.concurrency} connections, KServe v2 JSON at batch 1) on CPU 1, rounds alternating, median of {args.rounds}. "
        f"Default = no config.yaml tuning fields (max_batch_size 64, no queue delay, 1 instance). Non-2xx answers: {errors}.",
        "",
        "| configuration | req/s | p50 ms | p99 ms |",
        "|---|---|---|---|",
        f"| default | {median('default', 'rps'):.0f} | {median('default', 'p50'):.3f} | {median('default', 'p99'):.3f} |",
        f"| tuned | {median('tuned', 'rps'):.0f} | {median('tuned', 'p50'):.3f} | {median('tuned', 'p99'):.3f} |",
        "",
        f"Tuned / default throughput: **{median('tuned', 'rps') / median('default', 'rps'):.2f}x**.",
    ]
    write_section("## Tune", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
