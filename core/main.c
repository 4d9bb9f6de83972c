/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * nbproxy's entry point: configuration (flags, env, standalone file or the embedded demo),
 * accounts (one WireGuard tunnel + netstack each), mappings through nb_proxy_apply(), then the
 * event loop until SIGINT/SIGTERM, followed by a bounded graceful stop.
 */
#include "auth/geo.h"
#include "core/account.h"
#include "core/acme_link.h"
#include "core/certs.h"
#include "core/config.h"
#include "core/demo.h"
#include "core/health.h"
#include "core/proxy.h"
#include "core/router.h"
#include "core/standalone.h"
#include "core/tcp_metrics.h"
#include "http/accesslog.h"
#include "http/client.h"
#include "http/proxy.h"
#include "http/rewrite.h"
#include "http/server.h"
#include "acme/mgr.h"
#include "mgmt/sync.h"
#include "netstack/ns.h"
#include "platform/addr.h"
#include "platform/dns.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"
#include "platform/metrics.h"
#include "platform/sock.h"
#include "tls/tls.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifndef NB_VERSION
#define NB_VERSION "0.1.0"
#endif
#ifndef NB_COMMIT
#define NB_COMMIT "unknown"
#endif
#ifndef NB_BUILD_DATE
#define NB_BUILD_DATE "unknown"
#endif

#define DRAIN_MS       30000u
#define K8S_PRESTOP_MS 5000u

struct app {
    struct nb_loop *loop;
    struct nb_proxy *proxy;
    struct nb_tcp_metrics *tcpm; /* relays of every router (a reference) */
    struct nb_account **accounts;
    uint32_t n_accounts;
    /* the HTTP engine */
    struct http_fwd_cfg fwd;
    struct nb_access_log *access_log;
    struct nb_dns *dns;
    struct nb_dialer host_dialer;
    struct http_client *client;
    struct http_proxy *http;
    struct http_server *public_srv; /* --http-addr */
    struct nb_listener *public_lst;
    struct http_listener_ctx public_ctx;
    struct http_server *overlay_srv; /* --private: every account's tunnel listener */
    struct http_listener_ctx *overlay_ctx;
    struct nb_router **overlay_routers; /* --private: one per account (ports 443 and 80) */
    struct http_server *demo_srv;       /* --demo: the backend account's web server */
    /* the main TLS listener (--addr) */
    struct nb_certs *certs;
    struct nb_acme_link *acme; /* --acme-certs */
    struct tls_ctx *tls;
    struct http_server *tls_srv;
    struct nb_router *main_router;
    struct nb_listener *main_lst;
    struct l4_prefix *trusted; /* --trusted-proxies, for PROXY protocol */
    struct auth_geo *geo;      /* --geo-data-dir's GeoLite2 database, or NULL */
    struct auth_geo_ops geo_ops;
    size_t n_trusted;
    struct http_listener_ctx demo_ctx;
    struct nb_health *health; /* --health-addr */
    struct mgmt *mgmt;        /* management mode */
    uint64_t started_unix;
    struct nb_timer drain_timer;    /* polls for relays to finish after a signal */
    struct nb_timer deadline_timer; /* gives up draining after DRAIN_MS */
    struct nb_timer prestop_timer;  /* Kubernetes: 5 s between readiness 503 and the drain */
    bool stopping;
    uint8_t psk[32]; /* --preshared-key, secret */
    bool psk_set;
    uint64_t rekey_after_time_ms; /* NB_PROXY_WG_REKEY_AFTER_TIME (tests only) */
};

static void drain_check(struct nb_timer *t)
{
    struct app *app = t->arg;
    struct nb_proxy_stats st;
    if (app->proxy == NULL)
        return;
    nb_proxy_stats(app->proxy, &st);
    uint32_t http_conns = (app->public_srv ? http_server_conns(app->public_srv) : 0) +
                          (app->overlay_srv ? http_server_conns(app->overlay_srv) : 0) +
                          (app->tls_srv ? http_server_conns(app->tls_srv) : 0);
    if (st.relays_active == 0 && http_conns == 0) {
        nb_loop_stop(app->loop);
        return;
    }
    nb_timer_arm(app->loop, t, 100);
}

static void drain_deadline(struct nb_timer *t)
{
    struct app *app = t->arg;
    nb_warn("main", "drain deadline reached; closing remaining connections");
    nb_loop_stop(app->loop);
}

static void drain_start(struct app *app);

static void on_signal(void *arg, int signo)
{
    struct app *app = arg;
    if (app->stopping) {
        nb_warn("main", "second signal: stopping now");
        nb_loop_stop(app->loop);
        return;
    }
    app->stopping = true;
    nb_health_set_shutting_down(app->health); /* readiness 503 first (spec/proxy.md §10.4) */
    if (getenv("KUBERNETES_SERVICE_HOST")) {
        /* In a cluster, give endpoints a moment to notice the 503 before listeners go. */
        nb_info("main", "signal %d: readiness is 503; draining in %u s (Kubernetes)", signo,
                K8S_PRESTOP_MS / 1000);
        nb_timer_arm(app->loop, &app->prestop_timer, K8S_PRESTOP_MS);
        return;
    }
    drain_start(app);
}

static void prestop_done(struct nb_timer *t)
{
    drain_start(t->arg);
}

static void drain_start(struct app *app)
{
    nb_info("main", "draining (new connections refused, up to %u s)", DRAIN_MS / 1000);
    /* spec/proxy.md §10.4: HTTP servers drain (idle connections close, responses in progress
     * finish with "Connection: close"), upgraded connections close, L4 relays drain. */
    if (app->public_lst) {
        nb_listener_close(app->public_lst);
        app->public_lst = NULL;
    }
    if (app->main_lst) {
        nb_listener_close(app->main_lst);
        app->main_lst = NULL;
    }
    if (app->public_srv)
        http_server_drain(app->public_srv);
    if (app->overlay_srv)
        http_server_drain(app->overlay_srv);
    if (app->tls_srv)
        http_server_drain(app->tls_srv);
    if (app->overlay_routers)
        for (uint32_t i = 0; i < app->n_accounts; i++)
            if (app->overlay_routers[i])
                nb_router_drain(app->overlay_routers[i]);
    if (app->http)
        http_proxy_close_upgrades(app->http);
    nb_proxy_drain(app->proxy);
    nb_timer_arm(app->loop, &app->drain_timer, 0);
    nb_timer_arm(app->loop, &app->deadline_timer, DRAIN_MS);
}

/* Every account holds a UDP socket and every relay two streams: use the hard fd limit. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            nb_warn("main", "cannot raise the open-file limit to %llu",
                    (unsigned long long)rl.rlim_max);
    }
}

/* ---- /metrics: every series, read from the modules' stats at scrape time ---- */

static void counter(struct nb_prom *p, const char *name, const char *help, double v)
{
    nb_prom_family(p, name, "counter", help);
    nb_prom_sample(p, name, NULL, v);
}

