/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * Request and response rewriting (see rewrite.h). The proxy engine calls these between routing
 * (http/route.c) and the upstream client: they turn the client's request into the one the
 * backend sees and fix Location headers on the way back. Everything is computed into the
 * request's arena; nothing here blocks, allocates from the heap or keeps state.
 *
 * NetBird runs on Go's net/http, so many observable details are Go library behaviour rather
 * than NetBird code: how a path is re-escaped after the prefix strip, how the query is
 * re-encoded, how cookies are re-serialised, which Location strings are "unparsable". Those
 * parts follow the Go algorithms step by step; the comments name the Go function each mirrors.
 */

#include "http/rewrite.h"
#include "platform/arena.h"
#include "platform/err.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Go net/url escaping ---- */

enum enc {
    ENC_PATH,
    ENC_HOST,
    ENC_ZONE,
    ENC_USERPASS,
    ENC_QUERY,
    ENC_FRAGMENT,
};

static const char HEX[] = "0123456789ABCDEF";

/* net/url shouldEscape */
static bool should_escape(unsigned char c, enum enc mode)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return false;
    if (c == '\0')
        return true;
    /* hosts allow sub-delims, ':' and the IPv6 brackets ('<', '>', '"' too, as Go does) */
    if ((mode == ENC_HOST || mode == ENC_ZONE) && strchr("!$&'()*+,;=:[]<>\"", c) != NULL)
        return false;
    if (strchr("-_.~", c) != NULL) /* unreserved */
        return false;
    if (strchr("$&+,/:;=?@", c) != NULL) { /* reserved: depends on the component */
        switch (mode) {
        case ENC_PATH:
            return c == '?';
        case ENC_USERPASS:
            return c == '@' || c == '/' || c == '?' || c == ':';
        case ENC_QUERY:
            return true;
        case ENC_FRAGMENT:
            return false;
        default:
            break;
        }
    }
    if (mode == ENC_FRAGMENT && strchr("!()*", c) != NULL)
        return false;
    return true;
}

/* net/url escape into the arena (NUL-terminated). */
static char *go_escape(struct nb_arena *a, const char *s, size_t n, enum enc mode, size_t *outlen)
{
    size_t hex = 0;
    for (size_t i = 0; i < n; i++)
        if (should_escape((unsigned char)s[i], mode) && !(s[i] == ' ' && mode == ENC_QUERY))
            hex++;
    char *o = nb_arena_alloc(a, n + 2 * hex + 1);
    if (o == NULL)
        return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' && mode == ENC_QUERY) {
            o[w++] = '+';
        } else if (should_escape(c, mode)) {
            o[w++] = '%';
            o[w++] = HEX[c >> 4];
            o[w++] = HEX[c & 15];
        } else {
            o[w++] = (char)c;
        }
    }
    o[w] = '\0';
    *outlen = w;
    return o;
}

/* Whether go_escape(dec) would produce exactly raw (url.setPath's RawPath test), no allocation. */
static bool escape_equals(const char *dec, size_t dl, const char *raw, size_t rl, enum enc mode)
{
    size_t r = 0;
    for (size_t i = 0; i < dl; i++) {
        unsigned char c = (unsigned char)dec[i];
        if (should_escape(c, mode)) {
            if (r + 3 > rl || raw[r] != '%' || raw[r + 1] != HEX[c >> 4] ||
                raw[r + 2] != HEX[c & 15])
                return false;
            r += 3;
        } else {
            if (r >= rl || (unsigned char)raw[r] != c)
                return false;
            r++;
        }
    }
    return r == rl;
}

/* net/url validEncoded (used for paths and fragments). */
static bool valid_encoded(const char *s, size_t n, enum enc mode)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '\0' && strchr("!$&'()*+,;=:@[]%", c) != NULL)
            continue;
        if (should_escape(c, mode))
            return false;
    }
    return true;
}

