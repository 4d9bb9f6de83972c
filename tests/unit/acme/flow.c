/* SPDX-License-Identifier: BSD-3-Clause */
/* acme/flow.c in memory against a scripted CA: the whole order (directory, nonce, account,
 * order, authorization, challenge, finalize, polling with Retry-After, download), badNonce
 * retries, the tls-alpn-01 -> http-01 fallback on a new order, EAB, problem documents. The fake CA
 * checks what a CA checks in each JWS: a fresh nonce it issued, the url header equal to the
 * request URL, jwk for newAccount and kid afterwards. (The real CA is pebble, in
 * tests/interop/acme_test.sh.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "acme/flow.h"
#include "platform/err.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CA "https://ca.test"

static const char chain_pem[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

struct fake {
    bool eab_required;
    int reject_nonces; /* good nonces to answer with badNonce */
    int bad_nonce_sent;
    unsigned fail_types;  /* bit per acme_chall_type: validation fails */
    bool order_forbidden; /* newOrder -> 403 rejectedIdentifier */
    bool bad_cert;        /* certificate download is not PEM */
    int nonce_seq;
    char issued[64][32]; /* nonces issued, "" when used */
    int orders;
    enum acme_chall_type validated; /* type of the challenge POSTed last */
    bool authz_valid;
    bool authz_invalid;
    int order_polls;
    bool eab_seen;
    int jws_errors; /* malformed JWS, url mismatch, kid/jwk misuse: must stay 0 */
    /* what the flow provisioned */
    int sets, clears;
    enum acme_chall_type set_type;
    char set_token[64], set_ka[200];
    uint32_t waits[64];
    int n_waits;
    /* response storage */
    char body[8192];
    char loc[256];
    char nonce[32];
    char retry[16];
};

static struct fake F;

static const char *new_nonce(void)
{
    snprintf(F.nonce, sizeof F.nonce, "nonce%d", ++F.nonce_seq);
    strcpy(F.issued[F.nonce_seq % 64], F.nonce);
    return F.nonce;
}

static cJSON *b64json(const char *s)
{
    uint8_t buf[4096];
    long n = acme_b64url_decode(buf, sizeof buf - 1, s);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return n == 0 ? cJSON_CreateObject() : cJSON_Parse((char *)buf);
}

static void reply(struct acme_resp *r, int status, const char *body)
{
    memset(r, 0, sizeof *r);
    r->status = status;
    snprintf(F.body, sizeof F.body, "%s", body ? body : "");
    r->body = (const uint8_t *)F.body;
    r->body_len = strlen(F.body);
    r->nonce = new_nonce();
    r->nonce_len = strlen(r->nonce);
}

static void problem(struct acme_resp *r, int status, const char *type)
{
    char b[256];
    snprintf(b, sizeof b, "{\"type\":\"urn:ietf:params:acme:error:%s\",\"detail\":\"d\"}", type);
    reply(r, status, b);
}

static const char *authz_json(void)
{
    static char b[1024];
    const char *st = F.authz_valid ? "valid" : F.authz_invalid ? "invalid" : "pending";
    snprintf(b, sizeof b,
             "{\"status\":\"%s\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.test\"},"
             "\"challenges\":[{\"type\":\"http-01\",\"url\":\"" CA "/ch/http\",\"token\":"
             "\"tokH\",\"status\":\"pending\"},{\"type\":\"tls-alpn-01\",\"url\":\"" CA
             "/ch/alpn\",\"token\":\"tokA\",\"status\":\"pending\"}]}",
             st);
    return b;
}

