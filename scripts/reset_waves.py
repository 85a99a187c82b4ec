#!/usr/bin/env python3
"""The reset waves of issue 20 against a running Recall (the release build):
8 waves of 100 POST /v1/auth/login, half for one registered user's name and
half for unknown names, each connection reset (SO_LINGER 0) 50 ms after its
request was sent. Then every kind of write must answer as it should:
register 201, login 200 (after an admin unlock, if the parallel guesses
locked the name, as the brute-force budget says they do), refresh 200,
logout 204, and the logged-out token 401. Loopback only; bounded.

usage: reset_waves.py BASE_URL ADMIN_TOKEN
"""
import json
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlparse

BASE, ADMIN = sys.argv[1].rstrip("/"), sys.argv[2]
HOST, PORT = urlparse(BASE).hostname, urlparse(BASE).port
assert HOST in ("127.0.0.1", "localhost", "::1"), "loopback only"
PASSWORD = "correct horse battery"


def call(method, path, body=None, bearer=None):
    req = urllib.request.Request(BASE + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("content-type", "application/json")
    if bearer:
        req.add_header("authorization", "Bearer " + bearer)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            text = res.read()
            return res.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, json.loads(text) if text else None


def login_then_reset(name):
    body = json.dumps({"username": name, "password": PASSWORD}).encode()
    req = (f"POST /v1/auth/login HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    try:
        s = socket.create_connection((HOST, PORT), timeout=5)
        s.sendall(req)
        time.sleep(0.05)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    except OSError:
        pass


def expect(what, got, want):
    print(f"  {what}: {got[0]}")
    if got[0] != want:
        sys.exit(f"FAILED: {what} answered {got[0]} {got[1]}, wanted {want}")


victim = "victim-" + uuid.uuid4().hex[:8]
status, body = call("POST", "/v1/users", {"username": victim, "password": PASSWORD})
assert status == 201, (status, body)
victim_id = body["user_id"]
for wave in range(8):
    threads = [threading.Thread(target=login_then_reset,
                                args=(victim if i % 2 == 0 else "nobody-" + uuid.uuid4().hex[:8],))
               for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"wave {wave + 1}/8 sent")
time.sleep(1)
print("after the waves:")
name = "after-" + uuid.uuid4().hex[:8]
expect("register", call("POST", "/v1/users", {"username": name, "password": PASSWORD}), 201)
got = call("POST", "/v1/auth/login", {"username": name, "password": PASSWORD})
expect("login", got, 200)
got = call("POST", "/v1/auth/refresh", {"refresh_token": got[1]["refresh_token"]})
expect("refresh", got, 200)
access = got[1]["access_token"]
expect("logout", call("POST", "/v1/auth/logout", {}, access), 204)
expect("the logged-out token", call("GET", "/v1/me", None, access), 401)
victim_login = call("POST", "/v1/auth/login", {"username": victim, "password": PASSWORD})
print(f"  the victim's login: {victim_login[0]} {victim_login[1].get('error', '') if victim_login[1] else ''}")
if victim_login[0] != 200:
    expect("unlock", call("POST", f"/v1/admin/users/{victim_id}/unlock", {}, ADMIN), 200)
    expect("the victim's login after the unlock",
           call("POST", "/v1/auth/login", {"username": victim, "password": PASSWORD}), 200)
print("every write answered as it should")
