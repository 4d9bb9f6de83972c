/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Header field lists (see hdrs.h). The array grows by doubling inside the request arena; the
 * old array is simply abandoned there (it goes when the request ends), which keeps edits cheap.
 */
#include "http/hdrs.h"
#include "http/h1_parse.h"
#include "platform/arena.h"
#include "platform/err.h"

#include <string.h>

#define FIRST_CAP 16u

void http_hdrs_init(struct http_hdrs *h, struct nb_arena *arena)
{
    h->v = NULL;
    h->n = h->cap = 0;
    h->arena = arena;
}

static int grow(struct http_hdrs *h, uint32_t need)
{
    if (need <= h->cap)
        return NB_OK;
    uint32_t cap = h->cap ? h->cap : FIRST_CAP;
    while (cap < need) {
        if (cap > UINT32_MAX / 2)
            return NB_E_NOMEM;
        cap *= 2;
    }
    struct http_field *v = nb_arena_alloc(h->arena, (size_t)cap * sizeof *v);
    if (v == NULL)
        return NB_E_NOMEM;
    if (h->n)
        memcpy(v, h->v, (size_t)h->n * sizeof *v);
    h->v = v;
    h->cap = cap;
    return NB_OK;
}

int http_hdrs_from_h1(struct http_hdrs *h, const struct h1_header *f, size_t n)
{
    if (n > UINT32_MAX - h->n || grow(h, h->n + (uint32_t)n) != NB_OK)
        return NB_E_NOMEM;
    for (size_t i = 0; i < n; i++)
        h->v[h->n++] = (struct http_field){f[i].name, f[i].name_len, f[i].value, f[i].value_len};
    return NB_OK;
}

int http_hdrs_add(struct http_hdrs *h, const char *name, size_t name_len, const char *value,
                  size_t value_len)
{
    if (h->n == UINT32_MAX || grow(h, h->n + 1) != NB_OK)
        return NB_E_NOMEM;
    h->v[h->n++] = (struct http_field){name, name_len, value, value_len};
    return NB_OK;
}

int http_hdrs_add_copy(struct http_hdrs *h, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    char *n = nb_arena_strndup(h->arena, name, nl);
    char *v = nb_arena_strndup(h->arena, value, vl);
    if (n == NULL || v == NULL)
        return NB_E_NOMEM;
    return http_hdrs_add(h, n, nl, v, vl);
}

bool http_ieq_full(const char *s, size_t n, const char *lit)
{
    size_t i = 0;
    for (; i < n; i++) {
        unsigned char a = (unsigned char)s[i], b = (unsigned char)lit[i];
        if (b == '\0')
            return false;
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a + 32);
        if (b >= 'A' && b <= 'Z')
            b = (unsigned char)(b + 32);
        if (a != b)
            return false;
    }
    return lit[i] == '\0';
}

unsigned http_hdrs_del(struct http_hdrs *h, const char *name)
{
    uint32_t w = 0;
    unsigned removed = 0;
    for (uint32_t r = 0; r < h->n; r++) {
        if (http_ieq(h->v[r].name, h->v[r].name_len, name)) {
            removed++;
            continue;
        }
        h->v[w++] = h->v[r];
    }
    h->n = w;
    return removed;
}

int http_hdrs_set(struct http_hdrs *h, const char *name, const char *value, size_t value_len)
{
    http_hdrs_del(h, name);
    return http_hdrs_add(h, name, strlen(name), value, value_len);
}

const struct http_field *http_hdrs_get(const struct http_hdrs *h, const char *name)
{
    for (uint32_t i = 0; i < h->n; i++)
        if (http_ieq(h->v[i].name, h->v[i].name_len, name))
            return &h->v[i];
    return NULL;
}

unsigned http_hdrs_count(const struct http_hdrs *h, const char *name)
{
    unsigned c = 0;
    for (uint32_t i = 0; i < h->n; i++)
        c += http_ieq(h->v[i].name, h->v[i].name_len, name);
    return c;
}

const char *http_hdrs_join(const struct http_hdrs *h, const char *name, size_t *len)
{
    size_t total = 0;
    unsigned count = 0;
    const struct http_field *only = NULL;
    for (uint32_t i = 0; i < h->n; i++)
        if (http_ieq(h->v[i].name, h->v[i].name_len, name)) {
            total += h->v[i].value_len + (count ? 2 : 0);
            count++;
            only = &h->v[i];
        }
    *len = 0;
    if (count == 0)
        return NULL;
    if (count == 1) {
        *len = only->value_len;
        return only->value;
    }
    char *out = nb_arena_alloc(h->arena, total + 1);
    if (out == NULL)
        return NULL;
    size_t w = 0;
    for (uint32_t i = 0; i < h->n; i++)
        if (http_ieq(h->v[i].name, h->v[i].name_len, name)) {
            if (w) {
                out[w++] = ',';
                out[w++] = ' ';
            }
            memcpy(out + w, h->v[i].value, h->v[i].value_len);
            w += h->v[i].value_len;
        }
    out[w] = '\0';
    *len = w;
    return out;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

bool http_list_has(const char *value, size_t len, const char *token)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(value[i]) || value[i] == ','))
            i++;
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        size_t end = i;
        while (end > start && is_ows(value[end - 1]))
            end--;
        if (end > start && http_ieq(value + start, end - start, token))
            return true;
    }
    return false;
}

size_t http_hdrs_wire_len(const struct http_hdrs *h)
{
    size_t n = 0;
    for (uint32_t i = 0; i < h->n; i++)
        n += h->v[i].name_len + 2 + h->v[i].value_len + 2;
    return n;
}

size_t http_hdrs_write(const struct http_hdrs *h, char *dst)
{
    char *p = dst;
    for (uint32_t i = 0; i < h->n; i++) {
        memcpy(p, h->v[i].name, h->v[i].name_len);
        p += h->v[i].name_len;
        *p++ = ':';
        *p++ = ' ';
        memcpy(p, h->v[i].value, h->v[i].value_len);
        p += h->v[i].value_len;
        *p++ = '\r';
        *p++ = '\n';
    }
    return (size_t)(p - dst);
}

int http_hdrs_parse_lines(struct http_hdrs *h, const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e + 1 < len && !(buf[e] == '\r' && buf[e + 1] == '\n'))
            e++;
        if (e + 1 >= len)
            return NB_E_PARSE;
        const char *colon = memchr(buf + i, ':', e - i);
        if (colon == NULL || colon == buf + i)
            return NB_E_PARSE;
        const char *v = colon + 1, *ve = buf + e;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (http_hdrs_add(h, buf + i, (size_t)(colon - (buf + i)), v, (size_t)(ve - v)) != NB_OK)
            return NB_E_NOMEM;
        i = e + 2;
    }
    return NB_OK;
}
