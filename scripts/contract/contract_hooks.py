"""schemathesis hooks for the contract run (loaded through SCHEMATHESIS_HOOKS=contract_hooks): the check of the
second, credential-less pass. Without credentials every operation must answer 401 with `WWW-Authenticate: Bearer`,
except the ones that need none (the health probes and /openapi.json), which must not."""
import schemathesis

ANONYMOUS = {"/v2/health/live", "/v2/health/ready", "/openapi.json"}


@schemathesis.check
def anonymous_gets_401(ctx, response, case):
    path = case.operation.path
    if path in ANONYMOUS:
        if response.status_code in (401, 403):
            raise AssertionError(f"{case.method} {path} needs no credentials but answered {response.status_code}")
        return None
    if response.status_code != 401:
        raise AssertionError(f"{case.method} {case.formatted_path} without credentials answered {response.status_code}, not 401")
    if not response.headers.get("www-authenticate", [""])[0].startswith("Bearer"):
        raise AssertionError(f"{case.method} {case.formatted_path}: 401 without WWW-Authenticate: Bearer")
    return None
