/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * HTTP routing (see route.h). Sits between the management side, which turns every HTTP-mode
 * mapping into a service with http_service_new() and puts it in the table, and the proxy
 * engine, which looks the Host up per request, matches the decoded path, and hands the chosen
 * target to http/rewrite.c to build the upstream request.
 *
 * Two hash indices share one set of entries: by domain (every request) and by service id
 * (removal). Both chain through the entry, so an entry is one allocation and unlinking never
 * scans more than one bucket. Hashing is FNV-1a: keys come from management (trusted); client
 * input only ever looks up, so it cannot lengthen chains.
 */

#include "http/route.h"
#include "auth/restrict.h"
#include "platform/err.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FIRST_BUCKETS 64u

struct http_route_entry {
    struct http_service *svc;
    uint64_t dhash; /* of svc->domain */
    size_t dlen;    /* strlen(svc->domain) */
    uint64_t ihash; /* of svc->id */
    struct http_route_entry *dnext;
    struct http_route_entry *inext;
};

/* ---- small shared helpers (declared at the bottom of route.h) ---- */

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

ssize_t http__pct_decode(const char *s, size_t n, char *dst, bool plus_is_space)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            /* Go's unescape: exactly two hex digits, else the whole string is invalid */
            if (i + 2 >= n)
                return -1;
            int hi = unhex((unsigned char)s[i + 1]), lo = unhex((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            dst[w++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            dst[w++] = ' ';
        } else {
            dst[w++] = (char)c;
        }
    }
    return (ssize_t)w;
}

bool http__split_host_port(const char *s, size_t n, const char **host, size_t *host_len,
                           const char **port, size_t *port_len)
{
    /* Go's net.SplitHostPort, byte for byte: the port starts after the last colon. */
    const char *last = NULL;
    for (size_t i = n; i > 0; i--)
        if (s[i - 1] == ':') {
            last = s + i - 1;
            break;
        }
    if (last == NULL)
        return false; /* missing port */
    size_t i = (size_t)(last - s), j = 0, k = 0;
    const char *h;
    size_t hl;
    if (s[0] == '[') {
        const char *end = memchr(s, ']', n);
        if (end == NULL)
            return false;
        size_t e = (size_t)(end - s);
        if (e + 1 == n || e + 1 != i)
            return false; /* missing port, or too many colons */
        h = s + 1;
        hl = e - 1;
        j = 1;
        k = e + 1;
    } else {
        h = s;
        hl = i;
        if (memchr(h, ':', hl) != NULL)
            return false; /* too many colons */
    }
    if (memchr(s + j, '[', n - j) != NULL || memchr(s + k, ']', n - k) != NULL)
        return false;
    *host = h;
    *host_len = hl;
    *port = last + 1;
    *port_len = n - i - 1;
    return true;
}

const char *http_host_strip_port(const char *host, size_t len, size_t *out_len)
{
    const char *h, *p;
    size_t hl, pl;
    if (len > 0 && http__split_host_port(host, len, &h, &hl, &p, &pl)) {
        *out_len = hl;
        return h;
    }
    *out_len = len;
    return host;
}

bool http__is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* ---- targets ---- */

static void set_why(char *why, size_t whylen, const char *msg)
{
    if (why != NULL && whylen > 0)
        snprintf(why, whylen, "%s", msg);
}

static bool is_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

static bool ieq_prefix(const char *s, const char *lit)
{
    for (; *lit; s++, lit++) {
        char c = *s;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c != *lit)
            return false;
    }
    return true;
}

