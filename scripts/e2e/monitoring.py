"""Model monitoring end to end, against a running `serval serve` on the iris example.

    python scripts/e2e/monitoring.py PATH_TO_SERVAL

1. 500 in-distribution requests: no drift, no alert
2. 500 with sepal_width shifted: that feature and only it drifts, and the webhook receiver gets `firing`
   (dataset_drift, Alertmanager's payload)
3. feedback with 40% wrong labels: realised accuracy is 0.6, equal to scikit-learn's on the same pairs (accuracy,
   macro F1, precision and recall within 1e-9), and the accuracy alert fires
4. normal traffic again, with right labels: both alerts are `resolved`
then kill -9 and restart: the payload log, the window and the alert states are all still there.
Prints one "ok"/"FAIL" line per check and exits non-zero on any failure.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import requests
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, free_port, wait_ready  # noqa: E402

serval = sys.argv[1]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
check = Checks()
work = tempfile.mkdtemp(prefix="serval-e2e-monitoring-")
repository = os.path.join(work, "models")
os.makedirs(repository)
shutil.copytree(os.path.join(root, "examples/models/iris"), os.path.join(repository, "iris"))

received = []
events = []


class Receiver(BaseHTTPRequestHandler):
    """/hook takes Alertmanager webhooks; /events takes the CloudEvents of the payload logger."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/events":
            events.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
        else:
            received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


receiver = HTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
hook = f"http://127.0.0.1:{receiver.server_port}/hook"
with open(os.path.join(repository, "iris", "config.yaml"), "w") as handle:
    handle.write(f"""monitoring:
  reference: reference.csv
  features: [sepal_length, sepal_width, petal_length, petal_width]
  window: 500
  drift: {{method: auto, share: 0.25}}
  performance: {{task: classification, label_column: species, min_accuracy: 0.9}}
  alert: {{webhook: "{hook}", for_windows: 1}}
  logger: {{url: "http://127.0.0.1:{receiver.server_port}/events", mode: all}}
""")
reference = np.loadtxt(os.path.join(repository, "iris", "reference.csv"), delimiter=",", skiprows=1)
features = reference[:, :4]
port = free_port()
log_path = os.path.join(work, "serve.log")


def start():
    process = subprocess.Popen([serval, "serve", "--model-repository", repository, "--data-dir", os.path.join(work, "data"),
                                "--http-port", str(port), "--grpc-port", str(free_port()), "--monitoring-resolution-secs", "1"],
                               stdout=open(log_path, "a"), stderr=subprocess.STDOUT)
    wait_ready(url, process, log_path, requests.get)
    return process


url = f"http://127.0.0.1:{port}"
rng = np.random.default_rng(7)


