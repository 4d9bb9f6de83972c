/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * PROXY protocol tables, one numbered case per line: valid v1 and v2 headers field by field
 * (including headers captured from a real HAProxy 2.6 with send-proxy, send-proxy-v2 and v2
 * TLVs), malformed ones, inputs without a signature, every truncation of every case placed right
 * before an unmapped guard page, the largest v2 header; the outbound v2 encoder against bytes
 * computed from the spec's layout (Python, quoted below) and against HAProxy's own output, round
 * trips through the parser including real loopback sockets (spec/proxy.md §11
 * proxyprotocol_test.go); the trusted-proxy policy as a table and against a naive bit-by-bit
 * reference; and l4_pp_decide for every policy and input class (§10.1).
 *
 * The HAProxy vectors were recorded on 127.0.0.1: haproxy with a frontend per variant forwarding
 * to a listener that saved what arrived before the client's first bytes (l4/README.md).
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "l4/proxy_proto.h"
#include "platform/err.h"

/* ---- captured from HAProxy 2.6.12 ---- */

/* hap_v1_tcp4: client 127.0.0.1 port 57672 -> 127.0.0.1 port 18501, 44 bytes */
static const uint8_t hap_v1_tcp4[] = {
    0x50, 0x52, 0x4f, 0x58, 0x59, 0x20, 0x54, 0x43, 0x50, 0x34, 0x20, 0x31, 0x32, 0x37, 0x2e,
    0x30, 0x2e, 0x30, 0x2e, 0x31, 0x20, 0x31, 0x32, 0x37, 0x2e, 0x30, 0x2e, 0x30, 0x2e, 0x31,
    0x20, 0x35, 0x37, 0x36, 0x37, 0x32, 0x20, 0x31, 0x38, 0x35, 0x30, 0x31, 0x0d, 0x0a,
};
/* hap_v1_tcp6: client ::1 port 49358 -> ::1 port 18505, 32 bytes */
static const uint8_t hap_v1_tcp6[] = {
    0x50, 0x52, 0x4f, 0x58, 0x59, 0x20, 0x54, 0x43, 0x50, 0x36, 0x20, 0x3a, 0x3a, 0x31, 0x20, 0x3a,
    0x3a, 0x31, 0x20, 0x34, 0x39, 0x33, 0x35, 0x38, 0x20, 0x31, 0x38, 0x35, 0x30, 0x35, 0x0d, 0x0a,
};
/* hap_v2_tcp4: client 127.0.0.1 port 50066 -> 127.0.0.1 port 18502, 28 bytes */
static const uint8_t hap_v2_tcp4[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11,
    0x00, 0x0c, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01, 0xc3, 0x92, 0x48, 0x46,
};
/* hap_v2_tcp6: client ::1 port 53914 -> ::1 port 18504, 52 bytes */
static const uint8_t hap_v2_tcp6[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21,
    0x21, 0x00, 0x24, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xd2, 0x9a, 0x48, 0x48,
};
/* hap_v2_tlv: client 127.0.0.1 port 56742 -> 127.0.0.1 port 18503, 38 bytes */
static const uint8_t hap_v2_tlv[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21,
    0x11, 0x00, 0x16, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01, 0xdd, 0xa6,
    0x48, 0x47, 0x03, 0x00, 0x04, 0x05, 0x65, 0x7c, 0x08, 0x05, 0x00, 0x00,
};

/* ---- guard page ---- */

static uint8_t *guard_base;
static size_t area_size; /* 20 pages: the largest input is L4_PP_V2_MAX (64 KiB + 16) */

static int guard_setup(void **state)
{
    area_size = (size_t)sysconf(_SC_PAGESIZE) * 20;
    if (area_size < L4_PP_V2_MAX + 4096)
        area_size = ((L4_PP_V2_MAX + 4096) / 4096 + 1) * 4096;
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

static const uint8_t *guarded(const void *s, size_t n)
{
    uint8_t *p = guard_base + area_size - n;

    assert_true(n <= area_size);
    if (n)
        memcpy(p, s, n);
    return p;
}

static int parse(const void *s, size_t n, struct l4_pp_header *h)
{
    memset(h, 0xA5, sizeof(*h));
    return l4_pp_parse(guarded(s, n), n, h);
}

/* "1.2.3.4" / "::1" and the port of a sockaddr_storage the parser filled. */
static void check_addr(const struct sockaddr_storage *ss, int family, const char *ip, unsigned port)
{
    char buf[INET6_ADDRSTRLEN];

    assert_int_equal(ss->ss_family, family);
    if (family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

        assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)));
        assert_int_equal(ntohs(sin->sin_port), port);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

        assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf)));
        assert_int_equal(ntohs(sin6->sin6_port), port);
        assert_int_equal(sin6->sin6_flowinfo, 0);
        assert_int_equal(sin6->sin6_scope_id, 0);
    }
    assert_string_equal(buf, ip);
}

/* Every proper prefix is NB_E_AGAIN; the whole input gives want. */
static void check_truncations(const void *msg, size_t n)
{
    struct l4_pp_header h;
    size_t k;

    for (k = 0; k < n; k++)
        assert_int_equal(parse(msg, k, &h), NB_E_AGAIN);
}

/* ---- valid headers ---- */

#define SIG "\r\n\r\n\0\r\nQUIT\n"
#define A4_SRC_DST \
    "\xc0\x00\x02\x0a\xc6\x33\x64\x07\xd4\x31\x01\xbb" /* 192.0.2.10:54321 > .7:443 */
#define A6_SRC_DST                                                                             \
    "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01\x20\x01\x0d\xb8\xff\xff\0\0\0\0\0\0\0\0\0\x02" \
    "\x00\x01\xff\xff"
#define V1_MAX_V6                                                                                 \
    "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff " \
    "65535 65535\r\n"
#define X91                                                                                     \
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" \
    "xx"

struct vcase {
    int num;
    const char *msg;
    size_t len;       /* header length */
    const char *tail; /* application data after it, "" for none */
    int version;
    bool has_addr, local;
    int family, socktype;
    const char *src;
    unsigned sport;
    const char *dst;
    unsigned dport;
    size_t tlv_len;
};

#define VC_(n, s, tail, ver, ha, lo, fam, st, src, sp, dst, dp, tlv)           \
    {                                                                          \
        n, s, sizeof(s) - 1, tail, ver, ha, lo, fam, st, src, sp, dst, dp, tlv \
    }
