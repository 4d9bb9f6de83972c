/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_ACME_JWS_H
#define NB_ACME_JWS_H

/*
 * ACME request signing (RFC 8555 §6.2): JWS (RFC 7515) flattened JSON serialization with ES256
 * over an ECDSA P-256 key (signature = r || s, 32 bytes each, not DER), the JWK of that key and
 * its thumbprint (RFC 7638), the key authorization of a challenge (RFC 8555 §8.1) and the
 * external account binding (RFC 8555 §7.3.4, HS256 over the account JWK). Pure: wolfCrypt for
 * the primitives, libsodium for base64url, cJSON for the JSON that carries server strings.
 *
 * Keys: an acme_key holds a wolfCrypt ecc_key; acme_key_free() wipes it (wc_ecc_free zeroes the
 * private scalar). PEM/DER buffers with private keys are wiped by the functions that make them
 * disposable (acme_pem_free). Nothing here logs.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ecc.h>

struct acme_key {
    ecc_key k;
    bool init;
};

/* base64url without padding (RFC 7515 §2) of n bytes into out (cap bytes, NUL-terminated).
 * Returns the length, or 0 when it does not fit. */
size_t acme_b64url(char *out, size_t cap, const uint8_t *in, size_t n);

/* Fresh P-256 key. NB_OK, NB_E_IO. */
int acme_key_generate(struct acme_key *k) __attribute__((warn_unused_result));
/* From raw big-endian coordinates and scalar (32 bytes each; for test vectors). */
int acme_key_from_raw(struct acme_key *k, const uint8_t x[32], const uint8_t y[32],
                      const uint8_t d[32]) __attribute__((warn_unused_result));
/* From a PEM "EC PRIVATE KEY" (SEC1) or PKCS#8 "PRIVATE KEY" holding a P-256 key.
 * NB_OK, NB_E_PARSE (not such a key). */
int acme_key_from_pem(struct acme_key *k, const char *pem, size_t len)
    __attribute__((warn_unused_result));
/* PEM "EC PRIVATE KEY" in a malloc'd NUL-terminated buffer; free with acme_pem_free(). */
int acme_key_to_pem(struct acme_key *k, char **pem, size_t *len)
    __attribute__((warn_unused_result));
void acme_key_free(struct acme_key *k);
/* Wipes and frees a buffer holding secrets. NULL is a no-op. */
void acme_pem_free(char *p, size_t len);

/* The public JWK in RFC 7638 canonical form {"crv":"P-256","kty":"EC","x":"…","y":"…"}.
 * Returns its length (< cap) or 0. 160 bytes are enough. */
size_t acme_jwk(struct acme_key *k, char *out, size_t cap);
/* base64url(SHA-256(canonical JWK)), 43 characters + NUL. NB_OK or NB_E_IO. */
int acme_thumbprint(struct acme_key *k, char out[44]) __attribute__((warn_unused_result));
/* token "." thumbprint (RFC 8555 §8.1). Returns the length or 0 (bad token / too small). */
size_t acme_key_authorization(struct acme_key *k, const char *token, char *out, size_t cap);

/*
 * A JWS for an ACME POST: protected header {"alg":"ES256", "jwk" or "kid", "nonce", "url"},
 * payload base64url(payload) ("" for POST-as-GET when payload is NULL), signature ES256.
 * kid NULL = embed the JWK (newAccount). Returns a malloc'd JSON string (caller frees) or NULL.
 */
char *acme_jws(struct acme_key *k, const char *kid, const char *nonce, const char *url,
               const char *payload);

/*
 * The externalAccountBinding object (RFC 8555 §7.3.4): a JWS with protected header
 * {"alg":"HS256","kid":eab_kid,"url":url}, payload = the account JWK, signed with HMAC-SHA256
 * under the decoded MAC key. Returns a malloc'd JSON string or NULL.
 */
char *acme_eab(struct acme_key *k, const char *eab_kid, const uint8_t *mac, size_t mac_len,
               const char *url);

/* Decodes base64url (padding tolerated, as Go's RawURLEncoding is what netbird-proxy uses;
 * padding is refused there, and here too). Returns the length, or -1 (bad input / too long). */
long acme_b64url_decode(uint8_t *out, size_t cap, const char *in);

#endif