static int unhex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Whether raw %-decodes (path rules) to exactly dec, no allocation. */
static bool unescapes_to(const char *raw, size_t rl, const char *dec, size_t dl)
{
    size_t d = 0;
    for (size_t i = 0; i < rl; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c == '%') {
            if (i + 2 >= rl)
                return false;
            int hi = unhex((unsigned char)raw[i + 1]), lo = unhex((unsigned char)raw[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (d >= dl || (unsigned char)dec[d] != c)
            return false;
        d++;
    }
    return d == dl;
}

/* Decodes into the arena, or returns s itself when there is nothing to decode. */
static const char *unescape_a(struct nb_arena *a, const char *s, size_t n, bool plus, size_t *ol,
                              int *rc)
{
    *rc = NB_OK;
    if (n == 0) {
        *ol = 0;
        return s ? s : "";
    }
    if (memchr(s, '%', n) == NULL && (!plus || memchr(s, '+', n) == NULL)) {
        *ol = n;
        return s;
    }
    char *d = nb_arena_alloc(a, n + 1);
    if (d == NULL) {
        *rc = NB_E_NOMEM;
        return NULL;
    }
    ssize_t l = http__pct_decode(s, n, d, plus);
    if (l < 0) {
        *rc = NB_E_PARSE;
        return NULL;
    }
    d[l] = '\0';
    *ol = (size_t)l;
    return d;
}

/*
 * A url.URL path: decoded Path plus RawPath, which is non-NULL only when the raw spelling is not
 * the default escaping of Path (url.setPath).
 */
struct upath {
    const char *dec;
    size_t dl;
    const char *raw; /* NULL: RawPath "" */
    size_t rl;
};

static void set_path(struct upath *u, const char *raw, size_t rl, const char *dec, size_t dl)
{
    u->dec = dec;
    u->dl = dl;
    u->raw = escape_equals(dec, dl, raw, rl, ENC_PATH) ? NULL : raw;
    u->rl = u->raw ? rl : 0;
}

/* url.URL.EscapedPath (and EscapedFragment with mode ENC_FRAGMENT). */
static const char *escaped_form(struct nb_arena *a, const struct upath *u, enum enc mode,
                                size_t *ol)
{
    if (u->raw != NULL && valid_encoded(u->raw, u->rl, mode) &&
        unescapes_to(u->raw, u->rl, u->dec, u->dl)) {
        *ol = u->rl;
        return u->raw;
    }
    if (mode == ENC_PATH && u->dl == 1 && u->dec[0] == '*') {
        *ol = 1;
        return "*";
    }
    return go_escape(a, u->dec, u->dl, mode, ol);
}

/* Concatenates up to four slices into the arena (NUL-terminated). */
static char *cat(struct nb_arena *a, size_t *ol, const char *p1, size_t l1, const char *p2,
                 size_t l2, const char *p3, size_t l3, const char *p4, size_t l4)
{
    size_t n = l1 + l2 + l3 + l4;
    char *o = nb_arena_alloc(a, n + 1);
    if (o == NULL)
        return NULL;
    size_t w = 0;
    if (l1)
        memcpy(o + w, p1, l1), w += l1;
    if (l2)
        memcpy(o + w, p2, l2), w += l2;
    if (l3)
        memcpy(o + w, p3, l3), w += l3;
    if (l4)
        memcpy(o + w, p4, l4), w += l4;
    o[w] = '\0';
    *ol = w;
    return o;
}

int http_path_decode(struct nb_arena *a, const char *raw, size_t len, const char **out,
                     size_t *out_len)
{
    int rc;
    const char *d = unescape_a(a, raw, len, false, out_len, &rc);
    *out = d;
    return rc;
}

/* ---- query strings (url.ParseQuery / Values.Encode) ---- */

struct qpair {
    const char *k, *v;
    size_t kl, vl;
    size_t idx; /* position, for a stable sort */
};

struct qlist {
    struct qpair *p;
    size_t n;
};

static int query_parse(struct nb_arena *a, const char *q, size_t n, struct qlist *out)
{
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += q[i] == '&';
    out->n = 0;
    out->p = nb_arena_alloc(a, cap * sizeof *out->p);
    if (out->p == NULL)
        return NB_E_NOMEM;
    size_t i = 0;
    while (i < n) {
        const char *amp = memchr(q + i, '&', n - i);
        size_t e = amp ? (size_t)(amp - q) : n;
        const char *seg = q + i;
        size_t sl = e - i;
        i = amp ? e + 1 : n;
        /* Go rejects ';' separators (the pair is dropped) and skips empty pairs */
        if (sl == 0 || memchr(seg, ';', sl) != NULL)
            continue;
        const char *eq = memchr(seg, '=', sl);
        size_t kl = eq ? (size_t)(eq - seg) : sl;
        const char *vr = eq ? eq + 1 : seg + sl;
        size_t vrl = eq ? sl - kl - 1 : 0;
        struct qpair *p = &out->p[out->n];
        int rc;
        p->k = unescape_a(a, seg, kl, true, &p->kl, &rc);
        if (rc == NB_E_NOMEM)
            return rc;
        if (rc != NB_OK)
            continue;
        p->v = unescape_a(a, vr, vrl, true, &p->vl, &rc);
        if (rc == NB_E_NOMEM)
            return rc;
        if (rc != NB_OK)
            continue;
        p->idx = out->n++;
    }
    return NB_OK;
}

static int qpair_cmp(const void *x, const void *y)
{
    const struct qpair *a = x, *b = y;
    size_t m = a->kl < b->kl ? a->kl : b->kl;
    int c = m ? memcmp(a->k, b->k, m) : 0;
    if (c != 0)
        return c;
    if (a->kl != b->kl)
        return a->kl < b->kl ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static bool is_key(const struct qpair *p, const char *k)
{
    size_t l = strlen(k);
    return p->kl == l && memcmp(p->k, k, l) == 0;
}

/* Values.Encode: keys sorted, values in order, QueryEscape'd; pairs keyed `skip` dropped. */
static const char *query_encode(struct nb_arena *a, struct qlist *l, const char *skip, size_t *ol)
{
    qsort(l->p, l->n, sizeof *l->p, qpair_cmp);
    size_t total = 0;
    for (size_t i = 0; i < l->n; i++)
        total += 3 * (l->p[i].kl + l->p[i].vl) + 2;
    char *o = nb_arena_alloc(a, total + 1);
    if (o == NULL)
        return NULL;
    size_t w = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct qpair *p = &l->p[i];
        if (skip != NULL && is_key(p, skip))
            continue;
        if (w > 0)
            o[w++] = '&';
        for (int part = 0; part < 2; part++) {
            const char *s = part ? p->v : p->k;
            size_t n = part ? p->vl : p->kl;
            if (part)
                o[w++] = '=';
            for (size_t j = 0; j < n; j++) {
                unsigned char c = (unsigned char)s[j];
                if (c == ' ') {
                    o[w++] = '+';
                } else if (should_escape(c, ENC_QUERY)) {
                    o[w++] = '%';
                    o[w++] = HEX[c >> 4];
                    o[w++] = HEX[c & 15];
                } else {
                    o[w++] = (char)c;
                }
            }
        }
    }
    o[w] = '\0';
    *ol = w;
    return o;
}

/* httputil cleanQueryParams: a query with ';' or a bad %-escape is re-encoded whole. */
static int clean_query(struct nb_arena *a, const char **q, size_t *n)
{
    const char *s = *q;
    size_t len = *n;
    bool dirty = false;
    for (size_t i = 0; i < len && !dirty; i++) {
        if (s[i] == ';')
            dirty = true;
        else if (s[i] == '%') {
            if (i + 2 >= len || unhex((unsigned char)s[i + 1]) < 0 ||
                unhex((unsigned char)s[i + 2]) < 0)
                dirty = true;
            else
                i += 2;
        }
    }
    if (!dirty)
        return NB_OK;
    struct qlist l;
    int rc = query_parse(a, s, len, &l);
    if (rc != NB_OK)
        return rc;
    *q = query_encode(a, &l, NULL, n);
    return *q ? NB_OK : NB_E_NOMEM;
}

/* ---- IP addresses (Go netip) ---- */

struct ipaddr {
    int family;
    uint8_t a[16];
    char zone[16]; /* "" when none */
};

/* netip.ParseAddr; zones of at most 15 bytes. No unmapping. */
static bool ip_parse(const char *s, size_t n, struct ipaddr *ip)
{
    char buf[64];
    memset(ip, 0, sizeof *ip);
    if (n == 0 || n >= sizeof buf || memchr(s, '\0', n) != NULL)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (memchr(buf, ':', n) != NULL) {
        char *pct = strchr(buf, '%');
        if (pct != NULL) {
            size_t zl = strlen(pct + 1);
            if (zl == 0 || zl >= sizeof ip->zone)
                return false;
            memcpy(ip->zone, pct + 1, zl + 1);
            *pct = '\0';
        }
        if (inet_pton(AF_INET6, buf, ip->a) != 1)
            return false;
        ip->family = AF_INET6;
        return true;
    }
    if (inet_pton(AF_INET, buf, ip->a) != 1) /* glibc: dotted quad, no leading zeros */
        return false;
    ip->family = AF_INET;
    return true;
}

/* netip.Addr.Unmap */
static void ip_unmap(struct ipaddr *ip)
{
    static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (ip->family == AF_INET6 && memcmp(ip->a, pre, 12) == 0) {
        memmove(ip->a, ip->a + 12, 4);
        memset(ip->a + 4, 0, 12);
        ip->family = AF_INET;
        ip->zone[0] = '\0';
    }
}

static bool ip_from_sockaddr(const struct sockaddr *sa, struct ipaddr *ip)
{
    memset(ip, 0, sizeof *ip);
    if (sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        ip->family = AF_INET;
        memcpy(ip->a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        ip->family = AF_INET6;
        memcpy(ip->a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        return false;
    }
    /* Go reports an IPv4 client of a dual-stack socket as IPv4 */
    ip_unmap(ip);
    return true;
}

/* netip.Addr.String */
static void ip_format(const struct ipaddr *ip, char out[NB_ADDRSTRLEN])
{
    if (ip->family == AF_INET) {
        snprintf(out, NB_ADDRSTRLEN, "%u.%u.%u.%u", ip->a[0], ip->a[1], ip->a[2], ip->a[3]);
        return;
    }
    static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    size_t w = 0;
    if (memcmp(ip->a, pre, 12) == 0) {
        w = (size_t)snprintf(out, NB_ADDRSTRLEN, "::ffff:%u.%u.%u.%u", ip->a[12], ip->a[13],
                             ip->a[14], ip->a[15]);
    } else {
        unsigned g[8];
        for (int i = 0; i < 8; i++)
            g[i] = (unsigned)ip->a[2 * i] << 8 | ip->a[2 * i + 1];
        /* RFC 5952: the first longest run of two or more zero groups becomes "::" */
        int zs = -1, ze = -1;
        for (int i = 0; i < 8; i++) {
            int j = i;
            while (j < 8 && g[j] == 0)
                j++;
            if (j - i >= 2 && j - i > ze - zs) {
                zs = i;
                ze = j;
            }
        }
        for (int i = 0; i < 8; i++) {
            if (i == zs) {
                out[w++] = ':';
                out[w++] = ':';
                i = ze;
                if (i >= 8)
                    break;
            } else if (i > 0) {
                out[w++] = ':';
            }
            w += (size_t)snprintf(out + w, NB_ADDRSTRLEN - w, "%x", g[i]);
        }
        out[w] = '\0';
    }
    if (ip->zone[0] != '\0')
        snprintf(out + w, NB_ADDRSTRLEN - w, "%%%s", ip->zone);
}

static bool prefix_contains(const struct http_prefix *p, const struct ipaddr *ip)
{
    /* netip.Prefix.Contains: same family, no zone */
    if (p->family != ip->family || ip->zone[0] != '\0')
        return false;
    unsigned full = p->bits / 8, rest = p->bits % 8;
    if (memcmp(p->addr, ip->a, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (ip->a[full] & mask) == p->addr[full];
}

static bool is_trusted(const struct http_fwd_cfg *cfg, const struct ipaddr *ip)
{
    for (size_t i = 0; cfg != NULL && i < cfg->n_trusted; i++)
        if (prefix_contains(&cfg->trusted[i], ip))
            return true;
    return false;
}

/* ---- configuration ---- */

void http_fwd_cfg_init(struct http_fwd_cfg *c)
{
    memset(c, 0, sizeof *c);
}

void http_fwd_cfg_deinit(struct http_fwd_cfg *c)
{
    free(c->trusted);
    memset(c, 0, sizeof *c);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool parse_prefix(const char *s, size_t n, struct http_prefix *p)
{
    const char *slash = NULL;
    for (size_t i = n; i > 0; i--)
        if (s[i - 1] == '/') {
            slash = s + i - 1;
            break;
        }
    size_t al = slash ? (size_t)(slash - s) : n;
    struct ipaddr ip;
    if (!ip_parse(s, al, &ip) || ip.zone[0] != '\0')
        return false;
    unsigned max = ip.family == AF_INET ? 32 : 128, bits = max;
    if (slash != NULL) {
        const char *b = slash + 1;
        size_t bl = n - al - 1;
        /* netip.ParsePrefix: decimal, no sign, no leading zero */
        if (bl == 0 || bl > 3 || (bl > 1 && (b[0] < '1' || b[0] > '9')))
            return false;
        bits = 0;
        for (size_t i = 0; i < bl; i++) {
            if (b[i] < '0' || b[i] > '9')
                return false;
            bits = bits * 10 + (unsigned)(b[i] - '0');
        }
        if (bits > max)
            return false;
    }
    memset(p, 0, sizeof *p);
    p->family = ip.family;
    p->bits = (uint8_t)bits;
    memcpy(p->addr, ip.a, max / 8);
    unsigned full = bits / 8, rest = bits % 8;
    if (full < max / 8) {
        p->addr[full] &= (uint8_t)(0xff << (8 - rest));
        memset(p->addr + full + 1, 0, max / 8 - full - 1);
    }
    return true;
}

int http_trusted_parse(struct http_fwd_cfg *c, const char *list, char *err, size_t errlen)
{
    int rc = NB_E_NOMEM;
    size_t cap = 1, n = 0, len = strlen(list);
    for (size_t i = 0; i < len; i++)
        cap += list[i] == ',';
    struct http_prefix *v = calloc(cap, sizeof *v);
    if (v == NULL)
        goto out;
    size_t i = 0;
    while (i <= len) {
        const char *comma = memchr(list + i, ',', len - i);
        size_t e = comma ? (size_t)(comma - list) : len;
        size_t b = i;
        i = e + 1;
        while (b < e && is_space(list[b]))
            b++;
        while (e > b && is_space(list[e - 1]))
            e--;
        if (e == b)
            continue;
        if (!parse_prefix(list + b, e - b, &v[n])) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "invalid trusted proxy \"%.*s\"", (int)(e - b), list + b);
            rc = NB_E_PARSE;
            goto out;
        }
        n++;
    }
    free(c->trusted);
    c->trusted = v;
    c->n_trusted = n;
    v = NULL;
    rc = NB_OK;
out:
    free(v);
    return rc;
}

int http_forwarded_proto_parse(const char *s, enum http_fwd_proto *out)
{
    if (strcmp(s, "auto") == 0)
        *out = HTTP_FWD_PROTO_AUTO;
    else if (strcmp(s, "http") == 0)
        *out = HTTP_FWD_PROTO_HTTP;
    else if (strcmp(s, "https") == 0)
        *out = HTTP_FWD_PROTO_HTTPS;
    else
        return NB_E_PARSE;
    return NB_OK;
}

bool http_fwd_https(const struct http_fwd_cfg *c, bool tls)
{
    if (c != NULL && c->proto == HTTP_FWD_PROTO_HTTPS)
        return true;
    if (c != NULL && c->proto == HTTP_FWD_PROTO_HTTP)
        return false;
    return tls;
}

/* ---- client IP (§4.5) ---- */

static bool trim_space(const char **s, size_t *n)
{
    while (*n > 0 && is_space(**s))
        (*s)++, (*n)--;
    while (*n > 0 && is_space((*s)[*n - 1]))
        (*n)--;
    return *n > 0;
}

int http_client_ip(const struct sockaddr *peer, const struct http_hdrs *hdrs,
                   const struct http_fwd_cfg *cfg, char out[NB_ADDRSTRLEN])
{
    struct ipaddr pip, ip, leftmost;
    bool have_left = false;

    out[0] = '\0';
    if (!ip_from_sockaddr(peer, &pip))
        return NB_E_INVAL;
    const struct http_field *xff = hdrs ? http_hdrs_get(hdrs, "X-Forwarded-For") : NULL;
    if (!is_trusted(cfg, &pip) || xff == NULL) {
        ip_format(&pip, out);
        return NB_OK;
    }
    /* right to left: the nearest hop not ours is the client */
    size_t end = xff->value_len;
    while (true) {
        const char *v = xff->value;
        size_t b = end;
        while (b > 0 && v[b - 1] != ',')
            b--;
        const char *item = v + b;
        size_t il = end - b;
        if (trim_space(&item, &il) && ip_parse(item, il, &ip)) {
            ip_unmap(&ip);
            if (!is_trusted(cfg, &ip)) {
                ip_format(&ip, out);
                return NB_OK;
            }
            leftmost = ip;
            have_left = true;
        }
        if (b == 0)
            break;
        end = b - 1;
    }
    ip_format(have_left ? &leftmost : &pip, out);
    return NB_OK;
}

/* ---- header helpers ---- */

static bool ieq2(const char *a, size_t al, const char *b, size_t bl)
{
    if (al != bl)
        return false;
    for (size_t i = 0; i < al; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + 32);
        if (x != y)
            return false;
    }
    return true;
}

/* textproto.TrimString */
static void trim_ascii(const char **s, size_t *n)
{
    while (*n > 0 && (**s == ' ' || **s == '\t' || **s == '\n' || **s == '\r'))
        (*s)++, (*n)--;
    while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' || (*s)[*n - 1] == '\n' ||
                      (*s)[*n - 1] == '\r'))
        (*n)--;
}

/* Whether a Connection field of h lists `name` (comma-separated, trimmed, case-insensitive). */
static bool named_by_connection(const struct http_hdrs *h, const char *name, size_t nl)
{
    for (uint32_t i = 0; i < h->n; i++) {
        const struct http_field *f = &h->v[i];
        if (f->name_len == 0 || !http_ieq(f->name, f->name_len, "connection"))
            continue;
        size_t p = 0;
        while (p <= f->value_len) {
            const char *comma = memchr(f->value + p, ',', f->value_len - p);
            size_t e = comma ? (size_t)(comma - f->value) : f->value_len;
            const char *tok = f->value + p;
            size_t tl = e - p;
            trim_ascii(&tok, &tl);
            if (tl > 0 && ieq2(tok, tl, name, nl))
                return true;
            p = e + 1;
        }
    }
    return false;
}

static const char *const HOP[] = {
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
};

void http_strip_hop_by_hop(struct http_hdrs *h)
{
    /* mark first (name_len 0; names are never empty), so the Connection fields stay readable */
    for (uint32_t i = 0; i < h->n; i++) {
        struct http_field *f = &h->v[i];
        if (f->name_len == 0 || http_ieq(f->name, f->name_len, "connection"))
            continue;
        if (named_by_connection(h, f->name, f->name_len))
            f->name_len = 0;
    }
    uint32_t w = 0;
    for (uint32_t r = 0; r < h->n; r++) {
        const struct http_field *f = &h->v[r];
        bool drop = f->name_len == 0;
        for (size_t k = 0; !drop && k < sizeof HOP / sizeof HOP[0]; k++)
            drop = http_ieq(f->name, f->name_len, HOP[k]);
        if (!drop)
            h->v[w++] = *f;
    }
    h->n = w;
}

/* http_hdrs_set with a value built in the arena; NULL value means NB_E_NOMEM. */
static int set_built(struct http_hdrs *h, const char *name, const char *v, size_t vl)
{
    if (v == NULL)
        return NB_E_NOMEM;
    return http_hdrs_set(h, name, v, vl);
}

static bool printable(const char *s, size_t n, bool tab_ok)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 0x20 && c <= 0x7e) || (tab_ok && c == '\t')))
            return false;
    }
    return true;
}

