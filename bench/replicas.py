#!/usr/bin/env python3
"""Throughput of 1 replica against 3 behind nginx, all sharing one PostgreSQL, on this machine.

Rows: one replica direct (no proxy), one replica behind nginx, three replicas behind nginx (round-robin,
keepalive upstreams, the same nginx settings as scripts/scale/replicas.py). wrk (2 threads, C connections,
KServe v2 JSON at batch 1) drives each for D seconds after a 2 s warm-up; rounds alternate and each row keeps its
median. Nothing is pinned: the replicas, nginx and wrk share the machine's cores, which is the point: on 2 cores,
three replicas cannot beat one by more than the cores allow.

Usage: bench/replicas.sh [--model mlp] [--concurrency 64] [--duration 10] [--rounds 3]
Writes the "Replicas" section of bench/RESULTS.md.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results import write_section  # noqa: E402
from server import MODELS, REPOSITORY, free_port, get  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wrk(url, model, concurrency, duration, work):
    body = os.path.join(work, f"{model}.json")
    with open(body, "w") as f:
        json.dump({"inputs": [MODELS[model]]}, f)
    output = subprocess.run(["wrk", "-t2", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", os.path.join(os.path.dirname(os.path.abspath(__file__)), "post.lua"),
                             f"{url}/v2/models/{model}/infer"], capture_output=True, text=True, env={**os.environ, "BODY": body}, check=True).stdout

    def latency(label):
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        return float(match.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[match.group(2)] if match else float("nan")

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)), "p50": latency("50%"), "p99": latency("99%"),
            "errors": int(errors.group(1)) if errors else 0}


def nginx_config(folder, ports, listen):
    upstreams = "\n".join(f"    server 127.0.0.1:{port} max_fails=0;" for port in ports)
    return f"""pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
worker_processes 1;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {folder}/body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  upstream serval {{
{upstreams}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{listen};
    location / {{
      proxy_pass http://serval;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout http_503 non_idempotent;
      proxy_connect_timeout 1s;
      proxy_read_timeout 10s;
    }}
  }}
}}
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("--serval", default=os.path.join(ROOT, ".build", "release", "serval"))
    parser.add_argument("--nginx", default="/usr/sbin/nginx")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="serval-replicas-bench-")
    replicas = []
    for index in range(3):
        port = free_port()
        process = subprocess.Popen([args.serval, "serve", "--model-repository", REPOSITORY, "--database-url", args.database_url, "--http-port", str(port),
                                    "--grpc-port", "0", "--data-dir", os.path.join(work, f"data-{index}")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        replicas.append((process, port))
    proxies = {}
    results = {"1 replica, direct": [], "1 replica behind nginx": [], "3 replicas behind nginx": []}
    try:
        for process, port in replicas:
            for _ in range(600):
                if get(f"http://127.0.0.1:{port}/v2/health/ready") == 200:
                    break
                time.sleep(0.05)
        for name, ports in (("one", [replicas[0][1]]), ("three", [port for _, port in replicas])):
            folder = os.path.join(work, "nginx-" + name)
            os.makedirs(folder)
            listen = free_port()
            with open(os.path.join(folder, "nginx.conf"), "w") as f:
                f.write(nginx_config(folder, ports, listen))
            proxies[name] = (subprocess.Popen([args.nginx, "-c", os.path.join(folder, "nginx.conf"), "-p", folder, "-g", "daemon off;"],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT), listen)
        time.sleep(0.5)
        targets = {"1 replica, direct": f"http://127.0.0.1:{replicas[0][1]}", "1 replica behind nginx": f"http://127.0.0.1:{proxies['one'][1]}",
                   "3 replicas behind nginx": f"http://127.0.0.1:{proxies['three'][1]}"}
        for _ in range(args.rounds):
            for label, url in targets.items():
                wrk(url, args.model, args.concurrency, 2, work)
                results[label].append(wrk(url, args.model, args.concurrency, args.duration, work))
                print(label, results[label][-1], flush=True)
    finally:
        for process, _ in list(proxies.values()):
            process.terminate()
        for process, _ in replicas:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    def median(label, key):
        return statistics.median(run[key] for run in results[label])

    base = median("1 replica behind nginx", "rps")
    errors = sum(run["errors"] for runs in results.values() for run in runs)
    lines = [
        "## Replicas: 1 against 3 behind nginx",
        "",
        f"Command: `bench/replicas.sh --model {args.model} --concurrency {args.concurrency} --duration {args.duration} --rounds {args.rounds}` "
        f"(release build, replicas sharing one PostgreSQL). Measured {time.strftime('%Y-%m-%d')} on a shared 2-vCPU machine; nothing pinned, "
        f"so the replicas, nginx (1 worker) and wrk (2 threads, {args.concurrency} connections, KServe v2 JSON at batch 1) share the 2 cores. "
        f"Median of {args.rounds} alternating rounds. Non-2xx answers: {errors}. The limit here is the cores: one replica already "
        "fills both, and three replicas on the same two cores oversubscribe them (each sizes its event loops and compute threads "
        "to the machine's cores), so they lose throughput rather than gain it. This measures the proxy's cost and the cost of "
        "oversubscription, not scale-out: on a cluster each replica gets its own cores (size them with `serval tune`).",
        "",
        "| setup | req/s | p50 ms | p99 ms | vs 1 replica behind nginx |",
        "|---|---|---|---|---|",
    ]
    for label in results:
        lines.append(f"| {label} | {median(label, 'rps'):.0f} | {median(label, 'p50'):.3f} | {median(label, 'p99'):.3f} | "
                     f"**{median(label, 'rps') / base:.2f}x** |")
    write_section("## Replicas", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
