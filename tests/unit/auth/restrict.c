/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * auth/restrict: the matrix of spec/proxy.md §11 internal/restrict/restrict_test.go, one numbered
 * case per line (allow/block interplay, unknown country, geo unavailable, v6 and v4-mapped,
 * non-masked CIDR canonicalised, case-insensitive codes, CrowdSec enforce/observe/off, overlay =
 * CIDR only), the compilation rules (invalid CIDRs skipped, empty spec = no filter), the deny-log
 * rate limit, and a differential test of prefix matching against a naive bit-by-bit reference.
 * Countries come from a table through the ops struct (the real database: tests/unit/auth/geo.c).
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "auth/restrict.h"
#include "platform/err.h"

/* ---- a table geo ---- */

static const struct {
    const char *ip, *cc;
} geo_table[] = {
    {"1.1.1.1", "US"},  {"2.2.2.2", "CN"},     {"3.3.3.3", "DE"},
    {"10.1.2.3", "US"}, {"2001:db8::1", "JP"}, {"203.0.113.9", "US"},
};

static int geo_calls;

static bool table_country(void *ctx, const struct auth_ip *ip, char cc[3])
{
    (void)ctx;
    geo_calls++;
    for (size_t i = 0; i < sizeof geo_table / sizeof geo_table[0]; i++) {
        struct auth_ip t;
        assert_true(auth_ip_parse(geo_table[i].ip, &t));
        if (t.v4 == ip->v4 && memcmp(t.b, ip->b, t.v4 ? 4 : 16) == 0) {
            memcpy(cc, geo_table[i].cc, 3);
            return true;
        }
    }
    return false;
}

static const struct auth_geo_ops table_geo = {.country = table_country};
static const struct auth_geo_ops no_geo = {.country = NULL};

/* ---- the matrix ---- */

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

struct mcase {
    int line;
    const char *const *allow, *const *block, *const *allow_cc, *const *block_cc;
    const char *crowdsec;
    const struct auth_geo_ops *geo; /* NULL = no geo at all */
    bool overlay;
    const char *ip; /* NULL = unresolved client */
    enum auth_verdict want;
};

static size_t count(const char *const *l)
{
    size_t n = 0;
    while (l && l[n])
        n++;
    return n;
}

static struct auth_restrict *compile(const struct mcase *c, size_t *skipped)
{
    struct auth_restrict_spec spec = {
        .allowed_cidrs = c->allow,
        .n_allowed_cidrs = count(c->allow),
        .blocked_cidrs = c->block,
        .n_blocked_cidrs = count(c->block),
        .allowed_countries = c->allow_cc,
        .n_allowed_countries = count(c->allow_cc),
        .blocked_countries = c->block_cc,
        .n_blocked_countries = count(c->block_cc),
        .crowdsec_mode = c->crowdsec,
    };
    struct auth_restrict *f = NULL;
    assert_int_equal(auth_restrict_new(&spec, &f, skipped), NB_OK);
    return f;
}

