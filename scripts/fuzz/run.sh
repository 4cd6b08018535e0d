#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder of untrusted bytes with libFuzzer (FuzzTargets in
# Sources/ServalFuzzTargets), built with -sanitize=fuzzer,address in its own build folder:
#
#   scripts/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      # default 600 s each (CI passes 30), every target
#
# Each target starts from its committed seeds (Fuzz/corpus/TARGET) plus what earlier runs found (kept in the
# build folder), and stops at the first crash, leak or timeout, which it leaves in $out/findings/TARGET/.
# Copy such an input to Fuzz/regressions/TARGET/ and fix the decoder: FuzzRegressionTests replays it.
# The summary line per target gives executions, coverage (libFuzzer's cov/ft) and the corpus size.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-600}
shift || true
build=${SERVAL_FUZZ_BUILD:-$HOME/.cache/serval/fuzz-build}
out=$build/runs
mkdir -p "$build" "$out"

echo "== building serval-fuzz (-sanitize=fuzzer,address) in $build"
SERVAL_FUZZ=1 swift build --build-path "$build" --product serval-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld 2>&1 \
  | grep -E "error|warning: .*Fuzz|Compiling serval-fuzz|Build complete" || true
fuzzer=$build/debug/serval-fuzz
[ -x "$fuzzer" ] || { echo "serval-fuzz did not build"; exit 1; }

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(kserve-json binary-tensor tfserving grpc-infer npy onnx config-yaml)
failed=()
for target in "${targets[@]}"; do
  corpus=$out/corpus/$target findings=$out/findings/$target
  mkdir -p "$corpus" "$findings"
  log=$out/$target.log
  # -rss_limit_mb: a decoder that allocates what the input declares (not what it holds) is a finding.
  if "$fuzzer" "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
      -artifact_prefix="$findings/" "$corpus" "Fuzz/corpus/$target" >"$log" 2>&1; then
    status=clean
  else
    status=FINDING
    failed+=("$target")
  fi
  runs=$(grep -aE "^stat::number_of_executed_units" "$log" | awk '{print $2}')
  coverage=$(grep -aE "^#[0-9]+" "$log" | tail -1 | grep -aoE "cov: [0-9]+ ft: [0-9]+ corp: [0-9]+" || true)
  echo "$target: $status, ${runs:-?} executions in ${seconds}s, ${coverage:-no coverage line}"
  if [ "$status" = FINDING ]; then
    grep -aE "ERROR|SUMMARY|Fatal error|Test unit written" "$log" | head -8
    ls "$findings"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "findings in: ${failed[*]} (inputs under $out/findings/)"
  exit 1
fi
echo "fuzz: every target clean"
