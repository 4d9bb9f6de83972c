/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Access restrictions (auth/restrict.h): compiled once per mapping (mgmt/mapping_decode.c,
 * core/standalone.c), referenced by whatever serves the mapping (http/route.c services,
 * core/router.c relay targets, core/udp_relay.c), and checked per connection or request on the
 * loop thread. Lists are short (management UIs hold a handful of entries), so the check is a
 * linear scan with no allocation.
 */
#include "auth/restrict.h"
#include "platform/err.h"
#include "platform/log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cidr {
    uint8_t b[16]; /* masked */
    uint8_t bits;
    bool v4;
};

struct auth_restrict {
    uint32_t refs;
    struct cidr *allow, *block;
    size_t n_allow, n_block;
    bool allow_none; /* an allow-list was given but none of it parsed: nothing is allowed */
    char (*allow_cc)[3];
    char (*block_cc)[3];
    size_t n_allow_cc, n_block_cc;
    enum auth_crowdsec_mode crowdsec;
    uint64_t last_log_ms[AUTH_VERDICT_COUNT]; /* 0 = never logged */
    uint64_t suppressed[AUTH_VERDICT_COUNT];
};

static const char *const verdict_names[AUTH_VERDICT_COUNT] = {
    [AUTH_ALLOW] = "allow",
    [AUTH_DENY_IP] = "ip_restricted",
    [AUTH_DENY_COUNTRY] = "country_restricted",
    [AUTH_DENY_GEO_UNAVAILABLE] = "geo_unavailable",
    [AUTH_DENY_CROWDSEC_BAN] = "crowdsec_ban",
    [AUTH_DENY_CROWDSEC_CAPTCHA] = "crowdsec_captcha",
    [AUTH_DENY_CROWDSEC_THROTTLE] = "crowdsec_throttle",
    [AUTH_DENY_CROWDSEC_UNAVAILABLE] = "crowdsec_unavailable",
};

const char *auth_verdict_name(enum auth_verdict v)
{
    return (unsigned)v < AUTH_VERDICT_COUNT ? verdict_names[v] : "unknown";
}

/* ---- addresses ---- */

static void set_ip(struct auth_ip *out, const uint8_t *b16)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(out, 0, sizeof *out);
    if (memcmp(b16, mapped, 12) == 0) {
        out->v4 = true;
        memcpy(out->b, b16 + 12, 4);
    } else {
        memcpy(out->b, b16, 16);
    }
}

bool auth_ip_from_sockaddr(const struct sockaddr *sa, struct auth_ip *out)
{
    if (sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        memset(out, 0, sizeof *out);
        out->v4 = true;
        memcpy(out->b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        set_ip(out, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
        return true;
    }
    return false;
}

bool auth_ip_parse(const char *s, struct auth_ip *out)
{
    uint8_t b[16];
    if (s == NULL)
        return false;
    if (inet_pton(AF_INET, s, b) == 1) {
        memset(out, 0, sizeof *out);
        out->v4 = true;
        memcpy(out->b, b, 4);
        return true;
    }
    if (inet_pton(AF_INET6, s, b) == 1) {
        set_ip(out, b);
        return true;
    }
    return false;
}

const char *auth_ip_str(const struct auth_ip *ip, char *buf, size_t len)
{
    if (len == 0)
        return buf;
    if (inet_ntop(ip->v4 ? AF_INET : AF_INET6, ip->b, buf, (socklen_t)len) == NULL)
        buf[0] = '\0';
    return buf;
}

/* ---- compilation ---- */

/* netip.ParsePrefix: "<addr>/<bits>", bits decimal without sign or leading zero. */
static bool parse_cidr(const char *s, struct cidr *out)
{
    const char *slash = strrchr(s, '/');
    if (slash == NULL || slash == s)
        return false;
    size_t alen = (size_t)(slash - s);
    char a[64];
    if (alen >= sizeof a)
        return false;
    memcpy(a, s, alen);
    a[alen] = '\0';
    const char *d = slash + 1;
    size_t dl = strlen(d);
    if (dl == 0 || dl > 3 || (dl > 1 && d[0] == '0'))
        return false;
    unsigned bits = 0;
    for (size_t i = 0; i < dl; i++) {
        if (d[i] < '0' || d[i] > '9')
            return false;
        bits = bits * 10 + (unsigned)(d[i] - '0');
    }
    memset(out, 0, sizeof *out);
    if (strchr(a, ':') == NULL) {
        if (inet_pton(AF_INET, a, out->b) != 1 || bits > 32)
            return false;
        out->v4 = true;
    } else {
        /* A v4-mapped v6 prefix stays v6 (so it never matches an unmapped address), as Go. */
        if (strchr(a, '%') || inet_pton(AF_INET6, a, out->b) != 1 || bits > 128)
            return false;
    }
    out->bits = (uint8_t)bits;
    size_t total = out->v4 ? 4 : 16;
    for (size_t i = 0; i < total; i++) {
        unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * (unsigned)i : 0;
        out->b[i] &= (uint8_t)(keep == 8 ? 0xff : (0xff00u >> keep) & 0xff);
    }
    return true;
}

static int compile_cidrs(const char *const *in, size_t n, const char *what, struct cidr **out,
                         size_t *n_out, size_t *skipped)
{
    *out = NULL;
    *n_out = 0;
    if (n == 0)
        return NB_OK;
    *out = calloc(n, sizeof **out);
    if (*out == NULL)
        return NB_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == NULL || !parse_cidr(in[i], &(*out)[*n_out])) {
            nb_warn("restrict", "skip invalid %s CIDR \"%s\"", what, in[i] ? in[i] : "");
            (*skipped)++;
            continue;
        }
        (*n_out)++;
    }
    return NB_OK;
}

