#!/usr/bin/env bash
# The main TLS listener, its SNI router, certificates and the PROXY protocol from the outside,
# against real third-party counterparts: curl and Python's ssl module (TLS clients), OpenSSL
# (s_client, s_server as a passthrough backend, certificates made with `openssl req/x509`),
# Python sockets (PROXY v1/v2 headers by hand, an echo backend that decodes PROXY v2).
# Everything on 127.0.0.1 (ports 18500-18549); every process is stopped by PID.
#
#   A  nbproxy --addr 127.0.0.1:18500 --cert-dir certs/ --wildcard-cert-dir wild/
#      web.test (http) -> hdrs 18501; both.test: http AND tls (HTTP wins); pass.test (tls) ->
#      s_server 18502; ppout.test (tls, proxyProtocol) -> echo 18503; port 18510: pure tcp ->
#      echo 18504; port 18511: tls pass2.test -> s_server 18502 + tcp fallback -> echo 18504.
#   B  nbproxy --addr 127.0.0.1:18520 --proxy-protocol (no trusted list: header optional)
#      web.test -> hdrs; port 18521: tcp with proxyProtocol -> echo 18503; --access-log
#   C  nbproxy --addr 127.0.0.1:18530 --proxy-protocol --trusted-proxies 127.0.0.1 (REQUIRE)
#   D  nbproxy --addr 127.0.0.1:18540, no certificate: self-signed
#   F  nbproxy in management mode (tests/mgmt/management.js double on 18546/18547), --addr
#      127.0.0.1:18548: two tls mappings; removing one cuts only its relay
#   E  nbproxy --private (no --addr), account tunnel 10.99.150.1/24 (UDP 51873); netns nbr-peer:
#      veth 10.99.50.2/24 on bridge nbr-br 10.99.50.1/24, wireguard-go nbrp0 (UDP 51874),
#      tunnel 10.99.150.2: curl from there to ports 443 and 80, TLS and plain on both; --addr
#      127.0.0.1:18545 with a tls mapping and a tcp mapping (port 18544) to openssl s_server on
#      10.99.150.2:8443 inside the namespace, through the tunnel
#
# Checks: SNI routing to HTTP (curl --cacert), passthrough (s_client sees the backend's
# certificate), HTTP beats TLS for one name, unknown SNI and no SNI -> the TLS HTTP server,
# plain HTTP -> Go's 400 text, pure per-port tcp, SNI beats fallback, unknown SNI -> fallback,
# static cert hot reload (new serial served; a broken file keeps the old), wildcard directory
# (one label only), PROXY v1/v2 in (X-Forwarded-For, access log, relay), PROXY v2 out, trusted
# proxies (header required), a stalled handshake closed, self-signed fallback, --private tunnel
# ports 443/80 each taking TLS and plain HTTP (needs root: netns, veth, bridge).
# NBT_KEEP=1 keeps the work directory.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
work=$(mktemp -d /tmp/nbt-router.XXXXXX)
pids=()
pass=0
fail=0

log() { printf '[router] %s\n' "$*"; }
ok() { pass=$((pass + 1)); log "PASS: $*"; }
bad() { fail=$((fail + 1)); log "FAIL: $*"; }
# expect "description" "expected" "actual"
expect() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: expected [$2], got [$(echo "$3" | head -c 300 | tr '\n' ';')]"; fi; }
# contains "description" "needle" "haystack"
contains() { case "$3" in *"$2"*) ok "$1" ;; *) bad "$1: [$2] not in [$(echo "$3" | head -c 300 | tr '\n' ';')]" ;; esac; }

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    ip netns del nbr-peer 2>/dev/null
    ip link del nbr-br 2>/dev/null
    ip link del nbr-br0 2>/dev/null
    rm -f /var/run/wireguard/nbrp0.sock
    [ "${NBT_KEEP:-0}" = 1 ] && log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { log "missing $1 (scripts/install-deps.sh --test)"; exit 2; }; }
