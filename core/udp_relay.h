/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_CORE_UDP_RELAY_H
#define NB_CORE_UDP_RELAY_H

/*
 * The UDP relay of a `udp` service (spec/proxy.md §3.5 udp bullet, §3.8): one public UDP socket
 * on the service's listen port; one session per client address (ip:port), each with its own
 * datagram flow to the target through the account's network (nb_udp_dialer). Client datagrams
 * go to the session's flow; the backend's datagrams go back to the client from the public
 * socket.
 *
 * New sessions: access restrictions on the client address (spec §3.8, §4.6; a deny drops the
 * datagram, creates nothing, counts it in `restricted`, and writes an L4 access-log record with
 * the verdict as auth_mechanism at most once per verdict every 10 s) -> session limit (1024) ->
 * refused; creation rate limit (token bucket, 50/s, burst 100, on the loop clock) -> refused; dial
 * -> refused on failure. A refused datagram is dropped and counted. Sessions end when idle longer
 * than the idle timeout (exact: one timer per relay on the least recently active session), on any
 * write error (backend or client), or when the relay closes; each end writes one L4 access-log
 * record (protocol "udp", duration = last activity - creation, bytes both ways, spec §8.3).
 *
 * Memory: a fixed hash table sized for max_sessions, one session object (~250 B) and one flow
 * per session; no datagram is queued anywhere (one process-wide 64 KiB receive buffer), so a
 * flood costs CPU and counters, never memory.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct nb_loop;
struct nb_access_log;
struct nb_udp_relay;
struct auth_restrict;
struct auth_geo_ops;

/* ---- the datagram flow interface (implemented by core/account.c over netstack/ns_udp) ---- */

struct nb_dgram;
struct nb_dgram_vtbl {
    /* NB_OK; NB_E_NOMEM: dropped for lack of memory now, the flow stays usable; anything
     * else: the flow is broken (the relay ends the session). */
    int (*send)(struct nb_dgram *d, const void *buf, size_t len);
    /* Exactly once; callable from inside the flow's own on_recv. No on_recv after it. */
    void (*close)(struct nb_dgram *d);
};
struct nb_dgram {
    const struct nb_dgram_vtbl *vt;
};

/* A datagram from the target, valid during the call. May close any flow, its own included. */
typedef void (*nb_dgram_recv_fn)(void *arg, const uint8_t *data, size_t len);

/* Opens a flow to dst; synchronous (UDP has no handshake). NB_OK with *out owned by the caller,
 * or an nb_err. */
struct nb_udp_dialer {
    int (*dial)(void *ctx, const struct sockaddr *dst, nb_dgram_recv_fn on_recv, void *arg,
                struct nb_dgram **out);
    void *ctx;
};

/* ---- token bucket (exposed for tests) ---- */

struct nb_tbucket {
    uint64_t milli;   /* tokens x 1000 */
    uint64_t last_ms; /* last refill */
    uint32_t rate;    /* tokens per second */
    uint32_t burst;   /* capacity in tokens */
};
/* Starts full. */
void nb_tbucket_init(struct nb_tbucket *tb, uint32_t rate_per_s, uint32_t burst, uint64_t now_ms);
/* Refills for the time since the last call and takes one token if there is one. */
bool nb_tbucket_take(struct nb_tbucket *tb, uint64_t now_ms);

/* ---- the relay ---- */

#define NB_UDP_MAX_SESSIONS 1024u
#define NB_UDP_RATE_PER_S   50u
#define NB_UDP_RATE_BURST   100u
#define NB_UDP_IDLE_MS      30000u
#define NB_UDP_MAX_DATAGRAM 65535u
#define NB_UDP_READ_BATCH   64u /* datagrams read per wake-up before yielding to the loop */

/* Counters; a relay adds to the struct it is given (the proxy shares one over all relays). */
struct nb_udp_stats {
    uint64_t sessions_active;
    uint64_t sessions_total;           /* created */
    uint64_t rejected_limit;           /* new sessions refused: session limit */
    uint64_t rejected_rate;            /* new sessions refused: creation rate */
    uint64_t dial_errors;              /* new sessions refused: the flow could not be opened */
    uint64_t restricted;               /* new sessions refused: access restrictions */
    uint64_t packets_up, bytes_up;     /* client -> backend, forwarded */
    uint64_t packets_down, bytes_down; /* backend -> client, forwarded */
    uint64_t dropped_packets, dropped_bytes; /* not forwarded: refused sessions, no memory,
                                                client socket full, oversized */
    uint64_t ended_idle, ended_error;        /* sessions ended by idle timeout / write error */
};

struct nb_udp_relay_opts {
    const char *service_id, *account_id, *host; /* for logs and access-log records (copied) */
    const struct sockaddr *listen;              /* public address (port = listen_port) */
    const struct sockaddr *target;              /* path[0].target */
    const struct nb_udp_dialer *dialer;         /* the account's network (copied) */
    uint32_t idle_timeout_ms;                   /* 0 = NB_UDP_IDLE_MS */
    uint32_t max_sessions;                      /* 0 = NB_UDP_MAX_SESSIONS */
    uint32_t rate_per_s, burst;                 /* 0 = NB_UDP_RATE_PER_S / _BURST */
    struct nb_access_log *access_log;           /* or NULL */
    struct auth_restrict *restrictions;         /* the mapping's (a reference is taken), or NULL */
    const struct auth_geo_ops *geo;             /* country lookups (borrowed), or NULL */
    struct nb_udp_stats *stats;                 /* or NULL: the relay's own */
    /* Clock (tests): NULL = nb_loop_now_ms(loop). Must not run behind the loop clock. */
    uint64_t (*now_ms)(void *ctx);
    void *now_ctx;
};

/*
 * Binds the public socket and starts reading. NB_OK; NB_E_IO with errno and a message in err
 * when the port cannot be bound; NB_E_INVAL, NB_E_NOMEM.
 */
int nb_udp_relay_new(struct nb_loop *loop, const struct nb_udp_relay_opts *o,
                     struct nb_udp_relay **out, char *err, size_t errlen);
/* Ends every session (one access-log record each), closes the socket, frees. Not from inside a
 * flow callback of this relay. */
void nb_udp_relay_close(struct nb_udp_relay *r);
/* Ends the sessions idle past the timeout now (the relay's timer does this on its own). */
void nb_udp_relay_reap(struct nb_udp_relay *r);
uint32_t nb_udp_relay_sessions(const struct nb_udp_relay *r);
/* The bound public address (port 0 in opts -> the kernel's choice). */
int nb_udp_relay_addr(const struct nb_udp_relay *r, struct sockaddr_storage *out);

#endif
