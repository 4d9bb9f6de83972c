#!/usr/bin/env bash
# RSS of one nbproxy process with N idle accounts (each its own UDP socket, WireGuard device and
# lwIP netif, one peer each, no traffic). Prints a markdown table row per N.
#   bench/idle_accounts.sh [N ...]      default: 1 100 1000
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
work=$(mktemp -d /tmp/nb-idle.XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 100 1000)

gen() { # N -> config file
    python3 - "$1" > "$work/idle.json" <<'PY'
import base64, json, os, sys
n = int(sys.argv[1])
k = lambda: base64.b64encode(os.urandom(32)).decode()
accts = []
for i in range(n):
    accts.append({"id": f"acct{i}", "wireguard": {
        "privateKey": k(), "addresses": [f"100.{64 + i // 65536 % 64}.{i // 256 % 256}.{i % 256}/16"],
        "peers": [{"publicKey": k(), "allowedIps": ["100.127.255.254/32"], "persistentKeepalive": 25}]}})
print(json.dumps({"accounts": accts, "mappings": []}))
PY
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

echo "| accounts | RSS (KiB) | RSS per account above the 1-account baseline (KiB) |"
echo "|---|---|---|"
base=""
for n in "${counts[@]}"; do
    gen "$n"
    "$bin" --config "$work/idle.json" --log-level info > "$work/log" 2>&1 &
    pid=$!
    # Start-up is complete when main logs "serving N account(s)"; give it 30 s.
    for _ in $(seq 300); do
        grep -q "serving $n account" "$work/log" && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
    done
    if ! kill -0 $pid 2>/dev/null; then echo "nbproxy exited:"; tail -5 "$work/log"; exit 1; fi
    if ! grep -q "serving $n account" "$work/log"; then
        echo "| $n | start-up did not complete in 30 s: $(grep -c 'WireGuard on UDP' "$work/log") accounts opened, RSS $(rss_kib $pid) KiB, state $(awk '{print $3}' /proc/$pid/stat) |  |"
        kill -9 $pid; wait $pid 2>/dev/null || true; pid=""
        continue
    fi
    sleep 2
    r=$(rss_kib $pid)
    kill $pid
    for _ in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    kill -9 $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    pid=""
    if [ -z "$base" ]; then base=$r; per="-"; else per=$(( (r - base) / (n - 1) )); fi
    echo "| $n | $r | $per |"
done
