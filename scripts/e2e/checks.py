"""What the end-to-end scripts share: one "ok"/"FAIL" line per check, a closing "N passed, N failed" line, and
free loopback ports."""
import socket
import sys


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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
