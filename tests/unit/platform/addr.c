/* SPDX-License-Identifier: BSD-3-Clause */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/addr.h"
#include "platform/err.h"

#include <string.h>

static void test_addr_parse_table(void **state)
{
    static const struct {
        const char *in;
        int rc;
        const char *out;
    } cases[] = {
        {"1.2.3.4:80", NB_OK, "1.2.3.4:80"},
        {"[::1]:443", NB_OK, "[::1]:443"},
        {":8443", NB_OK, "0.0.0.0:8443"},
        {"localhost:8080", NB_OK, "127.0.0.1:8080"},
        {"10.99.100.2:65535", NB_OK, "10.99.100.2:65535"},
        {"1.2.3.4:65536", NB_E_PARSE, NULL},
        {"1.2.3.4:", NB_E_PARSE, NULL},
        {"1.2.3.4", NB_E_PARSE, NULL},
        {"::1:80", NB_E_PARSE, NULL},
        {"[::1]80", NB_E_PARSE, NULL},
        {"example.com:80", NB_E_PARSE, NULL},
        {"1.2.3.4:8x", NB_E_PARSE, NULL},
        {"", NB_E_PARSE, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sockaddr_storage ss;
        socklen_t l;
        char buf[NB_ADDRSTRLEN];
        int rc = nb_addr_parse(cases[i].in, &ss, &l);
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): rc %d, want %d", i, cases[i].in, rc, cases[i].rc);
        if (rc == NB_OK)
            assert_string_equal(nb_addr_str((struct sockaddr *)&ss, buf), cases[i].out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_addr_parse_table)};
    return cmocka_run_group_tests_name("platform/addr", tests, NULL, NULL);
}
