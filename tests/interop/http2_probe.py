#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""HTTP/2 protocol probes for tests/interop/http2_test.sh, written with Debian's python3-h2
(a client we did not write) over TLS with ALPN h2. Each case prints one line
"<case> ok|FAIL <detail>" and the exit status is the number of failures.

  http2_probe.py <port> <case>...      cases: see CASES below
  http2_probe.py <port> idle-conns N   opens N idle h2 connections, prints "ready", holds
                                       them until stdin closes
"""
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

PORT = int(sys.argv[1])


def connect():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
    cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                    normalize_outbound_headers=False,
                                    validate_inbound_headers=False)
    c = h2.connection.H2Connection(cfg)
    c.initiate_connection()
    s.sendall(c.data_to_send())
    return s, c


def pump(s, c, until, limit=10.0):
    """Reads events until until(events_so_far) is true, the connection ends, or limit s."""
    evs = []
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if until(evs):
            break
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        except (ConnectionError, ssl.SSLError):
            evs.append("closed")
            break
        if not d:
            evs.append("closed")
            break
        try:
            evs.extend(c.receive_data(d))
        except Exception as e:  # h2 refuses something: keep the event list so far
            evs.append(("h2-error", repr(e)))
            break
        out = c.data_to_send()
        if out:
            try:
                s.sendall(out)
            except (ConnectionError, ssl.SSLError):
                evs.append("closed")
                break
    return evs


def req(path, method="GET", extra=(), authority="localhost"):
    h = [(":method", method), (":scheme", "https"), (":authority", authority), (":path", path)]
    return h + list(extra)


def of(evs, cls, sid=None):
    return [e for e in evs if isinstance(e, cls) and (sid is None or getattr(e, "stream_id", None) == sid)]


def status_of(evs, sid):
    for e in of(evs, h2.events.ResponseReceived, sid):
        return dict((k.decode(), v.decode()) for k, v in e.headers).get(":status")
    return None


def ended(sid):
    return lambda evs: any(getattr(e, "stream_id", None) == sid and
                           isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))
                           for e in evs) or "closed" in evs or of(evs, h2.events.ConnectionTerminated)


def rst_code(evs, sid):
    for e in of(evs, h2.events.StreamReset, sid):
        return int(e.error_code)
    return None


def one(headers, body=None, end=True):
    s, c = connect()
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, headers, end_stream=end and body is None)
    if body is not None:
        c.send_data(sid, body, end_stream=end)
    s.sendall(c.data_to_send())
    evs = pump(s, c, ended(sid))
    s.close()
    return sid, evs


RESULTS = []


def check(name, cond, detail=""):
    RESULTS.append(cond)
    print("%s %s %s" % (name, "ok" if cond else "FAIL", detail), flush=True)


def case_settings():
    s, c = connect()
    evs = pump(s, c, lambda e: of(e, h2.events.RemoteSettingsChanged))
    st = {}
    for e in of(evs, h2.events.RemoteSettingsChanged):
        st.update({int(k): v.new_value for k, v in e.changed_settings.items()})
    s.close()
    check("settings", st.get(3) == 250 and st.get(4) == 262144 and st.get(6) == 65536, str(st))


def case_get():
    sid, evs = one(req("/hello"))
    body = b"".join(e.data for e in of(evs, h2.events.DataReceived, sid))
    check("get", status_of(evs, sid) == "200" and body == b"hello", "%s %r" % (status_of(evs, sid), body))


def expect_rst(name, headers, body=None):
    sid, evs = one(headers, body)
    code = rst_code(evs, sid)
    check(name, code == 1, "rst=%s status=%s" % (code, status_of(evs, sid)))  # PROTOCOL_ERROR


def case_uppercase():
    expect_rst("uppercase-name", req("/hello", extra=[("X-Upper", "1")]))


def case_connection():
    expect_rst("connection-header", req("/hello", extra=[("connection", "keep-alive")]))
    expect_rst("transfer-encoding", req("/hello", extra=[("transfer-encoding", "chunked")]))
    expect_rst("upgrade-header", req("/hello", extra=[("upgrade", "websocket")]))
    expect_rst("keep-alive", req("/hello", extra=[("keep-alive", "5")]))
    expect_rst("proxy-connection", req("/hello", extra=[("proxy-connection", "close")]))


def case_te():
    expect_rst("te-gzip", req("/hello", extra=[("te", "gzip")]))
    sid, evs = one(req("/hello", extra=[("te", "trailers")]))
    check("te-trailers", status_of(evs, sid) == "200", str(status_of(evs, sid)))


def case_pseudo():
    expect_rst("missing-path", [(":method", "GET"), (":scheme", "https"), (":authority", "localhost")])
    expect_rst("missing-method", [(":path", "/"), (":scheme", "https"), (":authority", "localhost")])
    expect_rst("pseudo-after-regular", [(":method", "GET"), ("x-a", "1"), (":path", "/"),
                                        (":scheme", "https"), (":authority", "localhost")])


def case_connect():
    sid, evs = one([(":method", "CONNECT"), (":authority", "localhost:443")])
    check("connect", status_of(evs, sid) == "405", "status=%s rst=%s" % (status_of(evs, sid), rst_code(evs, sid)))


def case_cl_mismatch():
    expect_rst("content-length-mismatch",
               req("/echo", "POST", extra=[("content-length", "10")]), b"12345")


def case_big_headers():
    sid, evs = one(req("/hello", extra=[("x-big-%d" % i, "v" * 1000) for i in range(70)]))
    check("header-list-too-large", status_of(evs, sid) == "431", str(status_of(evs, sid)))


def case_cookies():
    sid, evs = one(req("/headers", extra=[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]))
    body = b"".join(e.data for e in of(evs, h2.events.DataReceived, sid)).decode()
    check("cookie-join", "Cookie: a=1; b=2; c=3" in body, repr([l for l in body.splitlines() if "ookie" in l]))
    host = [l for l in body.splitlines() if l.startswith("X-Forwarded-Host")]
    check("authority-as-host", host == ["X-Forwarded-Host: localhost"], repr(host))


def case_trailers():
    """Request trailers reach the upstream (chunked), response trailers reach us."""
    s, c = connect()
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, req("/echo", "POST", extra=[("te", "trailers")]))
    c.send_data(sid, b"hello ")
    c.send_data(sid, b"world")
    c.send_headers(sid, [("x-req-trailer", "yes")], end_stream=True)
    s.sendall(c.data_to_send())
    evs = pump(s, c, ended(sid))
    body = b"".join(e.data for e in of(evs, h2.events.DataReceived, sid)).decode()
    check("request-trailers", body.startswith("11 ") and "T:x-req-trailer=yes" in body, repr(body))
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, req("/trailers"), end_stream=True)
    s.sendall(c.data_to_send())
    evs = pump(s, c, ended(sid))
    tr = [dict((k.decode(), v.decode()) for k, v in e.headers) for e in of(evs, h2.events.TrailersReceived, sid)]
    check("response-trailers", tr == [{"x-sum": "42"}], repr(tr))
    s.close()


def case_abort():
    """An upstream cut mid-body resets only that stream (INTERNAL_ERROR); a sibling completes."""
    s, c = connect()
    a = c.get_next_available_stream_id()
    c.send_headers(a, req("/cut"), end_stream=True)
    b = a + 2
    c.send_headers(b, req("/hello"), end_stream=True)
    s.sendall(c.data_to_send())
    evs = pump(s, c, lambda e: ended(a)(e) and ended(b)(e))
    body = b"".join(e.data for e in of(evs, h2.events.DataReceived, b))
    check("abort-one-stream", rst_code(evs, a) == 2 and body == b"hello" and
          not of(evs, h2.events.ConnectionTerminated),
          "rst=%s sibling=%r" % (rst_code(evs, a), body))
    s.close()


def case_client_reset():
    """A client reset mid-request: the server's handler is told, the connection lives on."""
    s, c = connect()
    a = c.get_next_available_stream_id()
    c.send_headers(a, req("/slow?ms=500"), end_stream=True)
    s.sendall(c.data_to_send())
    time.sleep(0.2)
    c.reset_stream(a, 8)  # CANCEL
    b = a + 2
    c.send_headers(b, req("/hello"), end_stream=True)
    s.sendall(c.data_to_send())
    evs = pump(s, c, ended(b))
    check("client-reset", status_of(evs, b) == "200", str(status_of(evs, b)))
    s.close()


