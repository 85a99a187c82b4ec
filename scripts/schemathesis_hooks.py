"""schemathesis hooks for scripts/schemathesis.sh.

Admin operations use the bootstrap admin token (RECALL_ST_ADMIN_TOKEN).
User-authenticated operations get a fresh user's access token: a new
account is registered and logged in every few seconds, and again whenever
a request answers 401. The run itself logs out, logs out everywhere, changes
passwords and rotates keys as compromised, so one fixed token would be dead
after the first few calls and every later user operation would test only
its 401.

`PUT /v1/admin/policies/{client_type}` is tested with every check and
random data, and the policy it sets is put back right after each call
(see before_call and after_call below).
"""

import itertools
import json
import os
import urllib.error
import urllib.request

import schemathesis

BASE = os.environ["RECALL_ST_BASE"]
_serial = itertools.count()


def _post(path, body):
    req = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.load(res)


@schemathesis.auth(refresh_interval=2).apply_to(
    path_regex=r"^/v1/(me|sessions|auth/(logout|logout-all|logout-others|password|verify))"
)
class FreshUser:
    def get(self, case, context):
        name = f"st-user-{os.getpid()}-{next(_serial)}"
        creds = {"username": name, "password": "st-password-1"}
        _post("/v1/users", creds)
        return _post("/v1/auth/login", creds)["access_token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.auth(refresh_interval=None).apply_to(
    path_regex=r"^/(v1/admin/|oauth/introspect|v1/users$|v1/revocations)"
)
class Admin:
    def get(self, case, context):
        return os.environ["RECALL_ST_ADMIN_TOKEN"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


_receiver = {"token": None}


def _receiver_alive(token):
    req = urllib.request.Request(
        BASE + "/ssf/streams", headers={"authorization": "Bearer " + token}
    )
    try:
        with urllib.request.urlopen(req, timeout=10):
            return True
    except urllib.error.HTTPError:
        return False


@schemathesis.auth(refresh_interval=None).apply_to(path_regex=r"^/ssf/")
class Receiver:
    """A receiver's service credential, created through the admin API:
    stream management, status, verification and polling belong to it. It is
    kept for the whole run (streams are visible only to their receiver, so a
    new credential would make every stream made before it 404), and replaced
    only if the run's own admin calls revoked it."""

    def get(self, case, context):
        token = _receiver["token"]
        if token is not None and _receiver_alive(token):
            return token
        req = urllib.request.Request(
            BASE + "/v1/admin/services",
            data=json.dumps({"name": f"st-receiver-{os.getpid()}"}).encode(),
            headers={
                "content-type": "application/json",
                "authorization": "Bearer " + os.environ["RECALL_ST_ADMIN_TOKEN"],
            },
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as res:
            _receiver["token"] = json.load(res)["token"]
        return _receiver["token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


# --- client policies -----------------------------------------------------------

POLICY_PATH = "/v1/admin/policies/{client_type}"
_policies = {"original": None}


def _admin_request(method, path, body=None):
    req = urllib.request.Request(
        BASE + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "content-type": "application/json",
            "authorization": "Bearer " + os.environ["RECALL_ST_ADMIN_TOKEN"],
        },
        method=method,
    )
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.load(res)


def _is_policy_put(case):
    return case.operation.method.upper() == "PUT" and case.operation.path == POLICY_PATH


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool)


POLICY_INTEGERS = (
    "access_ttl_secs",
    "refresh_ttl_secs",
    "session_max_secs",
    "idle_timeout_secs",
    "ipv4_prefix",
    "ipv6_prefix",
)


@schemathesis.hook
def before_call(context, case, **kwargs):
    """Positive policies that are valid, not only schema-valid. Neither
    change below can turn a negative case positive or the other way round.

    - Whole floats (`200.0`) become integers (`200`): JSON Schema counts
      `200.0` as an integer and schemathesis sends such spellings on
      purpose, but Recall's JSON reader (serde, i64/u8 fields) refuses
      them with 400. Same value, same schema validity.
    - A policy's `refresh_ttl_secs` and `session_max_secs` must be at least
      its `access_ttl_secs`, which JSON Schema cannot say (the Policy
      schema has each field's own bounds). Where both are integers within
      the schema's bounds and the lifetime is shorter than the access TTL,
      it is raised to the access TTL, which keeps it within its bounds (a
      value outside them, or of another type, is left as generated)."""
    if not _is_policy_put(case):
        return
    if _policies["original"] is None:
        # The policies before the run touched them, put back after each call.
        _policies["original"] = _admin_request("GET", "/v1/admin/policies")["policies"]
    body = case.body
    if not isinstance(body, dict):
        return
    for field in POLICY_INTEGERS:
        value = body.get(field)
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            body[field] = int(value)
    access = body.get("access_ttl_secs")
    # 10..300: the Policy schema's bounds (300 is the default RECALL_ACCESS_TTL_SECS).
    if not (_int(access) and 10 <= access <= 300):
        return
    for field in ("refresh_ttl_secs", "session_max_secs"):
        value = body.get(field)
        if _int(value) and 10 <= value < access:
            body[field] = access


@schemathesis.hook
def after_call(context, case, response):
    """Puts a client type's policy back after the run set it.

    A random valid policy stays in force for every later login of its
    client type: `binding: dpop` on `web` (the default client type) would
    make every later login without a DPoP proof, the run's own and the
    credential hooks' above, answer 400 invalid_dpop_proof; a short
    `session_max_secs` would end their sessions mid-run. So each policy the
    run manages to set is replaced with the one from before the run as soon
    as its answer is in (workers: 1, so nothing runs in between); the
    checks still see the PUT's own answer."""
    if not _is_policy_put(case) or not 200 <= response.status_code < 300:
        return
    client_type = (case.path_parameters or {}).get("client_type")
    original = (_policies["original"] or {}).get(client_type)
    if original is None:
        raise RuntimeError(f"PUT {POLICY_PATH} set {client_type!r}, which had no policy before the run")
    _admin_request("PUT", f"/v1/admin/policies/{client_type}", original)
