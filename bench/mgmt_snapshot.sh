#!/usr/bin/env bash
# The management snapshot (issue 5): nbproxy connects to the management double
# (tests/mgmt/management.js) and receives N mappings in batches of B over SyncMappings, acking
# each batch. Measures, per run:
#   - nbproxy's own figure: "initial sync complete: N service(s), M ms" (stream open ->
#     initial_sync_complete applied);
#   - the double's: first init received -> ack of the last batch, and per batch the time the double
#     took to build and send it and the time until nbproxy's ack (nbproxy decoding and applying);
#   - nbproxy's CPU time (utime + stime) from before the stream to initial sync complete;
#   - nbproxy's VmRSS after start-up (retrying, before any stream) and after the snapshot (and the
#     status updates it triggered) have settled; per mapping = delta / N; VmHWM.
# Goals (issue 5): <= 1 s and <= 2 KiB per mapping for 10 000 mappings.
#
#   bench/mgmt_snapshot.sh [--n N] [--batch B] [--accounts A] [--mode http|tcp] [--runs R]
#     defaults: 10000 mappings, batches of 500, 100 accounts, http, 3 runs.
# http: HTTP mappings, one path each, a direct_upstream target on 127.0.0.1 (nothing is
# requested). tcp: tcp mappings, each a listener on its own port (nbproxy binds them on every
# interface in management mode), so the tcp runs happen inside a network namespace with only a
# loopback interface (root needed). Everything else listens on 127.0.0.1 (ports 18750-18753).
# NBPROXY_BIN (default build/nbproxy); the double and nbproxy are pinned to different CPUs when
# taskset exists. Prints one markdown table row per run.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
double=$top/tests/mgmt/management.js
n=10000 batch=500 accounts=100 mode=http runs=3
while [ $# -gt 0 ]; do
    case $1 in
    --n) n=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --accounts) accounts=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: $0 [--n N] [--batch B] [--accounts A] [--mode http|tcp] [--runs R]" >&2; exit 2 ;;
    esac
done
for v in $(compgen -e | grep '^NB_PROXY_'); do unset "$v"; done
work=$(mktemp -d /tmp/nb-mgmtsnap.XXXXXX)
MP=18750 MC=18751 HP=18752
NS=nbbm-snap
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [ "$mode" = tcp ] && ip netns del $NS 2>/dev/null
    [ "${NBT_KEEP:-0}" = 1 ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

inns=()
if [ "$mode" = tcp ]; then
    ip netns add $NS
    ip -n $NS link set lo up
    inns=(ip netns exec $NS)
fi
pin_double=() pin_nb=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin_double=(taskset -c 0); pin_nb=(taskset -c 1); fi

python3 - "$work/services.json" "$n" "$accounts" "$mode" <<'PY'
import json, sys
out, n, a, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
svcs = []
for i in range(n):
    s = {"id": "svc-%05d" % i, "account_id": "acct-%03d" % (i % a)}
    if mode == "tcp":
        s.update(mode="tcp", domain="t%d.bench.test" % i, listen_port=20000 + i, path=[{"path": "", "target": "127.0.0.1:9"}])
    else:
        s.update(mode="http", domain="s%d.bench.test" % i,
                 path=[{"path": "/", "target": "http://127.0.0.1:9/", "options": {"direct_upstream": True}}])
    svcs.append(s)
json.dump(svcs, open(out, "w"))
PY

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
cpu_ms() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) * 1000 / t}' "/proc/$1/stat"; }
tok=$(node "$double" --mint)

