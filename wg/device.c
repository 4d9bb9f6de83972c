/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * The device glues noise.c (handshake and transport keys), cookie.c (MACs, cookies, rate
 * limiting), allowedips.c (cryptokey routing) and the per-peer timers of whitepaper §6 together,
 * behind an ops struct for all I/O. Input path: wg_device_input -> handle_{initiation,response,
 * cookie,data} -> ops.deliver. Output path: wg_device_output -> allowed IPs -> encrypt into the
 * device scratch buffer -> ops.send, or stage the packet and start a handshake.
 *
 * Timers follow Linux's timers.c event for event (the wg_timers_* names are kept as the names
 * of the static helpers below). They are deadlines on the peer; ops.schedule is asked for the
 * earliest one. Postponing or disarming a timer does not reschedule: the device may be woken
 * early, finds nothing due, and asks again for the true minimum.
 */

#include "wg/device_internal.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <sodium.h>

#include "platform/err.h"

enum {
    DEFAULT_UNDER_LOAD = 1000,
    DEFAULT_MAX_STAGED = 128,
    DEFAULT_MTU = 1420,
    DEFAULT_MAX_PEERS = 1024,
    SCRATCH_LEN = WG_MSG_DATA_HEADER_LEN + WG_DEVICE_MAX_PACKET + 1 + WG_MSG_PADDING_MULTIPLE +
                  WG_AEAD_TAG_LEN,
};

/*
 * Outgoing data is encrypted into one process-wide buffer: the device is single-threaded and
 * encrypt_and_send() never re-enters itself (ops.send only sends), so 64 KiB per process instead
 * of per account. It only ever holds ciphertext once encrypt_and_send() returns.
 */
static uint8_t scratch[SCRATCH_LEN];

#define PEER_OF_REMOTE(r) ((struct wg_peer *)((char *)(r)-offsetof(struct wg_peer, remote)))

/* ---- little-endian helpers ---- */

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t now_ms(struct wg_device *dev)
{
    return dev->ops.now_ms(dev->ops.ctx);
}

/*
 * Timer jitter only has to spread retries, not be secret, and it is drawn on the data path
 * (timers_data_sent), so it comes from a per-device xorshift64* seeded once from ops.random
 * instead of a system call per packet.
 */
static uint32_t jitter_ms(struct wg_device *dev)
{
    uint64_t x = dev->jitter_state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    dev->jitter_state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32) % (WG_REKEY_TIMEOUT_JITTER_MAX_MS + 1);
}

/* ---- noise upcalls: index table and remote lookup ---- */

static uint64_t up_now(void *ctx)
{
    return now_ms(ctx);
}

static void up_wall(void *ctx, struct timespec *ts)
{
    struct wg_device *dev = ctx;

    dev->ops.wall(dev->ops.ctx, ts);
}

static void up_random(void *ctx, void *buf, size_t n)
{
    struct wg_device *dev = ctx;

    dev->ops.random(dev->ops.ctx, buf, n);
}

static struct wg_noise_remote *up_lookup(void *ctx, const uint8_t pub[WG_KEY_LEN])
{
    struct wg_peer *p = wg_device_peer_lookup(ctx, pub);

    return p ? &p->remote : NULL;
}

static struct wg_index_entry *index_find(struct wg_device *dev, uint32_t index)
{
    struct wg_index_entry *e;

    for (e = dev->buckets[index & dev->bucket_mask]; e; e = e->next)
        if (e->index == index)
            return e;
    return NULL;
}

static int up_index_set(void *ctx, struct wg_noise_remote *r, uint32_t *out)
{
    struct wg_device *dev = ctx;
    struct wg_peer *peer = PEER_OF_REMOTE(r);
    struct wg_index_entry *e = NULL, **head;
    uint32_t index;
    int i;

    for (i = 0; i < WG_PEER_INDICES; i++) {
        if (!peer->idx[i].used) {
            e = &peer->idx[i];
            break;
        }
    }
    if (!e)
        return NB_E_NOMEM; /* cannot happen: noise holds at most 4 per remote */
    do {
        dev->ops.random(dev->ops.ctx, &index, sizeof(index));
    } while (index == 0 || index_find(dev, index));
    head = &dev->buckets[index & dev->bucket_mask];
    e->index = index;
    e->peer = peer;
    e->used = true;
    e->next = *head;
    *head = e;
    *out = index;
    return NB_OK;
}

static void up_index_drop(void *ctx, uint32_t index)
{
    struct wg_device *dev = ctx;
    struct wg_index_entry **pp, *e;

    for (pp = &dev->buckets[index & dev->bucket_mask]; (e = *pp); pp = &e->next) {
        if (e->index == index) {
            *pp = e->next;
            memset(e, 0, sizeof(*e));
            return;
        }
    }
}

/* ---- timers ---- */

