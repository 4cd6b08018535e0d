"""Async jobs survive crashes: kill -9 in the middle of a run loses no job and duplicates none.

    python scripts/e2e/jobs.py PATH_TO_SERVAL POSTGRES_URL

SQLite, one process:
1. 500 jobs (each with an Idempotency-Key) are committed to `serval serve` with its workers off, then it restarts
   with workers on and is killed with SIGKILL once some jobs have completed
2. after a restart every job ends `succeeded`, its result equals onnxruntime's output for its input, and there are
   still exactly 500 jobs; submitting the 500 keys again creates nothing (200, the same ids)
PostgreSQL, two `serval worker` processes sharing the queue with a serving replica:
3. 300 jobs; one worker is killed with SIGKILL mid-run; the other finishes every job, the killed worker's leased
   jobs after their lease expires; the same checks as above; the surviving worker exits 0 on SIGTERM
Prints one "ok"/"FAIL" line per check and exits non-zero on any failure.
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, free_port, wait_for, wait_ready  # noqa: E402

serval, database_url = sys.argv[1], sys.argv[2]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
check = Checks()
work = tempfile.mkdtemp(prefix="serval-e2e-jobs-")
repository = os.path.join(work, "models")
shutil.copytree(os.path.join(root, "examples/models"), repository)
reference = onnxruntime.InferenceSession(os.path.join(repository, "iris/1/model.onnx"), providers=["CPUExecutionProvider"])


class Process:
    """A serval process (serve or worker) with its log; `ready` waits for HTTP readiness when it serves."""

    def __init__(self, *arguments, port=None):
        self.port = port
        self.log = tempfile.NamedTemporaryFile(prefix="serval-e2e-jobs-", suffix=".log", delete=False)
        self.process = subprocess.Popen([serval, *arguments], stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}" if port else None
        if port:
            wait_ready(self.url, self.process, self.log.name, requests.get)

    def output(self):
        return open(self.log.name).read()

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self, name):
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=90)
        check(f"{name} exits 0 after SIGTERM", code == 0, f"exit {code}\n{self.output()[-3000:]}")


def serve(*state, workers):
    port = free_port()
    return Process("serve", "--model-repository", repository, "--http-port", str(port), "--grpc-port", "0",
                   "--job-workers", str(workers), *state, port=port)


def make_inputs(count, seed):
    generator = random.Random(seed)
    return [[[round(generator.uniform(4, 8), 2), round(generator.uniform(2, 4.5), 2), round(generator.uniform(1, 7), 2),
              round(generator.uniform(0.1, 2.5), 2)] for _ in range(generator.randint(1, 3))] for _ in range(count)]


def body(rows):
    return {"inputs": [{"name": "X", "shape": [len(rows), 4], "datatype": "FP32", "data": rows}]}


def submit(url, inputs, prefix):
    """Submits every input with its key; returns the job ids and the statuses answered."""
    ids, statuses = [], []
    session = requests.Session()
    for index, rows in enumerate(inputs):
        reply = session.post(url + "/v2/models/iris/jobs", json=body(rows), headers={"Idempotency-Key": f"{prefix}-{index}"}, timeout=30)
        statuses.append(reply.status_code)
        ids.append(reply.json().get("id"))
    return ids, statuses


def all_jobs(url):
    jobs, after = [], None
    while True:
        page = requests.get(url + "/v2/jobs", params={"limit": 1000, **({"after": after} if after else {})}, timeout=30).json()
        jobs += page["jobs"]
        after = page["next"]
        if not after:
            return jobs


def count(url, status):
    return len(requests.get(url + "/v2/jobs", params={"status": status, "limit": 1000}, timeout=30).json()["jobs"])


def verify(url, ids, inputs, label):
    jobs = {job["id"]: job for job in all_jobs(url)}
    check(f"{label}: exactly {len(ids)} jobs exist (none lost, none duplicated)", len(jobs) == len(ids) and set(jobs) == set(ids), f"{len(jobs)} jobs")
    statuses = {}
    for job in jobs.values():
        statuses[job["status"]] = statuses.get(job["status"], 0) + 1
    check(f"{label}: every job succeeded", statuses == {"succeeded": len(ids)}, statuses)
    mismatches = []
    session = requests.Session()
    for job_id, rows in zip(ids, inputs):
        result = session.get(f"{url}/v2/jobs/{job_id}/result", timeout=30)
        if result.status_code != 200:
            mismatches.append((job_id, result.status_code))
            continue
        outputs = {output["name"]: output for output in result.json()["outputs"]}
        label_out, probabilities = reference.run(None, {"X": np.array(rows, dtype=np.float32)})
        got_labels = np.array(outputs["label"]["data"]).reshape(-1)
        got_probabilities = np.array(outputs["probabilities"]["data"], dtype=np.float32).reshape(len(rows), -1)
        if not (np.array_equal(got_labels, label_out.reshape(-1)) and np.allclose(got_probabilities, probabilities, atol=1e-5)):
            mismatches.append((job_id, "differs from onnxruntime"))
    check(f"{label}: every result equals onnxruntime's output for its input", not mismatches, mismatches[:5])
    return jobs


print("== SQLite: one server, kill -9 mid-run")
data = os.path.join(work, "data")
inputs = make_inputs(500, seed=1)
server = serve("--data-dir", data, workers=0)
ids, statuses = submit(server.url, inputs, "sqlite")
check("500 jobs accepted with 202", statuses == [202] * 500, set(statuses))
server.stop("serval serve (workers off)")
server = serve("--data-dir", data, workers=1)
started = wait_for(lambda: count(server.url, "succeeded") >= 20, 120)
done_before_kill = count(server.url, "succeeded")
server.kill()
check("server killed with SIGKILL after some jobs completed and before all", started and done_before_kill < 500, done_before_kill)
server = serve("--data-dir", data, workers=2)
finished = wait_for(lambda: count(server.url, "succeeded") == 500, 180)
check("after the restart every job finishes", finished, f"{count(server.url, 'succeeded')} succeeded\n{server.output()[-2000:]}")
jobs = verify(server.url, ids, inputs, "SQLite")
check("no job took more than the crashed attempt and one more", all(job["attempts"] <= 2 for job in jobs.values()),
      sorted({job["attempts"] for job in jobs.values()}))
again, statuses = submit(server.url, inputs, "sqlite")
check("resubmitting the 500 keys answers 200 with the original ids", statuses == [200] * 500 and again == ids, set(statuses))
check("resubmitting created nothing", len(all_jobs(server.url)) == 500)
server.stop("serval serve")

print("== PostgreSQL: two workers, one killed with SIGKILL mid-run")
inputs = make_inputs(300, seed=2)
api = serve("--database-url", database_url, workers=0)
ids, statuses = submit(api.url, inputs, "postgres")
check("300 jobs accepted with 202", statuses == [202] * 300, set(statuses))
worker_args = ["worker", "--model-repository", repository, "--database-url", database_url, "--job-lease-secs", "2"]
first, second = Process(*worker_args), Process(*worker_args)
started = wait_for(lambda: count(api.url, "succeeded") >= 20, 120)
first.kill()
check("one worker killed with SIGKILL after some jobs completed", started and count(api.url, "succeeded") < 300,
      f"{count(api.url, 'succeeded')} succeeded\n{first.output()[-2000:]}")
finished = wait_for(lambda: count(api.url, "succeeded") == 300, 180)
check("the other worker finishes every job, the killed worker's after their lease expires", finished,
      f"{count(api.url, 'succeeded')} succeeded\n{second.output()[-2000:]}")
verify(api.url, ids, inputs, "PostgreSQL")
again, statuses = submit(api.url, inputs, "postgres")
check("resubmitting the 300 keys answers 200 with the original ids", statuses == [200] * 300 and again == ids, set(statuses))
second.stop("serval worker")
api.stop("serval serve (API only)")
shutil.rmtree(work, ignore_errors=True)
check.finish()
