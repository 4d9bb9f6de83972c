#!/usr/bin/env bash
# HTTP engine benchmarks (issue 3), all in ONE run:
#   wrk    wrk -> reverse proxy -> upstream nginx (static files on tmpfs), keep-alive, a 100 B and
#          a 1 MiB response, through nbproxy (--http-addr, a directUpstream mapping) and through
#          nginx as a reverse proxy (upstream keepalive pool, HTTP/1.1 upstream, access_log
#          off) with 1 worker and with `worker_processes auto`; plus wrk straight to the
#          upstream (no proxy) as the ceiling.
#   tunnel the same 100 B run from a wireguard-go client in a network namespace to nbproxy's
#          tunnel listener (--private: port 80 of the account's tunnel address), same nbproxy
#          process and same upstream.
#   mem    RSS per idle keep-alive client connection: 10 000 connections, each after one
#          completed request (bench/http_idle_conns.py), on a fresh nbproxy; then the same
#          against the 1-worker nginx proxy, for comparison.
#
# CPU placement (2 cores): nbproxy and the 1-worker nginx proxy on CPU $PROXY_CPU (1) alone;
# wrk and the upstream nginx (1 worker) on CPU $LOAD_CPU (0); nginx `auto` (2 workers) and
# wireguard-go unpinned. So each single-threaded proxy gets one core to itself and the
# load generator and the upstream share the other; per-CPU busy % of each run shows which side
# was saturated.
#
# Needs root (netns, veth, bridge; ulimit -n), nginx, wrk, wireguard-go, wg, curl, python3, taskset.
#   NBPROXY_BIN  nbproxy binary (default build/nbproxy)
#   NBH_TIME     seconds per measured wrk run (default 10); each is preceded by an unreported
#                2 s warm-up run with the same parameters
#   NBH_CONNS    wrk connections (default 50); wrk always uses 1 thread (-t1)
#   NBH_CASES    which cases (default "wrk tunnel mem")
#   NBH_ROUNDS   rounds of the wrk and tunnel runs (default 5); the report gives every run and,
#                per path, the median of the rounds
#   NBH_MEM_N    connections for mem (default 10000)
#   NBH_PERF=DIR perf record -g on nbproxy during its measured runs of round 1 (a profiling
#                run: figures not comparable); reports written to DIR
#   NBH_KEEP=1   keep the work directory (logs, wrk output, configs)
#
# Topology (every address is on an interface this script creates, or on loopback):
#   127.0.0.1:18090 upstream nginx; :18091 nginx proxy (1 worker); :18092 nginx proxy (auto);
#   :18093 nbproxy --http-addr (Host bench.test -> http://127.0.0.1:18090/, directUpstream)
#   root ns: bridge nbh-br 10.99.9.1/24; nbproxy account "bench" UDP 51860, tunnel 10.99.90.1/24
#            (netstack only), --private: HTTP on 10.99.90.1:80
#   ns nbh-c: veth nbhc-eth 10.99.9.2/24, wireguard-go nbhw0 10.99.90.2/24 UDP 51861, wrk
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
T=${NBH_TIME:-10}
C=${NBH_CONNS:-50}
CASES=${NBH_CASES:-wrk tunnel mem}
ROUNDS=${NBH_ROUNDS:-5}
MEM_N=${NBH_MEM_N:-10000}
PERF=${NBH_PERF:-}
LOAD_CPU=0
PROXY_CPU=1
work=$(mktemp -d /dev/shm/nbh.XXXXXX) # tmpfs: the static files, nginx temp files, logs
chmod 755 "$work"
NS=nbh-c
BR=nbh-br
WGIF=nbhw0
P_UP=18090
P_NGX1=18091
P_NGXA=18092
P_NB=18093
HOSTHDR=bench.test
pids=()

log() { printf '[http-bench] %s\n' "$*" >&2; }

