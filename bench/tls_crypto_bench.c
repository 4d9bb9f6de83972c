/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * wolfCrypt micro-benchmark (not a test): what a TLS handshake and a TLS record cost with the
 * wolfSSL nbproxy links (scripts/fetch-wolfssl.sh), one core, in memory. Prints, per operation,
 * microseconds per operation or MB/s:
 *   RSA-2048 PSS sign (SHA-256), ECDSA P-256 sign, ECDH P-256, X25519 shared secret,
 *   AES-128-GCM and ChaCha20-Poly1305 encryption of 16 KiB records.
 * Build target: tls_crypto_bench (bench/CMakeLists.txt). Usage: tls_crypto_bench [seconds per
 * operation, default 1]. OpenSSL's figures for the same operations, for comparison:
 *   openssl speed -seconds 1 rsa2048 ecdsap256 ecdhp256 ecdhx25519
 *   openssl speed -seconds 1 -bytes 16384 -evp aes-128-gcm   (and -evp chacha20-poly1305)
 */
#include <wolfssl/options.h>

#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/curve25519.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "tls_crypto_bench: %s failed (%d)\n", what, rc);
    exit(1);
}

#define REC 16384

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    if (secs <= 0)
        secs = 1.0;
    static unsigned char in[REC], out[REC + 512], tag[16];
    unsigned char key[32] = {1}, iv[12] = {2}, hash[32] = {3};
    word32 ol;
    int rc;
    WC_RNG rng;
    if ((rc = wc_InitRng(&rng)) != 0)
        die("wc_InitRng", rc);

    RsaKey rsa;
    if ((rc = wc_InitRsaKey(&rsa, NULL)) != 0 || (rc = wc_MakeRsaKey(&rsa, 2048, 65537, &rng)) != 0)
        die("RSA-2048 key", rc);
    wc_RsaSetRNG(&rsa, &rng);
    unsigned long n = 0;
    double t0 = now_s(), t;
    do {
        rc = wc_RsaPSS_Sign(hash, sizeof hash, out, sizeof out, WC_HASH_TYPE_SHA256, WC_MGF1SHA256,
                            &rsa, &rng);
        if (rc < 0)
            die("wc_RsaPSS_Sign", rc);
        n++;
    } while ((t = now_s() - t0) < secs);
    printf("rsa2048_pss_sign_us\t%.1f\n", t / (double)n * 1e6);
    wc_FreeRsaKey(&rsa);

    ecc_key a, b;
    if ((rc = wc_ecc_init(&a)) != 0 || (rc = wc_ecc_init(&b)) != 0 ||
        (rc = wc_ecc_make_key_ex(&rng, 32, &a, ECC_SECP256R1)) != 0 ||
        (rc = wc_ecc_make_key_ex(&rng, 32, &b, ECC_SECP256R1)) != 0)
        die("P-256 keys", rc);
    (void)wc_ecc_set_rng(&a, &rng); /* ECDH blinding */
    n = 0;
    t0 = now_s();
    do {
        ol = sizeof out;
        if ((rc = wc_ecc_sign_hash(hash, sizeof hash, out, &ol, &rng, &a)) != 0)
            die("wc_ecc_sign_hash", rc);
        n++;
    } while ((t = now_s() - t0) < secs);
    printf("p256_sign_us\t%.1f\n", t / (double)n * 1e6);
    n = 0;
    t0 = now_s();
    do {
        ol = sizeof out;
        if ((rc = wc_ecc_shared_secret(&a, &b, out, &ol)) != 0)
            die("wc_ecc_shared_secret", rc);
        n++;
    } while ((t = now_s() - t0) < secs);
    printf("p256_ecdh_us\t%.1f\n", t / (double)n * 1e6);
    wc_ecc_free(&a);
    wc_ecc_free(&b);

    curve25519_key x, y;
    if ((rc = wc_curve25519_init(&x)) != 0 || (rc = wc_curve25519_init(&y)) != 0 ||
        (rc = wc_curve25519_make_key(&rng, 32, &x)) != 0 ||
        (rc = wc_curve25519_make_key(&rng, 32, &y)) != 0)
        die("X25519 keys", rc);
    n = 0;
    t0 = now_s();
    do {
        ol = 32;
        if ((rc = wc_curve25519_shared_secret(&x, &y, out, &ol)) != 0)
            die("wc_curve25519_shared_secret", rc);
        n++;
    } while ((t = now_s() - t0) < secs);
    printf("x25519_us\t%.1f\n", t / (double)n * 1e6);
    wc_curve25519_free(&x);
    wc_curve25519_free(&y);

    Aes aes;
    if ((rc = wc_AesInit(&aes, NULL, INVALID_DEVID)) != 0 ||
        (rc = wc_AesGcmSetKey(&aes, key, 16)) != 0)
        die("AES-128-GCM key", rc);
    n = 0;
    t0 = now_s();
    do {
        if ((rc = wc_AesGcmEncrypt(&aes, out, in, REC, iv, sizeof iv, tag, sizeof tag, NULL, 0)) !=
            0)
            die("wc_AesGcmEncrypt", rc);
        n++;
    } while ((t = now_s() - t0) < secs);
    printf("aes128gcm_16k_MBps\t%.0f\n", (double)n * REC / t / 1e6);
    wc_AesFree(&aes);

    n = 0;
    t0 = now_s();
    do {
        if ((rc = wc_ChaCha20Poly1305_Encrypt(key, iv, NULL, 0, in, REC, out, tag)) != 0)
            die("wc_ChaCha20Poly1305_Encrypt", rc);
        n++;
    } while ((t = now_s() - t0) < secs);
    printf("chacha20poly1305_16k_MBps\t%.0f\n", (double)n * REC / t / 1e6);
    wc_FreeRng(&rng);
    return 0;
}
