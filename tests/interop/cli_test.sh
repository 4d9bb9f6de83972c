#!/usr/bin/env bash
# The binary as a user meets it: the demo answers curl and stops cleanly on SIGTERM; bad input
# on the command line or in the config file is a clear error and a non-zero exit.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
work=$(mktemp -d /tmp/nbt-cli.XXXXXX)
pass=0
fail=0
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
ok() { pass=$((pass + 1)); echo "[cli] PASS: $*"; }
bad() { fail=$((fail + 1)); echo "[cli] FAIL: $*"; }

expect_fail() { # description, expected text, command...
    local what=$1 want=$2
    shift 2
    local out rc
    out=$(timeout 10 "$@" 2>&1)
    rc=$?
    if [ $rc -ne 0 ] && grep -qF -- "$want" <<< "$out"; then ok "$what"; else
        bad "$what (rc=$rc, output: $out)"
    fi
}

# --- the demo ---
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --demo --demo-port "$port" > "$work/demo.out" 2> "$work/demo.err" &
pid=$!
for _ in $(seq 100); do grep -q "demo is up" "$work/demo.out" 2>/dev/null && break; sleep 0.05; done
grep -q "curl http://127.0.0.1:$port/" "$work/demo.out" && ok "demo prints how to reach it" \
    || bad "demo banner ($(cat "$work/demo.out" "$work/demo.err"))"
body=$(curl -sS --max-time 10 "http://127.0.0.1:$port/")
grep -q "hello from 100.64.0.2" <<< "$body" && ok "demo answers through its WireGuard tunnel" \
    || bad "demo answer: $body"
for i in 1 2 3 4 5; do curl -sS --max-time 5 -o /dev/null "http://127.0.0.1:$port/" || bad "demo request $i"; done
kill -TERM $pid
wait $pid
rc=$?
pid=""
[ $rc -eq 0 ] && ok "SIGTERM stops the demo with exit code 0" || bad "demo exit code $rc"
grep -q "stopped" "$work/demo.err" && ok "graceful stop logged" || bad "no stop log"

# --- command line ---
out=$("$bin" --version)
[[ "$out" =~ ^Version:\ [0-9.]+,\ Commit:\ .*,\ BuildDate:\ .*,\ Go:\ .*$ ]] && ok "--version format" \
    || bad "--version: $out"
"$bin" --help | grep -q "NB_PROXY_WG_PORT" && ok "--help lists flags with their env vars" || bad "--help"
expect_fail "unknown flag" "unknown flag: --no-such" "$bin" --no-such
expect_fail "bad flag value" "invalid value \"x\" for flag --wg-port" "$bin" --wg-port x
expect_fail "management mode without a token names NB_PROXY_TOKEN" "NB_PROXY_TOKEN is required" \
    env -u NB_PROXY_TOKEN "$bin"
expect_fail "missing config file" "cannot read $work/none.json" "$bin" --config "$work/none.json"
echo '{"accounts":[{"id":"a","wireguard":{"privateKey":"bad","addresses":["10.0.0.1/24"]}}]}' > "$work/bad.json"
expect_fail "bad key names the field" "accounts[0].wireguard.privateKey" "$bin" --config "$work/bad.json"
k=$(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')
cat > "$work/port.json" <<JSON
{"accounts":[{"id":"a","wireguard":{"privateKey":"$k","addresses":["10.0.0.1/24"]}}],
 "mappings":[{"id":"m","accountId":"a","mode":"tcp","listenPort":$port,"path":[{"target":"10.0.0.2:80"}]}]}
JSON
python3 -c "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0',$port)); s.listen(); open('$work/held','w').close(); time.sleep(15)" &
hold=$!
for _ in $(seq 200); do [ -f "$work/held" ] && break; sleep 0.05; done
expect_fail "a port in use stops start-up, naming the mapping" "mapping m: listen on port $port" \
    "$bin" --config "$work/port.json"
kill $hold 2>/dev/null; wait $hold 2>/dev/null

echo "[cli] $pass passed, $fail failed"
[ $fail = 0 ]