static int compile_countries(const char *const *in, size_t n, char (**out)[3], size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (n == 0)
        return NB_OK;
    *out = calloc(n, sizeof **out);
    if (*out == NULL)
        return NB_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        /* strings.ToUpper, then exact comparison: a code longer than two letters can never
         * match a database code; keep it as an unmatchable entry (it still makes the list
         * non-empty, which is what decides allow-list semantics). */
        const char *c = in[i] ? in[i] : "";
        char *dst = (*out)[*n_out];
        if (strlen(c) != 2) {
            dst[0] = '\x01'; /* never equal to a database code */
            dst[1] = '\0';
        } else {
            for (int k = 0; k < 2; k++)
                dst[k] = (c[k] >= 'a' && c[k] <= 'z') ? (char)(c[k] - 'a' + 'A') : c[k];
            dst[2] = '\0';
        }
        (*n_out)++;
    }
    return NB_OK;
}

int auth_restrict_new(const struct auth_restrict_spec *spec, struct auth_restrict **out,
                      size_t *n_skipped)
{
    *out = NULL;
    size_t skipped = 0;
    enum auth_crowdsec_mode cs = AUTH_CROWDSEC_OFF;
    if (spec->crowdsec_mode && strcmp(spec->crowdsec_mode, "enforce") == 0)
        cs = AUTH_CROWDSEC_ENFORCE;
    else if (spec->crowdsec_mode && strcmp(spec->crowdsec_mode, "observe") == 0)
        cs = AUTH_CROWDSEC_OBSERVE;
    if (n_skipped)
        *n_skipped = 0;
    if (spec->n_allowed_cidrs == 0 && spec->n_blocked_cidrs == 0 &&
        spec->n_allowed_countries == 0 && spec->n_blocked_countries == 0 && cs == AUTH_CROWDSEC_OFF)
        return NB_OK;
    struct auth_restrict *f = calloc(1, sizeof *f);
    if (f == NULL)
        return NB_E_NOMEM;
    f->refs = 1;
    f->crowdsec = cs;
    if (compile_cidrs(spec->allowed_cidrs, spec->n_allowed_cidrs, "allowed", &f->allow, &f->n_allow,
                      &skipped) != NB_OK ||
        compile_cidrs(spec->blocked_cidrs, spec->n_blocked_cidrs, "blocked", &f->block, &f->n_block,
                      &skipped) != NB_OK ||
        compile_countries(spec->allowed_countries, spec->n_allowed_countries, &f->allow_cc,
                          &f->n_allow_cc) != NB_OK ||
        compile_countries(spec->blocked_countries, spec->n_blocked_countries, &f->block_cc,
                          &f->n_block_cc) != NB_OK) {
        auth_restrict_unref(f);
        return NB_E_NOMEM;
    }
    if (n_skipped)
        *n_skipped = skipped;
    if (spec->n_allowed_cidrs > 0 && f->n_allow == 0) {
        /* The reference skips invalid entries and so would open the service to everyone when
         * all of them are invalid; an operator who wrote an allow-list meant to restrict. */
        f->allow_none = true;
        nb_error("restrict",
                 "none of the %zu allowed CIDR(s) is valid: the service admits no "
                 "client until the allow-list is fixed",
                 spec->n_allowed_cidrs);
    }
    if (cs == AUTH_CROWDSEC_ENFORCE)
        nb_warn("restrict", "crowdsec mode enforce: this build has no CrowdSec bouncer, every "
                            "client of the service is denied (crowdsec_unavailable)");
    *out = f;
    return NB_OK;
}

struct auth_restrict *auth_restrict_ref(struct auth_restrict *f)
{
    if (f)
        f->refs++;
    return f;
}

void auth_restrict_unref(struct auth_restrict *f)
{
    if (f == NULL || --f->refs > 0)
        return;
    free(f->allow);
    free(f->block);
    free(f->allow_cc);
    free(f->block_cc);
    free(f);
}

/* ---- the check ---- */

static bool cidr_contains(const struct cidr *c, const struct auth_ip *ip)
{
    if (c->v4 != ip->v4)
        return false;
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->b, ip->b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return (ip->b[full] & mask) == c->b[full];
}

