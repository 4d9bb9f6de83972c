#!/usr/bin/env bash
# Builds the one wolfSSL nbproxy links (tls/, wg/, mgmt/ through tls/, tests, fuzz, ASan): a
# static libwolfssl.a from Debian 12's source package (wolfssl 5.5.4, with Debian's security
# patches), configured with exactly the features the tree uses (tls/README.md, "wolfSSL build").
# No wolfSSL source is ever committed: source, build and result live in the ignored .deps/:
#   .deps/wolfssl-src/     the unpacked source package (apt-get source; deb-src must be enabled)
#   .deps/wolfssl/         include/ + lib/libwolfssl.a + nb-build.stamp (what CMake links)
# Idempotent: a no-op (milliseconds) when the stamp matches this script's configuration, so
# scripts/build.sh, scripts/test.sh and every CMake configure run it. NB_WOLFSSL_JOBS sets -j.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
deps="$top/.deps"
src="$deps/wolfssl-src"
out="$deps/wolfssl"
want_upstream=5.5.4

# Features, each for a reason (a missing one fails a test or does not link):
cmake_opts=(
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON # linked into PIE executables
    -DWOLFSSL_EXAMPLES=no -DWOLFSSL_CRYPT_TESTS=no
    -DWOLFSSL_TLS13=yes -DWOLFSSL_OLD_TLS=no # TLS 1.2 and 1.3 only (tls/ policy)
    -DWOLFSSL_DTLS=no -DWOLFSSL_POSTAUTH=no  # post-handshake auth keeps ~8 KB per connection
    -DWOLFSSL_DH=no                          # no DHE in the policy
    -DWOLFSSL_SESSION_TICKET=yes             # stateless resumption (tls/ctx.c ticket callback)
    -DWOLFSSL_ECC=yes -DWOLFSSL_CURVE25519=yes -DWOLFSSL_SUPPORTED_CURVES=yes # P-256/384, X25519
    -DWOLFSSL_AESGCM=yes -DWOLFSSL_CHACHA=yes -DWOLFSSL_POLY1305=yes          # the AEADs
    -DWOLFSSL_RSA_PSS=yes                    # TLS 1.3 with RSA certificates
    -DWOLFSSL_CERTGEN=yes -DWOLFSSL_KEYGEN=yes -DWOLFSSL_CERTEXT=yes # self-signed (tls/cert.c)
    -DWOLFSSL_CERTREQ=yes                    # CSRs (ACME)
    -DWOLFSSL_BLAKE2S=yes                    # compiles blake2s.c (wg/ handshake hashes)
    -DWOLFSSL_SHA3=no                        # unused; its x86_64 assembly is not in 5.5.4's CMake
)
# Definitions CMake has no option for; they land in the installed wolfssl/options.h too, so our
# code sees the same configuration the library was built with.
defs=(
    -DOPENSSL_EXTRA         # X509_*, ASN1_*, set_groups, get0_param/set1_ip_asc (tls/)
    -DHAVE_TLS_EXTENSIONS -DHAVE_SNI -DHAVE_ALPN
    -DWOLFSSL_ALWAYS_KEEP_SNI          # SNI still readable after the handshake (tls_stream_info)
    -DHAVE_SERVER_RENEGOTIATION_INFO   # RFC 5746: OpenSSL 3 refuses TLS 1.2 servers without it
    -DHAVE_EX_DATA                     # wolfSSL_set_app_data
    -DWOLFSSL_ALT_NAMES                # SANs in generated certificates
    -DWOLFSSL_IP_ALT_NAME              # IP SANs: the client's IP-literal verification
    -DWOLFSSL_AEAD_ONLY                # no CBC suites
    -DHAVE_BLAKE2S                     # wc_InitBlake2s* (wg/crypto.c)
    # Not WOLFSSL_ASN_TEMPLATE (+ WOLFSSL_CUSTOM_OID for wc_SetCustomExtension): 5.5.4's template
    # CSR encoder drops the subjectAltName (EncodeExtensions skips it "forRequest"), which
    # fails acme's CSR test; acme/certgen.c writes the tls-alpn-01 extension itself.
    -DFP_ECC                           # fixed-point ECC tables (Debian's build has them too)
    -DWOLFSSL_SP_MATH_ALL              # the default math, named for the line below
)
# Like Debian's (autotools) build: sp_int.c's x86_64 inline assembly for big-number arithmetic.
[ "$(uname -m)" = x86_64 ] && defs+=(-DWOLFSSL_SP_X86_64)
# Single-precision fixed-size code for RSA-2048/3072 and P-256/P-384 (configure's --enable-sp
# --enable-sp-asm): RSA-2048 signing ~2.5x faster than sp_int.c's generic math.
defs+=(-DWOLFSSL_HAVE_SP_RSA -DWOLFSSL_HAVE_SP_ECC -DWOLFSSL_SP_384 -DWOLFSSL_SP_LARGE_CODE)
# x86_64 also gets configure's --enable-intelasm: AES-NI/PCLMUL AES-GCM (software AES-GCM ran at
# 153 MB/s here, a TLS throughput ceiling), and the AVX/AVX2/BMI2 assembly for SHA-2, ChaCha20,
# Poly1305 and X25519. wolfSSL picks every one of these at run time from CPUID and falls back to
# C, so the static binary still runs on CPUs without them; only -maes is a compile flag (aes.c's
# key-schedule intrinsics, in functions called only after the CPUID check).
c_only=()
if [ "$(uname -m)" = x86_64 ]; then
    defs+=(-DWOLFSSL_SP_ASM -DWOLFSSL_SP_X86_64_ASM -DWOLFSSL_X86_64_BUILD)
    cmake_opts+=(-DWOLFSSL_SP=yes -DWOLFSSL_SP_ASM=yes -DWOLFSSL_SP_X86_64_ASM=yes) # sp_x86_64{.c,_asm.S}
    defs+=(-DWOLFSSL_AESNI -DUSE_INTEL_SPEEDUP -DHAVE_AESGCM)
    cmake_opts+=(-DWOLFSSL_AESNI=yes -DBUILD_INTELASM=yes) # aes{,_gcm}_asm.S, sha*/chacha/poly1305/fe_x25519_asm.S
    c_only+=(-maes)
