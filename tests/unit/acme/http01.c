/* SPDX-License-Identifier: BSD-3-Clause */
/* acme/http01.c: the --acme-addr rules of spec/proxy.md §7.2 (autocert's HTTPHandler(nil) with
 * netbird-proxy's host policy), as a pure function. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "acme/http01.h"

#include <string.h>

static char last_host[256];

static bool host_ok(void *arg, const char *host)
{
    strcpy(last_host, host);
    return strcmp(host, "a.example.test") == 0 || strcmp(host, "::1") == 0;
}

static const char *token(void *arg, const char *t)
{
    return strcmp(t, "tok123") == 0 ? "tok123.thumb" : NULL;
}

static struct acme_http01_reply r;

static void h(const char *m, const char *host, const char *target)
{
    acme_http01_handle(m, host, target, host_ok, token, NULL, &r);
}

static void test_challenge(void **st)
{
    h("GET", "a.example.test", "/.well-known/acme-challenge/tok123");
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 12);
    assert_memory_equal(r.body, "tok123.thumb", 12);
    assert_string_equal(r.content_type, "text/plain");
    /* port stripped for the host policy */
    h("GET", "a.example.test:80", "/.well-known/acme-challenge/tok123");
    assert_int_equal(r.status, 200);
    assert_string_equal(last_host, "a.example.test");
    /* any method on the challenge path (autocert does not look at it) */
    h("POST", "a.example.test", "/.well-known/acme-challenge/tok123");
    assert_int_equal(r.status, 200);
    /* the query is not part of the token */
    h("GET", "a.example.test", "/.well-known/acme-challenge/tok123?x=1");
    assert_int_equal(r.status, 200);
    h("GET", "other.test", "/.well-known/acme-challenge/tok123");
    assert_int_equal(r.status, 403);
    h("GET", "", "/.well-known/acme-challenge/tok123");
    assert_int_equal(r.status, 403);
    h("GET", "a.example.test", "/.well-known/acme-challenge/nope");
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "acme/autocert: certificate cache miss\n");
    h("GET", "a.example.test", "/.well-known/acme-challenge/");
    assert_int_equal(r.status, 404);
    h("GET", "a.example.test", "/.well-known/acme-challenge/tok123/x");
    assert_int_equal(r.status, 404);
    h("GET", "[::1]:80", "/.well-known/acme-challenge/tok123");
    assert_int_equal(r.status, 200);
    assert_string_equal(last_host, "::1");
}

static void test_redirect(void **st)
{
    h("GET", "a.example.test", "/x/y?z=1");
    assert_int_equal(r.status, 302);
    assert_string_equal(r.location, "https://a.example.test/x/y?z=1");
    assert_true(r.body_len > 0);
    /* a port becomes :443 (autocert's stripPort) */
    h("HEAD", "a.example.test:8080", "/");
    assert_int_equal(r.status, 302);
    assert_string_equal(r.location, "https://a.example.test:443/");
    assert_int_equal(r.body_len, 0);
    h("GET", "[::1]:80", "/p");
    assert_string_equal(r.location, "https://[::1]:443/p");
    /* unknown hosts are redirected too (the policy applies to challenges only) */
    h("GET", "unknown.test", "/");
    assert_int_equal(r.status, 302);
    /* a path that only starts like the challenge prefix */
    h("GET", "a.example.test", "/.well-known/acme-challengeX");
    assert_int_equal(r.status, 302);
}

static void test_use_https(void **st)
{
    const char *methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "get"};
    for (size_t i = 0; i < 5; i++) {
        h(methods[i], "a.example.test", "/x");
        assert_int_equal(r.status, 400);
        assert_string_equal(r.body, "Use HTTPS\n");
        assert_string_equal(r.location, "");
    }
    /* a Location that would not fit is refused, not truncated */
    char big[1200];
    memset(big, 'a', sizeof big - 1);
    big[0] = '/';
    big[sizeof big - 1] = '\0';
    h("GET", "a.example.test", big);
    assert_int_equal(r.status, 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_challenge),
        cmocka_unit_test(test_redirect),
        cmocka_unit_test(test_use_https),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
