#!/usr/bin/env bash
# Access restrictions (spec/proxy.md §4.6, §3.7, §3.8, §8.3) end to end, standalone: curl (HTTP),
# Python sockets (TCP and UDP clients, a TCP echo backend that records every connection it
# accepts), Python's http.server (HTTP backend), wireguard-go in a namespace with a Python UDP
# echo behind it, and MaxMind's GeoIP2-City-Test.mmdb (from Debian's libmaxminddb source:
# scripts/fetch-geo-testdata.sh) read by the real libmaxminddb. Needs root (netns, veth,
# bridge); every address is 127.0.0.1 or inside 10.99.80.0/24 on interfaces this script creates;
# ports 18800-18829; every process is stopped by PID.
#
#   root ns:  bridge nbrs-br 10.99.80.1/25; nbproxy --config ... --http-addr 127.0.0.1:18800
#             --trusted-proxies 127.0.0.1 --geo-data-dir geo/ (the test DB as GeoLite2-City_*)
#             account "r": WireGuard UDP 18808, tunnel 10.99.80.129/25, peer = the namespace
#   ns nbrs-peer: veth 10.99.80.2/25, wireguard-go nbrs-wg (UDP 18809), tunnel 10.99.80.130/25,
#             udpecho.py on 10.99.80.130:7000
#   backends: httpd.py 127.0.0.1:18806, TCP echo 127.0.0.1:18807 (directUpstream targets)
#
# Checks: 1 HTTP allow-list 127.0.0.0/8 -> 200; 2 block-list 127.0.0.1/32 -> 403 with Go's
# http.Error body "Forbidden\n", text/plain; charset=utf-8, nosniff, and the backend never sees
# it; 3 /__netbird__/ assets are served before restrictions; 4 countries through
# X-Forwarded-For from a trusted peer: GB allowed, SE and an unknown address denied
# (country_restricted); 5 CrowdSec enforce -> 403 crowdsec_unavailable, observe -> 200; 6 TCP
# allowed relays, denied closes without a dial (backend count unchanged); 7 UDP allowed echoes,
# denied gets no answer and creates no session; 8 access-log records carry the verdicts (HTTP
# per request; L4 deny records rate-limited to one per service and verdict); 9 /metrics
# nbproxy_access_denied_total; 10 NB_PROXY_DISABLE_GEOLOCATION -> geo_unavailable; 11 a broken
# GeoLite2-City_*.mmdb stops start-up; 12 an invalid CIDR in the file is a config error.
# NBT_KEEP=1 keeps the work directory.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
work=$(mktemp -d /tmp/nbt-restrict.XXXXXX)
NS=nbrs-peer
BR=nbrs-br
IF=nbrs-wg
U=10.99.80   # underlay 10.99.80.0/25, tunnel 10.99.80.128/25
HTTP=18800
HEALTH=127.0.0.1:18801
P_TCP_OK=18802
P_TCP_NO=18803
P_UDP_OK=18804
P_UDP_NO=18805
BE_HTTP=18806
BE_TCP=18807
WG_SELF=18808
WG_PEER=18809
HTTP2=18810
HEALTH2=127.0.0.1:18811
pids=()
pass=0
fail=0

log() { printf '[restrict] %s\n' "$*"; }
ok() { pass=$((pass + 1)); log "PASS: $*"; }
bad() { fail=$((fail + 1)); log "FAIL: $*"; }
expect() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: expected [$2], got [$(echo "$3" | head -c 400 | tr '\n' ';')]"; fi; }

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    ip netns del $NS 2>/dev/null
    ip link del $BR 2>/dev/null
    ip link del nbrs-br0 2>/dev/null
    rm -f /var/run/wireguard/$IF.sock
    [ "${NBT_KEEP:-0}" = 1 ] && log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { log "missing $1 (scripts/install-deps.sh --test)"; exit 2; }; }