static bool any_cidr(const struct cidr *list, size_t n, const struct auth_ip *ip)
{
    for (size_t i = 0; i < n; i++)
        if (cidr_contains(&list[i], ip))
            return true;
    return false;
}

static bool any_cc(const char (*list)[3], size_t n, const char *cc)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], cc) == 0)
            return true;
    return false;
}

enum auth_verdict auth_restrict_check(const struct auth_restrict *f, const struct auth_ip *ip,
                                      bool overlay, const struct auth_geo_ops *geo)
{
    if (f == NULL)
        return AUTH_ALLOW;
    if (ip == NULL)
        return AUTH_DENY_IP;
    /* 1. CIDR: allow-list, then block-list. */
    if (f->allow_none || (f->n_allow && !any_cidr(f->allow, f->n_allow, ip)))
        return AUTH_DENY_IP;
    if (any_cidr(f->block, f->n_block, ip))
        return AUTH_DENY_IP;
    if (overlay)
        return AUTH_ALLOW;
    /* 2. Country. */
    if (f->n_allow_cc || f->n_block_cc) {
        if (geo == NULL || geo->country == NULL)
            return AUTH_DENY_GEO_UNAVAILABLE;
        char cc[3] = "";
        if (!geo->country(geo->ctx, ip, cc) || cc[0] == '\0') {
            if (f->n_allow_cc)
                return AUTH_DENY_COUNTRY;
        } else {
            if (f->n_allow_cc && !any_cc(f->allow_cc, f->n_allow_cc, cc))
                return AUTH_DENY_COUNTRY;
            if (any_cc(f->block_cc, f->n_block_cc, cc))
                return AUTH_DENY_COUNTRY;
        }
    }
    /* 3. CrowdSec: no bouncer in this build, the reference's "not configured" branch. */
    if (f->crowdsec == AUTH_CROWDSEC_ENFORCE)
        return AUTH_DENY_CROWDSEC_UNAVAILABLE;
    return AUTH_ALLOW;
}

/* ---- views ---- */

size_t auth_restrict_n_cidrs(const struct auth_restrict *f, bool blocked)
{
    return f == NULL ? 0 : blocked ? f->n_block : f->n_allow;
}

const char *auth_restrict_cidr_str(const struct auth_restrict *f, bool blocked, size_t i, char *buf,
                                   size_t len)
{
    if (len == 0)
        return buf;
    buf[0] = '\0';
    if (f == NULL || i >= auth_restrict_n_cidrs(f, blocked))
        return buf;
    const struct cidr *c = blocked ? &f->block[i] : &f->allow[i];
    char a[INET6_ADDRSTRLEN];
    if (inet_ntop(c->v4 ? AF_INET : AF_INET6, c->b, a, sizeof a) == NULL)
        return buf;
    snprintf(buf, len, "%s/%u", a, (unsigned)c->bits);
    return buf;
}

bool auth_restrict_has_country_rules(const struct auth_restrict *f)
{
    return f && (f->n_allow_cc || f->n_block_cc);
}

enum auth_crowdsec_mode auth_restrict_crowdsec_mode(const struct auth_restrict *f)
{
    return f ? f->crowdsec : AUTH_CROWDSEC_OFF;
}

/* ---- deny logs and counters ---- */

bool auth_restrict_log_deny(struct auth_restrict *f, enum auth_verdict v, uint64_t now_ms,
                            uint64_t *suppressed)
{
    *suppressed = 0;
    if (f == NULL || (unsigned)v >= AUTH_VERDICT_COUNT)
        return true;
    /* now_ms + 1: a loop clock starting at 0 must still read as "logged once". */
    uint64_t stamp = now_ms + 1;
    if (f->last_log_ms[v] && stamp - f->last_log_ms[v] < AUTH_DENY_LOG_INTERVAL_MS) {
        f->suppressed[v]++;
        return false;
    }
    f->last_log_ms[v] = stamp;
    *suppressed = f->suppressed[v];
    f->suppressed[v] = 0;
    return true;
}

static uint64_t denials[AUTH_VERDICT_COUNT][AUTH_PROTO_COUNT];

const char *auth_proto_name(enum auth_proto p)
{
    static const char *const names[AUTH_PROTO_COUNT] = {"http", "tcp", "tls", "udp"};
    return (unsigned)p < AUTH_PROTO_COUNT ? names[p] : "unknown";
}

void auth_restrict_count_deny(enum auth_verdict v, enum auth_proto p)
{
    if ((unsigned)v < AUTH_VERDICT_COUNT && (unsigned)p < AUTH_PROTO_COUNT)
        denials[v][p]++;
}

uint64_t auth_restrict_denials(enum auth_verdict v, enum auth_proto p)
{
    return (unsigned)v < AUTH_VERDICT_COUNT && (unsigned)p < AUTH_PROTO_COUNT ? denials[v][p] : 0;
}
