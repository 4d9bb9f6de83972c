/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * Two in-memory devices wired to each other (harness.h): handshakes either way, data both ways,
 * byte-flip rejection on the wire, replays, key confirmation, PSK and key mismatches, the inner
 * source check, the timers of whitepaper §6 on a fake clock, cookies under load, roaming and
 * malformed input. Set WG_WRITE_SEEDS=<dir> to dump real messages as fuzz seeds.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "harness.h"

static struct tworld W;

static int setup(void **state)
{
    t_world_init(&W, NULL, NULL);
    return 0;
}

static int teardown(void **state)
{
    t_world_free(&W);
    return 0;
}

static struct wg_device_stats stats(struct tnode *n)
{
    struct wg_device_stats s;

    wg_device_stats(n->dev, &s);
    return s;
}

/* Establishes a session with `i` as initiator and confirms it (i's first data reaches r). */
static void establish(struct tnode *i)
{
    struct tnode *r = t_other(&W, i);
    size_t before = r->nrx;

    assert_int_equal(t_send_ip(&W, i, 32, 0x11), NB_E_AGAIN);
    t_pump(&W);
    assert_int_equal(r->nrx, before + 1);
    assert_true(wg_device_peer_has_session(i->peer));
    assert_true(wg_device_peer_has_session(r->peer));
}

static void test_handshake_a_initiates(void **state)
{
    struct tpkt p;

    assert_int_equal(t_send_ip(&W, &W.a, 100, 0xab), NB_E_AGAIN);
    assert_int_equal(W.a.nout, 1);
    assert_int_equal(t_type(&W.a.out[0]), WG_MSG_INITIATION);
    assert_int_equal(W.a.out[0].len, WG_MSG_INITIATION_LEN);
    t_pump(&W);
    /* The staged packet arrived at B intact, from peer A. */
    assert_int_equal(W.b.nrx, 1);
    assert_int_equal(W.b.rx_len, 120);
    assert_ptr_equal(W.b.rx_from, W.b.peer);
    assert_int_equal(W.b.rx[20], 0xab);
    assert_int_equal(W.b.rx[119], 0xab);
    /* B answers straight away, A receives. */
    assert_int_equal(t_send_ip(&W, &W.b, 7, 0xcd), NB_OK);
    assert_int_equal(W.b.nout, 1);
    p = W.b.out[0];
    assert_int_equal(t_type(&p), WG_MSG_DATA);
    /* 27-byte packet padded to 32, plus header and tag. */
    assert_int_equal(p.len, 16 + 32 + 16);
    t_pump(&W);
    assert_int_equal(W.a.nrx, 1);
    assert_int_equal(W.a.rx_len, 27);
    assert_int_equal(stats(&W.a).rx_handshake_resp, 1);
    assert_int_equal(stats(&W.b).rx_handshake_init, 1);
    {
        struct wg_peer_stats ps;

        wg_device_peer_stats(W.a.peer, &ps);
        assert_int_equal(ps.handshakes, 1);
        assert_int_not_equal(ps.last_handshake.tv_sec, 0);
    }
}

static void test_handshake_b_initiates(void **state)
{
    establish(&W.b);
    assert_int_equal(t_send_ip(&W, &W.a, 10, 1), NB_OK);
    t_pump(&W);
    assert_int_equal(W.b.nrx, 1);
    assert_int_equal(stats(&W.a).rx_handshake_init, 1);
    /* Many packets both ways. */
    for (int i = 0; i < 200; i++) {
        assert_int_equal(t_send_ip(&W, &W.a, (size_t)i, (uint8_t)i), NB_OK);
        assert_int_equal(t_send_ip(&W, &W.b, (size_t)i * 7, (uint8_t)i), NB_OK);
        t_pump(&W);
    }
    assert_int_equal(W.a.nrx, 201);
    assert_int_equal(W.b.nrx, 201);
    assert_int_equal(W.a.rx_len, 20 + 199 * 7);
}