need wireguard-go; need wg; need ip; need curl; need python3; need mmdblookup
[ -x "$bin" ] || { log "no binary at $bin"; exit 2; }
geodb="$top/.deps/maxmind-test-data/GeoIP2-City-Test.mmdb"
[ -f "$geodb" ] || "$top/scripts/fetch-geo-testdata.sh" >/dev/null ||
    { log "no MaxMind test database (scripts/fetch-geo-testdata.sh)"; exit 2; }
for p in $HTTP 18801 $P_TCP_OK $P_TCP_NO $BE_HTTP $BE_TCP $HTTP2 18811; do
    (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null && { log "port $p is busy"; exit 2; }
done

rc() { python3 "$here/restrictcheck.py" "$@"; }
uc() { python3 "$here/udpcheck.py" "$@"; }
metrics() { curl -sS --max-time 5 "http://$HEALTH/metrics"; }
metric() { metrics | awk -v k="$1" '$1 == k {print $2}'; }
# get HOST PATH [curl args...] -> "code|content-type|nosniff|body" (body with \n as ~)
get() {
    local h=$1 p=$2
    shift 2
    curl -sS --max-time 5 -o "$work/body" -D "$work/hdrs" -H "Host: $h" "$@" \
        "http://127.0.0.1:$HTTP$p" > /dev/null 2>"$work/curl.err" || { echo "curl: $(cat "$work/curl.err")"; return; }
    local code ct ns
    code=$(awk 'NR == 1 {print $2}' "$work/hdrs")
    ct=$(awk -F': ' 'tolower($1) == "content-type" {print $2}' "$work/hdrs" | tr -d '\r')
    ns=$(awk -F': ' 'tolower($1) == "x-content-type-options" {print $2}' "$work/hdrs" | tr -d '\r')
    echo "$code|$ct|$ns|$(tr '\n' '~' < "$work/body")"
}

# ---- topology: wireguard-go peer with a UDP echo (udp targets live in an account's network) ----
ip netns del $NS 2>/dev/null; ip link del $BR 2>/dev/null; ip link del nbrs-br0 2>/dev/null
for _ in $(seq 50); do ip link show nbrs-br0 > /dev/null 2>&1 || break; sleep 0.1; done
{ ip link add $BR type bridge && ip addr add $U.1/25 dev $BR && ip link set $BR up &&
    ip netns add $NS &&
    ip link add nbrs-br0 type veth peer name nbrs-eth netns $NS &&
    ip link set nbrs-br0 master $BR up &&
    ip -n $NS addr add $U.2/25 dev nbrs-eth &&
    ip -n $NS link set nbrs-eth up &&
    ip -n $NS link set lo up; } || { log "cannot build the test network"; exit 2; }
umask 077
for k in peer self; do wg genkey > "$work/$k.key"; wg pubkey < "$work/$k.key" > "$work/$k.pub"; done
umask 022
LOG_LEVEL=error ip netns exec $NS wireguard-go -f $IF > "$work/wggo.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S /var/run/wireguard/$IF.sock ] && break; sleep 0.05; done
ip netns exec $NS wg set $IF private-key "$work/peer.key" listen-port $WG_PEER \
    peer "$(cat "$work/self.pub")" allowed-ips $U.129/32
ip -n $NS addr add $U.130/25 dev $IF
ip -n $NS link set $IF mtu 1280 up
: > "$work/echo.log"
ip netns exec $NS python3 "$here/udpecho.py" $U.130 7000 "$work/echo.log" > "$work/echo.out" 2>&1 &
pids+=($!)

# ---- backends ----
mkdir -p "$work/www" "$work/geo"
echo "hello from the backend" > "$work/www/index.txt"
python3 "$here/httpd.py" 127.0.0.1 $BE_HTTP "$work/www" > "$work/httpd.log" 2>&1 &
pids+=($!)
: > "$work/tcp.conns"
python3 "$here/restrictcheck.py" tcpbackend $BE_TCP "$work/tcp.conns" > "$work/tcpbe.log" 2>&1 &
pids+=($!)
cp "$geodb" "$work/geo/GeoLite2-City_20250101.mmdb"

# ---- nbproxy ----
http_map() { # id domain restrictions-json
    printf '{ "id": "%s", "accountId": "r", "domain": "%s", "accessRestrictions": %s,
      "path": [{ "path": "/", "target": "http://127.0.0.1:%s/",
                 "options": { "directUpstream": true } }] }' "$1" "$2" "$3" $BE_HTTP
}
write_config() { # file
    cat > "$1" <<JSON
{
  "accounts": [
    { "id": "r", "wireguard": { "privateKey": "$(cat "$work/self.key")", "listenPort": $WG_SELF,
      "addresses": ["$U.129/25"],
      "peers": [{ "publicKey": "$(cat "$work/peer.pub")", "endpoint": "$U.2:$WG_PEER",
                  "allowedIps": ["$U.130/32"], "persistentKeepalive": 25 }] } }
  ],
  "mappings": [
    $(http_map svc-open open.test null),
    $(http_map svc-allow allow.test '{ "allowedCidrs": ["127.0.0.0/8"] }'),
    $(http_map svc-block block.test '{ "blockedCidrs": ["10.0.0.0/8", "127.0.0.1/32"] }'),
    $(http_map svc-cc cc.test '{ "allowedCountries": ["gb", "NO"] }'),
    $(http_map svc-cs-enforce enforce.test '{ "crowdsecMode": "enforce" }'),
    $(http_map svc-cs-observe observe.test '{ "crowdsecMode": "observe" }'),
    { "id": "svc-tcp-ok", "accountId": "r", "mode": "tcp", "listenPort": $P_TCP_OK,
      "domain": "tcp-ok.test", "accessRestrictions": { "allowedCidrs": ["127.0.0.0/8"] },
      "path": [{ "target": "127.0.0.1:$BE_TCP", "options": { "directUpstream": true } }] },
    { "id": "svc-tcp-no", "accountId": "r", "mode": "tcp", "listenPort": $P_TCP_NO,
      "domain": "tcp-no.test", "accessRestrictions": { "blockedCidrs": ["127.0.0.0/8"] },
      "path": [{ "target": "127.0.0.1:$BE_TCP", "options": { "directUpstream": true } }] },
    { "id": "svc-udp-ok", "accountId": "r", "mode": "udp", "listenPort": $P_UDP_OK,
      "domain": "udp-ok.test", "accessRestrictions": { "allowedCidrs": ["127.0.0.1/32"] },
      "path": [{ "target": "$U.130:7000" }] },
    { "id": "svc-udp-no", "accountId": "r", "mode": "udp", "listenPort": $P_UDP_NO,
      "domain": "udp-no.test", "accessRestrictions": { "allowedCidrs": ["10.99.80.0/24"] },
      "path": [{ "target": "$U.130:7000" }] }
  ]
}
JSON
}
write_config "$work/nbproxy.json"
"$bin" --config "$work/nbproxy.json" --http-addr 127.0.0.1:$HTTP --health-addr $HEALTH \
    --trusted-proxies 127.0.0.1 --geo-data-dir "$work/geo" --access-log "$work/access.log" \
    --log-level debug > "$work/nbproxy.log" 2>&1 &