#define G &table_geo
/* clang-format off */
static const struct mcase matrix[] = {
    /* CIDR allow-list */
    {__LINE__, L("10.0.0.0/8"), NULL, NULL, NULL, NULL, G, false, "10.1.2.3", AUTH_ALLOW},
    {__LINE__, L("10.0.0.0/8"), NULL, NULL, NULL, NULL, G, false, "11.0.0.1", AUTH_DENY_IP},
    {__LINE__, L("10.0.0.0/8", "192.168.1.0/24"), NULL, NULL, NULL, NULL, G, false, "192.168.1.77", AUTH_ALLOW},
    {__LINE__, L("10.0.0.0/8", "192.168.1.0/24"), NULL, NULL, NULL, NULL, G, false, "192.168.2.1", AUTH_DENY_IP},
    {__LINE__, L("127.0.0.1/32"), NULL, NULL, NULL, NULL, G, false, "127.0.0.1", AUTH_ALLOW},
    {__LINE__, L("127.0.0.1/32"), NULL, NULL, NULL, NULL, G, false, "127.0.0.2", AUTH_DENY_IP},
    {__LINE__, L("0.0.0.0/0"), NULL, NULL, NULL, NULL, G, false, "8.8.8.8", AUTH_ALLOW},
    /* CIDR block-list */
    {__LINE__, NULL, L("10.0.0.0/8"), NULL, NULL, NULL, G, false, "10.9.9.9", AUTH_DENY_IP},
    {__LINE__, NULL, L("10.0.0.0/8"), NULL, NULL, NULL, G, false, "11.9.9.9", AUTH_ALLOW},
    /* allow and block together: allow-list first, then the block-list */
    {__LINE__, L("10.0.0.0/8"), L("10.1.0.0/16"), NULL, NULL, NULL, G, false, "10.2.0.1", AUTH_ALLOW},
    {__LINE__, L("10.0.0.0/8"), L("10.1.0.0/16"), NULL, NULL, NULL, G, false, "10.1.0.1", AUTH_DENY_IP},
    {__LINE__, L("10.0.0.0/8"), L("10.1.0.0/16"), NULL, NULL, NULL, G, false, "12.0.0.1", AUTH_DENY_IP},
    {__LINE__, L("10.1.0.0/16"), L("10.0.0.0/8"), NULL, NULL, NULL, G, false, "10.1.0.1", AUTH_DENY_IP},
    /* IPv6, and families never cross */
    {__LINE__, L("2001:db8::/32"), NULL, NULL, NULL, NULL, G, false, "2001:db8::1", AUTH_ALLOW},
    {__LINE__, L("2001:db8::/32"), NULL, NULL, NULL, NULL, G, false, "2001:db9::1", AUTH_DENY_IP},
    {__LINE__, L("2001:db8::/32"), NULL, NULL, NULL, NULL, G, false, "10.0.0.1", AUTH_DENY_IP},
    {__LINE__, L("10.0.0.0/8"), NULL, NULL, NULL, NULL, G, false, "2001:db8::1", AUTH_DENY_IP},
    {__LINE__, NULL, L("::/0"), NULL, NULL, NULL, G, false, "10.0.0.1", AUTH_ALLOW},
    {__LINE__, NULL, L("2001:db8:1::/48"), NULL, NULL, NULL, G, false, "2001:db8:1:ffff::1", AUTH_DENY_IP},
    /* v4-mapped clients are unmapped; a v4-mapped prefix stays v6 and never matches them */
    {__LINE__, L("10.0.0.0/8"), NULL, NULL, NULL, NULL, G, false, "::ffff:10.1.2.3", AUTH_ALLOW},
    {__LINE__, NULL, L("10.0.0.0/8"), NULL, NULL, NULL, G, false, "::ffff:10.1.2.3", AUTH_DENY_IP},
    {__LINE__, NULL, L("::ffff:10.0.0.0/104"), NULL, NULL, NULL, G, false, "::ffff:10.1.2.3", AUTH_ALLOW},
    /* non-masked CIDRs are canonicalised */
    {__LINE__, L("10.1.2.3/8"), NULL, NULL, NULL, NULL, G, false, "10.200.0.1", AUTH_ALLOW},
    {__LINE__, NULL, L("192.168.1.77/24"), NULL, NULL, NULL, G, false, "192.168.1.1", AUTH_DENY_IP},
    {__LINE__, L("2001:db8::dead:beef/32"), NULL, NULL, NULL, NULL, G, false, "2001:db8:ffff::1", AUTH_ALLOW},
    {__LINE__, L("10.0.0.0/12"), NULL, NULL, NULL, NULL, G, false, "10.15.255.255", AUTH_ALLOW},
    {__LINE__, L("10.0.0.0/12"), NULL, NULL, NULL, NULL, G, false, "10.16.0.0", AUTH_DENY_IP},
    /* countries */
    {__LINE__, NULL, NULL, L("US"), NULL, NULL, G, false, "1.1.1.1", AUTH_ALLOW},
    {__LINE__, NULL, NULL, L("US"), NULL, NULL, G, false, "2.2.2.2", AUTH_DENY_COUNTRY},
    {__LINE__, NULL, NULL, L("US"), NULL, NULL, G, false, "9.9.9.9", AUTH_DENY_COUNTRY},
    {__LINE__, NULL, NULL, NULL, L("CN"), NULL, G, false, "2.2.2.2", AUTH_DENY_COUNTRY},
    {__LINE__, NULL, NULL, NULL, L("CN"), NULL, G, false, "9.9.9.9", AUTH_ALLOW},
    {__LINE__, NULL, NULL, NULL, L("CN"), NULL, G, false, "1.1.1.1", AUTH_ALLOW},
    {__LINE__, NULL, NULL, L("US", "CN"), L("CN"), NULL, G, false, "2.2.2.2", AUTH_DENY_COUNTRY},
    {__LINE__, NULL, NULL, L("US", "CN"), L("CN"), NULL, G, false, "1.1.1.1", AUTH_ALLOW},
    {__LINE__, NULL, NULL, L("US", "CN"), L("CN"), NULL, G, false, "3.3.3.3", AUTH_DENY_COUNTRY},
    {__LINE__, NULL, NULL, L("JP"), NULL, NULL, G, false, "2001:db8::1", AUTH_ALLOW},
    /* country codes are upper-cased */
    {__LINE__, NULL, NULL, L("us"), NULL, NULL, G, false, "1.1.1.1", AUTH_ALLOW},
    {__LINE__, NULL, NULL, NULL, L("cN"), NULL, G, false, "2.2.2.2", AUTH_DENY_COUNTRY},
    {__LINE__, NULL, NULL, L("usa"), NULL, NULL, G, false, "1.1.1.1", AUTH_DENY_COUNTRY},
    /* no geo: country rules fail closed */
    {__LINE__, NULL, NULL, L("US"), NULL, NULL, NULL, false, "1.1.1.1", AUTH_DENY_GEO_UNAVAILABLE},
    {__LINE__, NULL, NULL, NULL, L("CN"), NULL, NULL, false, "1.1.1.1", AUTH_DENY_GEO_UNAVAILABLE},
    {__LINE__, NULL, NULL, L("US"), NULL, NULL, &no_geo, false, "1.1.1.1", AUTH_DENY_GEO_UNAVAILABLE},
    {__LINE__, L("10.0.0.0/8"), NULL, NULL, NULL, NULL, NULL, false, "10.0.0.1", AUTH_ALLOW},
    /* CIDR first, then country */
    {__LINE__, NULL, L("1.1.1.0/24"), L("US"), NULL, NULL, G, false, "1.1.1.1", AUTH_DENY_IP},
    {__LINE__, L("2.0.0.0/8"), NULL, L("US"), NULL, NULL, G, false, "2.2.2.2", AUTH_DENY_COUNTRY},
    {__LINE__, L("2.0.0.0/8"), NULL, L("US"), NULL, NULL, NULL, false, "1.1.1.1", AUTH_DENY_IP},
    /* overlay (tunnel listeners): CIDR only */
    {__LINE__, NULL, NULL, L("US"), NULL, NULL, NULL, true, "100.64.5.6", AUTH_ALLOW},
    {__LINE__, NULL, NULL, L("US"), NULL, "enforce", NULL, true, "100.64.5.6", AUTH_ALLOW},
    {__LINE__, L("100.64.0.0/10"), NULL, L("US"), NULL, NULL, NULL, true, "100.64.5.6", AUTH_ALLOW},
    {__LINE__, L("100.64.1.0/24"), NULL, NULL, NULL, NULL, NULL, true, "100.64.5.6", AUTH_DENY_IP},
    {__LINE__, NULL, L("100.64.5.0/24"), NULL, NULL, NULL, NULL, true, "100.64.5.6", AUTH_DENY_IP},
    /* CrowdSec without a bouncer: enforce fails closed, observe and off allow */
    {__LINE__, NULL, NULL, NULL, NULL, "enforce", G, false, "1.1.1.1", AUTH_DENY_CROWDSEC_UNAVAILABLE},
    {__LINE__, NULL, NULL, NULL, NULL, "observe", G, false, "1.1.1.1", AUTH_ALLOW},
    {__LINE__, NULL, NULL, NULL, NULL, "off", G, false, "1.1.1.1", AUTH_ALLOW},
    {__LINE__, NULL, NULL, NULL, NULL, "", G, false, "1.1.1.1", AUTH_ALLOW},
    {__LINE__, NULL, NULL, NULL, NULL, "ENFORCE", G, false, "1.1.1.1", AUTH_ALLOW},
    {__LINE__, L("1.0.0.0/8"), NULL, NULL, NULL, "enforce", G, false, "2.2.2.2", AUTH_DENY_IP},
    {__LINE__, NULL, NULL, L("US"), NULL, "enforce", G, false, "2.2.2.2", AUTH_DENY_COUNTRY},
    {__LINE__, NULL, NULL, L("US"), NULL, "enforce", G, false, "1.1.1.1", AUTH_DENY_CROWDSEC_UNAVAILABLE},
    /* an unresolved client address is denied whenever a filter exists */
    {__LINE__, L("0.0.0.0/0"), NULL, NULL, NULL, NULL, G, false, NULL, AUTH_DENY_IP},
    {__LINE__, NULL, NULL, NULL, NULL, "observe", G, false, NULL, AUTH_DENY_IP},
    /* invalid entries are skipped, but an allow-list of only invalid entries admits nobody
     * (the reference would admit everybody: docs/configuration.md) */
    {__LINE__, L("bogus", "10.0.0.0/33"), NULL, NULL, NULL, NULL, G, false, "10.0.0.1", AUTH_DENY_IP},
    {__LINE__, L("bogus"), NULL, NULL, NULL, NULL, G, true, "10.0.0.1", AUTH_DENY_IP},
    {__LINE__, L("bogus", "10.0.0.0/8"), NULL, NULL, NULL, NULL, G, false, "10.0.0.1", AUTH_ALLOW},
    {__LINE__, L("bogus", "10.0.0.0/8"), NULL, NULL, NULL, NULL, G, false, "11.0.0.1", AUTH_DENY_IP},
    {__LINE__, L("10.0.0.1"), L("11.0.0.0/33"), NULL, NULL, "observe", G, false, "12.0.0.1", AUTH_DENY_IP},
};
/* clang-format on */