static void test_responder_waits_for_confirmation(void **state)
{
    struct tpkt init, resp;

    assert_int_equal(wg_device_peer_initiate(W.a.peer), NB_OK);
    assert_true(t_pop(&W.a, &init));
    assert_int_equal(t_input(&W.b, &W.a.addr, init.buf, init.len), NB_OK);
    assert_true(t_pop(&W.b, &resp));
    assert_int_equal(t_type(&resp), WG_MSG_RESPONSE);
    /* B has keys but must not use them: its packet is staged, nothing goes on the wire. */
    assert_false(wg_device_peer_has_session(W.b.peer));
    assert_int_equal(t_send_ip(&W, &W.b, 40, 0x77), NB_E_AGAIN);
    assert_int_equal(W.b.nout, 0);
    assert_int_equal(W.b.peer->staged_count, 1);
    /* A consumes the response and confirms with a keepalive; B then flushes its staged packet. */
    assert_int_equal(t_input(&W.a, &W.b.addr, resp.buf, resp.len), NB_OK);
    assert_int_equal(W.a.nout, 1);
    assert_int_equal(W.a.out[0].len, WG_MSG_DATA_MIN_LEN); /* keepalive */
    t_pump(&W);
    assert_int_equal(stats(&W.b).rx_keepalives, 1);
    assert_int_equal(W.b.peer->staged_count, 0);
    assert_int_equal(W.a.nrx, 1);
    assert_int_equal(W.a.rx[20], 0x77);
}

/* Every byte of a captured message flipped: rejected, nothing sent back, state unchanged. */
static void flip_all(struct tnode *to, const struct sockaddr_in *from, const struct tpkt *p,
                     size_t skip_from, size_t skip_to)
{
    for (size_t i = 0; i < p->len; i++) {
        struct tpkt bad = *p;
        size_t nrx = to->nrx;

        if (i >= skip_from && i < skip_to)
            continue;
        bad.buf[i] ^= 0x04;
        assert_int_not_equal(t_input(to, from, bad.buf, bad.len), NB_OK);
        assert_int_equal(to->nout, 0);
        assert_int_equal(to->nrx, nrx);
    }
}

static void test_flip_initiation(void **state)
{
    struct tpkt init;
    struct wg_device_stats s;

    wg_device_peer_initiate(W.a.peer);
    assert_true(t_pop(&W.a, &init));
    /* MAC2 (last 16 bytes) is only checked under load; see test_flip_mac2_under_load. */
    flip_all(&W.b, &W.a.addr, &init, WG_MSG_INITIATION_LEN - 16, WG_MSG_INITIATION_LEN);
    s = stats(&W.b);
    assert_int_equal(s.drop_bad_type, 4); /* type byte + 3 reserved bytes */
    assert_int_equal(s.drop_bad_mac, WG_MSG_INITIATION_LEN - 16 - 4);
    assert_int_equal(t_input(&W.b, &W.a.addr, init.buf, init.len), NB_OK);
    /* Replay of the accepted initiation: rejected by its timestamp. */
    W.now += 1000;
    W.b.nout = 0;
    assert_int_equal(t_input(&W.b, &W.a.addr, init.buf, init.len), NB_E_REPLAY);
    assert_int_equal(stats(&W.b).drop_replay, 1);
    assert_int_equal(W.b.nout, 0);
}

static void test_rekey_after_time_override(void **state)
{
    /* The test knob (NB_PROXY_WG_REKEY_AFTER_TIME) moves the initiator's rekey point, nothing
     * else: below it no initiation, at it one (never more often than REKEY_TIMEOUT). */
    struct wg_device_params p = {.rekey_after_time_ms = 6000}; /* > REKEY_TIMEOUT */
    uint64_t t0;

    t_world_free(&W);
    t_world_init(&W, &p, &p);
    establish(&W.a);
    t0 = W.now;
    t_run_until(&W, t0 + 5900, 1);
    assert_int_equal(t_send_ip(&W, &W.a, 10, 1), NB_OK);
    assert_int_equal(W.a.nout, 1);
    t_pump(&W);
    t_run_until(&W, t0 + 6001, 1);
    assert_int_equal(t_send_ip(&W, &W.a, 10, 1), NB_OK);
    assert_int_equal(W.a.nout, 2);
    assert_int_equal(t_type(&W.a.out[1]), WG_MSG_INITIATION);
}

static void test_private_key_equal_to_peer_drops_peer(void **state)
{
    /* Taking the private key whose public key is a configured peer's removes that peer. */
    assert_non_null(wg_device_peer_lookup(W.a.dev, W.b.pub));
    assert_int_equal(wg_device_set_private_key(W.a.dev, W.b.priv), NB_OK);
    assert_null(wg_device_peer_lookup(W.a.dev, W.b.pub));
    W.a.peer = NULL;
}

