/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Server certificates for tls/tls.c. Each tls_cert owns a wolfSSL server context holding the
 * chain and key with nbproxy's policy applied (tls__server_policy), so a handshake is served by
 * creating the wolfSSL object straight from the selected certificate's context: no per-
 * connection copy of the chain or key. The leaf's facts are parsed once here for the reload,
 * wildcard and ACME layers. Self-signed certificates for the standalone mode are made with
 * wolfCrypt's certificate generation (WOLFSSL_CERT_GEN, enabled in Debian's build).
 */
#include "tls/tls_internal.h"
#include "tls/hello.h"
#include "platform/err.h"
#include "platform/log.h"

#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_PEM_FILE (1u << 20)

size_t tls__certs_live;

/* Reads a whole file into a NUL-terminated malloc'd buffer. The caller wipes and frees it. */
static int read_file(const char *path, char **out, size_t *len)
{
    int rc = NB_OK;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NB_E_IO;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = NB_E_IO;
        goto out;
    }
    if (st.st_size > (off_t)MAX_PEM_FILE) {
        rc = NB_E_TOO_BIG;
        goto out;
    }
    cap = (size_t)st.st_size + 1;
    buf = malloc(cap);
    if (buf == NULL) {
        rc = NB_E_NOMEM;
        goto out;
    }
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = NB_E_IO;
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
out:
    if (buf) {
        explicit_bzero(buf, cap);
        free(buf);
    }
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

static int64_t asn1_time_unix(const WOLFSSL_ASN1_TIME *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (t == NULL || wolfSSL_ASN1_TIME_to_tm(t, &tm) != WOLFSSL_SUCCESS)
        return 0;
    return (int64_t)timegm(&tm);
}

/* Serial, issuer CN, validity, DNS SANs and key type of the leaf (the first PEM block). */
static int parse_leaf(struct tls_cert *c, const void *chain, size_t chain_len)
{
    int rc = NB_E_PARSE;
    WOLFSSL_GENERAL_NAMES *gns = NULL;
    WOLFSSL_X509 *x =
        wolfSSL_X509_load_certificate_buffer(chain, (int)chain_len, WOLFSSL_FILETYPE_PEM);
    if (x == NULL)
        goto out;
    int sl = (int)sizeof c->_serial;
    if (wolfSSL_X509_get_serial_number(x, c->_serial, &sl) != WOLFSSL_SUCCESS)
        goto out;
    c->_serial_len = (size_t)sl;
    char cn[256];
    int cl = wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_issuer_name(x), NID_commonName, cn,
                                               (int)sizeof cn);
    c->_issuer_cn = strdup(cl > 0 ? cn : "");
    if (c->_issuer_cn == NULL) {
        rc = NB_E_NOMEM;
        goto out;
    }
    c->_not_before = asn1_time_unix(wolfSSL_X509_get_notBefore(x));
    c->_not_after = asn1_time_unix(wolfSSL_X509_get_notAfter(x));
    switch (wolfSSL_X509_get_pubkey_type(x)) {
    case ECDSAk:
        c->_key_type = TLS_KEY_ECDSA;
        break;
    case RSAk:
        c->_key_type = TLS_KEY_RSA;
        break;
    default:
        c->_key_type = TLS_KEY_OTHER;
        break;
    }
    gns = wolfSSL_X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int n = gns ? wolfSSL_sk_GENERAL_NAME_num(gns) : 0;
    if (n > 0) {
        c->_sans = calloc((size_t)n, sizeof *c->_sans);
        if (c->_sans == NULL) {
            rc = NB_E_NOMEM;
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        WOLFSSL_GENERAL_NAME *gn = wolfSSL_sk_GENERAL_NAME_value(gns, i);
        if (gn == NULL || gn->type != ASN_DNS_TYPE || gn->d.dNSName == NULL)
            continue;
        const unsigned char *d = wolfSSL_ASN1_STRING_data(gn->d.dNSName);
        int dl = wolfSSL_ASN1_STRING_length(gn->d.dNSName);
        if (d == NULL || dl <= 0 || memchr(d, 0, (size_t)dl) != NULL)
            continue;
        char *s = strndup((const char *)d, (size_t)dl);
        if (s == NULL) {
            rc = NB_E_NOMEM;
            goto out;
        }
        c->_sans[c->_san_count++] = s;
    }
    rc = NB_OK;
out:
    if (gns)
        wolfSSL_GENERAL_NAMES_free(gns);
    if (x)
        wolfSSL_X509_free(x);
    return rc;
}

