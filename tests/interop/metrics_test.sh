#!/usr/bin/env bash
# The /metrics series of spec/proxy.md §9.2 that count mappings and tcp relays, after real
# traffic: a standalone nbproxy (--config) relays tcp from Python clients to a Python echo
# backend on the host (directUpstream), and /metrics is read with curl. Everything on 127.0.0.1;
# every process is stopped by PID. Ports (NBT_METRICS_PORT_BASE, default 18840, moves them):
#   +0 nbproxy --health-addr   +1 tcp service "tcp-a" (account acct-a) -> +2 the echo backend
#   +3 tcp service "tcp-b" (account acct-b) -> +4 (nothing listens: dial errors)
#   +5 udp service "udp-a"     +6, +7 the accounts' WireGuard UDP ports (no peers)
#
# Checks: 1 proxy_l4_services_count{mode} (2 tcp, 0 tls, 1 udp), proxy_domains_count (2) and
# proxy_paths_count (3 paths over 2 HTTP mappings); 2 three relayed connections moving known
# byte counts through tcp-a: proxy_tcp_bytes_total{direction} grows by exactly those counts,
# proxy_tcp_connection_duration_ms_count by 3, proxy_tcp_connections_total{account_id="acct-a",
# result="success"} is 3 and proxy_tcp_active_connections{account_id="acct-a"} is back to 0;
# while one connection is held open the gauge is 1; 3 two connections to tcp-b fail their dial:
# {account_id="acct-b",result="dial_error"} 2, and acct-a's counters are untouched; 4 SIGTERM:
# exit 0, no sanitizer report.
# NBT_KEEP=1 keeps the work directory.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
work=$(mktemp -d /tmp/nbt-metrics.XXXXXX)
B=${NBT_METRICS_PORT_BASE:-18840}
HEALTH=127.0.0.1:$B
P_A=$((B + 1)) ECHO=$((B + 2)) P_B=$((B + 3)) DEAD=$((B + 4)) P_U=$((B + 5))
pids=()
pass=0
fail=0

log() { printf '[metrics] %s\n' "$*"; }
ok() { pass=$((pass + 1)); log "PASS: $*"; }
bad() { fail=$((fail + 1)); log "FAIL: $*"; }
eq() { if [ "$2" = "$3" ]; then ok "$1 ($2)"; else bad "$1: got '$2', want '$3'"; fi; }

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    [ "${NBT_KEEP:-0}" = 1 ] && log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

