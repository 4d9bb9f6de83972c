/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * HTTP routing tables, one numbered case per line: target URL parsing, service construction
 * from a mapping (path keys, duplicates, skipped targets, custom headers), longest-prefix path
 * matching, Go SplitHostPort stripping, and the domain table (exact case-sensitive Host match,
 * replace/remove by service id, account scoping, 10 000 domains, and a differential run against
 * a naive reference). ASan runs make every reference-count slip a failure.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/route.h"
#include "platform/err.h"

/* ---- target URLs ---- */

struct target_ok {
    int no;
    const char *url;
    bool tls;
    const char *host, *authority;
    unsigned port;
    bool explicit_port;
    const char *path, *query;
};

static const struct target_ok TARGETS_OK[] = {
    {1, "http://backend:8080/", false, "backend", "backend:8080", 8080, true, "/", ""},
    {2, "https://backend/", true, "backend", "backend", 443, false, "/", ""},
    {3, "http://backend/", false, "backend", "backend", 80, false, "/", ""},
    {4, "http://[::1]:8080/", false, "::1", "[::1]:8080", 8080, true, "/", ""},
    {5, "https://[2001:db8::1]/", true, "2001:db8::1", "[2001:db8::1]", 443, false, "/", ""},
    {6, "HTTP://Backend.Internal:80/app?x=1", false, "Backend.Internal", "Backend.Internal:80", 80,
     true, "/app", "x=1"},
    {7, "http://10.0.0.1", false, "10.0.0.1", "10.0.0.1", 80, false, "", ""},
    {8, "http://h?q=1", false, "h", "h", 80, false, "", "q=1"},
    {9, "https://heise.de:443/heise", true, "heise.de", "heise.de:443", 443, true, "/heise", ""},
    {10, "http://svc_1.local:65535/a%20b/", false, "svc_1.local", "svc_1.local:65535", 65535, true,
     "/a%20b/", ""},
    {11, "http://h:080/", false, "h", "h:080", 80, true, "/", ""},
};

static void test_target_parse_ok(void **state)
{
    for (size_t i = 0; i < sizeof TARGETS_OK / sizeof TARGETS_OK[0]; i++) {
        const struct target_ok *c = &TARGETS_OK[i];
        struct http_target t;
        char why[64] = "";
        print_message("target ok case %d: %s\n", c->no, c->url);
        assert_int_equal(http_target_parse(c->url, &t, why, sizeof why), NB_OK);
        assert_int_equal(t.tls, c->tls);
        assert_string_equal(t.host, c->host);
        assert_string_equal(t.authority, c->authority);
        assert_int_equal(t.port, c->port);
        assert_int_equal(t.port_explicit, c->explicit_port);
        assert_string_equal(t.path, c->path);
        assert_string_equal(t.query, c->query);
        assert_int_equal(t.opts.n_custom_headers, 0);
        http_target_deinit(&t);
    }
    /* the decoded path view used by the join */
    struct http_target t;
    assert_int_equal(http_target_parse("http://h/a%20b%2F", &t, NULL, 0), NB_OK);
    assert_int_equal(t._path_dec_len, 5);
    assert_memory_equal(t._path_dec, "/a b/", 5);
    http_target_deinit(&t);
}

struct target_bad {
    int no;
    const char *url;
    const char *why;
};

static const struct target_bad TARGETS_BAD[] = {
    {1, "ftp://x/", "scheme must be http or https"},
    {2, "backend:8080", "missing http(s):// scheme"},
    {3, "", "missing http(s):// scheme"},
    {4, "http://user:pw@h/", "userinfo not allowed"},
    {5, "http://h/#frag", "fragment not allowed"},
    {6, "http:///x", "missing host"},
    {7, "http://:80/", "missing host"},
    {8, "http://h:/", "empty port"},
    {9, "http://h:0/", "invalid port"},
    {10, "http://h:65536/", "invalid port"},
    {11, "http://h:8a/", "invalid port"},
    {12, "http://h:123456/", "invalid port"},
    {13, "http://a:b:c/", "invalid port"},
    {14, "http://[::1/", "missing ']' in host"},
    {15, "http://[fe80::1%25eth0]/", "IPv6 zone not allowed"},
    {16, "http://[zz]/", "invalid IPv6 address"},
    {17, "http://[]/", "invalid IPv6 address"},
    {18, "http://[::1]x/", "invalid character after ']'"},
    {19, "http://h h/", "invalid character in URL"},
    {20, "http://h\r\n/", "invalid character in URL"},
    {21, "http://h\x80/", "invalid character in URL"},
    {22, "http://h*/", "invalid character in host"},
    {23, "http://h/a%zz", "invalid %-escape in path"},
    {24, "http://h/a%2", "invalid %-escape in path"},
    {25, "https//h/", "missing http(s):// scheme"},
};

