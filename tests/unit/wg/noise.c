/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * Noise handshake and transport between two in-memory locals with stub upcalls (after OpenBSD's
 * noise_handshake_test): full handshake, every ciphertext byte flipped, replay, flood,
 * state-machine misuse, key confirmation, PSK mismatch, expiry and rekey signals.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "platform/err.h"
#include "wg/noise.h"

struct side {
    struct wg_noise_local local;
    struct wg_noise_remote remote; /* the other side */
    uint32_t next_index;
    unsigned live_indices;
};

static uint64_t clock_ms = 1000;
static int64_t wall_ms = 0;
static unsigned rnd_ctr;

static uint64_t s_now(void *ctx)
{
    return clock_ms;
}

static void s_wall(void *ctx, struct timespec *ts)
{
    int64_t ms = (int64_t)1767225600000 + (int64_t)clock_ms + wall_ms;

    ts->tv_sec = (time_t)(ms / 1000);
    ts->tv_nsec = (long)(ms % 1000) * 1000000L;
}

static void s_random(void *ctx, void *buf, size_t n)
{
    uint8_t seed[randombytes_SEEDBYTES] = {0};

    memcpy(seed, &rnd_ctr, sizeof(rnd_ctr));
    rnd_ctr++;
    randombytes_buf_deterministic(buf, n, seed);
}

static struct wg_noise_remote *s_lookup(void *ctx, const uint8_t pub[WG_KEY_LEN])
{
    struct side *s = ctx;

    return memcmp(s->remote.pub, pub, WG_KEY_LEN) == 0 ? &s->remote : NULL;
}

static int s_index_set(void *ctx, struct wg_noise_remote *r, uint32_t *idx)
{
    struct side *s = ctx;

    *idx = ++s->next_index;
    s->live_indices++;
    return NB_OK;
}

static void s_index_drop(void *ctx, uint32_t idx)
{
    struct side *s = ctx;

    s->live_indices--;
}

static struct side A, B;

static void side_init(struct side *s, uint8_t keybyte, const struct side *peer_keys_from,
                      uint32_t index_base)
{
    struct wg_noise_ops ops = {
        .ctx = s,
        .now_ms = s_now,
        .wall = s_wall,
        .random = s_random,
        .remote_lookup = s_lookup,
        .index_set = s_index_set,
        .index_drop = s_index_drop,
    };
    uint8_t priv[32];

    memset(s, 0, sizeof(*s));
    memset(priv, keybyte, sizeof(priv));
    wg_noise_local_init(&s->local, &ops);
    assert_int_equal(wg_noise_local_set_private(&s->local, priv), NB_OK);
    s->next_index = index_base;
}

static int setup(void **state)
{
    clock_ms = 1000;
    wall_ms = 0;
    side_init(&A, 0x11, NULL, 0x1000);
    side_init(&B, 0x22, NULL, 0x2000);
    wg_noise_remote_init(&A.remote, &A.local, B.local.pub);
    wg_noise_remote_init(&B.remote, &B.local, A.local.pub);
    return 0;
}

static int teardown(void **state)
{
    wg_noise_remote_deinit(&A.remote);
    wg_noise_remote_deinit(&B.remote);
    /* Every index handed out was returned. */
    assert_int_equal(A.live_indices, 0);
    assert_int_equal(B.live_indices, 0);
    wg_noise_local_deinit(&A.local);
    wg_noise_local_deinit(&B.local);
    return 0;
}

struct init_msg {
    uint32_t s_idx;
    uint8_t ue[32], es[48], ets[28];
};

struct resp_msg {
    uint32_t s_idx, r_idx;
    uint8_t ue[32], en[16];
};

static void create_init(struct side *from, struct init_msg *m)
{
    assert_int_equal(wg_noise_create_initiation(&from->remote, &m->s_idx, m->ue, m->es, m->ets),
                     NB_OK);
}

static int consume_init(struct side *to, const struct init_msg *m)
{
    struct wg_noise_remote *r = NULL;
    int err = wg_noise_consume_initiation(&to->local, &r, m->s_idx, m->ue, m->es, m->ets);

    if (err == NB_OK)
        assert_ptr_equal(r, &to->remote);
    return err;
}

/* A initiates, B responds; both derive keys. */
static void handshake(struct side *i, struct side *r)
{
    struct init_msg im;
    struct resp_msg rm;

    create_init(i, &im);
    assert_int_equal(consume_init(r, &im), NB_OK);
    assert_int_equal(wg_noise_create_response(&r->remote, &rm.s_idx, &rm.r_idx, rm.ue, rm.en),
                     NB_OK);
    assert_int_equal(rm.r_idx, im.s_idx);
    assert_int_equal(wg_noise_begin_session(&r->remote), NB_OK);
    assert_int_equal(wg_noise_consume_response(&i->remote, rm.s_idx, rm.r_idx, rm.ue, rm.en),
                     NB_OK);
    assert_int_equal(wg_noise_begin_session(&i->remote), NB_OK);
}