pp=$!
pids+=("$pp")
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$BE_HTTP) 2>/dev/null && break; sleep 0.05; done
for _ in $(seq 100); do metrics > /dev/null 2>&1 && break; sleep 0.05; done
metrics > /dev/null 2>&1 || { bad "nbproxy did not start: $(tail -5 "$work/nbproxy.log")"; log "$pass passed, $fail failed"; exit 1; }
grep -q "geolocation: $work/geo/GeoLite2-City_20250101.mmdb" "$work/nbproxy.log" &&
    ok "0. the GeoLite2-City_*.mmdb of --geo-data-dir is opened" ||
    bad "0. geolocation database not opened: $(grep -i geo "$work/nbproxy.log" | head -3)"

# ---- 1-3. CIDR rules on HTTP ----
expect "1a. no restrictions: 200" "200|text/plain||hello from the backend~" "$(get open.test /index.txt)"
expect "1b. allow-list 127.0.0.0/8 admits 127.0.0.1: 200" "200|text/plain||hello from the backend~" \
    "$(get allow.test /index.txt)"
reqs_before=$(grep -c 'GET /index.txt' "$work/httpd.log")
expect "2a. block-list 127.0.0.1/32: 403, Go's http.Error (body, type, nosniff)" \
    "403|text/plain; charset=utf-8|nosniff|Forbidden~" "$(get block.test /index.txt)"
