"""TLS end to end with the peers' clients, over certificates made here by openssl (a throwaway CA):

    python scripts/e2e/tls.py PATH_TO_SERVAL

1. TLS: curl, tritonclient HTTP and tritonclient gRPC (ssl options) infer over TLS; plaintext and TLS 1.1 are
   refused
2. SIGHUP: new certificate files and `kill -HUP`; new connections get the new certificate, a keep-alive
   connection opened before keeps working
3. mTLS (--tls-client-ca): curl and tritonclient gRPC without a client certificate are refused, with one they
   work, and with auth on the certificate's subject is the principal (client_certificates in auth.yaml)
"""
import argparse
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile

import numpy as np
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from checks import Checks, example_repository, free_port, start_serval, wait_for  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("serval")
args = parser.parse_args()
check = Checks()
work = tempfile.mkdtemp(prefix="serval-tls-")
IRIS = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


def openssl(*arguments):
    subprocess.run(["openssl", *arguments], check=True, capture_output=True, cwd=work)


def issue(name, subject, usage):
    """A P-256 key and a certificate for `subject` signed by the CA: name.pem, name-key.pem."""
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}-key.pem")
    openssl("req", "-new", "-key", f"{name}-key.pem", "-subj", subject, "-out", f"{name}.csr")
    with open(os.path.join(work, f"{name}.ext"), "w") as f:
        f.write(f"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n")
        if usage == "serverAuth":
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-days", "1",
            "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return os.path.join(work, f"{name}.pem"), os.path.join(work, f"{name}-key.pem")


openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca-key.pem")
openssl("req", "-x509", "-new", "-key", "ca-key.pem", "-subj", "/CN=Serval CI CA", "-days", "1", "-out", "ca.pem",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
ca = os.path.join(work, "ca.pem")
server_cert, server_key = issue("server", "/CN=serval-one", "serverAuth")
client_cert, client_key = issue("client", "/O=Serval CI/CN=scorer", "clientAuth")
repository = example_repository(work)


def serve(name, extra):
    grpc_port = free_port()
    process, http_port, log_path = start_serval(args.serval, work, repository, "--tls-cert", server_cert, "--tls-key", server_key, *extra,
                                                name=name, grpc_port=grpc_port)
    return process, http_port, grpc_port, log_path


def logged(log_path, text):
    return text in open(log_path).read()


def curl(url, *extra):
    result = subprocess.run(["curl", "-sS", "--cacert", ca, "-o", "/dev/null", "-w", "%{http_code}", *extra, url],
                            capture_output=True, text=True)
    return result.stdout.strip(), result.stderr.strip()


def presented_subject(port):
    """The CN of the certificate a new TLS connection is given."""
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw, server_hostname="localhost") as tls:
        return dict(item[0] for item in tls.getpeercert()["subject"])["commonName"]


def stop(process):
    process.terminate()
    process.wait(timeout=60)


