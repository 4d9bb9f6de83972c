#!/usr/bin/env bash
# udp mappings end to end: a standalone nbproxy relays UDP from 127.0.0.1 through a WireGuard
# tunnel (our wg/ + lwIP UDP) to a Python UDP echo server behind wireguard-go (Debian) in a
# network namespace; the clients are Python sockets on the host. Needs root (netns, veth,
# bridge); every address used lives on interfaces this script creates (10.99.60.x, 10.99.160.x)
# or on 127.0.0.1, and every process it starts is stopped by PID.
#
#   root ns:  bridge nbu-br 10.99.60.1/24; nbproxy --config ... --health-addr 127.0.0.1:18653
#             account "udp"   WireGuard UDP 51881, tunnel 10.99.160.1/24, peer = the namespace
#             account "other" WireGuard UDP 51882, tunnel 10.99.160.1/24 too, a peer that never
#                             answers (no endpoint)
#             mappings: svc-udp   udp 18650 -> 10.99.160.2:7000 via "udp" (idle 30 s default)
#                       svc-idle  udp 18651 -> 10.99.160.2:7000 via "udp", sessionIdleTimeout 1s
#                       svc-other udp 18652 -> 10.99.160.2:7000 via "other"
#   ns nbu-peer: veth 10.99.60.2/24, wireguard-go "nbup0" (UDP 51880, MTU 1280), tunnel
#             10.99.160.2/24, udpecho.py on 10.99.160.2:7000.
#
# Checks: 1 echo of sizes 0..1252 bytes (1252 = MTU 1280 - 28, the largest unfragmented IPv4
# datagram); 2 datagrams over the MTU (1400, 2000, 60000 bytes) reach the server (lwIP
# fragments them) but their echoes, fragmented by the peer's kernel, are dropped by nbproxy
# (no reassembly, netstack/README.md), so the client gets nothing; 3 40 client ports = 40
# sessions, each echoed; 4 the other account (same tunnel addresses) never answers; 5 a burst
# of 300 new client ports hits the creation rate limit (50/s, burst 100); 6 idle reaping after
# sessionIdleTimeout, with its access-log record; 7 a flood from one client port: one session,
# RSS bounded; 8 /metrics UDP families; 9 SIGTERM: exit 0, one access-log record per session
# with the right fields.
# NBT_KEEP=1 keeps the work directory (logs, access log) for a failed run.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
work=$(mktemp -d /tmp/nbt-udp.XXXXXX)
NS=nbu-peer
BR=nbu-br
IF=nbup0
U=10.99.60   # underlay
T=10.99.160  # tunnel
P_UDP=18650
P_IDLE=18651
P_OTHER=18652
HEALTH=127.0.0.1:18653
pids=()
pass=0
fail=0
t_start=$(date +%s)

log() { printf '[udp] %s\n' "$*"; }
ok() { pass=$((pass + 1)); log "PASS: $*"; }
bad() { fail=$((fail + 1)); log "FAIL: $*"; }
check() { if [ -z "$2" ]; then ok "$1"; else bad "$1: $(echo "$2" | head -c 600 | tr '\n' ';')"; fi; }

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    ip netns del $NS 2>/dev/null
    ip link del $BR 2>/dev/null
    ip link del nbu-br0 2>/dev/null
    rm -f /var/run/wireguard/$IF.sock
    [ "${NBT_KEEP:-0}" = 1 ] && log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { log "missing $1 (scripts/install-deps.sh --test)"; exit 2; }; }
need wireguard-go; need wg; need ip; need curl; need python3
[ -x "$bin" ] || { log "no binary at $bin"; exit 2; }
(echo > /dev/tcp/127.0.0.1/18653) 2>/dev/null && { log "port 18653 is busy"; exit 2; }

uc() { python3 "$here/udpcheck.py" "$@"; }
metrics() { curl -sS --max-time 5 "http://$HEALTH/metrics"; }
# metric 'name{labels}' (exact series text) -> value, or empty
metric() { metrics | awk -v k="$1" '$1 == k {print $2}'; }
rss_kb() { awk '$1 == "VmRSS:" {print $2}' /proc/$pp/status 2>/dev/null; }

# ---- topology ----
ip netns del $NS 2>/dev/null; ip link del $BR 2>/dev/null; ip link del nbu-br0 2>/dev/null
for _ in $(seq 50); do ip link show nbu-br0 > /dev/null 2>&1 || break; sleep 0.1; done
{ ip link add $BR type bridge && ip addr add $U.1/24 dev $BR && ip link set $BR up &&
    ip netns add $NS &&
    ip link add nbu-br0 type veth peer name nbu-eth netns $NS &&
    ip link set nbu-br0 master $BR up &&
    ip -n $NS addr add $U.2/24 dev nbu-eth &&
    ip -n $NS link set nbu-eth up &&
    ip -n $NS link set lo up; } || { log "cannot build the test network"; exit 2; }

