#!/usr/bin/env python3
"""Raw-socket HTTP/1.1 clients for tests/interop/http_test.sh, for what curl cannot do.

  httpraw.py pipeline ADDR PORT HOST PATH...  every request in one write (the last one with
                                              "Connection: close"); prints one JSON object per
                                              response: {"status": N, "url": <backend's view>}
                                              (5 s at most per response)
  httpraw.py slowhead ADDR PORT HOST          sends half a request head, then waits (at most
                                              40 s) for the server to close; prints JSON
                                              {"closed_after": seconds, "got": bytes received}
  httpraw.py trailers ADDR PORT HOST PATH     POSTs a chunked body "hello" with the announced
                                              trailer X-Req-Sum: 42; prints the response body
  httpraw.py stall ADDR PORT HOST PATH SECS   sends a GET with a tiny receive buffer and never
                                              reads; exits after SECS (or when killed)
"""
import json
import socket
import sys
import time


def connect(addr, port, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(20)
    s.connect((addr, int(port)))
    return s


def read_response(f):
    """One response from a buffered reader (Content-Length or chunked); returns (status, body)."""
    line = f.readline()
    if not line:
        raise EOFError("connection closed before a status line")
    status = int(line.split()[1])
    hdrs = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if hdrs.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b""):
                    pass
                break
            body += f.read(size)
            f.readline()
    else:
        body = f.read(int(hdrs.get("content-length", "0")))
    return status, body


def pipeline(addr, port, host, paths):
    s = connect(addr, port)
    reqs = []
    for i, p in enumerate(paths):
        last = "Connection: close\r\n" if i == len(paths) - 1 else ""
        reqs.append(f"GET {p} HTTP/1.1\r\nHost: {host}\r\n{last}\r\n")
    s.sendall("".join(reqs).encode())
    s.settimeout(5)
    f = s.makefile("rb")
    for _ in paths:
        try:
            status, body = read_response(f)
        except (OSError, EOFError, ValueError) as e:
            print(json.dumps({"status": None, "error": str(e) or type(e).__name__}))
            break
        try:
            url = json.loads(body).get("url")
        except ValueError:
            url = None
        print(json.dumps({"status": status, "url": url}))
    s.close()


def slowhead(addr, port, host):
    s = connect(addr, port)
    s.settimeout(40)
    t0 = time.monotonic()
    s.sendall(f"GET /echo/t13-slowhead HTTP/1.1\r\nHost: {host}\r\nX-Half: ".encode())
    got = 0
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += len(d)
    except ConnectionResetError:
        pass
    except socket.timeout:
        print(json.dumps({"closed_after": None, "got": got}))
        return
    print(json.dumps({"closed_after": round(time.monotonic() - t0, 2), "got": got}))


def trailers(addr, port, host, path):
    s = connect(addr, port)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
              "Trailer: X-Req-Sum\r\nConnection: close\r\n\r\n"
              "5\r\nhello\r\n0\r\nX-Req-Sum: 42\r\n\r\n".encode())
    _, body = read_response(s.makefile("rb"))
    sys.stdout.write(body.decode("utf-8", "replace"))
    s.close()


def stall(addr, port, host, path, secs):
    s = connect(addr, port, rcvbuf=4096)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    print("sent", flush=True)
    time.sleep(float(secs))
    s.close()


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "pipeline":
        pipeline(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    elif cmd == "slowhead":
        slowhead(*sys.argv[2:5])
    elif cmd == "trailers":
        trailers(*sys.argv[2:6])
    elif cmd == "stall":
        stall(*sys.argv[2:7])
    else:
        sys.exit(f"unknown command {cmd}")
