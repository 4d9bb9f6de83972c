/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * mgmt/grpc_frame: the message prefix codec (fed whole, byte by byte and in random pieces),
 * its errors, and tables for grpc-status, grpc-message, grpc-timeout, content-type and the
 * HTTP / HTTP/2 code mappings. One numbered case per line (house style §8.38).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mgmt/grpc_frame.h"
#include "platform/err.h"

#include <stdlib.h>
#include <string.h>

/* ---- prefix ---- */

static void test_prefix_encode(void **state)
{
    static const struct {
        uint32_t len;
        uint8_t out[5];
    } t[] = {
        /* 1 */ {0, {0, 0, 0, 0, 0}},
        /* 2 */ {1, {0, 0, 0, 0, 1}},
        /* 3 */ {255, {0, 0, 0, 0, 0xff}},
        /* 4 */ {256, {0, 0, 0, 1, 0}},
        /* 5 */ {65536, {0, 0, 1, 0, 0}},
        /* 6 */ {16u << 20, {0, 1, 0, 0, 0}},
        /* 7 */ {0xffffffffu, {0, 0xff, 0xff, 0xff, 0xff}},
    };
    (void)state;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        uint8_t out[5];
        mgmt_grpc_prefix_encode(out, t[i].len);
        assert_memory_equal(out, t[i].out, 5);
    }
}

/* A decoded message, for comparing feeds. */
struct got {
    size_t n;
    uint32_t len[16];
    uint8_t *data[16];
    uint32_t have[16];
};

static void got_clear(struct got *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->data[i]);
    memset(g, 0, sizeof *g);
}

/* Feeds `in` in pieces of the given sizes (cycled); returns the first error or NB_OK. */
static int feed(struct mgmt_grpc_dec *d, const uint8_t *in, size_t len, const size_t *steps,
                size_t nsteps, struct got *g)
{
    size_t off = 0, si = 0;
    while (off < len) {
        size_t piece = steps[si++ % nsteps];
        if (piece > len - off)
            piece = len - off;
        const uint8_t *p = in + off;
        size_t left = piece;
        for (;;) {
            struct mgmt_grpc_dec_ev ev;
            ssize_t r = mgmt_grpc_dec_feed(d, p, left, &ev);
            if (r < 0)
                return (int)r;
            assert_true((size_t)r <= left);
            p += r;
            left -= (size_t)r;
            if (ev.kind == MGMT_GRPC_DEC_NONE) {
                assert_int_equal(left, 0);
                break;
            }
            switch (ev.kind) {
            case MGMT_GRPC_DEC_BEGIN:
                assert_true(g->n < 16);
                g->len[g->n] = ev.msg_len;
                g->data[g->n] = malloc(ev.msg_len + 1);
                g->have[g->n] = 0;
                g->n++;
                break;
            case MGMT_GRPC_DEC_DATA:
                assert_true(ev.data >= in && ev.data + ev.len <= in + len); /* no copies */
                assert_true(g->have[g->n - 1] + ev.len <= g->len[g->n - 1]);
                memcpy(g->data[g->n - 1] + g->have[g->n - 1], ev.data, ev.len);
                g->have[g->n - 1] += (uint32_t)ev.len;
                break;
            case MGMT_GRPC_DEC_END:
                assert_int_equal(g->have[g->n - 1], g->len[g->n - 1]);
                break;
            default:
                fail();
            }
        }
        off += piece;
    }
    return NB_OK;
}

static size_t build_stream(uint8_t *buf, const uint32_t *lens, size_t n)
{
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        mgmt_grpc_prefix_encode(buf + off, lens[i]);
        off += 5;
        for (uint32_t k = 0; k < lens[i]; k++)
            buf[off + k] = (uint8_t)(i * 31 + k);
        off += lens[i];
    }
    return off;
}