/* ---- cookies (http.Request.Cookies / AddCookie) ---- */

#define GO_COOKIE_MAX 3000 /* Go >= 1.25.2 parses no cookie at all beyond this many */

static bool cookie_value_byte(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != ';' && c != '\\';
}

static int rebuild_cookie(struct nb_arena *a, const struct http_hdrs *in, struct http_hdrs *out)
{
    size_t total = 0, count = 0;
    http_hdrs_del(out, "Cookie");
    for (uint32_t i = 0; i < in->n; i++) {
        const struct http_field *f = &in->v[i];
        if (!http_ieq(f->name, f->name_len, "cookie"))
            continue;
        total += f->value_len;
        count++;
        for (size_t j = 0; j < f->value_len; j++)
            count += f->value[j] == ';';
    }
    if (total == 0 || count > GO_COOKIE_MAX)
        return NB_OK;
    char *o = nb_arena_alloc(a, 3 * total + 8);
    if (o == NULL)
        return NB_E_NOMEM;
    size_t w = 0;
    for (uint32_t i = 0; i < in->n; i++) {
        const struct http_field *f = &in->v[i];
        if (!http_ieq(f->name, f->name_len, "cookie"))
            continue;
        size_t p = 0;
        while (p < f->value_len) {
            const char *semi = memchr(f->value + p, ';', f->value_len - p);
            size_t e = semi ? (size_t)(semi - f->value) : f->value_len;
            const char *part = f->value + p;
            size_t pl = e - p;
            p = e + 1;
            trim_ascii(&part, &pl);
            if (pl == 0)
                continue;
            const char *eq = memchr(part, '=', pl);
            const char *name = part, *val = eq ? eq + 1 : part + pl;
            size_t nl = eq ? (size_t)(eq - part) : pl, vl = eq ? pl - nl - 1 : 0;
            trim_ascii(&name, &nl);
            bool ok = nl > 0;
            for (size_t j = 0; j < nl && ok; j++)
                ok = http__is_tchar((unsigned char)name[j]);
            if (!ok)
                continue;
            bool quoted = vl > 1 && val[0] == '"' && val[vl - 1] == '"';
            if (quoted)
                val++, vl -= 2;
            for (size_t j = 0; j < vl && ok; j++)
                ok = cookie_value_byte((unsigned char)val[j]);
            if (!ok || (nl == 10 && memcmp(name, "nb_session", 10) == 0))
                continue;
            /* AddCookie: quote values with a space or comma, or that came quoted */
            bool q = vl > 0 && (quoted || memchr(val, ' ', vl) || memchr(val, ',', vl));
            if (w > 0)
                o[w++] = ';', o[w++] = ' ';
            memcpy(o + w, name, nl), w += nl;
            o[w++] = '=';
            if (q)
                o[w++] = '"';
            memcpy(o + w, val, vl), w += vl;
            if (q)
                o[w++] = '"';
        }
    }
    if (w == 0)
        return NB_OK;
    o[w] = '\0';
    return http_hdrs_add(out, "Cookie", 6, o, w);
}

