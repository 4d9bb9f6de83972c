/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * Noise_IKpsk2 handshake and transport keys for WireGuard (whitepaper §5.4). Sits under device.c:
 * the device parses messages, checks MACs (cookie.c), and calls the create/consume pairs here;
 * this file never sees a packet buffer except for the in-place transport AEAD.
 *
 *   IKpsk2:
 *     <- s
 *     ...
 *     -> e, es, s, ss, {t}
 *     <- e, ee, se, psk, {}
 *
 * Every transition checks the handshake state first and fails closed. Every consume step works on
 * a stack copy of the handshake and writes the remote only after all checks pass (compute first,
 * commit after); every exit wipes the stack secrets.
 */

#include "wg/noise.h"

#include <string.h>

#include <sodium.h>

#include "platform/err.h"

/* HASH(h || data) into h. */
static void mix_hash(uint8_t h[WG_HASH_LEN], const uint8_t *data, size_t len)
{
    wg_crypto_hash(h, h, WG_HASH_LEN, data, len);
}

/* (ck, key) = KDF2(ck, DH(priv, pub)). */
static int mix_dh(uint8_t ck[WG_HASH_LEN], uint8_t *key, const uint8_t priv[WG_KEY_LEN],
                  const uint8_t pub[WG_KEY_LEN])
{
    uint8_t dh[WG_KEY_LEN];
    int err;

    err = wg_crypto_dh(dh, priv, pub);
    if (err == NB_OK)
        wg_crypto_kdf(ck, key, NULL, ck, dh, sizeof(dh));
    sodium_memzero(dh, sizeof(dh));
    return err;
}

/*
 * (ck, key) = KDF2(ck, DH(s_local, s_remote)) with the DH result cached in the remote: it only
 * changes with either static key, and an X25519 is the largest cost of a handshake.
 */
static int mix_ss(uint8_t ck[WG_HASH_LEN], uint8_t *key, struct wg_noise_remote *r)
{
    struct wg_noise_local *l = r->local;

    if (!r->ss_valid || sodium_memcmp(r->ss_for, l->pub, WG_KEY_LEN) != 0) {
        int err = wg_crypto_dh(r->ss, l->priv, r->pub);
        if (err != NB_OK) {
            sodium_memzero(r->ss, sizeof(r->ss));
            r->ss_valid = false;
            return err;
        }
        memcpy(r->ss_for, l->pub, WG_KEY_LEN);
        r->ss_valid = true;
    }
    wg_crypto_kdf(ck, key, NULL, ck, r->ss, sizeof(r->ss));
    return NB_OK;
}

/* (ck, t, key) = KDF3(ck, psk); h = HASH(h || t). */
static void mix_psk(uint8_t ck[WG_HASH_LEN], uint8_t h[WG_HASH_LEN], uint8_t key[WG_KEY_LEN],
                    const uint8_t psk[WG_KEY_LEN])
{
    uint8_t t[WG_HASH_LEN];

    wg_crypto_kdf(ck, t, key, ck, psk, WG_KEY_LEN);
    mix_hash(h, t, sizeof(t));
    sodium_memzero(t, sizeof(t));
}

static void encrypt_and_hash(uint8_t *dst, const uint8_t *src, size_t len,
                             const uint8_t key[WG_KEY_LEN], uint8_t h[WG_HASH_LEN])
{
    wg_crypto_aead_seal(dst, src, len, h, WG_HASH_LEN, 0, key);
    mix_hash(h, dst, len + WG_AEAD_TAG_LEN);
}

static int decrypt_and_hash(uint8_t *dst, const uint8_t *src, size_t len,
                            const uint8_t key[WG_KEY_LEN], uint8_t h[WG_HASH_LEN])
{
    if (wg_crypto_aead_open(dst, src, len, h, WG_HASH_LEN, 0, key) != NB_OK)
        return NB_E_DROP;
    mix_hash(h, src, len);
    return NB_OK;
}