/* Encrypts `len` bytes of `fill` from `from` and decrypts at `to`. Returns decrypt status. */
static int transport(struct side *from, struct side *to, size_t len, uint8_t fill, unsigned *flags)
{
    uint8_t buf[256];
    uint32_t idx;
    uint64_t nonce;
    int err;

    memset(buf, fill, len);
    err = wg_noise_encrypt(&from->remote, &idx, &nonce, buf, len);
    if (err != NB_OK && err != NB_E_STALE)
        return err;
    err = wg_noise_decrypt(&to->remote, idx, nonce, buf, len + 16, flags);
    if (err == NB_OK) {
        for (size_t i = 0; i < len; i++)
            assert_int_equal(buf[i], fill);
    }
    return err;
}

static void test_handshake_and_transport(void **state)
{
    unsigned flags;
    uint32_t idx;
    uint64_t nonce;
    uint8_t buf[64];

    handshake(&A, &B);
    /* Responder may not send before confirmation. */
    assert_null(B.remote.current);
    assert_non_null(B.remote.next);
    assert_false(wg_noise_remote_ready(&B.remote));
    assert_int_equal(wg_noise_encrypt(&B.remote, &idx, &nonce, buf, 16), NB_E_EXPIRED);
    /* Initiator can; the first packet confirms. */
    assert_int_equal(transport(&A, &B, 0, 0, &flags), NB_OK);
    assert_true(flags & WG_NOISE_RX_CONFIRMED);
    assert_non_null(B.remote.current);
    assert_null(B.remote.next);
    assert_int_equal(transport(&B, &A, 100, 0x5a, &flags), NB_OK);
    assert_int_equal(flags, 0);
    assert_int_equal(transport(&A, &B, 100, 0xa5, &flags), NB_OK);
    assert_int_equal(flags, 0);
}

/* Flip every byte of every field of the initiation: each copy must fail, the original pass. */
static void test_initiation_flips(void **state)
{
    struct init_msg im, bad;
    uint8_t *fields[] = {bad.ue, bad.es, bad.ets};
    size_t lens[] = {32, 48, 28};
    struct wg_noise_handshake before;

    create_init(&A, &im);
    before = B.remote.hs;
    for (size_t f = 0; f < 3; f++) {
        for (size_t i = 0; i < lens[f]; i++) {
            bad = im;
            fields[f][i] ^= 0xff;
            assert_int_not_equal(consume_init(&B, &bad), NB_OK);
            /* Nothing committed on failure. */
            assert_memory_equal(&B.remote.hs, &before, sizeof(before));
        }
    }
    assert_int_equal(consume_init(&B, &im), NB_OK);
    /* Replay of the same initiation: the timestamp is not newer. */
    clock_ms += 1000;
    assert_int_equal(consume_init(&B, &im), NB_E_REPLAY);
}

static void test_response_flips(void **state)
{
    struct init_msg im;
    struct resp_msg rm, bad;
    uint8_t *fields[] = {bad.ue, bad.en};
    size_t lens[] = {32, 16};

    create_init(&A, &im);
    assert_int_equal(consume_init(&B, &im), NB_OK);
    assert_int_equal(wg_noise_create_response(&B.remote, &rm.s_idx, &rm.r_idx, rm.ue, rm.en),
                     NB_OK);
    for (size_t f = 0; f < 2; f++) {
        for (size_t i = 0; i < lens[f]; i++) {
            bad = rm;
            fields[f][i] ^= 0xff;
            assert_int_not_equal(
                wg_noise_consume_response(&A.remote, bad.s_idx, bad.r_idx, bad.ue, bad.en), NB_OK);
            assert_int_equal(A.remote.hs.state, WG_NOISE_HS_CREATED_INITIATION);
        }
    }
    /* Wrong receiver index. */
    assert_int_equal(wg_noise_consume_response(&A.remote, rm.s_idx, rm.r_idx + 1, rm.ue, rm.en),
                     NB_E_DROP);
    assert_int_equal(wg_noise_consume_response(&A.remote, rm.s_idx, rm.r_idx, rm.ue, rm.en), NB_OK);
    /* Consumed once; a second time is a state error. */
    assert_int_equal(wg_noise_consume_response(&A.remote, rm.s_idx, rm.r_idx, rm.ue, rm.en),
                     NB_E_DROP);
    assert_int_equal(wg_noise_begin_session(&B.remote), NB_OK);
    assert_int_equal(wg_noise_begin_session(&A.remote), NB_OK);
}