def send(rows, prefix):
    """One request per row, each with its own v2 id; returns (id, predicted label) per row."""
    answers = []
    for index, row in enumerate(rows):
        body = {"id": f"{prefix}-{index}", "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [float(v) for v in row]}]}
        answer = requests.post(f"{url}/v2/models/iris/infer", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.headers["Serval-Request-Id"] == body["id"]
        answers.append((body["id"], answer.json()["outputs"][0]["data"][0]))
    return answers


def status_when(condition, what):
    """Polls the status (bounded) until `condition` holds; the last status either way."""
    status = None
    for _ in range(200):
        status = requests.get(f"{url}/v2/models/iris/monitoring/status", timeout=10).json()
        if condition(status):
            break
        time.sleep(0.1)
    return status


def alert_state(status, name):
    return next((a["state"] for a in status["alerts"] if a["alertname"] == name), None)


def alerts(name, state):
    return [a for message in received for a in message["alerts"] if a["labels"]["alertname"] == name and a["status"] == state]


def wait_for_webhook(name, state):
    for _ in range(200):
        if alerts(name, state):
            return True
        time.sleep(0.1)
    return False


class Page(HTMLParser):
    """What the rendered DOM holds: feature blocks with their name and verdict, and the SVG charts."""

    def __init__(self):
        super().__init__()
        self.features, self.svgs, self.current, self.text, self.in_h3, self.in_verdict = {}, [], None, [], False, False

    def handle_starttag(self, tag, attributes):
        attributes = dict(attributes)
        if tag == "div" and "data-feature" in attributes:
            self.current = attributes["data-feature"]
            self.features[self.current] = {"name": None, "verdict": None, "svg": False}
        if tag == "h3":
            self.in_h3 = True
        if tag == "span" and "verdict" in (attributes.get("class") or ""):
            self.in_verdict = True
        if tag == "svg":
            self.svgs.append(attributes.get("class"))
            if self.current and attributes.get("class") == "histogram":
                self.features[self.current]["svg"] = True

    def handle_endtag(self, tag):
        if tag == "h3":
            self.in_h3 = False
        if tag == "span":
            self.in_verdict = False

    def handle_data(self, data):
        self.text.append(data)
        if self.current and self.in_h3:
            self.features[self.current]["name"] = data.strip()
        if self.current and self.in_verdict:
            self.features[self.current]["verdict"] = data.strip()


def page_checks():
    """Headless Chromium renders /monitoring/iris (no JavaScript needed); the DOM shows every feature, its verdict
    and the charts, and a screenshot is saved under .build/ to look at."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        check("page: chromium is installed", False, "apt-get install chromium")
        return
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-javascript", "--window-size=1280,2200"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", f"{url}/monitoring/iris"], capture_output=True, text=True, timeout=120).stdout
    page = Page()
    page.feed(dom)
    status = requests.get(f"{url}/v2/models/iris/monitoring/status", timeout=10).json()
    for feature in status["features"]:
        shown = page.features.get(feature["name"], {})
        verdict = "drift" if feature["drifted"] else "no drift" if feature["drifted"] is not None else "insufficient data"
        check(f"page: {feature['name']} shown with its verdict ({verdict}) and histogram",
              shown.get("name") == feature["name"] and shown.get("verdict") == verdict and shown.get("svg"), shown)
    check("page: trend charts are SVG", page.svgs.count("trend") == 4, page.svgs)
    text = " ".join(page.text)
    check("page: accuracy and traffic sections", "Accuracy (realised)" in text and "Traffic and labels" in text, text[:300])
    screenshot = os.path.join(root, ".build", "monitoring-report.png")
    os.makedirs(os.path.dirname(screenshot), exist_ok=True)
    subprocess.run([chromium, *flags, f"--screenshot={screenshot}", f"{url}/monitoring/iris"], capture_output=True, timeout=120)
    check("page: screenshot saved", os.path.getsize(screenshot) > 10000 if os.path.exists(screenshot) else False, screenshot)
    index = requests.get(f"{url}/monitoring", timeout=10)
    check("page: /monitoring lists the model", index.status_code == 200 and 'href="/monitoring/iris"' in index.text, index.text[:200])


def metrics_checks():
    """Every metric the alert rules, the dashboard and the autoscalers (HPA, KEDA, prometheus-adapter) use is exposed by this server."""
    requests.put(f"{url}/v2/models/iris/traffic", json={"routes": [{"version": "1", "weight": 100}]}, timeout=10).raise_for_status()
    requests.post(f"{url}/v2/models/iris/infer", json={"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, timeout=10)
    requests.post(f"{url}/v2/models/iris/jobs", json={"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}, timeout=10)
    used = set()
    paths = ["deploy/prometheus/serval-rules.yaml", "deploy/grafana/serval-dashboard.json", "deploy/k8s/base/hpa.yaml", "deploy/k8s/base/worker.yaml",
             "deploy/k8s/overlays/keda/scaledobject.yaml", "deploy/k8s/monitoring/prometheus-adapter-values.yaml"]
    for path in paths:
        used |= set(re.findall(r"(?<![:\w])(serval_[a-z0-9_]+)", open(os.path.join(root, path)).read()))
    exposed = set()
    for _ in range(100):
        exposed = {line.split("{")[0].split(" ")[0] for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines() if line and not line.startswith("#")}
        if used <= exposed:
            break
        time.sleep(0.1)
    check(f"metrics: all {len(used)} metrics of the rules, the dashboard, the HPA, KEDA and the adapter rule are exposed", used <= exposed, sorted(used - exposed))


process = start()
try:
    # 1. In distribution: rows drawn from the reference itself.
    send(features[rng.integers(0, len(features), 500)], "normal")
    status = status_when(lambda s: s["window"]["rows"] == 500 and alert_state(s, "dataset_drift") is not None, "first window")
    check("1. the window holds 500 rows, full", status["window"]["rows"] == 500 and not status["window"]["partial"], status["window"])
    check("1. no feature drifts", not any(f["drifted"] for f in status["features"]), [(f["name"], f["score"]) for f in status["features"]])
    check("1. no dataset drift, no alert", status["dataset_drift"]["drifted"] is False and alert_state(status, "dataset_drift") == "inactive", status["alerts"])
    check("1. the receiver got nothing", not received, received)
    for _ in range(100):
        if len(events) >= 1000:
            break
        time.sleep(0.1)
    by_type = {}
    for headers, body in events:
        by_type.setdefault(headers.get("ce-type"), []).append((headers, body))
    requests_seen = by_type.get("org.kubeflow.serving.inference.request", [])
    responses_seen = by_type.get("org.kubeflow.serving.inference.response", [])
    check("1. CloudEvents: a request and a response event per request", len(requests_seen) == 500 and len(responses_seen) == 500,
          {k: len(v) for k, v in by_type.items()})
    first = requests_seen[0] if requests_seen else ({}, {})
    check("1. CloudEvents: binary mode, ce-id is the request id, the v2 body", first[0].get("ce-specversion") == "1.0"
          and first[0].get("ce-id") == first[1].get("id") and first[0].get("ce-inferenceservicename") == "iris"
          and first[1]["inputs"][0]["name"] == "X", first)

    # 2. sepal_width shifted by +1.5 cm.
    shifted = features[rng.integers(0, len(features), 500)].copy()
    shifted[:, 1] += 1.5
    answers = send(shifted, "shifted")
    status = status_when(lambda s: s["window"]["rows"] == 500 and alert_state(s, "dataset_drift") == "firing", "drift alert")
    drifted = [f["name"] for f in status["features"] if f["drifted"]]
    check("2. sepal_width and only it drifts", drifted == ["sepal_width"], [(f["name"], f["method"], f["score"]) for f in status["features"]])
    check("2. dataset drift", status["dataset_drift"]["drifted"] is True, status["dataset_drift"])
    check("2. the receiver gets dataset_drift firing", wait_for_webhook("dataset_drift", "firing"), received)
    firing = alerts("dataset_drift", "firing")[:1]
    check("2. Alertmanager payload: labels, startsAt, zero endsAt",
          bool(firing) and firing[0]["labels"]["model"] == "iris" and firing[0]["labels"]["version"] == "1"
          and firing[0]["endsAt"] == "0001-01-01T00:00:00Z" and firing[0]["startsAt"].endswith("Z"), firing)
    message = next(m for m in received if m["alerts"][0]["labels"]["alertname"] == "dataset_drift")
    check("2. Alertmanager payload: version 4, status, groupLabels", message["version"] == "4" and message["status"] == "firing"
          and message["groupLabels"]["alertname"] == "dataset_drift", message)

    # 3. Feedback: 60% right, 40% wrong.
    truth = []
    for index, (request_id, predicted) in enumerate(answers):
        truth.append(predicted if index % 5 < 3 else (predicted + 1) % 3)
    items = [{"id": request_id, "ground_truth": int(value)} for (request_id, _), value in zip(answers, truth)]
    answer = requests.post(f"{url}/v2/models/iris/feedback", json={"items": items}, timeout=30)
    check("3. feedback accepted", answer.status_code == 200 and answer.json()["rows"] == 500, answer.text)
    status = status_when(lambda s: s["performance"]["labelled_rows"] == 500 and alert_state(s, "accuracy") == "firing", "accuracy alert")
    realised = status["performance"]["realised"] or {}
    predicted = [p for _, p in answers]
    expected = {"accuracy": accuracy_score(truth, predicted), "f1": f1_score(truth, predicted, average="macro", zero_division=0),
                "precision": precision_score(truth, predicted, average="macro", zero_division=0),
                "recall": recall_score(truth, predicted, average="macro", zero_division=0)}
    check("3. realised accuracy is 0.6", abs(realised.get("accuracy", 0) - 0.6) < 1e-12, realised)
    for name, value in expected.items():
        check(f"3. {name} equals scikit-learn's", abs(realised.get(name, -1) - value) <= 1e-9, f"serval {realised.get(name)} sklearn {value}")
    check("3. the receiver gets accuracy firing", wait_for_webhook("accuracy", "firing"), [m["alerts"][0]["labels"] for m in received])
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    check("3. serval_alert_firing and serval_model_accuracy exported",
          'serval_alert_firing{model="iris",alert="accuracy"} 1' in metrics.replace('alert="accuracy",model="iris"', 'model="iris",alert="accuracy"')
          and "serval_model_accuracy{" in metrics, [line for line in metrics.splitlines() if "alert_firing" in line or "model_accuracy" in line])
    unknown = requests.post(f"{url}/v2/models/iris/feedback", json={"id": "never-sent", "ground_truth": 1}, timeout=10)
    check("3. feedback for an unknown id is 404 naming it", unknown.status_code == 404 and "never-sent" in unknown.json()["error"], unknown.text)
    wrong = requests.post(f"{url}/v2/models/iris/feedback", json={"id": answers[0][0], "ground_truth": [1, 2]}, timeout=10)
    check("3. feedback of the wrong shape is 400 naming the id", wrong.status_code == 400 and answers[0][0] in wrong.json()["error"], wrong.text)

    # 4. Back to normal, labelled right.
    answers = send(features[rng.integers(0, len(features), 500)], "recovered")
    recovered = requests.post(f"{url}/v2/models/iris/feedback", json={"items": [{"id": i, "ground_truth": int(p)} for i, p in answers]}, timeout=30)
    check("4. feedback accepted", recovered.status_code == 200 and recovered.json()["rows"] == 500, recovered.text)
    check("4. the receiver gets dataset_drift resolved", wait_for_webhook("dataset_drift", "resolved"), [m["status"] for m in received])
    check("4. the receiver gets accuracy resolved", wait_for_webhook("accuracy", "resolved"), [m["status"] for m in received])
    resolved = alerts("dataset_drift", "resolved")[:1]
    check("4. a resolved alert carries its endsAt", bool(resolved) and resolved[0]["endsAt"] != "0001-01-01T00:00:00Z", resolved)
    status = status_when(lambda s: alert_state(s, "accuracy") == "inactive", "resolved")
    check("4. no alert firing", all(a["state"] != "firing" for a in status["alerts"]), status["alerts"])
    page_checks()
    metrics_checks()
    logged = requests.get(f"{url}/v2/models/iris/logs?limit=1000", timeout=10).text.splitlines()
    check("4. the payload log holds every request", len(logged) == 1000, len(logged))
    before = len(requests.get(f"{url}/v2/models/iris/logs?limit=1000&since=0", timeout=10).text.splitlines())
finally:
    process.kill()
    process.wait(timeout=30)

# kill -9, restart: nothing lost.
process = start()
try:
    after = len(requests.get(f"{url}/v2/models/iris/logs?limit=1000&since=0", timeout=10).text.splitlines())
    check("restart: the payload log lost nothing", after == before == 1000, f"{before} → {after}")
    status = status_when(lambda s: s["window"]["rows"] == 500, "refilled")
    check("restart: the window is refilled from the log", status["window"]["rows"] == 500, status["window"])
    check("restart: alert states are kept", alert_state(status, "dataset_drift") == "inactive" and alert_state(status, "accuracy") == "inactive",
          status["alerts"])
finally:
    process.terminate()
    process.wait(timeout=30)
    receiver.shutdown()
check.finish()