#define VC(...)    VC_(__VA_ARGS__) /* expands T4 / NOADDR() before counting */
#define T4         AF_INET, SOCK_STREAM
#define T6         AF_INET6, SOCK_STREAM
#define NOADDR(st) AF_UNSPEC, st, NULL, 0, NULL, 0
/* TLVs: ALPN "h2", authority "example.com", an empty NOOP, a custom type; 26 bytes */
#define TLV_MIX "\x01\x00\x02h2\x02\x00\013example.com\x04\x00\x00\xe0\x00\x01\x00"
static const struct vcase valid[] = {
    /* version 1 */
    VC(1, "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", "", 1, true, false, T4,
       "192.168.0.1", 56324, "192.168.0.11", 443, 0),
    VC(2, "PROXY TCP6 2001:db8::1 2001:DB8::A 1 65535\r\n", "", 1, true, false, T6, "2001:db8::1",
       1, "2001:db8::a", 65535, 0),
    VC(3, "PROXY TCP6 ::ffff:1.2.3.4 ::1 0 80\r\n", "", 1, true, false, T6, "::ffff:1.2.3.4", 0,
       "::1", 80, 0),
    VC(4, "PROXY UNKNOWN\r\n", "", 1, false, false, NOADDR(SOCK_STREAM), 0),
    VC(5, "PROXY UNKNOWN ::1 ::2 1 2\r\n", "", 1, false, false, NOADDR(SOCK_STREAM), 0),
    VC(6, "PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n", "", 1, true, false, T4,
       "255.255.255.255", 65535, "0.0.0.0", 0, 0),
    VC(7, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "GET / HTTP/1.1\r\n\r\n", 1, true, false, T4,
       "1.2.3.4", 1, "5.6.7.8", 2, 0),
    VC(8, V1_MAX_V6, "", 1, true, false, T6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 0),
    VC(9, "PROXY UNKNOWN " X91 "\r\n", "", 1, false, false, NOADDR(SOCK_STREAM), 0), /* 107 */
    VC(10, "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n", "PROXY TCP4 1.1.1.1 2.2.2.2 3 4\r\n", 1, true,
       false, T4, "10.0.0.1", 1, "10.0.0.2", 2, 0), /* a second header is data */
    /* version 2 */
    VC(20, SIG "\x21\x11\x00\x0c" A4_SRC_DST, "", 2, true, false, T4, "192.0.2.10", 54321,
       "198.51.100.7", 443, 0),
    VC(21, SIG "\x21\x21\x00\x24" A6_SRC_DST, "", 2, true, false, T6, "2001:db8::1", 1,
       "2001:db8:ffff::2", 65535, 0),
    VC(22, SIG "\x21\x12\x00\x0c" A4_SRC_DST, "", 2, true, false, AF_INET, SOCK_DGRAM, "192.0.2.10",
       54321, "198.51.100.7", 443, 0),
    VC(23, SIG "\x21\x22\x00\x24" A6_SRC_DST, "", 2, true, false, AF_INET6, SOCK_DGRAM,
       "2001:db8::1", 1, "2001:db8:ffff::2", 65535, 0),
    VC(24, SIG "\x20\x00\x00\x00", "", 2, false, true, NOADDR(0), 0),             /* LOCAL */
    VC(25, SIG "\x20\x11\x00\x0c" A4_SRC_DST, "x", 2, false, true, NOADDR(0), 0), /* ignored */
    VC(26, SIG "\x20\xff\x00\003abc", "", 2, false, true, NOADDR(0), 0), /* family ignored */
    VC(27, SIG "\x21\x00\x00\x00", "", 2, false, false, NOADDR(0), 0),   /* PROXY UNSPEC */
    VC(28, SIG "\x21\x00\x00\x05\x04\x00\x02\x00\x00", "", 2, false, false, NOADDR(0), 5),
    VC(29, SIG "\x21\x11\x00\x26" A4_SRC_DST TLV_MIX, "", 2, true, false, T4, "192.0.2.10", 54321,
       "198.51.100.7", 443, 26),
    VC(30, SIG "\x21\x11\x00\x0f" A4_SRC_DST "\x04\x00\x00", "", 2, true, false, T4, "192.0.2.10",
       54321, "198.51.100.7", 443, 3),
    VC(31, SIG "\x21\x11\x00\x0c" A4_SRC_DST, "\x16\x03\x01", 2, true, false, T4, "192.0.2.10",
       54321, "198.51.100.7", 443, 0),
};

static void check_valid(const struct vcase *v, const uint8_t *in, size_t n,
                        const struct l4_pp_header *h, int rc)
{
    assert_int_equal(rc, (int)v->len);
    assert_int_equal(h->version, v->version);
    assert_int_equal(h->has_addr, v->has_addr);
    assert_int_equal(h->local, v->local);
    assert_int_equal(h->family, v->family);
    assert_int_equal(h->socktype, v->socktype);
    if (v->has_addr) {
        check_addr(&h->src, v->family, v->src, v->sport);
        check_addr(&h->dst, v->family, v->dst, v->dport);
    }
    assert_int_equal(h->tlv_len, v->tlv_len);
    if (h->tlv_len)
        assert_true(h->tlv >= in && h->tlv + h->tlv_len == in + v->len);
}

static void test_valid(void **state)
{
    static uint8_t buf[512];
    struct l4_pp_header h;
    size_t i;

    for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        const struct vcase *v = &valid[i];
        size_t tl = strlen(v->tail);
        const uint8_t *in;

        print_message("valid case %d\n", v->num);
        memcpy(buf, v->msg, v->len);
        memcpy(buf + v->len, v->tail, tl);
        in = guarded(buf, v->len + tl);
        memset(&h, 0xA5, sizeof(h));
        check_valid(v, in, v->len + tl, &h, l4_pp_parse(in, v->len + tl, &h));
        check_truncations(v->msg, v->len);
    }
}

struct hcase {
    int num;
    const uint8_t *msg;
    size_t len;
    int version, family;
    const char *src;
    unsigned sport;
    const char *dst;
    unsigned dport;
    size_t tlv_len;
};

#define HC(n, a, ver, fam, src, sp, dst, dp, tlv)        \
    {                                                    \
        n, a, sizeof(a), ver, fam, src, sp, dst, dp, tlv \
    }
static const struct hcase haproxy[] = {
    HC(1, hap_v1_tcp4, 1, AF_INET, "127.0.0.1", 57672, "127.0.0.1", 18501, 0),
    HC(2, hap_v1_tcp6, 1, AF_INET6, "::1", 49358, "::1", 18505, 0),
    HC(3, hap_v2_tcp4, 2, AF_INET, "127.0.0.1", 50066, "127.0.0.1", 18502, 0),
    HC(4, hap_v2_tcp6, 2, AF_INET6, "::1", 53914, "::1", 18504, 0),
    HC(5, hap_v2_tlv, 2, AF_INET, "127.0.0.1", 56742, "127.0.0.1", 18503, 10), /* CRC32C, UID */
};

static void test_haproxy(void **state)
{
    struct l4_pp_header h;
    size_t i;

    for (i = 0; i < sizeof(haproxy) / sizeof(haproxy[0]); i++) {
        const struct hcase *c = &haproxy[i];

        print_message("haproxy case %d\n", c->num);
        assert_int_equal(parse(c->msg, c->len, &h), (int)c->len);
        assert_int_equal(h.version, c->version);
        assert_true(h.has_addr);
        assert_false(h.local);
        assert_int_equal(h.socktype, SOCK_STREAM);
        check_addr(&h.src, c->family, c->src, c->sport);
        check_addr(&h.dst, c->family, c->dst, c->dport);
        assert_int_equal(h.tlv_len, c->tlv_len);
        check_truncations(c->msg, c->len);
    }
}

