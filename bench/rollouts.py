#!/usr/bin/env python3
"""Rollout overhead: the cost of a traffic policy and of a shadow, in one serval process on one model.

Scenarios, each a wrk run against the same server (pinned to CPU 0, wrk to CPU 1) and model (mlp, batch 1):
  none          no traffic policy (unversioned requests follow `stable`)
  two-arm       stable 50 / canary 50, both labels on version 1, with a guard evaluating every second: the cost of
                the policy itself (choosing an arm, recording its figures, the guard)
  two-versions  stable 50 / canary 50 on two copies of the model (versions 1 and 2): what a real canary costs,
                the policy plus each version batching only its own half of the traffic
  shadow        stable 100 plus a 100% shadow to version 2, at concurrency 1, with the server allowed both CPUs
                so the copies have CPU of their own (compared with `none` run the same way)
Reported: requests/s and p50/p99, with the ratio to `none` at the same concurrency.

Usage: python bench/rollouts.py [--serval .build/release/serval] [--duration 10] [--rounds 2]
Writes the "Rollouts" section of bench/RESULTS.md. Needs wrk (apt: wrk).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results import write_section  # noqa: E402
from server import REPOSITORY, free_port, get, wrk  # noqa: E402


def shadow_counts(base):
    """(copies run, copies dropped) for mlp's shadow so far, from /metrics."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    def total(name):
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{") and 'model="mlp"' in line)
    return total("serval_shadow_requests_total"), total("serval_shadow_dropped_total")


def call(method, url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--serval", default=".build/release/serval")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per scenario; the best is kept")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="serval-bench-rollouts-")
    repository = os.path.join(work, "models")
    shutil.copytree(REPOSITORY, repository)
    shutil.copytree(os.path.join(repository, "mlp", "1"), os.path.join(repository, "mlp", "2"))
    with open(os.path.join(repository, "mlp", "config.yaml"), "w") as f:
        f.write("version_policy: all\n")
    port = free_port()
    server = subprocess.Popen(["taskset", "-c", "0", args.serval, "serve", "--model-repository", repository, "--data-dir", os.path.join(work, "data"),
                               "--http-port", str(port), "--grpc-port", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(500):
        if get(base + "/v2/health/ready") == 200:
            break
        time.sleep(0.02)
    call("PUT", base + "/v2/models/mlp/labels/stable", {"version": "1"})
    call("PUT", base + "/v2/models/mlp/labels/canary", {"version": "1"})
    call("PUT", base + "/v2/models/mlp/labels/other", {"version": "2"})
    guard = {"min_requests": 100, "max_error_rate": 0.5, "max_p99_latency_ratio": 100, "window_secs": 30}
    policies = {
        "none": None,
        "two-arm": {"routes": [{"label": "stable", "weight": 50}, {"label": "canary", "weight": 50}], "guard": guard},
        "two-versions": {"routes": [{"label": "stable", "weight": 50}, {"label": "other", "weight": 50}], "guard": guard},
        "none (2 CPUs)": None,
        "shadow": {"routes": [{"label": "stable", "weight": 100}], "shadow": [{"label": "other", "percent": 100}]},
    }
    # Rounds interleave the scenarios (none, two-arm, two-versions, none, ...), so drift in the machine's speed
    # spreads over all of them; the best round of each is kept.
    groups = [[("none", 16), ("two-arm", 16), ("two-versions", 16)], [("none", 64), ("two-arm", 64), ("two-versions", 64)],
              [("none (2 CPUs)", 1), ("shadow", 1)]]
    plan = [step for group in groups for _ in range(args.rounds) for step in group]
    results = {}
    spread = {}
    try:
        for scenario, concurrency in plan:
            policy = policies[scenario]
            # The shadow comparison lets the server use both CPUs, so the copies do not take the primary's.
            cpus = "0-1" if concurrency == 1 else "0"
            subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(server.pid)], check=True, stdout=subprocess.DEVNULL)
            if policy is None:
                try:
                    call("DELETE", base + "/v2/models/mlp/traffic", {})
                except urllib.error.HTTPError:
                    pass
            else:
                call("PUT", base + "/v2/models/mlp/traffic", policy)
            wrk(port, "mlp", concurrency, 1, work)  # warm-up
            before = shadow_counts(base)
            result = wrk(port, "mlp", concurrency, args.duration, work)
            after = shadow_counts(base)
            result["shadow_run"], result["shadow_dropped"] = after[0] - before[0], after[1] - before[1]
            print(f"{scenario:14} c={concurrency:<3} {result['rps']:9.0f} req/s  p50 {result['p50']:.3f} ms  p99 {result['p99']:.3f} ms  errors {result['errors']}", flush=True)
            spread.setdefault((scenario, concurrency), []).append(result["rps"])
            best = results.get((scenario, concurrency))
            if best is None or result["rps"] > best["rps"]:
                results[(scenario, concurrency)] = result
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        "## Rollouts: traffic policy and shadow overhead",
        "",
        f"`python bench/rollouts.py --duration {args.duration} --rounds {args.rounds}` (release build; server on CPU 0, wrk on CPU 1; "
        "mlp, batch 1, KServe v2 JSON; best of the rounds). Ratios are to `none` at the same concurrency, in the same process; "
        "the shadow rows let the server use both CPUs and compare with `none (2 CPUs)`.",
        "",
        "| scenario | concurrency | req/s (best) | req/s over the rounds | vs none | p50 ms | p99 ms | p99 vs none |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (scenario, concurrency), result in results.items():
        none = results[("none (2 CPUs)" if scenario in ("shadow", "none (2 CPUs)") else "none", concurrency)]
        rounds = spread[(scenario, concurrency)]
        lines.append(f"| {scenario} | {concurrency} | {result['rps']:.0f} | {min(rounds):.0f}-{max(rounds):.0f} | {result['rps'] / none['rps']:.3f} | {result['p50']:.3f} | "
                     f"{result['p99']:.3f} | {result['p99'] / none['p99']:.3f} |")
    shadow = results.get(("shadow", 1))
    if shadow:
        answered = shadow["rps"] * args.duration
        lines += ["", f"In the shadow row's run, {shadow['shadow_run']:.0f} shadow copies ran and {shadow['shadow_dropped']:.0f} were dropped "
                  f"(queue full), for about {answered:.0f} primary answers."]
    write_section("## Rollouts", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