/* The CA: answers one action. */
static void serve(const struct acme_act *a, struct acme_resp *r)
{
    const char *path = a->url + strlen(CA);
    if (strcmp(a->method, "GET") == 0 && strcmp(path, "/dir") == 0) {
        char b[512];
        snprintf(b, sizeof b,
                 "{\"newNonce\":\"" CA "/nonce\",\"newAccount\":\"" CA "/ac\",\"newOrder\":\"" CA
                 "/order\",\"meta\":{\"externalAccountRequired\":%s}}",
                 F.eab_required ? "true" : "false");
        reply(r, 200, b);
        r->nonce = NULL, r->nonce_len = 0; /* no nonce on GET: the flow must ask */
        return;
    }
    if (strcmp(a->method, "HEAD") == 0 && strcmp(path, "/nonce") == 0) {
        reply(r, 200, NULL);
        return;
    }
    assert_string_equal(a->method, "POST");
    /* check the JWS */
    cJSON *j = cJSON_ParseWithLength(a->body, a->body_len);
    assert_non_null(j);
    cJSON *h = b64json(cJSON_GetObjectItem(j, "protected")->valuestring);
    cJSON *pl = b64json(cJSON_GetObjectItem(j, "payload")->valuestring);
    assert_non_null(h);
    const char *nonce = cJSON_GetObjectItem(h, "nonce")->valuestring;
    const char *url = cJSON_GetObjectItem(h, "url")->valuestring;
    bool has_jwk = cJSON_GetObjectItem(h, "jwk") != NULL;
    bool has_kid = cJSON_GetObjectItem(h, "kid") != NULL;
    if (strcmp(url, a->url) != 0 || has_jwk == has_kid || (has_jwk != (strcmp(path, "/ac") == 0)))
        F.jws_errors++;
    bool fresh = false;
    for (int i = 0; i < 64; i++)
        if (F.issued[i][0] && strcmp(F.issued[i], nonce) == 0) {
            fresh = true;
            F.issued[i][0] = '\0';
        }
    if (!fresh || F.reject_nonces > 0) {
        if (fresh)
            F.reject_nonces--;
        F.bad_nonce_sent++;
        problem(r, 400, "badNonce");
        goto out;
    }
    if (strcmp(path, "/ac") == 0) {
        cJSON *eab = cJSON_GetObjectItem(pl, "externalAccountBinding");
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(pl, "termsOfServiceAgreed")));
        if (eab) {
            cJSON *eh = b64json(cJSON_GetObjectItem(eab, "protected")->valuestring);
            assert_string_equal(cJSON_GetObjectItem(eh, "alg")->valuestring, "HS256");
            assert_string_equal(cJSON_GetObjectItem(eh, "kid")->valuestring, "kid-1");
            assert_string_equal(cJSON_GetObjectItem(eh, "url")->valuestring, CA "/ac");
            cJSON_Delete(eh);
            F.eab_seen = true;
        }
        if (F.eab_required && !eab) {
            problem(r, 400, "externalAccountRequired");
            goto out;
        }
        reply(r, 201, "{\"status\":\"valid\"}");
        strcpy(F.loc, CA "/ac/1");
    } else if (strcmp(path, "/order") == 0) {
        if (F.order_forbidden) {
            problem(r, 403, "rejectedIdentifier");
            goto out;
        }
        F.orders++;
        F.authz_valid = F.authz_invalid = false;
        F.order_polls = 0;
        reply(r, 201,
              "{\"status\":\"pending\",\"finalize\":\"" CA "/fin\",\"authorizations\":[\"" CA
              "/authz/1\"]}");
        strcpy(F.loc, CA "/order/1");
    } else if (strcmp(path, "/authz/1") == 0) {
        reply(r, 200, authz_json());
    } else if (strncmp(path, "/ch/", 4) == 0) {
        F.validated = strcmp(path, "/ch/alpn") == 0 ? ACME_CH_TLS_ALPN01 : ACME_CH_HTTP01;
        /* the answer must be provisioned before the CA validates */
        assert_int_equal(F.set_type, F.validated);
        assert_true(F.sets > F.clears);
        if (F.fail_types & (1u << F.validated))
            F.authz_invalid = true;
        else
            F.authz_valid = true;
        reply(r, 200, "{\"type\":\"x\",\"url\":\"" CA "/ch/x\",\"status\":\"processing\"}");
    } else if (strcmp(path, "/fin") == 0) {
        assert_non_null(cJSON_GetObjectItem(pl, "csr"));
        reply(r, 200,
              "{\"status\":\"processing\",\"finalize\":\"" CA "/fin\",\"authorizations\":[]}");
        strcpy(F.retry, "2");
    } else if (strcmp(path, "/order/1") == 0) {
        F.order_polls++;
        reply(r, 200,
              "{\"status\":\"valid\",\"finalize\":\"" CA "/fin\",\"authorizations\":[],"
              "\"certificate\":\"" CA "/cert/1\"}");
    } else if (strcmp(path, "/cert/1") == 0) {
        reply(r, 200, F.bad_cert ? "not a certificate" : chain_pem);
    } else {
        reply(r, 404, NULL);
    }
