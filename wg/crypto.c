/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * Primitive layer under noise.c and cookie.c. BLAKE2s comes from wolfCrypt; everything else from
 * libsodium. Errors from wolfCrypt's BLAKE2s can only be argument errors, which our fixed sizes
 * rule out, so the hash wrappers return void.
 */

#include "wg/crypto.h"

#include <string.h>

#include <sodium.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/blake2.h>

#include "platform/err.h"

enum { BLAKE2S_BLOCK_LEN = 64 };

int wg_crypto_init(void)
{
    return sodium_init() < 0 ? NB_E_INVAL : NB_OK;
}

void wg_crypto_hash(uint8_t out[WG_HASH_LEN], const uint8_t *a, size_t alen, const uint8_t *b,
                    size_t blen)
{
    Blake2s s;

    wc_InitBlake2s(&s, WG_HASH_LEN);
    if (alen)
        wc_Blake2sUpdate(&s, a, (word32)alen);
    if (blen)
        wc_Blake2sUpdate(&s, b, (word32)blen);
    wc_Blake2sFinal(&s, out, WG_HASH_LEN);
    sodium_memzero(&s, sizeof(s));
}

void wg_crypto_mac(uint8_t out[WG_MAC_LEN], const uint8_t *key, size_t keylen, const uint8_t *in,
                   size_t inlen)
{
    Blake2s s;

    wc_InitBlake2s_WithKey(&s, WG_MAC_LEN, key, (word32)keylen);
    if (inlen)
        wc_Blake2sUpdate(&s, in, (word32)inlen);
    wc_Blake2sFinal(&s, out, WG_MAC_LEN);
    sodium_memzero(&s, sizeof(s));
}

void wg_crypto_hmac(uint8_t out[WG_HASH_LEN], const uint8_t *key, size_t keylen, const uint8_t *in,
                    size_t inlen)
{
    uint8_t k[BLAKE2S_BLOCK_LEN] = {0};
    uint8_t pad[BLAKE2S_BLOCK_LEN];
    uint8_t inner[WG_HASH_LEN];
    Blake2s s;
    size_t i;

    if (keylen > BLAKE2S_BLOCK_LEN)
        wg_crypto_hash(k, key, keylen, NULL, 0);
    else if (keylen)
        memcpy(k, key, keylen);

    for (i = 0; i < sizeof(pad); i++)
        pad[i] = k[i] ^ 0x36;
    wc_InitBlake2s(&s, WG_HASH_LEN);
    wc_Blake2sUpdate(&s, pad, sizeof(pad));
    if (inlen)
        wc_Blake2sUpdate(&s, in, (word32)inlen);
    wc_Blake2sFinal(&s, inner, WG_HASH_LEN);

    for (i = 0; i < sizeof(pad); i++)
        pad[i] = k[i] ^ 0x5c;
    wc_InitBlake2s(&s, WG_HASH_LEN);
    wc_Blake2sUpdate(&s, pad, sizeof(pad));
    wc_Blake2sUpdate(&s, inner, sizeof(inner));
    wc_Blake2sFinal(&s, out, WG_HASH_LEN);

    sodium_memzero(k, sizeof(k));
    sodium_memzero(pad, sizeof(pad));
    sodium_memzero(inner, sizeof(inner));
    sodium_memzero(&s, sizeof(s));
}

void wg_crypto_kdf(uint8_t t1[WG_HASH_LEN], uint8_t *t2, uint8_t *t3, const uint8_t ck[WG_HASH_LEN],
                   const uint8_t *in, size_t inlen)
{
    uint8_t t0[WG_HASH_LEN];
    uint8_t buf[WG_HASH_LEN + 1];
    uint8_t out[WG_HASH_LEN];

    wg_crypto_hmac(t0, ck, WG_HASH_LEN, in, inlen);

    buf[0] = 0x1;
    wg_crypto_hmac(out, t0, WG_HASH_LEN, buf, 1);
    memcpy(buf, out, WG_HASH_LEN);
    memcpy(t1, out, WG_HASH_LEN); /* t1 may alias ck: ck is not read again */
    if (!t2)
        goto out;

    buf[WG_HASH_LEN] = 0x2;
    wg_crypto_hmac(out, t0, WG_HASH_LEN, buf, WG_HASH_LEN + 1);
    memcpy(buf, out, WG_HASH_LEN);
    memcpy(t2, out, WG_HASH_LEN);
    if (!t3)
        goto out;

    buf[WG_HASH_LEN] = 0x3;
    wg_crypto_hmac(out, t0, WG_HASH_LEN, buf, WG_HASH_LEN + 1);
    memcpy(t3, out, WG_HASH_LEN);

out:
    sodium_memzero(t0, sizeof(t0));
    sodium_memzero(buf, sizeof(buf));
    sodium_memzero(out, sizeof(out));
}

