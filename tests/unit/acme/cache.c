/* SPDX-License-Identifier: BSD-3-Clause */
/* acme/cache.c: the autocert.DirCache layout (split of "<domain>" entries), the renewal time,
 * atomic writes with 0700/0600, name checks, and a certificate written by one round trip that
 * tls_cert loads back (openssl makes the certificate). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "acme/cache.h"
#include "acme/jws.h"
#include "platform/err.h"
#include "tls/cert.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[64];
static char dir[96];

static int setup(void **st)
{
    strcpy(tmp, "/tmp/nbt-acme-cache.XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    snprintf(dir, sizeof dir, "%s/certs", tmp);
    return 0;
}

static int teardown(void **st)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_renew_at(void **st)
{
    /* 90 days: 30 days before expiry */
    assert_int_equal(acme_renew_at(0, 90 * 86400), 60 * 86400);
    /* 6 days: a third */
    assert_int_equal(acme_renew_at(1000, 1000 + 6 * 86400), 1000 + 4 * 86400);
    /* 30 s (pebble certificateValidityPeriod 30): 10 s before */
    assert_int_equal(acme_renew_at(100, 130), 120);
    /* exactly 90 days boundary: a third = 30 days */
    assert_int_equal(acme_renew_at(0, 90 * 86400), 90 * 86400 - 30 * 86400);
    /* a year: still 30 days */
    assert_int_equal(acme_renew_at(0, 365 * 86400), 335 * 86400);
    /* broken validity (after < before): 30 days before not_after */
    assert_int_equal(acme_renew_at(100, 50), 50 - 30 * 86400);
}

static void test_split(void **st)
{
    const char *e = "-----BEGIN EC PRIVATE KEY-----\nAAA\n-----END EC PRIVATE KEY-----\n"
                    "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n"
                    "-----BEGIN CERTIFICATE-----\nCCC\n-----END CERTIFICATE-----\n";
    const char *k, *c;
    size_t kl, cl;
    assert_int_equal(acme_cache_split(e, strlen(e), &k, &kl, &c, &cl), NB_OK);
    assert_int_equal(kl, 64);
    assert_memory_equal(c, "-----BEGIN CERTIFICATE-----\nBBB", 31);
    assert_int_equal(cl, strlen(e) - 64);
    const char *nokey = "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
    assert_int_equal(acme_cache_split(nokey, strlen(nokey), &k, &kl, &c, &cl), NB_E_PARSE);
    const char *nocert = "-----BEGIN EC PRIVATE KEY-----\nAAA\n-----END EC PRIVATE KEY-----\n";
    assert_int_equal(acme_cache_split(nocert, strlen(nocert), &k, &kl, &c, &cl), NB_E_PARSE);
}

static void test_names(void **st)
{
    assert_true(acme_cache_name_ok("a.example.test"));
    assert_true(acme_cache_name_ok("acme_account+key"));
    assert_true(acme_cache_name_ok("tok+http-01"));
    assert_false(acme_cache_name_ok(""));
    assert_false(acme_cache_name_ok("."));
    assert_false(acme_cache_name_ok(".."));
    assert_false(acme_cache_name_ok("../x"));
    assert_false(acme_cache_name_ok(NULL));
    char *b;
    size_t l;
    assert_int_equal(acme_cache_get(dir, "../etc", &b, &l), NB_E_INVAL);
    assert_int_equal(acme_cache_put(dir, "a/b", "x", 1), NB_E_INVAL);
}

static void test_put_get(void **st)
{
    char *b;
    size_t l;
    assert_int_equal(acme_cache_get(dir, "missing.test", &b, &l), NB_E_NOTFOUND);
    assert_int_equal(acme_cache_put(dir, "x.test", "hello", 5), NB_OK);
    struct stat sd, sf;
    assert_int_equal(stat(dir, &sd), 0);
    assert_int_equal(sd.st_mode & 0777, 0700);
    char p[256];
    snprintf(p, sizeof p, "%s/x.test", dir);
    assert_int_equal(stat(p, &sf), 0);
    assert_int_equal(sf.st_mode & 0777, 0600);
    assert_int_equal(acme_cache_get(dir, "x.test", &b, &l), NB_OK);
    assert_int_equal(l, 5);
    assert_string_equal(b, "hello");
    acme_pem_free(b, l);
    /* overwrite is atomic: no temporary file left */
    assert_int_equal(acme_cache_put(dir, "x.test", "world!", 6), NB_OK);
    assert_int_equal(acme_cache_get(dir, "x.test", &b, &l), NB_OK);
    assert_string_equal(b, "world!");
    acme_pem_free(b, l);
    DIR *d = opendir(dir);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' || strlen(e->d_name) > 2)
            files++, assert_false(strstr(e->d_name, ".tmp"));
    closedir(d);
    assert_int_equal(files, 1);
    acme_cache_del(dir, "x.test");
    assert_int_equal(acme_cache_get(dir, "x.test", &b, &l), NB_E_NOTFOUND);
    /* over 1 MiB is refused */
    char *big = calloc(1, ACME_CACHE_MAX + 1);
    assert_int_equal(acme_cache_put(dir, "big.test", big, ACME_CACHE_MAX + 1), NB_OK);
    free(big);
    assert_int_equal(acme_cache_get(dir, "big.test", &b, &l), NB_E_TOO_BIG);
}

/* A "<domain>" entry as netbird-proxy (autocert) writes it loads as a tls_cert. */
static void test_entry_roundtrip(void **st)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout k.pem -out c.pem -days 90 -subj /CN=r.test -addext "
             "subjectAltName=DNS:r.test 2>/dev/null && openssl ec -in k.pem -out ek.pem "
             "2>/dev/null && cat ek.pem c.pem > certs/r.test && chmod 600 certs/r.test",
             tmp);
    assert_int_equal(system(cmd), 0);
    char *b;
    size_t l;
    assert_int_equal(acme_cache_get(dir, "r.test", &b, &l), NB_OK);
    assert_non_null(strstr(b, "BEGIN EC PRIVATE KEY"));
    const char *k, *c;
    size_t kl, cl;
    assert_int_equal(acme_cache_split(b, l, &k, &kl, &c, &cl), NB_OK);
    struct tls_cert *t;
    assert_int_equal(tls_cert_from_pem(c, cl, k, kl, &t), NB_OK);
    assert_true(tls_cert_covers(t, "r.test"));
    int64_t life = tls_cert_not_after(t) - tls_cert_not_before(t);
    assert_int_equal(life, 90 * 86400);
    assert_int_equal(acme_renew_at(tls_cert_not_before(t), tls_cert_not_after(t)),
                     tls_cert_not_after(t) - 30 * 86400);
    tls_cert_unref(t);
    /* written back by acme_cache_put, read again: byte-identical */
    assert_int_equal(acme_cache_put(dir, "r2.test", b, l), NB_OK);
    char *b2;
    size_t l2;
    assert_int_equal(acme_cache_get(dir, "r2.test", &b2, &l2), NB_OK);
    assert_int_equal(l, l2);
    assert_memory_equal(b, b2, l);
    acme_pem_free(b, l);
    acme_pem_free(b2, l2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_renew_at),        cmocka_unit_test(test_split),
        cmocka_unit_test(test_names),           cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_entry_roundtrip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
