#!/usr/bin/env bash
# The whole test suite, as CI runs it (README's second command ends here). Needs root for the
# network-namespace interop tests. Layers:
#   00 format     clang-format check of our C files
#   10 unit       cmocka unit tests (ctest), normal build
#   20 asan       the same unit tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   30 interop    real third-party peers (wireguard-go in a netns, curl), against build/nbproxy
#   35 interop    the same against the ASan+UBSan build of the binary
#   40 fuzz       every libFuzzer target over its corpus, seed 1, NB_FUZZ_RUNS runs (50000)
# Prints one closing line "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc)
passed=0
failed=0
failures=()
tests_passed=0
tests_failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Adds the individual test counts a step printed (ctest's summary, our scripts' "N passed, N
# failed") to the totals, so the closing line counts tests, not steps.
count() {
    local p f
    read -r p f < <(awk '
        /^[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+$/ { f += $4; p += $NF - $4 }
        /^\[[a-z-]+\] [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 }
        END { print p + 0, f + 0 }' "$log")
    tests_passed=$((tests_passed + p))
    tests_failed=$((tests_failed + f))
}

step() { # name, command...
    local name=$1
    shift
    echo "==== $name"
    local t0=$(date +%s)
    if "$@" 2>&1 | tee "$log"; [ "${PIPESTATUS[0]}" = 0 ]; then
        passed=$((passed + 1))
        echo "==== $name: ok ($(( $(date +%s) - t0 )) s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "==== $name: FAILED ($(( $(date +%s) - t0 )) s)"
    fi
    count
}

format_check() {
    local bad=0
    for f in $(git ls-files '*.c' '*.h'); do
        clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || { echo "needs clang-format: $f"; bad=1; }
    done
    return $bad
}

unit() { # build dir, extra cmake args...
    local dir=$1
    shift
    cmake -S . -B "$dir" "$@" >/dev/null && cmake --build "$dir" -j"$jobs" >/dev/null &&
        (cd "$dir" && ctest --output-on-failure -j"$jobs")
}

fuzz_smoke() {
    CC=clang cmake -S . -B build-fuzz -DNB_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null &&
        cmake --build build-fuzz -j"$jobs" >/dev/null || return 1
    # Deterministic in CI: a fixed seed and a fixed number of runs over the checked-in corpus,
    # so a run is reproducible and a red fuzz step is a regression, not luck. Open-ended
    # fuzzing is fuzz/run.sh.
    local runs=${NB_FUZZ_RUNS:-50000} rc=0
    for t in build-fuzz/fuzz/fuzz_*; do
        [ -x "$t" ] || continue
        local name=$(basename "$t")
        local corpus="fuzz/corpus/${name#fuzz_}"
        local scratch=$(mktemp -d)
        [ -d "$corpus" ] && cp -r "$corpus"/. "$scratch"/
        echo "-- $name ($runs runs, seed 1)"
        if ! "$t" -seed=1 -runs="$runs" -print_final_stats=0 "$scratch" > "$scratch.log" 2>&1; then
            echo "fuzz target $name failed:"; tail -40 "$scratch.log"; rc=1
        fi
        rm -rf "$scratch" "$scratch.log"
    done
    return $rc
}

scripts/fetch-lwip.sh
scripts/fetch-wolfssl.sh || exit 1 # the static wolfSSL every build below links (cached in .deps/)
scripts/fetch-geo-testdata.sh || exit 1 # MaxMind's test databases (auth geo test, restrict_test.sh)
step "00 format" format_check
step "10 unit" unit build -DCMAKE_BUILD_TYPE=RelWithDebInfo
step "20 asan+ubsan" unit build-asan -DCMAKE_BUILD_TYPE=Debug -DNB_SANITIZE=ON
for t in tests/interop/*_test.sh; do
    step "30 interop $(basename "$t" .sh)" bash "$t"
done
# The same end-to-end flows once more with the sanitizer build of the binary (smaller transfers).
for t in tests/interop/*_test.sh; do
    step "35 interop+asan $(basename "$t" .sh)" env NBPROXY_BIN="$top/build-asan/nbproxy" \
        NBT_SIZE_MB=20 bash "$t"
done
step "40 fuzz" fuzz_smoke

echo
echo "steps: $passed passed, $failed failed${failures:+ (${failures[*]})}"
# A failed step with no countable test (build error, format) still counts as a failure.
[ "$failed" -gt 0 ] && [ "$tests_failed" = 0 ] && tests_failed=$failed
echo "$tests_passed passed, $tests_failed failed"
[ "$failed" = 0 ]
