/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Accounts, services and the apply step. A tcp service owns a host listener and the
 * connections accepted on it; each connection first dials the target through its account's
 * dialer (the client is paused meanwhile, so nothing is read before the backend is there, as
 * the reference does for pure per-port routers), then hands both streams to an nb_relay.
 *
 * Ownership: services own their connections; a connection owns its streams until the relay
 * takes them. Removing a service cancels its connections at once (spec/proxy.md §3.7: "removing
 * a route cancels all active relays of that service").
 */
#include "core/proxy.h"
#include "http/accesslog.h"
#include "http/proxy.h"
#include "http/route.h"
#include "platform/relay.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"
#include "platform/sock.h"
#include "platform/strmap.h"

#include <errno.h>
#include <stdarg.h>
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

struct service;

struct conn {
    struct conn *next;
    struct conn **pprev;
    struct service *svc;
    struct nb_stream *client;
    struct nb_stream *backend;
    struct nb_relay *relay;
    struct nb_timer dial_timer;
    struct nb_defer defer;
    char client_addr[NB_ADDRSTRLEN];
};

struct service {
    struct service *next;
    struct service *prev;
    struct nb_proxy *proxy;
    enum nb_mapping_mode mode;
    char *domain; /* tcp: the mapping's domain (access log host), may be NULL */
    char *id;
    char *account_id;
    int32_t port;
    struct sockaddr_storage target;
    uint32_t dial_timeout_ms;
    uint32_t idle_timeout_ms;
    struct nb_listener *listener;
    struct nb_udp_relay *udp; /* udp mode */
    struct conn *conns;
    uint32_t nconns;
};

struct nb_proxy {
    struct nb_loop *loop;
    struct nb_proxy_opts opts;
    struct account *accounts;
    struct service *services; /* every service (for drain and free) */
    struct nb_strmap by_id;   /* id -> service: applying 10 000 mappings stays linear */
    struct nb_strmap by_port; /* "port" -> tcp service */
    bool draining;
    struct nb_proxy_stats st;
};

static int errf(char *err, size_t len, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int errf(char *err, size_t len, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && len)
        vsnprintf(err, len, fmt, ap);
    va_end(ap);
    return rc;
}

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

/* ---- connections ---- */

static void conn_unlink(struct conn *c)
{
    if (c->pprev) {
        *c->pprev = c->next;
        if (c->next)
            c->next->pprev = c->pprev;
        c->pprev = NULL;
        c->svc->nconns--;
        c->svc->proxy->st.relays_active--;
    }
}

static void conn_free_deferred(struct nb_defer *d)
{
    free(d->arg);
}

/* Ends a connection that has no relay yet (dial pending or failed). */
static void conn_abort(struct conn *c, const char *why)
{
    nb_timer_cancel(&c->dial_timer);
    if (why)
        nb_debug("tcp", "service %s: %s: %s", c->svc->id, c->client_addr, why);
    if (c->backend)
        nb_stream_close(c->backend, true);
    if (c->client)
        nb_stream_close(c->client, true);
    c->backend = c->client = NULL;
    conn_unlink(c);
    nb_defer(c->svc->proxy->loop, &c->defer, conn_free_deferred, c);
}

static void relay_done(void *arg, struct nb_relay *r, const struct nb_relay_result *res)
{
    struct conn *c = arg;
    struct nb_access_log *log = c->svc->proxy->opts.access_log;
    if (log) {
        /* L4 session record (spec/proxy.md §8.3): source IP without the port. */
        char ip[NB_ADDRSTRLEN];
        snprintf(ip, sizeof ip, "%s", c->client_addr);
        char *colon = strrchr(ip, ':');
        if (colon)
            *colon = '\0';
        size_t il = strlen(ip);
        if (il > 1 && ip[0] == '[' && ip[il - 1] == ']') {
            memmove(ip, ip + 1, il - 2);
            ip[il - 2] = '\0';
        }
        struct nb_access_log_entry e = {
            .account_id = c->svc->account_id,
            .service_id = c->svc->id,
            .host = c->svc->domain,
            .duration_ms = (int64_t)(res->ended_ms - res->started_ms),
            .source_ip = ip,
            .bytes_upload = (int64_t)res->bytes_up,
            .bytes_download = (int64_t)res->bytes_down,
            .protocol = "tcp",
        };
        nb_access_log_write(log, &e);
    }
    nb_debug("tcp", "service=%s account=%s client=%s up=%llu down=%llu duration_ms=%llu%s%s",
             c->svc->id, c->svc->account_id, c->client_addr, (unsigned long long)res->bytes_up,
             (unsigned long long)res->bytes_down,
             (unsigned long long)(res->ended_ms - res->started_ms), res->reason ? " end=" : "",
             res->reason ? res->reason : "");
    conn_unlink(c);
    free(c);
}

static void backend_connected(void *arg, struct nb_stream *s, const char *err)
{
    struct conn *c = arg;
    if (err != NULL) {
        c->svc->proxy->st.dial_failures++;
        nb_info("tcp", "service %s: dial %s failed: %s", c->svc->id, c->svc->account_id, err);
        conn_abort(c, NULL);
        return;
    }
    nb_timer_cancel(&c->dial_timer);
    struct nb_relay_opts ro = {.idle_timeout_ms = c->svc->idle_timeout_ms};
    struct nb_stream *client = c->client, *backend = c->backend;
    c->client = c->backend = NULL; /* the relay owns them now */
    if (nb_relay_start(c->svc->proxy->loop, client, backend, &ro, relay_done, c, &c->relay) !=
        NB_OK) {
        conn_abort(c, "out of memory starting relay");
        return;
    }
}

static void backend_error(void *arg, struct nb_stream *s, const char *err)
{
    conn_abort(arg, err);
}

static const struct nb_stream_cbs dial_cbs = {
    .on_error = backend_error,
    .on_connect = backend_connected,
};

static void client_error(void *arg, struct nb_stream *s, const char *err)
{
    conn_abort(arg, err);
}

static void client_eof(void *arg, struct nb_stream *s)
{
    /* Paused clients do not report EOF; nothing to do. */
}

static const struct nb_stream_cbs waiting_client_cbs = {
    .on_eof = client_eof,
    .on_error = client_error,
};

static void dial_timeout(struct nb_timer *t)
{
    struct conn *c = t->arg;
    c->svc->proxy->st.dial_failures++;
    nb_info("tcp", "service %s: dial timed out after %u ms", c->svc->id, c->svc->dial_timeout_ms);
    conn_abort(c, NULL);
}

static void on_accept(void *arg, struct nb_listener *l, struct nb_stream *client)
{
    struct service *svc = arg;
    struct nb_proxy *p = svc->proxy;
    if (p->draining || svc->nconns >= p->opts.max_relays_per_router) {
        p->st.relays_rejected++;
        nb_stream_close(client, true);
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        p->st.relays_rejected++;
        nb_stream_close(client, true);
        return;
    }
    c->svc = svc;
    c->client = client;
    struct sockaddr_storage peer;
    if (nb_stream_addrs(client, NULL, &peer) == NB_OK)
        nb_addr_str((struct sockaddr *)&peer, c->client_addr);
    nb_stream_set_cbs(client, &waiting_client_cbs, c);
    nb_stream_pause(client, true);
    c->next = svc->conns;
    if (svc->conns)
        svc->conns->pprev = &c->next;
    svc->conns = c;
    c->pprev = &svc->conns;
    svc->nconns++;
    p->st.relays_active++;
    p->st.relays_total++;
    nb_timer_init(&c->dial_timer, dial_timeout, c);
    nb_timer_arm(p->loop, &c->dial_timer, svc->dial_timeout_ms);
    /* The account is looked up per connection: in management mode its tunnel may come (and go)
     * after the service was set up. */
    struct account *a = find_account(p, svc->account_id);
    if (a == NULL) {
        p->st.dial_failures++;
        conn_abort(c, "the account has no tunnel yet");
        return;
    }
    int rc =
        a->dialer.dial(a->dialer.ctx, (struct sockaddr *)&svc->target, &dial_cbs, c, &c->backend);
    if (rc != NB_OK) {
        p->st.dial_failures++;
        c->backend = NULL;
        conn_abort(c, nb_strerror(rc));
    }
}

/* ---- services ---- */

static void service_free(struct service *svc)
{
    if (svc->mode == NB_MODE_HTTP && svc->proxy->opts.http)
        http_proxy_remove(svc->proxy->opts.http, svc->id);
    if (svc->listener)
        nb_listener_close(svc->listener);
    nb_udp_relay_close(svc->udp);
    svc->udp = NULL;
    while (svc->conns) {
        struct conn *c = svc->conns;
        if (c->relay) {
            conn_unlink(c);
            c->svc = svc; /* relay_done still reads ids: keep them alive until it ran */
            nb_relay_cancel(c->relay);
        } else {
            conn_abort(c, "service removed");
        }
    }
    /* Cancelled relays end from a deferred call and still read svc->id; remove_service()
     * therefore frees the service from a deferred call queued after theirs. */
    svc->listener = NULL;
}

static void port_key(int32_t port, char out[16])
{
    snprintf(out, 16, "%d", (int)port);
}

/* Registers a built service: in the list and the indexes. NB_OK or NB_E_NOMEM (not linked). */
static int link_service(struct nb_proxy *p, struct service *svc)
{
    char pk[16];
    if (nb_strmap_put(&p->by_id, svc->id, svc, NULL) != NB_OK)
        return NB_E_NOMEM;
    if (svc->mode == NB_MODE_TCP) {
        port_key(svc->port, pk);
        if (nb_strmap_put(&p->by_port, pk, svc, NULL) != NB_OK) {
            nb_strmap_del(&p->by_id, svc->id);
            return NB_E_NOMEM;
        }
    }
    svc->prev = NULL;
    svc->next = p->services;
    if (p->services)
        p->services->prev = svc;
    p->services = svc;
    p->st.services++;
    return NB_OK;
}

/*
 * Service memory may still be read by relay_done() of cancelled relays, which runs deferred;
 * so the service itself is released from a deferred call too.
 */
struct service_grave {
    struct nb_defer d;
    struct service *svc;
};

static void service_bury(struct nb_defer *d)
{
    struct service_grave *g = d->arg;
    free(g->svc->id);
    free(g->svc->account_id);
    free(g->svc->domain);
    free(g->svc);
    free(g);
}

static void remove_service(struct nb_proxy *p, const char *id)
{
    struct service *svc = nb_strmap_del(&p->by_id, id);
    if (svc == NULL)
        return;
    if (svc->mode == NB_MODE_TCP) {
        char pk[16];
        port_key(svc->port, pk);
        if (nb_strmap_get(&p->by_port, pk) == svc)
            nb_strmap_del(&p->by_port, pk);
    }
    if (svc->prev)
        svc->prev->next = svc->next;
    else
        p->services = svc->next;
    if (svc->next)
        svc->next->prev = svc->prev;
    p->st.services--;
    service_free(svc);
    struct service_grave *g = calloc(1, sizeof *g);
    if (g == NULL) {
        /* Leak rather than risk a use-after-free in a pending relay_done. */
        nb_error("proxy", "out of memory releasing service %s", id);
        return;
    }
    g->svc = svc;
    nb_defer(p->loop, &g->d, service_bury, g);
}

static uint64_t clamp_ms(uint64_t v, uint64_t cap, uint64_t dflt)
{
    if (v == 0)
        v = cap ? cap : dflt;
    if (cap && v > cap)
        v = cap;
    return v;
}

static int setup_tcp(struct nb_proxy *p, const struct nb_mapping *m, char *err, size_t errlen)
{
    if (m->listen_port < 1 || m->listen_port > 65535)
        return errf(err, errlen, NB_E_INVAL, "invalid listen port %d", m->listen_port);
    if (p->opts.wg_port && m->listen_port == p->opts.wg_port)
        return errf(err, errlen, NB_E_INVAL, "listen port %d conflicts with tunnel port",
                    m->listen_port);
    if (m->n_paths == 0 || m->paths[0].target == NULL || m->paths[0].target[0] == '\0')
        return errf(err, errlen, NB_E_INVAL, "empty target address");
    struct account *a = find_account(p, m->account_id ? m->account_id : "");
    if (a == NULL && !p->opts.accounts_later)
        return errf(err, errlen, NB_E_NOTFOUND, "account %s has no tunnel",
                    m->account_id ? m->account_id : "");
    char pk[16];
    port_key(m->listen_port, pk);
    const struct service *holder = nb_strmap_get(&p->by_port, pk);
    if (holder && strcmp(holder->id, m->id) != 0)
        return errf(err, errlen, NB_E_EXISTS, "port %d is already used by service %s",
                    m->listen_port, holder->id);
    struct service *svc = calloc(1, sizeof *svc);
    if (svc == NULL)
        return NB_E_NOMEM;
    svc->proxy = p;
    svc->mode = NB_MODE_TCP;
    svc->port = m->listen_port;
    svc->id = strdup(m->id);
    svc->account_id = strdup(m->account_id);
    if (m->domain && (svc->domain = strdup(m->domain)) == NULL) {
        free(svc->id);
        free(svc->account_id);
        free(svc);
        return NB_E_NOMEM;
    }
    const struct nb_target_options *o = &m->paths[0].options;
    svc->dial_timeout_ms =
        (uint32_t)clamp_ms(o->request_timeout_ms, p->opts.max_dial_timeout_ms, DEFAULT_DIAL_MS);
    svc->idle_timeout_ms =
        (uint32_t)clamp_ms(o->session_idle_timeout_ms, p->opts.max_session_idle_timeout_ms, 0);
    socklen_t tl;
    int rc;
    if (svc->id == NULL || svc->account_id == NULL) {
        rc = NB_E_NOMEM;
        goto fail;
    }
    if (nb_addr_parse(m->paths[0].target, &svc->target, &tl) != NB_OK) {
        rc = errf(err, errlen, NB_E_INVAL, "target \"%s\" is not ip:port", m->paths[0].target);
        goto fail;
    }
    struct sockaddr_storage la;
    char lbuf[NB_ADDRSTRLEN + 8];
    snprintf(lbuf, sizeof lbuf, "%s:%d", p->opts.listen_host ? p->opts.listen_host : "[::]",
             m->listen_port);
    if (nb_addr_parse(lbuf, &la, &tl) != NB_OK) {
        rc = errf(err, errlen, NB_E_INVAL, "bad listen address %s", lbuf);
        goto fail;
    }
    rc = nb_tcp_listen(p->loop, (struct sockaddr *)&la, 1024, on_accept, svc, &svc->listener);
    if (rc != NB_OK && la.ss_family == AF_INET6 && p->opts.listen_host == NULL) {
        /* Hosts without IPv6: fall back to IPv4 any. */
        nb_addr_from_ip("0.0.0.0", (uint16_t)m->listen_port, &la, NULL);
        rc = nb_tcp_listen(p->loop, (struct sockaddr *)&la, 1024, on_accept, svc, &svc->listener);
    }
    if (rc != NB_OK) {
        rc = errf(err, errlen, NB_E_IO, "listen on port %d: %s", m->listen_port, strerror(errno));
        goto fail;
    }
    if (link_service(p, svc) != NB_OK) {
        nb_listener_close(svc->listener);
        rc = NB_E_NOMEM;
        goto fail;
    }
    char tbuf[NB_ADDRSTRLEN];
    nb_debug("proxy", "service %s (tcp): port %d -> %s via account %s", svc->id, svc->port,
             nb_addr_str((struct sockaddr *)&svc->target, tbuf), svc->account_id);
    return NB_OK;
fail:
    free(svc->id);
    free(svc->account_id);
    free(svc->domain);
    free(svc);
    return rc;
}

/*
 * udp mode (spec/proxy.md §3.5, §3.8): a relay on a host UDP socket; sessions dial through the
 * account's tunnel, so the account must be there now (also in management mode).
 */
static int setup_udp(struct nb_proxy *p, const struct nb_mapping *m, char *err, size_t errlen)
{
    if (m->listen_port < 1 || m->listen_port > 65535)
        return errf(err, errlen, NB_E_INVAL, "invalid listen port %d", m->listen_port);
    if (p->opts.wg_port && m->listen_port == p->opts.wg_port)
        return errf(err, errlen, NB_E_INVAL, "listen port %d conflicts with tunnel port",
                    m->listen_port);
    if (m->n_paths == 0 || m->paths[0].target == NULL || m->paths[0].target[0] == '\0')
        return errf(err, errlen, NB_E_INVAL, "empty target address");
    const char *acct = m->account_id ? m->account_id : "";
    struct account *a = find_account(p, acct);
    if (a == NULL || a->udp.dial == NULL)
        return errf(err, errlen, NB_E_NOTFOUND, "account %s has no tunnel", acct);
    struct sockaddr_storage target, la;
    socklen_t tl;
    if (nb_addr_parse(m->paths[0].target, &target, &tl) != NB_OK)
        return errf(err, errlen, NB_E_INVAL, "target \"%s\" is not ip:port", m->paths[0].target);
    char lbuf[NB_ADDRSTRLEN + 8];
    snprintf(lbuf, sizeof lbuf, "%s:%d", p->opts.listen_host ? p->opts.listen_host : "[::]",
             m->listen_port);
    if (nb_addr_parse(lbuf, &la, &tl) != NB_OK)
        return errf(err, errlen, NB_E_INVAL, "bad listen address %s", lbuf);
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
        .stats = &p->st.udp,
    };
    char rerr[256] = "";
    rc = nb_udp_relay_new(p->loop, &ro, &svc->udp, rerr, sizeof rerr);
    if (rc == NB_E_IO && la.ss_family == AF_INET6 && p->opts.listen_host == NULL) {
        nb_addr_from_ip("0.0.0.0", (uint16_t)m->listen_port, &la, NULL); /* no IPv6 */
        rc = nb_udp_relay_new(p->loop, &ro, &svc->udp, rerr, sizeof rerr);
    }
    if (rc != NB_OK) {
        rc = errf(err, errlen, rc, "%s", rerr[0] ? rerr : nb_strerror(rc));
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
    free(svc->id);
    free(svc->account_id);
    free(svc->domain);
    free(svc);
    return rc;
}

/*
 * HTTP mode (spec/proxy.md §3.4): the routes live in the http_proxy; the service record here
 * only remembers the id so a later MODIFIED or REMOVED finds it.
 */
static int setup_http(struct nb_proxy *p, const struct nb_mapping *m, char *err, size_t errlen)
{
    if (p->opts.http == NULL)
        return errf(err, errlen, NB_E_UNSUPPORTED,
                    "HTTP mappings need an HTTP listener (--http-addr or --private)");
    const struct nb_auth *au = &m->auth;
    if (au->password || au->pin || au->oidc || au->n_header_auths)
        return errf(err, errlen, NB_E_UNSUPPORTED,
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
        free(svc->id);
        free(svc->account_id);
        free(svc);
        return NB_E_NOMEM;
    }
    char warn[512] = "";
    if (m->n_paths > 0) {
        struct http_service *hs = NULL;
        int rc = http_service_new(m, &hs, warn, sizeof warn);
        if (rc != NB_OK) {
            errf(err, errlen, rc, "%s",
                 rc == NB_E_INVAL ? "mapping without id or domain" : "out of memory");
        } else {
            rc = http_proxy_add(p->opts.http, hs, err, errlen);
            http_service_unref(hs); /* the table holds its own reference */
        }
        if (rc != NB_OK) {
            free(svc->id);
            free(svc->account_id);
            free(svc);
            return rc;
        }
    }
    if (link_service(p, svc) != NB_OK) {
        if (p->opts.http)
            http_proxy_remove(p->opts.http, svc->id);
        free(svc->id);
        free(svc->account_id);
        free(svc);
        return NB_E_NOMEM;
    }
    nb_debug("proxy", "service %s (http): %s, %u path(s), account %s", svc->id,
             m->domain ? m->domain : "", m->n_paths, svc->account_id);
    if (warn[0]) {
        nb_warn("proxy", "service %s: %s", svc->id, warn);
        errf(err, errlen, NB_OK, "%s", warn);
    }
    return NB_OK;
}

int nb_proxy_apply(struct nb_proxy *p, const struct nb_mapping *m, char *err, size_t errlen)
{
    if (m->id == NULL || m->id[0] == '\0')
        return errf(err, errlen, NB_E_INVAL, "mapping without id");
    switch (m->type) {
    case NB_UPDATE_REMOVED:
        remove_service(p, m->id);
        return NB_OK;
    case NB_UPDATE_CREATED:
    case NB_UPDATE_MODIFIED:
        break;
    default:
        return errf(err, errlen, NB_E_INVAL, "unknown update type %d", (int)m->type);
    }
    /* Both create and modify replace the previous routes of this service (one code path; the
     * reference's stale-route quirk on CREATED for a known id is not reproduced). */
    remove_service(p, m->id);
    switch (nb_mapping_mode(m)) {
    case NB_MODE_TCP:
        return setup_tcp(p, m, err, errlen);
    case NB_MODE_HTTP:
        return setup_http(p, m, err, errlen);
    case NB_MODE_UDP:
        return setup_udp(p, m, err, errlen);
    case NB_MODE_TLS:
        break;
    }
    return errf(err, errlen, NB_E_UNSUPPORTED, "mode \"%s\" is not supported yet",
                m->mode ? m->mode : "");
}

void nb_proxy_drain(struct nb_proxy *p)
{
    p->draining = true;
    for (struct service *s = p->services; s; s = s->next) {
        if (s->listener) {
            nb_listener_close(s->listener);
            s->listener = NULL;
        }
        nb_udp_relay_close(s->udp); /* UDP has nothing to drain: sessions end now */
        s->udp = NULL;
    }
}

void nb_proxy_stats(const struct nb_proxy *p, struct nb_proxy_stats *st)
{
    *st = p->st;
}

void nb_proxy_free(struct nb_proxy *p)
{
    if (p == NULL)
        return;
    while (p->services)
        remove_service(p, p->services->id);
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