static void test_decode_splits(void **state)
{
    static const uint32_t lens[] = {0, 1, 300, 0, 70000, 5};
    const size_t n = sizeof lens / sizeof lens[0];
    uint8_t *buf = malloc(80000);
    size_t len = build_stream(buf, lens, n);
    static const size_t whole[] = {1u << 30}, bytes[] = {1}, odd[] = {3, 7, 1, 5000, 2, 64};
    const struct {
        const size_t *steps;
        size_t n;
    } feeds[] = {{whole, 1}, {bytes, 1}, {odd, 6}};
    (void)state;

    srand(1);
    for (size_t f = 0; f < 3 + 20; f++) {
        struct mgmt_grpc_dec d = {0};
        struct got g = {0};
        size_t rnd[8];
        const size_t *steps;
        size_t ns;
        if (f < 3) {
            steps = feeds[f].steps;
            ns = feeds[f].n;
        } else { /* random piece sizes */
            for (size_t i = 0; i < 8; i++)
                rnd[i] = (size_t)(rand() % 700) + 1;
            steps = rnd;
            ns = 8;
        }
        assert_int_equal(feed(&d, buf, len, steps, ns, &g), NB_OK);
        assert_true(mgmt_grpc_dec_at_boundary(&d));
        /* the last END may still be pending after the final byte: drain it */
        struct mgmt_grpc_dec_ev ev;
        while (mgmt_grpc_dec_feed(&d, NULL, 0, &ev) == 0 && ev.kind != MGMT_GRPC_DEC_NONE)
            ;
        assert_int_equal(g.n, n);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(g.len[i], lens[i]);
            for (uint32_t k = 0; k < lens[i]; k++)
                assert_int_equal(g.data[i][k], (uint8_t)(i * 31 + k));
        }
        got_clear(&g);
    }
    free(buf);
}

static void test_decode_boundary(void **state)
{
    struct mgmt_grpc_dec d = {0};
    struct mgmt_grpc_dec_ev ev;
    const uint8_t msg[] = {0, 0, 0, 0, 2, 'h', 'i'};
    (void)state;

    assert_true(mgmt_grpc_dec_at_boundary(&d));
    assert_int_equal(mgmt_grpc_dec_feed(&d, msg, 3, &ev), 3); /* part of the prefix */
    assert_int_equal(ev.kind, MGMT_GRPC_DEC_NONE);
    assert_false(mgmt_grpc_dec_at_boundary(&d));
    assert_int_equal(mgmt_grpc_dec_feed(&d, msg + 3, 2, &ev), 2);
    assert_int_equal(ev.kind, MGMT_GRPC_DEC_BEGIN);
    assert_int_equal(ev.msg_len, 2);
    assert_false(mgmt_grpc_dec_at_boundary(&d));
    assert_int_equal(mgmt_grpc_dec_feed(&d, msg + 5, 1, &ev), 1);
    assert_int_equal(ev.kind, MGMT_GRPC_DEC_DATA);
    assert_false(mgmt_grpc_dec_at_boundary(&d)); /* a stream ending here is truncated */
    assert_int_equal(mgmt_grpc_dec_feed(&d, msg + 6, 1, &ev), 1);
    assert_int_equal(ev.kind, MGMT_GRPC_DEC_DATA);
    assert_int_equal(mgmt_grpc_dec_feed(&d, NULL, 0, &ev), 0);
    assert_int_equal(ev.kind, MGMT_GRPC_DEC_END);
    assert_true(mgmt_grpc_dec_at_boundary(&d));
    assert_int_equal(mgmt_grpc_dec_feed(&d, NULL, 0, &ev), 0);
    assert_int_equal(ev.kind, MGMT_GRPC_DEC_NONE);
}

