#!/usr/bin/env bash
# RSS of one nbproxy process with N idle accounts (each its own UDP socket, WireGuard device and
# lwIP netif, one peer each, no traffic). Prints a markdown table row per N.
#   bench/idle_accounts.sh [N ...]      default: 1 100 1000
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
work=$(mktemp -d /tmp/nb-idle.XXXXXX)
trap 'rm -rf "$work"' EXIT
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
    "$bin" --config "$work/idle.json" --log-level warn > "$work/log" 2>&1 &
    pid=$!
    sleep 2
    if ! kill -0 $pid 2>/dev/null; then echo "nbproxy exited:"; cat "$work/log"; exit 1; fi
    r=$(rss_kib $pid)
    kill $pid; wait $pid 2>/dev/null || true
    if [ -z "$base" ]; then base=$r; per="-"; else per=$(( (r - base) / (n - 1) )); fi
    echo "| $n | $r | $per |"
done
