#!/usr/bin/env bash
# Interop with an independent WireGuard: wireguard-go (Debian) in a network namespace.
# Needs root (netns, veth, bridge); every address used lives on interfaces this script creates
# (10.99.x.x), and every process it starts is stopped by PID.
#
#   root ns:  bridge nbt-br 10.99.1.1/24, nbproxy (UDP 51821, tunnel 10.99.100.1)
#   ns nbtpeer: veth 10.99.1.2/24 (later roams to 10.99.1.3), wireguard-go "nbtp0",
#               tunnel 10.99.100.2/24, UDP 51820, upstream HTTP server on 10.99.100.2:8000
#
# Checks: handshake initiated by nbproxy and by the peer; ping to nbproxy's tunnel address;
# a tcp mapping from host port 18080 through the tunnel to the upstream, 100 MB byte-identical
# down and up; a wrong key passes no traffic; the peer roaming to a new source address keeps
# working; a rekey (timers shortened through NB_PROXY_WG_REKEY_AFTER_TIME) keeps traffic flowing;
# everything runs with a preshared key, and a wrong one passes nothing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${NBPROXY_BIN:-$top/build/nbproxy}
work=$(mktemp -d /tmp/nbt-wg.XXXXXX)
NS=nbtpeer
BR=nbt-br
IF=nbtp0
SIZE_MB=${NBT_SIZE_MB:-100}
pids=()
pass=0
fail=0