static void test_matrix(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof matrix / sizeof matrix[0]; i++) {
        const struct mcase *c = &matrix[i];
        struct auth_restrict *f = compile(c, NULL);
        struct auth_ip ip;
        if (c->ip)
            assert_true(auth_ip_parse(c->ip, &ip));
        enum auth_verdict v = auth_restrict_check(f, c->ip ? &ip : NULL, c->overlay, c->geo);
        if (v != c->want)
            fail_msg("case at line %d (%s): got %s, want %s", c->line, c->ip ? c->ip : "(none)",
                     auth_verdict_name(v), auth_verdict_name(c->want));
        auth_restrict_unref(f);
    }
}

/* Overlay checks and CIDR denials never consult the geo database. */
static void test_geo_not_consulted(void **state)
{
    (void)state;
    struct mcase c = {__LINE__, L("10.0.0.0/8"), NULL, L("US"), NULL, NULL, G, false, NULL, 0};
    struct auth_restrict *f = compile(&c, NULL);
    struct auth_ip ip;
    geo_calls = 0;
    assert_true(auth_ip_parse("11.0.0.1", &ip));
    assert_int_equal(auth_restrict_check(f, &ip, false, &table_geo), AUTH_DENY_IP);
    assert_true(auth_ip_parse("10.1.2.3", &ip));
    assert_int_equal(auth_restrict_check(f, &ip, true, &table_geo), AUTH_ALLOW);
    assert_int_equal(geo_calls, 0);
    assert_int_equal(auth_restrict_check(f, &ip, false, &table_geo), AUTH_ALLOW);
    assert_int_equal(geo_calls, 1);
    auth_restrict_unref(f);
}