static void test_target_parse_bad(void **state)
{
    for (size_t i = 0; i < sizeof TARGETS_BAD / sizeof TARGETS_BAD[0]; i++) {
        const struct target_bad *c = &TARGETS_BAD[i];
        struct http_target t;
        char why[64] = "";
        print_message("target bad case %d\n", c->no);
        assert_int_equal(http_target_parse(c->url, &t, why, sizeof why), NB_E_PARSE);
        assert_string_equal(why, c->why);
        assert_null(t.host); /* nothing left to free */
    }
}

/* ---- Host port stripping (Go net.SplitHostPort) ---- */

static const struct {
    int no;
    const char *in, *out;
} STRIP[] = {
    {1, "a.b:8443", "a.b"},
    {2, "[::1]:80", "::1"},
    {3, "a.b:", "a.b"},
    {4, "a.b", "a.b"},
    {5, "::1", "::1"},
    {6, "[::1]", "[::1]"},
    {7, "a:b:c", "a:b:c"},
    {8, "[::1]x:80", "[::1]x:80"},
    {9, ":80", ""},
    {10, "", ""},
    {11, "[a]:1:2", "[a]:1:2"},
    {12, "a[b:80", "a[b:80"},
    {13, "ab]:80", "ab]:80"},
    {14, "[2001:db8::1]:443", "2001:db8::1"},
    {15, "Example.COM:443", "Example.COM"},
};

static void test_host_strip_port(void **state)
{
    for (size_t i = 0; i < sizeof STRIP / sizeof STRIP[0]; i++) {
        size_t n;
        const char *h = http_host_strip_port(STRIP[i].in, strlen(STRIP[i].in), &n);
        print_message("strip case %d\n", STRIP[i].no);
        assert_int_equal(n, strlen(STRIP[i].out));
        assert_memory_equal(h, STRIP[i].out, n);
    }
}

/* ---- services ---- */

#define MAXP 8

struct msvc {
    struct nb_mapping m;
    struct nb_path_mapping p[MAXP];
    struct nb_header_auth ha[4];
};

/* A mapping with paths given as "key", "url" pairs; strings are not owned (never freed). */
static void mk(struct msvc *s, const char *id, const char *acct, const char *domain, int n, ...)
{
    va_list ap;
    memset(s, 0, sizeof *s);
    s->m.id = (char *)id;
    s->m.account_id = (char *)acct;
    s->m.domain = (char *)domain;
    s->m.paths = s->p;
    s->m.n_paths = (uint32_t)n;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        s->p[i].path = va_arg(ap, char *);
        s->p[i].target = va_arg(ap, char *);
    }
    va_end(ap);
}

static struct http_service *build(const struct nb_mapping *m)
{
    struct http_service *svc;
    char warn[512];
    assert_int_equal(http_service_new(m, &svc, warn, sizeof warn), NB_OK);
    assert_string_equal(warn, "");
    return svc;
}