log() { printf '[wg-interop] %s\n' "$*"; }
ok() { pass=$((pass + 1)); log "PASS: $*"; }
bad() { fail=$((fail + 1)); log "FAIL: $*"; }

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    ip netns del $NS 2>/dev/null
    ip link del $BR 2>/dev/null
    rm -f /var/run/wireguard/$IF.sock
    [ "${NBT_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { log "missing $1 (scripts/install-deps.sh --test)"; exit 2; }; }
need wireguard-go; need wg; need ip; need curl; need python3; need ping
[ -x "$bin" ] || { log "no binary at $bin"; exit 2; }

# ---- topology ----
ip netns del $NS 2>/dev/null; ip link del $BR 2>/dev/null
ip link add $BR type bridge && ip addr add 10.99.1.1/24 dev $BR && ip link set $BR up
ip netns add $NS
ip link add nbtp-br type veth peer name nbtp-eth netns $NS
ip link set nbtp-br master $BR up
ip -n $NS addr add 10.99.1.2/24 dev nbtp-eth
ip -n $NS link set nbtp-eth up
ip -n $NS link set lo up
# Deleting the primary address must promote the secondary (used by the roaming step).
ip netns exec $NS sysctl -qw net.ipv4.conf.nbtp-eth.promote_secondaries=1

umask 077
wg genkey > "$work/peer.key"; wg pubkey < "$work/peer.key" > "$work/peer.pub"
wg genkey > "$work/self.key"; wg pubkey < "$work/self.key" > "$work/self.pub"
wg genkey > "$work/other.key"; wg pubkey < "$work/other.key" > "$work/other.pub"
wg genpsk > "$work/psk"; wg genpsk > "$work/otherpsk"
umask 022

LOG_LEVEL=error ip netns exec $NS wireguard-go -f $IF > "$work/wggo.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S /var/run/wireguard/$IF.sock ] && break; sleep 0.05; done
ip netns exec $NS wg set $IF private-key "$work/peer.key" listen-port 51820 \
    peer "$(cat "$work/self.pub")" allowed-ips 10.99.100.1/32 preshared-key "$work/psk"
ip -n $NS addr add 10.99.100.2/24 dev $IF
ip -n $NS link set $IF mtu 1280 up

mkdir -p "$work/www"
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$work/www/big.bin"
want=$(sha256sum "$work/www/big.bin" | cut -d' ' -f1)
ip netns exec $NS python3 "$here/httpd.py" 10.99.100.2 8000 "$work/www" &
pids+=($!)
for _ in $(seq 100); do
    ip netns exec $NS curl -s -o /dev/null --max-time 1 -r 0-0 http://10.99.100.2:8000/big.bin && break
    sleep 0.05
done

# ---- nbproxy ----
write_config() { # $1 = peer public key, $2 = "endpoint" or "" (peer-initiated), $3 = psk file
    local ep=""
    [ -n "$2" ] && ep="\"endpoint\": \"10.99.1.2:51820\","
    local psk=${3:-$work/psk}
    cat > "$work/nbproxy.json" <<JSON
{
  "accounts": [{
    "id": "interop",
    "wireguard": {
      "privateKey": "$(cat "$work/self.key")",
      "listenPort": 51821,
      "addresses": ["10.99.100.1/24"],
      "peers": [{ "publicKey": "$1", $ep "allowedIps": ["10.99.100.2/32"],
                  "presharedKey": "$(cat "$psk")",
                  "persistentKeepalive": 25 }]
    }
  }],
  "mappings": [{ "id": "svc-tcp", "accountId": "interop", "mode": "tcp", "listenPort": 18080,
                 "path": [{ "target": "10.99.100.2:8000" }] }]
}
JSON
}

proxy_pid=""
start_proxy() {
    "$bin" --config "$work/nbproxy.json" --log-level debug >> "$work/nbproxy.log" 2>&1 &
    proxy_pid=$!
    pids+=($proxy_pid)
    for _ in $(seq 100); do
        (echo > /dev/tcp/127.0.0.1/18080) 2>/dev/null && return 0
        kill -0 "$proxy_pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
stop_proxy() {
    [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
    proxy_pid=""
}
peer_handshake() { ip netns exec $NS wg show $IF latest-handshakes | awk '{print $2}'; }

# 1. nbproxy initiates (it knows the endpoint).
write_config "$(cat "$work/peer.pub")" endpoint
start_proxy || bad "nbproxy did not start (see $work/nbproxy.log)"
if curl -sS --max-time 20 -o /dev/null http://127.0.0.1:18080/big.bin -r 0-1023; then
    ok "first request through the tunnel (nbproxy-initiated handshake)"
else
    bad "first request through the tunnel"
fi
[ "$(peer_handshake)" != "0" ] && ok "wireguard-go reports a handshake" || bad "no handshake on the peer"

if ip netns exec $NS ping -c 3 -i 0.2 -W 2 10.99.100.1 > "$work/ping.log" 2>&1; then
    ok "ping from the peer to nbproxy's tunnel address"
else
    bad "ping to 10.99.100.1 (ICMP echo in the netstack)"
fi

got=$(curl -sS --max-time 120 http://127.0.0.1:18080/big.bin | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] && ok "${SIZE_MB} MB download byte-identical through the tcp mapping" \
    || bad "download mismatch ($got != $want)"
up=$(curl -sS --max-time 120 --data-binary @"$work/www/big.bin" -H 'Content-Type: application/octet-stream' \
    http://127.0.0.1:18080/upload | cut -d' ' -f1)
[ "$up" = "$want" ] && ok "${SIZE_MB} MB upload byte-identical through the tcp mapping" \
    || bad "upload mismatch ($up != $want)"

# 2. Roaming: the peer moves to a new source address; its keepalives carry the new endpoint.
ip netns exec $NS wg set $IF peer "$(cat "$work/self.pub")" persistent-keepalive 1 endpoint 10.99.1.1:51821
ip -n $NS addr add 10.99.1.3/24 dev nbtp-eth
ip -n $NS addr del 10.99.1.2/24 dev nbtp-eth
sleep 2.5
if curl -sS --max-time 15 -o /dev/null http://127.0.0.1:18080/big.bin -r 0-65535; then
    ok "traffic still flows after the peer roamed to 10.99.1.3"
else
    bad "roaming: no traffic after the peer moved to 10.99.1.3"
fi
ip -n $NS addr add 10.99.1.2/24 dev nbtp-eth
ip -n $NS addr del 10.99.1.3/24 dev nbtp-eth
stop_proxy

# 3. The peer initiates: nbproxy has no endpoint and must learn it from the handshake. The peer
# is re-added so that wireguard-go holds no session from the previous nbproxy run.
ip netns exec $NS wg set $IF peer "$(cat "$work/self.pub")" remove
ip netns exec $NS wg set $IF peer "$(cat "$work/self.pub")" allowed-ips 10.99.100.1/32 \
    endpoint 10.99.1.1:51821 preshared-key "$work/psk"
write_config "$(cat "$work/peer.pub")" ""
before=$(peer_handshake)
start_proxy || bad "nbproxy did not restart"
if ip netns exec $NS ping -c 3 -i 0.3 -W 3 10.99.100.1 > "$work/ping2.log" 2>&1; then
    ok "peer-initiated handshake: ping answered"
else
    bad "peer-initiated handshake: no ping reply"
fi
if curl -sS --max-time 15 -o /dev/null http://127.0.0.1:18080/big.bin -r 0-65535; then
    ok "request through the tunnel after a peer-initiated handshake"
else
    bad "request after a peer-initiated handshake"
fi
[ "$(peer_handshake)" != "$before" ] && ok "handshake time advanced on the peer" || bad "peer saw no new handshake"
stop_proxy

# 4. Rekey: REKEY_AFTER_TIME shortened to 6 s on our side; traffic keeps flowing across rekeys.
write_config "$(cat "$work/peer.pub")" endpoint
NB_PROXY_WG_REKEY_AFTER_TIME=6s start_proxy || bad "nbproxy did not start (rekey)"
curl -sS --max-time 15 -o /dev/null http://127.0.0.1:18080/big.bin -r 0-1023
first=$(peer_handshake)
rk_ok=1
for _ in $(seq 14); do
    curl -sS --max-time 10 -o /dev/null http://127.0.0.1:18080/big.bin -r 0-65535 || rk_ok=0
    sleep 1
done
last=$(peer_handshake)
if [ $rk_ok = 1 ] && [ "$last" -gt "$first" ]; then
    ok "rekey observed (handshake $first -> $last) with no failed request"
else
    bad "rekey: first=$first last=$last requests_ok=$rk_ok"
fi
stop_proxy

# 5. A wrong key passes no traffic.
write_config "$(cat "$work/other.pub")" endpoint
start_proxy || bad "nbproxy did not start (wrong key)"
if curl -sS --max-time 6 -o /dev/null http://127.0.0.1:18080/big.bin -r 0-1023 2>/dev/null; then
    bad "wrong peer key still passed traffic"
else
    ok "wrong peer key: no traffic"
fi
if ip netns exec $NS ping -c 2 -i 0.3 -W 1 10.99.100.1 > /dev/null 2>&1; then
    bad "wrong peer key: ping answered"
else
    ok "wrong peer key: no ping reply"
fi
stop_proxy

# 6. A wrong preshared key passes no traffic either.
write_config "$(cat "$work/peer.pub")" endpoint "$work/otherpsk"
start_proxy || bad "nbproxy did not start (wrong psk)"
if curl -sS --max-time 6 -o /dev/null http://127.0.0.1:18080/big.bin -r 0-1023 2>/dev/null; then
    bad "wrong preshared key still passed traffic"
else
    ok "wrong preshared key: no traffic"
fi
stop_proxy

log "$pass passed, $fail failed"
[ $fail = 0 ]
