/* SPDX-License-Identifier: BSD-3-Clause */
#include "acme/certgen.h"

#include "platform/err.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

/* ---- a minimal DER writer: write into a buffer, wrap the tail in a tag ---- */

struct der {
    uint8_t *b;
    size_t n, cap;
    bool bad;
};

static void put(struct der *d, const void *p, size_t n)
{
    if (d->bad || n > d->cap - d->n) {
        d->bad = true;
        return;
    }
    memcpy(d->b + d->n, p, n);
    d->n += n;
}

/* Wraps bytes [start, n) into tag + length (shifting them right). */
static void wrap(struct der *d, uint8_t tag, size_t start)
{
    if (d->bad)
        return;
    size_t len = d->n - start;
    uint8_t h[4];
    size_t hl;
    h[0] = tag;
    if (len < 0x80) {
        h[1] = (uint8_t)len;
        hl = 2;
    } else if (len < 0x100) {
        h[1] = 0x81;
        h[2] = (uint8_t)len;
        hl = 3;
    } else if (len < 0x10000) {
        h[1] = 0x82;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        hl = 4;
    } else {
        d->bad = true;
        return;
    }
    if (hl > d->cap - d->n) {
        d->bad = true;
        return;
    }
    memmove(d->b + start + hl, d->b + start, len);
    memcpy(d->b + start, h, hl);
    d->n += hl;
}

static void prim(struct der *d, uint8_t tag, const void *p, size_t n)
{
    size_t s = d->n;
    put(d, p, n);
    wrap(d, tag, s);
}

static const uint8_t oid_ecdsa_sha256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
static const uint8_t oid_cn[] = {0x55, 0x04, 0x03};
static const uint8_t oid_san[] = {0x55, 0x1d, 0x11};
static const uint8_t oid_acme_id[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f};

static void alg_ecdsa_sha256(struct der *d)
{
    size_t s = d->n;
    prim(d, 0x06, oid_ecdsa_sha256, sizeof oid_ecdsa_sha256);
    wrap(d, 0x30, s);
}

static void name_cn(struct der *d, const char *cn)
{
    size_t s = d->n;
    prim(d, 0x06, oid_cn, sizeof oid_cn);
    prim(d, 0x0c, cn, strlen(cn));
    wrap(d, 0x30, s);
    wrap(d, 0x31, s);
    wrap(d, 0x30, s);
}

static void utctime(struct der *d, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    char buf[16];
    strftime(buf, sizeof buf, "%y%m%d%H%M%SZ", &tm);
    prim(d, 0x17, buf, 13);
}

