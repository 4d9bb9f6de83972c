/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * gRPC wire details that need no I/O (grpc_frame.h). Place in the pipeline: mgmt/grpc.c gets
 * DATA bytes and header fields from nghttp2 and hands them here to find message boundaries, the
 * call's status and its text; it also asks here how to spell a deadline. Everything is written
 * from grpc/doc/PROTOCOL-HTTP2.md, statuscodes.md and http-grpc-status-mapping.md.
 */
#include "mgmt/grpc_frame.h"
#include "platform/err.h"

#include <string.h>
#include <strings.h>

static const char *const code_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *mgmt_grpc_code_name(int code)
{
    if (code < 0 || code > MGMT_GRPC_UNAUTHENTICATED)
        return "UNKNOWN";
    return code_names[code];
}

/* ---- message prefix ---- */

void mgmt_grpc_prefix_encode(uint8_t out[MGMT_GRPC_PREFIX_LEN], uint32_t len)
{
    out[0] = 0; /* Compressed-Flag: we never compress (no grpc-encoding is sent) */
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

ssize_t mgmt_grpc_dec_feed(struct mgmt_grpc_dec *d, const uint8_t *in, size_t len,
                           struct mgmt_grpc_dec_ev *ev)
{
    size_t used = 0;
    uint32_t max = d->max_len ? d->max_len : MGMT_GRPC_MAX_MESSAGE;

    memset(ev, 0, sizeof *ev);
    if (d->_in_body) {
        if (d->_left == 0) {
            d->_in_body = false;
            ev->kind = MGMT_GRPC_DEC_END;
            return 0;
        }
        if (len == 0)
            return 0;
        size_t n = len < d->_left ? len : d->_left;
        d->_left -= (uint32_t)n;
        ev->kind = MGMT_GRPC_DEC_DATA;
        ev->data = in;
        ev->len = n;
        return (ssize_t)n;
    }
    /* Length-Prefixed-Message: Compressed-Flag (1 byte) Message-Length (4 bytes, big-endian) */
    while (d->_hdr_have < MGMT_GRPC_PREFIX_LEN && used < len)
        d->_hdr[d->_hdr_have++] = in[used++];
    if (d->_hdr_have < MGMT_GRPC_PREFIX_LEN)
        return (ssize_t)used;
    if (d->_hdr[0] == 1)
        return NB_E_UNSUPPORTED;
    if (d->_hdr[0] != 0)
        return NB_E_PARSE;
    uint32_t mlen = (uint32_t)d->_hdr[1] << 24 | (uint32_t)d->_hdr[2] << 16 |
                    (uint32_t)d->_hdr[3] << 8 | (uint32_t)d->_hdr[4];
    if (mlen > max)
        return NB_E_TOO_BIG;
    d->_hdr_have = 0;
    d->_in_body = true;
    d->_left = mlen;
    ev->kind = MGMT_GRPC_DEC_BEGIN;
    ev->msg_len = mlen;
    return (ssize_t)used;
}

bool mgmt_grpc_dec_at_boundary(const struct mgmt_grpc_dec *d)
{
    return !d->_in_body && d->_hdr_have == 0;
}

/* ---- trailers ---- */

int mgmt_grpc_status_parse(const char *v, size_t n, int *code)
{
    uint32_t x = 0;

    if (n == 0 || n > 9) /* grpc-status is a small number; 9 digits cannot overflow */
        return NB_E_PARSE;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return NB_E_PARSE;
        x = x * 10 + (uint32_t)(v[i] - '0');
    }
    *code = x > MGMT_GRPC_UNAUTHENTICATED ? MGMT_GRPC_UNKNOWN : (int)x;
    return NB_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t mgmt_grpc_message_decode(const char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;

    if (cap == 0)
        return 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)in[i];
        int hi, lo;
        /* Percent-Encoded: "%" HEXDIG HEXDIG; anything else passes through unmodified */
        if (c == '%' && i + 2 < n && (hi = hexval(in[i + 1])) >= 0 &&
            (lo = hexval(in[i + 2])) >= 0) {
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        out[o++] = (char)(c < 0x20 || c == 0x7f ? '?' : c);
    }
    out[o] = '\0';
    return o;
}

