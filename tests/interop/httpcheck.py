#!/usr/bin/env python3
"""JSON checks for tests/interop/http_test.sh. Each command prints nothing when everything
matches, else one line per mismatch (the caller turns that into PASS / FAIL).

  httpcheck.py hdrs FILE SPEC...   FILE is the backend's /echo answer. SPEC is
                                   name=value (exactly one such field, with that value),
                                   !name (no such field), name~v1|v2 (absent, or one of the values),
                                   url=..., bytes=..., sha256=..., method=..., trailers=<dict>
  httpcheck.py page FILE           prints window.__DATA__ of a proxy page as compact JSON
  httpcheck.py get FILE EXPR       prints EXPR evaluated with d = the JSON in FILE
  httpcheck.py alog LOG EXPECT HOST=ACCOUNT/SERVICE... [anyids=PATH...]
                                   checks the access log against EXPECT (TSV: path method code
                                   host bytesUpload bytesDownload sourceIp logId minDurationMs,
                                   "-" = not checked, "+" = greater than zero): every expected
                                   path has exactly one record, with those values; every record
                                   has every field, a host without port, protocol "http", the
                                   account and service of its host (empty for unknown hosts),
                                   no auth fields (authSuccess unless 401/403); records other
                                   than /probe/... are all expected
"""
import json
import sys

FIELDS = ["logId", "accountId", "serviceId", "host", "path", "durationMs", "method",
          "responseCode", "sourceIp", "authMechanism", "userId", "authSuccess", "bytesUpload",
          "bytesDownload", "protocol", "metadata", "agentNetwork", "timestamp"]


def load(path):
    with open(path, "rb") as f:
        return json.loads(f.read())


def hdrs(path, specs):
    try:
        d = load(path)
    except (OSError, ValueError) as e:
        print(f"backend answer is not JSON: {e}")
        return
    raw = d.get("rawHeaders", [])
    fields = {}
    for i in range(0, len(raw) - 1, 2):
        fields.setdefault(raw[i].lower(), []).append(raw[i + 1])
    for s in specs:
        if s.startswith("!"):
            if s[1:] in fields:
                print(f"{s[1:]} present: {fields[s[1:]]}")
            continue
        if "~" in s:
            name, _, vals = s.partition("~")
            if name in fields and (len(fields[name]) != 1 or fields[name][0] not in vals.split("|")):
                print(f"{name}: {fields[name]} (want absent or one of {vals.split('|')})")
            continue
        name, _, val = s.partition("=")
        if name in ("url", "bytes", "sha256", "method", "trailers"):
            if str(d.get(name)) != val:
                print(f"{name}: {d.get(name)!r} (want {val!r})")
        elif fields.get(name) != [val]:
            print(f"{name}: {fields.get(name)} (want [{val!r}])")


def page(path):
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    marker = "window.__DATA__ ="
    k = text.find(marker)
    if k < 0:
        marker = "window.__DATA__="
        k = text.find(marker)
    if k < 0:
        print("{}")
        return
    obj, _ = json.JSONDecoder().raw_decode(text[k + len(marker):].lstrip())
    print(json.dumps(obj, separators=(",", ":"), sort_keys=True))


def alog(log_path, expect_path, services):
    """services: ["host=account/service", ...]; other hosts must carry empty ids."""
    owners = {}
    anyids = set()
    for item in services:
        host, _, ids = item.partition("=")
        if host == "anyids":  # anyids=PATH: a record whose ids are not checked
            anyids.add(ids)
        else:
            owners[host] = tuple(ids.split("/", 1))
    recs = []
    with open(log_path, "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                recs.append(json.loads(line))
            except ValueError:
                print(f"line {n} is not JSON: {line[:120]!r}")
    for r in recs:
        missing = [k for k in FIELDS if k not in r]
        if missing:
            print(f"record for {r.get('path')} lacks {missing}")
        if ":" in str(r.get("host", "")):
            print(f"record for {r.get('path')} has a port in host {r.get('host')!r}")
        if r.get("protocol") != "http":
            print(f"record for {r.get('path')} has protocol {r.get('protocol')!r}")
        want_ids = owners.get(r.get("host"), ("", ""))
        if (r.get("accountId"), r.get("serviceId")) != want_ids and r.get("path") not in anyids:
            print(f"record for {r.get('path')} has accountId/serviceId "
                  f"{r.get('accountId')!r}/{r.get('serviceId')!r} (want {want_ids})")
        # No authentication is configured: nothing is an auth failure, nobody is named.
        if (r.get("authSuccess") is not (r.get("responseCode") not in (401, 403)) or
                r.get("authMechanism") != "" or r.get("userId") != "" or
                r.get("agentNetwork") is not False or r.get("metadata") != {}):
            print(f"record for {r.get('path')} has auth/agent fields {json.dumps(r)[:300]}")
        if not isinstance(r.get("durationMs"), int) or r.get("durationMs") < 0:
            print(f"record for {r.get('path')} has durationMs {r.get('durationMs')!r}")
    expected = set()
    with open(expect_path) as f:
        for line in f:
            if not line.strip():
                continue
            path, method, code, host, up, down, src, logid, mindur = line.rstrip("\n").split("\t")
            expected.add(path)
            got = [r for r in recs if r.get("path") == path]
            if len(got) != 1:
                print(f"{path}: {len(got)} records (want 1)")
                continue
            r = got[0]
            for key, want in (("method", method), ("responseCode", code), ("host", host),
                              ("bytesUpload", up), ("bytesDownload", down),
                              ("sourceIp", src), ("logId", logid)):
                if want == "-":
                    continue
                if want == "+":
                    if not isinstance(r.get(key), int) or r.get(key) <= 0:
                        print(f"{path}: {key}={r.get(key)!r} (want > 0)")
                elif str(r.get(key)) != want:
                    print(f"{path}: {key}={r.get(key)!r} (want {want!r})")
            if mindur != "-" and not r.get("durationMs", -1) >= int(mindur):
                print(f"{path}: durationMs={r.get('durationMs')!r} (want >= {mindur})")
    for r in recs:
        p = str(r.get("path"))
        if p not in expected and not p.startswith("/probe/"):
            print(f"unexpected record: {json.dumps(r)[:200]}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "hdrs":
        hdrs(sys.argv[2], sys.argv[3:])
    elif cmd == "page":
        page(sys.argv[2])
    elif cmd == "get":
        try:
            d = load(sys.argv[2])
            print(eval(sys.argv[3], {"d": d}))
        except Exception as e:  # noqa: BLE001 - a broken answer is a test failure, not a crash
            print(f"<error: {e}>")
    elif cmd == "alog":
        alog(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(f"unknown command {cmd}")
