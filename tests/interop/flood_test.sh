#!/usr/bin/env bash
# Bad input on the WireGuard port of a running nbproxy: a flood of garbage datagrams and a flood
# of handshake initiations with valid MAC1s. Nothing crashes, memory stays bounded, the flood
# of handshakes is answered with cookie replies (the device is "under load"), and the tunnel that
# was already up keeps serving. All traffic is on 127.0.0.1 and every loop is bounded.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
here=$top/tests/interop
bin=${NBPROXY_BIN:-$top/build/nbproxy}
work=$(mktemp -d /tmp/nbt-flood.XXXXXX)
pass=0
fail=0
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
ok() { pass=$((pass + 1)); echo "[flood] PASS: $*"; }
bad() { fail=$((fail + 1)); echo "[flood] FAIL: $*"; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --demo --demo-port "$port" > "$work/out" 2> "$work/err" &
pid=$!
for _ in $(seq 100); do grep -q "demo is up" "$work/out" 2>/dev/null && break; sleep 0.05; done
line=$(grep "account demo-backend: WireGuard on UDP" "$work/err")
wgport=$(sed -E 's/.*on UDP ([0-9]+),.*/\1/' <<< "$line")
pub=$(sed -E 's/.*public key ([A-Za-z0-9+\/=]+),.*/\1/' <<< "$line")
[ -n "$wgport" ] && [ -n "$pub" ] || { bad "could not read the backend's port/key: $line"; exit 1; }
curl -sS --max-time 10 -o /dev/null "http://127.0.0.1:$port/" && ok "tunnel up before the flood" \
    || bad "tunnel before the flood"
rss0=$(rss)

out=$(python3 "$here/wgflood.py" garbage 127.0.0.1 "$wgport" 200000 10 | tail -1)
kill -0 $pid 2>/dev/null && ok "alive after a garbage flood ($out)" || bad "died during garbage flood"

out=$(python3 "$here/wgflood.py" handshake 127.0.0.1 "$wgport" 60000 10 "$pub" | tail -1)
cookies=$(sed -E 's/.*cookies=([0-9]+).*/\1/' <<< "$out")
kill -0 $pid 2>/dev/null && ok "alive after a handshake flood ($out)" || bad "died during handshake flood"
[ "${cookies:-0}" -gt 0 ] && ok "handshake flood answered with cookie replies" \
    || bad "no cookie replies under a handshake flood ($out)"

rss1=$(rss)
grow=$((rss1 - rss0))
[ $grow -lt 16384 ] && ok "RSS grew $grow KiB over both floods (bound 16 MiB)" \
    || bad "RSS grew $grow KiB (from $rss0 to $rss1)"
for i in 1 2 3; do
    curl -sS --max-time 10 -o /dev/null "http://127.0.0.1:$port/" || { bad "tunnel after the flood ($i)"; break; }
    [ $i = 3 ] && ok "the established tunnel still serves after the floods"
done

echo "[flood] $pass passed, $fail failed"
[ $fail = 0 ]