static void gauge(struct nb_prom *p, const char *name, const char *help, double v)
{
    nb_prom_family(p, name, "gauge", help);
    nb_prom_sample(p, name, NULL, v);
}

/* spec/proxy.md §9.2 UDP instruments, plus nbproxy's own refusal and drop counters. */
static void udp_metrics(struct nb_prom *p, const struct nb_udp_stats *u)
{
    gauge(p, "proxy_udp_active_sessions", "UDP relay sessions open.", (double)u->sessions_active);
    nb_prom_family(p, "proxy_udp_sessions_total", "counter", "UDP relay sessions by result.");
    const char *ok[] = {"result", "success", NULL}, *de[] = {"result", "dial_error", NULL},
               *rj[] = {"result", "rejected", NULL};
    nb_prom_sample(p, "proxy_udp_sessions_total", ok, (double)u->sessions_total);
    nb_prom_sample(p, "proxy_udp_sessions_total", de, (double)u->dial_errors);
    nb_prom_sample(p, "proxy_udp_sessions_total", rj,
                   (double)(u->rejected_limit + u->rejected_rate));
    const char *up[] = {"direction", "client_to_backend", NULL},
               *down[] = {"direction", "backend_to_client", NULL};
    nb_prom_family(p, "proxy_udp_packets_total", "counter", "UDP datagrams relayed.");
    nb_prom_sample(p, "proxy_udp_packets_total", up, (double)u->packets_up);
    nb_prom_sample(p, "proxy_udp_packets_total", down, (double)u->packets_down);
    nb_prom_family(p, "proxy_udp_bytes_total", "counter", "UDP payload bytes relayed.");
    nb_prom_sample(p, "proxy_udp_bytes_total", up, (double)u->bytes_up);
    nb_prom_sample(p, "proxy_udp_bytes_total", down, (double)u->bytes_down);
    nb_prom_family(p, "nbproxy_udp_sessions_rejected_total", "counter",
                   "New UDP sessions refused, by reason (session limit, creation rate).");
    const char *lim[] = {"reason", "limit", NULL}, *rate[] = {"reason", "rate", NULL};
    nb_prom_sample(p, "nbproxy_udp_sessions_rejected_total", lim, (double)u->rejected_limit);
    nb_prom_sample(p, "nbproxy_udp_sessions_rejected_total", rate, (double)u->rejected_rate);
    nb_prom_family(p, "nbproxy_udp_sessions_ended_total", "counter",
                   "UDP sessions ended by idle timeout or by a write error.");
    const char *idle[] = {"reason", "idle", NULL}, *er[] = {"reason", "error", NULL};
    nb_prom_sample(p, "nbproxy_udp_sessions_ended_total", idle, (double)u->ended_idle);
    nb_prom_sample(p, "nbproxy_udp_sessions_ended_total", er, (double)u->ended_error);
    counter(p, "nbproxy_udp_dropped_packets_total",
            "UDP datagrams not relayed (refused sessions, no memory, socket full).",
            (double)u->dropped_packets);
    counter(p, "nbproxy_udp_dropped_bytes_total", "Payload bytes of those datagrams.",
            (double)u->dropped_bytes);
}

/* Clients refused by a mapping's access restrictions, by verdict and protocol (auth/). */
static void restriction_metrics(struct nb_prom *p)
{
    nb_prom_family(p, "nbproxy_access_denied_total", "counter",
                   "Requests, connections and UDP sessions refused by access restrictions.");
    for (int v = AUTH_DENY_IP; v < AUTH_VERDICT_COUNT; v++)
        for (int pr = 0; pr < AUTH_PROTO_COUNT; pr++) {
            uint64_t n = auth_restrict_denials((enum auth_verdict)v, (enum auth_proto)pr);
            if (n == 0)
                continue;
            const char *l[] = {"verdict", auth_verdict_name((enum auth_verdict)v), "protocol",
                               auth_proto_name((enum auth_proto)pr), NULL};
            nb_prom_sample(p, "nbproxy_access_denied_total", l, (double)n);
        }
}

static void process_metrics(struct app *app, struct nb_prom *p)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            pages = rss = 0;
        fclose(f);
    }
    long psz = sysconf(_SC_PAGESIZE);
    gauge(p, "process_resident_memory_bytes", "Resident memory size in bytes.",
          (double)rss * (double)psz);
    gauge(p, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
          (double)pages * (double)psz);
    gauge(p, "process_start_time_seconds", "Start time of the process since unix epoch.",
          (double)app->started_unix);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        counter(p, "process_cpu_seconds_total", "Total user and system CPU time in seconds.",
                (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                    ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6);
}