/* ---- identity (§4.4 step 6) ---- */

static int set_identity(struct nb_arena *a, const struct http_identity *id, struct http_hdrs *out)
{
    /* Go writes these names canonicalised: "X-Netbird-User" */
    http_hdrs_del(out, "X-NetBird-User");
    http_hdrs_del(out, "X-NetBird-Groups");
    if (id == NULL)
        return NB_OK;
    size_t ul = id->user ? strlen(id->user) : 0;
    if (ul > 0 && printable(id->user, ul, true)) {
        /* copied: the identity need not outlive the upstream request */
        const char *u = nb_arena_strndup(a, id->user, ul);
        int rc = u ? http_hdrs_add(out, "X-Netbird-User", 14, u, ul) : NB_E_NOMEM;
        if (rc != NB_OK)
            return rc;
    }
    size_t total = 0;
    for (size_t i = 0; i < id->n_groups; i++) {
        const char *name = id->group_names ? id->group_names[i] : NULL;
        const char *l = name && name[0] ? name : id->group_ids ? id->group_ids[i] : NULL;
        total += l ? strlen(l) + 1 : 0;
    }
    if (total == 0)
        return NB_OK;
    char *o = nb_arena_alloc(a, total + 1);
    if (o == NULL)
        return NB_E_NOMEM;
    size_t w = 0;
    for (size_t i = 0; i < id->n_groups; i++) {
        const char *name = id->group_names ? id->group_names[i] : NULL;
        const char *l = name && name[0] ? name : id->group_ids ? id->group_ids[i] : NULL;
        size_t ll = l ? strlen(l) : 0;
        if (ll == 0 || memchr(l, ',', ll) != NULL || !printable(l, ll, false))
            continue;
        if (w > 0)
            o[w++] = ',';
        memcpy(o + w, l, ll), w += ll;
    }
    if (w == 0)
        return NB_OK;
    o[w] = '\0';
    return http_hdrs_add(out, "X-Netbird-Groups", 16, o, w);
}