stop_pids() { # SIGTERM, then SIGKILL after 5 s
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
    # nginx workers, in case a master did not take them down (recorded by PID at start)
    local f
    local ws
    for f in "$work"/pids/*.workers; do
        [ -f "$f" ] || continue
        read -r -a ws < "$f"
        stop_pids "${ws[@]}"
    done
    ip netns del $NS 2>/dev/null
    ip link del $BR 2>/dev/null
    rm -f /var/run/wireguard/$WGIF.sock
    if [ "${NBH_KEEP:-0}" = 1 ]; then log "work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need() { command -v "$1" >/dev/null || { log "missing $1 (scripts/install-deps.sh --bench)"; exit 2; }; }
need nginx; need wrk; need wireguard-go; need wg; need ip; need curl; need python3; need taskset
[ -x "$bin" ] || { log "no nbproxy at $bin (set NBPROXY_BIN)"; exit 2; }
[ -z "$PERF" ] || { need perf; mkdir -p "$PERF"; }
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$work/pids" "$work/www"

# ---- static files (tmpfs) ----
head -c 100 /dev/zero | tr '\0' 'a' > "$work/www/small.bin"
head -c 1048576 /dev/urandom > "$work/www/big.bin"
chmod 644 "$work/www/"*; chmod 755 "$work/www"

# ---- nginx instances ----
ngx_conf() { # NAME PORT WORKERS PROXY(0/1)
    local d="$work/ngx-$1"
    mkdir -p "$d/tmp"
    local body
    if [ "$4" = 1 ]; then
        body="
    upstream up {
        server 127.0.0.1:$P_UP;
        keepalive 100;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$2 backlog=4096;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
    else
        body="
    sendfile on;
    tcp_nopush on;
    server {
        listen 127.0.0.1:$2 backlog=4096;
        root $work/www;
    }"
    fi
    cat > "$d/nginx.conf" <<NGX
worker_processes $3;
worker_rlimit_nofile 20000;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    default_type application/octet-stream;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;$body
}
NGX
}

wait_port() { # host port
    for _ in $(seq 200); do
        (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

declare -A PID     # name -> master / main pid
declare -A PROCS   # name -> every pid whose CPU counts (master + workers)
start_nginx() { # NAME PORT WORKERS PROXY CPUS
    ngx_conf "$1" "$2" "$3" "$4"
    local d="$work/ngx-$1"
    taskset -c "$5" nginx -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" -g 'daemon off;' \
        > "$d/stdout.log" 2>&1 &
    local p=$!
    pids+=("$p"); echo "$p" > "$work/pids/ngx-$1.pid"
    wait_port "$2" || { log "nginx $1 did not start (see $d/error.log)"; exit 1; }
    sleep 0.3
    local w; w=$(cat /proc/$p/task/*/children 2>/dev/null | tr '\n' ' ')
    echo "$w" > "$work/pids/ngx-$1.workers"
    PID[$1]=$p; PROCS[$1]="$p $w"
    log "nginx $1 on 127.0.0.1:$2: master $p, workers $w (CPUs $5)"
}

cpu_ticks() { # pids... -> sum of utime+stime in clock ticks
    local p s=0 t
    for p in "$@"; do
        t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
        s=$((s + t))
    done
    echo $s
}
cpu_snap() { awk '/^cpu[0-9]/ { b = $2 + $3 + $4 + $7 + $8 + $9; t = b + $5 + $6; printf "%s %d %d ", $1, b, t }' /proc/stat; }
cpu_busy() { # SNAP0 SNAP1 -> "cpu0 93% cpu1 71%"
    awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); split(b, y, " ");
        for (i = 1; i <= n; i += 3) { t = y[i+2] - x[i+2]; if (t <= 0) t = 1;
            printf "%s%.0f%%", (i > 1 ? " / " : ""), 100 * (y[i+1] - x[i+1]) / t } }'
}

cat > "$work/report.lua" <<'LUA'
done = function(s, lat, req)
    io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d %d %d %d %.1f\n",
        s.requests, s.duration, s.bytes, s.errors.connect, s.errors.read, s.errors.write,
        s.errors.status, s.errors.timeout, lat:percentile(50), lat:percentile(90),
        lat:percentile(99), lat.max, lat.mean))
end
LUA

# one wrk run: NAME NETNS-OR-"" URL -> "$work/NAME.txt"
wrk_run() {
    local name=$1 ns=$2 url=$3 d=$4
    local pre=()
    [ -n "$ns" ] && pre=(ip netns exec "$ns")
    timeout $((d + 30)) "${pre[@]}" taskset -c $LOAD_CPU wrk -t1 -c"$C" -d"${d}s" --latency \
        -H "Host: $HOSTHDR" -s "$work/report.lua" "$url" > "$work/$name.txt" 2>&1
}

