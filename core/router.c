/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The TCP router of spec/proxy.md §3.7 (see core/router.h). One struct rconn per accepted
 * connection, from accept until the stream is handed over:
 *
 *   READ      PROXY header (if enabled), then the ClientHello peek; bytes go to c->buf
 *   HANDSHAKE the TLS stream (which owns the client now) runs its handshake; on_connect hands it
 *             to the HTTP server (dispatch_tls: the one place that chooses HTTP/1.1 or h2)
 *   DIAL      the backend is being dialled; the client is paused
 *   RELAY     an nb_relay owns both streams; relay_done ends the rconn
 *
 * A replay stream (struct rstream) wraps the client when bytes must be replayed to a plain HTTP
 * server, or when a PROXY header changed the connection's addresses: it delivers the prefix
 * first and answers addrs() with the header's addresses.
 *
 * Relay targets are refcounted (struct l4t): a relay keeps its target alive for the access log
 * after the route is gone.
 */
#include "core/router.h"
#include "auth/restrict.h"
#include "core/tcp_metrics.h"
#include "http/accesslog.h"
#include "http/server.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"
#include "platform/relay.h"
#include "platform/strmap.h"
#include "tls/tls.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DIAL_MS 30000u

/* ---- refcounted relay targets ---- */

struct l4t {
    int refs;
    struct nb_l4_target t;    /* strings below are owned */
    struct nb_tcp_acct *acct; /* its account's tcp metrics (a hold), NULL without a table */
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void l4t_unref(struct l4t *x)
{
    if (x == NULL || --x->refs > 0)
        return;
    free((char *)x->t.service_id);
    free((char *)x->t.account_id);
    free((char *)x->t.domain);
    free((char *)x->t.protocol);
    auth_restrict_unref(x->t.restrictions);
    nb_tcp_acct_release(x->acct);
    free(x);
}

static struct l4t *l4t_new(struct nb_tcp_metrics *m, const struct nb_l4_target *t)
{
    struct l4t *x = calloc(1, sizeof *x);
    if (x == NULL)
        return NULL;
    x->refs = 1;
    x->t = *t;
    x->t.service_id = dup_or_null(t->service_id);
    x->t.account_id = strdup(t->account_id ? t->account_id : "");
    x->t.domain = dup_or_null(t->domain);
    x->t.protocol = strdup(t->protocol ? t->protocol : "tcp");
    x->t.restrictions = auth_restrict_ref(t->restrictions);
    if (x->t.account_id)
        x->acct = nb_tcp_acct_hold(m, x->t.account_id);
    if (x->t.service_id == NULL || x->t.account_id == NULL || x->t.protocol == NULL ||
        (t->domain && x->t.domain == NULL) || (m && x->acct == NULL)) {
        x->refs = 1;
        l4t_unref(x);
        return NULL;
    }
    if (x->t.dial_timeout_ms == 0)
        x->t.dial_timeout_ms = DEFAULT_DIAL_MS;
    return x;
}

/* ---- routes ---- */

struct route {
    struct route *next; /* same SNI */
    char *service_id;
    struct l4t *tls; /* NULL: an HTTP route */
};

enum rstate { RS_READ, RS_HANDSHAKE, RS_DIAL, RS_RELAY };

struct rconn {
    struct rconn *next, **pprev;
    struct nb_router *r; /* NULL once a cancelled relay no longer belongs to a router */
    struct nb_access_log *log;
    enum rstate state;
    struct nb_stream *client;
    struct nb_stream *backend;
    struct nb_relay *relay;
    struct l4t *target; /* DIAL / RELAY */
    uint8_t *buf;
    size_t len, cap;
    bool pp_pending;
    enum l4_pp_policy pp_pol;
    bool addrs_set;  /* a PROXY header gave the addresses below */
    bool client_eof; /* the client's EOF came during the peek: replayed to whoever takes it */
    struct sockaddr_storage peer, local;
    struct nb_timer timer;
    struct nb_defer defer;
    char client_addr[NB_ADDRSTRLEN];
};

struct nb_router {
    struct nb_loop *loop;
    char *name;
    char *scope;
    struct tls_ctx *tls;
    struct http_server *https, *plain;
    bool overlay;
    bool proxy_protocol;
    struct l4_prefix *trusted;
    size_t n_trusted;
    uint32_t max_relays;
    struct nb_access_log *access_log;
    const struct auth_geo_ops *geo;
    nb_router_dialer_fn dialer;
    void *dialer_arg;
    struct nb_strmap sni;  /* lower-cased name -> struct route list */
    uint32_t n_sni_routes; /* routes in the map */
    struct l4t *fallback;
    struct rconn *conns;         /* every connection the router still owns */
    struct nb_tcp_metrics *tcpm; /* a reference, or NULL */
    bool draining;
    struct nb_router_stats st;
};

static void lower(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[n] = '\0';
}

enum nb_route_verdict nb_router_decide(const struct nb_router *r, enum l4_tls_kind kind,
                                       const char *sni, size_t sni_len,
                                       const struct nb_l4_target **target)
{
    *target = NULL;
    if (kind == L4_TLS_SNI && sni && sni_len > 0 && sni_len <= L4_SNI_MAX) {
        char name[L4_SNI_MAX + 1];
        lower(name, sni, sni_len);
        const struct route *rt = nb_strmap_get(&r->sni, name);
        const struct route *tcp = NULL;
        for (; rt; rt = rt->next) {
            if (rt->tls == NULL && r->tls) /* HTTP routes win */
                return NB_RV_TLS_HTTP;
            if (rt->tls && tcp == NULL)
                tcp = rt;
        }
        if (tcp) {
            *target = &tcp->tls->t;
            return NB_RV_RELAY;
        }
    }
    if (r->fallback) {
        *target = &r->fallback->t;
        return NB_RV_RELAY;
    }
    if (kind == L4_NOT_TLS && r->plain)
        return NB_RV_PLAIN_HTTP;
    if (r->tls)
        return NB_RV_TLS_HTTP;
    return NB_RV_CLOSE;
}

/* ---- the replay stream ---- */

struct rstream {
    struct nb_stream base;
    struct nb_stream *inner;
    uint8_t *pre;
    size_t pre_len;
    bool paused;
    bool closed;
    bool has_addrs;
    bool eof; /* the inner stream's EOF came during the peek: delivered after pre */
    struct sockaddr_storage local, peer;
    struct nb_defer d;
};

static void rs_free_cb(struct nb_defer *d)
{
    struct rstream *w = d->arg;
    free(w->pre);
    free(w);
}

static void rs_deliver(struct nb_defer *d)
{
    struct rstream *w = d->arg;
    if (w->closed || w->paused)
        return;
    if (w->pre) {
        uint8_t *pre = w->pre;
        size_t n = w->pre_len;
        w->pre = NULL;
        w->pre_len = 0;
        if (w->base.cbs && w->base.cbs->on_data)
            w->base.cbs->on_data(w->base.arg, &w->base, pre, n);
        free(pre);
        if (w->closed || w->paused)
            return;
    }
    if (w->eof) {
        /* The inner stream has nothing more to say; its EOF is ours to replay, once. */
        w->eof = false;
        if (w->base.cbs && w->base.cbs->on_eof)
            w->base.cbs->on_eof(w->base.arg, &w->base);
        return;
    }
    nb_stream_pause(w->inner, false);
}

static int rs_write(struct nb_stream *s, const void *buf, size_t len)
{
    struct rstream *w = (struct rstream *)s;
    w->inner->high_water = s->high_water;
    w->inner->low_water = s->low_water;
    return nb_stream_write(w->inner, buf, len);
}

static size_t rs_queued(const struct nb_stream *s)
{
    return nb_stream_queued(((const struct rstream *)s)->inner);
}

static void rs_set_paused(struct nb_stream *s, bool p)
{
    struct rstream *w = (struct rstream *)s;
    w->paused = p;
    if (p) {
        nb_stream_pause(w->inner, true);
        return;
    }
    /* The prefix goes first, from a deferred call (never from inside the owner's call). */
    if (w->pre || w->eof)
        nb_defer(s->loop, &w->d, rs_deliver, w);
    else
        nb_stream_pause(w->inner, false);
}

static int rs_shutdown(struct nb_stream *s)
{
    return nb_stream_shutdown(((struct rstream *)s)->inner);
}

static void rs_close(struct nb_stream *s, bool abort)
{
    struct rstream *w = (struct rstream *)s;
    w->closed = true;
    nb_defer_cancel(s->loop, &w->d);
    nb_stream_close(w->inner, abort);
    w->inner = NULL;
    nb_defer(s->loop, &w->d, rs_free_cb, w);
}

static int rs_addrs(const struct nb_stream *s, struct sockaddr_storage *local,
                    struct sockaddr_storage *peer)
{
    const struct rstream *w = (const struct rstream *)s;
    if (!w->has_addrs)
        return nb_stream_addrs(w->inner, local, peer);
    if (local)
        *local = w->local;
    if (peer)
        *peer = w->peer;
    return NB_OK;
}

static const struct nb_stream_vtbl rs_vt = {
    .name = "replay",
    .write = rs_write,
    .queued = rs_queued,
    .set_paused = rs_set_paused,
    .shutdown = rs_shutdown,
    .close = rs_close,
    .addrs = rs_addrs,
};

static void rs_on_data(void *arg, struct nb_stream *s, const uint8_t *data, size_t len)
{
    struct rstream *w = arg;
    if (w->base.cbs && w->base.cbs->on_data)
        w->base.cbs->on_data(w->base.arg, &w->base, data, len);
}

static void rs_on_eof(void *arg, struct nb_stream *s)
{
    struct rstream *w = arg;
    if (w->base.cbs && w->base.cbs->on_eof)
        w->base.cbs->on_eof(w->base.arg, &w->base);
}

static void rs_on_drain(void *arg, struct nb_stream *s)
{
    struct rstream *w = arg;
    nb_stream__check_drain(&w->base);
}

static void rs_on_error(void *arg, struct nb_stream *s, const char *err)
{
    struct rstream *w = arg;
    if (w->base.cbs && w->base.cbs->on_error)
        w->base.cbs->on_error(w->base.arg, &w->base, err);
}

static const struct nb_stream_cbs rs_inner_cbs = {
    .on_data = rs_on_data,
    .on_eof = rs_on_eof,
    .on_drain = rs_on_drain,
    .on_error = rs_on_error,
};

/* Wraps a paused inner stream; pre (copied) is delivered first, then EOF when `eof` (the inner
 * stream already reported it). NULL when out of memory (inner is still the caller's). The
 * wrapper reads (not paused) from the start, like an accepted socket. */
static struct nb_stream *rs_new(struct nb_loop *loop, struct nb_stream *inner, const uint8_t *pre,
                                size_t pre_len, bool eof, const struct sockaddr_storage *local,
                                const struct sockaddr_storage *peer)
{
    struct rstream *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    if (pre_len) {
        if ((w->pre = malloc(pre_len)) == NULL) {
            free(w);
            return NULL;
        }
        memcpy(w->pre, pre, pre_len);
        w->pre_len = pre_len;
    }
    nb_stream_init(&w->base, &rs_vt, loop);
    w->inner = inner;
    w->eof = eof;
    if (local && peer) {
        w->has_addrs = true;
        w->local = *local;
        w->peer = *peer;
    }
    nb_stream_set_cbs(inner, &rs_inner_cbs, w);
    nb_stream_pause(inner, true);
    nb_defer(loop, &w->d, rs_deliver, w);
    return &w->base;
}

/* ---- connections ---- */

static void rconn_free_cb(struct nb_defer *d)
{
    struct rconn *c = d->arg;
    free(c->buf);
    free(c);
}

static void rconn_unlink(struct rconn *c)
{
    if (c->pprev) {
        *c->pprev = c->next;
        if (c->next)
            c->next->pprev = c->pprev;
        c->pprev = NULL;
        if (c->state == RS_DIAL || c->state == RS_RELAY) {
            c->r->st.relays_active--;
            if (c->target->acct)
                c->target->acct->active--;
        }
    }
}

/* Ends a connection the router still owns (no relay): streams reset (the client closed
 * gracefully when `graceful`, so an alert or Go's 400 gets out), memory deferred. */
static void rconn_end2(struct rconn *c, const char *why, bool graceful)
{
    nb_timer_cancel(&c->timer);
    if (why)
        nb_debug("router", "%s: %s: %s", c->r->name, c->client_addr, why);
    if (c->backend)
        nb_stream_close(c->backend, true);
    if (c->client)
        nb_stream_close(c->client, !graceful);
    c->backend = c->client = NULL;
    rconn_unlink(c);
    l4t_unref(c->target);
    c->target = NULL;
    nb_defer(c->r->loop, &c->defer, rconn_free_cb, c);
}

static void rconn_end(struct rconn *c, const char *why)
{
    rconn_end2(c, why, false);
}

/* The stream handed to an HTTP server or the TLS layer: the client itself, or a replay wrapper
 * when bytes must be replayed (plain) or the addresses changed. */
static struct nb_stream *handoff_stream(struct rconn *c, const uint8_t *pre, size_t pre_len)
{
    if (pre_len == 0 && !c->addrs_set && !c->client_eof) {
        /* The HTTP server expects a reading stream (as a listener hands it over). */
        nb_stream_pause(c->client, false);
        return c->client;
    }
    return rs_new(c->r->loop, c->client, pre, pre_len, c->client_eof,
                  c->addrs_set ? &c->local : NULL, c->addrs_set ? &c->peer : NULL);
}

static struct http_conn_info conn_info(const struct nb_router *r, bool tls)
{
    return (struct http_conn_info){.tls = tls, .overlay = r->overlay, .scope = r->scope};
}

/*
 * THE post-handshake dispatch: every TLS-terminated connection of every router goes through
 * here. HTTP/2 plugs in on the negotiated ALPN ("h2" -> http_server_accept_h2).
 */
static void dispatch_tls(struct nb_router *r, struct nb_stream *tls)
{
    struct http_conn_info info = conn_info(r, true);
    struct tls_info ti;
    bool ok = tls_stream_info(tls, &ti) == NB_OK;
    if (ok && strcmp(ti.alpn, "acme-tls/1") == 0) {
        /* A tls-alpn-01 challenge handshake is done once it completed: nothing to serve. */
        nb_stream_close(tls, false);
        return;
    }
    if (ok && strcmp(ti.alpn, "h2") == 0)
        (void)http_server_accept_h2(r->https, tls, &info);
    else
        (void)http_server_accept(r->https, tls, &info);
}

static void tls_connected(void *arg, struct nb_stream *s, const char *err)
{
    struct rconn *c = arg;
    struct nb_router *r = c->r;
    if (err) {
        r->st.tls_failures++;
        rconn_end2(c, err, true);
        return;
    }
    r->st.tls_handoffs++;
    c->client = NULL; /* handed over */
    rconn_end(c, NULL);
    dispatch_tls(r, s);
}

static void tls_failed(void *arg, struct nb_stream *s, const char *err)
{
    tls_connected(arg, s, err ? err : tls_err_closed);
}

static const struct nb_stream_cbs tls_hs_cbs = {
    .on_error = tls_failed,
    .on_connect = tls_connected,
};

static void to_tls(struct rconn *c)
{
    struct nb_router *r = c->r;
    nb_timer_cancel(&c->timer);
    struct nb_stream *inner = c->client;
    /* The TLS stream takes at most TLS_HELLO_MAX bytes already read; anything the same reads
     * brought after them (a ClientHello in two records) is replayed by the wrapper after it. */
    size_t n = c->len > TLS_HELLO_MAX ? TLS_HELLO_MAX : c->len;
    if ((c->addrs_set || c->len > n || c->client_eof) &&
        (inner = rs_new(r->loop, c->client, c->buf + n, c->len - n, c->client_eof,
                        c->addrs_set ? &c->local : NULL, c->addrs_set ? &c->peer : NULL)) == NULL) {
        rconn_end(c, "out of memory");
        return;
    }
    struct nb_stream *tls = NULL;
    if (tls_server_wrap(r->tls, inner, c->buf, n, NB_ROUTER_HANDSHAKE_MS, &tls) != NB_OK) {
        nb_stream_close(inner, true); /* the wrapper, if any, owns the client */
        c->client = NULL;
        rconn_end(c, "cannot start TLS");
        return;
    }
    c->client = tls;
    c->state = RS_HANDSHAKE;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
    nb_stream_set_cbs(tls, &tls_hs_cbs, c);
}

static void to_plain(struct rconn *c)
{
    struct nb_router *r = c->r;
    nb_timer_cancel(&c->timer);
    struct nb_stream *s = handoff_stream(c, c->buf, c->len);
    if (s == NULL) {
        rconn_end(c, "out of memory");
        return;
    }
    c->client = NULL;
    rconn_end(c, NULL);
    struct http_conn_info info = conn_info(r, false);
    (void)http_server_accept(r->plain, s, &info);
}

/* -- relays -- */

static void relay_done(void *arg, struct nb_relay *rl, const struct nb_relay_result *res)
{
    struct rconn *c = arg;
    struct nb_router *r = c->r;
    const struct nb_l4_target *t = &c->target->t;
    uint64_t up = res->bytes_up + c->len; /* the replayed bytes went up too */
    if (c->target->acct)
        nb_tcp_metrics_relay_done(c->target->acct->m, res->ended_ms - res->started_ms, up,
                                  res->bytes_down);
    if (c->log) {
        char ip[NB_ADDRSTRLEN] = "";
        if (c->peer.ss_family)
            nb_addr_ip_str((struct sockaddr *)&c->peer, ip);
        struct nb_access_log_entry e = {
            .account_id = t->account_id,
            .service_id = t->service_id,
            .host = t->domain,
            .duration_ms = (int64_t)(res->ended_ms - res->started_ms),
            .source_ip = ip,
            .bytes_upload = (int64_t)up,
            .bytes_download = (int64_t)res->bytes_down,
            .protocol = t->protocol,
        };
        nb_access_log_write(c->log, &e);
    }
    nb_debug("router", "%s: service=%s client=%s up=%llu down=%llu%s%s", r ? r->name : "-",
             t->service_id, c->client_addr, (unsigned long long)up,
             (unsigned long long)res->bytes_down, res->reason ? " end=" : "",
             res->reason ? res->reason : "");
    c->relay = NULL;
    if (r)
        rconn_unlink(c);
    l4t_unref(c->target);
    free(c->buf);
    free(c);
}

/* The backend could not be reached (no tunnel, dial error, dial timeout). */
static void dial_failed(struct rconn *c)
{
    c->r->st.dial_failures++;
    if (c->target->acct)
        c->target->acct->dial_error++;
}

static void backend_connected(void *arg, struct nb_stream *s, const char *err)
{
    struct rconn *c = arg;
    struct nb_router *r = c->r;
    if (err != NULL) {
        dial_failed(c);
        nb_info("router", "%s: service %s: dial failed: %s", r->name, c->target->t.service_id, err);
        rconn_end(c, NULL);
        return;
    }
    nb_timer_cancel(&c->timer);
    if (c->target->t.proxy_protocol) {
        uint8_t hdr[L4_PP_V2_ENC_MAX];
        int n = l4_pp_v2_encode((struct sockaddr *)&c->peer, (struct sockaddr *)&c->local, hdr);
        if (n < 0 || nb_stream_write(c->backend, hdr, (size_t)n) != NB_OK) {
            rconn_end(c, "cannot write the PROXY v2 header");
            return;
        }
    }
    if (c->len && nb_stream_write(c->backend, c->buf, c->len) != NB_OK) {
        rconn_end(c, "cannot replay the peeked bytes");
        return;
    }
    if (c->client_eof) {
        /* The client already half-closed: the relay sees that EOF and passes it on. */
        struct nb_stream *w = rs_new(r->loop, c->client, NULL, 0, true, NULL, NULL);
        if (w == NULL) {
            rconn_end(c, "out of memory");
            return;
        }
        c->client = w;
    }
    struct nb_relay_opts ro = {.idle_timeout_ms = c->target->t.idle_timeout_ms};
    struct nb_stream *client = c->client, *backend = c->backend;
    c->client = c->backend = NULL; /* the relay owns them now (also on failure) */
    c->state = RS_RELAY;
    if (nb_relay_start(r->loop, client, backend, &ro, relay_done, c, &c->relay) != NB_OK) {
        rconn_end(c, "out of memory starting a relay");
        return;
    }
    /* counted once the relay runs (the reference's TCPRelayStarted: after the dial and the
     * PROXY header) */
    if (c->target->acct)
        c->target->acct->success++;
}

static void backend_error(void *arg, struct nb_stream *s, const char *err)
{
    struct rconn *c = arg;
    dial_failed(c);
    rconn_end(c, err);
}

static const struct nb_stream_cbs dial_cbs = {
    .on_error = backend_error,
    .on_connect = backend_connected,
};

static void dial_timeout(struct nb_timer *t)
{
    struct rconn *c = t->arg;
    dial_failed(c);
    nb_info("router", "%s: service %s: dial timed out after %u ms", c->r->name,
            c->target->t.service_id, c->target->t.dial_timeout_ms);
    rconn_end(c, NULL);
}

static void client_wait_error(void *arg, struct nb_stream *s, const char *err)
{
    rconn_end(arg, err);
}

static void client_wait_eof(void *arg, struct nb_stream *s)
{
    /* A paused stream should not read on, but if its EOF came anyway, the relay gets it. */
    ((struct rconn *)arg)->client_eof = true;
}

static const struct nb_stream_cbs waiting_client_cbs = {
    .on_eof = client_wait_eof,
    .on_error = client_wait_error,
};

/*
 * The target's access restrictions on the client address. false: denied, the connection was
 * ended (nothing dialled, no byte relayed) and the deny logged.
 */
static bool relay_allowed(struct rconn *c, const struct nb_l4_target *t)
{
    struct nb_router *r = c->r;
    struct auth_ip ip;
    bool have_ip = auth_ip_from_sockaddr((struct sockaddr *)&c->peer, &ip);
    enum auth_verdict v =
        auth_restrict_check(t->restrictions, have_ip ? &ip : NULL, r->overlay, r->geo);
    if (v == AUTH_ALLOW)
        return true;
    r->st.restricted++;
    auth_restrict_count_deny(v, strcmp(t->protocol, "tls") == 0 ? AUTH_PROTO_TLS : AUTH_PROTO_TCP);
    uint64_t suppressed = 0;
    if (auth_restrict_log_deny(t->restrictions, v, nb_loop_now_ms(r->loop), &suppressed)) {
        char ipbuf[NB_ADDRSTRLEN] = "";
        if (have_ip)
            auth_ip_str(&ip, ipbuf, sizeof ipbuf);
        nb_info("router", "%s: service %s: %s denied: %s%s", r->name, t->service_id,
                ipbuf[0] ? ipbuf : "(unknown address)", auth_verdict_name(v),
                suppressed ? " (more denials suppressed in the last 10 s)" : "");
        if (r->access_log) {
            struct nb_access_log_entry e = {
                .account_id = t->account_id,
                .service_id = t->service_id,
                .host = t->domain,
                .source_ip = ipbuf,
                .auth_mechanism = auth_verdict_name(v),
                .protocol = t->protocol,
            };
            nb_access_log_write(r->access_log, &e);
        }
    }
    rconn_end2(c, NULL, true); /* a FIN, as the reference's Close: nothing was relayed */
    return false;
}

static void to_relay(struct rconn *c, const struct nb_l4_target *t)
{
    struct nb_router *r = c->r;
    nb_timer_cancel(&c->timer);
    /* t points into a struct l4t owned by the route table */
    struct l4t *x = (struct l4t *)((char *)t - offsetof(struct l4t, t));
    if (!c->addrs_set)
        (void)nb_stream_addrs(c->client, &c->local, &c->peer);
    if (t->restrictions && !relay_allowed(c, t))
        return;
    if (r->draining || r->st.relays_active >= r->max_relays) {
        r->st.relays_rejected++;
        if (x->acct)
            x->acct->rejected++;
        rconn_end(c, "relay limit reached");
        return;
    }
    c->target = x;
    c->target->refs++;
    c->state = RS_DIAL;
    c->log = r->access_log;
    r->st.relays_active++;
    r->st.relays_total++;
    if (x->acct)
        x->acct->active++;
    nb_stream_set_cbs(c->client, &waiting_client_cbs, c);
    nb_stream_pause(c->client, true);
    struct nb_dialer d;
    if (r->dialer == NULL || r->dialer(r->dialer_arg, t->account_id, t->direct, &d) != NB_OK) {
        dial_failed(c);
        rconn_end(c, "the account has no tunnel");
        return;
    }
    nb_timer_init(&c->timer, dial_timeout, c);
    nb_timer_arm(r->loop, &c->timer, t->dial_timeout_ms);
    int rc = d.dial(d.ctx, (const struct sockaddr *)&t->target, &dial_cbs, c, &c->backend);
    if (rc != NB_OK) {
        dial_failed(c);
        c->backend = NULL;
        rconn_end(c, nb_strerror(rc));
    }
}

/* -- the peek -- */

static bool pure_tcp(const struct nb_router *r)
{
    return r->n_sni_routes == 0 && r->tls == NULL && r->plain == NULL;
}

static void route_now(struct rconn *c, const struct l4_sni_result *res)
{
    const struct nb_l4_target *t = NULL;
    enum nb_route_verdict v =
        nb_router_decide(c->r, res->kind, (const char *)res->sni, res->sni_len, &t);
    switch (v) {
    case NB_RV_TLS_HTTP:
        to_tls(c);
        return;
    case NB_RV_PLAIN_HTTP:
        to_plain(c);
        return;
    case NB_RV_RELAY:
        to_relay(c, t);
        return;
    case NB_RV_CLOSE:
        break;
    }
    c->r->st.peek_closed++;
    rconn_end(c, "no route");
}

/* Applies the PROXY header step; false when the connection ended or more bytes are needed. */
static bool pp_step(struct rconn *c, bool final)
{
    struct l4_pp_header h;
    size_t hl = 0;
    enum l4_pp_action a = l4_pp_decide(c->pp_pol, c->buf, c->len, final, &h, &hl);
    switch (a) {
    case L4_PP_WAIT:
        if (c->len >= NB_ROUTER_PP_MAX) {
            c->r->st.pp_rejected++;
            rconn_end(c, "PROXY header too long");
        }
        return false;
    case L4_PP_CLOSE:
        c->r->st.pp_rejected++;
        rconn_end(c, "PROXY header missing or invalid");
        return false;
    case L4_PP_APPLY:
        c->addrs_set = true;
        c->peer = h.src;
        c->local = h.dst;
        nb_addr_str((struct sockaddr *)&c->peer, c->client_addr);
        /* fall through */
    case L4_PP_STRIP:
        memmove(c->buf, c->buf + hl, c->len - hl);
        c->len -= hl;
        break;
    case L4_PP_DIRECT:
        break;
    }
    c->pp_pending = false;
    /* The ClientHello peek gets its own 5 s after the header (spec §10.1 and §3.7 each give
     * 5 s); after the deadline (final) what was read decides at once. */
    if (!final)
        nb_timer_arm(c->r->loop, &c->timer, NB_ROUTER_PEEK_MS);
    return true;
}

static void peek_step(struct rconn *c, bool final)
{
    if (c->pp_pending && !pp_step(c, final))
        return;
    if (pure_tcp(c->r)) {
        if (c->r->fallback)
            to_relay(c, &c->r->fallback->t);
        else
            rconn_end(c, "no route");
        return;
    }
    struct l4_sni_result res;
    int rc = final ? l4_sni_peek_finish(c->buf, c->len, &res) : l4_sni_peek(c->buf, c->len, &res);
    if (rc == NB_E_AGAIN)
        return;
    if (rc != NB_OK) {
        c->r->st.peek_closed++;
        rconn_end(c, !final          ? "peek failed"
                     : c->client_eof ? "EOF before a whole TLS record header"
                                     : "no TLS record header before the peek deadline");
        return;
    }
    route_now(c, &res);
}

static void peek_data(void *arg, struct nb_stream *s, const uint8_t *data, size_t len)
{
    struct rconn *c = arg;
    size_t limit = (c->pp_pending ? NB_ROUTER_PP_MAX : 0) + L4_SNI_PEEK_MAX + len;
    if (c->len + len > c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 1024;
        while (ncap < c->len + len)
            ncap *= 2;
        if (ncap > limit)
            ncap = limit > c->len + len ? limit : c->len + len;
        uint8_t *nb = realloc(c->buf, ncap);
        if (nb == NULL) {
            rconn_end(c, "out of memory");
            return;
        }
        c->buf = nb;
        c->cap = ncap;
    }
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    peek_step(c, false);
}

static void peek_eof(void *arg, struct nb_stream *s)
{
    struct rconn *c = arg;
    /* As the deadline: what was read decides (§3.7: no record header -> close; a header without
     * its whole record -> unmatched TLS, the bytes and then the EOF replayed). */
    c->client_eof = true;
    nb_timer_cancel(&c->timer);
    peek_step(c, true);
}

static void peek_error(void *arg, struct nb_stream *s, const char *err)
{
    struct rconn *c = arg;
    c->r->st.peek_closed++;
    rconn_end(c, err);
}

static void peek_deadline(struct nb_timer *t)
{
    struct rconn *c = t->arg;
    /* The deadline stops reading: what was read decides (§3.7 "peek errors"). */
    nb_stream_pause(c->client, true);
    peek_step(c, true);
}

static const struct nb_stream_cbs peek_cbs = {
    .on_data = peek_data,
    .on_eof = peek_eof,
    .on_error = peek_error,
};

void nb_router_accept_cb(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    struct nb_router *r = arg;
    if (r->draining) {
        r->st.relays_rejected++;
        nb_stream_close(s, true);
        return;
    }
    struct rconn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        nb_stream_close(s, true);
        return;
    }
    r->st.accepted++;
    c->r = r;
    c->client = s;
    c->state = RS_READ;
    struct sockaddr_storage local;
    if (nb_stream_addrs(s, &local, &c->peer) == NB_OK) {
        nb_addr_str((struct sockaddr *)&c->peer, c->client_addr);
        if (r->proxy_protocol)
            c->pp_pol = l4_pp_policy((struct sockaddr *)&c->peer, r->trusted, r->n_trusted);
    } else if (r->proxy_protocol) {
        c->pp_pol = l4_pp_policy(NULL, r->trusted, r->n_trusted);
    }
    c->pp_pending = r->proxy_protocol;
    c->next = r->conns;
    if (r->conns)
        r->conns->pprev = &c->next;
    r->conns = c;
    c->pprev = &r->conns;
    nb_timer_init(&c->timer, peek_deadline, c);
    if (!c->pp_pending && pure_tcp(r)) {
        /* A pure per-port tcp router relays at once, without reading (§3.7). */
        nb_stream_set_cbs(s, &waiting_client_cbs, c);
        nb_stream_pause(s, true);
        if (r->fallback)
            to_relay(c, &r->fallback->t);
        else
            rconn_end(c, "no route");
        return;
    }
    nb_stream_set_cbs(s, &peek_cbs, c);
    nb_timer_arm(r->loop, &c->timer, NB_ROUTER_PEEK_MS);
}

