"""Profiles what an API key costs the server: a plain and an `--auth-config` serval (one key, sent on every
request), each pinned to CPU 0 and recorded with `perf record -F 2000 -g` for 8 s of wrk at concurrency 16, then
the inclusive share of every authentication function in the `api-key` profile.

    python bench/auth_profile.py PATH_TO_SERVAL

Needs perf and wrk. bench/RESULTS.md ("Security cost") reports what it printed.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server as bench  # noqa: E402

AUTH_SYMBOLS = re.compile(r"Auth|Bearer|Principal|RateLimiter|RequestAccess|CredentialMemo|TaskLocal|Scope")


def main():
    serval = sys.argv[1]
    work = tempfile.mkdtemp(prefix="serval-auth-profile-")
    key, auth = bench.bench_api_key(serval, work)
    bearer = (f"Authorization: Bearer {key}",)
    for name, flags in (("plain", []), ("api-key", ["--auth-config", auth])):
        port = bench.free_port()
        process = subprocess.Popen(
            ["taskset", "-c", "0", serval, "serve", "--model-repository", bench.REPOSITORY, "--data-dir", os.path.join(work, f"data-{name}"),
             "--http-port", str(port), "--grpc-port", "0", *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(600):
                if bench.wrk_ready(port, "http", "/v2/health/ready"):
                    break
                time.sleep(0.05)
            else:
                raise SystemExit(f"{name}: never became ready")
            bench.wrk(port, "iris", 16, 2, work, "http", bearer)  # warm-up
            data = os.path.join(work, f"{name}.data")
            perf = subprocess.Popen(["perf", "record", "-F", "2000", "-g", "-p", str(process.pid), "-o", data],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            result = bench.wrk(port, "iris", 16, 8, work, "http", bearer)
            perf.send_signal(signal.SIGINT)
            perf.wait()
            print(f"{name}: {result['rps']:.0f} req/s under perf")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    report = subprocess.run(["perf", "report", "-i", os.path.join(work, "api-key.data"), "--children", "--sort", "symbol", "--stdio", "-g", "none"],
                            capture_output=True, text=True).stdout
    print("api-key: inclusive (children) and own (self) share of server CPU, authentication functions")
    for line in report.splitlines():
        if not line.startswith("#") and "%" in line and AUTH_SYMBOLS.search(line) and "GRDB" not in line and "sqlite" not in line:
            print("  " + " ".join(line.split()[:4])[:160])


if __name__ == "__main__":
    main()
