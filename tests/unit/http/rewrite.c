/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * Upstream request construction and response rewriting, one numbered case per table line. The
 * cases port the behaviours of NetBird's proxy/internal/proxy/reverseproxy_test.go (spec §11):
 * Host vs pass_host_header, forwarding headers for untrusted and trusted peers, cookie and
 * session_token stripping, the path strip/join rules (the "/heise" examples), PRESERVE mode,
 * custom headers, header-auth stripping, identity headers and Location rewriting; plus the Go
 * library details they depend on (hop-by-hop scrubbing, query re-encoding, path re-escaping).
 * Every expectation is an exact string.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/rewrite.h"
#include "platform/addr.h"
#include "platform/arena.h"
#include "platform/err.h"

/* ---- fixture ---- */

struct fx {
    struct nb_arena a;
    struct http_hdrs in_hdrs;
    struct sockaddr_storage peer;
    struct http_inreq in;
    struct http_fwd_cfg cfg;
    struct http_service *svc;
    struct http_outreq out;
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    nb_arena_init(&f->a);
    http_fwd_cfg_init(&f->cfg);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    http_service_unref(f->svc);
    http_fwd_cfg_deinit(&f->cfg);
    nb_arena_deinit(&f->a);
    free(f);
    return 0;
}

/* Resets the fixture between table rows (keeps nothing). */
static void fx_reset(struct fx *f)
{
    http_service_unref(f->svc);
    f->svc = NULL;
    http_fwd_cfg_deinit(&f->cfg);
    http_fwd_cfg_init(&f->cfg);
    nb_arena_reset(&f->a);
    memset(&f->in, 0, sizeof f->in);
    memset(&f->out, 0, sizeof f->out);
}

struct svc_opts {
    enum nb_path_rewrite mode;
    bool pass_host;
    struct nb_header_kv *custom;
    uint32_t n_custom;
    const char *const *auth_names;
    uint32_t n_auth;
};

static void set_svc(struct fx *f, const char *key, const char *target, const struct svc_opts *o)
{
    struct nb_path_mapping p = {.path = (char *)key, .target = (char *)target};
    struct nb_header_auth ha[4] = {{0}};
    struct nb_mapping m = {.id = "svc",
                           .account_id = "acct",
                           .domain = "public.example.com",
                           .paths = &p,
                           .n_paths = 1};
    char warn[256];
    if (o != NULL) {
        p.options.path_rewrite = o->mode;
        p.options.custom_headers = o->custom;
        p.options.n_custom_headers = o->n_custom;
        m.pass_host_header = o->pass_host;
        for (uint32_t i = 0; i < o->n_auth; i++)
            ha[i].header = (char *)o->auth_names[i];
        m.auth.header_auths = ha;
        m.auth.n_header_auths = o->n_auth;
    }
    http_service_unref(f->svc);
    assert_int_equal(http_service_new(&m, &f->svc, warn, sizeof warn), NB_OK);
    assert_int_equal(f->svc->n_paths, 1);
}

/* "Name: value" lines separated by '\n', copied into the arena. */
static void add_fields(struct fx *f, struct http_hdrs *h, const char *lines)
{
    while (lines != NULL && *lines) {
        const char *nl = strchr(lines, '\n');
        size_t n = nl ? (size_t)(nl - lines) : strlen(lines);
        const char *colon = memchr(lines, ':', n);
        assert_non_null(colon);
        size_t kl = (size_t)(colon - lines);
        const char *v = colon + 1;
        if (v < lines + n && *v == ' ')
            v++;
        size_t vl = (size_t)(lines + n - v);
        char *k = nb_arena_strndup(&f->a, lines, kl), *vv = nb_arena_strndup(&f->a, v, vl);
        assert_non_null(k);
        assert_non_null(vv);
        assert_int_equal(http_hdrs_add(h, k, kl, vv, vl), NB_OK);
        lines = nl ? nl + 1 : NULL;
    }
}

/* A request: target "/path?query", peer "ip:port", client fields. */
static void set_req(struct fx *f, const char *host, const char *target, const char *peer, bool tls,
                    const char *fields)
{
    socklen_t sl;
    http_hdrs_init(&f->in_hdrs, &f->a);
    if (host != NULL) {
        char *h = nb_arena_strndup(&f->a, host, strlen(host));
        assert_non_null(h);
        assert_int_equal(http_hdrs_add(&f->in_hdrs, "Host", 4, h, strlen(h)), NB_OK);
    }
    add_fields(f, &f->in_hdrs, fields);
    const char *q = strchr(target, '?');
    f->in.path = target;
    f->in.path_len = q ? (size_t)(q - target) : strlen(target);
    f->in.query = q ? q + 1 : NULL;
    f->in.query_len = q ? strlen(q + 1) : 0;
    f->in.hdrs = &f->in_hdrs;
    f->in.host = host;
    f->in.host_len = host ? strlen(host) : 0;
    f->in.tls = tls;
    if (peer != NULL) {
        assert_int_equal(nb_addr_parse(peer, &f->peer, &sl), NB_OK);
        f->in.peer = (const struct sockaddr *)&f->peer;
    } else {
        f->in.peer = NULL;
    }
}

static int run(struct fx *f, const struct http_identity *id)
{
    const char *dec;
    size_t dl;
    const struct http_route_path *m = &f->svc->paths[0];
    if (http_path_decode(&f->a, f->in.path, f->in.path_len, &dec, &dl) == NB_OK) {
        m = http_service_match(f->svc, dec, dl);
        assert_non_null(m);
    }
    return http_rewrite_request(&f->a, &f->in, f->svc, m, id, &f->cfg, &f->out);
}

static char *target_str(struct fx *f)
{
    char *s = nb_arena_strndup(&f->a, f->out.target, f->out.target_len);
    assert_non_null(s);
    return s;
}

/*
 * want: '\n'-separated lines. "Name: value" = exactly one such field with exactly that value
 * (names compared case-insensitively); "-Name" = no such field.
 */
static void expect_fields(struct fx *f, const struct http_hdrs *h, const char *want)
{
    while (want != NULL && *want) {
        const char *nl = strchr(want, '\n');
        size_t n = nl ? (size_t)(nl - want) : strlen(want);
        char line[512];
        assert_true(n < sizeof line);
        memcpy(line, want, n);
        line[n] = '\0';
        if (line[0] == '-') {
            if (http_hdrs_get(h, line + 1) != NULL)
                fail_msg("field %s present but should not be", line + 1);
        } else {
            char *colon = strchr(line, ':');
            assert_non_null(colon);
            *colon = '\0';
            const char *v = colon[1] == ' ' ? colon + 2 : colon + 1;
            const struct http_field *fl = http_hdrs_get(h, line);
            if (fl == NULL)
                fail_msg("field %s missing", line);
            char *got = nb_arena_strndup(&f->a, fl->value, fl->value_len);
            assert_non_null(got);
            assert_string_equal(got, v);
            assert_int_equal(http_hdrs_count(h, line), 1);
        }
        want = nl ? nl + 1 : NULL;
    }
}

/* ---- path and query (§4.4 steps 1, 2, 9) ---- */