static void test_service_new(void **state)
{
    struct msvc s;
    struct http_service *svc;
    char warn[512];

    /* 1. fields copied, paths longest first */
    mk(&s, "svc-1", "acct-1", "app.example.com", 3, "/", "http://a:1/", "/api/v1", "http://b:2/",
       "/api", "http://c:3/");
    s.m.pass_host_header = true;
    s.m.rewrite_redirects = true;
    s.m.private_service = true;
    svc = build(&s.m);
    assert_string_equal(svc->id, "svc-1");
    assert_string_equal(svc->account_id, "acct-1");
    assert_string_equal(svc->domain, "app.example.com");
    assert_true(svc->pass_host_header && svc->rewrite_redirects && svc->private_service);
    assert_int_equal(svc->n_paths, 3);
    assert_string_equal(svc->paths[0].path, "/api/v1");
    assert_string_equal(svc->paths[1].path, "/api");
    assert_string_equal(svc->paths[2].path, "/");
    assert_string_equal(svc->paths[0].target.authority, "b:2");
    assert_ptr_not_equal(svc->id, s.m.id); /* copies */
    http_service_unref(svc);

    /* 2. duplicate match paths: the last one wins */
    mk(&s, "svc-2", "a", "d", 3, "/x", "http://first/", "/y", "http://y/", "/x", "http://last/");
    svc = build(&s.m);
    assert_int_equal(svc->n_paths, 2);
    assert_string_equal(http_service_match(svc, "/x", 2)->target.host, "last");
    http_service_unref(svc);

    /* 3. an unparsable target is skipped and described; the rest still applies */
    mk(&s, "svc-3", "a", "d", 3, "/bad", "ftp://x/", "/ok", "http://ok/", "/bad2", "http://h:0/");
    assert_int_equal(http_service_new(&s.m, &svc, warn, sizeof warn), NB_OK);
    assert_string_equal(warn, "path \"/bad\": invalid target URL \"ftp://x/\": scheme must be "
                              "http or https, skipped; path \"/bad2\": invalid target URL "
                              "\"http://h:0/\": invalid port, skipped");
    assert_int_equal(svc->n_paths, 1);
    assert_string_equal(svc->paths[0].path, "/ok");
    http_service_unref(svc);

    /* 4. a later invalid duplicate does not replace an earlier valid one */
    mk(&s, "svc-4", "a", "d", 2, "/x", "http://good/", "/x", "bogus");
    assert_int_equal(http_service_new(&s.m, &svc, warn, sizeof warn), NB_OK);
    assert_int_equal(svc->n_paths, 1);
    assert_string_equal(svc->paths[0].target.host, "good");
    http_service_unref(svc);

    /* 5. empty and missing match paths stay "" (the reference keeps the key as sent) */
    mk(&s, "svc-5", "a", "d", 1, NULL, "http://h/");
    svc = build(&s.m);
    assert_string_equal(svc->paths[0].path, "");
    http_service_unref(svc);

    /* 6. no paths: a service that routes nothing */
    mk(&s, "svc-6", "a", "d", 0);
    svc = build(&s.m);
    assert_int_equal(svc->n_paths, 0);
    assert_null(http_service_match(svc, "/", 1));
    http_service_unref(svc);

    /* 7. every path invalid: still a service, with a warning */
    mk(&s, "svc-7", "a", "d", 1, "/", "nope");
    assert_int_equal(http_service_new(&s.m, &svc, warn, sizeof warn), NB_OK);
    assert_int_equal(svc->n_paths, 0);
    assert_string_equal(warn, "path \"/\": invalid target URL \"nope\": missing http(s):// "
                              "scheme, skipped");
    http_service_unref(svc);

    /* 8. not HTTP mode, no id, no domain */
    mk(&s, "svc-8", "a", "d", 1, "/", "http://h/");
    s.m.mode = "tcp";
    assert_int_equal(http_service_new(&s.m, &svc, warn, sizeof warn), NB_E_INVAL);
    assert_null(svc);
    s.m.mode = "whatever"; /* unknown modes are HTTP */
    svc = build(&s.m);
    http_service_unref(svc);
    s.m.mode = NULL;
    s.m.id = "";
    assert_int_equal(http_service_new(&s.m, &svc, warn, sizeof warn), NB_E_INVAL);
    s.m.id = "svc-8";
    s.m.domain = NULL;
    assert_int_equal(http_service_new(&s.m, &svc, warn, sizeof warn), NB_E_INVAL);

    /* 9. no account id -> "" */
    mk(&s, "svc-9", NULL, "d", 1, "/", "http://h/");
    svc = build(&s.m);
    assert_string_equal(svc->account_id, "");
    http_service_unref(svc);

    /* 10. header-auth names copied, empty ones dropped */
    mk(&s, "svc-10", "a", "d", 1, "/", "http://h/");
    s.ha[0].header = "X-Api-Key";
    s.ha[1].header = "";
    s.ha[2].header = "Authorization";
    s.m.auth.header_auths = s.ha;
    s.m.auth.n_header_auths = 3;
    svc = build(&s.m);
    assert_int_equal(svc->n_header_auth_names, 2);
    assert_string_equal(svc->header_auth_names[0], "X-Api-Key");
    assert_string_equal(svc->header_auth_names[1], "Authorization");
    http_service_unref(svc);

    /* 11. a small warn buffer truncates but does not overflow */
    char tiny[16];
    mk(&s, "svc-11", "a", "d", 1, "/", "nope");
    assert_int_equal(http_service_new(&s.m, &svc, tiny, sizeof tiny), NB_OK);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
    http_service_unref(svc);
}

