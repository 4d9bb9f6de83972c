/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * MAC1 proves the sender knows our public key; MAC2 proves it can receive at its source address.
 * Under load the device demands MAC2 (answering a missing one with a cookie reply) and rate limits
 * sources that do present one; otherwise only MAC1 is checked. The cookie is
 * MAC(secret, source ip || source port), so the responder keeps no per-source state for it.
 */

#include "wg/cookie.h"

#include <string.h>

#include <netinet/in.h>
#include <sodium.h>

#include "platform/err.h"
#include "wg/crypto.h"

/* Serialises ip || port (network order) for the cookie. Returns its length or 0. */
static size_t addr_bytes(uint8_t out[18], const struct sockaddr *sa)
{
    if (!sa)
        return 0;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in sin;

        memcpy(&sin, sa, sizeof(sin));
        memcpy(out, &sin.sin_addr, 4);
        memcpy(out + 4, &sin.sin_port, 2);
        return 6;
    }
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 sin6;

        memcpy(&sin6, sa, sizeof(sin6));
        memcpy(out, &sin6.sin6_addr, 16);
        memcpy(out + 16, &sin6.sin6_port, 2);
        return 18;
    }
    return 0;
}

static void derive_key(uint8_t out[WG_HASH_LEN], const char *label, const uint8_t *pub)
{
    wg_crypto_hash(out, (const uint8_t *)label, 8, pub, WG_KEY_LEN);
}

void wg_cookie_checker_init(struct wg_cookie_checker *cc,
                            void (*random)(void *ctx, void *buf, size_t n), void *random_ctx)
{
    memset(cc, 0, sizeof(*cc));
    cc->random = random;
    cc->random_ctx = random_ctx;
}

void wg_cookie_checker_set_key(struct wg_cookie_checker *cc, const uint8_t *local_pub)
{
    if (local_pub) {
        derive_key(cc->mac1_key, WG_LABEL_MAC1, local_pub);
        derive_key(cc->cookie_key, WG_LABEL_COOKIE, local_pub);
    } else {
        sodium_memzero(cc->mac1_key, sizeof(cc->mac1_key));
        sodium_memzero(cc->cookie_key, sizeof(cc->cookie_key));
    }
    sodium_memzero(cc->secret, sizeof(cc->secret));
    cc->has_secret = false;
}

void wg_cookie_checker_deinit(struct wg_cookie_checker *cc)
{
    sodium_memzero(cc, sizeof(*cc));
}

/* Current cookie for sa; rotates the secret when it is older than COOKIE_SECRET_MAX_AGE. */
static int make_cookie(struct wg_cookie_checker *cc, uint64_t now_ms, uint8_t cookie[WG_COOKIE_LEN],
                       const struct sockaddr *sa)
{
    uint8_t addr[18];
    size_t alen = addr_bytes(addr, sa);

    if (!alen)
        return NB_E_INVAL;
    if (!cc->has_secret || now_ms - cc->secret_birth_ms >= WG_COOKIE_SECRET_MAX_AGE_MS) {
        cc->random(cc->random_ctx, cc->secret, sizeof(cc->secret));
        cc->secret_birth_ms = now_ms;
        cc->has_secret = true;
    }
    wg_crypto_mac(cookie, cc->secret, sizeof(cc->secret), addr, alen);
    return NB_OK;
}

int wg_cookie_checker_validate(struct wg_cookie_checker *cc, uint64_t now_ms, const uint8_t *msg,
                               size_t len, const struct sockaddr *sa, bool check_mac2)
{
    uint8_t mac[WG_MAC_LEN];
    uint8_t cookie[WG_COOKIE_LEN];
    int err = NB_OK;

    if (len < 2 * WG_MAC_LEN)
        return NB_E_DROP;
    wg_crypto_mac(mac, cc->mac1_key, sizeof(cc->mac1_key), msg, len - 2 * WG_MAC_LEN);
    if (crypto_verify_16(mac, msg + len - 2 * WG_MAC_LEN) != 0) {
        err = NB_E_DROP;
        goto out;
    }
    if (!check_mac2)
        goto out;
    if ((err = make_cookie(cc, now_ms, cookie, sa)) != NB_OK)
        goto out;
    wg_crypto_mac(mac, cookie, sizeof(cookie), msg, len - WG_MAC_LEN);
    if (crypto_verify_16(mac, msg + len - WG_MAC_LEN) != 0)
        err = NB_E_COOKIE;
out:
    sodium_memzero(cookie, sizeof(cookie));
    return err;
}

int wg_cookie_checker_create_reply(struct wg_cookie_checker *cc, uint64_t now_ms,
                                   struct wg_msg_cookie *out, uint32_t sender_index,
                                   const uint8_t *msg, size_t len, const struct sockaddr *sa)
{
    uint8_t cookie[WG_COOKIE_LEN];
    uint8_t le[4];
    uint32_t type = WG_MSG_COOKIE;
    int err, i;

    if (len < 2 * WG_MAC_LEN)
        return NB_E_INVAL;
    if ((err = make_cookie(cc, now_ms, cookie, sa)) != NB_OK)
        goto out;
    memset(out, 0, sizeof(*out));
    for (i = 0; i < 4; i++)
        le[i] = (uint8_t)(type >> (8 * i));
    memcpy(&out->type, le, 4);
    for (i = 0; i < 4; i++)
        le[i] = (uint8_t)(sender_index >> (8 * i));
    memcpy(&out->receiver, le, 4);
    cc->random(cc->random_ctx, out->nonce, sizeof(out->nonce));
    /* AD = the MAC1 of the message we answer, binding the reply to it. */
    wg_crypto_xaead_seal(out->cookie_enc, cookie, sizeof(cookie), msg + len - 2 * WG_MAC_LEN,
                         WG_MAC_LEN, out->nonce, cc->cookie_key);
out:
    sodium_memzero(cookie, sizeof(cookie));
    return err;
}

