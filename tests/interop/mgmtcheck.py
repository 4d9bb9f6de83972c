# SPDX-License-Identifier: BSD-3-Clause
"""Helpers for mgmt_test.sh's checks, which are small Python snippets run with `python3 -`:
the management double's records (tests/mgmt/management.js, GET /state on its control port),
nbproxy's health endpoints and HTTP listener, polling with a bound, and PASS/FAIL lines that
the shell script counts ("PASS: what" / "FAIL: what: why").

A snippet that raises is reported as one FAIL (never as a silent pass)."""
import json
import os
import re
import sys
import time
import traceback
import urllib.error
import urllib.request

ENV = os.environ


def _hook(kind, value, tb):
    msg = "".join(traceback.format_exception(kind, value, tb)).strip().replace("\n", " | ")
    print("FAIL: check script error: " + msg[-900:], flush=True)


sys.excepthook = _hook


def check(cond, what, why=""):
    """One PASS or FAIL line; returns cond so callers can chain."""
    if cond:
        print("PASS: " + what, flush=True)
    else:
        why = str(why).replace("\n", " ")
        print("FAIL: " + what + (": " + why[:1200] if why else ""), flush=True)
    return bool(cond)


def eq(got, want, what):
    return check(got == want, what, "want %r, got %r" % (want, got))


def state(port, since=0):
    url = "http://127.0.0.1:%s/state" % port + ("?since=%s" % since if since else "")
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def post(port, path, body):
    data = json.dumps(body).encode()
    req = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path), data=data, method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def get(url, host=None, timeout=5):
    """(status, body bytes); status 0 when the request failed at the transport."""
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception:  # refused, reset, timeout
        return 0, b""


def wait(fn, timeout, step=0.05):
    """Polls fn() until it returns something truthy or timeout seconds pass; returns the last
    value."""
    end = time.monotonic() + timeout
    v = fn()
    while not v and time.monotonic() < end:
        time.sleep(step)
        v = fn()
    return v


def through(port, host, path="/who", timeout=5):
    """GET through nbproxy's --http-addr with a Host: (status, body)."""
    return get("http://127.0.0.1:%s%s" % (port, path), host=host, timeout=timeout)


def health(port, path):
    return get("http://127.0.0.1:%s%s" % (port, path))[0]


def log_lines(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


LOG_TS = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z ")


def log_ms(line):
    """Wall-clock milliseconds of an nbproxy log line (UTC)."""
    import calendar
    m = LOG_TS.match(line)
    if not m:
        return None
    y, mo, d, h, mi, s, ms = (int(x) for x in m.groups())
    return calendar.timegm((y, mo, d, h, mi, s)) * 1000 + ms


def rpcs(st, name):
    return [r for r in st["rpcs"] if r["rpc"] == name]


def statuses(st, service_id, status=None):
    return [s for s in st["statuses"] if s["service_id"] == service_id and (status is None or s["status"] == status)]