static void test_service_options(void **state)
{
    struct msvc s;
    struct http_service *svc;
    char warn[512];
    struct nb_header_kv ch[] = {
        {"x-api-key", "  secret \t"},
        {"Authorization", "Bearer up"},
        {"X-FOO-bar", ""},
        {"bad name", "v"},
        {"X-Evil", "a\r\nInjected: 1"},
        {"host", "h"},
        {"Content-Length", "1"},
        {"X-Api-Key", "second"},
    };

    mk(&s, "svc", "a", "d", 1, "/p", "http://h/");
    s.p[0].options.skip_tls_verify = true;
    s.p[0].options.request_timeout_ms = 1500;
    s.p[0].options.path_rewrite = NB_PATH_REWRITE_PRESERVE;
    s.p[0].options.direct_upstream = true;
    s.p[0].options.disable_access_log = true;
    s.p[0].options.custom_headers = ch;
    s.p[0].options.n_custom_headers = sizeof ch / sizeof ch[0];
    assert_int_equal(http_service_new(&s.m, &svc, warn, sizeof warn), NB_OK);
    const struct nb_target_options *o = &svc->paths[0].target.opts;
    assert_true(o->skip_tls_verify && o->direct_upstream && o->disable_access_log);
    assert_int_equal(o->request_timeout_ms, 1500);
    assert_int_equal(o->path_rewrite, NB_PATH_REWRITE_PRESERVE);
    /* 1. canonical names, trimmed values, the later duplicate wins in the earlier slot */
    assert_int_equal(o->n_custom_headers, 3);
    assert_string_equal(o->custom_headers[0].name, "X-Api-Key");
    assert_string_equal(o->custom_headers[0].value, "second");
    assert_string_equal(o->custom_headers[1].name, "Authorization");
    assert_string_equal(o->custom_headers[1].value, "Bearer up");
    assert_string_equal(o->custom_headers[2].name, "X-Foo-Bar");
    assert_string_equal(o->custom_headers[2].value, "");
    assert_ptr_not_equal(o->custom_headers, ch);
    /* 2. invalid and ignored names reported */
    assert_string_equal(
        warn, "path \"/p\": custom header \"bad name\" is not a valid field, skipped; path \"/p\": "
              "custom header \"X-Evil\" is not a valid field, skipped; path \"/p\": custom header "
              "\"host\" is not forwarded, skipped; path \"/p\": custom header \"Content-Length\" "
              "is not forwarded, skipped");
    http_service_unref(svc);
}

/* ---- path matching ---- */

