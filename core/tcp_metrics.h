/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_CORE_TCP_METRICS_H
#define NB_CORE_TCP_METRICS_H

/*
 * The relayed-tcp instruments of spec/proxy.md §9.2, shared by every router (main listener,
 * per-port listeners): per account, connections open and connections by result
 * (proxy_tcp_active_connections{account_id}, proxy_tcp_connections_total{account_id,result});
 * over all accounts, relayed connection lifetimes (proxy_tcp_connection_duration_ms) and bytes
 * per direction (proxy_tcp_bytes_total{direction}).
 *
 * Bounded cardinality: an account's entry exists while something holds it. A router's relay
 * target (one per tcp/tls route, kept alive by the relays still using it) takes a hold when it
 * is made and drops it when it goes, so the account's series disappear once its last tcp/tls
 * service is removed and its last relay has ended. Memory: one entry per account with a tcp or
 * tls service or relay, nothing per connection. A new entry restarts its counters at zero,
 * which Prometheus treats as a counter reset.
 *
 * Ownership: refcounted. The creator holds one reference; every held entry holds another, so a
 * relay ending after its router and the app are gone still finds the table. Loop thread only.
 */

#include "platform/metrics.h"
#include "platform/strmap.h"

#include <stdint.h>

struct nb_tcp_acct {
    struct nb_tcp_metrics *m;
    char *id;
    uint32_t holds;
    uint64_t active;     /* dialling or relaying */
    uint64_t success;    /* the backend dial succeeded */
    uint64_t dial_error; /* no tunnel, dial failed or timed out */
    uint64_t rejected;   /* over the router's relay limit, or draining */
};

struct nb_tcp_metrics {
    uint32_t refs;
    struct nb_strmap accounts; /* account id -> struct nb_tcp_acct */
    struct nb_histogram duration_ms;
    uint64_t bytes_up;   /* client_to_backend */
    uint64_t bytes_down; /* backend_to_client */
};

/* Lifetimes of relayed connections: 100 ms .. 1 h (the idle timeout is 5 min by default). */
extern const double nb_tcp_duration_bounds_ms[12];

/* One reference; NULL on no memory. */
struct nb_tcp_metrics *nb_tcp_metrics_new(void);
/* Takes a reference; returns m (NULL is fine). */
struct nb_tcp_metrics *nb_tcp_metrics_ref(struct nb_tcp_metrics *m);
void nb_tcp_metrics_unref(struct nb_tcp_metrics *m); /* NULL is fine */

/* Holds account_id's entry (created at zero on first hold; "" for none). NULL: no memory. */
struct nb_tcp_acct *nb_tcp_acct_hold(struct nb_tcp_metrics *m, const char *account_id);
/* Drops a hold; the last one removes the entry. NULL is fine. */
void nb_tcp_acct_release(struct nb_tcp_acct *a);

/* A relayed connection ended after duration_ms with these byte counts. */
void nb_tcp_metrics_relay_done(struct nb_tcp_metrics *m, uint64_t duration_ms, uint64_t up,
                               uint64_t down);

/* Writes the four families (even when no account has an entry: HELP and TYPE only). */
void nb_tcp_metrics_render(const struct nb_tcp_metrics *m, struct nb_prom *p);

#endif
