#!/usr/bin/env bash
# Tunnel throughput, one TCP stream each way, iperf3 everywhere, all three cases in ONE run:
#   (a) baseline: wireguard-go <-> wireguard-go between two network namespaces
#   (b) wireguard-go peer <-> nbproxy: iperf3 client on the host -> nbproxy tcp mapping ->
#       nbproxy's netstack -> WireGuard (UDP over a bridge) -> wireguard-go -> iperf3 server
#   (c) nbproxy <-> nbproxy: iperf3 client on the host -> nbproxy (process A) tcp mapping ->
#       A's netstack -> WireGuard over UDP on 127.0.0.1 -> nb_tunnel_sink (process B) netstack ->
#       B's relay -> iperf3 server on 127.0.0.1
# Each case: one 10 s forward run and one 10 s reverse (-R) run, preceded by a 1 s warm-up that
# is not reported. MTU 1280 on both wireguard-go interfaces and on every nbproxy account.
#
# Needs root (netns, veth, bridge), wireguard-go, wg, iperf3, python3.
#   NBPROXY_BIN  nbproxy binary        (default build/nbproxy)
#   NBSINK_BIN   nb_tunnel_sink binary (default: bench/nb_tunnel_sink next to NBPROXY_BIN)
#   NBB_TIME     seconds per measured run (default 10)
#   NBB_CASES    which cases to run (default "a b c")
#   NBB_PERF     if set to a directory: perf record -g on nbproxy (b) and on A and B (c) during
#                the forward run, reports written there (profiling run: figures not comparable)
#   NBB_KEEP=1   keep the work directory (logs, JSON)
#   NBB_IPERF_EXTRA  extra iperf3 client flags for the measured runs (e.g. "-i 0.1
#                --get-server-output" to look for stalls); leave empty for the reported figures
#
# Topology (every address is on an interface this script creates, or on loopback):
#   root ns: bridge nbb-br 10.99.7.1/24; nbproxy (b) UDP 51832, tunnel 10.99.70.3 (netstack only)
#            nbproxy A (c) UDP 51841 tunnel 10.99.72.1, nb_tunnel_sink B UDP 51842 tunnel
#            10.99.72.2 (netstack only), iperf3 server 127.0.0.1:5202 (c)
#   ns nbb-a: veth nbba-eth 10.99.7.2/24, wireguard-go nbbw0 10.99.70.1/24 UDP 51830
#   ns nbb-b: veth nbbb-eth 10.99.7.3/24, wireguard-go nbbw1 10.99.70.2/24 UDP 51831,
#             iperf3 server 10.99.70.2:5201 (a, b)
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
sink=${NBSINK_BIN:-$(dirname "$bin")/bench/nb_tunnel_sink}
T=${NBB_TIME:-10}
CASES=${NBB_CASES:-a b c}
PERF=${NBB_PERF:-}
work=$(mktemp -d /tmp/nbb-tput.XXXXXX)
NSA=nbb-a
NSB=nbb-b
BR=nbb-br
IFA=nbbw0
IFB=nbbw1
MTU=1280
pids=()

log() { printf '[tunnel-bench] %s\n' "$*" >&2; }

stop_pids() { # SIGTERM, then SIGKILL after 5 s (nbproxy drains relays on SIGTERM)
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
    ip netns del $NSA 2>/dev/null
    ip netns del $NSB 2>/dev/null
    ip link del $BR 2>/dev/null
    rm -f /var/run/wireguard/$IFA.sock /var/run/wireguard/$IFB.sock
    if [ "${NBB_KEEP:-0}" = 1 ]; then log "work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need() { command -v "$1" >/dev/null || { log "missing $1"; exit 2; }; }
need wireguard-go; need wg; need ip; need iperf3; need python3
[ -x "$bin" ] || { log "no nbproxy at $bin (set NBPROXY_BIN)"; exit 2; }
case " $CASES " in *" c "*) [ -x "$sink" ] || { log "no nb_tunnel_sink at $sink (set NBSINK_BIN)"; exit 2; } ;; esac
[ -z "$PERF" ] || { need perf; mkdir -p "$PERF"; }

