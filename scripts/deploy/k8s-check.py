"""Offline checks of the Kubernetes manifests (no cluster needed).

    python scripts/deploy/k8s-check.py [--serval PATH_TO_SERVAL]

- every overlay renders with `kubectl kustomize`
- every built-in object validates with kubernetes-validate --strict, for Kubernetes 1.32 (Debian's kubectl) and 1.37
- ScaledObject, ServiceMonitor and PrometheusRule validate against their schemas in deploy/k8s/schemas/
- serving: probes on the ports and paths the args configure (liveness on /v2/health/live, never readiness),
  --host 0.0.0.0, the grace period above --exit-timeout-secs plus the preStop pause, CPU and memory requests equal to
  limits, the security context (non-root, read-only root, no capabilities, RuntimeDefault seccomp)
- the Service's ports match the containers', gRPC with appProtocol grpc
- with --serval, every flag the manifests pass is one `serval serve|worker|batch --help` lists
Prints one "ok"/"FAIL" line per check and exits non-zero on any failure.
"""
import glob
import json
import os
import re
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "deploy/k8s")
VERSIONS = ["1.32.0", "1.37.0"]
SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule_v1.json",
}
failures = 0


def check(name, condition, detail=""):
    global failures
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else f": {detail}"), flush=True)
    failures += 0 if condition else 1


def render(folder):
    text = subprocess.run(["kubectl", "kustomize", folder], capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def flag_values(args):
    values = {}
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            name, value = arg[2:].split("=", 1)
            values[name] = value
    return values


def validate(doc, where):
    key = (doc["apiVersion"], doc["kind"])
    name = f"{where}: {doc['kind']}/{doc['metadata']['name']}"
    if key in SCHEMAS:
        with open(os.path.join(K8S, "schemas", SCHEMAS[key])) as handle:
            schema = json.load(handle)
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
        check(f"{name} matches its CRD schema", not errors, "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:3]))
        return
    problems = []
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{version}: {'/'.join(map(str, error.path))}: {error.message}")
    check(f"{name} validates (strict, Kubernetes {' and '.join(VERSIONS)})", not problems, "; ".join(problems))


def serving_checks(docs, where):
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "serval")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    flags = flag_values(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    check(f"{where}: serve listens on 0.0.0.0, not the loopback default", flags.get("host") == "0.0.0.0", flags)
    check(f"{where}: container ports are the --http-port and --grpc-port", ports == {"http": int(flags["http-port"]), "grpc": int(flags["grpc-port"])}, (ports, flags))

    def probe_target(probe):
        if "httpGet" in probe:
            port = probe["httpGet"]["port"]
            return ("http", probe["httpGet"]["path"], ports.get(port, port))
        return ("grpc", probe["grpc"].get("service", ""), probe["grpc"]["port"])
    live = probe_target(container["livenessProbe"])
    check(f"{where}: liveness is /v2/health/live on the http port", live == ("http", "/v2/health/live", ports["http"]), live)
    for kind in ["startupProbe", "readinessProbe"]:
        target = probe_target(container[kind])
        check(f"{where}: {kind} is readiness: /v2/health/ready on http, or gRPC health on the grpc port",
              target in [("http", "/v2/health/ready", ports["http"]), ("grpc", "", ports["grpc"])], target)
    startup = container["startupProbe"]
    budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    check(f"{where}: the startup probe allows {budget} s for model loading (at least 120)", budget >= 120, budget)
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = pod["terminationGracePeriodSeconds"]
    exit_timeout = int(flags["exit-timeout-secs"])
    check(f"{where}: grace period {grace} s > --exit-timeout-secs {exit_timeout} + preStop {pause}", grace > exit_timeout + pause, (grace, exit_timeout, pause))
    for deploy in (d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")):
        spec = deploy["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            resources = c.get("resources", {})
            check(f"{where}: {deploy['metadata']['name']}/{c['name']} requests equal limits (Guaranteed QoS)",
                  resources.get("requests") and resources.get("requests") == resources.get("limits"), resources)
            security = c.get("securityContext", {})
            pod_security = spec.get("securityContext", {})
            hardened = (security.get("allowPrivilegeEscalation") is False and security.get("capabilities", {}).get("drop") == ["ALL"]
                        and (pod_security.get("runAsNonRoot") or security.get("runAsNonRoot"))
                        and pod_security.get("seccompProfile", {}).get("type", "RuntimeDefault") == "RuntimeDefault")
            if c["name"] != "postgres":  # the database writes its own files; everything of ours runs with a read-only root
                hardened = hardened and security.get("readOnlyRootFilesystem") is True
            check(f"{where}: {deploy['metadata']['name']}/{c['name']} runs non-root with no capabilities", bool(hardened), (pod_security, security))
        if deploy["kind"] != "StatefulSet":
            check(f"{where}: {deploy['metadata']['name']} uses the RuntimeDefault seccomp profile",
                  spec.get("securityContext", {}).get("seccompProfile", {}).get("type") == "RuntimeDefault", spec.get("securityContext"))
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "serval")
    service_ports = {p["name"]: (p["port"], p["targetPort"], p.get("appProtocol")) for p in service["spec"]["ports"]}
    check(f"{where}: Service http 8000 and grpc 8001 with appProtocol grpc", service_ports == {"http": (8000, "http", None), "grpc": (8001, "grpc", "grpc")}, service_ports)
    return [c["args"] for d in docs if d["kind"] in ("Deployment", "Job") for c in d["spec"]["template"]["spec"]["containers"] if c["image"].startswith("ghcr.io/serval-ml/")]


def flag_checks(serval, argument_lists):
    helps = {}
    for args in argument_lists:
        command = args[0]
        if command not in helps:
            helps[command] = subprocess.run([serval, command, "--help"], capture_output=True, text=True).stdout
        unknown = [a.split("=")[0] for a in args[1:] if a.startswith("--") and f"  {a.split('=')[0]} " not in helps[command]
                   and f"  {a.split('=')[0]}\n" not in helps[command]]
        check(f"serval {command}: every flag the manifests pass exists ({len(args) - 1})", not unknown, unknown)


def main():
    serval = sys.argv[sys.argv.index("--serval") + 1] if "--serval" in sys.argv else None
    argument_lists = []
    for overlay in sorted(glob.glob(os.path.join(K8S, "overlays/*"))):
        where = os.path.relpath(overlay, K8S)
        try:
            docs = render(overlay)
        except subprocess.CalledProcessError as error:
            check(f"{where} renders", False, error.stderr)
            continue
        check(f"{where} renders ({len(docs)} objects)", True)
        for doc in docs:
            validate(doc, where)
        argument_lists += serving_checks(docs, where)
    for path in sorted(glob.glob(os.path.join(K8S, "examples/*.yaml"))):
        for doc in yaml.safe_load_all(open(path)):
            if doc.get("kind") == "Job":
                validate(doc, os.path.relpath(path, K8S))
                argument_lists += [c["args"] for c in doc["spec"]["template"]["spec"]["containers"]]
    if serval:
        flag_checks(serval, argument_lists)
    # The adapter rule names the metric the HPA targets.
    adapter = yaml.safe_load(open(os.path.join(K8S, "monitoring/prometheus-adapter-values.yaml")))
    hpa = yaml.safe_load(open(os.path.join(K8S, "base/hpa.yaml")))
    targeted = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    served = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    check("the HPA's per-pod metrics are the ones the adapter rule serves", targeted <= served, (targeted, served))
    print(f"{failures} failed" if failures else "all manifest checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
