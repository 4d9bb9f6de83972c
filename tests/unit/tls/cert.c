/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tls/cert.c: loading PEM chains and keys (files and memory), the leaf accessors, host name
 * coverage, and self-signed generation, checked by the openssl command line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/err.h"
#include "tls/tls.h"

#include "helpers.h"

#include <time.h>

static int setup(void **state)
{
    make_tdir();
    return make_pki() == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    struct tls_stats st;
    tls_stats(&st);
    remove_tdir();
    return st.certs_live == 0 ? 0 : -1;
}

static struct tls_cert *load(const char *chain, const char *key)
{
    char c[512], k[512];
    struct tls_cert *cert = NULL;
    tpath(c, sizeof c, chain);
    tpath(k, sizeof k, key);
    assert_int_equal(tls_cert_load_pem(c, k, &cert), NB_OK);
    return cert;
}

static void test_leaf_facts(void **state)
{
    struct tls_cert *a = load("a.chain", "a.key");
    const uint8_t *serial;
    size_t sl = tls_cert_serial(a, &serial);
    assert_int_equal(sl, 6);
    assert_memory_equal(serial, "\x0a\x1b\x2c\x3d\x4e\x5f", 6);
    assert_string_equal(tls_cert_issuer_cn(a), "NB Test CA");
    assert_int_equal(tls_cert_key_type(a), TLS_KEY_ECDSA);
    int64_t now = (int64_t)time(NULL);
    assert_true(tls_cert_not_before(a) <= now && tls_cert_not_before(a) > now - 3600);
    assert_true(llabs(tls_cert_not_after(a) - (now + 20 * 86400)) < 3600);
    /* DNS SANs only: the IP and email entries are not host names. */
    assert_int_equal(tls_cert_san_count(a), 2);
    bool plain = strcmp(tls_cert_san(a, 0), "a.test") == 0;
    assert_string_equal(tls_cert_san(a, plain ? 0 : 1), "a.test");
    assert_string_equal(tls_cert_san(a, plain ? 1 : 0), "*.wild.test");
    assert_null(tls_cert_san(a, 2));

    struct tls_cert *b = load("b.pem", "b.key");
    assert_int_equal(tls_cert_key_type(b), TLS_KEY_RSA);
    sl = tls_cert_serial(b, &serial);
    assert_int_equal(sl, 2);
    assert_memory_equal(serial, "\x10\x92", 2); /* 4242 */
    assert_false(tls_cert_same_leaf(a, b));

    /* The same files again: same leaf (what a reload compares). */
    struct tls_cert *a2 = load("a.pem", "a.key");
    assert_true(tls_cert_same_leaf(a, a2));
    tls_cert_unref(a2);
    tls_cert_unref(b);

    /* Refcounting: the last unref frees. */
    assert_ptr_equal(tls_cert_ref(a), a);
    tls_cert_unref(a);
    struct tls_stats st;
    tls_stats(&st);
    assert_int_equal(st.certs_live, 1);
    tls_cert_unref(a);
    tls_stats(&st);
    assert_int_equal(st.certs_live, 0);
    tls_cert_unref(NULL);
}

