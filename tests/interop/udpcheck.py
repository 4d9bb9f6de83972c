#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""UDP client side of tests/interop/udp_test.sh (Python's socket module as the counterpart).

  udpcheck.py echo PORT SIZE...       one socket; each size echoed byte-exact? prints "ok" or why
  udpcheck.py noecho PORT SIZE        sends one datagram; prints "ok" if nothing comes back (1.5 s)
  udpcheck.py sessions PORT N         N sockets (N client ports), one echo each; prints how many
  udpcheck.py burst PORT N            N sockets each send one datagram at once, then collects
                                      echoes for 2 s; prints how many were answered
  udpcheck.py flood PORT COUNT SIZE   one socket sends COUNT datagrams as fast as the kernel takes
                                      them; prints "sent received"
  udpcheck.py idlerec 0 < RECORDS     the svc-idle access-log record (stdin) is as expected
  udpcheck.py alog 0 FILE SESSIONS    the access log has one right udp record per session
(the two checks print nothing when all is well, else what is wrong)
"""
import json
import os
import select
import socket
import sys
import time


def sock():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def echo_one(s, port, payload, tries=3, wait=2.0):
    for _ in range(tries):
        s.sendto(payload, ("127.0.0.1", port))
        end = time.time() + wait
        while time.time() < end:
            r, _, _ = select.select([s], [], [], max(0.0, end - time.time()))
            if not r:
                break
            data, _ = s.recvfrom(70000)
            if data == payload:
                return True
    return False


def main():
    cmd, port = sys.argv[1], int(sys.argv[2])
    if cmd == "echo":
        s = sock()
        for size in map(int, sys.argv[3:]):
            payload = os.urandom(size)
            if not echo_one(s, port, payload):
                print("no byte-exact echo for %d bytes" % size)
                return
        print("ok")
    elif cmd == "noecho":
        s = sock()
        s.sendto(os.urandom(int(sys.argv[3])), ("127.0.0.1", port))
        r, _, _ = select.select([s], [], [], 1.5)
        print("ok" if not r else "got %d bytes back" % len(s.recvfrom(70000)[0]))
    elif cmd == "sessions":
        n = int(sys.argv[3])
        socks = [sock() for _ in range(n)]
        good = sum(1 for i, s in enumerate(socks) if echo_one(s, port, b"session-%d" % i, 2, 1.0))
        print(good)
    elif cmd == "burst":
        n = int(sys.argv[3])
        socks = [sock() for _ in range(n)]
        for i, s in enumerate(socks):
            s.sendto(b"burst-%d" % i, ("127.0.0.1", port))
        answered = set()
        end = time.time() + 2.0
        while time.time() < end and len(answered) < n:
            r, _, _ = select.select(socks, [], [], 0.2)
            for s in r:
                s.recvfrom(70000)
                answered.add(s.fileno())
        print(len(answered))
    elif cmd == "flood":
        count, size = int(sys.argv[3]), int(sys.argv[4])
        s = sock()
        s.setblocking(False)
        payload = b"f" * size
        sent = received = 0
        for i in range(count):
            try:
                s.sendto(payload, ("127.0.0.1", port))
                sent += 1
            except (BlockingIOError, OSError):
                select.select([], [s], [], 0.01)
            while True:
                try:
                    s.recvfrom(70000)
                    received += 1
                except BlockingIOError:
                    break
        end = time.time() + 1.0
        while time.time() < end:
            r, _, _ = select.select([s], [], [], 0.2)
            if not r:
                break
            try:
                while True:
                    s.recvfrom(70000)
                    received += 1
            except BlockingIOError:
                pass
        print(sent, received)
    elif cmd == "idlerec":
        lines = [l for l in sys.stdin if l.strip()]
        if len(lines) != 1:
            print("%d records" % len(lines))
            return
        r = json.loads(lines[0])
        want = dict(protocol="udp", accountId="udp", host="idle.udp.test", sourceIp="127.0.0.1",
                    bytesUpload=77, bytesDownload=77, authSuccess=False)
        for k, v in want.items():
            if r.get(k) != v:
                print("%s=%r want %r" % (k, r.get(k), v))
        d = r.get("durationMs", 0)
        if not isinstance(d, int) or d < 0 or d > 1000:
            print("durationMs=%r" % d)
    elif cmd == "alog":
        recs = [json.loads(l) for l in open(sys.argv[3]) if l.strip()]
        sessions = int(sys.argv[4])
        hosts = {"svc-udp": "udp.test", "svc-idle": "idle.udp.test", "svc-other": "other.udp.test"}
        if len(recs) != sessions:
            print("%d records, %d sessions" % (len(recs), sessions))
        for r in recs:
            wrong = [k for k, v in dict(protocol="udp", sourceIp="127.0.0.1",
                                        authSuccess=False).items() if r.get(k) != v]
            if r.get("responseCode", 0) != 0 or r.get("method") or r.get("path"):
                wrong.append("responseCode/method/path")
            if r.get("host") != hosts.get(r.get("serviceId")):
                wrong.append("host")
            if wrong:
                print("bad fields %s in %s" % (wrong, r))
                break
        other = [r for r in recs if r.get("serviceId") == "svc-other"]
        if not other or any(r.get("bytesDownload", 0) != 0 for r in other):
            print("svc-other records: %s" % other)
        ups = [r.get("bytesUpload", 0) for r in recs if r.get("serviceId") == "svc-udp"]
        if not ups or max(ups) < 1200 * 1000:
            print("largest svc-udp upload %s (the flood)" % (max(ups) if ups else None))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