static void app_metrics(void *arg, struct nb_prom *p)
{
    struct app *app = arg;
    process_metrics(app, p);
    if (app->http) {
        struct http_proxy_stats hs;
        http_proxy_stats(app->http, &hs);
        counter(p, "proxy_http_request_counter_total", "HTTP requests handled.",
                (double)hs.requests);
        gauge(p, "proxy_http_active_requests", "HTTP requests in progress.", (double)hs.active);
        nb_prom_family(p, "proxy_http_request_duration_ms", "histogram",
                       "Time to handle an HTTP request (auth, upstream, body), milliseconds.");
        nb_prom_histogram(p, "proxy_http_request_duration_ms", NULL, &hs.request_ms);
        nb_prom_family(p, "proxy_backend_duration_ms", "histogram",
                       "Time of each upstream exchange, milliseconds.");
        nb_prom_histogram(p, "proxy_backend_duration_ms", NULL, &hs.backend_ms);
        const struct http_routes *rt = http_proxy_routes(app->http);
        gauge(p, "proxy_domains_count", "HTTP domains routed.", (double)http_routes_count(rt));
        gauge(p, "proxy_paths_count", "Paths over all routed HTTP services.",
              (double)http_routes_paths(rt));
        counter(p, "nbproxy_http_not_found_total", "Requests answered 404 Service Not Found.",
                (double)hs.not_found);
        counter(p, "nbproxy_http_upstream_errors_total",
                "Requests answered with an upstream error page (502/503/504).",
                (double)hs.upstream_errors);
        counter(p, "nbproxy_http_aborted_total",
                "Responses cut short (upstream failed mid-body, or the client went away).",
                (double)hs.aborted);
        gauge(p, "nbproxy_http_upgraded_connections", "Upgraded (WebSocket) connections open.",
              (double)hs.upgrades_active);
    }
    struct http_server *srvs[3] = {app->public_srv, app->overlay_srv, app->tls_srv};
    const char *names[3] = {"public", "tunnel", "tls"};
    nb_prom_family(p, "nbproxy_http_connections", "gauge", "Client connections open.");
    for (int i = 0; i < 3; i++)
        if (srvs[i]) {
            const char *l[] = {"listener", names[i], NULL};
            nb_prom_sample(p, "nbproxy_http_connections", l, (double)http_server_conns(srvs[i]));
        }
    nb_prom_family(p, "nbproxy_http_bad_requests_total", "counter",
                   "Requests rejected by the parser (400) or over a limit (431).");
    for (int i = 0; i < 3; i++)
        if (srvs[i]) {
            struct http_server_stats ss;
            http_server_stats(srvs[i], &ss);
            const char *l[] = {"listener", names[i], NULL};
            nb_prom_sample(p, "nbproxy_http_bad_requests_total", l,
                           (double)(ss.bad_requests + ss.too_large));
        }
    if (app->client) {
        struct http_client_stats cs;
        http_client_stats(app->client, &cs);
        gauge(p, "nbproxy_upstream_connections", "Upstream connections open (idle included).",
              (double)cs.conns_open);
        gauge(p, "nbproxy_upstream_idle_connections", "Idle pooled upstream connections.",
              (double)cs.conns_idle);
        counter(p, "nbproxy_upstream_connections_opened_total", "Upstream connections dialled.",
                (double)cs.conns_opened);
        counter(p, "nbproxy_upstream_connections_reused_total",
                "Exchanges sent on a pooled connection.", (double)cs.conns_reused);
    }
    if (app->proxy) {
        struct nb_proxy_stats ps;
        nb_proxy_stats(app->proxy, &ps);
        nb_prom_family(p, "proxy_l4_services_count", "gauge", "L4 services applied, by mode.");
        static const struct {
            const char *name;
            enum nb_mapping_mode mode;
        } modes[3] = {{"tcp", NB_MODE_TCP}, {"tls", NB_MODE_TLS}, {"udp", NB_MODE_UDP}};
        for (int i = 0; i < 3; i++) {
            const char *l[] = {"mode", modes[i].name, NULL};
            nb_prom_sample(p, "proxy_l4_services_count", l, (double)ps.by_mode[modes[i].mode]);
        }
        udp_metrics(p, &ps.udp);
    }
    if (app->tcpm)
        nb_tcp_metrics_render(app->tcpm, p);
    if (app->acme) {
        struct acme_mgr_stats as;
        nb_acme_link_stats(app->acme, &as);
        nb_prom_family(p, "proxy_certificate_issue_duration_ms", "histogram",
                       "ACME order started to the domain's first certificate served, "
                       "milliseconds (certificates issued by an order only).");
        nb_prom_histogram(p, "proxy_certificate_issue_duration_ms", NULL, &as.issue_ms);
    }
    restriction_metrics(p);
    if (app->mgmt) {
        struct mgmt_stats ms;
        mgmt_stats(app->mgmt, &ms);
        nb_prom_family(p, "proxy_sync_snapshot_duration_ms", "histogram",
                       "Mapping stream opened to initial snapshot applied, milliseconds.");
        nb_prom_histogram(p, "proxy_sync_snapshot_duration_ms", NULL, &ms.snapshot_hist);
        nb_prom_family(p, "proxy_sync_batch_duration_ms", "histogram",
                       "Time to apply each snapshot batch, milliseconds.");
        nb_prom_histogram(p, "proxy_sync_batch_duration_ms", NULL, &ms.batch_hist);
        nb_prom_family(p, "proxy_peer_add_duration_ms", "histogram",
                       "CreateProxyPeer round trips by result, milliseconds.");
        const char *ok[] = {"result", "success", NULL}, *er[] = {"result", "error", NULL};
        nb_prom_histogram(p, "proxy_peer_add_duration_ms", ok, &ms.peer_ok_hist);
        nb_prom_histogram(p, "proxy_peer_add_duration_ms", er, &ms.peer_err_hist);
        gauge(p, "nbproxy_management_connected", "1 while the mapping stream is open.",
              ms.connected ? 1 : 0);
        counter(p, "nbproxy_management_reconnects_total", "Mapping streams that ended.",
                (double)ms.disconnects);
        gauge(p, "nbproxy_management_services", "Services applied from management.",
              (double)ms.services);
        counter(p, "nbproxy_management_mapping_errors_total",
                "Mappings reported to management with an ERROR status.", (double)ms.mapping_errors);
        counter(p, "nbproxy_management_access_logs_dropped_total",
                "Access-log records not sent to management (disconnected or too many in "
                "flight).",
                (double)ms.logs_dropped);
    }
    if (app->main_router) {
        struct nb_router_stats rs;
        nb_router_stats(app->main_router, &rs);
        counter(p, "nbproxy_tls_listener_connections_total",
                "Connections accepted on the main TLS listener (--addr).", (double)rs.accepted);
        nb_prom_family(p, "nbproxy_tls_handshakes_total", "counter",
                       "TLS handshakes on the main listener by result.");
        const char *ok[] = {"result", "success", NULL}, *fl[] = {"result", "failure", NULL};
        nb_prom_sample(p, "nbproxy_tls_handshakes_total", ok, (double)rs.tls_handoffs);
        nb_prom_sample(p, "nbproxy_tls_handshakes_total", fl, (double)rs.tls_failures);
        counter(p, "nbproxy_router_peek_closed_total",
                "Main-listener connections closed before a routing decision (deadline, EOF).",
                (double)rs.peek_closed);
        counter(p, "nbproxy_proxy_protocol_rejected_total",
                "Connections closed for a missing or invalid PROXY header (main listener).",
                (double)rs.pp_rejected);
    }
    if (app->access_log) {
        struct nb_access_log_stats as;
        nb_access_log_stats(app->access_log, &as);
        counter(p, "nbproxy_access_log_entries_total", "Access-log records that passed the rules.",
                (double)as.logged);
        counter(p, "nbproxy_access_log_dropped_total",
                "Access-log lines lost because the output could not keep up.", (double)as.dropped);
    }
}

static int host_dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                     void *arg, struct nb_stream **out)
{
    return nb_tcp_connect(ctx, dst, 0, cbs, arg, out);
}

/*
 * Geolocation (spec/proxy.md §10.2): the GeoLite2 database when the directory holds one (never
 * downloaded: docs/configuration.md). CrowdSec (§10.3) has no bouncer in this build.
 */
static int geo_setup(struct app *app, const struct nb_config *cfg)
{
    char err[512] = "";
    int rc = auth_geo_open(cfg->geo_data_dir, cfg->disable_geolocation, &app->geo, err, sizeof err);
    if (rc != NB_OK) {
        nb_error("main", "%s", err[0] ? err : nb_strerror(rc));
        return rc;
    }
    app->geo_ops = auth_geo_ops(app->geo);
    if (app->geo)
        nb_info("main", "geolocation: %s", auth_geo_path(app->geo));
    else
        nb_info("main", "%s: country restrictions deny every client (geo_unavailable)", err);
    /* --crowdsec-*: core/config.c warns that they are accepted and ignored (no bouncer). */
    return NB_OK;
}

/*
 * The HTTP engine shared by every listener: forwarding rules, access log, resolver, upstream
 * pool, the proxy handler. Built before the mappings are applied (they land in its routes).
 */
