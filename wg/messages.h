/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_WG_MESSAGES_H
#define NB_WG_MESSAGES_H

/*
 * WireGuard wire formats and protocol constants (whitepaper §5.4, §6). No logic lives here.
 *
 * Every multi-byte integer on the wire is little-endian. The message type is read as one
 * little-endian 32-bit word: one type byte followed by three reserved bytes that must be zero,
 * so a packet with non-zero reserved bytes is simply an unknown type. Index fields are opaque
 * 32-bit values chosen by the receiver of later messages; we keep them in host order in memory
 * and convert with wg_le32 helpers at the edge (see device.c).
 *
 * The structs below are the exact byte layouts. All fields are naturally aligned, so they have
 * no padding; the _Static_asserts pin the sizes. Never cast a datagram pointer to one of these
 * structs (the datagram may be unaligned); memcpy in and out.
 */

#include <stdint.h>

/* Noise protocol name and WireGuard identifier, hashed into the initial chaining key / hash. */
#define WG_NOISE_CONSTRUCTION "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
#define WG_NOISE_IDENTIFIER   "WireGuard v1 zx2c4 Jason@zx2c4.com"
#define WG_LABEL_MAC1         "mac1----"
#define WG_LABEL_COOKIE       "cookie--"

enum wg_msg_type {
    WG_MSG_INITIATION = 1,
    WG_MSG_RESPONSE = 2,
    WG_MSG_COOKIE = 3,
    WG_MSG_DATA = 4,
};

enum wg_lengths {
    WG_KEY_LEN = 32,      /* X25519 public/private keys, symmetric keys, PSK */
    WG_HASH_LEN = 32,     /* BLAKE2s-256 */
    WG_MAC_LEN = 16,      /* keyed BLAKE2s-128 (MAC1, MAC2) */
    WG_COOKIE_LEN = 16,   /* cookie value */
    WG_AEAD_TAG_LEN = 16, /* Poly1305 tag */
    WG_XNONCE_LEN = 24,   /* XChaCha20-Poly1305 nonce of the cookie reply */
    WG_TAI64N_LEN = 12,   /* 8-byte big-endian seconds + 4-byte big-endian nanoseconds */
    WG_MSG_INITIATION_LEN = 148,
    WG_MSG_RESPONSE_LEN = 92,
    WG_MSG_COOKIE_LEN = 64,
    WG_MSG_DATA_HEADER_LEN = 16,
    WG_MSG_DATA_MIN_LEN = 32, /* header + tag: an encrypted keepalive */
    WG_MSG_PADDING_MULTIPLE = 16,
};

/* Protocol timers, in milliseconds (whitepaper §6.1 and §6.4). */
enum wg_timer_consts {
    WG_REKEY_AFTER_TIME_MS = 120 * 1000,
    WG_REJECT_AFTER_TIME_MS = 180 * 1000,
    WG_REKEY_ATTEMPT_TIME_MS = 90 * 1000,
    WG_REKEY_TIMEOUT_MS = 5 * 1000,
    WG_KEEPALIVE_TIMEOUT_MS = 10 * 1000,
    WG_COOKIE_SECRET_MAX_AGE_MS = 120 * 1000,
    /* A cookie is used for at most MAX_AGE - LATENCY so it cannot expire in flight. */
    WG_COOKIE_SECRET_LATENCY_MS = 5 * 1000,
    WG_REKEY_TIMEOUT_JITTER_MAX_MS = 333,
    /* Initiations from one peer faster than this are dropped (INITIATIONS_PER_SECOND = 50). */
    WG_INITIATIONS_PER_SECOND = 50,
    WG_MAX_TIMER_HANDSHAKES = WG_REKEY_ATTEMPT_TIME_MS / WG_REKEY_TIMEOUT_MS,
};

/* Message-count limits do not fit an enum (> INT_MAX). */
#define WG_REKEY_AFTER_MESSAGES  (UINT64_C(1) << 60)
#define WG_REJECT_AFTER_MESSAGES (UINT64_MAX - (UINT64_C(1) << 13))

/* Type 1: handshake initiation, 148 bytes. MAC1 covers bytes [0,116), MAC2 covers [0,132). */
struct wg_msg_initiation {
    uint32_t type;                                          /* le32: 1 */
    uint32_t sender;                                        /* le32: initiator's index */
    uint8_t ephemeral[WG_KEY_LEN];                          /* unencrypted ephemeral public key */
    uint8_t static_enc[WG_KEY_LEN + WG_AEAD_TAG_LEN];       /* AEAD(initiator static public) */
    uint8_t timestamp_enc[WG_TAI64N_LEN + WG_AEAD_TAG_LEN]; /* AEAD(TAI64N) */
    uint8_t mac1[WG_MAC_LEN];
    uint8_t mac2[WG_MAC_LEN];
};

/* Type 2: handshake response, 92 bytes. MAC1 covers [0,60), MAC2 covers [0,76). */
struct wg_msg_response {
    uint32_t type;     /* le32: 2 */
    uint32_t sender;   /* le32: responder's index */
    uint32_t receiver; /* le32: initiator's index from the initiation */
    uint8_t ephemeral[WG_KEY_LEN];
    uint8_t empty_enc[WG_AEAD_TAG_LEN]; /* AEAD(empty) */
    uint8_t mac1[WG_MAC_LEN];
    uint8_t mac2[WG_MAC_LEN];
};

/* Type 3: cookie reply, 64 bytes. AD of the XAEAD is the MAC1 of the message it answers. */
struct wg_msg_cookie {
    uint32_t type;     /* le32: 3 */
    uint32_t receiver; /* le32: the sender index of the message being answered */
    uint8_t nonce[WG_XNONCE_LEN];
    uint8_t cookie_enc[WG_COOKIE_LEN + WG_AEAD_TAG_LEN];
};

/* Type 4: transport data header, 16 bytes, followed by ciphertext (16-byte padded) + tag. */
struct wg_msg_data {
    uint32_t type;     /* le32: 4 */
    uint32_t receiver; /* le32: receiver's keypair index */
    uint64_t counter;  /* le64: nonce counter */
};

_Static_assert(sizeof(struct wg_msg_initiation) == WG_MSG_INITIATION_LEN, "initiation size");
_Static_assert(sizeof(struct wg_msg_response) == WG_MSG_RESPONSE_LEN, "response size");
_Static_assert(sizeof(struct wg_msg_cookie) == WG_MSG_COOKIE_LEN, "cookie reply size");
_Static_assert(sizeof(struct wg_msg_data) == WG_MSG_DATA_HEADER_LEN, "data header size");

#endif