static void test_flip_mac2_under_load(void **state)
{
    struct wg_device_params p = {.under_load_always = true};
    struct tpkt init;

    t_world_free(&W);
    t_world_init(&W, NULL, &p);
    /* Get a cookie first so the initiation carries a real MAC2. */
    wg_device_peer_initiate(W.a.peer);
    t_pump(&W);
    assert_int_equal(stats(&W.a).cookie_received, 1);
    W.now += WG_REKEY_TIMEOUT_MS;
    wg_device_peer_initiate(W.a.peer);
    assert_true(t_pop(&W.a, &init));
    for (size_t i = WG_MSG_INITIATION_LEN - 16; i < WG_MSG_INITIATION_LEN; i++) {
        struct tpkt bad = init;

        bad.buf[i] ^= 0x10;
        assert_int_equal(t_input(&W.b, &W.a.addr, bad.buf, bad.len), NB_E_COOKIE);
        W.b.nout = 0;
    }
    assert_int_equal(t_input(&W.b, &W.a.addr, init.buf, init.len), NB_OK);
}

static void test_flip_response(void **state)
{
    struct tpkt init, resp;

    wg_device_peer_initiate(W.a.peer);
    assert_true(t_pop(&W.a, &init));
    assert_int_equal(t_input(&W.b, &W.a.addr, init.buf, init.len), NB_OK);
    assert_true(t_pop(&W.b, &resp));
    flip_all(&W.a, &W.b.addr, &resp, WG_MSG_RESPONSE_LEN - 16, WG_MSG_RESPONSE_LEN);
    assert_false(wg_device_peer_has_session(W.a.peer));
    assert_int_equal(t_input(&W.a, &W.b.addr, resp.buf, resp.len), NB_OK);
    assert_true(wg_device_peer_has_session(W.a.peer));
    /* A response replayed after use does not match any pending handshake. */
    W.a.nout = 0;
    assert_int_not_equal(t_input(&W.a, &W.b.addr, resp.buf, resp.len), NB_OK);
}

static void test_flip_data_and_replay(void **state)
{
    struct tpkt data;

    establish(&W.a);
    assert_int_equal(t_send_ip(&W, &W.a, 64, 0x3c), NB_OK);
    assert_true(t_pop(&W.a, &data));
    flip_all(&W.b, &W.a.addr, &data, 0, 0);
    assert_int_equal(t_input(&W.b, &W.a.addr, data.buf, data.len), NB_OK);
    assert_int_equal(W.b.nrx, 2);
    /* Counter replay. */
    assert_int_equal(t_input(&W.b, &W.a.addr, data.buf, data.len), NB_E_REPLAY);
    assert_int_equal(stats(&W.b).drop_replay, 1);
    assert_int_equal(W.b.nrx, 2);
    /* Out-of-order within the window is fine. */
    {
        struct tpkt d1, d2;

        t_send_ip(&W, &W.a, 8, 1);
        t_send_ip(&W, &W.a, 8, 2);
        t_pop(&W.a, &d1);
        t_pop(&W.a, &d2);
        assert_int_equal(t_input(&W.b, &W.a.addr, d2.buf, d2.len), NB_OK);
        assert_int_equal(t_input(&W.b, &W.a.addr, d1.buf, d1.len), NB_OK);
    }
}

static void test_psk(void **state)
{
    wg_key k1, k2;

    memset(k1, 1, sizeof(k1));
    memset(k2, 2, sizeof(k2));
    wg_device_peer_set_psk(W.a.peer, k1);
    wg_device_peer_set_psk(W.b.peer, k2);
    assert_int_equal(t_send_ip(&W, &W.a, 10, 1), NB_E_AGAIN);
    t_pump(&W);
    assert_false(wg_device_peer_has_session(W.a.peer));
    assert_int_equal(W.b.nrx, 0);
    assert_int_equal(stats(&W.a).drop_handshake, 1);

    wg_device_peer_set_psk(W.b.peer, k1);
    W.now += WG_REKEY_TIMEOUT_MS;
    wg_device_peer_initiate(W.a.peer);
    t_pump(&W);
    assert_true(wg_device_peer_has_session(W.a.peer));
    assert_int_equal(W.b.nrx, 1); /* the staged packet */
}