static void test_covers(void **state)
{
    struct tls_cert *a = load("a.pem", "a.key");
    struct {
        const char *host;
        bool want;
    } cases[] = {
        {"a.test", true},         {"A.TEST", true},
        {"a.test.", true},        {"x.wild.test", true},
        {"X.Wild.Test", true},    {"wild.test", false},
        {"y.x.wild.test", false}, {"b.test", false},
        {"127.0.0.1", false},     {"", false},
        {".wild.test", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (tls_cert_covers(a, cases[i].host) != cases[i].want)
            fail_msg("case %zu (%s)", i + 1, cases[i].host);
    tls_cert_unref(a);
}

static void test_load_errors(void **state)
{
    char c[512], k[512];
    struct tls_cert *x = NULL;
    tpath(c, sizeof c, "a.pem");
    tpath(k, sizeof k, "b.key");
    assert_int_equal(tls_cert_load_pem(c, k, &x), NB_E_PARSE); /* key of another cert */
    tpath(k, sizeof k, "missing.key");
    assert_int_equal(tls_cert_load_pem(c, k, &x), NB_E_IO);
    assert_int_equal(sh("head -c 3000000 /dev/zero > big.pem"), 0);
    tpath(k, sizeof k, "a.key");
    tpath(c, sizeof c, "big.pem");
    assert_int_equal(tls_cert_load_pem(c, k, &x), NB_E_TOO_BIG);
    assert_int_equal(tls_cert_from_pem("junk", 4, "junk", 4, &x), NB_E_PARSE);
    assert_int_equal(tls_cert_from_pem(NULL, 0, "x", 1, &x), NB_E_INVAL);

    /* From memory, then the caller's buffers are its own. */
    size_t cl, kl;
    char *chain = slurp("a.chain", &cl), *key = slurp("a.key", &kl);
    assert_int_equal(tls_cert_from_pem(chain, cl, key, kl, &x), NB_OK);
    assert_int_equal(tls_cert_san_count(x), 2);
    assert_true(tls_cert_covers(x, "a.test"));
    tls_cert_unref(x);
    free(chain);
    free(key);
}

static void test_selfsigned(void **state)
{
    const char *names[] = {"localhost", "*.local.test", "nb.example"};
    char *cpem = NULL, *kpem = NULL;
    size_t cl = 0, kl = 0;
    assert_int_equal(tls_selfsigned_pem(names, 3, 10, &cpem, &cl, &kpem, &kl), NB_OK);
    assert_true(contains(cpem, "-----BEGIN CERTIFICATE-----"));
    assert_true(contains(kpem, "-----BEGIN EC PRIVATE KEY-----"));
    /* openssl reads what wolfCrypt wrote. */
    char p[512];
    tpath(p, sizeof p, "ss.pem");
    FILE *f = fopen(p, "w");
    fwrite(cpem, 1, cl, f);
    fclose(f);
    tpath(p, sizeof p, "ss.key");
    f = fopen(p, "w");
    fwrite(kpem, 1, kl, f);
    fclose(f);
    assert_int_equal(sh("openssl x509 -in ss.pem -noout -text > ss.txt"), 0);
    char *txt = slurp("ss.txt", NULL);
    assert_true(contains(txt, "Subject: CN = localhost") || contains(txt, "CN = localhost"));
    assert_true(contains(txt, "DNS:localhost, DNS:*.local.test, DNS:nb.example"));
    assert_true(contains(txt, "ecdsa-with-SHA256"));
    assert_true(contains(txt, "prime256v1") || contains(txt, "P-256"));
    free(txt);
    /* The key matches the certificate (openssl's view). */
    assert_int_equal(sh("test \"$(openssl x509 -in ss.pem -noout -pubkey)\" = "
                        "\"$(openssl pkey -in ss.key -pubout)\""),
                     0);
    /* A self-signed certificate verifies against itself. */
    assert_int_equal(sh("openssl verify -partial_chain -CAfile ss.pem ss.pem"), 0);
    tls_pem_free(kpem, kl);
    tls_pem_free(cpem, cl);

    struct tls_cert *c = NULL;
    assert_int_equal(tls_selfsigned_new(names, 3, 0, &c), NB_OK);
    assert_int_equal(tls_cert_key_type(c), TLS_KEY_ECDSA);
    assert_true(tls_cert_covers(c, "localhost"));
    assert_true(tls_cert_covers(c, "x.local.test"));
    assert_false(tls_cert_covers(c, "other.test"));
    int64_t now = (int64_t)time(NULL);
    assert_true(llabs(tls_cert_not_after(c) - (now + 365 * 86400)) < 3600);
    tls_cert_unref(c);

    const char *bad[] = {""};
    assert_int_equal(tls_selfsigned_new(bad, 1, 0, &c), NB_E_INVAL);
    assert_int_equal(tls_selfsigned_new(names, 0, 0, &c), NB_E_INVAL);
    /* A name too long for the CN still works (it lives in the SAN). */
    char longname[200];
    memset(longname, 'q', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    longname[50] = '.';
    const char *ln[] = {longname};
    assert_int_equal(tls_selfsigned_new(ln, 1, 1, &c), NB_OK);
    assert_true(tls_cert_covers(c, longname));
    tls_cert_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leaf_facts),
        cmocka_unit_test(test_covers),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_selfsigned),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