int http_target_parse(const char *url, struct http_target *t, char *why, size_t whylen)
{
    int rc = NB_E_PARSE;
    size_t n = strlen(url);
    const char *s = url, *end = url + n;

    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7f) {
            set_why(why, whylen, "invalid character in URL");
            goto out;
        }
        if (c == '#') {
            set_why(why, whylen, "fragment not allowed");
            goto out;
        }
    }
    if (ieq_prefix(s, "https://")) {
        t->tls = true;
        s += 8;
    } else if (ieq_prefix(s, "http://")) {
        s += 7;
    } else {
        set_why(why, whylen,
                strstr(url, "://") ? "scheme must be http or https" : "missing http(s):// scheme");
        goto out;
    }
    /* Go cuts the query first, then the authority at the first '/' */
    const char *q = memchr(s, '?', (size_t)(end - s));
    const char *pre_end = q ? q : end;
    const char *slash = memchr(s, '/', (size_t)(pre_end - s));
    const char *auth_end = slash ? slash : pre_end;
    const char *a = s;
    size_t alen = (size_t)(auth_end - a);

    if (memchr(a, '@', alen) != NULL) {
        set_why(why, whylen, "userinfo not allowed");
        goto out;
    }
    if (alen == 0) {
        set_why(why, whylen, "missing host");
        goto out;
    }
    const char *host, *colon = NULL;
    size_t hlen;
    if (a[0] == '[') {
        const char *rb = memchr(a, ']', alen);
        char v6[64];
        struct in6_addr tmp;
        if (rb == NULL) {
            set_why(why, whylen, "missing ']' in host");
            goto out;
        }
        host = a + 1;
        hlen = (size_t)(rb - host);
        if (memchr(host, '%', hlen) != NULL) {
            set_why(why, whylen, "IPv6 zone not allowed");
            goto out;
        }
        if (hlen == 0 || hlen >= sizeof v6) {
            set_why(why, whylen, "invalid IPv6 address");
            goto out;
        }
        memcpy(v6, host, hlen);
        v6[hlen] = '\0';
        if (inet_pton(AF_INET6, v6, &tmp) != 1) {
            set_why(why, whylen, "invalid IPv6 address");
            goto out;
        }
        if (rb + 1 != auth_end) {
            if (rb[1] != ':') {
                set_why(why, whylen, "invalid character after ']'");
                goto out;
            }
            colon = rb + 1;
        }
    } else {
        colon = memchr(a, ':', alen);
        host = a;
        hlen = colon ? (size_t)(colon - a) : alen;
        if (hlen == 0) {
            set_why(why, whylen, "missing host");
            goto out;
        }
        for (size_t i = 0; i < hlen; i++)
            if (!is_host_char((unsigned char)host[i])) {
                set_why(why, whylen, "invalid character in host");
                goto out;
            }
    }
    t->port = t->tls ? 443 : 80;
    if (colon != NULL) {
        const char *p = colon + 1;
        size_t plen = (size_t)(auth_end - p);
        unsigned long v = 0;
        if (plen == 0) {
            set_why(why, whylen, "empty port");
            goto out;
        }
        for (size_t i = 0; i < plen; i++) {
            if (p[i] < '0' || p[i] > '9' || i >= 5) {
                set_why(why, whylen, "invalid port");
                goto out;
            }
            v = v * 10 + (unsigned long)(p[i] - '0');
        }
        if (v == 0 || v > 65535) {
            set_why(why, whylen, "invalid port");
            goto out;
        }
        t->port = (uint16_t)v;
        t->port_explicit = true;
    }

    size_t plen = (size_t)(pre_end - auth_end);
    rc = NB_E_NOMEM;
    t->host = strndup(host, hlen);
    t->authority = strndup(a, alen);
    t->path = strndup(auth_end, plen);
    t->query = q ? strndup(q + 1, (size_t)(end - q - 1)) : strdup("");
    t->_path_dec = malloc(plen + 1);
    if (!t->host || !t->authority || !t->path || !t->query || !t->_path_dec)
        goto out;
    ssize_t dl = http__pct_decode(t->path, plen, t->_path_dec, false);
    if (dl < 0) {
        set_why(why, whylen, "invalid %-escape in path");
        rc = NB_E_PARSE;
        goto out;
    }
    t->_path_dec[dl] = '\0';
    t->_path_dec_len = (size_t)dl;
    rc = NB_OK;
out:
    if (rc != NB_OK)
        http_target_deinit(t);
    return rc;
}

void http_target_deinit(struct http_target *t)
{
    free(t->host);
    free(t->authority);
    free(t->path);
    free(t->query);
    free(t->_path_dec);
    for (uint32_t i = 0; i < t->opts.n_custom_headers; i++) {
        free(t->opts.custom_headers[i].name);
        free(t->opts.custom_headers[i].value);
    }
    free(t->opts.custom_headers);
    memset(t, 0, sizeof *t);
}

/* ---- services ---- */

