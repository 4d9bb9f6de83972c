/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * rs/xid IDs: known answers (rs/xid's own example and base32hex strings computed independently
 * with Python's base64.b32hexencode), decode round trips and rejects, the generator's layout,
 * counter and ordering, and the process generator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/err.h"
#include "platform/xid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void hex(const char *h, nb_xid out)
{
    for (int i = 0; i < NB_XID_LEN; i++) {
        unsigned v;
        assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* Known answers, both directions. */
static const struct {
    const char *hex;
    const char *str;
} kat[] = {
    /* 1 */ {"4d88e15b60f486e428412dc9", "9m4e2mr0ui3e8a215n4g"}, /* rs/xid README example */
    /* 2 */ {"000000000000000000000000", "00000000000000000000"},
    /* 3 */ {"ffffffffffffffffffffffff", "vvvvvvvvvvvvvvvvvvvg"},
    /* 4 */ {"0123456789abcdef01234567", "04hkaps9lf6uu0938ljg"},
    /* 5 */ {"800000000000000000000001", "g000000000000000000g"},
    /* 6 */ {"00000000000000000000000f", "0000000000000000007g"},
};

static void test_known_answers(void **state)
{
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        nb_xid id, back;
        char s[NB_XID_STR_LEN + 1];
        hex(kat[i].hex, id);
        nb_xid_encode(id, s);
        if (strcmp(s, kat[i].str) != 0)
            fail_msg("case %zu: encoded %s, want %s", i + 1, s, kat[i].str);
        assert_int_equal(nb_xid_decode(kat[i].str, strlen(kat[i].str), back), NB_OK);
        assert_memory_equal(back, id, NB_XID_LEN);
    }
    /* The README example's fields. */
    nb_xid id;
    hex(kat[0].hex, id);
    assert_int_equal(nb_xid_time(id), 1300816219u);
    assert_int_equal(nb_xid_pid(id), 0xe428);
    assert_int_equal(nb_xid_counter(id), 4271561u);
}

static void test_decode_rejects(void **state)
{
    static const char *const bad[] = {
        /* 1 */ "",
        /* 2 */ "9m4e2mr0ui3e8a215n4",   /* 19 chars */
        /* 3 */ "9m4e2mr0ui3e8a215n4gg", /* 21 chars */
        /* 4 */ "9M4E2MR0UI3E8A215N4G",  /* uppercase is not the canonical alphabet */
        /* 5 */ "9m4e2mr0ui3e8a215n4w",  /* 'w' is outside base32hex */
        /* 6 */ "9m4e2mr0ui3e8a215n4h",  /* padding bit set */
        /* 7 */ "9m4e2mr0ui3e8a215n41",  /* padding bits set */
        /* 8 */ "9m4e2mr0ui3e8a215n-g",
        /* 9 */ "9m4e2mr0ui3e8a215n4 ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nb_xid id;
        if (nb_xid_decode(bad[i], strlen(bad[i]), id) != NB_E_PARSE)
            fail_msg("case %zu (%s) accepted", i + 1, bad[i]);
    }
}

static void test_generator_layout_and_counter(void **state)
{
    static const uint8_t machine[3] = {0xaa, 0xbb, 0xcc};
    struct nb_xid_gen g;
    nb_xid_gen_init(&g, machine, 0x1234, 0xfffffd);
    uint32_t want_counter[] = {0xfffffe, 0xffffff, 0x000000, 0x000001}; /* wraps at 24 bits */
    for (int i = 0; i < 4; i++) {
        nb_xid id, back;
        char s[NB_XID_STR_LEN + 1];
        nb_xid_gen_next(&g, 1700000000u + (uint32_t)i, id);
        assert_int_equal(nb_xid_time(id), 1700000000u + (uint32_t)i);
        assert_memory_equal(id + 4, machine, 3);
        assert_int_equal(nb_xid_pid(id), 0x1234);
        assert_int_equal(nb_xid_counter(id), want_counter[i]);
        nb_xid_encode(id, s);
        assert_int_equal(strlen(s), NB_XID_STR_LEN);
        assert_int_equal(nb_xid_decode(s, strlen(s), back), NB_OK);
        assert_memory_equal(back, id, NB_XID_LEN);
    }
}

/*
 * Strings sort like the raw bytes, so by time first: random IDs compared as strings and as bytes
 * (a naive reference) always agree, and a later second sorts after whatever the other fields.
 */
static void test_sortable_by_time(void **state)
{
    srand(42);
    for (int i = 0; i < 20000; i++) {
        nb_xid x, y;
        char a[NB_XID_STR_LEN + 1], b[NB_XID_STR_LEN + 1];
        for (int k = 0; k < NB_XID_LEN; k++) {
            x[k] = (uint8_t)rand();
            /* Often share a prefix so later bytes decide too. */
            y[k] = (k < i % NB_XID_LEN) ? x[k] : (uint8_t)rand();
        }
        nb_xid_encode(x, a);
        nb_xid_encode(y, b);
        int bytes = memcmp(x, y, NB_XID_LEN), str = strcmp(a, b);
        if ((bytes > 0) != (str > 0) || (bytes < 0) != (str < 0))
            fail_msg("pair %d: byte order %d, string order %d (%s vs %s)", i, bytes, str, a, b);
    }
    /* Time 0 with the largest other fields sorts before time 1 with the smallest. */
    static const uint8_t hi[3] = {0xff, 0xff, 0xff}, lo[3] = {0, 0, 0};
    struct nb_xid_gen g1, g2;
    nb_xid x, y;
    char a[NB_XID_STR_LEN + 1], b[NB_XID_STR_LEN + 1];
    nb_xid_gen_init(&g1, hi, 0xffff, 0xfffffe);
    nb_xid_gen_init(&g2, lo, 0, 0xffffffff);
    nb_xid_gen_next(&g1, 0, x);
    nb_xid_gen_next(&g2, 1, y);
    nb_xid_encode(x, a);
    nb_xid_encode(y, b);
    assert_true(strcmp(a, b) < 0);
    /* Same second: the counter orders them. */
    nb_xid_gen_init(&g1, lo, 7, 10);
    nb_xid_gen_next(&g1, 5, x);
    nb_xid_encode(x, a);
    nb_xid_gen_next(&g1, 5, x);
    nb_xid_encode(x, b);
    assert_true(strcmp(a, b) < 0);
}

static void test_machine_id(void **state)
{
    uint8_t a[3], b[3], c[3];
    memset(a, 0, 3);
    /* 1: machine-id wins over the hostname, and surrounding whitespace does not matter. */
    assert_true(nb_xid_machine_from("0123456789abcdef0123456789abcdef\n", "host", a));
    assert_true(nb_xid_machine_from("  0123456789abcdef0123456789abcdef", NULL, b));
    assert_memory_equal(a, b, 3);
    /* 2: empty machine-id falls back to the hostname. */
    assert_true(nb_xid_machine_from("\n", "host", b));
    assert_true(nb_xid_machine_from(NULL, "host", c));
    assert_memory_equal(b, c, 3);
    assert_memory_not_equal(a, b, 3);
    /* 3: neither: false, output untouched. */
    memset(c, 0x5a, 3);
    assert_false(nb_xid_machine_from("", " ", c));
    assert_false(nb_xid_machine_from(NULL, NULL, c));
    assert_int_equal(c[0], 0x5a);
    assert_int_equal(c[2], 0x5a);
}

static void test_process_generator(void **state)
{
    nb_xid a, b;
    nb_xid_make_raw(1000, a);
    nb_xid_make_raw(1000, b);
    assert_int_equal(nb_xid_time(a), 1000);
    assert_int_equal(nb_xid_pid(a), (uint16_t)getpid());
    assert_memory_equal(a + 4, b + 4, 5); /* same machine and pid */
    assert_int_equal(nb_xid_counter(b), (nb_xid_counter(a) + 1) & 0xffffff);

    char s[NB_XID_STR_LEN + 1], t[NB_XID_STR_LEN + 1];
    nb_xid_new(s);
    nb_xid_new(t);
    assert_int_equal(strlen(s), NB_XID_STR_LEN);
    assert_string_not_equal(s, t);
    nb_xid id;
    assert_int_equal(nb_xid_decode(s, NB_XID_STR_LEN, id), NB_OK);
    uint32_t now = (uint32_t)time(NULL);
    assert_in_range(nb_xid_time(id), now - 5, now);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_generator_layout_and_counter),
        cmocka_unit_test(test_sortable_by_time),
        cmocka_unit_test(test_machine_id),
        cmocka_unit_test(test_process_generator),
    };
    return cmocka_run_group_tests_name("platform/xid", tests, NULL, NULL);
}