/* Fresh clamped ephemeral key pair. */
static int ephemeral(struct wg_noise_local *l, uint8_t priv[WG_KEY_LEN], uint8_t pub[WG_KEY_LEN])
{
    l->ops.random(l->ops.ctx, priv, WG_KEY_LEN);
    wg_crypto_clamp(priv);
    return wg_crypto_pubkey(pub, priv) == NB_OK ? NB_OK : NB_E_DROP;
}

/* Initial chaining key and hash: ck = HASH(CONSTRUCTION), h = HASH(HASH(ck || ID) || s_resp). */
static void handshake_start(uint8_t ck[WG_HASH_LEN], uint8_t h[WG_HASH_LEN],
                            const uint8_t responder_pub[WG_KEY_LEN])
{
    wg_crypto_hash(ck, (const uint8_t *)WG_NOISE_CONSTRUCTION, strlen(WG_NOISE_CONSTRUCTION), NULL,
                   0);
    wg_crypto_hash(h, ck, WG_HASH_LEN, (const uint8_t *)WG_NOISE_IDENTIFIER,
                   strlen(WG_NOISE_IDENTIFIER));
    mix_hash(h, responder_pub, WG_KEY_LEN);
}

static uint64_t now_ms(const struct wg_noise_local *l)
{
    return l->ops.now_ms(l->ops.ctx);
}

void wg_noise_local_init(struct wg_noise_local *l, const struct wg_noise_ops *ops)
{
    memset(l, 0, sizeof(*l));
    l->ops = *ops;
}

int wg_noise_local_set_private(struct wg_noise_local *l, const uint8_t priv[WG_KEY_LEN])
{
    uint8_t k[WG_KEY_LEN], pub[WG_KEY_LEN];
    int err = NB_OK;

    if (!priv) {
        sodium_memzero(l->priv, sizeof(l->priv));
        memset(l->pub, 0, sizeof(l->pub));
        l->has_identity = false;
        return NB_OK;
    }
    memcpy(k, priv, sizeof(k));
    wg_crypto_clamp(k);
    if (wg_crypto_pubkey(pub, k) != NB_OK || sodium_is_zero(pub, sizeof(pub))) {
        err = NB_E_INVAL;
        goto out;
    }
    memcpy(l->priv, k, sizeof(k));
    memcpy(l->pub, pub, sizeof(pub));
    l->has_identity = true;
out:
    sodium_memzero(k, sizeof(k));
    return err;
}

void wg_noise_local_deinit(struct wg_noise_local *l)
{
    sodium_memzero(l, sizeof(*l));
}

void wg_noise_remote_init(struct wg_noise_remote *r, struct wg_noise_local *l,
                          const uint8_t pub[WG_KEY_LEN])
{
    memset(r, 0, sizeof(*r));
    r->local = l;
    memcpy(r->pub, pub, WG_KEY_LEN);
}

void wg_noise_remote_set_psk(struct wg_noise_remote *r, const uint8_t *psk)
{
    if (psk)
        memcpy(r->psk, psk, WG_KEY_LEN);
    else
        sodium_memzero(r->psk, WG_KEY_LEN);
}

static void keypair_drop(struct wg_noise_remote *r, struct wg_noise_keypair *kp)
{
    if (!kp || !kp->live)
        return;
    r->local->ops.index_drop(r->local->ops.ctx, kp->local_index);
    sodium_memzero(kp, sizeof(*kp));
}

void wg_noise_remote_handshake_clear(struct wg_noise_remote *r)
{
    if (r->hs.state != WG_NOISE_HS_ZEROED && r->hs.local_index != 0)
        r->local->ops.index_drop(r->local->ops.ctx, r->hs.local_index);
    sodium_memzero(&r->hs, sizeof(r->hs));
}

