/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * HTTP/1.1 message heads and chunked bodies (RFC 9112), the first stage of the HTTP engine: the
 * server and upstream client hand the bytes they have read to these functions and act on the
 * result (400 / 431 / forward). Pure: no I/O, no allocation, no clock.
 *
 * The head parsers re-parse from the start of the buffer once the end of the head ("\r\n\r\n") is
 * present. Until then only the newly arrived bytes are scanned (struct _scanned), so a client that
 * trickles a large head one byte at a time costs linear, not quadratic, time.
 */

#include "http/h1_parse.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "platform/err.h"

/* Framing-relevant fields seen while parsing a field section. */
struct framing {
    int has_cl;
    int has_te;
    int has_host;
    uint64_t cl;
    const char *host;
    size_t host_len;
};

/* tchar (RFC 9110 §5.6.2) */
static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return 1;
    default:
        return 0;
    }
}

/* field-vchar / SP / HTAB (RFC 9110 §5.5): everything but CTLs (HT allowed) and DEL */
static int is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Case-insensitive equality of s[0..n) with the lower-case literal lit. */
static int eqi(const char *s, size_t n, const char *lit)
{
    size_t i;

    if (n != strlen(lit))
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)lit[i])
            return 0;
    }
    return 1;
}

/*
 * One line starting at *pos: *line_len excludes the CRLF and *pos moves past it. Only CRLF ends a
 * line; a bare CR or bare LF is malformed (RFC 9112 §2.2 allows rejecting them, smugglers use
 * them).
 */
static int get_line(const char *buf, size_t len, size_t *pos, size_t *line_len)
{
    size_t i;

    for (i = *pos; i < len; i++) {
        if (buf[i] == '\r') {
            if (i + 1 >= len)
                return NB_E_AGAIN;
            if (buf[i + 1] != '\n')
                return NB_E_PARSE;
            *line_len = i - *pos;
            *pos = i + 2;
            return NB_OK;
        }
        if (buf[i] == '\n')
            return NB_E_PARSE;
    }
    return NB_E_AGAIN;
}

/* 1*DIGIT, no sign, no list, no whitespace, at most 2^63 - 1 (RFC 9110 §8.6). */
static int parse_content_length(const char *v, size_t n, uint64_t *out)
{
    uint64_t x = 0;
    size_t i;

    if (n == 0)
        return NB_E_PARSE;
    for (i = 0; i < n; i++) {
        unsigned d;

        if (v[i] < '0' || v[i] > '9')
            return NB_E_PARSE;
        d = (unsigned)(v[i] - '0');
        if (x > ((uint64_t)INT64_MAX - d) / 10)
            return NB_E_PARSE;
        x = x * 10 + d;
    }
    *out = x;
    return NB_OK;
}

static int note_field(const struct h1_header *h, int is_request, struct framing *fr)
{
    if (eqi(h->name, h->name_len, "content-length")) {
        /* Any second Content-Length, even with an equal value, is rejected. */
        if (fr->has_cl)
            return NB_E_PARSE;
        fr->has_cl = 1;
        return parse_content_length(h->value, h->value_len, &fr->cl);
    }
    if (eqi(h->name, h->name_len, "transfer-encoding")) {
        /* Only "chunked", alone, in a single field (as Go net/http). */
        if (fr->has_te || !eqi(h->value, h->value_len, "chunked"))
            return NB_E_PARSE;
        fr->has_te = 1;
        return NB_OK;
    }
    if (is_request && eqi(h->name, h->name_len, "host")) {
        /* RFC 9112 §3.2: more than one Host field is a 400. */
        if (fr->has_host)
            return NB_E_PARSE;
        fr->has_host = 1;
        fr->host = h->value;
        fr->host_len = h->value_len;
    }
    return NB_OK;
}

