/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * auth/geo against the real libmaxminddb and MaxMind's own test database (GeoIP2-City-Test.mmdb,
 * from Debian's libmaxminddb source package: scripts/fetch-geo-testdata.sh). The expected
 * countries are the database's, cross-checked with `mmdblookup` (mmdb-bin) when the cases were
 * written: 81.2.69.142 GB, 89.160.20.112 SE, 216.160.83.56 US, 2001:218:: JP, 2a02:cf40:: NO,
 * 1.1.1.1 and 10.0.0.1 absent. Also: the file choice in a --geo-data-dir (lexically last
 * GeoLite2-City_*.mmdb, other names ignored), no file -> no geo without error, a broken file
 * -> error, and the restriction check running on the real lookup.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include <cmocka.h>

#include "auth/geo.h"
#include "platform/err.h"

#define CITY_DB NB_GEO_TEST_DATA "/GeoIP2-City-Test.mmdb"

static char dir[64];

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
    (void)state;
    if (access(CITY_DB, R_OK) != 0) {
        fprintf(stderr, "%s missing: run scripts/fetch-geo-testdata.sh\n", CITY_DB);
        return -1; /* fails every test of the group: a missing database is not a pass */
    }
    snprintf(dir, sizeof dir, "/tmp/nb-geo-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *cc_of(const struct auth_geo *g, const char *ip, char cc[3])
{
    struct auth_ip a;
    assert_true(auth_ip_parse(ip, &a));
    return auth_geo_country(g, &a, cc) ? cc : "";
}

static void test_lookups(void **state)
{
    (void)state;
    struct auth_geo *g = NULL;
    char err[256] = "";
    assert_int_equal(auth_geo_open_file(CITY_DB, &g, err, sizeof err), NB_OK);
    char cc[3];
    /* clang-format off */
    static const struct { const char *ip, *cc; } cases[] = {
        {"81.2.69.142", "GB"},
        {"89.160.20.112", "SE"},
        {"216.160.83.56", "US"},
        {"2001:218::", "JP"},
        {"2a02:cf40::", "NO"},
        {"::ffff:81.2.69.142", "GB"}, /* unmapped before the lookup */
        {"1.1.1.1", ""},
        {"10.0.0.1", ""},
        {"::1", ""},
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (strcmp(cc_of(g, cases[i].ip, cc), cases[i].cc) != 0)
            fail_msg("%s: got \"%s\", want \"%s\"", cases[i].ip, cc_of(g, cases[i].ip, cc),
                     cases[i].cc);
    struct auth_ip a;
    assert_true(auth_ip_parse("81.2.69.142", &a));
    assert_false(auth_geo_country(NULL, &a, cc));
    assert_string_equal(auth_geo_path(g), CITY_DB);
    auth_geo_free(g);
    auth_geo_free(NULL);
}

/* The §4.6 country step on the real database. */
static void test_check_with_real_geo(void **state)
{
    (void)state;
    struct auth_geo *g = NULL;
    assert_int_equal(auth_geo_open_file(CITY_DB, &g, NULL, 0), NB_OK);
    struct auth_geo_ops ops = auth_geo_ops(g);
    const char *allow[] = {"gb", "se"}, *block[] = {"SE"};
    struct auth_restrict_spec spec = {.allowed_countries = allow,
                                      .n_allowed_countries = 2,
                                      .blocked_countries = block,
                                      .n_blocked_countries = 1};
    struct auth_restrict *f = NULL;
    assert_int_equal(auth_restrict_new(&spec, &f, NULL), NB_OK);
    struct auth_ip a;
    assert_true(auth_ip_parse("81.2.69.142", &a));
    assert_int_equal(auth_restrict_check(f, &a, false, &ops), AUTH_ALLOW);
    assert_true(auth_ip_parse("89.160.20.112", &a));
    assert_int_equal(auth_restrict_check(f, &a, false, &ops), AUTH_DENY_COUNTRY);
    assert_true(auth_ip_parse("216.160.83.56", &a));
    assert_int_equal(auth_restrict_check(f, &a, false, &ops), AUTH_DENY_COUNTRY);
    assert_true(auth_ip_parse("1.1.1.1", &a)); /* unknown + allow-list */
    assert_int_equal(auth_restrict_check(f, &a, false, &ops), AUTH_DENY_COUNTRY);
    struct auth_geo_ops none = auth_geo_ops(NULL);
    assert_int_equal(auth_restrict_check(f, &a, false, &none), AUTH_DENY_GEO_UNAVAILABLE);
    auth_restrict_unref(f);
    auth_geo_free(g);
}

static void test_directory(void **state)
{
    (void)state;
    char p[256], err[512];
    struct auth_geo *g = (struct auth_geo *)1;
    /* disabled and "" never look */
    assert_int_equal(auth_geo_open(dir, true, &g, err, sizeof err), NB_OK);
    assert_null(g);
    assert_non_null(strstr(err, "disabled"));
    assert_int_equal(auth_geo_open("", false, &g, err, sizeof err), NB_OK);
    assert_null(g);
    /* a directory that does not exist, and one without a matching name: no geo, no error */
    assert_int_equal(auth_geo_open("/nonexistent/nb-geo", false, &g, err, sizeof err), NB_OK);
    assert_null(g);
    snprintf(p, sizeof p, "%s/GeoLite2-Country_20250101.mmdb", dir);
    copy_file(CITY_DB, p);
    snprintf(p, sizeof p, "%s/GeoLite2-City.mmdb", dir);
    copy_file(CITY_DB, p);
    assert_int_equal(auth_geo_open(dir, false, &g, err, sizeof err), NB_OK);
    assert_null(g);
    assert_non_null(strstr(err, "GeoLite2-City_*.mmdb"));
    /* the lexically last GeoLite2-City_*.mmdb wins: make the older one broken to prove it */
    snprintf(p, sizeof p, "%s/GeoLite2-City_20240101.mmdb", dir);
    write_file(p, "not a maxmind database");
    snprintf(p, sizeof p, "%s/GeoLite2-City_20250601.mmdb", dir);
    copy_file(CITY_DB, p);
    assert_int_equal(auth_geo_open(dir, false, &g, err, sizeof err), NB_OK);
    assert_non_null(g);
    assert_string_equal(auth_geo_path(g), p);
    char cc[3];
    assert_string_equal(cc_of(g, "89.160.20.112", cc), "SE");
    auth_geo_free(g);
    /* a matching file that is not a database is a start-up error naming it */
    snprintf(p, sizeof p, "%s/GeoLite2-City_20991231.mmdb", dir);
    write_file(p, "garbage garbage garbage");
    g = (struct auth_geo *)1;
    assert_int_equal(auth_geo_open(dir, false, &g, err, sizeof err), NB_E_IO);
    assert_null(g);
    assert_non_null(strstr(err, "GeoLite2-City_20991231.mmdb"));
    /* MaxMind's deliberately broken databases fail the open too, or read no country */
    assert_int_equal(auth_geo_open_file(NB_GEO_TEST_DATA
                                        "/GeoIP2-City-Test-Invalid-Node-Count.mmdb",
                                        &g, err, sizeof err),
                     NB_E_IO);
    assert_null(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_check_with_real_geo),
        cmocka_unit_test(test_directory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