static void cert_free(struct tls_cert *c)
{
    if (c->_wctx)
        wolfSSL_CTX_free(c->_wctx); /* wolfSSL wipes its copy of the key */
    for (size_t i = 0; i < c->_san_count; i++)
        free(c->_sans[i]);
    free(c->_sans);
    free(c->_issuer_cn);
    free(c);
    tls__certs_live--;
    tls__lib_unref();
}

static int cert_from_pem(const void *chain, size_t chain_len, const void *key, size_t key_len,
                         bool challenge, struct tls_cert **out)
{
    int rc;
    struct tls_cert *c = NULL;
    if (chain == NULL || key == NULL || chain_len == 0 || key_len == 0 || chain_len > INT32_MAX ||
        key_len > INT32_MAX)
        return NB_E_INVAL;
    if (tls__lib_ref() != NB_OK)
        return NB_E_NOMEM;
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        tls__lib_unref();
        return NB_E_NOMEM;
    }
    c->_refs = 1;
    tls__certs_live++;
    c->_wctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
    if (c->_wctx == NULL) {
        rc = NB_E_NOMEM;
        goto out;
    }
    rc = tls__server_policy(c->_wctx);
    if (rc != NB_OK)
        goto out;
    rc = NB_E_PARSE;
    if (wolfSSL_CTX_use_certificate_chain_buffer(c->_wctx, chain, (long)chain_len) !=
        WOLFSSL_SUCCESS)
        goto out;
    if (wolfSSL_CTX_use_PrivateKey_buffer(c->_wctx, key, (long)key_len, WOLFSSL_FILETYPE_PEM) !=
        WOLFSSL_SUCCESS)
        goto out;
    if (challenge) {
        /* wolfSSL refuses to parse a certificate with an unknown critical extension (the
         * acmeIdentifier of RFC 8737) but serves it: no leaf facts, no key check. */
        c->_issuer_cn = strdup("");
        c->_key_type = TLS_KEY_ECDSA;
        rc = c->_issuer_cn ? NB_OK : NB_E_NOMEM;
        goto out;
    }
    if (wolfSSL_CTX_check_private_key(c->_wctx) != WOLFSSL_SUCCESS)
        goto out;
    rc = parse_leaf(c, chain, chain_len);
out:
    if (rc != NB_OK) {
        cert_free(c);
        return rc;
    }
    *out = c;
    return NB_OK;
}

int tls_cert_from_pem(const void *chain, size_t chain_len, const void *key, size_t key_len,
                      struct tls_cert **out)
{
    return cert_from_pem(chain, chain_len, key, key_len, false, out);
}

int tls_cert_challenge_from_pem(const void *chain, size_t chain_len, const void *key,
                                size_t key_len, struct tls_cert **out)
{
    return cert_from_pem(chain, chain_len, key, key_len, true, out);
}

int tls_cert_load_pem(const char *chain_path, const char *key_path, struct tls_cert **out)
{
    char *chain = NULL, *key = NULL;
    size_t chain_len = 0, key_len = 0;
    int rc = read_file(chain_path, &chain, &chain_len);
    if (rc != NB_OK)
        goto out;
    rc = read_file(key_path, &key, &key_len);
    if (rc != NB_OK)
        goto out;
    rc = tls_cert_from_pem(chain, chain_len, key, key_len, out);
out:
    if (key) {
        explicit_bzero(key, key_len + 1);
        free(key);
    }
    free(chain);
    return rc;
}

struct tls_cert *tls_cert_ref(struct tls_cert *c)
{
    c->_refs++;
    return c;
}

void tls_cert_unref(struct tls_cert *c)
{
    if (c == NULL || --c->_refs > 0)
        return;
    cert_free(c);
}

