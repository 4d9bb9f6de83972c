/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * wg micro-benchmark (not a test). Single core, in memory:
 *   - handshakes/s: create_initiation + consume_initiation + create_response + begin_session +
 *     consume_response + begin_session (noise layer; MAC1/MAC2 excluded),
 *   - transport: wg_noise_encrypt + wg_noise_decrypt of 1420-byte packets (Gbit/s of plaintext),
 *   - device path: wg_device_output -> ops.send -> wg_device_input -> ops.deliver, 1420 bytes.
 * Build target: wg_bench (wg/CMakeLists.txt). Usage: wg_bench [seconds-per-test, default 1].
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <netinet/in.h>
#include <sodium.h>

#include "platform/err.h"
#include "wg/device.h"
#include "wg/noise.h"

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t b_now(void *ctx)
{
    return mono_ns() / 1000000ull;
}

static void b_wall(void *ctx, struct timespec *ts)
{
    clock_gettime(CLOCK_REALTIME, ts);
}

static void b_random(void *ctx, void *buf, size_t n)
{
    randombytes_buf(buf, n);
}

struct bside {
    struct wg_noise_local local;
    struct wg_noise_remote remote;
    uint32_t idx;
};

static struct wg_noise_remote *b_lookup(void *ctx, const uint8_t pub[WG_KEY_LEN])
{
    struct bside *s = ctx;

    return memcmp(pub, s->remote.pub, WG_KEY_LEN) == 0 ? &s->remote : NULL;
}

static int b_index_set(void *ctx, struct wg_noise_remote *r, uint32_t *idx)
{
    struct bside *s = ctx;

    *idx = ++s->idx;
    return NB_OK;
}

static void b_index_drop(void *ctx, uint32_t idx)
{
}

static void side_init(struct bside *s, uint8_t kb)
{
    struct wg_noise_ops ops = {s, b_now, b_wall, b_random, b_lookup, b_index_set, b_index_drop};
    uint8_t priv[32];

    memset(s, 0, sizeof(*s));
    memset(priv, kb, sizeof(priv));
    wg_noise_local_init(&s->local, &ops);
    wg_noise_local_set_private(&s->local, priv);
}

static void bench_handshake(double secs)
{
    static struct bside a, b;
    uint8_t ue[32], es[48], ets[28], re[32], en[16];
    uint32_t si, rs, rr;
    struct wg_noise_remote *r;
    uint64_t start = mono_ns(), n = 0, end = start + (uint64_t)(secs * 1e9);

    side_init(&a, 1);
    side_init(&b, 2);
    wg_noise_remote_init(&a.remote, &a.local, b.local.pub);
    wg_noise_remote_init(&b.remote, &b.local, a.local.pub);
    while (mono_ns() < end) {
        /* The flood guard allows one initiation per 20 ms per remote: reset it for the bench. */
        b.remote.has_last_init = false;
        memset(b.remote.latest_ts, 0, sizeof(b.remote.latest_ts));
        if (wg_noise_create_initiation(&a.remote, &si, ue, es, ets) != NB_OK ||
            wg_noise_consume_initiation(&b.local, &r, si, ue, es, ets) != NB_OK ||
            wg_noise_create_response(&b.remote, &rs, &rr, re, en) != NB_OK ||
            wg_noise_begin_session(&b.remote) != NB_OK ||
            wg_noise_consume_response(&a.remote, rs, rr, re, en) != NB_OK ||
            wg_noise_begin_session(&a.remote) != NB_OK) {
            fprintf(stderr, "handshake failed\n");
            exit(1);
        }
        n++;
    }
    printf("handshakes: %.0f /s (full initiation+response+consume, both sides, 1 core)\n",
           n / ((mono_ns() - start) / 1e9));
}