for c in curl python3 wg; do command -v $c >/dev/null || { log "missing $c (scripts/install-deps.sh --test)"; exit 2; }; done
[ -x "$bin" ] || { log "no binary at $bin"; exit 2; }
for p in $B $P_A $ECHO $P_B $DEAD; do
    (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null && { log "port $p is busy"; exit 2; }
done

metrics() { curl -sS --max-time 5 "http://$HEALTH/metrics"; }
# metric 'name{labels}' (exact series text) -> value, or empty
metric() { metrics | awk -v k="$1" '$1 == k {print $2}'; }
wait_metric() { # series, value: up to 5 s
    for _ in $(seq 100); do [ "$(metric "$1")" = "$2" ] && return 0; sleep 0.05; done
    return 1
}

# The echo backend: echoes every byte until the client half-closes, then closes.
cat > "$work/echo.py" <<'PY'
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(16)
def serve(c):
    with c:
        while True:
            b = c.recv(65536)
            if not b:
                return
            c.sendall(b)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
# Client: sends N bytes through the relay, reads N back (byte-exact), half-closes, waits for EOF.
cat > "$work/client.py" <<'PY'
import os, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
data = os.urandom(n)
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(data)
got = b""
while len(got) < n:
    b = s.recv(65536)
    if not b:
        break
    got += b
s.shutdown(socket.SHUT_WR)
rest = s.recv(1)
s.close()
print("ok" if got == data and rest == b"" else "mismatch %d/%d" % (len(got), n))
PY

python3 "$work/echo.py" $ECHO > "$work/echo.log" 2>&1 &
pids+=($!)
(umask 077 && wg genkey > "$work/a.key" && wg genkey > "$work/b.key") || { log "wg genkey failed"; exit 2; }
cat > "$work/nb.json" <<JSON
{
  "accounts": [
    { "id": "acct-a", "wireguard": { "privateKey": "$(cat "$work/a.key")", "listenPort": $((B + 6)),
      "addresses": ["10.99.81.1/24"] } },
    { "id": "acct-b", "wireguard": { "privateKey": "$(cat "$work/b.key")", "listenPort": $((B + 7)),
      "addresses": ["10.99.81.1/24"] } }
  ],
  "mappings": [
    { "id": "tcp-a", "accountId": "acct-a", "mode": "tcp", "listenPort": $P_A, "domain": "a.test",
      "path": [{ "target": "127.0.0.1:$ECHO", "options": { "directUpstream": true } }] },
    { "id": "tcp-b", "accountId": "acct-b", "mode": "tcp", "listenPort": $P_B, "domain": "b.test",
      "path": [{ "target": "127.0.0.1:$DEAD", "options": { "directUpstream": true } }] },
    { "id": "udp-a", "accountId": "acct-a", "mode": "udp", "listenPort": $P_U, "domain": "u.test",
      "path": [{ "target": "10.99.81.2:7000" }] },
    { "id": "web1", "accountId": "acct-a", "domain": "web1.test",
      "path": [{ "path": "/", "target": "http://127.0.0.1:$ECHO/", "options": { "directUpstream": true } },
               { "path": "/api", "target": "http://127.0.0.1:$ECHO/", "options": { "directUpstream": true } }] },
    { "id": "web2", "accountId": "acct-b", "domain": "web2.test",
      "path": [{ "path": "/", "target": "http://127.0.0.1:$ECHO/", "options": { "directUpstream": true } }] }
  ]
}
JSON
"$bin" --config "$work/nb.json" --health-addr $HEALTH > "$work/nbproxy.log" 2>&1 &
pp=$!
pids+=($pp)
for _ in $(seq 100); do metrics > /dev/null 2>&1 && break; sleep 0.05; done
metrics > /dev/null 2>&1 || { bad "nbproxy did not start: $(tail -5 "$work/nbproxy.log")"; log "$pass passed, $fail failed"; exit 1; }

# ---- 1. mapping gauges
eq "1. proxy_l4_services_count{mode=\"tcp\"}" "$(metric 'proxy_l4_services_count{mode="tcp"}')" 2
eq "1. proxy_l4_services_count{mode=\"tls\"}" "$(metric 'proxy_l4_services_count{mode="tls"}')" 0
eq "1. proxy_l4_services_count{mode=\"udp\"}" "$(metric 'proxy_l4_services_count{mode="udp"}')" 1
eq "1. proxy_domains_count (2 HTTP mappings)" "$(metric proxy_domains_count)" 2
eq "1. proxy_paths_count (2 + 1 paths)" "$(metric proxy_paths_count)" 3

# ---- 2. relayed bytes, lifetimes, per-account counters
UPS='proxy_tcp_bytes_total{direction="client_to_backend"}'
DOWNS='proxy_tcp_bytes_total{direction="backend_to_client"}'
up0=$(metric "$UPS") down0=$(metric "$DOWNS") d0=$(metric proxy_tcp_connection_duration_ms_count)
eq "2. proxy_tcp_bytes_total starts at zero" "$up0/$down0/$d0" "0/0/0"
total=0
for n in 1 70000 1048576; do
    r=$(python3 "$work/client.py" $P_A $n)
    eq "2. $n bytes echoed byte-exact through tcp-a" "$r" ok
    total=$((total + n))
done
wait_metric 'proxy_tcp_active_connections{account_id="acct-a"}' 0 || true
eq "2. proxy_tcp_connection_duration_ms_count: 3 relays ended" "$(metric proxy_tcp_connection_duration_ms_count)" 3
eq "2. client_to_backend grew by the bytes sent" "$(metric "$UPS")" $total
eq "2. backend_to_client grew by the bytes echoed" "$(metric "$DOWNS")" $total
eq "2. proxy_tcp_connections_total{account_id=\"acct-a\",result=\"success\"}" \
    "$(metric 'proxy_tcp_connections_total{account_id="acct-a",result="success"}')" 3
eq "2. proxy_tcp_active_connections{account_id=\"acct-a\"} after the relays" \
    "$(metric 'proxy_tcp_active_connections{account_id="acct-a"}')" 0
# One connection held open: the gauge shows it.
exec 3<>/dev/tcp/127.0.0.1/$P_A
printf 'x' >&3
if wait_metric 'proxy_tcp_active_connections{account_id="acct-a"}' 1; then ok "2. one open relay: active 1"; else bad "2. one open relay: active $(metric 'proxy_tcp_active_connections{account_id="acct-a"}')"; fi
exec 3>&-
if wait_metric 'proxy_tcp_active_connections{account_id="acct-a"}' 0; then ok "2. closed: active 0"; else bad "2. closed: active stays $(metric 'proxy_tcp_active_connections{account_id="acct-a"}')"; fi

# ---- 3. dial errors are counted on their own account
for _ in 1 2; do
    python3 - $P_B <<'PY' > /dev/null 2>&1
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.settimeout(5)
try:
    s.recv(1)
except OSError:
    pass
PY
done
wait_metric 'proxy_tcp_connections_total{account_id="acct-b",result="dial_error"}' 2 || true
eq "3. proxy_tcp_connections_total{account_id=\"acct-b\",result=\"dial_error\"}" \
    "$(metric 'proxy_tcp_connections_total{account_id="acct-b",result="dial_error"}')" 2
eq "3. acct-b: no success, nothing open" \
    "$(metric 'proxy_tcp_connections_total{account_id="acct-b",result="success"}')/$(metric 'proxy_tcp_active_connections{account_id="acct-b"}')" "0/0"
eq "3. acct-a: dial_error untouched" \
    "$(metric 'proxy_tcp_connections_total{account_id="acct-a",result="dial_error"}')" 0

# ---- 4. shutdown
kill -TERM $pp
rc=0
for _ in $(seq 200); do kill -0 $pp 2>/dev/null || break; sleep 0.05; done
wait $pp 2>/dev/null || rc=$?
eq "4. SIGTERM: exit status" "$rc" 0
if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$work/nbproxy.log"; then
    bad "4. sanitizer report: $(grep -m3 -E 'ERROR|runtime error' "$work/nbproxy.log")"
else
    ok "4. no sanitizer report in nbproxy's log"
fi

log "$pass passed, $fail failed"
[ $fail -eq 0 ]
