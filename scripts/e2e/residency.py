"""End-to-end scale-to-zero checks against real `serval serve` processes (the sweep runs every second, as in
production):

    python scripts/e2e/residency.py PATH_TO_SERVAL

1. iris with `idle_unload_secs: 1` unloads once idle (`UNLOADED`, reason `idle`) while server and model
   readiness stay 200; its next request is answered, identically, and counted as one cold start
2. a burst of concurrent requests at an unloaded version: every answer is 200, or 503 with `Retry-After`, and
   the 503s are what `serval_cold_start_rejections_total` counts
3. with `--model-memory-limit` room for one of iris and mlp, each request for the other evicts the least recently
   used one (`UNLOADED`, reason `memory`); both keep answering
4. a model larger than the whole limit is `UNAVAILABLE` with the reason, and its requests get 503 naming the limit,
   while the other model serves
Prints one "ok"/"FAIL" line per check and exits non-zero on any failure.
"""
import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, free_port, wait_for, wait_ready  # noqa: E402

serval = sys.argv[1]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
check = Checks()
work = tempfile.mkdtemp(prefix="serval-residency-")

IRIS = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}


def mlp_request(http, url):
    metadata = http.get(f"{url}/v2/models/mlp", timeout=10).json()
    tensor = metadata["inputs"][0]
    shape = [1 if d < 0 else d for d in tensor["shape"]]
    count = 1
    for d in shape:
        count *= d
    return {"inputs": [{"name": tensor["name"], "shape": shape, "datatype": tensor["datatype"], "data": [0.5] * count}]}