size_t tls_cert_serial(const struct tls_cert *c, const uint8_t **serial)
{
    *serial = c->_serial;
    return c->_serial_len;
}

const char *tls_cert_issuer_cn(const struct tls_cert *c)
{
    return c->_issuer_cn;
}

int64_t tls_cert_not_before(const struct tls_cert *c)
{
    return c->_not_before;
}

int64_t tls_cert_not_after(const struct tls_cert *c)
{
    return c->_not_after;
}

size_t tls_cert_san_count(const struct tls_cert *c)
{
    return c->_san_count;
}

const char *tls_cert_san(const struct tls_cert *c, size_t i)
{
    return i < c->_san_count ? c->_sans[i] : NULL;
}

enum tls_key_type tls_cert_key_type(const struct tls_cert *c)
{
    return c->_key_type;
}

/* RFC 6125 §6.4.3 as Go's matchHostnames: a "*" only as the whole first label, matching one
 * label; names compared case-insensitively, a trailing dot on the host ignored. */
static bool name_matches(const char *pattern, const char *host, size_t host_len)
{
    size_t pl = strlen(pattern);
    if (pl == 0 || host_len == 0)
        return false;
    if (pattern[0] == '*' && pl > 2 && pattern[1] == '.') {
        const char *dot = memchr(host, '.', host_len);
        if (dot == NULL || dot == host)
            return false;
        size_t rest = host_len - (size_t)(dot - host);
        return rest == pl - 1 && strncasecmp(dot, pattern + 1, rest) == 0;
    }
    return pl == host_len && strncasecmp(pattern, host, pl) == 0;
}

bool tls_cert_covers(const struct tls_cert *c, const char *host)
{
    size_t hl = strlen(host);
    if (hl > 0 && host[hl - 1] == '.')
        hl--;
    for (size_t i = 0; i < c->_san_count; i++)
        if (name_matches(c->_sans[i], host, hl))
            return true;
    return false;
}

bool tls_cert_same_leaf(const struct tls_cert *a, const struct tls_cert *b)
{
    return a->_serial_len == b->_serial_len &&
           memcmp(a->_serial, b->_serial, a->_serial_len) == 0 &&
           strcmp(a->_issuer_cn, b->_issuer_cn) == 0;
}

/* ---- self-signed certificates ---- */

/* DER length octets for n; returns their count. */
static size_t der_len(uint8_t *p, size_t n)
{
    if (n < 0x80) {
        p[0] = (uint8_t)n;
        return 1;
    }
    if (n < 0x100) {
        p[0] = 0x81;
        p[1] = (uint8_t)n;
        return 2;
    }
    p[0] = 0x82;
    p[1] = (uint8_t)(n >> 8);
    p[2] = (uint8_t)n;
    return 3;
}

/* GeneralNames ::= SEQUENCE OF GeneralName, each a dNSName [2] IA5String (RFC 5280 §4.2.1.6).
 * wolfCrypt wraps it into the subjectAltName extension. Returns its size or 0 if too big. */
static size_t encode_sans(uint8_t *out, size_t cap, const char *const *names, size_t n)
{
    size_t body = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        body += 1 + (l < 0x80 ? 1 : 2) + l;
    }
    uint8_t hdr[4];
    size_t hl = der_len(hdr + 1, body) + 1;
    hdr[0] = 0x30;
    if (hl + body > cap || body > 0xffff)
        return 0;
    memcpy(out, hdr, hl);
    size_t p = hl;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        out[p++] = 0x82;
        p += der_len(out + p, l);
        memcpy(out + p, names[i], l);
        p += l;
    }
    return p;
}

