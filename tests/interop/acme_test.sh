#!/usr/bin/env bash
# The ACME client (acme/) against Debian's pebble and pebble-challtestsrv (real-peers.md §2).
# acme_e2e (tests/unit/acme/acme_e2e.c) runs the manager on the loop with a TLS listener whose
# certificate selector calls acme_challenge_cert()/acme_cert_for() (port 18605 = pebble's
# tlsPort) and an HTTP listener answering acme_mgr_http01() (18604 = pebble's httpPort).
# challtestsrv answers every A query with 127.0.0.1. Everything on 127.0.0.1; every process is
# stopped by PID.
#
#   18600 pebble ACME   18601 pebble management   18602 challtestsrv DNS   18603 its management
#   18604 http-01 (acme_e2e, nbproxy --acme-addr)   18605 tls-alpn-01 + HTTPS (acme_e2e, nbproxy --addr)
#   18606 the upstream of nbproxy's mapping (python3 http.server)   18607 nbproxy --health-addr
#   (NBT_ACME_PORT_BASE moves all eight, e.g. to run beside another copy of this script)
#
# Checks: 1 tls-alpn-01 issuance, curl trusting pebble's root; 2 http-01 (tls-alpn-01 refused for
# that name, so the manager falls back to http-01 on a new order), curl; 3 cache layout (0700 /
# 0600, EC key then chain, openssl verify of the chain, no transient files left); 4 the http-01
# handler rules on --acme-addr (403/404/200/302/400); 5 restart: both certificates from the
# cache, no new order at pebble; 6 the flock lock: no order while another holder has
# <domain>.lock, a certificate the other holder writes is picked up by the 5 s disk poll,
# issuance once the lock is released; 7 pebble with externalAccountBindingRequired: refused
# without EAB, issued with --eab-kid/--eab-key (HS256); 8 renewal with 30 s certificates
# (pebble's certificateValidityPeriod): a second order once a third of the lifetime is left;
# 9 nbproxy itself with --acme-certs: issuance on its TLS listener, HTTPS (h2) to a mapping, the
# --acme-addr rules, a restart from the cache without a new order.
# Pebble rejects 5 % of good nonces in phase 2 (its default), so badNonce retries are exercised.
# NBT_KEEP=1 keeps the work directory.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
e2e=${ACME_E2E_BIN:-$(dirname "$bin")/tests/unit/acme/acme_e2e}
work=$(mktemp -d /tmp/nbt-acme.XXXXXX)
B=${NBT_ACME_PORT_BASE:-18600}
AP=$B AM=$((B + 1)) DNS=$((B + 2)) DM=$((B + 3)) HP=$((B + 4)) TP=$((B + 5)) UP=$((B + 6)) MP=$((B + 7))
pids=()
pass=0
fail=0

log() { printf '[acme] %s\n' "$*"; }
ok() { pass=$((pass + 1)); log "PASS: $*"; }
bad() { fail=$((fail + 1)); log "FAIL: $*"; }
check() { # description, command...
    local d=$1
    shift
    if "$@"; then ok "$d"; else bad "$d"; fi
}

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    if [ "${NBT_KEEP:-0}" = 1 ]; then echo "[acme] work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

wait_for() { # seconds, command...: polls every 100 ms
    local end=$(($(date +%s%N) / 1000000 + $1 * 1000))
    shift
    until "$@" 2>/dev/null; do
        [ $(($(date +%s%N) / 1000000)) -ge $end ] && return 1
        sleep 0.1
    done
}
port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
count() { grep -c -- "$1" "$2" 2>/dev/null || true; }

if ! command -v pebble >/dev/null || ! command -v pebble-challtestsrv >/dev/null; then
    log "pebble not installed (scripts/install-deps.sh --test)"
    echo "[acme] 0 passed, 1 failed"
    exit 1
fi
if [ ! -x "$e2e" ]; then
    log "acme_e2e not built: $e2e"
    echo "[acme] 0 passed, 1 failed"
    exit 1
fi

# pebble's own HTTPS certificate (the Debian package does not ship test/certs)
cd "$work" || exit 1
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout minica.key \
    -out minica.pem -days 2 -subj "/CN=acme test minica" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out srv.csr \
    -subj "/CN=localhost" 2>/dev/null
printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" >ext.cnf
openssl x509 -req -in srv.csr -CA minica.pem -CAkey minica.key -CAcreateserial -out cert.pem \
    -days 2 -extfile ext.cnf 2>/dev/null

EAB_KID=kid-1
EAB_KEY=zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W
pebble_config() { # file, extra JSON members
    cat >"$1" <<EOF
{ "pebble": { "listenAddress": "127.0.0.1:$AP", "managementListenAddress": "127.0.0.1:$AM",
  "certificate": "$work/cert.pem", "privateKey": "$work/key.pem",
  "httpPort": $HP, "tlsPort": $TP, "ocspResponderURL": "" $2 } }
EOF
}
pebble_config pebble-a.json ', "externalAccountBindingRequired": false'
pebble_config pebble-b.json ', "externalAccountBindingRequired": true, "externalAccountMACKeys": { "'$EAB_KID'": "'$EAB_KEY'" }, "certificateValidityPeriod": 30'

pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 127.0.0.1:$DNS -http01 "" \
    -https01 "" -tlsalpn01 "" -management 127.0.0.1:$DM >challtestsrv.log 2>&1 &
pids+=($!)

PEBBLE_PID=
start_pebble() { # config, log, env...
    local cfg=$1 lg=$2
    shift 2
    env PEBBLE_VA_NOSLEEP=1 PEBBLE_AUTHZREUSE=0 "$@" pebble -config "$cfg" -dnsserver 127.0.0.1:$DNS >"$lg" 2>&1 &
    PEBBLE_PID=$!
    pids+=($PEBBLE_PID)
    wait_for 10 curl -sf --cacert minica.pem https://127.0.0.1:$AP/dir -o /dev/null &&
        curl -sf --cacert minica.pem https://127.0.0.1:$AM/roots/0 -o "$work/root-$lg.pem"
}
stop_pid() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

E2E_PID=
start_e2e() { # out-file, args...
    local out=$1
    shift
    "$e2e" --dir https://127.0.0.1:$AP/dir --ca "$work/minica.pem" --tls-port $TP --http-port $HP "$@" \
        >"$out" 2>"$out.err" &
    E2E_PID=$!
    pids+=($E2E_PID)
    wait_for 5 grep -q STARTED "$out"
}
ready() { grep -q "^READY $1 issued=$2" "$3"; }
hello() { # name, root: the HTTPS answer through the certificate
    curl -sS --max-time 5 --cacert "$2" --resolve "$1:$TP:127.0.0.1" "https://$1:$TP/" 2>&1
}

# ---- phase 1: pebble without EAB ----
start_pebble pebble-a.json pebble-a.log PEBBLE_WFE_NONCEREJECT=0 || bad "pebble did not start"
ROOT=$work/root-pebble-a.log.pem
D1=$work/certs1
T=t.acme.test H=h.acme.test
start_e2e e2e-1.out --cert-dir "$D1" --http01 --no-alpn $H $T $H || bad "acme_e2e did not start"

# 1 tls-alpn-01
if wait_for 60 ready $T 1 e2e-1.out; then
    check "1 tls-alpn-01: certificate for $T issued; curl trusting pebble's root gets 'ok $T'" \
        test "$(hello $T "$ROOT")" = "ok $T"
    check "1 $T was validated without any http-01 request (pebble log)" \
        test "$(count "validate w/ HTTP: http://$T" pebble-a.log)" = 0
else
    bad "1 no certificate for $T: $(tail -3 e2e-1.out.err)"
fi
# 2 http-01 (tls-alpn-01 refused by the selector for $H)
if wait_for 60 ready $H 1 e2e-1.out; then
    check "2 http-01: certificate for $H issued after the tls-alpn-01 order failed; curl ok" \
        test "$(hello $H "$ROOT")" = "ok $H"
    check "2 pebble validated $H over http-01 on :$HP" \
        test "$(count "validate w/ HTTP: http://$H:$HP/.well-known/acme-challenge/" pebble-a.log)" -gt 0
else
    bad "2 no certificate for $H: $(tail -3 e2e-1.out.err)"
fi
check "1 curl refuses the certificate without pebble's root (not trusted by default)" \
    bash -c "! curl -s --max-time 5 --resolve $T:$TP:127.0.0.1 https://$T:$TP/ >/dev/null"

