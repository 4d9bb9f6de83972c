#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Helpers of tests/interop/restrict_test.sh (Python's socket and json modules as counterparts).

  restrictcheck.py tcpbackend PORT FILE   TCP echo server on 127.0.0.1:PORT; appends one line to
                                          FILE per accepted connection (runs until killed)
  restrictcheck.py tcpprobe PORT          connects to 127.0.0.1:PORT, sends "ping\\n", prints
                                          "echo" (the line came back), "closed" (EOF before any
                                          byte), "reset", "refused" or "timeout" (3 s)
  restrictcheck.py alog FILE              one line per access-log record: protocol, serviceId,
                                          authMechanism ("-" if empty), responseCode,
                                          bytesUpload, bytesDownload, sourceIp, authSuccess
"""
import json
import socket
import sys
import threading


def tcpbackend(port, path):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)

    def serve(c):
        with c:
            while True:
                try:
                    b = c.recv(65536)
                except OSError:
                    return
                if not b:
                    return
                c.sendall(b)

    while True:
        c, addr = ls.accept()
        with open(path, "a") as f:
            f.write("%s:%d\n" % addr)
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def tcpprobe(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3.0)
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        return "refused"
    try:
        s.sendall(b"ping\n")
        got = b""
        while len(got) < 5:
            b = s.recv(100)
            if not b:
                return "closed" if not got else "short:" + repr(got)
            got += b
        return "echo" if got == b"ping\n" else "other:" + repr(got)
    except ConnectionResetError:
        return "reset"
    except BrokenPipeError:
        return "closed"
    except socket.timeout:
        return "timeout"
    finally:
        s.close()


def alog(path):
    out = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            out.append(" ".join(str(x) for x in (
                d["protocol"], d["serviceId"], d["authMechanism"] or "-", d["responseCode"],
                d["bytesUpload"], d["bytesDownload"], d["sourceIp"] or "-",
                str(d["authSuccess"]).lower())))
    return "\n".join(out)


def main():
    cmd = sys.argv[1]
    if cmd == "tcpbackend":
        tcpbackend(int(sys.argv[2]), sys.argv[3])
    elif cmd == "tcpprobe":
        print(tcpprobe(int(sys.argv[2])))
    elif cmd == "alog":
        print(alog(sys.argv[2]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
