#!/usr/bin/env bash
# Installs everything nbproxy needs on Debian 12 (run as root). Idempotent.
#   scripts/install-deps.sh          build dependencies only
#   scripts/install-deps.sh --test   plus the real third-party peers the test suite talks to
#   scripts/install-deps.sh --bench  plus what bench/ uses (nginx and wrk for bench/http_bench.sh;
#                                    combinable with --test)
set -euo pipefail

want_test=0
want_bench=0
for a in "$@"; do
    case $a in
    --test) want_test=1 ;;
    --bench) want_bench=1 ;;
    *) echo "usage: $0 [--test] [--bench]" >&2; exit 2 ;;
    esac
done

export DEBIAN_FRONTEND=noninteractive

# lwIP and wolfSSL are built from Debian's *source* packages (scripts/fetch-lwip.sh,
# scripts/fetch-wolfssl.sh), so deb-src must be enabled.
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

# dpkg-dev + xz-utils: `apt-get source` unpacks and patches the source packages; util-linux: flock
# in fetch-wolfssl.sh. No libwolfssl-dev: wolfSSL is built from source (configure with
# -DNB_WOLFSSL_SOURCE=OFF and install libwolfssl-dev to use Debian's shared library instead).
pkgs=(build-essential cmake pkg-config dpkg-dev xz-utils util-linux clang clang-format
      libsodium-dev libprotobuf-c-dev protobuf-c-compiler
      libnghttp2-dev libcurl4-openssl-dev libcjson-dev libcmocka-dev libc-ares-dev
      libmaxminddb-dev) # auth/geo.c: GeoLite2 country lookups
if [ $want_test = 1 ]; then
    pkgs+=(libclang-rt-14-dev wireguard-go wireguard-tools iproute2 iputils-ping
           iperf3 curl python3 procps openssl ca-certificates # openssl: tests/unit/tls peers
           dnsmasq-base # dnsmasq-base: the binary only, no system service (tests/unit/platform/dns.c)
           nginx        # tests/interop/http_test.sh runs its own instance (see the --bench note)
           pebble       # pebble + pebble-challtestsrv (one package): tests/interop/acme_test.sh
           testssl.sh   # tests/interop/tls_policy_test.sh (the command is `testssl`)
           nghttp2-client python3-h2 # http2_test.sh: nghttp, h2load; protocol probes
                                     # (python3-h2 lives in Debian's /usr/bin/python3)
           mmdb-bin) # mmdblookup: restrict_test.sh cross-checks MaxMind's test database
    # Node.js for tests/interop/node (backends and clients of http_test.sh). Debian's nodejs and
    # npm where no Node is installed; an existing Node (with its npm) is kept.
    command -v node >/dev/null && command -v npm >/dev/null || pkgs+=(nodejs npm)
fi
if [ $want_bench = 1 ]; then
    # nginx: the bench starts its own instances (own config, 127.0.0.1 only); where no
    # policy-rc.d stops it, Debian's package also starts the system service on port 80: stop it
    # with `systemctl disable --now nginx` (or `service nginx stop`) if you do not want it.
    pkgs+=(nginx wrk wireguard-go wireguard-tools iproute2 iperf3 curl python3 procps util-linux
           openssl nghttp2-client) # bench/tls_bench.sh: openssl s_time, h2load
fi
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
if [ $want_test = 1 ]; then
    # The npm `ws` package (pinned in package-lock.json) for http_test.sh's WebSocket peers.
    (cd "$(dirname "$0")/../tests/interop/node" && npm ci --no-audit --no-fund >/dev/null)
    # @grpc/grpc-js + @grpc/proto-loader (pinned) for the management server of tests/mgmt/peer.js.
    (cd "$(dirname "$0")/../tests/mgmt" && npm ci --no-audit --no-fund >/dev/null)
fi
