#!/usr/bin/env bash
# nbproxy in management mode against a management server double: tests/mgmt/management.js
# (grpc-js, our mgmt/proxy_service.proto, NetBird management's ProxyService as spec/proxy.md §2,
# §3.2 and Appendix B describe it), driven through its control interface. Backends are Python
# http.servers on 127.0.0.1; clients are curl and Python. Everything listens on 127.0.0.1 except
# check 10's first variant, which runs in a network namespace holding only a loopback interface
# (needs root, as the rest of the interop suite). Every process is stopped by PID.
#
#   18700 double (gRPC)  18701 its control   18702 nbproxy health   18703 nbproxy --http-addr
#   18711 backend "one"  18712 backend "two"
#   18720-18723 check 4 (double, control, health, http)   18730-18735 check 6   18742, 18749 check 10
#   18740, 18741, 18743-18748 check 15
#
# Checks: 1 the snapshot in three batches with an ack between each, the init message;
# 2 incremental create/modify/remove served end to end; 3 reconciliation after a reconnect;
# 4 Unimplemented SyncMappings -> GetMappingUpdate; 5 management restart: backoff, full resync,
# readiness; 6 the token: exact bearer on every RPC, nothing sent over plaintext without
# NB_PROXY_ALLOW_INSECURE, never logged, rejected tokens; 7 status updates and CreateProxyPeer;
# 8 access logs to management; 9 health before/after the stream and the snapshot; 10 seed 004's
# environment; 11 a malformed mapping inside a batch; 12 management's send-queue overflow forces
# a resync; 13 a revoked token ends the stream; 14 management stops answering: the batch
# watchdog; 15 https:// management (TLS against grpc-js, verification and ALPN refusals,
# SSL_CERT_FILE). Check 1 also reads the sync series on /metrics. docs/testing.md lists every assertion.
# NBT_KEEP=1 keeps the work directory (logs, records, access logs).
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
double=$top/tests/mgmt/management.js
work=$(mktemp -d /tmp/nbt-mgmt.XXXXXX)
MP=18700 MC=18701 HP=18702 XP=18703 B1=18711 B2=18712
pids=()
pass=0
fail=0
t_start=$(date +%s)
# Nothing from the caller's environment may change nbproxy's configuration.
for v in $(compgen -e | grep '^NB_PROXY_'); do unset "$v"; done
NS=nbtm-seed

log() { printf '[mgmt] %s\n' "$*"; }
ok() { pass=$((pass + 1)); log "PASS: $*"; }
bad() { fail=$((fail + 1)); log "FAIL: $*"; }

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    ip netns del $NS 2>/dev/null
    if [ "${NBT_KEEP:-0}" = 1 ]; then echo "[mgmt] work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Runs a Python check snippet (stdin) with tests/interop/mgmtcheck.py imported as M; its
# "PASS: ..." / "FAIL: ..." lines are counted, anything else is printed. A snippet that dies
# without printing is a failure.
pyck() {
    local line n=0
    while IFS= read -r line; do
        case $line in
        PASS:*) ok "${line#PASS: }"; n=$((n + 1)) ;;
        FAIL:*) bad "${line#FAIL: }"; n=$((n + 1)) ;;
        *) log "$line" ;;
        esac
    done < <(cd "$here" && env PYTHONDONTWRITEBYTECODE=1 WORK="$work" XP="$XP" HP="$HP" MC="$MC" B1="$B1" B2="$B2" TOKEN="${TOKEN:-}" "$@" \
        python3 -c 'import sys; sys.path.insert(0, "."); import mgmtcheck as M; from mgmtcheck import *
exec(compile(sys.stdin.read(), "check", "exec"))' 2>&1)
    [ $n -gt 0 ] || bad "a check snippet printed no result"
}

wait_for() { # seconds, command...: polls every 50 ms
    local end=$(($(date +%s%N) / 1000000 + ${1%.*} * 1000))
    shift
    until "$@" 2>/dev/null; do
        [ $(($(date +%s%N) / 1000000)) -ge $end ] && return 1
        sleep 0.05
    done
}
hcode() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@"; }

# start_double NAME args...: runs the double, waits for its ports; sets <NAME>_PID.
start_double() {
    local name=$1
    shift
    node "$double" "$@" > "$work/$name.out" 2> "$work/$name.err" &
    local p=$!
    pids+=($p)
    printf -v "${name}_PID" %s $p
    wait_for 10 grep -q '^CONTROL ' "$work/$name.out" || { bad "$name did not start: $(cat "$work/$name.err")"; return 1; }
}
stop_pid() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

# start_nb NAME [env assignments...] -- nbproxy args...: sets <NAME>_PID; stderr in NAME.err.
start_nb() {
    local name=$1 envs=()
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    # Management mode always opens the main TLS listener (default :443, as netbird-proxy) and
    # needs a certificate for it: a kernel-chosen loopback port and the static pair made above,
    # unless the caller's assignments say otherwise; ./certs (the ACME cache) lands in $work.
    (cd "$work" && exec env NB_PROXY_ADDRESS=127.0.0.1:0 NB_PROXY_CERTIFICATE_DIRECTORY="$work/static" \
        "${envs[@]}" "$bin" "$@") > "$work/$name.out" 2> "$work/$name.err" &
    local p=$!
    pids+=($p)
    printf -v "${name}_PID" %s $p
}
alive() { kill -0 "$1" 2>/dev/null; }
mkdir -p "$work/static" &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=proxy.test \
        -addext "subjectAltName=DNS:proxy.test,DNS:*.proxy.test" -keyout "$work/static/tls.key" \
        -out "$work/static/tls.crt" 2>/dev/null

# ---------------------------------------------------------------------------------------------
command -v node >/dev/null || { bad "node is not installed"; echo "[mgmt] $pass passed, $fail failed"; exit 1; }
[ -x "$bin" ] || { bad "no nbproxy binary at $bin"; echo "[mgmt] $pass passed, $fail failed"; exit 1; }
[ -d "$top/tests/mgmt/node_modules/@grpc/grpc-js" ] || {
    bad "tests/mgmt/node_modules is missing: run scripts/install-deps.sh --test (npm ci in tests/mgmt)"
    echo "[mgmt] $pass passed, $fail failed"; exit 1; }

TOKEN=$(node "$double" --mint)
[[ "$TOKEN" =~ ^nbx_[0-9A-Za-z]{36}$ ]] && ok "the double mints a proxy token (nbx_ + 36 base62)" || bad "minted token: $TOKEN"
version=$("$bin" --version | sed -n 's/^Version: \([^,]*\),.*/\1/p')

# Backends: two Python http.servers, each answering GET /who with its name.
for b in one:$B1 two:$B2; do
    mkdir -p "$work/be-${b%%:*}"
    echo "backend-${b%%:*}" > "$work/be-${b%%:*}/who"
    python3 -m http.server "${b#*:}" --bind 127.0.0.1 --directory "$work/be-${b%%:*}" > /dev/null 2>&1 &
    pids+=($!)
done
wait_for 10 curl -sf -o /dev/null http://127.0.0.1:$B1/who && wait_for 10 curl -sf -o /dev/null http://127.0.0.1:$B2/who ||
    bad "backends did not start"

# The snapshot: 1200 HTTP services over 4 accounts (direct_upstream to backend one), with six
# odd ones in the middle of the second batch, after svc-0699: an unparsable target (applied,
# path skipped), a udp service (refused: management mode builds no account tunnels yet), an auth scheme and a private service
# (both refused until authentication / tunnel-peer validation exist), a malformed one (a custom
# header name with a space: the decoder rejects it), and an unknown mode string (HTTP, spec §3:
# everything not L4 is HTTP).
python3 - "$work/services.json" $B1 <<'PY'
import json, sys
out, port = sys.argv[1], int(sys.argv[2])
def svc(i, **kw):
    s = {"id": "svc-%04d" % i, "account_id": "acct-%d" % (i % 4), "domain": "s%d.proxy.test" % i, "mode": "http",
         "path": [{"path": "/", "target": "http://127.0.0.1:%d/" % port, "options": {"direct_upstream": True}}]}
    s.update(kw)
    return s
