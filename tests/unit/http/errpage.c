/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * The proxy's pages: the embedded template, page data round trips (the injected JSON is cut out
 * of the page the way a browser's HTML parser would, up to the first "</script>", and parsed
 * back with cJSON), hostile values that try to leave the script element, the §4.9
 * classification table row by row, plain http.Error bodies and the robots.txt quirk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http/errpage.h"
#include "platform/arena.h"
#include "platform/err.h"
#include "web/index_html.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct nb_arena arena;

static int teardown(void **state)
{
    nb_arena_reset(&arena);
    return 0;
}

static const char data_open[] = "window.__DATA__ = ";

/*
 * The raw data as a browser sees it: from after "window.__DATA__ = " to the first "</script>"
 * (case-insensitive, as the HTML tokenizer ends script data), minus the ";" the template puts
 * there. Returns a malloc'd NUL-terminated copy.
 */
static char *extract_raw(const char *body, size_t len)
{
    assert_int_equal(strlen(body), len); /* no NUL inside, NUL-terminated */
    const char *p = strstr(body, data_open);
    assert_non_null(p);
    p += sizeof data_open - 1;
    const char *end = strcasestr(p, "</script");
    assert_non_null(end);
    assert_true(end > p && end[-1] == ';');
    size_t n = (size_t)(end - 1 - p);
    char *raw = malloc(n + 1);
    memcpy(raw, p, n);
    raw[n] = '\0';
    return raw;
}

/* Independent UTF-8 check (RFC 3629 table 3-7): length of the sequence at p, 0 if invalid. */
static int utf8_ok(const unsigned char *p)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    int n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
    if (n == 0 || c < 0xc2 || c > 0xf4)
        return 0;
    uint32_t cp = c & (0x7fu >> n);
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* The region must be plain script text: none of the characters that HTML or old JS parsers
 * treat specially, and valid UTF-8. */
static void assert_script_safe(const char *raw)
{
    for (const unsigned char *p = (const unsigned char *)raw; *p;) {
        if (*p == '<' || *p == '>' || *p == '&')
            fail_msg("raw '%c' in injected data: %s", *p, raw);
        if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
            fail_msg("raw U+2028/2029 in injected data");
        int n = utf8_ok(p);
        if (n == 0)
            fail_msg("invalid UTF-8 at byte 0x%02x", *p);
        p += n;
    }
}

static cJSON *extract(const char *body, size_t len)
{
    char *raw = extract_raw(body, len);
    assert_script_safe(raw);
    cJSON *j = cJSON_Parse(raw);
    if (j == NULL)
        fail_msg("injected data does not parse: %s", raw);
    free(raw);
    return j;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v))
        fail_msg("%s is not a string", k);
    return v->valuestring;
}

static int jint(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v))
        fail_msg("%s is not a number", k);
    return v->valueint;
}

static int jbool(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsBool(v))
        fail_msg("%s is not a bool", k);
    return cJSON_IsTrue(v);
}

/* ---- the template ---- */

static void test_template(void **state)
{
    const char *t = (const char *)nb_web_index_html;
    assert_int_equal(strlen(t), nb_web_index_html_len);
    assert_int_equal(nb_web_index_html_data_len, strlen(NB_WEB_DATA_MARKER));
    assert_memory_equal(t + nb_web_index_html_data_at, NB_WEB_DATA_MARKER,
                        nb_web_index_html_data_len);
    /* The marker sits right after "window.__DATA__ = " inside a script element. */
    assert_true(nb_web_index_html_data_at >= sizeof data_open - 1);
    assert_memory_equal(t + nb_web_index_html_data_at - (sizeof data_open - 1), data_open,
                        sizeof data_open - 1);
    /* Self-contained: no external URLs of any scheme, no protocol-relative ones. */
    assert_null(strstr(t, "://"));
    assert_null(strstr(t, "\"//"));
    assert_non_null(strstr(t, "<meta charset=\"utf-8\">"));
    /* The login contract of §5.6. */
    assert_non_null(strstr(t, "redirect: \"manual\""));
    assert_non_null(strstr(t, "opaqueredirect"));
    assert_non_null(strstr(t, "new FormData()"));
}

/* ---- §4.9 table ---- */