/* ---- the router ---- */

struct nb_router *nb_router_new(struct nb_loop *loop, const struct nb_router_opts *o)
{
    struct nb_router *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->loop = loop;
    r->name = strdup(o->name ? o->name : "router");
    r->scope = dup_or_null(o->scope);
    if (r->name == NULL || (o->scope && r->scope == NULL))
        goto fail;
    if (o->n_trusted) {
        r->trusted = calloc(o->n_trusted, sizeof *r->trusted);
        if (r->trusted == NULL)
            goto fail;
        memcpy(r->trusted, o->trusted, o->n_trusted * sizeof *r->trusted);
        r->n_trusted = o->n_trusted;
    }
    r->tls = o->tls ? tls_ctx_ref(o->tls) : NULL;
    r->https = o->https;
    r->plain = o->plain;
    r->overlay = o->overlay;
    r->proxy_protocol = o->proxy_protocol;
    r->max_relays = o->max_relays ? o->max_relays : NB_ROUTER_MAX_RELAYS;
    r->access_log = o->access_log;
    r->geo = o->geo;
    r->dialer = o->dialer;
    r->dialer_arg = o->dialer_arg;
    r->tcpm = nb_tcp_metrics_ref(o->tcp_metrics);
    nb_strmap_init(&r->sni);
    return r;
fail:
    free(r->name);
    free(r->scope);
    free(r);
    return NULL;
}

