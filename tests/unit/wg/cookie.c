/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/* MAC1/MAC2, cookie replies, secret rotation, and the handshake rate limiter. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <sodium.h>

#include "platform/err.h"
#include "wg/cookie.h"
#include "wg/crypto.h"

static void fake_random(void *ctx, void *buf, size_t n)
{
    unsigned *ctr = ctx;
    uint8_t seed[randombytes_SEEDBYTES] = {0};

    memcpy(seed, ctr, sizeof(*ctr));
    (*ctr)++;
    randombytes_buf_deterministic(buf, n, seed);
}

static struct sockaddr_in sin4(const char *ip, uint16_t port)
{
    struct sockaddr_in s;

    memset(&s, 0, sizeof(s));
    s.sin_family = AF_INET;
    s.sin_port = htons(port);
    inet_pton(AF_INET, ip, &s.sin_addr);
    return s;
}

static void test_mac_and_cookie(void **state)
{
    struct wg_cookie_checker cc;
    struct wg_cookie_maker cm;
    struct wg_msg_cookie reply;
    uint8_t priv[32] = {7}, pub[32], other[32] = {9}, msg[WG_MSG_INITIATION_LEN];
    struct sockaddr_in src = sin4("198.51.100.7", 40000), src2 = sin4("198.51.100.8", 40000);
    const struct sockaddr *sa = (const struct sockaddr *)&src;
    unsigned ctr = 0;
    uint64_t now = 5000;

    wg_crypto_clamp(priv);
    wg_crypto_pubkey(pub, priv);
    wg_cookie_checker_init(&cc, fake_random, &ctr);
    wg_cookie_checker_set_key(&cc, pub);
    wg_cookie_maker_init(&cm, pub);
    memset(msg, 0xab, sizeof(msg));

    /* No reply consumable before we sent anything. */
    memset(&reply, 0, sizeof(reply));
    assert_int_equal(wg_cookie_maker_consume_reply(&cm, now, &reply), NB_E_DROP);

    wg_cookie_maker_mac(&cm, now, msg, sizeof(msg));
    assert_true(sodium_is_zero(msg + sizeof(msg) - 16, 16)); /* no cookie yet: MAC2 = 0 */
    assert_int_equal(wg_cookie_checker_validate(&cc, now, msg, sizeof(msg), sa, false), NB_OK);
    assert_int_equal(wg_cookie_checker_validate(&cc, now, msg, sizeof(msg), sa, true), NB_E_COOKIE);
    /* MAC1 keyed on another public key fails. */
    {
        struct wg_cookie_maker wrong;

        wg_crypto_pubkey(other, other);
        wg_cookie_maker_init(&wrong, other);
        wg_cookie_maker_mac(&wrong, now, msg, sizeof(msg));
        assert_int_equal(wg_cookie_checker_validate(&cc, now, msg, sizeof(msg), sa, false),
                         NB_E_DROP);
        wg_cookie_maker_mac(&cm, now, msg, sizeof(msg));
    }

    assert_int_equal(
        wg_cookie_checker_create_reply(&cc, now, &reply, 0x01020304, msg, sizeof(msg), sa), NB_OK);
    assert_int_equal(wg_cookie_maker_consume_reply(&cm, now, &reply), NB_OK);
    /* One reply per message. */
    assert_int_equal(wg_cookie_maker_consume_reply(&cm, now, &reply), NB_E_DROP);

    wg_cookie_maker_mac(&cm, now + 10, msg, sizeof(msg));
    assert_false(sodium_is_zero(msg + sizeof(msg) - 16, 16));
    assert_int_equal(wg_cookie_checker_validate(&cc, now + 10, msg, sizeof(msg), sa, true), NB_OK);
    /* The cookie is bound to the source address and port. */
    assert_int_equal(wg_cookie_checker_validate(&cc, now + 10, msg, sizeof(msg),
                                                (const struct sockaddr *)&src2, true),
                     NB_E_COOKIE);
    /* Any flipped MAC1 byte: dropped; any flipped MAC2 byte: cookie demanded. */
    for (size_t i = sizeof(msg) - 32; i < sizeof(msg); i++) {
        msg[i] ^= 0x80;
        assert_int_equal(wg_cookie_checker_validate(&cc, now + 10, msg, sizeof(msg), sa, true),
                         i < sizeof(msg) - 16 ? NB_E_DROP : NB_E_COOKIE);
        msg[i] ^= 0x80;
    }

    /* A tampered reply is rejected. */
    wg_cookie_maker_mac(&cm, now + 20, msg, sizeof(msg));
    wg_cookie_checker_create_reply(&cc, now + 20, &reply, 1, msg, sizeof(msg), sa);
    reply.cookie_enc[3] ^= 1;
    assert_int_equal(wg_cookie_maker_consume_reply(&cm, now + 20, &reply), NB_E_DROP);

    /* The maker stops using a cookie older than 120 - 5 s. */
    wg_cookie_maker_mac(&cm, now + 116000, msg, sizeof(msg));
    assert_true(sodium_is_zero(msg + sizeof(msg) - 16, 16));

    /* The checker's secret rotates after 120 s: old cookies stop validating. */
    wg_cookie_maker_mac(&cm, now + 10, msg, sizeof(msg));
    assert_int_equal(wg_cookie_checker_validate(&cc, now + 121000, msg, sizeof(msg), sa, true),
                     NB_E_COOKIE);

    /* Unsupported family. */
    {
        struct sockaddr un = {.sa_family = AF_UNIX};

        assert_int_equal(wg_cookie_checker_validate(&cc, now, msg, sizeof(msg), &un, true),
                         NB_E_INVAL);
    }
    wg_cookie_checker_deinit(&cc);
    wg_cookie_maker_deinit(&cm);
}