static const struct {
    enum http_upstream_err kind;
    const char *reason;
    int status;
    const char *title;
    int proxy, destination;
} rows[] = {
    /*  1 */ {HTTP_UPSTREAM_TIMEOUT, NULL, 504, "Request Timeout", 1, 0},
    /*  2 */ {HTTP_UPSTREAM_CANCELED, NULL, 502, "Request Canceled", 1, 0},
    /*  3 */ {HTTP_UPSTREAM_NO_ACCOUNT, NULL, 500, "Configuration Error", 0, 0},
    /*  4 */ {HTTP_UPSTREAM_NOT_CONNECTED, NULL, 502, "Proxy Not Connected", 0, 0},
    /*  5 */ {HTTP_UPSTREAM_OVERLOADED, NULL, 503, "Service Overloaded", 1, 0},
    /*  6 */ {HTTP_UPSTREAM_DIAL, "connection refused", 502, "Service Unavailable", 1, 0},
    /*  7 */ {HTTP_UPSTREAM_DIAL, "Connection refused", 502, "Service Unavailable", 1, 0},
    /*  8 */ {HTTP_UPSTREAM_DIAL, "connection was REFUSED", 502, "Service Unavailable", 1, 0},
    /*  9 */ {HTTP_UPSTREAM_DIAL, "host unreachable", 502, "Peer Not Connected", 1, 0},
    /* 10 */ {HTTP_UPSTREAM_DIAL, "Network is unreachable", 502, "Peer Not Connected", 1, 0},
    /* 11 */ {HTTP_UPSTREAM_DIAL, "No route to host", 502, "Peer Not Connected", 1, 0},
    /* 12 */ {HTTP_UPSTREAM_DIAL, "connection reset", 502, "Connection Error", 1, 0},
    /* 13 */ {HTTP_UPSTREAM_DIAL, "Connection reset by peer", 502, "Connection Error", 1, 0},
    /* 14 */ {HTTP_UPSTREAM_DIAL, "", 502, "Connection Error", 1, 0},
    /* 15 */ {HTTP_UPSTREAM_DIAL, NULL, 502, "Connection Error", 1, 0},
    /* 16 */ {HTTP_UPSTREAM_DIAL, "timed out", 504, "Request Timeout", 1, 0},
    /* 17 */ {HTTP_UPSTREAM_DIAL, "Connection timed out", 504, "Request Timeout", 1, 0},
    /* 18 */ {HTTP_UPSTREAM_DIAL, "dial timeout", 504, "Request Timeout", 1, 0},
    /* 19 */ {HTTP_UPSTREAM_DIAL, "tls: bad certificate", 502, "Connection Error", 1, 0},
    /* 20 */ {(enum http_upstream_err)99, "refused", 502, "Connection Error", 1, 0},
    /* Kinds win over reasons: the table is first-match and the kind rows come first. */
    /* 21 */ {HTTP_UPSTREAM_OVERLOADED, "connection refused", 503, "Service Overloaded", 1, 0},
    /* 22 */ {HTTP_UPSTREAM_NOT_CONNECTED, "timed out", 502, "Proxy Not Connected", 0, 0},
};

static void test_classification(void **state)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct http_error *e = http_upstream_error(rows[i].kind, rows[i].reason);
        assert_non_null(e);
        if (e->status != rows[i].status || strcmp(e->title, rows[i].title) != 0 ||
            e->proxy != rows[i].proxy || e->destination != rows[i].destination)
            fail_msg("row %zu: got %d %s (%d,%d)", i + 1, e->status, e->title, e->proxy,
                     e->destination);
        assert_true(strlen(e->message) > 20);
    }
    assert_int_equal(http_error_not_found.status, 404);
    assert_string_equal(http_error_not_found.title, "Service Not Found");
    assert_false(http_error_not_found.destination);
    assert_int_equal(http_error_loop.status, 421);
    assert_string_equal(http_error_loop.title, "Loop Detected");
}