/* Headers too long for a literal: UNIX blocks, a big TLV, the largest v2 header, 21841 TLVs. */
static void test_v2_large(void **state)
{
    static uint8_t b[L4_PP_V2_MAX + 16];
    struct l4_pp_header h;
    size_t n, k, i;
    const uint8_t *in;

    memcpy(b, SIG, 12);
    /* UNIX stream and datagram: 216 bytes of paths, accepted, addresses not used */
    for (i = 0; i < 2; i++) {
        memset(b + 12, 0, 16 + 216);
        b[12] = 0x21;
        b[13] = (uint8_t)(0x31 + i);
        b[15] = 216;
        memcpy(b + 16, "/run/haproxy.sock", 17);
        assert_int_equal(parse(b, 16 + 216, &h), 16 + 216);
        assert_false(h.has_addr);
        assert_int_equal(h.family, AF_UNIX);
        assert_int_equal(h.socktype, i ? SOCK_DGRAM : SOCK_STREAM);
        assert_int_equal(h.tlv_len, 0);
        check_truncations(b, 16 + 216);
        /* one byte short of the UNIX block: rejected from the fixed part */
        b[15] = 215;
        assert_int_equal(parse(b, 16, &h), NB_E_PARSE);
    }
    /* TCP6 + one 1000-byte NOOP TLV */
    b[12] = 0x21, b[13] = 0x21, b[14] = (36 + 1003) >> 8, b[15] = (36 + 1003) & 0xff;
    memcpy(b + 16, A6_SRC_DST, 36);
    b[52] = 0x04, b[53] = 1000 >> 8, b[54] = 1000 & 0xff;
    memset(b + 55, 0, 1000);
    n = 16 + 36 + 1003;
    assert_int_equal(parse(b, n, &h), (int)n);
    assert_int_equal(h.tlv_len, 1003);
    check_truncations(b, n);
    /* the largest header: length 65535, TCP6 + one NOOP TLV filling the rest */
    b[14] = 0xff, b[15] = 0xff;
    b[53] = (65535 - 36 - 3) >> 8, b[54] = (65535 - 36 - 3) & 0xff;
    memset(b + 55, 0x5a, 65535 - 36 - 3);
    n = L4_PP_V2_MAX;
    in = guarded(b, n);
    memset(&h, 0, sizeof(h));
    assert_int_equal(l4_pp_parse(in, n, &h), L4_PP_V2_MAX);
    assert_true(h.tlv == in + 52 && h.tlv_len == 65535 - 36);
    for (k = 0; k < n; k += 997) /* every byte would copy 4 GiB: a spread of cuts */
        assert_int_equal(parse(b, k, &h), NB_E_AGAIN);
    assert_int_equal(parse(b, n - 1, &h), NB_E_AGAIN);
    /* ... with the TLV one byte too long: overruns the header */
    b[54]++;
    assert_int_equal(parse(b, n, &h), NB_E_PARSE);
    /* TCP4 + 21841 empty TLVs (65535 - 12 = 3 * 21841) */
    b[13] = 0x11;
    memcpy(b + 16, A4_SRC_DST, 12);
    for (i = 0; i < 21841; i++)
        memcpy(b + 28 + 3 * i, "\x04\x00\x00", 3);
    assert_int_equal(parse(b, L4_PP_V2_MAX, &h), L4_PP_V2_MAX);
    assert_int_equal(h.tlv_len, 65535 - 12);
}

/* ---- malformed: NB_E_PARSE, decided on some prefix and never revised ---- */

struct bad {
    int num;
    const char *msg;
    size_t len;
};

#define BAD(n, s)           \
    {                       \
        n, s, sizeof(s) - 1 \
    }