def goaway(evs):
    for e in of(evs, h2.events.ConnectionTerminated):
        return int(e.error_code), e.last_stream_id
    return None


def case_rapid_reset():
    s, c = connect()
    pump(s, c, lambda e: of(e, h2.events.RemoteSettingsChanged))
    for i in range(400):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, req("/slow?ms=2000"), end_stream=True)
        c.reset_stream(sid, 8)
    try:
        s.sendall(c.data_to_send())
    except (ConnectionError, ssl.SSLError):
        pass
    evs = pump(s, c, lambda e: of(e, h2.events.ConnectionTerminated) or "closed" in e)
    g = goaway(evs)
    # nghttp2's reset rate limit ends the connection with GOAWAY(INTERNAL_ERROR)
    check("rapid-reset-goaway", g is not None and g[0] != 0, "goaway=%s" % (g,))
    s.close()


def case_empty_frames():
    s, c = connect()
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, req("/echo", "POST"))
    s.sendall(c.data_to_send())
    sent = 0
    try:
        for i in range(1200):
            c.send_data(sid, b"")
            sent += 1
            if i % 100 == 99:
                s.sendall(c.data_to_send())
    except Exception:
        pass
    evs = pump(s, c, lambda e: of(e, h2.events.ConnectionTerminated) or "closed" in e)
    g = goaway(evs)
    check("empty-data-flood-goaway", g is not None and g[0] == 11, "goaway=%s sent=%d" % (g, sent))
    s.close()


