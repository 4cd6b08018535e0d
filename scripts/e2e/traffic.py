"""End-to-end traffic checks against a real `serval serve` (its guard runs every second, as in production).

    python scripts/e2e/traffic.py PATH_TO_SERVAL

1. an 80/20 split between stable and canary, observed from model_version over 1200 requests, within 5 points
2. sticky routing keys that never switch arms
3. a 100% shadow whose disagreements are counted, with primary answers unchanged
4. a canary much slower than stable, rolled back by the guard with an auto_rollback entry
5. a progressive rollout that ends in promote
Prints one "ok"/"FAIL" line per check and exits non-zero on any failure.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, free_port, wait_ready  # noqa: E402

serval = sys.argv[1]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
http = requests.Session()


check = Checks()


def row(values):
    return {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": list(map(float, values))}]}


def slow_classifier(path, width=512, layers=48):
    """An iris-shaped classifier (X [?,4] -> label, probabilities) that does far more work per row."""
    rng = np.random.default_rng(7)
    nodes, inits, current = [], [], "X"
    shapes = [4] + [width] * layers
    for index in range(layers):
        weight = numpy_helper.from_array((rng.standard_normal((shapes[index], width)) / np.sqrt(shapes[index])).astype(np.float32), f"w{index}")
        inits.append(weight)
        nodes += [helper.make_node("MatMul", [current, f"w{index}"], [f"m{index}"]), helper.make_node("Relu", [f"m{index}"], [f"r{index}"])]
        current = f"r{index}"
    inits.append(numpy_helper.from_array(rng.standard_normal((width, 3)).astype(np.float32), "wout"))
    nodes += [helper.make_node("MatMul", [current, "wout"], ["logits"]), helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
              helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0)]
    graph = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                               helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


work = tempfile.mkdtemp(prefix="serval-traffic-")
repository = os.path.join(work, "models")
shutil.copytree(os.path.join(root, "examples/models"), repository)
for version, source in [(2, os.path.join(root, "examples/models/iris/1/model.onnx")),
                        (3, os.path.join(root, "Tests/Fixtures/sklearn_gradient_boosting_multiclass/model.onnx")), (4, None)]:
    os.makedirs(os.path.join(repository, f"iris/{version}"))
    target = os.path.join(repository, f"iris/{version}/model.onnx")
    shutil.copy(source, target) if source else slow_classifier(target)
with open(os.path.join(repository, "iris/config.yaml"), "w") as f:
    f.write("version_policy: all\n")

port = free_port()
url = f"http://127.0.0.1:{port}"
log = open(os.path.join(work, "serve.log"), "w")
server = subprocess.Popen([serval, "serve", "--model-repository", repository, "--data-dir", os.path.join(work, "data"),
                           "--http-port", str(port), "--grpc-port", "0"], stdout=log, stderr=subprocess.STDOUT)
wait_ready(url, server, log.name, http.get, attempts=600)  # the slow canary model takes a while to load in debug builds


def label(name, version):
    return http.put(f"{url}/v2/models/iris/labels/{name}", json={"version": version, "reason": "traffic e2e"}).status_code == 200


def traffic(policy):
    reply = http.put(url + "/v2/models/iris/traffic", json=policy, headers={"Serval-Actor": "traffic-e2e"})
    return reply.status_code == 200 or print(reply.text)


def infer(body=None, key=None):
    headers = {"Serval-Routing-Key": key} if key else {}
    return http.post(url + "/v2/models/iris/infer", json=body or row([5.1, 3.5, 1.4, 0.2]), headers=headers).json()


def settled(read, expected, seconds=5):
    """`read()` once it equals `expected` (the in-memory table follows a commit within moments), else its last value."""
    deadline = time.monotonic() + seconds
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.02)
        value = read()
    return value


def current_weights():
    return {arm["target"]: arm["weight"] for arm in http.get(url + "/v2/models/iris/traffic").json()["arms"]}


def history_until(action, seconds):
    """The newest `action` entry, polling at most `seconds` (the guard runs every second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for entry in http.get(url + "/v2/models/iris/history?limit=20").json()["entries"]:
            if entry["action"] == action:
                return entry
        infer()  # keep traffic flowing, as a live service would
    return None


check("stable -> 1, canary -> 2", label("stable", "1") and label("canary", "2"))

# 1. 80/20 split
check("policy stable 80 / canary 20", traffic({"routes": [{"label": "stable", "weight": 80}, {"label": "canary", "weight": 20}]}))
served = [infer()["model_version"] for _ in range(1200)]
share = served.count("2") / len(served) * 100
check(f"canary share {share:.1f}% is within 20 +- 5", 15 <= share <= 25, served[:20])
arms = {arm["target"]: arm for arm in http.get(url + "/v2/models/iris/traffic").json()["arms"]}
check("GET traffic counts each arm's requests", arms["stable"]["requests"] + arms["canary"]["requests"] == 1200, arms)

# 2. sticky keys
switched = [key for key in (f"user-{i}" for i in range(50)) if len({infer(key=key)["model_version"] for _ in range(5)}) != 1]
check("50 routing keys x 5 requests never switch arms", not switched, switched)

# 3. shadow
check("stable 100 with a 100% shadow to version 3", traffic({"routes": [{"label": "stable", "weight": 100}], "shadow": [{"version": "3", "percent": 100}]}))
rng = np.random.default_rng(0)
rows = rng.uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5], size=(40, 4)).round(2)
unchanged, expected = True, 0
for values in rows:
    answer = infer(row(values))
    primary = http.post(url + "/v2/models/iris/versions/1/infer", json=row(values)).json()
    shadow = http.post(url + "/v2/models/iris/versions/3/infer", json=row(values)).json()
    unchanged &= answer["model_version"] == "1" and answer["outputs"] == primary["outputs"]
    expected += primary["outputs"][0]["data"] != shadow["outputs"][0]["data"]
