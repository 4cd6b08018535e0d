#!/usr/bin/env bash
# The whole test suite: build, CLI error-path checks, the ONNX backend conformance allow-list, the full-size encoder
# golden check, interop with the peers' clients, the rollout, traffic and jobs scripts, then swift test.
# Needs a Debian machine with the Swift toolchain; installs what is missing (apt, a Python venv in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# Python venv with the pinned onnx, used to regenerate the backend test data.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import onnx, tritonclient.http, tritonclient.grpc, onnxruntime; assert onnx.__version__ == "1.23.2"' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
fi

swift build --build-tests
serval=.build/debug/serval

# A throwaway PostgreSQL cluster on a loopback port: the store tests run against it as well as SQLite, and the
# rollout script runs two replicas on it.
pg_dir=$(mktemp -d /tmp/serval-pg.XXXXXX)
pg_url=$(scripts/postgres.sh start "$pg_dir")
trap 'scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
pg_database() { # a fresh database on the cluster, by name
  .venv/bin/python - "$pg_url" "$1" <<'PY'
import sys, subprocess
url, name = sys.argv[1], sys.argv[2]
subprocess.run(["psql", "-q", url, "-c", f"CREATE DATABASE {name}"], check=True)
print(url.rsplit("/", 1)[0] + "/" + name)
PY
}

echo "== CLI error paths"
scripts/cli-checks.sh "$serval"

echo "== ONNX backend conformance (allow-list: conformance/allow-list.txt)"
data=.build/onnx-backend-data
if [ ! -f "$data/.complete" ]; then
  rm -rf "$data"
  .venv/bin/python scripts/conformance/generate-data.py "$data" 2>/dev/null
  touch "$data/.complete"
fi
"$serval" conformance "$data" --allow-list conformance/allow-list.txt

echo "== Golden: full-size BERT-style encoder against onnxruntime"
.venv/bin/python scripts/golden/bert_encoder.py "$serval" .build/golden-bert
echo "== Golden: statically quantized CNNs, serval and onnxruntime"
.venv/bin/python scripts/golden/quantized_cnn.py "$serval" .build/golden-cnn

echo "== Interop: tritonclient (HTTP and gRPC) and TF Serving REST payloads against serval serve"
scripts/interop/run.sh "$serval"

echo "== Rollouts end to end: register, labels, rollback, restart, two replicas on one PostgreSQL"
.venv/bin/python scripts/e2e/rollouts.py "$serval" "$(pg_database e2e_rollouts)"

echo "== Traffic end to end: 80/20 split, sticky keys, shadow, guard rollback of a slow canary, progressive promotion"
.venv/bin/python scripts/e2e/traffic.py "$serval"

echo "== Async jobs end to end: kill -9 mid-run on SQLite, and one of two workers on PostgreSQL"
.venv/bin/python scripts/e2e/jobs.py "$serval" "$(pg_database e2e_jobs)"

echo "== serval batch end to end against onnxruntime (bounded here; the script's defaults run 1,000,000 rows)"
.venv/bin/python scripts/e2e/batch.py "$serval" --rows 300000 --mlp-rows 50000

echo "== swift test (store, registry and job-queue suites on SQLite and PostgreSQL)"
SERVAL_TEST_DATABASE_URL="$pg_url" swift test --skip-build