static int http_setup(struct app *app, const struct nb_config *cfg)
{
    char err[256] = "";
    http_fwd_cfg_init(&app->fwd);
    if (http_trusted_parse(&app->fwd, cfg->trusted_proxies, err, sizeof err) != NB_OK) {
        nb_error("main", "--trusted-proxies: %s", err);
        return NB_E_INVAL;
    }
    if (http_forwarded_proto_parse(cfg->forwarded_proto, &app->fwd.proto) != NB_OK) {
        nb_error("main", "--forwarded-proto must be auto, http or https");
        return NB_E_INVAL;
    }
    int rc = geo_setup(app, cfg);
    if (rc != NB_OK)
        return rc;
    rc = nb_access_log_new(app->loop, cfg->access_log, &app->access_log);
    if (rc != NB_OK) {
        nb_error("main", "--access-log %s: %s", cfg->access_log,
                 rc == NB_E_IO ? strerror(errno) : nb_strerror(rc));
        return rc;
    }
    struct nb_dns_opts dopts;
    nb_dns_opts_init(&dopts);
    if ((rc = nb_dns_new(app->loop, &dopts, &app->dns)) != NB_OK) {
        /* Targets by IP still work; host names answer 502 until a resolver exists. */
        nb_warn("main", "no DNS resolver (%s): only IP-literal targets will work", nb_strerror(rc));
        app->dns = NULL;
    }
    app->host_dialer = (struct nb_dialer){host_dial, app->loop};
    struct http_client_opts co = {
        .max_idle_conns = cfg->max_idle_conns,
        .max_idle_per_host = cfg->max_idle_conns_per_host,
        .max_conns_per_host = cfg->max_conns_per_host,
        .idle_conn_timeout_ms = (uint32_t)cfg->idle_conn_timeout_ms,
        .response_header_timeout = (uint32_t)cfg->response_header_timeout_ms,
        .max_inflight = cfg->max_inflight,
    };
    app->client = http_client_new(app->loop, &co);
    struct http_proxy_opts ho = {
        .client = app->client,
        .fwd = &app->fwd,
        .access_log = app->access_log,
        .dns = app->dns,
        .host = &app->host_dialer,
        .max_dial_timeout_ms = cfg->max_dial_timeout_ms,
        .geo = &app->geo_ops,
    };
    if (app->client == NULL || (app->http = http_proxy_new(app->loop, &ho)) == NULL)
        return NB_E_NOMEM;
    return NB_OK;
}

/* --http-addr: the plain-HTTP public listener (until the TLS listener exists, and for setups
 * behind another TLS terminator). */
static int http_listen_public(struct app *app, const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (nb_addr_parse(addr, &ss, &sl) != NB_OK) {
        nb_error("main", "--http-addr \"%s\": not an address (ip:port, [v6]:port or :port)", addr);
        return NB_E_INVAL;
    }
    struct http_handler h = http_proxy_handler(app->http);
    app->public_srv = http_server_new(app->loop, NULL, &h);
    if (app->public_srv == NULL)
        return NB_E_NOMEM;
    app->public_ctx = (struct http_listener_ctx){.server = app->public_srv};
    int rc = nb_tcp_listen(app->loop, (struct sockaddr *)&ss, 1024, http_server_accept_cb,
                           &app->public_ctx, &app->public_lst);
    if (rc != NB_OK) {
        nb_error("main", "--http-addr %s: cannot listen: %s", addr, strerror(errno));
        return rc;
    }
    nb_info("main", "HTTP listener on %s", addr);
    return NB_OK;
}

/*
 * --private: every account serves its own HTTP mappings on ports 443 and 80 of its tunnel
 * address (spec/proxy.md §6.2), scoped to that account. Both ports feed one router per account
 * that peeks: TLS -> terminated with the same certificates as the public listener, anything else
 * -> plain HTTP. Inbound servers use the reference's inbound timeouts (ReadHeaderTimeout 30 s,
 * IdleTimeout 90 s).
 */
static int http_listen_private(struct app *app, const struct nb_standalone *sa)
{
    struct http_server_opts so = {.read_header_timeout_ms = 30000, .idle_timeout_ms = 90000};
    struct http_handler h = http_proxy_handler(app->http);
    app->overlay_srv = http_server_new(app->loop, &so, &h);
    app->overlay_ctx = calloc(app->n_accounts ? app->n_accounts : 1, sizeof *app->overlay_ctx);
    app->overlay_routers =
        calloc(app->n_accounts ? app->n_accounts : 1, sizeof *app->overlay_routers);
    if (app->overlay_srv == NULL || app->overlay_ctx == NULL || app->overlay_routers == NULL)
        return NB_E_NOMEM;
    for (uint32_t i = 0; i < app->n_accounts; i++) {
        struct http_listener_ctx *ctx = &app->overlay_ctx[i];
        ctx->server = app->overlay_srv;
        ctx->info.overlay = true;
        ctx->info.scope = strdup(sa->accounts[i].id);
        if (ctx->info.scope == NULL)
            return NB_E_NOMEM;
        char name[96];
        snprintf(name, sizeof name, "account %s", sa->accounts[i].id);
        struct nb_router_opts ro = {
            .name = name,
            .tls = app->tls,
            .https = app->tls ? app->overlay_srv : NULL,
            .plain = app->overlay_srv,
            .overlay = true,
            .scope = sa->accounts[i].id,
            .access_log = app->access_log,
            .geo = &app->geo_ops,
            .dialer = nb_proxy_dialer,
            .dialer_arg = app->proxy,
        };
        if ((app->overlay_routers[i] = nb_router_new(app->loop, &ro)) == NULL)
            return NB_E_NOMEM;
        static const uint16_t ports[2] = {443, 80};
        for (int k = 0; k < 2; k++) {
            int rc = nb_account_listen(app->accounts[i], ports[k], nb_router_accept_cb,
                                       app->overlay_routers[i]);
            if (rc != NB_OK) {
                /* The reference logs it and runs the account without inbound listeners. */
                nb_warn("main", "account %s: no tunnel listener on port %u: %s", sa->accounts[i].id,
                        ports[k], nb_strerror(rc));
                continue;
            }
        }
        nb_info("main", "account %s: HTTP%s on ports 443 and 80 of its tunnel address",
                sa->accounts[i].id, app->tls ? " and HTTPS" : "");
    }
    return NB_OK;
}

/* --trusted-proxies as l4 prefixes, for the PROXY protocol policy (spec/proxy.md §10.1). The
 * HTTP layer parsed (and validated) the same list already. */
static int parse_trusted_l4(struct app *app, const char *list)
{
    if (list == NULL || list[0] == '\0')
        return NB_OK;
    size_t n = 1;
    for (const char *q = list; *q; q++)
        n += *q == ',';
    app->trusted = calloc(n, sizeof *app->trusted);
    char *copy = strdup(list);
    if (app->trusted == NULL || copy == NULL) {
        free(copy);
        return NB_E_NOMEM;
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*tok == '\0')
            continue;
        struct nb_prefix pf;
        if (nb_prefix_parse(tok, &pf) != NB_OK) {
            free(copy);
            return NB_E_INVAL;
        }
        struct l4_prefix *lp = &app->trusted[app->n_trusted++];
        lp->family = pf.family;
        memcpy(lp->addr, pf.addr, sizeof lp->addr);
        lp->bits = pf.len;
    }
    free(copy);
    return NB_OK;
}

