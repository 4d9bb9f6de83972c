/* SPDX-License-Identifier: BSD-3-Clause */
/* platform/strmap against a naive array on random operations, and deletion while iterating. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/err.h"
#include "platform/strmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS 500

static void test_against_reference(void **state)
{
    struct nb_strmap m;
    nb_strmap_init(&m);
    static intptr_t ref[KEYS]; /* 0 = absent, else the value */
    memset(ref, 0, sizeof ref);
    srand(7);
    for (int op = 0; op < 200000; op++) {
        int k = rand() % KEYS;
        char key[32];
        snprintf(key, sizeof key, "key-%d", k);
        switch (rand() % 3) {
        case 0: {
            intptr_t v = 1 + rand() % 1000;
            void *old;
            assert_int_equal(nb_strmap_put(&m, key, (void *)v, &old), NB_OK);
            assert_int_equal((intptr_t)old, ref[k]);
            ref[k] = v;
            break;
        }
        case 1:
            assert_int_equal((intptr_t)nb_strmap_del(&m, key), ref[k]);
            ref[k] = 0;
            break;
        default:
            assert_int_equal((intptr_t)nb_strmap_get(&m, key), ref[k]);
        }
    }
    uint32_t n = 0;
    for (int k = 0; k < KEYS; k++)
        n += ref[k] != 0;
    assert_int_equal(m.count, n);
    /* Iteration sees every entry once; deleting the current one is allowed. */
    struct nb_strmap_iter it = {0};
    const char *key;
    void *v;
    uint32_t seen = 0;
    while ((key = nb_strmap_next(&m, &it, &v)) != NULL) {
        int k = atoi(key + 4);
        assert_int_equal((intptr_t)v, ref[k]);
        ref[k] = 0;
        seen++;
        char copy[32];
        snprintf(copy, sizeof copy, "%s", key);
        assert_non_null(nb_strmap_del(&m, copy));
    }
    assert_int_equal(seen, n);
    assert_int_equal(m.count, 0);
    nb_strmap_deinit(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_against_reference)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
