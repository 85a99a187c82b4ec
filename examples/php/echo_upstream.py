#!/usr/bin/env python3
"""A tiny upstream that shows what nginx passed on: no PHP involved.

    echo_upstream.py http PORT      an HTTP server answering every request
                                    with its request headers as JSON, in
                                    the order and number they arrived:
                                    {"method", "path", "headers": [[name, value], ...]}
    echo_upstream.py fastcgi PORT   a FastCGI responder answering every
                                    request with the FastCGI params nginx
                                    sent, every one of them, duplicates
                                    included: {"params": [[name, value], ...]}

scripts/php.sh runs both on loopback to check, on the wire, that a
client's own X-User-Id never reaches the application: behind
`proxy_pass` (proxy_set_header) and behind `fastcgi_pass`
(fastcgi_param HTTP_X_USER_ID), where PHP alone could not tell whether
nginx sent two values and PHP kept the last one.
"""

import json
import socketserver
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoHeaders(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args):
        pass


# FastCGI 1.0: https://fastcgi-archives.github.io/FastCGI_Specification.html
FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT = 1, 3, 4, 5, 6


def read_record(rfile):
    header = rfile.read(8)
    if len(header) < 8:
        return None
    _version, kind, request_id, length, padding, _ = struct.unpack("!BBHHBB", header)
    content = rfile.read(length)
    rfile.read(padding)
    return kind, request_id, content


def parse_params(data):
    """Name-value pairs (section 3.4), in order, duplicates kept."""
    pairs, i = [], 0

    def length():
        nonlocal i
        if data[i] >> 7:
            n = struct.unpack("!I", data[i : i + 4])[0] & 0x7FFFFFFF
            i += 4
        else:
            n = data[i]
            i += 1
        return n

    while i < len(data):
        name_len = length()
        value_len = length()
        name = data[i : i + name_len].decode("latin-1")
        i += name_len
        value = data[i : i + value_len].decode("latin-1")
        i += value_len
        pairs.append([name, value])
    return pairs


def record(kind, request_id, content):
    return struct.pack("!BBHHBB", 1, kind, request_id, len(content), 0, 0) + content


class EchoParams(socketserver.StreamRequestHandler):
    def handle(self):
        params, request_id, stdin_done = b"", 1, False
        params_done = False
        while not (params_done and stdin_done):
            rec = read_record(self.rfile)
            if rec is None:
                return
            kind, request_id, content = rec
            if kind == FCGI_PARAMS:
                if content:
                    params += content
                else:
                    params_done = True
            elif kind == FCGI_STDIN and not content:
                stdin_done = True
        body = json.dumps({"params": parse_params(params)}).encode()
        out = b"Status: 200 OK\r\nContent-Type: application/json\r\n\r\n" + body
        # STDOUT records hold at most 65535 bytes each.
        for start in range(0, len(out), 65535):
            self.wfile.write(record(FCGI_STDOUT, request_id, out[start : start + 65535]))
        self.wfile.write(record(FCGI_STDOUT, request_id, b""))
        self.wfile.write(record(FCGI_END_REQUEST, request_id, struct.pack("!IB3x", 0, 0)))


class FastCgiServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("http", "fastcgi"):
        sys.exit("usage: echo_upstream.py http|fastcgi PORT")
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "http":
        ThreadingHTTPServer(("127.0.0.1", port), EchoHeaders).serve_forever()
    else:
        FastCgiServer(("127.0.0.1", port), EchoParams).serve_forever()


if __name__ == "__main__":
    main()
