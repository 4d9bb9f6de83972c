/* SPDX-License-Identifier: BSD-3-Clause */
/* platform/arena: alignment, growth, big allocations, reset and chunk recycling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/arena.h"

#include <string.h>

static void test_alloc_aligned_and_distinct(void **state)
{
    struct nb_arena a;
    nb_arena_init(&a);
    uint8_t *prev = NULL;
    for (size_t n = 1; n < 300; n += 7) {
        uint8_t *p = nb_arena_alloc(&a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xab, n); /* ASan catches an overlap with another chunk's bookkeeping */
        assert_ptr_not_equal(p, prev);
        prev = p;
    }
    nb_arena_reset(&a);
    struct nb_arena_stats st;
    nb_arena_stats(&st);
    assert_int_equal(st.chunks_live, 0);
}

static void test_big_allocation_keeps_current_chunk(void **state)
{
    struct nb_arena a;
    nb_arena_init(&a);
    char *small = nb_arena_alloc(&a, 10);
    assert_non_null(small);
    char *big = nb_arena_alloc(&a, 3 * NB_ARENA_CHUNK);
    assert_non_null(big);
    memset(big, 1, 3 * NB_ARENA_CHUNK);
    char *small2 = nb_arena_alloc(&a, 10);
    /* The small one continues in the first chunk, right after the first allocation. */
    assert_ptr_equal(small2, small + 16);
    struct nb_arena_stats st;
    nb_arena_stats(&st);
    assert_int_equal(st.chunks_live, 2);
    nb_arena_reset(&a);
    nb_arena_stats(&st);
    assert_int_equal(st.chunks_live, 0);
}

static void test_recycles_chunks(void **state)
{
    struct nb_arena a;
    nb_arena_init(&a);
    assert_non_null(nb_arena_alloc(&a, 100));
    nb_arena_reset(&a);
    struct nb_arena_stats st0, st1;
    nb_arena_stats(&st0);
    assert_true(st0.chunks_free >= 1);
    assert_non_null(nb_arena_alloc(&a, 100));
    nb_arena_stats(&st1);
    assert_int_equal(st1.chunks_free, st0.chunks_free - 1);
    nb_arena_deinit(&a);
}

static void test_strings(void **state)
{
    struct nb_arena a;
    nb_arena_init(&a);
    char *s = nb_arena_strndup(&a, "hello world", 5);
    assert_string_equal(s, "hello");
    size_t len = 0;
    char *f = nb_arena_printf(&a, &len, "%s-%d", "x", 42);
    assert_string_equal(f, "x-42");
    assert_int_equal(len, 4);
    uint8_t *z = nb_arena_calloc(&a, 64);
    for (int i = 0; i < 64; i++)
        assert_int_equal(z[i], 0);
    assert_null(nb_arena_alloc(&a, SIZE_MAX - 4));
    nb_arena_deinit(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_aligned_and_distinct),
        cmocka_unit_test(test_big_allocation_keeps_current_chunk),
        cmocka_unit_test(test_recycles_chunks),
        cmocka_unit_test(test_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
