#!/usr/bin/env bash
# The HTTP engine from the outside, against real third-party clients and servers: curl, Node's
# http module, the npm `ws` package (client and server), nginx, Python sockets; upstreams both
# through a WireGuard tunnel to wireguard-go (Debian) in a network namespace and on the host
# network (directUpstream). Needs root (netns, veth, bridge); every address used lives on
# interfaces this script creates (10.99.41.x, 10.99.141.x) or on 127.0.0.1, and every process it
# starts is stopped by PID.
#
#   root ns:  bridge nbth-br 10.99.41.1/24; nbproxy --private --http-addr 127.0.0.1:18480
#             account "web"   UDP 51851, tunnel 10.99.141.1/24, peer = the namespace below
#             account "other" UDP 51852, tunnel 10.99.141.1/24 too, a peer that never answers
#             Node backend 127.0.0.1:18481, nginx 127.0.0.1:18482 (directUpstream targets)
#   ns nbth-peer: veth 10.99.41.2/24, wireguard-go "nbthp0" (UDP 51820), tunnel 10.99.141.2/24
#             and 10.99.141.4/24 (a client address for --private), Node backend + ws echo on
#             10.99.141.2:8000. 10.99.141.3 is routed to the peer but nothing answers it.
#
# Checks (as listed in docs/testing.md): 1 what the backend receives (Host, X-Forwarded-*,
# hop-by-hop and identity fields, cookie and query scrubbing, trailers both ways); 2 chunked and
# 100-continue uploads; 3 WebSocket echo; 4 SSE streamed without buffering; 5 NBT_SIZE_MB
# (1024) down and up direct with a memory bound, NBT_SIZE_MB/16 (at least 4) through the
# tunnel; 6 a client that stops reading costs bounded memory; 7 upstream reset mid-body stays
# truncated; 8 error pages, and a client that leaves cancels its upstream request;
# 9 rewriteRedirects; 10 keep-alive, pipelining, upstream reuse, empty-body responses;
# 11 --private listeners and the loop guard; 12 the access log; 13 ReadHeaderTimeout;
# 14 SIGTERM drains (request in flight completes, WebSockets close, exit 0).
# NBT_KEEP=1 keeps the work directory (logs, access log, every answer) for a failed run.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
work=$(mktemp -d /tmp/nbt-http.XXXXXX)
NS=nbth-peer
BR=nbth-br
IF=nbthp0
U=10.99.41   # underlay (bridge + veth)
T=10.99.141  # tunnel
PORT=18480   # nbproxy --http-addr
DPORT=18481  # Node on 127.0.0.1
NPORT=18482  # nginx on 127.0.0.1
RPORT=18489  # nothing listens here
SIZE_MB=${NBT_SIZE_MB:-1024}
TUN_MB=$((SIZE_MB / 16))
[ $TUN_MB -lt 4 ] && TUN_MB=4
P=http://127.0.0.1:$PORT
pids=()
pass=0
fail=0
t_start=$(date +%s)

log() { printf '[http] %s\n' "$*"; }
ok() { pass=$((pass + 1)); log "PASS: $*"; }
bad() { fail=$((fail + 1)); log "FAIL: $*"; }
# check "description" "mismatch text": PASS when the text is empty.
check() { if [ -z "$2" ]; then ok "$1"; else bad "$1: $(echo "$2" | head -c 600 | tr '\n' ';')"; fi; }

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    ip netns del $NS 2>/dev/null
    ip link del $BR 2>/dev/null
    ip link del nbth-br0 2>/dev/null
    rm -f /var/run/wireguard/$IF.sock
    [ "${NBT_KEEP:-0}" = 1 ] && log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { log "missing $1 (scripts/install-deps.sh --test)"; exit 2; }; }