# 3 cache layout
check "3 cert dir is 0700" test "$(stat -c %a "$D1")" = 700
check "3 cache files are 0600" test -z "$(find "$D1" -type f ! -perm 600)"
check "3 <domain> = EC PRIVATE KEY then CERTIFICATE chain" \
    bash -c "head -1 '$D1/$T' | grep -q 'BEGIN EC PRIVATE KEY' && test \$(grep -c 'BEGIN CERTIFICATE' '$D1/$T') -ge 2"
check "3 acme_account+key holds an EC key" grep -q 'BEGIN EC PRIVATE KEY' "$D1/acme_account+key"
awk '/BEGIN CERTIFICATE/{n++} n==1' "$D1/$T" >leaf.pem
awk '/BEGIN CERTIFICATE/{n++} n>=2' "$D1/$T" >inter.pem
check "3 openssl verify: leaf -> intermediate -> pebble root, SAN $T" \
    bash -c "openssl verify -CAfile '$ROOT' -untrusted inter.pem leaf.pem >/dev/null && openssl x509 -in leaf.pem -noout -ext subjectAltName | grep -q 'DNS:$T'"
check "3 leaf key is ECDSA P-256" bash -c "openssl x509 -in leaf.pem -noout -text | grep -q 'prime256v1'"
check "3 no transient +token / +http-01 files left" test -z "$(ls "$D1" | grep -E '\+token$|\+http-01$')"

# 4 http-01 handler rules
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@"; }
check "4 unknown host on the challenge path -> 403" \
    test "$(code -H 'Host: other.test' http://127.0.0.1:$HP/.well-known/acme-challenge/abc)" = 403
check "4 known host, unknown token -> 404" \
    test "$(code -H "Host: $T" http://127.0.0.1:$HP/.well-known/acme-challenge/abc)" = 404
check "4 GET elsewhere -> 302 to https://host:443/uri when a port was given" \
    test "$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -H "Host: $T:$HP" "http://127.0.0.1:$HP/a/b?c=d")" = "302 https://$T:443/a/b?c=d"
check "4 POST elsewhere -> 400 Use HTTPS" \
    test "$(curl -s -X POST -d x -H "Host: $T" http://127.0.0.1:$HP/a)" = "Use HTTPS"

# 5 restart: no new order
orders_before=$(count "Added order" pebble-a.log)
stop_pid $E2E_PID
check "5 first run made its orders (STATS orders >= 3: tls-alpn, failed tls-alpn, http-01)" \
    bash -c "grep -Eq '^STATS orders=([3-9]|[1-9][0-9])' e2e-1.out"
start_e2e e2e-2.out --cert-dir "$D1" --http01 $H $T || bad "acme_e2e restart failed"
if wait_for 10 bash -c "grep -q '^READY $T issued=0' e2e-2.out && grep -q '^READY $H issued=0' e2e-2.out"; then
    check "5 restart: both served from the cache, curl ok" \
        bash -c "test \"\$(curl -sS --cacert '$ROOT' --resolve $T:$TP:127.0.0.1 https://$T:$TP/)\" = 'ok $T' && test \"\$(curl -sS --cacert '$ROOT' --resolve $H:$TP:127.0.0.1 https://$H:$TP/)\" = 'ok $H'"
else
    bad "5 restart did not load the cache: $(tail -3 e2e-2.out.err)"
fi
stop_pid $E2E_PID
check "5 restart: no new order at pebble, STATS orders=0 from_cache=2" \
    bash -c "test $(count 'Added order' pebble-a.log) = $orders_before && grep -q '^STATS orders=0 issued=0 from_cache=2' e2e-2.out"

# 6 the flock lock (another replica): L1 is finished by the other replica (its cache entry
# appears while the lock is held: the disk poll picks it up); L2's lock is released without an
# entry, then the order runs.
L1=l1.acme.test L2=l2.acme.test
python3 -c 'import fcntl, sys, time
fs = [open(p, "a") for p in sys.argv[1:]]
for f in fs:
    fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)' "$D1/$L1.lock" "$D1/$L2.lock" >holder.out &
HOLDER=$!
pids+=($HOLDER)
wait_for 5 grep -q locked holder.out
orders_before=$(count "Added order" pebble-a.log)
start_e2e e2e-3.out --cert-dir "$D1" $L1 $L2 || bad "acme_e2e (lock) did not start"
sleep 2
check "6 while another process holds the locks: no order, no certificate" \
    bash -c "test $(count 'Added order' pebble-a.log) = $orders_before && ! grep -q '^READY' e2e-3.out"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout l1.key -out l1.pem \
    -days 30 -subj "/CN=$L1" -addext "subjectAltName=DNS:$L1" 2>/dev/null