# measure KEY ROUND NETNS URL PROXY-PIDS...: one warm-up + one measured wrk run; appends a line to
# results.tsv: key round req/s MiB/s p50 p90 p99 max(ms) non2xx sockerr proxyCPU% upCPU% cpu0% cpu1%
# load1-start load1-end
measure() {
    local key=$1 round=$2 ns=$3 url=$4
    shift 4
    local procs=("$@")
    local name; name="$(echo "$key" | tr -c 'a-zA-Z0-9\n' '_')-r$round"
    wrk_run "$name-warm" "$ns" "$url" 2
    local l0 l1 c0 c1 pt0 pt1 ut0 ut1 t0 t1 perfpid=""
    l0=$(cut -d' ' -f1 /proc/loadavg)
    if [ -n "$PERF" ] && [ "$round" = 1 ] && [ "${procs[0]:-}" = "${PID[nbproxy]:-x}" ]; then
        perf record -g -F 999 -p "${PID[nbproxy]}" -o "$PERF/perf-$name.data" -- sleep "$T" \
            > "$PERF/perf-$name.log" 2>&1 &
        perfpid=$!
    fi
    c0=$(cpu_snap); pt0=$(cpu_ticks "${procs[@]}"); ut0=$(cpu_ticks ${PROCS[up]})
    t0=$(date +%s%N)
    wrk_run "$name" "$ns" "$url" "$T"
    t1=$(date +%s%N)
    c1=$(cpu_snap); pt1=$(cpu_ticks "${procs[@]}"); ut1=$(cpu_ticks ${PROCS[up]})
    [ -n "$perfpid" ] && wait "$perfpid"
    l1=$(cut -d' ' -f1 /proc/loadavg)
    local hz; hz=$(getconf CLK_TCK)
    local wall=$(( (t1 - t0) / 1000000 ))
    local pcpu ucpu
    pcpu=$(awk -v d=$((pt1 - pt0)) -v hz="$hz" -v w=$wall 'BEGIN{printf "%.0f", 100 * d / hz / (w / 1000)}')
    ucpu=$(awk -v d=$((ut1 - ut0)) -v hz="$hz" -v w=$wall 'BEGIN{printf "%.0f", 100 * d / hz / (w / 1000)}')
    [ ${#procs[@]} -eq 0 ] && pcpu="-"
    local res; res=$(grep '^RESULT' "$work/$name.txt")
    local line
    if [ -z "$res" ]; then
        log "$key (round $round): wrk FAILED: $(tail -3 "$work/$name.txt" | tr '\n' ' ')"
        line="$key	$round	FAILED"
    else
        line=$(echo "$res" | awk -v key="$key" -v r="$round" -v pcpu="$pcpu" -v ucpu="$ucpu" \
            -v cpus="$(cpu_busy "$c0" "$c1")" -v l0="$l0" -v l1="$l1" 'BEGIN { OFS = "\t" } {
            split(cpus, c, " / "); sub("%", "", c[1]); sub("%", "", c[2]);
            print key, r, sprintf("%.0f", $2 / ($3 / 1e6)), sprintf("%.1f", $4 / ($3 / 1e6) / 1048576),
                sprintf("%.2f", $10 / 1000), sprintf("%.2f", $11 / 1000), sprintf("%.2f", $12 / 1000),
                sprintf("%.1f", $13 / 1000), $8, $5 + $6 + $7 + $9, pcpu, ucpu, c[1], c[2], l0, l1 }')
    fi
    echo "$line" >> "$work/results.tsv"
    log "$(echo "$line" | tr '\t' ' ')"
}

# ---- start ----
log "start: $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), nbproxy $bin"
START_UTC=$(date -u +%FT%TZ); START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
start_nginx up $P_UP 1 0 $LOAD_CPU
case " $CASES " in *" wrk "* | *" mem "*)
    start_nginx ngx1 $P_NGX1 1 1 $PROXY_CPU ;;
esac
case " $CASES " in *" wrk "*)
    start_nginx ngxa $P_NGXA auto 1 0-1 ;;
esac

