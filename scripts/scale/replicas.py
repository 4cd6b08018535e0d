"""Three `serval serve` replicas sharing one PostgreSQL behind nginx (round-robin), on one machine.

    python scripts/scale/replicas.py PATH_TO_SERVAL POSTGRES_URL NGINX_BINARY

Run through scripts/scale/replicas.sh, which provides PostgreSQL and nginx. Phases, each under load through nginx
(fixed request counts, concurrency 16):
1. a label move and a traffic policy change made through replica 1 are in force on all three within 2 s
2. 300 async jobs submitted through nginx are processed exactly once while replica 2 is kill -9ed and restarted
3. a rolling restart (SIGTERM, exit 0, start, ready; one replica at a time) fails no client request
4. the replicas' /metrics add up to the load generator's request count
5. monitoring switched on through replica 1 is on everywhere, and each replica's window holds the rows sent through
   nginx to any of them, with the same drift scores on all three
Prints one "ok"/"FAIL" line per check and a summary table; exits non-zero on any failure.
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
from checks import Checks, free_port, wait_for  # noqa: E402

serval, database, nginx = sys.argv[1], sys.argv[2], sys.argv[3]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
check = Checks()
work = tempfile.mkdtemp(prefix="serval-replicas-")
repository = os.path.join(work, "models")
shutil.copytree(os.path.join(root, "examples/models/iris"), os.path.join(repository, "iris"))
# A second version, so a label can move between two.
shutil.copytree(os.path.join(repository, "iris/1"), os.path.join(repository, "iris/2"))
with open(os.path.join(repository, "iris/config.yaml"), "w") as handle:
    handle.write("version_policy: {all: {}}\nversion_labels: {stable: 1}\n")
ROW = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
summary = []


class Replica:
    def __init__(self, index):
        self.index = index
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = os.path.join(work, f"replica-{index}.log")
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [serval, "serve", "--model-repository", repository, "--database-url", database, "--http-port", str(self.port), "--grpc-port", "0",
             "--job-workers", "2", "--exit-timeout-secs", "10", "--data-dir", os.path.join(work, f"data-{self.index}")],
            stdout=open(self.log, "a"), stderr=subprocess.STDOUT)
        for _ in range(600):
            if self.process.poll() is not None:
                raise SystemExit(f"replica {self.index} exited:\n{open(self.log).read()[-3000:]}")
            try:
                if requests.get(self.url + "/v2/health/ready", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"replica {self.index} did not become ready")

    def version(self):
        return requests.post(self.url + "/v2/models/iris/infer", json=ROW, timeout=5).json()["model_version"]

    def successes(self):
        text = requests.get(self.url + "/metrics", timeout=5).text
        return sum(float(value) for value in re.findall(r'^serval_inference_request_success_total\{[^}]*\} (\S+)$', text, re.M))


replicas = [Replica(index) for index in (1, 2, 3)]
for replica in replicas:
    replica.start()

proxy_port = free_port()
proxy = f"http://127.0.0.1:{proxy_port}"
nginx_dir = os.path.join(work, "nginx")
os.makedirs(os.path.join(nginx_dir, "logs"))
with open(os.path.join(nginx_dir, "nginx.conf"), "w") as handle:
    upstreams = "\n".join(f"    server 127.0.0.1:{r.port} max_fails=0;" for r in replicas)
    handle.write(f"""pid {nginx_dir}/nginx.pid;
