"""What the end-to-end scripts share: one "ok"/"FAIL" line per check, a closing "N passed, N failed" line, free
loopback ports, and starting `serval serve` on a copy of the example models."""
import os
import shutil
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Checks:
    def __init__(self):
        self.passes = 0
        self.failures = 0

    def __call__(self, name, condition, detail=""):
        print(("ok   " if condition else "FAIL ") + name + ("" if condition else f": {detail}"), flush=True)
        if condition:
            self.passes += 1
        else:
            self.failures += 1

    def finish(self):
        print(f"{self.passes} passed, {self.failures} failed")
        sys.exit(1 if self.failures else 0)


def wait_ready(url, process, log_path, get, attempts=300):
    """Waits (bounded, 0.1 s a try) until `url` answers /v2/health/ready with 200; exits with the log if the
    process dies first."""
    for _ in range(attempts):
        if process.poll() is not None:
            raise SystemExit(f"serval exited early:\n{open(log_path).read()}")
        try:
            if get(url + "/v2/health/ready", timeout=1).status_code == 200:
                return
        except Exception:  # not listening yet
            pass
        time.sleep(0.1)
    raise SystemExit(f"serval at {url} did not become ready")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, seconds, pause=0.05):
    """Polls `condition` (bounded by `seconds`) until it holds; whether it did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(pause)
    return False


def example_repository(work):
    """A copy of examples/models under `work`, for a script that changes what is served; its path."""
    repository = os.path.join(work, "models")
    shutil.copytree(os.path.join(ROOT, "examples", "models"), repository)
    return repository


def start_serval(serval, work, repository, *flags, name="serval", http_port=None, grpc_port=0):
    """Starts `serval serve` on `repository` with its own data folder (`work`/data-NAME) and log (`work`/NAME.log),
    on `http_port` (default: a free one) and `grpc_port` (0: any); returns (process, http_port, log_path).
    Does not wait: `wait_ready` does, or the caller when the server speaks TLS."""
    http_port = http_port or free_port()
    log_path = os.path.join(work, f"{name}.log")
    process = subprocess.Popen(
        [serval, "serve", "--model-repository", repository, "--data-dir", os.path.join(work, f"data-{name}"),
         "--http-port", str(http_port), "--grpc-port", str(grpc_port), *flags],
        stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    return process, http_port, log_path