static void test_decode_errors(void **state)
{
    static const struct {
        uint32_t max;
        uint8_t in[5];
        int rc; /* NB_OK = BEGIN reported */
    } t[] = {
        /* 1 */ {0, {1, 0, 0, 0, 3}, NB_E_UNSUPPORTED}, /* compressed */
        /* 2 */ {0, {2, 0, 0, 0, 3}, NB_E_PARSE},
        /* 3 */ {0, {0x80, 0, 0, 0, 0}, NB_E_PARSE},
        /* 4 */ {0, {0xff, 0xff, 0xff, 0xff, 0xff}, NB_E_PARSE},
        /* 5 */ {0, {0, 0x01, 0x00, 0x00, 0x00}, NB_OK},        /* exactly 16 MiB */
        /* 6 */ {0, {0, 0x01, 0x00, 0x00, 0x01}, NB_E_TOO_BIG}, /* 16 MiB + 1 */
        /* 7 */ {0, {0, 0x01, 0x10, 0x00, 0x00}, NB_E_TOO_BIG}, /* 17 MiB */
        /* 8 */ {0, {0, 0xff, 0xff, 0xff, 0xff}, NB_E_TOO_BIG},
        /* 9 */ {100, {0, 0, 0, 0, 100}, NB_OK},
        /* 10 */ {100, {0, 0, 0, 0, 101}, NB_E_TOO_BIG},
    };
    (void)state;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct mgmt_grpc_dec d = {.max_len = t[i].max};
        struct mgmt_grpc_dec_ev ev;
        ssize_t r = mgmt_grpc_dec_feed(&d, t[i].in, 5, &ev);
        if (t[i].rc == NB_OK) {
            assert_int_equal(r, 5);
            assert_int_equal(ev.kind, MGMT_GRPC_DEC_BEGIN);
        } else {
            assert_int_equal(r, t[i].rc);
        }
    }
}

/* ---- trailers ---- */