/* Cancels (relays) or ends (dials) the connections of one service, or all (NULL). */
static void cancel_conns(struct nb_router *r, const char *service_id)
{
    struct rconn *c = r->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->state != RS_DIAL && c->state != RS_RELAY) {
            if (service_id == NULL)
                rconn_end(c, "router closed");
            continue;
        }
        if (service_id && strcmp(c->target->t.service_id, service_id) != 0)
            continue;
        if (c->state == RS_DIAL) {
            rconn_end(c, "service removed");
        } else {
            rconn_unlink(c);
            c->r = NULL; /* the router may go before relay_done runs: it must not touch it */
            nb_relay_cancel(c->relay);
        }
    }
}

/* Replaces the value of a key that exists (no allocation, cannot fail). */
static void map_replace(struct nb_strmap *m, const char *key, void *v)
{
    int rc = nb_strmap_put(m, key, v, NULL);
    (void)rc;
}

static void route_free(struct route *rt)
{
    l4t_unref(rt->tls);
    free(rt->service_id);
    free(rt);
}

/* Removes the routes of service_id from one SNI chain; returns the new head. */
static struct route *chain_remove(struct nb_router *r, struct route *head, const char *service_id)
{
    struct route **pp = &head;
    while (*pp) {
        struct route *rt = *pp;
        if (strcmp(rt->service_id, service_id) == 0) {
            *pp = rt->next;
            r->n_sni_routes--;
            route_free(rt);
        } else {
            pp = &rt->next;
        }
    }
    return head;
}