void wg_noise_remote_clear(struct wg_noise_remote *r)
{
    int i;

    wg_noise_remote_handshake_clear(r);
    for (i = 0; i < 3; i++)
        keypair_drop(r, &r->kp[i]);
    r->next = r->current = r->previous = NULL;
    sodium_memzero(r->ss, sizeof(r->ss));
    r->ss_valid = false;
}

void wg_noise_remote_deinit(struct wg_noise_remote *r)
{
    wg_noise_remote_clear(r);
    sodium_memzero(r, sizeof(*r));
}

int wg_noise_create_initiation(struct wg_noise_remote *r, uint32_t *s_idx, uint8_t ue[WG_KEY_LEN],
                               uint8_t es[WG_KEY_LEN + WG_AEAD_TAG_LEN],
                               uint8_t ets[WG_TAI64N_LEN + WG_AEAD_TAG_LEN])
{
    struct wg_noise_local *l = r->local;
    struct wg_noise_handshake hs;
    uint8_t key[WG_KEY_LEN];
    uint8_t ts[WG_TAI64N_LEN];
    struct timespec wall;
    uint32_t idx;
    int err;

    memset(&hs, 0, sizeof(hs));
    if (!l->has_identity) {
        err = NB_E_INVAL;
        goto out;
    }
    handshake_start(hs.ck, hs.hash, r->pub);

    /* e */
    if ((err = ephemeral(l, hs.e_priv, ue)) != NB_OK)
        goto out;
    wg_crypto_kdf(hs.ck, NULL, NULL, hs.ck, ue, WG_KEY_LEN);
    mix_hash(hs.hash, ue, WG_KEY_LEN);

    /* es */
    if ((err = mix_dh(hs.ck, key, hs.e_priv, r->pub)) != NB_OK)
        goto out;

    /* s */
    encrypt_and_hash(es, l->pub, WG_KEY_LEN, key, hs.hash);

    /* ss */
    if ((err = mix_ss(hs.ck, key, r)) != NB_OK)
        goto out;

    /* {t} */
    l->ops.wall(l->ops.ctx, &wall);
    wg_crypto_tai64n(ts, &wall);
    encrypt_and_hash(ets, ts, WG_TAI64N_LEN, key, hs.hash);

    /* Commit: a new initiation replaces any handshake in progress. */
    wg_noise_remote_handshake_clear(r);
    if ((err = l->ops.index_set(l->ops.ctx, r, &idx)) != NB_OK)
        goto out;
    hs.local_index = idx;
    hs.state = WG_NOISE_HS_CREATED_INITIATION;
    r->hs = hs;
    *s_idx = idx;
out:
    sodium_memzero(&hs, sizeof(hs));
    sodium_memzero(key, sizeof(key));
    return err;
}

