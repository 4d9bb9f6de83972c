#!/usr/bin/env bash
# HTTP/2 on the server side (http/h2.c) from the outside, against clients nobody here wrote:
# curl --http2, nghttp, h2load (Debian nghttp2-client) and Debian's python3-h2 (protocol
# probes, tests/interop/http2_probe.py). The front is the test-only harness
# tests/unit/http/h2_harness.c (TLS with a self-signed certificate, ALPN "h2","http/1.1",
# dispatch by the negotiated protocol, the real reverse proxy) until the main TLS listener
# wires HTTP/2 in; the upstream is a python3 http.server (tests/interop/http2_upstream.py).
# Only 127.0.0.1, ports 18550-18553; every process is stopped by PID.
#
# Checks (docs/testing.md): 1 h2 and http/1.1 by ALPN; 2 uploads with and without
# content-length (sha256 at the upstream), HEAD, trailers both ways, cookies joined,
# :authority as Host; 3 NBT_H2_MB (100) MB download with the harness's RSS bounded; 4 100
# parallel streams on one connection; 5 nghttp's view of SETTINGS; 6 h2load -n 20000 -c 10
# -m 10 all succeed; 7 malformed requests are stream errors (uppercase names, connection-
# specific fields, TE other than trailers, missing/misplaced pseudo-headers, content-length
# mismatch), CONNECT gets 405, a too-large header list 431, more streams than
# MAX_CONCURRENT_STREAMS are refused, an upstream cut mid-body resets only its stream, a client
# reset leaves the connection usable; 8 rapid reset, empty DATA and PING floods end in GOAWAY or
# stay bounded; 9 idle timeout GOAWAY; 10 SIGTERM drain: GOAWAY naming the request in flight,
# which completes, exit 0; 11 access-log records of h2 requests; 12 bytes per idle h2
# connection (printed, bounded loosely).
# The harness is found next to NBPROXY_BIN (build/nbproxy -> build/tests/unit/http/h2_harness)
# or given as H2_HARNESS.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
harness=${H2_HARNESS:-$(dirname "$bin")/tests/unit/http/h2_harness}
work=$(mktemp -d /tmp/nbt-h2.XXXXXX)
PORT=18550  # harness
UPORT=18551 # python upstream
IPORT=18552 # second harness: short idle timeout, then the drain test
SIZE_MB=${NBT_H2_MB:-100}
PY=/usr/bin/python3 # Debian's python3, where python3-h2 lives
U=https://localhost:$PORT
pids=()
pass=0
fail=0

