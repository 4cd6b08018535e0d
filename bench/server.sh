#!/usr/bin/env bash
# Builds serval in release and runs bench/server.py (serval vs MLServer vs Flask+onnxruntime); results go to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if [ ! -x .venv-bench/bin/mlserver ]; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q onnx==1.23.2 onnxruntime==1.32.0 mlserver==1.7.1 uvloop==0.21.0 flask gunicorn scikit-learn skl2onnx requests
fi
swift build -c release --product serval
.venv-bench/bin/python bench/server.py "$@"
