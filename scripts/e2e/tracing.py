"""Request tracing end to end: `serval serve --otlp-endpoint` against a small OTLP/gRPC receiver.

    python scripts/e2e/tracing.py PATH_TO_SERVAL

The receiver implements the collector's TraceService/Export (opentelemetry-proto's stubs, grpcio) and keeps every
span. Checks, for a REST call and a gRPC call (tritonclient) that each carry a W3C `traceparent`:
- the request's server span joins the caller's trace (same trace id, parent = the caller's span id)
- it has the children decode, queue, compute and encode, inside its own time span, in that order
- it carries model, version, batch size and the request id the response returned
and that a server without --otlp-endpoint exports nothing. Prints one "ok"/"FAIL" line per check.
"""
import os
import subprocess
import sys
import tempfile
import time
from concurrent import futures

import grpc
import numpy as np
import requests
import tritonclient.grpc as grpcclient
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, free_port, wait_ready  # noqa: E402

serval = sys.argv[1]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
check = Checks()
work = tempfile.mkdtemp(prefix="serval-e2e-tracing-")
spans = []


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        for resource in request.resource_spans:
            service = next((a.value.string_value for a in resource.resource.attributes if a.key == "service.name"), None)
            for scope in resource.scope_spans:
                for span in scope.spans:
                    spans.append((service, span))
        return trace_service_pb2.ExportTraceServiceResponse()


receiver = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), receiver)
otlp_port = receiver.add_insecure_port("127.0.0.1:0")
receiver.start()


def attributes(span):
    out = {}
    for attribute in span.attributes:
        value = attribute.value
        out[attribute.key] = value.string_value if value.HasField("string_value") else value.int_value if value.HasField("int_value") else None
    return out


def trace_of(trace_hex):
    return [s for _, s in spans if s.trace_id.hex() == trace_hex]


def wait_for(trace_hex, count):
    for _ in range(200):
        if len(trace_of(trace_hex)) >= count:
            return True
        time.sleep(0.1)
    return False


def check_trace(label, trace_hex, parent_hex, request_id):
    check(f"{label}: spans exported", wait_for(trace_hex, 5), [s.name for s in trace_of(trace_hex)])
    found = trace_of(trace_hex)
    server = [s for s in found if s.parent_span_id.hex() == parent_hex]
    check(f"{label}: the server span's parent is the caller's span", len(server) == 1, [(s.name, s.parent_span_id.hex()) for s in found])
    if not server:
        return
    server = server[0]
    check(f"{label}: the server span is of kind SERVER", server.kind == 2, server.kind)
    children = sorted((s for s in found if s.parent_span_id == server.span_id), key=lambda s: s.start_time_unix_nano)
    check(f"{label}: children decode, queue, compute, encode in order", [s.name for s in children] == ["decode", "queue", "compute", "encode"],
          [s.name for s in children])
    check(f"{label}: children lie within the request span", all(server.start_time_unix_nano <= s.start_time_unix_nano <= s.end_time_unix_nano
                                                              <= server.end_time_unix_nano for s in children),
          [(s.name, s.start_time_unix_nano - server.start_time_unix_nano, s.end_time_unix_nano - server.end_time_unix_nano) for s in children])
    values = attributes(server)
    check(f"{label}: model, version, batch size and request id on the span",
          values.get("serval.model") == "iris" and values.get("serval.model.version") == "1" and values.get("serval.batch.rows") == 2
          and values.get("serval.request_id") == request_id, values)
    compute = next((s for s in children if s.name == "compute"), None)
    check(f"{label}: the compute span carries the batch size", compute is not None and attributes(compute).get("serval.batch.rows") == 2,
          compute and attributes(compute))


def serve(*extra, environment=None):
    port, grpc_port = free_port(), free_port()
    log = open(os.path.join(work, f"serve-{port}.log"), "w")
    environment = {**os.environ, "OTEL_BSP_SCHEDULE_DELAY": "100", **(environment or {})}
    process = subprocess.Popen([serval, "serve", "--model-repository", os.path.join(root, "examples/models"), "--data-dir", os.path.join(work, f"data-{port}"),
                                "--http-port", str(port), "--grpc-port", str(grpc_port), *extra], stdout=log, stderr=subprocess.STDOUT, env=environment)
    wait_ready(f"http://127.0.0.1:{port}", process, log.name, requests.get)
    return process, port, grpc_port


rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
process, port, grpc_port = serve("--otlp-endpoint", f"http://127.0.0.1:{otlp_port}")
try:
    trace_hex, parent_hex = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    answer = requests.post(f"http://127.0.0.1:{port}/v2/models/iris/infer", timeout=10,
                           headers={"traceparent": f"00-{trace_hex}-{parent_hex}-01"},
                           json={"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": rows}]})
    check("REST: the request succeeds", answer.status_code == 200, answer.text)
    check_trace("REST", trace_hex, parent_hex, answer.headers.get("Serval-Request-Id"))

    trace_hex, parent_hex = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    x = grpcclient.InferInput("X", [2, 4], "FP32")
    x.set_data_from_numpy(np.array(rows, np.float32))
    result = client.infer("iris", [x], request_id="grpc-call-1", headers={"traceparent": f"00-{trace_hex}-{parent_hex}-01"})
    check("gRPC: the request succeeds", result.as_numpy("label") is not None, result)
    check_trace("gRPC", trace_hex, parent_hex, "grpc-call-1")

    # Without a traceparent the request starts a trace of its own.
    before = {s.trace_id for _, s in spans}
    requests.post(f"http://127.0.0.1:{port}/v2/models/iris/infer", timeout=10,
                  json={"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": rows[:1]}]}).raise_for_status()
    for _ in range(200):
        fresh = [s for _, s in spans if s.trace_id not in before and not s.parent_span_id]
        if fresh:
            break
        time.sleep(0.1)
    check("a request without traceparent starts its own trace (a root span)", len(fresh) == 1, [s.name for s in fresh])
    check("spans name the service serval", all(service == "serval" for service, _ in spans), {service for service, _ in spans})
finally:
    process.terminate()
    process.wait(timeout=30)

# Off by default: without --otlp-endpoint nothing is sent, even with the OTel environment pointing at the receiver.
count = len(spans)
process, port, _ = serve(environment={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}", "OTEL_TRACES_EXPORTER": "otlp"})
try:
    requests.post(f"http://127.0.0.1:{port}/v2/models/iris/infer", timeout=10,
                  json={"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": rows[:1]}]}).raise_for_status()
finally:
    process.terminate()
    process.wait(timeout=30)
check("without --otlp-endpoint nothing is exported", len(spans) == count, len(spans) - count)
receiver.stop(None)
check.finish()
