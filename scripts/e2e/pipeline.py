"""The retraining loop end to end, on examples/pipeline against a real `serval serve --pipelines`.

    python scripts/e2e/pipeline.py PATH_TO_SERVAL

1. the server runs with monitoring on and the pipeline loaded
2. a manual run trains three candidates (two at a time), and v1 becomes stable with its lineage
3. the world shifts: new data files, traffic from the new distribution, and feedback showing the accuracy drop
4. the monitor's alert triggers a run on the new data
5. the candidate beats the champion on the new eval set and is registered with lineage (data md5s as DVC's)
6. the canary gets traffic and the progressive policy promotes it
7. /v2/models/iris/history holds the chain: alert trigger -> register -> traffic -> run end -> promote
8. a second alert within the cooldown is refused, with the reason in the history, and starts nothing
9. a deliberately worse candidate (C so small it cannot fit) is blocked by the gate: exit 3, nothing registered
10. quantize: a small neural network's int8 model stays within the distance and passes the gates, so it is the one
    registered (a model of its own, deployed directly)
11. without a server: `--model-repository` and `--data-dir` run against the repository and store directly; a server
    started on them afterwards serves the canary and lists the runs
Prints one "ok"/"FAIL" line per check and exits non-zero on any failure.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, free_port  # noqa: E402

serval = os.path.abspath(sys.argv[1])
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
check = Checks()
began = time.monotonic()
work = tempfile.mkdtemp(prefix="serval-e2e-pipeline-")
folder = os.path.join(work, "pipeline")
shutil.copytree(os.path.join(root, "examples/pipeline"), folder, ignore=shutil.ignore_patterns(".serval", ".dvc", "data", "serval-data"))
sys.path.insert(0, folder)
import make_data  # noqa: E402  (the example's generator: the traffic comes from the same distributions)

python_bin = os.path.dirname(sys.executable)
environment = dict(os.environ, PATH=python_bin + os.pathsep + os.environ.get("PATH", ""))
subprocess.run([sys.executable, "make_data.py"], cwd=folder, check=True)

# Small windows and a fast promotion, so the loop closes in seconds; the rest is the example as shipped.
with open(os.path.join(folder, "models/iris/config.yaml"), "w") as handle:
    handle.write("""monitoring:
  reference: reference.csv
  features: [sepal_length, sepal_width, petal_length, petal_width]
  window: 200
  drift: {method: auto, share: 0.5}
  performance: {task: classification, label_column: species, min_accuracy: 0.9}
  alert: {for_windows: 1}
""")
pipeline_file = os.path.join(folder, "pipeline.yaml")
text = open(pipeline_file).read()
text = text.replace("interval_secs: 60", "interval_secs: 1").replace("min_requests: 200", "min_requests: 20")
open(pipeline_file, "w").write(text)

port = free_port()
url = f"http://127.0.0.1:{port}"
log_path = os.path.join(work, "serve.log")
server = subprocess.Popen([serval, "serve", "--model-repository", os.path.join(folder, "models"), "--data-dir", os.path.join(work, "data"),
                           "--http-port", str(port), "--grpc-port", "0", "--monitoring-resolution-secs", "1", "--pipelines", folder],
                          stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=environment)
http = requests.Session()


def poll(condition, what, attempts=600, pause=0.1):
    """Polls (bounded) until `condition()` gives a true value, which it returns; None when it never does."""
    for _ in range(attempts):
        if server.poll() is not None:
            raise SystemExit(f"serval exited:\n{open(log_path).read()}")
        value = condition()
        if value:
            return value
        time.sleep(pause)
    print(f"gave up waiting for {what}", flush=True)
    return None


def live():
    try:
        return http.get(url + "/v2/health/live", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def history():
    """The model's history, oldest first."""
    return list(reversed(http.get(f"{url}/v2/models/iris/history?limit=1000", timeout=10).json()["entries"]))


def runs():
    return http.get(f"{url}/v2/pipelines/iris-retrain/runs", timeout=10).json()["runs"]


