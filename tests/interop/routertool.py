#!/usr/bin/env python3
"""Helpers for router_test.sh (real sockets, Python's own TLS stack):

  echo PORT LOG        TCP echo server; a connection that starts with a PROXY v2 header gets a
                       line "v2 SRC_IP:SRC_PORT DST_IP:DST_PORT" in LOG (header stripped, the
                       rest echoed); others get "none".
  hdrs PORT            HTTP server answering "xff=<X-Forwarded-For> proto=<X-Forwarded-Proto>".
  pp-tcp HOST PORT V SRC_IP   send a PROXY v1/v2 header (V "none": no header) (source SRC_IP:40000), "ping\\n", print
                       the echo.
  pp-tls HOST PORT V SRC_IP SNI CA   PROXY header, then TLS (SNI, CA bundle), GET /, print body.
  hold HOST PORT SNI FILE   send a real ClientHello (Python's ssl, SNI) to a passthrough route
                       whose backend echoes; write "up" to FILE once the hello comes back, then
                       "closed" when the connection ends (60 s at most, then "timeout").
  stall HOST PORT SECS connect, send nothing; print "closed" when the peer closes within SECS,
                       else "open".
"""
import socket
import socketserver
import ssl
import struct
import sys
import threading
import http.server

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            break
        b += c
    return b


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        first = s.recv(65536)
        if first and len(first) < 16 and SIG.startswith(first[:12]):
            first += recv_exact(s, 16 - len(first))
        line = "none"
        rest = first
        if first.startswith(SIG) and len(first) >= 16:
            fam = first[13]
            ln = struct.unpack("!H", first[14:16])[0]
            body = first[16:16 + ln]
            body += recv_exact(s, ln - len(body))
            rest = first[16 + ln:]
            if fam == 0x11 and ln >= 12:
                src = socket.inet_ntop(socket.AF_INET, body[0:4])
                dst = socket.inet_ntop(socket.AF_INET, body[4:8])
                sp, dp = struct.unpack("!HH", body[8:12])
                line = "v2 %s:%d %s:%d" % (src, sp, dst, dp)
            elif fam == 0x21 and ln >= 36:
                src = socket.inet_ntop(socket.AF_INET6, body[0:16])
                dst = socket.inet_ntop(socket.AF_INET6, body[16:32])
                sp, dp = struct.unpack("!HH", body[32:36])
                line = "v2 [%s]:%d [%s]:%d" % (src, sp, dst, dp)
            else:
                line = "v2 other"
        with open(self.server.log, "a") as f:
            f.write(line + "\n")
        if rest:
            s.sendall(rest)
        while True:
            b = s.recv(65536)
            if not b:
                break
            s.sendall(b)


class Hdrs(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = ("xff=%s proto=%s\n" % (self.headers.get("X-Forwarded-For", ""),
                                       self.headers.get("X-Forwarded-Proto", ""))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class TS(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def header(v, src):
    if v == "none":
        return b""
    if v == "v1":
        return ("PROXY TCP4 %s 127.0.0.1 40000 443\r\n" % src).encode()
    body = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 40000, 443)
    return SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def main():
    cmd = sys.argv[1]
    if cmd == "echo":
        srv = TS(("127.0.0.1", int(sys.argv[2])), Echo)
        srv.log = sys.argv[3]
        srv.serve_forever()
    elif cmd == "hdrs":
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Hdrs)
        srv.serve_forever()
    elif cmd == "pp-tcp":
        s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5)
        s.sendall(header(sys.argv[4], sys.argv[5]) + b"ping\n")
        print(recv_exact(s, 5).decode(errors="replace").strip())
    elif cmd == "pp-tls":
        s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5)
        s.sendall(header(sys.argv[4], sys.argv[5]))
        ctx = ssl.create_default_context(cafile=sys.argv[7])
        t = ctx.wrap_socket(s, server_hostname=sys.argv[6])
        t.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % sys.argv[6]).encode())
        out = b""
        while True:
            b = t.recv(65536)
            if not b:
                break
            out += b
        print(out.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip())
    elif cmd == "hold":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, outg, server_hostname=sys.argv[4])
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = outg.read()
        s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=60)
        s.sendall(hello)
        back = recv_exact(s, len(hello))
        with open(sys.argv[5], "w") as f:
            f.write("up\n" if back == hello else "bad\n")
        try:
            b = s.recv(1)
            state = "closed" if not b else "data"
        except ConnectionResetError:
            state = "closed"
        except socket.timeout:
            state = "timeout"
        with open(sys.argv[5], "a") as f:
            f.write(state + "\n")
    elif cmd == "stall":
        s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=float(sys.argv[4]))
        try:
            b = s.recv(1)
            print("closed" if not b else "data")
        except ConnectionResetError:
            print("closed")
        except socket.timeout:
            print("open")
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
