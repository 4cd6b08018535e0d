#!/usr/bin/env bash
# Starts `serval serve` on the example repository, runs the peers' clients against it (http_clients.py),
# then stops it with SIGTERM and checks that it exits 0 (graceful shutdown).
set -uo pipefail
serval=${1:?usage: run-http.sh PATH_TO_SERVAL}
cd "$(dirname "$0")/../.."
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$serval" serve --model-repository examples/models --http-port "$port" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$log"' EXIT
# Wait (bounded) until the server answers its readiness probe.
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break
  kill -0 $server 2>/dev/null || { echo "serval serve exited early:"; cat "$log"; exit 1; }
  sleep 0.1
done
.venv/bin/python scripts/interop/http_clients.py "127.0.0.1:$port" examples/models
status=$?
kill -TERM $server
wait $server
code=$?
if [ "$code" -ne 0 ]; then echo "FAIL serval serve exited with $code after SIGTERM"; cat "$log"; exit 1; fi
echo "ok   serval serve exited 0 after SIGTERM"
exit $status