static void test_wrong_peer_key(void **state)
{
    wg_key other;

    /* B expects a different key for its peer: A's initiation is from an unknown static key. */
    memset(other, 0x44, sizeof(other));
    wg_crypto_clamp(other);
    wg_crypto_pubkey(other, other);
    wg_device_remove_peer(W.b.dev, W.b.peer);
    W.b.peer = wg_device_add_peer(W.b.dev, other);
    wg_device_peer_initiate(W.a.peer);
    t_pump(&W);
    assert_int_equal(stats(&W.b).drop_handshake, 1);
    assert_false(wg_device_peer_has_session(W.a.peer));

    /* A addresses B with the wrong public key: MAC1 fails at B. */
    wg_device_remove_peer(W.a.dev, W.a.peer);
    W.a.peer = wg_device_add_peer(W.a.dev, other);
    wg_device_peer_set_endpoint(W.a.peer, (struct sockaddr *)&W.b.addr, sizeof(W.b.addr));
    wg_device_peer_initiate(W.a.peer);
    t_pump(&W);
    assert_int_equal(stats(&W.b).drop_bad_mac, 1);
}

static void test_inner_source_check(void **state)
{
    uint8_t pkt[64];
    const uint8_t spoof[4] = {100, 64, 0, 99};
    size_t len;

    establish(&W.a);
    len = t_ip4(pkt, spoof, T_IP_B, 10, 0);
    assert_int_equal(wg_device_output(W.a.dev, pkt, len), NB_OK);
    t_pump(&W);
    assert_int_equal(W.b.nrx, 1); /* only the one from establish() */
    assert_int_equal(stats(&W.b).drop_inner_src, 1);
    /* Garbage inner packet. */
    {
        struct wg_noise_keypair *kp = W.a.peer->remote.current;
        uint8_t buf[16 + 32 + 16] = {0};
        uint32_t idx;
        uint64_t nonce;

        memset(buf + 16, 0x99, 32);
        assert_non_null(kp);
        assert_int_equal(wg_noise_encrypt(&W.a.peer->remote, &idx, &nonce, buf + 16, 32), NB_OK);
        buf[0] = 4;
        memcpy(buf + 4, &idx, 4); /* little-endian host */
        memcpy(buf + 8, &nonce, 8);
        assert_int_equal(t_input(&W.b, &W.a.addr, buf, sizeof(buf)), NB_E_PARSE);
        assert_int_equal(stats(&W.b).drop_inner_bad, 1);
    }
    /* No route on output. */
    len = t_ip4(pkt, T_IP_A, spoof, 10, 0);
    assert_int_equal(wg_device_output(W.a.dev, pkt, len), NB_E_NOTFOUND);
    assert_int_equal(wg_device_output(W.a.dev, pkt, 3), NB_E_PARSE);
}

static void test_malformed(void **state)
{
    uint8_t buf[200];
    struct wg_device_stats s;

    memset(buf, 0, sizeof(buf));
    assert_int_equal(t_input(&W.b, &W.a.addr, buf, 0), NB_E_PARSE);
    assert_int_equal(t_input(&W.b, &W.a.addr, buf, 3), NB_E_PARSE);
    for (uint8_t t = 1; t <= 4; t++) {
        buf[0] = t;
        assert_int_equal(t_input(&W.b, &W.a.addr, buf, 31), NB_E_PARSE);
        if (t != 4) /* 147 bytes is a valid data length */
            assert_int_equal(t_input(&W.b, &W.a.addr, buf, 147), NB_E_PARSE);
    }
    buf[0] = 5;
    assert_int_equal(t_input(&W.b, &W.a.addr, buf, 148), NB_E_PARSE);
    buf[0] = 1;
    buf[1] = 1; /* reserved byte set */
    assert_int_equal(t_input(&W.b, &W.a.addr, buf, 148), NB_E_PARSE);
    buf[1] = 0;
    assert_int_not_equal(t_input(&W.b, &W.a.addr, buf, 148), NB_OK); /* zero MAC1 */
    buf[0] = 4;
    assert_int_equal(t_input(&W.b, &W.a.addr, buf, 64), NB_E_DROP); /* unknown index */
    buf[0] = 3;
    assert_int_equal(t_input(&W.b, &W.a.addr, buf, 64), NB_E_DROP);
    s = stats(&W.b);
    assert_int_equal(s.drop_bad_size, 9);
    assert_int_equal(s.drop_bad_type, 2);
    assert_int_equal(s.drop_no_session, 2);
    assert_int_equal(W.b.nout, 0);
}

/* ---- timers ---- */