/* Every row renders into a page whose data round-trips. */
static void test_error_pages_round_trip(void **state)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct http_error *e = http_upstream_error(rows[i].kind, rows[i].reason);
        const char *body;
        size_t len;
        assert_int_equal(http_errpage_render(&arena, e, "cv1e2mr0ui3e8a215n4g", &body, &len),
                         NB_OK);
        cJSON *j = extract(body, len);
        assert_string_equal(jstr(j, "page"), "error");
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
        assert_int_equal(jint(err, "code"), rows[i].status);
        assert_string_equal(jstr(err, "title"), rows[i].title);
        assert_string_equal(jstr(err, "message"), e->message);
        assert_int_equal(jbool(err, "proxy"), rows[i].proxy);
        assert_int_equal(jbool(err, "destination"), rows[i].destination);
        assert_string_equal(jstr(err, "requestId"), "cv1e2mr0ui3e8a215n4g");
        assert_null(cJSON_GetObjectItemCaseSensitive(err, "simple"));
        cJSON_Delete(j);
    }
}

/* Byte-exact data with Go's key order (encoding/json sorts map keys). */
static void test_exact_bytes(void **state)
{
    static const struct http_error e = {404, "Not <here>", "a & b", true, false};
    const char *body;
    size_t len;
    assert_int_equal(http_errpage_render(&arena, &e, "id1", &body, &len), NB_OK);
    char *raw = extract_raw(body, len);
    assert_string_equal(raw, "{\"error\":{\"code\":404,\"destination\":false,"
                             "\"message\":\"a \\u0026 b\",\"proxy\":true,\"requestId\":\"id1\","
                             "\"title\":\"Not \\u003chere\\u003e\"},\"page\":\"error\"}");
    free(raw);

    assert_int_equal(http_denied_render(&arena, "no", "id2", "/x?a=1", &body, &len), NB_OK);
    raw = extract_raw(body, len);
    assert_string_equal(raw, "{\"error\":{\"code\":403,\"message\":\"no\",\"requestId\":\"id2\","
                             "\"retryUrl\":\"/x?a=1\",\"simple\":true,"
                             "\"title\":\"Access Denied\"},\"page\":\"error\"}");
    free(raw);

    static const struct http_login_method m[] = {{"pin", "pin"},
                                                 {"password", "password"},
                                                 {"oidc", "https://idp/a?b=1&c=2"},
                                                 {"header", ""}};
    assert_int_equal(http_login_render(&arena, m, 4, &body, &len), NB_OK);
    raw = extract_raw(body, len);
    assert_string_equal(raw,
                        "{\"methods\":{\"header\":\"\",\"oidc\":\"https://idp/a?b=1\\u0026c=2\","
                        "\"password\":\"password\",\"pin\":\"pin\"}}");
    free(raw);

    /* The page around the data is the template, unchanged. */
    assert_int_equal(len, nb_web_index_html_len - nb_web_index_html_data_len +
                              strlen("{\"methods\":{\"header\":\"\",\"oidc\":\"https://idp/a?b=1"
                                     "\\u0026c=2\",\"password\":\"password\",\"pin\":\"pin\"}}"));
    assert_memory_equal(body, nb_web_index_html, nb_web_index_html_data_at);
}

static void test_denied_page(void **state)
{
    const char *body;
    size_t len;
    assert_int_equal(
        http_denied_render(&arena, "You are not allowed", "rid", "/app?x=1", &body, &len), NB_OK);
    cJSON *j = extract(body, len);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    assert_string_equal(jstr(j, "page"), "error");
    assert_int_equal(jint(err, "code"), 403);
    assert_string_equal(jstr(err, "title"), "Access Denied");
    assert_string_equal(jstr(err, "message"), "You are not allowed");
    assert_string_equal(jstr(err, "requestId"), "rid");
    assert_string_equal(jstr(err, "retryUrl"), "/app?x=1");
    assert_true(jbool(err, "simple"));
    assert_null(cJSON_GetObjectItemCaseSensitive(err, "proxy"));
    cJSON_Delete(j);

    /* No retry URL: the key is left out; NULL strings are "". */
    assert_int_equal(http_denied_render(&arena, NULL, NULL, NULL, &body, &len), NB_OK);
    j = extract(body, len);
    err = cJSON_GetObjectItemCaseSensitive(j, "error");
    assert_null(cJSON_GetObjectItemCaseSensitive(err, "retryUrl"));
    assert_string_equal(jstr(err, "message"), "");
    assert_string_equal(jstr(err, "requestId"), "");
    cJSON_Delete(j);
}

