"""schemathesis hooks for scripts/schemathesis.sh.

Admin operations use the bootstrap admin token (RECALL_ST_ADMIN_TOKEN).
User-authenticated operations get a fresh user's access token: a new
account is registered and logged in every few seconds, and again whenever
a request answers 401. The run itself logs out, logs out everywhere, changes
passwords and rotates keys as compromised, so one fixed token would be dead
after the first few calls and every later user operation would test only
its 401.
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