struct path_case {
    int no;
    const char *target; /* PathMapping target */
    const char *key;    /* PathMapping path */
    enum nb_path_rewrite mode;
    const char *req;  /* request-target */
    const char *want; /* upstream request-target */
    int rc;
};

#define D NB_PATH_REWRITE_DEFAULT
#define P NB_PATH_REWRITE_PRESERVE

static const struct path_case PATHS[] = {
    /* TestRewriteFunc_URLRewriting */
    {1, "http://backend.internal:8080/app", "", D, "/somepath", "/app/somepath", NB_OK},
    {2, "https://backend.example.org:443/app", "/app", D, "/app", "/app/", NB_OK},
    {3, "https://backend.example.org:443/app", "/app", D, "/app/article/123", "/app/article/123",
     NB_OK},
    /* TestRewriteFunc_PathForwarding: the "/heise" examples */
    {4, "https://heise.de:443/heise", "/heise", D, "/heise", "/heise/", NB_OK},
    {5, "https://heise.de:443/heise", "/heise", D, "/heise/article/123", "/heise/article/123",
     NB_OK},
    {6, "https://heise.de:443", "/heise", D, "/heise", "/", NB_OK},
    {7, "https://heise.de:443", "/heise", D, "/heise/article/123", "/article/123", NB_OK},
    {8, "https://backend.example.com:443/", "/", D, "/heise", "/heise", NB_OK},
    /* raw prefix strip on the decoded path, no segment boundary */
    {9, "http://b/", "/api", D, "/apix", "/x", NB_OK},
    {10, "http://b/", "", D, "/foo", "/foo", NB_OK},
    {11, "http://b/", "/api", D, "/api", "/", NB_OK},
    {12, "http://b/", "/api/", D, "/api/", "/", NB_OK},
    /* a strip drops RawPath: the decoded rest is re-escaped (Go URL.EscapedPath) */
    {13, "http://b/", "/api", D, "/api/a%2Fb", "/a/b", NB_OK},
    {14, "http://b/", "/api", D, "/api/a%20b", "/a%20b", NB_OK},
    {15, "http://b/", "/api", D, "/api/%7e!*", "/~%21%2A", NB_OK},
    {16, "http://b/", "/a b", D, "/a%20b/c", "/c", NB_OK}, /* the key matches the decoded path */
    /* root matches keep the client's spelling where it is a valid encoding */
    {17, "http://b/", "/", D, "/a%2Fb", "/a%2Fb", NB_OK},
    {18, "http://b/", "/", D, "/a%2fb", "/a%2fb", NB_OK},
    {19, "http://b/", "/", D, "/%7e", "/%7e", NB_OK},
    {20, "http://b/", "/", D, "/a\"b", "/a%22b", NB_OK},
    {21, "http://b/", "/", D, "/caf\xc3\xa9", "/caf%C3%A9", NB_OK},
    {22, "http://b/", "/", D, "/a;b=c,d:e@f$g&h+i", "/a;b=c,d:e@f$g&h+i", NB_OK},
    /* single-slash join with the target path */
    {23, "http://b/base", "/", D, "/x", "/base/x", NB_OK},
    {24, "http://b/base/", "/", D, "/x", "/base/x", NB_OK},
    {25, "http://b", "/", D, "/x", "/x", NB_OK},
    {26, "http://b/x%2Fy", "/", D, "/z", "/x%2Fy/z", NB_OK},
    {27, "http://b/", "", D, "*", "/%2A", NB_OK},
    {28, "http://b/", "", D, "", "/", NB_OK},
    /* PRESERVE keeps the full client path */
    {29, "http://b:8080/", "/api", P, "/api/users", "/api/users", NB_OK},
    {30, "http://b:8080/", "/api", P, "/api/a%2Fb", "/api/a%2Fb", NB_OK},
    {31, "http://b/base", "/api", P, "/api/x", "/base/api/x", NB_OK},
    /* query merge: target query first */
    {32, "http://b/?t=1", "/", D, "/x?y=2", "/x?t=1&y=2", NB_OK},
    {33, "http://b/?t=1", "/", D, "/x", "/x?t=1", NB_OK},
    {34, "http://b/", "/", D, "/x?", "/x?", NB_OK},
    {35, "http://b/", "/", D, "/x?a=%41&b", "/x?a=%41&b", NB_OK},
    {36, "http://b/", "/", D, "/x?a=\xc3\xa9", "/x?a=\xc3\xa9", NB_OK},
    /* httputil cleanQueryParams: ';' or a bad escape re-encodes the whole query */
    {37, "http://b/", "/", D, "/x?a=1;b=2&c=%zz&d=4", "/x?d=4", NB_OK},
    {38, "http://b/", "/", D, "/x?z=1&a=%4", "/x?z=1", NB_OK},
    {39, "http://b/", "/", D, "/x?a=%4", "/x", NB_OK},
    /* TestRewriteFunc_SessionTokenQueryStripping and Values.Encode */
    {40, "http://b/", "/", D, "/callback?session_token=secret123&other=keep",
     "/callback?other=keep", NB_OK},
    {41, "http://b/", "/", D, "/api?foo=bar&baz=qux", "/api?foo=bar&baz=qux", NB_OK},
    {42, "http://b/", "/", D, "/x?b=2&session_token=s&a=1&a=0", "/x?a=1&a=0&b=2", NB_OK},
    {43, "http://b/", "/", D, "/x?q=a+b%21&session_token=x", "/x?q=a+b%21", NB_OK},
    {44, "http://b/", "/", D, "/x?session_token=x", "/x", NB_OK},
    {45, "http://b/", "/", D, "/x?session%5Ftoken=x&k=%2F%7E", "/x?k=%2F~", NB_OK},
    {46, "http://b/?session_token=t", "/", D, "/x?a=1", "/x?a=1", NB_OK},
    {47, "http://b/", "/", D, "/x?session_token=1&=v&k&k=", "/x?=v&k=&k=", NB_OK},
    /* malformed client paths: 400 */
    {48, "http://b/", "/", D, "/a%zz", NULL, NB_E_PARSE},
    {49, "http://b/", "/", D, "/a%2", NULL, NB_E_PARSE},
    {50, "http://b/", "/", D, "/a\x01", NULL, NB_E_PARSE},
    {51, "http://b/", "/", D, "/a?b c", NULL, NB_E_PARSE},
    {52, "http://b/", "/", D, "/a#b", NULL, NB_E_PARSE},
};

static void test_paths(void **state)
{
    struct fx *f = *state;
    for (size_t i = 0; i < sizeof PATHS / sizeof PATHS[0]; i++) {
        const struct path_case *c = &PATHS[i];
        struct svc_opts o = {.mode = c->mode};
        print_message("path case %d\n", c->no);
        fx_reset(f);
        set_svc(f, c->key, c->target, &o);
        set_req(f, "public.example.com", c->req, "1.2.3.4:5000", false, NULL);
        assert_int_equal(run(f, NULL), c->rc);
        if (c->rc == NB_OK)
            assert_string_equal(target_str(f), c->want);
    }
}

