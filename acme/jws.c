/* SPDX-License-Identifier: BSD-3-Clause */
#include "acme/jws.h"

#include "platform/err.h"

#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

size_t acme_b64url(char *out, size_t cap, const uint8_t *in, size_t n)
{
    size_t need = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (need > cap)
        return 0;
    sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return strlen(out);
}

long acme_b64url_decode(uint8_t *out, size_t cap, const char *in)
{
    size_t bin_len = 0;
    if (sodium_base642bin(out, cap, in, strlen(in), NULL, &bin_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return -1;
    return (long)bin_len;
}

int acme_key_generate(struct acme_key *k)
{
    WC_RNG rng;
    memset(k, 0, sizeof *k);
    if (wc_InitRng(&rng) != 0)
        return NB_E_IO;
    int rc = NB_E_IO;
    if (wc_ecc_init(&k->k) == 0) {
        k->init = true;
        if (wc_ecc_make_key_ex(&rng, 32, &k->k, ECC_SECP256R1) == 0)
            rc = NB_OK;
    }
    wc_FreeRng(&rng);
    if (rc != NB_OK)
        acme_key_free(k);
    return rc;
}

int acme_key_from_raw(struct acme_key *k, const uint8_t x[32], const uint8_t y[32],
                      const uint8_t d[32])
{
    memset(k, 0, sizeof *k);
    if (wc_ecc_init(&k->k) != 0)
        return NB_E_IO;
    k->init = true;
    if (wc_ecc_import_unsigned(&k->k, (byte *)x, (byte *)y, (byte *)d, ECC_SECP256R1) != 0 ||
        wc_ecc_check_key(&k->k) != 0) {
        acme_key_free(k);
        return NB_E_PARSE;
    }
    return NB_OK;
}

int acme_key_from_pem(struct acme_key *k, const char *pem, size_t len)
{
    memset(k, 0, sizeof *k);
    uint8_t der[512];
    int dl = wc_KeyPemToDer((const unsigned char *)pem, (int)len, der, sizeof der, NULL);
    if (dl <= 0)
        return NB_E_PARSE;
    int rc = NB_E_PARSE;
    if (wc_ecc_init(&k->k) == 0) {
        k->init = true;
        word32 idx = 0;
        /* wc_EccPrivateKeyDecode takes SEC1; PKCS#8 is unwrapped first. */
        word32 off = 0;
        if (wc_GetPkcs8TraditionalOffset(der, &off, (word32)dl) < 0)
            off = 0;
        idx = off;
        if (wc_EccPrivateKeyDecode(der, &idx, &k->k, (word32)dl) == 0 &&
            wc_ecc_get_curve_id(k->k.idx) == ECC_SECP256R1 && wc_ecc_check_key(&k->k) == 0)
            rc = NB_OK;
    }
    sodium_memzero(der, sizeof der);
    if (rc != NB_OK)
        acme_key_free(k);
    return rc;
}

int acme_key_to_pem(struct acme_key *k, char **pem, size_t *len)
{
    uint8_t der[256];
    int dl = wc_EccKeyToDer(&k->k, der, sizeof der);
    if (dl <= 0)
        return NB_E_IO;
    char *p = malloc(1024);
    if (!p) {
        sodium_memzero(der, sizeof der);
        return NB_E_NOMEM;
    }
    int pl = wc_DerToPem(der, (word32)dl, (byte *)p, 1023, ECC_PRIVATEKEY_TYPE);
    sodium_memzero(der, sizeof der);
    if (pl <= 0) {
        acme_pem_free(p, 1024);
        return NB_E_IO;
    }
    p[pl] = '\0';
    *pem = p;
    *len = (size_t)pl;
    return NB_OK;
}

void acme_key_free(struct acme_key *k)
{
    if (k->init)
        wc_ecc_free(&k->k);
    k->init = false;
}

void acme_pem_free(char *p, size_t len)
{
    if (!p)
        return;
    sodium_memzero(p, len);
    free(p);
}

size_t acme_jwk(struct acme_key *k, char *out, size_t cap)
{
    uint8_t x[32], y[32];
    word32 xl = sizeof x, yl = sizeof y;
    if (wc_ecc_export_public_raw(&k->k, x, &xl, y, &yl) != 0 || xl != 32 || yl != 32)
        return 0;
    char xs[48], ys[48];
    if (!acme_b64url(xs, sizeof xs, x, 32) || !acme_b64url(ys, sizeof ys, y, 32))
        return 0;
    int n =
        snprintf(out, cap, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", xs, ys);
    if (n <= 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

int acme_thumbprint(struct acme_key *k, char out[44])
{
    char jwk[160];
    size_t n = acme_jwk(k, jwk, sizeof jwk);
    if (!n)
        return NB_E_IO;
    uint8_t h[WC_SHA256_DIGEST_SIZE];
    if (wc_Sha256Hash((const byte *)jwk, (word32)n, h) != 0)
        return NB_E_IO;
    return acme_b64url(out, 44, h, sizeof h) == 43 ? NB_OK : NB_E_IO;
}

size_t acme_key_authorization(struct acme_key *k, const char *token, char *out, size_t cap)
{
    char tp[44];
    if (!token || !*token || acme_thumbprint(k, tp) != NB_OK)
        return 0;
    int n = snprintf(out, cap, "%s.%s", token, tp);
    if (n <= 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

/* base64url of a string into a malloc'd buffer. */
static char *b64_str(const char *s, size_t n)
{
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *o = malloc(cap);
    if (!o)
        return NULL;
    sodium_bin2base64(o, cap, (const unsigned char *)s, n,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return o;
}

/* {"protected":P,"payload":L,"signature":S} */
static char *flattened(const char *prot, const char *payload, const char *sig)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    char *out = NULL;
    if (cJSON_AddStringToObject(o, "protected", prot) &&
        cJSON_AddStringToObject(o, "payload", payload) &&
        cJSON_AddStringToObject(o, "signature", sig))
        out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

/* "<b64 protected>.<b64 payload>" signing input, both parts returned too. */
static char *signing_input(cJSON *hdr, const char *payload, size_t payload_len, char **p64,
                           char **l64)
{
    *p64 = *l64 = NULL;
    char *h = cJSON_PrintUnformatted(hdr);
    if (!h)
        return NULL;
    *p64 = b64_str(h, strlen(h));
    cJSON_free(h);
    *l64 = b64_str(payload, payload_len);
    if (!*p64 || !*l64)
        return NULL;
    size_t n = strlen(*p64) + 1 + strlen(*l64) + 1;
    char *in = malloc(n);
    if (in)
        snprintf(in, n, "%s.%s", *p64, *l64);
    return in;
}

char *acme_jws(struct acme_key *k, const char *kid, const char *nonce, const char *url,
               const char *payload)
{
    char jwk[160];
    cJSON *hdr = cJSON_CreateObject();
    char *p64 = NULL, *l64 = NULL, *in = NULL, *out = NULL;
    WC_RNG rng;
    bool rng_ok = false;
    if (!hdr || !nonce || !url)
        goto done;
    if (!cJSON_AddStringToObject(hdr, "alg", "ES256"))
        goto done;
    if (kid) {
        if (!cJSON_AddStringToObject(hdr, "kid", kid))
            goto done;
    } else {
        if (!acme_jwk(k, jwk, sizeof jwk))
            goto done;
        cJSON *j = cJSON_Parse(jwk);
        if (!j)
            goto done;
        cJSON_AddItemToObject(hdr, "jwk", j);
    }
    if (!cJSON_AddStringToObject(hdr, "nonce", nonce) || !cJSON_AddStringToObject(hdr, "url", url))
        goto done;
    in = signing_input(hdr, payload ? payload : "", payload ? strlen(payload) : 0, &p64, &l64);
    if (!in)
        goto done;
    uint8_t hash[WC_SHA256_DIGEST_SIZE], der[80], rs[64];
    word32 dl = sizeof der, rl = 32, sl = 32;
    if (wc_Sha256Hash((const byte *)in, (word32)strlen(in), hash) != 0 || wc_InitRng(&rng) != 0)
        goto done;
    rng_ok = true;
    if (wc_ecc_sign_hash(hash, sizeof hash, der, &dl, &rng, &k->k) != 0)
        goto done;
    /* DER (r, s) to fixed-width r || s (RFC 7518 §3.4). */
    uint8_t r[33], s[33];
    rl = sizeof r;
    sl = sizeof s;
    if (wc_ecc_sig_to_rs(der, dl, r, &rl, s, &sl) != 0 || rl > 32 || sl > 32)
        goto done;
    memset(rs, 0, sizeof rs);
    memcpy(rs + 32 - rl, r, rl);
    memcpy(rs + 64 - sl, s, sl);
    char sig[96];
    if (!acme_b64url(sig, sizeof sig, rs, sizeof rs))
        goto done;
    out = flattened(p64, l64, sig);
done:
    if (rng_ok)
        wc_FreeRng(&rng);
    cJSON_Delete(hdr);
    free(p64);
    free(l64);
    free(in);
    return out;
}

char *acme_eab(struct acme_key *k, const char *eab_kid, const uint8_t *mac, size_t mac_len,
               const char *url)
{
    char jwk[160];
    size_t jl = acme_jwk(k, jwk, sizeof jwk);
    cJSON *hdr = cJSON_CreateObject();
    char *p64 = NULL, *l64 = NULL, *in = NULL, *out = NULL;
    Hmac h;
    bool h_ok = false;
    if (!jl || !hdr || !eab_kid || !url || !mac_len)
        goto done;
    if (!cJSON_AddStringToObject(hdr, "alg", "HS256") ||
        !cJSON_AddStringToObject(hdr, "kid", eab_kid) || !cJSON_AddStringToObject(hdr, "url", url))
        goto done;
    in = signing_input(hdr, jwk, jl, &p64, &l64);
    if (!in)
        goto done;
    uint8_t tag[WC_SHA256_DIGEST_SIZE];
    if (wc_HmacInit(&h, NULL, INVALID_DEVID) != 0)
        goto done;
    h_ok = true;
    if (wc_HmacSetKey(&h, WC_SHA256, mac, (word32)mac_len) != 0 ||
        wc_HmacUpdate(&h, (const byte *)in, (word32)strlen(in)) != 0 || wc_HmacFinal(&h, tag) != 0)
        goto done;
    char sig[48];
    if (!acme_b64url(sig, sizeof sig, tag, sizeof tag))
        goto done;
    out = flattened(p64, l64, sig);
done:
    if (h_ok)
        wc_HmacFree(&h); /* wipes the key schedule */
    cJSON_Delete(hdr);
    free(p64);
    free(l64);
    free(in);
    return out;
}