static void bench_transport(double secs)
{
    static struct bside a, b;
    uint8_t ue[32], es[48], ets[28], re[32], en[16], buf[1420 + 16];
    uint32_t si, rs, rr, idx;
    uint64_t nonce, n = 0, start, end;
    struct wg_noise_remote *r;
    unsigned flags;

    side_init(&a, 1);
    side_init(&b, 2);
    wg_noise_remote_init(&a.remote, &a.local, b.local.pub);
    wg_noise_remote_init(&b.remote, &b.local, a.local.pub);
    wg_noise_create_initiation(&a.remote, &si, ue, es, ets);
    wg_noise_consume_initiation(&b.local, &r, si, ue, es, ets);
    wg_noise_create_response(&b.remote, &rs, &rr, re, en);
    wg_noise_begin_session(&b.remote);
    wg_noise_consume_response(&a.remote, rs, rr, re, en);
    wg_noise_begin_session(&a.remote);

    memset(buf, 0x42, sizeof(buf));
    start = mono_ns();
    end = start + (uint64_t)(secs * 1e9);
    while (mono_ns() < end) {
        for (int i = 0; i < 64; i++) {
            wg_noise_encrypt(&a.remote, &idx, &nonce, buf, 1420);
            if (wg_noise_decrypt(&b.remote, idx, nonce, buf, 1436, &flags) != NB_OK) {
                fprintf(stderr, "decrypt failed\n");
                exit(1);
            }
            n++;
        }
    }
    {
        double t = (mono_ns() - start) / 1e9;

        printf("transport AEAD (noise): %.0f pkt/s, %.2f Gbit/s plaintext (1420 B, "
               "encrypt+decrypt on 1 core)\n",
               n / t, n * 1420.0 * 8 / t / 1e9);
    }
}

struct dctx {
    struct wg_device *peer_dev;
    uint8_t buf[2048];
    size_t len;
    uint64_t delivered;
};

static struct dctx da, db;

static int d_send(void *ctx, const struct sockaddr *to, socklen_t tolen, const uint8_t *buf,
                  size_t len)
{
    struct dctx *c = ctx;
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(51820)};

    /* Deliver synchronously to the other device (copy: input decrypts in place). */
    memcpy(c->buf, buf, len);
    wg_device_input(c->peer_dev, (struct sockaddr *)&from, sizeof(from), c->buf, len);
    return 0;
}

static void d_deliver(void *ctx, struct wg_peer *from, uint8_t *pkt, size_t len)
{
    struct dctx *c = ctx;

    c->delivered++;
}

static void bench_device(double secs)
{
    struct wg_device_ops oa = {&da, d_send, d_deliver, b_now, b_wall, b_random, NULL};
    struct wg_device_ops ob = {&db, d_send, d_deliver, b_now, b_wall, b_random, NULL};
    struct wg_device *a = wg_device_new(&oa, NULL), *b = wg_device_new(&ob, NULL);
    struct sockaddr_in ep = {.sin_family = AF_INET, .sin_port = htons(51820)};
    uint8_t ka[32], kb[32], pa[32], pb[32], pkt[1420];
    uint8_t ipa[4] = {100, 64, 0, 1}, ipb[4] = {100, 64, 0, 2};
    struct wg_peer *pa_b, *pb_a;
    uint64_t start, end, n = 0;

    memset(ka, 1, 32);
    memset(kb, 2, 32);
    wg_device_set_private_key(a, ka);
    wg_device_set_private_key(b, kb);
    wg_device_public_key(a, pa);
    wg_device_public_key(b, pb);
    da.peer_dev = b;
    db.peer_dev = a;
    pa_b = wg_device_add_peer(a, pb);
    pb_a = wg_device_add_peer(b, pa);
    wg_device_peer_set_endpoint(pa_b, (struct sockaddr *)&ep, sizeof(ep));
    wg_device_peer_set_endpoint(pb_a, (struct sockaddr *)&ep, sizeof(ep));
    wg_device_peer_add_allowed_ip(pa_b, AF_INET, ipb, 32);
    wg_device_peer_add_allowed_ip(pb_a, AF_INET, ipa, 32);

    memset(pkt, 0, sizeof(pkt));
    pkt[0] = 0x45;
    pkt[2] = 1420 >> 8;
    pkt[3] = 1420 & 0xff;
    memcpy(pkt + 12, ipa, 4);
    memcpy(pkt + 16, ipb, 4);
    wg_device_output(a, pkt, sizeof(pkt)); /* handshake, staged packet flushed */

    start = mono_ns();
    end = start + (uint64_t)(secs * 1e9);
    while (mono_ns() < end) {
        for (int i = 0; i < 64; i++) {
            wg_device_output(a, pkt, sizeof(pkt));
            n++;
        }
    }
    {
        double t = (mono_ns() - start) / 1e9;

        printf("device path: %.0f pkt/s, %.2f Gbit/s (output->send->input->deliver, 1420 B, "
               "1 core; delivered %llu of %llu)\n",
               n / t, n * 1420.0 * 8 / t / 1e9, (unsigned long long)db.delivered - 1,
               (unsigned long long)n);
    }
    wg_device_free(a);
    wg_device_free(b);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;

    if (wg_crypto_init() != NB_OK)
        return 1;
    bench_handshake(secs);
    bench_transport(secs);
    bench_device(secs);
    return 0;
}
