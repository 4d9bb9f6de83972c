/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * libFuzzer target for acme/: whatever an ACME server (or a cache file) may send.
 * Input = records separated by the byte 0x00; the first record goes through every parser
 * (directory, order, authorization, challenge, problem, Retry-After, URL split, cache entry
 * split, the http-01 handler with the record as request-target and as Host), then all records
 * are answered, in turn, to the actions of an order flow (acme/flow.c) as response bodies,
 * with the record's first byte choosing the status (200/201/400/403/500) and whether a
 * Location / Replay-Nonce / Retry-After comes along. Asserts: parsers return NB_OK or
 * NB_E_PARSE only; parsed strings are NUL-terminated within their arrays; counts within the
 * limits; the flow ends (done / fail / out of records) without crashing or leaking.
 */

#include <stdlib.h>
#include <string.h>

#include "acme/cache.h"
#include "acme/flow.h"
#include "acme/http01.h"
#include "acme/msg.h"
#include "platform/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void nul_in(const char *s, size_t cap)
{
    if (!memchr(s, '\0', cap))
        abort();
}

static bool host_ok(void *arg, const char *h)
{
    return strcmp(h, "a.test") == 0;
}

static const char *token(void *arg, const char *t)
{
    return strcmp(t, "tok") == 0 ? "tok.x" : NULL;
}

static int o_set(void *arg, const char *d, enum acme_chall_type t, const char *tok, const char *ka)
{
    return NB_OK;
}

static void o_clear(void *arg, const char *d, enum acme_chall_type t, const char *tok)
{
}

static int64_t o_now(void *arg)
{
    return 1700000000;
}

static void parsers(const uint8_t *b, size_t n)
{
    struct acme_directory d;
    int rc = acme_parse_directory(b, n, &d);
    if (rc != NB_OK && rc != NB_E_PARSE)
        abort();
    nul_in(d.new_nonce, sizeof d.new_nonce);
    static struct acme_order o;
    rc = acme_parse_order(b, n, &o);
    if ((rc != NB_OK && rc != NB_E_PARSE) || o.n_authz > ACME_MAX_AUTHZ)
        abort();
    for (size_t i = 0; i < o.n_authz; i++)
        nul_in(o.authz[i], ACME_URL_MAX);
    static struct acme_authz a;
    rc = acme_parse_authz(b, n, &a);
    if ((rc != NB_OK && rc != NB_E_PARSE) || a.n_chall > ACME_MAX_CHALL)
        abort();
    for (size_t i = 0; i < a.n_chall; i++)
        nul_in(a.chall[i].token, ACME_TOKEN_MAX);
    struct acme_chall c;
    rc = acme_parse_chall(b, n, &c);
    if (rc != NB_OK && rc != NB_E_PARSE)
        abort();
    struct acme_problem p;
    (void)acme_parse_problem(b, n, &p);
    nul_in(p.detail, sizeof p.detail);
    long ra = acme_retry_after((const char *)b, n, 1700000000);
    if (ra < -1 || ra > 3600)
        abort();
    char *s = malloc(n + 1);
    if (!s)
        return;
    memcpy(s, b, n);
    s[n] = '\0';
    char host[256];
    uint16_t port;
    const char *t;
    if (acme_url_split(s, host, sizeof host, &port, &t) == NB_OK && (port == 0 || t[0] != '/'))
        abort();
    const char *k, *ch;
    size_t kl, cl;
    if (acme_cache_split(s, n, &k, &kl, &ch, &cl) == NB_OK && kl + cl != n)
        abort();
    static struct acme_http01_reply r;
    acme_http01_handle("GET", "a.test", s, host_ok, token, NULL, &r);
    acme_http01_handle("POST", s, "/.well-known/acme-challenge/tok", host_ok, token, NULL, &r);
    if (r.status != 200 && r.status != 403)
        abort();
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct acme_key key;
    static bool have_key;
    if (!have_key) {
        if (acme_key_generate(&key) != NB_OK)
            abort();
        have_key = true;
    }
    const uint8_t *end = data + size;
    const uint8_t *z = memchr(data, 0, size);
    parsers(data, z ? (size_t)(z - data) : size);

    struct acme_account ac;
    memset(&ac, 0, sizeof ac);
    strcpy(ac.dir_url, "https://ca.test/dir");
    ac.key = &key;
    static const enum acme_chall_type types[] = {ACME_CH_TLS_ALPN01, ACME_CH_HTTP01};
    struct acme_flow_ops ops = {o_set, o_clear, o_now, NULL};
    struct acme_flow *f = acme_flow_new(&ac, "a.test", types, 2, &ops);
    if (!f)
        return 0;
    struct acme_act act;
    acme_flow_start(f, &act);
    const uint8_t *p = data;
    static const int statuses[] = {200, 201, 200, 400, 403, 500, 200, 201};
    for (int steps = 0; steps < 64 && p < end; steps++) {
        if (act.kind == ACME_DO_WAIT) {
            acme_flow_resume(f, &act);
            continue;
        }
        if (act.kind != ACME_DO_HTTP)
            break;
        const uint8_t *q = memchr(p, 0, (size_t)(end - p));
        size_t len = q ? (size_t)(q - p) : (size_t)(end - p);
        uint8_t sel = len ? p[0] : 0;
        struct acme_resp r;
        memset(&r, 0, sizeof r);
        r.status = statuses[sel & 7];
        if (sel & 0x08)
            r.location = "https://ca.test/loc/1", r.location_len = 21;
        if (!(sel & 0x10))
            r.nonce = "nonce", r.nonce_len = 5;
        if (sel & 0x20)
            r.retry_after = "1", r.retry_after_len = 1;
        r.body = len ? p + 1 : NULL;
        r.body_len = len ? len - 1 : 0;
        acme_flow_on_resp(f, &r, &act);
        p = q ? q + 1 : end;
    }
    if (act.kind == ACME_DO_FAIL)
        nul_in(acme_flow_error(f), 480);
    acme_flow_free(f);
    return 0;
}
