/* SPDX-License-Identifier: BSD-3-Clause */
#include "acme/msg.h"

#include "platform/err.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static cJSON *parse_obj(const uint8_t *b, size_t n)
{
    if (!b || n == 0 || n > ACME_BODY_MAX)
        return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)b, n);
    if (j && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* Copies a string member; false when absent/not a string/too long (required) . */
static bool get_str(const cJSON *o, const char *name, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsString(v) || !v->valuestring)
        return false;
    size_t l = strlen(v->valuestring);
    if (l >= cap)
        return false;
    memcpy(out, v->valuestring, l + 1);
    return true;
}

static bool get_url(const cJSON *o, const char *name, char *out)
{
    if (!get_str(o, name, out, ACME_URL_MAX))
        return false;
    char host[256];
    uint16_t port;
    const char *t;
    return acme_url_split(out, host, sizeof host, &port, &t) == NB_OK;
}

static const char *const status_names[] = {
    [ACME_ST_UNKNOWN] = "unknown", [ACME_ST_PENDING] = "pending",
    [ACME_ST_READY] = "ready",     [ACME_ST_PROCESSING] = "processing",
    [ACME_ST_VALID] = "valid",     [ACME_ST_INVALID] = "invalid",
    [ACME_ST_EXPIRED] = "expired", [ACME_ST_DEACTIVATED] = "deactivated",
    [ACME_ST_REVOKED] = "revoked",
};

enum acme_status acme_status_from(const char *s)
{
    for (size_t i = 1; s && i < sizeof status_names / sizeof status_names[0]; i++)
        if (strcmp(s, status_names[i]) == 0)
            return (enum acme_status)i;
    return ACME_ST_UNKNOWN;
}

const char *acme_status_name(enum acme_status st)
{
    return (unsigned)st < sizeof status_names / sizeof status_names[0] ? status_names[st] : "?";
}

static enum acme_status get_status(const cJSON *o)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "status");
    return cJSON_IsString(v) ? acme_status_from(v->valuestring) : ACME_ST_UNKNOWN;
}

int acme_parse_directory(const uint8_t *b, size_t n, struct acme_directory *d)
{
    memset(d, 0, sizeof *d);
    cJSON *j = parse_obj(b, n);
    if (!j)
        return NB_E_PARSE;
    int rc = NB_E_PARSE;
    if (get_url(j, "newNonce", d->new_nonce) && get_url(j, "newAccount", d->new_account) &&
        get_url(j, "newOrder", d->new_order)) {
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(j, "meta");
        d->eab_required =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(meta, "externalAccountRequired"));
        rc = NB_OK;
    }
    cJSON_Delete(j);
    return rc;
}

int acme_parse_order(const uint8_t *b, size_t n, struct acme_order *o)
{
    memset(o, 0, sizeof *o);
    cJSON *j = parse_obj(b, n);
    if (!j)
        return NB_E_PARSE;
    int rc = NB_E_PARSE;
    o->status = get_status(j);
    const cJSON *az = cJSON_GetObjectItemCaseSensitive(j, "authorizations");
    if (o->status == ACME_ST_UNKNOWN || !get_url(j, "finalize", o->finalize) || !cJSON_IsArray(az))
        goto out;
    if (cJSON_GetObjectItemCaseSensitive(j, "certificate") &&
        !get_url(j, "certificate", o->certificate))
        goto out;
    const cJSON *e;
    cJSON_ArrayForEach(e, az)
    {
        if (o->n_authz == ACME_MAX_AUTHZ || !cJSON_IsString(e) ||
            strlen(e->valuestring) >= ACME_URL_MAX)
            goto out;
        strcpy(o->authz[o->n_authz], e->valuestring);
        char host[256];
        uint16_t port;
        const char *t;
        if (acme_url_split(o->authz[o->n_authz], host, sizeof host, &port, &t) != NB_OK)
            goto out;
        o->n_authz++;
    }
    rc = NB_OK;
out:
    cJSON_Delete(j);
    return rc;
}

static bool token_ok(const char *t)
{
    if (!*t)
        return false;
    for (; *t; t++)
        if (!isalnum((unsigned char)*t) && *t != '-' && *t != '_')
            return false;
    return true;
}

static int chall_from(const cJSON *c, struct acme_chall *ch)
{
    memset(ch, 0, sizeof *ch);
    char type[32];
    if (!get_str(c, "type", type, sizeof type) || !get_url(c, "url", ch->url))
        return NB_E_PARSE;
    ch->status = get_status(c);
    if (strcmp(type, "tls-alpn-01") == 0)
        ch->type = ACME_CH_TLS_ALPN01;
    else if (strcmp(type, "http-01") == 0)
        ch->type = ACME_CH_HTTP01;
    if (ch->type != ACME_CH_OTHER) {
        /* RFC 8555 §8.3: the token is base64url; it names a file and a URL path here. */
        if (!get_str(c, "token", ch->token, sizeof ch->token) || !token_ok(ch->token))
            return NB_E_PARSE;
    }
    return NB_OK;
}