static void test_retransmit_and_give_up(void **state)
{
    uint64_t t0, last, times[64];
    size_t n = 0, i;

    assert_int_equal(t_send_ip(&W, &W.a, 10, 1), NB_E_AGAIN);
    t0 = W.now;
    times[n++] = W.now;
    t_drop_all(&W);
    /* Nobody answers. Record every initiation A sends. */
    while (W.now < t0 + 200000) {
        uint64_t next = wg_device_next_deadline(W.a.dev);

        if (!next || next > t0 + 200000)
            break;
        W.now = next;
        wg_device_timers(W.a.dev);
        for (i = 0; i < W.a.nout; i++)
            if (t_type(&W.a.out[i]) == WG_MSG_INITIATION && n < 64)
                times[n++] = W.now;
        W.a.nout = 0;
        if (W.a.peer->staged_count == 0)
            break;
    }
    /* 1 initiation + 18 retransmissions, each REKEY_TIMEOUT + jitter (0..333 ms) apart. */
    assert_int_equal(n, 1 + WG_MAX_TIMER_HANDSHAKES);
    for (i = 1; i < n; i++) {
        uint64_t gap = times[i] - times[i - 1];

        assert_in_range(gap, WG_REKEY_TIMEOUT_MS, WG_REKEY_TIMEOUT_MS + 333);
    }
    /*
     * Gave up once REKEY_ATTEMPT_TIME of retransmissions went unanswered (18 retransmissions,
     * then one more timeout), dropping the staged packet.
     */
    last = W.now;
    assert_in_range(last - t0, (WG_MAX_TIMER_HANDSHAKES + 1) * WG_REKEY_TIMEOUT_MS,
                    (WG_MAX_TIMER_HANDSHAKES + 1) * (WG_REKEY_TIMEOUT_MS + 333));
    assert_int_equal(W.a.peer->staged_count, 0);
    assert_int_equal(stats(&W.a).drop_staged, 1);
    /* And stays quiet afterwards (only the zero-keys timer remains). */
    t_run_until(&W, last + 60000, 0);
    assert_int_equal(W.a.nout, 0);
}

static void test_passive_keepalive(void **state)
{
    uint64_t t0;
    size_t sent_a;

    establish(&W.a);
    t0 = W.now;
    sent_a = W.a.nsent_total;
    /* B received data and has sent nothing: keepalive after KEEPALIVE_TIMEOUT. */
    t_run_until(&W, t0 + WG_KEEPALIVE_TIMEOUT_MS - 1, 1);
    assert_int_equal(stats(&W.b).tx_keepalives, 0);
    t_run_until(&W, t0 + WG_KEEPALIVE_TIMEOUT_MS, 1);
    assert_int_equal(stats(&W.b).tx_keepalives, 1);
    assert_int_equal(stats(&W.a).rx_keepalives, 1);
    /* The keepalive counts as a reply: A does not start a new handshake. */
    t_run_until(&W, t0 + 30000, 1);
    assert_int_equal(W.a.nsent_total, sent_a);
    assert_int_equal(stats(&W.b).tx_keepalives, 1);
}

static void test_new_handshake_when_unanswered(void **state)
{
    uint64_t t0;
    size_t i, inits = 0;

    establish(&W.a);
    t0 = W.now;
    /* Black-hole the network: A sent data and hears nothing back. */
    t_run_until(&W, t0 + WG_KEEPALIVE_TIMEOUT_MS + WG_REKEY_TIMEOUT_MS - 1, 0);
    for (i = 0; i < W.a.nout; i++)
        inits += t_type(&W.a.out[i]) == WG_MSG_INITIATION;
    assert_int_equal(inits, 0);
    t_run_until(&W, t0 + WG_KEEPALIVE_TIMEOUT_MS + WG_REKEY_TIMEOUT_MS + 334, 0);
    for (i = 0; i < W.a.nout; i++)
        inits += t_type(&W.a.out[i]) == WG_MSG_INITIATION;
    assert_int_equal(inits, 1);
}

static void test_persistent_keepalive(void **state)
{
    uint64_t t0;

    establish(&W.a);
    t_run_until(&W, W.now + 20000, 1); /* let the passive keepalive settle */
    wg_device_peer_set_keepalive(W.a.peer, 25);
    t0 = W.now;
    /* Stay below REKEY_AFTER_TIME (a rekey would add a confirmation keepalive). */
    t_run_until(&W, t0 + 90000, 1);
    /* Exactly one keepalive per 25 s of silence (t0 + 25, 50, 75 s). */
    assert_int_equal(stats(&W.a).tx_keepalives, 3);
    assert_int_equal(stats(&W.b).rx_keepalives, 3);
    assert_int_equal(stats(&W.a).rx_keepalives, 1); /* B's passive one, before t0 */
    assert_int_equal(W.a.peer->t.persistent, t0 + 100000);
    wg_device_peer_set_keepalive(W.a.peer, 0);
    assert_int_equal(W.a.peer->t.persistent, 0);
    /* A persistent keepalive without a session starts a handshake. */
    t_world_free(&W);
    t_world_init(&W, NULL, NULL);
    wg_device_peer_set_keepalive(W.a.peer, 25);
    t_run_until(&W, W.now + 25000, 0);
    assert_int_equal(W.a.nout, 1);
    assert_int_equal(t_type(&W.a.out[0]), WG_MSG_INITIATION);
}