/* ---- forwarding headers (§4.4 step 7) ---- */

static const char *forwarded_port(const char *host, size_t hl, bool https, size_t *ol)
{
    const char *h, *p;
    size_t hn, pl;
    if (hl > 0 && http__split_host_port(host, hl, &h, &hn, &p, &pl) && pl > 0) {
        *ol = pl;
        return p;
    }
    *ol = https ? 3 : 2;
    return https ? "443" : "80";
}

static int set_forwarding(struct nb_arena *a, const struct http_inreq *in,
                          const struct http_fwd_cfg *cfg, struct http_hdrs *out)
{
    struct ipaddr pip;
    char peer[NB_ADDRSTRLEN] = "";
    size_t peer_len;
    bool https = http_fwd_https(cfg, in->tls);
    const char *proto = https ? "https" : "http";
    int rc;

    if (ip_from_sockaddr(in->peer, &pip))
        ip_format(&pip, peer);
    peer_len = strlen(peer);
    char *peer_a = nb_arena_strndup(a, peer, peer_len);
    if (peer_a == NULL)
        return NB_E_NOMEM;

    if (pip.family == 0 || !is_trusted(cfg, &pip)) {
        /* untrusted peer: every client-supplied value is replaced */
        size_t pl;
        const char *port = forwarded_port(in->host, in->host_len, https, &pl);
        if ((rc = http_hdrs_set(out, "X-Forwarded-For", peer_a, peer_len)) ||
            (rc = http_hdrs_set(out, "X-Real-Ip", peer_a, peer_len)) ||
            (rc = http_hdrs_set(out, "X-Forwarded-Host", in->host ? in->host : "", in->host_len)) ||
            (rc = http_hdrs_set(out, "X-Forwarded-Proto", proto, strlen(proto))) ||
            (rc = http_hdrs_set(out, "X-Forwarded-Port", port, pl)))
            return rc;
        return NB_OK;
    }

    /* trusted proxy: extend the chain, keep what it told us (Header.Get: first field) */
    const struct http_field *xff = http_hdrs_get(in->hdrs, "X-Forwarded-For");
    const struct http_field *xri = http_hdrs_get(in->hdrs, "X-Real-IP");
    const struct http_field *xfh = http_hdrs_get(in->hdrs, "X-Forwarded-Host");
    const struct http_field *xfp = http_hdrs_get(in->hdrs, "X-Forwarded-Proto");
    const struct http_field *xfport = http_hdrs_get(in->hdrs, "X-Forwarded-Port");
    size_t l;
    const char *v;

    if (xff != NULL && xff->value_len > 0) {
        v = nb_arena_printf(a, &l, "%.*s, %s", (int)xff->value_len, xff->value, peer);
        rc = set_built(out, "X-Forwarded-For", v, l);
    } else {
        rc = http_hdrs_set(out, "X-Forwarded-For", peer_a, peer_len);
    }
    if (rc != NB_OK)
        return rc;

    if (xri != NULL && xri->value_len > 0) {
        rc = http_hdrs_set(out, "X-Real-Ip", xri->value, xri->value_len);
    } else {
        char client[NB_ADDRSTRLEN];
        (void)http_client_ip(in->peer, in->hdrs, cfg, client);
        v = nb_arena_strndup(a, client, strlen(client));
        rc = set_built(out, "X-Real-Ip", v, strlen(client));
    }
    if (rc != NB_OK)
        return rc;

    if (xfh != NULL && xfh->value_len > 0)
        rc = http_hdrs_set(out, "X-Forwarded-Host", xfh->value, xfh->value_len);
    else
        rc = http_hdrs_set(out, "X-Forwarded-Host", in->host ? in->host : "", in->host_len);
    if (rc != NB_OK)
        return rc;

    const char *fp = proto;
    size_t fpl = strlen(proto);
    if (xfp != NULL && xfp->value_len > 0)
        fp = xfp->value, fpl = xfp->value_len;
    if ((rc = http_hdrs_set(out, "X-Forwarded-Proto", fp, fpl)) != NB_OK)
        return rc;

    if (xfport != NULL && xfport->value_len > 0)
        return http_hdrs_set(out, "X-Forwarded-Port", xfport->value, xfport->value_len);
    /* computed from the proto just set, which may be the trusted proxy's */
    const char *port =
        forwarded_port(in->host, in->host_len, fpl == 5 && !memcmp(fp, "https", 5), &l);
    return http_hdrs_set(out, "X-Forwarded-Port", port, l);
}

/* ---- the upstream request-target (§4.4 steps 1, 2, 9) ---- */

static void single_slash_ends(const char *a, size_t al, const char *b, size_t bl, bool *aslash,
                              bool *bslash)
{
    *aslash = al > 0 && a[al - 1] == '/';
    *bslash = bl > 0 && b[0] == '/';
}

