#!/usr/bin/env python3
"""Memory per idle TLS connection of a server (bench/tls_bench.sh, case mem).

  tls_idle_conns.py HOST PORT SNI PATH N PID [INFLIGHT]

1. Warm-up: 3 rounds of INFLIGHT connections (TLS 1.3, ALPN http/1.1, one GET each, closed), so
   lazily made state (certificate contexts, upstream pool) exists before the first reading.
2. Reads PID's VmRSS ("before").
3. Opens N TLS connections, INFLIGHT at a time: handshake, one GET (keep-alive), the whole
   response read (Content-Length), then idle.
4. Waits 3 s, reads VmRSS ("after"), checks every connection is still open, closes them, waits
   3 s, reads VmRSS again ("after close").
Prints one line of JSON. The certificate is not verified (the point is the server's memory).
Needs an open-file limit above N + 100.
"""
import asyncio
import json
import ssl
import sys
import time


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])  # KiB
    return 0


async def one(host, port, sni, path, ctx, keep):
    r, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=sni)
    w.write(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, sni)).encode())
    head = await r.readuntil(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    if n:
        await r.readexactly(n)
    if keep is None:
        w.close()
        return head.split(b" ")[1]
    keep.append((r, w))
    return head.split(b" ")[1]


async def batch(count, inflight, *args):
    sem = asyncio.Semaphore(inflight)
    codes = {}

    async def run():
        async with sem:
            try:
                c = await one(*args)
            except Exception as e:  # counted, reported
                c = type(e).__name__.encode()
            codes[c] = codes.get(c, 0) + 1

    await asyncio.gather(*(run() for _ in range(count)))
    return {k.decode(): v for k, v in codes.items()}


async def main():
    host, port, sni, path, n, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    inflight = int(sys.argv[7]) if len(sys.argv) > 7 else 100
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["http/1.1"])
    for _ in range(3):
        await batch(inflight, inflight, host, port, sni, path, ctx, None)
    await asyncio.sleep(1)
    before = rss(pid)
    keep = []
    t0 = time.time()
    codes = await batch(n, inflight, host, port, sni, path, ctx, keep)
    opened = time.time() - t0
    await asyncio.sleep(3)
    after = rss(pid)
    alive = sum(1 for r, w in keep if not r.at_eof() and not w.is_closing())
    for r, w in keep:
        w.close()
    await asyncio.sleep(3)
    closed = rss(pid)
    print(json.dumps({"n": n, "open": len(keep), "alive": alive, "codes": codes,
                      "rss_before_kib": before, "rss_after_kib": after, "rss_after_close_kib": closed,
                      "bytes_per_conn": round((after - before) * 1024 / max(len(keep), 1)),
                      "open_seconds": round(opened, 1)}))


asyncio.run(main())
