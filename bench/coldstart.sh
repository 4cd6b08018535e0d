#!/usr/bin/env bash
# Builds serval in release and runs bench/coldstart.py (first response after an idle unload, per model, with
# onnxruntime's load as the peer); results go to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ ! -x .venv-bench/bin/python ] || ! .venv-bench/bin/python -c 'import onnx, onnxruntime' 2>/dev/null; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q onnx==1.23.2 onnxruntime==1.32.0 requests
fi
swift build -c release --product serval
.venv-bench/bin/python bench/coldstart.py "$@"