int wg_noise_consume_initiation(struct wg_noise_local *l, struct wg_noise_remote **rp,
                                uint32_t s_idx, const uint8_t ue[WG_KEY_LEN],
                                const uint8_t es[WG_KEY_LEN + WG_AEAD_TAG_LEN],
                                const uint8_t ets[WG_TAI64N_LEN + WG_AEAD_TAG_LEN])
{
    struct wg_noise_handshake hs;
    struct wg_noise_remote *r;
    uint8_t key[WG_KEY_LEN];
    uint8_t s_pub[WG_KEY_LEN];
    uint8_t ts[WG_TAI64N_LEN];
    uint64_t now;
    int err;

    memset(&hs, 0, sizeof(hs));
    if (!l->has_identity) {
        err = NB_E_INVAL;
        goto out;
    }
    handshake_start(hs.ck, hs.hash, l->pub);

    /* e */
    wg_crypto_kdf(hs.ck, NULL, NULL, hs.ck, ue, WG_KEY_LEN);
    mix_hash(hs.hash, ue, WG_KEY_LEN);

    /* es */
    if ((err = mix_dh(hs.ck, key, l->priv, ue)) != NB_OK)
        goto out;

    /* s */
    if ((err = decrypt_and_hash(s_pub, es, WG_KEY_LEN + WG_AEAD_TAG_LEN, key, hs.hash)) != NB_OK)
        goto out;
    r = l->ops.remote_lookup(l->ops.ctx, s_pub);
    if (!r) {
        err = NB_E_DROP;
        goto out;
    }

    /* ss (r was found by s_pub, so r->pub == s_pub) */
    if ((err = mix_ss(hs.ck, key, r)) != NB_OK)
        goto out;

    /* {t} */
    if ((err = decrypt_and_hash(ts, ets, WG_TAI64N_LEN + WG_AEAD_TAG_LEN, key, hs.hash)) != NB_OK)
        goto out;

    /* Replay: the timestamp must be strictly greater than any accepted before (big-endian). */
    if (memcmp(ts, r->latest_ts, WG_TAI64N_LEN) <= 0) {
        err = NB_E_REPLAY;
        goto out;
    }
    /* Flood: at most INITIATIONS_PER_SECOND consumed initiations per remote. */
    now = now_ms(l);
    if (r->has_last_init && now - r->last_init_ms < 1000 / WG_INITIATIONS_PER_SECOND) {
        err = NB_E_DROP;
        goto out;
    }

    /* Commit. */
    wg_noise_remote_handshake_clear(r);
    hs.state = WG_NOISE_HS_CONSUMED_INITIATION;
    hs.remote_index = s_idx;
    memcpy(hs.remote_e, ue, WG_KEY_LEN);
    r->hs = hs;
    memcpy(r->latest_ts, ts, WG_TAI64N_LEN);
    r->last_init_ms = now;
    r->has_last_init = true;
    *rp = r;
out:
    sodium_memzero(&hs, sizeof(hs));
    sodium_memzero(key, sizeof(key));
    return err;
}

int wg_noise_create_response(struct wg_noise_remote *r, uint32_t *s_idx, uint32_t *r_idx,
                             uint8_t ue[WG_KEY_LEN], uint8_t en[WG_AEAD_TAG_LEN])
{
    struct wg_noise_local *l = r->local;
    struct wg_noise_handshake hs;
    uint8_t key[WG_KEY_LEN];
    uint8_t dh[WG_KEY_LEN];
    uint32_t idx;
    int err;

    if (r->hs.state != WG_NOISE_HS_CONSUMED_INITIATION)
        return NB_E_INVAL;
    hs = r->hs;

    /* e */
    if ((err = ephemeral(l, hs.e_priv, ue)) != NB_OK)
        goto out;
    wg_crypto_kdf(hs.ck, NULL, NULL, hs.ck, ue, WG_KEY_LEN);
    mix_hash(hs.hash, ue, WG_KEY_LEN);

    /* ee */
    if ((err = wg_crypto_dh(dh, hs.e_priv, hs.remote_e)) != NB_OK)
        goto out;
    wg_crypto_kdf(hs.ck, NULL, NULL, hs.ck, dh, WG_KEY_LEN);

    /* se */
    if ((err = wg_crypto_dh(dh, hs.e_priv, r->pub)) != NB_OK)
        goto out;
    wg_crypto_kdf(hs.ck, NULL, NULL, hs.ck, dh, WG_KEY_LEN);

    /* psk */
    mix_psk(hs.ck, hs.hash, key, r->psk);

    /* {} */
    encrypt_and_hash(en, NULL, 0, key, hs.hash);

    /* Commit. */
    if ((err = l->ops.index_set(l->ops.ctx, r, &idx)) != NB_OK)
        goto out;
    hs.local_index = idx;
    hs.state = WG_NOISE_HS_CREATED_RESPONSE;
    r->hs = hs;
    *s_idx = idx;
    *r_idx = hs.remote_index;
out:
    sodium_memzero(&hs, sizeof(hs));
    sodium_memzero(key, sizeof(key));
    sodium_memzero(dh, sizeof(dh));
    return err;
}