static void test_service_match(void **state)
{
    struct msvc s;
    static const struct {
        int no;
        const char *path;
        const char *want; /* matched key, NULL = none */
    } cases[] = {
        {1, "/api/users", "/api"},
        {2, "/apix", "/api"}, /* no segment boundary */
        {3, "/api/v2/x", "/api/v2"},
        {4, "/api/v2", "/api/v2"},
        {5, "/ap", NULL},
        {6, "/other", NULL},
        {7, "", NULL},
        {8, "/API", NULL}, /* case */
        {9, "/api/v2x", "/api/v2"},
    };

    mk(&s, "svc", "a", "d", 2, "/api", "http://a/", "/api/v2", "http://b/");
    struct http_service *svc = build(&s.m);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct http_route_path *p =
            http_service_match(svc, cases[i].path, strlen(cases[i].path));
        print_message("match case %d\n", cases[i].no);
        if (cases[i].want == NULL) {
            assert_null(p);
        } else {
            assert_non_null(p);
            assert_string_equal(p->path, cases[i].want);
        }
    }
    /* 10. decoded paths may hold NUL bytes: lengths, not strings */
    assert_string_equal(http_service_match(svc, "/api\0x", 6)->path, "/api");
    http_service_unref(svc);

    /* 11-13. the empty key matches everything, "/" only what starts with '/' */
    mk(&s, "svc", "a", "d", 2, "", "http://all/", "/api", "http://api/");
    svc = build(&s.m);
    assert_string_equal(http_service_match(svc, "/x", 2)->path, "");
    assert_string_equal(http_service_match(svc, "*", 1)->path, "");
    assert_string_equal(http_service_match(svc, "/api", 4)->path, "/api");
    http_service_unref(svc);
    mk(&s, "svc", "a", "d", 1, "/", "http://root/");
    svc = build(&s.m);
    assert_null(http_service_match(svc, "*", 1));
    assert_string_equal(http_service_match(svc, "/anything", 9)->path, "/");
    http_service_unref(svc);
}

/* ---- the domain table ---- */

static struct http_service *svc_for(const char *id, const char *acct, const char *domain)
{
    struct msvc s;
    mk(&s, id, acct, domain, 1, "/", "http://backend/");
    return build(&s.m);
}

static struct http_service *find(const struct http_routes *t, const char *host)
{
    return http_routes_find(t, host, strlen(host));
}

