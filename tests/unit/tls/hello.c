/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tls/hello.c: the ClientHello parser and ALPN negotiation. Hellos are built field by field
 * (numbered cases, one per line), cut at every length and split across records at every
 * position; one hello is the real thing, captured from `openssl s_client` over 127.0.0.1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/err.h"
#include "tls/hello.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a ClientHello builder ---- */

struct spec {
    const char *sni;     /* NULL = no server_name */
    size_t sni_len;      /* 0 = strlen(sni) */
    const char *alpn[4]; /* NULL-terminated; alpn[0] NULL = no ALPN */
    const uint16_t *suites;
    size_t n_suites;
    const uint16_t *sigalgs; /* NULL = no signature_algorithms */
    size_t n_sigalgs;
    const uint16_t *groups; /* NULL = no supported_groups */
    size_t n_groups;
    const uint16_t *versions; /* NULL = no supported_versions */
    size_t n_versions;
    bool no_extensions;
};

static const uint16_t suites_modern[] = {0x1301, 0x1302, 0xc02b, 0xc02f};
static const uint16_t suites_rsa12[] = {0xc02f, 0xc030};
static const uint16_t sig_ecdsa_rsa[] = {0x0403, 0x0804};
static const uint16_t sig_rsa[] = {0x0804, 0x0401};
static const uint16_t grp_x25519_p256[] = {0x001d, 0x0017};
static const uint16_t grp_x25519[] = {0x001d};
static const uint16_t ver_13_12[] = {0x3a3a, 0x0304, 0x0303};
static const uint16_t ver_12[] = {0x0303};

static size_t put16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return 2;
}

/* The handshake message (type, length, body) into msg; returns its length. */
static size_t build_msg(const struct spec *s, uint8_t *msg)
{
    uint8_t *p = msg + 4;
    p += put16(p, 0x0303);
    memset(p, 0xab, 32);
    p += 32;
    *p++ = 32; /* session id */
    memset(p, 0xcd, 32);
    p += 32;
    p += put16(p, s->n_suites * 2);
    for (size_t i = 0; i < s->n_suites; i++)
        p += put16(p, s->suites[i]);
    *p++ = 1;
    *p++ = 0;
    if (!s->no_extensions) {
        uint8_t *ext_len = p;
        p += 2;
        uint8_t *ext_start = p;
        if (s->sni) {
            size_t l = s->sni_len ? s->sni_len : strlen(s->sni);
            p += put16(p, 0);
            p += put16(p, l + 5);
            p += put16(p, l + 3);
            *p++ = 0;
            p += put16(p, l);
            memcpy(p, s->sni, l);
            p += l;
        }
        if (s->alpn[0]) {
            size_t l = 0;
            for (int i = 0; s->alpn[i]; i++)
                l += 1 + strlen(s->alpn[i]);
            p += put16(p, 16);
            p += put16(p, l + 2);
            p += put16(p, l);
            for (int i = 0; s->alpn[i]; i++) {
                *p++ = (uint8_t)strlen(s->alpn[i]);
                memcpy(p, s->alpn[i], strlen(s->alpn[i]));
                p += strlen(s->alpn[i]);
            }
        }
        if (s->sigalgs) {
            p += put16(p, 13);
            p += put16(p, s->n_sigalgs * 2 + 2);
            p += put16(p, s->n_sigalgs * 2);
            for (size_t i = 0; i < s->n_sigalgs; i++)
                p += put16(p, s->sigalgs[i]);
        }
        if (s->groups) {
            p += put16(p, 10);
            p += put16(p, s->n_groups * 2 + 2);
            p += put16(p, s->n_groups * 2);
            for (size_t i = 0; i < s->n_groups; i++)
                p += put16(p, s->groups[i]);
        }
        if (s->versions) {
            p += put16(p, 43);
            p += put16(p, s->n_versions * 2 + 1);
            *p++ = (uint8_t)(s->n_versions * 2);
            for (size_t i = 0; i < s->n_versions; i++)
                p += put16(p, s->versions[i]);
        }
        /* an unknown extension, skipped */
        p += put16(p, 0xfe0d);
        p += put16(p, 3);
        *p++ = 1;
        *p++ = 2;
        *p++ = 3;
        put16(ext_len, (size_t)(p - ext_start));
    }
    size_t body = (size_t)(p - msg) - 4;
    msg[0] = 1;
    msg[1] = (uint8_t)(body >> 16);
    msg[2] = (uint8_t)(body >> 8);
    msg[3] = (uint8_t)body;
    return body + 4;
}