need wireguard-go; need wg; need ip; need curl; need python3; need node; need nginx; need sha256sum
[ -x "$bin" ] || { log "no binary at $bin"; exit 2; }
[ -d "$here/node/node_modules/ws" ] || { log "missing tests/interop/node/node_modules (scripts/install-deps.sh --test)"; exit 2; }
for p in $PORT $DPORT $NPORT $RPORT; do
    (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null && { log "port $p is busy"; exit 2; }
done

raw() { python3 "$here/httpraw.py" "$@"; }
jc() { python3 "$here/httpcheck.py" "$@"; }
# Expected access-log record: path method code host up down src logId minDurationMs.
expect_log() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$work/expect.tsv"; }
: > "$work/expect.tsv"
vm() { awk -v k="$1:" '$1 == k {print $2}' /proc/$pp/status 2>/dev/null; } # kB
sha() { sha256sum "$1" | cut -c1-64; }
wait_http() { # url [host]: until it answers at all (any status), 10 s at most
    for _ in $(seq 200); do
        curl -s -o /dev/null --max-time 1 ${2:+-H "Host: $2"} "$1" && return 0
        sleep 0.05
    done
    return 1
}
ns_stats() { ip netns exec $NS curl -sS --max-time 5 http://$T.2:8000/stats; }
host_stats() { curl -sS --max-time 5 http://127.0.0.1:$DPORT/stats; }

# ---- topology ----
ip netns del $NS 2>/dev/null; ip link del $BR 2>/dev/null; ip link del nbth-br0 2>/dev/null
# A namespace deleted a moment ago (a previous run) may still hold the veth: wait for it to go.
for _ in $(seq 50); do ip link show nbth-br0 > /dev/null 2>&1 || break; sleep 0.1; done
{ ip link add $BR type bridge && ip addr add $U.1/24 dev $BR && ip link set $BR up &&
    ip netns add $NS &&
    ip link add nbth-br0 type veth peer name nbth-eth netns $NS &&
    ip link set nbth-br0 master $BR up &&
    ip -n $NS addr add $U.2/24 dev nbth-eth &&
    ip -n $NS link set nbth-eth up &&
    ip -n $NS link set lo up; } || { log "cannot build the test network"; exit 2; }

umask 077
for k in peer self other otherpeer; do wg genkey > "$work/$k.key"; wg pubkey < "$work/$k.key" > "$work/$k.pub"; done
umask 022

LOG_LEVEL=error ip netns exec $NS wireguard-go -f $IF > "$work/wggo.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S /var/run/wireguard/$IF.sock ] && break; sleep 0.05; done
ip netns exec $NS wg set $IF private-key "$work/peer.key" listen-port 51820 \
    peer "$(cat "$work/self.pub")" allowed-ips $T.1/32
ip -n $NS addr add $T.2/24 dev $IF
ip -n $NS addr add $T.4/24 dev $IF
ip -n $NS link set $IF mtu 1280 up

# ---- backends ----
ip netns exec $NS node "$here/node/server.js" $T.2 8000 > "$work/node-ns.log" 2>&1 &
pids+=($!)
node "$here/node/server.js" 127.0.0.1 $DPORT > "$work/node-host.log" 2>&1 &
pids+=($!)
mkdir -p "$work/www" "$work/nginx"
cat > "$work/nginx.conf" <<NGX
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 64; }
http {
    access_log $work/nginx/access.log;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    sendfile on;
    types { application/octet-stream bin; }
    server { listen 127.0.0.1:$NPORT; root $work/www; }
}
NGX
nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx.conf" > "$work/nginx/stdout.log" 2>&1 &
pids+=($!)
wait_http http://127.0.0.1:$DPORT/stats || log "Node backend on 127.0.0.1:$DPORT did not start"
wait_http http://127.0.0.1:$NPORT/ || log "nginx on 127.0.0.1:$NPORT did not start"
for _ in $(seq 200); do ns_stats > /dev/null 2>&1 && break; sleep 0.05; done

# ---- nbproxy ----
tunnel_target="http://$T.2:8000/"
opts_tun='"requestTimeout": "5s", "customHeaders": {"X-A": "b"}'
cat > "$work/nbproxy.json" <<JSON
{
  "accounts": [
    { "id": "web", "wireguard": { "privateKey": "$(cat "$work/self.key")", "listenPort": 51851,
      "addresses": ["$T.1/24"],
      "peers": [{ "publicKey": "$(cat "$work/peer.pub")", "endpoint": "$U.2:51820",
                  "allowedIps": ["$T.2/32", "$T.3/32", "$T.4/32"], "persistentKeepalive": 25 }] } },
    { "id": "other", "wireguard": { "privateKey": "$(cat "$work/other.key")", "listenPort": 51852,
      "addresses": ["$T.1/24"],
      "peers": [{ "publicKey": "$(cat "$work/otherpeer.pub")", "allowedIps": ["$T.2/32"] }] } }
  ],
  "mappings": [
    { "id": "svc-web", "accountId": "web", "mode": "http", "domain": "web.test",
      "path": [{ "path": "/", "target": "$tunnel_target", "options": { $opts_tun } }] },
    { "id": "svc-pass", "accountId": "web", "domain": "pass.test", "passHostHeader": true,
      "path": [{ "path": "/", "target": "$tunnel_target", "options": { $opts_tun } }] },
    { "id": "svc-redir", "accountId": "web", "domain": "redir.test", "rewriteRedirects": true,
      "path": [{ "path": "/", "target": "$tunnel_target",
                 "options": { "pathRewrite": "PATH_REWRITE_PRESERVE" } }] },
    { "id": "svc-paths", "accountId": "web", "domain": "paths.test",
      "path": [{ "path": "/echo", "target": "$tunnel_target",
                 "options": { "pathRewrite": "PATH_REWRITE_PRESERVE" } }] },
    { "id": "svc-direct", "accountId": "web", "domain": "direct.test",
      "path": [{ "path": "/", "target": "http://127.0.0.1:$DPORT/",
                 "options": { "directUpstream": true, "requestTimeout": "2s" } }] },
    { "id": "svc-nginx", "accountId": "web", "domain": "nginx.test",
      "path": [{ "path": "/", "target": "http://127.0.0.1:$NPORT/",
                 "options": { "directUpstream": true } }] },
    { "id": "svc-refused", "accountId": "web", "domain": "refused.test",
      "path": [{ "path": "/", "target": "http://$T.2:8009/", "options": { "requestTimeout": "3s" } }] },
    { "id": "svc-refused-direct", "accountId": "web", "domain": "refused-direct.test",
      "path": [{ "path": "/", "target": "http://127.0.0.1:$RPORT/",
                 "options": { "directUpstream": true } }] },
    { "id": "svc-blackhole", "accountId": "web", "domain": "blackhole.test",
      "path": [{ "path": "/", "target": "http://$T.3:8000/", "options": { "requestTimeout": "1s" } }] },
    { "id": "svc-other", "accountId": "other", "domain": "other.test",
      "path": [{ "path": "/", "target": "$tunnel_target", "options": { "requestTimeout": "1s" } }] }
  ]
}
JSON
"$bin" --config "$work/nbproxy.json" --http-addr 127.0.0.1:$PORT --access-log "$work/access.log" \
    --private --log-level debug > "$work/nbproxy.log" 2>&1 &
pp=$!
pids+=("$pp")
wait_http $P/probe/start || { bad "nbproxy did not start: $(tail -5 "$work/nbproxy.log")"; log "$pass passed, $fail failed"; exit 1; }
# The first request through the tunnel waits for the WireGuard handshake.
for i in $(seq 40); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 -H 'Host: web.test' $P/probe/$i)" = 404 ] && break
    sleep 0.2
done
log "set up in $(( $(date +%s) - t_start )) s (size ${SIZE_MB} MiB, tunnel ${TUN_MB} MiB)"

# 13 (started first, judged later): half a request head; others are served meanwhile.
python3 "$here/httpraw.py" slowhead 127.0.0.1 $PORT web.test > "$work/slowhead.json" 2>&1 &
slow_pid=$!
pids+=("$slow_pid")
sleep 0.3

# ---- 1. GET through the tunnel: what the backend receives ----
code=$(curl -sS --max-time 10 -o "$work/t1.json" -w '%{http_code}' -H 'Host: web.test' \
    -H 'X-A: client' -H 'X-NetBird-User: mallory@example.com' -H 'X-NetBird-Groups: admins' \
    -H 'Connection: keep-alive, X-Hop' -H 'X-Hop: 1' -H 'Keep-Alive: timeout=5' \
    -H 'Proxy-Connection: keep-alive' -H 'TE: gzip' -H 'Trailer: X-T' -H 'Upgrade: h2c' \
    -H 'Proxy-Authorization: Basic eDp5' -H 'Forwarded: for=192.0.2.7' \
    -H 'X-Forwarded-For: 192.0.2.7' -H 'X-Real-IP: 192.0.2.7' -H 'X-Forwarded-Host: evil.test' \
    -H 'X-Forwarded-Proto: https' -H 'X-Forwarded-Port: 443' \
    -H 'Cookie: a=1; nb_session=secret-session; b=2' -A 'nbt-agent/1.0' \
    "$P/echo/t1?z=2&session_token=secret-token&a=1")
[ "$code" = 200 ] && [ "$(jc get "$work/t1.json" "d['method']")" = GET ] &&
    ok "1a. GET through the tunnel: 200 with the backend's JSON body" ||
    bad "1a. GET through the tunnel: status $code, body $(head -c 200 "$work/t1.json")"
expect_log /echo/t1 GET 200 web.test 0 + 127.0.0.1 - -
check "1b. backend saw Host = target authority, X-Forwarded-*/X-Real-IP from the peer, custom header" \
    "$(jc hdrs "$work/t1.json" host=$T.2:8000 x-forwarded-for=127.0.0.1 x-real-ip=127.0.0.1 \
        x-forwarded-host=web.test x-forwarded-proto=http x-forwarded-port=80 x-a=b \
        user-agent=nbt-agent/1.0)"
check "1c. no hop-by-hop or spoofable fields upstream, X-NetBird-* stripped" \
    "$(jc hdrs "$work/t1.json" '!x-hop' '!keep-alive' '!proxy-connection' '!te' '!trailer' \
        '!upgrade' '!proxy-authorization' '!forwarded' '!x-netbird-user' '!x-netbird-groups' \
        '!transfer-encoding' '!expect' 'connection~keep-alive')"
check "1d. nb_session cookie and session_token query parameter stripped (query re-encoded sorted)" \
    "$(jc hdrs "$work/t1.json" 'cookie=a=1; b=2' 'url=/echo/t1?a=1&z=2')"
curl -sS --max-time 10 -o "$work/t1e.json" -H 'Host: pass.test:18480' -H 'TE: trailers' \
    "$P/echo/t1e"
expect_log /echo/t1e GET 200 pass.test 0 + 127.0.0.1 - -
check "1e. passHostHeader: backend saw the client's Host (with port); TE: trailers kept" \
    "$(jc hdrs "$work/t1e.json" host=pass.test:18480 x-forwarded-host=pass.test:18480 \
        x-forwarded-port=18480 te=trailers 'url=/echo/t1e')"
# A request with no User-Agent must reach the backend without one (Go sends none).
curl -sS --max-time 10 -o "$work/t1f.json" -H 'Host: web.test' -H 'User-Agent:' "$P/echo/t1f"
expect_log /echo/t1f GET 200 web.test 0 + 127.0.0.1 - -
check "1f. no User-Agent from the client: none upstream" "$(jc hdrs "$work/t1f.json" '!user-agent')"
# Trailers (spec §4.8: Go's proxy forwards them): a chunked response's trailer field reaches the
# client, and an announced request trailer reaches the backend.
curl -sS --max-time 10 --raw -o "$work/t1g.raw" -H 'Host: web.test' -H 'TE: trailers' "$P/trailers/t1g"
expect_log /trailers/t1g GET 200 web.test 0 18 127.0.0.1 - -
if grep -q 'part two' "$work/t1g.raw" && grep -q $'^X-Checksum: abc123\r$' "$work/t1g.raw"; then
    ok "1g. response trailer X-Checksum: abc123 forwarded after the last chunk"
else
    bad "1g. response trailer: the client got $(tail -c 60 "$work/t1g.raw" | od -c | head -3 | tr -s ' ' | tr '\n' ' ')"
fi
raw trailers 127.0.0.1 $PORT web.test /echo/t1h > "$work/t1h.json" 2>&1
expect_log /echo/t1h POST 200 web.test 5 + 127.0.0.1 - -
check "1h. request trailer X-Req-Sum: 42 forwarded to the backend (body intact)" \
    "$(jc hdrs "$work/t1h.json" bytes=5 "trailers={'x-req-sum': '42'}")"
# The slow-head client (13) is still waiting while these were served.
[ ! -s "$work/slowhead.json" ] && kill -0 $slow_pid 2>/dev/null &&
    ok "13a. requests served while a client sits on half a request head" ||
    bad "13a. the half-head client was answered or closed early: $(cat "$work/slowhead.json")"

# ---- 2. uploads through the tunnel: chunked, and 100-continue ----
head -c $((3 * 1024 * 1024 + 12345)) /dev/urandom > "$work/up2.bin"
want2=$(sha "$work/up2.bin")
size2=$(stat -c %s "$work/up2.bin")
curl -sS --max-time 30 -o "$work/t2a.json" -H 'Host: web.test' -H 'Transfer-Encoding: chunked' \
    --data-binary @"$work/up2.bin" "$P/echo/t2a"
expect_log /echo/t2a POST 200 web.test "$size2" + 127.0.0.1 - -
check "2a. chunked upload ($size2 bytes) byte-identical at the backend" \
    "$(jc hdrs "$work/t2a.json" sha256="$want2" bytes="$size2" method=POST)"
curl -sS -v --max-time 30 -o "$work/t2b.json" -H 'Host: web.test' \
    --data-binary @"$work/up2.bin" "$P/echo/t2b" 2> "$work/t2b.verbose"
expect_log /echo/t2b POST 200 web.test "$size2" + 127.0.0.1 - -
if grep -q '^> Expect: 100-continue' "$work/t2b.verbose" && grep -q '^< HTTP/1.1 100 Continue' "$work/t2b.verbose"; then
    ok "2b. curl sent Expect: 100-continue and got \"HTTP/1.1 100 Continue\""
else
    bad "2b. 100-continue: $(grep -E '^[<>] (Expect|HTTP)' "$work/t2b.verbose" | tr '\n' ';')"
fi
check "2c. 100-continue upload byte-identical, no Expect forwarded" \
    "$(jc hdrs "$work/t2b.json" sha256="$want2" bytes="$size2" '!expect')"

# ---- 3. WebSocket echo through the tunnel (npm ws client and server) ----
node "$here/node/client.js" ws ws://127.0.0.1:$PORT/ws/t3 web.test 100 > "$work/t3.json" 2>&1
if [ "$(jc get "$work/t3.json" "d['ok'] and d['matched'] == 100 and d['closeCode'] == 1000")" = True ]; then
    ok "3a. WebSocket: 100 messages (0 B .. 1 MiB, text and binary) echoed identically, close 1000"
else
    bad "3a. WebSocket: $(head -c 300 "$work/t3.json")"
fi
ws_bytes=$(jc get "$work/t3.json" "d.get('bytes', 0)")
# One record, written when the upgraded connection ends (nbproxy logs 101 and the relayed
# bytes, frames included, where netbird-proxy logs 200 and none: http/proxy.c says so).
expect_log /ws/t3 GET 101 web.test + + 127.0.0.1 - -

# ---- 4. SSE: the first event arrives before the backend writes the second ----
sse_check() { # name file
    jc get "$2" "('' if d.get('status') == 200 and [e['i'] for e in d['events']] == list(range(6))
        and d['events'][0]['at'] < d['events'][1]['sent']
        and d['events'][5]['at'] - d['events'][0]['at'] >= 700
        else 'events (i, sent, arrived) %s' % [(e['i'], e['sent'] - d['start'], e['at'] - d['start']) for e in d.get('events', [])])"
}
ip netns exec $NS node "$here/node/client.js" sse http://$T.2:8000/sse/direct $T.2:8000 > "$work/t4d.json" 2>&1
node "$here/node/client.js" sse $P/sse/t4 web.test > "$work/t4.json" 2>&1
node "$here/node/client.js" sse $P/sse/t4b direct.test > "$work/t4b.json" 2>&1
expect_log /sse/t4 GET 200 web.test 0 + 127.0.0.1 - 900
expect_log /sse/t4b GET 200 direct.test 0 + 127.0.0.1 - 900
ttfb() { jc get "$1" "d['events'][0]['at'] - d['start'] if d.get('events') else 'none'"; }
log "SSE first event after: direct $(ttfb "$work/t4d.json") ms, proxy/tunnel $(ttfb "$work/t4.json") ms, proxy/direct $(ttfb "$work/t4b.json") ms"
check "4a. SSE through the tunnel: 6 events in order, the first before the backend sent the second, spread over ~1 s" \
    "$(sse_check tunnel "$work/t4.json")"
