/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_WG_DEVICE_H
#define NB_WG_DEVICE_H

/*
 * An I/O-free WireGuard interface: peers, cryptokey routing, handshakes, transport, timers,
 * cookies. It never opens a socket or reads a clock; it talks to the world only through
 * struct wg_device_ops. The owner:
 *   - feeds every UDP datagram received on the WireGuard socket to wg_device_input();
 *   - feeds every IP packet the netstack wants to send into the tunnel to wg_device_output();
 *   - calls wg_device_timers() at (or after) the time last passed to ops.schedule().
 * Decrypted inner packets come back through ops.deliver; datagrams to send through ops.send.
 *
 * Single-threaded: all calls for one device must come from one thread (the event loop). Callbacks
 * may call wg_device_output() (e.g. lwIP answering from inside deliver) but must not free the
 * device or remove peers.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "wg/crypto.h"

struct wg_device;
struct wg_peer;

/* Upcalls. ctx is passed back unchanged. */
struct wg_device_ops {
    void *ctx;
    /*
     * Sends one UDP datagram. buf is only valid during the call (copy it if the send is
     * deferred). Return 0 on success, negative on failure (counted, otherwise ignored).
     */
    int (*send)(void *ctx, const struct sockaddr *to, socklen_t tolen, const uint8_t *buf,
                size_t len);
    /*
     * A decrypted inner IPv4/IPv6 packet from peer `from`, already checked against its allowed
     * IPs and trimmed to the IP total length. The buffer belongs to the caller of
     * wg_device_input and is only valid during this call; it may be modified.
     */
    void (*deliver)(void *ctx, struct wg_peer *from, uint8_t *ip_packet, size_t len);
    uint64_t (*now_ms)(void *ctx);                  /* monotonic milliseconds */
    void (*wall)(void *ctx, struct timespec *ts);   /* CLOCK_REALTIME, for TAI64N */
    void (*random)(void *ctx, void *buf, size_t n); /* cryptographic randomness */
    /*
     * Optional: asks to have wg_device_timers() called at monotonic time at_ms. Only the latest
     * request counts. Calls may also come earlier than needed; a spurious call is harmless.
     */
    void (*schedule)(void *ctx, uint64_t at_ms);
};

/* Tunables; zero fields take the defaults in brackets. */
struct wg_device_params {
    /*
     * The device is "under load" (demands MAC2 cookies, rate limits per source) while more than
     * under_load_threshold handshake messages arrived in the last second [1000].
     * under_load_always forces it on, i.e. a threshold of zero (tests, or a deliberately
     * paranoid deployment).
     */
    unsigned under_load_threshold;
    bool under_load_always;
    unsigned max_staged;         /* packets queued per peer while there is no session [128] */
    unsigned mtu;                /* tunnel MTU, caps padding [1420] */
    unsigned max_peers;          /* [1024] */
    size_t allowedips_max_nodes; /* [65536] */
    /* REKEY_AFTER_TIME in ms [120000]. Only for tests that must see a rekey quickly. */
    uint64_t rekey_after_time_ms;
};

enum {
    WG_DEVICE_MAX_PACKET = 65535, /* largest inner packet accepted by wg_device_output */
};

struct wg_device_stats {
    uint64_t rx_packets, rx_bytes; /* inner packets delivered (bytes before padding) */
    uint64_t tx_packets, tx_bytes; /* inner packets encrypted and sent */
    uint64_t rx_keepalives, tx_keepalives;
    uint64_t rx_handshake_init, rx_handshake_resp; /* accepted handshake messages */
    uint64_t tx_handshake_init, tx_handshake_resp;
    uint64_t cookie_sent, cookie_received;
    uint64_t drop_bad_type;     /* unknown message type */
    uint64_t drop_bad_size;     /* wrong length for its type */
    uint64_t drop_bad_mac;      /* MAC1 wrong */
    uint64_t drop_handshake;    /* handshake failed to authenticate / wrong state / flood */
    uint64_t drop_replay;       /* replayed data counter or initiation timestamp */
    uint64_t drop_no_session;   /* receiver index unknown */
    uint64_t drop_decrypt;      /* transport AEAD failed */
    uint64_t drop_expired;      /* keypair past REJECT_AFTER_TIME / MESSAGES */
    uint64_t drop_inner_src;    /* inner source not in the sender's allowed IPs */
    uint64_t drop_inner_bad;    /* inner packet not a well-formed IPv4/IPv6 header */
    uint64_t drop_rate_limited; /* under load and the source's handshake bucket is empty */
    uint64_t drop_cookie;       /* cookie reply that did not decrypt */
    uint64_t drop_no_route;     /* output packet with no allowed-IPs match */
    uint64_t drop_no_endpoint;  /* output for a peer whose endpoint is unknown (still staged) */
    uint64_t drop_staged;       /* staged packets dropped (queue overflow or handshake gave up) */
    uint64_t send_errors;       /* ops.send returned < 0 */
};