int wg_noise_consume_response(struct wg_noise_remote *r, uint32_t s_idx, uint32_t r_idx,
                              const uint8_t ue[WG_KEY_LEN], const uint8_t en[WG_AEAD_TAG_LEN])
{
    struct wg_noise_local *l = r->local;
    struct wg_noise_handshake hs;
    uint8_t key[WG_KEY_LEN];
    uint8_t dh[WG_KEY_LEN];
    int err;

    if (r->hs.state != WG_NOISE_HS_CREATED_INITIATION || r->hs.local_index != r_idx ||
        !l->has_identity)
        return NB_E_DROP;
    hs = r->hs;

    /* e */
    wg_crypto_kdf(hs.ck, NULL, NULL, hs.ck, ue, WG_KEY_LEN);
    mix_hash(hs.hash, ue, WG_KEY_LEN);

    /* ee */
    if ((err = wg_crypto_dh(dh, hs.e_priv, ue)) != NB_OK)
        goto out;
    wg_crypto_kdf(hs.ck, NULL, NULL, hs.ck, dh, WG_KEY_LEN);

    /* se */
    if ((err = wg_crypto_dh(dh, l->priv, ue)) != NB_OK)
        goto out;
    wg_crypto_kdf(hs.ck, NULL, NULL, hs.ck, dh, WG_KEY_LEN);

    /* psk */
    mix_psk(hs.ck, hs.hash, key, r->psk);

    /* {} */
    if ((err = decrypt_and_hash(NULL, en, WG_AEAD_TAG_LEN, key, hs.hash)) != NB_OK)
        goto out;

    /* Commit: the state and index were checked above and nothing ran in between. */
    hs.state = WG_NOISE_HS_CONSUMED_RESPONSE;
    hs.remote_index = s_idx;
    memcpy(hs.remote_e, ue, WG_KEY_LEN);
    r->hs = hs;
out:
    sodium_memzero(&hs, sizeof(hs));
    sodium_memzero(key, sizeof(key));
    sodium_memzero(dh, sizeof(dh));
    return err;
}

int wg_noise_begin_session(struct wg_noise_remote *r)
{
    struct wg_noise_keypair *kp = NULL, *keep;
    uint8_t t1[WG_KEY_LEN], t2[WG_KEY_LEN];
    bool initiator;
    int i;

    if (r->hs.state == WG_NOISE_HS_CONSUMED_RESPONSE)
        initiator = true;
    else if (r->hs.state == WG_NOISE_HS_CREATED_RESPONSE)
        initiator = false;
    else
        return NB_E_INVAL;

    wg_crypto_kdf(t1, t2, NULL, r->hs.ck, NULL, 0);

    /*
     * Make room. Initiator: the new keypair is current at once; the old next (if any, it was
     * never confirmed but the peer may still use it) or else the old current becomes previous.
     * Responder: the new keypair waits in next for confirmation; current stays as it is.
     */
    if (initiator) {
        keep = r->next ? r->next : r->current;
        if (r->next)
            keypair_drop(r, r->current);
        keypair_drop(r, r->previous);
        r->previous = keep;
        r->current = NULL;
        r->next = NULL;
    } else {
        keypair_drop(r, r->next);
        keypair_drop(r, r->previous);
        r->next = NULL;
        r->previous = NULL;
    }
    for (i = 0; i < 3; i++) {
        if (!r->kp[i].live) {
            kp = &r->kp[i];
            break;
        }
    }
    /* At most two keypairs survive above, so a slot is always free. */
    if (!kp) {
        sodium_memzero(t1, sizeof(t1));
        sodium_memzero(t2, sizeof(t2));
        return NB_E_INVAL;
    }

    memset(kp, 0, sizeof(*kp));
    kp->live = true;
    kp->initiator = initiator;
    kp->local_index = r->hs.local_index;
    kp->remote_index = r->hs.remote_index;
    memcpy(kp->send_key, initiator ? t1 : t2, WG_KEY_LEN);
    memcpy(kp->recv_key, initiator ? t2 : t1, WG_KEY_LEN);
    kp->birth_ms = now_ms(r->local);
    wg_counter_init(&kp->recv_counter);
    if (initiator)
        r->current = kp;
    else
        r->next = kp;

    /* The handshake's index now belongs to the keypair: wipe without dropping it. */
    sodium_memzero(&r->hs, sizeof(r->hs));
    sodium_memzero(t1, sizeof(t1));
    sodium_memzero(t2, sizeof(t2));
    return NB_OK;
}

