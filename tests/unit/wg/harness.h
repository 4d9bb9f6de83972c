/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_TESTS_WG_HARNESS_H
#define NB_TESTS_WG_HARNESS_H

/*
 * Two in-memory WireGuard devices wired to each other through recorded outboxes, a fake
 * monotonic + wall clock and deterministic randomness. Header-only; every function is static.
 *
 * Node A is 192.0.2.1:51820 with tunnel address 100.64.0.1, node B is 192.0.2.2:51820 with
 * 100.64.0.2. Each knows the other as its only peer, with the other's /32 as allowed IP.
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "platform/err.h"
#include "wg/device_internal.h"

enum { T_MAXQ = 512, T_PKT = 2048 };

struct tpkt {
    uint8_t buf[T_PKT];
    size_t len;
    struct sockaddr_storage to;
    socklen_t tolen;
    uint64_t at;
};

struct tworld;

struct tnode {
    struct tworld *w;
    struct wg_device *dev;
    struct wg_peer *peer;
    struct sockaddr_in addr;
    wg_key priv, pub;
    struct tpkt *out;
    size_t nout;
    size_t nsent_total;
    uint8_t rx[T_PKT];
    size_t rx_len;
    size_t nrx;
    struct wg_peer *rx_from;
    uint64_t scheduled;
};

struct tworld {
    uint64_t now;
    int64_t wall_offset_ms;
    uint64_t rnd_ctr;
    struct tnode a, b;
};

static inline uint64_t t_now(void *ctx)
{
    struct tnode *n = ctx;

    return n->w->now;
}

static inline void t_wall(void *ctx, struct timespec *ts)
{
    struct tnode *n = ctx;
    /* 2026-01-01 plus the fake monotonic clock. */
    int64_t ms = (int64_t)1767225600000 + (int64_t)n->w->now + n->w->wall_offset_ms;

    ts->tv_sec = (time_t)(ms / 1000);
    ts->tv_nsec = (long)(ms % 1000) * 1000000L;
}

static inline void t_random(void *ctx, void *buf, size_t len)
{
    struct tnode *n = ctx;
    uint8_t seed[randombytes_SEEDBYTES] = {0};

    memcpy(seed, &n->w->rnd_ctr, sizeof(n->w->rnd_ctr));
    seed[31] = 0x5a;
    n->w->rnd_ctr++;
    randombytes_buf_deterministic(buf, len, seed);
}

static inline int t_send(void *ctx, const struct sockaddr *to, socklen_t tolen, const uint8_t *buf,
                         size_t len)
{
    struct tnode *n = ctx;
    struct tpkt *p;

    if (n->nout >= T_MAXQ || len > T_PKT)
        return -1;
    p = &n->out[n->nout++];
    memcpy(p->buf, buf, len);
    p->len = len;
    memcpy(&p->to, to, tolen);
    p->tolen = tolen;
    p->at = n->w->now;
    n->nsent_total++;
    return 0;
}

static inline void t_deliver(void *ctx, struct wg_peer *from, uint8_t *pkt, size_t len)
{
    struct tnode *n = ctx;

    if (len <= sizeof(n->rx)) {
        memcpy(n->rx, pkt, len);
        n->rx_len = len;
    }
    n->nrx++;
    n->rx_from = from;
}

static inline void t_schedule(void *ctx, uint64_t at)
{
    struct tnode *n = ctx;

    n->scheduled = at;
}

static inline void t_addr(struct sockaddr_in *sin, const char *ip, uint16_t port)
{
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    inet_pton(AF_INET, ip, &sin->sin_addr);
}

static inline void t_node_init(struct tworld *w, struct tnode *n, uint8_t keybyte, const char *ip,
                               const struct wg_device_params *params)
{
    struct wg_device_ops ops = {
        .ctx = n,
        .send = t_send,
        .deliver = t_deliver,
        .now_ms = t_now,
        .wall = t_wall,
        .random = t_random,
        .schedule = t_schedule,
    };

    memset(n, 0, sizeof(*n));
    n->w = w;
    n->out = calloc(T_MAXQ, sizeof(*n->out));
    memset(n->priv, keybyte, sizeof(n->priv));
    wg_crypto_clamp(n->priv);
    wg_crypto_pubkey(n->pub, n->priv);
    t_addr(&n->addr, ip, 51820);
    n->dev = wg_device_new(&ops, params);
    wg_device_set_private_key(n->dev, n->priv);
}

