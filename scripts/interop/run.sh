#!/usr/bin/env bash
# Starts `serval serve` on the example repository (explicit model control, both models loaded, HTTP and gRPC),
# runs the peers' clients against it (http_clients.py, then grpc_clients.py, which also unloads and reloads
# a model), then stops it with SIGTERM and checks that it exits 0 (graceful shutdown).
set -uo pipefail
serval=${1:?usage: run.sh PATH_TO_SERVAL}
cd "$(dirname "$0")/../.."
free_port() { .venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
grpc_port=$(free_port)
log=$(mktemp)
data=$(mktemp -d)
"$serval" serve --model-repository examples/models --data-dir "$data" --http-port "$http_port" --grpc-port "$grpc_port" \
  --model-control-mode explicit --load-model iris --load-model mlp >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$log" "$data"' EXIT
# Wait (bounded) until the server answers its readiness probe and the gRPC listener is up.
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$http_port/v2/health/ready" >/dev/null && grep -q "grpc=" "$log" && break
  kill -0 $server 2>/dev/null || { echo "serval serve exited early:"; cat "$log"; exit 1; }
  sleep 0.1
done
.venv/bin/python scripts/interop/http_clients.py "127.0.0.1:$http_port" examples/models
http_status=$?
.venv/bin/python scripts/interop/grpc_clients.py "127.0.0.1:$grpc_port" "127.0.0.1:$http_port" examples/models
grpc_status=$?
kill -TERM $server
wait $server
code=$?
if [ "$code" -ne 0 ]; then echo "FAIL serval serve exited with $code after SIGTERM"; cat "$log"; exit 1; fi
echo "ok   serval serve exited 0 after SIGTERM"
[ "$http_status" -eq 0 ] && [ "$grpc_status" -eq 0 ]