out:
    if (F.loc[0]) {
        r->location = F.loc;
        r->location_len = strlen(F.loc);
    }
    if (F.retry[0]) {
        r->retry_after = F.retry;
        r->retry_after_len = strlen(F.retry);
    }
    cJSON_Delete(pl);
    cJSON_Delete(h);
    cJSON_Delete(j);
}

static int o_set(void *arg, const char *domain, enum acme_chall_type type, const char *token,
                 const char *ka)
{
    assert_string_equal(domain, "a.test");
    F.sets++;
    F.set_type = type;
    snprintf(F.set_token, sizeof F.set_token, "%s", token);
    snprintf(F.set_ka, sizeof F.set_ka, "%s", ka);
    return NB_OK;
}

static void o_clear(void *arg, const char *domain, enum acme_chall_type type, const char *token)
{
    F.clears++;
    assert_string_equal(token, F.set_token);
}

static int64_t o_now(void *arg)
{
    return 1000;
}

static const struct acme_flow_ops ops = {o_set, o_clear, o_now, NULL};

static struct acme_key key;
static struct acme_account ac;

static int setup(void **st)
{
    memset(&F, 0, sizeof F);
    memset(&ac, 0, sizeof ac);
    strcpy(ac.dir_url, CA "/dir");
    ac.key = &key;
    return acme_key_generate(&key) == NB_OK ? 0 : -1;
}

static int teardown(void **st)
{
    acme_key_free(&key);
    return 0;
}

/* Runs the flow to its end; returns the last action kind. */
static enum acme_act_kind run(struct acme_flow *f)
{
    struct acme_act a;
    acme_flow_start(f, &a);
    for (int i = 0; i < 200; i++) {
        if (a.kind == ACME_DO_HTTP) {
            struct acme_resp r;
            F.loc[0] = F.retry[0] = '\0';
            serve(&a, &r);
            acme_flow_on_resp(f, &r, &a);
        } else if (a.kind == ACME_DO_WAIT) {
            if (F.n_waits < 64)
                F.waits[F.n_waits++] = a.wait_ms;
            acme_flow_resume(f, &a);
        } else {
            return a.kind;
        }
    }
    fail_msg("flow did not end");
    return 0;
}

static const enum acme_chall_type both[] = {ACME_CH_TLS_ALPN01, ACME_CH_HTTP01};

static void test_happy_tls_alpn(void **st)
{
    struct acme_flow *f = acme_flow_new(&ac, "a.test", both, 2, &ops);
    assert_non_null(f);
    assert_int_equal(run(f), ACME_DO_DONE);
    assert_int_equal(F.jws_errors, 0);
    assert_int_equal(F.orders, 1);
    assert_int_equal(F.set_type, ACME_CH_TLS_ALPN01);
    assert_string_equal(F.set_token, "tokA");
    char want[200];
    assert_true(acme_key_authorization(&key, "tokA", want, sizeof want) > 0);
    assert_string_equal(F.set_ka, want);
    assert_int_equal(F.sets, 1);
    assert_int_equal(F.clears, 1); /* cleared once the authorization is valid */
    assert_string_equal(ac.kid, CA "/ac/1");
    /* Retry-After: 2 after finalize became a 2 s wait */
    bool saw = false;
    for (int i = 0; i < F.n_waits; i++)
        saw |= F.waits[i] == 2000;
    assert_true(saw);
    const char *k, *c;
    size_t kl, cl;
    acme_flow_result(f, &k, &kl, &c, &cl);
    assert_non_null(strstr(k, "BEGIN EC PRIVATE KEY"));
    assert_int_equal(cl, strlen(chain_pem));
    assert_memory_equal(c, chain_pem, cl);
    acme_flow_free(f);
    /* a second flow reuses the directory and the account: no newAccount */
    F.orders = 0;
    f = acme_flow_new(&ac, "a.test", both, 1, &ops);
    int before = F.nonce_seq;
    assert_int_equal(run(f), ACME_DO_DONE);
    assert_int_equal(F.orders, 1);
    assert_true(F.nonce_seq > before);
    acme_flow_free(f);
}

