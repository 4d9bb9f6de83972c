/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_HTTP_PROXY_H
#define NB_HTTP_PROXY_H

/*
 * The reverse proxy: the http_server handler that routes a request by Host and path
 * (http/route.h), builds the upstream request (http/rewrite.h), sends it through the right
 * network (an account's tunnel, or the host for direct_upstream targets) with the pooled client
 * (http/client.h), streams both bodies with backpressure, relays upgraded connections
 * (WebSocket), renders the proxy's error pages (http/errpage.h) and writes one access-log record
 * per request (http/accesslog.h). spec/proxy.md §4.
 *
 * Access restrictions (spec §4.6): for a registered host, right after the built-in
 * /__netbird__/ assets and before anything else (path match, upstream), the service's filter is
 * checked on the §4.5 client IP; the tunnel listeners (overlay) check CIDR rules only. A deny is
 * Go's http.Error(w, "Forbidden", 403) (text/plain, nosniff, body "Forbidden\n") with the verdict
 * as the access log's auth_mechanism (none when the client IP could not be resolved, as the
 * reference).
 *
 * Networks: an account's dialer is registered with http_proxy_set_network(); a request whose
 * target needs the account's tunnel and finds none gets the 502 "Proxy Not Connected" page.
 *
 * Not yet: authentication schemes and private (tunnel-peer validated) services belong to the
 * auth work; until then services carrying them are refused when they are added (nothing is ever
 * exposed without the authentication its mapping asks for). https targets need the TLS client
 * (502 until then).
 */

#include "http/route.h"
#include "http/server.h"
#include "platform/metrics.h"
#include "platform/stream.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nb_loop;
struct nb_dns;
struct nb_access_log;
struct http_client;
struct http_fwd_cfg;
struct http_proxy;
struct auth_geo_ops;

struct http_proxy_opts {
    struct http_client *client;       /* the upstream pool (borrowed) */
    const struct http_fwd_cfg *fwd;   /* --trusted-proxies, --forwarded-proto (borrowed) */
    struct nb_access_log *access_log; /* NULL = no access log */
    struct nb_dns *dns;               /* NULL = IP-literal targets only */
    const struct nb_dialer *host;     /* dialer for direct_upstream targets (borrowed) */
    uint64_t max_dial_timeout_ms;     /* --max-dial-timeout: cap and default, 0 = none */
    uint32_t upgrade_idle_timeout_ms; /* idle timeout of upgraded connections, 0 = 1 hour */
    /* Country lookups for services with country restrictions (borrowed; NULL or ops without
     * a country function = no database: such services answer 403 geo_unavailable). */
    const struct auth_geo_ops *geo;
};

struct http_proxy *http_proxy_new(struct nb_loop *loop, const struct http_proxy_opts *opts);
/*
 * Frees the proxy. Servers using its handler must be freed first (their requests end through
 * on_abort); upgraded connections are cancelled here.
 */
void http_proxy_free(struct http_proxy *p);

/* The handler to give to http_server_new(). */
struct http_handler http_proxy_handler(struct http_proxy *p);

/* Registers (dialer != NULL) or removes an account's tunnel. The dialer must outlive its
 * registration; removing it closes the account's idle upstream connections. */
int http_proxy_set_network(struct http_proxy *p, const char *account_id,
                           const struct nb_dialer *dialer);

/*
 * Routes a service (takes a reference). Refuses (NB_E_UNSUPPORTED, reason in err) services that
 * need what is not built yet: authentication schemes, private services.
 */
int http_proxy_add(struct http_proxy *p, struct http_service *svc, char *err, size_t errlen);
/* Removes a service's routes and closes its upgraded connections (spec/proxy.md §3.3). Requests
 * in flight finish with the service they started with. */
void http_proxy_remove(struct http_proxy *p, const char *service_id);
/* Closes every upgraded connection (graceful shutdown, spec/proxy.md §10.4 step 4). */
void http_proxy_close_upgrades(struct http_proxy *p);

/* The routing table (read-only use: counts, tests). */
const struct http_routes *http_proxy_routes(const struct http_proxy *p);

struct http_proxy_stats {
    uint64_t requests;
    uint64_t active;          /* requests in progress now */
    uint64_t not_found;       /* 404 Service Not Found */
    uint64_t upstream_errors; /* error pages for upstream failures */
    uint64_t aborted;         /* responses cut short (upstream failed mid-body, client gone) */
    uint64_t upgrades;        /* upgraded connections relayed, in total */
    uint64_t upgrades_active;
    struct nb_histogram request_ms; /* whole request, as the access log's duration */
    struct nb_histogram backend_ms; /* each upstream exchange, start to end or failure */
};
void http_proxy_stats(const struct http_proxy *p, struct http_proxy_stats *st);

#endif