static void test_rekey_after_time(void **state)
{
    struct wg_peer_stats ps;
    uint64_t t0;

    establish(&W.a);
    t0 = W.now;
    t_run_until(&W, t0 + 30000, 1);
    /* Before REKEY_AFTER_TIME: no new handshake on send. */
    assert_int_equal(t_send_ip(&W, &W.a, 10, 1), NB_OK);
    assert_int_equal(W.a.nout, 1);
    t_pump(&W);
    t_run_until(&W, t0 + WG_REKEY_AFTER_TIME_MS + 1, 1);
    /* The responder does not rekey on time. */
    assert_int_equal(t_send_ip(&W, &W.b, 10, 1), NB_OK);
    assert_int_equal(W.b.nout, 1);
    t_pump(&W);
    /* The initiator does: the packet goes out, then an initiation. */
    assert_int_equal(t_send_ip(&W, &W.a, 10, 1), NB_OK);
    assert_int_equal(W.a.nout, 2);
    assert_int_equal(t_type(&W.a.out[0]), WG_MSG_DATA);
    assert_int_equal(t_type(&W.a.out[1]), WG_MSG_INITIATION);
    t_pump(&W);
    wg_device_peer_stats(W.a.peer, &ps);
    assert_int_equal(ps.handshakes, 2);
    assert_int_equal(t_send_ip(&W, &W.b, 10, 2), NB_OK);
    t_pump(&W);
    assert_int_equal(W.a.rx[20], 2);
}

static void test_reject_after_time(void **state)
{
    struct tpkt old;
    uint64_t t0;

    establish(&W.a);
    t0 = W.now;
    assert_int_equal(t_send_ip(&W, &W.a, 10, 1), NB_OK);
    assert_true(t_pop(&W.a, &old));
    /* The network is dead from here on. */
    t_run_until(&W, t0 + WG_REJECT_AFTER_TIME_MS, 0);
    t_drop_all(&W);
    assert_int_equal(t_input(&W.b, &W.a.addr, old.buf, old.len), NB_E_EXPIRED);
    assert_int_equal(stats(&W.b).drop_expired, 1);
    assert_false(wg_device_peer_has_session(W.a.peer));
    /* Output is staged behind a new handshake instead of using the old keys. */
    assert_int_equal(t_send_ip(&W, &W.a, 10, 1), NB_E_AGAIN);
}

static void test_zero_keys(void **state)
{
    uint64_t t0;

    establish(&W.a);
    t0 = W.now;
    t_run_until(&W, t0 + 3 * WG_REJECT_AFTER_TIME_MS - 1000, 0);
    assert_true(W.a.peer->remote.kp[0].live || W.a.peer->remote.kp[1].live ||
                W.a.peer->remote.kp[2].live);
    t_run_until(&W, t0 + 3 * WG_REJECT_AFTER_TIME_MS + 1, 0);
    for (int i = 0; i < 3; i++) {
        assert_false(W.a.peer->remote.kp[i].live);
        assert_false(W.b.peer->remote.kp[i].live);
    }
    assert_true(sodium_is_zero((const uint8_t *)W.a.peer->remote.kp, sizeof(W.a.peer->remote.kp)));
    assert_true(sodium_is_zero((const uint8_t *)W.b.peer->remote.kp, sizeof(W.b.peer->remote.kp)));
    assert_null(W.a.peer->remote.current);
}

