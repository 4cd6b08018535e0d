#!/usr/bin/env bash
# Builds serval in release and runs bench/tune.py (serval tune's recommendation against the default config under
# the same wrk load); results go to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
swift build -c release --product serval
python3 bench/tune.py "$@"
