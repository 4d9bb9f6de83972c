/* SPDX-License-Identifier: BSD-3-Clause */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/config.h"
#include "platform/err.h"

#include <stdlib.h>
#include <string.h>

static void test_duration_table(void **state)
{
    static const struct {
        const char *in;
        int rc;
        uint64_t ms;
    } cases[] = {
        {"0", NB_OK, 0},          {"300ms", NB_OK, 300},  {"1.5s", NB_OK, 1500},
        {"1h2m", NB_OK, 3720000}, {"2m", NB_OK, 120000},  {"30s", NB_OK, 30000},
        {"1500us", NB_OK, 2},     {"+5s", NB_OK, 5000},   {"", NB_E_PARSE, 0},
        {"5", NB_E_PARSE, 0},     {"-1s", NB_E_PARSE, 0}, {"1x", NB_E_PARSE, 0},
        {"s", NB_E_PARSE, 0},     {"1.s", NB_OK, 1000},   {".5s", NB_OK, 500},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t ms = 12345;
        int rc = nb_parse_duration_ms(cases[i].in, &ms);
        if (rc != cases[i].rc || (rc == NB_OK && ms != cases[i].ms))
            fail_msg("case %zu \"%s\": rc=%d ms=%llu", i, cases[i].in, rc, (unsigned long long)ms);
    }
}

static void test_precedence_flag_env_default(void **state)
{
    struct nb_config c;
    char err[256];
    unsetenv("NB_PROXY_ADDRESS");
    unsetenv("NB_PROXY_LOG_LEVEL");
    unsetenv("NB_PROXY_WG_PORT");
    char *argv0[] = {"nbproxy", NULL};
    assert_int_equal(nb_config_load(&c, 1, argv0, err, sizeof err), NB_OK);
    assert_string_equal(c.addr, ":443");
    assert_string_equal(c.health_addr, "localhost:8080");
    assert_true(c.supports_custom_ports);
    nb_config_free(&c);

    setenv("NB_PROXY_ADDRESS", ":8443", 1);
    setenv("NB_PROXY_LOG_LEVEL", "debug", 1);
    setenv("NB_PROXY_WG_PORT", "not-a-number", 1); /* warned about, default kept */
    assert_int_equal(nb_config_load(&c, 1, argv0, err, sizeof err), NB_OK);
    assert_string_equal(c.addr, ":8443");
    assert_string_equal(c.log_level, "debug");
    assert_int_equal(c.wg_port, 0);
    nb_config_free(&c);

    char *argv1[] = {"nbproxy",
                     "proxy",
                     "--addr",
                     ":9443",
                     "--log-level=warn",
                     "--wg-port=51820",
                     "--private",
                     "--max-dial-timeout",
                     "5s",
                     NULL};
    assert_int_equal(nb_config_load(&c, 9, argv1, err, sizeof err), NB_OK);
    assert_string_equal(c.addr, ":9443");
    assert_string_equal(c.log_level, "warn");
    assert_int_equal(c.wg_port, 51820);
    assert_true(c.private_mode);
    assert_int_equal(c.max_dial_timeout_ms, 5000);
    nb_config_free(&c);
    unsetenv("NB_PROXY_ADDRESS");
    unsetenv("NB_PROXY_LOG_LEVEL");
    unsetenv("NB_PROXY_WG_PORT");
}

static void test_explicit_and_env_only_knobs(void **state)
{
    struct nb_config c;
    char err[256];
    char *argv0[] = {"nbproxy", NULL};
    unsetenv("NB_PROXY_HEALTH_ADDRESS");
    setenv("NB_PROXY_MAX_IDLE_CONNS", "7", 1);
    setenv("NB_PROXY_MAX_INFLIGHT", "-3", 1); /* negative: ignored, default kept */
    setenv("NB_PROXY_IDLE_CONN_TIMEOUT", "1m30s", 1);
    setenv("NB_PROXY_RESPONSE_HEADER_TIMEOUT", "x", 1); /* unparsable: default kept */
    assert_int_equal(nb_config_load(&c, 1, argv0, err, sizeof err), NB_OK);
    assert_false(nb_config_explicit(&c, "health-addr"));
    assert_string_equal(c.health_addr, "localhost:8080");
    assert_int_equal(c.max_idle_conns, 7);
    assert_int_equal(c.max_idle_conns_per_host, 100);
    assert_int_equal(c.max_inflight, 0);
    assert_int_equal(c.idle_conn_timeout_ms, 90000);
    assert_int_equal(c.response_header_timeout_ms, 0);
    nb_config_free(&c);
    setenv("NB_PROXY_HEALTH_ADDRESS", "127.0.0.1:9", 1);
    assert_int_equal(nb_config_load(&c, 1, argv0, err, sizeof err), NB_OK);
    assert_true(nb_config_explicit(&c, "health-addr"));
    nb_config_free(&c);
    unsetenv("NB_PROXY_HEALTH_ADDRESS");
    char *argv1[] = {"nbproxy", "--health-addr=:9090", "--http-addr", ":8080", NULL};
    assert_int_equal(nb_config_load(&c, 4, argv1, err, sizeof err), NB_OK);
    assert_true(nb_config_explicit(&c, "health-addr"));
    assert_true(nb_config_explicit(&c, "http-addr"));
    assert_false(nb_config_explicit(&c, "access-log"));
    assert_string_equal(c.http_addr, ":8080");
    nb_config_free(&c);
    unsetenv("NB_PROXY_MAX_IDLE_CONNS");
    unsetenv("NB_PROXY_MAX_INFLIGHT");
    unsetenv("NB_PROXY_IDLE_CONN_TIMEOUT");
    unsetenv("NB_PROXY_RESPONSE_HEADER_TIMEOUT");
}

static void test_bad_flags_are_errors(void **state)
{
    struct nb_config c;
    char err[256];
    char *a1[] = {"nbproxy", "--no-such-flag", NULL};
    assert_int_equal(nb_config_load(&c, 2, a1, err, sizeof err), NB_E_INVAL);
    assert_non_null(strstr(err, "no-such-flag"));
    nb_config_free(&c);
    char *a2[] = {"nbproxy", "--wg-port=70000", NULL};
    assert_int_equal(nb_config_load(&c, 2, a2, err, sizeof err), NB_E_INVAL);
    assert_non_null(strstr(err, "wg-port"));
    nb_config_free(&c);
    char *a3[] = {"nbproxy", "--forwarded-proto", "ftp", NULL};
    assert_int_equal(nb_config_load(&c, 3, a3, err, sizeof err), NB_E_INVAL);
    assert_non_null(strstr(err, "forwarded-proto"));
    nb_config_free(&c);
    char *a4[] = {"nbproxy", "--addr", NULL};
    assert_int_equal(nb_config_load(&c, 2, a4, err, sizeof err), NB_E_INVAL);
    nb_config_free(&c);
    char *a5[] = {"nbproxy", "--log-level", "loud", NULL};
    assert_int_equal(nb_config_load(&c, 3, a5, err, sizeof err), NB_E_INVAL);
    nb_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_table),
        cmocka_unit_test(test_precedence_flag_env_default),
        cmocka_unit_test(test_explicit_and_env_only_knobs),
        cmocka_unit_test(test_bad_flags_are_errors),
    };
    return cmocka_run_group_tests_name("core/config", tests, NULL, NULL);
}
