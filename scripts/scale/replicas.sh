#!/usr/bin/env bash
# Three serval replicas on one PostgreSQL behind nginx, on this machine (scripts/scale/replicas.py says what it shows).
#   scripts/scale/replicas.sh PATH_TO_SERVAL
# Installs Debian's nginx and postgresql when missing; runs its own throwaway instances of both on loopback ports.
set -euo pipefail
cd "$(dirname "$0")/../.."
serval=${1:?usage: replicas.sh PATH_TO_SERVAL}
if ! [ -x /usr/sbin/nginx ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq nginx >/dev/null
fi
pg_dir=$(mktemp -d /tmp/serval-replicas-pg.XXXXXX)
pg_url=$(scripts/postgres.sh start "$pg_dir")
trap 'scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
database=$(.venv/bin/python - "$pg_url" <<'PY'
import sys, uuid, subprocess
url = sys.argv[1]
name = "replicas_" + uuid.uuid4().hex[:8]
subprocess.run(["psql", url, "-qc", f"CREATE DATABASE {name}"], check=True)
print(url.rsplit("/", 1)[0] + "/" + name)
PY
)
.venv/bin/python scripts/scale/replicas.py "$serval" "$database" /usr/sbin/nginx
