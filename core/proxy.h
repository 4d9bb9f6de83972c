/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_CORE_PROXY_H
#define NB_CORE_PROXY_H

/*
 * The appliance state: accounts (each with a way to dial into its network) and the services
 * built from mappings. nb_proxy_apply() is THE entry point for mapping changes, used by the
 * standalone config file today and by the management stream later (spec/proxy.md §3.3).
 *
 * Implemented modes (spec/proxy.md §3.4, §3.5, §3.7, §3.8): HTTP (routes in the http_proxy given
 * in the options, plus an HTTP SNI route in the main router), tcp (the fallback relay of the
 * router of listen_port: the main TLS listener's router for port 0 or --addr's port, else a
 * per-port host listener that lives as long as it has routes), tls (an SNI passthrough route in
 * that router) and udp (a host UDP socket on listen_port with per-client sessions through the
 * account's tunnel, core/udp_relay.h). Relays dial path[0].target through the account's tunnel
 * (or the host with directUpstream).
 */

#include "core/mapping.h"
#include "core/udp_relay.h"
#include "platform/stream.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nb_loop;
struct nb_proxy;
struct nb_router;
struct l4_prefix;
struct http_proxy;
struct nb_access_log;
struct nb_tcp_metrics;

struct auth_geo_ops;

struct nb_proxy_opts {
    uint64_t max_dial_timeout_ms;         /* --max-dial-timeout, 0 = none */
    uint64_t max_session_idle_timeout_ms; /* --max-session-idle-timeout, 0 = none */
    uint16_t wg_port;                     /* --wg-port: L4 ports may not equal it */
    uint32_t max_relays_per_router;       /* 0 = 4096 (the reference limit) */
    const char *listen_host;              /* host part for per-port listeners, NULL = any */
    struct http_proxy *http;              /* HTTP routes go here; NULL = HTTP mode refused */
    struct nb_access_log *access_log;     /* L4 session records (spec/proxy.md §8.3), or NULL */
    const struct auth_geo_ops *geo; /* country lookups for L4 restrictions (borrowed), or NULL */
    /* Management mode: a service may name an account whose tunnel does not exist (yet); its
     * connections fail their dial until it does (spec/proxy.md §3.5: ACTIVE before the tunnel
     * is up). Standalone: an unknown account is a configuration error. */
    bool accounts_later;
    /* The main TLS listener's router (not owned) and its port: tcp/tls mappings on port 0 or
     * main_port go there. NULL: such mappings are refused. */
    struct nb_router *main_router;
    int32_t main_port;
    const struct nb_dialer *host_dialer; /* directUpstream L4 targets; NULL = refused */
    /* --proxy-protocol on per-port listeners, with --trusted-proxies (not copied: must outlive
     * the proxy). */
    bool proxy_protocol;
    const struct l4_prefix *trusted;
    size_t n_trusted;
    /* Relay metrics for the per-port routers (not owned; they take references), NULL = none. */
    struct nb_tcp_metrics *tcp_metrics;
};

struct nb_proxy *nb_proxy_new(struct nb_loop *loop, const struct nb_proxy_opts *opts);
/* Closes every service and relay (abortive). Accounts' dialers are not owned. */
void nb_proxy_free(struct nb_proxy *p);

/* Registers an account; the dialer must outlive the account's services. */
int nb_proxy_add_account(struct nb_proxy *p, const char *id, const struct nb_dialer *dialer);
/* Gives a registered account its UDP dialer (copied; its ctx must outlive the account's udp
 * services). udp mappings need it: spec/proxy.md §3.5, "needs the account client to exist".
 * NB_OK or NB_E_NOTFOUND. */
int nb_proxy_set_udp_dialer(struct nb_proxy *p, const char *id, const struct nb_udp_dialer *d);

/*
 * Applies one mapping by m->type (CREATED, MODIFIED, REMOVED). On failure returns an nb_err and
 * writes a reason (suitable for SendStatusUpdate.error_message) into err; the previous state of
 * that service is cleaned up as the reference does. NB_OK with a non-empty err means "applied,
 * but part of it was skipped" (an HTTP path whose target URL does not parse): the reference
 * reports that as an ERROR status while serving the rest.
 */
int nb_proxy_apply(struct nb_proxy *p, const struct nb_mapping *m, char *err, size_t errlen);

/* Sets the main router after creation (it needs nb_proxy_dialer): before any mapping. */
void nb_proxy_set_main_router(struct nb_proxy *p, struct nb_router *r, int32_t port);

/* An nb_router_dialer_fn (arg = the proxy): the account's tunnel dialer, or the host's for
 * direct targets. */
int nb_proxy_dialer(void *arg, const char *account_id, bool direct, struct nb_dialer *out);

/* Stops accepting new connections on every service (graceful shutdown, step 5) and closes the
 * udp relays (step 6: their sessions end, with access-log records). */
void nb_proxy_drain(struct nb_proxy *p);

struct nb_proxy_stats {
    uint64_t services;
    uint64_t by_mode[4]; /* services by enum nb_mapping_mode */
    uint64_t relays_active;
    uint64_t relays_total;
    uint64_t relays_rejected; /* over the per-router limit or draining */
    uint64_t dial_failures;
    struct nb_udp_stats udp; /* every udp service's relay, summed */
};
void nb_proxy_stats(const struct nb_proxy *p, struct nb_proxy_stats *st);

#endif