/* httputil singleJoiningSlash / joinURLPath on (decoded, raw) pairs */
static int join_paths(struct nb_arena *a, const struct upath *t, const struct upath *r,
                      struct upath *res)
{
    bool as, bs;
    size_t l;
    if (t->raw == NULL && r->raw == NULL) {
        single_slash_ends(t->dec, t->dl, r->dec, r->dl, &as, &bs);
        if (as && bs)
            res->dec = cat(a, &l, t->dec, t->dl, r->dec + 1, r->dl - 1, NULL, 0, NULL, 0);
        else if (!as && !bs)
            res->dec = cat(a, &l, t->dec, t->dl, "/", 1, r->dec, r->dl, NULL, 0);
        else
            res->dec = cat(a, &l, t->dec, t->dl, r->dec, r->dl, NULL, 0, NULL, 0);
        res->dl = l;
        res->raw = NULL;
        res->rl = 0;
        return res->dec ? NB_OK : NB_E_NOMEM;
    }
    size_t tpl, rpl;
    const char *tp = escaped_form(a, t, ENC_PATH, &tpl), *rp = escaped_form(a, r, ENC_PATH, &rpl);
    if (tp == NULL || rp == NULL)
        return NB_E_NOMEM;
    single_slash_ends(tp, tpl, rp, rpl, &as, &bs);
    if (as && bs) {
        res->dec = cat(a, &res->dl, t->dec, t->dl, r->dec + 1, r->dl - 1, NULL, 0, NULL, 0);
        res->raw = cat(a, &res->rl, tp, tpl, rp + 1, rpl - 1, NULL, 0, NULL, 0);
    } else if (!as && !bs) {
        res->dec = cat(a, &res->dl, t->dec, t->dl, "/", 1, r->dec, r->dl, NULL, 0);
        res->raw = cat(a, &res->rl, tp, tpl, "/", 1, rp, rpl, NULL, 0);
    } else {
        res->dec = cat(a, &res->dl, t->dec, t->dl, r->dec, r->dl, NULL, 0, NULL, 0);
        res->raw = cat(a, &res->rl, tp, tpl, rp, rpl, NULL, 0, NULL, 0);
    }
    return res->dec && res->raw ? NB_OK : NB_E_NOMEM;
}

static bool target_bytes_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '#')
            return false;
    }
    return true;
}

static int build_target(struct nb_arena *a, const struct http_inreq *in,
                        const struct http_route_path *m, struct http_outreq *out)
{
    const struct http_target *t = &m->target;
    const char *dec;
    size_t dl;
    int rc;

    if (!target_bytes_ok(in->path, in->path_len) ||
        (in->query != NULL && !target_bytes_ok(in->query, in->query_len)))
        return NB_E_PARSE;
    if ((rc = http_path_decode(a, in->path, in->path_len, &dec, &dl)) != NB_OK)
        return rc;

    /* 1. DEFAULT mode strips the matched prefix from the decoded path and drops RawPath */
    struct upath rp, tp, res;
    set_path(&rp, in->path, in->path_len, dec, dl);
    if (in->path_len == 1 && in->path[0] == '*')
        rp.raw = NULL, rp.rl = 0; /* ParseRequestURI("*") sets Path only */
    if (t->opts.path_rewrite != NB_PATH_REWRITE_PRESERVE && m->path_len > 0 &&
        !(m->path_len == 1 && m->path[0] == '/')) {
        if (rp.dl >= m->path_len && memcmp(rp.dec, m->path, m->path_len) == 0) {
            rp.dec += m->path_len;
            rp.dl -= m->path_len;
        }
        if (rp.dl == 0) {
            rp.dec = "/";
            rp.dl = 1;
        }
        rp.raw = NULL;
        rp.rl = 0;
    }
    /* 2. SetURL: join with the target path; target query first */
    set_path(&tp, t->path, strlen(t->path), t->_path_dec, t->_path_dec_len);
    if ((rc = join_paths(a, &tp, &rp, &res)) != NB_OK)
        return rc;
    size_t pl;
    const char *path = escaped_form(a, &res, ENC_PATH, &pl);
    if (path == NULL)
        return NB_E_NOMEM;
    if (pl == 0)
        path = "/", pl = 1; /* URL.RequestURI */

    bool force = in->query != NULL && in->query_len == 0; /* "/p?" keeps its '?' */
    const char *cq = in->query ? in->query : "";
    size_t cql = in->query ? in->query_len : 0;
    if ((rc = clean_query(a, &cq, &cql)) != NB_OK)
        return rc;
    size_t tql = strlen(t->query), ql;
    const char *q;
    if (tql == 0 || cql == 0)
        q = cat(a, &ql, t->query, tql, cq, cql, NULL, 0, NULL, 0);
    else
        q = cat(a, &ql, t->query, tql, "&", 1, cq, cql, NULL, 0);
    if (q == NULL)
        return NB_E_NOMEM;

    /* 9. session_token never reaches the backend; the rest is re-encoded (sorted keys) */
    if (ql > 0) {
        struct qlist l;
        if ((rc = query_parse(a, q, ql, &l)) != NB_OK)
            return rc;
        bool has = false;
        for (size_t i = 0; i < l.n && !has; i++)
            has = is_key(&l.p[i], "session_token");
        if (has && (q = query_encode(a, &l, "session_token", &ql)) == NULL)
            return NB_E_NOMEM;
    }
    if (force || ql > 0)
        out->target = cat(a, &out->target_len, path, pl, "?", 1, q, ql, NULL, 0);
    else
        out->target = cat(a, &out->target_len, path, pl, NULL, 0, NULL, 0, NULL, 0);
    return out->target ? NB_OK : NB_E_NOMEM;
}

/* ---- http_rewrite_request ---- */

int http_rewrite_request(struct nb_arena *a, const struct http_inreq *in,
                         const struct http_service *svc, const struct http_route_path *match,
                         const struct http_identity *id, const struct http_fwd_cfg *cfg,
                         struct http_outreq *out)
{
    const struct http_target *t = &match->target;
    struct http_hdrs *h = &out->hdrs;
    int rc;

    memset(out, 0, sizeof *out);
    http_hdrs_init(h, a);

    /* Go's server keeps Host out of the header map; the client writes framing itself */
    for (uint32_t i = 0; i < in->hdrs->n; i++) {
        const struct http_field *f = &in->hdrs->v[i];
        if (http_ieq(f->name, f->name_len, "host") ||
            http_ieq(f->name, f->name_len, "content-length") ||
            http_ieq(f->name, f->name_len, "expect"))
            continue;
        if ((rc = http_hdrs_add(h, f->name, f->name_len, f->value, f->value_len)) != NB_OK)
            goto out;
    }

    /* ReverseProxy: the upgrade protocol is read before the hop-by-hop fields go */
    const struct http_field *up = NULL;
    for (uint32_t i = 0; i < in->hdrs->n && up == NULL; i++) {
        const struct http_field *f = &in->hdrs->v[i];
        if (http_ieq(f->name, f->name_len, "connection") &&
            http_list_has(f->value, f->value_len, "upgrade"))
            up = http_hdrs_get(in->hdrs, "Upgrade");
    }
    if (up != NULL && up->value_len > 0) {
        if (!printable(up->value, up->value_len, false)) {
            rc = NB_E_UNSUPPORTED;
            goto out;
        }
        out->upgrade = up->value;
        out->upgrade_len = up->value_len;
    }
    http_strip_hop_by_hop(h);
    bool te_trailers = false;
    for (uint32_t i = 0; i < in->hdrs->n && !te_trailers; i++) {
        const struct http_field *f = &in->hdrs->v[i];
        te_trailers = http_ieq(f->name, f->name_len, "te") &&
                      http_list_has(f->value, f->value_len, "trailers");
    }
    if (te_trailers && (rc = http_hdrs_set(h, "Te", "trailers", 8)) != NB_OK)
        goto out;
    if (out->upgrade != NULL) {
        if ((rc = http_hdrs_set(h, "Connection", "Upgrade", 7)) != NB_OK ||
            (rc = http_hdrs_set(h, "Upgrade", out->upgrade, out->upgrade_len)) != NB_OK)
            goto out;
    }
    http_hdrs_del(h, "Forwarded");
    http_hdrs_del(h, "X-Forwarded-For");
    http_hdrs_del(h, "X-Forwarded-Host");
    http_hdrs_del(h, "X-Forwarded-Proto");