# ---- topology: bridge + two namespaces, each with a wireguard-go ----
ip netns del $NSA 2>/dev/null; ip netns del $NSB 2>/dev/null; ip link del $BR 2>/dev/null
ip link add $BR type bridge && ip addr add 10.99.7.1/24 dev $BR && ip link set $BR up || exit 1
for n in $NSA:nbba:2 $NSB:nbbb:3; do
    ns=${n%%:*}; r=${n#*:}; p=${r%%:*}; o=${r#*:}
    ip netns add "$ns" || exit 1
    ip link add "$p-br" type veth peer name "$p-eth" netns "$ns" || exit 1
    ip link set "$p-br" master $BR up
    ip -n "$ns" addr add "10.99.7.$o/24" dev "$p-eth"
    ip -n "$ns" link set "$p-eth" up
    ip -n "$ns" link set lo up
done

umask 077
for k in wa wb nb pa pb; do wg genkey > "$work/$k.key"; wg pubkey < "$work/$k.key" > "$work/$k.pub"; done
umask 022
pub() { cat "$work/$1.pub"; }
key() { cat "$work/$1.key"; }

LOG_LEVEL=error ip netns exec $NSA wireguard-go -f $IFA > "$work/wg-a.log" 2>&1 &
pid_wga=$!; pids+=($pid_wga)
LOG_LEVEL=error ip netns exec $NSB wireguard-go -f $IFB > "$work/wg-b.log" 2>&1 &
pid_wgb=$!; pids+=($pid_wgb)
for _ in $(seq 200); do
    [ -S /var/run/wireguard/$IFA.sock ] && [ -S /var/run/wireguard/$IFB.sock ] && break
    sleep 0.05
done
# nbbw1 (ns B) has two peers: nbbw0 (case a) and nbproxy (case b, tunnel address 10.99.70.3).
ip netns exec $NSB wg set $IFB private-key "$work/wb.key" listen-port 51831 \
    peer "$(pub wa)" allowed-ips 10.99.70.1/32 \
    peer "$(pub nb)" allowed-ips 10.99.70.3/32 || exit 1
ip netns exec $NSA wg set $IFA private-key "$work/wa.key" listen-port 51830 \
    peer "$(pub wb)" allowed-ips 10.99.70.2/32 endpoint 10.99.7.3:51831 persistent-keepalive 25 || exit 1
ip -n $NSA addr add 10.99.70.1/24 dev $IFA; ip -n $NSA link set $IFA mtu $MTU up
ip -n $NSB addr add 10.99.70.2/24 dev $IFB; ip -n $NSB link set $IFB mtu $MTU up

ip netns exec $NSB iperf3 -s -B 10.99.70.2 -p 5201 > "$work/iperf-s-b.log" 2>&1 &
pids+=($!)
iperf3 -s -B 127.0.0.1 -p 5202 > "$work/iperf-s-host.log" 2>&1 &
pids+=($!)

# ---- nbproxy configs ----
cat > "$work/nb-b.json" <<JSON
{
  "accounts": [{ "id": "bench-b", "wireguard": {
      "privateKey": "$(key nb)", "listenPort": 51832, "addresses": ["10.99.70.3/24"], "mtu": $MTU,
      "peers": [{ "publicKey": "$(pub wb)", "endpoint": "10.99.7.3:51831",
                  "allowedIps": ["10.99.70.2/32"], "persistentKeepalive": 25 }] } }],
  "mappings": [{ "id": "iperf-b", "accountId": "bench-b", "mode": "tcp", "listenPort": 15201,
                 "path": [{ "target": "10.99.70.2:5201" }] }]
}
JSON
cat > "$work/nb-cA.json" <<JSON
{
  "accounts": [{ "id": "bench-cA", "wireguard": {
      "privateKey": "$(key pa)", "listenPort": 51841, "addresses": ["10.99.72.1/24"], "mtu": $MTU,
      "peers": [{ "publicKey": "$(pub pb)", "endpoint": "127.0.0.1:51842",
                  "allowedIps": ["10.99.72.2/32"], "persistentKeepalive": 25 }] } }],
  "mappings": [{ "id": "iperf-c", "accountId": "bench-cA", "mode": "tcp", "listenPort": 15202,
                 "path": [{ "target": "10.99.72.2:5201" }] }]
}
JSON
cat > "$work/nb-cB.json" <<JSON
{
  "accounts": [{ "id": "bench-cB", "wireguard": {
      "privateKey": "$(key pb)", "listenPort": 51842, "addresses": ["10.99.72.2/24"], "mtu": $MTU,
      "peers": [{ "publicKey": "$(pub pa)", "allowedIps": ["10.99.72.1/32"] }] } }],
  "mappings": []
}
JSON

wait_port() { # host port: wait until something listens on 127.0.0.1:port
    for _ in $(seq 200); do
        (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

udp_rcvbuf_errs() { # NETNS-OR-"": UDP RcvbufErrors (datagrams dropped on a full socket buffer)
    local pre=()
    [ -n "$1" ] && pre=(ip netns exec "$1")
    "${pre[@]}" awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] }' /proc/net/snmp
}

cpu_ticks() { # pid -> utime+stime in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# run NAME NETNS-OR-"" HOST PORT [-R]: one iperf3 run; prints "mbit retransmits"
iperf_run() {
    local name=$1 ns=$2 host=$3 port=$4 dir=${5:-}
    local pre=()
    [ -n "$ns" ] && pre=(ip netns exec "$ns")
    timeout $((T + 30)) "${pre[@]}" iperf3 -c "$host" -p "$port" -t "$T" -J --connect-timeout 5000 \
        $dir ${NBB_IPERF_EXTRA:-} > "$work/$name.json" 2> "$work/$name.err"
    python3 - "$work/$name.json" <<'PY'
import json, sys
try:
    j = json.load(open(sys.argv[1]))
    e = j["end"]
    print("%.1f %s" % (e["sum_received"]["bits_per_second"] / 1e6,
                       e["sum_sent"].get("retransmits", "-")))
except Exception as ex:
    print("FAILED -")
PY
}

warm() { # NETNS-OR-"" HOST PORT: a 1 s run to complete the handshake (not reported); the
    # first handshake initiation may be lost while the far end starts (WireGuard retries after
    # 5 s), so try up to three times.
    local pre=() i
    [ -n "$1" ] && pre=(ip netns exec "$1")
    for i in 1 2 3; do
        timeout 30 "${pre[@]}" iperf3 -c "$2" -p "$3" -t 1 --connect-timeout 8000 > /dev/null 2>&1 \
            && return 0
    done
    return 1
}

wait_udp() { # port: wait until a UDP socket is bound to it in the root namespace
    for _ in $(seq 200); do
        ss -Hlun "sport = :$1" | grep -q . && return 0
        sleep 0.05
    done
    return 1
}

declare -A R
declare -A CPU
measure() { # CASE NETNS HOST PORT PIDS...: fwd + rev, with CPU seconds of the listed processes
    local c=$1 ns=$2 host=$3 port=$4
    shift 4
    local procs=("$@")
    warm "$ns" "$host" "$port" || log "case $c: warm-up run failed"
    for dir in fwd rev; do
        local flag=""
        [ $dir = rev ] && flag=-R
        local before=() p i=0 perfpids=()
        for p in "${procs[@]}"; do before+=("$(cpu_ticks "$p")"); done
        if [ -n "$PERF" ] && [ $dir = fwd ] && [ "$c" != a ]; then
            for p in "${procs[@]}"; do
                perf record -g -F 499 -p "$p" -o "$PERF/perf-$c-$p.data" -- sleep "$T" \
                    > "$PERF/perf-$c-$p.log" 2>&1 &
                perfpids+=($!)
            done
        fi
        local drop_root drop_a drop_b
        drop_root=$(udp_rcvbuf_errs ""); drop_a=$(udp_rcvbuf_errs $NSA); drop_b=$(udp_rcvbuf_errs $NSB)
        local t0; t0=$(date +%s%N)
        local load; load=$(cut -d' ' -f1 /proc/loadavg)
        R[$c-$dir]=$(iperf_run "$c-$dir" "$ns" "$host" "$port" $flag)
        local t1; t1=$(date +%s%N)
        for p in "${perfpids[@]}"; do wait "$p"; done
        local wall_ms=$(( (t1 - t0) / 1000000 )) cpus=""
        for p in "${procs[@]}"; do
            local d=$(( $(cpu_ticks "$p") - before[i] ))
            cpus+="$(awk -v d=$d -v hz="$(getconf CLK_TCK)" -v w=$wall_ms \
                'BEGIN{printf "%.0f%%", 100 * d / hz / (w / 1000)}') "
            i=$((i + 1))
        done
        CPU[$c-$dir]="${cpus% }"
        R[$c-$dir-drops]="$(( $(udp_rcvbuf_errs "") - drop_root ))/$(( $(udp_rcvbuf_errs $NSA) - drop_a ))/$(( $(udp_rcvbuf_errs $NSB) - drop_b ))"
        R[$c-$dir-load]=$load
        log "case $c $dir: ${R[$c-$dir]} (Mbit/s, retransmits); CPU ${CPU[$c-$dir]}; UDP rcvbuf drops root/$NSA/$NSB ${R[$c-$dir-drops]}; load1 $load"
    done
}

# ---- (a) wireguard-go <-> wireguard-go ----
case " $CASES " in *" a "*)
    log "case a: wireguard-go ($NSA) -> wireguard-go ($NSB), iperf3 in $NSA -> 10.99.70.2:5201"
    measure a $NSA 10.99.70.2 5201 $pid_wga $pid_wgb
    ;;
esac

# ---- (b) nbproxy <-> wireguard-go ----
case " $CASES " in *" b "*)
    "$bin" --config "$work/nb-b.json" --log-level warn > "$work/nbproxy-b.log" 2>&1 &
    pid_nb=$!; pids+=($pid_nb)
    if wait_port 15201; then
        log "case b: host iperf3 -> nbproxy mapping 127.0.0.1:15201 -> wireguard-go ($NSB) 10.99.70.2:5201"
        measure b "" 127.0.0.1 15201 $pid_nb $pid_wgb
    else
        log "case b: nbproxy did not start (see $work/nbproxy-b.log)"
    fi
    stop_pids $pid_nb
    ;;