check "4b. SSE through a directUpstream target: same" "$(sse_check direct "$work/t4b.json")"
check "4c. SSE straight from the backend (reference for the same run)" "$(sse_check ref "$work/t4d.json")"

# ---- 5. big transfers: SIZE_MB direct (nginx down, Node up) with a memory bound; tunnel ----
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$work/www/big.bin"
want5=$(sha "$work/www/big.bin")
size5=$(stat -c %s "$work/www/big.bin")
rss0=$(vm VmRSS)
echo 5 > /proc/$pp/clear_refs # resets VmHWM to the current RSS
t0=$(date +%s.%N)
got5=$(curl -sS --max-time 120 -H 'Host: nginx.test' $P/big.bin | sha256sum | cut -c1-64)
t1=$(date +%s.%N)
expect_log /big.bin GET 200 nginx.test 0 "$size5" 127.0.0.1 - -
[ "$got5" = "$want5" ] && ok "5a. ${SIZE_MB} MiB download from nginx (directUpstream) byte-identical" ||
    bad "5a. ${SIZE_MB} MiB download: sha $got5 != $want5"
curl -sS --max-time 120 -o "$work/t5b.json" -H 'Host: direct.test' -T "$work/www/big.bin" "$P/echo/t5b"
t2=$(date +%s.%N)
expect_log /echo/t5b PUT 200 direct.test "$size5" + 127.0.0.1 - -
check "5b. ${SIZE_MB} MiB upload to Node (directUpstream) byte-identical" \
    "$(jc hdrs "$work/t5b.json" sha256="$want5" bytes="$size5")"