static void test_status_parse(void **state)
{
    static const struct {
        const char *in;
        int rc;
        int code;
    } t[] = {
        /* 1 */ {"0", NB_OK, 0},
        /* 2 */ {"5", NB_OK, 5},
        /* 3 */ {"12", NB_OK, MGMT_GRPC_UNIMPLEMENTED},
        /* 4 */ {"16", NB_OK, MGMT_GRPC_UNAUTHENTICATED},
        /* 5 */ {"17", NB_OK, MGMT_GRPC_UNKNOWN},
        /* 6 */ {"999999999", NB_OK, MGMT_GRPC_UNKNOWN},
        /* 7 */ {"000000014", NB_OK, MGMT_GRPC_UNAVAILABLE},
        /* 8 */ {"", NB_E_PARSE, 0},
        /* 9 */ {"-1", NB_E_PARSE, 0},
        /* 10 */ {" 1", NB_E_PARSE, 0},
        /* 11 */ {"1 ", NB_E_PARSE, 0},
        /* 12 */ {"1a", NB_E_PARSE, 0},
        /* 13 */ {"0x1", NB_E_PARSE, 0},
        /* 14 */ {"1234567890", NB_E_PARSE, 0},
        /* 15 */ {"+3", NB_E_PARSE, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int code = -1;
        assert_int_equal(mgmt_grpc_status_parse(t[i].in, strlen(t[i].in), &code), t[i].rc);
        if (t[i].rc == NB_OK)
            assert_int_equal(code, t[i].code);
    }
}

static void test_message_decode(void **state)
{
    static const struct {
        const char *in;
        size_t cap;
        const char *out;
    } t[] = {
        /* 1 */ {"plain text", 64, "plain text"},
        /* 2 */ {"a%20b", 64, "a b"},
        /* 3 */ {"%F0%9F%90%9B bug", 64, "\xf0\x9f\x90\x9b bug"},
        /* 4 */ {"%e2%82%ac", 64, "\xe2\x82\xac"},
        /* 5 */ {"100%", 64, "100%"},
        /* 6 */ {"%2", 64, "%2"},
        /* 7 */ {"%zz%", 64, "%zz%"},
        /* 8 */ {"line%0Anext", 64, "line?next"},
        /* 9 */ {"del%7F", 64, "del?"},
        /* 10 */ {"tab\there", 64, "tab?here"},
        /* 11 */ {"abcdef", 4, "abc"},
        /* 12 */ {"%41%42%43", 3, "AB"},
        /* 13 */ {"", 8, ""},
        /* 14 */ {"%00x", 8, "?x"},
        /* 15 */ {"%%41", 8, "%A"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char out[64];
        size_t n = mgmt_grpc_message_decode(t[i].in, strlen(t[i].in), out, t[i].cap);
        assert_string_equal(out, t[i].out);
        assert_int_equal(n, strlen(t[i].out));
    }
    char one[1] = {'x'};
    assert_int_equal(mgmt_grpc_message_decode("abc", 3, one, 1), 0);
    assert_int_equal(one[0], '\0');
}

/* ---- grpc-timeout ---- */

static void test_timeout_encode(void **state)
{
    static const struct {
        uint64_t ms;
        const char *out;
    } t[] = {
        /* 1 */ {0, "0m"},
        /* 2 */ {1, "1m"},
        /* 3 */ {100, "100m"},
        /* 4 */ {999, "999m"},
        /* 5 */ {1000, "1S"},
        /* 6 */ {20000, "20S"},
        /* 7 */ {30000, "30S"},
        /* 8 */ {20500, "20500m"},
        /* 9 */ {99999999, "99999999m"},
        /* 10 */ {100000000, "100000S"},
        /* 11 */ {100000001, "100001S"}, /* rounded up, never down */
        /* 12 */ {99999999000ull, "99999999S"},
        /* 13 */ {99999999001ull, "1666667M"},
        /* 14 */ {UINT64_MAX, "99999999H"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char out[MGMT_GRPC_TIMEOUT_MAX];
        size_t n = mgmt_grpc_timeout_encode(t[i].ms, out);
        assert_string_equal(out, t[i].out);
        assert_int_equal(n, strlen(out));
    }
    /* Property: parse(encode(ms)) is ms, or ms rounded up by less than one unit (an hour). */
    srand(2);
    for (int i = 0; i < 10000; i++) {
        uint64_t ms = ((uint64_t)rand() << 20 ^ (uint64_t)rand()) >> (rand() % 40);
        char out[MGMT_GRPC_TIMEOUT_MAX];
        uint64_t back;
        size_t n = mgmt_grpc_timeout_encode(ms, out);
        assert_true(n >= 2 && n <= 9);
        assert_int_equal(mgmt_grpc_timeout_parse(out, n, &back), NB_OK);
        if (ms > 99999999ull * 3600000ull) { /* beyond the largest value: capped */
            assert_string_equal(out, "99999999H");
            continue;
        }
        assert_true(back >= ms);
        if (ms <= 99999999)
            assert_int_equal(back, ms);
        else
            assert_true(back - ms < 3600000);
    }
}

static void test_timeout_parse(void **state)
{
    static const struct {
        const char *in;
        int rc;
        uint64_t ms;
    } t[] = {
        /* 1 */ {"1H", NB_OK, 3600000},
        /* 2 */ {"2M", NB_OK, 120000},
        /* 3 */ {"3S", NB_OK, 3000},
        /* 4 */ {"4m", NB_OK, 4},
        /* 5 */ {"1500u", NB_OK, 2},
        /* 6 */ {"1000u", NB_OK, 1},
        /* 7 */ {"1n", NB_OK, 1},
        /* 8 */ {"0n", NB_OK, 0},
        /* 9 */ {"99999999S", NB_OK, 99999999000ull},
        /* 10 */ {"123456789S", NB_E_PARSE, 0}, /* 9 digits */
        /* 11 */ {"S", NB_E_PARSE, 0},
        /* 12 */ {"1x", NB_E_PARSE, 0},
        /* 13 */ {"-1S", NB_E_PARSE, 0},
        /* 14 */ {"1.5S", NB_E_PARSE, 0},
        /* 15 */ {"", NB_E_PARSE, 0},
        /* 16 */ {"1 S", NB_E_PARSE, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        uint64_t ms = 12345;
        assert_int_equal(mgmt_grpc_timeout_parse(t[i].in, strlen(t[i].in), &ms), t[i].rc);
        if (t[i].rc == NB_OK)
            assert_int_equal(ms, t[i].ms);
    }
}

/* ---- headers and code mappings ---- */

static void test_content_type(void **state)
{
    static const struct {
        const char *in;
        bool ok;
    } t[] = {
        /* 1 */ {"application/grpc", true},
        /* 2 */ {"application/grpc+proto", true},
        /* 3 */ {"application/grpc;charset=utf-8", true},
        /* 4 */ {"Application/GRPC", true},
        /* 5 */ {"application/grpcx", false},
        /* 6 */ {"application/grp", false},
        /* 7 */ {"application/json", false},
        /* 8 */ {"", false},
        /* 9 */ {"text/html", false},
        /* 10 */ {" application/grpc", false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        assert_int_equal(mgmt_grpc_content_type_ok(t[i].in, strlen(t[i].in)), t[i].ok);
}

static void test_code_mappings(void **state)
{
    static const struct {
        int http;
        int code;
    } h[] = {
        /* 1 */ {400, MGMT_GRPC_INTERNAL},
        /* 2 */ {401, MGMT_GRPC_UNAUTHENTICATED},
        /* 3 */ {403, MGMT_GRPC_PERMISSION_DENIED},
        /* 4 */ {404, MGMT_GRPC_UNIMPLEMENTED},
        /* 5 */ {429, MGMT_GRPC_UNAVAILABLE},
        /* 6 */ {502, MGMT_GRPC_UNAVAILABLE},
        /* 7 */ {503, MGMT_GRPC_UNAVAILABLE},
        /* 8 */ {504, MGMT_GRPC_UNAVAILABLE},
        /* 9 */ {200, MGMT_GRPC_UNKNOWN},
        /* 10 */ {500, MGMT_GRPC_UNKNOWN},
        /* 11 */ {302, MGMT_GRPC_UNKNOWN},
    };
    static const struct {
        uint32_t h2;
        int code;
    } r[] = {
        /* 1 */ {0x0, MGMT_GRPC_INTERNAL}, /* NO_ERROR without a status */
        /* 2 */ {0x1, MGMT_GRPC_INTERNAL}, /* PROTOCOL_ERROR */
        /* 3 */ {0x2, MGMT_GRPC_INTERNAL}, /* INTERNAL_ERROR */
        /* 4 */ {0x3, MGMT_GRPC_INTERNAL}, /* FLOW_CONTROL_ERROR */
        /* 5 */ {0x7, MGMT_GRPC_UNAVAILABLE},
        /* 6 */ {0x8, MGMT_GRPC_CANCELLED},
        /* 7 */ {0xb, MGMT_GRPC_RESOURCE_EXHAUSTED},
        /* 8 */ {0xc, MGMT_GRPC_PERMISSION_DENIED},
        /* 9 */ {0xd, MGMT_GRPC_INTERNAL}, /* HTTP_1_1_REQUIRED */
    };
    (void)state;
    for (size_t i = 0; i < sizeof h / sizeof h[0]; i++)
        assert_int_equal(mgmt_grpc_code_from_http(h[i].http), h[i].code);
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        assert_int_equal(mgmt_grpc_code_from_h2(r[i].h2), r[i].code);
    assert_string_equal(mgmt_grpc_code_name(0), "OK");
    assert_string_equal(mgmt_grpc_code_name(4), "DEADLINE_EXCEEDED");
    assert_string_equal(mgmt_grpc_code_name(16), "UNAUTHENTICATED");
    assert_string_equal(mgmt_grpc_code_name(17), "UNKNOWN");
    assert_string_equal(mgmt_grpc_code_name(-1), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_encode),   cmocka_unit_test(test_decode_splits),
        cmocka_unit_test(test_decode_boundary), cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_status_parse),    cmocka_unit_test(test_message_decode),
        cmocka_unit_test(test_timeout_encode),  cmocka_unit_test(test_timeout_parse),
        cmocka_unit_test(test_content_type),    cmocka_unit_test(test_code_mappings),
    };
    return cmocka_run_group_tests_name("mgmt_grpc_frame", tests, NULL, NULL);
}