#define V1(s) "PROXY " s "\r\n"
static const struct bad bad[] = {
    BAD(1, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),      /* bare LF */
    BAD(2, "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),   /* two spaces */
    BAD(3, V1("TCP4 1.2.3.4  5.6.7.8 1 2")),         /* two spaces inside */
    BAD(4, V1("TCP4 1.2.3.4 5.6.7.8 1 2 ")),         /* trailing space */
    BAD(5, V1("TCP4 1.2.3.4 5.6.7.8 1 2 3")),        /* extra field */
    BAD(6, V1("TCP4 1.2.3.4 5.6.7.8 1")),            /* missing port */
    BAD(7, V1("TCP4 01.2.3.4 5.6.7.8 1 2")),         /* heading zero in an octet */
    BAD(8, V1("TCP4 1.2.3.256 5.6.7.8 1 2")),        /* octet > 255 */
    BAD(9, V1("TCP4 1.2.3 5.6.7.8 1 2")),            /* three octets */
    BAD(10, V1("TCP4 1.2.3.4.5 5.6.7.8 1 2")),       /* five octets */
    BAD(11, V1("TCP4 1.2.3.4 5.6.7.8 080 2")),       /* heading zero in a port */
    BAD(12, V1("TCP4 1.2.3.4 5.6.7.8 65536 2")),     /* port > 65535 */
    BAD(13, V1("TCP4 1.2.3.4 5.6.7.8 +80 2")),       /* sign */
    BAD(14, V1("TCP4 1.2.3.4 5.6.7.8 1 -1")),        /* negative */
    BAD(15, V1("TCP4 ::1 ::2 1 2")),                 /* IPv6 in TCP4 */
    BAD(16, V1("TCP6 1.2.3.4 5.6.7.8 1 2")),         /* IPv4 in TCP6 */
    BAD(17, V1("TCP5 1.2.3.4 5.6.7.8 1 2")),         /* unknown protocol */
    BAD(18, V1("tcp4 1.2.3.4 5.6.7.8 1 2")),         /* case matters */
    BAD(19, V1("UNKNOWNX")),                         /* not UNKNOWN */
    BAD(20, "PROXYX TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),  /* no space after the signature */
    BAD(21, "PROXY \r\n"),                           /* nothing */
    BAD(22, "PROXY\r\n"),                            /* nothing, no space */
    BAD(23, "PROXY UNKNOWN " X91 "xx"),              /* 107 bytes without CRLF */
    BAD(24, V1("TCP4 1.2.3.4\r5.6.7.8 1 2")),        /* CR inside */
    BAD(25, V1("TCP4 1.2.3.4 5.6\0.8 1 2")),         /* NUL inside */
    BAD(26, V1("TCP6 2001:db8::1::2 ::1 1 2")),      /* two "::" */
    BAD(27, V1("TCP6 0:0:0:0:0:0:0:00001 ::1 1 2")), /* five hex digits */
    BAD(28, "PROXY UNKNOWN " X91 "x\r\n"),           /* CRLF after byte 107 */
    BAD(29, V1("TCP4 1.2.3.4 5.6.7.8 1 2\r")),       /* CR CR LF */
    BAD(30, V1("TCP4 1.2.3.4 5.6.7.8 1 ")),          /* empty last field */
    BAD(31, V1("TCP4")),                             /* no fields */
    BAD(32, V1("TCP6 fe80::1%eth0 ::1 1 2")),        /* zone index */
    BAD(33, V1("TCP4 1.2.3.4 5.6.7.8 1 2a")),        /* non-digit */
    BAD(34, V1("TCP4 1.2.3.04 5.6.7.8 1 2")),        /* heading zero, last octet */
    BAD(35, V1("TCP4 1.2.3.1000 5.6.7.8 1 2")),      /* four digits */
    BAD(36, V1("TCP4 1..3.4 5.6.7.8 1 2")),          /* empty octet */
    BAD(37, V1("TCP6 :: " X91)),                     /* address too long for inet_pton */
    BAD(38, V1(" TCP4 1.2.3.4 5.6.7.8 1 2")),        /* empty protocol */
    BAD(39, "PROXY UNKNOWN x\n"),                    /* bare LF, even for UNKNOWN */
    BAD(40, "PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n"),  /* tab after the signature */
    /* version 2 */
    BAD(50, SIG "\x11\x11\x00\x0c" A4_SRC_DST), /* version 1 */
    BAD(51, SIG "\x31\x11\x00\x0c" A4_SRC_DST), /* version 3 */
    BAD(52, SIG "\x22\x11\x00\x0c" A4_SRC_DST), /* command 2 */
    BAD(53, SIG "\x2f\x11\x00\x0c" A4_SRC_DST), /* command 15 */
    BAD(54, SIG "\x21\x13\x00\x0c" A4_SRC_DST), /* transport 3 */
    BAD(55, SIG "\x21\x41\x00\x0c" A4_SRC_DST), /* family 4 */
    BAD(56, SIG "\x21\x01\x00\x00"),            /* UNSPEC family, STREAM */
    BAD(57, SIG "\x21\x10\x00\x0c" A4_SRC_DST), /* INET, UNSPEC transport */
    BAD(58, SIG "\x21\x20\x00\x24" A6_SRC_DST), /* INET6, UNSPEC transport */
    BAD(59, SIG "\x21\x11\x00\x0b"
                "12345678901"),                                    /* too short for INET */
    BAD(60, SIG "\x21\x21\x00\x23" A6_SRC_DST),                    /* too short for INET6 */
    BAD(61, SIG "\x21\x11\x00\x00"),                               /* no addresses at all */
    BAD(62, SIG "\x21\x11\x00\x0d" A4_SRC_DST "\x04"),             /* 1 byte of TLV header */
    BAD(63, SIG "\x21\x11\x00\x0e" A4_SRC_DST "\x04\x00"),         /* 2 bytes of TLV header */
    BAD(64, SIG "\x21\x11\x00\x10" A4_SRC_DST "\x04\x00\x02\x00"), /* value cut short */
    BAD(65, SIG "\x21\x11\x00\x14" A4_SRC_DST "\x04\x00\x01\x00\x04\x00\x02\x00"), /* 2nd */
    BAD(66, SIG "\x21\x00\x00\x02"
                "\x04\x00"),                    /* UNSPEC + cut TLV */
    BAD(67, SIG "\x21\x31\x00\x0c" A4_SRC_DST), /* UNIX, 12 bytes */
    BAD(68, SIG "\x22\x00\x00\x00"),            /* command 2, empty */
    BAD(69, SIG "\x2f\x00\x00\x00"),            /* command 15 */
};

static void test_bad(void **state)
{
    struct l4_pp_header h;
    size_t i, k;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const struct bad *c = &bad[i];
        bool seen = false;

        print_message("bad case %d\n", c->num);
        assert_int_equal(parse(c->msg, c->len, &h), NB_E_PARSE);
        /* prefixes: incomplete until the first byte that makes it invalid, invalid from then */
        for (k = 0; k <= c->len; k++) {
            int rc = parse(c->msg, k, &h);

            if (seen)
                assert_int_equal(rc, NB_E_PARSE);
            else if (rc != NB_E_AGAIN)
                assert_int_equal(rc, NB_E_PARSE);
            seen = seen || rc == NB_E_PARSE;
        }
    }
}

/* ---- no signature: NB_E_NOTFOUND from the first differing byte on ---- */

struct nf {
    int num;
    const char *msg;
    size_t len;
    size_t decided; /* shortest prefix answering NB_E_NOTFOUND */
};

#define NF(n, s, d)            \
    {                          \
        n, s, sizeof(s) - 1, d \
    }
static const struct nf notfound[] = {
    NF(1, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 1),
    NF(2, "\x16\x03\x01\x02\x00\x01", 1), /* TLS */
    NF(3, "SSH-2.0-OpenSSH_9.2\r\n", 1),
    NF(4, "\0\0\0\0", 1),
    NF(5, "pROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 1), /* case matters */
    NF(6, "PROX\0", 5),
    NF(7, "PRXY", 3),
    NF(8, "POST / HTTP/1.1\r\n", 2),
    NF(9, "\r\nGET", 3),
    NF(10, "\r\n\r\nX", 5),
    NF(11, "\r\n\r\n\0\r\nQUIT\r", 12), /* last signature byte wrong */
    NF(12, "\r\n\r\n\0\r\nQUIX\n\x21\x11", 11),
    NF(13, "P\r\n", 2),
};

static void test_notfound(void **state)
{
    struct l4_pp_header h;
    size_t i, k;

    for (i = 0; i < sizeof(notfound) / sizeof(notfound[0]); i++) {
        const struct nf *c = &notfound[i];

        print_message("no-signature case %d\n", c->num);
        for (k = 0; k <= c->len; k++)
            assert_int_equal(parse(c->msg, k, &h), k < c->decided ? NB_E_AGAIN : NB_E_NOTFOUND);
    }
}

/* ---- outbound encoder ---- */

static struct sockaddr_storage sa_of(const char *ip, unsigned port)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    return ss;
}

/*
 * Expected bytes, computed from proxy-protocol.txt §2.2 with Python (not with our code):
 *   SIG = b"\r\n\r\n\x00\r\nQUIT\n"
 *   v4: SIG + bytes([0x21, 0x11]) + struct.pack("!H", 12) + inet_pton(AF_INET, src)
 *       + inet_pton(AF_INET, dst) + struct.pack("!HH", sport, dport)
 *   v6: the same with 0x21, length 36 and AF_INET6
 */
static const char ref_v4[] =
    "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x11\x00\x0c"
    "\xc0\x00\x02\x0a\xc6\x33\x64\x07\xd4\x31\x01\xbb"; /* 192.0.2.10:54321 -> 198.51.100.7:443 */
static const char ref_v6[] = "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x21\x00\x24"
                             "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
                             "\x20\x01\x0d\xb8\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02"
                             "\x00\x01\xff\xff"; /* [2001:db8::1]:1 -> [2001:db8:ffff::2]:65535 */

struct ecase {
    int num;
    const char *client;
    unsigned cport;
    const char *local;
    unsigned lport;
    int rc; /* length or NB_E_INVAL */
    /* what the parser reads back */
    int family;
    const char *src, *dst;
};

static const struct ecase enc[] = {
    {1, "192.0.2.10", 54321, "198.51.100.7", 443, 28, AF_INET, "192.0.2.10", "198.51.100.7"},
    {2, "2001:db8::1", 1, "2001:db8:ffff::2", 65535, 52, AF_INET6, "2001:db8::1",
     "2001:db8:ffff::2"},
    /* IPv4-mapped clients are IPv4 (Go's To4()): the TCPv4 form with plain addresses */
    {3, "::ffff:192.0.2.10", 54321, "::ffff:198.51.100.7", 443, 28, AF_INET, "192.0.2.10",
     "198.51.100.7"},
    {4, "192.0.2.10", 54321, "::ffff:198.51.100.7", 443, 28, AF_INET, "192.0.2.10", "198.51.100.7"},
    {5, "::ffff:192.0.2.10", 54321, "198.51.100.7", 443, 28, AF_INET, "192.0.2.10", "198.51.100.7"},
    /* an IPv6 client with an IPv4 local address: the local one is written IPv4-mapped */
    {6, "2001:db8::1", 1, "198.51.100.7", 443, 52, AF_INET6, "2001:db8::1", "::ffff:198.51.100.7"},
    /* an IPv4 client with a true IPv6 local address has no TCPv4 form */
    {7, "192.0.2.10", 1, "2001:db8::2", 2, NB_E_INVAL, 0, NULL, NULL},
    {8, "::1", 0, "::", 0, 52, AF_INET6, "::1", "::"},
    {9, "0.0.0.0", 0, "255.255.255.255", 65535, 28, AF_INET, "0.0.0.0", "255.255.255.255"},
};

static void test_encode(void **state)
{
    uint8_t out[L4_PP_V2_ENC_MAX + 8];
    struct l4_pp_header h;
    size_t i;

    for (i = 0; i < sizeof(enc) / sizeof(enc[0]); i++) {
        const struct ecase *c = &enc[i];
        struct sockaddr_storage cl = sa_of(c->client, c->cport), lo = sa_of(c->local, c->lport);
        int rc;

        print_message("encode case %d\n", c->num);
        memset(out, 0xEE, sizeof(out));
        rc = l4_pp_v2_encode((struct sockaddr *)&cl, (struct sockaddr *)&lo, out);
        assert_int_equal(rc, c->rc);
        if (rc < 0)
            continue;
        assert_int_equal(out[L4_PP_V2_ENC_MAX], 0xEE); /* nothing past the array */
        if (c->num == 1 || c->num == 3 || c->num == 4 || c->num == 5)
            assert_memory_equal(out, ref_v4, sizeof(ref_v4) - 1);
        if (c->num == 2)
            assert_memory_equal(out, ref_v6, sizeof(ref_v6) - 1);
        /* round trip */
        assert_int_equal(parse(out, (size_t)rc, &h), rc);
        assert_int_equal(h.version, 2);
        assert_true(h.has_addr);
        assert_false(h.local);
        assert_int_equal(h.socktype, SOCK_STREAM);
        assert_int_equal(h.tlv_len, 0);
        check_addr(&h.src, c->family, c->src, c->cport);
        check_addr(&h.dst, c->family, c->dst, c->lport);
        check_truncations(out, (size_t)rc);
    }
    /* what HAProxy sent for the same endpoints, byte for byte */
    {
        struct sockaddr_storage cl = sa_of("127.0.0.1", 50066), lo = sa_of("127.0.0.1", 18502);

        assert_int_equal(l4_pp_v2_encode((struct sockaddr *)&cl, (struct sockaddr *)&lo, out), 28);
        assert_memory_equal(out, hap_v2_tcp4, sizeof(hap_v2_tcp4));
        cl = sa_of("::1", 53914), lo = sa_of("::1", 18504);
        assert_int_equal(l4_pp_v2_encode((struct sockaddr *)&cl, (struct sockaddr *)&lo, out), 52);
        assert_memory_equal(out, hap_v2_tcp6, sizeof(hap_v2_tcp6));
    }
    /* not IP */
    {
        struct sockaddr_storage un = {.ss_family = AF_UNIX}, v4 = sa_of("1.2.3.4", 1);

        assert_int_equal(l4_pp_v2_encode((struct sockaddr *)&un, (struct sockaddr *)&v4, out),
                         NB_E_INVAL);
        assert_int_equal(l4_pp_v2_encode((struct sockaddr *)&v4, (struct sockaddr *)&un, out),
                         NB_E_INVAL);
        assert_int_equal(l4_pp_v2_encode(NULL, (struct sockaddr *)&v4, out), NB_E_INVAL);
        assert_int_equal(l4_pp_v2_encode((struct sockaddr *)&v4, NULL, out), NB_E_INVAL);
        v4 = sa_of("::1", 1);
        assert_int_equal(l4_pp_v2_encode((struct sockaddr *)&v4, (struct sockaddr *)&un, out),
                         NB_E_INVAL);
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Random endpoints of both families, both mapped and not: encode, parse, compare. */
static void test_encode_roundtrip_random(void **state)
{
    uint8_t out[L4_PP_V2_ENC_MAX];
    struct l4_pp_header h;
    int i;

    for (i = 0; i < 20000; i++) {
        struct sockaddr_storage cl, lo;
        struct sockaddr_in6 *c6 = (struct sockaddr_in6 *)&cl, *l6 = (struct sockaddr_in6 *)&lo;
        unsigned kind = (unsigned)(rnd() % 3), cport = (unsigned)(rnd() & 0xffff),
                 lport = (unsigned)(rnd() & 0xffff);
        uint64_t a = rnd(), b = rnd(), c = rnd(), d = rnd();
        int rc;

        memset(&cl, 0, sizeof(cl));
        memset(&lo, 0, sizeof(lo));
        c6->sin6_family = l6->sin6_family = AF_INET6;
        c6->sin6_port = htons((uint16_t)cport);
        l6->sin6_port = htons((uint16_t)lport);
        memcpy(c6->sin6_addr.s6_addr, &a, 8), memcpy(c6->sin6_addr.s6_addr + 8, &b, 8);
        memcpy(l6->sin6_addr.s6_addr, &c, 8), memcpy(l6->sin6_addr.s6_addr + 8, &d, 8);
        if (kind == 1) { /* both IPv4-mapped, as on a dual-stack listener */
            memset(c6->sin6_addr.s6_addr, 0, 10), memset(c6->sin6_addr.s6_addr + 10, 0xff, 2);
            memset(l6->sin6_addr.s6_addr, 0, 10), memset(l6->sin6_addr.s6_addr + 10, 0xff, 2);
        }
        if (kind == 2) { /* plain IPv4 */
            struct sockaddr_in *c4 = (struct sockaddr_in *)&cl, *l4 = (struct sockaddr_in *)&lo;

            memset(&cl, 0, sizeof(cl));
            memset(&lo, 0, sizeof(lo));
            c4->sin_family = l4->sin_family = AF_INET;
            c4->sin_port = htons((uint16_t)cport);
            l4->sin_port = htons((uint16_t)lport);
            memcpy(&c4->sin_addr, &a, 4);
            memcpy(&l4->sin_addr, &c, 4);
        }
        rc = l4_pp_v2_encode((struct sockaddr *)&cl, (struct sockaddr *)&lo, out);
        assert_int_equal(rc, kind == 0 ? 52 : 28);
        assert_int_equal(l4_pp_parse(out, (size_t)rc, &h), rc);
        assert_true(h.has_addr);
        if (kind == 0) {
            assert_memory_equal(&((struct sockaddr_in6 *)&h.src)->sin6_addr, &c6->sin6_addr, 16);
            assert_memory_equal(&((struct sockaddr_in6 *)&h.dst)->sin6_addr, &l6->sin6_addr, 16);
            assert_int_equal(((struct sockaddr_in6 *)&h.src)->sin6_port, htons((uint16_t)cport));
            assert_int_equal(((struct sockaddr_in6 *)&h.dst)->sin6_port, htons((uint16_t)lport));
        } else {
            const uint8_t *cs = kind == 1 ? c6->sin6_addr.s6_addr + 12 : (const uint8_t *)&a;
            const uint8_t *ls = kind == 1 ? l6->sin6_addr.s6_addr + 12 : (const uint8_t *)&c;

            assert_int_equal(h.family, AF_INET);
            assert_memory_equal(&((struct sockaddr_in *)&h.src)->sin_addr, cs, 4);
            assert_memory_equal(&((struct sockaddr_in *)&h.dst)->sin_addr, ls, 4);
            assert_int_equal(((struct sockaddr_in *)&h.src)->sin_port, htons((uint16_t)cport));
            assert_int_equal(((struct sockaddr_in *)&h.dst)->sin_port, htons((uint16_t)lport));
        }
    }
}

/*
 * proxyprotocol_test.go: real loopback connections; the accepted socket's remote address is the
 * source and its local address the destination. IPv4, IPv6 (skipped when ::1 is unavailable),
 * and an IPv4 client on an IPv6 socket (IPv4-mapped addresses, the TCPv4 form).
 */
static int live_pair(int family, const struct sockaddr *bind_to, socklen_t blen, int cfamily,
                     int *acc, int *cli)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int ls = socket(family, SOCK_STREAM, 0), off = 0;

    if (ls < 0)
        return -1;
    if (family == AF_INET6)
        setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    if (bind(ls, bind_to, blen) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&ss, &sl) != 0) {
        close(ls);
        return -1;
    }
    *cli = socket(cfamily, SOCK_STREAM, 0);
    if (cfamily != family) { /* connect an IPv4 client to the mapped address's IPv4 form */
        struct sockaddr_in s4 = {.sin_family = AF_INET,
                                 .sin_port = ((struct sockaddr_in6 *)&ss)->sin6_port,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

        assert_int_equal(connect(*cli, (struct sockaddr *)&s4, sizeof(s4)), 0);
    } else {
        assert_int_equal(connect(*cli, (struct sockaddr *)&ss, sl), 0);
    }
    *acc = accept(ls, NULL, NULL);
    close(ls);
    return *acc >= 0 ? 0 : -1;
}

static void live_check(int acc, int cli, int want_len, int want_family)
{
    struct sockaddr_storage peer, local, cpeer;
    socklen_t pl = sizeof(peer), ll = sizeof(local), cl = sizeof(cpeer);
    uint8_t out[L4_PP_V2_ENC_MAX];
    struct l4_pp_header h;
    int rc;

    assert_int_equal(getpeername(acc, (struct sockaddr *)&peer, &pl), 0);
    assert_int_equal(getsockname(acc, (struct sockaddr *)&local, &ll), 0);
    assert_int_equal(getsockname(cli, (struct sockaddr *)&cpeer, &cl), 0);
    rc = l4_pp_v2_encode((struct sockaddr *)&peer, (struct sockaddr *)&local, out);
    assert_int_equal(rc, want_len);
    /* the header goes through a real socket too, and is parsed from what arrives */
    {
        uint8_t in[64];
        size_t got = 0;

        assert_int_equal(send(acc, out, (size_t)rc, 0), rc);
        while (got < (size_t)rc) {
            ssize_t n = recv(cli, in + got, sizeof(in) - got, 0);

            assert_true(n > 0);
            got += (size_t)n;
        }
        assert_int_equal(parse(in, got, &h), rc);
    }
    assert_int_equal(h.family, want_family);
    if (want_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&h.src;
        const struct sockaddr_in *d = (const struct sockaddr_in *)&h.dst;

        assert_int_equal(s->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
        assert_int_equal(d->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
        assert_int_equal(s->sin_port, ((struct sockaddr_in *)&cpeer)->sin_port);
        assert_int_equal(ntohs(d->sin_port), ntohs(((struct sockaddr_in *)&local)->sin_port));
    } else {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&h.src;

        assert_memory_equal(&s->sin6_addr, &((struct sockaddr_in6 *)&peer)->sin6_addr, 16);
        assert_int_equal(s->sin6_port, ((struct sockaddr_in6 *)&cpeer)->sin6_port);
    }
    close(acc);
    close(cli);
}

static void test_encode_live(void **state)
{
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    struct sockaddr_in6 m6 = {.sin6_family = AF_INET6};
    int acc, cli;

    assert_int_equal(live_pair(AF_INET, (struct sockaddr *)&s4, sizeof(s4), AF_INET, &acc, &cli),
                     0);
    live_check(acc, cli, 28, AF_INET);
    if (live_pair(AF_INET6, (struct sockaddr *)&s6, sizeof(s6), AF_INET6, &acc, &cli) == 0)
        live_check(acc, cli, 52, AF_INET6);
    else
        print_message("no ::1: IPv6 live case skipped\n");
    /* an IPv6 socket bound to ::ffff:127.0.0.1 sees the IPv4 client as IPv4-mapped */
    assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.1", &m6.sin6_addr), 1);
    if (live_pair(AF_INET6, (struct sockaddr *)&m6, sizeof(m6), AF_INET, &acc, &cli) == 0)
        live_check(acc, cli, 28, AF_INET);
    else
        print_message("no dual-stack socket: mapped live case skipped\n");
}

/* ---- trusted-proxy policy ---- */

static struct l4_prefix pfx(const char *s)
{
    struct l4_prefix p;
    char ip[64];
    const char *slash = strchr(s, '/');

    memset(&p, 0, sizeof(p));
    assert_non_null(slash);
    memcpy(ip, s, (size_t)(slash - s));
    ip[slash - s] = '\0';
    p.bits = (uint8_t)atoi(slash + 1);
    p.family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    assert_int_equal(inet_pton(p.family, ip, p.addr), 1);
    return p;
}

struct polcase {
    int num;
    const char *peer; /* NULL: no address; "unix": AF_UNIX */
    const char *trusted[4];
    enum l4_pp_policy want;
};

static const struct polcase pol[] = {
    {1, "203.0.113.9", {NULL}, L4_PP_USE}, /* no trusted list: anyone may send one */
    {2, NULL, {NULL}, L4_PP_USE},
    {3, "10.1.2.3", {"10.0.0.0/8"}, L4_PP_REQUIRE},
    {4, "11.0.0.1", {"10.0.0.0/8"}, L4_PP_IGNORE},
    {5, "::ffff:10.1.2.3", {"10.0.0.0/8"}, L4_PP_REQUIRE}, /* unmapped first */
    {6, "::ffff:11.1.2.3", {"10.0.0.0/8"}, L4_PP_IGNORE},
    {7, "2001:db8::1", {"2001:db8::/32"}, L4_PP_REQUIRE},
    {8, "2001:db9::1", {"2001:db8::/32"}, L4_PP_IGNORE},
    {9, "10.1.2.3", {"2001:db8::/32"}, L4_PP_IGNORE},               /* families never cross */
    {10, "::ffff:10.1.2.3", {"::ffff:10.0.0.0/104"}, L4_PP_IGNORE}, /* netip: v4 vs v6 prefix */
    {11, "10.1.2.3", {"::ffff:10.0.0.0/104"}, L4_PP_IGNORE},
    {12, "198.51.100.1", {"0.0.0.0/0"}, L4_PP_REQUIRE},
    {13, "::1", {"0.0.0.0/0"}, L4_PP_IGNORE},
    {14, "::1", {"::/0"}, L4_PP_REQUIRE},
    {15, "192.168.1.129", {"192.168.1.128/25"}, L4_PP_REQUIRE},
    {16, "192.168.1.127", {"192.168.1.128/25"}, L4_PP_IGNORE},
    {17, "192.168.1.255", {"192.168.1.128/25"}, L4_PP_REQUIRE},
    {18, "192.0.2.1", {"192.0.2.1/32"}, L4_PP_REQUIRE},
    {19, "192.0.2.2", {"192.0.2.1/32"}, L4_PP_IGNORE},
    {20, "192.0.2.3", {"192.0.2.2/31"}, L4_PP_REQUIRE},
    {21, "192.0.2.4", {"192.0.2.2/31"}, L4_PP_IGNORE},
    {22, "10.9.9.9", {"10.1.2.3/8"}, L4_PP_REQUIRE}, /* host bits in the prefix don't matter */
    {23, "10.1.2.3", {"10.1.2.3/33"}, L4_PP_IGNORE}, /* invalid prefix never matches */
    {24, "2001:db8::1", {"2001:db8::1/129"}, L4_PP_IGNORE},
    {25, "fe80::1", {"10.0.0.0/8", "172.16.0.0/12", "fe80::/10"}, L4_PP_REQUIRE},
    {26, "172.31.255.255", {"10.0.0.0/8", "172.16.0.0/12"}, L4_PP_REQUIRE},
    {27, "172.32.0.0", {"10.0.0.0/8", "172.16.0.0/12"}, L4_PP_IGNORE},
    {28, "2001:db8::8:0:1", {"2001:db8::8:0:0/109"}, L4_PP_REQUIRE},
    {29, "2001:db8::8:8:1", {"2001:db8::8:0:0/109"}, L4_PP_IGNORE},
    {30, NULL, {"10.0.0.0/8"}, L4_PP_REJECT}, /* no address */
    {31, "unix", {"10.0.0.0/8"}, L4_PP_REJECT},
};

static void test_policy(void **state)
{
    size_t i, n;

    for (i = 0; i < sizeof(pol) / sizeof(pol[0]); i++) {
        const struct polcase *c = &pol[i];
        struct l4_prefix t[4];
        struct sockaddr_storage peer = {.ss_family = AF_UNIX};

        print_message("policy case %d\n", c->num);
        for (n = 0; n < 4 && c->trusted[n]; n++)
            t[n] = pfx(c->trusted[n]);
        if (c->peer && strcmp(c->peer, "unix") != 0)
            peer = sa_of(c->peer, 1234);
        assert_int_equal(l4_pp_policy(c->peer ? (struct sockaddr *)&peer : NULL, t, n), c->want);
    }
    {
        /* an unknown prefix family is skipped, the next one still matches */
        struct l4_prefix t[2] = {{.family = AF_UNIX, .bits = 0}, pfx("10.0.0.0/8")};
        struct sockaddr_storage peer = sa_of("10.0.0.1", 1);

        assert_int_equal(l4_pp_policy((struct sockaddr *)&peer, t, 1), L4_PP_IGNORE);
        assert_int_equal(l4_pp_policy((struct sockaddr *)&peer, t, 2), L4_PP_REQUIRE);
    }
}

/* The policy against a naive bit-by-bit reference on random prefixes and peers. */
static enum l4_pp_policy naive_policy(int fam, const uint8_t *a, const struct l4_prefix *t,
                                      size_t n)
{
    size_t i;
    unsigned b;

    for (i = 0; i < n; i++) {
        bool ok = t[i].family == fam && t[i].bits <= (fam == AF_INET ? 32 : 128);

        for (b = 0; ok && b < t[i].bits; b++)
            ok = ((a[b / 8] >> (7 - b % 8)) & 1) == ((t[i].addr[b / 8] >> (7 - b % 8)) & 1);
        if (ok)
            return L4_PP_REQUIRE;
    }
    return L4_PP_IGNORE;
}

static void test_policy_random(void **state)
{
    int iter;

    for (iter = 0; iter < 50000; iter++) {
        struct l4_prefix t[6];
        struct sockaddr_storage peer;
        uint8_t a[16];
        size_t n = (size_t)(rnd() % 6) + 1, i;
        int fam = rnd() & 1 ? AF_INET : AF_INET6;
        uint64_t r;

        r = rnd(), memcpy(a, &r, 8), r = rnd(), memcpy(a + 8, &r, 8);
        for (i = 0; i < n; i++) {
            t[i].family = rnd() & 1 ? AF_INET : AF_INET6;
            t[i].bits = (uint8_t)(rnd() % (t[i].family == AF_INET ? 34 : 130));
            memcpy(t[i].addr, a, 16);
            /* flip one bit somewhere so matches and misses both happen */
            if (rnd() & 1) {
                unsigned bit = (unsigned)(rnd() % (t[i].family == AF_INET ? 32 : 128));

                t[i].addr[bit / 8] ^= (uint8_t)(0x80 >> (bit % 8));
            }
        }
        memset(&peer, 0, sizeof(peer));
        if (fam == AF_INET) {
            struct sockaddr_in *s = (struct sockaddr_in *)&peer;

            s->sin_family = AF_INET;
            memcpy(&s->sin_addr, a, 4);
        } else if (rnd() & 1) { /* IPv4-mapped: behaves as IPv4 */
            struct sockaddr_in6 *s = (struct sockaddr_in6 *)&peer;

            s->sin6_family = AF_INET6;
            memset(s->sin6_addr.s6_addr, 0, 10);
            memset(s->sin6_addr.s6_addr + 10, 0xff, 2);
            memcpy(s->sin6_addr.s6_addr + 12, a, 4);
            fam = AF_INET;
        } else {
            struct sockaddr_in6 *s = (struct sockaddr_in6 *)&peer;

            s->sin6_family = AF_INET6;
            memcpy(&s->sin6_addr, a, 16);
            if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr))
                continue;
        }
        assert_int_equal(l4_pp_policy((struct sockaddr *)&peer, t, n), naive_policy(fam, a, t, n));
    }
}

/* ---- decide: policy x input ---- */

struct dcase {
    int num;
    enum l4_pp_policy pol;
    const char *msg;
    size_t len;
    bool final;
    enum l4_pp_action want;
    size_t hdr_len;
};

#define HDR4      "PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\n" /* 45 bytes */
#define HDR_UNK   "PROXY UNKNOWN\r\n"
#define HDR_LOCAL SIG "\x20\x00\x00\x00"
#define HDR2      SIG "\x21\x11\x00\x0c" A4_SRC_DST
#define DC(n, p, s, fin, want, hl)            \
    {                                         \
        n, p, s, sizeof(s) - 1, fin, want, hl \
    }
static const struct dcase dec[] = {
    /* USE: no trusted list */
    DC(1, L4_PP_USE, HDR4 "GET /", false, L4_PP_APPLY, 45),
    DC(2, L4_PP_USE, HDR2, false, L4_PP_APPLY, 28),
    DC(3, L4_PP_USE, HDR_UNK, false, L4_PP_STRIP, 15),
    DC(4, L4_PP_USE, HDR_LOCAL, false, L4_PP_STRIP, 16),
    DC(5, L4_PP_USE, "GET / HTTP/1.1\r\n", false, L4_PP_DIRECT, 0),
    DC(6, L4_PP_USE, "PRO", false, L4_PP_WAIT, 0),
    DC(7, L4_PP_USE, "PRO", true, L4_PP_DIRECT, 0), /* deadline inside the signature */
    DC(8, L4_PP_USE, "", true, L4_PP_DIRECT, 0),    /* server-first protocol */
    DC(9, L4_PP_USE, "", false, L4_PP_WAIT, 0),
    DC(10, L4_PP_USE, "PROXY TCP4 1.2", true, L4_PP_CLOSE, 0), /* cut-off header */
    DC(11, L4_PP_USE, "PROXY TCP4 1.2", false, L4_PP_WAIT, 0),
    DC(12, L4_PP_USE, "PROXY TCP9 x\r\n", false, L4_PP_CLOSE, 0),
    DC(13, L4_PP_USE, "\r\n\r\n\0\r\nQUIT", true, L4_PP_DIRECT, 0), /* 11 of 12 */
    DC(14, L4_PP_USE, SIG, true, L4_PP_CLOSE, 0),
    DC(15, L4_PP_USE,
       SIG "\x21\x11\x00\x0c"
           "1234",
       true, L4_PP_CLOSE, 0),
    /* REQUIRE: trusted peer */
    DC(20, L4_PP_REQUIRE, HDR4, false, L4_PP_APPLY, 45),
    DC(21, L4_PP_REQUIRE, HDR2 "\x16\x03", false, L4_PP_APPLY, 28),
    DC(22, L4_PP_REQUIRE, HDR_UNK, false, L4_PP_STRIP, 15),
    DC(23, L4_PP_REQUIRE, HDR_LOCAL, false, L4_PP_STRIP, 16),
    DC(24, L4_PP_REQUIRE, "GET / HTTP/1.1\r\n", false, L4_PP_CLOSE, 0),
    DC(25, L4_PP_REQUIRE, "", true, L4_PP_CLOSE, 0),
    DC(26, L4_PP_REQUIRE, "PRO", true, L4_PP_CLOSE, 0),
    DC(27, L4_PP_REQUIRE, "PRO", false, L4_PP_WAIT, 0),
    DC(28, L4_PP_REQUIRE, SIG "\x13", false, L4_PP_CLOSE, 0),
    /* IGNORE: untrusted peer */
    DC(30, L4_PP_IGNORE, HDR4 "GET /", false, L4_PP_STRIP, 45),
    DC(31, L4_PP_IGNORE, HDR2, false, L4_PP_STRIP, 28),
    DC(32, L4_PP_IGNORE, "GET / HTTP/1.1\r\n", false, L4_PP_DIRECT, 0),
    DC(33, L4_PP_IGNORE, "PROXY TCP9 x\r\n", false, L4_PP_CLOSE, 0),
    DC(34, L4_PP_IGNORE, "PRO", true, L4_PP_DIRECT, 0),
    DC(35, L4_PP_IGNORE, "", true, L4_PP_DIRECT, 0),
    /* REJECT: unusable peer address */
    DC(40, L4_PP_REJECT, HDR4, false, L4_PP_CLOSE, 0),
    DC(41, L4_PP_REJECT, HDR_LOCAL, false, L4_PP_CLOSE, 0),
    DC(42, L4_PP_REJECT, "GET / HTTP/1.1\r\n", false, L4_PP_DIRECT, 0),
    DC(43, L4_PP_REJECT, "", true, L4_PP_DIRECT, 0),
    DC(44, L4_PP_REJECT, "PROXY", false, L4_PP_WAIT, 0),
};

static void test_decide(void **state)
{
    struct l4_pp_header h;
    size_t i, hl;

    for (i = 0; i < sizeof(dec) / sizeof(dec[0]); i++) {
        const struct dcase *c = &dec[i];

        print_message("decide case %d\n", c->num);
        hl = 12345;
        assert_int_equal(l4_pp_decide(c->pol, guarded(c->msg, c->len), c->len, c->final, &h, &hl),
                         c->want);
        assert_int_equal(hl, c->hdr_len);
    }
    /* "PROXY header overrides remote addr": what APPLY hands over is the header's client */
    {
        struct sockaddr_storage cl = sa_of("203.0.113.50", 61000), lo = sa_of("10.0.0.1", 443);
        uint8_t buf[L4_PP_V2_ENC_MAX + 5];
        int n = l4_pp_v2_encode((struct sockaddr *)&cl, (struct sockaddr *)&lo, buf);

        memcpy(buf + n, "hello", 5);
        assert_int_equal(
            l4_pp_decide(L4_PP_REQUIRE, guarded(buf, (size_t)n + 5), (size_t)n + 5, false, &h, &hl),
            L4_PP_APPLY);
        assert_int_equal(hl, (size_t)n);
        check_addr(&h.src, AF_INET, "203.0.113.50", 61000);
        check_addr(&h.dst, AF_INET, "10.0.0.1", 443);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_haproxy),
        cmocka_unit_test(test_v2_large),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_notfound),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_encode_roundtrip_random),
        cmocka_unit_test(test_encode_live),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_policy_random),
        cmocka_unit_test(test_decide),
    };

    return cmocka_run_group_tests(tests, guard_setup, guard_teardown);
}
