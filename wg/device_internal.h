/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_WG_DEVICE_INTERNAL_H
#define NB_WG_DEVICE_INTERNAL_H

/*
 * Layout of the device and peer objects. Only wg/device.c and the wg unit tests (which inspect
 * keys and timers) may include this; everyone else uses the opaque API in wg/device.h.
 */

#include <sys/socket.h>

#include "wg/allowedips.h"
#include "wg/cookie.h"
#include "wg/device.h"
#include "wg/noise.h"

/* A receiver index bound to a peer. Each peer embeds enough for its handshake + 3 keypairs. */
struct wg_index_entry {
    struct wg_index_entry *next; /* hash chain */
    struct wg_peer *peer;
    uint32_t index;
    bool used;
};

enum { WG_PEER_INDICES = 4 };

struct wg_staged {
    uint8_t *buf;
    size_t len;
};

/* Timer deadlines in monotonic ms; 0 = not armed. */
struct wg_peer_timers {
    uint64_t retransmit;    /* handshake retransmit (REKEY_TIMEOUT + jitter) */
    uint64_t keepalive;     /* passive keepalive (KEEPALIVE_TIMEOUT after receiving) */
    uint64_t new_handshake; /* sent data, heard nothing back */
    uint64_t zero_keys;     /* 3 x REJECT_AFTER_TIME after the last session */
    uint64_t persistent;    /* persistent keepalive */
};

struct wg_peer {
    struct wg_device *dev;
    struct wg_peer *next;
    struct wg_noise_remote remote;
    struct wg_cookie_maker cookie;
    struct wg_index_entry idx[WG_PEER_INDICES];
    struct sockaddr_storage endpoint;
    socklen_t endpoint_len; /* 0 = unknown */
    uint16_t keepalive_s;
    void *user;

    struct wg_peer_timers t;
    unsigned handshake_attempts;
    bool need_another_keepalive;
    bool sent_lastminute_handshake;
    bool has_sent_handshake;
    uint64_t last_sent_handshake_ms;

    struct wg_staged *staged; /* ring of dev->params.max_staged */
    unsigned staged_head, staged_count;

    struct wg_peer_stats stats;
};

struct wg_device {
    struct wg_device_ops ops;
    struct wg_device_params params;
    struct wg_noise_local local;
    struct wg_cookie_checker checker;
    struct wg_ratelimiter *limiter; /* 128 KiB: allocated the first time the device is under load */
    uint8_t limiter_key[16];
    uint64_t jitter_state; /* xorshift64* for timer jitter (see jitter_ms) */
    struct wg_allowedips aips;
    struct wg_peer *peers;
    unsigned npeers;

    struct wg_index_entry **buckets;
    uint32_t bucket_mask;

    /* Handshake load estimate: counts in the current and previous 1 s windows. */
    uint64_t load_window_start;
    unsigned load_cur, load_prev;

    uint64_t next_deadline; /* as last passed to ops.schedule, 0 = none */
    bool in_timers;

    struct wg_device_stats stats;
};

#endif
