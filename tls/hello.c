/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ClientHello parsing for the TLS server (tls/tls.c picks the certificate and the ALPN protocol
 * from it before wolfSSL sees a byte) and for the SNI router. The handshake message may span
 * several records; a small reader walks the record payloads as one byte sequence, so nothing is
 * copied and a ClientHello cut anywhere reports NB_E_AGAIN.
 */
#include "tls/hello.h"
#include "platform/err.h"

#include <string.h>

enum {
    REC_HANDSHAKE = 22,
    HS_CLIENT_HELLO = 1,
    EXT_SERVER_NAME = 0,
    EXT_SUPPORTED_GROUPS = 10,
    EXT_SIGNATURE_ALGORITHMS = 13,
    EXT_ALPN = 16,
    EXT_SUPPORTED_VERSIONS = 43,
    SNI_HOST_NAME = 0,
    GROUP_P256 = 0x0017,
    MAX_RECORD = 16384 + 256, /* TLSPlaintext limit plus the slack RFC 5246 allows compressed */
};

/* Reads the handshake byte stream out of consecutive handshake records. */
struct rd {
    const uint8_t *buf;
    size_t len;
    size_t pos;      /* next byte of buf */
    size_t rec_left; /* payload bytes left in the current record */
    int err;         /* first failure: NB_E_AGAIN, NB_E_PARSE or NB_E_TOO_BIG */
};

static bool rd_next_record(struct rd *r)
{
    if (r->pos + 5 > TLS_HELLO_MAX) {
        r->err = NB_E_TOO_BIG;
        return false;
    }
    if (r->pos + 5 > r->len) {
        r->err = NB_E_AGAIN;
        return false;
    }
    const uint8_t *h = r->buf + r->pos;
    size_t n = (size_t)h[3] << 8 | h[4];
    /* Only handshake records may carry the ClientHello; the record version is not checked
     * (clients send 0x0301 for compatibility), only its major byte. */
    if (h[0] != REC_HANDSHAKE || h[1] != 3 || n == 0 || n > MAX_RECORD) {
        r->err = NB_E_PARSE;
        return false;
    }
    r->pos += 5;
    r->rec_left = n;
    return true;
}

static bool rd_bytes(struct rd *r, uint8_t *out, size_t n)
{
    while (n > 0) {
        if (r->err)
            return false;
        if (r->rec_left == 0 && !rd_next_record(r))
            return false;
        size_t take = n < r->rec_left ? n : r->rec_left;
        if (r->pos + take > r->len) {
            r->err = r->pos + take > TLS_HELLO_MAX ? NB_E_TOO_BIG : NB_E_AGAIN;
            return false;
        }
        if (out) {
            memcpy(out, r->buf + r->pos, take);
            out += take;
        }
        r->pos += take;
        r->rec_left -= take;
        n -= take;
    }
    return !r->err;
}

static bool rd_u8(struct rd *r, uint32_t *v)
{
    uint8_t b;
    if (!rd_bytes(r, &b, 1))
        return false;
    *v = b;
    return true;
}

static bool rd_u16(struct rd *r, uint32_t *v)
{
    uint8_t b[2];
    if (!rd_bytes(r, b, 2))
        return false;
    *v = (uint32_t)b[0] << 8 | b[1];
    return true;
}

static bool rd_u24(struct rd *r, uint32_t *v)
{
    uint8_t b[3];
    if (!rd_bytes(r, b, 3))
        return false;
    *v = (uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2];
    return true;
}

static void rd_fail(struct rd *r)
{
    if (!r->err)
        r->err = NB_E_PARSE;
}