    /* 1, 2, 9: request-target */
    if ((rc = build_target(a, in, match, out)) != NB_OK)
        goto out;

    /* 3. Host */
    if (svc->pass_host_header && in->host != NULL && in->host_len > 0) {
        out->host = in->host;
        out->host_len = in->host_len;
    } else {
        out->host = t->authority;
        out->host_len = strlen(t->authority);
    }

    /* 4. header-auth credentials are for the proxy only */
    for (uint32_t i = 0; i < svc->n_header_auth_names; i++)
        http_hdrs_del(h, svc->header_auth_names[i]);

    /* 5. custom headers overwrite */
    for (uint32_t i = 0; i < t->opts.n_custom_headers; i++) {
        const struct nb_header_kv *kv = &t->opts.custom_headers[i];
        if ((rc = http_hdrs_set(h, kv->name, kv->value, strlen(kv->value))) != NB_OK)
            goto out;
    }

    /* 6, 7, 8: after the custom headers, so they win */
    if ((rc = set_identity(a, id, h)) != NB_OK || (rc = set_forwarding(a, in, cfg, h)) != NB_OK ||
        (rc = rebuild_cookie(a, in->hdrs, h)) != NB_OK)
        goto out;

    /* Go's client writes only the first User-Agent, and none when it is empty */
    bool seen_ua = false, drop_ua = false;
    uint32_t w = 0;
    for (uint32_t r = 0; r < h->n; r++) {
        if (http_ieq(h->v[r].name, h->v[r].name_len, "user-agent")) {
            if (seen_ua || drop_ua)
                continue;
            seen_ua = h->v[r].value_len > 0;
            drop_ua = !seen_ua;
            if (drop_ua)
                continue;
        }
        h->v[w++] = h->v[r];
    }
    h->n = w;
    rc = NB_OK;
out:
    return rc;
}

/* ---- Location (§4.8): url.Parse, the NetBird rewrite, URL.String ---- */

/* unescape in encodeHost / encodeZone mode: ASCII may only be %-encoded as %25 (host) */
static const char *unescape_host(struct nb_arena *a, const char *s, size_t n, enum enc mode,
                                 size_t *ol)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return NULL;
            int hi = unhex((unsigned char)s[i + 1]), lo = unhex((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return NULL;
            bool pct25 = s[i + 1] == '2' && s[i + 2] == '5';
            if (mode == ENC_HOST && hi < 8 && !pct25)
                return NULL;
            unsigned char v = (unsigned char)(hi << 4 | lo);
            if (mode == ENC_ZONE && !pct25 && v != ' ' && should_escape(v, ENC_HOST))
                return NULL;
            i += 2;
        } else if (c < 0x80 && should_escape(c, mode)) {
            return NULL;
        }
    }
    int rc;
    const char *d = unescape_a(a, s, n, false, ol, &rc);
    return rc == NB_OK ? d : NULL;
}

