#!/usr/bin/env bash
# TLS benchmarks (issue 4), nbproxy against nginx in ONE run, same certificate, same upstream:
#   hs     full TLS 1.3 handshakes/s and resumed (session ticket) handshakes/s: two
#          `openssl s_time` clients in parallel (-new, without a request; -reuse -www /small.bin,
#          so the ticket is read), with an ECDSA P-256 and with an RSA-2048 certificate
#   h2     HTTP/2 requests/s: h2load -c 20 -m 10 over TLS 1.3, 100 B responses from the upstream
#   mem    memory per idle TLS connection: N TLS 1.3 connections after one request each
#          (bench/tls_idle_conns.py), RSS growth of the server process
# nbproxy: standalone, --addr with a static certificate (--cert-dir), one HTTP mapping
# bench.test -> the upstream (directUpstream). nginx: 1 worker, `listen ... ssl http2`, TLS 1.2 +
# 1.3, session tickets on (its default), session cache off, proxy_pass to the same upstream with
# a keep-alive pool. The upstream is nginx serving small.bin (100 B) from tmpfs.
#
# CPU placement (2 cores): the server under test (nbproxy or the nginx worker) alone on CPU 1;
# the clients and the upstream on CPU 0. "CPU0 / CPU1 busy" says which side was saturated:
# when CPU 0 is the busy one the result is the client's limit, not the server's.
#
# s_time sends an HTTP/1.0 request without Host for -reuse: nbproxy answers its 404 page (8.9 KB),
# nginx proxies the upstream's 100 B. Both cost a request; nbproxy's reply is the bigger one.
#
# Needs root (taskset, ulimit), nginx, openssl, h2load (nghttp2-client), python3.
#   NBPROXY_BIN  nbproxy binary (default build/nbproxy)
#   NBT_TIME     seconds per measured run (default 10)
#   NBT_ROUNDS   rounds (default 3); the order of the two servers alternates per round
#   NBT_CASES    default "hs h2 mem"
#   NBT_MEM_N    connections for mem (default 2000)
#   NBT_KEEP=1   keep the work directory
# Ports: 127.0.0.1:18094 upstream, :18095 nbproxy, :18096 nginx (TLS proxy).
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
T=${NBT_TIME:-10}
ROUNDS=${NBT_ROUNDS:-3}
CASES=${NBT_CASES:-hs h2 mem}
MEM_N=${NBT_MEM_N:-2000}
P_UP=18094 P_NB=18095 P_NGX=18096
work=$(mktemp -d /dev/shm/nbtls.XXXXXX)
chmod 755 "$work"
pids=()

