/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/* Base64 keys and CIDR parsing. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sys/socket.h>

#include "platform/err.h"
#include "wg/config.h"

static void test_keys(void **state)
{
    /* RFC 7748 §6.1 Alice, in base64 (python3 base64.b64encode). */
    const char *priv_b64 = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
    const char *pub_b64 = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";
    wg_key priv, pub, back;
    char out[WG_KEY_BASE64_LEN + 1];

    assert_int_equal(wg_key_from_base64(priv, priv_b64), NB_OK);
    assert_int_equal(priv[0], 0x77);
    assert_int_equal(wg_pubkey_from_private(pub, priv), NB_OK);
    wg_key_to_base64(out, pub);
    assert_string_equal(out, pub_b64);
    assert_int_equal(wg_key_from_base64(back, out), NB_OK);
    assert_memory_equal(back, pub, 32);

    assert_int_equal(wg_key_from_base64(back, ""), NB_E_PARSE);
    assert_int_equal(wg_key_from_base64(back, NULL), NB_E_PARSE);
    assert_int_equal(wg_key_from_base64(back, "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo"),
                     NB_E_PARSE); /* no padding */
    assert_int_equal(wg_key_from_base64(back, "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LC!="),
                     NB_E_PARSE);
    assert_int_equal(wg_key_from_base64(back, "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=x"),
                     NB_E_PARSE);
    assert_int_equal(wg_key_from_base64(back, "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25_Co="),
                     NB_E_PARSE); /* URL-safe alphabet */

    wg_key_generate(priv);
    assert_int_equal(priv[0] & 7, 0);
    assert_int_equal(priv[31] & 0xc0, 0x40);
}

static void test_allowedip(void **state)
{
    struct wg_allowedip a;

    assert_int_equal(wg_allowedip_parse(&a, "10.0.0.0/24"), NB_OK);
    assert_int_equal(a.family, AF_INET);
    assert_int_equal(a.cidr, 24);
    assert_int_equal(a.addr[0], 10);
    assert_int_equal(wg_allowedip_parse(&a, "100.64.1.2"), NB_OK);
    assert_int_equal(a.cidr, 32);
    assert_int_equal(wg_allowedip_parse(&a, "0.0.0.0/0"), NB_OK);
    assert_int_equal(a.cidr, 0);
    assert_int_equal(wg_allowedip_parse(&a, "fd00:1234::/64"), NB_OK);
    assert_int_equal(a.family, AF_INET6);
    assert_int_equal(a.cidr, 64);
    assert_int_equal(a.addr[0], 0xfd);
    assert_int_equal(wg_allowedip_parse(&a, "::/0"), NB_OK);
    assert_int_equal(wg_allowedip_parse(&a, "fd00::1"), NB_OK);
    assert_int_equal(a.cidr, 128);

    static const char *bad[] = {
        "",         "/24",        "10.0.0.0/33", "10.0.0.0/",      "10.0.0.0/-1", "10.0.0.0/2x",
        "10.0.0/8", "fd00::/129", "hello",       "10.0.0.0/08000", "1.2.3.4 /8",  NULL,
    };
    for (size_t i = 0; bad[i]; i++)
        assert_int_equal(wg_allowedip_parse(&a, bad[i]), NB_E_PARSE);
    assert_int_equal(wg_allowedip_parse(&a, NULL), NB_E_PARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_allowedip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