else
    cmake_opts+=(-DWOLFSSL_SP=yes) # portable C (sp_c64.c)
fi
# Any change to this script (options or steps) rebuilds: the stamp records its checksum.
config="wolfssl $want_upstream, fetch-wolfssl.sh $(cksum <"$0" | cut -d' ' -f1)"

if [ -f "$out/nb-build.stamp" ] && [ "$(head -n 1 "$out/nb-build.stamp")" = "$config" ] &&
    [ -f "$out/lib/libwolfssl.a" ]; then
    exit 0
fi

mkdir -p "$deps"
# One fetch/build at a time (build/ and build-asan/ configure may run this concurrently).
exec 9>"$deps/.wolfssl.lock"
flock 9
if [ -f "$out/nb-build.stamp" ] && [ "$(head -n 1 "$out/nb-build.stamp")" = "$config" ] &&
    [ -f "$out/lib/libwolfssl.a" ]; then
    exit 0
fi
t0=$(date +%s)

if [ ! -f "$src/wolfssl/version.h" ]; then
    tmp=$(mktemp -d "$deps/fetch.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get source -qq wolfssl >/dev/null 2>&1) ||
        { echo "fetch-wolfssl: apt-get source wolfssl failed (is deb-src enabled? scripts/install-deps.sh does it)" >&2; exit 1; }
    dir=$(find "$tmp" -maxdepth 1 -type d -name "wolfssl-$want_upstream*" | head -n 1)
    [ -n "$dir" ] || { echo "fetch-wolfssl: apt-get source wolfssl produced no wolfssl-$want_upstream tree" >&2; exit 1; }
    dsc=$(find "$tmp" -maxdepth 1 -name 'wolfssl_*.dsc' | head -n 1)
    sed -n 's/^Version: //p' "$dsc" >"$dir/.nb-debian-version"
    rm -rf "$src"
    mv "$dir" "$src"
fi
got=$(sed -n 's/^#define LIBWOLFSSL_VERSION_STRING "\(.*\)"/\1/p' "$src/wolfssl/version.h")
[ "$got" = "$want_upstream" ] ||
    { echo "fetch-wolfssl: expected wolfSSL $want_upstream, the source package has '$got'" >&2; exit 1; }
debver=$(cat "$src/.nb-debian-version" 2>/dev/null || echo unknown)

bld="$deps/wolfssl-build"
rm -rf "$bld" "$out.new"
cmake -S "$src" -B "$bld" "${cmake_opts[@]}" -DCMAKE_C_FLAGS="${defs[*]} ${c_only[*]}" -DCMAKE_ASM_FLAGS="${defs[*]}" \
    -DCMAKE_C_FLAGS_RELEASE="-O2 -fstack-protector-strong" \
    -DCMAKE_INSTALL_PREFIX="$out.new" >"$deps/wolfssl-build.log" 2>&1 ||
    { tail -30 "$deps/wolfssl-build.log" >&2; exit 1; }
cmake --build "$bld" -j"${NB_WOLFSSL_JOBS:-$(nproc)}" >>"$deps/wolfssl-build.log" 2>&1 &&
    cmake --install "$bld" >>"$deps/wolfssl-build.log" 2>&1 ||
    { tail -30 "$deps/wolfssl-build.log" >&2; exit 1; }
[ -f "$out.new/lib/libwolfssl.a" ] || { echo "fetch-wolfssl: no libwolfssl.a after the build" >&2; exit 1; }
# wolfSSL's own files also read the build's config.h (HAVE___UINT128_T, SIZEOF_LONG...), which
# sizes structures such as ecc_key; a user that sees only options.h would get other sizes (seen:
# wc_ecc_init wrote 32 bytes past our ecc_key). So options.h gets every config.h macro the
# installed headers test.
opts_h="$out.new/include/wolfssl/options.h"
extra=$(grep -E '^#define [A-Za-z0-9_]+' "$bld/config.h" | while read -r _ name val; do
    if grep -rqw -- "$name" "$out.new/include"; then
        printf '#ifndef %s\n#define %s %s\n#endif\n' "$name" "$name" "$val"
    fi
done)
[ -n "$extra" ] || { echo "fetch-wolfssl: nothing taken from config.h (layout changed?)" >&2; exit 1; }
awk -v extra="/* from the build's config.h (scripts/fetch-wolfssl.sh) */
$extra
" '{ print } /^#define WOLFSSL_OPTIONS_H/ { print extra }' "$opts_h" >"$opts_h.tmp"
mv "$opts_h.tmp" "$opts_h"
rm -rf "$out.new/lib/pkgconfig" "$out.new/lib/cmake" "$out.new/share" "$out.new/bin"
printf '%s\nDebian source %s, built in %s s\n' "$config" "$debver" "$(($(date +%s) - t0))" \
    >"$out.new/nb-build.stamp"
rm -rf "$out" "$bld"
mv "$out.new" "$out"
echo "wolfSSL $want_upstream (Debian $debver) built into $out ($(($(date +%s) - t0)) s)"
