/* SPDX-License-Identifier: BSD-3-Clause */
/* acme/msg.c: the parsers of server responses (bodies as pebble 2.4 sends them), their limits,
 * Retry-After and URL splitting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "acme/msg.h"
#include "platform/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P(s) (const uint8_t *)(s), strlen(s)

static void test_directory(void **st)
{
    struct acme_directory d;
    const char *pebble =
        "{\"keyChange\":\"https://127.0.0.1:14000/rollover-account-key\",\"meta\":{"
        "\"externalAccountRequired\":false,\"termsOfService\":\"data:text/plain,x\"},"
        "\"newAccount\":\"https://127.0.0.1:14000/sign-me-up\",\"newNonce\":"
        "\"https://127.0.0.1:14000/nonce-plz\",\"newOrder\":\"https://127.0.0.1:14000/order-plz\","
        "\"revokeCert\":\"https://127.0.0.1:14000/revoke-cert\"}";
    assert_int_equal(acme_parse_directory(P(pebble), &d), NB_OK);
    assert_string_equal(d.new_nonce, "https://127.0.0.1:14000/nonce-plz");
    assert_string_equal(d.new_account, "https://127.0.0.1:14000/sign-me-up");
    assert_string_equal(d.new_order, "https://127.0.0.1:14000/order-plz");
    assert_false(d.eab_required);
    assert_int_equal(acme_parse_directory(P("{\"newNonce\":\"https://a/n\",\"newAccount\":"
                                            "\"https://a/a\",\"newOrder\":\"https://a/o\",\"meta\":"
                                            "{\"externalAccountRequired\":true}}"),
                                          &d),
                     NB_OK);
    assert_true(d.eab_required);
    /* missing member, wrong type, plain http, not an object, truncated */
    assert_int_equal(acme_parse_directory(P("{\"newNonce\":\"https://a/n\",\"newAccount\":"
                                            "\"https://a/a\"}"),
                                          &d),
                     NB_E_PARSE);
    assert_int_equal(acme_parse_directory(P("{\"newNonce\":1,\"newAccount\":\"https://a/a\","
                                            "\"newOrder\":\"https://a/o\"}"),
                                          &d),
                     NB_E_PARSE);
    assert_int_equal(acme_parse_directory(P("{\"newNonce\":\"http://a/n\",\"newAccount\":"
                                            "\"https://a/a\",\"newOrder\":\"https://a/o\"}"),
                                          &d),
                     NB_E_PARSE);
    assert_int_equal(acme_parse_directory(P("[1,2]"), &d), NB_E_PARSE);
    assert_int_equal(acme_parse_directory(P("{\"newNonce\":\"https://a/n\""), &d), NB_E_PARSE);
    assert_int_equal(acme_parse_directory(NULL, 0, &d), NB_E_PARSE);
    /* a URL over ACME_URL_MAX is refused, not truncated */
    char big[ACME_URL_MAX + 200];
    int n = snprintf(big, sizeof big,
                     "{\"newNonce\":\"https://a/%0*d\",\"newAccount\":\"https://a/a\",\"newOrder\":"
                     "\"https://a/o\"}",
                     ACME_URL_MAX, 0);
    assert_true(n > 0 && (size_t)n < sizeof big);
    assert_int_equal(acme_parse_directory(P(big), &d), NB_E_PARSE);
}

static void test_order(void **st)
{
    struct acme_order o;
    const char *pend =
        "{\"status\":\"pending\",\"expires\":\"2026-12-01T00:00:00Z\",\"identifiers\":"
        "[{\"type\":\"dns\",\"value\":\"a.test\"}],\"finalize\":"
        "\"https://ca/finalize-order/X\",\"authorizations\":[\"https://ca/authZ/1\","
        "\"https://ca/authZ/2\"]}";
    assert_int_equal(acme_parse_order(P(pend), &o), NB_OK);
    assert_int_equal(o.status, ACME_ST_PENDING);
    assert_int_equal(o.n_authz, 2);
    assert_string_equal(o.authz[1], "https://ca/authZ/2");
    assert_string_equal(o.finalize, "https://ca/finalize-order/X");
    assert_string_equal(o.certificate, "");
    assert_int_equal(
        acme_parse_order(P("{\"status\":\"valid\",\"finalize\":\"https://ca/f\","
                           "\"authorizations\":[],\"certificate\":\"https://ca/c/1\"}"),
                         &o),
        NB_OK);
    assert_int_equal(o.status, ACME_ST_VALID);
    assert_string_equal(o.certificate, "https://ca/c/1");
    /* unknown status, a non-string authorization, too many, a certificate that is not https */
    assert_int_equal(acme_parse_order(P("{\"status\":\"weird\",\"finalize\":\"https://ca/f\","
                                        "\"authorizations\":[]}"),
                                      &o),
                     NB_E_PARSE);
    assert_int_equal(acme_parse_order(P("{\"status\":\"pending\",\"finalize\":\"https://ca/f\","
                                        "\"authorizations\":[1]}"),
                                      &o),
                     NB_E_PARSE);
    char many[2048] = "{\"status\":\"pending\",\"finalize\":\"https://ca/f\",\"authorizations\":[";
    for (int i = 0; i <= ACME_MAX_AUTHZ; i++)
        sprintf(many + strlen(many), "%s\"https://ca/a/%d\"", i ? "," : "", i);
    strcat(many, "]}");
    assert_int_equal(acme_parse_order(P(many), &o), NB_E_PARSE);
    assert_int_equal(acme_parse_order(P("{\"status\":\"valid\",\"finalize\":\"https://ca/f\","
                                        "\"authorizations\":[],\"certificate\":\"ftp://x\"}"),
                                      &o),
                     NB_E_PARSE);
}