error_log {nginx_dir}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {nginx_dir}/body;
  proxy_temp_path {nginx_dir}/proxy;
  fastcgi_temp_path {nginx_dir}/fastcgi;
  uwsgi_temp_path {nginx_dir}/uwsgi;
  scgi_temp_path {nginx_dir}/scgi;
  upstream serval {{
{upstreams}
    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{proxy_port};
    location / {{
      proxy_pass http://serval;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Stands in for a Service whose endpoints follow readiness: a refused connection, a timeout or a 503 from a
      # draining replica goes to the next one. Inference and job submission (with an Idempotency-Key) are safe to retry.
      proxy_next_upstream error timeout http_503 non_idempotent;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 1s;
      proxy_read_timeout 10s;
    }}
  }}
}}
""")
nginx_process = subprocess.Popen([nginx, "-c", os.path.join(nginx_dir, "nginx.conf"), "-p", nginx_dir, "-g", "daemon off;"],
                                 stdout=open(os.path.join(nginx_dir, "logs/stdout.log"), "w"), stderr=subprocess.STDOUT)
for _ in range(100):
    try:
        requests.get(proxy + "/v2/health/live", timeout=1)
        break
    except requests.ConnectionError:
        time.sleep(0.05)


class Load:
    """A fixed number of inference requests through nginx at concurrency 16, in a background thread."""

    def __init__(self, total, concurrency=16):
        self.total = total
        self.latencies = []
        self.failures = []
        self.next = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.worker) for _ in range(concurrency)]

    def worker(self):
        session = requests.Session()
        while True:
            with self.lock:
                if self.next >= self.total:
                    return
                self.next += 1
            began = time.perf_counter()
            try:
                reply = session.post(proxy + "/v2/models/iris/infer", json=ROW, timeout=15)
                ok, detail = reply.status_code == 200, f"{reply.status_code} {reply.text[:100]}"
            except requests.RequestException as error:
                ok, detail = False, str(error)[:100]
            elapsed = time.perf_counter() - began
            with self.lock:
                self.latencies.append(elapsed)
                if not ok:
                    self.failures.append(detail)

    def start(self):
        for thread in self.threads:
            thread.start()
        return self

    def wait(self):
        for thread in self.threads:
            thread.join()
        return self

    def record(self, phase):
        ordered = sorted(self.latencies)
        def quantile(q):
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")
        summary.append((phase, len(self.latencies), len(self.failures), quantile(0.5), quantile(0.99)))


jobs_done = jobs_duplicated = 0
try:
    # 1. Pointer changes through one replica reach all three.
    load = Load(3000).start()
    before = [r.version() for r in replicas]
    began = time.monotonic()
    moved = requests.put(replicas[0].url + "/v2/models/iris/labels/stable", json={"version": "2", "reason": "replicas test"}, timeout=10)
    label_everywhere = wait_for(lambda: all(r.version() == "2" for r in replicas), 2.0)
    label_seconds = time.monotonic() - began
    check(f"1. stable moved 1 -> 2 through replica 1 is in force on all three in {label_seconds:.2f} s (limit 2 s)",
          moved.status_code == 200 and before == ["1"] * 3 and label_everywhere, (moved.text, before, [r.version() for r in replicas]))
    began = time.monotonic()
    policy = requests.put(replicas[0].url + "/v2/models/iris/traffic", json={"routes": [{"label": "stable", "weight": 0}, {"version": "1", "weight": 100}]}, timeout=10)
    traffic_everywhere = wait_for(lambda: all(r.version() == "1" for r in replicas), 2.0)
    traffic_seconds = time.monotonic() - began
    check(f"1. a traffic policy (100% to v1) set through replica 1 is in force on all three in {traffic_seconds:.2f} s (limit 2 s)",
          policy.status_code == 200 and traffic_everywhere, (policy.text, [r.version() for r in replicas]))
    requests.delete(replicas[0].url + "/v2/models/iris/traffic", timeout=10)
    load.wait().record("1. pointer changes")
    check("1. no request failed", not load.failures, load.failures[:3])

    # 2. 300 jobs through nginx, exactly once, across a kill -9.
    load = Load(3000).start()
    session = requests.Session()
    ids = []
    killed_at = None

    def succeeded():
        return len(requests.get(proxy + "/v2/jobs", params={"status": "succeeded", "limit": 1000}, timeout=15).json()["jobs"])
    for index in range(300):
        if index == 100:  # mid-run: a third of the jobs in, some done, some running on replica 2
            replicas[1].process.send_signal(signal.SIGKILL)
            replicas[1].process.wait()
            killed_at = succeeded()
        if index == 200:
            replicas[1].start()
        reply = session.post(proxy + "/v2/models/iris/jobs", json=ROW, headers={"Idempotency-Key": f"replicas-{index}"}, timeout=15)
        ids.append(reply.json().get("id") if reply.status_code in (200, 202) else None)
    check("2. 300 jobs accepted through nginx, a third of them while replica 2 was down", None not in ids and len(set(ids)) == 300, sum(i is None for i in ids))
    finished = wait_for(lambda: succeeded() == 300, 180)
    jobs = {}
    after = None
    while True:
        page = requests.get(proxy + "/v2/jobs", params={"limit": 1000, **({"after": after} if after else {})}, timeout=15).json()
        jobs.update({job["id"]: job for job in page["jobs"]})
        after = page["next"]
        if not after:
            break
    jobs_done = sum(job["status"] == "succeeded" for job in jobs.values())
    retried = [job for job in jobs.values() if job["attempts"] > 1]
    jobs_duplicated = len(jobs) - 300
    check(f"2. replica 2 killed with SIGKILL mid-run ({killed_at} of 300 done), restarted; every job succeeded", finished and jobs_done == 300 and killed_at < 300, jobs_done)
    check("2. exactly 300 jobs exist: none lost, none duplicated by nginx's retries", set(jobs) == set(ids), len(jobs))
    check(f"2. only jobs running on the killed replica ran twice ({len(retried)}, at most its 2 workers)", len(retried) <= 2, [j["attempts"] for j in retried])
    load.wait().record("2. jobs and kill -9")
    check("2. no inference request failed through nginx", not load.failures, load.failures[:3])

    # 3. Rolling restart: SIGTERM each replica in turn under load.
    load = Load(12000).start()
    codes = []
    for replica in replicas:
        replica.process.send_signal(signal.SIGTERM)
        codes.append(replica.process.wait(timeout=60))
        replica.start()
    load.wait().record("3. rolling restart")
    check("3. each replica exited 0 after SIGTERM", codes == [0, 0, 0], codes)
    check(f"3. a rolling restart failed 0 of {load.total} client requests", not load.failures, f"{len(load.failures)}: {load.failures[:3]}")

    # 4. The replicas' counters add up to what the load generator sent.
    start_counts = [r.successes() for r in replicas]
    load = Load(3000).start().wait()
    load.record("4. metrics")
    added = sum(r.successes() for r in replicas) - sum(start_counts)
    per_replica = [r.successes() - s for r, s in zip(replicas, start_counts)]
    check(f"4. the replicas counted {added:.0f} successes for the generator's {load.total} (per replica {per_replica})",
          added == load.total and not load.failures and all(count > 0 for count in per_replica), (added, load.failures[:3]))

    # 5. Monitoring across replicas: each window holds every replica's logged rows (a window of exactly the rows
    # sent, so which rows it holds does not depend on the order they reached each replica).
    settings = {"reference": "reference.csv", "features": ["sepal_length", "sepal_width", "petal_length", "petal_width"], "window": 300,
                "sample_rate": 1.0, "drift": {"method": "auto", "threshold": None, "share": 0.5}}
    put = requests.put(replicas[0].url + "/v2/models/iris/monitoring", json=settings, timeout=10)
    check("5. monitoring switched on through replica 1", put.status_code == 200, put.text)
    status_path = "/v2/models/iris/versions/1/monitoring/status"
    on_everywhere = wait_for(lambda: all(requests.get(r.url + status_path, timeout=5).status_code == 200 for r in replicas), 30)
    check("5. monitoring is on at all three replicas", on_everywhere, [requests.get(r.url + status_path, timeout=5).status_code for r in replicas])
    rng = random.Random(20261205)
    sent = 0
    for index in range(300):
        row = [round(rng.gauss(mean, spread), 3) for mean, spread in ((5.8, 0.8), (3.0, 0.4), (3.8, 1.7), (1.2, 0.7))]
        body = {"id": f"monitored-{index}", "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": row}]}
        sent += requests.post(proxy + "/v2/models/iris/versions/1/infer", json=body, timeout=10).status_code == 200
    def windows():
        return [requests.get(r.url + status_path, timeout=5).json() for r in replicas]
    full = wait_for(lambda: all(s["window"]["rows"] == 300 for s in windows()), 30)
    statuses = windows()
    check(f"5. {sent} rows sent through nginx: each replica's window holds all 300", full and sent == 300, [s["window"]["rows"] for s in statuses])
    scores = [[(f["name"], f["score"]) for f in s["features"]] for s in statuses]
    check("5. all three replicas report the same drift scores", scores[0] == scores[1] == scores[2] and len(scores[0]) == 4, scores)
finally:
    print()
    print(f"{'phase':<22} {'requests':>8} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for phase, total, failed, p50, p99 in summary:
        print(f"{phase:<22} {total:>8} {failed:>7} {p50:>8.2f} {p99:>8.2f}")
    print(f"jobs: {jobs_done} done, {jobs_duplicated} duplicated")
    nginx_process.terminate()
    for replica in replicas:
        if replica.process and replica.process.poll() is None:
            replica.process.terminate()
            try:
                replica.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                replica.process.kill()
    if check.failures:
        for replica in replicas:
            print(f"--- replica {replica.index}\n" + open(replica.log).read()[-2500:])
    shutil.rmtree(work, ignore_errors=True)
check.finish()
