/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * HTTP/1.1 head parser and chunked decoder tables, one numbered case per line. Every input is
 * placed right before an unmapped guard page (after picohttpparser test.c), so reading one byte
 * past the given length crashes the test.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "http/h1_parse.h"
#include "platform/err.h"

#define MAXH 16

static char *guard_base;
static size_t area_size; /* 32 pages: the largest input is ~64 KiB */

/* Two areas, the second PROT_NONE; inputs are copied to the end of the first. */
static int guard_setup(void **state)
{
    area_size = (size_t)sysconf(_SC_PAGESIZE) * 32;
    guard_base =
        mmap(NULL, area_size * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (guard_base == MAP_FAILED)
        return -1;
    return mprotect(guard_base + area_size, area_size, PROT_NONE);
}

static int guard_teardown(void **state)
{
    munmap(guard_base, area_size * 2);
    return 0;
}

static char *guarded(const char *s, size_t n)
{
    char *p = guard_base + area_size - n;

    assert_true(n <= area_size);
    memcpy(p, s, n);
    return p;
}

static int req_parse(const char *s, size_t n, struct h1_request *req, struct h1_header *h)
{
    memset(req, 0, sizeof(*req));
    req->headers = h;
    req->max_headers = MAXH;
    return h1_parse_request(guarded(s, n), n, req);
}

static int res_parse(const char *s, size_t n, const char *m, struct h1_response *res,
                     struct h1_header *h)
{
    memset(res, 0, sizeof(*res));
    res->headers = h;
    res->max_headers = MAXH;
    return h1_parse_response(guarded(s, n), n, m, strlen(m), res);
}

static int eqs(const char *p, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(p, s, n) == 0;
}

/* ---- valid requests ---- */

struct vreq {
    int num;
    const char *msg;
    size_t head_len; /* 0 = whole message */
    const char *method;
    const char *target;
    enum h1_target_form form;
    int minor;
    const char *host; /* NULL = none */
    size_t nh;
    enum h1_body body;
    uint64_t cl;
};

#define REQ_GET "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\n\r\n"
static const struct vreq vreqs[] = {
    {1, REQ_GET, 0, "GET", "/a?b=c", H1_TARGET_ORIGIN, 1, "example.com", 1, H1_BODY_NONE, 0},
    {2, "GET / HTTP/1.0\r\n\r\n", 0, "GET", "/", H1_TARGET_ORIGIN, 0, NULL, 0, H1_BODY_NONE, 0},
    {3, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", 48, "POST", "/x",
     H1_TARGET_ORIGIN, 1, "h", 2, H1_BODY_LENGTH, 5},
    {4, "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 57, "POST",
     "/x", H1_TARGET_ORIGIN, 1, "h", 2, H1_BODY_CHUNKED, 0},
    {5, "PUT /x HTTP/1.1\r\nHost: h\r\ntransfer-encoding: \t CHUNKED \r\n\r\n", 0, "PUT", "/x",
     H1_TARGET_ORIGIN, 1, "h", 2, H1_BODY_CHUNKED, 0},
    {6, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 0, "CONNECT",
     "example.com:443", H1_TARGET_AUTHORITY, 1, "example.com:443", 1, H1_BODY_NONE, 0},
    {7, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 0, "OPTIONS", "*", H1_TARGET_ASTERISK, 1, "h", 1,
     H1_BODY_NONE, 0},
    {8, "GET http://h/p HTTP/1.1\r\nHost: h\r\n\r\n", 0, "GET", "http://h/p", H1_TARGET_ABSOLUTE, 1,
     "h", 1, H1_BODY_NONE, 0},
    {9, "GET HTTPS://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 0, "GET", "HTTPS://h/", H1_TARGET_ABSOLUTE, 1,
     "h", 1, H1_BODY_NONE, 0},
    {10, "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 0, "GET", "/", H1_TARGET_ORIGIN, 1, "h", 1,
     H1_BODY_NONE, 0},
    {11, "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Sp:   \r\nX-Obs: caf\xc3\xa9\r\n\r\n", 0,
     "GET", "/", H1_TARGET_ORIGIN, 1, "h", 4, H1_BODY_NONE, 0},
    {12, "M-SEARCH /%20x HTTP/1.1\r\nhOsT:h:80\r\nContent-Length: 0\r\n\r\n", 0, "M-SEARCH",
     "/%20x", H1_TARGET_ORIGIN, 1, "h:80", 2, H1_BODY_LENGTH, 0},
    {13, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n", 0, "POST",
     "/", H1_TARGET_ORIGIN, 1, "h", 2, H1_BODY_LENGTH, 9223372036854775807ull},
    {14, "GET / HTTP/1.1\r\nHost: h\r\nA: b\tc \r\n!#$%&'*+-.^_`|~09az: v\r\n\r\n", 0, "GET", "/",
     H1_TARGET_ORIGIN, 1, "h", 3, H1_BODY_NONE, 0},
};

static void check_vreq(const struct vreq *v, const struct h1_request *r, int rc)
{
    size_t hl = v->head_len ? v->head_len : strlen(v->msg);

    print_message("case %d\n", v->num);
    assert_int_equal(rc, (int)hl);
    assert_true(eqs(r->method, r->method_len, v->method));
    assert_true(eqs(r->target, r->target_len, v->target));
    assert_int_equal(r->target_form, v->form);
    assert_int_equal(r->minor_version, v->minor);
    if (v->host)
        assert_true(r->host && eqs(r->host, r->host_len, v->host));
    else
        assert_null(r->host);
    assert_int_equal(r->num_headers, v->nh);
    assert_int_equal(r->body, v->body);
    assert_true(r->content_length == v->cl);
}

static void test_request_valid(void **state)
{
    struct h1_header h[MAXH];
    struct h1_request r;
    size_t i;

    for (i = 0; i < sizeof(vreqs) / sizeof(vreqs[0]); i++) {
        const struct vreq *v = &vreqs[i];

        check_vreq(v, &r, req_parse(v->msg, strlen(v->msg), &r, h));
    }
    /* case 1 fields in detail */
    req_parse(REQ_GET, strlen(REQ_GET), &r, h);
    assert_true(eqs(h[0].name, h[0].name_len, "Host"));
    assert_true(eqs(h[0].value, h[0].value_len, "example.com"));
    /* case 11: OWS trimmed, empty values kept */
    req_parse(vreqs[10].msg, strlen(vreqs[10].msg), &r, h);
    assert_int_equal(h[1].value_len, 0);
    assert_int_equal(h[2].value_len, 0);
    assert_true(eqs(h[3].value, h[3].value_len, "caf\xc3\xa9"));
    /* case 14: inner HT kept, trailing SP trimmed */
    req_parse(vreqs[13].msg, strlen(vreqs[13].msg), &r, h);
    assert_true(eqs(h[1].value, h[1].value_len, "b\tc"));
}

/* Every proper prefix of every valid head is NB_E_AGAIN; fed incrementally the same holds. */
static void test_request_truncations(void **state)
{
    struct h1_header h[MAXH];
    struct h1_request r, inc;
    size_t i, k;

    for (i = 0; i < sizeof(vreqs) / sizeof(vreqs[0]); i++) {
        const struct vreq *v = &vreqs[i];
        size_t hl = v->head_len ? v->head_len : strlen(v->msg);
        char *buf = guard_base; /* the incremental copy lives at the start of the area */

        print_message("truncations of case %d\n", v->num);
        for (k = 0; k < hl; k++)
            assert_int_equal(req_parse(v->msg, k, &r, h), NB_E_AGAIN);
        /* one struct across calls, growing buffer (exercises _scanned) */
        memset(&inc, 0, sizeof(inc));
        inc.headers = h;
        inc.max_headers = MAXH;
        memcpy(buf, v->msg, hl);
        for (k = 0; k < hl; k++)
            assert_int_equal(h1_parse_request(buf, k, &inc), NB_E_AGAIN);
        check_vreq(v, &inc, h1_parse_request(buf, hl, &inc));
    }
}

/* ---- smuggling / malformed requests: every one is NB_E_PARSE ---- */

/*
 * G / P: a GET / POST request line and Host; CL_ / TE_: the two framing field names. The
 * length is taken from sizeof, so cases may embed NULs.
 */
#define H   "Host: h\r\n"
#define G   "GET / HTTP/1.1\r\n" H
#define P   "POST / HTTP/1.1\r\n" H
#define CL_ "Content-Length"
#define TE_ "Transfer-Encoding"
#define BAD(n, s)           \
    {                       \
        n, s, sizeof(s) - 1 \
    }

struct bad {
    int num;
    const char *msg;
    size_t len;
};

static const struct bad bad_reqs[] = {
    BAD(1, G "X: a\r\n b\r\n\r\n"),                         /* obs-fold continuation line */
    BAD(2, G "X: a\r\n\tb\r\n\r\n"),                        /* obs-fold with HT */
    BAD(3, "GET / HTTP/1.1\r\n " H "\r\n"),                 /* first field line folded */
    BAD(4, G CL_ " : 5\r\n\r\n"),                           /* SP between name and colon */
    BAD(5, G "X\t: 1\r\n\r\n"),                             /* HT between name and colon */
    BAD(6, G "X(y): 1\r\n\r\n"),                            /* non-token char in name */
    BAD(7, G ": 1\r\n\r\n"),                                /* empty field name */
    BAD(8, G "Xyz\r\n\r\n"),                                /* field line without colon */
    BAD(9, "G(T / HTTP/1.1\r\n" H "\r\n"),                  /* non-token method */
    BAD(10, " / HTTP/1.1\r\n" H "\r\n"),                    /* empty method */
    BAD(11, "GET / HTTP/1.1\n" H "\n"),                     /* bare LF line endings */
    BAD(12, "GET / HTTP/1.1\r\nX: 1\n" H "\r\n"),           /* bare LF in one field line */
    BAD(13, G "X: a\rb\r\n\r\n"),                           /* bare CR in a value */
    BAD(14, G "X: a\0b\r\n\r\n"),                           /* NUL in a value */
    BAD(15, G "X: a\x01\r\n\r\n"),                          /* other CTL in a value */
    BAD(16, G "X: a\x7f\r\n\r\n"),                          /* DEL in a value */
    BAD(17, P CL_ ": 5\r\n" TE_ ": chunked\r\n\r\n"),       /* CL and TE */
    BAD(18, P TE_ ": chunked\r\n" CL_ ": 5\r\n\r\n"),       /* TE and CL */
    BAD(19, P CL_ ": 5\r\n" CL_ ": 5\r\n\r\n"),             /* duplicate equal CL */
    BAD(20, P CL_ ": 5\r\ncontent-length: 6\r\n\r\n"),      /* conflicting CL */
    BAD(21, P CL_ ": 5, 5\r\n\r\n"),                        /* CL list */
    BAD(22, P CL_ ": +5\r\n\r\n"),                          /* CL sign */
    BAD(23, P CL_ ": -1\r\n\r\n"),                          /* CL negative */
    BAD(24, P CL_ ": 0x5\r\n\r\n"),                         /* CL hex */
    BAD(25, P CL_ ":\r\n\r\n"),                             /* CL empty */
    BAD(26, P CL_ ": 9223372036854775808\r\n\r\n"),         /* CL 2^63 overflow */
    BAD(27, P CL_ ": 18446744073709551621\r\n\r\n"),        /* CL 2^64 wrap */
    BAD(28, P CL_ ": 1 2\r\n\r\n"),                         /* CL inner space */
    BAD(29, P TE_ ": gzip\r\n\r\n"),                        /* TE gzip alone */
    BAD(30, P TE_ ": chunked, gzip\r\n\r\n"),               /* TE chunked not last */
    BAD(31, P TE_ ": xchunked\r\n\r\n"),                    /* TE xchunked */
    BAD(32, P TE_ ": chunked, chunked\r\n\r\n"),            /* TE chunked twice */
    BAD(33, P TE_ ": gzip\r\n" TE_ ": chunked\r\n\r\n"),    /* TE split over two fields */
    BAD(34, P TE_ ": chunked\r\n" TE_ ": chunked\r\n\r\n"), /* TE duplicated */
    BAD(35, P TE_ ": \x0b"
                  "chunked\r\n\r\n"),                       /* TE with VT junk */
    BAD(36, P TE_ ": chunked;a=b\r\n\r\n"),                 /* TE chunked; params */
    BAD(37, "POST / HTTP/1.0\r\n" TE_ ": chunked\r\n\r\n"), /* TE in HTTP/1.0 */
    BAD(38, P TE_ ":\r\n\r\n"),                             /* TE empty */
    BAD(39, "GET  HTTP/1.1\r\n" H "\r\n"),                  /* empty request-target */
    BAD(40, "GET /a b HTTP/1.1\r\n" H "\r\n"),              /* SP inside target */
    BAD(41, "GET /a\tb HTTP/1.1\r\n" H "\r\n"),             /* HT inside target */
    BAD(42, "GET /a\x01 HTTP/1.1\r\n" H "\r\n"),            /* CTL inside target */
    BAD(43, "GET /\xff HTTP/1.1\r\n" H "\r\n"),             /* non-ASCII target */
    BAD(44, "GET /a#b HTTP/1.1\r\n" H "\r\n"),              /* fragment in target */
    BAD(45, "GET ftp://h/ HTTP/1.1\r\n" H "\r\n"),          /* absolute-form ftp */
    BAD(46, "GET h/p HTTP/1.1\r\n" H "\r\n"),               /* absolute-form no scheme */
    BAD(47, "GET http:// HTTP/1.1\r\n" H "\r\n"),           /* absolute-form empty authority */
    BAD(48, "GET * HTTP/1.1\r\n" H "\r\n"),                 /* asterisk for GET */
    BAD(49, "CONNECT / HTTP/1.1\r\n" H "\r\n"),             /* CONNECT with origin-form */
    BAD(50, "CONNECT h HTTP/1.1\r\n" H "\r\n"),             /* CONNECT without port */
    BAD(51, "CONNECT h:x1 HTTP/1.1\r\n" H "\r\n"),          /* CONNECT bad port */
    BAD(52, "GET / HTTP/2.0\r\n" H "\r\n"),                 /* version HTTP/2.0 */
    BAD(53, "GET / HTTP/1.2\r\n" H "\r\n"),                 /* version HTTP/1.2 */
    BAD(54, "GET / http/1.1\r\n" H "\r\n"),                 /* lower-case version */
    BAD(55, "GET /\r\n\r\n"),                               /* HTTP/0.9 style line */
    BAD(56, "GET /  HTTP/1.1\r\n" H "\r\n"),                /* double SP before version */
    BAD(57, "GET / HTTP/1.1 \r\n" H "\r\n"),                /* trailing SP after version */
    BAD(58, "GET / HTTP/1.1\r\nX: 1\r\n\r\n"),              /* missing Host in 1.1 */
    BAD(59, G "host: evil\r\n\r\n"),                        /* two Host fields */
    BAD(60, "GET / HTTP/1.1\r\r\n" H "\r\n"),               /* CR CR LF */
    BAD(61, G "\n"),                                        /* bare LF ending the head */
    BAD(62, "\nGET / HTTP/1.1\r\n" H "\r\n"),               /* leading bare LF */
    BAD(63, "GE\0T / HTTP/1.1\r\n" H "\r\n"),               /* NUL in method */
    BAD(64, G "X\0: 1\r\n\r\n"),                            /* NUL in name */
};

static void test_request_smuggling(void **state)
{
    struct h1_header h[MAXH];
    struct h1_request r;
    size_t i;

    assert_true(sizeof(bad_reqs) / sizeof(bad_reqs[0]) >= 40);
    for (i = 0; i < sizeof(bad_reqs) / sizeof(bad_reqs[0]); i++) {
        print_message("smuggling case %d\n", bad_reqs[i].num);
        assert_int_equal(req_parse(bad_reqs[i].msg, bad_reqs[i].len, &r, h), NB_E_PARSE);
    }
}

static void test_request_target_too_long(void **state)
{
    static char msg[H1_MAX_TARGET + 64];
    struct h1_header h[MAXH];
    struct h1_request r;
    size_t n;

    memcpy(msg, "GET /", 5);
    memset(msg + 5, 'a', H1_MAX_TARGET - 1);
    n = 5 + H1_MAX_TARGET - 1;
    memcpy(msg + n, " HTTP/1.1\r\nHost: h\r\n\r\n", 22);
    assert_int_equal(req_parse(msg, n + 22, &r, h), (int)(n + 22)); /* exactly the limit */
    memcpy(msg + n, "a HTTP/1.1\r\nHost: h\r\n\r\n", 23);
    assert_int_equal(req_parse(msg, n + 23, &r, h), NB_E_PARSE);
}

/* ---- 431 limits ---- */

static void test_request_limits(void **state)
{
    static const char five[] = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    static const char big[] = "GET / HTTP/1.1\r\nHost: h\r\nCookie: 0123456789012345678901\r\n\r\n";
    struct h1_header h[MAXH];
    struct h1_request r;
    char *p;

    memset(&r, 0, sizeof(r));
    r.headers = h;
    r.max_headers = 5;
    p = guarded(five, sizeof(five) - 1);
    assert_int_equal(h1_parse_request(p, sizeof(five) - 1, &r), (int)sizeof(five) - 1);
    memset(&r, 0, sizeof(r));
    r.headers = h;
    r.max_headers = 4;
    assert_int_equal(h1_parse_request(p, sizeof(five) - 1, &r), NB_E_TOO_BIG);
    /* head size: exactly max_head fits, one less does not (complete or not) */
    memset(&r, 0, sizeof(r));
    r.headers = h;
    r.max_headers = MAXH;
    r.max_head = sizeof(big) - 1;
    p = guarded(big, sizeof(big) - 1);
    assert_int_equal(h1_parse_request(p, sizeof(big) - 1, &r), (int)sizeof(big) - 1);
    memset(&r, 0, sizeof(r));
    r.headers = h;
    r.max_headers = MAXH;
    r.max_head = sizeof(big) - 2;
    assert_int_equal(h1_parse_request(p, sizeof(big) - 1, &r), NB_E_TOO_BIG);
    p = guarded(big, sizeof(big) - 3);
    memset(&r, 0, sizeof(r));
    r.headers = h;
    r.max_headers = MAXH;
    r.max_head = 20;
    assert_int_equal(h1_parse_request(p, sizeof(big) - 3, &r), NB_E_TOO_BIG);
    /* zero header slots and one field */
    p = guarded(big, sizeof(big) - 1);
    memset(&r, 0, sizeof(r));
    r.headers = h;
    r.max_headers = 0;
    assert_int_equal(h1_parse_request(p, sizeof(big) - 1, &r), NB_E_TOO_BIG);
    /* responses too */
    {
        static const char resp[] = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n";
        struct h1_response s;

        memset(&s, 0, sizeof(s));
        s.headers = h;
        s.max_headers = 1;
        p = guarded(resp, sizeof(resp) - 1);
        assert_int_equal(h1_parse_response(p, sizeof(resp) - 1, "GET", 3, &s), NB_E_TOO_BIG);
        memset(&s, 0, sizeof(s));
        s.headers = h;
        s.max_headers = MAXH;
        s.max_head = 10;
        assert_int_equal(h1_parse_response(p, sizeof(resp) - 1, "GET", 3, &s), NB_E_TOO_BIG);
    }
    assert_string_equal(nb_strerror(NB_E_TOO_BIG), "too big");
}

/* ---- responses ---- */

struct vres {
    int num;
    const char *msg;
    size_t head_len;
    const char *method;
    int minor;
    int status;
    const char *reason;
    size_t nh;
    enum h1_body body;
    uint64_t cl;
};

static const struct vres vress[] = {
    {1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", 38, "GET", 1, 200, "OK", 1,
     H1_BODY_LENGTH, 2},
    {2, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, "GET", 1, 200, "OK", 1,
     H1_BODY_CHUNKED, 0},
    {3, "HTTP/1.0 200 OK\r\n\r\n", 0, "GET", 0, 200, "OK", 0, H1_BODY_CLOSE, 0},
    {4, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", 0, "HEAD", 1, 200, "OK", 1, H1_BODY_NONE,
     10},
    {5, "HTTP/1.1 204 No Content\r\n\r\n", 0, "GET", 1, 204, "No Content", 0, H1_BODY_NONE, 0},
    {6, "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", 0, "GET", 1, 304, "Not Modified",
     1, H1_BODY_NONE, 5},
    {7, "HTTP/1.1 100 Continue\r\n\r\n", 0, "POST", 1, 100, "Continue", 0, H1_BODY_NONE, 0},
    {8, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 0,
     "GET", 1, 101, "Switching Protocols", 2, H1_BODY_NONE, 0},
    {9, "HTTP/1.1 200 Connection established\r\n\r\n", 0, "CONNECT", 1, 200,
     "Connection established", 0, H1_BODY_TUNNEL, 0},
    {10, "HTTP/1.1 407 Auth\r\nContent-Length: 0\r\n\r\n", 0, "CONNECT", 1, 407, "Auth", 1,
     H1_BODY_LENGTH, 0},
    {11, "HTTP/1.1 200 \r\n\r\n", 0, "GET", 1, 200, "", 0, H1_BODY_CLOSE, 0},
    {12, "HTTP/1.1 200\r\n\r\n", 0, "GET", 1, 200, "", 0, H1_BODY_CLOSE, 0},
    {13, "HTTP/1.1 599 Weird\tReason \xe2\x9c\x93\r\nX: y\r\n\r\n", 0, "GET", 1, 599,
     "Weird\tReason \xe2\x9c\x93", 1, H1_BODY_CLOSE, 0},
    {14, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0, "POST", 1, 404, "Not Found", 1,
     H1_BODY_LENGTH, 0},
};

static void check_vres(const struct vres *v, const struct h1_response *r, int rc)
{
    size_t hl = v->head_len ? v->head_len : strlen(v->msg);

    print_message("response case %d\n", v->num);
    assert_int_equal(rc, (int)hl);
    assert_int_equal(r->minor_version, v->minor);
    assert_int_equal(r->status, v->status);
    assert_true(eqs(r->reason, r->reason_len, v->reason));
    assert_int_equal(r->num_headers, v->nh);
    assert_int_equal(r->body, v->body);
    assert_true(r->content_length == v->cl);
}

static void test_response_valid(void **state)
{
    struct h1_header h[MAXH];
    struct h1_response r;
    size_t i;

    for (i = 0; i < sizeof(vress) / sizeof(vress[0]); i++)
        check_vres(&vress[i], &r,
                   res_parse(vress[i].msg, strlen(vress[i].msg), vress[i].method, &r, h));
    res_parse(vress[7].msg, strlen(vress[7].msg), "GET", &r, h);
    assert_true(eqs(h[0].name, h[0].name_len, "Upgrade"));
    assert_true(eqs(h[1].value, h[1].value_len, "Upgrade"));
}

static void test_response_truncations(void **state)
{
    struct h1_header h[MAXH];
    struct h1_response r;
    size_t i, k;

    for (i = 0; i < sizeof(vress) / sizeof(vress[0]); i++) {
        const struct vres *v = &vress[i];
        size_t hl = v->head_len ? v->head_len : strlen(v->msg);

        print_message("truncations of response case %d\n", v->num);
        for (k = 0; k < hl; k++)
            assert_int_equal(res_parse(v->msg, k, v->method, &r, h), NB_E_AGAIN);
    }
}

static const char *const bad_resps[] = {
    /* 1 two-digit status */ "HTTP/1.1 20 OK\r\n\r\n",
    /* 2 four-digit status */ "HTTP/1.1 2000 OK\r\n\r\n",
    /* 3 status 099 */ "HTTP/1.1 099 X\r\n\r\n",
    /* 4 non-digit status */ "HTTP/1.1 2x0 OK\r\n\r\n",
    /* 5 HTTP/2 version */ "HTTP/2 200 OK\r\n\r\n",
    /* 6 HTTP/1.2 */ "HTTP/1.2 200 OK\r\n\r\n",
    /* 7 double SP after version */ "HTTP/1.1  200 OK\r\n\r\n",
    /* 8 CTL in reason */ "HTTP/1.1 200 O\x01K\r\n\r\n",
    /* 9 CL and TE */ "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    /* 10 duplicate CL */ "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    /* 11 TE gzip */ "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    /* 12 obs-fold */ "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
    /* 13 SP before colon */ "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n",
    /* 14 bare LF */ "HTTP/1.1 200 OK\nX: 1\r\n\r\n",
    /* 15 TE in HTTP/1.0 */ "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    /* 16 CL list */ "HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\n",
    /* 17 junk after status */ "HTTP/1.1 200OK\r\n\r\n",
    /* 18 bare CR in value */ "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
};

static void test_response_malformed(void **state)
{
    struct h1_header h[MAXH];
    struct h1_response r;
    size_t i;

    for (i = 0; i < sizeof(bad_resps) / sizeof(bad_resps[0]); i++) {
        print_message("bad response %zu\n", i + 1);
        assert_int_equal(res_parse(bad_resps[i], strlen(bad_resps[i]), "GET", &r, h), NB_E_PARSE);
    }
}

/* ---- chunked ---- */

struct vchunk {
    int num;
    const char *in;
    const char *out;
    size_t leftover;
};

static const struct vchunk vchunks[] = {
    {1, "0\r\n\r\n", "", 0},
    {2, "5\r\nhello\r\n0\r\n\r\n", "hello", 0},
    {3, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT", "hello world", 4},
    {4, "a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n", "01234567890123456789", 0},
    {5, "5;ext=1\r\nhello\r\n0;last\r\n\r\n", "hello", 0},
    {6, "5 ;a=\"q s\"; b\r\nhello\r\n0\r\n\r\n", "hello", 0},
    {7, "3\r\nabc\r\n0\r\nX-Trailer: v\r\nY: \r\n\r\nGET", "abc", 3},
    {8, "0000000000000003\r\nabc\r\n0\r\n\r\n", "abc", 0},
    {9, "2\r\n\r\n\r\n0\r\n\r\n", "\r\n", 0},
    {10, "1\r\n\0\r\n0\r\n\r\n", "", 0}, /* data may be anything (checked by length) */
};

static size_t vchunk_len(const struct vchunk *v)
{
    return v->num == 10 ? 11 : strlen(v->in);
}

static size_t vchunk_out_len(const struct vchunk *v)
{
    return v->num == 10 ? 1 : strlen(v->out);
}

/* Feeds in[0..n) in pieces split at the given points; collects data; returns the last rc. */
static ssize_t feed(const char *in, size_t n, const size_t *cuts, size_t ncuts, char *out,
                    size_t *out_len)
{
    struct h1_chunked st = {0};
    size_t pos = 0, i, o = 0;
    ssize_t rc = NB_E_AGAIN;

    for (i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n, len = end - pos;
        char *p = guarded(in + pos, len);

        rc = h1_chunked_decode(&st, p, &len);
        memcpy(out + o, p, len);
        o += len;
        if (rc >= 0) {
            /* leftover bytes must equal the input after the message */
            assert_memory_equal(p + len, in + end - rc, (size_t)rc);
            break;
        }
        if (rc != NB_E_AGAIN)
            break;
        pos = end;
    }
    *out_len = o;
    return rc;
}

static void test_chunked_valid(void **state)
{
    char out[256];
    size_t i, k, ol, cuts[256];

    for (i = 0; i < sizeof(vchunks) / sizeof(vchunks[0]); i++) {
        const struct vchunk *v = &vchunks[i];
        size_t n = vchunk_len(v);
        ssize_t rc;

        print_message("chunked case %d\n", v->num);
        /* whole */
        rc = feed(v->in, n, NULL, 0, out, &ol);
        assert_int_equal(rc, (ssize_t)v->leftover);
        assert_int_equal(ol, vchunk_out_len(v));
        assert_memory_equal(out, v->num == 10 ? "\0" : v->out, ol);
        /* split once at every boundary */
        for (k = 0; k <= n; k++) {
            cuts[0] = k;
            rc = feed(v->in, n, cuts, 1, out, &ol);
            /* a first piece reaching past the end of the message holds the leftover */
            assert_int_equal(rc,
                             (ssize_t)(k >= n - v->leftover ? k - (n - v->leftover) : v->leftover));
            assert_int_equal(ol, vchunk_out_len(v));
        }
        /* one byte at a time */
        for (k = 0; k + 1 < n; k++)
            cuts[k] = k + 1;
        rc = feed(v->in, n, cuts, n - 1, out, &ol);
        assert_true(rc >= 0 && (size_t)rc <= v->leftover);
        assert_int_equal(ol, vchunk_out_len(v));
        /* every proper prefix of the message itself is incomplete */
        for (k = 0; k < n - v->leftover; k++) {
            struct h1_chunked st = {0};
            size_t len = k;

            assert_int_equal(h1_chunked_decode(&st, guarded(v->in, k), &len), NB_E_AGAIN);
        }
    }
    /* after completion the decoder refuses more input */
    {
        struct h1_chunked st = {0};
        size_t len = 5;

        assert_int_equal(h1_chunked_decode(&st, guarded("0\r\n\r\n", 5), &len), 0);
        len = 1;
        assert_int_equal(h1_chunked_decode(&st, guarded("x", 1), &len), NB_E_INVAL);
    }
}

struct bchunk {
    int num;
    const char *in;
    ssize_t rc;
};

static const struct bchunk bchunks[] = {
    {1, "x\r\n", NB_E_PARSE},                     /* bad hex */
    {2, "\r\n", NB_E_PARSE},                      /* empty size */
    {3, "0x5\r\nhello\r\n0\r\n\r\n", NB_E_PARSE}, /* 0x prefix */
    {4, "-1\r\n", NB_E_PARSE},                    /* sign */
    {5, "+1\r\n", NB_E_PARSE},                    /* sign */
    {6, " 5\r\nhello\r\n", NB_E_PARSE},           /* leading SP */
    {7, "5 \r\nhello\r\n", NB_E_PARSE},           /* trailing SP, no ext */
    {8, "8000000000000000\r\n", NB_E_PARSE},      /* 2^63 */
    {9, "ffffffffffffffffff\r\n", NB_E_PARSE},    /* > 64 bits */
    {10, "00000000000000001\r\n", NB_E_PARSE},    /* 17 digits */
    {11, "5\nhello\r\n0\r\n\r\n", NB_E_PARSE},    /* bare LF after size */
    {12, "5\rhello\r\n", NB_E_PARSE},             /* bare CR after size */
    {13, "5\r\nhelloX\r\n0\r\n\r\n", NB_E_PARSE}, /* missing CRLF after data */
    {14, "5\r\nhello\n0\r\n\r\n", NB_E_PARSE},    /* LF only after data */
    {15, "5\r\nhello\r0\r\n\r\n", NB_E_PARSE},    /* CR only after data */
    {16, "5;a\0b\r\nhello\r\n", NB_E_PARSE},      /* NUL in extension */
    {17, "5;a\nb\r\nhello\r\n", NB_E_PARSE},      /* LF in extension */
    {18, "5;a\rb\r\nhello\r\n", NB_E_PARSE},      /* bare CR in extension */
    {19, "5;a\x01\r\nhello\r\n", NB_E_PARSE},     /* CTL in extension */
    {20, "5 x\r\nhello\r\n", NB_E_PARSE},         /* junk after BWS */
    {21, "0\r\n X: 1\r\n\r\n", NB_E_PARSE},       /* obs-fold trailer */
    {22, "0\r\nX : 1\r\n\r\n", NB_E_PARSE},       /* SP before colon */
    {23, "0\r\n: 1\r\n\r\n", NB_E_PARSE},         /* empty trailer name */
    {24, "0\r\nX: a\0\r\n\r\n", NB_E_PARSE},      /* NUL in trailer value */
    {25, "0\r\nX: 1\n\r\n", NB_E_PARSE},          /* bare LF in trailer */
    {26, "0\r\n\n", NB_E_PARSE},                  /* bare LF ending */
    {27, "0\r\nXyz\r\n\r\n", NB_E_PARSE},         /* trailer without colon */
    {28, "0\r\n\rX", NB_E_PARSE},                 /* CR not followed by LF */
    {29, "5;\x7f\r\nhello\r\n", NB_E_PARSE},      /* DEL in extension */
};

static size_t bchunk_len(const struct bchunk *b)
{
    switch (b->num) {
    case 16:
        return 14;
    case 24:
        return 12;
    default:
        return strlen(b->in);
    }
}

static void test_chunked_malformed(void **state)
{
    char out[256];
    size_t i, k, ol, cuts[256];

    for (i = 0; i < sizeof(bchunks) / sizeof(bchunks[0]); i++) {
        const struct bchunk *b = &bchunks[i];
        size_t n = bchunk_len(b);

        print_message("bad chunked case %d\n", b->num);
        assert_int_equal(feed(b->in, n, NULL, 0, out, &ol), b->rc);
        for (k = 0; k + 1 < n; k++)
            cuts[k] = k + 1;
        assert_int_equal(feed(b->in, n, cuts, n - 1, out, &ol), b->rc);
    }
}

struct tr_acc {
    char buf[256];
    size_t len;
};

static void tr_collect(void *arg, const char *d, size_t n)
{
    struct tr_acc *a = arg;
    assert_true(a->len + n < sizeof a->buf);
    memcpy(a->buf + a->len, d, n);
    a->len += n;
}

/* Trailer fields reach on_trailer exactly, however the input is split. */
static void test_chunked_trailers(void **state)
{
    static const char in[] = "3\r\nabc\r\n0\r\nX-A: 1\r\nX-Bb: two words\r\n\r\nNEXT";
    static const char want[] = "X-A: 1\r\nX-Bb: two words\r\n";
    size_t n = sizeof in - 1;
    for (size_t piece = 1; piece <= n; piece++) {
        struct h1_chunked st = {0};
        struct tr_acc acc = {0};
        st.on_trailer = tr_collect;
        st.trailer_arg = &acc;
        char body[16];
        size_t blen = 0;
        ssize_t rc = NB_E_AGAIN;
        for (size_t off = 0; off < n && rc == NB_E_AGAIN; off += piece) {
            size_t k = n - off < piece ? n - off : piece;
            char *p = guarded(in + off, k);
            size_t len = k;
            rc = h1_chunked_decode(&st, p, &len);
            memcpy(body + blen, p, len);
            blen += len;
            if (rc >= 0)
                assert_memory_equal(p + len, in + off + k - (size_t)rc, (size_t)rc);
        }
        assert_true(rc >= 0);
        assert_int_equal(blen, 3);
        assert_memory_equal(body, "abc", 3);
        assert_int_equal(acc.len, sizeof want - 1);
        assert_memory_equal(acc.buf, want, acc.len);
    }
}

static void test_chunked_limits(void **state)
{
    static char in[H1_MAX_TRAILER + 64];
    static char ext[H1_MAX_CHUNK_EXT + 64];
    struct h1_chunked st = {0};
    size_t n, len, i;

    /* trailer section over H1_MAX_TRAILER */
    memcpy(in, "0\r\nX: ", 6);
    memset(in + 6, 'a', H1_MAX_TRAILER);
    n = 6 + H1_MAX_TRAILER;
    len = n;
    assert_int_equal(h1_chunked_decode(&st, in, &len), NB_E_TOO_BIG);
    /* too many trailer fields */
    memset(&st, 0, sizeof(st));
    memcpy(in, "0\r\n", 3);
    n = 3;
    for (i = 0; i <= H1_MAX_TRAILER_FIELDS; i++) {
        memcpy(in + n, "A: b\r\n", 6);
        n += 6;
    }
    len = n;
    assert_int_equal(h1_chunked_decode(&st, in, &len), NB_E_TOO_BIG);
    /* extension exactly at the limit passes, one more byte fails */
    memset(&st, 0, sizeof(st));
    ext[0] = '1';
    ext[1] = ';';
    memset(ext + 2, 'e', H1_MAX_CHUNK_EXT);
    memcpy(ext + 2 + H1_MAX_CHUNK_EXT, "\r\nZ\r\n0\r\n\r\n", 10);
    len = 12 + H1_MAX_CHUNK_EXT;
    assert_int_equal(h1_chunked_decode(&st, ext, &len), 0);
    assert_int_equal(len, 1);
    assert_int_equal(ext[0], 'Z');
    memset(&st, 0, sizeof(st));
    ext[0] = '1';
    ext[1] = ';';
    memset(ext + 2, 'e', H1_MAX_CHUNK_EXT + 1);
    len = 3 + H1_MAX_CHUNK_EXT;
    assert_int_equal(h1_chunked_decode(&st, ext, &len), NB_E_PARSE);
    /* largest chunk size is accepted (and then needs data) */
    memset(&st, 0, sizeof(st));
    memcpy(in, "7fffffffffffffff\r\nabc", 21);
    len = 21;
    assert_int_equal(h1_chunked_decode(&st, in, &len), NB_E_AGAIN);
    assert_int_equal(len, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_valid),        cmocka_unit_test(test_request_truncations),
        cmocka_unit_test(test_request_smuggling),    cmocka_unit_test(test_request_target_too_long),
        cmocka_unit_test(test_request_limits),       cmocka_unit_test(test_response_valid),
        cmocka_unit_test(test_response_truncations), cmocka_unit_test(test_response_malformed),
        cmocka_unit_test(test_chunked_valid),        cmocka_unit_test(test_chunked_malformed),
        cmocka_unit_test(test_chunked_limits),       cmocka_unit_test(test_chunked_trailers),
    };

    return cmocka_run_group_tests(tests, guard_setup, guard_teardown);
}
