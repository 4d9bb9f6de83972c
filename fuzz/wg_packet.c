/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * libFuzzer target: arbitrary UDP datagrams into a wg device with a fixed private key and one
 * peer (fake clock and randomness, sends and deliveries go nowhere). Asserts no crash, no
 * sanitizer report, and that nothing is delivered without a completed handshake.
 *
 * The first input byte selects a mode so the fuzzer also reaches the post-handshake paths:
 *   mode & 1: the peer's private key is known to the harness, which first completes a real
 *             handshake (so data messages with valid indices exist) before feeding the input;
 *   mode & 2: the device is under load (cookie path);
 *   mode & 4: advance the clock by the second byte x 1 s and run the timers after the input.
 *
 * Built by fuzz/CMakeLists.txt (CC=clang -DNB_FUZZ=ON) as fuzz_wg_packet, or by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. fuzz/wg_packet.c wg/[a-z]*.c \
 *       $(pkg-config --cflags --libs libsodium wolfssl) -o fuzz_wg_packet
 *   ./fuzz_wg_packet fuzz/corpus/wg_packet
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <sodium.h>

#include "platform/err.h"
#include "wg/device.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fctx {
    uint64_t now;
    uint64_t rnd;
    struct wg_device *other; /* the harness's honest peer, or NULL */
    uint8_t last[2048];
    size_t last_len;
    size_t delivered;
};

static struct fctx DEV, PEER;

static uint64_t f_now(void *ctx)
{
    return ((struct fctx *)ctx)->now;
}

static void f_wall(void *ctx, struct timespec *ts)
{
    uint64_t now = ((struct fctx *)ctx)->now;

    ts->tv_sec = (time_t)(1767225600 + now / 1000);
    ts->tv_nsec = (long)(now % 1000) * 1000000L;
}

static void f_random(void *ctx, void *buf, size_t n)
{
    struct fctx *c = ctx;
    uint8_t seed[randombytes_SEEDBYTES] = {0};

    memcpy(seed, &c->rnd, sizeof(c->rnd));
    seed[31] = c == &DEV ? 1 : 2;
    c->rnd++;
    randombytes_buf_deterministic(buf, n, seed);
}

static int f_send(void *ctx, const struct sockaddr *to, socklen_t tolen, const uint8_t *buf,
                  size_t len)
{
    struct fctx *c = ctx;

    if (len <= sizeof(c->last)) {
        memcpy(c->last, buf, len);
        c->last_len = len;
    }
    return 0;
}

static void f_deliver(void *ctx, struct wg_peer *from, uint8_t *pkt, size_t len)
{
    struct fctx *c = ctx;

    if (len == 0 || !from)
        abort();
    c->delivered++;
}

static struct wg_device *make(struct fctx *c, uint8_t kb, const uint8_t peer_pub[32], bool load)
{
    struct wg_device_ops ops = {c, f_send, f_deliver, f_now, f_wall, f_random, NULL};
    struct wg_device_params params = {.under_load_always = load, .max_staged = 8};
    struct sockaddr_in ep = {.sin_family = AF_INET, .sin_port = htons(51820)};
    uint8_t priv[32], all[16] = {0};
    struct wg_device *dev;
    struct wg_peer *p;

    dev = wg_device_new(&ops, &params);
    if (!dev)
        abort();
    memset(priv, kb, sizeof(priv));
    wg_device_set_private_key(dev, priv);
    p = wg_device_add_peer(dev, peer_pub);
    wg_device_peer_set_endpoint(p, (struct sockaddr *)&ep, sizeof(ep));
    wg_device_peer_add_allowed_ip(p, AF_INET, all, 0);
    wg_device_peer_add_allowed_ip(p, AF_INET6, all, 0);
    return dev;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[65536 + 64];
    uint8_t k1[32], k2[32], pub1[32], pub2[32];
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(51820)};
    struct wg_device *dev, *peer = NULL;
    uint8_t mode = size ? data[0] : 0, adv = size > 1 ? data[1] : 0;

    if (size > sizeof(buf))
        return 0;
    memset(&DEV, 0, sizeof(DEV));
    memset(&PEER, 0, sizeof(PEER));
    DEV.now = PEER.now = 1000;
    memset(k1, 0x11, 32);
    memset(k2, 0x22, 32);
    crypto_scalarmult_base(pub1, k1);
    crypto_scalarmult_base(pub2, k2);
    dev = make(&DEV, 0x11, pub2, mode & 2);

    if (mode & 1) {
        /* Complete a real handshake with an honest peer so later inputs can hit live indices. */
        struct wg_peer *p;
        uint8_t pkt[28] = {0x45, 0, 0, 28};

        peer = make(&PEER, 0x22, pub1, false);
        p = wg_device_peer_lookup(peer, pub1);
        wg_device_peer_initiate(p);
        if (PEER.last_len) {
            memcpy(buf, PEER.last, PEER.last_len);
            wg_device_input(dev, (struct sockaddr *)&from, sizeof(from), buf, PEER.last_len);
        }
        if (DEV.last_len) {
            memcpy(buf, DEV.last, DEV.last_len);
            wg_device_input(peer, (struct sockaddr *)&from, sizeof(from), buf, DEV.last_len);
        }
        if (PEER.last_len) {
            memcpy(buf, PEER.last, PEER.last_len);
            wg_device_input(dev, (struct sockaddr *)&from, sizeof(from), buf, PEER.last_len);
        }
        wg_device_output(peer, pkt, sizeof(pkt));
    }

    /* The datagram under test (the whole input, mode byte included: it is also a type byte). */
    memcpy(buf, data, size);
    wg_device_input(dev, (struct sockaddr *)&from, sizeof(from), buf, size);
    /* Feed it twice: replays must be handled too. */
    memcpy(buf, data, size);
    wg_device_input(dev, (struct sockaddr *)&from, sizeof(from), buf, size);

    if (mode & 4) {
        DEV.now += (uint64_t)adv * 1000;
        wg_device_timers(dev);
    }
    /* Without the honest peer nobody can complete a handshake, so nothing may be delivered. */
    if (!(mode & 1) && DEV.delivered)
        abort();

    wg_device_free(dev);
    wg_device_free(peer);
    return 0;
}