hwm=$(vm VmHWM)
log "direct: down $(python3 -c "print(round($SIZE_MB/($t1-$t0)))") MiB/s, up $(python3 -c "print(round($SIZE_MB/($t2-$t1)))") MiB/s; RSS before ${rss0} kB, peak during ${hwm} kB"
# Bound: a relay holds at most one 256 KiB high-water mark per direction plus 64 KiB read
# buffers (docs/architecture.md); 32 MiB over the resting RSS is two orders of magnitude above
# that and far below the transfer size, so any buffering of the body shows.
hwm_bound=$((32 * 1024))
[ $((SIZE_MB * 1024 / 2)) -lt $hwm_bound ] && hwm_bound=$((SIZE_MB * 1024 / 2))
if [ -n "$hwm" ] && [ -n "$rss0" ] && [ $((hwm - rss0)) -lt $hwm_bound ]; then
    ok "5c. nbproxy's peak RSS grew by $(( (hwm - rss0) / 1024 )) MiB during ${SIZE_MB} MiB each way (bound $((hwm_bound / 1024)) MiB)"
else
    bad "5c. nbproxy's peak RSS grew by $(( (${hwm:-0} - ${rss0:-0}) / 1024 )) MiB (bound $((hwm_bound / 1024)) MiB)"
fi
want5t=$(node "$here/node/server.js" pattern $TUN_MB | sha256sum | cut -c1-64)
got5t=$(curl -sS --max-time 120 -H 'Host: web.test' "$P/big/t5d?mb=$TUN_MB" | sha256sum | cut -c1-64)
expect_log /big/t5d GET 200 web.test 0 $((TUN_MB * 1048576)) 127.0.0.1 - -
[ "$got5t" = "$want5t" ] && ok "5d. ${TUN_MB} MiB download through the tunnel byte-identical" ||
    bad "5d. ${TUN_MB} MiB tunnel download: sha $got5t != $want5t"