/* ---- Host (§4.4 step 3), TestRewriteFunc_HostRewriting ---- */

static void test_host(void **state)
{
    struct fx *f = *state;
    struct svc_opts pass = {.pass_host = true};

    /* 1. rewritten to the target authority by default */
    fx_reset(f);
    set_svc(f, "", "http://backend.internal:8080", NULL);
    set_req(f, "public.example.com", "/path", "203.0.113.1:12345", true, NULL);
    assert_int_equal(run(f, NULL), NB_OK);
    assert_int_equal(f->out.host_len, strlen("backend.internal:8080"));
    assert_memory_equal(f->out.host, "backend.internal:8080", f->out.host_len);
    /* 2. Host is never in the field list (the client writes it first) */
    expect_fields(f, &f->out.hdrs, "-Host");
    /* 3. pass_host_header keeps the client's, port included */
    fx_reset(f);
    set_svc(f, "", "http://backend.internal:8080", &pass);
    set_req(f, "public.example.com:8443", "/path", "203.0.113.1:12345", true, NULL);
    assert_int_equal(run(f, NULL), NB_OK);
    assert_int_equal(f->out.host_len, strlen("public.example.com:8443"));
    assert_memory_equal(f->out.host, "public.example.com:8443", f->out.host_len);
    /* 4. default port not in the URL -> not in Host */
    fx_reset(f);
    set_svc(f, "", "https://backend/", NULL);
    set_req(f, "public.example.com", "/", "203.0.113.1:12345", true, NULL);
    assert_int_equal(run(f, NULL), NB_OK);
    assert_int_equal(f->out.host_len, 7);
    assert_memory_equal(f->out.host, "backend", 7);
    /* 5. IPv6 target: brackets */
    fx_reset(f);
    set_svc(f, "", "http://[fd00::1]:8080/", NULL);
    set_req(f, "public.example.com", "/", "203.0.113.1:12345", true, NULL);
    assert_int_equal(run(f, NULL), NB_OK);
    assert_int_equal(f->out.host_len, strlen("[fd00::1]:8080"));
    assert_memory_equal(f->out.host, "[fd00::1]:8080", f->out.host_len);
    /* 6. pass_host_header with no client Host (HTTP/1.0) falls back to the target */
    fx_reset(f);
    set_svc(f, "", "http://backend.internal:8080", &pass);
    set_req(f, NULL, "/", "203.0.113.1:12345", false, NULL);
    assert_int_equal(run(f, NULL), NB_OK);
    assert_memory_equal(f->out.host, "backend.internal:8080", f->out.host_len);
}

/* ---- forwarding headers (§4.4 step 7) ---- */

struct fwd_case {
    int no;
    const char *trusted; /* --trusted-proxies, NULL = none */
    const char *proto;   /* --forwarded-proto */
    bool tls;
    const char *host;
    const char *peer;
    const char *fields; /* client fields */
    const char *want;
};

#define STD_UNTRUSTED                                                                         \
    "X-Forwarded-For: 203.0.113.50\nX-Real-Ip: 203.0.113.50\nX-Forwarded-Host: example.com\n" \
    "X-Forwarded-Proto: http\nX-Forwarded-Port: 80"

static const struct fwd_case FWD[] = {
    /* TestRewriteFunc_XForwardedForStripping */
    {1, NULL, "auto", false, "example.com", "203.0.113.50:9999", NULL, STD_UNTRUSTED},
    {2, NULL, "auto", false, "example.com", "203.0.113.50:9999",
     "X-Forwarded-For: 10.0.0.1, 172.16.0.1", STD_UNTRUSTED},
    {3, NULL, "auto", false, "example.com", "203.0.113.50:9999", "X-Real-IP: 10.0.0.1",
     STD_UNTRUSTED},
    /* TestRewriteFunc_ForwardedHostAndProto */
    {4, NULL, "auto", false, "myapp.example.com:8443", "1.2.3.4:5000", NULL,
     "X-Forwarded-Host: myapp.example.com:8443\nX-Forwarded-Port: 8443"},
    {5, NULL, "auto", false, "example.com:9090", "1.2.3.4:5000", NULL, "X-Forwarded-Port: 9090"},
    {6, NULL, "auto", true, "example.com", "1.2.3.4:5000", NULL,
     "X-Forwarded-Proto: https\nX-Forwarded-Port: 443"},
    {7, NULL, "auto", false, "example.com", "1.2.3.4:5000", NULL,
     "X-Forwarded-Proto: http\nX-Forwarded-Port: 80"},
    {8, NULL, "https", false, "example.com", "1.2.3.4:5000", NULL,
     "X-Forwarded-Proto: https\nX-Forwarded-Port: 443"},
    {9, NULL, "http", true, "example.com", "1.2.3.4:5000", NULL,
     "X-Forwarded-Proto: http\nX-Forwarded-Port: 80"},
    /* TestExtractForwardedPort (IPv6 Host forms) */
    {10, NULL, "auto", false, "[::1]:8080", "1.2.3.4:5000", NULL, "X-Forwarded-Port: 8080"},
    {11, NULL, "auto", true, "::1", "1.2.3.4:5000", NULL, "X-Forwarded-Port: 443"},
    {12, NULL, "auto", false, "example.com:", "1.2.3.4:5000", NULL, "X-Forwarded-Port: 80"},
    /* TestExtractClientIP: the peer IP as Go prints it */
    {13, NULL, "auto", false, "example.com", "[2001:db8::1]:443", NULL,
     "X-Forwarded-For: 2001:db8::1\nX-Real-Ip: 2001:db8::1"},
    {14, NULL, "auto", false, "example.com", "[::1]:12345", NULL, "X-Forwarded-For: ::1"},
    {15, NULL, "auto", false, "example.com", "[::ffff:203.0.113.7]:5000", NULL,
     "X-Forwarded-For: 203.0.113.7"},
    {16, NULL, "auto", false, "example.com", "[2001:db8:0:0:1:0:0:1]:1", NULL,
     "X-Forwarded-For: 2001:db8::1:0:0:1"},
    /* client forwarding fields never pass an untrusted hop */
    {17, NULL, "auto", false, "example.com", "203.0.113.50:9999",
     "Forwarded: for=1.2.3.4\nX-Forwarded-Host: evil\nX-Forwarded-Proto: https\n"
     "X-Forwarded-Port: 9999",
     "-Forwarded\n" STD_UNTRUSTED},
    /* TestRewriteFunc_TrustedProxy */
    {18, "10.0.0.0/8", "auto", false, "example.com", "10.0.0.1:5000",
     "X-Forwarded-For: 203.0.113.50",
     "X-Forwarded-For: 203.0.113.50, 10.0.0.1\nX-Real-Ip: 203.0.113.50"},
    {19, "10.0.0.0/8", "auto", false, "example.com", "10.0.0.1:5000",
     "X-Forwarded-For: 203.0.113.50\nX-Real-IP: 198.51.100.1", "X-Real-Ip: 198.51.100.1"},
    {20, "10.0.0.0/8", "auto", false, "example.com", "10.0.0.1:5000",
     "X-Forwarded-For: 203.0.113.50, 10.0.0.2",
     "X-Forwarded-For: 203.0.113.50, 10.0.0.2, 10.0.0.1\nX-Real-Ip: 203.0.113.50"},
    {21, "10.0.0.0/8", "auto", false, "proxy.internal", "10.0.0.1:5000",
     "X-Forwarded-Host: original.example.com", "X-Forwarded-Host: original.example.com"},
    {22, "10.0.0.0/8", "auto", false, "example.com", "10.0.0.1:5000", "X-Forwarded-Proto: https",
     "X-Forwarded-Proto: https\nX-Forwarded-Port: 443"}, /* port from the trusted proto */
    {23, "10.0.0.0/8", "auto", false, "example.com", "10.0.0.1:5000", "X-Forwarded-Port: 8443",
     "X-Forwarded-Port: 8443"},
    {24, "10.0.0.0/8", "https", false, "example.com", "10.0.0.1:5000", NULL,
     "X-Forwarded-Proto: https\nX-Forwarded-Port: 443"},
    {25, "10.0.0.0/8", "auto", false, "example.com", "10.0.0.1:5000", NULL,
     "X-Forwarded-Host: example.com\nX-Forwarded-For: 10.0.0.1\nX-Real-Ip: 10.0.0.1\n"
     "X-Forwarded-Proto: http\nX-Forwarded-Port: 80"},
    {26, "10.0.0.0/8", "auto", false, "example.com", "203.0.113.50:9999",
     "X-Forwarded-For: 10.0.0.1, 172.16.0.1\nX-Real-IP: evil\nX-Forwarded-Host: evil.example.com\n"
     "X-Forwarded-Proto: https\nX-Forwarded-Port: 9999",
     STD_UNTRUSTED},
    {27, "", "auto", false, "example.com", "10.0.0.1:5000", "X-Forwarded-For: 203.0.113.50",
     "X-Forwarded-For: 10.0.0.1"},
    /* Header.Get semantics: the first X-Forwarded-For field */
    {28, "10.0.0.0/8", "auto", false, "example.com", "10.0.0.1:5000",
     "X-Forwarded-For: 1.1.1.1\nX-Forwarded-For: 2.2.2.2",
     "X-Forwarded-For: 1.1.1.1, 10.0.0.1\nX-Real-Ip: 1.1.1.1"},
    /* a dual-stack socket's v4-mapped peer is trusted by an IPv4 prefix */
    {29, "10.0.0.0/8", "auto", false, "example.com", "[::ffff:10.0.0.1]:5000",
     "X-Forwarded-For: 203.0.113.9", "X-Forwarded-For: 203.0.113.9, 10.0.0.1"},
    /* a trusted proxy's X-Forwarded-Host is kept even if our Host differs; Forwarded still goes */
    {30, "10.0.0.1", "auto", true, "example.com:8443", "10.0.0.1:5000", "Forwarded: for=x",
     "-Forwarded\nX-Forwarded-Host: example.com:8443\nX-Forwarded-Port: 8443\n"
     "X-Forwarded-Proto: https"},
};

