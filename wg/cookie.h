/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_WG_COOKIE_H
#define NB_WG_COOKIE_H

/*
 * DoS mitigation (whitepaper §5.3, §5.4.7): MAC1/MAC2 on handshake messages, the responder's
 * cookie checker and cookie replies, the initiator's cookie maker, and a per-source-IP token
 * bucket for handshakes under load. Source addresses are passed as struct sockaddr (AF_INET or
 * AF_INET6), so nothing here touches a socket. Time is passed in as monotonic milliseconds.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "wg/messages.h"

/* Responder side, one per device, keyed on our static public key. */
struct wg_cookie_checker {
    uint8_t mac1_key[WG_HASH_LEN];   /* HASH("mac1----" || our public key) */
    uint8_t cookie_key[WG_HASH_LEN]; /* HASH("cookie--" || our public key) */
    uint8_t secret[WG_HASH_LEN];     /* random, rotated every COOKIE_SECRET_MAX_AGE */
    uint64_t secret_birth_ms;
    bool has_secret;
    void (*random)(void *ctx, void *buf, size_t n);
    void *random_ctx;
};

/* Initiator side, one per remote, keyed on the remote's static public key. */
struct wg_cookie_maker {
    uint8_t mac1_key[WG_HASH_LEN];
    uint8_t cookie_key[WG_HASH_LEN];
    uint8_t cookie[WG_COOKIE_LEN];
    uint64_t cookie_birth_ms;
    bool has_cookie;
    uint8_t last_mac1[WG_MAC_LEN]; /* MAC1 of the last handshake message we sent */
    bool has_last_mac1;
};

void wg_cookie_checker_init(struct wg_cookie_checker *cc,
                            void (*random)(void *ctx, void *buf, size_t n), void *random_ctx);
/* (Re)keys the checker on our public key; NULL clears. Also drops the current secret. */
void wg_cookie_checker_set_key(struct wg_cookie_checker *cc, const uint8_t *local_pub);
void wg_cookie_checker_deinit(struct wg_cookie_checker *cc);

/*
 * Checks the MACs of a handshake message msg[0,len) (initiation or response: the last 32 bytes
 * are MAC1 || MAC2). NB_OK if MAC1 is valid and, when check_mac2, MAC2 is a valid cookie MAC for
 * sa; NB_E_DROP if MAC1 is invalid; NB_E_COOKIE if check_mac2 and MAC2 is missing or wrong (the
 * caller should send a cookie reply); NB_E_INVAL for an unsupported address family.
 */
int wg_cookie_checker_validate(struct wg_cookie_checker *cc, uint64_t now_ms, const uint8_t *msg,
                               size_t len, const struct sockaddr *sa, bool check_mac2);

/*
 * Builds a cookie reply to the handshake message msg[0,len) whose sender index is
 * sender_index, received from sa. NB_OK or NB_E_INVAL (address family).
 */
int wg_cookie_checker_create_reply(struct wg_cookie_checker *cc, uint64_t now_ms,
                                   struct wg_msg_cookie *out, uint32_t sender_index,
                                   const uint8_t *msg, size_t len, const struct sockaddr *sa);

void wg_cookie_maker_init(struct wg_cookie_maker *cm, const uint8_t remote_pub[WG_KEY_LEN]);
void wg_cookie_maker_deinit(struct wg_cookie_maker *cm);

/*
 * Writes MAC1 and MAC2 into the last 32 bytes of the handshake message msg[0,len). MAC2 is zero
 * unless we hold a cookie younger than MAX_AGE - LATENCY. Remembers MAC1 for a cookie reply.
 */
void wg_cookie_maker_mac(struct wg_cookie_maker *cm, uint64_t now_ms, uint8_t *msg, size_t len);

/*
 * Decrypts a cookie reply addressed to us (the caller matched its receiver index to this remote).
 * NB_OK stores the cookie; NB_E_DROP if we sent nothing it could answer or it fails to decrypt.
 */
int wg_cookie_maker_consume_reply(struct wg_cookie_maker *cm, uint64_t now_ms,
                                  const struct wg_msg_cookie *msg);

/*
 * Per-source token bucket for handshake messages under load, as in Linux's ratelimiter: 20
 * packets/s per source with a burst of 5. IPv4 sources are keyed by address, IPv6 by /64. The table
 * is fixed-size and set-associative (1024 sets x 4 ways); an entry idle for more than a second is
 * free for reuse. When a source's set is full of live entries, it is refused.
 */
enum {
    WG_RATELIMIT_PPS = 20,
    WG_RATELIMIT_BURST = 5,
    WG_RATELIMIT_SETS = 1024,
    WG_RATELIMIT_WAYS = 4,
    WG_RATELIMIT_IDLE_MS = 1000,
};

struct wg_ratelimit_entry {
    uint8_t key[9]; /* family byte + 4 (v4) or 8 (v6 /64) address bytes */
    bool used;
    uint64_t last_ms;
    uint64_t tokens; /* in ms of budget; a packet costs 1000 / PPS */
};

struct wg_ratelimiter {
    uint8_t hash_key[16]; /* SipHash key so sources cannot aim at one set */
    struct wg_ratelimit_entry e[WG_RATELIMIT_SETS][WG_RATELIMIT_WAYS];
};

void wg_ratelimiter_init(struct wg_ratelimiter *rl, const uint8_t hash_key[16]);
/* True if a handshake from sa may be processed now (and charges it). Unknown family: false. */
bool wg_ratelimiter_allow(struct wg_ratelimiter *rl, uint64_t now_ms, const struct sockaddr *sa);

#endif
