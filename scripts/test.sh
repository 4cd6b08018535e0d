#!/usr/bin/env bash
# The whole test suite: build, CLI error-path checks, the ONNX backend conformance allow-list, the full-size encoder
# golden check, the drift statistics against Evidently, interop with the peers' clients, the OpenAPI contract (schemathesis), TLS, fuzzing, the soak, the rollout, traffic, jobs,
# monitoring, tracing, batch, DVC, pipeline, scale-to-zero and replica scripts, the container image mirror, then swift test.
# Needs a Debian machine with the Swift toolchain; installs what is missing (apt, a Python venv in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# Python venv with the pinned onnx, used to regenerate the backend test data.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import onnx, tritonclient.http, tritonclient.grpc, onnxruntime, evidently, sklearn, skl2onnx, opentelemetry.proto, kubernetes_validate, openapi_spec_validator, schemathesis; assert onnx.__version__ == "1.23.2" and evidently.__version__ == "0.7.23" and schemathesis.__version__ == "4.32.5"' 2>/dev/null \
  || [ "$(.venv/bin/dvc --version 2>/dev/null)" != "3.67.1" ] || ! .venv/bin/hadolint --version 2>/dev/null | grep -q 2.15.1; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
fi

# Test-only tools: Chromium renders the monitoring page; promtool comes from Debian's prometheus package, unpacked
# under .build/tools rather than installed (the package would bring a service we do not want).
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
if ! command -v chromium >/dev/null 2>&1 || ! command -v kubectl >/dev/null 2>&1; then
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium kubectl >/dev/null
fi
promtool=$PWD/.build/tools/prometheus/usr/bin/promtool
if [ ! -x "$promtool" ]; then
  mkdir -p .build/tools/prometheus
  (cd .build/tools && { apt-get download prometheus 2>/dev/null || { $sudo_cmd apt-get update -qq && apt-get download prometheus; }; } \
    && dpkg-deb -x prometheus_*.deb prometheus && rm -f prometheus_*.deb)
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

echo "== Golden: drift statistics against Evidently and scipy through serval serve"
.venv/bin/python scripts/golden/drift.py "$serval" "$(mktemp -d /tmp/serval-drift.XXXXXX)"

echo "== Golden: the pipeline's evaluate metrics against scikit-learn (models exported with skl2onnx)"
.venv/bin/python scripts/golden/evaluate.py "$serval" "$(mktemp -d /tmp/serval-evaluate.XXXXXX)"

echo "== Interop: tritonclient (HTTP and gRPC) and TF Serving REST payloads against serval serve"
scripts/interop/run.sh "$serval"

echo "== Rollouts end to end: register, labels, rollback, restart, two replicas on one PostgreSQL"
.venv/bin/python scripts/e2e/rollouts.py "$serval" "$(pg_database e2e_rollouts)"

echo "== Traffic end to end: 80/20 split, sticky keys, shadow, guard rollback of a slow canary, progressive promotion"
.venv/bin/python scripts/e2e/traffic.py "$serval"

echo "== The HTTP API contract: openapi/serval.yaml is valid OpenAPI 3.1 and generated into the server; schemathesis against a live server with auth on (every scope, then no credentials)"
.venv/bin/python scripts/contract/openapi.py --check
.venv/bin/python scripts/contract/run.py "$serval" --max-examples 20

echo "== TLS end to end: curl and tritonclient (HTTP, gRPC) over TLS, SIGHUP reload, mTLS with the certificate as the principal"
.venv/bin/python scripts/e2e/tls.py "$serval"

echo "== Coverage-guided fuzzing, bounded (30 s per decoder; scripts/fuzz/run.sh 600 is the long run): libFuzzer with ASan"
scripts/fuzz/run.sh 30

echo "== Soak, shortened (scripts/soak.sh alone runs 1000 cycles and 10 minutes): RSS and descriptors under load/unload and mixed load"
scripts/soak.sh "$serval" --cycles 200 --seconds 60

echo "== Async jobs end to end: kill -9 mid-run on SQLite, and one of two workers on PostgreSQL"
.venv/bin/python scripts/e2e/jobs.py "$serval" "$(pg_database e2e_jobs)"

echo "== Alert rules (promtool check and test) and the generated Grafana dashboard"
"$promtool" check rules deploy/prometheus/serval-rules.yaml
(cd deploy/prometheus && "$promtool" test rules serval-rules-test.yaml)
python3 scripts/deploy/dashboard.py --check

echo "== Kubernetes manifests: kustomize renders, kubernetes-validate --strict, CRD schemas, probes, drain timing, QoS, flags"
.venv/bin/python scripts/deploy/prometheusrule.py --check
.venv/bin/python scripts/deploy/k8s-check.py --serval "$serval"

echo "== Monitoring end to end: drift, feedback and realised accuracy against scikit-learn, Alertmanager webhooks, the report page in Chromium, metrics used by rules and dashboard, kill -9"
.venv/bin/python scripts/e2e/monitoring.py "$serval"

echo "== Tracing end to end: spans over OTLP/gRPC to a small receiver, W3C traceparent on REST and gRPC"
.venv/bin/python scripts/e2e/tracing.py "$serval"

echo "== serval batch end to end against onnxruntime (bounded here; the script's defaults run 1,000,000 rows)"
.venv/bin/python scripts/e2e/batch.py "$serval" --rows 300000 --mlp-rows 50000

echo "== Data versions: serval data against the real dvc (each reads what the other writes)"
.venv/bin/python scripts/e2e/dvc.py "$serval" .venv/bin/dvc

echo "== Retraining pipeline end to end: manual run, alert-triggered retrain, champion comparison, canary promoted, cooldown, gate"
.venv/bin/python scripts/e2e/pipeline.py "$serval"

echo "== Scale to zero: idle unload and lazy reload, the bounded cold-start queue, the memory budget's evictions"
.venv/bin/python scripts/e2e/residency.py "$serval"

echo "== Three replicas on one PostgreSQL behind nginx: pointer changes everywhere in 2 s, jobs exactly once across kill -9, a rolling restart with 0 failures, metrics that add up"
scripts/scale/replicas.sh "$serval"

echo "== Container image without a Docker engine: the Dockerfile's steps run on this host (release build, its cache kept in ~/.cache/serval/docker-mirror), hadolint, then the image's command serves"
python3 scripts/deploy/docker-mirror.py --hadolint .venv/bin/hadolint

echo "== swift test (store, registry and job-queue suites on SQLite and PostgreSQL)"
SERVAL_TEST_DATABASE_URL="$pg_url" swift test --skip-build