/* ---- compilation ---- */

static void test_empty_is_no_filter(void **state)
{
    (void)state;
    struct auth_restrict_spec spec = {0};
    struct auth_restrict *f = (struct auth_restrict *)1;
    assert_int_equal(auth_restrict_new(&spec, &f, NULL), NB_OK);
    assert_null(f);
    spec.crowdsec_mode = "off";
    assert_int_equal(auth_restrict_new(&spec, &f, NULL), NB_OK);
    assert_null(f);
    spec.crowdsec_mode = "observe";
    assert_int_equal(auth_restrict_new(&spec, &f, NULL), NB_OK);
    assert_non_null(f);
    assert_int_equal(auth_restrict_crowdsec_mode(f), AUTH_CROWDSEC_OBSERVE);
    assert_false(auth_restrict_has_country_rules(f));
    assert_int_equal(auth_restrict_check(NULL, NULL, false, NULL), AUTH_ALLOW);
    /* references */
    assert_ptr_equal(auth_restrict_ref(f), f);
    auth_restrict_unref(f);
    auth_restrict_unref(f);
    auth_restrict_unref(NULL);
}

static void test_canonical_and_skipped(void **state)
{
    (void)state;
    /* clang-format off */
    static const struct { const char *in, *out; } cases[] = {
        {"10.1.2.3/8", "10.0.0.0/8"},
        {"192.168.1.77/24", "192.168.1.0/24"},
        {"172.16.255.1/12", "172.16.0.0/12"},
        {"1.2.3.4/32", "1.2.3.4/32"},
        {"1.2.3.4/0", "0.0.0.0/0"},
        {"2001:db8::dead:beef/32", "2001:db8::/32"},
        {"2001:db8:abcd:12ff::1/60", "2001:db8:abcd:12f0::/60"},
        {"::1/128", "::1/128"},
        {"fe80::1/0", "::/0"},
        /* invalid: skipped */
        {"bogus", NULL},
        {"10.0.0.1", NULL},          /* a bare address is not a prefix */
        {"10.0.0.0/33", NULL},
        {"10.0.0.0/08", NULL},       /* leading zero */
        {"10.0.0.0/+8", NULL},
        {"10.0.0.0/", NULL},
        {"/8", NULL},
        {"10.0.0/8", NULL},
        {"::/129", NULL},
        {"fe80::1%eth0/64", NULL},   /* zones are not allowed in prefixes */
        {"10.0.0.0/8 ", NULL},
        {"", NULL},
    };
    /* clang-format on */
    size_t n = sizeof cases / sizeof cases[0], valid = 0;
    const char *in[sizeof cases / sizeof cases[0]];
    for (size_t i = 0; i < n; i++) {
        in[i] = cases[i].in;
        valid += cases[i].out != NULL;
    }
    struct auth_restrict_spec spec = {.blocked_cidrs = in, .n_blocked_cidrs = n};
    struct auth_restrict *f = NULL;
    size_t skipped = 0;
    assert_int_equal(auth_restrict_new(&spec, &f, &skipped), NB_OK);
    assert_non_null(f);
    assert_int_equal(skipped, n - valid);
    assert_int_equal(auth_restrict_n_cidrs(f, true), valid);
    assert_int_equal(auth_restrict_n_cidrs(f, false), 0);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (cases[i].out == NULL)
            continue;
        char buf[64];
        assert_string_equal(auth_restrict_cidr_str(f, true, k++, buf, sizeof buf), cases[i].out);
    }
    auth_restrict_unref(f);
}