static void timer_set(struct wg_peer *peer, uint64_t *t, uint64_t at)
{
    struct wg_device *dev = peer->dev;

    *t = at;
    if (dev->in_timers)
        return; /* wg_device_timers recomputes the minimum when it is done */
    if (dev->next_deadline == 0 || at < dev->next_deadline) {
        dev->next_deadline = at;
        if (dev->ops.schedule)
            dev->ops.schedule(dev->ops.ctx, at);
    }
}

static void timers_any_authenticated_packet_traversal(struct wg_peer *peer)
{
    if (peer->keepalive_s)
        timer_set(peer, &peer->t.persistent, now_ms(peer->dev) + peer->keepalive_s * 1000ull);
}

static void timers_any_authenticated_packet_sent(struct wg_peer *peer)
{
    peer->t.keepalive = 0;
}

static void timers_any_authenticated_packet_received(struct wg_peer *peer)
{
    peer->t.new_handshake = 0;
}

static void timers_data_sent(struct wg_peer *peer)
{
    if (!peer->t.new_handshake)
        timer_set(peer, &peer->t.new_handshake,
                  now_ms(peer->dev) + WG_KEEPALIVE_TIMEOUT_MS + WG_REKEY_TIMEOUT_MS +
                      jitter_ms(peer->dev));
}

static void timers_data_received(struct wg_peer *peer)
{
    if (!peer->t.keepalive)
        timer_set(peer, &peer->t.keepalive, now_ms(peer->dev) + WG_KEEPALIVE_TIMEOUT_MS);
    else
        peer->need_another_keepalive = true;
}

static void timers_handshake_initiated(struct wg_peer *peer)
{
    timer_set(peer, &peer->t.retransmit,
              now_ms(peer->dev) + WG_REKEY_TIMEOUT_MS + jitter_ms(peer->dev));
}

static void timers_handshake_complete(struct wg_peer *peer)
{
    struct wg_device *dev = peer->dev;

    peer->t.retransmit = 0;
    peer->handshake_attempts = 0;
    peer->sent_lastminute_handshake = false;
    peer->stats.handshakes++;
    peer->stats.last_handshake_ms = now_ms(dev);
    dev->ops.wall(dev->ops.ctx, &peer->stats.last_handshake);
}

static void timers_session_derived(struct wg_peer *peer)
{
    timer_set(peer, &peer->t.zero_keys, now_ms(peer->dev) + 3ull * WG_REJECT_AFTER_TIME_MS);
}

/* ---- sending ---- */

static int send_to_peer(struct wg_peer *peer, const uint8_t *buf, size_t len)
{
    struct wg_device *dev = peer->dev;

    if (!peer->endpoint_len)
        return NB_E_INVAL;
    if (dev->ops.send(dev->ops.ctx, (const struct sockaddr *)&peer->endpoint, peer->endpoint_len,
                      buf, len) < 0) {
        dev->stats.send_errors++;
        return NB_E_IO;
    }
    peer->stats.tx_bytes += len;
    peer->stats.tx_packets++;
    return NB_OK;
}

/*
 * Sends a handshake initiation unless one went out less than REKEY_TIMEOUT ago. is_retry keeps
 * the attempt counter (retransmissions); anything else starts a new series of attempts.
 */
static int send_initiation(struct wg_peer *peer, bool is_retry)
{
    struct wg_device *dev = peer->dev;
    struct wg_msg_initiation m;
    uint8_t buf[WG_MSG_INITIATION_LEN];
    uint64_t now = now_ms(dev);
    uint32_t s_idx;
    int err;

    if (!is_retry)
        peer->handshake_attempts = 0;
    if (peer->has_sent_handshake && now - peer->last_sent_handshake_ms < WG_REKEY_TIMEOUT_MS)
        return NB_OK; /* one is in flight */
    if (!peer->endpoint_len) {
        dev->stats.drop_no_endpoint++;
        return NB_E_INVAL; /* wait for the peer to reach us (roaming) or an endpoint */
    }
    peer->has_sent_handshake = true;
    peer->last_sent_handshake_ms = now;

    memset(&m, 0, sizeof(m));
    err = wg_noise_create_initiation(&peer->remote, &s_idx, m.ephemeral, m.static_enc,
                                     m.timestamp_enc);
    if (err != NB_OK)
        goto out;
    memcpy(buf, &m, sizeof(buf));
    put_le32(buf, WG_MSG_INITIATION);
    put_le32(buf + 4, s_idx);
    wg_cookie_maker_mac(&peer->cookie, now, buf, sizeof(buf));

    timers_any_authenticated_packet_traversal(peer);
    timers_any_authenticated_packet_sent(peer);
    timers_handshake_initiated(peer);
    if (send_to_peer(peer, buf, sizeof(buf)) == NB_OK)
        dev->stats.tx_handshake_init++;
out:
    sodium_memzero(&m, sizeof(m));
    return err;
}

