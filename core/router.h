/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_CORE_ROUTER_H
#define NB_CORE_ROUTER_H

/*
 * The TCP router (spec/proxy.md §3.7): what happens to a connection accepted on the main TLS
 * listener (--addr), on a per-port listener of `tcp`/`tls` mappings, or on an account's tunnel
 * listener (--private, §6.2).
 *
 * Per connection:
 *   1. --proxy-protocol listeners: the PROXY v1/v2 header is read first (5 s deadline,
 *      l4/proxy_proto.h, trusted-proxy policy of §10.1); its source becomes the connection's
 *      peer address for everything downstream (HTTP server, relays, access log).
 *   2. A router with no SNI route, no TLS channel and no plain channel (a pure per-port `tcp`
 *      listener) relays to its fallback at once, without reading.
 *   3. Otherwise the first bytes are read into a bounded buffer (5 s deadline) until
 *      l4_sni_peek() decides; nb_router_decide() (pure) picks the destination; every byte read
 *      is replayed to it.
 *
 * Relays check the target's access restrictions first (spec §3.7, §4.6) on the client address
 * (the PROXY header's source when one applied); overlay routers check CIDR rules only. A deny
 * closes the client without dialling and writes an L4 access-log record with the verdict as
 * auth_mechanism and no bytes, at most one per (service, verdict) every 10 s (spec §8.3).
 *
 * Destinations: TLS HTTP channel (the TLS server: handshake with the certificate store, then
 * nb_router's single dispatch point hands the decrypted stream to the HTTP server with
 * info.tls = true), plain HTTP channel (inbound routers: non-TLS connections), a relay to a
 * `tls` route or the `tcp` fallback (dial through the service's account, optional outbound PROXY
 * v2 header, nb_relay), or close.
 *
 * Ownership: the router owns every connection it accepted until it hands the stream over (to the
 * HTTP server, or to an nb_relay whose end it observes). Routes are copied. Removing a service's
 * routes cancels that service's relays only. nb_router_free() ends everything it still owns.
 */

#include "l4/proxy_proto.h"
#include "l4/sni_peek.h"
#include "platform/stream.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct nb_loop;
struct nb_router;
struct tls_ctx;
struct http_server;
struct nb_access_log;
struct auth_restrict;
struct auth_geo_ops;
struct nb_tcp_metrics;

/* Header read and ClientHello peek deadline (§3.7, §10.1). */
#define NB_ROUTER_PEEK_MS 5000u
/* TLS handshake after the ClientHello was peeked. */
#define NB_ROUTER_HANDSHAKE_MS 10000u
/* Concurrent relays per router; beyond it new relays are closed and counted "rejected". */
#define NB_ROUTER_MAX_RELAYS 4096u
/* Longest inbound PROXY header accepted (v2 with TLVs); a longer one closes the connection. */
#define NB_ROUTER_PP_MAX 4096u

/* A relay destination: a `tcp` mapping (fallback) or a `tls` mapping (SNI passthrough). */
struct nb_l4_target {
    const char *service_id; /* required */
    const char *account_id; /* the account whose dialer reaches target */
    const char *domain;     /* access log host (may be NULL) */
    const char *protocol;   /* access log protocol: "tcp" or "tls" */
    struct sockaddr_storage target;
    uint32_t dial_timeout_ms; /* 0 = 30 s */
    uint32_t idle_timeout_ms; /* 0 = relay default (5 min) */
    bool proxy_protocol;      /* write a PROXY v2 header to the backend first (§10.1) */
    bool direct;              /* dial on the host network (directUpstream), not the tunnel */
    /* access_restrictions of the mapping (auth/restrict.h; the router takes its own
     * reference), NULL = none. Checked on the client address (after PROXY protocol) before
     * anything is dialled. */
    struct auth_restrict *restrictions;
};

/* How a router finds the dialer of an account when it dials (the tunnel may come later). */
typedef int (*nb_router_dialer_fn)(void *arg, const char *account_id, bool direct,
                                   struct nb_dialer *out);