# ---- keys, namespace and wireguard-go client (tunnel case) ----
umask 077
for k in nb cl; do wg genkey > "$work/$k.key"; wg pubkey < "$work/$k.key" > "$work/$k.pub"; done
umask 022
peers="[]"
case " $CASES " in *" tunnel "*)
    ip netns del $NS 2>/dev/null; ip link del $BR 2>/dev/null
    ip link add $BR type bridge && ip addr add 10.99.9.1/24 dev $BR && ip link set $BR up || exit 1
    ip netns add $NS || exit 1
    ip link add nbhc-br type veth peer name nbhc-eth netns $NS || exit 1
    ip link set nbhc-br master $BR up
    ip -n $NS addr add 10.99.9.2/24 dev nbhc-eth
    ip -n $NS link set nbhc-eth up
    ip -n $NS link set lo up
    LOG_LEVEL=error ip netns exec $NS wireguard-go -f $WGIF > "$work/wg.log" 2>&1 &
    PID[wg]=$!; pids+=("${PID[wg]}"); echo "${PID[wg]}" > "$work/pids/wg.pid"
    for _ in $(seq 200); do [ -S /var/run/wireguard/$WGIF.sock ] && break; sleep 0.05; done
    ip netns exec $NS wg set $WGIF private-key "$work/cl.key" listen-port 51861 \
        peer "$(cat "$work/nb.pub")" allowed-ips 10.99.90.1/32 endpoint 10.99.9.1:51860 \
        persistent-keepalive 25 || exit 1
    ip -n $NS addr add 10.99.90.2/24 dev $WGIF
    ip -n $NS link set $WGIF mtu 1280 up
    peers="[{ \"publicKey\": \"$(cat "$work/cl.pub")\", \"endpoint\": \"10.99.9.2:51861\",
               \"allowedIps\": [\"10.99.90.2/32\"], \"persistentKeepalive\": 25 }]"
    ;;
esac

cat > "$work/nbproxy.json" <<JSON
{
  "accounts": [{ "id": "bench", "wireguard": {
      "privateKey": "$(cat "$work/nb.key")", "listenPort": 51860, "addresses": ["10.99.90.1/24"],
      "mtu": 1280, "peers": $peers } }],
  "mappings": [{ "id": "bench-http", "accountId": "bench", "domain": "$HOSTHDR",
                 "path": [{ "path": "/", "target": "http://127.0.0.1:$P_UP/",
                            "options": { "directUpstream": true } }] }]
}
JSON
NB_CMD=(taskset -c "$PROXY_CPU" "$bin" --config "$work/nbproxy.json" --http-addr "127.0.0.1:$P_NB"
        --private --log-level warn)
start_nbproxy() { # LOGNAME
    "${NB_CMD[@]}" > "$work/$1.log" 2>&1 &
    PID[nbproxy]=$!; PROCS[nbproxy]=${PID[nbproxy]}; pids+=("${PID[nbproxy]}")
    echo ${PID[nbproxy]} > "$work/pids/$1.pid"
    wait_port $P_NB || { log "nbproxy did not start (see $work/$1.log)"; cat "$work/$1.log" >&2; exit 1; }
}

check() { # LABEL NETNS URL SIZE: one request must return 200 and SIZE bytes
    local pre=() out
    [ -n "$2" ] && pre=(ip netns exec "$2")
    for _ in $(seq 20); do
        out=$("${pre[@]}" curl -s -m 3 -o /dev/null -w '%{http_code} %{size_download}' -H "Host: $HOSTHDR" "$3")
        [ "$out" = "200 $4" ] && return 0
        sleep 0.5
    done
    log "$1: $3 answered \"$out\", expected \"200 $4\""
    return 1
}

start_nbproxy nbproxy
URL_NB=http://127.0.0.1:$P_NB
URL_N1=http://127.0.0.1:$P_NGX1
URL_NA=http://127.0.0.1:$P_NGXA
URL_UP=http://127.0.0.1:$P_UP
for u in $URL_UP $URL_NB $URL_N1 $URL_NA; do
    case $u in
    "$URL_N1") [[ " $CASES " == *" wrk "* || " $CASES " == *" mem "* ]] || continue ;;
    "$URL_NA") [[ " $CASES " == *" wrk "* ]] || continue ;;
    esac
    check "$u" "" "$u/small.bin" 100 || exit 1
    check "$u" "" "$u/big.bin" 1048576 || exit 1
done

# ---- wrk (host side) and tunnel, ROUNDS rounds; the order of the proxies is reversed in even
# rounds so that a drift of the machine's load does not always favour the same one ----
tunnel_ok=0
case " $CASES " in *" tunnel "*)
    check tunnel $NS "http://10.99.90.1/small.bin" 100 && tunnel_ok=1 ;;