static void staged_free_all(struct wg_peer *peer)
{
    while (peer->staged_count) {
        struct wg_staged *s = &peer->staged[peer->staged_head];

        free(s->buf);
        s->buf = NULL;
        peer->staged_head = (peer->staged_head + 1) % peer->dev->params.max_staged;
        peer->staged_count--;
        peer->dev->stats.drop_staged++;
    }
    peer->staged_head = 0;
}

/* Copies pkt into the staged queue, dropping the oldest when full. */
static int stage(struct wg_peer *peer, const uint8_t *pkt, size_t len)
{
    struct wg_device *dev = peer->dev;
    unsigned cap = dev->params.max_staged;
    struct wg_staged *s;
    uint8_t *copy;

    copy = malloc(len ? len : 1);
    if (!copy)
        return NB_E_NOMEM;
    if (len)
        memcpy(copy, pkt, len);
    if (peer->staged_count == cap) {
        s = &peer->staged[peer->staged_head];
        free(s->buf);
        s->buf = NULL;
        peer->staged_head = (peer->staged_head + 1) % cap;
        peer->staged_count--;
        dev->stats.drop_staged++;
    }
    s = &peer->staged[(peer->staged_head + peer->staged_count) % cap];
    s->buf = copy;
    s->len = len;
    peer->staged_count++;
    return NB_OK;
}

/*
 * Encrypts pkt (len may be 0: keepalive) into the scratch buffer and sends it. NB_E_EXPIRED when
 * there is no usable session (nothing sent). A due rekey starts a handshake after sending.
 */
static int encrypt_and_send(struct wg_peer *peer, const uint8_t *pkt, size_t len)
{
    struct wg_device *dev = peer->dev;
    uint8_t *out = scratch;
    size_t padded, mtu = dev->params.mtu;
    uint32_t r_idx;
    uint64_t nonce;
    int err;

    if (!peer->endpoint_len)
        return NB_E_EXPIRED; /* treat as "no session": stage until we know where to send */
    padded = (len + WG_MSG_PADDING_MULTIPLE - 1) & ~(size_t)(WG_MSG_PADDING_MULTIPLE - 1);
    if (len <= mtu && padded > mtu)
        padded = mtu;
    if (len)
        memmove(out + WG_MSG_DATA_HEADER_LEN, pkt, len);
    memset(out + WG_MSG_DATA_HEADER_LEN + len, 0, padded - len);

    err = wg_noise_encrypt(&peer->remote, &r_idx, &nonce, out + WG_MSG_DATA_HEADER_LEN, padded);
    if (err != NB_OK && err != NB_E_STALE)
        return err;
    put_le32(out, WG_MSG_DATA);
    put_le32(out + 4, r_idx);
    put_le64(out + 8, nonce);

    timers_any_authenticated_packet_traversal(peer);
    timers_any_authenticated_packet_sent(peer);
    if (send_to_peer(peer, out, WG_MSG_DATA_HEADER_LEN + padded + WG_AEAD_TAG_LEN) == NB_OK) {
        if (len) {
            dev->stats.tx_packets++;
            dev->stats.tx_bytes += len;
        } else {
            dev->stats.tx_keepalives++;
        }
    }
    if (len)
        timers_data_sent(peer);
    if (err == NB_E_STALE)
        send_initiation(peer, false); /* keep the key fresh */
    return NB_OK;
}

/*
 * True while we are the responder of a handshake younger than REKEY_TIMEOUT whose keys wait in
 * "next" for the initiator's first packet. Starting our own handshake then would only race the
 * one that is about to complete, so the staged packets wait for the confirmation instead.
 */
static bool awaiting_confirmation(struct wg_peer *peer)
{
    const struct wg_noise_keypair *kp = peer->remote.next;

    return kp && kp->live && now_ms(peer->dev) - kp->birth_ms < WG_REKEY_TIMEOUT_MS;
}

/* Sends staged packets in order while a session exists; starts a handshake otherwise. */
static void send_staged(struct wg_peer *peer)
{
    unsigned cap = peer->dev->params.max_staged;
    struct wg_staged *s;

    while (peer->staged_count) {
        s = &peer->staged[peer->staged_head];
        if (encrypt_and_send(peer, s->buf, s->len) != NB_OK) {
            if (!awaiting_confirmation(peer))
                send_initiation(peer, false);
            return;
        }
        free(s->buf);
        s->buf = NULL;
        peer->staged_head = (peer->staged_head + 1) % cap;
        peer->staged_count--;
    }
}

/* A keepalive, unless staged packets can carry the same information. */
static void send_keepalive(struct wg_peer *peer)
{
    if (peer->staged_count == 0) {
        if (encrypt_and_send(peer, NULL, 0) == NB_OK)
            return;
        if (stage(peer, NULL, 0) != NB_OK)
            return;
    }
    send_staged(peer);
}