static bool valid_optional_port(const char *p, size_t n)
{
    if (n == 0)
        return true;
    if (p[0] != ':')
        return false;
    for (size_t i = 1; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

/* url.parseHost; NULL on error (*bad set) or out of memory (*bad clear). */
static const char *parse_host(struct nb_arena *a, const char *h, size_t n, size_t *ol, bool *bad)
{
    *bad = true;
    if (n > 0 && h[0] == '[') {
        const char *rb = NULL;
        for (size_t i = n; i > 0; i--)
            if (h[i - 1] == ']') {
                rb = h + i - 1;
                break;
            }
        if (rb == NULL)
            return NULL;
        size_t i = (size_t)(rb - h);
        if (!valid_optional_port(rb + 1, n - i - 1))
            return NULL;
        const char *zone = NULL;
        for (size_t k = 0; k + 3 <= i; k++)
            if (h[k] == '%' && h[k + 1] == '2' && h[k + 2] == '5') {
                zone = h + k;
                break;
            }
        if (zone != NULL) {
            size_t zi = (size_t)(zone - h), l1, l2, l3;
            const char *p1 = unescape_host(a, h, zi, ENC_HOST, &l1);
            const char *p2 = p1 ? unescape_host(a, zone, i - zi, ENC_ZONE, &l2) : NULL;
            const char *p3 = p2 ? unescape_host(a, rb, n - i, ENC_HOST, &l3) : NULL;
            if (p3 == NULL)
                return NULL;
            *bad = false;
            return cat(a, ol, p1, l1, p2, l2, p3, l3, NULL, 0);
        }
    } else {
        for (size_t i = n; i > 0; i--)
            if (h[i - 1] == ':') {
                if (!valid_optional_port(h + i - 1, n - i + 1))
                    return NULL;
                break;
            }
    }
    const char *d = unescape_host(a, h, n, ENC_HOST, ol);
    if (d != NULL)
        *bad = false;
    return d;
}

static bool valid_userinfo(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (c == '\0' || strchr("-._:~!$&'()*+,;=%@", c) == NULL)
            return false;
    }
    return true;
}

/* netbird normalizeHost: drop the scheme's default port ("https"+443, "http"+80) */
static void normalize_host(const char *scheme, size_t sl, const char *h, size_t hl, const char **o,
                           size_t *ol)
{
    const char *hh, *p;
    size_t hn, pl;
    *o = h;
    *ol = hl;
    if (!http__split_host_port(h, hl, &hh, &hn, &p, &pl))
        return;
    if ((sl == 5 && memcmp(scheme, "https", 5) == 0 && pl == 3 && memcmp(p, "443", 3) == 0) ||
        (sl == 4 && memcmp(scheme, "http", 4) == 0 && pl == 2 && memcmp(p, "80", 2) == 0)) {
        *o = hh;
        *ol = hn;
    }
}

int http_rewrite_location(struct nb_arena *a, const char *loc, size_t len,
                          const struct http_route_path *match, const char *client_host,
                          size_t client_host_len, bool https, const char **out, size_t *out_len)
{
    const struct http_target *t = &match->target;
    int rc;

    *out = loc;
    *out_len = len;
    if (len == 0)
        return NB_OK;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)loc[i] < 0x20 || loc[i] == 0x7f)
            return NB_E_PARSE;

    const char *hash = memchr(loc, '#', len);
    size_t ul = hash ? (size_t)(hash - loc) : len;
    const char *frag = hash ? hash + 1 : NULL;
    size_t fl = hash ? len - ul - 1 : 0;
    struct upath fu = {0};
    if (frag != NULL) {
        size_t dl;
        const char *fd = unescape_a(a, frag, fl, false, &dl, &rc);
        if (rc != NB_OK)
            return rc;
        fu.dec = fd;
        fu.dl = dl;
        fu.raw = escape_equals(fd, dl, frag, fl, ENC_FRAGMENT) ? NULL : frag;
        fu.rl = fu.raw ? fl : 0;
    }
    if (ul == 1 && loc[0] == '*')
        return NB_OK;

    /* getScheme */
    const char *scheme = NULL, *rest = loc;
    size_t sl = 0, rl = ul;
    for (size_t i = 0; i < ul; i++) {
        unsigned char c = (unsigned char)loc[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            continue;
        if ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.') {
            if (i == 0)
                break;
            continue;
        }
        if (c == ':') {
            if (i == 0)
                return NB_E_PARSE; /* missing protocol scheme */
            scheme = loc;
            sl = i;
            rest = loc + i + 1;
            rl = ul - i - 1;
        }
        break;
    }
    char *lscheme = NULL;
    if (scheme != NULL) {
        lscheme = nb_arena_strndup(a, scheme, sl);
        if (lscheme == NULL)
            return NB_E_NOMEM;
        for (size_t i = 0; i < sl; i++)
            if (lscheme[i] >= 'A' && lscheme[i] <= 'Z')
                lscheme[i] = (char)(lscheme[i] + 32);
    }

    /* query: a lone trailing '?' is ForceQuery; either way the raw text after '?' is kept */
    const char *query = NULL;
    size_t ql = 0;
    const char *qm = memchr(rest, '?', rl);
    if (qm != NULL) {
        query = qm + 1;
        ql = rl - (size_t)(qm - rest) - 1;
        rl = (size_t)(qm - rest);
    }

    if (rl == 0 || rest[0] != '/') {
        if (scheme != NULL)
            return NB_OK; /* opaque ("mailto:x"): no host */
        const char *sl1 = memchr(rest, '/', rl);
        size_t seg = sl1 ? (size_t)(sl1 - rest) : rl;
        if (memchr(rest, ':', seg) != NULL)
            return NB_E_PARSE; /* first path segment in URL cannot contain colon */
    }

    const char *user = NULL, *host = NULL;
    size_t userl = 0, hostl = 0;
    bool has_host = false;
    if ((scheme != NULL || !(rl >= 3 && memcmp(rest, "///", 3) == 0)) && rl >= 2 &&
        rest[0] == '/' && rest[1] == '/') {
        const char *auth = rest + 2;
        size_t al = rl - 2;
        const char *s1 = memchr(auth, '/', al);
        size_t an = s1 ? (size_t)(s1 - auth) : al;
        rest = auth + an;
        rl = al - an;
        const char *at = NULL;
        for (size_t i = an; i > 0; i--)
            if (auth[i - 1] == '@') {
                at = auth + i - 1;
                break;
            }
        const char *hs = at ? at + 1 : auth;
        size_t hn = an - (size_t)(hs - auth);
        bool bad;
        host = parse_host(a, hs, hn, &hostl, &bad);
        if (host == NULL)
            return bad ? NB_E_PARSE : NB_E_NOMEM;
        if (at != NULL) {
            user = auth;
            userl = (size_t)(at - auth);
            if (!valid_userinfo(user, userl))
                return NB_E_PARSE;
        }
        has_host = true;
    }

    /* setPath */
    struct upath up;
    size_t pdl;
    const char *pdec = unescape_a(a, rest, rl, false, &pdl, &rc);
    if (rc != NB_OK)
        return rc;
    set_path(&up, rest, rl, pdec, pdl);

    /* userinfo: User.String() re-escapes the decoded user and password */
    const char *ui = NULL;
    size_t uil = 0;
    if (user != NULL) {
        const char *colon = memchr(user, ':', userl);
        size_t unl = colon ? (size_t)(colon - user) : userl, d1, d2, e1, e2 = 0;
        const char *un = unescape_a(a, user, unl, false, &d1, &rc);
        if (rc != NB_OK)
            return rc;
        const char *ue = go_escape(a, un, d1, ENC_USERPASS, &e1), *pe = NULL;
        if (ue == NULL)
            return NB_E_NOMEM;
        if (colon != NULL) {
            const char *pw = unescape_a(a, colon + 1, userl - unl - 1, false, &d2, &rc);
            if (rc != NB_OK)
                return rc;
            if ((pe = go_escape(a, pw, d2, ENC_USERPASS, &e2)) == NULL)
                return NB_E_NOMEM;
        }
        ui = cat(a, &uil, ue, e1, colon ? ":" : "", colon ? 1 : 0, pe, e2, "@", 1);
        if (ui == NULL)
            return NB_E_NOMEM;
    }

    /* Only absolute URLs that point at the backend are rewritten (netbird hostsEqual). */
    if (!has_host || hostl == 0)
        return NB_OK;
    const char *n1, *n2;
    size_t n1l, n2l;
    normalize_host(lscheme ? lscheme : "", sl, host, hostl, &n1, &n1l);
    normalize_host(t->tls ? "https" : "http", t->tls ? 5 : 4, t->authority, strlen(t->authority),
                   &n2, &n2l);
    if (n1l != n2l || memcmp(n1, n2, n1l) != 0)
        return NB_OK;

    /* re-add the stripped prefix, unless the path was not stripped */
    const char *mp = match->path;
    size_t mpl = match->path_len;
    if (t->opts.path_rewrite != NB_PATH_REWRITE_PRESERVE && mpl > 0 &&
        !(mpl == 1 && mp[0] == '/')) {
        while (mpl > 0 && mp[mpl - 1] == '/')
            mpl--;
        const char *p = up.dec;
        size_t pl = up.dl;
        while (pl > 0 && p[0] == '/')
            p++, pl--;
        up.dec = cat(a, &up.dl, mp, mpl, "/", 1, p, pl, NULL, 0);
        if (up.dec == NULL)
            return NB_E_NOMEM;
    }

    /* URL.String with the client's scheme and Host */
    const char *scheme_out = https ? "https" : "http";
    size_t hel = 0, pel, fel = 0;
    const char *he = go_escape(a, client_host ? client_host : "", client_host_len, ENC_HOST, &hel);
    const char *pe = escaped_form(a, &up, ENC_PATH, &pel);
    const char *fe = fu.dl > 0 ? escaped_form(a, &fu, ENC_FRAGMENT, &fel) : "";
    if (he == NULL || pe == NULL || fe == NULL)
        return NB_E_NOMEM;
    bool slashes = hel > 0 || pel > 0 || ui != NULL;
    bool lead = pel > 0 && pe[0] != '/' && hel > 0;
    size_t l1, l2;
    const char *head = cat(a, &l1, scheme_out, strlen(scheme_out), slashes ? "://" : ":",
                           slashes ? 3 : 1, ui ? ui : "", uil, he, hel);
    const char *tail = cat(a, &l2, lead ? "/" : "", lead ? 1 : 0, pe, pel, query ? "?" : "",
                           query ? 1 : 0, query ? query : "", ql);
    if (head == NULL || tail == NULL)
        return NB_E_NOMEM;
    char *o = (char *)cat(a, out_len, head, l1, tail, l2, fel ? "#" : "", fel ? 1 : 0, fe, fel);
    if (o == NULL)
        return NB_E_NOMEM;
    *out = o;
    return NB_OK;
}
