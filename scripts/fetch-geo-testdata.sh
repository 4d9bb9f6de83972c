#!/usr/bin/env bash
# Unpacks MaxMind's test databases (GeoIP2-City-Test.mmdb and friends, CC BY-SA 3.0) from Debian's
# libmaxminddb *source* package into .deps/maxmind-test-data/ (ignored by git). The geolocation
# unit test (tests/unit/auth/geo.c) and tests/interop/restrict_test.sh read a country through the
# real libmaxminddb from there; no database is ever committed and nbproxy never downloads one.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dest="$top/.deps/maxmind-test-data"
if [ -f "$dest/GeoIP2-City-Test.mmdb" ]; then exit 0; fi
mkdir -p "$top/.deps"
tmp=$(mktemp -d "$top/.deps/fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && apt-get source -qq libmaxminddb >/dev/null )
src=$(find "$tmp" -maxdepth 4 -type d -path '*t/maxmind-db/test-data' | head -n 1)
[ -n "$src" ] && [ -f "$src/GeoIP2-City-Test.mmdb" ] ||
    { echo "fetch-geo-testdata: no t/maxmind-db/test-data/GeoIP2-City-Test.mmdb in libmaxminddb's source" >&2; exit 1; }
rm -rf "$dest"
mkdir -p "$dest"
cp "$src"/*.mmdb "$dest"/
cp "$src"/../LICENSE "$dest"/LICENSE 2>/dev/null || true
echo "MaxMind test databases ready in $dest"
