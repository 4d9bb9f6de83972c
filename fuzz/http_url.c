/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * libFuzzer target for the URL handling of http/route.c and http/rewrite.c. Input: one flags
 * byte, then '\n'-separated parts: target URL, match path, request-target, Location, a field
 * value (used as Cookie, X-Forwarded-For and Connection), a trusted-proxy list.
 * Asserts: a parsed target is self-consistent; a decoded path is never longer than the raw one;
 * a rewritten request-target starts with '/' and holds no control byte, space, '#' or NUL; Host
 * and every upstream field value hold no CR, LF or NUL; the client IP is an IP; a rewritten
 * Location holds no control byte and parses again.
 */

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http/rewrite.h"
#include "http/route.h"
#include "platform/addr.h"
#include "platform/arena.h"
#include "platform/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { NPARTS = 6 };

static void no_ctl(const char *s, size_t n, bool space_ok)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || (!space_ok && c == ' '))
            abort();
    }
}

static void no_crlf(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            abort();
}

static void check_target(const struct http_target *t)
{
    size_t hl = strlen(t->host);
    if (hl == 0 || t->port == 0 || strchr(t->host, '[') || strchr(t->host, ']'))
        abort();
    if (strstr(t->authority, t->host) == NULL)
        abort();
    if (t->path[0] != '\0' && t->path[0] != '/')
        abort();
    if (t->_path_dec_len > strlen(t->path))
        abort();
    no_ctl(t->authority, strlen(t->authority), false);
    no_ctl(t->path, strlen(t->path), false);
    no_ctl(t->query, strlen(t->query), false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *part[NPARTS];
    size_t plen[NPARTS];
    struct nb_arena a;
    struct http_target t;
    struct http_service *svc = NULL;
    struct http_fwd_cfg cfg;
    char why[96], warn[256], ip[NB_ADDRSTRLEN];

    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    char *buf = malloc(size); /* exact size so ASan catches over-reads */
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, size - 1);
    size_t n = size - 1, p = 0;
    /* split into NUL-terminated parts (the '\n' separators become NULs) */
    for (int i = 0; i < NPARTS; i++) {
        char *nl = p < n ? memchr(buf + p, '\n', n - p) : NULL;
        part[i] = buf + p;
        plen[i] = nl ? (size_t)(nl - (buf + p)) : (p < n ? n - p : 0);
        if (nl != NULL) {
            *nl = '\0';
            p += plen[i] + 1;
        } else {
            p = n;
        }
    }
    /* parts without a separator run to the end of buf: copy them to get a terminator */
    char *owned[NPARTS] = {0};
    for (int i = 0; i < NPARTS; i++) {
        owned[i] = malloc(plen[i] + 1);
        if (owned[i] == NULL)
            goto out_free;
        memcpy(owned[i], part[i], plen[i]);
        owned[i][plen[i]] = '\0';
        part[i] = owned[i];
    }

    nb_arena_init(&a);
    http_fwd_cfg_init(&cfg);

    /* target URL parser */
    if (http_target_parse(part[0], &t, why, sizeof why) == NB_OK) {
        check_target(&t);
        http_target_deinit(&t);
    }

    /* trusted proxies */
    if (http_trusted_parse(&cfg, part[5], why, sizeof why) == NB_OK && cfg.n_trusted > plen[5])
        abort();
    cfg.proto = (enum http_fwd_proto)(flags % 3);

    /* path decoding */
    const char *dec;
    size_t dl;
    const char *q = memchr(part[2], '?', plen[2]);
    size_t path_len = q ? (size_t)(q - part[2]) : plen[2];
    int drc = http_path_decode(&a, part[2], path_len, &dec, &dl);
    if (drc == NB_OK && dl > path_len)
        abort();
    if (drc != NB_OK && drc != NB_E_PARSE)
        abort();

    /* a service routed to the fuzzed target and key */
    struct nb_path_mapping pm = {.path = part[1], .target = part[0]};
    struct nb_header_kv ch = {.name = "X-Custom", .value = part[4]};
    struct nb_header_auth ha = {.header = "X-Api-Key"};
    pm.options.path_rewrite = (flags & 4) ? NB_PATH_REWRITE_PRESERVE : NB_PATH_REWRITE_DEFAULT;
    pm.options.custom_headers = &ch;
    pm.options.n_custom_headers = (flags & 16) ? 1 : 0;
    struct nb_mapping m = {.id = "svc",
                           .account_id = "acct",
                           .domain = "d",
                           .paths = &pm,
                           .n_paths = 1,
                           .pass_host_header = (flags & 8) != 0,
                           .auth = {.header_auths = &ha, .n_header_auths = 1}};
    if (http_service_new(&m, &svc, warn, sizeof warn) != NB_OK || svc->n_paths == 0)
        goto out;

    /* request rewriting: field values as a parser would deliver them (no CR, LF, NUL) */
    char *fv = part[4];
    size_t fvl = 0;
    for (size_t i = 0; i < plen[4]; i++)
        if (fv[i] != '\r' && fv[i] != '\n' && fv[i] != '\0')
            fv[fvl++] = fv[i];
    struct http_hdrs in_hdrs;
    http_hdrs_init(&in_hdrs, &a);
    if (http_hdrs_add(&in_hdrs, "Cookie", 6, fv, fvl) ||
        http_hdrs_add(&in_hdrs, "X-Forwarded-For", 15, fv, fvl) ||
        http_hdrs_add(&in_hdrs, "Connection", 10, fv, fvl) ||
        http_hdrs_add(&in_hdrs, "Upgrade", 7, fv, fvl) ||
        http_hdrs_add(&in_hdrs, "X-Api-Key", 9, "k", 1))
        goto out;
    struct sockaddr_storage ss;
    socklen_t sl;
    if (nb_addr_parse((flags & 32) ? "[::ffff:10.0.0.1]:5000" : "10.0.0.1:5000", &ss, &sl))
        abort();
    struct http_inreq in = {
        .path = part[2],
        .path_len = path_len,
        .query = q ? q + 1 : NULL,
        .query_len = q ? plen[2] - path_len - 1 : 0,
        .hdrs = &in_hdrs,
        .host = "public.example.com:8443",
        .host_len = 23,
        .peer = (struct sockaddr *)&ss,
        .tls = (flags & 1) != 0,
    };
    const char *gids[] = {fv, "g2"};
    struct http_identity id = {.user = fv, .group_ids = gids, .group_names = NULL, .n_groups = 2};
    const struct http_route_path *match = &svc->paths[0];
    if (drc == NB_OK) {
        const struct http_route_path *mm = http_service_match(svc, dec, dl);
        if (mm != NULL)
            match = mm;
    }
    struct http_outreq out;
    int rc = http_rewrite_request(&a, &in, svc, match, (flags & 64) ? &id : NULL, &cfg, &out);
    if (rc == NB_OK) {
        if (out.target_len == 0 || out.target[0] != '/' || memchr(out.target, '#', out.target_len))
            abort();
        no_ctl(out.target, out.target_len, false);
        no_crlf(out.host, out.host_len);
        for (uint32_t i = 0; i < out.hdrs.n; i++) {
            if (out.hdrs.v[i].name_len == 0)
                abort();
            no_crlf(out.hdrs.v[i].name, out.hdrs.v[i].name_len);
            no_crlf(out.hdrs.v[i].value, out.hdrs.v[i].value_len);
        }
        if (http_hdrs_get(&out.hdrs, "X-Api-Key") != NULL || http_hdrs_get(&out.hdrs, "Host"))
            abort();
    } else if (rc != NB_E_PARSE && rc != NB_E_UNSUPPORTED) {
        abort();
    }

    /* client IP */
    if (http_client_ip((struct sockaddr *)&ss, &in_hdrs, &cfg, ip) != NB_OK)
        abort();
    {
        char tmp[NB_ADDRSTRLEN];
        uint8_t bin[16];
        strcpy(tmp, ip);
        char *pct = strchr(tmp, '%');
        if (pct)
            *pct = '\0';
        if (inet_pton(strchr(tmp, ':') ? AF_INET6 : AF_INET, tmp, bin) != 1)
            abort();
    }

    /* Location */
    const char *lo;
    size_t ll;
    rc = http_rewrite_location(&a, part[3], plen[3], match, "public.example.com:8443", 23,
                               (flags & 2) != 0, &lo, &ll);
    if (rc == NB_OK && lo != part[3]) {
        no_ctl(lo, ll, true);
        if (strncmp(lo, "http://", 7) != 0 && strncmp(lo, "https://", 8) != 0)
            abort();
        const char *lo2;
        size_t ll2;
        /* what we emit must parse again (it now points at the public host: left alone) */
        if (http_rewrite_location(&a, lo, ll, match, "x", 1, true, &lo2, &ll2) != NB_OK)
            abort();
    } else if (rc != NB_OK && rc != NB_E_PARSE) {
        abort();
    }

out:
    http_service_unref(svc);
    http_fwd_cfg_deinit(&cfg);
    nb_arena_deinit(&a);
out_free:
    for (int i = 0; i < NPARTS; i++)
        free(owned[i]);
    free(buf);
    return 0;
}
