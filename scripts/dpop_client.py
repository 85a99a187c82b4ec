#!/usr/bin/env python3
"""A DPoP (RFC 9449) client for Recall whose crypto nobody here wrote.

Proofs are made with joserfc (PyPI), HTTP is the standard library's
urllib, so this checks Recall's DPoP against an independent
implementation rather than against itself. scripts/dpop.sh runs it against
a Recall it starts (once as is, once with RECALL_DPOP_NONCE=true).

    python3 scripts/dpop_client.py BASE_URL ADMIN_TOKEN [--expect-nonce]

BASE_URL must be a loopback address. For each of EdDSA (Ed25519) and ES256
(P-256) it logs in with a proof and checks what Recall does with the bound
tokens; then it sets the `service` policy to `binding: dpop`, checks that a
service login without a proof is refused, and puts the policy back. Each
check is printed; the first failure stops it (exit 1) with what was
expected and what came.

The client handles server nonces as RFC 9449 section 8 says: an answer
`use_dpop_nonce` with a `DPoP-Nonce` header is retried once with that
nonce, and a `DPoP-Nonce` on any answer is used from then on. With
--expect-nonce it checks that Recall asks for one (at a token endpoint and
at a resource); without it, a nonce challenge is a failure.
"""

import argparse
import base64
import hashlib
import ipaddress
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings

from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey

# joserfc 1.6 warns that "EdDSA" is deprecated in favour of RFC 9864's
# fully specified "Ed25519"; Recall's contract (and RFC 9449 practice) is
# "EdDSA" with an Ed25519 key, which is what is tested here.
warnings.filterwarnings("ignore", message=".*EdDSA is deprecated.*")

TIMEOUT = 10


class Failure(Exception):
    pass


def passed(name, detail=""):
    print(f"ok    {name}{': ' + detail if detail else ''}", flush=True)


