#!/usr/bin/env bash
# Checks that the CLI turns bad input into a one-line error and a non-zero exit, never a crash or hang.
set -uo pipefail
serval=${1:?usage: cli-checks.sh PATH_TO_SERVAL}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fixtures=Tests/Fixtures
failures=0

# expect_error NAME PATTERN COMMAND...: exit code must be 1, stderr one line matching PATTERN.
expect_error() {
  local name=$1 pattern=$2
  shift 2
  timeout 60 "$@" >"$work/out" 2>"$work/err"
  local code=$?
  local lines
  lines=$(grep -c . "$work/err")
  if [ "$code" -ne 1 ] || [ "$lines" -ne 1 ] || ! grep -q -- "$pattern" "$work/err"; then
    echo "FAIL $name: exit $code, stderr:"; cat "$work/err"
    failures=$((failures + 1))
  else
    echo "ok   $name: $(cat "$work/err")"
  fi
}

head -c 4096 /dev/urandom >"$work/random.onnx"
head -c 3000 "$fixtures/lenet/model.onnx" >"$work/truncated.onnx"
printf '{"shape":[1,4],"datatype":"INT64","data":[1,2,3,4]}' >"$work/int.json"
printf '{"shape":[4],"datatype":"FP32","data":[1,2,3,4]}' >"$work/rank1.json"
printf '{"shape":[1,3],"datatype":"FP32","data":[1,2,3]}' >"$work/short.json"

expect_error "random bytes" "not a valid ONNX model" "$serval" inspect "$work/random.onnx"
expect_error "truncated file" "not a valid ONNX model" "$serval" run "$work/truncated.onnx"
expect_error "missing file" "cannot read" "$serval" inspect "$work/none.onnx"
expect_error "unsupported ops" "unsupported operators: ai.onnx:NonMaxSuppression (opset 17), com.example:FancyOp (opset 1)" \
  "$serval" run "$fixtures/unsupported_ops.onnx" --input "x=$work/short.json"
model=$fixtures/sklearn_logistic_regression/model.onnx
expect_error "wrong dtype" "input 'X' has datatype int64, expected float" "$serval" run "$model" --input "X=$work/int.json"
expect_error "wrong rank" "input 'X' has shape \[4\], expected" "$serval" run "$model" --input "X=$work/rank1.json"
expect_error "wrong shape" "input 'X' has shape \[1, 3\], expected" "$serval" run "$model" --input "X=$work/short.json"
expect_error "missing input" "missing input 'X'" "$serval" run "$model"
expect_error "bad input file" "use a .npy, .pb or .json file" "$serval" run "$model" --input "X=$work/random.onnx"

if "$serval" run "$model" --input X=examples/inputs/iris.json >"$work/out" 2>"$work/err" && grep -q '"label"' "$work/out"; then
  echo "ok   good input: $(head -c 120 "$work/out")"
else
  echo "FAIL good input"; cat "$work/err"; failures=$((failures + 1))
fi
# Map outputs (ZipMap) are BYTES, as the REST and gRPC frontends send them: one codec for all three.
zipmap=$fixtures/sklearn_decision_tree_zipmap
if "$serval" run "$zipmap/model.onnx" --input "X=$zipmap/input_0.npy" >"$work/out" 2>"$work/err" \
  && grep -q '"name":"output_probability","datatype":"BYTES"' "$work/out"; then
  echo "ok   map outputs are BYTES"
else
  echo "FAIL map outputs are BYTES: $(head -c 300 "$work/out")"; cat "$work/err"; failures=$((failures + 1))
fi

# serval data: outside a DVC project, and a path that is not tracked or does not exist (run from the project folder).
mkdir -p "$work/data-project" && printf 'a\n1\n' >"$work/data-project/rows.csv"
absolute_serval=$(cd "$(dirname "$serval")" && pwd)/$(basename "$serval")
pushd "$work/data-project" >/dev/null
expect_error "data status outside a project" "no folder from .* holds a .dvc/ project" "$absolute_serval" data status --data-dir "$work/state"
expect_error "data add of a missing path" "does not exist" "$absolute_serval" data add none.csv --data-dir "$work/state"
"$absolute_serval" data add rows.csv --data-dir "$work/state" >/dev/null && printf 'b\n2\n' >other.csv
expect_error "data status of an untracked path" "other.csv is not tracked" "$absolute_serval" data status other.csv --data-dir "$work/state"
popd >/dev/null

# serval pipeline: a mistake in a pipeline file is named by line and field; evaluate names an absent label column.
printf 'name: p\nmodle: iris\n' >"$work/pipeline.yaml"
expect_error "pipeline file with an unknown field" "pipeline.yaml:2: modle: unknown field" "$serval" pipeline check "$work/pipeline.yaml"
expect_error "evaluate without the label column" "label_column 'kind' is not a column" \
  "$serval" pipeline evaluate examples/models/iris/1/model.onnx --data examples/models/iris/reference.csv --label-column kind
