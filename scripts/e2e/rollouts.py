"""End-to-end rollout checks against real `serval serve` processes (curl for the upload, as a user would).

    python scripts/e2e/rollouts.py PATH_TO_SERVAL POSTGRES_URL

1. register version 2 of iris with a curl multipart upload, with lineage
2. point `stable` at 1: unversioned requests follow it (model_version and the Serval-Model-Version header)
3. roll `stable` back and forward: the previous target answers the very next request
4. restart on the same data directory: labels, the traffic policy and history are kept
5. the CLI (serval models register/label/rollback/history) against the same server, dataset md5 as DVC computes it
6. kill -9 in the middle of an upload: no partial version, registered versions intact
7. two replicas on one PostgreSQL: a label moved through one is in force on the other within 2 s
8. the database goes away: inference keeps serving with the last state, a label move answers 503
Prints one "ok"/"FAIL" line per check and exits non-zero on any failure.
"""
import json
import os
import shutil
import socket
import signal
import subprocess
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, free_port, wait_ready  # noqa: E402

serval, database_url = sys.argv[1], sys.argv[2]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IRIS_ROW = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}


check = Checks()




class Server:
    def __init__(self, repository, *state_args):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="serval-e2e-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [serval, "serve", "--model-repository", repository, "--http-port", str(self.port), "--grpc-port", "0", *state_args],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_ready(self.url, self.process, self.log.name, requests.get)

    def infer_version(self):
        reply = requests.post(self.url + "/v2/models/iris/infer", json=IRIS_ROW, timeout=10)
        return reply.json().get("model_version"), reply.headers.get("Serval-Model-Version")

    def put_label(self, label, version, actor):
        return requests.put(f"{self.url}/v2/models/iris/labels/{label}", json={"version": version, "reason": "e2e"},
                            headers={"Serval-Actor": actor}, timeout=10)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        check(f"serval serve on :{self.port} exits 0 after SIGTERM", code == 0, f"exit {code}\n{open(self.log.name).read()}")


work = tempfile.mkdtemp(prefix="serval-e2e-")
repository = os.path.join(work, "models")
shutil.copytree(os.path.join(root, "examples/models"), repository)
data = os.path.join(work, "data")

server = Server(repository, "--data-dir", data)
upload = subprocess.run(
    ["curl", "-s", "-w", "\n%{http_code}", "-H", "Serval-Actor: e2e", "-F", f"model=@{repository}/iris/1/model.onnx",
     "-F", 'metadata={"metrics":{"accuracy":0.97},"datasets":[{"name":"train","path":"data/train.csv","md5":"abc"}]}',
     server.url + "/v2/models/iris/versions"], capture_output=True, text=True)
body, status = upload.stdout.rsplit("\n", 1)
check("curl multipart register answers 201 with version 2", status == "201" and json.loads(body).get("version") == "2", upload.stdout)
versions = requests.get(server.url + "/v2/models/iris/versions").json()["versions"]
check("versions list the lineage of the registered version",
      versions[-1].get("metadata", {}).get("metrics") == {"accuracy": 0.97} and versions[-1].get("registered_by") == "e2e", versions)
check("latest-1 policy: unversioned requests go to version 2", server.infer_version() == ("2", "2"), server.infer_version())
check("stable -> 1 accepted", server.put_label("stable", "1", "alice").status_code == 200)
check("unversioned requests follow stable", server.infer_version() == ("1", "1"), server.infer_version())
check("stable -> 2 accepted", server.put_label("stable", "2", "bob").status_code == 200)
rollback = requests.post(server.url + "/v2/models/iris/labels/stable/rollback", json={"reason": "bad canary"}, headers={"Serval-Actor": "oncall"})
check("rollback moves stable back to 1", rollback.status_code == 200 and rollback.json().get("version") == "1", rollback.text)
check("the next request is served by the restored stable", server.infer_version() == ("1", "1"), server.infer_version())
policy = {"routes": [{"label": "stable", "weight": 100}, {"version": "2", "weight": 0}]}
check("a traffic policy is set", requests.put(server.url + "/v2/models/iris/traffic", json=policy).status_code == 200)
arms_before = [(a["target"], a["weight"]) for a in requests.get(server.url + "/v2/models/iris/traffic").json()["arms"]]
history_before = requests.get(server.url + "/v2/models/iris/history").json()["entries"]
server.stop()

server = Server(repository, "--data-dir", data)
labels = requests.get(server.url + "/v2/models/iris/labels").json()["labels"]
check("restart keeps labels", labels == {"stable": "1"}, labels)
check("restart keeps history", requests.get(server.url + "/v2/models/iris/history").json()["entries"] == history_before)
arms_after = [(a["target"], a["weight"]) for a in requests.get(server.url + "/v2/models/iris/traffic").json()["arms"]]
check("restart keeps the traffic policy", arms_after == arms_before, arms_after)
check("restart keeps serving stable", server.infer_version() == ("1", "1"), server.infer_version())