need curl; need openssl; need python3; need wg
[ -x "$bin" ] || { log "no binary at $bin"; exit 2; }
for p in 18500 18501 18502 18503 18504 18510 18511 18520 18521 18530 18540 18544 18545 18546 18547 18548 18549; do
    (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null && { log "port $p is busy"; exit 2; }
done
tool() { python3 "$here/routertool.py" "$@"; }
wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# ---- PKI: a CA, the static leaf, a wildcard leaf, the passthrough backend's self-signed cert ----
cd "$work" || exit 2
mkdir -p certs wild new
ossl() { openssl "$@" 2>/dev/null; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 30 -subj /CN=router-test-ca
leaf() { # dir name cn sans serial
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1/$2.key" -out "$1/$2.csr" -subj "/CN=$3"
    printf 'subjectAltName=%s\n' "$4" > "$1/$2.ext"
    ossl x509 -req -in "$1/$2.csr" -CA ca.pem -CAkey ca.key -set_serial "$5" -out "$1/$2.crt" -days 30 -extfile "$1/$2.ext"
    rm -f "$1/$2.csr" "$1/$2.ext"
}
leaf certs tls static.test "DNS:web.test,DNS:both.test,DNS:a.b.wild.test,DNS:wild.test" 0x1001
leaf wild wild wild.test "DNS:*.wild.test" 0x2002
leaf new tls static2.test "DNS:web.test,DNS:both.test" 0x3003
leaf new wild wild2.test "DNS:*.wild.test" 0x4004
# a Kubernetes-style secret volume: tls.crt -> ..data/tls.crt, ..data -> ..v1 (swapped atomically)
mkdir -p k8s/..v1 k8s/..v2
cp new/tls.crt new/tls.key k8s/..v1/
leaf k8s/..v2 tls static3.test "DNS:web.test" 0x5005
ln -s ..v1 k8s/..data && ln -s ..data/tls.crt k8s/tls.crt && ln -s ..data/tls.key k8s/tls.key
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout be.key -out be.crt -days 30 -subj /CN=backend.pass
[ -s certs/tls.crt ] && [ -s wild/wild.crt ] && [ -s be.crt ] || { log "cannot make certificates"; exit 2; }

# ---- backends ----
python3 "$here/routertool.py" hdrs 18501 > hdrs.log 2>&1 &
pids+=($!)
openssl s_server -accept 127.0.0.1:18502 -cert be.crt -key be.key -www -quiet > s_server.log 2>&1 &
pids+=($!)
: > pp.log
python3 "$here/routertool.py" echo 18503 pp.log > echo1.log 2>&1 &
pids+=($!)
: > plain.log
python3 "$here/routertool.py" echo 18504 plain.log > echo2.log 2>&1 &
pids+=($!)
for p in 18501 18502 18503 18504; do wait_port $p || log "backend on $p did not start"; done

umask 077
wg genkey > acct.key
umask 022
acct() { printf '{ "id": "a", "wireguard": { "privateKey": "%s", "listenPort": %s, "addresses": ["10.99.150.1/24"] } }' "$(cat acct.key)" "$1"; }
D='"options": { "directUpstream": true }'
cat > a.json <<JSON
{ "accounts": [ $(acct 51870) ],
  "mappings": [
    { "id": "web", "accountId": "a", "domain": "web.test",
      "path": [{ "path": "/", "target": "http://127.0.0.1:18501/", $D }] },
    { "id": "both-http", "accountId": "a", "domain": "both.test",
      "path": [{ "path": "/", "target": "http://127.0.0.1:18501/", $D }] },
    { "id": "both-tls", "accountId": "a", "mode": "tls", "domain": "both.test", "listenPort": 0,
      "path": [{ "target": "127.0.0.1:18502", $D }] },
    { "id": "pass", "accountId": "a", "mode": "tls", "domain": "pass.test", "listenPort": 18500,
      "path": [{ "target": "127.0.0.1:18502", $D }] },
    { "id": "ppout", "accountId": "a", "mode": "tls", "domain": "ppout.test",
      "path": [{ "target": "127.0.0.1:18503", "options": { "directUpstream": true, "proxyProtocol": true } }] },
    { "id": "pure", "accountId": "a", "mode": "tcp", "listenPort": 18510,
      "path": [{ "target": "127.0.0.1:18504", $D }] },
    { "id": "mixed-tls", "accountId": "a", "mode": "tls", "domain": "pass2.test", "listenPort": 18511,
      "path": [{ "target": "127.0.0.1:18502", $D }] },
    { "id": "mixed-tcp", "accountId": "a", "mode": "tcp", "domain": "fb.test", "listenPort": 18511,
      "path": [{ "target": "127.0.0.1:18504", $D }] }
  ] }
JSON
"$bin" --config a.json --addr 127.0.0.1:18500 --cert-dir "$work/certs" --wildcard-cert-dir "$work/wild" \
    --log-level debug > a.log 2>&1 &
A=$!
pids+=($A)
wait_port 18500 || { bad "nbproxy A did not start: $(tail -5 a.log)"; echo "[router] $pass passed, $fail failed"; exit 1; }

R="--resolve web.test:18500:127.0.0.1 --resolve both.test:18500:127.0.0.1 --resolve nope.test:18500:127.0.0.1"
cget() { curl -sS --max-time 5 --cacert ca.pem $R "$@" 2>&1; }
# subject CN and serial of what a TLS client with SNI $2 gets on port $1
peer_cert() { echo | timeout 5 openssl s_client -connect 127.0.0.1:$1 ${2:+-servername $2} 2>/dev/null |
    openssl x509 -noout -subject -serial 2>/dev/null | tr '\n' ' '; }

# 1. SNI routing to HTTP, terminated with the static certificate (curl verifies it against the CA)
expect "https://web.test through the main listener" "xff=127.0.0.1 proto=https" "$(cget https://web.test:18500/)"
# 1b. ALPN: curl negotiates h2 by default (HTTP/2 through nghttp2), HTTP/1.1 when it offers only that
expect "HTTPS on the main listener negotiates h2" "2 xff=127.0.0.1 proto=https" "$(cget -w '%{http_version} ' -o /dev/null https://web.test:18500/)$(cget --http2 https://web.test:18500/)"
expect "a client offering only http/1.1 gets HTTP/1.1" "1.1" "$(cget --http1.1 -o /dev/null -w '%{http_version}' https://web.test:18500/)"
# 2. HTTP route beats a TLS passthrough route for the same name
expect "both.test: HTTP wins over passthrough" "xff=127.0.0.1 proto=https" "$(cget https://both.test:18500/)"
# 3. passthrough: the client sees the backend's own certificate
contains "pass.test passthrough reaches openssl s_server" "CN = backend.pass" "$(peer_cert 18500 pass.test)"
out=$(curl -sS --max-time 5 -k --resolve pass.test:18500:127.0.0.1 https://pass.test:18500/ 2>&1)
contains "HTTPS through the passthrough is answered by s_server" "s_server" "$out"
# 4. unknown SNI and no SNI: the TLS HTTP server (static cert; unknown Host -> 404)
contains "unknown SNI goes to the TLS HTTP server" "CN = static.test" "$(peer_cert 18500 nope.test)"
expect "unknown SNI / Host answers 404" "404" "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -k $R https://nope.test:18500/)"
contains "no SNI goes to the TLS HTTP server" "CN = static.test" "$(peer_cert 18500)"
# 5. plain HTTP on the TLS port: Go's 400
out=$(curl -sS -i --max-time 5 http://127.0.0.1:18500/ 2>&1)
contains "plain HTTP on the TLS port: 400" "HTTP/1.0 400 Bad Request" "$out"
contains "plain HTTP on the TLS port: Go's text" "Client sent an HTTP request to an HTTPS server." "$out"
# 6. per-port routers
expect "pure per-port tcp relays (no peek)" "ping" "$(tool pp-tcp 127.0.0.1 18510 none -)"
expect "the pure tcp relay sends no PROXY header by default" "none" "$(tail -1 plain.log)"
contains "per-port SNI route beats the fallback" "CN = backend.pass" "$(peer_cert 18511 pass2.test)"
: > plain.log
timeout 5 openssl s_client -connect 127.0.0.1:18511 -servername other.test < /dev/null > /dev/null 2>&1
expect "unknown SNI on a per-port router goes to the tcp fallback" "none" "$(cat plain.log)"
# 7. PROXY v2 out: the backend sees a header with the client's address
: > pp.log
echo | timeout 5 openssl s_client -connect 127.0.0.1:18500 -servername ppout.test > /dev/null 2>&1
contains "PROXY v2 header reaches the backend" "v2 127.0.0.1:" "$(cat pp.log)"
contains "PROXY v2 destination is the proxy's local address" " 127.0.0.1:18500" "$(cat pp.log)"
# 8. wildcard directory: one label only
contains "x.wild.test gets the wildcard certificate" "CN = wild.test" "$(peer_cert 18500 x.wild.test)"
contains "a.b.wild.test (two labels) does not" "CN = static.test" "$(peer_cert 18500 a.b.wild.test)"
contains "the apex wild.test does not" "CN = static.test" "$(peer_cert 18500 wild.test)"
# 9. a stalled handshake (nothing sent) is closed after the 5 s peek deadline
expect "a silent client is closed" "closed" "$(tool stall 127.0.0.1 18500 20)"
# 10. static certificate hot reload
contains "serial before reload" "serial=1001" "$(peer_cert 18500 web.test)"
cp new/tls.key certs/tls.key.tmp && cp new/tls.crt certs/tls.crt.tmp
mv certs/tls.key.tmp certs/tls.key && mv certs/tls.crt.tmp certs/tls.crt
got=""
for _ in $(seq 40); do got=$(peer_cert 18500 web.test); case "$got" in *serial=3003*) break ;; esac; sleep 0.25; done
contains "new serial served after replacing the files" "serial=3003" "$got"
expect "curl verifies the reloaded certificate" "xff=127.0.0.1 proto=https" "$(cget https://web.test:18500/)"
echo "not a certificate" > certs/tls.crt
sleep 1.5
contains "a broken file keeps the old certificate" "serial=3003" "$(peer_cert 18500 web.test)"
grep -q "keeping the current certificate" a.log && ok "the failed reload is logged" || bad "no log line for the failed reload"
# the wildcard directory reloads too
cp new/wild.key wild/wild.key.tmp && cp new/wild.crt wild/wild.crt.tmp
mv wild/wild.key.tmp wild/wild.key && mv wild/wild.crt.tmp wild/wild.crt
got=""
for _ in $(seq 40); do got=$(peer_cert 18500 y.wild.test); case "$got" in *serial=4004*) break ;; esac; sleep 0.25; done
contains "wildcard directory hot reload" "CN = wild2.test" "$got"
kill -0 $A 2>/dev/null && ok "nbproxy A still running" || bad "nbproxy A died"

# ---- B: --proxy-protocol without a trusted list (header optional, from anyone) ----
cat > b.json <<JSON
{ "accounts": [ $(acct 51871) ],
  "mappings": [
    { "id": "web", "accountId": "a", "domain": "web.test",
      "path": [{ "path": "/", "target": "http://127.0.0.1:18501/", $D }] },
    { "id": "tcp-pp", "accountId": "a", "mode": "tcp", "domain": "tcp.test", "listenPort": 18521,
      "path": [{ "target": "127.0.0.1:18503", "options": { "directUpstream": true, "proxyProtocol": true } }] }
  ] }
JSON
"$bin" --config b.json --addr 127.0.0.1:18520 --cert-dir "$work/k8s" --proxy-protocol \
    --access-log "$work/b-access.log" > b.log 2>&1 &
pids+=($!)
wait_port 18520 || bad "nbproxy B did not start: $(tail -3 b.log)"
wait_port 18521 || bad "nbproxy B per-port listener missing"
expect "PROXY v1 in, TLS, HTTP: X-Forwarded-For is the header's source" "xff=192.0.2.7 proto=https" \
    "$(tool pp-tls 127.0.0.1 18520 v1 192.0.2.7 web.test ca.pem 2>&1)"
expect "PROXY v2 in, TLS, HTTP: X-Forwarded-For is the header's source" "xff=198.51.100.9 proto=https" \
    "$(tool pp-tls 127.0.0.1 18520 v2 198.51.100.9 web.test ca.pem 2>&1)"
expect "no header is fine without a trusted list" "xff=127.0.0.1 proto=https" \
    "$(curl -sS --max-time 5 --cacert ca.pem --resolve web.test:18520:127.0.0.1 https://web.test:18520/ 2>&1)"
: > pp.log
expect "PROXY v1 in on a per-port tcp listener relays" "ping" "$(tool pp-tcp 127.0.0.1 18521 v1 203.0.113.5 | tail -c 5)"
contains "PROXY v1 in -> v2 out carries the inbound header's source" "v2 203.0.113.5:40000" "$(cat pp.log)"
sleep 0.5
grep -q '"sourceIp":"198.51.100.9"' b-access.log && ok "access log: HTTP source from the PROXY header" || bad "access log lacks 198.51.100.9: $(head -c 400 b-access.log)"
grep -q '"sourceIp":"203.0.113.5".*"protocol":"tcp"\|"protocol":"tcp".*"sourceIp":"203.0.113.5"' b-access.log && ok "access log: tcp relay record with the header's source" || bad "no tcp record for 203.0.113.5: $(tail -c 400 b-access.log)"

contains "B serves the secret volume's certificate" "serial=3003" "$(peer_cert 18520 web.test)"
ln -s ..v2 k8s/..data_tmp && mv -T k8s/..data_tmp k8s/..data
got=""
for _ in $(seq 40); do got=$(peer_cert 18520 web.test); case "$got" in *serial=5005*) break ;; esac; sleep 0.25; done
contains "Kubernetes ..data symlink swap reloads the certificate" "serial=5005" "$got"

# ---- C: trusted proxies -> a header is required ----
cat > c.json <<JSON
{ "accounts": [ $(acct 51872) ],
  "mappings": [ { "id": "web", "accountId": "a", "domain": "web.test",
      "path": [{ "path": "/", "target": "http://127.0.0.1:18501/", $D }] } ] }
JSON
"$bin" --config c.json --addr 127.0.0.1:18530 --cert-dir "$work/new" --proxy-protocol --trusted-proxies 127.0.0.1 \
    > c.log 2>&1 &
pids+=($!)
wait_port 18530 || bad "nbproxy C did not start: $(tail -3 c.log)"
expect "trusted peer with a v2 header" "xff=192.0.2.44 proto=https" "$(tool pp-tls 127.0.0.1 18530 v2 192.0.2.44 web.test ca.pem 2>&1)"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 8 --cacert ca.pem --resolve web.test:18530:127.0.0.1 https://web.test:18530/)
expect "trusted peer without a header is refused" "000" "$code"

# ---- D: no certificate configured -> self-signed for the mapped domains ----
# (no --cert-* flags and no ./certs/tls.crt in the working directory)
sed 's/"listenPort": 51872/"listenPort": 0/' c.json > d.json
mkdir -p empty
cd empty || exit 2
"$bin" --config ../d.json --addr 127.0.0.1:18540 > ../d.log 2>&1 &
pids+=($!)
cd ..
wait_port 18540 || bad "nbproxy D did not start: $(tail -3 d.log)"
grep -q "SELF-SIGNED certificate for web.test" d.log && ok "self-signed certificate announced in the log" || bad "no self-signed log line: $(tail -3 d.log)"
cert=$(echo | timeout 5 openssl s_client -connect 127.0.0.1:18540 -servername web.test 2>/dev/null | openssl x509 -noout -subject -issuer -ext subjectAltName 2>/dev/null | tr '\n' ' ')
contains "self-signed: subject web.test" "subject=O = nbproxy self-signed, CN = web.test" "$cert"
contains "self-signed: issuer = subject" "issuer=O = nbproxy self-signed, CN = web.test" "$cert"
contains "self-signed: SAN web.test" "DNS:web.test" "$cert"
expect "self-signed: curl -k gets the mapping" "xff=127.0.0.1 proto=https" \
    "$(curl -sS -k --max-time 5 --resolve web.test:18540:127.0.0.1 https://web.test:18540/ 2>&1)"

# ---- F: management mode: removing one tls mapping cuts its relays only ----
double=$top/tests/mgmt/management.js
if ! command -v node > /dev/null || [ ! -d "$top/tests/mgmt/node_modules/@grpc/grpc-js" ]; then
    bad "route-removal checks need node and tests/mgmt/node_modules (scripts/install-deps.sh --test)"
else
    TOKEN=$(node "$double" --mint)
    cat > services.json <<JSON
[ { "id": "one", "account_id": "acc", "domain": "one.test", "mode": "tls", "listen_port": 0,
    "path": [{ "path": "", "target": "127.0.0.1:18503", "options": { "direct_upstream": true } }] },
  { "id": "two", "account_id": "acc", "domain": "two.test", "mode": "tls", "listen_port": 0,
    "path": [{ "path": "", "target": "127.0.0.1:18504", "options": { "direct_upstream": true } }] } ]
JSON
    node "$double" --port 18546 --control-port 18547 --token "$TOKEN" --services services.json > double.out 2> double.err &
    pids+=($!)
    wait_port 18547 || bad "management double did not start: $(cat double.err)"
    env NB_PROXY_TOKEN="$TOKEN" NB_PROXY_ALLOW_INSECURE=true "$bin" --mgmt http://127.0.0.1:18546 --domain proxy.test         --addr 127.0.0.1:18548 --cert-dir "$work/new" --health-addr 127.0.0.1:18549 --log-level debug > f.log 2>&1 &
    pids+=($!)
    wait_port 18548 || bad "nbproxy F did not start: $(tail -3 f.log)"
    for _ in $(seq 100); do grep -q 'service two (tls)' f.log && break; sleep 0.05; done
    python3 "$here/routertool.py" hold 127.0.0.1 18548 one.test "$work/hold1" > /dev/null 2>&1 &
    h1=$!
    pids+=($h1)
    python3 "$here/routertool.py" hold 127.0.0.1 18548 two.test "$work/hold2" > /dev/null 2>&1 &
    h2=$!
    pids+=($h2)
    for _ in $(seq 100); do [ -s hold1 ] && [ -s hold2 ] && break; sleep 0.05; done
    expect "two passthrough relays up (the ClientHello replayed to each echo backend)" "up up" "$(head -1 hold1 2>/dev/null) $(head -1 hold2 2>/dev/null)"
    curl -sS --max-time 5 -X POST -d '{"op":"remove","service":{"id":"one","account_id":"acc","domain":"one.test","mode":"tls"}}'         http://127.0.0.1:18547/update > /dev/null
    for _ in $(seq 100); do [ "$(sed -n 2p hold1 2>/dev/null)" = closed ] && break; sleep 0.05; done
    expect "removing service one closes its relay" "closed" "$(sed -n 2p hold1 2>/dev/null)"
    sleep 0.5
    expect "service two's relay is still open" "" "$(sed -n 2p hold2 2>/dev/null)"
    python3 "$here/routertool.py" hold 127.0.0.1 18548 two.test "$work/hold3" > /dev/null 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [ -s hold3 ] && break; sleep 0.05; done
    expect "service two still takes new connections" "up" "$(head -1 hold3 2>/dev/null)"
    contains "one.test now goes to the TLS HTTP server" "CN = static2.test" "$(peer_cert 18548 one.test)"
fi

# ---- E: --private: ports 443 and 80 of the account's tunnel address, through wireguard-go ----
NS=nbr-peer
BR=nbr-br
IF=nbrp0
U=10.99.50
T=10.99.150
ip netns del $NS 2>/dev/null; ip link del $BR 2>/dev/null; ip link del nbr-br0 2>/dev/null
for _ in $(seq 50); do ip link show nbr-br0 > /dev/null 2>&1 || break; sleep 0.1; done
if ! command -v wireguard-go > /dev/null || ! command -v ip > /dev/null || [ "$(id -u)" != 0 ]; then
    bad "--private checks need root, ip and wireguard-go"
elif ! { ip link add $BR type bridge && ip addr add $U.1/24 dev $BR && ip link set $BR up &&
    ip netns add $NS && ip link add nbr-br0 type veth peer name nbr-eth netns $NS &&
    ip link set nbr-br0 master $BR up && ip -n $NS addr add $U.2/24 dev nbr-eth &&
    ip -n $NS link set nbr-eth up && ip -n $NS link set lo up; }; then
    bad "cannot build the test network"
else
    umask 077
    wg genkey > peer.key
    umask 022
    wg pubkey < peer.key > peer.pub
    wg pubkey < acct.key > acct.pub
    LOG_LEVEL=error ip netns exec $NS wireguard-go -f $IF > wggo.log 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [ -S /var/run/wireguard/$IF.sock ] && break; sleep 0.05; done
    ip netns exec $NS wg set $IF private-key peer.key listen-port 51874 peer "$(cat acct.pub)" allowed-ips $T.1/32
    ip -n $NS addr add $T.2/24 dev $IF
    ip -n $NS link set $IF mtu 1280 up
    cat > e.json <<JSON
{ "accounts": [ { "id": "a", "wireguard": { "privateKey": "$(cat acct.key)", "listenPort": 51873,
      "addresses": ["$T.1/24"],
      "peers": [{ "publicKey": "$(cat peer.pub)", "endpoint": "$U.2:51874", "allowedIps": ["$T.2/32"],
                  "persistentKeepalive": 25 }] } } ],
  "mappings": [ { "id": "web", "accountId": "a", "domain": "web.test",
      "path": [{ "path": "/", "target": "http://127.0.0.1:18501/", $D }] },
    { "id": "tun", "accountId": "a", "mode": "tls", "domain": "tun.test",
      "path": [{ "target": "$T.2:8443" }] },
    { "id": "tun-tcp", "accountId": "a", "mode": "tcp", "listenPort": 18544,
      "path": [{ "target": "$T.2:8443" }] } ] }
JSON
    ip netns exec $NS openssl s_server -accept $T.2:8443 -cert be.crt -key be.key -www -quiet > s_server_ns.log 2>&1 &
    pids+=($!)
    "$bin" --config e.json --private --addr 127.0.0.1:18545 --cert-dir "$work/new" --log-level debug > e.log 2>&1 &
    pids+=($!)
    nsc() { ip netns exec $NS curl -sS --max-time 3 --cacert "$work/ca.pem" "$@" 2>&1; }
    out=""
    for _ in $(seq 30); do
        out=$(nsc --resolve web.test:443:$T.1 https://web.test/)
        [ "$out" = "xff=$T.2 proto=https" ] && break
        sleep 0.3
    done
    expect "--private: HTTPS on port 443 of the tunnel address (curl verifies the static cert)" "xff=$T.2 proto=https" "$out"
    expect "--private: plain HTTP on port 443 too" "xff=$T.2 proto=http" "$(nsc -H 'Host: web.test' http://$T.1:443/)"
    expect "--private: HTTPS on port 80 too" "xff=$T.2 proto=https" "$(nsc --resolve web.test:80:$T.1 https://web.test:80/)"
    expect "--private: plain HTTP on port 80" "xff=$T.2 proto=http" "$(nsc -H 'Host: web.test' http://$T.1/)"
    contains "tls passthrough through the tunnel to openssl s_server in the namespace" "CN = backend.pass" "$(peer_cert 18545 tun.test)"
    out=$(curl -sS --max-time 5 -k --resolve tun.test:18545:127.0.0.1 https://tun.test:18545/ 2>&1)
    contains "HTTPS through the tunnel passthrough is answered by s_server" "s_server" "$out"
    out=$(curl -sS --max-time 5 -k https://127.0.0.1:18544/ 2>&1)
    contains "a per-port tcp mapping through the tunnel carries TLS end to end" "s_server" "$out"
    expect "--private: a Host of no mapping is 404" "404" "$(ip netns exec $NS curl -s -o /dev/null -w '%{http_code}' --max-time 3 -H 'Host: nope.test' http://$T.1/)"
    ip netns del $NS 2>/dev/null
    ip link del $BR 2>/dev/null
fi

echo "[router] $pass passed, $fail failed"
[ "$fail" -eq 0 ]