static void test_routes_lookup(void **state)
{
    struct http_routes t;
    http_routes_init(&t);
    assert_null(find(&t, "a.example.com")); /* empty table */
    struct http_service *a = svc_for("svc-a", "acct-1", "a.example.com");
    struct http_service *v6 = svc_for("svc-6", "acct-1", "2001:db8::1");
    struct http_service *v4 = svc_for("svc-4", "acct-2", "10.0.0.1");
    assert_int_equal(http_routes_put(&t, a), NB_OK);
    assert_int_equal(http_routes_put(&t, v6), NB_OK);
    assert_int_equal(http_routes_put(&t, v4), NB_OK);
    assert_int_equal(http_routes_count(&t), 3);

    static const struct {
        int no;
        const char *host;
        int want; /* 0 none, 1 a, 2 v6, 3 v4 */
    } cases[] = {
        {1, "a.example.com", 1},
        {2, "a.example.com:443", 1}, /* port stripped */
        {3, "a.example.com:8443", 1},
        {4, "A.example.com", 0}, /* exact, case-sensitive */
        {5, "a.example.com.", 0},
        {6, "b.example.com", 0},
        {7, "[2001:db8::1]:443", 2}, /* IPv6 Host, brackets and port stripped */
        {8, "2001:db8::1", 2},       /* SplitHostPort fails: used as is (= domain) */
        {9, "[2001:db8::1]", 0},     /* missing port: used as is, brackets kept */
        {10, "10.0.0.1:80", 3},
        {11, "10.0.0.1", 3},
        {12, "a.example.com:", 1}, /* empty port still splits */
        {13, "", 0},
        {14, "a.example.co", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct http_service *want[] = {NULL, a, v6, v4};
        print_message("lookup case %d\n", cases[i].no);
        assert_ptr_equal(find(&t, cases[i].host), want[cases[i].want]);
    }
    /* a Host with an embedded NUL never matches a shorter domain */
    assert_null(http_routes_find(&t, "a.example.com\0x", 15));

    /* scoped lookups: another account's host is invisible */
    assert_ptr_equal(http_routes_find_scoped(&t, "a.example.com", 13, "acct-1"), a);
    assert_null(http_routes_find_scoped(&t, "a.example.com", 13, "acct-2"));
    assert_ptr_equal(http_routes_find_scoped(&t, "10.0.0.1:80", 11, "acct-2"), v4);
    assert_null(http_routes_find_scoped(&t, "10.0.0.1:80", 11, "acct-1"));
    assert_null(http_routes_find_scoped(&t, "nope", 4, "acct-1"));
    assert_null(http_routes_find_scoped(&t, "a.example.com", 13, NULL));

    http_service_unref(a);
    http_service_unref(v6);
    http_service_unref(v4);
    http_routes_deinit(&t);
}

static void test_routes_replace_remove(void **state)
{
    struct http_routes t;
    http_routes_init(&t);

    /* 1. a new service for the same domain replaces the old one, whose table ref goes */
    struct http_service *old = svc_for("svc-1", "acct", "app.example.com");
    struct http_service *new = svc_for("svc-1", "acct", "app.example.com");
    assert_int_equal(http_routes_put(&t, old), NB_OK);
    assert_int_equal(old->_refs, 2);
    assert_int_equal(http_routes_put(&t, new), NB_OK);
    assert_int_equal(old->_refs, 1);
    assert_int_equal(new->_refs, 2);
    assert_ptr_equal(find(&t, "app.example.com"), new);
    assert_int_equal(http_routes_count(&t), 1);
    http_service_unref(old);

    /* 2. an in-flight request's ref keeps a removed service alive */
    struct http_service *inflight = http_service_ref(find(&t, "app.example.com"));
    assert_int_equal(http_routes_remove(&t, "svc-1"), 1);
    assert_null(find(&t, "app.example.com"));
    assert_int_equal(inflight->_refs, 2); /* ours + the test's original */
    assert_string_equal(inflight->paths[0].target.host, "backend");
    http_service_unref(inflight);
    http_service_unref(new);

    /* 3. a service id that moved to another domain keeps the old one until removed */
    struct http_service *d1 = svc_for("svc-2", "acct", "one.example.com");
    struct http_service *d2 = svc_for("svc-2", "acct", "two.example.com");
    struct http_service *other = svc_for("svc-3", "acct", "three.example.com");
    assert_int_equal(http_routes_put(&t, d1), NB_OK);
    assert_int_equal(http_routes_put(&t, d2), NB_OK);
    assert_int_equal(http_routes_put(&t, other), NB_OK);
    assert_ptr_equal(find(&t, "one.example.com"), d1);
    assert_ptr_equal(find(&t, "two.example.com"), d2);
    assert_int_equal(http_routes_count(&t), 3);
    /* 4. removal by id takes every domain of that id and nothing else */
    assert_int_equal(http_routes_remove(&t, "svc-2"), 2);
    assert_null(find(&t, "one.example.com"));
    assert_null(find(&t, "two.example.com"));
    assert_ptr_equal(find(&t, "three.example.com"), other);
    assert_int_equal(http_routes_count(&t), 1);
    /* 5. unknown id, repeated removal */
    assert_int_equal(http_routes_remove(&t, "svc-2"), 0);
    assert_int_equal(http_routes_remove(&t, "nope"), 0);
    /* 6. a domain taken over by another service id leaves the old id's entry list */
    struct http_service *thief = svc_for("svc-4", "acct", "three.example.com");
    assert_int_equal(http_routes_put(&t, thief), NB_OK);
    assert_int_equal(http_routes_remove(&t, "svc-3"), 0);
    assert_ptr_equal(find(&t, "three.example.com"), thief);
    assert_int_equal(http_routes_remove(&t, "svc-4"), 1);
    assert_int_equal(http_routes_count(&t), 0);
    /* 7. a service without domain is refused */
    struct http_service bare = {._refs = 1, .id = "x", .domain = ""};
    assert_int_equal(http_routes_put(&t, &bare), NB_E_INVAL);
    assert_int_equal(http_routes_put(&t, NULL), NB_E_INVAL);

    http_service_unref(d1);
    http_service_unref(d2);
    http_service_unref(other);
    http_service_unref(thief);
    http_routes_deinit(&t);
    /* 8. deinit drops the table's refs; init again is an empty table */
    http_routes_init(&t);
    struct http_service *last = svc_for("svc-5", "acct", "five.example.com");
    assert_int_equal(http_routes_put(&t, last), NB_OK);
    http_routes_deinit(&t);
    assert_int_equal(last->_refs, 1);
    http_service_unref(last);
    assert_int_equal(http_routes_count(&t), 0);
}

static void test_routes_10k(void **state)
{
    enum { N = 10000 };
    struct http_routes t;
    char dom[64], id[32], acct[32];
    http_routes_init(&t);
    for (int i = 0; i < N; i++) {
        snprintf(dom, sizeof dom, "svc%05d.example.com", i);
        snprintf(id, sizeof id, "id-%d", i);
        snprintf(acct, sizeof acct, "acct-%d", i % 97);
        struct http_service *s = svc_for(id, acct, dom);
        assert_int_equal(http_routes_put(&t, s), NB_OK);
        http_service_unref(s);
    }
    assert_int_equal(http_routes_count(&t), N);
    for (int i = 0; i < N; i++) {
        snprintf(dom, sizeof dom, "svc%05d.example.com:443", i);
        snprintf(id, sizeof id, "id-%d", i);
        snprintf(acct, sizeof acct, "acct-%d", i % 97);
        struct http_service *s = find(&t, dom);
        assert_non_null(s);
        assert_string_equal(s->id, id);
        assert_ptr_equal(http_routes_find_scoped(&t, dom, strlen(dom), acct), s);
    }
    for (int i = 0; i < N; i += 2) {
        snprintf(id, sizeof id, "id-%d", i);
        assert_int_equal(http_routes_remove(&t, id), 1);
    }
    assert_int_equal(http_routes_count(&t), N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(dom, sizeof dom, "svc%05d.example.com", i);
        if (i % 2)
            assert_non_null(find(&t, dom));
        else
            assert_null(find(&t, dom));
    }
    http_routes_deinit(&t);
}

/* Differential: random puts/removes/finds against a flat array (house style §8.40). */
static void test_routes_differential(void **state)
{
    enum { DOMS = 40, IDS = 12, OPS = 20000 };
    struct http_routes t;
    struct http_service *ref[DOMS] = {0}; /* domain index -> service (the reference holds a ref) */
    char dom[32], id[16];
    unsigned seed = 12345;

    http_routes_init(&t);
    for (int op = 0; op < OPS; op++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = seed >> 8;
        int d = (int)(r % DOMS), k = (int)((r / DOMS) % IDS);
        snprintf(dom, sizeof dom, "d%d.test", d);
        snprintf(id, sizeof id, "s%d", k);
        switch ((r / (DOMS * IDS)) % 3) {
        case 0: {
            struct http_service *s = svc_for(id, "acct", dom);
            assert_int_equal(http_routes_put(&t, s), NB_OK);
            http_service_unref(ref[d]);
            ref[d] = s; /* transfers our ref to the reference model */
            break;
        }
        case 1: {
            unsigned want = 0;
            for (int i = 0; i < DOMS; i++)
                if (ref[i] && strcmp(ref[i]->id, id) == 0) {
                    http_service_unref(ref[i]);
                    ref[i] = NULL;
                    want++;
                }
            assert_int_equal(http_routes_remove(&t, id), want);
            break;
        }
        default:
            assert_ptr_equal(find(&t, dom), ref[d]);
        }
        unsigned count = 0;
        for (int i = 0; i < DOMS; i++)
            count += ref[i] != NULL;
        assert_int_equal(http_routes_count(&t), count);
    }
    for (int i = 0; i < DOMS; i++) {
        snprintf(dom, sizeof dom, "d%d.test", i);
        assert_ptr_equal(find(&t, dom), ref[i]);
        http_service_unref(ref[i]);
    }
    http_routes_deinit(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target_parse_ok), cmocka_unit_test(test_target_parse_bad),
        cmocka_unit_test(test_host_strip_port), cmocka_unit_test(test_service_new),
        cmocka_unit_test(test_service_options), cmocka_unit_test(test_service_match),
        cmocka_unit_test(test_routes_lookup),   cmocka_unit_test(test_routes_replace_remove),
        cmocka_unit_test(test_routes_10k),      cmocka_unit_test(test_routes_differential),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
