#!/usr/bin/env python3
"""Async job throughput and the queue's overhead per job, on SQLite and on PostgreSQL.

For each store: N iris jobs (batch 1, KServe v2 JSON, each with an Idempotency-Key) are submitted by C client
threads to one `serval serve --job-workers W`; reported are submission throughput (jobs/s committed, each answered
202 only once durable), completion throughput (jobs/s from the first submission until the last job succeeded),
and, as the peer, the same N requests answered synchronously by the same server at the same client concurrency.
The queue's overhead per job is (completion wall time − synchronous wall time) / N.

Usage: python bench/jobs.py [--serval .build/release/serval] [--jobs 2000] [--clients 8] [--workers 2] [--database-url URL]
Writes the "Async jobs" section of bench/RESULTS.md (the PostgreSQL row only with --database-url).
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results import write_section  # noqa: E402
from server import REPOSITORY, free_port, get  # noqa: E402

BODY = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}


def run(serval, state, jobs, clients, workers, label):
    work = tempfile.mkdtemp(prefix="serval-bench-jobs-")
    port = free_port()
    arguments = [serval, "serve", "--model-repository", REPOSITORY, "--http-port", str(port), "--grpc-port", "0",
                 "--job-workers", str(workers), *state(work)]
    server = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if get(url + "/v2/health/ready") == 200:
                break
            time.sleep(0.05)
        sessions = [requests.Session() for _ in range(clients)]

        def chunks():
            return [range(index, jobs, clients) for index in range(clients)]

        def synchronous(part):
            session = sessions[part.start]
            for _ in part:
                session.post(url + "/v2/models/iris/infer", json=BODY, timeout=30).raise_for_status()

        def submit(part):
            session = sessions[part.start]
            for index in part:
                reply = session.post(url + "/v2/models/iris/jobs", json=BODY, headers={"Idempotency-Key": f"{label}-{index}"}, timeout=30)
                assert reply.status_code == 202, reply.text

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(synchronous, chunks()[:clients]))  # warm-up
            started = time.monotonic()
            list(pool.map(synchronous, chunks()))
            sync_seconds = time.monotonic() - started
            started = time.monotonic()
            list(pool.map(submit, chunks()))
            submitted = time.monotonic() - started
        while True:
            page = requests.get(url + "/v2/jobs", params={"status": "succeeded", "limit": 1}, timeout=30).json()
            done = len(requests.get(url + "/v2/jobs", params={"status": "queued", "limit": 1}, timeout=30).json()["jobs"]) == 0 and \
                len(requests.get(url + "/v2/jobs", params={"status": "running", "limit": 1}, timeout=30).json()["jobs"]) == 0
            if done and page["jobs"]:
                break
            time.sleep(0.02)
        completed = time.monotonic() - started
        return {"store": label, "jobs": jobs, "submit_rate": jobs / submitted, "complete_rate": jobs / completed,
                "sync_rate": jobs / sync_seconds, "overhead_ms": (completed - sync_seconds) / jobs * 1000}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--serval", default=".build/release/serval")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    rows = [run(args.serval, lambda work: ["--data-dir", os.path.join(work, "data")], args.jobs, args.clients, args.workers, "sqlite")]
    if args.database_url:
        rows.append(run(args.serval, lambda work: ["--database-url", args.database_url], args.jobs, args.clients, args.workers, "postgres"))
    command = f"python bench/jobs.py --jobs {args.jobs} --clients {args.clients} --workers {args.workers}" + \
        (" --database-url URL" if args.database_url else "")
    lines = [
        "## Async jobs: throughput and queue overhead",
        "",
        f"`{command}` (release build, both cores shared by server and clients; iris, batch 1). Submission: jobs/s "
        "answered 202 (each committed first). Completion: jobs/s from the first submission until the last job "
        "succeeded. Synchronous: the same requests through `/infer` at the same client concurrency, same server.",
        "",
        "| store | jobs | submitted jobs/s | completed jobs/s | synchronous req/s | completed / synchronous | queue overhead per job |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        print(row, flush=True)
        lines.append(f"| {row['store']} | {row['jobs']} | {row['submit_rate']:.0f} | {row['complete_rate']:.0f} | {row['sync_rate']:.0f} | "
                     f"{row['complete_rate'] / row['sync_rate']:.3f} | {row['overhead_ms']:.2f} ms |")
    write_section("## Async jobs", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