expect "2b. a denied request never reaches the backend" "$reqs_before" "$(grep -c 'GET /index.txt' "$work/httpd.log")"
expect "2c. HEAD denied too, no body" "403" "$(curl -sS -I -o /dev/null -w '%{http_code}' -H 'Host: block.test' http://127.0.0.1:$HTTP/)"
expect "3. /__netbird__/ assets answer before restrictions (404 not found, not 403)" \
    "404|text/plain; charset=utf-8||not found~" "$(get block.test /__netbird__/nothing.js)"

# ---- 4. countries: the client IP comes from X-Forwarded-For (127.0.0.1 is a trusted proxy) ----
cc() { mmdblookup -f "$geodb" -i "$1" country iso_code 2>/dev/null | awk -F'"' 'NF > 2 {print $2}'; }
expect "4. mmdblookup (libmaxminddb's own tool) reads GB, NO, SE and nothing for the addresses used" \
    "GB NO SE -" "$(cc 81.2.69.142) $(cc 2a02:cf40::1) $(cc 89.160.20.112) $(c=$(cc 1.1.1.1); echo "${c:--}")"
expect "4a. X-Forwarded-For 81.2.69.142 (GB in the test DB), allow-list gb,NO: 200" \
    "200|text/plain||hello from the backend~" "$(get cc.test /index.txt -H 'X-Forwarded-For: 81.2.69.142')"
expect "4b. 2a02:cf40::1 (NO), IPv6 client: 200" \
    "200|text/plain||hello from the backend~" "$(get cc.test /index.txt -H 'X-Forwarded-For: 2a02:cf40::1')"
expect "4c. 89.160.20.112 (SE): 403" "403|text/plain; charset=utf-8|nosniff|Forbidden~" \
    "$(get cc.test /index.txt -H 'X-Forwarded-For: 89.160.20.112')"
expect "4d. 1.1.1.1 (not in the DB) with an allow-list: 403" "403|text/plain; charset=utf-8|nosniff|Forbidden~" \
    "$(get cc.test /index.txt -H 'X-Forwarded-For: 1.1.1.1')"
expect "4e. 127.0.0.1 itself (no country): 403" "403|text/plain; charset=utf-8|nosniff|Forbidden~" \
    "$(get cc.test /index.txt)"

# ---- 5. CrowdSec without a bouncer ----
expect "5a. crowdsecMode enforce: 403 (fail closed)" "403|text/plain; charset=utf-8|nosniff|Forbidden~" \
    "$(get enforce.test /index.txt)"
expect "5b. crowdsecMode observe: 200" "200|text/plain||hello from the backend~" "$(get observe.test /index.txt)"