static void test_authz(void **st)
{
    struct acme_authz a;
    const char *az =
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.test\"},"
        "\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca/chalZ/1\",\"token\":"
        "\"tok-1_A\",\"status\":\"pending\"},{\"type\":\"dns-01\",\"url\":\"https://ca/chalZ/2\","
        "\"token\":\"x\",\"status\":\"pending\"},{\"type\":\"tls-alpn-01\",\"url\":"
        "\"https://ca/chalZ/3\",\"token\":\"tok3\",\"status\":\"pending\"}],\"expires\":\"x\"}";
    assert_int_equal(acme_parse_authz(P(az), &a), NB_OK);
    assert_int_equal(a.status, ACME_ST_PENDING);
    assert_string_equal(a.identifier, "a.test");
    assert_int_equal(a.n_chall, 3);
    assert_int_equal(a.chall[0].type, ACME_CH_HTTP01);
    assert_string_equal(a.chall[0].token, "tok-1_A");
    assert_int_equal(a.chall[1].type, ACME_CH_OTHER);
    assert_int_equal(a.chall[2].type, ACME_CH_TLS_ALPN01);
    assert_string_equal(a.chall[2].url, "https://ca/chalZ/3");
    /* a token that could walk a path (it names a cache file) is refused */
    assert_int_equal(
        acme_parse_authz(P("{\"status\":\"pending\",\"identifier\":{\"value\":\"a.test\"},"
                           "\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca/c\","
                           "\"token\":\"../../etc/passwd\"}]}"),
                         &a),
        NB_E_PARSE);
    assert_int_equal(
        acme_parse_authz(P("{\"status\":\"pending\",\"identifier\":{\"value\":\"a.test\"},"
                           "\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca/c\"}]}"),
                         &a),
        NB_E_PARSE);
    assert_int_equal(acme_parse_authz(P("{\"status\":\"valid\",\"challenges\":[]}"), &a),
                     NB_E_PARSE);
    struct acme_chall c;
    assert_int_equal(acme_parse_chall(P("{\"type\":\"tls-alpn-01\",\"url\":\"https://ca/c\","
                                        "\"token\":\"t\",\"status\":\"processing\"}"),
                                      &c),
                     NB_OK);
    assert_int_equal(c.status, ACME_ST_PROCESSING);
    assert_int_equal(acme_parse_chall(P("{]"), &c), NB_E_PARSE);
}

static void test_problem(void **st)
{
    struct acme_problem p;
    assert_int_equal(acme_parse_problem(P("{\"type\":\"urn:ietf:params:acme:error:badNonce\","
                                          "\"detail\":\"JWS has an invalid anti-replay nonce\\n\","
                                          "\"status\":400}"),
                                        &p),
                     NB_OK);
    assert_string_equal(p.type, "urn:ietf:params:acme:error:badNonce");
    assert_string_equal(p.detail, "JWS has an invalid anti-replay nonce?"); /* control -> ? */
    assert_int_equal(acme_parse_problem(P("{}"), &p), NB_OK);
    assert_string_equal(p.type, "");
    assert_int_equal(acme_parse_problem(P("nope"), &p), NB_E_PARSE);
}

static void test_retry_after(void **st)
{
    assert_int_equal(acme_retry_after("3", 1, 0), 3);
    assert_int_equal(acme_retry_after(" 120 ", 5, 0), 120);
    assert_int_equal(acme_retry_after("99999", 5, 0), 3600);
    /* Sun, 06 Nov 1994 08:49:37 GMT = 784111777 */
    const char *d = "Sun, 06 Nov 1994 08:49:37 GMT";
    assert_int_equal(acme_retry_after(d, strlen(d), 784111770), 7);
    assert_int_equal(acme_retry_after(d, strlen(d), 784111999), 0);
    assert_int_equal(acme_retry_after("soon", 4, 0), -1);
    assert_int_equal(acme_retry_after("3x", 2, 0), -1);
    assert_int_equal(acme_retry_after(NULL, 0, 0), -1);
}

static void test_url_split(void **st)
{
    char host[256];
    uint16_t port;
    const char *t;
    assert_int_equal(acme_url_split("https://127.0.0.1:14000/dir", host, sizeof host, &port, &t),
                     NB_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 14000);
    assert_string_equal(t, "/dir");
    assert_int_equal(acme_url_split("https://acme-v02.api.letsencrypt.org/directory", host,
                                    sizeof host, &port, &t),
                     NB_OK);
    assert_string_equal(host, "acme-v02.api.letsencrypt.org");
    assert_int_equal(port, 443);
    assert_int_equal(acme_url_split("https://[::1]:8443/x", host, sizeof host, &port, &t), NB_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8443);
    assert_int_equal(acme_url_split("https://ca.test", host, sizeof host, &port, &t), NB_OK);
    assert_string_equal(t, "/");
    assert_int_equal(acme_url_split("http://ca.test/", host, sizeof host, &port, &t), NB_E_PARSE);
    assert_int_equal(acme_url_split("https://u@ca.test/", host, sizeof host, &port, &t),
                     NB_E_PARSE);
    assert_int_equal(acme_url_split("https://ca.test:99999/", host, sizeof host, &port, &t),
                     NB_E_PARSE);
    assert_int_equal(acme_url_split("https://ca.test:/", host, sizeof host, &port, &t), NB_E_PARSE);
    assert_int_equal(acme_url_split("https:///x", host, sizeof host, &port, &t), NB_E_PARSE);
    assert_int_equal(acme_url_split("https://[::1/x", host, sizeof host, &port, &t), NB_E_PARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_directory),   cmocka_unit_test(test_order),
        cmocka_unit_test(test_authz),       cmocka_unit_test(test_problem),
        cmocka_unit_test(test_retry_after), cmocka_unit_test(test_url_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
