#!/usr/bin/env bash
# Long fuzzing runs (not part of CI): fuzz/run.sh [seconds-per-target, default 600]
# New interesting inputs are kept in fuzz/corpus-run/<name>/ (ignored by git); minimise and copy
# the useful ones into fuzz/corpus/<name>/ by hand.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
secs=${1:-600}
scripts/fetch-lwip.sh
CC=clang cmake -S . -B build-fuzz -DNB_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-fuzz -j"$(nproc)" >/dev/null
for t in build-fuzz/fuzz/fuzz_*; do
    name=$(basename "$t"); name=${name#fuzz_}
    mkdir -p "fuzz/corpus-run/$name"
    echo "== $name for $secs s"
    "$t" -max_total_time="$secs" "fuzz/corpus-run/$name" "fuzz/corpus/$name"
done