log() { printf '[http2] %s\n' "$*"; }
ok() { pass=$((pass + 1)); log "PASS: $*"; }
bad() { fail=$((fail + 1)); log "FAIL: $*"; }
check() { if [ -z "$2" ]; then ok "$1"; else bad "$1: $(echo "$2" | head -c 600 | tr '\n' ';')"; fi; }

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    [ "${NBT_KEEP:-0}" = 1 ] && log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { log "missing $1 (scripts/install-deps.sh --test)"; exit 2; }; }
need curl; need nghttp; need h2load; need sha256sum
$PY -c 'import h2' 2>/dev/null || { log "missing python3-h2 (scripts/install-deps.sh --test)"; exit 2; }
[ -x "$harness" ] || { log "no harness at $harness"; exit 2; }
for p in $PORT $UPORT $IPORT; do
    (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null && { log "port $p is busy"; exit 2; }
done

wait_port() {
    for _ in $(seq 1 100); do
        (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

$PY "$here/http2_upstream.py" $UPORT & pids+=($!)
"$harness" $PORT $UPORT > "$work/harness.out" 2> "$work/harness.err" & hp=$!; pids+=($hp)
wait_port $UPORT && wait_port $PORT || { log "servers did not start"; exit 1; }
cr() { curl -sk --max-time 60 "$@"; }
rss() { awk '/VmRSS/{print $2}' /proc/$hp/status; } # kB
stat() { cr --http1.1 $U/__h2stats | awk -F= -v k="$1" '$1 == k {print $2}'; }

# 1 ALPN
v2=$(cr --http2 -o "$work/hello" -w '%{http_version} %{http_code}' $U/hello)
check "GET over h2" "$([ "$v2" = "2 200" ] && [ "$(cat "$work/hello")" = hello ] || echo "$v2")"
v1=$(cr --http1.1 -o /dev/null -w '%{http_version} %{http_code}' $U/hello)
check "GET over http/1.1 (ALPN fallback)" "$([ "$v1" = "1.1 200" ] || echo "$v1")"

# 2 bodies, HEAD, trailers, fields
head -c 5000000 /dev/urandom > "$work/up.bin"
want="5000000 $(sha256sum < "$work/up.bin" | cut -c1-64)"
got=$(cr --http2 --data-binary @"$work/up.bin" $U/echo | head -1)
check "POST 5 MB with content-length" "$([ "$got" = "$want" ] || echo "$got")"
got=$(cr --http2 -H 'Transfer-Encoding: chunked' --data-binary @"$work/up.bin" $U/echo | head -1)
check "POST 5 MB without content-length (chunked upstream)" "$([ "$got" = "$want" ] || echo "$got")"
hd=$(cr --http2 -I "$U/big?n=1234")
check "HEAD" "$(echo "$hd" | grep -q '^HTTP/2 200' && echo "$hd" | grep -qi '^content-length: 1234' || echo "$hd")"
tr=$(cr --http2 -v $U/trailers 2>&1)
check "response trailers over h2" "$(echo "$tr" | grep -q '^< x-sum: 42' || echo "$tr" | tail -5)"
hs=$(cr --http2 -H 'Cookie: a=1' -H 'Cookie: b=2' $U/headers)
check "X-Forwarded-* and Host as for h1" \
    "$(echo "$hs" | grep -q '^X-Forwarded-Proto: https' && echo "$hs" | grep -q "^X-Forwarded-Host: localhost:$PORT" || echo "$hs")"

# Under ASan/LSan mallinfo2 reports 0 and freed memory sits in the quarantine (RSS grows with
# any malloc churn): the memory checks are reported as skipped there, not passed.
sanitized=0
[ "$(stat heap)" = 0 ] && sanitized=1

# 3 a large download, client slower than the upstream: the harness's memory stays bounded
r0=$(rss)
cr --http2 --limit-rate 60M -o /dev/null -w '%{http_code} %{size_download}' "$U/big?n=$((SIZE_MB * 1000000))" > "$work/big" & cp=$!
peak=$r0
while kill -0 $cp 2>/dev/null; do r=$(rss); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.2; done
wait $cp
got=$(cat "$work/big")
check "$SIZE_MB MB download" "$([ "$got" = "200 $((SIZE_MB * 1000000))" ] || echo "$got")"
if [ $sanitized = 1 ]; then
    log "SKIP: RSS bound (sanitizer build; grew by $(((peak - r0) / 1024)) MiB)"
else
    check "RSS bounded during the download (+$(((peak - r0) / 1024)) MiB)" \
        "$([ $((peak - r0)) -lt 65536 ] || echo "grew by $((peak - r0)) kB")"
fi

# 4 parallel streams on one connection
args=()
for _ in $(seq 1 100); do args+=(-o /dev/null "$U/big?n=1000000"); done
got=$(cr --http2 --no-progress-meter --parallel --parallel-max 100 -w '%{http_code} %{size_download} %{num_connects}\n' "${args[@]}" | sort | uniq -c | awk '{$1=$1};1')
conns=$(echo "$got" | awk '{s += $4 * $1} END {print s}')
oks=$(echo "$got" | awk '$2 == 200 && $3 == 1000000 {s += $1} END {print s}')
check "100 parallel streams, one connection" \
    "$([ "$oks" = 100 ] && [ "$conns" = 1 ] || echo "$got")"

# 5 nghttp
ng=$(nghttp -v -n $U/hello 2>&1)
check "nghttp: SETTINGS 250 streams, 256 KiB window, 64 KiB header list" \
    "$(echo "$ng" | grep -q 'SETTINGS_MAX_CONCURRENT_STREAMS(0x03):250' &&
        echo "$ng" | grep -q 'SETTINGS_INITIAL_WINDOW_SIZE(0x04):262144' &&
        echo "$ng" | grep -q 'SETTINGS_MAX_HEADER_LIST_SIZE(0x06):65536' &&
        echo "$ng" | grep -q ':status: 200' || echo "$ng" | grep -i settings)"

# 6 h2load
hl=$(h2load -n 20000 -c 10 -m 10 $U/hello 2>&1)
check "h2load -n 20000 -c 10 -m 10" \
    "$(echo "$hl" | grep -q 'requests: 20000 total, 20000 started, 20000 done, 20000 succeeded' || echo "$hl" | grep -E 'requests|status|error')"

# 7, 8 protocol probes (python3-h2)
$PY "$here/http2_probe.py" $PORT settings get uppercase connection te pseudo connect cl-mismatch \
    big-headers cookies trailers abort client-reset many-streams rapid-reset empty-frames \
    ping-flood bad-preface > "$work/probe.out" 2>&1
while read -r name res detail; do
    [ "$res" = ok ] && ok "probe $name" || bad "probe $name $res $detail"
done < "$work/probe.out"
[ -s "$work/probe.out" ] || bad "probes printed nothing"
st_ok=$(cr --http2 -o /dev/null -w '%{http_code}' $U/hello)
check "the harness still serves after the probes" "$([ "$st_ok" = 200 ] || echo "$st_ok")"

# 11 access log
check "access log of h2 requests (POST 5 MB upload counted)" \
    "$(grep -q '^ACCESS POST localhost /echo 200 5000000 ' "$work/harness.err" || grep ACCESS "$work/harness.err" | head -3)"

# 12 bytes per idle h2 connection (TLS included), next to an idle http/1.1 TLS connection
N=200
h0=$(stat heap)
mkfifo "$work/hold"
$PY "$here/http2_probe.py" $PORT idle-conns $N < "$work/hold" > "$work/idle.out" 2>&1 & ip=$!; pids+=($ip)
exec 7> "$work/hold"
for _ in $(seq 1 150); do grep -q ready "$work/idle.out" && break; sleep 0.2; done
h1=$(stat heap)
exec 7>&-
wait $ip
per_h2=$(((h1 - h0) / N))
h0=$($PY - $PORT $N <<'EOF'
import socket, ssl, sys, urllib.request
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def heap():
    b = urllib.request.urlopen("https://localhost:%d/__h2stats" % port, context=ctx).read().decode()
    return int(dict(l.split("=") for l in b.split())["heap"])
before = heap()
ctx.set_alpn_protocols(["http/1.1"])
cs = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") for _ in range(n)]
print((heap() - before) // n)
EOF
)
if [ $sanitized = 1 ]; then
    log "SKIP: idle connection memory (sanitizer build)"
else
    log "idle connection heap: h2 $per_h2 B, http/1.1 over TLS $h0 B (h2 adds $((per_h2 - h0)) B)"
    check "idle h2 connection under 128 KiB (TLS included)" "$([ "$per_h2" -lt 131072 ] || echo "$per_h2 B")"
fi

# 9 idle timeout, 10 drain (second harness: 1 s idle timeout)
"$harness" $IPORT $UPORT 1000 > /dev/null 2> "$work/harness2.err" & h2p=$!; pids+=($h2p)
wait_port $IPORT || bad "second harness did not start"
$PY "$here/http2_probe.py" $IPORT idle > "$work/idle2.out" 2>&1
while read -r name res detail; do
    [ "$res" = ok ] && ok "probe $name" || bad "probe $name $res $detail"
done < "$work/idle2.out"
nghttp -v "https://localhost:$IPORT/slow?ms=1500" > "$work/drain.out" 2>&1 & np=$!
sleep 0.5
kill -TERM $h2p
wait $np
nrc=$?
wait $h2p
hrc=$?
check "drain: GOAWAY(NO_ERROR) naming the request in flight" \
    "$(grep -A1 'recv GOAWAY' "$work/drain.out" | grep -q 'last_stream_id=13, error_code=NO_ERROR' || grep -A1 GOAWAY "$work/drain.out")"
check "drain: the request in flight completes, then the harness exits 0" \
    "$([ $nrc = 0 ] && [ $hrc = 0 ] && grep -q ':status: 200' "$work/drain.out" && grep -q '^slow' "$work/drain.out" || echo "nghttp=$nrc harness=$hrc")"

log "$(cr --http1.1 $U/__h2stats | tr '\n' ' ')"
kill -TERM $hp
wait $hp
hrc=$?
check "the first harness drains and exits 0 (no leak report under ASan)" "$([ $hrc = 0 ] || echo "exit $hrc")"
if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$work"/harness*.err; then
    bad "sanitizer report: $(grep -h -m1 -A5 -E 'Sanitizer|runtime error:' "$work"/harness*.err | tr '\n' ';')"
fi
printf '[http2] %d passed, %d failed\n' $pass $fail
[ $fail -eq 0 ]