# ---- 6. TCP ----
expect "6a. tcp allow-list 127.0.0.0/8: relayed (echo)" "echo" "$(rc tcpprobe $P_TCP_OK)"
n_conns=$(wc -l < "$work/tcp.conns")
expect "6b. tcp block-list 127.0.0.0/8: closed, nothing comes back" "closed" "$(rc tcpprobe $P_TCP_NO)"
r6=$(rc tcpprobe $P_TCP_NO; rc tcpprobe $P_TCP_NO)
expect "6c. again twice: closed" "closed;closed" "$(echo "$r6" | tr '\n' ';' | sed 's/;$//')"
sleep 0.3
expect "6d. the backend accepted only the allowed connection" "1 1" "$n_conns $(wc -l < "$work/tcp.conns")"

# ---- 7. UDP ----
expect "7a. udp allow-list 127.0.0.1/32: echoed through the tunnel" "ok" "$(uc echo $P_UDP_OK 16 100 1000)"
lines_before=$(wc -l < "$work/echo.log")
r7=$(uc noecho $P_UDP_NO 100; uc noecho $P_UDP_NO 200; uc noecho $P_UDP_NO 300)
expect "7b. udp allow-list 10.99.80.0/24: three client ports get no answer" "ok;ok;ok" "$(echo "$r7" | tr '\n' ';' | sed 's/;$//')"
expect "7c. no denied datagram reached the server" "$lines_before" "$(wc -l < "$work/echo.log")"

# ---- 8. access log ----
kill -TERM "$pp"
wait "$pp" 2>/dev/null
code=$?
pids=("${pids[@]/$pp}")
expect "8a. nbproxy exits 0 on SIGTERM" 0 "$code"
rc alog "$work/access.log" > "$work/alog.txt" 2>&1
al() { grep "^$1 $2 " "$work/alog.txt" | awk '{print $3, $4, $5, $6, $7, $8}' | sort | uniq -c | awk '{$1=$1; print}' | tr '\n' ';' | sed 's/;$//'; }
expect "8b. http allow: one record, no mechanism, 200" "1 - 200 0 23 127.0.0.1 true" "$(al http svc-allow)"
expect "8c. http block: ip_restricted, 403, auth_success false, client IP (GET and HEAD)" \
    "1 ip_restricted 403 0 0 127.0.0.1 false;1 ip_restricted 403 0 10 127.0.0.1 false" "$(al http svc-block)"
expect "8d. http countries: 2 allowed, 3 country_restricted with the forwarded client IPs" \
    "1 - 200 0 23 2a02:cf40::1 true;1 - 200 0 23 81.2.69.142 true;1 country_restricted 403 0 10 1.1.1.1 false;1 country_restricted 403 0 10 127.0.0.1 false;1 country_restricted 403 0 10 89.160.20.112 false" \
    "$(al http svc-cc)"
expect "8e. crowdsec enforce: crowdsec_unavailable" "1 crowdsec_unavailable 403 0 10 127.0.0.1 false" "$(al http svc-cs-enforce)"
expect "8f. tcp deny: one record (three denials, rate-limited), ip_restricted, no bytes" \
    "1 ip_restricted 0 0 0 127.0.0.1 false" "$(al tcp svc-tcp-no)"
expect "8g. udp deny: one record (three clients, rate-limited), ip_restricted, no bytes" \
    "1 ip_restricted 0 0 0 127.0.0.1 false" "$(al udp svc-udp-no)"
expect "8h. allowed tcp and udp sessions log without a mechanism" "- -" \
    "$(al tcp svc-tcp-ok | awk '{print $2}') $(al udp svc-udp-ok | awk '{print $2}')"

# ---- 9-12. second instance: metrics, no geo, broken DB, invalid CIDR ----
"$bin" --config "$work/nbproxy.json" --http-addr 127.0.0.1:$HTTP --health-addr $HEALTH \
    --trusted-proxies 127.0.0.1 --geo-data-dir "$work/geo" --log-level info > "$work/nbproxy2.log" 2>&1 &