/* ACME has a certificate for domain: management hears "certificate issued" (spec §3.6). */
static void acme_ready(void *arg, const char *domain, bool issued)
{
    struct app *app = arg;
    (void)issued;
    if (app->mgmt)
        mgmt_certificate_ready(app->mgmt, domain);
}

static char *path_join(const char *dir, const char *file)
{
    if (file[0] == '/' || dir == NULL || dir[0] == '\0')
        return strdup(file);
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, file);
    return p;
}

/*
 * Certificates and the TLS server context shared by the main listener and the tunnel listeners
 * (spec/proxy.md §7). Static files: always in management mode without ACME (a failure is a
 * start-up error, as in the reference); standalone, when --cert-* is given or the default files
 * exist. Standalone with no certificate (and ACME off): a self-signed one for the mapped
 * domains.
 */
static int tls_setup(struct app *app, const struct nb_config *cfg, const struct nb_standalone *sa,
                     bool mgmt_mode)
{
    char *cert = path_join(cfg->cert_dir, cfg->cert_file);
    char *key = path_join(cfg->cert_dir, cfg->cert_key_file);
    const char **names = calloc(sa->n_mappings + 2, sizeof *names);
    int rc = NB_E_NOMEM;
    if (cert == NULL || key == NULL || names == NULL)
        goto out;
    bool explicit_files = nb_config_explicit(cfg, "cert-dir") ||
                          nb_config_explicit(cfg, "cert-file") ||
                          nb_config_explicit(cfg, "cert-key-file");
    bool use_static;
    if (cfg->acme_certs) {
        use_static = false; /* spec §7.2: ACME (and the wildcard directory) instead */
    } else if (mgmt_mode || explicit_files) {
        use_static = true;
    } else {
        use_static = access(cert, R_OK) == 0 && access(key, R_OK) == 0;
    }
    size_t n = 0;
    if (!mgmt_mode && !cfg->acme_certs) {
        if (cfg->domain && cfg->domain[0])
            names[n++] = cfg->domain;
        for (uint32_t i = 0; i < sa->n_mappings && n < 100; i++) {
            const struct nb_mapping *m = &sa->mappings[i];
            if (nb_mapping_mode(m) == NB_MODE_HTTP && m->domain && m->domain[0])
                names[n++] = m->domain;
        }
        if (n == 0)
            names[n++] = "localhost";
    }
    struct nb_certs_opts co = {
        .cert_path = use_static ? cert : NULL,
        .key_path = use_static ? key : NULL,
        .wildcard_dir = cfg->wildcard_cert_dir,
        .selfsigned_names = names,
        .n_selfsigned = n,
    };
    char err[512] = "";
    rc = nb_certs_new(app->loop, &co, &app->certs, err, sizeof err);
    if (rc != NB_OK) {
        nb_error("main", "certificates: %s", err[0] ? err : nb_strerror(rc));
        goto out;
    }
    if (cfg->acme_certs && (rc = nb_acme_link_new(app->loop, app->dns, cfg, app->certs, acme_ready,
                                                  app, &app->acme)) != NB_OK)
        goto out;
    for (uint32_t i = 0; i < sa->n_mappings && !cfg->acme_certs; i++) {
        const struct nb_mapping *m = &sa->mappings[i];
        if (nb_mapping_mode(m) == NB_MODE_HTTP && m->domain && m->domain[0])
            (void)nb_certs_check_domain(app->certs, m->domain);
    }
    /* The single ALPN list of every TLS listener (spec §7.2: autocert's). */
    struct tls_server_opts to = {
        .select = nb_certs_select,
        .select_arg = app->certs,
        .alpn = "h2,http/1.1,acme-tls/1",
        .answer_plain_http = true,
    };
    rc = tls_ctx_new_server(&to, &app->tls);
    if (rc != NB_OK)
        nb_error("main", "TLS context: %s", nb_strerror(rc));
out:
    free(cert);
    free(key);
    free(names);
    return rc;
}

/* --addr: the main TLS listener and its router (spec/proxy.md §3.7). */
static int tls_listen_main(struct app *app, const struct nb_config *cfg)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (nb_addr_parse(cfg->addr, &ss, &sl) != NB_OK) {
        nb_error("main", "--addr \"%s\": not an address (ip:port, [v6]:port or :port)", cfg->addr);
        return NB_E_INVAL;
    }
    struct http_handler h = http_proxy_handler(app->http);
    app->tls_srv = http_server_new(app->loop, NULL, &h);
    if (app->tls_srv == NULL)
        return NB_E_NOMEM;
    struct nb_router_opts ro = {
        .name = "main",
        .tls = app->tls,
        .https = app->tls_srv,
        .proxy_protocol = cfg->proxy_protocol,
        .trusted = app->trusted,
        .n_trusted = app->n_trusted,
        .access_log = app->access_log,
        .geo = &app->geo_ops,
        .dialer = nb_proxy_dialer,
        .dialer_arg = app->proxy,
        .tcp_metrics = app->tcpm,
    };
    app->main_router = nb_router_new(app->loop, &ro);
    if (app->main_router == NULL)
        return NB_E_NOMEM;
    int rc = nb_tcp_listen(app->loop, (struct sockaddr *)&ss, 1024, nb_router_accept_cb,
                           app->main_router, &app->main_lst);
    if (rc != NB_OK && ss.ss_family == AF_INET6 && cfg->addr[0] == ':') {
        /* ":port" on a host without IPv6: IPv4 any. */
        nb_addr_from_ip("0.0.0.0", nb_addr_port((struct sockaddr *)&ss), &ss, NULL);
        rc = nb_tcp_listen(app->loop, (struct sockaddr *)&ss, 1024, nb_router_accept_cb,
                           app->main_router, &app->main_lst);
    }
    if (rc != NB_OK) {
        nb_error("main", "--addr %s: cannot listen: %s", cfg->addr, strerror(errno));
        return rc;
    }
    nb_proxy_set_main_router(app->proxy, app->main_router,
                             (int32_t)nb_addr_port((struct sockaddr *)&ss));
    if (cfg->proxy_protocol && app->n_trusted == 0)
        nb_warn("main", "--proxy-protocol without --trusted-proxies: PROXY headers are accepted "
                        "from anyone");
    nb_info("main", "TLS listener on %s%s", cfg->addr,
            cfg->proxy_protocol ? " (PROXY protocol)" : "");
    return NB_OK;
}

/* ---- management mode ---- */

static int hook_apply(void *arg, const struct nb_mapping *m, char *err, size_t errlen)
{
    struct app *app = arg;
    int rc = nb_proxy_apply(app->proxy, m, err, errlen);
    if (rc == NB_OK)
        nb_acme_link_mapping(app->acme, m);
    return rc;
}