/* Wraps msg into records; the first record carries `split` bytes (0 = all in one). */
static size_t build_records(const uint8_t *msg, size_t len, size_t split, uint8_t *out)
{
    size_t o = 0, done = 0;
    while (done < len) {
        size_t n = len - done;
        if (done == 0 && split && split < len)
            n = split;
        out[o++] = 22;
        out[o++] = 3;
        out[o++] = 1;
        o += put16(out + o, n);
        memcpy(out + o, msg + done, n);
        o += n;
        done += n;
    }
    return o;
}

static uint8_t msg[8192], rec[9000];

static size_t build(const struct spec *s, size_t split)
{
    size_t m = build_msg(s, msg);
    return build_records(msg, m, split, rec);
}

static struct spec base_spec(void)
{
    struct spec s = {
        .sni = "App.Example.COM",
        .alpn = {"h2", "http/1.1", NULL},
        .suites = suites_modern,
        .n_suites = 4,
        .sigalgs = sig_ecdsa_rsa,
        .n_sigalgs = 2,
        .groups = grp_x25519_p256,
        .n_groups = 2,
        .versions = ver_13_12,
        .n_versions = 3,
    };
    return s;
}

/* ---- tests ---- */

static void test_basic(void **state)
{
    struct spec s = base_spec();
    size_t n = build(&s, 0);
    struct tls_hello h;
    assert_int_equal(tls_hello_parse(rec, n, &h), NB_OK);
    assert_string_equal(h.sni, "app.example.com");
    assert_true(h.has_alpn);
    assert_int_equal(h.alpn_len, 12);
    assert_memory_equal(h.alpn, "\x02h2\x08http/1.1", 12);
    assert_false(h.acme_only);
    assert_true(h.ecdsa_ok);
    assert_true(h.tls13);
    assert_int_equal(h.max_version, 0x0304); /* GREASE 0x3a3a skipped */
    assert_int_equal(h.len, n);
    /* Bytes after the record (the next record) are not part of it. */
    memset(rec + n, 0x17, 10);
    assert_int_equal(tls_hello_parse(rec, n + 10, &h), NB_OK);
    assert_int_equal(h.len, n);
}

static void test_every_truncation_is_again(void **state)
{
    struct spec s = base_spec();
    size_t n = build(&s, 0);
    struct tls_hello h;
    for (size_t k = 0; k < n; k++)
        assert_int_equal(tls_hello_parse(rec, k, &h), NB_E_AGAIN);
}

static void test_split_records(void **state)
{
    struct spec s = base_spec();
    size_t m = build_msg(&s, msg);
    for (size_t split = 1; split < m; split++) {
        size_t n = build_records(msg, m, split, rec);
        struct tls_hello h;
        assert_int_equal(tls_hello_parse(rec, n, &h), NB_OK);
        assert_string_equal(h.sni, "app.example.com");
        assert_int_equal(h.alpn_len, 12);
        assert_int_equal(h.len, n);
        for (size_t k = 0; k < n; k += 7)
            assert_int_equal(tls_hello_parse(rec, k, &h), NB_E_AGAIN);
    }
}

