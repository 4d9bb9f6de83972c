/* SPDX-License-Identifier: BSD-3-Clause */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/bufq.h"

#include <stdlib.h>
#include <string.h>

static void test_bufq_roundtrip_random(void **state)
{
    /* Random appends and consumes against a flat reference buffer. */
    enum { CAP = 1 << 20 };
    uint8_t *ref = malloc(CAP), *tmp = malloc(70000);
    size_t rhead = 0, rtail = 0;
    struct nb_bufq q;
    nb_bufq_init(&q);
    srand(42);
    uint32_t seq = 0;
    for (int step = 0; step < 4000; step++) {
        if (rand() % 2 && rtail + 70000 < CAP) {
            size_t n = (size_t)(rand() % 40000);
            for (size_t i = 0; i < n; i++)
                tmp[i] = (uint8_t)(seq++ * 31u);
            assert_int_equal(nb_bufq_append(&q, tmp, n), 0);
            memcpy(ref + rtail, tmp, n);
            rtail += n;
        } else if (q.len > 0) {
            size_t avail;
            const uint8_t *p = nb_bufq_peek(&q, &avail);
            assert_true(avail > 0 && avail <= NB_BUFQ_CHUNK);
            assert_memory_equal(p, ref + rhead, avail);
            size_t n = (size_t)rand() % (avail + 1);
            nb_bufq_consume(&q, n);
            rhead += n;
        }
        assert_int_equal(q.len, rtail - rhead);
        if (rtail + 70000 >= CAP && q.len == 0)
            rhead = rtail = 0;
        if (rtail + 70000 >= CAP) {
            nb_bufq_consume(&q, q.len);
            rhead = rtail = 0;
        }
    }
    nb_bufq_clear(&q);
    struct nb_bufq_stats st;
    nb_bufq_stats(&st);
    assert_int_equal(st.chunks_live, 0);
    nb_bufq_trim();
    nb_bufq_stats(&st);
    assert_int_equal(st.chunks_free, 0);
    free(ref);
    free(tmp);
}

static void test_bufq_empty_peek(void **state)
{
    struct nb_bufq q;
    size_t n = 99;
    nb_bufq_init(&q);
    assert_null(nb_bufq_peek(&q, &n));
    assert_int_equal(n, 0);
    assert_int_equal(nb_bufq_append(&q, "abc", 3), 0);
    nb_bufq_consume(&q, 3);
    assert_int_equal(q.len, 0);
    struct nb_bufq_stats st;
    nb_bufq_stats(&st);
    assert_int_equal(st.chunks_live, 0); /* emptied queues hold no chunk */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bufq_roundtrip_random),
        cmocka_unit_test(test_bufq_empty_peek),
    };
    return cmocka_run_group_tests_name("platform/bufq", tests, NULL, NULL);
}