def send(features, prefix):
    """One request per row with its own id; returns (id, predicted label, version) per row."""
    answers = []
    for index, row in enumerate(features):
        body = {"id": f"{prefix}-{index}", "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [float(v) for v in row]}]}
        answer = http.post(f"{url}/v2/models/iris/infer", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        reply = answer.json()
        label = next(o for o in reply["outputs"] if o["name"] == "label")["data"][0]
        answers.append((body["id"], label, reply.get("model_version")))
    return answers


def md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def run_cli(*arguments):
    return subprocess.run([serval, "pipeline", "run", *arguments, "--url", url], cwd=folder, env=environment, capture_output=True, text=True, timeout=300)


try:
    # 1. serving with monitoring on; the model has no version yet, so the server is live but not ready.
    poll(live, "the server to listen")
    listed = http.get(f"{url}/v2/pipelines", timeout=10).json()["pipelines"]
    check("1. the server loaded the pipeline with its alert triggers",
          [(p["name"], p["model"], p["on_alert"]) for p in listed] == [("iris-retrain", "iris", ["accuracy", "dataset_drift"])], listed)
    settings = http.get(f"{url}/v2/models/iris/monitoring", timeout=10)
    check("1. monitoring is on for iris", settings.status_code == 200 and "reference" in settings.text, settings.text)

    # 2. the first run, by hand.
    first = run_cli(pipeline_file, "--jobs", "2")
    check("2. the manual run succeeds", first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:])
    check("2. three candidates trained, their output streamed with a step prefix",
          all(f"[train[C={c}]] trained on 600 rows" in first.stdout for c in ("0.1", "1.0", "10.0")), first.stdout[-1500:])
    labels = http.get(f"{url}/v2/models/iris/labels", timeout=10).json()["labels"]
    check("2. v1 is stable (no champion: labelled directly)", labels == {"stable": "1"}, labels)
    poll(lambda: http.get(url + "/v2/health/ready", timeout=1).status_code == 200, "readiness")
    versions = http.get(f"{url}/v2/models/iris/versions", timeout=10).json()["versions"]
    lineage = versions[0]["metadata"]
    check("2. v1's lineage: data md5s, params, deps, pipeline and run",
          {d["name"]: d["md5"] for d in lineage["datasets"]} == {"train": md5(os.path.join(folder, "data/train.csv")), "eval": md5(os.path.join(folder, "data/eval.csv"))}
          and lineage["source"]["pipeline"] == "iris-retrain" and lineage["source"]["deps"] == {"train.py": md5(os.path.join(folder, "train.py"))}
          and "C" in lineage["params"] and lineage["metrics"]["accuracy"] >= 0.9, lineage)
    again = run_cli(pipeline_file)
    check("2. a rerun with nothing changed ends unchanged, every step skipped",
          again.returncode == 0 and "unchanged: iris v1" in again.stdout and runs()[0]["status"] == "unchanged"
          and all(s["status"] == "skipped" for s in runs()[0]["steps"]), again.stdout[-1500:])

    # 3. the world shifts: new data, shifted traffic, and feedback with the true labels.
    subprocess.run([sys.executable, "make_data.py", "--shifted"], cwd=folder, check=True)
    rng = np.random.default_rng(11)
    features, species = make_data.rows(200, True, rng)
    answers = send(features, "shifted")
    feedback = http.post(f"{url}/v2/models/iris/feedback", json={"items": [{"id": i, "ground_truth": int(t)} for (i, _, _), t in zip(answers, species)]}, timeout=30)
    realised = np.mean([int(label) == int(truth) for (_, label, _), truth in zip(answers, species)])
    check("3. shifted traffic served by v1, feedback accepted, realised accuracy below 0.9",
          feedback.status_code == 200 and realised < 0.9 and {v for _, _, v in answers} == {"1"}, f"{feedback.text} accuracy {realised}")

    # 4. the alert triggers a run.
    def triggered():
        return next((e for e in history() if e["action"] == "pipeline_trigger" and e["details"]["started"]
                     and e["details"]["trigger"].startswith("alert ")), None)
    trigger = poll(triggered, "an alert to trigger a run")
    check("4. an alert started a run, recorded in the history with its alert", trigger is not None and trigger["details"].get("run_id"), trigger)
    run_id = trigger["details"]["run_id"] if trigger else ""
    run = poll(lambda: next((r for r in runs() if r["id"] == run_id and r["status"] != "running"), None), "the triggered run to end", attempts=900)
    check("4. the triggered run succeeded", run is not None and run["status"] == "succeeded", run)
    run = run or {}

    # 5. it beat the champion and was registered with the new data's hashes.
    check("5. the candidate beat the champion on the new eval set",
          run.get("champion_version") == 1 and run["metrics"]["accuracy"] > run["champion_metrics"]["accuracy"]
          and any(g["rule"].startswith("delta vs champion") and g["outcome"] == "passed" for g in run["gates"]), run.get("gates"))
    versions = http.get(f"{url}/v2/models/iris/versions", timeout=10).json()["versions"]
    second = next((v for v in versions if v["version"] == "2"), None)
    check("5. v2 registered with lineage: the new data's md5s, the run, the champion's metrics",
          second is not None and {d["name"]: d["md5"] for d in second["metadata"]["datasets"]}["train"] == md5(os.path.join(folder, "data/train.csv"))
          and second["metadata"]["source"]["run_id"] == run_id and "accuracy" in second["metadata"]["champion_metrics"], second)

    # 6. the canary gets traffic, and progressive promotion moves stable to it.
    traffic = http.get(f"{url}/v2/models/iris/traffic", timeout=10).json()
    check("6. the deploy set a guarded 10% canary with progressive steps",
          traffic.get("progressive", {}).get("steps") == [10, 50, 100] and {r.get("version") or r.get("label"): r["weight"] for r in traffic["routes"]} == {"stable": 90, "2": 10},
          traffic)
    served = set()

    def promoted():
        features, _ = make_data.rows(50, True, rng)
        served.update(v for _, _, v in send(features, f"canary-{time.monotonic_ns()}"))
        return next((e for e in history() if e["action"] == "promote"), None)
    promotion = poll(promoted, "promotion", attempts=120, pause=0)
    check("6. the canary served requests and was promoted", promotion is not None and "2" in served, f"{promotion} versions served {served}")
    # The promote entry and the label move commit together; the labels endpoint answers from the in-memory table,
    # which the registry reloads right after that commit, so it may trail the history by that reload (bounded wait).
    def stable_is_v2():
        labels = http.get(f"{url}/v2/models/iris/labels", timeout=10).json()["labels"]
        return labels if labels.get("stable") == "2" else None
    labels = poll(stable_is_v2, "stable to become v2", attempts=100)
    check("6. stable is v2", labels is not None, http.get(f"{url}/v2/models/iris/labels", timeout=10).json()["labels"])

    # 7. the chain in the history.
    entries = history()

    def position(match):
        return next((index for index, e in enumerate(entries) if match(e)), None)
    chain = [position(lambda e: e["action"] == "pipeline_trigger" and e["details"].get("run_id") == run_id),
             position(lambda e: e["action"] == "register" and e["details"].get("version") == "2"),
             position(lambda e: e["action"] == "traffic" and "2" in str(e["details"])),
             position(lambda e: e["action"] == "pipeline_run" and e["details"].get("run_id") == run_id and e["details"]["status"] == "succeeded"),
             position(lambda e: e["action"] == "promote" and e["details"].get("to") == "2")]
    check("7. history: alert trigger -> register v2 -> traffic -> run end -> promote, in order",
          None not in chain and chain == sorted(chain), f"{chain}: {[(e['action'], e['details']) for e in entries]}")

    # 8. another alert within the cooldown: v2 gets wrong labels, its accuracy alert fires, and nothing starts.
    count = len(runs())
    features, species = make_data.rows(200, True, rng)
    answers = send(features, "after")
    http.post(f"{url}/v2/models/iris/feedback", json={"items": [{"id": i, "ground_truth": (int(label) + 1) % 3} for i, label, _ in answers]}, timeout=30)
    refused = poll(lambda: next((e for e in history() if e["action"] == "pipeline_trigger" and not e["details"]["started"]
                                 and "cooldown" in (e.get("reason") or "")), None), "a refused trigger")
    check("8. a second alert within the cooldown is refused with its reason", refused is not None and refused["details"]["trigger"].startswith("alert"), refused)
    check("8. and no run started", len(runs()) == count, runs()[:2])

    # 9. a crippled candidate is blocked by the gate.
    worse = os.path.join(folder, "worse.yaml")
    open(worse, "w").write(open(pipeline_file).read().replace("  matrix: {C: [0.1, 1.0, 10.0]}\n", "").replace("C: 1.0", "C: 0.000001"))
    before = len(http.get(f"{url}/v2/models/iris/versions", timeout=10).json()["versions"])
    blocked = run_cli(worse)
    check("9. the worse candidate is blocked: exit 3 and the candidate-against-champion table",
          blocked.returncode == 3 and "gate failed: accuracy" in blocked.stderr and "candidate  champion" in blocked.stdout, blocked.stdout[-1500:] + blocked.stderr[-500:])
    after = http.get(f"{url}/v2/models/iris/versions", timeout=10).json()["versions"]
    check("9. nothing registered, stable unchanged", len(after) == before and http.get(f"{url}/v2/models/iris/labels", timeout=10).json()["labels"]["stable"] == "2",
          [v["version"] for v in after])
    check("9. the blocked run is recorded with its gate verdicts", runs()[0]["status"] == "blocked" and any(g["outcome"] == "failed" for g in runs()[0]["gates"]), runs()[0])

    # 10. quantize on a model with MatMul weights.
    mlp = os.path.join(folder, "mlp.yaml")
    open(mlp, "w").write(open(pipeline_file).read().replace("name: iris-retrain", "name: iris-mlp").replace("model: iris\n", "model: iris-mlp\n")
                         .replace("  matrix: {C: [0.1, 1.0, 10.0]}\n", "").replace("params: {C: 1.0, max_iter: 200}", "params: {C: 1.0, max_iter: 400, model: mlp}")
                         .replace("deploy:\n  strategy: canary", "quantize: {enabled: true, calibration: \"${data.train}\", max_cosine_distance: 0.01}\ndeploy:\n  strategy: direct"))
    quantized = run_cli(mlp)
    record = http.get(f"{url}/v2/pipelines/iris-mlp/runs", timeout=10).json()["runs"][0]
    step = next((s for s in record["steps"] if s["name"] == "quantize"), {})
    registered = http.get(f"{url}/v2/models/iris-mlp/versions", timeout=10).json()["versions"]
    check("10. the int8 model is kept within max_cosine_distance and registered",
          quantized.returncode == 0 and record["quantized"] is True and step.get("detail", "").startswith("int8 kept")
          and registered and registered[0]["metadata"]["tags"]["quantized"] == "true"
          and registered[0]["sha256"] == step.get("outputs", {}).get("int8_sha256"), quantized.stdout[-1500:] + quantized.stderr[-500:])
finally:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()

try:
    # 11. no server: the repository and the store directly.
    offline = os.path.join(work, "offline")
    shutil.copytree(os.path.join(root, "examples/pipeline"), offline, ignore=shutil.ignore_patterns(".serval", ".dvc", "data", "serval-data"))
    state = os.path.join(work, "offline-state")

    def run_local(*arguments):
        subprocess.run([sys.executable, "make_data.py", *arguments], cwd=offline, check=True)
        return subprocess.run([serval, "pipeline", "run", "pipeline.yaml", "--model-repository", "models", "--data-dir", state],
                              cwd=offline, env=environment, capture_output=True, text=True, timeout=300)
    first_local, second_local = run_local(), run_local("--shifted")
    check("11. two runs without a server: v1 stable, then v2 as a canary",
          first_local.returncode == 0 and "label stable -> v1" in first_local.stdout and second_local.returncode == 0
          and "traffic stable 90%, v2 10%" in second_local.stdout, first_local.stdout[-800:] + second_local.stdout[-800:] + second_local.stderr[-500:])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([serval, "serve", "--model-repository", os.path.join(offline, "models"), "--data-dir", state, "--http-port", str(port), "--grpc-port", "0"],
                              stdout=open(log_path, "a"), stderr=subprocess.STDOUT, env=environment)
    poll(lambda: live() and http.get(url + "/v2/health/ready", timeout=1).status_code == 200, "the second server")
    weights = {r.get("version") or r.get("label"): r["weight"] for r in http.get(f"{url}/v2/models/iris/traffic", timeout=10).json()["routes"]}
    listed = [r["status"] for r in runs()]
    check("11. a server on that store serves the canary and lists both runs", weights == {"stable": 90, "2": 10} and listed == ["succeeded", "succeeded"],
          f"{weights} {listed}")
finally:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    elapsed = time.monotonic() - began
    print(f"pipeline e2e took {elapsed:.0f} s", flush=True)
    if check.failures:
        print(open(log_path).read()[-6000:])
    shutil.rmtree(work, ignore_errors=True)
check.finish()