got5c=$(curl -sS --max-time 120 -H 'Host: web.test' "$P/big/t5e?mb=$TUN_MB&chunked=1" | sha256sum | cut -c1-64)
expect_log /big/t5e GET 200 web.test 0 $((TUN_MB * 1048576)) 127.0.0.1 - -
[ "$got5c" = "$want5t" ] && ok "5e. ${TUN_MB} MiB chunked download through the tunnel byte-identical" ||
    bad "5e. ${TUN_MB} MiB chunked tunnel download: sha $got5c != $want5t"
head -c $((TUN_MB * 1024 * 1024)) "$work/www/big.bin" > "$work/up5.bin"
curl -sS --max-time 120 -o "$work/t5f.json" -H 'Host: web.test' -T "$work/up5.bin" "$P/echo/t5f"
expect_log /echo/t5f PUT 200 web.test $((TUN_MB * 1048576)) + 127.0.0.1 - -
check "5f. ${TUN_MB} MiB upload through the tunnel byte-identical" \
    "$(jc hdrs "$work/t5f.json" sha256="$(sha "$work/up5.bin")" bytes=$((TUN_MB * 1048576)))"
rm -f "$work/up5.bin"

# ---- 6. a client that stops reading: memory stays bounded, the backend is held back ----
stall_check() { # id host stats-command
    local id=$1 host=$2 statcmd=$3
    local r0 rmax=0 b3 b5 r
    r0=$(vm VmRSS)
    python3 "$here/httpraw.py" stall 127.0.0.1 $PORT "$host" "/big/$id?mb=1024&tag=$id" 30 > /dev/null 2>&1 &
    local sp=$!
    pids+=("$sp")
    for s in $(seq 10); do
        sleep 0.5
        r=$(vm VmRSS)
        [ "${r:-0}" -gt $rmax ] && rmax=$r
        [ $s = 6 ] && b3=$($statcmd | python3 -c "import json,sys; print(json.load(sys.stdin)['big'].get('$id', 0))")
    done
    b5=$($statcmd | python3 -c "import json,sys; print(json.load(sys.stdin)['big'].get('$id', 0))")
    kill $sp 2>/dev/null; wait $sp 2>/dev/null
    log "$id: RSS ${r0} kB -> max ${rmax} kB; backend had written $((b3 / 1048576)) MiB at 3 s, $((b5 / 1048576)) MiB at 5 s" >&2
    if [ $((rmax - r0)) -lt 16384 ] && [ "$b5" -lt $((64 * 1048576)) ] && [ $((b5 - b3)) -le 1048576 ]; then
        echo ""
    else
        echo "RSS grew $(( (rmax - r0) / 1024 )) MiB (bound 16), backend wrote $b3 -> $b5 bytes (want < 64 MiB and stalled)"
    fi
}
check "6a. stalled reader on a directUpstream download: RSS +<16 MiB, backend stalled under 64 MiB" \
    "$(stall_check t6a direct.test host_stats)"
check "6b. stalled reader through the tunnel: the same" "$(stall_check t6b web.test ns_stats)"
# Both end when the client goes away; nbproxy logs them (status 200, bytes vary).
expect_log /big/t6a GET 200 direct.test 0 + 127.0.0.1 - -
expect_log /big/t6b GET 200 web.test 0 + 127.0.0.1 - -

