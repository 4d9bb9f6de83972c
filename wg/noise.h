/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_WG_NOISE_H
#define NB_WG_NOISE_H

/*
 * The WireGuard handshake (Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s) and transport crypto, shaped
 * after OpenBSD's wg_noise: byte arrays and indices in, byte arrays out; no packets, sockets or
 * clocks. Everything from the outside world (time, randomness, index allocation, lookup of a
 * remote by public key) comes through struct wg_noise_ops so tests can stub it.
 *
 * Single-threaded: the device calls these from one event loop, so there is no locking.
 *
 * Message flow (initiator I, responder R):
 *   I: create_initiation --> R: consume_initiation, create_response, begin_session (keys in "next")
 *   I: consume_response, begin_session (keys in "current", usable at once)
 *   I: first transport packet --> R: decrypt with "next" confirms, next becomes current.
 * A responder therefore cannot send transport data until it has received some (key confirmation).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "wg/counter.h"
#include "wg/crypto.h"
#include "wg/messages.h"

struct wg_noise_remote;

/* Upcalls. ctx is passed back unchanged. All members are required. */
struct wg_noise_ops {
    void *ctx;
    uint64_t (*now_ms)(void *ctx);                  /* monotonic milliseconds */
    void (*wall)(void *ctx, struct timespec *ts);   /* wall clock for TAI64N */
    void (*random)(void *ctx, void *buf, size_t n); /* cryptographic randomness */
    /* Remote whose static public key is pub, or NULL. */
    struct wg_noise_remote *(*remote_lookup)(void *ctx, const uint8_t pub[WG_KEY_LEN]);
    /* Allocates a fresh non-zero index unique on the device, bound to r. NB_OK or NB_E_NOMEM. */
    int (*index_set)(void *ctx, struct wg_noise_remote *r, uint32_t *index);
    /* Releases an index previously returned by index_set. */
    void (*index_drop)(void *ctx, uint32_t index);
};

enum wg_noise_hs_state {
    WG_NOISE_HS_ZEROED = 0,
    WG_NOISE_HS_CREATED_INITIATION,
    WG_NOISE_HS_CONSUMED_INITIATION,
    WG_NOISE_HS_CREATED_RESPONSE,
    WG_NOISE_HS_CONSUMED_RESPONSE,
};

struct wg_noise_handshake {
    enum wg_noise_hs_state state;
    uint32_t local_index;  /* ours, non-zero while allocated */
    uint32_t remote_index; /* theirs */
    uint8_t e_priv[WG_KEY_LEN];
    uint8_t remote_e[WG_KEY_LEN];
    uint8_t hash[WG_HASH_LEN];
    uint8_t ck[WG_HASH_LEN];
};

struct wg_noise_keypair {
    bool live;
    bool initiator;
    uint32_t local_index;  /* receivers address packets to us with this */
    uint32_t remote_index; /* we address packets to them with this */
    uint8_t send_key[WG_KEY_LEN];
    uint8_t recv_key[WG_KEY_LEN];
    uint64_t send_counter; /* next nonce to use */
    struct wg_counter recv_counter;
    uint64_t birth_ms;
};

struct wg_noise_local {
    bool has_identity;
    uint8_t priv[WG_KEY_LEN];
    uint8_t pub[WG_KEY_LEN];
    struct wg_noise_ops ops;
    /* REKEY_AFTER_TIME override in ms (0 = the protocol's 120 s). A test knob: the interop suite
     * shortens it to observe rekeys against a real peer in seconds. */
    uint64_t rekey_after_time_ms;
};

struct wg_noise_remote {
    struct wg_noise_local *local;
    uint8_t pub[WG_KEY_LEN];
    uint8_t psk[WG_KEY_LEN]; /* all zero when no PSK is configured, as the protocol says */
    struct wg_noise_handshake hs;
    uint8_t latest_ts[WG_TAI64N_LEN]; /* greatest accepted initiation timestamp */
    uint64_t last_init_ms;            /* when we last consumed an initiation from this remote */
    bool has_last_init;
    /* Fixed keypair slots; next/current/previous point into kp[] or are NULL. */
    struct wg_noise_keypair kp[3];
    struct wg_noise_keypair *next;
    struct wg_noise_keypair *current;
    struct wg_noise_keypair *previous;
    /* DH(local static, remote static), computed on first use and kept (as Linux does): both
     * handshake directions need it. Secret; valid while ss_for matches the local public key. */
    uint8_t ss[WG_KEY_LEN];
    uint8_t ss_for[WG_KEY_LEN];
    bool ss_valid;
};

/* Flags reported by wg_noise_decrypt. */
enum wg_noise_rx_flags {
    WG_NOISE_RX_CONFIRMED = 1 << 0, /* first packet on "next": the session just became current */
    WG_NOISE_RX_REKEY = 1 << 1,     /* initiator's keys near REJECT_AFTER_TIME: rekey now */
};