static void test_transport_flips_and_replay(void **state)
{
    uint8_t pkt[64 + 16], bad[sizeof(pkt)];
    uint32_t idx;
    uint64_t nonce;
    unsigned flags;

    handshake(&A, &B);
    memset(pkt, 0x42, 64);
    assert_int_equal(wg_noise_encrypt(&A.remote, &idx, &nonce, pkt, 64), NB_OK);
    for (size_t i = 0; i < sizeof(pkt); i++) {
        memcpy(bad, pkt, sizeof(pkt));
        bad[i] ^= 0x01;
        assert_int_equal(wg_noise_decrypt(&B.remote, idx, nonce, bad, sizeof(bad), &flags),
                         NB_E_DROP);
    }
    /* Wrong nonce, wrong index. */
    memcpy(bad, pkt, sizeof(pkt));
    assert_int_equal(wg_noise_decrypt(&B.remote, idx, nonce + 1, bad, sizeof(bad), &flags),
                     NB_E_DROP);
    assert_int_equal(wg_noise_decrypt(&B.remote, idx + 77, nonce, bad, sizeof(bad), &flags),
                     NB_E_DROP);
    /* The forgeries did not confirm the session. */
    assert_non_null(B.remote.next);
    memcpy(bad, pkt, sizeof(pkt));
    assert_int_equal(wg_noise_decrypt(&B.remote, idx, nonce, bad, sizeof(bad), &flags), NB_OK);
    memcpy(bad, pkt, sizeof(pkt));
    assert_int_equal(wg_noise_decrypt(&B.remote, idx, nonce, bad, sizeof(bad), &flags),
                     NB_E_REPLAY);
}

static void test_flood_guard(void **state)
{
    struct init_msg m1, m2, m3;

    create_init(&A, &m1);
    assert_int_equal(consume_init(&B, &m1), NB_OK);
    /* A newer timestamp, but only 10 ms later on B's clock: flood. */
    wall_ms += 1000;
    clock_ms += 10;
    create_init(&A, &m2);
    assert_int_equal(consume_init(&B, &m2), NB_E_DROP);
    /* 20 ms after the last accepted one is fine. */
    clock_ms += 10;
    create_init(&A, &m3);
    assert_int_equal(consume_init(&B, &m3), NB_OK);
}

static void test_state_machine(void **state)
{
    struct resp_msg rm;

    /* Response without a consumed initiation; session without a handshake. */
    assert_int_equal(wg_noise_create_response(&B.remote, &rm.s_idx, &rm.r_idx, rm.ue, rm.en),
                     NB_E_INVAL);
    assert_int_equal(wg_noise_begin_session(&A.remote), NB_E_INVAL);
    assert_int_equal(wg_noise_consume_response(&A.remote, 1, 1, rm.ue, rm.en), NB_E_DROP);
    /* No identity: nothing works. */
    wg_noise_local_set_private(&A.local, NULL);
    {
        struct init_msg im;

        assert_int_equal(wg_noise_create_initiation(&A.remote, &im.s_idx, im.ue, im.es, im.ets),
                         NB_E_INVAL);
    }
}

static void test_psk(void **state)
{
    uint8_t psk1[32], psk2[32];
    struct init_msg im;
    struct resp_msg rm;
    unsigned flags;

    memset(psk1, 1, 32);
    memset(psk2, 2, 32);
    /* Matching PSK works. */
    wg_noise_remote_set_psk(&A.remote, psk1);
    wg_noise_remote_set_psk(&B.remote, psk1);
    handshake(&A, &B);
    assert_int_equal(transport(&A, &B, 16, 1, &flags), NB_OK);

    /* Mismatch: the initiation still authenticates (PSK enters at the response) but A rejects
     * the response. */
    wg_noise_remote_set_psk(&B.remote, psk2);
    clock_ms += 1000;
    create_init(&A, &im);
    assert_int_equal(consume_init(&B, &im), NB_OK);
    assert_int_equal(wg_noise_create_response(&B.remote, &rm.s_idx, &rm.r_idx, rm.ue, rm.en),
                     NB_OK);
    assert_int_equal(wg_noise_consume_response(&A.remote, rm.s_idx, rm.r_idx, rm.ue, rm.en),
                     NB_E_DROP);
    /* PSK on one side only is a mismatch too. */
    wg_noise_remote_handshake_clear(&B.remote);
    wg_noise_remote_set_psk(&B.remote, NULL);
    clock_ms += 1000;
    create_init(&A, &im);
    assert_int_equal(consume_init(&B, &im), NB_OK);
    assert_int_equal(wg_noise_create_response(&B.remote, &rm.s_idx, &rm.r_idx, rm.ue, rm.en),
                     NB_OK);
    assert_int_equal(wg_noise_consume_response(&A.remote, rm.s_idx, rm.r_idx, rm.ue, rm.en),
                     NB_E_DROP);
}