static void test_forwarding(void **state)
{
    struct fx *f = *state;
    for (size_t i = 0; i < sizeof FWD / sizeof FWD[0]; i++) {
        const struct fwd_case *c = &FWD[i];
        char err[128];
        print_message("forwarding case %d\n", c->no);
        fx_reset(f);
        if (c->trusted != NULL)
            assert_int_equal(http_trusted_parse(&f->cfg, c->trusted, err, sizeof err), NB_OK);
        assert_int_equal(http_forwarded_proto_parse(c->proto, &f->cfg.proto), NB_OK);
        set_svc(f, "", "http://backend.internal:8080", NULL);
        set_req(f, c->host, "/", c->peer, c->tls, c->fields);
        assert_int_equal(run(f, NULL), NB_OK);
        expect_fields(f, &f->out.hdrs, c->want);
    }
}

/* ---- hop-by-hop and Go ReverseProxy pre-processing ---- */

struct hdr_case {
    int no;
    const char *fields;
    const char *want;
    const char *upgrade; /* expected out.upgrade, NULL = none */
};

static const struct hdr_case HOPS[] = {
    {1, "Connection: keep-alive, X-Foo\nX-Foo: 1\nX-Bar: 2\nKeep-Alive: timeout=5",
     "-X-Foo\n-Keep-Alive\n-Connection\nX-Bar: 2", NULL},
    {2,
     "Proxy-Connection: keep-alive\nProxy-Authorization: Basic x\nProxy-Authenticate: y\n"
     "Trailer: X-T\nTransfer-Encoding: chunked\nUpgrade: h2c",
     "-Proxy-Connection\n-Proxy-Authorization\n-Proxy-Authenticate\n-Trailer\n"
     "-Transfer-Encoding\n-Upgrade",
     NULL},
    {3, "Te: trailers, deflate", "Te: trailers", NULL},
    {4, "Te: gzip", "-Te", NULL},
    {5, "Connection: Te\nTe: Trailers", "Te: trailers\n-Connection", NULL},
    {6, "Connection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Key: k",
     "Connection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Key: k", "websocket"},
    {7, "Connection: keep-alive, upgrade\nUpgrade: websocket",
     "Connection: Upgrade\n"
     "Upgrade: websocket",
     "websocket"},
    {8, "Connection: upgrade", "-Connection\n-Upgrade", NULL},
    {9, "Connection: a\nConnection: b\nA: 1\nB: 2\nC: 3", "-A\n-B\nC: 3\n-Connection", NULL},
    {10, "Connection: Cookie\nCookie: a=1; nb_session=x", "Cookie: a=1", NULL},
    {11, "Connection: X-Real-IP\nX-Real-IP: evil", "X-Real-Ip: 203.0.113.50", NULL},
    {12, "Connection:  ,close,, X-Keep-Not \nX-Keep-Not: 1\nX-Keep: 1", "-X-Keep-Not\nX-Keep: 1",
     NULL},
    /* framing and Expect are the engine's; Host is written separately */
    {13, "Expect: 100-continue\nContent-Length: 5\nHost: x", "-Expect\n-Content-Length\n-Host",
     NULL},
    /* Go's client sends only the first User-Agent, and none when it is empty */
    {14, "User-Agent: ", "-User-Agent", NULL},
    {15, "User-Agent: a\nUser-Agent: b", "User-Agent: a", NULL},
    {16, "", "-User-Agent\n-Via\n-Cookie\n-X-NetBird-User\n-X-NetBird-Groups", NULL},
    {17, "Via: 1.1 upstream", "Via: 1.1 upstream", NULL}, /* forwarded, none added */
    {18, "Connection: Host", "-Connection", NULL},
    {19, "Accept: */*\nAccept: text/html", "-Nothing", NULL},
};