int acme_alpn_cert_pem(const char *domain, const char *key_auth, int64_t now, char **cert_pem,
                       size_t *cert_len, char **key_pem, size_t *key_len)
{
    size_t dl = domain ? strlen(domain) : 0;
    if (dl == 0 || dl > 253 || !key_auth)
        return NB_E_INVAL;
    struct acme_key key;
    if (acme_key_generate(&key) != NB_OK)
        return NB_E_IO;
    int rc = NB_E_IO;
    uint8_t *buf = malloc(4096);
    char *pem = malloc(8192);
    WC_RNG rng;
    bool rng_ok = false;
    if (!buf || !pem) {
        rc = NB_E_NOMEM;
        goto out;
    }
    struct der d = {buf, 0, 4096, false};
    /* TBSCertificate */
    size_t tbs = d.n;
    {
        size_t v = d.n;
        prim(&d, 0x02, "\x02", 1); /* v3 */
        wrap(&d, 0xa0, v);
    }
    uint8_t serial[16];
    randombytes_buf(serial, sizeof serial);
    serial[0] = (uint8_t)((serial[0] & 0x7f) | 0x01); /* positive, no leading zero */
    prim(&d, 0x02, serial, sizeof serial);
    alg_ecdsa_sha256(&d);
    name_cn(&d, "ACME tls-alpn-01 challenge");
    {
        size_t v = d.n;
        utctime(&d, now - 86400);
        utctime(&d, now + 7 * 86400);
        wrap(&d, 0x30, v);
    }
    name_cn(&d, "ACME tls-alpn-01 challenge");
    {
        uint8_t spki[128];
        int sl = wc_EccPublicKeyToDer(&key.k, spki, sizeof spki, 1);
        if (sl <= 0)
            goto out;
        put(&d, spki, (size_t)sl);
    }
    {
        size_t exts = d.n;
        /* subjectAltName: dNSName */
        size_t e = d.n;
        prim(&d, 0x06, oid_san, sizeof oid_san);
        size_t os = d.n;
        size_t gn = d.n;
        prim(&d, 0x82, domain, dl);
        wrap(&d, 0x30, gn);
        wrap(&d, 0x04, os);
        wrap(&d, 0x30, e);
        /* acmeIdentifier, critical: OCTET STRING { OCTET STRING sha256(keyauth) } */
        uint8_t h[WC_SHA256_DIGEST_SIZE];
        if (wc_Sha256Hash((const byte *)key_auth, (word32)strlen(key_auth), h) != 0)
            goto out;
        e = d.n;
        prim(&d, 0x06, oid_acme_id, sizeof oid_acme_id);
        prim(&d, 0x01, "\xff", 1);
        os = d.n;
        prim(&d, 0x04, h, sizeof h);
        wrap(&d, 0x04, os);
        wrap(&d, 0x30, e);
        wrap(&d, 0x30, exts);
        wrap(&d, 0xa3, exts);
    }
    wrap(&d, 0x30, tbs);
    if (d.bad)
        goto out;
    /* Sign */
    uint8_t hash[WC_SHA256_DIGEST_SIZE], sig[80];
    word32 sigl = sizeof sig;
    if (wc_Sha256Hash(d.b + tbs, (word32)(d.n - tbs), hash) != 0 || wc_InitRng(&rng) != 0)
        goto out;
    rng_ok = true;
    if (wc_ecc_sign_hash(hash, sizeof hash, sig, &sigl, &rng, &key.k) != 0)
        goto out;
    alg_ecdsa_sha256(&d);
    {
        size_t bs = d.n;
        put(&d, "\x00", 1);
        put(&d, sig, sigl);
        wrap(&d, 0x03, bs);
    }
    wrap(&d, 0x30, tbs);
    if (d.bad)
        goto out;
    int pl = wc_DerToPem(d.b, (word32)d.n, (byte *)pem, 8191, CERT_TYPE);
    if (pl <= 0)
        goto out;
    pem[pl] = '\0';
    rc = acme_key_to_pem(&key, key_pem, key_len);
    if (rc != NB_OK)
        goto out;
    *cert_pem = pem;
    *cert_len = (size_t)pl;
    pem = NULL;
out:
    if (rng_ok)
        wc_FreeRng(&rng);
    free(pem);
    free(buf);
    acme_key_free(&key);
    return rc;
}

size_t acme_csr_der(struct acme_key *cert_key, const char *domain, uint8_t *out, size_t cap)
{
    size_t dl = domain ? strlen(domain) : 0;
    if (dl == 0 || dl > 253)
        return 0;
    Cert *c = malloc(sizeof *c);
    WC_RNG rng;
    size_t res = 0;
    if (!c)
        return 0;
    if (wc_InitRng(&rng) != 0) {
        free(c);
        return 0;
    }
    if (wc_InitCert(c) != 0)
        goto out;
    c->sigType = CTC_SHA256wECDSA;
    c->version = 0;
    if (dl < sizeof c->subject.commonName)
        memcpy(c->subject.commonName, domain, dl + 1);
    /* GeneralNames { dNSName } for wolfCrypt's subjectAltName extension. */
    struct der d = {c->altNames, 0, sizeof c->altNames, false};
    prim(&d, 0x82, domain, dl);
    wrap(&d, 0x30, 0);
    if (d.bad)
        goto out;
    c->altNamesSz = (int)d.n;
    int n = wc_MakeCertReq_ex(c, out, (word32)cap, ECC_TYPE, &cert_key->k);
    if (n <= 0)
        goto out;
    n = wc_SignCert_ex(c->bodySz, c->sigType, out, (word32)cap, ECC_TYPE, &cert_key->k, &rng);
    if (n <= 0)
        goto out;
    res = (size_t)n;
out:
    wc_FreeRng(&rng);
    free(c);
    return res;
}