/* ---- load ---- */

/* Counts one handshake message and says whether the device is under load. */
static bool under_load(struct wg_device *dev)
{
    uint64_t now = now_ms(dev), elapsed;
    unsigned estimate;

    if (dev->params.under_load_always)
        return true;
    elapsed = now - dev->load_window_start;
    if (elapsed >= 1000) {
        dev->load_prev = elapsed >= 2000 ? 0 : dev->load_cur;
        dev->load_cur = 0;
        dev->load_window_start = now;
        elapsed = 0;
    }
    dev->load_cur++;
    /* Sliding one-second estimate: all of this window plus the unexpired share of the last. */
    estimate = dev->load_cur + (unsigned)((uint64_t)dev->load_prev * (1000 - elapsed) / 1000);
    return estimate > dev->params.under_load_threshold;
}

/* ---- receiving ---- */

static void update_endpoint(struct wg_peer *peer, const struct sockaddr *from, socklen_t len)
{
    if (!from || len == 0 || len > sizeof(peer->endpoint))
        return;
    memset(&peer->endpoint, 0, sizeof(peer->endpoint));
    memcpy(&peer->endpoint, from, len);
    peer->endpoint_len = len;
}

/*
 * Common MAC / cookie / rate-limit gate for handshake messages. NB_OK to proceed; otherwise the
 * packet was dropped (and counted) or answered with a cookie reply.
 */
static int handshake_gate(struct wg_device *dev, const struct sockaddr *from, socklen_t fromlen,
                          const uint8_t *msg, size_t len, uint32_t sender)
{
    struct wg_msg_cookie reply;
    bool load = under_load(dev);
    uint64_t now = now_ms(dev);
    int err;

    err = wg_cookie_checker_validate(&dev->checker, now, msg, len, from, load);
    if (err == NB_E_COOKIE) {
        if (wg_cookie_checker_create_reply(&dev->checker, now, &reply, sender, msg, len, from) ==
            NB_OK) {
            if (dev->ops.send(dev->ops.ctx, from, fromlen, (const uint8_t *)&reply, sizeof(reply)) <
                0)
                dev->stats.send_errors++;
            else
                dev->stats.cookie_sent++;
        }
        return NB_E_COOKIE;
    }
    if (err != NB_OK) {
        dev->stats.drop_bad_mac++;
        return NB_E_DROP;
    }
    if (load && !dev->limiter) {
        /* Idle devices do not pay for the table; under load without memory, fail closed. */
        dev->limiter = malloc(sizeof(*dev->limiter));
        if (dev->limiter)
            wg_ratelimiter_init(dev->limiter, dev->limiter_key);
    }
    if (load && (!dev->limiter || !wg_ratelimiter_allow(dev->limiter, now, from))) {
        dev->stats.drop_rate_limited++;
        return NB_E_DROP;
    }
    return NB_OK;
}

static int handle_initiation(struct wg_device *dev, const struct sockaddr *from, socklen_t fromlen,
                             const uint8_t *buf, size_t len)
{
    struct wg_msg_initiation m;
    struct wg_msg_response resp;
    uint8_t out[WG_MSG_RESPONSE_LEN];
    struct wg_noise_remote *r = NULL;
    struct wg_peer *peer;
    uint32_t s_idx, r_idx;
    int err;

    memcpy(&m, buf, sizeof(m));
    if ((err = handshake_gate(dev, from, fromlen, buf, len, get_le32(buf + 4))) != NB_OK)
        return err;
    err = wg_noise_consume_initiation(&dev->local, &r, get_le32(buf + 4), m.ephemeral, m.static_enc,
                                      m.timestamp_enc);
    if (err != NB_OK) {
        if (err == NB_E_REPLAY)
            dev->stats.drop_replay++;
        else
            dev->stats.drop_handshake++;
        return err == NB_E_REPLAY ? NB_E_REPLAY : NB_E_DROP;
    }
    peer = PEER_OF_REMOTE(r);
    dev->stats.rx_handshake_init++;
    peer->stats.rx_bytes += len;
    peer->stats.rx_packets++;
    update_endpoint(peer, from, fromlen);
    timers_any_authenticated_packet_received(peer);
    timers_any_authenticated_packet_traversal(peer);

    memset(&resp, 0, sizeof(resp));
    err = wg_noise_create_response(&peer->remote, &s_idx, &r_idx, resp.ephemeral, resp.empty_enc);
    if (err == NB_OK)
        err = wg_noise_begin_session(&peer->remote);
    if (err != NB_OK) {
        wg_noise_remote_handshake_clear(&peer->remote);
        dev->stats.drop_handshake++;
        return NB_E_DROP;
    }
    memcpy(out, &resp, sizeof(out));
    put_le32(out, WG_MSG_RESPONSE);
    put_le32(out + 4, s_idx);
    put_le32(out + 8, r_idx);
    wg_cookie_maker_mac(&peer->cookie, now_ms(dev), out, sizeof(out));
    timers_session_derived(peer);
    timers_any_authenticated_packet_traversal(peer);
    timers_any_authenticated_packet_sent(peer);
    if (send_to_peer(peer, out, sizeof(out)) == NB_OK)
        dev->stats.tx_handshake_resp++;
    return NB_OK;
}

