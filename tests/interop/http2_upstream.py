#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""HTTP/1.1 upstream for tests/interop/http2_test.sh (python3 http.server, threaded).

GET  /hello          -> "hello"
GET  /big?n=N        -> N bytes of a fixed pattern (Content-Length), streamed
GET  /headers        -> the request line and fields as received, one per line
GET  /trailers       -> chunked "abc" with a trailer "X-Sum: 42"
GET  /slow?ms=N      -> "slow" after N ms
GET  /cut            -> declares 100000 bytes, sends 10, closes
POST /echo           -> "<len> <sha256>" of the body (Content-Length or chunked), and the
                        request's trailer fields as "T:name=value" lines
"""
import hashlib
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PATTERN = bytes((i * 7 + 13) & 0xFF for i in range(65536))


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_text(self, code, body):
        b = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        if u.path == "/hello":
            self.send_text(200, "hello")
        elif u.path == "/big":
            n = int(q.get("n", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n > 0:
                k = min(n, len(PATTERN))
                self.wfile.write(PATTERN[:k])
                n -= k
        elif u.path == "/headers":
            lines = [self.requestline] + ["%s: %s" % (k, v) for k, v in self.headers.items()]
            self.send_text(200, "\n".join(lines) + "\n")
        elif u.path == "/trailers":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Sum")
            self.end_headers()
            self.wfile.write(b"3\r\nabc\r\n0\r\nX-Sum: 42\r\n\r\n")
        elif u.path == "/cut":
            # Declares 100000 bytes, sends 10 and closes: the proxy must abort the response.
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
        elif u.path == "/slow":
            time.sleep(int(q.get("ms", ["1000"])[0]) / 1000.0)
            self.send_text(200, "slow")
        else:
            self.send_text(404, "nope")

    def do_HEAD(self):
        u = urlparse(self.path)
        n = int(parse_qs(u.query).get("n", ["5"])[0]) if u.path == "/big" else 5
        self.send_response(200)
        self.send_header("Content-Length", str(n))
        self.end_headers()

    def do_POST(self):
        h = hashlib.sha256()
        n = 0
        trailers = []
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        line = self.rfile.readline()
                        if line in (b"\r\n", b"\n", b""):
                            break
                        k, _, v = line.decode().partition(":")
                        trailers.append("T:%s=%s" % (k.strip().lower(), v.strip()))
                    break
                d = self.rfile.read(size)
                self.rfile.readline()
                h.update(d)
                n += len(d)
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left > 0:
                d = self.rfile.read(min(left, 65536))
                if not d:
                    break
                h.update(d)
                n += len(d)
                left -= len(d)
        self.send_text(200, "%d %s\n%s" % (n, h.hexdigest(), "".join(t + "\n" for t in trailers)))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the proxy opens many connections at once

    def handle_error(self, request, client_address):
        pass  # /cut and clients that go away: nothing to report


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