def start(name, extra, iris_config=""):
    repository = os.path.join(work, name, "models")
    shutil.copytree(os.path.join(root, "examples", "models"), repository)
    if iris_config:
        with open(os.path.join(repository, "iris", "config.yaml"), "a") as config:
            config.write("\n" + iris_config + "\n")
    port = free_port()
    log_path = os.path.join(work, name + ".log")
    process = subprocess.Popen(
        [serval, "serve", "--model-repository", repository, "--data-dir", os.path.join(work, name, "data"), "--http-port", str(port),
         "--grpc-port", "0"] + extra, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    http = requests.Session()
    return process, url, http, log_path


def stop(process):
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def index(http, url):
    return {row["name"]: row for row in http.post(f"{url}/v2/repository/index", json={}, timeout=10).json()}


def metric(http, url, name, labels=""):
    text = http.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if labels in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


def state(http, url, model):
    row = index(http, url).get(model, {})
    return (row.get("state"), row.get("reason"))


try:
    # 1. Idle unload and lazy reload.
    process, url, http, log_path = start("idle", ["--cold-start-max-pending", "4"], iris_config="idle_unload_secs: 1")
    wait_ready(url, process, log_path, http.get)
    first = http.post(f"{url}/v2/models/iris/infer", json=IRIS, timeout=10)
    check("iris answers before it idles", first.status_code == 200, first.text)
    check("the start-up load is not a cold start", metric(http, url, "serval_model_cold_starts_total", 'model="iris"') == 0)
    unloaded = wait_for(lambda: state(http, url, "iris") == ("UNLOADED", "idle"), 10, pause=0.1)
    check("idle iris is UNLOADED with reason idle", unloaded, index(http, url).get("iris"))
    check("mlp (no idle_unload_secs) stays READY", state(http, url, "mlp")[0] == "READY", index(http, url).get("mlp"))
    check("server readiness stays 200 while iris is unloaded", http.get(f"{url}/v2/health/ready", timeout=5).status_code == 200)
    check("iris model readiness stays 200 while unloaded", http.get(f"{url}/v2/models/iris/ready", timeout=5).status_code == 200)
    check("serval_model_ready stays 1 for the unloaded version", metric(http, url, "serval_model_ready", 'model="iris"') == 1)
    again = http.post(f"{url}/v2/models/iris/infer", json=IRIS, timeout=30)
    check("the next request is answered (no 400/503 'not ready')", again.status_code == 200, again.text)
    check("and answers as before the unload", again.status_code == 200 and again.json()["outputs"] == first.json()["outputs"])
    check("one cold start is counted", metric(http, url, "serval_model_cold_starts_total", 'model="iris"') == 1)
    check("the cold start's duration is recorded", metric(http, url, "serval_model_cold_start_duration_seconds_count", 'model="iris"') == 1)
    check("the idle eviction is counted", metric(http, url, "serval_model_evictions_total", 'reason="idle"') >= 1)
    check("iris is READY again", state(http, url, "iris")[0] == "READY")
    check("the index reports each version's memory", all(row.get("memory_bytes", 0) > 0 for row in index(http, url).values()), index(http, url))
    check("serval_model_memory_bytes is exposed for mlp", metric(http, url, "serval_model_memory_bytes", 'model="mlp"') > 0)
    log = open(log_path).read()
    cold_lines = [line for line in log.splitlines() if "cold start" in line]
    check("the log breaks the cold start into phases", any(all(f"{phase}_seconds=" in line for phase in ("read", "import", "optimise", "warmup"))
                                                          for line in cold_lines), cold_lines)

    # 2. A burst at an unloaded version: bounded waiting, 503 with Retry-After beyond it.
    check("iris idles out again", wait_for(lambda: state(http, url, "iris") == ("UNLOADED", "idle"), 10, pause=0.1))
    rejected_before = metric(http, url, "serval_cold_start_rejections_total")
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda _: requests.post(f"{url}/v2/models/iris/infer", json=IRIS, timeout=30), range(64)))
    statuses = [a.status_code for a in answers]
    refused = [a for a in answers if a.status_code == 503]
    check("every burst answer is 200 or 503", set(statuses) <= {200, 503}, statuses)
    check("the burst is served", statuses.count(200) >= 1, statuses)
    check("every 503 carries Retry-After and names the limit", all(a.headers.get("Retry-After") == "1" and "cold" in a.json()["error"] for a in refused),
          [a.text for a in refused][:3])
    check("the rejections are counted", metric(http, url, "serval_cold_start_rejections_total") - rejected_before == len(refused),
          (len(refused), metric(http, url, "serval_cold_start_rejections_total")))
    sizes = {name: row["memory_bytes"] for name, row in index(http, url).items()}
    stop(process)

    # 3. A memory limit with room for one of the two.
    limit = max(sizes.values()) + min(sizes.values()) // 2
    process, url, http, log_path = start("budget", ["--model-memory-limit", str(limit)])
    wait_ready(url, process, log_path, http.get)
    states = index(http, url)
    check("at start-up only one of iris and mlp stays loaded", sorted(row["state"] for row in states.values()) == ["READY", "UNLOADED"], states)
    check("the other is UNLOADED with reason memory", any(row.get("reason") == "memory" for row in states.values()), states)
    mlp = mlp_request(http, url)
    for model, body in (("iris", IRIS), ("mlp", mlp), ("iris", IRIS)):
        answer = http.post(f"{url}/v2/models/{model}/infer", json=body, timeout=30)
        other = "mlp" if model == "iris" else "iris"
        check(f"{model} answers within the budget", answer.status_code == 200, answer.text)
        check(f"and {other} was evicted for it", state(http, url, other) == ("UNLOADED", "memory"), index(http, url))
    check("memory evictions are counted", metric(http, url, "serval_model_evictions_total", 'reason="memory"') >= 3)
    check("readiness stays 200 under the budget", http.get(f"{url}/v2/health/ready", timeout=5).status_code == 200)
    stop(process)

    # 4. A model larger than the whole limit.
    small, large = sorted(sizes, key=sizes.get)
    # Room for the small model with margin (a version's measured bytes vary a little between loads: buffer pools
    # fill in plan order), and far less than the large one needs.
    limit = min(sizes[small] * 3, sizes[large] // 2)
    process, url, http, log_path = start("toolarge", ["--model-memory-limit", str(limit)])

    def small_ready():
        try:
            return http.get(f"{url}/v2/models/{small}/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return process.poll() is not None  # not listening yet, unless it died

    check("the server starts", wait_for(small_ready, 60, pause=0.1) and process.poll() is None, open(log_path).read()[-2000:])
    check("server readiness is 503: a model cannot load", http.get(f"{url}/v2/health/ready", timeout=5).status_code == 503)
    row = index(http, url)[large]
    check(f"{large} is UNAVAILABLE naming the limit", row["state"] == "UNAVAILABLE" and "--model-memory-limit" in row["reason"], row)
    body = IRIS if large == "iris" else mlp
    answer = http.post(f"{url}/v2/models/{large}/infer", json=body, timeout=10)
    check(f"a request for {large} gets 503 naming the limit", answer.status_code == 503 and "--model-memory-limit" in answer.json()["error"], answer.text)
    small_body = IRIS if small == "iris" else mlp
    answer = http.post(f"{url}/v2/models/{small}/infer", json=small_body, timeout=10)
    check(f"{small} serves", answer.status_code == 200, (answer.status_code, answer.text, index(http, url)))
    stop(process)
finally:
    shutil.rmtree(work, ignore_errors=True)

check.finish()