echo "| run | mode | mappings | batch | accounts | nbproxy: stream open -> sync complete (ms) | double: init -> last ack (ms) | per batch: double send / ack after sent (ms, min-max) | CPU nbproxy / double (ms) | nbproxy metrics: snapshot / Σ batches / Σ CreateProxyPeer (ms) | VmRSS before (KiB) | VmRSS after (KiB) | per mapping (B) | VmHWM (KiB) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for run in $(seq "$runs"); do
    : > "$work/nb.err"
    "${inns[@]}" env NB_PROXY_TOKEN="$tok" NB_PROXY_ALLOW_INSECURE=true "${pin_nb[@]}" "$bin" --mgmt http://127.0.0.1:$MP \
        --domain bench.test --health-addr 127.0.0.1:$HP --http-addr 127.0.0.1:18753 > /dev/null 2> "$work/nb.err" &
    nbpid=$!
    pids+=($nbpid)
    # the process inside `ip netns exec` is nbproxy itself (exec), so $! is its pid
    sleep 2
    before=$(kib $nbpid VmRSS)
    cpu0=$(cpu_ms $nbpid)
    "${inns[@]}" "${pin_double[@]}" node "$double" --port $MP --control-port $MC --token "$tok" --services "$work/services.json" \
        --batch "$batch" --auth-fail-limit 0 ${LEAN:+--lean} > "$work/d.out" 2> "$work/d.err" &
    dpid=$!
    pids+=($dpid)
    sleep 0.3
    dcpu0=$(cpu_ms $dpid)
    for _ in $(seq 1200); do grep -q 'initial sync complete' "$work/nb.err" && break; sleep 0.05; done
    grep -q 'initial sync complete' "$work/nb.err" || { echo "no initial sync within 60 s:"; tail -5 "$work/nb.err"; exit 1; }
    cpu1=$(cpu_ms $nbpid)
    dcpu1=$(cpu_ms $dpid)
    # let the status updates of the snapshot drain, then read memory
    sleep 3
    after=$(kib $nbpid VmRSS)
    hwm=$(kib $nbpid VmHWM)
    "${inns[@]}" curl -s --max-time 10 http://127.0.0.1:$HP/metrics > "$work/metrics.txt" || true
    for _ in $(seq 300); do
        "${inns[@]}" curl -s --max-time 10 http://127.0.0.1:$MC/state > "$work/state.json"
        grep -q '"snapshot_ms"' "$work/state.json" && break
        sleep 0.1
    done
    kill $nbpid $dpid 2>/dev/null || true
    wait $nbpid 2>/dev/null || true
    wait $dpid 2>/dev/null || true
    python3 - "$work/state.json" "$work/nb.err" "$work/metrics.txt" "$run" "$mode" "$n" "$batch" "$accounts" "$before" "$after" "$hwm" \
        "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {print b - a}')" "$(awk -v a="$dcpu0" -v b="$dcpu1" 'BEGIN {print b - a}')" <<'PY'
import json, re, sys
st = json.load(open(sys.argv[1]))
log = open(sys.argv[2]).read()
met = dict(re.findall(r"^(\S+) (\S+)$", open(sys.argv[3]).read(), re.M))
run, mode, n, batch, accts, before, after, hwm, cpu, dcpu = sys.argv[4:]
m = re.search(r"initial sync complete: (\d+) service\(s\), (\d+) ms", log)
c = st["connections"][0]
b = [x for x in st["batches"] if x["conn"] == c["conn"]]
a = [x for x in st["acks"] if x["conn"] == c["conn"]]
send = [x["written_t"] - x["t"] for x in b]
apply_ = [a[i]["t"] - b[i]["written_t"] for i in range(min(len(a), len(b)))]
assert int(m.group(1)) == int(n), "nbproxy stored %s services, not %s" % (m.group(1), n)
per = (int(after) - int(before)) * 1024 / int(n)
print("| %s | %s | %s | %s | %s | %s | %.0f | %.0f-%.0f / %.0f-%.0f | %.0f / %.0f | %s / %s / %s | %s | %s | %.0f | %s |" % (
    run, mode, n, batch, accts, m.group(2), c["snapshot_ms"], min(send), max(send), min(apply_), max(apply_),
    float(cpu), float(dcpu), met.get("proxy_sync_snapshot_duration_ms_sum", "?"),
    met.get("proxy_sync_batch_duration_ms_sum", "?"), met.get('proxy_peer_add_duration_ms_sum{result="success"}', "?"),
    before, after, per, hwm))
print("<!-- run %s: per batch, double send (ms): %s; ack after sent (ms): %s; status updates recorded: %d; "
      "CreateProxyPeer: %d -->" % (run, [round(x) for x in send], [round(x) for x in apply_], len(st["statuses"]),
                                    len(st["peers"])), file=sys.stderr)
PY
done
