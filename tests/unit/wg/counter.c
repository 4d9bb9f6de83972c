/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * Replay-window vectors, one numbered case per line (after Linux selftest/counter.c). Each case
 * feeds one counter to the same window and states whether it must be accepted.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "platform/err.h"
#include "wg/counter.h"
#include "wg/messages.h"

#define T_LIM (WG_COUNTER_WINDOW + 1)
#define REJ   WG_REJECT_AFTER_MESSAGES

struct ccase {
    int num;
    uint64_t n;
    int ok;
};

static const struct ccase cases[] = {
    {1, 0, 1},
    {2, 1, 1},
    {3, 1, 0},
    {4, 9, 1},
    {5, 8, 1},
    {6, 7, 1},
    {7, 7, 0},
    {8, T_LIM, 1},
    {9, T_LIM - 1, 1},
    {10, T_LIM - 1, 0},
    {11, T_LIM - 2, 1},
    {12, 2, 1},
    {13, 2, 0},
    {14, T_LIM + 16, 1},
    {15, 3, 0}, /* slid out of the window */
    {16, T_LIM + 16, 0},
    {17, T_LIM * 4, 1}, /* far jump: the whole ring is cleared */
    {18, T_LIM * 4 - (T_LIM - 1), 1},
    {19, 10, 0},
    {20, T_LIM * 4 - T_LIM, 0},
    {21, T_LIM * 4 - (T_LIM + 1), 0},
    {22, T_LIM * 4 - (T_LIM - 2), 1},
    {23, T_LIM * 4 + 1 - T_LIM, 0},
    {24, 0, 0},
    {25, REJ, 0}, /* REJECT_AFTER_MESSAGES itself is never valid */
    {26, REJ - 1, 1},
    {27, REJ, 0},
    {28, REJ - 1, 0},
    {29, REJ - 2, 1},
    {30, REJ + 1, 0},
    {31, REJ + 2, 0},
    {32, REJ - 2, 0},
    {33, REJ - 3, 1},
    {34, 0, 0},
};

static void test_vectors(void **state)
{
    struct wg_counter c;
    size_t i;

    wg_counter_init(&c);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = wg_counter_validate(&c, cases[i].n) == NB_OK;

        if (got != cases[i].ok)
            fail_msg("counter case %d (n=%llu): got %d want %d", cases[i].num,
                     (unsigned long long)cases[i].n, got, cases[i].ok);
    }
}

/* Every counter in the window exactly once, forwards and backwards, across word boundaries. */
static void test_window_bitmap(void **state)
{
    struct wg_counter c;
    uint64_t i;

    wg_counter_init(&c);
    for (i = 1; i <= WG_COUNTER_WINDOW; i++)
        assert_int_equal(wg_counter_validate(&c, i), NB_OK);
    assert_int_equal(wg_counter_validate(&c, 0), NB_OK);
    assert_int_equal(wg_counter_validate(&c, 0), NB_E_REPLAY);

    wg_counter_init(&c);
    for (i = WG_COUNTER_WINDOW + 1; i-- > 0;)
        assert_int_equal(wg_counter_validate(&c, i), NB_OK);
    for (i = 0; i <= WG_COUNTER_WINDOW; i++)
        assert_int_equal(wg_counter_validate(&c, i), NB_E_REPLAY);

    /* Window is at least 2048 wide: 2048 behind the head is still accepted once. */
    wg_counter_init(&c);
    assert_int_equal(wg_counter_validate(&c, 5000), NB_OK);
    assert_int_equal(wg_counter_validate(&c, 5000 - 2048), NB_OK);
    assert_int_equal(wg_counter_validate(&c, 5000 - 2048), NB_E_REPLAY);

    /* Exhausted: REJECT_AFTER_MESSAGES reports EXPIRED. */
    assert_int_equal(wg_counter_validate(&c, REJ), NB_E_EXPIRED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_window_bitmap),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
