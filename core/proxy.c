/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Accounts, services and the apply step. L4 services (tcp, tls) are routes in a router
 * (core/router.c): the main router of the TLS listener (listen port 0 or --addr's port) or a
 * per-port router whose host listener lives as long as it has routes. A tcp service is its
 * router's fallback, a tls service an SNI passthrough route; the router owns the connections and
 * relays. HTTP services are routes in the http_proxy plus an HTTP SNI route in the main router
 * (HTTP routes win over passthrough routes, spec/proxy.md §3.7).
 *
 * Removing a service removes its routes, which cancels that service's relays at once (§3.7).
 */
#include "core/proxy.h"
#include "core/router.h"
#include "http/accesslog.h"
#include "http/proxy.h"
#include "http/route.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"
#include "platform/sock.h"
#include "platform/strmap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DIAL_MS    30000u
#define DEFAULT_MAX_RELAYS 4096u

struct account {
    struct account *next;
    char *id;
    struct nb_dialer dialer;
    struct nb_udp_dialer udp; /* udp.dial == NULL: none */
};

struct port_router {
    struct nb_router *router;
    struct nb_listener *listener;
    int32_t port;
};

struct service {
    struct service *next;
    struct service *prev;
    struct nb_proxy *proxy;
    enum nb_mapping_mode mode;
    char *domain; /* the mapping's domain, may be NULL */
    char *id;
    char *account_id;
    int32_t port;                   /* tcp/tls: listen port (0 = the main listener) */
    struct nb_router *router;       /* tcp/tls: the router holding its route */
    bool http_sni;                  /* http: an HTTP SNI route in the main router */
    struct sockaddr_storage target; /* udp */
    uint32_t idle_timeout_ms;       /* udp */
    struct nb_udp_relay *udp;       /* udp mode */
};

struct nb_proxy {
    struct nb_loop *loop;
    struct nb_proxy_opts opts;
    struct account *accounts;
    struct service *services; /* every service (for drain and free) */
    struct nb_strmap by_id;   /* id -> service: applying 10 000 mappings stays linear */
    struct nb_strmap by_port; /* "port" -> struct port_router (per-port listeners) */
    bool draining;
    struct nb_proxy_stats st;
    struct nb_router_stats gone; /* counters of per-port routers already freed */
};

struct nb_proxy *nb_proxy_new(struct nb_loop *loop, const struct nb_proxy_opts *opts)
{
    struct nb_proxy *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->loop = loop;
    if (opts)
        p->opts = *opts;
    if (p->opts.max_relays_per_router == 0)
        p->opts.max_relays_per_router = DEFAULT_MAX_RELAYS;
    return p;
}

int nb_proxy_add_account(struct nb_proxy *p, const char *id, const struct nb_dialer *dialer)
{
    for (struct account *a = p->accounts; a; a = a->next)
        if (strcmp(a->id, id) == 0)
            return NB_E_EXISTS;
    struct account *a = calloc(1, sizeof *a);
    if (a == NULL || (a->id = strdup(id)) == NULL) {
        free(a);
        return NB_E_NOMEM;
    }
    a->dialer = *dialer;
    if (p->opts.http && http_proxy_set_network(p->opts.http, a->id, &a->dialer) != NB_OK) {
        free(a->id);
        free(a);
        return NB_E_NOMEM;
    }
    a->next = p->accounts;
    p->accounts = a;
    return NB_OK;
}

static struct account *find_account(struct nb_proxy *p, const char *id)
{
    for (struct account *a = p->accounts; a; a = a->next)
        if (strcmp(a->id, id) == 0)
            return a;
    return NULL;
}

int nb_proxy_set_udp_dialer(struct nb_proxy *p, const char *id, const struct nb_udp_dialer *d)
{
    struct account *a = find_account(p, id);
    if (a == NULL)
        return NB_E_NOTFOUND;
    a->udp = *d;
    return NB_OK;
}

/* ---- routers ---- */

int nb_proxy_dialer(void *arg, const char *account_id, bool direct, struct nb_dialer *out)
{
    struct nb_proxy *p = arg;
    if (direct) {
        if (p->opts.host_dialer == NULL)
            return NB_E_UNSUPPORTED;
        *out = *p->opts.host_dialer;
        return NB_OK;
    }
    /* Looked up per connection: in management mode the tunnel may come (and go) later. */
    struct account *a = find_account(p, account_id);
    if (a == NULL)
        return NB_E_NOTFOUND;
    *out = a->dialer;
    return NB_OK;
}

static void port_key(int32_t port, char out[16])
{
    snprintf(out, 16, "%d", (int)port);
}

static bool is_main_port(const struct nb_proxy *p, int32_t port)
{
    return port == 0 || (p->opts.main_router && port == p->opts.main_port);
}

static void add_stats(struct nb_router_stats *a, const struct nb_router_stats *b)
{
    a->accepted += b->accepted;
    a->relays_active += b->relays_active;
    a->relays_total += b->relays_total;
    a->relays_rejected += b->relays_rejected;
    a->dial_failures += b->dial_failures;
    a->peek_closed += b->peek_closed;
    a->pp_rejected += b->pp_rejected;
    a->restricted += b->restricted;
}

/* The router for an L4 listen port, creating the per-port listener on demand. */
static int router_for(struct nb_proxy *p, int32_t port, struct nb_router **out, char *err,
                      size_t errlen)
{
    if (is_main_port(p, port)) {
        if (p->opts.main_router == NULL)
            return nb_errf(
                err, errlen, NB_E_UNSUPPORTED,
                "listen port %d needs the main TLS listener (--addr), which is not running",
                (int)port);
        *out = p->opts.main_router;
        return NB_OK;
    }
    char pk[16];
    port_key(port, pk);
    struct port_router *pr = nb_strmap_get(&p->by_port, pk);
    if (pr) {
        *out = pr->router;
        return NB_OK;
    }
    if (p->draining)
        return nb_errf(err, errlen, NB_E_CLOSED, "shutting down");
    char name[32];
    snprintf(name, sizeof name, "port %d", (int)port);
    struct nb_router_opts ro = {
        .name = name,
        .proxy_protocol = p->opts.proxy_protocol,
        .trusted = p->opts.trusted,
        .n_trusted = p->opts.n_trusted,
        .max_relays = p->opts.max_relays_per_router,
        .access_log = p->opts.access_log,
        .geo = p->opts.geo,
        .dialer = nb_proxy_dialer,
        .dialer_arg = p,
        .tcp_metrics = p->opts.tcp_metrics,
    };
    pr = calloc(1, sizeof *pr);
    if (pr == NULL || (pr->router = nb_router_new(p->loop, &ro)) == NULL) {
        free(pr);
        return NB_E_NOMEM;
    }
    pr->port = port;
    struct sockaddr_storage la;
    socklen_t tl;
    char lbuf[NB_ADDRSTRLEN + 8];
    snprintf(lbuf, sizeof lbuf, "%s:%d", p->opts.listen_host ? p->opts.listen_host : "[::]",
             (int)port);
    int rc = NB_E_INVAL;
    if (nb_addr_parse(lbuf, &la, &tl) != NB_OK) {
        nb_errf(err, errlen, NB_E_INVAL, "bad listen address %s", lbuf);
        goto fail;
    }
    rc = nb_tcp_listen(p->loop, (struct sockaddr *)&la, 1024, nb_router_accept_cb, pr->router,
                       &pr->listener);
    if (rc != NB_OK && la.ss_family == AF_INET6 && p->opts.listen_host == NULL) {
        /* Hosts without IPv6: fall back to IPv4 any. */
        nb_addr_from_ip("0.0.0.0", (uint16_t)port, &la, NULL);
        rc = nb_tcp_listen(p->loop, (struct sockaddr *)&la, 1024, nb_router_accept_cb, pr->router,
                           &pr->listener);
    }
    if (rc != NB_OK) {
        nb_errf(err, errlen, NB_E_IO, "listen on port %d: %s", (int)port, strerror(errno));
        goto fail;
    }
    if (nb_strmap_put(&p->by_port, pk, pr, NULL) != NB_OK) {
        rc = NB_E_NOMEM;
        nb_listener_close(pr->listener);
        goto fail;
    }
    if (p->opts.proxy_protocol && p->opts.n_trusted == 0)
        nb_warn("proxy", "port %d accepts PROXY headers from anyone (no --trusted-proxies)",
                (int)port);
    *out = pr->router;
    return NB_OK;
fail:
    nb_router_free(pr->router);
    free(pr);
    return rc;
}

static void port_router_free(struct nb_proxy *p, struct port_router *pr)
{
    struct nb_router_stats st;
    nb_router_stats(pr->router, &st);
    st.relays_active = 0;
    add_stats(&p->gone, &st);
    if (pr->listener)
        nb_listener_close(pr->listener);
    nb_router_free(pr->router);
    free(pr);
}

/* A per-port router without routes goes, with its listener. */
static void router_release(struct nb_proxy *p, int32_t port)
{
    if (is_main_port(p, port))
        return;
    char pk[16];
    port_key(port, pk);
    struct port_router *pr = nb_strmap_get(&p->by_port, pk);
    if (pr && nb_router_empty(pr->router)) {
        nb_strmap_del(&p->by_port, pk);
        port_router_free(p, pr);
    }
}

void nb_proxy_set_main_router(struct nb_proxy *p, struct nb_router *r, int32_t port)
{
    p->opts.main_router = r;
    p->opts.main_port = port;
}

/* ---- services ---- */

/* The record's own memory (strings and struct); what it registered elsewhere is the caller's. */
static void service_dealloc(struct service *svc)
{
    free(svc->id);
    free(svc->account_id);
    free(svc->domain);
    free(svc);
}

static void service_free(struct service *svc)
{
    struct nb_proxy *p = svc->proxy;
    if (svc->mode == NB_MODE_HTTP && p->opts.http)
        http_proxy_remove(p->opts.http, svc->id);
    if (svc->http_sni && p->opts.main_router)
        nb_router_remove_service(p->opts.main_router, svc->id);
    if (svc->router) {
        nb_router_remove_service(svc->router, svc->id); /* cancels its relays */
        router_release(p, svc->port);
    }
    nb_udp_relay_close(svc->udp);
    svc->udp = NULL;
    service_dealloc(svc);
}

/* Registers a built service: in the list and the index. NB_OK or NB_E_NOMEM (not linked). */
static int link_service(struct nb_proxy *p, struct service *svc)
{
    if (nb_strmap_put(&p->by_id, svc->id, svc, NULL) != NB_OK)
        return NB_E_NOMEM;
    svc->prev = NULL;
    svc->next = p->services;
    if (p->services)
        p->services->prev = svc;
    p->services = svc;
    p->st.services++;
    p->st.by_mode[svc->mode]++;
    return NB_OK;
}

static void remove_service(struct nb_proxy *p, const char *id)
{
    struct service *svc = nb_strmap_del(&p->by_id, id);
    if (svc == NULL)
        return;
    if (svc->prev)
        svc->prev->next = svc->next;
    else
        p->services = svc->next;
    if (svc->next)
        svc->next->prev = svc->prev;
    p->st.services--;
    p->st.by_mode[svc->mode]--;
    service_free(svc);
}

static uint64_t clamp_ms(uint64_t v, uint64_t cap, uint64_t dflt)
{
    if (v == 0)
        v = cap ? cap : dflt;
    if (cap && v > cap)
        v = cap;
    return v;
}

/* tcp (the port's fallback) and tls (an SNI passthrough route), spec/proxy.md §3.5. */
static int setup_l4(struct nb_proxy *p, const struct nb_mapping *m, enum nb_mapping_mode mode,
                    char *err, size_t errlen)
{
    if (m->listen_port < 0 || m->listen_port > 65535)
        return nb_errf(err, errlen, NB_E_INVAL, "invalid listen port %d", m->listen_port);
    if (p->opts.wg_port && m->listen_port == p->opts.wg_port)
        return nb_errf(err, errlen, NB_E_INVAL, "listen port %d conflicts with tunnel port",
                       m->listen_port);
    if (m->n_paths == 0 || m->paths[0].target == NULL || m->paths[0].target[0] == '\0')
        return nb_errf(err, errlen, NB_E_INVAL, "empty target address");
    if (mode == NB_MODE_TLS && (m->domain == NULL || m->domain[0] == '\0'))
        return nb_errf(err, errlen, NB_E_INVAL, "tls mappings need a domain (the SNI to route)");
    const struct nb_target_options *o = &m->paths[0].options;
    struct account *a = find_account(p, m->account_id ? m->account_id : "");
    if (a == NULL && !p->opts.accounts_later && !o->direct_upstream)
        return nb_errf(err, errlen, NB_E_NOTFOUND, "account %s has no tunnel",
                       m->account_id ? m->account_id : "");
    struct nb_l4_target t = {
        .service_id = m->id,
        .account_id = m->account_id ? m->account_id : "",
        .domain = m->domain,
        .protocol = mode == NB_MODE_TLS ? "tls" : "tcp",
        .dial_timeout_ms =
            (uint32_t)clamp_ms(o->request_timeout_ms, p->opts.max_dial_timeout_ms, DEFAULT_DIAL_MS),
        .idle_timeout_ms =
            (uint32_t)clamp_ms(o->session_idle_timeout_ms, p->opts.max_session_idle_timeout_ms, 0),
        .proxy_protocol = o->proxy_protocol,
        .direct = o->direct_upstream,
        .restrictions = m->restrictions,
    };
    socklen_t tl;
    if (nb_addr_parse(m->paths[0].target, &t.target, &tl) != NB_OK)
        return nb_errf(err, errlen, NB_E_INVAL, "target \"%s\" is not ip:port", m->paths[0].target);
    struct service *svc = calloc(1, sizeof *svc);
    if (svc == NULL)
        return NB_E_NOMEM;
    svc->proxy = p;
    svc->mode = mode;
    svc->port = m->listen_port;
    svc->id = strdup(m->id);
    svc->account_id = strdup(t.account_id);
    svc->domain = m->domain ? strdup(m->domain) : NULL;
    int rc = NB_E_NOMEM;
    if (svc->id == NULL || svc->account_id == NULL || (m->domain && svc->domain == NULL))
        goto fail;
    if ((rc = router_for(p, m->listen_port, &svc->router, err, errlen)) != NB_OK)
        goto fail;
    rc = mode == NB_MODE_TLS ? nb_router_add_tls(svc->router, m->domain, &t)
                             : nb_router_set_fallback(svc->router, &t);
    if (rc != NB_OK) {
        nb_errf(err, errlen, rc, "%s", rc == NB_E_INVAL ? "invalid domain" : "out of memory");
        goto fail_route;
    }
    if ((rc = link_service(p, svc)) != NB_OK)
        goto fail_route;
    char tbuf[NB_ADDRSTRLEN];
    nb_debug("proxy", "service %s (%s): port %d%s%s -> %s via %s%s", svc->id, t.protocol,
             (int)svc->port, svc->domain ? " sni " : "", svc->domain ? svc->domain : "",
             nb_addr_str((struct sockaddr *)&t.target, tbuf), t.direct ? "the host" : "account ",
             t.direct ? "" : svc->account_id);
    return NB_OK;
fail_route:
    nb_router_remove_service(svc->router, svc->id);
    router_release(p, svc->port);
    svc->router = NULL;
fail:
    service_dealloc(svc);
    return rc;
}

/*
 * udp mode (spec/proxy.md §3.5, §3.8): a relay on a host UDP socket; sessions dial through the
 * account's tunnel, so the account must be there now (also in management mode).
 */
static int setup_udp(struct nb_proxy *p, const struct nb_mapping *m, char *err, size_t errlen)
{
    if (m->listen_port < 1 || m->listen_port > 65535)
        return nb_errf(err, errlen, NB_E_INVAL, "invalid listen port %d", m->listen_port);
    if (p->opts.wg_port && m->listen_port == p->opts.wg_port)
        return nb_errf(err, errlen, NB_E_INVAL, "listen port %d conflicts with tunnel port",
                       m->listen_port);
    if (m->n_paths == 0 || m->paths[0].target == NULL || m->paths[0].target[0] == '\0')
        return nb_errf(err, errlen, NB_E_INVAL, "empty target address");
    const char *acct = m->account_id ? m->account_id : "";
    struct account *a = find_account(p, acct);
    if (a == NULL || a->udp.dial == NULL)
        return nb_errf(err, errlen, NB_E_NOTFOUND, "account %s has no tunnel", acct);
    struct sockaddr_storage target, la;
    socklen_t tl;
    if (nb_addr_parse(m->paths[0].target, &target, &tl) != NB_OK)
        return nb_errf(err, errlen, NB_E_INVAL, "target \"%s\" is not ip:port", m->paths[0].target);
    char lbuf[NB_ADDRSTRLEN + 8];
    snprintf(lbuf, sizeof lbuf, "%s:%d", p->opts.listen_host ? p->opts.listen_host : "[::]",
             m->listen_port);
    if (nb_addr_parse(lbuf, &la, &tl) != NB_OK)
        return nb_errf(err, errlen, NB_E_INVAL, "bad listen address %s", lbuf);
    struct service *svc = calloc(1, sizeof *svc);
    if (svc == NULL)
        return NB_E_NOMEM;
    svc->proxy = p;
    svc->mode = NB_MODE_UDP;
    svc->port = m->listen_port;
    svc->id = strdup(m->id);
    svc->account_id = strdup(acct);
    svc->domain = m->domain ? strdup(m->domain) : NULL;
    int rc = NB_E_NOMEM;
    if (svc->id == NULL || svc->account_id == NULL || (m->domain && svc->domain == NULL))
        goto fail;
    /* Idle timeout: session_idle_timeout (0 = 30 s), clamped by --max-session-idle-timeout. */
    uint64_t idle = m->paths[0].options.session_idle_timeout_ms;
    if (idle == 0)
        idle = NB_UDP_IDLE_MS;
    if (p->opts.max_session_idle_timeout_ms && idle > p->opts.max_session_idle_timeout_ms)
        idle = p->opts.max_session_idle_timeout_ms;
    svc->idle_timeout_ms = idle > UINT32_MAX ? UINT32_MAX : (uint32_t)idle;
    svc->target = target;
    struct nb_udp_relay_opts ro = {
        .service_id = svc->id,
        .account_id = svc->account_id,
        .host = svc->domain,
        .listen = (struct sockaddr *)&la,
        .target = (struct sockaddr *)&target,
        .dialer = &a->udp,
        .idle_timeout_ms = svc->idle_timeout_ms,
        .access_log = p->opts.access_log,
        .restrictions = m->restrictions,
        .geo = p->opts.geo,
        .stats = &p->st.udp,
    };
    char rerr[256] = "";
    rc = nb_udp_relay_new(p->loop, &ro, &svc->udp, rerr, sizeof rerr);
    if (rc == NB_E_IO && la.ss_family == AF_INET6 && p->opts.listen_host == NULL) {
        nb_addr_from_ip("0.0.0.0", (uint16_t)m->listen_port, &la, NULL); /* no IPv6 */
        rc = nb_udp_relay_new(p->loop, &ro, &svc->udp, rerr, sizeof rerr);
    }
    if (rc != NB_OK) {
        rc = nb_errf(err, errlen, rc, "%s", rerr[0] ? rerr : nb_strerror(rc));
        goto fail;
    }
    if (link_service(p, svc) != NB_OK) {
        nb_udp_relay_close(svc->udp);
        rc = NB_E_NOMEM;
        goto fail;
    }
    char tbuf[NB_ADDRSTRLEN];
    nb_debug("proxy", "service %s (udp): port %d -> %s via account %s, idle %u ms", svc->id,
             svc->port, nb_addr_str((struct sockaddr *)&target, tbuf), svc->account_id,
             svc->idle_timeout_ms);
    return NB_OK;
fail:
    service_dealloc(svc);
    return rc;
}

/*
 * HTTP mode (spec/proxy.md §3.4): the routes live in the http_proxy; the service record here
 * only remembers the id so a later MODIFIED or REMOVED finds it.
 */
static int setup_http(struct nb_proxy *p, const struct nb_mapping *m, char *err, size_t errlen)
{
    if (p->opts.http == NULL)
        return nb_errf(err, errlen, NB_E_UNSUPPORTED,
                       "HTTP mappings need an HTTP listener (--http-addr or --private)");
    const struct nb_auth *au = &m->auth;
    if (au->password || au->pin || au->oidc || au->n_header_auths)
        return nb_errf(
            err, errlen, NB_E_UNSUPPORTED,
            "authentication schemes (password, PIN, OIDC, header) are not supported yet; "
            "%s is not exposed without them",
            m->domain ? m->domain : m->id);
    struct service *svc = calloc(1, sizeof *svc);
    if (svc == NULL)
        return NB_E_NOMEM;
    svc->proxy = p;
    svc->mode = NB_MODE_HTTP;
    svc->id = strdup(m->id);
    svc->account_id = strdup(m->account_id ? m->account_id : "");
    if (svc->id == NULL || svc->account_id == NULL) {
        service_dealloc(svc);
        return NB_E_NOMEM;
    }
    char warn[512] = "";
    if (m->n_paths > 0) {
        struct http_service *hs = NULL;
        int rc = http_service_new(m, &hs, warn, sizeof warn);
        if (rc != NB_OK) {
            nb_errf(err, errlen, rc, "%s",
                    rc == NB_E_INVAL ? "mapping without id or domain" : "out of memory");
        } else {
            rc = http_proxy_add(p->opts.http, hs, err, errlen);
            http_service_unref(hs); /* the table holds its own reference */
        }
        if (rc != NB_OK) {
            service_dealloc(svc);
            return rc;
        }
    }
    if (p->opts.main_router && m->domain && m->domain[0] && m->n_paths > 0) {
        if (nb_router_add_http(p->opts.main_router, m->domain, svc->id) == NB_OK)
            svc->http_sni = true;
    }
    if (link_service(p, svc) != NB_OK) {
        if (p->opts.http)
            http_proxy_remove(p->opts.http, svc->id);
        if (svc->http_sni)
            nb_router_remove_service(p->opts.main_router, svc->id);
        service_dealloc(svc);
        return NB_E_NOMEM;
    }
    nb_debug("proxy", "service %s (http): %s, %u path(s), account %s", svc->id,
             m->domain ? m->domain : "", m->n_paths, svc->account_id);
    if (warn[0]) {
        nb_warn("proxy", "service %s: %s", svc->id, warn);
        nb_errf(err, errlen, NB_OK, "%s", warn);
    }
    return NB_OK;
}

int nb_proxy_apply(struct nb_proxy *p, const struct nb_mapping *m, char *err, size_t errlen)
{
    if (m->id == NULL || m->id[0] == '\0')
        return nb_errf(err, errlen, NB_E_INVAL, "mapping without id");
    switch (m->type) {
    case NB_UPDATE_REMOVED:
        remove_service(p, m->id);
        return NB_OK;
    case NB_UPDATE_CREATED:
    case NB_UPDATE_MODIFIED:
        break;
    default:
        return nb_errf(err, errlen, NB_E_INVAL, "unknown update type %d", (int)m->type);
    }
    /* Both create and modify replace the previous routes of this service (one code path; the
     * reference's stale-route quirk on CREATED for a known id is not reproduced). */
    remove_service(p, m->id);
    switch (nb_mapping_mode(m)) {
    case NB_MODE_TCP:
        return setup_l4(p, m, NB_MODE_TCP, err, errlen);
    case NB_MODE_TLS:
        return setup_l4(p, m, NB_MODE_TLS, err, errlen);
    case NB_MODE_HTTP:
        return setup_http(p, m, err, errlen);
    case NB_MODE_UDP:
        return setup_udp(p, m, err, errlen);
    }
    return nb_errf(err, errlen, NB_E_UNSUPPORTED, "mode \"%s\" is not supported yet",
                   m->mode ? m->mode : "");
}

void nb_proxy_drain(struct nb_proxy *p)
{
    p->draining = true;
    struct nb_strmap_iter it = {0};
    void *v;
    while (nb_strmap_next(&p->by_port, &it, &v) != NULL) {
        struct port_router *pr = v;
        if (pr->listener) {
            nb_listener_close(pr->listener);
            pr->listener = NULL;
        }
        nb_router_drain(pr->router);
    }
    if (p->opts.main_router)
        nb_router_drain(p->opts.main_router);
    for (struct service *s = p->services; s; s = s->next) {
        nb_udp_relay_close(s->udp); /* UDP has nothing to drain: sessions end now */
        s->udp = NULL;
    }
}

void nb_proxy_stats(const struct nb_proxy *p, struct nb_proxy_stats *out)
{
    struct nb_router_stats st = p->gone;
    struct nb_strmap_iter it = {0};
    void *v;
    while (nb_strmap_next(&p->by_port, &it, &v) != NULL) {
        struct nb_router_stats rs;
        nb_router_stats(((struct port_router *)v)->router, &rs);
        add_stats(&st, &rs);
    }
    if (p->opts.main_router) {
        struct nb_router_stats rs;
        nb_router_stats(p->opts.main_router, &rs);
        add_stats(&st, &rs);
    }
    *out = p->st;
    out->relays_active = st.relays_active;
    out->relays_total = st.relays_total;
    out->relays_rejected = st.relays_rejected;
    out->dial_failures = st.dial_failures;
}

void nb_proxy_free(struct nb_proxy *p)
{
    if (p == NULL)
        return;
    while (p->services)
        remove_service(p, p->services->id);
    struct nb_strmap_iter it = {0};
    void *v;
    while (nb_strmap_next(&p->by_port, &it, &v) != NULL)
        port_router_free(p, v);
    nb_strmap_deinit(&p->by_id);
    nb_strmap_deinit(&p->by_port);
    while (p->accounts) {
        struct account *a = p->accounts;
        p->accounts = a->next;
        if (p->opts.http)
            (void)http_proxy_set_network(p->opts.http, a->id, NULL);
        free(a->id);
        free(a);
    }
    free(p);
}