# The CLI is a client of the same API.
import hashlib
dataset = os.path.join(work, "train.csv")
with open(dataset, "wb") as f:
    f.write(b"sepal_length,species\r\n5.1,0\r\n")  # CRLF: hashed as raw bytes, as DVC 3 does
cli = lambda *a: subprocess.run([serval, "models", *a, "--url", server.url], capture_output=True, text=True)
registered = cli("register", "iris", f"{repository}/iris/1/model.onnx", "--metric", "accuracy=0.99", "--dataset", dataset, "--actor", "cli", "--json")
check("serval models register", registered.returncode == 0 and json.loads(registered.stdout).get("version") == "3", registered.stderr)
lineage = requests.get(server.url + "/v2/models/iris/versions").json()["versions"][-1]["metadata"]
check("the CLI's dataset md5 is the file's md5", lineage["datasets"][0] == {"name": "train", "path": dataset, "md5": hashlib.md5(open(dataset, "rb").read()).hexdigest()}, lineage)
check("serval models label", cli("label", "iris", "stable", "3", "--reason", "cli").returncode == 0)
rolled = cli("rollback", "iris", "--reason", "cli rollback", "--json")
check("serval models rollback restores the previous stable", rolled.returncode == 0 and json.loads(rolled.stdout).get("version") == "1", rolled.stdout + rolled.stderr)
history = cli("history", "iris", "--json")
check("serval models history shows the rollback first", json.loads(history.stdout)["entries"][0]["reason"] == "cli rollback", history.stdout)
missing = cli("versions", "nope")
check("an unknown model is a one-line error and exit 1", missing.returncode == 1 and missing.stderr.strip().count("\n") == 0 and "unknown model 'nope'" in missing.stderr, missing.stderr)
server.stop()

# kill -9 in the middle of an upload: no partial version, no staging folder, the registered versions intact.
server = Server(repository, "--data-dir", data)
versions_before = [v["version"] for v in requests.get(server.url + "/v2/models/iris/versions").json()["versions"]]
upload = socket.create_connection(("127.0.0.1", server.port))
head = b'--cut\r\nContent-Disposition: form-data; name="model"; filename="m.onnx"\r\n\r\n'
upload.sendall(b"POST /v2/models/iris/versions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=cut\r\n"
               + f"Content-Length: {len(head) + 100000}\r\n\r\n".encode() + head + open(f"{repository}/iris/1/model.onnx", "rb").read())
server.process.kill()
server.process.wait(timeout=30)
upload.close()
check("kill -9 mid-upload leaves no staging folder", not [n for n in os.listdir(repository) if n.startswith(".")], os.listdir(repository))
server = Server(repository, "--data-dir", data)
versions_after = [v["version"] for v in requests.get(server.url + "/v2/models/iris/versions").json()["versions"]]
check("after kill -9 the registered versions are intact and no partial one appeared", versions_after == versions_before, versions_after)
server.stop()

first = Server(repository, "--database-url", database_url)
second = Server(repository, "--database-url", database_url)


def follow(target):
    """Seconds until replica 2 serves `target` unversioned, polled every 50 ms for at most 5 s (None: never)."""
    moved = time.monotonic()
    while time.monotonic() - moved < 5:
        if second.infer_version()[0] == target:
            return time.monotonic() - moved
        time.sleep(0.05)
    return None


# Without a label both replicas serve the latest version (3); each move is to a version the other one is not serving.
check("replica 2 serves the latest version (3) before any label", second.infer_version()[0] == "3", second.infer_version())
for target in ["1", "2", "1"]:
    check(f"replica 1: stable -> {target}", first.put_label("stable", target, "replica-test").status_code == 200)
    seen = follow(target)
    check(f"replica 2 serves stable = {target} within 2 s", seen is not None and seen <= 2.0, f"seen after {seen}")
    print(f"info replica 2 followed after {seen:.2f} s" if seen is not None else "info replica 2 never followed")
first.stop()
second.stop()

# 7. The database goes away: inference keeps serving with the last state read, registry writes answer 503.
outage_dir = tempfile.mkdtemp(prefix="serval-outage-pg-")  # outside work: the postgres user must reach it
outage_url = subprocess.run([os.path.join(root, "scripts/postgres.sh"), "start", outage_dir], capture_output=True, text=True, check=True).stdout.strip()
server = Server(repository, "--database-url", outage_url)
check("outage: stable -> 2 while the database is up", server.put_label("stable", "2", "before-outage").status_code == 200)
subprocess.run([os.path.join(root, "scripts/postgres.sh"), "stop", outage_dir], check=True)
check("outage: inference keeps serving the last known stable", server.infer_version() == ("2", "2"), server.infer_version())
refused = server.put_label("stable", "1", "during-outage")
check("outage: a label move answers 503 naming the store", refused.status_code == 503 and "state store" in refused.json().get("error", ""), refused.text)
check("outage: unversioned requests still follow stable = 2", all(server.infer_version()[0] == "2" for _ in range(20)))
server.stop()
shutil.rmtree(outage_dir, ignore_errors=True)
shutil.rmtree(work, ignore_errors=True)
check.finish()