/* Field lines up to and including the empty line (RFC 9112 §5). */
static int parse_fields(const char *buf, size_t len, size_t *pos, struct h1_header *hdrs,
                        size_t max, size_t *num, int is_request, struct framing *fr)
{
    size_t n = 0;

    for (;;) {
        size_t start = *pos, ll, i, nl, vs, ve;
        const char *l = buf + start;
        int rc = get_line(buf, len, pos, &ll);

        if (rc != NB_OK)
            return rc;
        if (ll == 0)
            break;
        /* obs-fold (RFC 9112 §5.2): a line starting with whitespace is rejected */
        if (is_ows(l[0]))
            return NB_E_PARSE;
        for (i = 0; i < ll && is_tchar((unsigned char)l[i]); i++)
            ;
        /* empty name, or anything (incl. whitespace) between the name and the colon */
        if (i == 0 || i == ll || l[i] != ':')
            return NB_E_PARSE;
        nl = i;
        vs = i + 1;
        while (vs < ll && is_ows(l[vs]))
            vs++;
        ve = ll;
        while (ve > vs && is_ows(l[ve - 1]))
            ve--;
        for (i = vs; i < ve; i++)
            if (!is_field_char((unsigned char)l[i]))
                return NB_E_PARSE;
        if (n == max)
            return NB_E_TOO_BIG;
        hdrs[n].name = l;
        hdrs[n].name_len = nl;
        hdrs[n].value = l + vs;
        hdrs[n].value_len = ve - vs;
        rc = note_field(&hdrs[n], is_request, fr);
        if (rc != NB_OK)
            return rc;
        n++;
    }
    /* RFC 9112 §6.3: both present is a smuggling vector; reject rather than pick one. */
    if (fr->has_cl && fr->has_te)
        return NB_E_PARSE;
    *num = n;
    return NB_OK;
}

/*
 * Scans the new bytes of the head for its end. NB_OK when "\r\n\r\n" is present, NB_E_AGAIN when
 * not yet, NB_E_PARSE on a bare LF (caught early so a broken client is not kept waiting).
 */
static int scan_end(const char *buf, size_t len, size_t *scanned)
{
    size_t i;

    for (i = *scanned; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (i == 0 || buf[i - 1] != '\r')
            return NB_E_PARSE;
        if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
            *scanned = i + 1;
            return NB_OK;
        }
    }
    *scanned = len;
    return NB_E_AGAIN;
}

static size_t head_limit(size_t max_head)
{
    if (max_head == 0)
        return H1_MAX_HEAD;
    return max_head > INT_MAX ? INT_MAX : max_head;
}