check("primary answers are unchanged by the shadow", unchanged)
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    figures = http.get(url + "/v2/models/iris/traffic").json()["shadow_figures"][0]
    if figures["requests"] >= len(rows):
        break
    time.sleep(0.05)
check(f"shadow disagreement counted: {figures['disagreeing_rows']} of {figures['rows']} rows (expected {expected})",
      figures["rows"] == len(rows) and figures["disagreeing_rows"] == expected and expected > 0, figures)
metrics = http.get(url + "/metrics").text
check("serval_shadow_disagreements_total is exported", 'serval_shadow_disagreements_total{model="iris",version="3"}' in metrics)

# 4. a much slower canary, rolled back by the guard
check("canary -> 4 (the slow classifier)", label("canary", "4"))
guard = {"min_requests": 30, "max_error_rate": 0.05, "max_p99_latency_ratio": 2.0, "window_secs": 30}
check("stable 80 / slow canary 20 with a guard", traffic({"routes": [{"label": "stable", "weight": 80}, {"label": "canary", "weight": 20}], "guard": guard}))
entry = history_until("auto_rollback", 30)
check("the guard rolled the slow canary back", entry is not None and entry["actor"] == "guard" and entry["details"]["arm"] == "canary", entry)
if entry:
    print(f"info guard: {entry['reason']}")
weights = settled(current_weights, {"stable": 100, "canary": 0})
check("after the rollback the canary has weight 0", weights == {"stable": 100, "canary": 0}, weights)
check("and unversioned requests all go to stable", {infer()["model_version"] for _ in range(50)} == {"1"})
check("serval_traffic_rollbacks_total counted it", 'serval_traffic_rollbacks_total{model="iris"} 1' in http.get(url + "/metrics").text)

# The CLI shows the arms.
shown = subprocess.run([serval, "models", "traffic", "iris", "--url", url, "--json"], capture_output=True, text=True)
check("serval models traffic shows the rolled-back arm", shown.returncode == 0 and any(a["target"] == "canary" and a["weight"] == 0 for a in __import__("json").loads(shown.stdout)["arms"]), shown.stderr)

# 5. progressive promotion of a good canary
check("canary -> 2", label("canary", "2"))
progressive = subprocess.run([serval, "models", "traffic", "iris", "--url", url, "--route", "stable=90", "--route", "canary=10",
                              "--max-error-rate", "0.05", "--min-requests", "1000000", "--steps", "50,100", "--interval-secs", "1"],
                             capture_output=True, text=True)
check("serval models traffic sets stable 90 / canary 10, steps [50, 100] every second", progressive.returncode == 0, progressive.stderr)
entry = history_until("promote", 30)
check("the rollout ended in promote", entry is not None and entry["details"].get("to") == "2", entry)
labels = settled(lambda: http.get(url + "/v2/models/iris/labels").json()["labels"], {"stable": "2", "canary": "2"})
check("stable now points at the canary's version", labels.get("stable") == "2", labels)
weights = settled(current_weights, {"stable": 100})
check("and the policy is stable 100", weights == {"stable": 100}, weights)

server.send_signal(signal.SIGTERM)
code = server.wait(timeout=60)
check("serval serve exits 0 after SIGTERM", code == 0, open(log.name).read()[-2000:])
shutil.rmtree(work, ignore_errors=True)
check.finish()
