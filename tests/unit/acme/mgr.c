/* SPDX-License-Identifier: BSD-3-Clause */
/* acme/mgr.c without a CA: the cert dir and account key (new, existing, legacy name), a cached
 * certificate made by openssl served without any order, the host policy of the lookups, the
 * http-01 handler through the manager, states, and an unreachable CA failing the attempt.
 * (Orders against a real CA: tests/interop/acme_test.sh.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "acme/jws.h"
#include "acme/mgr.h"
#include "platform/err.h"
#include "platform/loop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[64];
static char dir[96];
static struct nb_loop *loop;
static int readies;
static bool last_issued;

static int setup(void **st)
{
    strcpy(tmp, "/tmp/nbt-acme-mgr.XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    snprintf(dir, sizeof dir, "%s/certs", tmp);
    loop = nb_loop_new();
    readies = 0;
    return loop ? 0 : -1;
}

static int teardown(void **st)
{
    for (int i = 0; i < 10; i++)
        nb_loop_run_once(loop, 1);
    nb_loop_free(loop);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static void on_ready(void *arg, const char *domain, bool issued)
{
    readies++;
    last_issued = issued;
}

static void pump(int ms, int *until, int want)
{
    uint64_t end = nb_now_ms() + (uint64_t)ms;
    while (nb_now_ms() < end && (!until || *until < want))
        nb_loop_run_once(loop, 5);
}

static struct acme_mgr *mk(const char *dir_url)
{
    struct acme_mgr_opts o = {0};
    o.loop = loop;
    o.dir_url = dir_url;
    o.cert_dir = dir;
    o.on_ready = on_ready;
    o.http01 = true;
    o.retry_ms = 600000;
    struct acme_mgr *m = NULL;
    assert_int_equal(acme_mgr_new(&o, &m), NB_OK);
    return m;
}

static int sh(const char *fmt)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, fmt, tmp, tmp, tmp, tmp);
    return system(cmd);
}

static void test_new_account_key(void **st)
{
    struct acme_mgr *m = mk("https://127.0.0.1:1/dir");
    struct stat sd, sf;
    assert_int_equal(stat(dir, &sd), 0);
    assert_int_equal(sd.st_mode & 0777, 0700);
    char p[256];
    snprintf(p, sizeof p, "%s/acme_account+key", dir);
    assert_int_equal(stat(p, &sf), 0);
    assert_int_equal(sf.st_mode & 0777, 0600);
    assert_int_equal(sh("openssl ec -in %s/certs/acme_account+key -noout -text 2>/dev/null | grep "
                        "-q prime256v1"),
                     0);
    acme_mgr_free(m);
    /* a second manager reuses it (same file content) */
    assert_int_equal(sh("cp %s/certs/acme_account+key %s/k1"), 0);
    m = mk("https://127.0.0.1:1/dir");
    acme_mgr_free(m);
    assert_int_equal(sh("cmp -s %s/certs/acme_account+key %s/k1"), 0);
    /* bad options */
    struct acme_mgr_opts o = {0};
    o.loop = loop;
    o.cert_dir = dir;
    o.dir_url = "http://plain.test/dir";
    assert_int_equal(acme_mgr_new(&o, &m), NB_E_INVAL);
    o.dir_url = NULL;
    assert_int_equal(acme_mgr_new(&o, &m), NB_E_INVAL);
}

static void test_legacy_and_bad_account_key(void **st)
{
    assert_int_equal(sh("mkdir -m 700 %s/certs && openssl ecparam -name prime256v1 -genkey -noout "
                        "-out %s/certs/acme_account.key"),
                     0);
    struct acme_mgr *m = mk("https://127.0.0.1:1/dir");
    acme_mgr_free(m);
    /* the legacy file was used: no new key written */
    assert_int_not_equal(sh("test -e %s/certs/acme_account+key"), 0);
    /* an RSA account key is refused with an error, not replaced */
    assert_int_equal(sh("openssl genrsa -out %s/certs/acme_account+key 2048 2>/dev/null"), 0);
    struct acme_mgr_opts o = {0};
    o.loop = loop;
    o.cert_dir = dir;
    o.dir_url = "https://127.0.0.1:1/dir";
    assert_int_equal(acme_mgr_new(&o, &m), NB_E_IO);
}

