/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/* Known-answer tests for wg/crypto: X25519, ChaCha20-Poly1305, BLAKE2s, HMAC/KDF, TAI64N. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "platform/err.h"
#include "wg/crypto.h"

static void unhex(uint8_t *out, const char *hex, size_t len)
{
    size_t n = 0;

    assert_int_equal(sodium_hex2bin(out, len, hex, strlen(hex), NULL, &n, NULL), 0);
    assert_int_equal(n, len);
}

static void assert_hex(const uint8_t *got, const char *hex, size_t len)
{
    uint8_t want[256];

    unhex(want, hex, len);
    assert_memory_equal(got, want, len);
}

/* RFC 7748 §5.2 (single iterations) and §6.1 (Alice/Bob). */
static void test_x25519(void **state)
{
    static const struct {
        const char *scalar, *u, *out;
    } v[] = {
        {"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
         "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
         "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
        {"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
         "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
         "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
    };
    uint8_t k[32], u[32], out[32], a_priv[32], b_priv[32], a_pub[32], b_pub[32], s1[32], s2[32];
    size_t i;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        unhex(k, v[i].scalar, 32);
        unhex(u, v[i].u, 32);
        assert_int_equal(wg_crypto_dh(out, k, u), NB_OK);
        assert_hex(out, v[i].out, 32);
    }

    unhex(a_priv, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", 32);
    unhex(b_priv, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb", 32);
    assert_int_equal(wg_crypto_pubkey(a_pub, a_priv), NB_OK);
    assert_int_equal(wg_crypto_pubkey(b_pub, b_priv), NB_OK);
    assert_hex(a_pub, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", 32);
    assert_hex(b_pub, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", 32);
    assert_int_equal(wg_crypto_dh(s1, a_priv, b_pub), NB_OK);
    assert_int_equal(wg_crypto_dh(s2, b_priv, a_pub), NB_OK);
    assert_hex(s1, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", 32);
    assert_memory_equal(s1, s2, 32);

    /* Low-order points give an all-zero secret, which must be rejected. */
    memset(u, 0, sizeof(u));
    assert_int_equal(wg_crypto_dh(out, a_priv, u), NB_E_DROP);
    assert_true(sodium_is_zero(out, 32));
    memset(u, 0, sizeof(u));
    u[0] = 1;
    assert_int_equal(wg_crypto_dh(out, a_priv, u), NB_E_DROP);

    /* Clamping. */
    memset(k, 0xff, sizeof(k));
    wg_crypto_clamp(k);
    assert_int_equal(k[0], 0xf8);
    assert_int_equal(k[31], 0x7f);
}

static const char SUNSCREEN[] = "Ladies and Gentlemen of the class of '99: If I could offer you "
                                "only one tip for the future, sunscreen would be it.";
static const char SUNSCREEN_CT[] =
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da"
    "92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585"
    "808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116"
    "1ae10b594f09e26a7e902ecbd0600691";

/* RFC 8439 §2.8.2 through libsodium, then our counter-nonce wrapper against the same primitive. */
static void test_chacha20poly1305(void **state)
{
    uint8_t key[32], nonce[12], ad[12], ct[114 + 16], pt[114 + 16], buf[114 + 16];
    unsigned long long clen = 0;
    size_t i;
    uint64_t counter = UINT64_C(0x4746454443424140);

    for (i = 0; i < 32; i++)
        key[i] = (uint8_t)(0x80 + i);
    unhex(nonce, "070000004041424344454647", 12);
    unhex(ad, "50515253c0c1c2c3c4c5c6c7", 12);
    assert_int_equal(strlen(SUNSCREEN), 114);
    crypto_aead_chacha20poly1305_ietf_encrypt(ct, &clen, (const uint8_t *)SUNSCREEN, 114, ad, 12,
                                              NULL, nonce, key);
    assert_int_equal(clen, 130);
    assert_hex(ct, SUNSCREEN_CT, 130);

    /* Wrapper: nonce = 0x00000000 || le64(counter) = 00000000 40 41 .. 47. */
    unhex(nonce, "000000004041424344454647", 12);
    crypto_aead_chacha20poly1305_ietf_encrypt(ct, &clen, (const uint8_t *)SUNSCREEN, 114, ad, 12,
                                              NULL, nonce, key);
    memcpy(buf, SUNSCREEN, 114);
    wg_crypto_aead_seal(buf, buf, 114, ad, 12, counter, key); /* in place */
    assert_memory_equal(buf, ct, 130);
    assert_int_equal(wg_crypto_aead_open(pt, buf, 130, ad, 12, counter, key), NB_OK);
    assert_memory_equal(pt, SUNSCREEN, 114);
    /* Wrong counter, wrong AD, flipped byte: rejected. */
    assert_int_equal(wg_crypto_aead_open(pt, buf, 130, ad, 12, counter + 1, key), NB_E_DROP);
    assert_int_equal(wg_crypto_aead_open(pt, buf, 130, ad, 11, counter, key), NB_E_DROP);
    for (i = 0; i < 130; i++) {
        buf[i] ^= 0x01;
        assert_int_equal(wg_crypto_aead_open(pt, buf, 130, ad, 12, counter, key), NB_E_DROP);
        buf[i] ^= 0x01;
    }
    assert_int_equal(wg_crypto_aead_open(pt, buf, 15, ad, 12, counter, key), NB_E_DROP);
    /* Empty plaintext (keepalive / handshake "{}"). */
    wg_crypto_aead_seal(buf, NULL, 0, NULL, 0, 0, key);
    assert_int_equal(wg_crypto_aead_open(NULL, buf, 16, NULL, 0, 0, key), NB_OK);
}

static void test_xchacha(void **state)
{
    uint8_t key[32] = {1}, nonce[24] = {2}, ad[16] = {3}, pt[16] = {4}, ct[32], out[16];

    wg_crypto_xaead_seal(ct, pt, 16, ad, 16, nonce, key);
    assert_int_equal(wg_crypto_xaead_open(out, ct, 32, ad, 16, nonce, key), NB_OK);
    assert_memory_equal(out, pt, 16);
    ct[5] ^= 1;
    assert_int_equal(wg_crypto_xaead_open(out, ct, 32, ad, 16, nonce, key), NB_E_DROP);
}

/* RFC 7693 Appendix B and the WireGuard construction hash. */
static void test_blake2s(void **state)
{
    uint8_t h[32], mac[16], key[32];
    const char *c = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
    const char *id = "WireGuard v1 zx2c4 Jason@zx2c4.com";
    size_t i;

    wg_crypto_hash(h, (const uint8_t *)"abc", 3, NULL, 0);
    assert_hex(h, "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982", 32);
    /* Split input gives the same digest. */
    wg_crypto_hash(h, (const uint8_t *)"a", 1, (const uint8_t *)"bc", 2);
    assert_hex(h, "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982", 32);

    wg_crypto_hash(h, (const uint8_t *)c, strlen(c), NULL, 0);
    assert_hex(h, "60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36", 32);
    wg_crypto_hash(h, h, 32, (const uint8_t *)id, strlen(id));
    assert_hex(h, "2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3", 32);

    /* Keyed BLAKE2s-128, as python3 hashlib.blake2s(b"hello", key=bytes(range(32)), 16). */
    for (i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    wg_crypto_mac(mac, key, 32, (const uint8_t *)"hello", 5);
    assert_hex(mac, "1f946dc212a39570bc06fd378517a91e", 16);
}

/* Expected values computed with python3 hmac.new(key, msg, hashlib.blake2s). */
static void test_hmac_kdf(void **state)
{
    static const char *msg = "The quick brown fox jumps over the lazy dog";
    uint8_t h[32], ck[32], in[32], longkey[100], t1[32], t2[32], t3[32];
    size_t i;

    wg_crypto_hmac(h, (const uint8_t *)"key", 3, (const uint8_t *)msg, strlen(msg));
    assert_hex(h, "f93215bb90d4af4c3061cd932fb169fb8bb8a91d0b4022baea1271e1323cd9a0", 32);
    for (i = 0; i < sizeof(longkey); i++)
        longkey[i] = (uint8_t)i;
    wg_crypto_hmac(h, longkey, sizeof(longkey), (const uint8_t *)"abc", 3);
    assert_hex(h, "c1b751501db12b753069a918627b623179be55c8cc7ca5c4e14bdf32274ac656", 32);

    for (i = 0; i < 32; i++) {
        ck[i] = (uint8_t)i;
        in[i] = (uint8_t)(0x40 + i);
    }
    wg_crypto_kdf(t1, t2, t3, ck, in, 32);
    assert_hex(t1, "a308e29d3a10567bd1ac089e27310bd54ec6522ca2118240c3dd2416f7dc23fa", 32);
    assert_hex(t2, "c68caa124476385ed5f83d7aa98ebe58c9b636f48586d36061cf3781cc84b9a7", 32);
    assert_hex(t3, "089a9e4090ac20caaafab1a1e6d221242a8f1f547f4c2aea31d6312858451388", 32);
    /* KDF1 / KDF2 are prefixes of KDF3; outputs may alias the chaining key. */
    memcpy(h, ck, 32);
    wg_crypto_kdf(h, NULL, NULL, h, in, 32);
    assert_hex(h, "a308e29d3a10567bd1ac089e27310bd54ec6522ca2118240c3dd2416f7dc23fa", 32);
    /* Empty input, as in the final transport-key derivation. */
    wg_crypto_kdf(t1, t2, NULL, ck, NULL, 0);
    assert_hex(t1, "7a38c34bf2b8738d7374ca77c44ecb309a11d2b2528304fa86052c365e722624", 32);
    assert_hex(t2, "1a17621f346abdc520746a9fb64d8eb03231d674fc15687537b0780fd9c060fd", 32);
}

static void test_tai64n(void **state)
{
    struct timespec ts = {.tv_sec = 1, .tv_nsec = 999999999};
    uint8_t out[12], later[12];

    wg_crypto_tai64n(out, &ts);
    /* 2^62 + 10 + 1 = 0x400000000000000b; nanoseconds rounded down to a multiple of 2^24. */
    assert_hex(out, "400000000000000b3b000000", 12);
    ts.tv_sec = 2;
    ts.tv_nsec = 0;
    wg_crypto_tai64n(later, &ts);
    assert_true(memcmp(later, out, 12) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x25519),   cmocka_unit_test(test_chacha20poly1305),
        cmocka_unit_test(test_xchacha),  cmocka_unit_test(test_blake2s),
        cmocka_unit_test(test_hmac_kdf), cmocka_unit_test(test_tai64n),
    };

    assert_int_equal(wg_crypto_init(), NB_OK);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