svcs = [svc(i) for i in range(1200)]
bad = [
    svc(0, id="bad-target", account_id="acct-0", domain="bad-target.proxy.test",
        path=[{"path": "/", "target": "127.0.0.1:%d" % port, "options": {"direct_upstream": True}}]),
    svc(1, id="bad-mode", account_id="acct-1", domain="bad-mode.proxy.test", mode="udp", listen_port=18719,
        path=[{"path": "", "target": "127.0.0.1:%d" % port}]),
    svc(2, id="bad-auth", account_id="acct-2", domain="bad-auth.proxy.test",
        auth={"session_key": "c2Vzc2lvbi1rZXk=", "max_session_age_seconds": 86400, "password": True}),
    svc(3, id="bad-header", account_id="acct-3", domain="bad-header.proxy.test",
        path=[{"path": "/", "target": "http://127.0.0.1:%d/" % port,
               "options": {"direct_upstream": True, "custom_headers": {"bad header": "x"}}}]),
    svc(0, id="odd-mode", account_id="acct-0", domain="odd-mode.proxy.test", mode="quic"),
    svc(2, id="bad-private", account_id="acct-2", domain="bad-private.proxy.test", private=True),
]
svcs[700:700] = bad
json.dump(svcs, open(out, "w"))
PY

# ---- 9 (first half): readiness before management exists ----------------------------------------
nb_start_s=$(date +%s)
start_nb nb1 NB_PROXY_TOKEN="$TOKEN" NB_PROXY_ALLOW_INSECURE=true -- --mgmt http://127.0.0.1:$MP --domain proxy.test \
    --health-addr 127.0.0.1:$HP --http-addr 127.0.0.1:$XP --access-log "$work/access.log"
if ! wait_for 20 curl -s -o /dev/null http://127.0.0.1:$HP/healthz/live; then
    # Nothing below can work (and every bounded wait would run out): stop here.
    bad "nbproxy in management mode did not come up: $(tail -5 "$work/nb1.err")"
    echo "[mgmt] $pass passed, $fail failed"
    exit 1