static void test_hop_by_hop(void **state)
{
    struct fx *f = *state;
    for (size_t i = 0; i < sizeof HOPS / sizeof HOPS[0]; i++) {
        const struct hdr_case *c = &HOPS[i];
        print_message("hop case %d\n", c->no);
        fx_reset(f);
        set_svc(f, "", "http://backend.internal:8080", NULL);
        set_req(f, "example.com", "/", "203.0.113.50:9999", false, c->fields);
        assert_int_equal(run(f, NULL), NB_OK);
        expect_fields(f, &f->out.hdrs, c->want);
        if (c->upgrade == NULL) {
            assert_null(f->out.upgrade);
        } else {
            assert_int_equal(f->out.upgrade_len, strlen(c->upgrade));
            assert_memory_equal(f->out.upgrade, c->upgrade, f->out.upgrade_len);
        }
    }
    /* 19 again (the last row): repeated fields are all kept */
    assert_int_equal(http_hdrs_count(&f->out.hdrs, "Accept"), 2);

    /* 20. an Upgrade value Go refuses (bytes outside 0x20..0x7E): 502 */
    fx_reset(f);
    set_svc(f, "", "http://backend.internal:8080", NULL);
    set_req(f, "example.com", "/", "203.0.113.50:9999", false,
            "Connection: Upgrade\nUpgrade: web\tsocket");
    assert_int_equal(run(f, NULL), NB_E_UNSUPPORTED);

    /* 21. the kept User-Agent stays where the client put it */
    fx_reset(f);
    set_svc(f, "", "http://backend.internal:8080", NULL);
    set_req(f, "example.com", "/", "203.0.113.50:9999", false,
            "User-Agent: a\nX-After: 1\nUser-Agent: b");
    assert_int_equal(run(f, NULL), NB_OK);
    assert_true(http_ieq(f->out.hdrs.v[0].name, f->out.hdrs.v[0].name_len, "user-agent"));
    assert_true(http_ieq(f->out.hdrs.v[1].name, f->out.hdrs.v[1].name_len, "x-after"));
    expect_fields(f, &f->out.hdrs, "User-Agent: a");

    /* 22. responses: the same scrubbing, other fields and order kept */
    struct http_hdrs h;
    http_hdrs_init(&h, &f->a);
    add_fields(f, &h,
               "Content-Type: text/plain\nConnection: close, X-Internal\nX-Internal: 1\n"
               "Keep-Alive: 5\nContent-Length: 3\nSet-Cookie: a=1\nSet-Cookie: b=2\n"
               "Transfer-Encoding: chunked\nTrailer: X-T");
    http_strip_hop_by_hop(&h);
    assert_int_equal(h.n, 4);
    assert_true(http_ieq(h.v[0].name, h.v[0].name_len, "content-type"));
    assert_true(http_ieq(h.v[1].name, h.v[1].name_len, "content-length"));
    assert_memory_equal(h.v[2].value, "a=1", 3);
    assert_memory_equal(h.v[3].value, "b=2", 3);
}

/* ---- cookies (§4.4 step 8, TestRewriteFunc_SessionCookieStripping) ---- */

static const struct hdr_case COOKIES[] = {
    {1, "Cookie: nb_session=jwt-token-here", "-Cookie", NULL},
    {2, "Cookie: nb_session=jwt-token; app_session=app-value; tracking=track-value",
     "Cookie: app_session=app-value; tracking=track-value", NULL},
    {3, "", "-Cookie", NULL},
    {4, "Cookie: a=1\nCookie: b=2; nb_session=x", "Cookie: a=1; b=2", NULL},
    {5, "Cookie: a=\"q\"; b=x y; c=d,e; e=; f=\"\"",
     "Cookie: a=\"q\"; b=\"x y\"; c=\"d,e\"; e=; f=", NULL},
    {6, "Cookie: bad name=1; ok=1; v=a\\b; x=\"; flag", "Cookie: ok=1; flag=", NULL},
    {7, "Cookie:  ;; a=1 ;", "Cookie: a=1", NULL},
    {8, "Cookie: NB_SESSION=keep; nb_session2=keep", "Cookie: NB_SESSION=keep; nb_session2=keep",
     NULL},
    {9, "Cookie: nb_session=a\nCookie: nb_session=b", "-Cookie", NULL},
    {10, "Cookie: =v; a b=c; d=e", "Cookie: d=e", NULL},
};

static void test_cookies(void **state)
{
    struct fx *f = *state;
    for (size_t i = 0; i < sizeof COOKIES / sizeof COOKIES[0]; i++) {
        const struct hdr_case *c = &COOKIES[i];
        print_message("cookie case %d\n", c->no);
        fx_reset(f);
        set_svc(f, "", "http://backend.internal:8080", NULL);
        set_req(f, "example.com", "/", "1.2.3.4:5000", false, c->fields);
        assert_int_equal(run(f, NULL), NB_OK);
        expect_fields(f, &f->out.hdrs, c->want);
    }
    /* 11-12. Go (>= 1.25.2) parses no cookie at all from more than 3000 */
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = 3000 + (size_t)extra;
        char *big = malloc(n * 5 + 16);
        assert_non_null(big);
        strcpy(big, "Cookie: ");
        char *p = big + 8;
        for (size_t k = 0; k < n; k++)
            p += sprintf(p, "%sa=1", k ? ";" : "");
        fx_reset(f);
        set_svc(f, "", "http://backend.internal:8080", NULL);
        set_req(f, "example.com", "/", "1.2.3.4:5000", false, big);
        assert_int_equal(run(f, NULL), NB_OK);
        print_message("cookie case %d\n", 11 + extra);
        if (extra)
            expect_fields(f, &f->out.hdrs, "-Cookie");
        else
            assert_int_equal(http_hdrs_get(&f->out.hdrs, "Cookie")->value_len, n * 5 - 2);
        free(big);
    }
}

/* ---- custom headers and header auth (§4.4 steps 4, 5) ---- */

static void test_custom_and_header_auth(void **state)
{
    struct fx *f = *state;
    struct nb_header_kv ch[] = {
        {"x-custom", "v"},
        {"Authorization", "Bearer upstream"},
        {"X-Forwarded-For", "custom"},
        {"X-NetBird-User", "custom"},
        {"Cookie", "custom=1"},
        {"User-Agent", "custom-ua"},
        {"X-Api-Token", "from-config"},
    };
    const char *const auth[] = {"X-Api-Token", "x-other-secret"};
    struct svc_opts o = {.custom = ch, .n_custom = 7, .auth_names = auth, .n_auth = 2};

    /* 1. custom values overwrite the client's (incl. Authorization); header-auth names are
     *    stripped before the custom ones are set; forwarding/identity/cookie win over custom */
    fx_reset(f);
    set_svc(f, "/", "http://backend.internal:8080/", &o);
    set_req(f, "example.com", "/", "203.0.113.50:1", false,
            "Authorization: Basic client\nX-Custom: client\nX-Api-Token: secret\n"
            "X-Other-Secret: s2\nUser-Agent: curl");
    assert_int_equal(run(f, NULL), NB_OK);
    expect_fields(f, &f->out.hdrs,
                  "Authorization: Bearer upstream\nX-Custom: v\nX-Api-Token: from-config\n"
                  "-X-Other-Secret\nX-Forwarded-For: 203.0.113.50\n-X-NetBird-User\n-Cookie\n"
                  "User-Agent: custom-ua");
    /* 2. the canonical spelling is what goes out */
    const struct http_field *fl = http_hdrs_get(&f->out.hdrs, "x-custom");
    assert_int_equal(fl->name_len, 8);
    assert_memory_equal(fl->name, "X-Custom", 8);

    /* 3. header-auth stripping without custom headers, also for cookie-authenticated requests */
    o = (struct svc_opts){.auth_names = auth, .n_auth = 2};
    fx_reset(f);
    set_svc(f, "/", "http://backend.internal:8080/", &o);
    set_req(f, "example.com", "/", "203.0.113.50:1", false,
            "x-api-token: secret\nX-API-TOKEN: again\nCookie: nb_session=jwt; a=b\nX-Keep: 1");
    assert_int_equal(run(f, NULL), NB_OK);
    expect_fields(f, &f->out.hdrs, "-X-Api-Token\nCookie: a=b\nX-Keep: 1");
}