/* ---- grpc-timeout: TimeoutValue (1-8 digits) TimeoutUnit (H M S m u n) ---- */

#define TIMEOUT_DIGITS_MAX 99999999ull

static size_t put_timeout(uint64_t v, char unit, char out[MGMT_GRPC_TIMEOUT_MAX])
{
    char tmp[8];
    size_t n = 0, o = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < sizeof tmp);
    while (n)
        out[o++] = tmp[--n];
    out[o++] = unit;
    out[o] = '\0';
    return o;
}

size_t mgmt_grpc_timeout_encode(uint64_t ms, char out[MGMT_GRPC_TIMEOUT_MAX])
{
    if (ms && ms % 1000 == 0 && ms / 1000 <= TIMEOUT_DIGITS_MAX)
        return put_timeout(ms / 1000, 'S', out);
    if (ms <= TIMEOUT_DIGITS_MAX)
        return put_timeout(ms, 'm', out);
    /* Too many digits: round up, so the server never gives up before we do. */
    uint64_t s = ms / 1000 + (ms % 1000 != 0);
    if (s <= TIMEOUT_DIGITS_MAX)
        return put_timeout(s, 'S', out);
    uint64_t m = s / 60 + (s % 60 != 0);
    if (m <= TIMEOUT_DIGITS_MAX)
        return put_timeout(m, 'M', out);
    uint64_t h = m / 60 + (m % 60 != 0);
    return put_timeout(h <= TIMEOUT_DIGITS_MAX ? h : TIMEOUT_DIGITS_MAX, 'H', out);
}

int mgmt_grpc_timeout_parse(const char *v, size_t n, uint64_t *ms)
{
    uint64_t x = 0;

    if (n < 2 || n > 9)
        return NB_E_PARSE;
    for (size_t i = 0; i + 1 < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return NB_E_PARSE;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    switch (v[n - 1]) {
    case 'H':
        *ms = x * 3600000ull;
        break;
    case 'M':
        *ms = x * 60000ull;
        break;
    case 'S':
        *ms = x * 1000ull;
        break;
    case 'm':
        *ms = x;
        break;
    case 'u':
        *ms = x / 1000 + (x % 1000 != 0);
        break;
    case 'n':
        *ms = x / 1000000 + (x % 1000000 != 0);
        break;
    default:
        return NB_E_PARSE;
    }
    return NB_OK;
}

/* ---- headers ---- */

bool mgmt_grpc_content_type_ok(const char *v, size_t n)
{
    static const char base[] = "application/grpc";
    const size_t bl = sizeof base - 1;

    if (n < bl || strncasecmp(v, base, bl) != 0)
        return false;
    return n == bl || v[bl] == '+' || v[bl] == ';';
}

int mgmt_grpc_code_from_http(int status)
{
    switch (status) {
    case 400:
        return MGMT_GRPC_INTERNAL;
    case 401:
        return MGMT_GRPC_UNAUTHENTICATED;
    case 403:
        return MGMT_GRPC_PERMISSION_DENIED;
    case 404:
        return MGMT_GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return MGMT_GRPC_UNAVAILABLE;
    default:
        return MGMT_GRPC_UNKNOWN;
    }
}

int mgmt_grpc_code_from_h2(uint32_t h2)
{
    switch (h2) {
    case 0x7: /* REFUSED_STREAM: not processed, safe to retry */
        return MGMT_GRPC_UNAVAILABLE;
    case 0x8: /* CANCEL */
        return MGMT_GRPC_CANCELLED;
    case 0xb: /* ENHANCE_YOUR_CALM */
        return MGMT_GRPC_RESOURCE_EXHAUSTED;
    case 0xc: /* INADEQUATE_SECURITY */
        return MGMT_GRPC_PERMISSION_DENIED;
    default: /* NO_ERROR without trailers, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR... */
        return MGMT_GRPC_INTERNAL;
    }
}
