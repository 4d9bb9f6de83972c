/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_WG_CRYPTO_H
#define NB_WG_CRYPTO_H

/*
 * Thin wrappers over libsodium (X25519, ChaCha20-Poly1305, XChaCha20-Poly1305) and wolfCrypt
 * (BLAKE2s), shaped the way the WireGuard whitepaper §5.4 names them: HASH, MAC, HMAC, KDFn, DH,
 * AEAD, XAEAD, TAI64N. No state, no allocation; every function wipes its stack secrets.
 */

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "wg/messages.h"

typedef uint8_t wg_key[WG_KEY_LEN];

/* Initialises libsodium. Call once before anything else in wg/ (idempotent). NB_OK or NB_E_INVAL.
 */
int wg_crypto_init(void);

/* HASH(a || b): BLAKE2s-256. Either part may be empty (len 0, pointer may be NULL). */
void wg_crypto_hash(uint8_t out[WG_HASH_LEN], const uint8_t *a, size_t alen, const uint8_t *b,
                    size_t blen);

/* MAC(key, in): keyed BLAKE2s with a 16-byte output (MAC1/MAC2/cookie). keylen 1..32. */
void wg_crypto_mac(uint8_t out[WG_MAC_LEN], const uint8_t *key, size_t keylen, const uint8_t *in,
                   size_t inlen);

/* HMAC(key, in) with BLAKE2s-256 as the hash (RFC 2104, block size 64). */
void wg_crypto_hmac(uint8_t out[WG_HASH_LEN], const uint8_t *key, size_t keylen, const uint8_t *in,
                    size_t inlen);

/*
 * KDFn(ck, in) as WireGuard defines it: T0 = HMAC(ck, in), T1 = HMAC(T0, 0x1),
 * T2 = HMAC(T0, T1 || 0x2), T3 = HMAC(T0, T2 || 0x3). t2/t3 may be NULL for KDF1/KDF2.
 * Outputs may alias ck.
 */
void wg_crypto_kdf(uint8_t t1[WG_HASH_LEN], uint8_t *t2, uint8_t *t3, const uint8_t ck[WG_HASH_LEN],
                   const uint8_t *in, size_t inlen);

/* Clamps an X25519 private key in place (RFC 7748 §5). */
void wg_crypto_clamp(uint8_t priv[WG_KEY_LEN]);

/* Derives the public key of a private key. NB_OK, or NB_E_INVAL for a degenerate key. */
int wg_crypto_pubkey(uint8_t pub[WG_KEY_LEN], const uint8_t priv[WG_KEY_LEN]);

/*
 * DH(priv, pub): X25519 (the scalar is clamped internally). NB_E_DROP when the shared secret is
 * all zeros (low-order public key), in which case out is zeroed.
 */
int wg_crypto_dh(uint8_t out[WG_KEY_LEN], const uint8_t priv[WG_KEY_LEN],
                 const uint8_t pub[WG_KEY_LEN]);

/*
 * AEAD(key, counter, plain, ad): ChaCha20-Poly1305 (IETF), nonce = 32 zero bits || le64(counter).
 * seal writes len + 16 bytes to dst; dst may equal src (in place). open takes the ciphertext
 * including its tag (len >= 16) and writes len - 16 bytes; NB_OK, or NB_E_DROP on a bad tag, in
 * which case nothing is written (the tag is checked before decrypting). dst may equal src.
 */
void wg_crypto_aead_seal(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *ad,
                         size_t adlen, uint64_t counter, const uint8_t key[WG_KEY_LEN]);
int wg_crypto_aead_open(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *ad,
                        size_t adlen, uint64_t counter, const uint8_t key[WG_KEY_LEN]);

/* XAEAD(key, nonce, plain, ad): XChaCha20-Poly1305, same conventions as above. */
void wg_crypto_xaead_seal(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *ad,
                          size_t adlen, const uint8_t nonce[WG_XNONCE_LEN],
                          const uint8_t key[WG_KEY_LEN]);
int wg_crypto_xaead_open(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *ad,
                         size_t adlen, const uint8_t nonce[WG_XNONCE_LEN],
                         const uint8_t key[WG_KEY_LEN]);

/*
 * TAI64N of a wall-clock time: big-endian (2^62 + seconds) || big-endian nanoseconds. The
 * nanoseconds are rounded down to a multiple of 2^24 (~16.8 ms, below 1/INITIATIONS_PER_SECOND) so
 * the timestamp does not leak a fine-grained clock (same reasoning as the Linux tai64n_now).
 */
void wg_crypto_tai64n(uint8_t out[WG_TAI64N_LEN], const struct timespec *wall);

#endif