static void test_login_page(void **state)
{
    const char *body;
    size_t len;
    /* Duplicates keep the last prompt; order is by name. */
    static const struct http_login_method m[] = {
        {"password", "first"}, {"oidc", "https://idp.example/auth?x=1"}, {"password", "password"}};
    assert_int_equal(http_login_render(&arena, m, 3, &body, &len), NB_OK);
    cJSON *j = extract(body, len);
    const cJSON *methods = cJSON_GetObjectItemCaseSensitive(j, "methods");
    assert_int_equal(cJSON_GetArraySize(methods), 2);
    assert_string_equal(methods->child->string, "oidc");
    assert_string_equal(jstr(methods, "password"), "password");
    assert_string_equal(jstr(methods, "oidc"), "https://idp.example/auth?x=1");
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "page"));
    cJSON_Delete(j);

    /* No methods at all: {"methods":{}}. */
    assert_int_equal(http_login_render(&arena, NULL, 0, &body, &len), NB_OK);
    j = extract(body, len);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "methods")), 0);
    cJSON_Delete(j);

    static const struct http_login_method bad[] = {{"pin", "pin"}, {NULL, "x"}};
    body = NULL;
    assert_int_equal(http_login_render(&arena, bad, 2, &body, &len), NB_E_INVAL);
    assert_null(body);
}

/* ---- hostile values ---- */