struct nb_router_opts {
    const char *name;          /* for logs ("main", "port 9000", "account x"); copied */
    struct tls_ctx *tls;       /* TLS HTTP channel (a reference is taken), NULL = none */
    struct http_server *https; /* where TLS-terminated connections go (with tls) */
    struct http_server *plain; /* non-TLS HTTP channel (inbound routers), NULL = none */
    bool overlay;              /* http_conn_info.overlay for both channels */
    const char *scope;         /* http_conn_info.scope (copied), NULL = none */
    /* --proxy-protocol with the trusted list of --trusted-proxies (copied). */
    bool proxy_protocol;
    const struct l4_prefix *trusted;
    size_t n_trusted;
    uint32_t max_relays; /* 0 = NB_ROUTER_MAX_RELAYS */
    struct nb_access_log *access_log;
    const struct auth_geo_ops *geo; /* country lookups for restricted targets (borrowed), or NULL */
    nb_router_dialer_fn dialer;
    void *dialer_arg;
    /* Per-account relay counters, lifetimes and bytes (a reference is taken), NULL = none. */
    struct nb_tcp_metrics *tcp_metrics;
};

struct nb_router *nb_router_new(struct nb_loop *loop, const struct nb_router_opts *o);
/* Cancels relays, closes connections in the peek or handshake; frees (relay records deferred).
 * Listeners feeding it are the caller's: close them first. NULL is a no-op. */
void nb_router_free(struct nb_router *r);

/* An nb_accept_fn: arg is the router. Takes the stream. */
void nb_router_accept_cb(void *arg, struct nb_listener *l, struct nb_stream *s);

/*
 * Routes. An SNI may carry several routes, one per service (a service's new route replaces its
 * old one for that SNI and cancels its relays). Names are matched lower-cased.
 * NB_OK / NB_E_NOMEM / NB_E_INVAL.
 */
int nb_router_add_http(struct nb_router *r, const char *sni, const char *service_id);
int nb_router_add_tls(struct nb_router *r, const char *sni, const struct nb_l4_target *t);
/* The single fallback relay (replaces any previous one and cancels its relays). */
int nb_router_set_fallback(struct nb_router *r, const struct nb_l4_target *t);
/* Removes every route and the fallback of the service; cancels its relays (only those). */
void nb_router_remove_service(struct nb_router *r, const char *service_id);
/* No SNI route and no fallback: a per-port router may go. */
bool nb_router_empty(const struct nb_router *r);
/* Refuses new connections (graceful shutdown); relays in flight continue. */
void nb_router_drain(struct nb_router *r);
/* Refuses new connections and ends every connection the router owns now (peeks, handshakes,
 * dials, relays); routes stay. Call before freeing the HTTP servers it hands connections to. */
void nb_router_abort(struct nb_router *r);

enum nb_route_verdict {
    NB_RV_CLOSE = 0,  /* nothing takes it */
    NB_RV_TLS_HTTP,   /* the TLS server (also non-TLS bytes on the main listener: Go's 400) */
    NB_RV_PLAIN_HTTP, /* the plain HTTP server */
    NB_RV_RELAY,      /* relay to *target */
};

/*
 * The routing decision of §3.7, pure: kind and SNI (as sent, any case; NULL/0 = none) from the
 * peek. HTTP routes win over TLS routes for a name; unmatched -> fallback, else the plain
 * channel for non-TLS (inbound routers), else the TLS channel, else close. *target is set for
 * NB_RV_RELAY (owned by the router; valid until the next route change).
 */
enum nb_route_verdict nb_router_decide(const struct nb_router *r, enum l4_tls_kind kind,
                                       const char *sni, size_t sni_len,
                                       const struct nb_l4_target **target);

struct nb_router_stats {
    uint64_t accepted;
    uint64_t relays_active;
    uint64_t relays_total;
    uint64_t relays_rejected; /* over max_relays or draining */
    uint64_t restricted;      /* closed by the target's access restrictions (not dialled) */
    uint64_t dial_failures;
    uint64_t peek_closed;  /* closed before a decision (deadline, EOF, no destination) */
    uint64_t pp_rejected;  /* PROXY header missing, malformed or refused */
    uint64_t tls_handoffs; /* handshakes completed and handed to the HTTP server */
    uint64_t tls_failures; /* handshakes that failed (including plain HTTP answered 400) */
};
void nb_router_stats(const struct nb_router *r, struct nb_router_stats *st);

#endif
