#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus/<target>/ (seed-*; files that
libFuzzer found are kept next to them under their hash names).

The keys are the fixed ones of the targets (fuzz_targets/token.rs and
notice.rs), so the seed tokens verify and the seed notices open:

    python3 fuzz/gen_seeds.py     # needs the `cryptography` package (Ed25519)
"""

import base64
import hashlib
import hmac
import json
import os
import struct

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

# fuzz_targets/token.rs
SIGNING_SEED = b"recall-fuzz-token-signing-key-01"
OTHER_SEED = b"recall-fuzz-token-signing-key-02"
# fuzz_targets/notice.rs
MASTER = b"recall-fuzz-notice-master-key-01"
CHANNEL = b"recall:notices"
SALT = b"recall notices v1"

U1 = "01900000-0000-7000-8000-000000000001"
U2 = "01900000-0000-7000-8000-000000000002"
U3 = "01900000-0000-7000-8000-000000000003"
U4 = "01900000-0000-7000-8000-000000000004"
AT = 1_700_000_000_000

KINDS = [
    "user_registered", "login_succeeded", "login_failed", "session_refreshed",
    "refresh_token_reused", "logged_out", "session_revoked", "user_sessions_revoked",
    "password_changed", "user_locked", "user_unlocked", "key_rotated", "key_retired",
    "service_created", "service_revoked", "stream_verification",
]

EVENTS = [
    {"type": "user_registered", "user_id": U1, "username": "alice", "roles": []},
    {"type": "login_succeeded", "user_id": U1, "session_id": U2, "client_type": "web",
     "device_id": "laptop"},
    {"type": "login_failed", "username": "alice", "user_id": U1, "failures": 5,
     "locked_until": AT + 900_000},
    {"type": "session_refreshed", "user_id": U1, "session_id": U2},
    {"type": "refresh_token_reused", "user_id": U1, "session_id": U2},
    {"type": "logged_out", "user_id": U1, "session_id": U2},
    {"type": "session_revoked", "user_id": U1, "session_id": U2, "cause": "admin",
     "reason": "stolen laptop"},
    {"type": "user_sessions_revoked", "user_id": U1, "session_ids": [U2, U3], "cause": "user"},
    {"type": "password_changed", "user_id": U1, "kept_session_id": U2,
     "revoked_session_ids": [U3]},
    {"type": "user_locked", "user_id": U1, "until": AT + 86_400_000,
     "revoked_session_ids": [U2], "reason": "abuse"},
    {"type": "user_unlocked", "user_id": U1},
    {"type": "key_rotated", "kid": "kid-new", "previous_kid": "kid-old", "compromised": False,
     "previous_retire_after": AT + 330_000},
    {"type": "key_retired", "kid": "kid-old"},
    {"type": "service_created", "service_id": U4, "name": "orders-api"},
    {"type": "service_revoked", "service_id": U4},
    {"type": "stream_verification", "stream_id": U4, "state": "abc"},
]


def compact(v):
    return json.dumps(v, separators=(",", ":")).encode()


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# --- token -------------------------------------------------------------------

def claims(**over):
    c = {"iss": "recall", "aud": "recall-api", "sub": U1, "sid": U2, "jti": U3,
         "iat": 1_700_000_000, "nbf": 1_700_000_000, "exp": 4_102_444_800, "ctype": "web"}
    c.update(over)
    return c


def header(**over):
    h = {"typ": "at+jwt", "alg": "EdDSA", "kid": "fuzz-kid-1"}
    h.update(over)
    return {k: v for k, v in h.items() if v is not None}


def jwt(h, c, seed=SIGNING_SEED):
    signing_input = (b64url(compact(h)) + "." + b64url(compact(c))).encode()
    sig = Ed25519PrivateKey.from_private_bytes(seed).sign(signing_input)
    return signing_input.decode() + "." + b64url(sig)


def tokens():
    write("token", "valid", jwt(header(), claims()))
    write("token", "valid-previous-key-old-issuer",
          jwt(header(kid="fuzz-kid-2"), claims(iss="recall-old", ctype="mobile"), OTHER_SEED))
    write("token", "wrong-key", jwt(header(), claims(), OTHER_SEED))
    write("token", "unknown-kid", jwt(header(kid="nope"), claims()))
    write("token", "expired", jwt(header(), claims(exp=1_700_000_300)))
    write("token", "wrong-audience", jwt(header(), claims(aud="elsewhere")))
    write("token", "crit", jwt(header(crit=["exp"]), claims()))
    write("token", "typ-jwt", jwt(header(typ="JWT"), claims()))
    unsigned = b64url(compact(header(alg="none"))) + "." + b64url(compact(claims()))
    write("token", "alg-none", unsigned + ".")
    hs = b64url(compact(header(alg="HS256"))) + "." + b64url(compact(claims()))
    pub = Ed25519PrivateKey.from_private_bytes(SIGNING_SEED).public_key().public_bytes_raw()
    write("token", "hs256-with-public-key",
          hs + "." + b64url(hmac.new(pub, hs.encode(), hashlib.sha256).digest()))
    # Mode 0x00: edits of a token Recall signs (op, pos_lo, pos_hi, byte).
    write("token", "edit-none", b"\x00")
    write("token", "edit-flip-signature", b"\x00" + bytes([4]) + struct.pack("<H", 300) + b"\x03")
    write("token", "edit-insert-dot", b"\x00" + bytes([1]) + struct.pack("<H", 40) + b".")
    write("token", "edit-truncate", b"\x00" + bytes([3]) + struct.pack("<H", 250) + b"\x00")
    # Mode 0x01: header and claims the harness signs with the real key.
    write("token", "sign-valid", b"\x01" + compact(header()) + b"\n" + compact(claims()))
    write("token", "sign-aud-array",
          b"\x01" + compact(header()) + b"\n" + compact(claims(aud=["recall-api", "x"])))
    write("token", "sign-nbf-future",
          b"\x01" + compact(header()) + b"\n" + compact(claims(nbf=4_102_444_000)))


# --- notice ------------------------------------------------------------------

def notice_key():
    prk = hmac.new(SALT, MASTER, hashlib.sha256).digest()  # HKDF-Extract
    return hmac.new(prk, CHANNEL + b"\x01", hashlib.sha256).digest()  # one Expand block


def envelope(seq, event):
    stream = {"key_rotated": "keys", "key_retired": "keys"}.get(event["type"], "user:" + U1)
    return {"seq": seq, "stream": stream, "version": 1, "at": AT, "actor": "system",
            "ip": None, "event": event}


def seal(body):
    tag = b64url(hmac.new(notice_key(), body, hashlib.sha256).digest()).encode()
    return tag + b"." + body


def notices():
    picks = ["user_unlocked", "session_revoked", "user_locked", "key_rotated",
             "user_sessions_revoked"]
    for seq, e in enumerate(EVENTS, 1):
        if e["type"] in picks:
            body = compact(envelope(seq, e))
            write("notice", "sealed-" + e["type"], seal(body))
            write("notice", "body-" + e["type"], b"\x00" + body)
    plain = compact(envelope(1, EVENTS[10]))
    write("notice", "plain-json", plain)
    write("notice", "forged-tag", b"A" * 43 + b"." + plain)


# --- event_decode ------------------------------------------------------------

def events():
    for e in EVENTS:
        write("event_decode", e["type"], bytes([KINDS.index(e["type"]), 0]) + compact(e))
    # A payload whose type disagrees with the column, and an old version.
    write("event_decode", "type-mismatch", bytes([0, 0]) + compact(EVENTS[10]))
    write("event_decode", "version-0", bytes([10, 1]) + compact(EVENTS[10]))


# --- json_bodies -------------------------------------------------------------

def bodies():
    seeds = {
        "register": {"username": "alice", "password": "correct horse"},
        "login": {"username": "alice", "password": "correct horse", "client_type": "mobile",
                  "device_id": "pixel"},
        "refresh": {"refresh_token": "rt_" + "a" * 43},
        "password": {"current_password": "correct horse", "new_password": "battery staple"},
        "reason": {"reason": "left the company"},
        "lock": {"duration_secs": 86400.0, "reason": "abuse"},
        "rotate": {"compromised": True, "reason": "leak"},
        "service": {"name": "orders-api"},
        "stream-push": {"aud": "orders", "delivery": {"method": "urn:ietf:rfc:8935",
                        "endpoint_url": "https://rp.example/ssf",
                        "authorization_header": "Bearer x"},
                        "events_requested": ["https://schemas.openid.net/secevent/caep/event-type/session-revoked"],
                        "description": "orders"},
        "stream-update": {"stream_id": U4, "delivery": {"method": "urn:ietf:rfc:8936"}},
        "status": {"stream_id": U4, "status": "paused", "reason": "maintenance"},
        "verify": {"stream_id": U4, "state": "xyz"},
        "poll": {"ack": ["jti-1"], "setErrs": {"jti-2": {"err": "invalid_key",
                 "description": "no key"}}, "maxEvents": 10, "returnImmediately": True},
        "token-form": {"token": "eyJ.a.b", "token_type_hint": "access_token"},
    }
    for name, v in seeds.items():
        write("json_bodies", name, compact(v))
    write("json_bodies", "form-token", "token=eyJ.a.b&token_type_hint=refresh_token")
    write("json_bodies", "form-grant", "grant_type=refresh_token&refresh_token=rt_abc&scope=x")
    write("json_bodies", "query-events", "after=10&limit=100&user_id=" + U1 + "&type=logged_out")
    write("json_bodies", "null", "null")


# --- feed --------------------------------------------------------------------

def frame(event, data, id=None):
    s = "" if id is None else "id: %d\n" % id
    return ("%sevent: %s\ndata: %s\n\n" % (s, event, data)).encode()


def items(seq):
    return [
        {"seq": seq, "at": AT, "kind": "session_revoked", "sid": U2, "sub": U1},
        {"seq": seq, "at": AT, "kind": "user_locked", "sub": U1, "until": AT + 86_400_000},
    ]


def feed():
    keys = [{"seq": 0, "at": 0, "kind": "key_status", "kid": "kid-new", "status": "active"},
            {"seq": 0, "at": 0, "kind": "key_status", "kid": "kid-old", "status": "verifying",
             "until": AT + 330_000}]
    stream = (b": connected\n\n"
              + frame("revocations", compact(keys).decode(), 3)
              + frame("revocations", compact(items(4)).decode(), 4)
              + frame("revocations", compact([{"seq": 5, "at": AT, "kind": "user_cutoff",
                                               "sub": U1, "before": AT}]).decode(), 5)
              + frame("revocations", compact([{"seq": 6, "at": AT, "kind": "user_unlocked",
                                               "sub": U1}]).decode(), 6)
              + frame("head", '{"head_seq":6}', 6))
    write("feed", "stream", b"\x07" + stream)
    write("feed", "stream-crlf", b"\x2a" + stream.replace(b"\n", b"\r\n"))
    page = {"items": keys + items(4), "head_seq": 9, "next_after": 9, "retention_ms": 330_000}
    write("feed", "page", b"\x01" + frame("message", compact(page).decode()))
    write("feed", "end", b"\x03" + frame("end", "service_revoked"))
    write("feed", "multiline-data",
          b"\x05" + b"id: 8\nevent: revocations\ndata: [\ndata: ]\n\n")


if __name__ == "__main__":
    tokens()
    notices()
    events()
    bodies()
    feed()