static void test_ratelimiter(void **state)
{
    static struct wg_ratelimiter rl;
    uint8_t key[16] = {1, 2, 3};
    struct sockaddr_in a = sin4("203.0.113.1", 1), b = sin4("203.0.113.2", 1);
    struct sockaddr_in6 v6a, v6b;
    const struct sockaddr *sa = (const struct sockaddr *)&a;
    uint64_t now = 100000;
    int i;

    wg_ratelimiter_init(&rl, key);
    for (i = 0; i < WG_RATELIMIT_BURST; i++)
        assert_true(wg_ratelimiter_allow(&rl, now, sa));
    assert_false(wg_ratelimiter_allow(&rl, now, sa));
    /* Another source has its own bucket. */
    assert_true(wg_ratelimiter_allow(&rl, now, (const struct sockaddr *)&b));
    /* Refill: one packet per 50 ms. */
    assert_false(wg_ratelimiter_allow(&rl, now + 49, sa));
    assert_true(wg_ratelimiter_allow(&rl, now + 50, sa));
    assert_false(wg_ratelimiter_allow(&rl, now + 50, sa));
    /* Sustained: 20/s over 10 s, at 25 ms steps half are refused. */
    {
        int ok = 0;

        for (i = 1; i <= 400; i++)
            ok += wg_ratelimiter_allow(&rl, now + 50 + (uint64_t)i * 25, sa);
        assert_in_range(ok, 199, 201);
    }
    /* Idle entries expire and the burst is available again. */
    now += 20000;
    for (i = 0; i < WG_RATELIMIT_BURST; i++)
        assert_true(wg_ratelimiter_allow(&rl, now, sa));

    /* IPv6: one bucket per /64. */
    memset(&v6a, 0, sizeof(v6a));
    v6a.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8:1:2::1", &v6a.sin6_addr);
    v6b = v6a;
    inet_pton(AF_INET6, "2001:db8:1:2::ffff", &v6b.sin6_addr);
    for (i = 0; i < WG_RATELIMIT_BURST; i++)
        assert_true(wg_ratelimiter_allow(&rl, now, (const struct sockaddr *)&v6a));
    assert_false(wg_ratelimiter_allow(&rl, now, (const struct sockaddr *)&v6b));

    assert_false(wg_ratelimiter_allow(&rl, now, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mac_and_cookie),
        cmocka_unit_test(test_ratelimiter),
    };

    assert_int_equal(wg_crypto_init(), NB_OK);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
