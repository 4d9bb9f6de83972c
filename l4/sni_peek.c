/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * The first thing the L4 router does with a connection that may carry TLS: look at the first
 * record and decide between "not TLS", "TLS without a usable server name" and "TLS for this
 * host", without consuming anything (the bytes are replayed to whoever gets the connection). The
 * walk follows netbird-proxy's snipeek.go step by step, including what it gives up on, so both
 * route the same bytes the same way; every length is checked against the enclosing structure
 * before it is used, so the parser only ever reads inside buf[0..len).
 */

#include "l4/sni_peek.h"

#include <string.h>

#include "platform/err.h"

enum {
    HS_CLIENT_HELLO = 1,
    EXT_SERVER_NAME = 0,  /* RFC 6066 §3 */
    EXT_ALPN = 16,        /* RFC 7301 §3.1 */
    SNI_HOST_NAME = 0,    /* NameType host_name */
    HELLO_FIXED = 2 + 32, /* legacy_version + random */
};

static const char acme_alpn[] = "acme-tls/1";

static unsigned be16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/*
 * ServerNameList (RFC 6066 §3): the first host_name entry decides, whatever it holds. Returns
 * true with *name / *name_len set to a usable name; false for none (malformed list, no host_name
 * entry, empty, too long, NUL inside).
 */
static bool parse_server_name(const uint8_t *d, size_t n, const uint8_t **name, size_t *name_len)
{
    size_t list_len, pos = 0;
    const uint8_t *list;

    if (n < 2)
        return false;
    list_len = be16(d);
    if (list_len > n - 2)
        return false;
    list = d + 2;
    while (pos + 3 <= list_len) {
        unsigned type = list[pos];
        size_t nlen = be16(list + pos + 1);

        pos += 3;
        if (nlen > list_len - pos)
            return false;
        if (type == SNI_HOST_NAME) {
            if (nlen == 0 || nlen > L4_SNI_MAX || memchr(list + pos, 0, nlen))
                return false;
            *name = list + pos;
            *name_len = nlen;
            return true;
        }
        pos += nlen;
    }
    return false;
}

/*
 * ProtocolNameList (RFC 7301 §3.1): true when it is well formed and holds exactly one name,
 * "acme-tls/1" (Go's autocert: len(SupportedProtos) == 1 && [0] == "acme-tls/1").
 */
static bool alpn_is_acme_only(const uint8_t *d, size_t n)
{
    size_t list_len;

    if (n < 2)
        return false;
    list_len = be16(d);
    if (list_len != n - 2 || list_len == 0)
        return false;
    /* one entry filling the whole list: its length byte + the name */
    return d[2] == sizeof(acme_alpn) - 1 && list_len == 1 + (size_t)d[2] &&
           memcmp(d + 3, acme_alpn, sizeof(acme_alpn) - 1) == 0;
}

/*
 * The ClientHello body msg[0..n) (after the 4-byte handshake header). Fills the SNI and ALPN
 * fields of out; leaves them unset when the structure gives out before reaching them.
 */
static void parse_client_hello(const uint8_t *msg, size_t n, struct l4_sni_result *out)
{
    size_t pos = HELLO_FIXED, ext_end;
    bool seen_sni = false, seen_alpn = false;

    /* legacy_version, random */
    if (n < HELLO_FIXED)
        return;
    /* legacy_session_id <0..32> */
    if (pos >= n)
        return;
    pos += 1 + (size_t)msg[pos];
    /* cipher_suites <2..2^16-2> */
    if (pos > n || n - pos < 2)
        return;
    pos += 2 + be16(msg + pos);
    /* legacy_compression_methods <1..2^8-1> */
    if (pos >= n)
        return;
    pos += 1 + (size_t)msg[pos];
    /* extensions <8..2^16-1>: absent (pre-TLS 1.2 style hello) means no SNI */
    if (pos > n || n - pos < 2)
        return;
    ext_end = pos + 2 + be16(msg + pos);
    pos += 2;
    if (ext_end > n)
        return;
    /* Extension: type (2), length (2), data. A framing error ends the walk (snipeek.go). */
    while (ext_end - pos >= 4) {
        unsigned type = be16(msg + pos);
        size_t len = be16(msg + pos + 2);

        pos += 4;
        if (len > ext_end - pos)
            return;
        if (type == EXT_SERVER_NAME && !seen_sni) {
            seen_sni = true;
            if (parse_server_name(msg + pos, len, &out->sni, &out->sni_len))
                out->kind = L4_TLS_SNI;
        } else if (type == EXT_ALPN && !seen_alpn) {
            seen_alpn = true;
            out->alpn_acme_only = alpn_is_acme_only(msg + pos, len);
        }
        pos += len;
    }
}

int l4_sni_peek(const uint8_t *buf, size_t len, struct l4_sni_result *out)
{
    size_t rec_len, hs_len;
    const uint8_t *payload;

    if (len < L4_TLS_RECORD_HEADER)
        return NB_E_AGAIN;
    memset(out, 0, sizeof(*out));
    out->peeked = L4_TLS_RECORD_HEADER;
    /* TLSPlaintext: type (1), legacy_record_version (2), length (2) */
    if (buf[0] != L4_TLS_CONTENT_HANDSHAKE) {
        out->kind = L4_NOT_TLS;
        return NB_OK;
    }
    out->kind = L4_TLS_NO_SNI;
    rec_len = be16(buf + 3);
    if (rec_len == 0 || rec_len > L4_TLS_MAX_RECORD)
        return NB_OK;
    if (len - L4_TLS_RECORD_HEADER < rec_len)
        return NB_E_AGAIN;
    out->peeked = L4_TLS_RECORD_HEADER + rec_len;
    /* Handshake: msg_type (1), length (3); the ClientHello must fit in this one record. */
    payload = buf + L4_TLS_RECORD_HEADER;
    if (rec_len < 4 || payload[0] != HS_CLIENT_HELLO)
        return NB_OK;
    hs_len = (size_t)payload[1] << 16 | (size_t)payload[2] << 8 | payload[3];
    if (hs_len > rec_len - 4)
        return NB_OK;
    parse_client_hello(payload + 4, hs_len, out);
    return NB_OK;
}

int l4_sni_peek_finish(const uint8_t *buf, size_t len, struct l4_sni_result *out)
{
    int rc = l4_sni_peek(buf, len, out);

    if (rc != NB_E_AGAIN)
        return rc;
    if (len < L4_TLS_RECORD_HEADER)
        return NB_E_CLOSED; /* the record header could not be read: close */
    /* header read, payload cut short: unmatched TLS, everything read is replayed */
    memset(out, 0, sizeof(*out));
    out->kind = L4_TLS_NO_SNI;
    out->peeked = len;
    return NB_OK;
}