/* ACTIVE carries certificate_issued when a file certificate covers the domain (spec §7.1: one
 * that does not is only a warning) or ACME serves one already. */
static bool hook_cert_ready(void *arg, const char *domain)
{
    struct app *app = arg;
    if (app->certs == NULL || domain == NULL || domain[0] == '\0')
        return false;
    if (app->acme)
        return nb_acme_link_ready(app->acme, domain) || nb_certs_check_domain(app->certs, domain);
    return nb_certs_check_domain(app->certs, domain);
}

static void hook_connected(void *arg, bool up)
{
    struct app *app = arg;
    nb_health_set_connected(app->health, up);
}

static void hook_initial_sync(void *arg)
{
    struct app *app = arg;
    nb_health_set_initial_sync(app->health);
}

static int start_mgmt(struct app *app, const struct nb_config *cfg, const char *token)
{
    char proxy_id[64], err[256] = "";
    mgmt_proxy_id(proxy_id);
    struct mgmt_opts mo = {
        .url = cfg->mgmt_addr,
        .token = token,
        .allow_insecure = cfg->allow_insecure,
        .proxy_id = proxy_id,
        .version = NB_VERSION,
        .started_at_sec = app->started_unix,
        .address = cfg->domain,
        .supports_custom_ports = cfg->supports_custom_ports,
        .require_subdomain = cfg->require_subdomain,
        /* No CrowdSec bouncer is built: claiming the capability would let management send
         * crowdsec modes this proxy cannot honour (docs/management.md). */
        .supports_crowdsec = false,
        .private_mode = cfg->private_mode,
        .batch_watchdog_ms = cfg->batch_watchdog_ms,
        .dns = app->dns,
        /* Go's crypto/x509 reads the system roots from SSL_CERT_FILE when it is set */
        .ca_file = getenv("SSL_CERT_FILE"),
    };
    struct mgmt_hooks hooks = {
        .arg = app,
        .apply = hook_apply,
        .connected = hook_connected,
        .initial_sync = hook_initial_sync,
        .cert_ready = hook_cert_ready,
    };
    int rc = mgmt_new(app->loop, &mo, &hooks, &app->mgmt, err, sizeof err);
    if (rc != NB_OK) {
        nb_error("main", "--mgmt: %s", err[0] ? err : nb_strerror(rc));
        return rc;
    }
    if (app->access_log &&
        nb_access_log_add_sink(app->access_log, mgmt_access_log_sink, app->mgmt) != NB_OK)
        nb_warn("main", "access logs will not reach management (no sink slot)");
    nb_info("main", "proxy id %s, cluster %s, management %s", proxy_id, cfg->domain,
            cfg->mgmt_addr);
    return NB_OK;
}

static int start(struct app *app, const struct nb_config *cfg, struct nb_standalone *sa)
{
    char err[512] = "";
    app->accounts = calloc(sa->n_accounts ? sa->n_accounts : 1, sizeof *app->accounts);
    if (app->accounts == NULL)
        return NB_E_NOMEM;
    for (uint32_t i = 0; i < sa->n_accounts; i++) {
        struct nb_account_opts ao = {.wg_port = cfg->wg_port,
                                     .preshared_key = app->psk_set ? app->psk : NULL,
                                     .rekey_after_time_ms = app->rekey_after_time_ms};
        err[0] = '\0';
        int rc =
            nb_account_open(app->loop, &sa->accounts[i], &ao, &app->accounts[i], err, sizeof err);
        if (rc != NB_OK) {
            nb_error("main", "account %s: %s", sa->accounts[i].id, err[0] ? err : nb_strerror(rc));
            return rc;
        }
        app->n_accounts++;
        struct nb_dialer d;
        nb_account_dialer(app->accounts[i], &d);
        if ((rc = nb_proxy_add_account(app->proxy, sa->accounts[i].id, &d)) != NB_OK)
            return rc;
        struct nb_udp_dialer ud;
        nb_account_udp_dialer(app->accounts[i], &ud);
        if ((rc = nb_proxy_set_udp_dialer(app->proxy, sa->accounts[i].id, &ud)) != NB_OK)
            return rc;
    }
    for (uint32_t i = 0; i < sa->n_mappings; i++) {
        err[0] = '\0';
        int rc = nb_proxy_apply(app->proxy, &sa->mappings[i], err, sizeof err);
        if (rc != NB_OK) {
            nb_error("main", "mapping %s: %s", sa->mappings[i].id, err[0] ? err : nb_strerror(rc));
            return rc;
        }
        nb_acme_link_mapping(app->acme, &sa->mappings[i]);
    }
    return NB_OK;
}

static void stop(struct app *app)
{
    nb_timer_cancel(&app->drain_timer);
    nb_timer_cancel(&app->deadline_timer);
    nb_timer_cancel(&app->prestop_timer);
    /* The management connection first (no more mapping changes), then the servers (their
     * requests end and cancel their exchanges), the services and accounts' networks, the
     * engine. */
    if (app->mgmt && app->access_log)
        (void)nb_access_log_remove_sink(app->access_log, mgmt_access_log_sink, app->mgmt);
    mgmt_free(app->mgmt);
    app->mgmt = NULL;
    /* ACME next: its connections to the CA close here and are freed by the loop turns below;
     * handshakes in flight keep their own references to its certificates. */
    nb_acme_link_free(app->acme);
    app->acme = NULL;
    if (app->public_lst)
        nb_listener_close(app->public_lst);
    app->public_lst = NULL;
    if (app->main_lst)
        nb_listener_close(app->main_lst);
    app->main_lst = NULL;
    /* Handshakes in progress would hand their streams to the servers freed below. */
    if (app->main_router)
        nb_router_abort(app->main_router);
    if (app->overlay_routers)
        for (uint32_t i = 0; i < app->n_accounts; i++)
            if (app->overlay_routers[i])
                nb_router_abort(app->overlay_routers[i]);
    http_server_free(app->public_srv);
    http_server_free(app->overlay_srv);
    http_server_free(app->demo_srv);
    http_server_free(app->tls_srv);
    app->public_srv = app->overlay_srv = app->demo_srv = app->tls_srv = NULL;
    if (app->http)
        http_proxy_close_upgrades(app->http);
    for (int i = 0; i < 3; i++)
        nb_loop_run_once(app->loop, 0);
    nb_proxy_free(app->proxy);
    app->proxy = NULL;
    nb_router_free(app->main_router); /* after the proxy: it removed its routes from it */
    app->main_router = NULL;
    http_proxy_free(app->http);
    app->http = NULL;
    http_client_free(app->client);
    app->client = NULL;
    /* Let cancelled relays and closing streams settle before the netstack goes away. */
    for (int i = 0; i < 3; i++)
        nb_loop_run_once(app->loop, 0);
    for (uint32_t i = 0; i < app->n_accounts; i++) {
        /* An account's tunnel listeners feed its router: both go in the same step, with no
         * loop iteration in between. */
        if (app->overlay_routers)
            nb_router_free(app->overlay_routers[i]);
        nb_account_close(app->accounts[i]);
    }
    free(app->overlay_routers);
    app->overlay_routers = NULL;
    free(app->accounts);
    if (app->overlay_ctx)
        for (uint32_t i = 0; i < app->n_accounts; i++)
            free((char *)app->overlay_ctx[i].info.scope);
    free(app->overlay_ctx);
    for (int i = 0; i < 3; i++)
        nb_loop_run_once(app->loop, 0);
    tls_ctx_unref(app->tls);
    app->tls = NULL;
    nb_certs_free(app->certs);
    app->certs = NULL;
    free(app->trusted);
    app->trusted = NULL;
    nb_health_free(app->health);
    app->health = NULL;
    /* Sockets still flushing or waiting for their peer's FIN after a graceful close go now. */
    nb_tcp_close_lingering();
    nb_loop_run_once(app->loop, 0);
    nb_dns_free(app->dns);
    nb_access_log_free(app->access_log);
    http_fwd_cfg_deinit(&app->fwd);
    /* Routers and relay targets hold their own references: this is the app's. */
    nb_tcp_metrics_unref(app->tcpm);
    app->tcpm = NULL;
    auth_geo_free(app->geo);
    app->geo = NULL;
    app->geo_ops = auth_geo_ops(NULL);
}