static int handle_response(struct wg_device *dev, const struct sockaddr *from, socklen_t fromlen,
                           const uint8_t *buf, size_t len)
{
    struct wg_msg_response m;
    struct wg_index_entry *e;
    struct wg_peer *peer;
    int err;

    memcpy(&m, buf, sizeof(m));
    if ((err = handshake_gate(dev, from, fromlen, buf, len, get_le32(buf + 4))) != NB_OK)
        return err;
    e = index_find(dev, get_le32(buf + 8));
    if (!e) {
        dev->stats.drop_no_session++;
        return NB_E_DROP;
    }
    peer = e->peer;
    err = wg_noise_consume_response(&peer->remote, get_le32(buf + 4), get_le32(buf + 8),
                                    m.ephemeral, m.empty_enc);
    if (err == NB_OK)
        err = wg_noise_begin_session(&peer->remote);
    if (err != NB_OK) {
        dev->stats.drop_handshake++;
        return NB_E_DROP;
    }
    dev->stats.rx_handshake_resp++;
    peer->stats.rx_bytes += len;
    peer->stats.rx_packets++;
    update_endpoint(peer, from, fromlen);
    timers_any_authenticated_packet_received(peer);
    timers_any_authenticated_packet_traversal(peer);
    timers_handshake_complete(peer);
    timers_session_derived(peer);
    /* Confirm the session to the responder: staged data, or a keepalive. */
    send_keepalive(peer);
    return NB_OK;
}

static int handle_cookie(struct wg_device *dev, const uint8_t *buf)
{
    struct wg_msg_cookie m;
    struct wg_index_entry *e;

    memcpy(&m, buf, sizeof(m));
    e = index_find(dev, get_le32(buf + 4));
    if (!e) {
        dev->stats.drop_no_session++;
        return NB_E_DROP;
    }
    if (wg_cookie_maker_consume_reply(&e->peer->cookie, now_ms(dev), &m) != NB_OK) {
        dev->stats.drop_cookie++;
        return NB_E_DROP;
    }
    dev->stats.cookie_received++;
    return NB_OK;
}

/* Length of the IP packet at p[0,len) from its header, or 0 if malformed; sets family/src. */
static size_t inner_parse(const uint8_t *p, size_t len, int *family, const uint8_t **src)
{
    size_t ip_len;

    if (len >= 20 && (p[0] >> 4) == 4) {
        ip_len = (size_t)p[2] << 8 | p[3];
        if (ip_len < 20 || ip_len > len)
            return 0;
        *family = AF_INET;
        *src = p + 12;
        return ip_len;
    }
    if (len >= 40 && (p[0] >> 4) == 6) {
        ip_len = 40 + ((size_t)p[4] << 8 | p[5]);
        if (ip_len > len)
            return 0;
        *family = AF_INET6;
        *src = p + 8;
        return ip_len;
    }
    return 0;
}

static int handle_data(struct wg_device *dev, const struct sockaddr *from, socklen_t fromlen,
                       uint8_t *buf, size_t len)
{
    struct wg_index_entry *e;
    struct wg_peer *peer;
    uint8_t *plain = buf + WG_MSG_DATA_HEADER_LEN;
    size_t plen = len - WG_MSG_DATA_HEADER_LEN - WG_AEAD_TAG_LEN, ip_len;
    const uint8_t *src;
    unsigned flags;
    int family, err;

    e = index_find(dev, get_le32(buf + 4));
    if (!e) {
        dev->stats.drop_no_session++;
        return NB_E_DROP;
    }
    peer = e->peer;
    err = wg_noise_decrypt(&peer->remote, e->index, get_le64(buf + 8), plain,
                           len - WG_MSG_DATA_HEADER_LEN, &flags);
    if (err != NB_OK) {
        if (err == NB_E_REPLAY)
            dev->stats.drop_replay++;
        else if (err == NB_E_EXPIRED)
            dev->stats.drop_expired++;
        else
            dev->stats.drop_decrypt++;
        return err == NB_E_REPLAY || err == NB_E_EXPIRED ? err : NB_E_DROP;
    }
    peer->stats.rx_bytes += len;
    peer->stats.rx_packets++;
    update_endpoint(peer, from, fromlen);
    timers_any_authenticated_packet_received(peer);
    timers_any_authenticated_packet_traversal(peer);
    if (flags & WG_NOISE_RX_CONFIRMED) {
        timers_handshake_complete(peer);
        send_staged(peer);
    }
    if ((flags & WG_NOISE_RX_REKEY) && !peer->sent_lastminute_handshake) {
        peer->sent_lastminute_handshake = true;
        send_initiation(peer, false);
    }

    if (plen == 0) {
        dev->stats.rx_keepalives++;
        return NB_OK;
    }
    ip_len = inner_parse(plain, plen, &family, &src);
    if (!ip_len) {
        dev->stats.drop_inner_bad++;
        return NB_E_PARSE;
    }
    if (wg_allowedips_lookup(&dev->aips, family, src) != peer) {
        dev->stats.drop_inner_src++;
        return NB_E_DROP;
    }
    timers_data_received(peer);
    dev->stats.rx_packets++;
    dev->stats.rx_bytes += ip_len;
    dev->ops.deliver(dev->ops.ctx, peer, plain, ip_len);
    return NB_OK;
}