esac

# ---- (c) nbproxy <-> nbproxy ----
case " $CASES " in *" c "*)
    "$sink" --config "$work/nb-cB.json" --forward 5201:127.0.0.1:5202 --log-level warn \
        > "$work/sink-c.log" 2>&1 &
    pid_sink=$!; pids+=($pid_sink)
    wait_udp 51842 || log "case c: nb_tunnel_sink is not bound to UDP 51842 (see $work/sink-c.log)"
    "$bin" --config "$work/nb-cA.json" --log-level warn > "$work/nbproxy-c.log" 2>&1 &
    pid_nbA=$!; pids+=($pid_nbA)
    if wait_port 15202 && kill -0 $pid_sink 2>/dev/null; then
        log "case c: host iperf3 -> nbproxy A mapping 127.0.0.1:15202 -> nb_tunnel_sink B -> 127.0.0.1:5202"
        measure c "" 127.0.0.1 15202 $pid_nbA $pid_sink
    else
        log "case c: A or B did not start (see $work/nbproxy-c.log, $work/sink-c.log)"
    fi
    stop_pids $pid_nbA $pid_sink
    ;;
esac

# ---- report ----
base_f=${R[a-fwd]:-0}; base_f=${base_f%% *}
base_r=${R[a-rev]:-0}; base_r=${base_r%% *}
ratio() { # value base
    awk -v v="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && v + 0 > 0) printf "%.2f×", v / b; else print "-" }'
}
echo
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, kernel $(uname -r), iperf3 -t $T, one TCP stream, MTU $MTU,"\
     "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "nbproxy: $bin; nb_tunnel_sink: $sink"
