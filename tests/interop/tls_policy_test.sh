#!/usr/bin/env bash
# The TLS policy of nbproxy's main listener as testssl (Debian's testssl.sh 3.0.8, a third-party
# scanner driving OpenSSL and its own sockets) sees it: only TLS 1.2 and 1.3; no NULL, aNULL,
# export, LOW, 3DES/IDEA or CBC suites; every suite forward secret (ECDHE or TLS 1.3); ECDHE
# only on X25519, P-256, P-384; ALPN h2 and http/1.1. Twice: with the self-signed ECDSA
# certificate of standalone mode, and with a static RSA certificate (the ECDHE-RSA suites).
#
#   127.0.0.1:18530 nbproxy --addr (ECDSA)   127.0.0.1:18532 nbproxy --addr (RSA)
# Everything on 127.0.0.1; processes stopped by PID. NBT_KEEP=1 keeps the work directory.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
work=$(mktemp -d /tmp/nbt-tlspol.XXXXXX)
pids=()
pass=0
fail=0

log() { printf '[tls-policy] %s\n' "$*"; }
ok() { pass=$((pass + 1)); log "PASS: $*"; }
bad() { fail=$((fail + 1)); log "FAIL: $*"; }

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    if [ "${NBT_KEEP:-0}" = 1 ]; then echo "[tls-policy] work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

wait_port() { # port: up to 10 s
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
    return 1
}

for t in testssl wg openssl python3; do
    command -v $t >/dev/null || { log "$t is not installed (scripts/install-deps.sh --test)"; echo "[tls-policy] 0 passed, 1 failed"; exit 1; }
done
cd "$work" || exit 1
umask 077
wg genkey > acct.key
umask 022
cat > nb.json <<JSON
{ "accounts": [ { "id": "a", "wireguard": { "privateKey": "$(cat acct.key)", "addresses": ["10.99.172.1/24"] } } ],
  "mappings": [ { "id": "web", "accountId": "a", "domain": "tls.test",
                  "path": [{ "path": "/", "target": "http://127.0.0.1:18531/", "options": { "directUpstream": true } }] } ] }
JSON
mkdir rsa
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=tls.test -addext subjectAltName=DNS:tls.test \
    -keyout rsa/tls.key -out rsa/tls.crt 2>/dev/null

# scan NAME PORT [nbproxy args...]: starts nbproxy, runs testssl, writes NAME.json
scan() {
    local name=$1 port=$2
    shift 2
    "$bin" --config nb.json --addr 127.0.0.1:$port "$@" > "$name.log" 2>&1 &
    local p=$!
    pids+=($p)
    if ! wait_port $port; then
        bad "$name: nbproxy did not start: $(tail -3 "$name.log")"
        return 1
    fi
    # -p protocols, -s cipher categories, -f forward secrecy (and curves), -e every cipher
    testssl --quiet --color 0 --warnings off --sneaky -p -s -f -e --jsonfile "$name.json" \
        127.0.0.1:$port > "$name.out" 2>&1
    kill $p 2>/dev/null
    wait $p 2>/dev/null
    [ -s "$name.json" ] || { bad "$name: testssl wrote no result: $(tail -5 "$name.out")"; return 1; }
}

check_scan() { # name, key type
    python3 - "$1" "$2" <<'PY'
import json, sys
name, kt = sys.argv[1], sys.argv[2]
d = json.load(open(name + ".json"))
rows = d if isinstance(d, list) else [r for s in d.get("scanResult", []) for v in s.values() if isinstance(v, list) for r in v]
f = {r["id"]: r["finding"] for r in rows if "id" in r and "finding" in r}
def check(cond, what, got=None):
    print(("PASS: " if cond else "FAIL: ") + "%s: %s%s" % (name, what, "" if cond else " (got %r)" % (got,)))
for p in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
    check(f.get(p) == "not offered", p + " not offered", f.get(p))
check(f.get("TLS1_2") == "offered", "TLS 1.2 offered", f.get("TLS1_2"))
check((f.get("TLS1_3") or "").startswith("offered"), "TLS 1.3 offered", f.get("TLS1_3"))
for c in ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
          "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"):
    check(f.get(c) == "not offered", c + (" (obsolete CBC suites)" if c.endswith("AVERAGE") else "") + " not offered", f.get(c))
suites = [v.split()[1] for k, v in f.items() if k.startswith("cipher_x")]
check(len(suites) >= 5, "at least 5 suites enumerated (%s)" % " ".join(suites), suites)
check(all(s.startswith("TLS_") or s.startswith("ECDHE-") for s in suites), "every suite forward secret (ECDHE or TLS 1.3)", suites)
check(all("GCM" in s or "CHACHA20" in s for s in suites), "every suite AEAD (GCM or ChaCha20-Poly1305)", suites)
check(all(s.startswith("TLS_") or ("-" + kt + "-") in s for s in suites), "TLS 1.2 suites authenticate with the %s key" % kt, suites)
curves = set((f.get("PFS_ECDHE_curves") or "").split())
check(curves and curves <= {"X25519", "prime256v1", "secp384r1"}, "ECDHE only on X25519, P-256, P-384 (%s)" % " ".join(sorted(curves)), curves)
check(f.get("ALPN_HTTP2") == "h2" and "http/1.1" in (f.get("ALPN") or ""), "ALPN h2 and http/1.1", (f.get("ALPN_HTTP2"), f.get("ALPN")))
PY
}

run() { # name, port, key type, nbproxy args...
    local name=$1 port=$2 kt=$3
    shift 3
    scan "$name" "$port" "$@" || return
    while IFS= read -r line; do
        case $line in
        PASS:*) ok "${line#PASS: }" ;;
        FAIL:*) bad "${line#FAIL: }" ;;
        *) log "$line" ;;
        esac
    done < <(check_scan "$name" "$kt")
}

run ecdsa 18530 ECDSA
run rsa 18532 RSA --cert-dir "$work/rsa"
grep -q "SELF-SIGNED" ecdsa.log && ok "ecdsa: standalone without certificates serves the self-signed ECDSA one (logged)" ||
    bad "ecdsa: no self-signed notice: $(tail -3 ecdsa.log)"
echo "[tls-policy] $pass passed, $fail failed"
[ $fail -eq 0 ]
