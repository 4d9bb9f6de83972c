#!/usr/bin/env bash
# Unpacks lwIP 2.1.3 from Debian's source package into .deps/ (ignored by git).
# No lwIP source is ever committed; CMake compiles it with netstack/lwipopts.h.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dest="$top/.deps"
if [ -f "$dest/lwip/src/Filelists.cmake" ]; then exit 0; fi
mkdir -p "$dest"
tmp=$(mktemp -d "$dest/fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && apt-get source -qq lwip=2.1.3+dfsg1-2 >/dev/null 2>&1 || apt-get source -qq lwip >/dev/null )
src=$(find "$tmp" -maxdepth 1 -type d -name 'lwip-2.1.3*' | head -n 1)
[ -n "$src" ] || { echo "fetch-lwip: apt-get source lwip produced no lwip-2.1.3 tree" >&2; exit 1; }
rm -rf "$dest/lwip"
mv "$src" "$dest/lwip"
echo "lwIP source ready in $dest/lwip"