fi
sleep 0.3
r=$(hcode http://127.0.0.1:$HP/healthz/ready) s=$(hcode http://127.0.0.1:$HP/healthz/startup) l=$(hcode http://127.0.0.1:$HP/healthz/live)
[ "$r $s $l" = "503 503 200" ] && ok "9: no management yet: ready 503, startup 503, live 200" || bad "9: before management: ready $r startup $s live $l"

# ---- the double comes up holding the snapshot: the stream opens, the snapshot waits --------------
start_double d1 --port $MP --control-port $MC --token "$TOKEN" --services "$work/services.json" --batch 500 --hold-snapshot \
    --pause-after 0 --record "$work/d1.jsonl"
pyck <<'PY'
ok = M.wait(lambda: M.state(ENV["MC"])["connections"], 15)
check(ok, "9: nbproxy connects once the double listens (reconnect loop)")
hp = ENV["HP"]
ready = M.wait(lambda: M.health(hp, "/healthz/ready") == 200, 5)
check(ready, "9: stream open: /healthz/ready 200")
code, body = M.get("http://127.0.0.1:%s/healthz/startup" % hp)
j = json.loads(body or b"{}")
check(code == 503 and j.get("checks") == {"all_clients_healthy": True, "initial_sync_complete": False,
                                           "management_connected": True},
      "9: snapshot held: /healthz/startup 503 with initial_sync_complete false, management_connected true",
      "%s %s" % (code, body))
M.post(ENV["MC"], "/hold", {"on": False})
# The double stops after the ack of the first batch: by then that batch is applied, the next one
# not, and the snapshot is not complete.
paused = M.wait(lambda: M.state(ENV["MC"])["connections"][0].get("paused_t"), 30)
check(paused, "1: the first batch is acked")
xp = ENV["XP"]
res = [M.through(xp, h)[0] for h in ("s0.proxy.test", "s499.proxy.test", "s500.proxy.test", "s1199.proxy.test")]
eq(res, [200, 200, 404, 404], "1: when nbproxy acks a batch it has applied it, and nothing of the next one")
eq(M.health(hp, "/healthz/startup"), 503, "9: between two snapshot batches /healthz/startup is still 503")
M.post(ENV["MC"], "/hold", {"on": False})
t0 = time.monotonic()
up = M.wait(lambda: M.health(hp, "/healthz/startup") == 200, 60)
check(up, "9: /healthz/startup 200 once initial_sync_complete arrives (%.1f s after the rest is sent)" % (time.monotonic() - t0))
PY

# ---- 1: three batches, an ack after each, the init message -------------------------------------
pyck nb_start_s=$nb_start_s version="$version" <<'PY'
st = M.state(ENV["MC"])
c = st["connections"][0]
b = [x for x in st["batches"] if x["conn"] == c["conn"]]
a = [x for x in st["acks"] if x["conn"] == c["conn"]]
eq([(x["count"], x["initial_sync_complete"], x["phase"]) for x in b],
   [(500, False, "snapshot"), (500, False, "snapshot"), (206, True, "snapshot")],
   "1: snapshot of 1206 mappings in batches of 500, 500, 206; initial_sync_complete on the last only")
eq([(x["after_batch"], x["phase"]) for x in a], [(0, "snapshot"), (1, "snapshot"), (2, "snapshot")],
   "1: one ack per snapshot batch, in order")
order = all(a[i]["t"] > b[i]["t"] and (i + 1 >= len(b) or a[i]["t"] <= b[i + 1]["t"]) for i in range(min(len(a), len(b))))
check(order and len(a) == 3, "1: each ack arrives after its batch and before the next batch is sent",
      [(x["i"], x["t"]) for x in b] + [(x["after_batch"], x["t"]) for x in a])
print("ack delays after each batch (ms): %s" % [round(x["since_batch_ms"], 1) for x in a])
init = c["init"]
check(re.fullmatch(r"netbird-proxy-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", init["proxy_id"]),
      "1: init proxy_id is netbird-proxy-<uuid v4>", init["proxy_id"])
eq(init["version"], ENV["version"], "1: init version is the build version")
sa = int(init["started_at"]["seconds"])
check(abs(sa - int(ENV["nb_start_s"])) <= 2 and init["started_at"]["nanos"] == 0,
      "1: init started_at is the process start", "%s vs %s" % (init["started_at"], ENV["nb_start_s"]))
eq(init["address"], "proxy.test", "1: init address is --domain")
caps = init["capabilities"]
present = all(caps.get("_" + k) == k for k in ("supports_custom_ports", "require_subdomain", "supports_crowdsec",
                                                 "private", "supports_private_service"))
check(present, "1: every optional capability is present on the wire", caps)
eq((caps["supports_custom_ports"], caps["require_subdomain"], caps["supports_crowdsec"], caps["private"],
    caps["supports_private_service"]), (True, False, False, False, True),
   "1: capabilities: custom ports (default true), no subdomain, no crowdsec, not private, private services supported")
lines = [l for l in M.log_lines(ENV["WORK"] + "/nb1.err") if "initial sync complete" in l]
check(len(lines) == 1 and re.search(r"initial sync complete: 1202 service\(s\), \d+ ms$", lines[0]),
      "1: nbproxy logs the initial sync with 1202 services stored (1200, the one with a skipped path, the odd mode)", lines)
PY

# ---- 1 (metrics): the sync series on /metrics ---------------------------------------------------------
pyck <<'PY'
code, body = M.get("http://127.0.0.1:%s/metrics" % ENV["HP"])
met = dict(re.findall(r"^(\S+) (\S+)$", body.decode(), re.M))
g = lambda k: float(met.get(k, "nan"))
eq((g("nbproxy_management_connected"), g("nbproxy_management_services"), g("nbproxy_management_mapping_errors_total"),
    g("proxy_sync_snapshot_duration_ms_count"), g("proxy_sync_batch_duration_ms_count"),
    g('proxy_peer_add_duration_ms_count{result="success"}')),
   (1.0, 1202.0, 5.0, 1.0, 3.0, 4.0),
   "1: /metrics: connected 1, 1202 services, 5 mapping errors, 1 snapshot, 3 batches, 4 CreateProxyPeer")
# proxy_sync_batch_duration_ms must include applying the batch, not only the CreateProxyPeer waits:
# the apply time of the batches without a CreateProxyPeer (batches 2 and 3) is at least the span of
# their "service ... applied" log lines.
svcs = [x["id"] for x in json.load(open(ENV["WORK"] + "/services.json"))]
spans = 0
for part in (set(svcs[500:1000]), set(svcs[1000:])):
    t = [M.log_ms(l) for l in M.log_lines(ENV["WORK"] + "/nb1.err")
         if (lambda m: m and m.group(1) in part)(re.search(r"\[proxy\] service (\S+) \(", l))]
    spans += max(t) - min(t) if t else 0
apply_ms = g("proxy_sync_batch_duration_ms_sum") - g('proxy_peer_add_duration_ms_sum{result="success"}')
check(apply_ms + 4 >= spans,
      "1: proxy_sync_batch_duration_ms counts the time spent applying (batches 2-3: >= %d ms of log-line span)" % spans,
      "batch sum %s ms - CreateProxyPeer sum %s ms = %s ms of applying measured, but batches 2 and 3 alone logged "
      "their services over %d ms: the batch timer reads the loop's cached clock (nb_loop_now_ms)" % (
          met.get("proxy_sync_batch_duration_ms_sum"), met.get('proxy_peer_add_duration_ms_sum{result="success"}'),
          apply_ms, spans))
PY

# ---- 6 (first half): the bearer token on every RPC -----------------------------------------------
pyck <<'PY'
st = M.state(ENV["MC"])
auth = set(r["metadata"].get("authorization") for r in st["rpcs"])
names = sorted(set(r["rpc"] for r in st["rpcs"]))
eq(auth, {"Bearer " + ENV["TOKEN"]}, "6: every RPC (%s) carries exactly 'authorization: Bearer <NB_PROXY_TOKEN>'" % ", ".join(names))
check(not any(r.get("auth_failed") for r in st["rpcs"]), "6: the double accepted every RPC's token")
PY

# ---- 7 + 11: status updates, CreateProxyPeer, the bad mappings ------------------------------------
pyck <<'PY'
st = M.wait(lambda: (lambda s: s if len(s["statuses"]) >= 1200 + 9 else None)(M.state(ENV["MC"])), 15) or M.state(ENV["MC"])
ids = ["svc-%04d" % i for i in range(1200)]
by = {}
for s in st["statuses"]:
    by.setdefault(s["service_id"], []).append(s)
good = [i for i in ids if [x["status"] for x in by.get(i, [])] == ["PROXY_STATUS_ACTIVE"]]
eq(len(good), 1200, "7: exactly one ACTIVE status for each of the 1200 applied services")
act = [x for i in ids for x in by.get(i, [])]
check(all(x["account_id"] == "acct-%d" % (int(x["service_id"][4:]) % 4) and x["error_message"] is None
          and x["certificate_issued"] is True for x in act),
      "7: ACTIVE updates carry the service's account, no error_message, certificate_issued (the static certificate covers *.proxy.test)")
def st_of(i):
    return [(x["status"], x["error_message"]) for x in by.get(i, [])]
eq(st_of("bad-target"), [("PROXY_STATUS_ERROR", 'path "/": invalid target URL "127.0.0.1:%s": missing http(s):// scheme, skipped' % ENV["B1"])],
   "7: an unparsable target: ERROR naming the skipped path (mapping applied)")
eq(st_of("bad-mode"), [("PROXY_STATUS_TUNNEL_NOT_CREATED", None), ("PROXY_STATUS_ERROR", 'account acct-1 has no tunnel')],
   "7: udp without the account's tunnel (management mode builds none yet, spec §3.5 'needs the account client'): rolled back (TUNNEL_NOT_CREATED), then ERROR")
eq(st_of("odd-mode"), [("PROXY_STATUS_ACTIVE", None)], "7: an unknown mode string is HTTP (spec §3): ACTIVE")
eq(st_of("bad-auth"), [("PROXY_STATUS_TUNNEL_NOT_CREATED", None),
                       ("PROXY_STATUS_ERROR", "authentication schemes (password, PIN, OIDC, header) are not supported yet; "
                                              "bad-auth.proxy.test is not exposed without them")],
   "7: an auth scheme is refused: TUNNEL_NOT_CREATED, then ERROR")
eq(st_of("bad-private"), [("PROXY_STATUS_TUNNEL_NOT_CREATED", None),
                          ("PROXY_STATUS_ERROR", "private services need tunnel-peer validation by management (not supported yet)")],
   "7: a private service is refused until tunnel-peer validation exists: TUNNEL_NOT_CREATED, then ERROR")
eq(st_of("bad-header"), [("PROXY_STATUS_ERROR", "paths[0].options.custom_headers: invalid header name")],
   "11: a malformed mapping (header name with a space) gets ERROR with the decoder's reason")
xp = ENV["XP"]
res = {h: M.through(xp, h)[0] for h in ("s699.proxy.test", "s700.proxy.test", "s1199.proxy.test", "bad-auth.proxy.test",
                                        "bad-header.proxy.test", "bad-mode.proxy.test", "bad-target.proxy.test",
                                        "odd-mode.proxy.test", "bad-private.proxy.test")}
eq(res, {"s699.proxy.test": 200, "s700.proxy.test": 200, "s1199.proxy.test": 200, "bad-auth.proxy.test": 404,
         "bad-header.proxy.test": 404, "bad-mode.proxy.test": 404, "bad-target.proxy.test": 404, "odd-mode.proxy.test": 200,
         "bad-private.proxy.test": 404},
   "11: the rest of the batch is applied (the services around the bad ones answer 200, the bad ones 404)")
code, body = M.through(xp, "s3.proxy.test")
check(code == 200 and body == b"backend-one\n", "2: a snapshot service answers through nbproxy", (code, body))
# CreateProxyPeer: once per account, with the one-time token of the first mapping of that account
peers = st["peers"]
eq(sorted(p["account_id"] for p in peers), ["acct-0", "acct-1", "acct-2", "acct-3"], "7: one CreateProxyPeer per account")
issued = {(t["service_id"], t["token"]) for t in st["tokens_issued"]}
check(all((p["service_id"], p["token"]) in issued and p["service_id"] == "svc-%04d" % int(p["account_id"][5:]) for p in peers),
      "7: CreateProxyPeer carries the one-time token management sent with that account's first mapping",
      [(p["account_id"], p["service_id"]) for p in peers])
import base64
def key_ok(k):
    try:
        return len(base64.b64decode(k, validate=True)) == 32
    except Exception:
        return False
check(all(key_ok(p["wireguard_public_key"]) for p in peers) and len(set(p["wireguard_public_key"] for p in peers)) == 4,
      "7: each peer has its own base64 32-byte WireGuard public key", [p["wireguard_public_key"] for p in peers])
check(all(p["cluster"] == "proxy.test" and p["code"] == 0 and p["created"] for p in peers),
      "7: cluster = --domain, and management accepted every token")
tok = [t["token"] for t in st["tokens_issued"]]
check(len(tok) == 1206 and len(set(tok)) == 1206 and all(re.fullmatch(r"[A-Za-z0-9_-]{43}=", t) for t in tok),
      "7: the double sent a fresh URL-safe base64 one-time token per mapping", len(tok))
PY

# ---- 2: incremental create, modify, remove ---------------------------------------------------------
pyck <<'PY'
mc, xp = ENV["MC"], ENV["XP"]
since = M.state(mc)["now"]
def inc(target):
    return {"id": "inc-1", "account_id": "acct-new", "domain": "inc.proxy.test", "mode": "http",
            "path": [{"path": "/", "target": target, "options": {"direct_upstream": True}}]}
eq(M.through(xp, "inc.proxy.test")[0], 404, "2: before the update the Host is unknown (404)")
M.post(mc, "/update", {"op": "create", "service": inc("http://127.0.0.1:%s/" % ENV["B1"])})
r = M.wait(lambda: (lambda x: x if x[0] == 200 else None)(M.through(xp, "inc.proxy.test")), 10) or M.through(xp, "inc.proxy.test")
eq(r, (200, b"backend-one\n"), "2: incremental CREATED: the new service answers from backend one")
M.post(mc, "/update", {"op": "modify", "service": inc("http://127.0.0.1:%s/" % ENV["B2"])})
r = M.wait(lambda: (lambda x: x if x[1] == b"backend-two\n" else None)(M.through(xp, "inc.proxy.test")), 10) or M.through(xp, "inc.proxy.test")
eq(r, (200, b"backend-two\n"), "2: MODIFIED with a new target: traffic follows to backend two")
M.post(mc, "/update", {"op": "remove", "service": {"id": "inc-1"}})
r = M.wait(lambda: (lambda x: x if x[0] == 404 else None)(M.through(xp, "inc.proxy.test")), 10) or M.through(xp, "inc.proxy.test")
eq(r[0], 404, "2: REMOVED: the Host is unknown again (404)")
st = M.wait(lambda: (lambda s: s if len(M.statuses(s, "inc-1")) >= 3 else None)(M.state(mc, since)), 5) or M.state(mc, since)
eq([x["status"] for x in M.statuses(st, "inc-1")],
   ["PROXY_STATUS_ACTIVE", "PROXY_STATUS_ACTIVE", "PROXY_STATUS_TUNNEL_NOT_CREATED"],
   "7: statuses for create, modify, remove: ACTIVE, ACTIVE, TUNNEL_NOT_CREATED")
ups = [b for b in st["batches"] if b["phase"] == "update"]
eq([(b["types"], b["count"]) for b in ups], [(["UPDATE_TYPE_CREATED"], 1), (["UPDATE_TYPE_MODIFIED"], 1), (["UPDATE_TYPE_REMOVED"], 1)],
   "2: management sent three one-mapping incremental messages")
acks = [a for a in st["acks"] if a["phase"] == "update"]
eq([a["after_batch"] for a in acks], [b["i"] for b in ups], "2: nbproxy acks every incremental message too (spec §2.3)")
peers = st["peers"]
issued = [t["token"] for t in st["tokens_issued"] if t["service_id"] == "inc-1"]
check(len(peers) == 1 and peers[0]["account_id"] == "acct-new" and peers[0]["service_id"] == "inc-1"
      and issued and peers[0]["token"] == issued[0] and peers[0]["code"] == 0,
      "7: a CREATED in a new account registers its peer with that message's one-time token", peers)
eq(len(issued), 2, "2: CREATED and MODIFIED carry a fresh token each, REMOVED none")
lines = M.log_lines(ENV["WORK"] + "/nb1.err")
check(any("account acct-new: last service removed, proxy peer released" in l for l in lines),
      "2: removing the account's last service releases its proxy peer")
PY

# ---- 8: one request, one SendAccessLog, the same record as the local access log ----------------
pyck <<'PY'
mc, xp = ENV["MC"], ENV["XP"]
since = M.state(mc)["now"]
code, body = M.through(xp, "s42.proxy.test", "/who?x=1")
check(code == 200, "8: request through svc-0042", code)
def local():
    for l in M.log_lines(ENV["WORK"] + "/access.log"):
        j = json.loads(l)
        if j["host"] == "s42.proxy.test":
            return j
loc = M.wait(local, 5)
st = M.wait(lambda: (lambda s: s if s["access_logs"] else None)(M.state(mc, since)), 5) or M.state(mc, since)
time.sleep(0.3)
st = M.state(mc, since)
logs = [x["log"] for x in st["access_logs"]]
check(len(logs) == 1, "8: exactly one SendAccessLog for the request", len(logs))
if logs and loc:
    g = logs[0]
    want = {"log_id": loc["logId"], "account_id": "acct-2", "service_id": "svc-0042", "host": "s42.proxy.test",
            "path": "/who", "method": "GET", "response_code": 200, "source_ip": "127.0.0.1", "auth_mechanism": "",
            "user_id": "", "auth_success": True, "bytes_upload": "0", "bytes_download": str(len(body)),
            "protocol": "http", "agent_network": False, "metadata": {}, "duration_ms": str(loc["durationMs"])}
    got = {k: g.get(k) for k in want}
    eq(got, want, "8: the record's fields (log_id = the local access log's logId, host, path, method, code, "
                  "duration, bytes, source_ip, protocol http, user_id empty)")
    ts = int(g["timestamp"]["seconds"]) * 1000 + g["timestamp"]["nanos"] // 1000000
    check(abs(ts - st["access_logs"][0]["wall"]) < 5000, "8: the record's timestamp is the time it was sent", ts)
else:
    check(False, "8: local access-log line and SendAccessLog record", (loc, logs))
PY

# ---- 11 (second part): one message with a good, a malformed and a good mapping -----------------------
pyck <<'PY'
mc, xp = ENV["MC"], ENV["XP"]
since = M.state(mc)["now"]
def m(i, **kw):
    d = {"id": "p%d" % i, "account_id": "acct-0", "domain": "p%d.proxy.test" % i, "mode": "http",
         "path": [{"path": "/", "target": "http://127.0.0.1:%s/" % ENV["B1"], "options": {"direct_upstream": True}}]}
    d.update(kw)
    return d
M.post(mc, "/push", {"mappings": [m(1), m(2, mode="tcp", listen_port=70000), m(3)]})
r = M.wait(lambda: M.through(xp, "p3.proxy.test")[0] == 200, 10)
res = (M.through(xp, "p1.proxy.test")[0], M.through(xp, "p2.proxy.test")[0], M.through(xp, "p3.proxy.test")[0])
eq(res, (200, 404, 200), "11: a batch [good, malformed, good]: both good mappings are applied")
st = M.wait(lambda: (lambda s: s if len(s["statuses"]) >= 3 else None)(M.state(mc, since)), 5) or M.state(mc, since)
eq([(s["service_id"], s["status"], s["error_message"]) for s in st["statuses"]],
   [("p1", "PROXY_STATUS_ACTIVE", None), ("p2", "PROXY_STATUS_ERROR", "invalid listen port 70000"), ("p3", "PROXY_STATUS_ACTIVE", None)],
   "11: statuses in batch order: ACTIVE, ERROR 'invalid listen port 70000', ACTIVE")
eq([a["after_batch"] for a in st["acks"]], [b["i"] for b in st["batches"]], "11: the batch is acked once")
PY

# ---- 3: reconciliation after a reconnect ---------------------------------------------------------
pyck <<'PY'
mc, xp = ENV["MC"], ENV["XP"]
st0 = M.state(mc)
since = st0["now"]
keep = [s for s in json.load(open(ENV["WORK"] + "/services.json")) if s["id"].startswith("svc-") and int(s["id"][4:]) < 100]
M.post(mc, "/services", keep)
n0 = len([l for l in M.log_lines(ENV["WORK"] + "/nb1.err") if "initial sync complete" in l])
M.post(mc, "/drop", {"how": "transport"})
def synced():
    return len([l for l in M.log_lines(ENV["WORK"] + "/nb1.err") if "initial sync complete" in l]) > n0
check(M.wait(synced, 20), "3: nbproxy reconnects after the connection is dropped and completes a new snapshot")
lines = M.log_lines(ENV["WORK"] + "/nb1.err")
sync = [l for l in lines if "initial sync complete" in l][-1]
check(re.search(r"initial sync complete: 100 service\(s\)", sync), "3: after reconciliation 100 services remain", sync)
removed = set(re.search(r"service (\S+) is not in the new snapshot", l).group(1) for l in lines if "is not in the new snapshot" in l)
want = set("svc-%04d" % i for i in range(100, 1200)) | {"bad-target", "odd-mode", "p1", "p3"}
check(removed == want, "3: every service missing from the new snapshot is removed (1100 + bad-target, odd-mode, p1, p3), no other",
      "missing %s, extra %s" % (sorted(want - removed)[:5], sorted(removed - want)[:5]))
res = [M.through(xp, h)[0] for h in ("s0.proxy.test", "s5.proxy.test", "s99.proxy.test", "s100.proxy.test", "s1100.proxy.test", "p1.proxy.test")]
eq(res, [200, 200, 200, 404, 404, 404], "3: present services keep working (200), removed ones are gone (404)")
st = M.state(mc, since)
conns = st["connections"]
check(len(conns) == 1 and conns[0]["proxy_id"] == st0["connections"][0]["proxy_id"] and conns[0]["rpc"] == "SyncMappings",
      "3: the reconnect is a new SyncMappings with the same proxy_id", [(c["proxy_id"], c["rpc"]) for c in conns])
eq([(b["count"], b["initial_sync_complete"]) for b in st["batches"]], [(100, True)], "3: the new snapshot is one batch of 100")
eq(st["peers"], [], "3: no CreateProxyPeer after the reconnect (the accounts' peers are kept)")
def tnc_now():
    return set(s["service_id"] for s in M.state(mc, since)["statuses"] if s["status"] == "PROXY_STATUS_TUNNEL_NOT_CREATED")
# Status updates beyond 1024 in flight wait in nbproxy's queue: give them a moment to arrive.
M.wait(lambda: want <= tnc_now(), 10)
st = M.state(mc, since)
tnc = tnc_now()
check(want <= tnc and "svc-0005" not in tnc,
      "3: each of the %d reconciled services gets TUNNEL_NOT_CREATED (spec §3.2, §3.6)" % len(want),
      "management got %d of them (%d status updates in all since the reconnect); e.g. missing %s" % (len(want & tnc), len(st["statuses"]), sorted(want - tnc)[:3]))
waits = [int(m.group(1)) for m in (re.search(r"disconnected \(.*\): reconnecting in (\d+) ms", l) for l in lines) if m]
check(waits and waits[-1] <= 1600, "3: the first retry after a stream that was open waits at most 2 x 800 ms", waits[-3:])
PY

# ---- 12: management's send queue overflows: the proxy is disconnected and resyncs ----------------
pyck <<'PY'
mc, xp = ENV["MC"], ENV["XP"]
since = M.state(mc)["now"]
ov = [{"id": "ov-%03d" % i, "account_id": "acct-1", "domain": "ov%d.proxy.test" % i, "mode": "http",
       "path": [{"path": "/", "target": "http://127.0.0.1:%s/" % ENV["B2"], "options": {"direct_upstream": True}}]}
      for i in range(150)]
r = M.post(mc, "/update", {"op": "create", "services": ov})
st = M.state(mc, since)
check(len(st["overflows"]) == 1 and st["overflows"][0]["queued"] == 100, "12: 150 updates at once overflow the send queue of 100",
      st["overflows"])
ok = M.wait(lambda: M.through(xp, "ov149.proxy.test")[0] == 200 and M.through(xp, "ov0.proxy.test")[0] == 200, 20)
check(ok, "12: nbproxy reconnects and gets every update from the resync snapshot")
st = M.state(mc, since)
eq([(c["rpc"], c["snapshot_mappings"]) for c in st["connections"]], [("SyncMappings", 250)],
   "12: one new stream, snapshot of 250 (100 + 150)")
lines = M.log_lines(ENV["WORK"] + "/nb1.err")
check(any("mapping stream ended: UNAVAILABLE: send queue full" in l for l in lines), "12: nbproxy logs why the stream ended")
PY

# ---- 5: management restart: readiness, backoff, full resync --------------------------------------
kill_ms=$(($(date +%s%N) / 1000000))
stop_pid "$d1_PID"
wait_for 5 test "$(hcode http://127.0.0.1:$HP/healthz/ready)" = 503 && ok "5: management gone: /healthz/ready 503" ||
    bad "5: ready after the kill: $(hcode http://127.0.0.1:$HP/healthz/ready)"
start_double refuser --port $MP --refuse
sleep 6
s=$(hcode http://127.0.0.1:$HP/healthz/startup) r=$(hcode http://127.0.0.1:$HP/healthz/ready)
[ "$r $s" = "503 503" ] && ok "5: while management is down: ready 503, startup 503" || bad "5: while down: ready $r startup $s"
curl -s --max-time 5 "http://127.0.0.1:$(sed -n 's/^CONTROL //p' "$work/refuser.out")/state" > "$work/refuser.json"
stop_pid "$refuser_PID"
# the service set nbproxy last had (svc-0000..0099 and ov-*), for the restarted management
python3 - "$work" $B2 <<'PY'
import json, sys
w, b2 = sys.argv[1], sys.argv[2]
keep = [s for s in json.load(open(w + "/services.json")) if s["id"].startswith("svc-") and int(s["id"][4:]) < 100]
keep += [{"id": "ov-%03d" % i, "account_id": "acct-1", "domain": "ov%d.proxy.test" % i, "mode": "http",
          "path": [{"path": "/", "target": "http://127.0.0.1:%s/" % b2, "options": {"direct_upstream": True}}]} for i in range(150)]
json.dump(keep, open(w + "/services2.json", "w"))
PY
restart_ms=$(($(date +%s%N) / 1000000))
start_double d2 --port $MP --control-port $MC --token "$TOKEN" --services "$work/services2.json" --batch 500
pyck kill_ms=$kill_ms restart_ms=$restart_ms <<'PY'
mc, xp, hp = ENV["MC"], ENV["XP"], ENV["HP"]
kill_ms, restart_ms = int(ENV["kill_ms"]), int(ENV["restart_ms"])
up = M.wait(lambda: M.health(hp, "/healthz/ready") == 200 and M.health(hp, "/healthz/startup") == 200, 25)
check(up, "5: after the restart: ready 200, startup 200")
st = M.wait(lambda: (lambda s: s if s["connections"] and s["connections"][0].get("snapshot_done_t") else None)(M.state(mc)), 10) or M.state(mc)
c = st["connections"]
check(len(c) == 1 and c[0]["rpc"] == "SyncMappings" and c[0]["snapshot_mappings"] == 250 and c[0].get("snapshot_done_t"),
      "5: full resync: one SyncMappings, the whole snapshot (250) acked", [(x["rpc"], x.get("snapshot_mappings")) for x in c])
eq(M.through(xp, "ov7.proxy.test")[1], b"backend-two\n", "5: services answer after the resync")
# The backoff, from nbproxy's log: "disconnected (...): reconnecting in W ms" after the kill.
lines = M.log_lines(ENV["WORK"] + "/nb1.err")
ev = []
for l in lines:
    m = re.search(r"disconnected \((.*)\): reconnecting in (\d+) ms", l)
    if m and M.log_ms(l) >= kill_ms - 50:
        ev.append((M.log_ms(l), int(m.group(2)), m.group(1)))
down = [e for e in ev if e[0] < restart_ms + 300]
print("retries while down (log ms after kill, planned wait ms): %s" % [(e[0] - kill_ms, e[1]) for e in down])
check(len(down) >= 3, "5: nbproxy kept retrying while management was down (%d attempts in ~6.5 s)" % len(down))
bounds = [min(800 * 1.7 ** i, 10000) * 2 for i in range(len(down))]
check(all(e[1] <= b + 1 for e, b in zip(down, bounds)),
      "5: waits follow the backoff: first <= 1.6 s (800 ms +-100 %), then <= 2 x 800 x 1.7^n",
      [(e[1], round(b)) for e, b in zip(down, bounds)])
gaps = [(down[i + 1][0] - down[i][0], down[i][1]) for i in range(len(down) - 1)]
check(all(abs(g - w) <= 300 for g, w in gaps), "5: each attempt happens when the previous wait ends (gap = wait +- 300 ms)", gaps)
ref = json.load(open(ENV["WORK"] + "/refuser.json"))
att = [r["wall"] for r in ref["refused"]]
planned = [e[0] + e[1] for e in down]
matched = [a for a in att if any(abs(a - p) <= 300 for p in planned)]
check(att and len(matched) == len(att), "5: the connection attempts the stand-in saw (%d) are the planned retries" % len(att),
      "attempts %s planned %s" % ([a - kill_ms for a in att], [p - kill_ms for p in planned]))
PY


# ---- 13: the token is revoked: management disconnects the proxy and refuses it -----------------
pyck <<'PY'
mc, hp = ENV["MC"], ENV["HP"]
since = M.state(mc)["now"]
M.post(mc, "/tokens", {"revoke": ENV["TOKEN"]})
check(M.wait(lambda: M.health(hp, "/healthz/ready") == 503, 5), "13: a revoked token: the stream is ended, ready 503")
lines = M.log_lines(ENV["WORK"] + "/nb1.err")
check(any("mapping stream ended: UNAUTHENTICATED: token expired or revoked" in l for l in lines), "13: nbproxy logs the reason")
st = M.wait(lambda: (lambda s: s if [r for r in s["rpcs"] if r.get("auth_failed")] else None)(M.state(mc, since)), 5) or M.state(mc, since)
f = [r for r in st["rpcs"] if r.get("auth_failed")]
check(f and f[0]["details"] == "token expired or revoked" and f[0]["code"] == 16,
      "13: its next attempt is refused UNAUTHENTICATED 'token expired or revoked'", f[:1])
PY

# ---- 4: SyncMappings Unimplemented -> GetMappingUpdate ------------------------------------------
cat > "$work/services4.json" <<JSON
[{"id":"c1","account_id":"acct-c","domain":"c1.proxy.test","mode":"http",
  "path":[{"path":"/","target":"http://127.0.0.1:$B1/","options":{"direct_upstream":true}}]},
 {"id":"c2","account_id":"acct-c","domain":"c2.proxy.test","mode":"http",
  "path":[{"path":"/","target":"http://127.0.0.1:$B2/","options":{"direct_upstream":true}}]}]
JSON
start_double d4 --port 18720 --control-port 18721 --token "$TOKEN" --services "$work/services4.json" --sync-unimplemented
start_nb nb4 NB_PROXY_TOKEN="$TOKEN" NB_PROXY_ALLOW_INSECURE=true NB_PROXY_MAPPING_BATCH_WATCHDOG=2s -- \
    --mgmt http://127.0.0.1:18720 --domain proxy.test \
    --health-addr 127.0.0.1:18722 --http-addr 127.0.0.1:18723
pyck MC=18721 XP=18723 HP=18722 <<'PY'
mc, xp, hp = ENV["MC"], ENV["XP"], ENV["HP"]
ok = M.wait(lambda: M.health(hp, "/healthz/startup") == 200, 20)
check(ok, "4: the snapshot is applied over GetMappingUpdate (startup 200)")
eq((M.through(xp, "c1.proxy.test"), M.through(xp, "c2.proxy.test")), ((200, b"backend-one\n"), (200, b"backend-two\n")),
   "4: both services of the snapshot answer")
st = M.state(mc)
eq([(r["rpc"], r.get("code")) for r in st["rpcs"] if r["rpc"] in ("SyncMappings", "GetMappingUpdate")],
   [("SyncMappings", 12), ("GetMappingUpdate", None)], "4: SyncMappings answered UNIMPLEMENTED, then GetMappingUpdate")
g = M.rpcs(st, "GetMappingUpdate")[0]["request"]
check(re.fullmatch(r"netbird-proxy-[0-9a-f-]{36}", g["proxy_id"]) and g["address"] == "proxy.test"
      and g["capabilities"].get("_supports_private_service") and g["capabilities"]["supports_private_service"],
      "4: GetMappingUpdate carries the same identity (proxy_id, address, capabilities)", g)
eq(st["acks"], [], "4: no acks on GetMappingUpdate")
M.post(mc, "/update", {"op": "create", "service": {"id": "c3", "account_id": "acct-c", "domain": "c3.proxy.test", "mode": "http",
       "path": [{"path": "/", "target": "http://127.0.0.1:%s/" % ENV["B1"], "options": {"direct_upstream": True}}]}})
check(M.wait(lambda: M.through(xp, "c3.proxy.test")[0] == 200, 10), "4: incremental updates arrive over GetMappingUpdate")
since = M.state(mc)["now"]
M.post(mc, "/drop", {"how": "transport"})
check(M.wait(lambda: M.state(mc, since)["connections"], 15), "4: nbproxy reconnects after a drop")
st = M.state(mc, since)
eq([r["rpc"] for r in st["rpcs"] if r["rpc"] in ("SyncMappings", "GetMappingUpdate")], ["GetMappingUpdate"],
   "4: the fallback holds for the process lifetime (no new SyncMappings attempt)")
check(any("SyncMappings is not implemented by management" in l for l in M.log_lines(ENV["WORK"] + "/nb4.err")),
      "4: nbproxy logs the fallback")
PY
# ---- 14: management stops answering RPCs: a batch stuck on CreateProxyPeer, the watchdog -------------
pyck MC=18721 XP=18723 <<'PY'
mc, xp = ENV["MC"], ENV["XP"]
since = M.state(mc)["now"]
def svc(i, acct):
    return {"id": i, "account_id": acct, "domain": i + ".proxy.test", "mode": "http",
            "path": [{"path": "/", "target": "http://127.0.0.1:%s/" % ENV["B1"], "options": {"direct_upstream": True}}]}
M.post(mc, "/silence", {"on": True, "streams": False})
M.post(mc, "/update", {"op": "create", "service": svc("w1", "acct-w")})
M.post(mc, "/update", {"op": "create", "service": svc("w2", "acct-c")})
peer = M.wait(lambda: M.state(mc, since)["peers"], 5)
time.sleep(0.5)
eq((M.through(xp, "w1.proxy.test")[0], M.through(xp, "w2.proxy.test")[0]), (404, 404),
   "14: while CreateProxyPeer goes unanswered nothing after it is applied (the stream stalls)")
log = lambda: [l for l in M.log_lines(ENV["WORK"] + "/nb4.err") if "mapping batch not applied within 2000 ms" in l]
fired = M.wait(log, 8)
check(fired and peer, "14: the batch watchdog (NB_PROXY_MAPPING_BATCH_WATCHDOG=2s) tears the stream down")
if fired and peer:
    d = M.log_ms(fired[0]) - peer[0]["wall"]
    check(1800 <= d <= 2800, "14: ... 2 s after the batch started waiting (%d ms)" % d)
check(M.wait(lambda: M.rpcs(M.state(mc, since), "GetMappingUpdate"), 10), "14: ... and reconnects")
M.post(mc, "/silence", {"on": False})
ok = M.wait(lambda: M.through(xp, "w1.proxy.test")[0] == 200 and M.through(xp, "w2.proxy.test")[0] == 200, 20)
check(ok, "14: once management answers again, both services are applied")
PY
stop_pid "$nb4_PID"
stop_pid "$d4_PID"

# ---- 6: no RPC over plaintext without NB_PROXY_ALLOW_INSECURE; rejected tokens -------------------
start_double d6 --port 18730 --control-port 18731 --token "$TOKEN" --services "$work/services4.json"
start_nb nb6 NB_PROXY_TOKEN="$TOKEN" -- --mgmt http://127.0.0.1:18730 --domain proxy.test --health-addr 127.0.0.1:18732
sleep 2.5
pyck MC=18731 <<'PY'
st = M.state(ENV["MC"])
eq(st["rpcs"], [], "6: without NB_PROXY_ALLOW_INSECURE nbproxy sends no RPC over plaintext (the double records none)")
print("(it did open %d HTTP/2 connection(s) to management: only the calls are refused locally)" % len(st["sessions"]))
lines = M.log_lines(ENV["WORK"] + "/nb6.err")
check(any("plaintext h2c and NB_PROXY_ALLOW_INSECURE is not set: the token will not be sent" in l for l in lines),
      "6: ... and logs why", lines[-3:])
eq(M.health(18732, "/healthz/ready"), 503, "6: ... and is not ready")
PY
start_nb nb6b NB_PROXY_TOKEN="nbx_$(printf 'A%.0s' $(seq 30))000000" NB_PROXY_ALLOW_INSECURE=true -- \
    --mgmt http://127.0.0.1:18730 --domain proxy.test --health-addr 127.0.0.1:18733
other=$(node "$double" --mint)
start_nb nb6c NB_PROXY_TOKEN="$other" NB_PROXY_ALLOW_INSECURE=true -- \
    --mgmt http://127.0.0.1:18730 --domain proxy.test --health-addr 127.0.0.1:18734
sleep 3
pyck MC=18731 other="$other" <<'PY'
st = M.state(ENV["MC"])
mine = [r for r in st["rpcs"] if r["metadata"].get("authorization") == "Bearer " + ENV["TOKEN"] or
        "authorization" not in r["metadata"]]
eq(mine, [], "6: still no RPC from the proxy without NB_PROXY_ALLOW_INSECURE")
bad_fmt = [r for r in st["rpcs"] if r["metadata"].get("authorization", "").startswith("Bearer nbx_AAAA")]
check(bad_fmt and bad_fmt[0]["code"] == 16 and bad_fmt[0]["details"] == "invalid token format",
      "6: a token with a wrong checksum is rejected UNAUTHENTICATED 'invalid token format'", bad_fmt[:1])
unk = [r for r in st["rpcs"] if r["metadata"].get("authorization") == "Bearer " + ENV["other"]]
check(unk and unk[0]["code"] == 16 and unk[0]["details"] == "invalid token",
      "6: an unknown well-formed token is rejected UNAUTHENTICATED 'invalid token'", unk[:1])
check(len([r for r in st["rpcs"] if r.get("auth_failed")]) >= 3, "6: rejected proxies keep retrying")
l2 = M.log_lines(ENV["WORK"] + "/nb6b.err") + M.log_lines(ENV["WORK"] + "/nb6c.err")
check(any("UNAUTHENTICATED" in l for l in l2), "6: nbproxy logs the rejection")
PY
leak=""
for f in nb6 nb6b nb6c; do
    for t in "$TOKEN" "$other" "nbx_AAAAAAAAAA"; do grep -qF -- "${t:4:30}" "$work/$f.err" && leak="$leak $f"; done
done
[ -z "$leak" ] && ok "6: no token appears in the stderr of the rejected proxies" || bad "6: token in stderr of:$leak"
for p in $nb6_PID $nb6b_PID $nb6c_PID $d6_PID; do stop_pid $p; done

# ---- 10: seed 004's environment -------------------------------------------------------------------
# Variant A: exactly proxy.env (NB_PROXY_MANAGEMENT_ADDRESS=netbird-server:80, NB_PROXY_DOMAIN=
# proxy.madhan.app, NB_PROXY_ACME_CERTIFICATES=true) plus a token, default health address, in a
# network namespace whose only interface is loopback: whatever nbproxy tries, nothing leaves.
seed_env=(NB_PROXY_MANAGEMENT_ADDRESS=netbird-server:80 NB_PROXY_DOMAIN=proxy.madhan.app NB_PROXY_ACME_CERTIFICATES=true
          NB_PROXY_TOKEN="$TOKEN")
if ip netns add $NS 2>/dev/null; then
    ip -n $NS link set lo up
    ifs=$(ip -n $NS -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
    [ "$ifs" = "lo " ] && ok "10: the namespace has only a loopback interface" || bad "10: namespace interfaces: $ifs"
    (cd "$work" && exec ip netns exec $NS env -i PATH="$PATH" "${seed_env[@]}" "$bin") > "$work/seed.out" 2> "$work/seed.err" &
    seed_pid=$!
    pids+=($seed_pid)
    wait_for 20 ip netns exec $NS curl -s -o /dev/null http://127.0.0.1:8080/healthz/live
    sleep 4
    alive $seed_pid && ok "10: started from seed 004's proxy.env, nbproxy stays up" || bad "10: nbproxy exited: $(tail -5 "$work/seed.err")"
    l=$(ip netns exec $NS curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://localhost:8080/healthz/live)
    r=$(ip netns exec $NS curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://localhost:8080/healthz/ready)
    [ "$l $r" = "200 503" ] && ok "10: health on the default localhost:8080 answers (live 200, ready 503)" || bad "10: health live $l ready $r"
    pyck <<'PY'
lines = M.log_lines(ENV["WORK"] + "/seed.err")
res = [l for l in lines if "management connection (netbird-server:80) failed: DNS" in l]
check(len(res) >= 2 and len(res) == len([l for l in lines if "reconnecting in" in l]),
      "10: it logs that netbird-server cannot be resolved, and keeps retrying (%d attempts)" % len(res), res[:2] or lines[-5:])
check(any("plaintext h2c and NB_PROXY_ALLOW_INSECURE is not set" in l for l in lines),
      "10: it warns that the token will not be sent over plaintext")
check(any("ACME certificates from https://acme-v02.api.letsencrypt.org/directory, cache ./certs" in l for l in lines)
      and any("TLS listener on :443" in l for l in lines),
      "10: ACME mode with Let's Encrypt and the ./certs cache, the TLS listener on :443 (defaults)",
      [l for l in lines if "acme" in l.lower() or "TLS" in l])
check(not any("not supported yet" in l for l in lines), "10: no option of proxy.env is reported unsupported",
      [l for l in lines if "not supported yet" in l])
import os
check(os.path.isfile(ENV["WORK"] + "/certs/acme_account+key") and
      oct(os.stat(ENV["WORK"] + "/certs").st_mode & 0o777) == "0o700",
      "10: the ACME account key is in ./certs (0700), made at start-up")
check(any('"netbird-server:80" has no scheme' in l for l in lines), "10: it says the scheme-less address is taken as h2c")
PY
    stop_pid $seed_pid
    ip netns del $NS
else
    bad "10: cannot create a network namespace (not root?)"
fi
# Variant B: the same environment, management pointing at an unused 127.0.0.1 port.
start_nb seedb NB_PROXY_MANAGEMENT_ADDRESS=127.0.0.1:18749 NB_PROXY_DOMAIN=proxy.madhan.app NB_PROXY_ACME_CERTIFICATES=true \
    NB_PROXY_TOKEN="$TOKEN" NB_PROXY_HEALTH_ADDRESS=127.0.0.1:18742 --
wait_for 20 curl -s -o /dev/null http://127.0.0.1:18742/healthz/live
sleep 3
alive $seedb_PID && ok "10b: with management at an unused 127.0.0.1 port it stays up" || bad "10b: exited: $(tail -5 "$work/seedb.err")"
r=$(hcode http://127.0.0.1:18742/healthz/ready)
n=$(grep -c 'reconnecting in' "$work/seedb.err")
[ "$r" = 503 ] && [ "$n" -ge 2 ] && ok "10b: not ready (503), retrying ($n attempts)" || bad "10b: ready $r, attempts $n"
stop_pid $seedb_PID

# ---- 15: https:// management (TLS, ALPN h2) ----------------------------------------------------------
# A PKI made here with the openssl command line: a CA and a leaf for DNS:localhost only. The double
# serves gRPC over TLS (grpc-js); nbproxy trusts the CA through SSL_CERT_FILE, as Go does.
pki=$work/pki
mkdir -p "$pki"
if (cd "$pki" &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
        -subj "/CN=nbproxy test management CA" -days 2 &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.csr -subj "/CN=localhost" &&
    printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' > ext &&
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -set_serial 15 -days 2 -extfile ext -out leaf.pem) \
    > "$work/pki.log" 2>&1; then
    cat > "$work/services15.json" <<JSON
[{"id":"t1","account_id":"acct-t","domain":"t1.proxy.test","mode":"http",
  "path":[{"path":"/","target":"http://127.0.0.1:$B1/","options":{"direct_upstream":true}}]}]
JSON
    start_double d15 --port 18743 --control-port 18744 --token "$TOKEN" --services "$work/services15.json" \
        --tls-cert "$pki/leaf.pem" --tls-key "$pki/leaf.key"
    # no NB_PROXY_ALLOW_INSECURE: over TLS the token may be sent
    start_nb nb15 NB_PROXY_TOKEN="$TOKEN" SSL_CERT_FILE="$pki/ca.pem" -- --mgmt https://localhost:18743 --domain proxy.test \
        --health-addr 127.0.0.1:18745 --http-addr 127.0.0.1:18746
    # the same CA trusted, but the URL names 127.0.0.1, which the certificate does not cover
    start_nb nb15b NB_PROXY_TOKEN="$TOKEN" SSL_CERT_FILE="$pki/ca.pem" -- --mgmt https://127.0.0.1:18743 --domain proxy.test \
        --health-addr 127.0.0.1:18747
    # the system roots only: the test CA is not among them
    start_nb nb15c NB_PROXY_TOKEN="$TOKEN" -- --mgmt https://localhost:18743 --domain proxy.test --health-addr 127.0.0.1:18748
    # a TLS server that agrees to no ALPN protocol (openssl s_server without -alpn)
    openssl s_server -accept 127.0.0.1:18741 -cert "$pki/leaf.pem" -key "$pki/leaf.key" -quiet < /dev/null \
        > "$work/s_server.out" 2>&1 &
    ssrv=$!
    pids+=($ssrv)
    wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/18741"
    start_nb nb15d NB_PROXY_TOKEN="$TOKEN" SSL_CERT_FILE="$pki/ca.pem" -- --mgmt https://localhost:18741 --domain proxy.test \
        --health-addr 127.0.0.1:18740
    pyck MC=18744 <<'PY'
ready = M.wait(lambda: M.health(18745, "/healthz/startup") == 200, 20)
check(ready, "15: https://localhost management with SSL_CERT_FILE: the snapshot completes (/healthz/startup 200)")
eq(M.through(18746, "t1.proxy.test"), (200, b"backend-one\n"), "15: ... and the mapping it sent serves traffic")
st = M.state(ENV["MC"])
names = sorted({r["rpc"] for r in st["rpcs"]})
check("SyncMappings" in names, "15: the double (grpc-js over TLS) saw the RPCs", names)
check(st["rpcs"] and all(r["metadata"].get("authorization") == "Bearer " + ENV["TOKEN"] for r in st["rpcs"]),
      "15: every RPC over TLS carries the bearer token (no NB_PROXY_ALLOW_INSECURE needed)")
def failed(name, what):
    return [l for l in M.log_lines(ENV["WORK"] + "/" + name + ".err") if "failed: " + what in l]
for name, why, port in (("nb15b", "a URL host (127.0.0.1) the certificate does not name", 18747),
                        ("nb15c", "the system roots, which lack the test CA", 18748)):
    fl = M.wait(lambda: failed(name, "TLS certificate verification failed"), 10)
    check(fl, "15: %s: the connection fails with 'TLS certificate verification failed'" % why,
          M.log_lines(ENV["WORK"] + "/" + name + ".err")[-3:])
    eq(M.health(port, "/healthz/ready"), 503, "15: ... and the proxy is not ready")
fl = M.wait(lambda: failed("nb15d", "management's TLS server did not select ALPN h2"), 10)
check(fl, "15: a TLS server that selects no ALPN protocol is refused (grpc-go's ALPN enforcement)",
      M.log_lines(ENV["WORK"] + "/nb15d.err")[-3:])
PY
    for p in $nb15_PID $nb15b_PID $nb15c_PID $nb15d_PID $ssrv $d15_PID; do stop_pid $p; done
    # an unreadable SSL_CERT_FILE stops start-up with the reason
    env NB_PROXY_TOKEN="$TOKEN" SSL_CERT_FILE=/nonexistent/ca.pem NB_PROXY_ADDRESS=127.0.0.1:0 \
        NB_PROXY_CERTIFICATE_DIRECTORY="$work/static" "$bin" --mgmt https://localhost:18743 --domain proxy.test \
        --health-addr 127.0.0.1:18740 > /dev/null 2> "$work/nb15e.err" &
    e=$!
    pids+=($e)
    wait_for 10 bash -c "! kill -0 $e"
    wait $e
    rc=$?
    if [ $rc -ne 0 ] && grep -q "cannot load the trust anchors from /nonexistent/ca.pem.*SSL_CERT_FILE" "$work/nb15e.err"; then
        ok "15: an unreadable SSL_CERT_FILE stops start-up (exit $rc) naming the file and the variable"
    else
        bad "15: SSL_CERT_FILE=/nonexistent: exit $rc: $(tail -3 "$work/nb15e.err")"
    fi
else
    bad "15: cannot make the test PKI: $(tail -5 "$work/pki.log")"
fi

# ---- the end: nbproxy exits cleanly ------------------------------------------------------------------
kill -TERM "$nb1_PID"
wait "$nb1_PID"
rc=$?
[ $rc -eq 0 ] && ok "nbproxy exits 0 on SIGTERM after all of it" || bad "nbproxy exit code $rc: $(tail -5 "$work/nb1.err")"
# 6: the token (its secret part) in no output of any nbproxy this script ran
secret=${TOKEN:4:30}
files=$(ls "$work"/nb*.err "$work"/nb*.out "$work"/seed*.err "$work"/seed*.out "$work/access.log" 2>/dev/null)
if grep -lF -- "$secret" $files; then bad "6: the token appears in the files above"
else ok "6: the token appears in no stderr, stdout or access log of the $(echo $files | wc -w) files nbproxy wrote"; fi
for f in "$work"/*.err; do
    grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$f" &&
        bad "sanitizer report in $(basename "$f"): $(grep -A40 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$f" |
            grep -E 'Sanitizer|runtime error|^ *#[0-9]+ .* in (nb_|mgmt_|http_|ns_|wg_|main|setup|step|peer_|add_|remove_|[a-z_]+ /work)' | head -30)"
done

log "time: $(($(date +%s) - t_start)) s"
echo "[mgmt] $pass passed, $fail failed"
[ $fail = 0 ]