def check(name, cond, expected, got):
    if not cond:
        raise Failure(f"{name}\n      expected: {expected}\n      got:      {got}")
    passed(name)


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt_claims(token):
    """The payload of a JWT, unverified (Recall's signature is not what
    this client tests)."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, AttributeError):
        return None


# --- HTTP ---------------------------------------------------------------------


class Answer:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.body = json.loads(raw) if raw else None
        except ValueError:
            self.body = None

    def header(self, name):
        return self.headers.get(name) if self.headers is not None else None

    @property
    def error(self):
        return self.body.get("error") if isinstance(self.body, dict) else None

    def __str__(self):
        text = self.raw.decode(errors="replace") if self.raw else ""
        if len(text) > 300:
            text = text[:300] + "..."
        extra = []
        for name in ("WWW-Authenticate", "DPoP-Nonce"):
            if self.header(name):
                extra.append(f"{name}: {self.header(name)}")
        return f"{self.status} {text}" + (f" ({'; '.join(extra)})" if extra else "")


def http(method, url, headers=None, json_body=None, form=None):
    data = None
    headers = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as res:
            return Answer(res.status, res.headers, res.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read())


# --- DPoP ---------------------------------------------------------------------


class DpopKey:
    """A key pair and the proofs it signs (joserfc does the JOSE)."""

    def __init__(self, alg):
        self.alg = alg
        if alg == "EdDSA":
            self.key = OKPKey.generate_key("Ed25519")
        elif alg == "ES256":
            self.key = ECKey.generate_key("P-256")
        else:
            raise ValueError(alg)
        self.public_jwk = self.key.as_dict(private=False)
        # RFC 7638 SHA-256 thumbprint, computed by joserfc.
        self.jkt = self.key.thumbprint()

    def proof(self, method, url, access_token=None, nonce=None):
        claims = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": url,
            "iat": int(time.time()),
        }
        if access_token is not None:
            claims["ath"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.public_jwk}
        return jwt.encode(header, claims, self.key, algorithms=[self.alg])


class Client:
    def __init__(self, base, public, admin_token, expect_nonce):
        self.base = base.rstrip("/")
        self.public = public.rstrip("/")
        self.admin_token = admin_token
        self.expect_nonce = expect_nonce
        self.nonce = None
        # (status, where) of every use_dpop_nonce challenge seen.
        self.challenges = []

    def url(self, path):
        return self.base + path

    def htu(self, path):
        return self.public + path

    def plain(self, method, path, **kw):
        return http(method, self.url(path), **kw)

    def admin(self, method, path, **kw):
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return http(method, self.url(path), headers=headers, **kw)

    def _learn_nonce(self, answer):
        nonce = answer.header("DPoP-Nonce")
        if nonce:
            self.nonce = nonce

    def dpop(self, method, path, key, access_token=None, scheme="DPoP", **kw):
        """A request with a fresh proof of `key` (and `access_token` under
        `scheme`, with its `ath`). Retried once with the server's nonce if
        it answers use_dpop_nonce. Returns (answer, the proof sent last)."""
        for attempt in range(2):
            proof = key.proof(method, self.htu(path), access_token, self.nonce)
            headers = {"DPoP": proof}
            if access_token is not None:
                headers["Authorization"] = f"{scheme} {access_token}"
            answer = http(method, self.url(path), headers=headers, **kw)
            challenged = answer.error == "use_dpop_nonce"
            self._learn_nonce(answer)
            if not challenged:
                return answer, proof
            self.challenges.append((f"{method} {path}", answer))
            if not self.expect_nonce:
                raise Failure(
                    f"{method} {path}: no nonce challenge (RECALL_DPOP_NONCE is off)\n"
                    f"      expected: an answer other than use_dpop_nonce\n      got:      {answer}"
                )
            if not answer.header("DPoP-Nonce"):
                raise Failure(
                    f"{method} {path}: use_dpop_nonce carries a nonce\n"
                    f"      expected: a DPoP-Nonce header\n      got:      {answer}"
                )
            if attempt == 0:
                print(f"      ({method} {path}: server asked for a nonce; retrying with it)", flush=True)
        raise Failure(
            f"{method} {path}: a proof with the server's nonce is accepted\n"
            f"      expected: no second use_dpop_nonce\n      got:      {answer}"
        )

    def raw(self, method, path, proof, access_token=None, scheme="DPoP"):
        """A request with exactly this proof (no retry)."""
        headers = {"DPoP": proof}
        if access_token is not None:
            headers["Authorization"] = f"{scheme} {access_token}"
        return http(method, self.url(path), headers=headers)


# --- the checks ---------------------------------------------------------------


def check_refused_resource(name, answer):
    check(
        name,
        answer.status == 401
        and answer.error == "invalid_dpop_proof"
        and (answer.header("WWW-Authenticate") or "").startswith("DPoP ")
        and 'error="invalid_dpop_proof"' in (answer.header("WWW-Authenticate") or ""),
        '401 invalid_dpop_proof with WWW-Authenticate: DPoP error="invalid_dpop_proof"',
        answer,
    )


def token_answer(name, answer, key):
    check(
        f"{name} -> 200, token_type DPoP",
        answer.status == 200
        and isinstance(answer.body, dict)
        and answer.body.get("token_type") == "DPoP"
        and answer.body.get("access_token")
        and answer.body.get("refresh_token"),
        '200 {access_token, token_type: "DPoP", refresh_token, ...}',
        answer,
    )
    claims = jwt_claims(answer.body["access_token"]) or {}
    got = (claims.get("cnf") or {}).get("jkt")
    check(
        f"{name}: access token cnf.jkt is the key's RFC 7638 thumbprint",
        got == key.jkt,
        key.jkt,
        got,
    )
    return answer.body


def run_key(c, alg, user):
    print(f"--- {alg}", flush=True)
    key = DpopKey(alg)
    seen = len(c.challenges)
    answer, _ = c.dpop("POST", "/v1/auth/login", key, json_body=user)
    if c.expect_nonce and seen == 0:
        # The run's first proof had no nonce: Recall must have asked for
        # one (c.dpop checked the DPoP-Nonce header and retried with it).
        got = [f"{where}: {a}" for where, a in c.challenges[seen:]]
        check(
            "login with a proof without a nonce -> 400 use_dpop_nonce, retried with its DPoP-Nonce",
            any(where == "POST /v1/auth/login" and a.status == 400 for where, a in c.challenges[seen:]),
            "one 400 use_dpop_nonce challenge at POST /v1/auth/login",
            got or "no challenge",
        )
    tokens = token_answer(f"{alg}: login with a proof", answer, key)
    access = tokens["access_token"]

    me, proof = c.dpop("GET", "/v1/me", key, access)
    check(
        f"{alg}: GET /v1/me as DPoP with a fresh proof (ath) -> 200",
        me.status == 200 and isinstance(me.body, dict) and me.body.get("username") == user["username"],
        f"200 with username {user['username']}",
        me,
    )

    check_refused_resource(f"{alg}: the same proof again -> 401 invalid_dpop_proof", c.raw("GET", "/v1/me", proof, access))

    other = DpopKey(alg)
    answer, _ = c.dpop("GET", "/v1/me", other, access)
    check_refused_resource(f"{alg}: a proof of another key -> 401 invalid_dpop_proof", answer)

    bearer = http("GET", c.url("/v1/me"), headers={"Authorization": f"Bearer {access}"})
    check(
        f"{alg}: the bound token as Bearer -> 401",
        bearer.status == 401,
        "401",
        bearer,
    )

    if c.expect_nonce:
        # A nonce Recall never made: 401 use_dpop_nonce at a resource, with
        # the DPoP challenge and a nonce to retry with; the retry gets in.
        c.nonce = "not-a-recall-nonce"
        seen = len(c.challenges)
        me, _ = c.dpop("GET", "/v1/me", key, access)
        challenges = c.challenges[seen:]
        check(
            f"{alg}: GET /v1/me with a nonce Recall never made -> 401 use_dpop_nonce, retried with its DPoP-Nonce -> 200",
            len(challenges) == 1
            and challenges[0][1].status == 401
            and 'error="use_dpop_nonce"' in (challenges[0][1].header("WWW-Authenticate") or "")
            and me.status == 200,
            '401 use_dpop_nonce with WWW-Authenticate: DPoP error="use_dpop_nonce" and DPoP-Nonce, then 200',
            f"{[f'{w}: {a}' for w, a in challenges]} then {me}",
        )

    answer, _ = c.dpop("POST", "/v1/auth/refresh", key, json_body={"refresh_token": tokens["refresh_token"]})
    tokens = token_answer(f"{alg}: refresh with a proof", answer, key)

    bare = c.plain("POST", "/v1/auth/refresh", json_body={"refresh_token": tokens["refresh_token"]})
    check(
        f"{alg}: refresh without a proof -> 400 invalid_dpop_proof",
        bare.status == 400 and bare.error == "invalid_dpop_proof",
        "400 invalid_dpop_proof",
        bare,
    )

    answer, _ = c.dpop(
        "POST",
        "/oauth/token",
        key,
        form={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    tokens = token_answer(f"{alg}: POST /oauth/token (form) with a proof", answer, key)

    me, _ = c.dpop("GET", "/v1/me", key, tokens["access_token"])
    check(
        f"{alg}: GET /v1/me with the /oauth/token access token -> 200",
        me.status == 200,
        "200",
        me,
    )


def run_policy(c, user):
    print("--- service policy binding dpop", flush=True)
    answer = c.admin("GET", "/v1/admin/policies")
    check(
        "GET /v1/admin/policies -> 200 with a service policy",
        answer.status == 200
        and isinstance(answer.body, dict)
        and isinstance((answer.body.get("policies") or {}).get("service"), dict),
        "200 {policies: {web, mobile, service}}",
        answer,
    )
    original = answer.body["policies"]["service"]
    bound = dict(original, binding="dpop")
    service_login = dict(user, client_type="service")
    try:
        answer = c.admin("PUT", "/v1/admin/policies/service", json_body=bound)
        check(
            "PUT /v1/admin/policies/service binding dpop -> 200",
            answer.status == 200
            and isinstance(answer.body, dict)
            and (answer.body.get("policy") or {}).get("binding") == "dpop"
            and isinstance(answer.body.get("seq"), int),
            '200 {policy: {binding: "dpop", ...}, seq}',
            answer,
        )
        bare = c.plain("POST", "/v1/auth/login", json_body=service_login)
        check(
            "service login without a proof -> 400 invalid_dpop_proof",
            bare.status == 400 and bare.error == "invalid_dpop_proof",
            "400 invalid_dpop_proof",
            bare,
        )
        key = DpopKey("ES256")
        answer, _ = c.dpop("POST", "/v1/auth/login", key, json_body=service_login)
        token_answer("service login with a proof", answer, key)
    finally:
        answer = c.admin("PUT", "/v1/admin/policies/service", json_body=original)
    check(
        "PUT /v1/admin/policies/service back to its policy -> 200",
        answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("policy") == original,
        f"200 {{policy: {json.dumps(original)}, seq}}",
        answer,
    )
    if original.get("binding") == "none":
        bare = c.plain("POST", "/v1/auth/login", json_body=service_login)
        check(
            "service login without a proof after that -> 200 Bearer",
            bare.status == 200 and isinstance(bare.body, dict) and bare.body.get("token_type") == "Bearer",
            '200 token_type "Bearer"',
            bare,
        )


def loopback(url):
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url", help="Recall's address, loopback only (http://127.0.0.1:PORT)")
    parser.add_argument("admin_token", help="Recall's RECALL_ADMIN_TOKEN")
    parser.add_argument(
        "--public-url",
        help="RECALL_PUBLIC_URL, which proofs' htu are made against (default: BASE_URL)",
    )
    parser.add_argument(
        "--expect-nonce",
        action="store_true",
        help="Recall runs with RECALL_DPOP_NONCE=true: check that it asks for nonces",
    )
    args = parser.parse_args()
    if not loopback(args.base_url):
        parser.error(f"{args.base_url} is not a loopback address; this client only talks to a local Recall")

    c = Client(args.base_url, args.public_url or args.base_url, args.admin_token, args.expect_nonce)
    mode = "server nonces on" if args.expect_nonce else "server nonces off"
    print(f"DPoP client (joserfc) against {c.base} ({mode})", flush=True)
    try:
        user = {"username": f"dpop-{os.getpid()}-{secrets.token_hex(4)}", "password": "dpop-password-1"}
        answer = c.plain("POST", "/v1/users", json_body=user)
        check(f"register {user['username']} -> 201", answer.status == 201, "201", answer)
        for alg in ("EdDSA", "ES256"):
            run_key(c, alg, user)
        run_policy(c, user)
        if args.expect_nonce:
            token = [a for _, a in c.challenges if a.status == 400]
            resource = [a for _, a in c.challenges if a.status == 401]
            passed(
                "nonce challenges handled",
                f"{len(c.challenges)} retried ({len(token)} at token endpoints, {len(resource)} at resources)",
            )
    except Failure as f:
        print(f"FAIL  {f}", flush=True)
        return 1
    except (urllib.error.URLError, OSError) as e:
        print(f"FAIL  cannot reach Recall at {c.base}: {e}", flush=True)
        return 1
    print("all DPoP checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