# 1. TLS with the peers' clients.
process, http_port, grpc_port, log_path = serve("tls", [])
try:
    base = f"https://localhost:{http_port}"
    check("serval starts with TLS", wait_for(lambda: logged(log_path, "security=tls"), 60) and curl(base + "/v2/health/ready")[0] == "200",
          open(log_path).read()[-2000:])
    code, _ = curl(base + "/v2/models/iris/infer", "-H", "Content-Type: application/json",
                   "-d", '{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}')
    check("curl infers over TLS", code == "200", code)
    code, error = curl(base + "/v2/health/ready", "--tls-max", "1.1", "--tlsv1")
    check("TLS 1.1 is refused", code == "000", f"{code} {error}")
    plain = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{http_port}/v2/health/ready"],
                           capture_output=True, text=True).stdout.strip()
    check("plain HTTP on the TLS port gets no answer", plain == "000", plain)

    client = httpclient.InferenceServerClient(f"localhost:{http_port}", ssl=True, ssl_options={"ca_certs": ca})
    request = httpclient.InferInput("X", [1, 4], "FP32")
    request.set_data_from_numpy(IRIS)
    label = client.infer("iris", [request]).as_numpy("label")
    check("tritonclient HTTP infers over TLS", label is not None and label.shape[0] == 1, str(label))
    grpc = grpcclient.InferenceServerClient(f"localhost:{grpc_port}", ssl=True, root_certificates=ca)
    request = grpcclient.InferInput("X", [1, 4], "FP32")
    request.set_data_from_numpy(IRIS)
    label = grpc.infer("iris", [request]).as_numpy("label")
    check("tritonclient gRPC infers over TLS", label is not None and label.shape[0] == 1, str(label))
    try:
        grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}").is_server_live(client_timeout=10)
        plaintext_grpc = "answered"
    except Exception as error:  # noqa: BLE001
        plaintext_grpc = str(error)
    check("gRPC plaintext on the TLS port is refused", plaintext_grpc != "answered", plaintext_grpc)

    # 2. SIGHUP: a new certificate for new connections; a keep-alive connection from before keeps working.
    session = requests.Session()
    before = session.get(base + "/v2/health/ready", timeout=10, verify=ca).status_code
    check("the first certificate is served", presented_subject(http_port) == "serval-one")
    new_cert, new_key = issue("server-two", "/CN=serval-two", "serverAuth")
    shutil.copyfile(new_key, server_key)
    shutil.copyfile(new_cert, server_cert)
    process.send_signal(signal.SIGHUP)
    check("SIGHUP reloads the certificate", wait_for(lambda: logged(log_path, "TLS certificate reloaded"), 30), open(log_path).read()[-2000:])
    check("new connections get the new certificate", presented_subject(http_port) == "serval-two")
    after = session.get(base + "/v2/health/ready", timeout=10, verify=ca).status_code
    check("a keep-alive connection from before the reload keeps working", before == 200 and after == 200, f"{before} {after}")
    check("gRPC connections get the new certificate too",
          grpcclient.InferenceServerClient(f"localhost:{grpc_port}", ssl=True, root_certificates=ca).is_server_ready())
    # A broken pair is refused and the server keeps the one it has.
    shutil.copyfile(client_key, server_key)
    process.send_signal(signal.SIGHUP)
    check("a reload with a key that is not the certificate's is refused", wait_for(lambda: logged(log_path, "reload failed"), 30))
    check("and the server keeps serving the previous certificate", presented_subject(http_port) == "serval-two")
    shutil.copyfile(new_key, server_key)
finally:
    stop(process)

# 3. mTLS, with the client certificate as the principal.
with open(os.path.join(work, "auth.yaml"), "w") as f:
    f.write("client_certificates:\n  - {subject: \"CN=scorer,O=Serval CI\", scopes: [infer, read]}\n")
process, http_port, grpc_port, log_path = serve("mtls", ["--tls-client-ca", ca, "--auth-config", os.path.join(work, "auth.yaml")])
try:
    base = f"https://localhost:{http_port}"
    check("serval starts with mTLS", wait_for(lambda: logged(log_path, "security=mtls"), 60), open(log_path).read()[-2000:])
    code, error = curl(base + "/v2/health/ready")
    check("curl without a client certificate is refused", code == "000", f"{code} {error}")
    code, _ = curl(base + "/v2/models/iris", "--cert", client_cert, "--key", client_key)
    check("curl with a client certificate reads (its subject's scopes)", code == "200", code)
    code, _ = curl(base + "/v2/repository/models/iris/unload", "-X", "POST", "--cert", client_cert, "--key", client_key)
    check("the certificate's principal has no admin scope: 403", code == "403", code)
    try:
        grpcclient.InferenceServerClient(f"localhost:{grpc_port}", ssl=True, root_certificates=ca).is_server_live(client_timeout=10)
        refused = False
    except Exception:
        refused = True
    check("tritonclient gRPC without a client certificate is refused", refused)
    grpc = grpcclient.InferenceServerClient(f"localhost:{grpc_port}", ssl=True, root_certificates=ca, private_key=client_key,
                                            certificate_chain=client_cert)
    request = grpcclient.InferInput("X", [1, 4], "FP32")
    request.set_data_from_numpy(IRIS)
    label = grpc.infer("iris", [request]).as_numpy("label")
    check("tritonclient gRPC with a client certificate infers as its subject", label is not None and label.shape[0] == 1)
    try:
        grpc.unload_model("iris")
        denied = ""
    except Exception as error:  # noqa: BLE001
        denied = str(error)
    check("gRPC: the certificate's principal may not unload", "PERMISSION_DENIED" in denied or "lacks the 'admin' scope" in denied, denied)
finally:
    stop(process)
check.finish()