static void test_cookie_under_load(void **state)
{
    struct wg_device_params p = {.under_load_always = true};
    struct tpkt pk;

    t_world_free(&W);
    t_world_init(&W, NULL, &p);
    assert_int_equal(t_send_ip(&W, &W.a, 10, 9), NB_E_AGAIN);
    /* B answers the MAC2-less initiation with a cookie reply, not a response. */
    assert_true(t_pop(&W.a, &pk));
    assert_int_equal(t_input(&W.b, &W.a.addr, pk.buf, pk.len), NB_E_COOKIE);
    assert_int_equal(W.b.nout, 1);
    assert_int_equal(t_type(&W.b.out[0]), WG_MSG_COOKIE);
    assert_int_equal(W.b.out[0].len, WG_MSG_COOKIE_LEN);
    assert_int_equal(stats(&W.b).cookie_sent, 1);
    t_pump(&W);
    assert_int_equal(stats(&W.a).cookie_received, 1);
    assert_false(wg_device_peer_has_session(W.a.peer));
    /* The retransmission carries MAC2 and is accepted. */
    t_run_until(&W, W.now + WG_REKEY_TIMEOUT_MS + 334, 1);
    assert_true(wg_device_peer_has_session(W.a.peer));
    assert_int_equal(W.b.nrx, 1);
    assert_int_equal(stats(&W.b).cookie_sent, 1);
}

static void test_under_load_threshold(void **state)
{
    struct wg_device_params p = {.under_load_threshold = 3};
    struct tpkt pk;
    int cookies = 0;

    t_world_free(&W);
    t_world_init(&W, NULL, &p);
    /* Within one second: the first three handshake messages are fine, then cookies. */
    for (int i = 0; i < 6; i++) {
        W.a.peer->has_sent_handshake = false;
        W.now += 30;
        wg_device_peer_initiate(W.a.peer);
        assert_true(t_pop(&W.a, &pk));
        cookies += t_input(&W.b, &W.a.addr, pk.buf, pk.len) == NB_E_COOKIE;
        W.b.nout = 0;
    }
    assert_int_equal(cookies, 3);
    /* Load decays. */
    W.now += 2500;
    W.a.peer->has_sent_handshake = false;
    wg_device_peer_initiate(W.a.peer);
    assert_true(t_pop(&W.a, &pk));
    assert_int_equal(t_input(&W.b, &W.a.addr, pk.buf, pk.len), NB_OK);
}

static void test_roaming(void **state)
{
    struct sockaddr_in roamed;
    struct sockaddr_storage ep;
    struct tpkt d;

    establish(&W.a);
    t_addr(&roamed, "198.51.100.77", 4242);
    assert_int_equal(t_send_ip(&W, &W.a, 10, 1), NB_OK);
    assert_true(t_pop(&W.a, &d));
    assert_int_equal(t_input(&W.b, &roamed, d.buf, d.len), NB_OK);
    assert_int_equal(wg_device_peer_endpoint(W.b.peer, &ep), sizeof(struct sockaddr_in));
    assert_memory_equal(&ep, &roamed, sizeof(roamed));
    assert_int_equal(t_send_ip(&W, &W.b, 10, 2), NB_OK);
    assert_int_equal(W.b.nout, 1);
    assert_memory_equal(&W.b.out[0].to, &roamed, sizeof(roamed));
    /* An unauthenticated packet from elsewhere does not move the endpoint. */
    d.buf[20] ^= 1;
    {
        struct sockaddr_in evil;

        t_addr(&evil, "203.0.113.66", 1);
        assert_int_not_equal(t_input(&W.b, &evil, d.buf, d.len), NB_OK);
    }
    assert_int_equal(wg_device_peer_endpoint(W.b.peer, &ep), sizeof(struct sockaddr_in));
    assert_memory_equal(&ep, &roamed, sizeof(roamed));
}

static void test_responder_without_endpoint(void **state)
{
    /* NetBird's non-controller: no endpoint configured, learns it from the initiation. */
    wg_device_peer_set_endpoint(W.b.peer, NULL, 0);
    assert_int_equal(t_send_ip(&W, &W.b, 10, 5), NB_E_AGAIN); /* staged, cannot initiate */
    assert_int_equal(W.b.nout, 0);
    establish(&W.a);
    t_pump(&W);
    assert_int_equal(W.a.nrx, 1); /* B's staged packet went out after confirmation */
    assert_int_equal(W.a.rx[20], 5);
}

static void test_staged_queue_bound(void **state)
{
    struct wg_device_params p = {.max_staged = 4};

    t_world_free(&W);
    t_world_init(&W, &p, NULL);
    for (int i = 0; i < 10; i++)
        assert_int_equal(t_send_ip(&W, &W.a, 10, (uint8_t)i), NB_E_AGAIN);
    assert_int_equal(W.a.peer->staged_count, 4);
    assert_int_equal(stats(&W.a).drop_staged, 6);
    t_pump(&W);
    /* The newest four arrive, in order. */
    assert_int_equal(W.b.nrx, 4);
    assert_int_equal(W.b.rx[20], 9);
}

