"""The REST API against its OpenAPI contract with schemathesis, on a live `serval serve` with authentication on:

    python scripts/contract/run.py PATH_TO_SERVAL [--max-examples N]

1. the spec is valid OpenAPI 3.1, and /openapi.json serves it
2. with an API key holding every scope, every operation in the spec: not_a_server_error (503, a documented
   "not ready", excepted), status_code_conformance, content_type_conformance, response_schema_conformance
3. without credentials, every operation: 401 with `WWW-Authenticate: Bearer`, except the health probes and
   /openapi.json (the hook check in contract_hooks.py)
The example count per operation is bounded (default 20) so the run fits CI; raise it for a longer local run.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import requests

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(here), "e2e"))
from checks import example_repository, start_serval, wait_ready  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("serval")
parser.add_argument("--max-examples", type=int, default=20)
args = parser.parse_args()
schemathesis = os.path.join(os.path.dirname(sys.executable), "schemathesis")
work = tempfile.mkdtemp(prefix="serval-contract-")

# An API key with every scope, and a rate far above what the run sends (the default bucket would answer 429s,
# which are documented but test nothing).
made = subprocess.run([args.serval, "auth", "new-key", "contract", "--scopes", "health,infer,read,admin,metrics"],
                      check=True, capture_output=True, text=True).stdout
key = re.search(r"(sk_[A-Za-z0-9_-]+)", made).group(1)
digest = re.search(r'sha256: "([0-9a-f]{64})"', made).group(1)
with open(os.path.join(work, "auth.yaml"), "w") as f:
    f.write("api_keys:\n")
    f.write(f'  - {{name: contract, sha256: "{digest}", scopes: [health, infer, read, admin, metrics], rate: 100000/s, burst: 100000}}\n')

process, port, log_path = start_serval(args.serval, work, example_repository(work), "--auth-config", os.path.join(work, "auth.yaml"))
url = f"http://127.0.0.1:{port}"
failed = []
try:
    wait_ready(url, process, log_path, requests.get)
    served = requests.get(url + "/openapi.json", timeout=10)
    if served.status_code != 200 or served.json().get("openapi") != "3.1.0":
        failed.append(f"/openapi.json: {served.status_code}")
    environment = dict(os.environ, PYTHONPATH=here, SCHEMATHESIS_HOOKS="contract_hooks")
    common = [schemathesis, "--config-file", os.path.join(here, "schemathesis.toml"), "run", url + "/openapi.json",
              "--max-examples", str(args.max_examples), "--phases", "examples,coverage,fuzzing", "--seed", "1",
              "--workers", "1", "--request-timeout", "30", "--warnings", "off", "--no-color"]
    print("== pass 1: every scope (admin key)", flush=True)
    first = subprocess.run(common + ["-H", f"Authorization: Bearer {key}", "--checks",
                           "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"],
                           env=environment)
    if first.returncode != 0:
        failed.append("pass 1 (admin key)")
    print("== pass 2: no credentials", flush=True)
    second = subprocess.run(common + ["--checks", "anonymous_gets_401,status_code_conformance,content_type_conformance"], env=environment)
    if second.returncode != 0:
        failed.append("pass 2 (no credentials)")
    if process.poll() is not None:
        failed.append(f"serval exited during the run (code {process.returncode})")
finally:
    process.terminate()
    process.wait(timeout=60)
if failed:
    print(open(log_path).read()[-4000:])
    sys.exit("contract run failed: " + ", ".join(failed))
print("contract: both passes clean")