# ---- 7. upstream reset mid-body ----
reset_check() { # path host
    local rc sz
    sz=$(curl -sS --max-time 10 -o /dev/null -w '%{size_download}' -H "Host: $2" "$P$1" 2> /dev/null)
    rc=$?
    if { [ $rc = 18 ] || [ $rc = 56 ]; } && [ "$sz" -lt 1048576 ]; then echo ""; else echo "curl exit $rc after $sz bytes (want 18 or 56, < 1 MiB)"; fi
}
check "7a. backend reset mid-body (Content-Length) through the tunnel: client sees a truncated response" \
    "$(reset_check /reset/t7a web.test)"
check "7b. backend reset mid-body (chunked) through the tunnel: truncated, no final chunk" \
    "$(reset_check '/reset/t7b?chunked=1' web.test)"
check "7c. backend reset mid-body (Content-Length), directUpstream: truncated" \
    "$(reset_check /reset/t7c direct.test)"
check "7d. backend reset mid-body (chunked), directUpstream: truncated" \
    "$(reset_check '/reset/t7d?chunked=1' direct.test)"
for p in t7a t7b t7c t7d; do
    h=web.test; [ $p = t7c ] || [ $p = t7d ] && h=direct.test
    expect_log /reset/$p GET 200 $h 0 - 127.0.0.1 - -
done
code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H 'Host: web.test' $P/echo/t7e)
expect_log /echo/t7e GET 200 web.test 0 + 127.0.0.1 - -
[ "$code" = 200 ] && ok "7e. nbproxy keeps serving after the resets" || bad "7e. after the resets: status $code"

# ---- 8. error pages ----
# The page's data as spec §4.9 gives it: code, title, a request id, destination false, and for
# upstream failures proxy true; the status and Content-Type on the wire; the time it took.
page_check() { # id host path want-code want-title [max-seconds]
    local id=$1 code ctype t0 t1 d
    t0=$(date +%s.%N)
    read -r code ctype < <(curl -sS --max-time 20 -o "$work/$id.html" -w '%{http_code} %{content_type}\n' -H "Host: $2" "$P$3")
    t1=$(date +%s.%N)
    d=$(jc page "$work/$id.html")
    echo "$d" > "$work/$id.data"
    jc get "$work/$id.data" "('' if d.get('page') == 'error' and d['error']['code'] == $4 and
        d['error']['title'] == '$5' and len(d['error'].get('requestId', '')) >= 16 and
        d['error']['destination'] is False and ($4 == 404 or d['error']['proxy'] is True) and
        '$code' == '$4' and '$ctype'.startswith('text/html') and
        $(python3 -c "print(round($t1 - $t0, 2))") <= ${6:-5}
        else 'status $code, $ctype, after $(python3 -c "print(round($t1 - $t0, 2))") s, data %s' % d)"
}
rid() { jc get "$work/$1.data" "d['error']['requestId']" 2>/dev/null; }
check "8a. unknown Host: 404 page, __DATA__ page=error code=404 \"Service Not Found\", a requestId" \
    "$(page_check t8a nobody.test /x/t8a 404 'Service Not Found')"
expect_log /x/t8a GET 404 nobody.test 0 + 127.0.0.1 "$(rid t8a)" -
code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H 'Host: paths.test' $P/echo/t8b-ok)
expect_log /echo/t8b-ok GET 200 paths.test 0 + 127.0.0.1 - -
check "8b. known Host, no matching path: 404 \"Service Not Found\" (the /echo path still works: $code)" \
    "$(page_check t8b paths.test /other/t8b 404 'Service Not Found')$([ "$code" = 200 ] || echo " /echo gave $code")"
expect_log /other/t8b GET 404 paths.test 0 + 127.0.0.1 "$(rid t8b)" -
check "8c. refused port through the tunnel: 502 \"Service Unavailable\"" \
    "$(page_check t8c refused.test /x/t8c 502 'Service Unavailable')"
expect_log /x/t8c GET 502 refused.test 0 + 127.0.0.1 "$(rid t8c)" -
check "8d. refused port, directUpstream: 502 \"Service Unavailable\"" \
    "$(page_check t8d refused-direct.test /x/t8d 502 'Service Unavailable')"
expect_log /x/t8d GET 502 refused-direct.test 0 + 127.0.0.1 "$(rid t8d)" -
check "8e. tunnel address nobody answers, requestTimeout 1s: 504 \"Request Timeout\" within 4 s" \
    "$(page_check t8e blackhole.test /x/t8e 504 'Request Timeout' 4)"
expect_log /x/t8e GET 504 blackhole.test 0 + 127.0.0.1 "$(rid t8e)" 900

# A client that leaves while the backend is still working: Go's server notices the close and
# cancels the upstream request (spec §4.9 "Request Canceled"); the backend must see its
# connection go away long before it would have answered (3 s).
curl -s --max-time 1 -o /dev/null -H 'Host: direct.test' "$P/slow/t8f?ms=3000&tag=t8f"
sleep 0.8
gone=$(host_stats | python3 -c "import json,sys; print(json.load(sys.stdin)['gone'].get('t8f', 'still waiting'))")
[ "$gone" = abandoned ] &&
    ok "8f. client gone before the response: nbproxy abandoned the upstream request" ||
    bad "8f. client left after 1 s; 1.8 s after the request the backend's request is: $gone (want abandoned)"
expect_log /slow/t8f GET - direct.test 0 - 127.0.0.1 - -