printf 'name: p\nmodel: iris\ndata: {train: t.csv, eval: e.csv}\ntrain:\n  run: python train.py --out ${outputs.modle}\nevaluate: {label_column: y, metrics: [accuracy]}\ndeploy: {strategy: direct}\n' >"$work/typo.yaml"
expect_error "pipeline run with an unknown variable" 'typo.yaml:5: train.run: unknown variable ${outputs.modle}' "$serval" pipeline run "$work/typo.yaml"
sed 's/outputs.modle/outputs.model/' "$work/typo.yaml" >"$work/ok.yaml" && touch "$work/t.csv" "$work/e.csv"
expect_error "pipeline run without a server" "cannot reach http://127.0.0.1:9" "$serval" pipeline run "$work/ok.yaml" --url http://127.0.0.1:9
# The CPU budget honours the affinity mask (taskset), not only the cgroup quota: one CPU, one thread.
taskset -c 0 "$serval" serve --model-repository examples/models --http-port 0 --grpc-port 0 >"$work/taskset.log" 2>&1 &
serve_pid=$!
for _ in $(seq 300); do grep -q "cpu budget" "$work/taskset.log" && break; sleep 0.1; done
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null
if grep -q "cpus=1 sources=.*affinity 1" "$work/taskset.log"; then
  echo "ok   taskset -c 0 gives a budget of 1 CPU: $(grep -o 'cpus=1 sources=[^[]*' "$work/taskset.log")"
else
  echo "FAIL taskset -c 0: $(grep "cpu budget" "$work/taskset.log")"; failures=$((failures + 1))
fi
# serval tune: its errors name the flag; --quick on iris sweeps and recommends (JSON in the documented shape).
expect_error "tune of an unknown model" "no model 'nope' in examples/models" "$serval" tune --model-repository examples/models --model nope --quick
expect_error "tune with a bad concurrency" "--concurrency takes positive integers separated by commas, e.g. 1,4,16, got '1,x'" \
  "$serval" tune --model-repository examples/models --model iris --concurrency 1,x
if "$serval" tune --model-repository examples/models --model iris --quick --json >"$work/tune.json" 2>"$work/tune.log" && python3 - "$work/tune.json" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
configs, best = result["configs"], result["recommendation"]
distinct = {tuple(sorted(row["config"].items())) for row in configs}
# 2 layouts x (no batching, batch 32), plus the model's current configuration, each at concurrency 1 and 16.
assert len(distinct) in (4, 5) and len(configs) == 2 * len(distinct), len(configs)
for row in configs:
    assert set(row) == {"config", "concurrency", "throughput_rps", "p50_ms", "p99_ms", "cpu_us_per_request"}, row
    assert row["config"]["instance_count"] * row["config"]["threads_per_instance"] <= 2 and row["throughput_rps"] > 0, row
assert best["within_budget"] and best["p99_ms"] <= 10 and best["per_replica_capacity_rps"] == int(best["throughput_rps"] * 0.8), best
fastest = max(r["throughput_rps"] for r in configs if r["p99_ms"] <= 10)
# The fastest within budget, unless the current configuration is within 5% of it (then that stays).
assert best["throughput_rps"] == fastest or best["throughput_rps"] * 1.05 >= fastest, (best, fastest)
print(f"ok   serval tune --quick on iris recommends {best['config']} at {best['throughput_rps']:.0f} req/s, p99 {best['p99_ms']} ms")
PY
then :; else echo "FAIL serval tune --quick on iris: $(tail -5 "$work/tune.log") $(head -c 400 "$work/tune.json")"; failures=$((failures + 1)); fi
# serval auth new-key: the key is printed once, and the auth.yaml line holds its SHA-256 (checked with Python's hashlib).
expect_error "auth new-key with an unknown scope" "--scopes: unknown scope 'write'" "$serval" auth new-key app --scopes infer,write
if "$serval" auth new-key scoring-app --scopes infer,read --models iris >"$work/key.txt" && python3 - "$work/key.txt" <<'PY'
import hashlib, re, sys
text = open(sys.argv[1]).read()
key = re.search(r"key \(shown once; store it as a secret\): (sk_[A-Za-z0-9_-]{43})\n", text).group(1)
line = re.search(r'- \{name: scoring-app, sha256: "([0-9a-f]{64})", scopes: \[infer, read\], models: \[iris\]\}', text)
assert line and line.group(1) == hashlib.sha256(key.encode()).hexdigest(), text
print("ok   serval auth new-key prints an sk_ key and the auth.yaml line with its SHA-256")
PY
then :; else echo "FAIL serval auth new-key: $(cat "$work/key.txt")"; failures=$((failures + 1)); fi
[ "$failures" -eq 0 ] || { echo "$failures CLI check(s) failed"; exit 1; }