int wg_device_input(struct wg_device *dev, const struct sockaddr *from, socklen_t fromlen,
                    uint8_t *datagram, size_t len)
{
    uint32_t type;

    if (len < 4) {
        dev->stats.drop_bad_size++;
        return NB_E_PARSE;
    }
    /* One LE32 word: the three reserved bytes must be zero or the type is unknown. */
    type = get_le32(datagram);
    switch (type) {
    case WG_MSG_INITIATION:
    case WG_MSG_RESPONSE:
    case WG_MSG_COOKIE:
        if ((type == WG_MSG_INITIATION && len != WG_MSG_INITIATION_LEN) ||
            (type == WG_MSG_RESPONSE && len != WG_MSG_RESPONSE_LEN) ||
            (type == WG_MSG_COOKIE && len != WG_MSG_COOKIE_LEN)) {
            dev->stats.drop_bad_size++;
            return NB_E_PARSE;
        }
        if (!dev->local.has_identity) {
            dev->stats.drop_handshake++;
            return NB_E_DROP;
        }
        if (type == WG_MSG_INITIATION)
            return handle_initiation(dev, from, fromlen, datagram, len);
        if (type == WG_MSG_RESPONSE)
            return handle_response(dev, from, fromlen, datagram, len);
        return handle_cookie(dev, datagram);
    case WG_MSG_DATA:
        if (len < WG_MSG_DATA_MIN_LEN) {
            dev->stats.drop_bad_size++;
            return NB_E_PARSE;
        }
        return handle_data(dev, from, fromlen, datagram, len);
    default:
        dev->stats.drop_bad_type++;
        return NB_E_PARSE;
    }
}

/* ---- output ---- */

int wg_device_output(struct wg_device *dev, const uint8_t *pkt, size_t len)
{
    struct wg_peer *peer;
    const uint8_t *dst;
    int family, err;

    if (len > WG_DEVICE_MAX_PACKET)
        return NB_E_INVAL;
    if (len >= 20 && (pkt[0] >> 4) == 4) {
        family = AF_INET;
        dst = pkt + 16;
    } else if (len >= 40 && (pkt[0] >> 4) == 6) {
        family = AF_INET6;
        dst = pkt + 24;
    } else {
        return NB_E_PARSE;
    }
    peer = wg_allowedips_lookup(&dev->aips, family, dst);
    if (!peer) {
        dev->stats.drop_no_route++;
        return NB_E_NOTFOUND;
    }
    /* Keep order: anything staged goes first. */
    if (peer->staged_count)
        send_staged(peer);
    if (peer->staged_count == 0 && encrypt_and_send(peer, pkt, len) == NB_OK)
        return NB_OK;
    if ((err = stage(peer, pkt, len)) != NB_OK)
        return err;
    if (!awaiting_confirmation(peer))
        send_initiation(peer, false);
    return NB_E_AGAIN;
}

/* ---- timers entry point ---- */

static void peer_timers(struct wg_peer *peer, uint64_t now)
{
    struct wg_peer_timers *t = &peer->t;

    if (t->retransmit && t->retransmit <= now) {
        t->retransmit = 0;
        if (peer->handshake_attempts >= WG_MAX_TIMER_HANDSHAKES) {
            /* Gave up after REKEY_ATTEMPT_TIME: drop what waited for this session. */
            t->keepalive = 0;
            staged_free_all(peer);
            wg_noise_remote_handshake_clear(&peer->remote);
            if (!t->zero_keys)
                timer_set(peer, &t->zero_keys, now + 3ull * WG_REJECT_AFTER_TIME_MS);
        } else {
            peer->handshake_attempts++;
            send_initiation(peer, true);
        }
    }
    if (t->keepalive && t->keepalive <= now) {
        t->keepalive = 0;
        send_keepalive(peer);
        if (peer->need_another_keepalive) {
            peer->need_another_keepalive = false;
            timer_set(peer, &t->keepalive, now + WG_KEEPALIVE_TIMEOUT_MS);
        }
    }
    if (t->new_handshake && t->new_handshake <= now) {
        t->new_handshake = 0;
        /* We sent data and heard nothing for KEEPALIVE + REKEY_TIMEOUT: handshake again. */
        send_initiation(peer, false);
    }
    if (t->zero_keys && t->zero_keys <= now) {
        t->zero_keys = 0;
        wg_noise_remote_clear(&peer->remote);
    }
    if (t->persistent && t->persistent <= now) {
        t->persistent = 0;
        send_keepalive(peer);
    }
}