# ---- 9. rewriteRedirects ----
loc=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: redir.test:18480' $P/redirect/t9a)
expect_log /redirect/t9a GET 302 redir.test 0 12 127.0.0.1 - -
[ "$loc" = "302 http://redir.test:18480/landed" ] &&
    ok "9a. rewriteRedirects: Location to the backend's own authority comes back with the client's Host" ||
    bad "9a. rewriteRedirects: got \"$loc\" (want \"302 http://redir.test:18480/landed\")"
loc=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: web.test' $P/redirect/t9b)
expect_log /redirect/t9b GET 302 web.test 0 12 127.0.0.1 - -
[ "$loc" = "302 http://$T.2:8000/landed" ] && ok "9b. without rewriteRedirects the Location is untouched" ||
    bad "9b. without rewriteRedirects: got \"$loc\""

# ---- 10. keep-alive, pipelining, upstream reuse ----
s0=$(ns_stats)
nc=$(curl -sS --max-time 20 -H 'Host: web.test' -w '%{num_connects} ' \
    -o /dev/null $P/echo/t10a-1 -o /dev/null $P/echo/t10a-2 -o /dev/null $P/echo/t10a-3 -o /dev/null $P/echo/t10a-4)
s1=$(ns_stats)
for i in 1 2 3 4; do expect_log /echo/t10a-$i GET 200 web.test 0 + 127.0.0.1 - -; done
[ "$nc" = "1 0 0 0 " ] && ok "10a. four requests on one client connection (num_connects 1 0 0 0)" ||
    bad "10a. curl num_connects: \"$nc\""