static void test_ip_parse(void **state)
{
    (void)state;
    struct auth_ip ip;
    char buf[64];
    assert_true(auth_ip_parse("1.2.3.4", &ip));
    assert_true(ip.v4);
    assert_string_equal(auth_ip_str(&ip, buf, sizeof buf), "1.2.3.4");
    assert_true(auth_ip_parse("::ffff:1.2.3.4", &ip));
    assert_true(ip.v4);
    assert_string_equal(auth_ip_str(&ip, buf, sizeof buf), "1.2.3.4");
    assert_true(auth_ip_parse("2001:db8::1", &ip));
    assert_false(ip.v4);
    assert_string_equal(auth_ip_str(&ip, buf, sizeof buf), "2001:db8::1");
    assert_false(auth_ip_parse("", &ip));
    assert_false(auth_ip_parse("1.2.3", &ip));
    assert_false(auth_ip_parse("example.com", &ip));
    assert_false(auth_ip_parse(NULL, &ip));

    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:10.9.8.7", &s6.sin6_addr);
    assert_true(auth_ip_from_sockaddr((struct sockaddr *)&s6, &ip));
    assert_true(ip.v4);
    assert_memory_equal(ip.b, "\x0a\x09\x08\x07", 4);
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &s4.sin_addr);
    assert_true(auth_ip_from_sockaddr((struct sockaddr *)&s4, &ip));
    assert_true(ip.v4);
    struct sockaddr su = {.sa_family = AF_UNIX};
    assert_false(auth_ip_from_sockaddr(&su, &ip));
    assert_false(auth_ip_from_sockaddr(NULL, &ip));
}

static void test_verdict_names(void **state)
{
    (void)state;
    assert_string_equal(auth_verdict_name(AUTH_ALLOW), "allow");
    assert_string_equal(auth_verdict_name(AUTH_DENY_IP), "ip_restricted");
    assert_string_equal(auth_verdict_name(AUTH_DENY_COUNTRY), "country_restricted");
    assert_string_equal(auth_verdict_name(AUTH_DENY_GEO_UNAVAILABLE), "geo_unavailable");
    assert_string_equal(auth_verdict_name(AUTH_DENY_CROWDSEC_BAN), "crowdsec_ban");
    assert_string_equal(auth_verdict_name(AUTH_DENY_CROWDSEC_CAPTCHA), "crowdsec_captcha");
    assert_string_equal(auth_verdict_name(AUTH_DENY_CROWDSEC_THROTTLE), "crowdsec_throttle");
    assert_string_equal(auth_verdict_name(AUTH_DENY_CROWDSEC_UNAVAILABLE), "crowdsec_unavailable");
    assert_string_equal(auth_verdict_name(AUTH_VERDICT_COUNT), "unknown");
}

/* ---- deny-log rate limit and counters ---- */