static bool keypair_usable(const struct wg_noise_remote *r, const struct wg_noise_keypair *kp,
                           uint64_t now)
{
    return kp && kp->live && now - kp->birth_ms < WG_REJECT_AFTER_TIME_MS &&
           kp->send_counter < WG_REJECT_AFTER_MESSAGES;
}

bool wg_noise_remote_ready(struct wg_noise_remote *r)
{
    return keypair_usable(r, r->current, now_ms(r->local));
}

int wg_noise_encrypt(struct wg_noise_remote *r, uint32_t *r_idx, uint64_t *nonce, uint8_t *buf,
                     size_t len)
{
    struct wg_noise_keypair *kp = r->current;
    uint64_t now = now_ms(r->local);
    uint64_t n;

    if (!keypair_usable(r, kp, now))
        return NB_E_EXPIRED;
    n = kp->send_counter++;
    wg_crypto_aead_seal(buf, buf, len, NULL, 0, n, kp->send_key);
    *r_idx = kp->remote_index;
    *nonce = n;
    if (kp->send_counter > WG_REKEY_AFTER_MESSAGES ||
        (kp->initiator &&
         now - kp->birth_ms >= (r->local->rekey_after_time_ms ? r->local->rekey_after_time_ms
                                                              : WG_REKEY_AFTER_TIME_MS)))
        return NB_E_STALE;
    return NB_OK;
}

struct wg_noise_keypair *wg_noise_keypair_lookup(struct wg_noise_remote *r, uint32_t idx)
{
    int i;

    for (i = 0; i < 3; i++)
        if (r->kp[i].live && r->kp[i].local_index == idx)
            return &r->kp[i];
    return NULL;
}

int wg_noise_decrypt(struct wg_noise_remote *r, uint32_t idx, uint64_t nonce, uint8_t *buf,
                     size_t len, unsigned *flags)
{
    struct wg_noise_keypair *kp;
    uint64_t now = now_ms(r->local);
    int err;

    *flags = 0;
    kp = wg_noise_keypair_lookup(r, idx);
    if (!kp)
        return NB_E_DROP;
    if (now - kp->birth_ms >= WG_REJECT_AFTER_TIME_MS || nonce >= WG_REJECT_AFTER_MESSAGES)
        return NB_E_EXPIRED;
    if (wg_crypto_aead_open(buf, buf, len, NULL, 0, nonce, kp->recv_key) != NB_OK)
        return NB_E_DROP;
    /* Authenticated: only now may the counter move the window. */
    if ((err = wg_counter_validate(&kp->recv_counter, nonce)) != NB_OK)
        return err;

    if (kp == r->next) {
        /* Key confirmation: next -> current -> previous. */
        keypair_drop(r, r->previous);
        r->previous = r->current;
        r->current = r->next;
        r->next = NULL;
        *flags |= WG_NOISE_RX_CONFIRMED;
    }
    if (kp == r->current && kp->initiator &&
        now - kp->birth_ms >=
            WG_REJECT_AFTER_TIME_MS - WG_KEEPALIVE_TIMEOUT_MS - WG_REKEY_TIMEOUT_MS)
        *flags |= WG_NOISE_RX_REKEY;
    return NB_OK;
}
