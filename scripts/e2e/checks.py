"""What the end-to-end scripts share: one "ok"/"FAIL" line per check, a closing "N passed, N failed" line, and
free loopback ports."""
import socket
import sys
import time


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