esac
for r in $(seq "$ROUNDS"); do
    order=(nb n1 na up tun)
    [ $((r % 2)) = 0 ] && order=(tun up na n1 nb)
    for f in small big; do
        sz="100 B"; [ $f = big ] && sz="1 MiB"
        for k in "${order[@]}"; do
            case $k in
            tun) [ $f = small ] && [ $tunnel_ok = 1 ] || continue
                 measure "nbproxy via tunnel|$sz" "$r" $NS "http://10.99.90.1/$f.bin" \
                     ${PROCS[nbproxy]} ;;
            *)   [[ " $CASES " == *" wrk "* ]] || continue ;;&
            nb)  measure "nbproxy|$sz" "$r" "" "$URL_NB/$f.bin" ${PROCS[nbproxy]} ;;
            n1)  measure "nginx 1 worker|$sz" "$r" "" "$URL_N1/$f.bin" ${PROCS[ngx1]} ;;
            na)  measure "nginx auto|$sz" "$r" "" "$URL_NA/$f.bin" ${PROCS[ngxa]} ;;
            up)  measure "no proxy|$sz" "$r" "" "$URL_UP/$f.bin" ;;
            esac
        done
    done
done
stop_pids ${PID[nbproxy]}

# ---- mem ----
mem_case() { # LABEL PORT PID
    local l0 l1 out
    l0=$(cut -d' ' -f1 /proc/loadavg)
    out=$(timeout 300 python3 "$here/http_idle_conns.py" 127.0.0.1 "$2" $HOSTHDR /small.bin \
        "$MEM_N" "$3" 100)
    l1=$(cut -d' ' -f1 /proc/loadavg)
    printf '%s\t%s\t%s\t%s\n' "$1" "$l0" "$l1" "${out:-FAILED}" >> "$work/mem.tsv"
    log "$1: ${out:-FAILED}"
}
case " $CASES " in *" mem "*)
    start_nbproxy nbproxy-mem
    mem_case "nbproxy" $P_NB ${PID[nbproxy]}
    stop_pids ${PID[nbproxy]}
    # nginx, 1 worker: the worker process's RSS
    mem_case "nginx 1 worker (its worker process)" $P_NGX1 "$(echo ${PROCS[ngx1]} | awk '{print $2}')"
    ;;
esac

# ---- report ----
echo
echo "$START_UTC - $(date -u +%FT%TZ), $(nproc) CPUs, kernel $(uname -r), load at start $START_LOAD, at end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "nbproxy: $bin; $(nginx -v 2>&1); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "wrk -t1 -c$C -d${T}s --latency -H 'Host: $HOSTHDR' (each after an unreported 2 s run), $ROUNDS rounds;"\
     "wrk and the upstream nginx on CPU $LOAD_CPU, nbproxy and nginx 1 worker on CPU $PROXY_CPU,"\
     "nginx auto (2 workers) and wireguard-go unpinned"
python3 - "$work/results.tsv" "$work/mem.tsv" <<'PY'
import json, os, statistics, sys