static int add_route(struct nb_router *r, const char *sni, const char *service_id,
                     const struct nb_l4_target *t)
{
    size_t n = sni ? strlen(sni) : 0;
    if (n == 0 || n > L4_SNI_MAX || service_id == NULL)
        return NB_E_INVAL;
    char name[L4_SNI_MAX + 1];
    lower(name, sni, n);
    struct route *rt = calloc(1, sizeof *rt);
    if (rt == NULL || (rt->service_id = strdup(service_id)) == NULL ||
        (t && (rt->tls = l4t_new(r->tcpm, t)) == NULL)) {
        if (rt)
            route_free(rt);
        return NB_E_NOMEM;
    }
    cancel_conns(r, service_id);
    struct route *head = chain_remove(r, nb_strmap_get(&r->sni, name), service_id);
    rt->next = head;
    if (nb_strmap_put(&r->sni, name, rt, NULL) != NB_OK) {
        if (head == NULL)
            nb_strmap_del(&r->sni, name);
        else
            map_replace(&r->sni, name, head);
        route_free(rt);
        return NB_E_NOMEM;
    }
    r->n_sni_routes++;
    return NB_OK;
}

int nb_router_add_http(struct nb_router *r, const char *sni, const char *service_id)
{
    return add_route(r, sni, service_id, NULL);
}

