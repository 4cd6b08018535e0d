#!/usr/bin/env bash
# Builds serval in release and runs bench/engine.py (serval vs onnxruntime); results go to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ ! -x .venv-bench/bin/python ]; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q onnx==1.23.2 onnxruntime scikit-learn skl2onnx
fi
swift build -c release --product serval
.venv-bench/bin/python bench/engine.py "$@"