static int run_demo_backend(struct app *app, struct nb_standalone *sa)
{
    /* The demo's backend account serves HTTP on its tunnel address, port 80. */
    app->demo_srv = nb_demo_backend_new(app->loop, NB_DEMO_BACKEND_IP " (account demo-backend)");
    if (app->demo_srv == NULL)
        return NB_E_NOMEM;
    app->demo_ctx = (struct http_listener_ctx){.server = app->demo_srv};
    for (uint32_t i = 0; i < sa->n_accounts; i++)
        if (strcmp(sa->accounts[i].id, "demo-backend") == 0)
            return nb_account_listen(app->accounts[i], 80, http_server_accept_cb, &app->demo_ctx);
    return NB_E_NOTFOUND;
}

/*
 * Both demo accounts bind random UDP ports; point the proxy account's peer at the backend's.
 * (accounts[0] is "demo", accounts[1] is "demo-backend": nb_demo_config's order.)
 */
static int demo_link(struct app *app)
{
    if (app->n_accounts != 2)
        return NB_E_INVAL;
    struct sockaddr_storage ep;
    nb_addr_from_ip("127.0.0.1", nb_account_wg_port(app->accounts[1]), &ep, NULL);
    uint8_t backend_pub[32];
    nb_account_public_key(app->accounts[1], backend_pub);
    return nb_account_set_peer_endpoint(app->accounts[0], backend_pub, (struct sockaddr *)&ep);
}