int acme_parse_chall(const uint8_t *b, size_t n, struct acme_chall *c)
{
    cJSON *j = parse_obj(b, n);
    if (!j) {
        memset(c, 0, sizeof *c);
        return NB_E_PARSE;
    }
    int rc = chall_from(j, c);
    cJSON_Delete(j);
    return rc;
}

int acme_parse_authz(const uint8_t *b, size_t n, struct acme_authz *a)
{
    memset(a, 0, sizeof *a);
    cJSON *j = parse_obj(b, n);
    if (!j)
        return NB_E_PARSE;
    int rc = NB_E_PARSE;
    a->status = get_status(j);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "identifier");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "challenges");
    if (a->status == ACME_ST_UNKNOWN || !cJSON_IsObject(id) ||
        !get_str(id, "value", a->identifier, sizeof a->identifier) || !cJSON_IsArray(ch))
        goto out;
    a->wildcard = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "wildcard"));
    const cJSON *e;
    cJSON_ArrayForEach(e, ch)
    {
        if (a->n_chall == ACME_MAX_CHALL || !cJSON_IsObject(e))
            goto out;
        if (chall_from(e, &a->chall[a->n_chall]) != NB_OK)
            goto out;
        a->n_chall++;
    }
    rc = NB_OK;
out:
    cJSON_Delete(j);
    return rc;
}

int acme_parse_problem(const uint8_t *b, size_t n, struct acme_problem *p)
{
    memset(p, 0, sizeof *p);
    cJSON *j = parse_obj(b, n);
    if (!j)
        return NB_E_PARSE;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (cJSON_IsString(t) && strlen(t->valuestring) < sizeof p->type)
        strcpy(p->type, t->valuestring);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "detail");
    if (cJSON_IsString(d)) {
        size_t k = 0;
        for (const char *s = d->valuestring; *s && k + 1 < sizeof p->detail; s++)
            p->detail[k++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
        p->detail[k] = '\0';
    }
    cJSON_Delete(j);
    return NB_OK;
}

long acme_retry_after(const char *v, size_t len, int64_t now)
{
    if (!v || len == 0 || len > 64)
        return -1;
    char buf[65];
    memcpy(buf, v, len);
    buf[len] = '\0';
    char *s = buf;
    while (*s == ' ' || *s == '\t')
        s++;
    if (isdigit((unsigned char)*s)) {
        char *end;
        unsigned long long x = strtoull(s, &end, 10);
        while (*end == ' ' || *end == '\t')
            end++;
        if (*end)
            return -1;
        return x > 3600 ? 3600 : (long)x;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *e = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!e || *e)
        return -1;
    int64_t t = (int64_t)timegm(&tm);
    int64_t d = t - now;
    return d < 0 ? 0 : d > 3600 ? 3600 : (long)d;
}

int acme_url_split(const char *url, char *host, size_t host_cap, uint16_t *port,
                   const char **target)
{
    static const char pfx[] = "https://";
    if (!url || strncasecmp(url, pfx, sizeof pfx - 1) != 0 || strlen(url) >= ACME_URL_MAX)
        return NB_E_PARSE;
    const char *h = url + sizeof pfx - 1;
    const char *slash = strchr(h, '/');
    const char *end = slash ? slash : h + strlen(h);
    if (memchr(h, '@', (size_t)(end - h)) || memchr(h, '?', (size_t)(end - h)) ||
        memchr(h, '#', (size_t)(end - h)))
        return NB_E_PARSE;
    const char *hs = h, *he;
    const char *pc;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb)
            return NB_E_PARSE;
        hs = h + 1;
        he = rb;
        pc = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        if (!pc && rb + 1 != end)
            return NB_E_PARSE;
    } else {
        pc = memchr(h, ':', (size_t)(end - h));
        he = pc ? pc : end;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= host_cap)
        return NB_E_PARSE;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    *port = 443;
    if (pc) {
        unsigned long p = 0;
        const char *q = pc + 1;
        if (q == end)
            return NB_E_PARSE;
        for (; q < end; q++) {
            if (!isdigit((unsigned char)*q))
                return NB_E_PARSE;
            p = p * 10 + (unsigned long)(*q - '0');
            if (p > 65535)
                return NB_E_PARSE;
        }
        if (p == 0)
            return NB_E_PARSE;
        *port = (uint16_t)p;
    }
    *target = slash ? slash : "/";
    return NB_OK;
}
