#!/usr/bin/env bash
# Builds serval in release and runs bench/replicas.py (1 replica against 3 behind nginx, sharing a throwaway
# PostgreSQL); results go to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -x /usr/sbin/nginx ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; }
swift build -c release --product serval
pg_dir=$(mktemp -d /tmp/serval-bench-pg.XXXXXX)
pg_url=$(scripts/postgres.sh start "$pg_dir")
trap 'scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
database=${pg_url%/*}/replicas_bench
psql -q "$pg_url" -c "CREATE DATABASE replicas_bench"
python3 bench/replicas.py "$database" "$@"