void wg_cookie_maker_init(struct wg_cookie_maker *cm, const uint8_t remote_pub[WG_KEY_LEN])
{
    memset(cm, 0, sizeof(*cm));
    derive_key(cm->mac1_key, WG_LABEL_MAC1, remote_pub);
    derive_key(cm->cookie_key, WG_LABEL_COOKIE, remote_pub);
}

void wg_cookie_maker_deinit(struct wg_cookie_maker *cm)
{
    sodium_memzero(cm, sizeof(*cm));
}

void wg_cookie_maker_mac(struct wg_cookie_maker *cm, uint64_t now_ms, uint8_t *msg, size_t len)
{
    uint8_t *mac1 = msg + len - 2 * WG_MAC_LEN;
    uint8_t *mac2 = msg + len - WG_MAC_LEN;

    wg_crypto_mac(mac1, cm->mac1_key, sizeof(cm->mac1_key), msg, len - 2 * WG_MAC_LEN);
    memcpy(cm->last_mac1, mac1, WG_MAC_LEN);
    cm->has_last_mac1 = true;

    if (cm->has_cookie &&
        now_ms - cm->cookie_birth_ms < WG_COOKIE_SECRET_MAX_AGE_MS - WG_COOKIE_SECRET_LATENCY_MS)
        wg_crypto_mac(mac2, cm->cookie, sizeof(cm->cookie), msg, len - WG_MAC_LEN);
    else
        memset(mac2, 0, WG_MAC_LEN);
}

int wg_cookie_maker_consume_reply(struct wg_cookie_maker *cm, uint64_t now_ms,
                                  const struct wg_msg_cookie *msg)
{
    uint8_t cookie[WG_COOKIE_LEN];
    int err = NB_E_DROP;

    if (!cm->has_last_mac1)
        return NB_E_DROP;
    if (wg_crypto_xaead_open(cookie, msg->cookie_enc, sizeof(msg->cookie_enc), cm->last_mac1,
                             WG_MAC_LEN, msg->nonce, cm->cookie_key) != NB_OK)
        goto out;
    memcpy(cm->cookie, cookie, sizeof(cookie));
    cm->cookie_birth_ms = now_ms;
    cm->has_cookie = true;
    /* One reply per message: a second one for the same MAC1 is ignored. */
    cm->has_last_mac1 = false;
    err = NB_OK;
out:
    sodium_memzero(cookie, sizeof(cookie));
    return err;
}

void wg_ratelimiter_init(struct wg_ratelimiter *rl, const uint8_t hash_key[16])
{
    memset(rl, 0, sizeof(*rl));
    memcpy(rl->hash_key, hash_key, sizeof(rl->hash_key));
}

bool wg_ratelimiter_allow(struct wg_ratelimiter *rl, uint64_t now_ms, const struct sockaddr *sa)
{
    const uint64_t cost = 1000 / WG_RATELIMIT_PPS;
    const uint64_t max = cost * WG_RATELIMIT_BURST;
    struct wg_ratelimit_entry *set, *free_e = NULL, *e;
    uint8_t key[9] = {0};
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t hv, elapsed;
    int i;

    if (!sa)
        return false;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in sin;

        memcpy(&sin, sa, sizeof(sin));
        key[0] = 4;
        memcpy(key + 1, &sin.sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 sin6;

        memcpy(&sin6, sa, sizeof(sin6));
        key[0] = 6;
        memcpy(key + 1, &sin6.sin6_addr, 8); /* /64: one host owns a whole /64 */
    } else {
        return false;
    }

    crypto_shorthash(h, key, sizeof(key), rl->hash_key);
    memcpy(&hv, h, sizeof(hv));
    set = rl->e[hv & (WG_RATELIMIT_SETS - 1)];

    for (i = 0; i < WG_RATELIMIT_WAYS; i++) {
        e = &set[i];
        if (e->used && now_ms - e->last_ms > WG_RATELIMIT_IDLE_MS)
            e->used = false; /* expired */
        if (!e->used) {
            if (!free_e)
                free_e = e;
            continue;
        }
        if (memcmp(e->key, key, sizeof(key)) != 0)
            continue;
        elapsed = now_ms - e->last_ms;
        e->tokens = e->tokens + elapsed > max ? max : e->tokens + elapsed;
        e->last_ms = now_ms;
        if (e->tokens < cost)
            return false;
        e->tokens -= cost;
        return true;
    }
    if (!free_e)
        return false; /* set full of live sources: refuse rather than evict */
    memcpy(free_e->key, key, sizeof(key));
    free_e->used = true;
    free_e->last_ms = now_ms;
    free_e->tokens = max - cost;
    return true;
}