pp=$!
pids+=("$pp")
for _ in $(seq 100); do metrics > /dev/null 2>&1 && break; sleep 0.05; done
get block.test /x > /dev/null
rc tcpprobe $P_TCP_NO > /dev/null
uc noecho $P_UDP_NO 10 > /dev/null
uc noecho $P_UDP_NO 10 > /dev/null
m=$(metrics)
mv() { echo "$m" | awk -v k="$1" '$1 == k {print $2}'; }
expect "9. /metrics nbproxy_access_denied_total by verdict and protocol" "1 1 2" \
    "$(mv 'nbproxy_access_denied_total{verdict="ip_restricted",protocol="http"}') $(mv 'nbproxy_access_denied_total{verdict="ip_restricted",protocol="tcp"}') $(mv 'nbproxy_access_denied_total{verdict="ip_restricted",protocol="udp"}')"
kill "$pp"; wait "$pp" 2>/dev/null; pids=("${pids[@]/$pp}")

NB_PROXY_DISABLE_GEOLOCATION=true "$bin" --config "$work/nbproxy.json" --http-addr 127.0.0.1:$HTTP \
    --health-addr $HEALTH --trusted-proxies 127.0.0.1 --geo-data-dir "$work/geo" \
    --access-log "$work/access3.log" > "$work/nbproxy3.log" 2>&1 &
pp=$!
pids+=("$pp")
for _ in $(seq 100); do metrics > /dev/null 2>&1 && break; sleep 0.05; done
r10=$(get cc.test /index.txt -H 'X-Forwarded-For: 81.2.69.142')
r10b=$(get allow.test /index.txt | cut -d'|' -f1)
kill -TERM "$pp"; wait "$pp" 2>/dev/null; pids=("${pids[@]/$pp}")
expect "10a. geolocation disabled: a country rule fails closed (403)" "403|text/plain; charset=utf-8|nosniff|Forbidden~" "$r10"
expect "10b. ... with auth_mechanism geo_unavailable; CIDR-only services still work" \
    "1 geo_unavailable 403 0 10 81.2.69.142 false;200" \
    "$(rc alog "$work/access3.log" > "$work/alog3.txt"; grep '^http svc-cc ' "$work/alog3.txt" | awk '{print 1, $3, $4, $5, $6, $7, $8}' | tr '\n' ';')$r10b"

echo "not a database" > "$work/geo/GeoLite2-City_20991231.mmdb"
timeout 10 "$bin" --config "$work/nbproxy.json" --http-addr 127.0.0.1:$HTTP2 --health-addr $HEALTH2 \
    --geo-data-dir "$work/geo" > "$work/nbproxy4.log" 2>&1
code=$?
expect "11. a broken GeoLite2-City_*.mmdb (the lexically last) stops start-up, naming the file" "1 yes" \
    "$code $(grep -q 'GeoLite2-City_20991231.mmdb' "$work/nbproxy4.log" && echo yes || tail -2 "$work/nbproxy4.log")"
rm -f "$work/geo/GeoLite2-City_20991231.mmdb"

sed 's|"blockedCidrs": \["10.0.0.0/8", "127.0.0.1/32"\]|"blockedCidrs": ["10.0.0.0/8", "127.0.0.1"]|' \
    "$work/nbproxy.json" > "$work/bad.json"
timeout 10 "$bin" --config "$work/bad.json" --http-addr 127.0.0.1:$HTTP2 --health-addr $HEALTH2 \
    --geo-data-dir "" > "$work/nbproxy5.log" 2>&1
code=$?
expect "12. a bare address in blockedCidrs is a config error naming the mapping" "1 yes" \
    "$code $(grep -q 'accessRestrictions: 1 CIDR' "$work/nbproxy5.log" && echo yes || tail -2 "$work/nbproxy5.log")"

san=$(grep -l 'AddressSanitizer\|runtime error:\|LeakSanitizer' "$work"/nbproxy*.log 2>/dev/null)
expect "13. no sanitizer report in any nbproxy log" "" "$san"

log "$pass passed, $fail failed"
[ "$fail" = 0 ]