static uint64_t min_deadline(uint64_t a, uint64_t b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    return a < b ? a : b;
}

void wg_device_timers(struct wg_device *dev)
{
    uint64_t now = now_ms(dev), next = 0;
    struct wg_peer *p;

    dev->in_timers = true;
    for (p = dev->peers; p; p = p->next)
        peer_timers(p, now);
    dev->in_timers = false;

    for (p = dev->peers; p; p = p->next) {
        next = min_deadline(next, p->t.retransmit);
        next = min_deadline(next, p->t.keepalive);
        next = min_deadline(next, p->t.new_handshake);
        next = min_deadline(next, p->t.zero_keys);
        next = min_deadline(next, p->t.persistent);
    }
    dev->next_deadline = next;
    if (next && dev->ops.schedule)
        dev->ops.schedule(dev->ops.ctx, next);
}

uint64_t wg_device_next_deadline(const struct wg_device *dev)
{
    return dev->next_deadline;
}

/* ---- configuration ---- */

struct wg_device *wg_device_new(const struct wg_device_ops *ops,
                                const struct wg_device_params *params)
{
    struct wg_noise_ops nops = {0};
    struct wg_device *dev;
    size_t nb = 1;

    if (wg_crypto_init() != NB_OK)
        return NULL;
    dev = calloc(1, sizeof(*dev));
    if (!dev)
        return NULL;
    dev->ops = *ops;
    if (params)
        dev->params = *params;
    if (!dev->params.under_load_threshold)
        dev->params.under_load_threshold = DEFAULT_UNDER_LOAD;
    if (!dev->params.max_staged)
        dev->params.max_staged = DEFAULT_MAX_STAGED;
    if (!dev->params.mtu)
        dev->params.mtu = DEFAULT_MTU;
    if (!dev->params.max_peers)
        dev->params.max_peers = DEFAULT_MAX_PEERS;
    /* One bucket per possible peer: chains stay short (a peer holds at most 3 live indices)
     * without charging every idle account for the largest peer count. */
    while (nb < (size_t)dev->params.max_peers)
        nb <<= 1;
    dev->buckets = calloc(nb, sizeof(*dev->buckets));
    if (!dev->buckets) {
        free(dev);
        return NULL;
    }
    dev->bucket_mask = (uint32_t)(nb - 1);

    nops.ctx = dev;
    nops.now_ms = up_now;
    nops.wall = up_wall;
    nops.random = up_random;
    nops.remote_lookup = up_lookup;
    nops.index_set = up_index_set;
    nops.index_drop = up_index_drop;
    wg_noise_local_init(&dev->local, &nops);
    dev->local.rekey_after_time_ms = dev->params.rekey_after_time_ms;
    wg_cookie_checker_init(&dev->checker, up_random, dev);
    dev->ops.random(dev->ops.ctx, dev->limiter_key, sizeof(dev->limiter_key));
    dev->ops.random(dev->ops.ctx, &dev->jitter_state, sizeof(dev->jitter_state));
    dev->jitter_state |= 1; /* xorshift must not start at 0 */
    wg_allowedips_init(&dev->aips, dev->params.allowedips_max_nodes);
    dev->load_window_start = now_ms(dev);
    return dev;
}

static void peer_destroy(struct wg_peer *peer)
{
    wg_noise_remote_deinit(&peer->remote);
    wg_cookie_maker_deinit(&peer->cookie);
    staged_free_all(peer);
    free(peer->staged);
    sodium_memzero(peer, sizeof(*peer));
    free(peer);
}

void wg_device_free(struct wg_device *dev)
{
    struct wg_peer *p, *n;

    if (!dev)
        return;
    for (p = dev->peers; p; p = n) {
        n = p->next;
        peer_destroy(p);
    }
    wg_allowedips_free(&dev->aips);
    wg_noise_local_deinit(&dev->local);
    wg_cookie_checker_deinit(&dev->checker);
    if (dev->limiter)
        sodium_memzero(dev->limiter, sizeof(*dev->limiter));
    free(dev->limiter);
    free(dev->buckets);
    sodium_memzero(dev, sizeof(*dev));
    free(dev);
}