static const struct {
    const char *in;   /* message / retry URL as received */
    const char *want; /* the string the page must see after parsing */
} hostile[] = {
    /*  1 */ {"</script><script>alert(1)</script>", NULL},
    /*  2 */ {"</SCRIPT ><img src=x onerror=alert(1)>", NULL},
    /*  3 */ {"<!--<script>", NULL},
    /*  4 */ {"\"};alert(1);//", NULL},
    /*  5 */ {"\\\"</script>", NULL},
    /*  6 */ {"line\xe2\x80\xa8sep\xe2\x80\xa9para", NULL},
    /*  7 */ {"a\nb\rc\td\x01\x1f", NULL},
    /*  8 */ {"&lt;&amp;&#x3c;", NULL},
    /*  9 */ {"]]></script>", NULL},
    /* 10 */ {"/x?a=</script>&b=\"'", NULL},
    /* 11 */ {"caf\xc3\xa9 \xf0\x9f\x90\xa6 \xe2\x82\xac", NULL}, /* valid UTF-8 passes */
    /* Invalid UTF-8: every bad byte becomes U+FFFD, the rest is kept. */
    /* 12 */
    {"a\xff"
     "b",
     "a\xef\xbf\xbd"
     "b"},
    /* 13 */ {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong '/' */
    /* 14 */ {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* lone surrogate */
    /* 15 */ {"x\xe2\x80", "x\xef\xbf\xbd\xef\xbf\xbd"},               /* truncated */
    /* 16 */ {"\xe2\x80<", "\xef\xbf\xbd\xef\xbf\xbd<"},               /* cannot eat the '<' */
    /* 17 */ {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > max */
    /* 18 */ {"\xc2\"", "\xef\xbf\xbd\""}, /* a lead byte cannot swallow the closing quote */
};

static void test_hostile_values(void **state)
{
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        const char *want = hostile[i].want ? hostile[i].want : hostile[i].in;
        const char *body;
        size_t len;
        struct http_error e = {502, hostile[i].in, hostile[i].in, true, false};

        assert_int_equal(http_errpage_render(&arena, &e, hostile[i].in, &body, &len), NB_OK);
        cJSON *j = extract(body, len);
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
        if (strcmp(jstr(err, "message"), want) != 0)
            fail_msg("case %zu: message came back as %s", i + 1, jstr(err, "message"));
        assert_string_equal(jstr(err, "title"), want);
        assert_string_equal(jstr(err, "requestId"), want);
        cJSON_Delete(j);

        assert_int_equal(http_denied_render(&arena, hostile[i].in, "r", hostile[i].in, &body, &len),
                         NB_OK);
        j = extract(body, len);
        err = cJSON_GetObjectItemCaseSensitive(j, "error");
        assert_string_equal(jstr(err, "retryUrl"), want);
        assert_string_equal(jstr(err, "message"), want);
        cJSON_Delete(j);

        struct http_login_method m = {hostile[i].in, hostile[i].in};
        assert_int_equal(http_login_render(&arena, &m, 1, &body, &len), NB_OK);
        j = extract(body, len);
        assert_string_equal(jstr(cJSON_GetObjectItemCaseSensitive(j, "methods"), want), want);
        cJSON_Delete(j);

        /* Exactly one data script: the page around the data is the template. */
        assert_memory_equal(body, nb_web_index_html, nb_web_index_html_data_at);
        size_t tail_at = nb_web_index_html_data_at + nb_web_index_html_data_len;
        size_t tail = nb_web_index_html_len - tail_at;
        assert_memory_equal(body + len - tail, nb_web_index_html + tail_at, tail);
    }
}

/* Raw data from a caller, even invalid JSON, cannot leave the script either. */
static void test_raw_render(void **state)
{
    static const char *const raw[] = {
        /* 1 */ "{}",
        /* 2 */ "</script><b>x</b>",
        /* 3 */ "{\"a\":1}<!--",
        /* 4 */ "\xe2\x80\xa8\xe2\x80\xa9\xff",
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        const char *body;
        size_t len;
        assert_int_equal(http_page_render(&arena, raw[i], strlen(raw[i]), &body, &len), NB_OK);
        char *r = extract_raw(body, len);
        assert_script_safe(r);
        free(r);
    }
    /* NULL / empty data: an empty object, so the page still runs. */
    const char *body;
    size_t len;
    assert_int_equal(http_page_render(&arena, NULL, 0, &body, &len), NB_OK);
    char *r = extract_raw(body, len);
    assert_string_equal(r, "{}");
    free(r);
}

/* ---- plain text ---- */

static void test_plain_and_robots(void **state)
{
    const char *body;
    size_t len;
    assert_int_equal(http_plain_error(&arena, "Forbidden", &body, &len), NB_OK);
    assert_int_equal(len, 10);
    assert_string_equal(body, "Forbidden\n");
    assert_int_equal(http_plain_error(&arena, NULL, &body, &len), NB_OK);
    assert_int_equal(len, 1);
    assert_string_equal(body, "\n");
    assert_string_equal(HTTP_PLAIN_CONTENT_TYPE, "text/plain; charset=utf-8");
    assert_string_equal(HTTP_PAGE_CONTENT_TYPE, "text/html");

    static const struct {
        const char *path;
        bool robots;
    } cases[] = {
        /* 1 */ {"/robots.txt", true},
        /* 2 */ {"/robots.txt/", false},
        /* 3 */ {"/ROBOTS.TXT", false},
        /* 4 */ {"/robots.txtx", false},
        /* 5 */ {"/a/robots.txt", false},
        /* 6 */ {"robots.txt", false},
        /* 7 */ {"", false},
        /* 8 */ {"/", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        body = NULL;
        bool got = http_page_robots(cases[i].path, strlen(cases[i].path), &body, &len);
        if (got != cases[i].robots)
            fail_msg("case %zu (%s): %d", i + 1, cases[i].path, got);
        if (got) {
            assert_int_equal(len, strlen("User-agent: *\nDisallow: /\n"));
            assert_memory_equal(body, "User-agent: *\nDisallow: /\n", len);
        } else {
            assert_null(body);
        }
    }
    assert_false(http_page_robots(NULL, 0, &body, &len));
    /* The path is a (pointer, length) slice: a longer buffer with the right prefix counts. */
    assert_true(http_page_robots("/robots.txt?q", 11, &body, &len));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_template, teardown),
        cmocka_unit_test_teardown(test_classification, teardown),
        cmocka_unit_test_teardown(test_error_pages_round_trip, teardown),
        cmocka_unit_test_teardown(test_exact_bytes, teardown),
        cmocka_unit_test_teardown(test_denied_page, teardown),
        cmocka_unit_test_teardown(test_login_page, teardown),
        cmocka_unit_test_teardown(test_hostile_values, teardown),
        cmocka_unit_test_teardown(test_raw_render, teardown),
        cmocka_unit_test_teardown(test_plain_and_robots, teardown),
    };
    return cmocka_run_group_tests_name("http/errpage", tests, NULL, NULL);
}