/* Numbered cases: one spec change each, the expected result. */
static void test_cases(void **state)
{
    char long_name[300];
    memset(long_name, 'a', sizeof long_name);
    struct {
        int id;
        const char *sni;
        size_t sni_len;
        const char *alpn0, *alpn1;
        int which; /* 0 base, 1 rsa-only sigalgs, 2 no P-256, 3 rsa suites + TLS 1.2 only,
                      4 no extensions, 5 no sigalgs/groups */
        int rc;
        const char *want_sni;
        bool acme, ecdsa, tls13;
    } cases[] = {
        {1, "x.test", 0, "h2", NULL, 0, NB_OK, "x.test", false, true, true},
        {2, "a\0b", 3, "h2", NULL, 0, NB_E_PARSE, "", false, false, false},
        {3, long_name, 253, "h2", NULL, 0, NB_OK, NULL, false, true, true},
        {4, long_name, 254, "h2", NULL, 0, NB_E_PARSE, "", false, false, false},
        {5, "trailing.dot.", 0, "h2", NULL, 0, NB_E_PARSE, "", false, false, false},
        {6, "sp ace", 0, "h2", NULL, 0, NB_E_PARSE, "", false, false, false},
        {7, "acme.test", 0, "acme-tls/1", NULL, 0, NB_OK, "acme.test", true, true, true},
        {8, "acme.test", 0, "acme-tls/1", "h2", 0, NB_OK, "acme.test", false, true, true},
        {9, "r.test", 0, "h2", NULL, 1, NB_OK, "r.test", false, false, true},
        {10, "r.test", 0, "h2", NULL, 2, NB_OK, "r.test", false, false, true},
        {11, "r.test", 0, "h2", NULL, 3, NB_OK, "r.test", false, false, false},
        {12, NULL, 0, NULL, NULL, 4, NB_OK, "", false, true, false},
        {13, NULL, 0, NULL, NULL, 5, NB_OK, "", false, true, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct spec s = base_spec();
        s.sni = cases[i].sni;
        s.sni_len = cases[i].sni_len;
        s.alpn[0] = cases[i].alpn0;
        s.alpn[1] = cases[i].alpn0 ? cases[i].alpn1 : NULL;
        s.alpn[2] = NULL;
        switch (cases[i].which) {
        case 1:
            s.sigalgs = sig_rsa;
            s.n_sigalgs = 2;
            break;
        case 2:
            s.groups = grp_x25519;
            s.n_groups = 1;
            break;
        case 3:
            s.suites = suites_rsa12;
            s.n_suites = 2;
            s.versions = ver_12;
            s.n_versions = 1;
            break;
        case 4:
            s.no_extensions = true;
            break;
        case 5:
            s.sigalgs = NULL;
            s.groups = NULL;
            break;
        }
        size_t n = build(&s, 0);
        struct tls_hello h;
        int rc = tls_hello_parse(rec, n, &h);
        if (rc != cases[i].rc)
            fail_msg("case %d: rc %d, want %d", cases[i].id, rc, cases[i].rc);
        if (rc != NB_OK)
            continue;
        if (cases[i].want_sni && strcmp(h.sni, cases[i].want_sni) != 0)
            fail_msg("case %d: sni '%s'", cases[i].id, h.sni);
        if (h.acme_only != cases[i].acme || h.ecdsa_ok != cases[i].ecdsa ||
            h.tls13 != cases[i].tls13)
            fail_msg("case %d: acme %d ecdsa %d tls13 %d", cases[i].id, h.acme_only, h.ecdsa_ok,
                     h.tls13);
    }
}

static void test_not_tls(void **state)
{
    struct tls_hello h;
    const uint8_t get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(tls_hello_looks_like_http(get, sizeof get - 1));
    assert_false(tls_hello_looks_like_http(get, 4));
    assert_int_equal(tls_hello_parse(get, sizeof get - 1, &h), NB_E_PARSE);
    const uint8_t appdata[] = {23, 3, 3, 0, 5, 1, 2, 3, 4, 5};
    assert_false(tls_hello_looks_like_http(appdata, sizeof appdata));
    assert_int_equal(tls_hello_parse(appdata, sizeof appdata, &h), NB_E_PARSE);
    /* A handshake record that is not a ClientHello (ServerHello, type 2). */
    struct spec s = base_spec();
    size_t n = build(&s, 0);
    rec[5] = 2;
    assert_int_equal(tls_hello_parse(rec, n, &h), NB_E_PARSE);
    /* Record length 0, and over the limit. */
    const uint8_t empty[] = {22, 3, 1, 0, 0};
    assert_int_equal(tls_hello_parse(empty, sizeof empty, &h), NB_E_PARSE);
    const uint8_t huge[] = {22, 3, 1, 0x48, 0x01};
    assert_int_equal(tls_hello_parse(huge, sizeof huge, &h), NB_E_PARSE);
    /* A message length needing more than TLS_HELLO_MAX bytes. */
    const uint8_t big[] = {22, 3, 1, 0x40, 0x00, 1, 0x00, 0x80, 0x00};
    assert_int_equal(tls_hello_parse(big, sizeof big, &h), NB_E_TOO_BIG);
    /* Extension lengths that overrun. */
    n = build(&s, 0);
    size_t ext_total_off = 5 + 4 + 2 + 32 + 1 + 32 + 2 + 8 + 2;
    rec[ext_total_off + 1] ^= 0x01;
    assert_int_equal(tls_hello_parse(rec, n, &h), NB_E_PARSE);
}

static void test_alpn_select(void **state)
{
    static const char *const srv[] = {"h2", "http/1.1", "acme-tls/1"};
    static const char *const srv_h2[] = {"h2"};
    struct {
        int id;
        const char *c0, *c1;
        const char *const *server;
        size_t n;
        const char *want;
        bool refuse;
    } cases[] = {
        {1, "http/1.1", "h2", srv, 3, "h2", false}, /* server preference */
        {2, "http/1.1", NULL, srv, 3, "http/1.1", false},
        {3, "acme-tls/1", NULL, srv, 3, "acme-tls/1", false},
        {4, "spdy/3", NULL, srv, 3, NULL, true},
        {5, "http/1.1", NULL, srv_h2, 1, NULL, false}, /* Go's http/1.1 fallback */
        {6, NULL, NULL, srv, 3, NULL, false},          /* client offers nothing */
        {7, "h2", NULL, srv, 0, NULL, false},          /* server has no list */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct spec s = base_spec();
        s.alpn[0] = cases[i].c0;
        s.alpn[1] = cases[i].c0 ? cases[i].c1 : NULL;
        s.alpn[2] = NULL;
        size_t n = build(&s, 0);
        struct tls_hello h;
        assert_int_equal(tls_hello_parse(rec, n, &h), NB_OK);
        bool refuse = !cases[i].refuse;
        const char *got = tls_hello_alpn_select(&h, cases[i].server, cases[i].n, &refuse);
        if ((got == NULL) != (cases[i].want == NULL) || (got && strcmp(got, cases[i].want) != 0) ||
            refuse != cases[i].refuse)
            fail_msg("case %d: got %s refuse %d", cases[i].id, got ? got : "(null)", refuse);
    }
}

/* A real ClientHello: openssl s_client connects to a socket of ours and we read what it sends. */
static void test_openssl_hello(void **state)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%u", ntohs(a.sin_port));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", 0);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execlp("openssl", "openssl", "s_client", "-connect", target, "-servername",
               "Peer.Example.TEST", "-alpn", "h2,http/1.1", (char *)NULL);
        _exit(127);
    }
    struct pollfd pf = {.fd = l, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 10000), 1);
    int c = accept(l, NULL, NULL);
    assert_true(c >= 0);
    static uint8_t buf[TLS_HELLO_MAX];
    size_t n = 0;
    struct tls_hello h;
    int rc = NB_E_AGAIN;
    while (rc == NB_E_AGAIN && n < sizeof buf) {
        struct pollfd pc = {.fd = c, .events = POLLIN};
        assert_int_equal(poll(&pc, 1, 10000), 1);
        ssize_t r = read(c, buf + n, sizeof buf - n);
        assert_true(r > 0);
        n += (size_t)r;
        rc = tls_hello_parse(buf, n, &h);
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    close(c);
    close(l);
    assert_int_equal(rc, NB_OK);
    assert_string_equal(h.sni, "peer.example.test");
    assert_memory_equal(h.alpn, "\x02h2\x08http/1.1", 12);
    assert_true(h.tls13);
    assert_true(h.ecdsa_ok);
    assert_int_equal(h.len, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),         cmocka_unit_test(test_every_truncation_is_again),
        cmocka_unit_test(test_split_records), cmocka_unit_test(test_cases),
        cmocka_unit_test(test_not_tls),       cmocka_unit_test(test_alpn_select),
        cmocka_unit_test(test_openssl_hello),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
