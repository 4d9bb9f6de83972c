/* SPDX-License-Identifier: BSD-3-Clause */
/* http/hdrs: editing, case-insensitive lookups, list tokens, joining, serialising. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http/hdrs.h"
#include "platform/arena.h"
#include "platform/err.h"

#include <string.h>

#define ADD(h, n, v) assert_int_equal(http_hdrs_add(h, n, strlen(n), v, strlen(v)), NB_OK)

static void test_edit_and_lookup(void **state)
{
    struct nb_arena a;
    nb_arena_init(&a);
    struct http_hdrs h;
    http_hdrs_init(&h, &a);
    ADD(&h, "Host", "example.com");
    ADD(&h, "X-Forwarded-For", "1.1.1.1");
    ADD(&h, "accept", "*/*");
    ADD(&h, "x-forwarded-for", "2.2.2.2");
    assert_int_equal(http_hdrs_count(&h, "X-FORWARDED-FOR"), 2);
    assert_string_equal(http_hdrs_get(&h, "HOST")->value, "example.com");
    size_t len;
    const char *j = http_hdrs_join(&h, "x-forwarded-for", &len);
    assert_int_equal(len, strlen("1.1.1.1, 2.2.2.2"));
    assert_memory_equal(j, "1.1.1.1, 2.2.2.2", len);
    assert_null(http_hdrs_join(&h, "cookie", &len));
    assert_int_equal(len, 0);
    assert_int_equal(http_hdrs_del(&h, "X-Forwarded-For"), 2);
    assert_int_equal(h.n, 2);
    /* Order of the remaining fields is kept. */
    assert_memory_equal(h.v[0].name, "Host", 4);
    assert_memory_equal(h.v[1].name, "accept", 6);
    assert_int_equal(http_hdrs_set(&h, "Accept", "text/html", 9), NB_OK);
    assert_int_equal(http_hdrs_count(&h, "accept"), 1);
    assert_memory_equal(http_hdrs_get(&h, "accept")->value, "text/html", 9);
    /* Growth past the first array keeps every field. */
    for (int i = 0; i < 100; i++)
        assert_int_equal(http_hdrs_add_copy(&h, "X-N", "v"), NB_OK);
    assert_int_equal(http_hdrs_count(&h, "x-n"), 100);
    nb_arena_deinit(&a);
}

static void test_ieq_and_list(void **state)
{
    assert_true(http_ieq("Upgrade", 7, "upgrade"));
    assert_false(http_ieq("Upgrade", 6, "upgrade"));
    assert_false(http_ieq("Upgrades", 8, "upgrade"));
    static const struct {
        int num;
        const char *v;
        const char *tok;
        bool want;
    } cases[] = {
        {1, "keep-alive, Upgrade", "upgrade", true},
        {2, "keep-alive,upgrade ", "upgrade", true},
        {3, " , close", "close", true},
        {4, "upgraded", "upgrade", false},
        {5, "", "close", false},
        {6, "x-close", "close", false},
        {7, "close\t, te", "te", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("case %d\n", cases[i].num);
        assert_int_equal(http_list_has(cases[i].v, strlen(cases[i].v), cases[i].tok),
                         cases[i].want);
    }
}

static void test_wire(void **state)
{
    struct nb_arena a;
    nb_arena_init(&a);
    struct http_hdrs h;
    http_hdrs_init(&h, &a);
    ADD(&h, "A", "1");
    ADD(&h, "Bb", "");
    char buf[64];
    size_t n = http_hdrs_wire_len(&h);
    assert_int_equal(http_hdrs_write(&h, buf), n);
    assert_int_equal(n, strlen("A: 1\r\nBb: \r\n"));
    assert_memory_equal(buf, "A: 1\r\nBb: \r\n", n);
    nb_arena_deinit(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edit_and_lookup),
        cmocka_unit_test(test_ieq_and_list),
        cmocka_unit_test(test_wire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