/* ---- identity (§4.4 step 6) ---- */

static void test_identity(void **state)
{
    struct fx *f = *state;
    static const char *const ids[] = {"g1", "g2", "g3", "g4", "", "g6"};
    static const char *const names[] = {"Admins", "", "Dev,Ops", NULL, "", "Tab\tName"};
    static const char *const ids2[] = {"g1", "g2"};
    static const char *const bad[] = {"", "a,b", "x\x01", "caf\xc3\xa9"};
    struct {
        int no;
        struct http_identity id;
        bool null_id;
        const char *want;
    } cases[] = {
        {1,
         {"alice@example.com", ids, names, 6},
         false,
         "X-NetBird-User: alice@example.com\nX-NetBird-Groups: Admins,g2,g4"},
        {2, {0}, true, "-X-NetBird-User\n-X-NetBird-Groups"},
        {3, {"bad\r\nInjected: x", NULL, NULL, 0}, false, "-X-NetBird-User\n-Injected"},
        {4, {"tab\there", NULL, NULL, 0}, false, "X-NetBird-User: tab\there"},
        {5, {"caf\xc3\xa9", NULL, NULL, 0}, false, "-X-NetBird-User"},
        {6, {"", ids2, NULL, 2}, false, "-X-NetBird-User\nX-NetBird-Groups: g1,g2"},
        {7, {NULL, bad, NULL, 4}, false, "-X-NetBird-User\n-X-NetBird-Groups"},
        {8, {"Bob Smith", ids2, ids2, 0}, false, "X-NetBird-User: Bob Smith\n-X-NetBird-Groups"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("identity case %d\n", cases[i].no);
        fx_reset(f);
        set_svc(f, "/", "http://backend.internal:8080/", NULL);
        /* client copies never pass, whatever the identity */
        set_req(f, "example.com", "/", "203.0.113.50:1", false,
                "X-NetBird-User: evil@example.com\nx-netbird-groups: admins");
        assert_int_equal(run(f, cases[i].null_id ? NULL : &cases[i].id), NB_OK);
        expect_fields(f, &f->out.hdrs, cases[i].want);
    }
    /* 9. Go spells them canonically on the wire */
    const struct http_field *fl = http_hdrs_get(&f->out.hdrs, "X-NetBird-User");
    assert_memory_equal(fl->name, "X-Netbird-User", 14);
    /* 10. the user string is copied: the identity may go before the upstream request */
    assert_ptr_not_equal(fl->value, cases[7].id.user);
}

/* ---- client IP (§4.5) ---- */

static void test_client_ip(void **state)
{
    struct fx *f = *state;
    static const struct {
        int no;
        const char *trusted;
        const char *peer;
        const char *xff; /* NULL = no field */
        const char *want;
    } cases[] = {
        {1, NULL, "203.0.113.50:1", "1.2.3.4", "203.0.113.50"},
        {2, "10.0.0.0/8", "10.0.0.1:1", "1.2.3.4", "1.2.3.4"},
        {3, "10.0.0.0/8", "10.0.0.1:1", "1.2.3.4, 10.0.0.2", "1.2.3.4"},
        {4, "10.0.0.0/8", "10.0.0.1:1", "garbage, 10.0.0.2", "10.0.0.2"},
        {5, "10.0.0.0/8", "10.0.0.1:1", "1.2.3.4, garbage", "1.2.3.4"},
        {6, "10.0.0.0/8", "10.0.0.1:1", "10.0.0.3, 10.0.0.2", "10.0.0.3"},
        {7, "10.0.0.0/8", "10.0.0.1:1", "", "10.0.0.1"},
        {8, "10.0.0.0/8", "10.0.0.1:1", NULL, "10.0.0.1"},
        {9, "10.0.0.0/8", "10.0.0.1:1", "::ffff:1.2.3.4", "1.2.3.4"},
        {10, "10.0.0.0/8", "10.0.0.1:1", "::ffff:10.9.9.9, 10.0.0.2", "10.9.9.9"},
        {11, "10.0.0.0/8", "[::ffff:10.0.0.1]:1", "5.6.7.8", "5.6.7.8"},
        {12, NULL, "[2001:db8::1]:1", "5.6.7.8", "2001:db8::1"},
        {13, "2001:db8::/32", "[2001:db8::5]:1", "2001:0db8:0:0:0:0:0:7, 2001:db8::9",
         "2001:db8::7"},
        {14, "10.0.0.0/8", "10.0.0.1:1", " 1.2.3.4 , , 10.0.0.9 ", "1.2.3.4"},
        {15, "10.0.0.0/8", "10.0.0.1:1", "01.2.3.4", "10.0.0.1"},
        {16, "10.0.0.0/8", "10.0.0.1:1", "garbage", "10.0.0.1"},
        {17, "10.0.0.0/8", "10.0.0.1:1", "fe80::1%eth0", "fe80::1%eth0"},
        {18, "10.0.0.0/8", "10.0.0.1:1", "1.2.3.4:80", "10.0.0.1"},
        {19, "fe80::/10", "10.0.0.1:1", "1.2.3.4", "10.0.0.1"},
        {20, "10.0.0.0/8, 192.0.2.0/24", "192.0.2.7:1", "8.8.8.8, 10.1.1.1, 192.0.2.1", "8.8.8.8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[NB_ADDRSTRLEN], err[128];
        struct sockaddr_storage ss;
        socklen_t sl;
        struct http_hdrs h;
        print_message("client ip case %d\n", cases[i].no);
        fx_reset(f);
        if (cases[i].trusted)
            assert_int_equal(http_trusted_parse(&f->cfg, cases[i].trusted, err, sizeof err), NB_OK);
        http_hdrs_init(&h, &f->a);
        if (cases[i].xff)
            assert_int_equal(
                http_hdrs_add(&h, "X-Forwarded-For", 15, cases[i].xff, strlen(cases[i].xff)),
                NB_OK);
        assert_int_equal(nb_addr_parse(cases[i].peer, &ss, &sl), NB_OK);
        assert_int_equal(http_client_ip((struct sockaddr *)&ss, &h, &f->cfg, out), NB_OK);
        assert_string_equal(out, cases[i].want);
    }
    /* 21. no peer, or not an IP */
    char out[NB_ADDRSTRLEN] = "x";
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_int_equal(http_client_ip(NULL, NULL, NULL, out), NB_E_INVAL);
    assert_string_equal(out, "");
    assert_int_equal(http_client_ip(&un, NULL, NULL, out), NB_E_INVAL);
}

/* ---- configuration parsing ---- */

static void test_config_parse(void **state)
{
    struct http_fwd_cfg c;
    char err[128];
    static const struct {
        int no;
        const char *list;
        int rc;
        size_t n;
        const char *err;
    } cases[] = {
        {1, "10.0.0.0/8, 1.2.3.4", NB_OK, 2, ""},
        {2, " , ,2001:db8::1 ", NB_OK, 1, ""},
        {3, "", NB_OK, 0, ""},
        {4, "10.0.0.0/33", NB_E_PARSE, 0, "invalid trusted proxy \"10.0.0.0/33\""},
        {5, "1.2.3.4/08", NB_E_PARSE, 0, "invalid trusted proxy \"1.2.3.4/08\""},
        {6, "10.0.0.0/8,bogus", NB_E_PARSE, 0, "invalid trusted proxy \"bogus\""},
        {7, "fe80::1%eth0", NB_E_PARSE, 0, "invalid trusted proxy \"fe80::1%eth0\""},
        {8, "01.2.3.4", NB_E_PARSE, 0, "invalid trusted proxy \"01.2.3.4\""},
        {9, "1.2.3.4/", NB_E_PARSE, 0, "invalid trusted proxy \"1.2.3.4/\""},
        {10, "1.2.3.4/+8", NB_E_PARSE, 0, "invalid trusted proxy \"1.2.3.4/+8\""},
        {11, "::/0,0.0.0.0/0", NB_OK, 2, ""},
        {12, "2001:db8::/129", NB_E_PARSE, 0, "invalid trusted proxy \"2001:db8::/129\""},
        {13, "\t10.1.2.3/8\n", NB_OK, 1, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("trusted case %d\n", cases[i].no);
        http_fwd_cfg_init(&c);
        err[0] = '\0';
        assert_int_equal(http_trusted_parse(&c, cases[i].list, err, sizeof err), cases[i].rc);
        assert_int_equal(c.n_trusted, cases[i].n);
        assert_string_equal(err, cases[i].err);
        http_fwd_cfg_deinit(&c);
    }
    /* 14. bare IPs are /32 and /128; prefixes are masked */
    http_fwd_cfg_init(&c);
    assert_int_equal(
        http_trusted_parse(&c, "1.2.3.4, 2001:db8::1, 10.1.2.3/8, 10.0.0.0/12", err, sizeof err),
        NB_OK);
    assert_int_equal(c.trusted[0].bits, 32);
    assert_int_equal(c.trusted[1].bits, 128);
    assert_int_equal(c.trusted[2].bits, 8);
    assert_memory_equal(c.trusted[2].addr, "\x0a\x00\x00\x00", 4);
    /* 15. a failed parse leaves the previous list */
    assert_int_equal(http_trusted_parse(&c, "x", err, sizeof err), NB_E_PARSE);
    assert_int_equal(c.n_trusted, 4);
    http_fwd_cfg_deinit(&c);

    /* --forwarded-proto */
    enum http_fwd_proto p;
    assert_int_equal(http_forwarded_proto_parse("auto", &p), NB_OK);
    assert_int_equal(p, HTTP_FWD_PROTO_AUTO);
    assert_int_equal(http_forwarded_proto_parse("http", &p), NB_OK);
    assert_int_equal(p, HTTP_FWD_PROTO_HTTP);
    assert_int_equal(http_forwarded_proto_parse("https", &p), NB_OK);
    assert_int_equal(p, HTTP_FWD_PROTO_HTTPS);
    assert_int_equal(http_forwarded_proto_parse("HTTPS", &p), NB_E_PARSE);
    assert_int_equal(http_forwarded_proto_parse("", &p), NB_E_PARSE);
    struct http_fwd_cfg pc = {.proto = HTTP_FWD_PROTO_AUTO};
    assert_true(http_fwd_https(&pc, true));
    assert_false(http_fwd_https(&pc, false));
    pc.proto = HTTP_FWD_PROTO_HTTPS;
    assert_true(http_fwd_https(&pc, false));
    pc.proto = HTTP_FWD_PROTO_HTTP;
    assert_false(http_fwd_https(&pc, true));
}

/* ---- path decoding ---- */

static void test_path_decode(void **state)
{
    struct fx *f = *state;
    static const struct {
        int no;
        const char *raw;
        const char *want;
        size_t want_len;
        int rc;
    } cases[] = {
        {1, "/a%20b", "/a b", 4, NB_OK},
        {2, "/plain", "/plain", 6, NB_OK},
        {3, "/a%2", NULL, 0, NB_E_PARSE},
        {4, "/a%zz", NULL, 0, NB_E_PARSE},
        {5, "%", NULL, 0, NB_E_PARSE},
        {6, "/a+b", "/a+b", 4, NB_OK},
        {7, "%00", "\0", 1, NB_OK},
        {8, "/%2F%2f", "///", 3, NB_OK},
        {9, "", "", 0, NB_OK},
        {10, "/%E2%82%AC", "/\xe2\x82\xac", 4, NB_OK},
        {11, "/%4", NULL, 0, NB_E_PARSE},
        {12, "/%g0", NULL, 0, NB_E_PARSE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *out;
        size_t n;
        print_message("decode case %d\n", cases[i].no);
        assert_int_equal(http_path_decode(&f->a, cases[i].raw, strlen(cases[i].raw), &out, &n),
                         cases[i].rc);
        if (cases[i].rc != NB_OK)
            continue;
        assert_int_equal(n, cases[i].want_len);
        assert_memory_equal(out, cases[i].want, n);
        if (strchr(cases[i].raw, '%') == NULL)
            assert_ptr_equal(out, cases[i].raw); /* no copy when there is nothing to decode */
    }
}

/* ---- Location (§4.8, TestRewriteLocationFunc) ---- */

struct loc_case {
    int no;
    const char *target;
    const char *key;
    enum nb_path_rewrite mode;
    bool https;
    const char *host; /* client Host */
    const char *loc;
    const char *want; /* NULL: unchanged (same pointer) */
    int rc;
};

#define BI  "http://backend.internal:8080"
#define PUB "public.example.com"

static const struct loc_case LOCS[] = {
    {1, BI, "", D, true, PUB, BI "/login", "https://" PUB "/login", NB_OK},
    {2, BI, "", D, true, PUB, "https://other.example.com/path", NULL, NB_OK},
    {3, BI, "", D, true, PUB, "/dashboard", NULL, NB_OK},
    {4, BI, "/api", D, true, PUB, BI "/users", "https://" PUB "/api/users", NB_OK},
    {5, BI, "", D, false, PUB, BI "/path", "http://" PUB "/path", NB_OK},
    {6, BI, "", D, true, PUB, "", NULL, NB_OK},
    {7, BI, "/", D, true, PUB, BI "/login", "https://" PUB "/login", NB_OK},
    {8, BI, "", D, true, PUB, BI "/login?redirect=%2Fdashboard&lang=en",
     "https://" PUB "/login?redirect=%2Fdashboard&lang=en", NB_OK},
    {9, BI, "", D, true, PUB, BI "/docs#section-2", "https://" PUB "/docs#section-2", NB_OK},
    {10, BI, "", D, true, PUB, BI "/search?q=test&page=1#results",
     "https://" PUB "/search?q=test&page=1#results", NB_OK},
    {11, BI, "/api", D, true, PUB, BI "/search?q=hello", "https://" PUB "/api/search?q=hello",
     NB_OK},
    {12, BI, "/api/", D, true, PUB, BI "/users", "https://" PUB "/api/users", NB_OK},
    {13, BI, "/app", D, true, PUB, BI "/", "https://" PUB "/app/", NB_OK},
    {14, BI, "/app/", D, true, PUB, BI "/", "https://" PUB "/app/", NB_OK},
    {15, BI, "", D, true, PUB, BI "/path/", "https://" PUB "/path/", NB_OK},
    {16, BI, "", D, true, PUB, BI "/", "https://" PUB "/", NB_OK},
    {17, BI, "", D, true, PUB, "http://backend.internal:9090/other", NULL, NB_OK},
    {18, BI, "", D, true, PUB, "http://backend.internal/path", NULL, NB_OK},
    {19, "https://heise.de:443", "", D, true, PUB, "https://heise.de/path", "https://" PUB "/path",
     NB_OK},
    {20, "http://backend.local:80", "", D, false, PUB, "http://backend.local/path",
     "http://" PUB "/path", NB_OK},
    {21, "https://heise.de", "", D, true, PUB, "https://heise.de:443/path", "https://" PUB "/path",
     NB_OK},
    {22, "https://backend.internal:8443", "", D, true, PUB, "https://backend.internal/path", NULL,
     NB_OK},
    {23, BI, "", D, true, PUB, BI "/path%20with%20spaces/file%2Fname",
     "https://" PUB "/path%20with%20spaces/file%2Fname", NB_OK},
    {24, BI, "/v1", D, true, PUB, BI "/redirect?url=http%3A%2F%2Fexample.com",
     "https://" PUB "/v1/redirect?url=http%3A%2F%2Fexample.com", NB_OK},
    /* unparsable: the engine answers 502 */
    {25, BI, "", D, true, PUB, BI "/%zz", NULL, NB_E_PARSE},
    {26, BI, "", D, true, PUB, "http://backend.internal:port/", NULL, NB_E_PARSE},
    {27, BI, "", D, true, PUB, "1a:b", NULL, NB_E_PARSE},
    {28, BI, "", D, true, PUB, BI "/a\tb", NULL, NB_E_PARSE},
    {29, BI, "", D, true, PUB, ":foo", NULL, NB_E_PARSE},
    {30, BI, "", D, true, PUB, "/ok#%zz", NULL, NB_E_PARSE},
    {31, BI, "", D, true, PUB, "http://a b:8080/", NULL, NB_E_PARSE},
    {32, BI, "", D, true, PUB, "http://[::1/", NULL, NB_E_PARSE},
    {33, BI, "", D, true, PUB, "/a%zz", NULL, NB_E_PARSE}, /* relative but unparsable */
    /* PRESERVE: the path was not stripped, so nothing is re-added */
    {34, BI, "/api", P, true, PUB, BI "/api/users", "https://" PUB "/api/users", NB_OK},
    /* scheme-relative, other scheme (schemes are not compared), upper-case scheme */
    {35, BI, "", D, true, PUB, "//backend.internal:8080/x", "https://" PUB "/x", NB_OK},
    {36, BI, "", D, true, PUB, "https://backend.internal:8080/x", "https://" PUB "/x", NB_OK},
    {37, BI, "", D, true, PUB, "HTTP://backend.internal:8080/x", "https://" PUB "/x", NB_OK},
    /* opaque and other no-host forms */
    {38, BI, "", D, true, PUB, "mailto:x@backend.internal", NULL, NB_OK},
    {39, BI, "", D, true, PUB, "http:/x", NULL, NB_OK},
    {40, BI, "", D, true, PUB, "///backend.internal:8080/x", NULL, NB_OK},
    /* userinfo kept; client Host with port; IPv6 targets */
    {41, BI, "", D, true, PUB, "http://u:p%40@backend.internal:8080/x", "https://u:p%40@" PUB "/x",
     NB_OK},
    {42, BI, "", D, true, PUB ":8443", BI "/x", "https://" PUB ":8443/x", NB_OK},
    {43, "http://[::1]:8080", "", D, false, "[::1]:8443", "http://[::1]:8080/x",
     "http://[::1]:8443/x", NB_OK},
    {44, "https://[::1]:443", "", D, true, PUB, "https://[::1]/x", NULL, NB_OK}, /* Go quirk */
    /* re-added prefix re-escapes the decoded path */
    {45, BI, "/api", D, true, PUB, BI "/a%2Fb", "https://" PUB "/api/a/b", NB_OK},
    {46, BI, "", D, true, PUB, BI "/x#a b", "https://" PUB "/x#a%20b", NB_OK},
    {47, BI, "", D, true, PUB, BI "/x#", "https://" PUB "/x", NB_OK},
    {48, BI, "", D, true, PUB, BI "?a=1", "https://" PUB "?a=1", NB_OK},
    {49, BI, "", D, true, PUB, BI, "https://" PUB, NB_OK},
    {50, BI, "", D, true, PUB, BI "/x?", "https://" PUB "/x?", NB_OK},
    {51, BI, "api", D, true, PUB, BI "/u", "https://" PUB "/api/u", NB_OK},
    {52, BI, "", D, true, PUB, BI "/a\"b", "https://" PUB "/a%22b", NB_OK},
    {53, BI, "", D, true, "h{x}", BI "/", "https://h%7Bx%7D/", NB_OK},
};

static void test_location(void **state)
{
    struct fx *f = *state;
    for (size_t i = 0; i < sizeof LOCS / sizeof LOCS[0]; i++) {
        const struct loc_case *c = &LOCS[i];
        struct svc_opts o = {.mode = c->mode};
        const char *out = NULL;
        size_t n = 0;
        print_message("location case %d\n", c->no);
        fx_reset(f);
        set_svc(f, c->key, c->target, &o);
        int rc = http_rewrite_location(&f->a, c->loc, strlen(c->loc), &f->svc->paths[0], c->host,
                                       strlen(c->host), c->https, &out, &n);
        assert_int_equal(rc, c->rc);
        if (rc != NB_OK)
            continue;
        if (c->want == NULL) {
            assert_ptr_equal(out, c->loc);
            assert_int_equal(n, strlen(c->loc));
        } else {
            char *s = nb_arena_strndup(&f->a, out, n);
            assert_non_null(s);
            assert_string_equal(s, c->want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_paths, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_host, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_forwarding, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_hop_by_hop, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cookies, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_custom_and_header_auth, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_identity, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_ip, fx_setup, fx_teardown),
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test_setup_teardown(test_path_decode, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_location, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
