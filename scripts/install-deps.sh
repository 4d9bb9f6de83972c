#!/usr/bin/env bash
# Installs everything nbproxy needs on Debian 12 (run as root). Idempotent.
#   scripts/install-deps.sh          build dependencies only
#   scripts/install-deps.sh --test   plus the real third-party peers the test suite talks to
set -euo pipefail

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

export DEBIAN_FRONTEND=noninteractive

# lwIP is built from Debian's *source* package, so deb-src must be enabled.
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    cat > /etc/apt/sources.list.d/nbproxy-deb-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

apt-get update -qq

pkgs=(build-essential cmake pkg-config dpkg-dev clang clang-format
      libsodium-dev libwolfssl-dev libprotobuf-c-dev protobuf-c-compiler
      libnghttp2-dev libcurl4-openssl-dev libcjson-dev libcmocka-dev)
if [ $want_test = 1 ]; then
    pkgs+=(libclang-rt-14-dev wireguard-go wireguard-tools iproute2 iputils-ping
           iperf3 curl python3 procps)
fi
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