/* "HTTP/1.0" or "HTTP/1.1" exactly (RFC 9112 §2.3); returns the minor version or -1. */
static int parse_version(const char *s, size_t n)
{
    if (n != 8 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1'))
        return -1;
    return s[7] - '0';
}

/* RFC 9112 §3.2: the four forms, each only where it is allowed. */
static int classify_target(const char *m, size_t ml, const char *t, size_t tl,
                           enum h1_target_form *form)
{
    size_t i, colon = tl;

    if (ml == 7 && memcmp(m, "CONNECT", 7) == 0) {
        /* authority-form: host ":" port, nothing else */
        for (i = 0; i < tl; i++) {
            if (t[i] == '/' || t[i] == '?' || t[i] == '@')
                return NB_E_PARSE;
            if (t[i] == ':')
                colon = i;
        }
        if (colon == 0 || colon >= tl - 1)
            return NB_E_PARSE;
        for (i = colon + 1; i < tl; i++)
            if (t[i] < '0' || t[i] > '9')
                return NB_E_PARSE;
        *form = H1_TARGET_AUTHORITY;
        return NB_OK;
    }
    if (t[0] == '/') {
        *form = H1_TARGET_ORIGIN;
        return NB_OK;
    }
    if (tl == 1 && t[0] == '*' && ml == 7 && memcmp(m, "OPTIONS", 7) == 0) {
        *form = H1_TARGET_ASTERISK;
        return NB_OK;
    }
    if ((tl > 7 && eqi(t, 7, "http://")) || (tl > 8 && eqi(t, 8, "https://"))) {
        *form = H1_TARGET_ABSOLUTE;
        return NB_OK;
    }
    return NB_E_PARSE;
}

static int parse_request_line(const char *l, size_t ll, struct h1_request *req)
{
    size_t i, ts;
    int minor;

    for (i = 0; i < ll && is_tchar((unsigned char)l[i]); i++)
        ;
    if (i == 0 || i == ll || l[i] != ' ')
        return NB_E_PARSE;
    req->method = l;
    req->method_len = i;
    ts = ++i;
    /* request-target: visible US-ASCII only; no fragment */
    for (; i < ll && l[i] != ' '; i++) {
        unsigned char c = (unsigned char)l[i];

        if (c <= 0x20 || c >= 0x7f || c == '#')
            return NB_E_PARSE;
    }
    if (i == ts || i == ll || i - ts > H1_MAX_TARGET)
        return NB_E_PARSE;
    req->target = l + ts;
    req->target_len = i - ts;
    minor = parse_version(l + i + 1, ll - i - 1);
    if (minor < 0)
        return NB_E_PARSE;
    req->minor_version = minor;
    return classify_target(req->method, req->method_len, req->target, req->target_len,
                           &req->target_form);
}

static int request_head(const char *buf, size_t len, struct h1_request *req)
{
    struct framing fr = {0};
    size_t pos = 0, ll, start;
    int rc;

    /* RFC 9112 §2.2: ignore empty lines before the request-line */
    while (pos + 1 < len && buf[pos] == '\r' && buf[pos + 1] == '\n')
        pos += 2;
    start = pos;
    rc = get_line(buf, len, &pos, &ll);
    if (rc != NB_OK)
        return rc;
    rc = parse_request_line(buf + start, ll, req);
    if (rc != NB_OK)
        return rc;
    rc = parse_fields(buf, len, &pos, req->headers, req->max_headers, &req->num_headers, 1, &fr);
    if (rc != NB_OK)
        return rc;
    if (req->minor_version == 1 && !fr.has_host)
        return NB_E_PARSE;
    /* RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing */
    if (req->minor_version == 0 && fr.has_te)
        return NB_E_PARSE;
    req->host = fr.host;
    req->host_len = fr.host_len;
    req->content_length = fr.has_cl ? fr.cl : 0;
    req->body = fr.has_te ? H1_BODY_CHUNKED : fr.has_cl ? H1_BODY_LENGTH : H1_BODY_NONE;
    return (int)pos;
}

int h1_parse_request(const char *buf, size_t len, struct h1_request *req)
{
    size_t lim = head_limit(req->max_head);
    size_t win = len < lim ? len : lim;
    int rc = scan_end(buf, win, &req->_scanned);

    if (rc == NB_OK)
        rc = request_head(buf, win, req);
    if (rc == NB_E_AGAIN && len >= lim)
        return NB_E_TOO_BIG;
    return rc;
}

static int response_head(const char *buf, size_t len, const char *m, size_t ml,
                         struct h1_response *res)
{
    struct framing fr = {0};
    size_t pos = 0, ll, i;
    const char *l = buf;
    int rc, minor, st;

    rc = get_line(buf, len, &pos, &ll);
    if (rc != NB_OK)
        return rc;
    /* status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ]; the last SP may be missing */
    if (ll < 12 || l[8] != ' ')
        return NB_E_PARSE;
    minor = parse_version(l, 8);
    if (minor < 0)
        return NB_E_PARSE;
    if (l[9] < '1' || l[9] > '9' || l[10] < '0' || l[10] > '9' || l[11] < '0' || l[11] > '9')
        return NB_E_PARSE;
    st = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    if (ll > 12 && l[12] != ' ')
        return NB_E_PARSE;
    for (i = 13; i < ll; i++)
        if (!is_field_char((unsigned char)l[i]))
            return NB_E_PARSE;
    res->minor_version = minor;
    res->status = st;
    res->reason = ll > 12 ? l + 13 : l + 12;
    res->reason_len = ll > 12 ? ll - 13 : 0;
    rc = parse_fields(buf, len, &pos, res->headers, res->max_headers, &res->num_headers, 0, &fr);
    if (rc != NB_OK)
        return rc;
    if (minor == 0 && fr.has_te)
        return NB_E_PARSE;
    res->content_length = fr.has_cl ? fr.cl : 0;
    /* RFC 9112 §6.3, in order */
    if ((ml == 4 && memcmp(m, "HEAD", 4) == 0) || st < 200 || st == 204 || st == 304)
        res->body = H1_BODY_NONE;
    else if (ml == 7 && memcmp(m, "CONNECT", 7) == 0 && st < 300)
        res->body = H1_BODY_TUNNEL;
    else if (fr.has_te)
        res->body = H1_BODY_CHUNKED;
    else if (fr.has_cl)
        res->body = H1_BODY_LENGTH;
    else
        res->body = H1_BODY_CLOSE;
    return (int)pos;
}

int h1_parse_response(const char *buf, size_t len, const char *req_method, size_t req_method_len,
                      struct h1_response *res)
{
    size_t lim = head_limit(res->max_head);
    size_t win = len < lim ? len : lim;
    int rc = scan_end(buf, win, &res->_scanned);

    if (rc == NB_OK)
        rc = response_head(buf, win, req_method, req_method_len, res);
    if (rc == NB_E_AGAIN && len >= lim)
        return NB_E_TOO_BIG;
    return rc;
}

/* Chunked decoder states (RFC 9112 §7.1). */
enum {
    CS_SIZE = 0, /* chunk-size hex digits */
    CS_SIZE_WS,  /* BWS after the size: only more BWS or ";" may follow */
    CS_EXT,      /* chunk-ext, skipped up to CR */
    CS_SIZE_LF,  /* CR seen after the size line */
    CS_DATA,     /* chunk-data */
    CS_DATA_CR,  /* CRLF after chunk-data */
    CS_DATA_LF,
    CS_TR_START, /* start of a trailer line (or of the final CRLF) */
    CS_TR_NAME,
    CS_TR_VALUE,
    CS_TR_LF,
    CS_END_LF, /* LF of the final CRLF */
    CS_DONE,
};

static int chunked_step(struct h1_chunked *st, unsigned char c)
{
    int d;

    switch (st->_state) {
    case CS_SIZE:
        d = hexval(c);
        if (d >= 0) {
            /* chunk-size < 2^63, at most H1_MAX_CHUNK_DIGITS digits */
            if (st->_count == H1_MAX_CHUNK_DIGITS ||
                st->_left > ((uint64_t)INT64_MAX - (unsigned)d) / 16)
                return NB_E_PARSE;
            st->_left = st->_left * 16 + (unsigned)d;
            st->_count++;
            return NB_OK;
        }
        if (st->_count == 0)
            return NB_E_PARSE;
        st->_count = 0;
        if (c == ';')
            st->_state = CS_EXT;
        else if (is_ows((char)c))
            st->_state = CS_SIZE_WS;
        else if (c == '\r')
            st->_state = CS_SIZE_LF;
        else
            return NB_E_PARSE;
        return NB_OK;
    case CS_SIZE_WS:
        if (c == ';')
            st->_state = CS_EXT;
        else if (!is_ows((char)c))
            return NB_E_PARSE;
        return NB_OK;
    case CS_EXT:
        if (c == '\r') {
            st->_state = CS_SIZE_LF;
            return NB_OK;
        }
        if (!is_field_char(c) || ++st->_count > H1_MAX_CHUNK_EXT)
            return NB_E_PARSE;
        return NB_OK;
    case CS_SIZE_LF:
        if (c != '\n')
            return NB_E_PARSE;
        st->_count = 0;
        st->_state = st->_left ? CS_DATA : CS_TR_START;
        return NB_OK;
    case CS_DATA_CR:
        if (c != '\r')
            return NB_E_PARSE;
        st->_state = CS_DATA_LF;
        return NB_OK;
    case CS_DATA_LF:
        if (c != '\n')
            return NB_E_PARSE;
        st->_state = CS_SIZE;
        st->_left = 0;
        st->_count = 0;
        return NB_OK;
    default:
        break;
    }
    /* trailer section: field lines with the head rules, then CRLF */
    if (++st->_trailer_len > H1_MAX_TRAILER)
        return NB_E_TOO_BIG;
    switch (st->_state) {
    case CS_TR_START:
        if (c == '\r') {
            st->_state = CS_END_LF;
            return NB_OK;
        }
        if (!is_tchar(c))
            return NB_E_PARSE; /* obs-fold, empty name, junk */
        if (++st->_fields > H1_MAX_TRAILER_FIELDS)
            return NB_E_TOO_BIG;
        st->_state = CS_TR_NAME;
        return NB_OK;
    case CS_TR_NAME:
        if (c == ':')
            st->_state = CS_TR_VALUE;
        else if (!is_tchar(c))
            return NB_E_PARSE;
        return NB_OK;
    case CS_TR_VALUE:
        if (c == '\r')
            st->_state = CS_TR_LF;
        else if (!is_field_char(c))
            return NB_E_PARSE;
        return NB_OK;
    case CS_TR_LF:
        if (c != '\n')
            return NB_E_PARSE;
        st->_state = CS_TR_START;
        return NB_OK;
    case CS_END_LF:
        if (c != '\n')
            return NB_E_PARSE;
        st->_state = CS_DONE;
        return NB_OK;
    default:
        return NB_E_INVAL;
    }
}

/* True in the states that consume the bytes of a trailer field line. */
static bool in_trailer_line(unsigned char state, unsigned char c)
{
    return (state == CS_TR_START && c != '\r') || state == CS_TR_NAME || state == CS_TR_VALUE ||
           state == CS_TR_LF;
}

ssize_t h1_chunked_decode(struct h1_chunked *st, char *buf, size_t *len)
{
    size_t src = 0, dst = 0, n = *len, left;
    size_t tr_start = SIZE_MAX; /* first trailer byte of the current run in buf */
    int rc;

    if (st->_state == CS_DONE)
        return NB_E_INVAL;
    while (src < n) {
        if (st->_state == CS_DATA) {
            /* Data moves down over the framing bytes already consumed. */
            size_t k = n - src;

            if ((uint64_t)k > st->_left)
                k = (size_t)st->_left;
            if (dst != src)
                memmove(buf + dst, buf + src, k);
            dst += k;
            src += k;
            st->_left -= k;
            if (st->_left == 0)
                st->_state = CS_DATA_CR;
            continue;
        }
        unsigned char before = st->_state, c = (unsigned char)buf[src];
        rc = chunked_step(st, c);
        src++;
        if (rc != NB_OK) {
            *len = dst;
            return rc;
        }
        if (st->on_trailer) {
            /* Trailer bytes are handed over in runs, before the data may move over them. */
            if (in_trailer_line(before, c)) {
                if (tr_start == SIZE_MAX)
                    tr_start = src - 1;
            } else if (tr_start != SIZE_MAX) {
                st->on_trailer(st->trailer_arg, buf + tr_start, src - 1 - tr_start);
                tr_start = SIZE_MAX;
            }
        }
        if (st->_state == CS_DONE) {
            left = n - src;
            if (dst != src && left)
                memmove(buf + dst, buf + src, left);
            *len = dst;
            return (ssize_t)left;
        }
    }
    if (tr_start != SIZE_MAX)
        st->on_trailer(st->trailer_arg, buf + tr_start, n - tr_start);
    *len = dst;
    return NB_E_AGAIN;
}