static void warnf(char *warn, size_t warnlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void warnf(char *warn, size_t warnlen, const char *fmt, ...)
{
    if (warn == NULL || warnlen == 0)
        return;
    size_t used = strnlen(warn, warnlen);
    if (used + 1 >= warnlen)
        return;
    if (used > 0) {
        snprintf(warn + used, warnlen - used, "; ");
        used = strnlen(warn, warnlen);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(warn + used, warnlen - used, fmt, ap);
    va_end(ap);
}

/*
 * Header names Go's client writes itself from the request (Host, framing) and so never sends
 * from the header map, plus the two our engine owns (Connection framing, Expect handled by the
 * server's own 100-continue).
 */
static bool ignored_custom_header(const char *name)
{
    static const char *const names[] = {"host",    "content-length", "transfer-encoding",
                                        "trailer", "connection",     "expect"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(name, names[i]) == 0)
            return true;
    return false;
}

/* Go's textproto.CanonicalMIMEHeaderKey for a token: upper-case after '-' and at the start. */
static void canonical_key(char *k)
{
    bool upper = true;
    for (; *k; k++) {
        if (upper && *k >= 'a' && *k <= 'z')
            *k = (char)(*k - 32);
        else if (!upper && *k >= 'A' && *k <= 'Z')
            *k = (char)(*k + 32);
        upper = *k == '-';
    }
}

static int copy_options(struct http_target *t, const struct nb_target_options *o, const char *path,
                        char *warn, size_t warnlen)
{
    t->opts = *o;
    t->opts.custom_headers = NULL;
    t->opts.n_custom_headers = 0;
    if (o->n_custom_headers == 0)
        return NB_OK;
    t->opts.custom_headers = calloc(o->n_custom_headers, sizeof *t->opts.custom_headers);
    if (t->opts.custom_headers == NULL)
        return NB_E_NOMEM;
    for (uint32_t i = 0; i < o->n_custom_headers; i++) {
        const char *name = o->custom_headers[i].name ? o->custom_headers[i].name : "";
        const char *value = o->custom_headers[i].value ? o->custom_headers[i].value : "";
        bool ok = name[0] != '\0';
        for (const char *c = name; *c && ok; c++)
            ok = http__is_tchar((unsigned char)*c);
        for (const char *c = value; *c && ok; c++)
            ok = !(((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f);
        if (!ok) {
            warnf(warn, warnlen, "path \"%s\": custom header \"%s\" is not a valid field, skipped",
                  path, name);
            continue;
        }
        if (ignored_custom_header(name)) {
            warnf(warn, warnlen, "path \"%s\": custom header \"%s\" is not forwarded, skipped",
                  path, name);
            continue;
        }
        /* Go trims blanks when it writes a value */
        while (*value == ' ' || *value == '\t')
            value++;
        size_t vl = strlen(value);
        while (vl > 0 && (value[vl - 1] == ' ' || value[vl - 1] == '\t'))
            vl--;
        struct nb_header_kv *kv = &t->opts.custom_headers[t->opts.n_custom_headers];
        kv->name = strdup(name);
        kv->value = strndup(value, vl);
        if (kv->name == NULL || kv->value == NULL) {
            free(kv->name);
            free(kv->value);
            kv->name = kv->value = NULL;
            return NB_E_NOMEM;
        }
        canonical_key(kv->name);
        /* the same name twice (case-insensitively): the later one wins, like Header.Set */
        for (uint32_t j = 0; j < t->opts.n_custom_headers; j++)
            if (strcmp(t->opts.custom_headers[j].name, kv->name) == 0) {
                free(t->opts.custom_headers[j].name);
                free(t->opts.custom_headers[j].value);
                t->opts.custom_headers[j] = *kv;
                kv->name = kv->value = NULL;
                break;
            }
        if (kv->name != NULL)
            t->opts.n_custom_headers++;
    }
    return NB_OK;
}

static void service_free(struct http_service *svc)
{
    for (uint32_t i = 0; i < svc->n_paths; i++) {
        free(svc->paths[i].path);
        http_target_deinit(&svc->paths[i].target);
    }
    free(svc->paths);
    for (uint32_t i = 0; i < svc->n_header_auth_names; i++)
        free(svc->header_auth_names[i]);
    free(svc->header_auth_names);
    auth_restrict_unref(svc->restrictions);
    free(svc->id);
    free(svc->account_id);
    free(svc->domain);
    free(svc);
}

static int by_key_len_desc(const void *a, const void *b)
{
    const struct http_route_path *x = a, *y = b;
    if (x->path_len != y->path_len)
        return x->path_len > y->path_len ? -1 : 1;
    return strcmp(x->path, y->path); /* equal lengths cannot both match; keep it deterministic */
}

int http_service_new(const struct nb_mapping *m, struct http_service **out, char *warn,
                     size_t warnlen)
{
    int rc = NB_E_NOMEM;
    struct http_service *svc = NULL;

    *out = NULL;
    if (warn != NULL && warnlen > 0)
        warn[0] = '\0';
    if (nb_mapping_mode(m) != NB_MODE_HTTP || m->id == NULL || m->id[0] == '\0' ||
        m->domain == NULL || m->domain[0] == '\0')
        return NB_E_INVAL;
    svc = calloc(1, sizeof *svc);
    if (svc == NULL)
        goto out;
    svc->_refs = 1;
    svc->id = strdup(m->id);
    svc->account_id = strdup(m->account_id ? m->account_id : "");
    svc->domain = strdup(m->domain);
    if (!svc->id || !svc->account_id || !svc->domain)
        goto out;
    svc->pass_host_header = m->pass_host_header;
    svc->rewrite_redirects = m->rewrite_redirects;
    svc->private_service = m->private_service;
    svc->restrictions = auth_restrict_ref(m->restrictions);

    if (m->n_paths > 0) {
        svc->paths = calloc(m->n_paths, sizeof *svc->paths);
        if (svc->paths == NULL)
            goto out;
    }
    for (uint32_t i = 0; i < m->n_paths; i++) {
        const struct nb_path_mapping *pm = &m->paths[i];
        const char *key = pm->path ? pm->path : "";
        const char *url = pm->target ? pm->target : "";
        struct http_route_path rp = {0};
        char why[96];

        rc = http_target_parse(url, &rp.target, why, sizeof why);
        if (rc == NB_E_PARSE) {
            warnf(warn, warnlen, "path \"%s\": invalid target URL \"%s\": %s, skipped", key, url,
                  why);
            continue;
        }
        if (rc != NB_OK)
            goto out;
        rc = NB_E_NOMEM;
        rp.path = strdup(key);
        rp.path_len = strlen(key);
        if (rp.path == NULL || copy_options(&rp.target, &pm->options, key, warn, warnlen)) {
            free(rp.path);
            http_target_deinit(&rp.target);
            goto out;
        }
        /* a later duplicate replaces the earlier one (Go map assignment) */
        uint32_t j;
        for (j = 0; j < svc->n_paths; j++)
            if (strcmp(svc->paths[j].path, rp.path) == 0)
                break;
        if (j < svc->n_paths) {
            free(svc->paths[j].path);
            http_target_deinit(&svc->paths[j].target);
            svc->paths[j] = rp;
        } else {
            svc->paths[svc->n_paths++] = rp;
        }
    }
    if (svc->n_paths > 1)
        qsort(svc->paths, svc->n_paths, sizeof *svc->paths, by_key_len_desc);

    rc = NB_E_NOMEM;
    if (m->auth.n_header_auths > 0) {
        svc->header_auth_names = calloc(m->auth.n_header_auths, sizeof(char *));
        if (svc->header_auth_names == NULL)
            goto out;
    }
    for (uint32_t i = 0; i < m->auth.n_header_auths; i++) {
        const char *h = m->auth.header_auths[i].header;
        if (h == NULL || h[0] == '\0')
            continue;
        char *c = strdup(h);
        if (c == NULL)
            goto out;
        svc->header_auth_names[svc->n_header_auth_names++] = c;
    }
    *out = svc;
    svc = NULL;
    rc = NB_OK;
out:
    if (svc != NULL)
        service_free(svc);
    return rc;
}

struct http_service *http_service_ref(struct http_service *svc)
{
    svc->_refs++;
    return svc;
}

void http_service_unref(struct http_service *svc)
{
    if (svc == NULL)
        return;
    if (--svc->_refs == 0)
        service_free(svc);
}

const struct http_route_path *http_service_match(const struct http_service *svc, const char *path,
                                                 size_t len)
{
    /* paths are sorted longest first, so the first prefix is the longest one */
    for (uint32_t i = 0; i < svc->n_paths; i++) {
        const struct http_route_path *p = &svc->paths[i];
        if (p->path_len <= len && memcmp(path, p->path, p->path_len) == 0)
            return p;
    }
    return NULL;
}

/* ---- the table ---- */

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

void http_routes_init(struct http_routes *t)
{
    memset(t, 0, sizeof *t);
}

void http_routes_deinit(struct http_routes *t)
{
    for (uint32_t b = 0; b < t->_nbuckets; b++) {
        struct http_route_entry *e = t->_by_domain[b];
        while (e != NULL) {
            struct http_route_entry *next = e->dnext;
            http_service_unref(e->svc);
            free(e);
            e = next;
        }
    }
    free(t->_by_domain);
    free(t->_by_id);
    memset(t, 0, sizeof *t);
}

static int grow(struct http_routes *t)
{
    uint32_t nb = t->_nbuckets ? t->_nbuckets * 2 : FIRST_BUCKETS;
    if (nb == 0)
        return NB_E_NOMEM;
    struct http_route_entry **d = calloc(nb, sizeof *d), **ids = calloc(nb, sizeof *ids);
    if (d == NULL || ids == NULL) {
        free(d);
        free(ids);
        return NB_E_NOMEM;
    }
    for (uint32_t b = 0; b < t->_nbuckets; b++) {
        struct http_route_entry *e = t->_by_domain[b];
        while (e != NULL) {
            struct http_route_entry *next = e->dnext;
            uint32_t di = (uint32_t)(e->dhash & (nb - 1)), ii = (uint32_t)(e->ihash & (nb - 1));
            e->dnext = d[di];
            d[di] = e;
            e->inext = ids[ii];
            ids[ii] = e;
            e = next;
        }
    }
    free(t->_by_domain);
    free(t->_by_id);
    t->_by_domain = d;
    t->_by_id = ids;
    t->_nbuckets = nb;
    return NB_OK;
}

static struct http_route_entry *find_domain(const struct http_routes *t, const char *d, size_t n,
                                            uint64_t h)
{
    if (t->_nbuckets == 0)
        return NULL;
    for (struct http_route_entry *e = t->_by_domain[h & (t->_nbuckets - 1)]; e; e = e->dnext)
        if (e->dhash == h && e->dlen == n && memcmp(e->svc->domain, d, n) == 0)
            return e;
    return NULL;
}

static void unlink_id(struct http_routes *t, struct http_route_entry *e)
{
    struct http_route_entry **pp = &t->_by_id[e->ihash & (t->_nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->inext;
    *pp = e->inext;
}

static void unlink_domain(struct http_routes *t, struct http_route_entry *e)
{
    struct http_route_entry **pp = &t->_by_domain[e->dhash & (t->_nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->dnext;
    *pp = e->dnext;
}

int http_routes_put(struct http_routes *t, struct http_service *svc)
{
    if (svc == NULL || svc->domain == NULL || svc->domain[0] == '\0')
        return NB_E_INVAL;
    size_t dl = strlen(svc->domain);
    uint64_t dh = fnv1a(svc->domain, dl), ih = fnv1a(svc->id, strlen(svc->id));
    struct http_route_entry *e = find_domain(t, svc->domain, dl, dh);
    if (e != NULL) {
        struct http_service *old = e->svc;
        unlink_id(t, e);
        e->svc = http_service_ref(svc);
        e->ihash = ih;
        struct http_route_entry **ib = &t->_by_id[ih & (t->_nbuckets - 1)];
        e->inext = *ib;
        *ib = e;
        t->_paths += svc->n_paths;
        t->_paths -= old->n_paths;
        http_service_unref(old);
        return NB_OK;
    }
    if (t->_count >= t->_nbuckets && grow(t) != NB_OK)
        return NB_E_NOMEM;
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return NB_E_NOMEM;
    e->svc = http_service_ref(svc);
    e->dhash = dh;
    e->dlen = dl;
    e->ihash = ih;
    struct http_route_entry **db = &t->_by_domain[dh & (t->_nbuckets - 1)];
    struct http_route_entry **ib = &t->_by_id[ih & (t->_nbuckets - 1)];
    e->dnext = *db;
    *db = e;
    e->inext = *ib;
    *ib = e;
    t->_count++;
    t->_paths += svc->n_paths;
    return NB_OK;
}

unsigned http_routes_remove(struct http_routes *t, const char *service_id)
{
    if (t->_nbuckets == 0 || service_id == NULL)
        return 0;
    uint64_t ih = fnv1a(service_id, strlen(service_id));
    unsigned removed = 0;
    struct http_route_entry **pp = &t->_by_id[ih & (t->_nbuckets - 1)];
    while (*pp != NULL) {
        struct http_route_entry *e = *pp;
        if (e->ihash != ih || strcmp(e->svc->id, service_id) != 0) {
            pp = &e->inext;
            continue;
        }
        *pp = e->inext;
        unlink_domain(t, e);
        t->_paths -= e->svc->n_paths;
        http_service_unref(e->svc);
        free(e);
        t->_count--;
        removed++;
    }
    return removed;
}

struct http_service *http_routes_find(const struct http_routes *t, const char *host,
                                      size_t host_len)
{
    size_t n;
    const char *h = http_host_strip_port(host, host_len, &n);
    struct http_route_entry *e = find_domain(t, h, n, fnv1a(h, n));
    return e ? e->svc : NULL;
}

struct http_service *http_routes_find_scoped(const struct http_routes *t, const char *host,
                                             size_t host_len, const char *account_id)
{
    struct http_service *svc = http_routes_find(t, host, host_len);
    if (svc == NULL || account_id == NULL || strcmp(svc->account_id, account_id) != 0)
        return NULL;
    return svc;
}

uint32_t http_routes_count(const struct http_routes *t)
{
    return t->_count;
}

uint64_t http_routes_paths(const struct http_routes *t)
{
    return t->_paths;
}