int nb_router_add_tls(struct nb_router *r, const char *sni, const struct nb_l4_target *t)
{
    if (t == NULL || t->service_id == NULL)
        return NB_E_INVAL;
    return add_route(r, sni, t->service_id, t);
}

int nb_router_set_fallback(struct nb_router *r, const struct nb_l4_target *t)
{
    struct l4t *x = l4t_new(r->tcpm, t);
    if (x == NULL)
        return NB_E_NOMEM;
    if (r->fallback) {
        cancel_conns(r, r->fallback->t.service_id);
        l4t_unref(r->fallback);
    }
    r->fallback = x;
    return NB_OK;
}

void nb_router_remove_service(struct nb_router *r, const char *service_id)
{
    cancel_conns(r, service_id);
    if (r->fallback && strcmp(r->fallback->t.service_id, service_id) == 0) {
        l4t_unref(r->fallback);
        r->fallback = NULL;
    }
    struct nb_strmap_iter it = {0};
    void *v;
    const char *key;
    while ((key = nb_strmap_next(&r->sni, &it, &v)) != NULL) {
        struct route *head = chain_remove(r, v, service_id);
        if (head == v)
            continue;
        if (head == NULL)
            nb_strmap_del(&r->sni, key);
        else
            map_replace(&r->sni, key, head);
    }
}

bool nb_router_empty(const struct nb_router *r)
{
    return r->n_sni_routes == 0 && r->fallback == NULL;
}

void nb_router_drain(struct nb_router *r)
{
    r->draining = true;
}

void nb_router_abort(struct nb_router *r)
{
    r->draining = true;
    cancel_conns(r, NULL);
}

void nb_router_stats(const struct nb_router *r, struct nb_router_stats *st)
{
    *st = r->st;
}

void nb_router_free(struct nb_router *r)
{
    if (r == NULL)
        return;
    cancel_conns(r, NULL);
    struct nb_strmap_iter it = {0};
    void *v;
    while (nb_strmap_next(&r->sni, &it, &v) != NULL) {
        struct route *rt = v;
        while (rt) {
            struct route *n = rt->next;
            route_free(rt);
            rt = n;
        }
    }
    nb_strmap_deinit(&r->sni);
    l4t_unref(r->fallback);
    tls_ctx_unref(r->tls);
    nb_tcp_metrics_unref(r->tcpm);
    free(r->trusted);
    free(r->name);
    free(r->scope);
    free(r);
}