echo
echo "| case | path | fwd Mbit/s | rev (-R) Mbit/s | fwd / (a) | rev / (a) | goal | retransmits fwd / rev | UDP rcvbuf drops root/nbb-a/nbb-b fwd; rev | CPU fwd / rev | load1 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for c in a b c; do
    case " $CASES " in *" $c "*) ;; *) continue ;; esac
    case $c in
    a) path="wireguard-go ↔ wireguard-go (netns ↔ netns)"; goal="baseline"; who="wg-go A, wg-go B" ;;
    b) path="host → nbproxy mapping → WireGuard → wireguard-go"; goal="≥ 1.5×"; who="nbproxy, wg-go" ;;
    c) path="host → nbproxy A → WireGuard (127.0.0.1) → nb_tunnel_sink B → host"; goal="≥ 3×"; who="A, B" ;;
    esac
    f=${R[$c-fwd]:-FAILED -}; r=${R[$c-rev]:-FAILED -}
    if [ $c = a ]; then rf="1.00×"; rr="1.00×"; else rf=$(ratio "${f%% *}" "$base_f"); rr=$(ratio "${r%% *}" "$base_r"); fi
    echo "| ($c) | $path | ${f%% *} | ${r%% *} | $rf | $rr | $goal | ${f##* } / ${r##* } | ${R[$c-fwd-drops]:-}; ${R[$c-rev-drops]:-} | $who: ${CPU[$c-fwd]:-} / ${CPU[$c-rev]:-} | ${R[$c-fwd-load]:-} / ${R[$c-rev-load]:-} |"
done
if [ -n "$PERF" ]; then
    for d in "$PERF"/perf-*.data; do
        [ -f "$d" ] || continue
        perf report -i "$d" --no-children --sort symbol --stdio 2> /dev/null | grep -v '^$' \
            | grep -E '^ +[0-9]' | head -40 > "${d%.data}.top.txt"
        perf report -i "$d" --no-children --sort dso --stdio 2> /dev/null | grep -E '^ +[0-9]' \
            | head -15 > "${d%.data}.dso.txt"
    done
    log "perf reports in $PERF"
fi