int tls_selfsigned_pem(const char *const *names, size_t n, uint32_t days, char **cert_pem,
                       size_t *cert_len, char **key_pem, size_t *key_len)
{
    int rc = NB_E_IO;
    bool rng_ok = false, key_ok = false;
    WC_RNG rng;
    ecc_key key;
    Cert *cert = NULL;
    uint8_t *der = NULL, *kder = NULL;
    char *cpem = NULL, *kpem = NULL;
    const size_t der_cap = 4096 + 64 * (n + 1) + 300 * n, kder_cap = 256, pem_cap = 2 * der_cap;
    int der_sz, kder_sz = 0, cpem_sz, kpem_sz;

    if (n == 0)
        return NB_E_INVAL;
    for (size_t i = 0; i < n; i++) {
        size_t l = names[i] ? strlen(names[i]) : 0;
        if (l == 0 || l > TLS_HELLO_MAX_SNI)
            return NB_E_INVAL;
    }
    cert = malloc(sizeof *cert);
    der = malloc(der_cap);
    kder = malloc(kder_cap);
    cpem = malloc(pem_cap);
    kpem = malloc(1024);
    if (!cert || !der || !kder || !cpem || !kpem) {
        rc = NB_E_NOMEM;
        goto out;
    }
    if (wc_InitRng(&rng) != 0)
        goto out;
    rng_ok = true;
    if (wc_ecc_init(&key) != 0)
        goto out;
    key_ok = true;
    if (wc_ecc_make_key_ex(&rng, 32, &key, ECC_SECP256R1) != 0)
        goto out;
    if (wc_InitCert(cert) != 0)
        goto out;
    cert->sigType = CTC_SHA256wECDSA;
    cert->daysValid = days ? (int)days : 365;
    cert->isCA = 0;
    /* The CN holds at most 64 bytes (RFC 5280 ub-common-name); longer names live in the SANs. */
    if (strlen(names[0]) < sizeof cert->subject.commonName)
        strcpy(cert->subject.commonName, names[0]);
    strcpy(cert->subject.org, "nbproxy self-signed");
    size_t alt = encode_sans(cert->altNames, sizeof cert->altNames, names, n);
    if (alt == 0) {
        rc = NB_E_INVAL;
        goto out;
    }
    cert->altNamesSz = (int)alt;
    der_sz = wc_MakeCert_ex(cert, der, (word32)der_cap, ECC_TYPE, &key, &rng);
    if (der_sz <= 0)
        goto out;
    der_sz =
        wc_SignCert_ex(cert->bodySz, cert->sigType, der, (word32)der_cap, ECC_TYPE, &key, &rng);
    if (der_sz <= 0)
        goto out;
    cpem_sz = wc_DerToPem(der, (word32)der_sz, (byte *)cpem, (word32)pem_cap - 1, CERT_TYPE);
    if (cpem_sz <= 0)
        goto out;
    cpem[cpem_sz] = '\0';
    kder_sz = wc_EccKeyToDer(&key, kder, (word32)kder_cap);
    if (kder_sz <= 0)
        goto out;
    kpem_sz = wc_DerToPem(kder, (word32)kder_sz, (byte *)kpem, 1023, ECC_PRIVATEKEY_TYPE);
    if (kpem_sz <= 0)
        goto out;
    kpem[kpem_sz] = '\0';
    *cert_pem = cpem;
    *cert_len = (size_t)cpem_sz;
    *key_pem = kpem;
    *key_len = (size_t)kpem_sz;
    cpem = kpem = NULL;
    rc = NB_OK;
out:
    if (kpem) {
        explicit_bzero(kpem, 1024);
        free(kpem);
    }
    free(cpem);
    if (kder) {
        explicit_bzero(kder, kder_cap);
        free(kder);
    }
    free(der);
    free(cert);
    if (key_ok)
        wc_ecc_free(&key); /* wipes the private scalar */
    if (rng_ok)
        wc_FreeRng(&rng);
    return rc;
}

int tls_selfsigned_new(const char *const *names, size_t n, uint32_t days, struct tls_cert **out)
{
    char *cpem = NULL, *kpem = NULL;
    size_t cl = 0, kl = 0;
    int rc = tls_selfsigned_pem(names, n, days, &cpem, &cl, &kpem, &kl);
    if (rc != NB_OK)
        return rc;
    rc = tls_cert_from_pem(cpem, cl, kpem, kl, out);
    tls_pem_free(kpem, kl);
    tls_pem_free(cpem, cl);
    return rc;
}

void tls_pem_free(char *pem, size_t len)
{
    if (pem == NULL)
        return;
    explicit_bzero(pem, len);
    free(pem);
}