/* Wires a and b as each other's peer, with endpoints and allowed IPs. */
static inline void t_world_init(struct tworld *w, const struct wg_device_params *pa,
                                const struct wg_device_params *pb)
{
    uint8_t ip_a[4] = {100, 64, 0, 1}, ip_b[4] = {100, 64, 0, 2};

    memset(w, 0, sizeof(*w));
    w->now = 1000;
    t_node_init(w, &w->a, 0x11, "192.0.2.1", pa);
    t_node_init(w, &w->b, 0x22, "192.0.2.2", pb);
    w->a.peer = wg_device_add_peer(w->a.dev, w->b.pub);
    w->b.peer = wg_device_add_peer(w->b.dev, w->a.pub);
    wg_device_peer_set_endpoint(w->a.peer, (struct sockaddr *)&w->b.addr, sizeof(w->b.addr));
    wg_device_peer_set_endpoint(w->b.peer, (struct sockaddr *)&w->a.addr, sizeof(w->a.addr));
    wg_device_peer_add_allowed_ip(w->a.peer, AF_INET, ip_b, 32);
    wg_device_peer_add_allowed_ip(w->b.peer, AF_INET, ip_a, 32);
}

static inline void t_world_free(struct tworld *w)
{
    wg_device_free(w->a.dev);
    wg_device_free(w->b.dev);
    free(w->a.out);
    free(w->b.out);
}

static inline struct tnode *t_other(struct tworld *w, struct tnode *n)
{
    return n == &w->a ? &w->b : &w->a;
}

/* Removes and returns (copied into *p) the oldest datagram in n's outbox. */
static inline int t_pop(struct tnode *n, struct tpkt *p)
{
    if (!n->nout)
        return 0;
    *p = n->out[0];
    memmove(&n->out[0], &n->out[1], (n->nout - 1) * sizeof(*n->out));
    n->nout--;
    return 1;
}

/* Feeds a datagram to node `to` as if sent from `from_addr`. */
static inline int t_input(struct tnode *to, const struct sockaddr_in *from_addr, const uint8_t *buf,
                          size_t len)
{
    static uint8_t tmp[T_PKT];

    memcpy(tmp, buf, len);
    return wg_device_input(to->dev, (const struct sockaddr *)from_addr, sizeof(*from_addr), tmp,
                           len);
}

/* Delivers queued datagrams both ways until both outboxes are empty. Returns the count. */
static inline int t_pump(struct tworld *w)
{
    struct tpkt *p = malloc(sizeof(*p));
    int count = 0, moved = 1;

    while (moved) {
        moved = 0;
        while (t_pop(&w->a, p)) {
            t_input(&w->b, &w->a.addr, p->buf, p->len);
            count++;
            moved = 1;
        }
        while (t_pop(&w->b, p)) {
            t_input(&w->a, &w->b.addr, p->buf, p->len);
            count++;
            moved = 1;
        }
    }
    free(p);
    return count;
}

static inline void t_drop_all(struct tworld *w)
{
    w->a.nout = 0;
    w->b.nout = 0;
}

/*
 * Advances the clock to `until`, running each device's timers at its deadlines. If deliver, the
 * network carries packets (t_pump); otherwise outboxes are kept (for inspection) when keep is set,
 * or emptied.
 */
static inline void t_run_until(struct tworld *w, uint64_t until, int deliver)
{
    for (;;) {
        uint64_t na = wg_device_next_deadline(w->a.dev);
        uint64_t nb = wg_device_next_deadline(w->b.dev);
        uint64_t next = until;

        if (na && na < next)
            next = na;
        if (nb && nb < next)
            next = nb;
        if (next > w->now)
            w->now = next;
        wg_device_timers(w->a.dev);
        wg_device_timers(w->b.dev);
        if (deliver)
            t_pump(w);
        if (w->now >= until)
            break;
    }
}

/* Builds a minimal IPv4 packet (20-byte header + payload of `plen` bytes of `fill`). */
static inline size_t t_ip4(uint8_t *buf, const uint8_t src[4], const uint8_t dst[4], size_t plen,
                           uint8_t fill)
{
    size_t total = 20 + plen;

    memset(buf, 0, 20);
    buf[0] = 0x45;
    buf[2] = (uint8_t)(total >> 8);
    buf[3] = (uint8_t)total;
    buf[8] = 64;
    buf[9] = 17;
    memcpy(buf + 12, src, 4);
    memcpy(buf + 16, dst, 4);
    memset(buf + 20, fill, plen);
    return total;
}

#define T_IP_A ((const uint8_t[4]){100, 64, 0, 1})
#define T_IP_B ((const uint8_t[4]){100, 64, 0, 2})

/* Sends a packet from n to the other node's tunnel address. */
static inline int t_send_ip(struct tworld *w, struct tnode *n, size_t plen, uint8_t fill)
{
    uint8_t buf[T_PKT];
    size_t len = n == &w->a ? t_ip4(buf, T_IP_A, T_IP_B, plen, fill)
                            : t_ip4(buf, T_IP_B, T_IP_A, plen, fill);

    return wg_device_output(n->dev, buf, len);
}

/* Message type of an outbox packet. */
static inline uint32_t t_type(const struct tpkt *p)
{
    return p->len >= 4 ? (uint32_t)p->buf[0] | (uint32_t)p->buf[1] << 8 : 0;
}

#endif