openssl ec -in l1.key -out l1.entry 2>/dev/null && cat l1.pem >>l1.entry && chmod 600 l1.entry &&
    mv l1.entry "$D1/$L1"
check "6 the other replica's certificate for $L1 is picked up from the cache (lock still held)" \
    wait_for 15 ready $L1 0 e2e-3.out
check "6 ... and served: the selector gives that certificate" \
    bash -c "echo | openssl s_client -connect 127.0.0.1:$TP -servername $L1 2>/dev/null | openssl x509 -noout -fingerprint | cmp -s - <(openssl x509 -in l1.pem -noout -fingerprint)"
check "6 no order for $L1" test "$(count 'Added order' pebble-a.log)" = "$orders_before"
stop_pid $HOLDER
check "6 once the lock on $L2 is released the certificate is issued" wait_for 30 ready $L2 1 e2e-3.out
stop_pid $E2E_PID
stop_pid $PEBBLE_PID

# ---- phase 2: pebble with EAB required, 30 s certificates, default nonce rejection ----
start_pebble pebble-b.json pebble-b.log || bad "pebble (EAB) did not start"
ROOT=$work/root-pebble-b.log.pem
R=r.acme.test
start_e2e e2e-4.out --cert-dir "$work/certs2" --retry-ms 600000 $R || bad "acme_e2e did not start"
check "7 EAB required, none given: the attempt fails with a clear error" \
    wait_for 15 grep -q "requires external account binding" e2e-4.out.err
stop_pid $E2E_PID
start_e2e e2e-5.out --cert-dir "$work/certs2" --eab-kid $EAB_KID --eab-key $EAB_KEY $R ||
    bad "acme_e2e (EAB) did not start"
if wait_for 60 ready $R 1 e2e-5.out; then
    ok "7 EAB (HS256 over the account JWK) accepted: certificate for $R issued"
    check "7 curl ok with the EAB-issued certificate" test "$(hello $R "$ROOT")" = "ok $R"
    awk '/BEGIN CERTIFICATE/{n++} n==1' "$work/certs2/$R" >leaf2.pem
    nb=$(date -d "$(openssl x509 -in leaf2.pem -noout -startdate | cut -d= -f2)" +%s)
    na=$(date -d "$(openssl x509 -in leaf2.pem -noout -enddate | cut -d= -f2)" +%s)
    log "certificate lifetime $((na - nb)) s"
    check "8 renewal: a second certificate is issued before the first expires" \
        wait_for 60 bash -c "test \$(grep -c '^READY $R issued=1' e2e-5.out) -ge 2"
    awk '/BEGIN CERTIFICATE/{n++} n==1' "$work/certs2/$R" >leaf3.pem
    check "8 the cache holds the renewed certificate (new serial)" \
        test "$(openssl x509 -in leaf2.pem -noout -serial)" != "$(openssl x509 -in leaf3.pem -noout -serial)"
else
    bad "7 no certificate with EAB: $(tail -3 e2e-5.out.err)"
fi
stop_pid $E2E_PID
check "8 STATS renewals >= 1" grep -Eq '^STATS .*renewals=[1-9]' e2e-5.out

# ---- phase 3: nbproxy itself (--acme-certs) on its main TLS listener ----
# Standalone nbproxy with an HTTP mapping for $N: the certificate comes from pebble through
# tls-alpn-01 answered on --addr (pebble's tlsPort), the CA's HTTPS trusted through
# SSL_CERT_FILE as Go does; then HTTPS (h2) to the mapping with curl trusting pebble's root,
# --acme-addr's http-01 rules, and a restart served from the --cert-dir cache with no new order.
N=n.acme.test
stop_pid $PEBBLE_PID
start_pebble pebble-a.json pebble-c.log PEBBLE_WFE_NONCEREJECT=0 || bad "pebble did not start (phase 3)"
ROOT=$work/root-pebble-c.log.pem
mkdir -p www && echo "hello from the upstream" > www/hello.txt
python3 -m http.server $UP --bind 127.0.0.1 --directory www > upstream.log 2>&1 &
pids+=($!)
wg genkey > nb.key 2>/dev/null || bad "wg genkey failed"
cat > nb.json <<JSON
{ "accounts": [ { "id": "a", "wireguard": { "privateKey": "$(cat nb.key)", "addresses": ["10.99.170.1/24"] } } ],
  "mappings": [ { "id": "web", "accountId": "a", "domain": "$N",
                  "path": [{ "path": "/", "target": "http://127.0.0.1:$UP/", "options": { "directUpstream": true } }] } ] }