static void test_cached_certificate(void **st)
{
    /* a cache entry as netbird-proxy's autocert writes it, made by openssl */
    assert_int_equal(
        sh("mkdir -m 700 %s/certs && cd %s && openssl req -x509 -newkey ec -pkeyopt "
           "ec_paramgen_curve:P-256 -nodes -keyout k.pem -out c.pem -days 90 -subj "
           "/CN=c.example.test -addext subjectAltName=DNS:c.example.test 2>/dev/null "
           "&& openssl ec -in k.pem -out certs/c.example.test 2>/dev/null && cat c.pem "
           ">> certs/c.example.test"),
        0);
    /* the CA is unreachable (port 1): a served certificate proves no order was needed */
    struct acme_mgr *m = mk("https://127.0.0.1:1/dir");
    assert_int_equal(acme_mgr_add(m, "c.example.test"), NB_OK);
    assert_int_equal(acme_mgr_add(m, "c.example.test"), NB_E_EXISTS);
    assert_int_equal(acme_mgr_state(m, "c.example.test"), ACME_D_PENDING);
    assert_null(acme_cert_for(m, "c.example.test", true)); /* not loaded yet */
    pump(2000, &readies, 1);
    assert_int_equal(readies, 1);
    assert_false(last_issued);
    assert_int_equal(acme_mgr_state(m, "c.example.test"), ACME_D_READY);
    struct tls_cert *c = acme_cert_for(m, "c.example.test", true);
    assert_non_null(c);
    assert_true(tls_cert_covers(c, "c.example.test"));
    assert_non_null(acme_cert_for(m, "c.example.test", false)); /* no RSA: ECDSA either way */
    /* host policy */
    assert_null(acme_cert_for(m, "other.example.test", true));
    assert_null(acme_cert_for(m, "", true));
    assert_null(acme_cert_for(m, "localhost", true));
    assert_null(acme_challenge_cert(m, "c.example.test")); /* no challenge running */
    struct acme_mgr_stats s;
    acme_mgr_stats(m, &s);
    assert_int_equal(s.orders, 0);
    assert_int_equal(s.from_cache, 1);
    /* http-01 through the manager: registered host, no token */
    struct acme_http01_reply r;
    acme_mgr_http01(m, "GET", "c.example.test", "/.well-known/acme-challenge/x", &r);
    assert_int_equal(r.status, 404);
    acme_mgr_http01(m, "GET", "x.example.test", "/.well-known/acme-challenge/x", &r);
    assert_int_equal(r.status, 403);
    acme_mgr_remove(m, "c.example.test");
    assert_null(acme_cert_for(m, "c.example.test", true));
    acme_mgr_http01(m, "GET", "c.example.test", "/.well-known/acme-challenge/x", &r);
    assert_int_equal(r.status, 403);
    acme_mgr_free(m);
    /* the cache file stays */
    assert_int_equal(sh("test -s %s/certs/c.example.test"), 0);
}

static void test_bad_domains_and_unreachable_ca(void **st)
{
    struct acme_mgr *m = mk("https://127.0.0.1:1/dir");
    assert_int_equal(acme_mgr_add(m, ""), NB_E_INVAL);
    assert_int_equal(acme_mgr_add(m, "localhost"), NB_E_INVAL);
    assert_int_equal(acme_mgr_add(m, "*.example.test"), NB_E_INVAL);
    assert_int_equal(acme_mgr_add(m, "a/b.test"), NB_E_INVAL);
    assert_int_equal(acme_mgr_add(m, "a.test:443"), NB_E_INVAL);
    /* no cache entry, CA refuses connections: the attempt fails, state failed, lock released */
    assert_int_equal(acme_mgr_add(m, "u.example.test"), NB_OK);
    struct acme_mgr_stats s = {0};
    uint64_t end = nb_now_ms() + 5000;
    while (nb_now_ms() < end && s.failures == 0) {
        nb_loop_run_once(loop, 5);
        acme_mgr_stats(m, &s);
    }
    assert_int_equal(s.failures, 1);
    assert_int_equal(acme_mgr_state(m, "u.example.test"), ACME_D_FAILED);
    assert_int_equal(readies, 0);
    /* the lock was taken (file 0600) and released */
    assert_int_equal(sh("test \"$(stat -c %%a %s/certs/u.example.test.lock)\" = 600"), 0);
    assert_int_equal(sh("flock -n -x %s/certs/u.example.test.lock true"), 0);
    acme_mgr_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_account_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_and_bad_account_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cached_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_domains_and_unreachable_ca, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