umask 077
for k in peer self other otherpeer; do wg genkey > "$work/$k.key"; wg pubkey < "$work/$k.key" > "$work/$k.pub"; done
umask 022

LOG_LEVEL=error ip netns exec $NS wireguard-go -f $IF > "$work/wggo.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S /var/run/wireguard/$IF.sock ] && break; sleep 0.05; done
ip netns exec $NS wg set $IF private-key "$work/peer.key" listen-port 51880 \
    peer "$(cat "$work/self.pub")" allowed-ips $T.1/32
ip -n $NS addr add $T.2/24 dev $IF
ip -n $NS link set $IF mtu 1280 up

: > "$work/echo.log"
ip netns exec $NS python3 "$here/udpecho.py" $T.2 7000 "$work/echo.log" > "$work/echo.out" 2>&1 &
pids+=($!)

# ---- nbproxy ----
cat > "$work/nbproxy.json" <<JSON
{
  "accounts": [
    { "id": "udp", "wireguard": { "privateKey": "$(cat "$work/self.key")", "listenPort": 51881,
      "addresses": ["$T.1/24"],
      "peers": [{ "publicKey": "$(cat "$work/peer.pub")", "endpoint": "$U.2:51880",
                  "allowedIps": ["$T.2/32"], "persistentKeepalive": 25 }] } },
    { "id": "other", "wireguard": { "privateKey": "$(cat "$work/other.key")", "listenPort": 51882,
      "addresses": ["$T.1/24"],
      "peers": [{ "publicKey": "$(cat "$work/otherpeer.pub")", "allowedIps": ["$T.2/32"] }] } }
  ],
  "mappings": [
    { "id": "svc-udp", "accountId": "udp", "mode": "udp", "listenPort": $P_UDP,
      "domain": "udp.test", "path": [{ "target": "$T.2:7000" }] },
    { "id": "svc-idle", "accountId": "udp", "mode": "udp", "listenPort": $P_IDLE,
      "domain": "idle.udp.test",
      "path": [{ "target": "$T.2:7000", "options": { "sessionIdleTimeout": "1s" } }] },
    { "id": "svc-other", "accountId": "other", "mode": "udp", "listenPort": $P_OTHER,
      "domain": "other.udp.test", "path": [{ "target": "$T.2:7000" }] }
  ]
}
JSON
"$bin" --config "$work/nbproxy.json" --health-addr $HEALTH --access-log "$work/access.log" \
    --log-level debug > "$work/nbproxy.log" 2>&1 &
pp=$!
pids+=("$pp")
for _ in $(seq 100); do metrics > /dev/null 2>&1 && break; sleep 0.05; done
metrics > /dev/null 2>&1 || { bad "nbproxy did not start: $(tail -5 "$work/nbproxy.log")"; log "$pass passed, $fail failed"; exit 1; }

# ---- 1. echo, sizes up to the largest unfragmented datagram (first one waits for the handshake)
check "1. echo through the tunnel, byte-exact, sizes 0..1252 from one client port" \
    "$(r=$(uc echo $P_UDP 16 0 1 100 512 1000 1200 1252); [ "$r" = ok ] || echo "$r")"

# ---- 2. over the tunnel MTU
r2=$(uc noecho $P_UDP 1400; uc noecho $P_UDP 2000; uc noecho $P_UDP 60000)
sleep 0.3
got=$(awk '{print $1}' "$work/echo.log" | sort -n | uniq | tr '\n' ' ')
check "2. 1400, 2000 and 60000 bytes reach the server (lwIP fragments them: got \"$got\"); their fragmented echoes are dropped" \
    "$( [ "$r2" = "$(printf 'ok\nok\nok')" ] || echo "client: $r2"; [ "$got" = "1400 2000 60000 " ] || echo "server saw: $got")"

# ---- 3. many client ports = many sessions
before=$(metric 'proxy_udp_sessions_total{result="success"}')
n=$(uc sessions $P_UDP 40)
after=$(metric 'proxy_udp_sessions_total{result="success"}')
check "3. 40 client ports: 40 echoed, 40 new sessions ($before -> $after)" \
    "$( [ "$n" = 40 ] || echo "echoed $n"; [ $((after - before)) = 40 ] || echo "sessions $before -> $after")"