JSON
NB_PID=
metric() { curl -sS --max-time 5 "http://127.0.0.1:$MP/metrics" | awk -v k="$1" '$1 == k {print $2}'; }
start_nb() { # log
    env SSL_CERT_FILE="$work/minica.pem" "$bin" --config nb.json --addr 127.0.0.1:$TP --acme-certs \
        --acme-dir https://127.0.0.1:$AP/dir --cert-dir "$work/certs-nb" --acme-challenge-type http-01 \
        --acme-addr 127.0.0.1:$HP --health-addr 127.0.0.1:$MP > "$1" 2>&1 &
    NB_PID=$!
    pids+=($NB_PID)
}
start_nb nb-1.log
if wait_for 60 grep -q "$N: certificate issued" nb-1.log; then
    ok "9 nbproxy --acme-certs: certificate for $N issued by pebble"
    out=$(curl -sS --max-time 5 --cacert "$ROOT" --resolve "$N:$TP:127.0.0.1" -w ' %{http_version}' "https://$N:$TP/hello.txt" 2>&1)
    check "9 HTTPS to the mapping with curl trusting pebble's root, over h2: $(echo $out)" test "$out" = $'hello from the upstream\n 2'
    check "9 $N validated over tls-alpn-01 on --addr (no http-01 request in pebble's log)" \
        test "$(count "validate w/ HTTP: http://$N" pebble-c.log)" = 0
    check "9 the cache holds $N (EC key then chain) in --cert-dir" \
        bash -c "head -1 '$work/certs-nb/$N' | grep -q 'BEGIN EC PRIVATE KEY'"
    code=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -H "Host: $N" "http://127.0.0.1:$HP/x?y=1")
    check "9 --acme-addr: other GETs are redirected to HTTPS ($code)" test "$code" = "302 https://$N/x?y=1"
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: other.test" "http://127.0.0.1:$HP/.well-known/acme-challenge/abc")
    check "9 --acme-addr: a challenge for an unregistered host is 403 ($code)" test "$code" = 403
    n=$(metric proxy_certificate_issue_duration_ms_count)
    check "9 /metrics: proxy_certificate_issue_duration_ms counts the one issuance ($n)" test "$n" = 1
    s=$(metric proxy_certificate_issue_duration_ms_sum)
    check "9 /metrics: the issuance took more than 0 ms and under the 5 min deadline ($s)" \
        awk -v s="$s" 'BEGIN { exit !(s > 0 && s < 300000) }'
else
    bad "9 nbproxy got no certificate for $N: $(tail -5 nb-1.log)"
fi
stop_pid $NB_PID
orders=$(count 'Added order' pebble-c.log)
start_nb nb-2.log
check "9 restart: the certificate is loaded from the cache" wait_for 15 grep -q "$N: certificate loaded from the cache" nb-2.log
out=$(curl -sS --max-time 5 --cacert "$ROOT" --resolve "$N:$TP:127.0.0.1" "https://$N:$TP/hello.txt" 2>&1)
check "9 restart: HTTPS still verifies with pebble's root" test "$out" = "hello from the upstream"
check "9 restart: no new order at pebble" test "$(count 'Added order' pebble-c.log)" = "$orders"
n=$(metric proxy_certificate_issue_duration_ms_count)
check "9 restart: a certificate from the cache is not an issuance (count $n)" test "$n" = 0
stop_pid $NB_PID
check "9 nbproxy logged no secret (no PRIVATE KEY material in its logs)" bash -c "! grep -q 'PRIVATE KEY' nb-1.log nb-2.log"
stop_pid $PEBBLE_PID

# sanitizer builds (NBPROXY_BIN from build-*-asan): no report in any acme_e2e run
check "no AddressSanitizer / LeakSanitizer / UBSan report from acme_e2e" \
    bash -c "! grep -lE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' e2e-*.out.err nb-*.log"

echo "[acme] $pass passed, $fail failed"
[ $fail -eq 0 ]