struct wg_peer_stats {
    uint64_t rx_bytes, tx_bytes; /* wire bytes of authenticated messages (like `wg show`) */
    uint64_t rx_packets, tx_packets;
    uint64_t handshakes;            /* completed handshakes */
    uint64_t last_handshake_ms;     /* monotonic, 0 = never */
    struct timespec last_handshake; /* wall clock, zero = never */
};

/* Creates a device (no private key, no peers). params may be NULL. NULL on allocation failure. */
struct wg_device *wg_device_new(const struct wg_device_ops *ops,
                                const struct wg_device_params *params);
/* Wipes all keys and frees everything. NULL is allowed. */
void wg_device_free(struct wg_device *dev);

/* Sets the static private key (clamped); all sessions are dropped. NB_OK or NB_E_INVAL. */
int wg_device_set_private_key(struct wg_device *dev, const wg_key priv);
/* Our public key; false if no private key is set. */
bool wg_device_public_key(const struct wg_device *dev, wg_key out);

/* Adds a peer. NULL if pub is already present, equals our own key, or on NB_E_NOMEM. */
struct wg_peer *wg_device_add_peer(struct wg_device *dev, const wg_key pub);
/* Removes a peer: its sessions, allowed IPs and staged packets. Not from inside a callback. */
void wg_device_remove_peer(struct wg_device *dev, struct wg_peer *peer);
struct wg_peer *wg_device_peer_lookup(struct wg_device *dev, const wg_key pub);

/*
 * Sets the peer's endpoint (AF_INET or AF_INET6; any other family is passed to ops.send as is,
 * e.g. a relay's placeholder address, but cookies under load need a real IP). NULL clears.
 * Does not start a handshake: call wg_device_peer_initiate() for that (the netbirdio
 * wireguard-go fork handshakes on every endpoint change; NetBird's controller side should).
 * NB_OK or NB_E_INVAL (len).
 */
int wg_device_peer_set_endpoint(struct wg_peer *peer, const struct sockaddr *sa, socklen_t len);
/* Copies the current endpoint; 0 if unknown, else its length. */
socklen_t wg_device_peer_endpoint(const struct wg_peer *peer, struct sockaddr_storage *out);
/* Adds an allowed-IPs prefix (AF_INET / AF_INET6). Moves it if another peer owned it. */
int wg_device_peer_add_allowed_ip(struct wg_peer *peer, int family, const uint8_t *addr,
                                  uint8_t cidr);
/* Removes every allowed IP of the peer. */
void wg_device_peer_clear_allowed_ips(struct wg_peer *peer);
/* Sets the preshared key, NULL for none. Takes effect on the next handshake. */
void wg_device_peer_set_psk(struct wg_peer *peer, const wg_key psk);
/* Persistent keepalive interval in seconds, 0 = off (NetBird uses 25). */
void wg_device_peer_set_keepalive(struct wg_peer *peer, uint16_t seconds);
/* Opaque user pointer (e.g. the NetBird peer record). */
void wg_device_peer_set_user(struct wg_peer *peer, void *user);
void *wg_device_peer_user(const struct wg_peer *peer);
void wg_device_peer_public_key(const struct wg_peer *peer, wg_key out);
void wg_device_peer_stats(const struct wg_peer *peer, struct wg_peer_stats *out);
/* True if the peer has a session that can send now. */
bool wg_device_peer_has_session(struct wg_peer *peer);
/* Starts a handshake now unless one was sent less than REKEY_TIMEOUT ago. */
int wg_device_peer_initiate(struct wg_peer *peer);

/*
 * Processes one UDP datagram from `from`. Data messages are decrypted in place in datagram[] and
 * delivered through ops.deliver before this returns. Returns NB_OK when the datagram was
 * accepted, or why it was dropped (also counted in the stats): NB_E_PARSE (size/type/inner
 * header), NB_E_DROP (MAC, authentication, unknown index, source check, rate limit),
 * NB_E_REPLAY, NB_E_EXPIRED, NB_E_COOKIE (a cookie reply was sent instead).
 */
int wg_device_input(struct wg_device *dev, const struct sockaddr *from, socklen_t fromlen,
                    uint8_t *datagram, size_t len);

/*
 * Sends one IP packet into the tunnel: the peer is chosen by destination address via allowed IPs.
 * The packet is copied (encrypted into a device-owned buffer, or staged). Returns NB_OK (sent),
 * NB_E_AGAIN (staged until a session exists; a handshake was started), NB_E_NOTFOUND (no route),
 * NB_E_PARSE (not IPv4/IPv6), NB_E_INVAL (too large) or NB_E_NOMEM.
 */
int wg_device_output(struct wg_device *dev, const uint8_t *ip_packet, size_t len);

/* Runs every due timer, then asks for the next deadline through ops.schedule. */
void wg_device_timers(struct wg_device *dev);
/* Earliest armed timer (monotonic ms), 0 if none. */
uint64_t wg_device_next_deadline(const struct wg_device *dev);

void wg_device_stats(const struct wg_device *dev, struct wg_device_stats *out);

#endif