res, mem = sys.argv[1], sys.argv[2]
if os.path.exists(res):
    runs = [l.rstrip("\n").split("\t") for l in open(res) if l.strip()]
    keys = []
    for r in runs:
        if r[0] not in keys:
            keys.append(r[0])
    keys.sort(key=lambda k: (k.split("|")[1] != "100 B", "tunnel" in k))
    ok = lambda k: [r for r in runs if r[0] == k and r[2] != "FAILED"]
    med = lambda k, i: statistics.median(float(r[i]) for r in ok(k)) if ok(k) else float("nan")
    # CPU time of the proxy process(es) per request: utime+stime / requests
    usreq = lambda r: (float(r[10]) / 100 / float(r[2]) * 1e6) if r[10] != "-" and float(r[2]) > 0 else None
    print("\nMedian of the rounds (each figure is its own median)\n")
    print("| path | response | req/s | p50 ms | p99 ms | proxy CPU µs / request | req/s of each round | p99 ms of each round | errors (non-2xx + socket) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in keys:
        path, size = k.split("|")
        rr = ok(k)
        errs = sum(int(r[8]) + int(r[9]) for r in rr)
        failed = len([r for r in runs if r[0] == k]) - len(rr)
        us = [usreq(r) for r in rr if usreq(r) is not None]
        print("| %s | %s | %.0f | %.2f | %.2f | %s | %s | %s | %d%s |" % (
            path, size, med(k, 2), med(k, 4), med(k, 6),
            "%.1f" % statistics.median(us) if us else "-", ", ".join(r[2] for r in rr),
            ", ".join(r[6] for r in rr), errs, " (%d runs FAILED)" % failed if failed else ""))
    # the issue's goal: nbproxy against nginx with one worker, paired round by round
    print("\nnbproxy against nginx 1 worker, round by round (same round = same conditions, back to back)\n")
    print("| response | round | nbproxy req/s | nginx req/s | ratio | nbproxy p99 ms | nginx p99 ms | ratio | CPU µs / request nbproxy / nginx (ratio) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in ("100 B", "1 MiB"):
        a = {r[1]: r for r in ok("nbproxy|" + size)}
        b = {r[1]: r for r in ok("nginx 1 worker|" + size)}
        rq, pq, cq = [], [], []
        for rnd in sorted(set(a) & set(b), key=int):
            x, y = a[rnd], b[rnd]
            rq.append(float(x[2]) / float(y[2]))
            pq.append(float(x[6]) / float(y[6]))
            cq.append(usreq(x) / usreq(y))
            print("| %s | %s | %s | %s | %.2f | %s | %s | %.2f | %.1f / %.1f (%.2f) |" % (
                size, rnd, x[2], y[2], rq[-1], x[6], y[6], pq[-1], usreq(x), usreq(y), cq[-1]))
        if rq:
            print("| %s | **median** | | | **%.2f** | | | **%.2f** | **%.2f** |" % (
                size, statistics.median(rq), statistics.median(pq), statistics.median(cq)))
    print("\nEvery run\n")
    print("| round | path | response | req/s | MiB/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx / socket errors | proxy CPU % (µs / request) | upstream CPU % | CPU0 / CPU1 busy % | load1 start / end |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(runs, key=lambda r: (int(r[1]), keys.index(r[0]))):
        path, size = r[0].split("|")
        if r[2] == "FAILED":
            print("| %s | %s | %s | FAILED |" % (r[1], path, size))
            continue
        u = usreq(r)
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s%s | %s | %s / %s | %s / %s |" % (
            r[1], path, size, *r[2:8], r[8], r[9], r[10], " (%.1f)" % u if u is not None else "",
            r[11], r[12], r[13], r[14], r[15]))
if os.path.exists(mem):
    print("\nIdle keep-alive connections: each after one completed GET /small.bin (100 B), at most "
          "100 connecting at a time, after a warm-up of 5 x 100 connections\n")
    print("| server | connections open / failed | VmRSS before (KiB) | after (KiB) | delta (KiB) | **per connection** | VmRSS after closing them (KiB) | kernel slab per connection, both ends, system-wide (TCP + sock_inode + filp + epoll + dentry) | measured (s after the first) | still open at the check | load1 start / end |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for line in open(mem):
        label, l0, l1, out = line.rstrip("\n").split("\t", 3)
        try:
            r = json.loads(out)
        except Exception:
            print("| %s | FAILED |" % label)
            continue
        b, a, c = r["before"], r["after"], r["after_close"]
        sl = r.get("slab_per_conn_bytes", {})
        print("| %s | %d / %d | %d | %d | %d | **%.0f B** (RssAnon %.0f B) | %d | %.0f B (%s) | %.1f | %d | %s / %s |" % (
            label, r["opened"], r["failures"], b["VmRSS"], a["VmRSS"], r["rss_delta_kib"],
            r["rss_per_conn_bytes"], r["rssanon_per_conn_bytes"], c["VmRSS"], sum(sl.values()),
            ", ".join("%s %.0f" % kv for kv in sl.items()), r["measured_s_after_first_idle"],
            r["alive_at_check"], l0, l1))
PY
if [ -n "$PERF" ]; then
    for d in "$PERF"/perf-*.data; do
        [ -f "$d" ] || continue
        perf report -i "$d" --no-children --sort symbol --stdio 2> /dev/null | grep -E '^ +[0-9]' \
            | head -50 > "${d%.data}.top.txt"
        perf report -i "$d" --no-children --sort dso --stdio 2> /dev/null | grep -E '^ +[0-9]' \
            | head -15 > "${d%.data}.dso.txt"
    done
    log "perf reports in $PERF"
fi