# ---- 4. the other account: same tunnel addresses, its peer never answers
check "4. the other account (same tunnel address) never answers: no cross-account leak" \
    "$(r=$(uc noecho $P_OTHER 64); [ "$r" = ok ] || echo "$r")"

# ---- 5. creation rate limit
rej0=$(metric 'nbproxy_udp_sessions_rejected_total{reason="rate"}')
n=$(uc burst $P_UDP 300)
rej1=$(metric 'nbproxy_udp_sessions_rejected_total{reason="rate"}')
check "5. 300 new client ports at once: $n answered, rate-limit refusals $rej0 -> $rej1" \
    "$( [ "$n" -ge 100 ] && [ "$n" -lt 300 ] || echo "answered $n"; [ "${rej1:-0}" -gt "${rej0:-0}" ] || echo "no refusals counted")"

# ---- 6. idle reaping
r6=$(uc echo $P_IDLE 77)
idle_rec=""
for _ in $(seq 60); do
    idle_rec=$(grep '"serviceId":"svc-idle"' "$work/access.log" 2>/dev/null)
    [ -n "$idle_rec" ] && break
    sleep 0.1
done
ended=$(metric 'nbproxy_udp_sessions_ended_total{reason="idle"}')
check "6. sessionIdleTimeout 1s: the session is reaped with one access-log record, 77 bytes each way" \
    "$( [ "$r6" = ok ] || echo "echo: $r6"; [ "${ended:-0}" -ge 1 ] || echo "ended{idle}=$ended";
        echo "$idle_rec" | python3 "$here/udpcheck.py" idlerec 0)"

# ---- 7. flood from one client port
s0=$(metric 'proxy_udp_sessions_total{result="success"}')
rss0=$(rss_kb)
read -r fsent frecv < <(uc flood $P_UDP 30000 1200)
rss1=$(rss_kb)
s1=$(metric 'proxy_udp_sessions_total{result="success"}')
up=$(metric 'proxy_udp_packets_total{direction="client_to_backend"}')
drop=$(metric 'nbproxy_udp_dropped_packets_total')
log "flood: sent $fsent x 1200 B, $frecv echoed; RSS ${rss0} kB -> ${rss1} kB; relayed up $up, dropped $drop"
check "7. a flood of $fsent datagrams from one port: one session, RSS grew $(( (rss1 - rss0) / 1024 )) MiB (< 16)" \
    "$( [ $((s1 - s0)) = 1 ] || echo "sessions $s0 -> $s1"; [ $((rss1 - rss0)) -lt 16384 ] || echo "RSS $rss0 -> $rss1 kB";
        [ "${fsent:-0}" -gt 1000 ] || echo "sent only $fsent"; [ "${frecv:-0}" -gt 0 ] || echo "no echo during the flood")"

# ---- 8. metrics
m=$(metrics)
miss=""
for k in 'proxy_udp_active_sessions ' 'proxy_udp_sessions_total{result="success"}' \
    'proxy_udp_sessions_total{result="rejected"}' 'proxy_udp_packets_total{direction="backend_to_client"}' \
    'proxy_udp_bytes_total{direction="client_to_backend"}' 'nbproxy_udp_dropped_bytes_total '; do
    echo "$m" | grep -qF "$k" || miss="$miss $k"
done
active=$(echo "$m" | awk '$1 == "proxy_udp_active_sessions" {print $2}')
total=$(echo "$m" | awk '$1 == "proxy_udp_sessions_total{result=\"success\"}" {print $2}')
check "8. /metrics: UDP families present; $active sessions open, $total created" \
    "$( [ -z "$miss" ] || echo "missing:$miss"; [ "${active:-0}" -ge 40 ] || echo "active=$active")"

# ---- 9. SIGTERM: relays close, every session writes its record
kill -TERM $pp
rc=""
for _ in $(seq 100); do kill -0 $pp 2>/dev/null || { wait $pp; rc=$?; break; }; sleep 0.1; done
[ "$rc" = 0 ] && ok "9a. nbproxy exited 0 after SIGTERM" || bad "9a. exit status after SIGTERM: '$rc'"
check "9b. access log: one udp record per session ($total), fields as spec/proxy.md §8.3" \
    "$(python3 "$here/udpcheck.py" alog 0 "$work/access.log" "$total")"
if grep -q 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:' "$work/nbproxy.log"; then
    bad "sanitizer report in nbproxy's log: $(grep -m1 -A3 'AddressSanitizer\|runtime error:' "$work/nbproxy.log")"
fi

log "ran in $(( $(date +%s) - t_start )) s"
log "$pass passed, $fail failed"
[ $fail = 0 ]