int main(int argc, char **argv)
{
    struct nb_config cfg;
    char err[512];
    bool demo = false;

    /* --demo [--demo-port N] is nbproxy's own switch for the embedded default; strip it
     * before the netbird-proxy flag table sees the arguments. */
    long demo_port = NB_DEMO_PORT;
    for (int i = 1; i < argc; i++) {
        int eat = 0;
        if (strcmp(argv[i], "--demo") == 0) {
            demo = true;
            eat = 1;
        } else if (strncmp(argv[i], "--demo-port", 11) == 0) {
            const char *v = argv[i][11] == '=' ? argv[i] + 12 : i + 1 < argc ? argv[i + 1] : "";
            char *end;
            demo_port = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || demo_port < 1 || demo_port > 65535) {
                fprintf(stderr, "nbproxy: --demo-port needs a port number 1..65535\n");
                return 1;
            }
            eat = argv[i][11] == '=' ? 1 : 2;
        }
        if (eat) {
            memmove(&argv[i], &argv[i + eat], (size_t)(argc - i - eat + 1) * sizeof *argv);
            argc -= eat;
            i--;
        }
    }
    if (nb_config_load(&cfg, argc, argv, err, sizeof err) != NB_OK) {
        fprintf(stderr, "nbproxy: %s (see --help)\n", err);
        nb_config_free(&cfg);
        return 1;
    }
    if (cfg.help) {
        nb_config_usage(stdout);
        printf("  --demo                       run the embedded demo (no management server)\n"
               "  --demo-port N                host port of the demo (default %d)\n",
               NB_DEMO_PORT);
        nb_config_free(&cfg);
        return 0;
    }
    if (cfg.version) {
        printf("Version: %s, Commit: %s, BuildDate: %s, Go: none (C11)\n", NB_VERSION, NB_COMMIT,
               NB_BUILD_DATE);
        nb_config_free(&cfg);
        return 0;
    }
    nb_log_set_level((enum nb_log_level)nb_log_level_parse(cfg.log_level));
    if (cfg.debug_logs && nb_log_threshold < NB_LOG_DEBUG)
        nb_log_set_level(NB_LOG_DEBUG);
    if (sodium_init() < 0) {
        fprintf(stderr, "nbproxy: libsodium failed to initialise\n");
        return 1;
    }

    struct nb_standalone sa;
    bool mgmt_mode = false;
    char *token = NULL;
    if (demo) {
        if (nb_demo_config(&sa, 0, 0) != NB_OK) {
            fprintf(stderr, "nbproxy: cannot build the demo configuration\n");
            return 1;
        }
    } else if (cfg.config_file && cfg.config_file[0]) {
        if (nb_standalone_load(cfg.config_file, &sa, err, sizeof err) != NB_OK) {
            fprintf(stderr, "nbproxy: %s: %s\n", cfg.config_file, err);
            nb_config_free(&cfg);
            return 1;
        }
    } else {
        /* Management mode: mappings come from the management server (spec/proxy.md §2). */
        memset(&sa, 0, sizeof sa);
        mgmt_mode = true;
        const char *tok = getenv("NB_PROXY_TOKEN");
        if (tok == NULL || tok[0] == '\0') {
            fprintf(stderr, "nbproxy: NB_PROXY_TOKEN is required to connect to management "
                            "(or run standalone with --config FILE, or try --demo)\n");
            nb_config_free(&cfg);
            return 1;
        }
        if (!mgmt_domain_valid(cfg.domain)) {
            fprintf(stderr, "nbproxy: invalid domain value \"%s\" (--domain / NB_PROXY_DOMAIN)\n",
                    cfg.domain ? cfg.domain : "");
            nb_config_free(&cfg);
            return 1;
        }
        /* Keep one copy of the token (the channel's); blank the environment's, which
         * /proc/self/environ would otherwise show for the life of the process. */
        token = strdup(tok);
        sodium_memzero((char *)tok, strlen(tok));
        if (token == NULL) {
            nb_config_free(&cfg);
            return 1;
        }
    }
    nb_config_warn_unsupported(&cfg);
    raise_fd_limit();

    struct app app = {0};
    int rc = 1;
    app.started_unix = (uint64_t)time(NULL);
    nb_timer_init(&app.drain_timer, drain_check, &app);
    nb_timer_init(&app.deadline_timer, drain_deadline, &app);
    nb_timer_init(&app.prestop_timer, prestop_done, &app);
    if (cfg.preshared_key && cfg.preshared_key[0]) {
        if (nb_key_parse(cfg.preshared_key, app.psk) != NB_OK) {
            fprintf(stderr, "nbproxy: --preshared-key is not a base64 WireGuard key\n");
            goto out;
        }
        app.psk_set = true;
    }
    const char *rk = getenv("NB_PROXY_WG_REKEY_AFTER_TIME");
    if (rk && rk[0]) {
        if (nb_parse_duration_ms(rk, &app.rekey_after_time_ms) != NB_OK) {
            fprintf(stderr, "nbproxy: NB_PROXY_WG_REKEY_AFTER_TIME is not a duration\n");
            goto out;
        }
        nb_warn("main", "NB_PROXY_WG_REKEY_AFTER_TIME=%s: test knob, not for production", rk);
    }
    app.loop = nb_loop_new();
    if (app.loop == NULL || nb_loop_watch_signals(app.loop, on_signal, &app) != NB_OK ||
        ns_init(app.loop) != NB_OK) {
        fprintf(stderr, "nbproxy: cannot set up the event loop or netstack\n");
        goto out;
    }
    if (http_setup(&app, &cfg) != NB_OK) {
        nb_error("main", "start-up failed; nothing is served");
        goto out_proxy;
    }
    if (parse_trusted_l4(&app, cfg.trusted_proxies) != NB_OK) {
        nb_error("main", "--trusted-proxies: invalid list");
        goto out_proxy;
    }
    struct nb_proxy_opts po = {
        .host_dialer = &app.host_dialer,
        .proxy_protocol = cfg.proxy_protocol,
        .trusted = app.trusted,
        .n_trusted = app.n_trusted,
        .max_dial_timeout_ms = cfg.max_dial_timeout_ms,
        .max_session_idle_timeout_ms = cfg.max_session_idle_timeout_ms,
        .wg_port = cfg.wg_port,
        .listen_host = demo ? "127.0.0.1" : NULL,
        .http = app.http,
        .access_log = app.access_log,
        .geo = &app.geo_ops,
        .accounts_later = mgmt_mode,
    };
    if ((app.tcpm = po.tcp_metrics = nb_tcp_metrics_new()) == NULL ||
        (app.proxy = nb_proxy_new(app.loop, &po)) == NULL)
        goto out_proxy;
    /* The main TLS listener: always in management mode (default :443, as netbird-proxy);
     * standalone only when --addr / NB_PROXY_ADDRESS is given, so the demo and local setups
     * need neither a certificate nor port 443. */
    bool main_tls = mgmt_mode || nb_config_explicit(&cfg, "addr");
    if (((main_tls || cfg.private_mode) && tls_setup(&app, &cfg, &sa, mgmt_mode) != NB_OK) ||
        (main_tls && tls_listen_main(&app, &cfg) != NB_OK)) {
        nb_error("main", "start-up failed; nothing is served");
        goto out_proxy;
    }
    char demo_addr[32];
    snprintf(demo_addr, sizeof demo_addr, "127.0.0.1:%ld", demo_port);
    const char *http_addr = cfg.http_addr && cfg.http_addr[0] ? cfg.http_addr
                            : demo                            ? demo_addr
                                                              : NULL;
    if (start(&app, &cfg, &sa) != NB_OK ||
        (demo && (demo_link(&app) != NB_OK || run_demo_backend(&app, &sa) != NB_OK)) ||
        (http_addr && http_listen_public(&app, http_addr) != NB_OK) ||
        (cfg.private_mode && http_listen_private(&app, &sa) != NB_OK)) {
        nb_error("main", "start-up failed; nothing is served");
        goto out_proxy;
    }
    /* Health and metrics: netbird-proxy always serves them (bind failure is fatal); standalone,
     * only when asked for, so several standalone instances can share a host. */
    if (cfg.health_addr && cfg.health_addr[0] &&
        (mgmt_mode || nb_config_explicit(&cfg, "health-addr"))) {
        struct nb_health_opts ho = {.addr = cfg.health_addr,
                                    .standalone = !mgmt_mode,
                                    .metrics = app_metrics,
                                    .metrics_arg = &app};
        int hrc = nb_health_start(app.loop, &ho, &app.health);
        if (hrc != NB_OK) {
            nb_error("main", "--health-addr %s: %s", cfg.health_addr,
                     hrc == NB_E_INVAL ? "not an address" : strerror(errno));
            goto out_proxy;
        }
        nb_info("main", "health and metrics on %s", cfg.health_addr);
    }
    if (mgmt_mode && start_mgmt(&app, &cfg, token) != NB_OK)
        goto out_proxy;
    if (http_addr == NULL && !cfg.private_mode && !main_tls &&
        http_routes_count(http_proxy_routes(app.http)) > 0)
        nb_warn("main", "HTTP mappings are configured but no listener serves them: use --addr "
                        "(TLS), --http-addr (plain HTTP) or --private");
    /* The configuration holds every private key and PSK: keep it no longer than needed. */
    uint32_t n_accounts = sa.n_accounts, n_mappings = sa.n_mappings;
    nb_standalone_free(&sa);
    if (demo)
        printf("nbproxy demo is up: try   curl http://127.0.0.1:%d/\n"
               "The request enters the HTTP reverse proxy on 127.0.0.1:%d (Hosts \"localhost\" "
               "and \"127.0.0.1\" are mapped), crosses a WireGuard tunnel (UDP on 127.0.0.1) from "
               "account \"demo\" (%s) to account \"demo-backend\" (%s), and is answered by that "
               "account's own netstack. Any other Host gets the proxy's 404 page "
               "(curl -H 'Host: nope' http://127.0.0.1:%d/). Ctrl-C stops it.\n",
               (int)demo_port, (int)demo_port, NB_DEMO_PROXY_IP, NB_DEMO_BACKEND_IP,
               (int)demo_port);
    else if (mgmt_mode)
        nb_info("main", "nbproxy %s for %s: mappings from management at %s", NB_VERSION, cfg.domain,
                cfg.mgmt_addr);
    else
        nb_info("main", "nbproxy %s serving %u account(s), %u mapping(s) from %s", NB_VERSION,
                n_accounts, n_mappings, cfg.config_file);
    fflush(stdout);
    rc = nb_loop_run(app.loop) == NB_OK ? 0 : 1;
    nb_info("main", "stopped");
out_proxy:
    stop(&app);
    ns_deinit();
out:
    sodium_memzero(app.psk, sizeof app.psk);
    if (token) {
        sodium_memzero(token, strlen(token));
        free(token);
    }
    nb_standalone_free(&sa);
    nb_config_free(&cfg);
    nb_loop_free(app.loop);
    return rc;
}