def heap():
    """The harness's heap in use, read over a separate HTTP/2 connection."""
    sid, evs = one(req("/__h2stats"))
    body = b"".join(e.data for e in of(evs, h2.events.DataReceived, sid)).decode()
    return int(dict(l.split("=") for l in body.split())["heap"])


def case_ping_flood():
    """PINGs (and SETTINGS) sent without ever reading the acks: the server stops reading once
    its write queue is full, so its memory stays bounded; the connection is not needed after."""
    before = heap()
    s, c = connect()
    s.settimeout(3)
    n = 0
    try:
        for i in range(200000):
            c.ping(b"%08d" % i)
            if i % 10 == 0:
                c.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 4096})
            n += 1
            if i % 1000 == 999:
                s.sendall(c.data_to_send())
    except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
        pass
    during = heap()
    s.close()
    check("ping-flood-bounded", during - before < 8 * 1024 * 1024,
          "sent=%d heap growth=%d" % (n, during - before))


def case_bad_preface():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", PORT), timeout=5), server_hostname="localhost")
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    got = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
    except (ConnectionError, ssl.SSLError, socket.timeout):
        pass
    check("bad-preface-closed", b"HTTP/1.1" not in got, "got %d bytes" % len(got))
    s.close()


def case_many_streams():
    """300 streams sent before the server's SETTINGS could arrive: 250 are served, the rest
    refused (REFUSED_STREAM), none lost."""
    s, c = connect()
    sids = []
    for i in range(300):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, req("/hello"), end_stream=True)
        sids.append(sid)
    s.sendall(c.data_to_send())
    done = set()
    refused = set()

    def fin(evs):
        for e in evs:
            if isinstance(e, h2.events.StreamEnded):
                done.add(e.stream_id)
            if isinstance(e, h2.events.StreamReset):
                refused.add(e.stream_id)
        return len(done) + len(refused) >= len(sids) or "closed" in evs
    evs = pump(s, c, fin, 30)
    fin(evs)
    check("max-concurrent", len(done) >= 250 and len(done) + len(refused) == 300 and
          all(rst_code(evs, r) == 7 for r in refused),
          "done=%d refused=%d %s" % (len(done), len(refused), [e for e in evs if isinstance(e, (str, tuple))]))
    s.close()


def case_idle():
    """Run against a harness started with a short idle timeout: GOAWAY(NO_ERROR), then close."""
    s, c = connect()
    evs = pump(s, c, lambda e: "closed" in e, 15)
    g = goaway(evs)
    check("idle-timeout-goaway", g is not None and g[0] == 0 and "closed" in evs, "goaway=%s" % (g,))
    s.close()


def idle_conns(n):
    conns = []
    for i in range(n):
        s, c = connect()
        pump(s, c, lambda e: of(e, h2.events.SettingsAcknowledged), 5)
        conns.append((s, c))
    print("ready", flush=True)
    sys.stdin.read()
    for s, c in conns:
        s.close()


CASES = {
    "settings": case_settings, "get": case_get, "uppercase": case_uppercase,
    "connection": case_connection, "te": case_te, "pseudo": case_pseudo, "connect": case_connect,
    "cl-mismatch": case_cl_mismatch, "big-headers": case_big_headers, "cookies": case_cookies,
    "trailers": case_trailers, "abort": case_abort, "client-reset": case_client_reset,
    "rapid-reset": case_rapid_reset, "empty-frames": case_empty_frames,
    "ping-flood": case_ping_flood, "bad-preface": case_bad_preface,
    "many-streams": case_many_streams, "idle": case_idle,
}

if __name__ == "__main__":
    if sys.argv[2] == "idle-conns":
        idle_conns(int(sys.argv[3]))
        sys.exit(0)
    for name in sys.argv[2:]:
        try:
            CASES[name]()
        except Exception as e:
            check(name, False, "exception %r" % (e,))
    sys.exit(sum(1 for r in RESULTS if not r))