int wg_device_set_private_key(struct wg_device *dev, const wg_key priv)
{
    struct wg_peer *p;
    int err;

    if ((err = wg_noise_local_set_private(&dev->local, priv)) != NB_OK)
        return err;
    wg_cookie_checker_set_key(&dev->checker, dev->local.pub);
    for (p = dev->peers; p;) {
        struct wg_peer *next = p->next;
        if (sodium_memcmp(p->remote.pub, dev->local.pub, WG_KEY_LEN) == 0) {
            /* A peer with our own public key can never handshake; Linux drops it too. */
            wg_device_remove_peer(dev, p);
        } else {
            wg_noise_remote_clear(&p->remote);
            p->has_sent_handshake = false;
        }
        p = next;
    }
    return NB_OK;
}

bool wg_device_public_key(const struct wg_device *dev, wg_key out)
{
    if (!dev->local.has_identity)
        return false;
    memcpy(out, dev->local.pub, WG_KEY_LEN);
    return true;
}

struct wg_peer *wg_device_peer_lookup(struct wg_device *dev, const wg_key pub)
{
    struct wg_peer *p;

    for (p = dev->peers; p; p = p->next)
        if (sodium_memcmp(p->remote.pub, pub, WG_KEY_LEN) == 0)
            return p;
    return NULL;
}

struct wg_peer *wg_device_add_peer(struct wg_device *dev, const wg_key pub)
{
    struct wg_peer *peer;

    if (dev->npeers >= dev->params.max_peers || wg_device_peer_lookup(dev, pub))
        return NULL;
    if (dev->local.has_identity && sodium_memcmp(dev->local.pub, pub, WG_KEY_LEN) == 0)
        return NULL;
    peer = calloc(1, sizeof(*peer));
    if (!peer)
        return NULL;
    peer->staged = calloc(dev->params.max_staged, sizeof(*peer->staged));
    if (!peer->staged) {
        free(peer);
        return NULL;
    }
    peer->dev = dev;
    wg_noise_remote_init(&peer->remote, &dev->local, pub);
    wg_cookie_maker_init(&peer->cookie, pub);
    peer->next = dev->peers;
    dev->peers = peer;
    dev->npeers++;
    return peer;
}

void wg_device_remove_peer(struct wg_device *dev, struct wg_peer *peer)
{
    struct wg_peer **pp;

    for (pp = &dev->peers; *pp; pp = &(*pp)->next) {
        if (*pp == peer) {
            *pp = peer->next;
            dev->npeers--;
            wg_allowedips_remove_by_peer(&dev->aips, peer);
            peer_destroy(peer);
            return;
        }
    }
}

int wg_device_peer_set_endpoint(struct wg_peer *peer, const struct sockaddr *sa, socklen_t len)
{
    if (!sa) {
        memset(&peer->endpoint, 0, sizeof(peer->endpoint));
        peer->endpoint_len = 0;
        return NB_OK;
    }
    if (len == 0 || len > sizeof(peer->endpoint))
        return NB_E_INVAL;
    update_endpoint(peer, sa, len);
    return NB_OK;
}

socklen_t wg_device_peer_endpoint(const struct wg_peer *peer, struct sockaddr_storage *out)
{
    if (peer->endpoint_len)
        memcpy(out, &peer->endpoint, sizeof(*out));
    return peer->endpoint_len;
}

int wg_device_peer_add_allowed_ip(struct wg_peer *peer, int family, const uint8_t *addr,
                                  uint8_t cidr)
{
    return wg_allowedips_insert(&peer->dev->aips, family, addr, cidr, peer);
}

void wg_device_peer_clear_allowed_ips(struct wg_peer *peer)
{
    wg_allowedips_remove_by_peer(&peer->dev->aips, peer);
}

void wg_device_peer_set_psk(struct wg_peer *peer, const wg_key psk)
{
    wg_noise_remote_set_psk(&peer->remote, psk);
}

void wg_device_peer_set_keepalive(struct wg_peer *peer, uint16_t seconds)
{
    peer->keepalive_s = seconds;
    if (seconds)
        timer_set(peer, &peer->t.persistent, now_ms(peer->dev) + seconds * 1000ull);
    else
        peer->t.persistent = 0;
}

void wg_device_peer_set_user(struct wg_peer *peer, void *user)
{
    peer->user = user;
}

void *wg_device_peer_user(const struct wg_peer *peer)
{
    return peer->user;
}

void wg_device_peer_public_key(const struct wg_peer *peer, wg_key out)
{
    memcpy(out, peer->remote.pub, WG_KEY_LEN);
}

void wg_device_peer_stats(const struct wg_peer *peer, struct wg_peer_stats *out)
{
    *out = peer->stats;
}

bool wg_device_peer_has_session(struct wg_peer *peer)
{
    return wg_noise_remote_ready(&peer->remote);
}

int wg_device_peer_initiate(struct wg_peer *peer)
{
    return send_initiation(peer, false);
}

void wg_device_stats(const struct wg_device *dev, struct wg_device_stats *out)
{
    *out = dev->stats;
}