/* server_name (RFC 6066 §3): ServerNameList; the first host_name wins. */
static void parse_sni(struct rd *r, uint32_t ext_len, struct tls_hello *h)
{
    uint32_t list, type, n;
    if (!rd_u16(r, &list) || list + 2 != ext_len || list < 3)
        return rd_fail(r);
    while (list > 0 && !r->err) {
        if (list < 3 || !rd_u8(r, &type) || !rd_u16(r, &n) || n + 3 > list)
            return rd_fail(r);
        list -= 3 + n;
        if (type != SNI_HOST_NAME || h->sni[0] != '\0') {
            rd_bytes(r, NULL, n);
            continue;
        }
        if (n == 0 || n > TLS_HELLO_MAX_SNI)
            return rd_fail(r);
        uint8_t name[TLS_HELLO_MAX_SNI];
        if (!rd_bytes(r, name, n))
            return;
        /* A host name: printable ASCII without spaces, no trailing dot (Go refuses those). */
        for (uint32_t i = 0; i < n; i++) {
            uint8_t c = name[i];
            if (c <= 0x20 || c >= 0x7f)
                return rd_fail(r);
            h->sni[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
        }
        h->sni[n] = '\0';
        if (h->sni[n - 1] == '.') {
            h->sni[0] = '\0';
            return rd_fail(r);
        }
    }
}

/* ALPN (RFC 7301 §3.1): ProtocolNameList of non-empty names. */
static void parse_alpn(struct rd *r, uint32_t ext_len, struct tls_hello *h)
{
    uint32_t list, n;
    if (!rd_u16(r, &list) || list + 2 != ext_len || list < 2)
        return rd_fail(r);
    h->has_alpn = true;
    while (list > 0 && !r->err) {
        if (!rd_u8(r, &n) || n == 0 || n + 1 > list)
            return rd_fail(r);
        list -= n + 1;
        if ((size_t)h->alpn_len + 1 + n > sizeof h->alpn) {
            rd_bytes(r, NULL, n);
            continue;
        }
        h->alpn[h->alpn_len] = (uint8_t)n;
        if (!rd_bytes(r, h->alpn + h->alpn_len + 1, n))
            return;
        h->alpn_len += (uint16_t)(n + 1);
    }
}

/* A u16 list behind a u16 length (signature_algorithms, supported_groups): true when `want`
 * holds for one of its values. */
static bool parse_u16_list(struct rd *r, uint32_t ext_len, bool (*want)(uint32_t))
{
    uint32_t list, v;
    bool hit = false;
    if (!rd_u16(r, &list) || list + 2 != ext_len || list % 2 != 0) {
        rd_fail(r);
        return false;
    }
    for (; list > 0 && !r->err; list -= 2)
        if (rd_u16(r, &v) && want(v))
            hit = true;
    return hit;
}

static bool is_ecdsa_scheme(uint32_t v)
{
    /* ecdsa_sha1, ecdsa_secp256r1_sha256, ecdsa_secp384r1_sha384, ecdsa_secp521r1_sha512 */
    return v == 0x0203 || v == 0x0403 || v == 0x0503 || v == 0x0603;
}

static bool is_p256(uint32_t v)
{
    return v == GROUP_P256;
}

/* supported_versions (RFC 8446 §4.2.1): versions<2..254>. GREASE values (0x?a?a) are skipped. */
static void parse_versions(struct rd *r, uint32_t ext_len, struct tls_hello *h)
{
    uint32_t list, v;
    if (!rd_u8(r, &list) || list + 1 != ext_len || list < 2 || list % 2 != 0)
        return rd_fail(r);
    for (; list > 0 && !r->err; list -= 2) {
        if (!rd_u16(r, &v))
            return;
        if ((v & 0x0f0f) == 0x0a0a || (v >> 8) != 3)
            continue;
        if (v == 0x0304)
            h->tls13 = true;
        if (v > h->max_version)
            h->max_version = (uint16_t)v;
    }
}

static bool is_ecdsa_suite(uint32_t s)
{
    switch (s) {
    case 0xc007: /* ECDHE_ECDSA_WITH_RC4_128_SHA */
    case 0xc009: /* ECDHE_ECDSA_WITH_AES_128_CBC_SHA */
    case 0xc00a: /* ECDHE_ECDSA_WITH_AES_256_CBC_SHA */
    case 0xc023: /* ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 */
    case 0xc024: /* ECDHE_ECDSA_WITH_AES_256_CBC_SHA384 */
    case 0xc02b: /* ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 */
    case 0xc02c: /* ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 */
    case 0xcca9: /* ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 */
        return true;
    default:
        /* TLS 1.3 suites carry no key type: any certificate type the signature schemes allow. */
        return (s >> 8) == 0x13;
    }
}

int tls_hello_parse(const uint8_t *buf, size_t len, struct tls_hello *h)
{
    struct rd r = {.buf = buf, .len = len};
    uint32_t type, msg_len, v, n;
    bool sig_seen = false, sig_ecdsa = false, grp_seen = false, grp_p256 = false,
         suite_ecdsa = false;

    memset(h, 0, sizeof *h);
    /* ClientHello header: msg_type, length, legacy_version, random. */
    if (!rd_u8(&r, &type))
        goto out;
    if (type != HS_CLIENT_HELLO) {
        rd_fail(&r);
        goto out;
    }
    if (!rd_u24(&r, &msg_len))
        goto out;
    if (msg_len + 4 > TLS_HELLO_MAX) {
        r.err = NB_E_TOO_BIG;
        goto out;
    }
    uint32_t left = msg_len; /* bytes of the message body still to read */
#define TAKE(k)                     \
    do {                            \
        if ((uint32_t)(k) > left) { \
            rd_fail(&r);            \
            goto out;               \
        }                           \
        left -= (uint32_t)(k);      \
    } while (0)

    TAKE(2 + 32);
    if (!rd_u16(&r, &v) || !rd_bytes(&r, NULL, 32))
        goto out;
    h->max_version = (uint16_t)v;
    /* legacy_session_id<0..32> */
    TAKE(1);
    if (!rd_u8(&r, &n))
        goto out;
    if (n > 32) {
        rd_fail(&r);
        goto out;
    }
    TAKE(n);
    if (!rd_bytes(&r, NULL, n))
        goto out;
    /* cipher_suites<2..2^16-2> */
    TAKE(2);
    if (!rd_u16(&r, &n))
        goto out;
    if (n < 2 || n % 2 != 0) {
        rd_fail(&r);
        goto out;
    }
    TAKE(n);
    for (; n > 0; n -= 2) {
        if (!rd_u16(&r, &v))
            goto out;
        if (is_ecdsa_suite(v))
            suite_ecdsa = true;
    }
    /* legacy_compression_methods<1..2^8-1> */
    TAKE(1);
    if (!rd_u8(&r, &n))
        goto out;
    if (n < 1) {
        rd_fail(&r);
        goto out;
    }
    TAKE(n);
    if (!rd_bytes(&r, NULL, n))
        goto out;
    /* extensions<8..2^16-1>, absent in old clients */
    if (left > 0) {
        TAKE(2);
        if (!rd_u16(&r, &n))
            goto out;
        if (n != left) {
            rd_fail(&r);
            goto out;
        }
        while (left > 0) {
            uint32_t ext, elen;
            TAKE(4);
            if (!rd_u16(&r, &ext) || !rd_u16(&r, &elen))
                goto out;
            TAKE(elen);
            switch (ext) {
            case EXT_SERVER_NAME:
                parse_sni(&r, elen, h);
                break;
            case EXT_ALPN:
                parse_alpn(&r, elen, h);
                break;
            case EXT_SIGNATURE_ALGORITHMS:
                sig_seen = true;
                sig_ecdsa = parse_u16_list(&r, elen, is_ecdsa_scheme);
                break;
            case EXT_SUPPORTED_GROUPS:
                grp_seen = true;
                grp_p256 = parse_u16_list(&r, elen, is_p256);
                break;
            case EXT_SUPPORTED_VERSIONS:
                parse_versions(&r, elen, h);
                break;
            default:
                rd_bytes(&r, NULL, elen);
                break;
            }
            if (r.err)
                goto out;
        }
    }
#undef TAKE
    h->ecdsa_ok = (!sig_seen || sig_ecdsa) && (!grp_seen || grp_p256) && suite_ecdsa;
    h->acme_only =
        h->alpn_len == 11 && h->alpn[0] == 10 && memcmp(h->alpn + 1, "acme-tls/1", 10) == 0;
    /* The message ends inside its last record; what follows in that record (another handshake
     * message would be a protocol error anyway) belongs to the record. */
    h->len = r.pos + r.rec_left;
    if (h->len > len) {
        r.err = NB_E_AGAIN;
        goto out;
    }
out:
    if (r.err) {
        int err = r.err;
        memset(h, 0, sizeof *h);
        return err;
    }
    return NB_OK;
}

bool tls_hello_looks_like_http(const uint8_t *buf, size_t len)
{
    static const char *const starts[] = {"GET /", "HEAD ", "POST ", "PUT /", "OPTIO"};
    if (len < 5)
        return false;
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++)
        if (memcmp(buf, starts[i], 5) == 0)
            return true;
    return false;
}

static bool client_offered(const struct tls_hello *h, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->alpn_len; i += 1 + (size_t)h->alpn[i])
        if (h->alpn[i] == n && memcmp(h->alpn + i + 1, name, n) == 0)
            return true;
    return false;
}

const char *tls_hello_alpn_select(const struct tls_hello *h, const char *const *server, size_t n,
                                  bool *refuse)
{
    bool http11_fallback = false;
    *refuse = false;
    if (n == 0 || h->alpn_len == 0)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (client_offered(h, server[i]))
            return server[i];
        if (strcmp(server[i], "h2") == 0 && client_offered(h, "http/1.1"))
            http11_fallback = true;
    }
    *refuse = !http11_fallback;
    return NULL;
}