static void test_unknown_and_wrong_keys(void **state)
{
    struct init_msg im;
    uint8_t other[32];

    /* B knows a different public key for its peer: A's initiation is from an unknown key. */
    memset(other, 0x33, 32);
    wg_crypto_pubkey(other, other);
    memcpy(B.remote.pub, other, 32);
    create_init(&A, &im);
    assert_int_equal(consume_init(&B, &im), NB_E_DROP);
    /* A uses the wrong responder key: B cannot even decrypt the static. */
    memcpy(B.remote.pub, A.local.pub, 32);
    memcpy(A.remote.pub, other, 32);
    clock_ms += 1000;
    create_init(&A, &im);
    assert_int_equal(consume_init(&B, &im), NB_E_DROP);
}

static void test_expiry_and_rekey(void **state)
{
    unsigned flags;

    handshake(&A, &B);
    assert_int_equal(transport(&A, &B, 0, 0, &flags), NB_OK);
    /* 120 s: initiator's encrypt reports STALE (but still encrypts); responder's does not. */
    clock_ms += WG_REKEY_AFTER_TIME_MS;
    {
        uint8_t buf[32];
        uint32_t idx;
        uint64_t nonce;

        assert_int_equal(wg_noise_encrypt(&A.remote, &idx, &nonce, buf, 16), NB_E_STALE);
        assert_int_equal(wg_noise_encrypt(&B.remote, &idx, &nonce, buf, 16), NB_OK);
    }
    /* 165 s: receiving on the initiator asks for a rekey. */
    clock_ms += 45000;
    assert_int_equal(transport(&B, &A, 16, 3, &flags), NB_OK);
    assert_true(flags & WG_NOISE_RX_REKEY);
    /* 180 s: keys refused both ways. */
    clock_ms += 15000;
    assert_int_equal(transport(&A, &B, 16, 3, &flags), NB_E_EXPIRED);
    assert_false(wg_noise_remote_ready(&A.remote));
    /* Counter exhaustion (fresh session; the clock only moves forward). */
    clock_ms += 1000;
    handshake(&A, &B);
    A.remote.current->send_counter = WG_REJECT_AFTER_MESSAGES;
    assert_int_equal(transport(&A, &B, 16, 3, &flags), NB_E_EXPIRED);
    A.remote.current->send_counter = WG_REKEY_AFTER_MESSAGES;
    assert_int_equal(transport(&A, &B, 16, 3, &flags), NB_OK);
}

/* Keypair rotation keeps previous for in-flight packets, and clear wipes everything. */
static void test_rotation_and_clear(void **state)
{
    unsigned flags;
    uint8_t old[48];
    uint32_t idx;
    uint64_t nonce;

    handshake(&A, &B);
    assert_int_equal(transport(&A, &B, 0, 0, &flags), NB_OK);
    /* A packet encrypted under the first session, delivered after the second handshake. */
    memset(old, 7, 32);
    assert_int_equal(wg_noise_encrypt(&A.remote, &idx, &nonce, old, 32), NB_OK);
    clock_ms += 1000;
    handshake(&B, &A); /* roles swap */
    assert_int_equal(transport(&B, &A, 0, 0, &flags), NB_OK);
    assert_true(flags & WG_NOISE_RX_CONFIRMED);
    assert_non_null(B.remote.previous);
    assert_int_equal(wg_noise_decrypt(&B.remote, idx, nonce, old, 48, &flags), NB_OK);

    wg_noise_remote_clear(&A.remote);
    assert_null(A.remote.current);
    assert_null(A.remote.previous);
    assert_true(sodium_is_zero((const uint8_t *)A.remote.kp, sizeof(A.remote.kp)));
    assert_true(sodium_is_zero((const uint8_t *)&A.remote.hs, sizeof(A.remote.hs)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handshake_and_transport, setup, teardown),
        cmocka_unit_test_setup_teardown(test_initiation_flips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_flips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_flips_and_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flood_guard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_machine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_psk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_wrong_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_and_rekey, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_and_clear, setup, teardown),
    };

    assert_int_equal(wg_crypto_init(), NB_OK);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