log() { printf '[tls-bench] %s\n' "$*" >&2; }
stop_pids() {
    local p
    for p in "$@"; do kill "$p" 2>/dev/null; done
    for p in "$@"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
}
cleanup() {
    stop_pids "${pids[@]}"
    if [ "${NBT_KEEP:-0}" = 1 ]; then log "work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
need() { command -v "$1" >/dev/null || { log "missing $1 (scripts/install-deps.sh --bench)"; exit 2; }; }
need nginx; need openssl; need h2load; need python3; need taskset; need wg
[ -x "$bin" ] || { log "no nbproxy at $bin (set NBPROXY_BIN)"; exit 2; }
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cd "$work" || exit 1
mkdir -p www ecdsa rsa
head -c 100 /dev/zero | tr '\0' 'a' > www/small.bin
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.test \
    -addext subjectAltName=DNS:bench.test -keyout ecdsa/tls.key -out ecdsa/tls.crt 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench.test \
    -addext subjectAltName=DNS:bench.test -keyout rsa/tls.key -out rsa/tls.crt 2>/dev/null

wait_port() { for _ in $(seq 200); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
workers_of() { cat /proc/"$1"/task/*/children 2>/dev/null | tr '\n' ' '; }

ngx_conf() { # dir port body
    mkdir -p "$1/tmp"
    cat > "$1/nginx.conf" <<NGX
worker_processes 1;
worker_rlimit_nofile 20000;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    default_type application/octet-stream;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
$3
}
NGX
}
start_nginx() { # name port cpus body -> NGX_MASTER, NGX_WORKER
    local d=$work/ngx-$1
    ngx_conf "$d" "$2" "$4"
    taskset -c "$3" nginx -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" -g 'daemon off;' > "$d/out.log" 2>&1 &
    NGX_MASTER=$!
    pids+=($NGX_MASTER)
    wait_port "$2" || { log "nginx $1 did not start: $(tail -3 "$d/error.log")"; exit 1; }
    sleep 0.3
    NGX_WORKER=$(workers_of $NGX_MASTER)
}
start_nginx up $P_UP 0 "    sendfile on;
    server { listen 127.0.0.1:$P_UP backlog=4096; root $work/www; }"
UP_PIDS="$NGX_MASTER $NGX_WORKER"

umask 077
wg genkey > acct.key
umask 022
cat > nb.json <<JSON
{ "accounts": [ { "id": "a", "wireguard": { "privateKey": "$(cat acct.key)", "addresses": ["10.99.173.1/24"] } } ],
  "mappings": [ { "id": "bench", "accountId": "a", "domain": "bench.test",
                  "path": [{ "path": "/", "target": "http://127.0.0.1:$P_UP/", "options": { "directUpstream": true } }] } ] }
JSON

SRV_PIDS=""
start_server() { # nbproxy|nginx keytype
    if [ "$1" = nbproxy ]; then
        taskset -c 1 "$bin" --config nb.json --addr 127.0.0.1:$P_NB --cert-dir "$work/$2" \
            --log-level warn > "nb-$2.log" 2>&1 &
        SRV_MAIN=$!
        pids+=($SRV_MAIN)
        wait_port $P_NB || { log "nbproxy did not start: $(tail -3 nb-$2.log)"; exit 1; }
        SRV_PIDS=$SRV_MAIN SRV_PORT=$P_NB
    else
        start_nginx "tls-$2" $P_NGX 1 "    upstream up { server 127.0.0.1:$P_UP; keepalive 100; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$P_NGX ssl http2 backlog=4096;
        ssl_certificate $work/$2/tls.crt;
        ssl_certificate_key $work/$2/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets on;
        location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
    }"
        SRV_MAIN=$NGX_MASTER SRV_PIDS="$NGX_MASTER $NGX_WORKER" SRV_PORT=$P_NGX
    fi
}
stop_server() { stop_pids $SRV_MAIN; }

cpu_ticks() { local p s=0 t; for p in "$@"; do t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0); s=$((s + t)); done; echo $s; }
cpu_snap() { awk '/^cpu[0-9]/ { b = $2 + $3 + $4 + $7 + $8 + $9; t = b + $5 + $6; printf "%d %d ", b, t }' /proc/stat; }
busy() { awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
    printf "%.0f/%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2] + 1e-9), 100 * (y[3] - x[3]) / (y[4] - x[4] + 1e-9) }'; }
HZ=$(getconf CLK_TCK)

# run_case NAME -- command...: runs it once for T s, prints "units cpu_us_per_unit busy"
# The command prints the number of units (handshakes, requests) on its last line.
measure() { # label server key case-fn
    local c0 c1 p0 p1 out
    c0=$(cpu_snap); p0=$(cpu_ticks $SRV_PIDS)
    out=$("$4")
    c1=$(cpu_snap); p1=$(cpu_ticks $SRV_PIDS)
    local n=${out%% *} secs=${out#* }
    local rate us
    rate=$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
    us=$(awk -v d=$((p1 - p0)) -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.1f", n ? 1e6 * d / hz / n : 0 }')
    echo "$1	$2	$3	$rate	$us	$(busy "$c0" "$c1")	$(cut -d' ' -f1 /proc/loadavg)" | tee -a results.tsv >&2
}
# s_time x2 in parallel on CPU 0: "<connections> <seconds>"
hs_new() { s_time_pair -new; }
hs_reuse() { s_time_pair -reuse -www /small.bin; }
s_time_pair() {
    local i
    for i in 1 2; do
        taskset -c 0 timeout $((T + 20)) openssl s_time -connect 127.0.0.1:$SRV_PORT -time "$T" "$@" > "st$i.txt" 2>&1 &
    done
    wait
    cat st1.txt st2.txt | awk '/connections in [0-9.]+ real seconds/ { n += $1; s += $4 } END { printf "%d %.2f\n", n, s / 2 }'
}
h2_run() {
    taskset -c 0 timeout $((T + 30)) h2load -c 20 -m 10 -D "$T" --warm-up-time 2 -H ':authority: bench.test' \
        "https://127.0.0.1:$SRV_PORT/small.bin" > h2.txt 2>&1
    awk '/^requests:/ { ok = $8 } /^finished in/ { s = $3 + 0 } END { printf "%d %.2f\n", ok, s }' h2.txt
}

log "start $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), nbproxy $bin, $(nginx -v 2>&1), $(openssl version)"
: > results.tsv
for r in $(seq "$ROUNDS"); do
    order="nbproxy nginx"
    [ $((r % 2)) = 0 ] && order="nginx nbproxy"
    for kt in ecdsa rsa; do
        for srv in $order; do
            case " $CASES " in *" hs "*) ;; *" h2 "*) [ $kt = ecdsa ] || continue ;; *) continue ;; esac
            start_server $srv $kt
            case " $CASES " in *" hs "*)
                measure "full handshakes/s r$r" $srv $kt hs_new
                measure "resumed handshakes/s r$r" $srv $kt hs_reuse ;;
            esac
            if [ $kt = ecdsa ]; then
                case " $CASES " in *" h2 "*) measure "h2 req/s r$r" $srv $kt h2_run ;; esac
            fi
            stop_server
        done
    done
done
case " $CASES " in *" mem "*)
    for srv in nbproxy nginx; do
        start_server $srv ecdsa
        pid=$SRV_MAIN
        [ $srv = nginx ] && pid=$NGX_WORKER
        out=$(taskset -c 0 python3 "$here/tls_idle_conns.py" 127.0.0.1 $SRV_PORT bench.test /small.bin "$MEM_N" $pid)
        echo "mem	$srv	ecdsa	$out" | tee -a results.tsv >&2
        stop_server
    done ;;
esac
log "end $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# label / server / key / rate / server CPU us per unit / CPU0/CPU1 busy % / load1"
cat results.tsv