static void test_remove_peer_and_rekey_device(void **state)
{
    wg_key priv;

    establish(&W.a);
    /* Changing the private key drops sessions. */
    memset(priv, 0x55, sizeof(priv));
    assert_int_equal(wg_device_set_private_key(W.a.dev, priv), NB_OK);
    assert_false(wg_device_peer_has_session(W.a.peer));
    wg_device_remove_peer(W.b.dev, W.b.peer);
    W.b.peer = NULL;
    /* Traffic for a removed peer is unroutable / unknown. */
    assert_int_equal(t_send_ip(&W, &W.b, 10, 1), NB_E_NOTFOUND);
    assert_null(wg_device_add_peer(W.a.dev, W.b.pub)); /* duplicate */
    assert_null(wg_device_add_peer(W.b.dev, W.b.pub)); /* our own key */
}

/* The static-static DH is cached per peer: after a key change both sides must still agree. */
static void test_new_private_key_handshakes_again(void **state)
{
    uint8_t ip_a[4] = {100, 64, 0, 1};
    wg_key priv, pub;

    establish(&W.a); /* fills both caches with the old keys */
    memset(priv, 0x66, sizeof(priv));
    wg_crypto_clamp(priv);
    wg_crypto_pubkey(pub, priv);
    assert_int_equal(wg_device_set_private_key(W.a.dev, priv), NB_OK);
    memcpy(W.a.priv, priv, sizeof(priv));
    memcpy(W.a.pub, pub, sizeof(pub));
    wg_device_remove_peer(W.b.dev, W.b.peer);
    W.b.peer = wg_device_add_peer(W.b.dev, pub);
    assert_non_null(W.b.peer);
    wg_device_peer_set_endpoint(W.b.peer, (struct sockaddr *)&W.a.addr, sizeof(W.a.addr));
    wg_device_peer_add_allowed_ip(W.b.peer, AF_INET, ip_a, 32);
    W.now += WG_REKEY_TIMEOUT_MS + 1000;
    establish(&W.a); /* A initiates with its new key */
    W.now += WG_REKEY_TIMEOUT_MS + 1000;
    wg_device_peer_initiate(W.b.peer); /* and B, towards A's new key */
    t_pump(&W);
    struct wg_peer_stats ps;
    wg_device_peer_stats(W.b.peer, &ps);
    assert_int_equal(ps.handshakes, 2);
}

/* Writes real handshake messages as fuzz seeds when WG_WRITE_SEEDS is set. */
static void test_write_seeds(void **state)
{
    const char *dir = getenv("WG_WRITE_SEEDS");
    struct tpkt init, resp, data;
    char path[512];
    FILE *f;

    if (!dir)
        skip();
    /* B initiates towards A's key (0x11), which is the key of the fuzz target's device. */
    wg_device_peer_initiate(W.b.peer);
    assert_true(t_pop(&W.b, &init));
    t_input(&W.a, &W.b.addr, init.buf, init.len);
    assert_true(t_pop(&W.a, &resp));
    t_input(&W.b, &W.a.addr, resp.buf, resp.len);
    assert_true(t_pop(&W.b, &data));
    const struct tpkt *p[] = {&init, &resp, &data};
    const char *names[] = {"initiation", "response", "keepalive"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s.bin", dir, names[i]);
        f = fopen(path, "wb");
        assert_non_null(f);
        fwrite(p[i]->buf, 1, p[i]->len, f);
        fclose(f);
    }
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_handshake_a_initiates),
        T(test_handshake_b_initiates),
        T(test_responder_waits_for_confirmation),
        T(test_flip_initiation),
        T(test_flip_mac2_under_load),
        T(test_flip_response),
        T(test_flip_data_and_replay),
        T(test_psk),
        T(test_wrong_peer_key),
        T(test_inner_source_check),
        T(test_malformed),
        T(test_retransmit_and_give_up),
        T(test_passive_keepalive),
        T(test_new_handshake_when_unanswered),
        T(test_persistent_keepalive),
        T(test_rekey_after_time),
        T(test_rekey_after_time_override),
        T(test_private_key_equal_to_peer_drops_peer),
        T(test_new_private_key_handshakes_again),
        T(test_reject_after_time),
        T(test_zero_keys),
        T(test_cookie_under_load),
        T(test_under_load_threshold),
        T(test_roaming),
        T(test_responder_without_endpoint),
        T(test_staged_queue_bound),
        T(test_remove_peer_and_rekey_device),
        T(test_write_seeds),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
