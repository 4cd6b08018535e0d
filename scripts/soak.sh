#!/usr/bin/env bash
# Soak test: load/unload cycles with inference in between, then mixed REST and gRPC load with bad requests mixed
# in, sampling the server's RSS and open file descriptors throughout (scripts/soak/soak.py).
#
#   scripts/soak.sh [PATH_TO_SERVAL] [--cycles 1000] [--seconds 600]      # the long form (defaults)
#
# Passes when RSS after warm-up grows less than 5% and the descriptors return to their baseline.
# CI runs a shortened form (--cycles 200 --seconds 60).
set -euo pipefail
cd "$(dirname "$0")/.."
serval=${1:-.build/debug/serval}
shift || true
exec .venv/bin/python scripts/soak/soak.py "$serval" "$@"