static void test_log_rate_limit(void **state)
{
    (void)state;
    struct mcase c = {__LINE__, L("10.0.0.0/8"), NULL, NULL, NULL, NULL, NULL, false, NULL, 0};
    struct auth_restrict *f = compile(&c, NULL);
    uint64_t sup = 99;
    assert_true(auth_restrict_log_deny(f, AUTH_DENY_IP, 0, &sup)); /* first always */
    assert_int_equal(sup, 0);
    assert_false(auth_restrict_log_deny(f, AUTH_DENY_IP, 1, &sup));
    assert_false(auth_restrict_log_deny(f, AUTH_DENY_IP, 9999, &sup));
    /* another verdict has its own window */
    assert_true(auth_restrict_log_deny(f, AUTH_DENY_COUNTRY, 5000, &sup));
    assert_true(auth_restrict_log_deny(f, AUTH_DENY_IP, 10000, &sup));
    assert_int_equal(sup, 2);
    assert_false(auth_restrict_log_deny(f, AUTH_DENY_IP, 19999, &sup));
    assert_true(auth_restrict_log_deny(f, AUTH_DENY_IP, 20000, &sup));
    assert_int_equal(sup, 1);
    auth_restrict_unref(f);

    uint64_t before = auth_restrict_denials(AUTH_DENY_IP, AUTH_PROTO_UDP);
    auth_restrict_count_deny(AUTH_DENY_IP, AUTH_PROTO_UDP);
    assert_int_equal(auth_restrict_denials(AUTH_DENY_IP, AUTH_PROTO_UDP), before + 1);
    assert_int_equal(auth_restrict_denials(AUTH_VERDICT_COUNT, AUTH_PROTO_UDP), 0);
    assert_string_equal(auth_proto_name(AUTH_PROTO_TLS), "tls");
}

/* ---- differential: prefix matching against a naive bit-by-bit reference ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static bool naive_contains(const uint8_t *net, unsigned bits, const uint8_t *ip)
{
    for (unsigned i = 0; i < bits; i++) {
        unsigned bit = 7 - i % 8;
        if (((net[i / 8] >> bit) & 1) != ((ip[i / 8] >> bit) & 1))
            return false;
    }
    return true;
}

static void test_differential(void **state)
{
    (void)state;
    for (int round = 0; round < 20000; round++) {
        bool v4 = rnd() & 1;
        unsigned len = v4 ? 4 : 16, bits = rnd() % (len * 8 + 1);
        uint8_t net[16], ip[16];
        for (unsigned i = 0; i < 16; i++)
            net[i] = ip[i] = (uint8_t)rnd();
        /* make near misses common: copy a random number of leading bits */
        unsigned share = rnd() % (len * 8 + 1);
        for (unsigned i = 0; i < share; i++) {
            unsigned bit = 7 - i % 8;
            ip[i / 8] = (uint8_t)((ip[i / 8] & ~(1u << bit)) | (net[i / 8] & (1u << bit)));
        }
        char a[64], cidr[80], is[64];
        inet_ntop(v4 ? AF_INET : AF_INET6, net, a, sizeof a);
        snprintf(cidr, sizeof cidr, "%s/%u", a, bits);
        inet_ntop(v4 ? AF_INET : AF_INET6, ip, is, sizeof is);
        const char *list[] = {cidr};
        struct auth_restrict_spec spec = {.allowed_cidrs = list, .n_allowed_cidrs = 1};
        struct auth_restrict *f = NULL;
        assert_int_equal(auth_restrict_new(&spec, &f, NULL), NB_OK);
        struct auth_ip cip;
        assert_true(auth_ip_parse(is, &cip));
        /* A v6 address in ::ffff:0:0/96 unmaps to v4 and then never matches a v6 prefix. */
        bool mapped = !v4 && cip.v4;
        bool want = !mapped && naive_contains(net, bits, ip);
        enum auth_verdict got = auth_restrict_check(f, &cip, false, NULL);
        if ((got == AUTH_ALLOW) != want)
            fail_msg("round %d: %s in %s: got %s", round, is, cidr, auth_verdict_name(got));
        auth_restrict_unref(f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matrix),
        cmocka_unit_test(test_geo_not_consulted),
        cmocka_unit_test(test_empty_is_no_filter),
        cmocka_unit_test(test_canonical_and_skipped),
        cmocka_unit_test(test_ip_parse),
        cmocka_unit_test(test_verdict_names),
        cmocka_unit_test(test_log_rate_limit),
        cmocka_unit_test(test_differential),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