d=$(python3 -c "
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
k = '$T.1'
print(b['conns'].get(k, 0) - a['conns'].get(k, 0), b['reqs'].get(k, 0) - a['reqs'].get(k, 0))" "$s0" "$s1")
read -r dconn dreq <<< "$d"
[ "$dreq" = 4 ] && [ "$dconn" -le 1 ] &&
    ok "10b. nbproxy reused its upstream connection: backend saw $dreq requests on $dconn new connections" ||
    bad "10b. upstream reuse: backend saw $dreq requests on $dconn new connections (want 4 on <= 1)"
raw pipeline 127.0.0.1 $PORT web.test /echo/t10c-1 /echo/t10c-2 /echo/t10c-3 > "$work/t10c.txt" 2>&1
for i in 1 2 3; do expect_log /echo/t10c-$i GET 200 web.test 0 + 127.0.0.1 - -; done
want='{"status": 200, "url": "/echo/t10c-1"};{"status": 200, "url": "/echo/t10c-2"};{"status": 200, "url": "/echo/t10c-3"};'
[ "$(tr '\n' ';' < "$work/t10c.txt")" = "$want" ] &&
    ok "10c. three pipelined requests in one write: three responses, in order" ||
    bad "10c. pipelining: $(tr '\n' ';' < "$work/t10c.txt" | head -c 400)"

# Responses with an empty body (Content-Length: 0, 204, 304) end at once: the next request on
# the same client connection is answered.
raw pipeline 127.0.0.1 $PORT web.test '/status/t10d-1?code=200&len=0' '/status/t10d-2?code=404&len=0' \
    '/status/t10d-3?code=204' '/status/t10d-4?code=304' /echo/t10d-5 > "$work/t10d.txt" 2>&1
want='{"status": 200, "url": null};{"status": 404, "url": null};{"status": 204, "url": null};{"status": 304, "url": null};{"status": 200, "url": "/echo/t10d-5"};'
[ "$(tr '\n' ';' < "$work/t10d.txt")" = "$want" ] &&
    ok "10d. empty-body responses (Content-Length: 0, 204, 304) complete: the next request is answered" ||
    bad "10d. empty-body responses then /echo on one connection: $(tr '\n' ';' < "$work/t10d.txt" | head -c 400)"
# Log expectations for what was answered (an unanswered request is this check's failure, not 12's).
python3 -c "
import json, sys
names = ['/status/t10d-1', '/status/t10d-2', '/status/t10d-3', '/status/t10d-4', '/echo/t10d-5']
for name, line in zip(names, open(sys.argv[1])):
    r = json.loads(line)
    if r.get('status'):
        print('\t'.join([name, 'GET', str(r['status']), 'web.test', '0', '+' if name.startswith('/echo') else '0', '127.0.0.1', '-', '-']))
" "$work/t10d.txt" >> "$work/expect.tsv"
# Whatever the outcome, let the backend drop nbproxy's idle upstream connections, so that an
# exchange left waiting on one ends now and cannot hold up the drain in 14.
ip netns exec $NS curl -sS --max-time 5 -o /dev/null http://$T.2:8000/dropidle

# ---- 11. --private: the account's own Hosts on port 80 of its tunnel address ----
ip netns exec $NS curl -sS --max-time 10 --interface $T.4 -o "$work/t11a.json" -w '%{http_code}' \
    -H 'Host: web.test' http://$T.1/echo/t11a > "$work/t11a.code" 2>&1
expect_log /echo/t11a GET 200 web.test 0 + $T.4 - -
check "11a. a peer reaches web.test on http://$T.1/ (the tunnel listener); the backend saw it as the client" \
    "$([ "$(cat "$work/t11a.code")" = 200 ] || echo "status $(cat "$work/t11a.code")")$(jc hdrs "$work/t11a.json" \
        x-forwarded-for=$T.4 x-real-ip=$T.4 x-forwarded-host=web.test host=$T.2:8000 url=/echo/t11a)"
code=$(ip netns exec $NS curl -sS --max-time 10 --interface $T.4 -o "$work/t11b.html" -w '%{http_code}' \
    -H 'Host: other.test' http://$T.1/echo/t11b)
expect_log /echo/t11b GET 404 other.test 0 + $T.4 - -
[ "$code" = 404 ] && grep -q 'Service Not Found' "$work/t11b.html" &&
    ok "11b. another account's Host on this account's tunnel listener: 404" ||
    bad "11b. other.test on web's tunnel listener: status $code"
code=$(ip netns exec $NS curl -sS --max-time 10 --interface $T.2 -o "$work/t11c.html" -w '%{http_code}' \
    -H 'Host: web.test' http://$T.1/echo/t11c)
expect_log /echo/t11c GET 421 web.test 0 + $T.2 - -
[ "$code" = 421 ] && [ "$(jc page "$work/t11c.html" | python3 -c 'import json,sys; print(json.load(sys.stdin)["error"]["title"])' 2>/dev/null)" = "Loop Detected" ] &&
    ok "11c. a peer asking for a target at its own address: 421 \"Loop Detected\"" ||
    bad "11c. loop guard: status $code"

# ---- 13. the half-head client is cut after ReadHeaderTimeout (10 s) ----
wait $slow_pid 2>/dev/null
closed=$(jc get "$work/slowhead.json" "d['closed_after']")
if python3 -c "import sys; sys.exit(0 if 9.0 <= float('$closed') <= 13.0 else 1)" 2>/dev/null; then
    ok "13b. half a request head: disconnected after $closed s (ReadHeaderTimeout 10 s)"
else
    bad "13b. half a request head: $(cat "$work/slowhead.json") (want closed after 9..13 s)"
fi

# ---- 14. SIGTERM while a slow request is in flight ----
curl -sS --max-time 20 -o "$work/t14.body" -w '%{http_code}' -H 'Host: web.test' "$P/slow/t14?ms=1500" \
    > "$work/t14.code" 2> "$work/t14.err" &
cp=$!
pids+=("$cp")
node "$here/node/client.js" wshold ws://127.0.0.1:$PORT/ws/t14 web.test > "$work/t14ws.json" 2> "$work/t14ws.err" &
wp=$!
pids+=("$wp")
for _ in $(seq 100); do grep -q echoed "$work/t14ws.err" && break; sleep 0.05; done
sleep 0.3
ss -tanp > "$work/ss-at-sigterm.txt" 2>&1
kill -TERM $pp
ts=$(date +%s.%N)
sleep 0.3
late=$(curl -s --max-time 3 -o /dev/null -w '%{http_code}' -H 'Host: web.test' $P/echo/t14-late)
wait $cp
expect_log /slow/t14 GET 200 web.test 0 10 127.0.0.1 - 1400
[ "$(cat "$work/t14.code")" = 200 ] && [ "$(cat "$work/t14.body")" = "slow done" ] &&
    ok "14a. the request in flight at SIGTERM completed (200, full body)" ||
    bad "14a. in-flight request: status $(cat "$work/t14.code"), body \"$(head -c 100 "$work/t14.body")\" $(cat "$work/t14.err")"
[ "$late" != 200 ] && ok "14b. a new request during the drain is not served (got \"$late\")" ||
    bad "14b. a new request during the drain was served"
wait $wp
expect_log /ws/t14 GET 101 web.test + + 127.0.0.1 - -
check "14d. an open WebSocket is closed at SIGTERM, within 2 s (not held for the drain)" \
    "$(jc get "$work/t14ws.json" "'' if d.get('echoed') and d.get('closedAt', 0) / 1000 - $ts <= 2 else 'got %s' % d")"
rc=timeout
for _ in $(seq 200); do
    kill -0 $pp 2>/dev/null || { wait $pp; rc=$?; break; }
    sleep 0.05
done
te=$(date +%s.%N)
[ "$rc" = 0 ] && ok "14c. nbproxy exited 0 after draining ($(python3 -c "print(round($te - $ts, 1))") s after SIGTERM)" ||
    bad "14c. nbproxy exit status after SIGTERM: $rc"
kill -0 $pp 2>/dev/null && kill $pp

# ---- 12. the access log (complete now that nbproxy has exited) ----
# (/echo/t11b asked web's tunnel listener for another account's Host: out of scope, it is an
# unknown host there, and whether its record names the other account is not asserted.)
check "12a. access log: one JSON record per request above, all fields, host without port, right values" \
    "$(jc alog "$work/access.log" "$work/expect.tsv" web.test=web/svc-web pass.test=web/svc-pass \
        redir.test=web/svc-redir paths.test=web/svc-paths direct.test=web/svc-direct \
        nginx.test=web/svc-nginx refused.test=web/svc-refused \
        refused-direct.test=web/svc-refused-direct blackhole.test=web/svc-blackhole \
        other.test=other/svc-other anyids=/echo/t11b)"
wsrec=$(python3 -c "
import json
for l in open('$work/access.log'):
    r = json.loads(l)
    if r.get('path') == '/ws/t3':
        print(r['bytesUpload'] >= $ws_bytes and r['bytesDownload'] >= $ws_bytes)" 2>/dev/null)
[ "$wsrec" = True ] && ok "12b. the WebSocket record counts at least the ${ws_bytes} payload bytes each way" ||
    bad "12b. WebSocket record bytes: $wsrec"
if grep -q 'ERROR: AddressSanitizer\|runtime error:' "$work/nbproxy.log"; then
    bad "sanitizer report in nbproxy's log: $(grep -m1 -A3 'AddressSanitizer\|runtime error:' "$work/nbproxy.log")"
fi

log "ran in $(( $(date +%s) - t_start )) s"
log "$pass passed, $fail failed"
[ $fail = 0 ]