void wg_crypto_clamp(uint8_t priv[WG_KEY_LEN])
{
    priv[0] &= 248;
    priv[31] = (uint8_t)((priv[31] & 127) | 64);
}

int wg_crypto_pubkey(uint8_t pub[WG_KEY_LEN], const uint8_t priv[WG_KEY_LEN])
{
    return crypto_scalarmult_base(pub, priv) == 0 ? NB_OK : NB_E_INVAL;
}

int wg_crypto_dh(uint8_t out[WG_KEY_LEN], const uint8_t priv[WG_KEY_LEN],
                 const uint8_t pub[WG_KEY_LEN])
{
    /* libsodium clamps the scalar and returns -1 for an all-zero result (low-order point). */
    if (crypto_scalarmult(out, priv, pub) != 0) {
        sodium_memzero(out, WG_KEY_LEN);
        return NB_E_DROP;
    }
    return NB_OK;
}

static void counter_nonce(uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES],
                          uint64_t counter)
{
    int i;

    memset(nonce, 0, 4);
    for (i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(counter >> (8 * i));
}

void wg_crypto_aead_seal(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *ad,
                         size_t adlen, uint64_t counter, const uint8_t key[WG_KEY_LEN])
{
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];

    counter_nonce(nonce, counter);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(dst, dst + len, NULL, src, len, ad, adlen,
                                                       NULL, nonce, key);
}

int wg_crypto_aead_open(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *ad,
                        size_t adlen, uint64_t counter, const uint8_t key[WG_KEY_LEN])
{
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];

    if (len < WG_AEAD_TAG_LEN)
        return NB_E_DROP;
    counter_nonce(nonce, counter);
    if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(dst, NULL, src, len - WG_AEAD_TAG_LEN,
                                                           src + len - WG_AEAD_TAG_LEN, ad, adlen,
                                                           nonce, key) != 0)
        return NB_E_DROP;
    return NB_OK;
}

void wg_crypto_xaead_seal(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *ad,
                          size_t adlen, const uint8_t nonce[WG_XNONCE_LEN],
                          const uint8_t key[WG_KEY_LEN])
{
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(dst, dst + len, NULL, src, len, ad, adlen,
                                                        NULL, nonce, key);
}

int wg_crypto_xaead_open(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *ad,
                         size_t adlen, const uint8_t nonce[WG_XNONCE_LEN],
                         const uint8_t key[WG_KEY_LEN])
{
    if (len < WG_AEAD_TAG_LEN)
        return NB_E_DROP;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(dst, NULL, src, len - WG_AEAD_TAG_LEN,
                                                            src + len - WG_AEAD_TAG_LEN, ad, adlen,
                                                            nonce, key) != 0)
        return NB_E_DROP;
    return NB_OK;
}

void wg_crypto_tai64n(uint8_t out[WG_TAI64N_LEN], const struct timespec *wall)
{
    /* TAI64 label: 2^62 + 10 (TAI-UTC offset at the epoch, as the reference implementations). */
    uint64_t secs = UINT64_C(0x400000000000000a) + (uint64_t)wall->tv_sec;
    uint32_t nsec = (uint32_t)wall->tv_nsec & ~((UINT32_C(1) << 24) - 1);
    int i;

    for (i = 0; i < 8; i++)
        out[i] = (uint8_t)(secs >> (56 - 8 * i));
    for (i = 0; i < 4; i++)
        out[8 + i] = (uint8_t)(nsec >> (24 - 8 * i));
}
