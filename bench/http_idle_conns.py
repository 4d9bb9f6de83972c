#!/usr/bin/env python3
"""Memory per idle keep-alive client connection of an HTTP server (bench/http_bench.sh, case mem).

  http_idle_conns.py HOST PORT HOSTHDR PATH N PID [INFLIGHT]

1. Warm-up: 5 rounds of INFLIGHT concurrent connections, one request each, then closed (so the
   server's lazily allocated state and its upstream keep-alive pool exist before the first
   reading).
2. Reads PID's VmRSS/RssAnon ("before"), the kernel's TCP buffer memory (/proc/net/sockstat) and
   the slab caches of sockets (/proc/slabinfo; system-wide, both ends of every connection).
3. Opens N connections, at most INFLIGHT (default 100) at a time connecting/requesting: each
   sends one GET with keep-alive, reads the complete response (Content-Length), then stays open
   and idle.
4. Waits 3 s, reads the same figures again ("after"), checks that every connection is still
   open (recv MSG_PEEK|MSG_DONTWAIT must say "would block"), closes them all, waits 3 s and
   reads RSS once more ("after close").
Prints one line of JSON. Needs an open-file limit above N + 100 (the caller raises it).
"""
import json
import os
import selectors
import socket
import sys
import time


def status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "VmData"):
                out[k] = int(v.split()[0])  # KiB
    return out


def sockstat():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                w = line.split()[1:]
                return {w[i]: int(w[i + 1]) for i in range(0, len(w), 2)}
    return {}


SLABS = ("TCP", "sock_inode_cache", "filp", "eventpoll_epi", "dentry")


def slab_bytes():
    """Bytes of active objects in the slab caches a connected TCP socket uses (system-wide)."""
    out = {}
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                w = line.split()
                if w and w[0] in SLABS:
                    out[w[0]] = int(w[1]) * int(w[3])
    except OSError:
        pass
    return out


def run_requests(host, port, req, n, inflight, keep):
    """Opens n connections (<= inflight in progress), one request each; returns the sockets whose
    response completed, left open (keep=True), or closes them (keep=False)."""
    sel = selectors.DefaultSelector()
    done = []
    started = 0
    active = 0
    failures = 0

    def start_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        st = {"sock": s, "buf": b"", "sent": False, "need": None}
        sel.register(s, selectors.EVENT_WRITE, st)

    while len(done) + failures < n:
        while started < n and active < inflight:
            start_one()
            started += 1
            active += 1
        for key, ev in sel.select(timeout=10):
            st = key.data
            s = st["sock"]
            if not st["sent"]:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    sel.unregister(s)
                    s.close()
                    failures += 1
                    active -= 1
                    continue
                s.send(req)  # small: fits the empty send buffer
                st["sent"] = True
                sel.modify(s, selectors.EVENT_READ, st)
                continue
            try:
                chunk = s.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                sel.unregister(s)
                s.close()
                failures += 1
                active -= 1
                continue
            st["buf"] += chunk
            if st["need"] is None:
                i = st["buf"].find(b"\r\n\r\n")
                if i < 0:
                    continue
                head = st["buf"][:i].decode("latin-1").lower()
                cl = 0
                for line in head.split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    if k.strip() == "content-length":
                        cl = int(v.strip())
                if not head.startswith("http/1.1 200"):
                    failures += 1
                st["need"] = i + 4 + cl
            if len(st["buf"]) >= st["need"]:
                sel.unregister(s)
                st["buf"] = b""
                done.append(s)
                active -= 1
    sel.close()
    if not keep:
        for s in done:
            s.close()
        done = []
    return done, failures


def main():
    host, port, hosthdr, path, n, pid = sys.argv[1:7]
    port, n, pid = int(port), int(n), int(pid)
    inflight = int(sys.argv[7]) if len(sys.argv) > 7 else 100
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: nbh-idle\r\n\r\n" % (path, hosthdr)).encode()
    res = {"n": n, "inflight": inflight}

    # warm-up: inflight connections x 5 requests, closed afterwards
    for _ in range(5):
        _, f = run_requests(host, port, req, inflight, inflight, keep=False)
        if f:
            res["warmup_failures"] = res.get("warmup_failures", 0) + f
    time.sleep(2)
    res["before"] = status(pid)
    res["sockstat_before"] = sockstat()
    res["slab_before"] = slab_bytes()

    t0 = time.monotonic()
    socks, failures = run_requests(host, port, req, n, inflight, keep=True)
    t1 = time.monotonic()
    res["open_seconds"] = round(t1 - t0, 2)
    res["opened"] = len(socks)
    res["failures"] = failures
    time.sleep(3)
    res["after"] = status(pid)
    res["sockstat_after"] = sockstat()
    res["slab_after"] = slab_bytes()
    res["measured_s_after_first_idle"] = round(time.monotonic() - t0, 1)
    alive = 0
    for s in socks:
        try:
            r = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            if r:
                alive += 1  # unexpected data, but open
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    res["alive_at_check"] = alive
    for s in socks:
        s.close()
    time.sleep(3)
    res["after_close"] = status(pid)
    d = res["after"]["VmRSS"] - res["before"]["VmRSS"]
    res["rss_delta_kib"] = d
    res["rss_per_conn_bytes"] = round(d * 1024 / max(1, len(socks)), 1)
    da = res["after"]["RssAnon"] - res["before"]["RssAnon"]
    res["rssanon_per_conn_bytes"] = round(da * 1024 / max(1, len(socks)), 1)
    sb, sa = res["slab_before"], res["slab_after"]
    res["slab_per_conn_bytes"] = {k: round((sa.get(k, 0) - sb.get(k, 0)) / max(1, len(socks)), 1)
                                  for k in SLABS}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
