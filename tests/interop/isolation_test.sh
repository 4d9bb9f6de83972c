#!/usr/bin/env bash
# Two accounts, one process, the SAME tunnel addresses: each account has its own wireguard-go
# peer in its own network namespace, and both peers use the same tunnel address too. Each tcp
# mapping must reach its own account's peer only. Needs root; addresses live only on the bridge
# and veths this script creates (10.99.2.x underlay, 10.99.100.x tunnels).
#
#   root ns: bridge nbi-br 10.99.2.1/24, nbproxy: account "red" UDP 51831, account "blue" 51832,
#            both with tunnel address 10.99.100.1/24
#   ns nbi-red:  veth 10.99.2.2, wireguard-go nbir0 tunnel 10.99.100.2, HTTP says "red"
#   ns nbi-blue: veth 10.99.2.3, wireguard-go nbib0 tunnel 10.99.100.2, HTTP says "blue"
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
here=$top/tests/interop
bin=${NBPROXY_BIN:-$top/build/nbproxy}
work=$(mktemp -d /tmp/nbt-iso.XXXXXX)
pids=()
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "[isolation] PASS: $*"; }
bad() { fail=$((fail + 1)); echo "[isolation] FAIL: $*"; }
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    ip netns del nbi-red 2>/dev/null
    ip netns del nbi-blue 2>/dev/null
    ip link del nbi-br 2>/dev/null
    rm -f /var/run/wireguard/nbir0.sock /var/run/wireguard/nbib0.sock
    [ "${NBT_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

ip netns del nbi-red 2>/dev/null; ip netns del nbi-blue 2>/dev/null; ip link del nbi-br 2>/dev/null
ip link add nbi-br type bridge && ip addr add 10.99.2.1/24 dev nbi-br && ip link set nbi-br up
umask 077
for k in red blue self-red self-blue; do wg genkey > "$work/$k.key"; wg pubkey < "$work/$k.key" > "$work/$k.pub"; done
umask 022
n=2
for c in red blue; do
    ns=nbi-$c
    ifc=nbi${c:0:1}0
    ip netns add $ns
    ip link add nbi${c:0:1}-br type veth peer name nbi${c:0:1}-eth netns $ns
    ip link set nbi${c:0:1}-br master nbi-br up
    ip -n $ns addr add 10.99.2.$n/24 dev nbi${c:0:1}-eth
    ip -n $ns link set nbi${c:0:1}-eth up
    ip -n $ns link set lo up
    LOG_LEVEL=error ip netns exec $ns wireguard-go -f $ifc > "$work/$c.wg.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [ -S /var/run/wireguard/$ifc.sock ] && break; sleep 0.05; done
    ip netns exec $ns wg set $ifc private-key "$work/$c.key" listen-port 51820 \
        peer "$(cat "$work/self-$c.pub")" allowed-ips 10.99.100.1/32
    ip -n $ns addr add 10.99.100.2/24 dev $ifc
    ip -n $ns link set $ifc mtu 1280 up
    mkdir -p "$work/www-$c"
    echo "this is $c" > "$work/www-$c/who"
    ip netns exec $ns python3 "$here/httpd.py" 10.99.100.2 8000 "$work/www-$c" &
    pids+=($!)
    for _ in $(seq 100); do
        ip netns exec $ns curl -s -o /dev/null --max-time 1 http://10.99.100.2:8000/who && break
        sleep 0.05
    done
    n=$((n + 1))
done

cat > "$work/nbproxy.json" <<JSON
{
  "accounts": [
    { "id": "red", "wireguard": { "privateKey": "$(cat "$work/self-red.key")", "listenPort": 51831,
      "addresses": ["10.99.100.1/24"],
      "peers": [{ "publicKey": "$(cat "$work/red.pub")", "endpoint": "10.99.2.2:51820",
                  "allowedIps": ["10.99.100.2/32"] }] } },
    { "id": "blue", "wireguard": { "privateKey": "$(cat "$work/self-blue.key")", "listenPort": 51832,
      "addresses": ["10.99.100.1/24"],
      "peers": [{ "publicKey": "$(cat "$work/blue.pub")", "endpoint": "10.99.2.3:51820",
                  "allowedIps": ["10.99.100.2/32"] }] } }
  ],
  "mappings": [
    { "id": "to-red", "accountId": "red", "mode": "tcp", "listenPort": 18181,
      "path": [{ "target": "10.99.100.2:8000" }] },
    { "id": "to-blue", "accountId": "blue", "mode": "tcp", "listenPort": 18182,
      "path": [{ "target": "10.99.100.2:8000" }] }
  ]
}
JSON
"$bin" --config "$work/nbproxy.json" --log-level debug > "$work/nbproxy.log" 2>&1 &
pp=$!
pids+=($pp)
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/18182) 2>/dev/null && break; sleep 0.05; done

for round in 1 2 3; do
    r=$(curl -sS --max-time 15 http://127.0.0.1:18181/who)
    b=$(curl -sS --max-time 15 http://127.0.0.1:18182/who)
    if [ "$r" = "this is red" ] && [ "$b" = "this is blue" ]; then
        ok "round $round: each mapping reached its own account's peer"
    else
        bad "round $round: red mapping got \"$r\", blue mapping got \"$b\""
    fi
done
# Both accounts answer ICMP on the shared address 10.99.100.1, each to its own peer.
for c in red blue; do
    if ip netns exec nbi-$c ping -c 2 -i 0.3 -W 2 10.99.100.1 > /dev/null 2>&1; then
        ok "$c's peer pings 10.99.100.1 through its own account"
    else
        bad "$c's peer gets no ping reply"
    fi
done
kill -0 $pp 2>/dev/null && ok "nbproxy still running" || bad "nbproxy exited: $(tail -5 "$work/nbproxy.log")"
echo "[isolation] $pass passed, $fail failed"
[ $fail = 0 ]