/* Sets up local with no identity yet. ops is copied. */
void wg_noise_local_init(struct wg_noise_local *l, const struct wg_noise_ops *ops);
/* Sets (or with NULL clears) the static private key; the key is clamped. NB_OK or NB_E_INVAL. */
int wg_noise_local_set_private(struct wg_noise_local *l, const uint8_t priv[WG_KEY_LEN]);
/* Wipes the private key. */
void wg_noise_local_deinit(struct wg_noise_local *l);

void wg_noise_remote_init(struct wg_noise_remote *r, struct wg_noise_local *l,
                          const uint8_t pub[WG_KEY_LEN]);
/* Sets the PSK; NULL means none (all zeros). */
void wg_noise_remote_set_psk(struct wg_noise_remote *r, const uint8_t *psk);
/* Drops the handshake and every keypair (releasing their indices) and wipes them. */
void wg_noise_remote_clear(struct wg_noise_remote *r);
/* Drops only the pending handshake. */
void wg_noise_remote_handshake_clear(struct wg_noise_remote *r);
/* Wipes everything including the PSK; releases indices. */
void wg_noise_remote_deinit(struct wg_noise_remote *r);

/*
 * Initiator: fills the initiation fields (MACs are the cookie module's job). NB_OK,
 * NB_E_INVAL without a local identity, NB_E_DROP if a DH is degenerate, NB_E_NOMEM if no index.
 */
int wg_noise_create_initiation(struct wg_noise_remote *r, uint32_t *s_idx, uint8_t ue[WG_KEY_LEN],
                               uint8_t es[WG_KEY_LEN + WG_AEAD_TAG_LEN],
                               uint8_t ets[WG_TAI64N_LEN + WG_AEAD_TAG_LEN]);
/*
 * Responder: authenticates an initiation. On NB_OK *rp is the remote it came from and its
 * handshake is in CONSUMED_INITIATION. NB_E_DROP (bad crypto / unknown key / flood),
 * NB_E_REPLAY (timestamp not newer), NB_E_INVAL (no identity). Nothing is modified on failure.
 */
int wg_noise_consume_initiation(struct wg_noise_local *l, struct wg_noise_remote **rp,
                                uint32_t s_idx, const uint8_t ue[WG_KEY_LEN],
                                const uint8_t es[WG_KEY_LEN + WG_AEAD_TAG_LEN],
                                const uint8_t ets[WG_TAI64N_LEN + WG_AEAD_TAG_LEN]);
/* Responder: requires CONSUMED_INITIATION. NB_OK, NB_E_INVAL (state), NB_E_DROP, NB_E_NOMEM. */
int wg_noise_create_response(struct wg_noise_remote *r, uint32_t *s_idx, uint32_t *r_idx,
                             uint8_t ue[WG_KEY_LEN], uint8_t en[WG_AEAD_TAG_LEN]);
/*
 * Initiator: r must be the remote that owns index r_idx. Requires CREATED_INITIATION with a
 * matching index. NB_OK or NB_E_DROP/NB_E_INVAL; nothing is modified on failure.
 */
int wg_noise_consume_response(struct wg_noise_remote *r, uint32_t s_idx, uint32_t r_idx,
                              const uint8_t ue[WG_KEY_LEN], const uint8_t en[WG_AEAD_TAG_LEN]);
/*
 * Derives transport keys from a finished handshake (CREATED_RESPONSE or CONSUMED_RESPONSE) and
 * installs them: initiator into current, responder into next. NB_OK or NB_E_INVAL (state).
 */
int wg_noise_begin_session(struct wg_noise_remote *r);

/* True if r has a current keypair younger than REJECT_AFTER_TIME that may still send. */
bool wg_noise_remote_ready(struct wg_noise_remote *r);

/*
 * Encrypts buf[0,len) in place with the current keypair and appends the 16-byte tag (buf needs
 * len + 16 bytes). Sets *r_idx and *nonce for the data header. Returns NB_OK, NB_E_STALE (the
 * packet WAS encrypted and may be sent, but a rekey is due), or NB_E_EXPIRED (no usable keypair:
 * nothing was encrypted; stage the packet and start a handshake).
 */
int wg_noise_encrypt(struct wg_noise_remote *r, uint32_t *r_idx, uint64_t *nonce, uint8_t *buf,
                     size_t len);
/*
 * Decrypts buf[0,len) (ciphertext + tag) in place with the keypair whose local index is idx.
 * On NB_OK the plaintext is buf[0,len-16) and *flags holds wg_noise_rx_flags. NB_E_DROP (no such
 * keypair / bad tag), NB_E_EXPIRED (keypair too old or counter exhausted), NB_E_REPLAY.
 */
int wg_noise_decrypt(struct wg_noise_remote *r, uint32_t idx, uint64_t nonce, uint8_t *buf,
                     size_t len, unsigned *flags);

/* Keypair with local index idx in r, or NULL. */
struct wg_noise_keypair *wg_noise_keypair_lookup(struct wg_noise_remote *r, uint32_t idx);

#endif
