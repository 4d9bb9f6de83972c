#!/usr/bin/env bash
# Builds nbproxy into build/ (binary: build/nbproxy). Fetches lwIP's Debian source and builds
# the static wolfSSL from Debian's source first (both cached in .deps/, no-ops once done).
#   scripts/build.sh [extra cmake args]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/fetch-lwip.sh
scripts/fetch-wolfssl.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build build -j"$(nproc)"
echo "built: $top/build/nbproxy"