static void test_bad_nonce_retry(void **st)
{
    F.reject_nonces = 3;
    struct acme_flow *f = acme_flow_new(&ac, "a.test", both, 2, &ops);
    assert_int_equal(run(f), ACME_DO_DONE);
    assert_int_equal(F.bad_nonce_sent, 3);
    assert_int_equal(F.jws_errors, 0);
    acme_flow_free(f);
}

static void test_bad_nonce_gives_up(void **st)
{
    F.reject_nonces = 100;
    struct acme_flow *f = acme_flow_new(&ac, "a.test", both, 2, &ops);
    assert_int_equal(run(f), ACME_DO_FAIL);
    assert_non_null(strstr(acme_flow_error(f), "badNonce"));
    assert_int_equal(F.bad_nonce_sent, 4); /* first try + 3 retries */
    acme_flow_free(f);
}

static void test_fallback_http01(void **st)
{
    F.fail_types = 1u << ACME_CH_TLS_ALPN01;
    struct acme_flow *f = acme_flow_new(&ac, "a.test", both, 2, &ops);
    assert_int_equal(run(f), ACME_DO_DONE);
    assert_int_equal(F.orders, 2); /* a fresh order for the second type */
    assert_int_equal(F.set_type, ACME_CH_HTTP01);
    assert_string_equal(F.set_token, "tokH");
    assert_int_equal(F.sets, F.clears);
    acme_flow_free(f);
}

static void test_no_fallback_fails(void **st)
{
    F.fail_types = 1u << ACME_CH_TLS_ALPN01;
    struct acme_flow *f = acme_flow_new(&ac, "a.test", both, 1, &ops);
    assert_int_equal(run(f), ACME_DO_FAIL);
    assert_non_null(strstr(acme_flow_error(f), "authorization failed"));
    assert_int_equal(F.orders, 1);
    assert_int_equal(F.sets, F.clears);
    acme_flow_free(f);
}

static void test_eab(void **st)
{
    F.eab_required = true;
    struct acme_flow *f = acme_flow_new(&ac, "a.test", both, 1, &ops);
    assert_int_equal(run(f), ACME_DO_FAIL);
    assert_non_null(strstr(acme_flow_error(f), "external account binding"));
    acme_flow_free(f);
    static const uint8_t mac[] = "0123456789abcdef0123456789abcdef";
    ac.eab_kid = "kid-1";
    ac.eab_mac = mac;
    ac.eab_mac_len = 32;
    f = acme_flow_new(&ac, "a.test", both, 1, &ops);
    assert_int_equal(run(f), ACME_DO_DONE);
    assert_true(F.eab_seen);
    acme_flow_free(f);
}

static void test_problem_and_bad_cert(void **st)
{
    F.order_forbidden = true;
    struct acme_flow *f = acme_flow_new(&ac, "a.test", both, 2, &ops);
    assert_int_equal(run(f), ACME_DO_FAIL);
    assert_non_null(
        strstr(acme_flow_error(f), "HTTP 403 urn:ietf:params:acme:error:rejectedIdentifier"));
    acme_flow_free(f);
    F.order_forbidden = false;
    F.bad_cert = true;
    f = acme_flow_new(&ac, "a.test", both, 2, &ops);
    assert_int_equal(run(f), ACME_DO_FAIL);
    assert_non_null(strstr(acme_flow_error(f), "not a PEM chain"));
    acme_flow_free(f);
}

static void test_transport_error_and_args(void **st)
{
    struct acme_flow *f = acme_flow_new(&ac, "a.test", both, 2, &ops);
    struct acme_act a;
    acme_flow_start(f, &a);
    assert_int_equal(a.kind, ACME_DO_HTTP);
    assert_string_equal(a.method, "GET");
    acme_flow_on_error(f, "connection refused", &a);
    assert_int_equal(a.kind, ACME_DO_FAIL);
    assert_non_null(strstr(acme_flow_error(f), "connection refused"));
    acme_flow_free(f);
    assert_null(acme_flow_new(&ac, "", both, 2, &ops));
    assert_null(acme_flow_new(&ac, "a.test", both, 0, &ops));
    acme_flow_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_happy_tls_alpn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_nonce_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_nonce_gives_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_http01, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_fallback_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eab, setup, teardown),
        cmocka_unit_test_setup_teardown(test_problem_and_bad_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_error_and_args, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
