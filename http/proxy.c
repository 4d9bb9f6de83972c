/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The reverse proxy handler (proxy.h). Place in the pipeline: http_server hands a parsed
 * request here; route.c finds the service and path, rewrite.c builds the upstream request,
 * client.c carries it over the account's tunnel (or the host), and the response streams back
 * through http_resp_*.
 *
 * Per request one `struct pxreq` lives in the request's arena. It owns at most one outstanding
 * asynchronous operation at a time (a DNS query, then an exchange), and every way out (end,
 * abort, the client going away) cancels that operation before the request is let go, so no
 * callback can reach freed arena memory. The pxreq holds a service reference for as long as it
 * uses the service's paths and targets: a management update may replace the route meanwhile.
 *
 * Upgraded connections (WebSocket) leave the request: both streams go to a platform/relay and
 * an `upgrade` record (heap) keeps what its access-log entry needs; it is listed per proxy so a
 * removed service or a shutdown can close them.
 */
#include "http/proxy.h"
#include "auth/restrict.h"
#include "http/accesslog.h"
#include "http/client.h"
#include "http/errpage.h"
#include "http/rewrite.h"
#include "platform/addr.h"
#include "platform/dns.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"
#include "platform/relay.h"
#include "platform/xid.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DIAL_MS         30000u
#define DEFAULT_UPGRADE_IDLE_MS 3600000u
#define NET_BUCKETS             256u
#define NETBIRD_PREFIX          "/__netbird__/"

struct net {
    struct net *next;
    char *account_id;
    const struct nb_dialer *dialer;
};

struct upgrade {
    struct upgrade *next;
    struct upgrade *prev;
    struct http_proxy *p;
    struct nb_relay *relay;
    char *service_id;
    /* access-log fields, copied out of the request */
    char *account_id;
    char *host;
    char *path;
    char *method;
    char source_ip[NB_ADDRSTRLEN];
    char log_id[NB_XID_STR_LEN + 1];
    uint64_t start_ms;
    bool agent_network;
    bool disable_access_log;
};

struct http_proxy {
    struct nb_loop *loop;
    struct http_proxy_opts opts;
    struct http_routes routes;
    struct net *nets[NET_BUCKETS];
    struct upgrade *upgrades;
    struct http_proxy_stats st;
};

struct pxreq {
    struct http_proxy *p;
    struct http_req *req;
    struct http_service *svc; /* referenced while the request runs */
    const struct http_route_path *match;
    struct http_exchange *x;
    struct nb_dns_query *q;
    struct http_outreq out;
    struct http_upstream up;
    char *host; /* Host without port, NUL-terminated */
    const char *dpath;
    size_t dpath_len;
    char source_ip[NB_ADDRSTRLEN];
    char log_id[NB_XID_STR_LEN + 1];
    const char *auth_mechanism; /* static string: a restriction verdict, or NULL */
    bool done;
    bool resp_started;
    bool response_seen;
    uint64_t x_start_ms; /* when the exchange started (backend duration) */
};

/* ---- small helpers ---- */

static uint32_t str_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static struct net *net_find(struct http_proxy *p, const char *account_id)
{
    for (struct net *n = p->nets[str_hash(account_id) % NET_BUCKETS]; n; n = n->next)
        if (strcmp(n->account_id, account_id) == 0)
            return n;
    return NULL;
}

static uint64_t clamp_ms(uint64_t v, uint64_t cap, uint64_t dflt)
{
    if (v == 0)
        v = cap ? cap : dflt;
    if (cap && v > cap)
        v = cap;
    return v;
}

/* Parses an IP literal (v4 or v6, no brackets) into 16 bytes (v4 mapped); false if not one. */
static bool ip_bytes(const char *s, uint8_t out[16])
{
    struct in_addr a4;
    if (inet_pton(AF_INET, s, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        return true;
    }
    return inet_pton(AF_INET6, s, out) == 1;
}

/* ---- ending a request ---- */

/* One access-log record and the request-duration sample. bytes_down < 0: the body bytes the
 * server wrote. */
static void write_log(struct pxreq *px, int status, int64_t bytes_down)
{
    struct http_proxy *p = px->p;
    struct http_req *r = px->req;
    nb_hist_observe(&p->st.request_ms, (double)(nb_loop_now_ms(p->loop) - r->start_ms));
    if (p->opts.access_log == NULL)
        return;
    const struct http_target *t = px->match ? &px->match->target : NULL;
    char *method = nb_arena_strndup(&r->arena, r->method, r->method_len);
    char *path = px->dpath ? nb_arena_strndup(&r->arena, px->dpath, px->dpath_len) : NULL;
    struct nb_access_log_entry e = {
        .log_id = px->log_id,
        .account_id = px->svc ? px->svc->account_id : "",
        .service_id = px->svc ? px->svc->id : "",
        .host = px->host,
        .path = path,
        .duration_ms = (int64_t)(nb_loop_now_ms(p->loop) - r->start_ms),
        .method = method,
        .response_code = status,
        .source_ip = px->source_ip,
        .auth_mechanism = px->auth_mechanism ? px->auth_mechanism : "",
        .bytes_upload = (int64_t)r->bytes_in,
        .bytes_download = bytes_down < 0 ? (int64_t)r->bytes_out : bytes_down,
        .protocol = "http",
        .disable_access_log = t && t->opts.disable_access_log,
    };
    nb_access_log_write(p->opts.access_log, &e);
}

/* Drops the pending operation and the service reference; the request itself is not touched. */
static void px_release(struct pxreq *px)
{
    if (px->done)
        return;
    px->done = true;
    if (px->q) {
        nb_dns_cancel(px->q);
        px->q = NULL;
    }
    if (px->x) {
        http_exchange_cancel(px->x);
        px->x = NULL;
    }
    http_service_unref(px->svc);
    px->svc = NULL;
    px->match = NULL;
    px->p->st.active--;
}

static void px_finish(struct pxreq *px, const struct http_hdrs *trailers)
{
    struct http_req *r = px->req;
    write_log(px, r->status ? r->status : 200, -1);
    px_release(px);
    http_resp_end_trailers(r, trailers);
}

static void px_abort(struct pxreq *px)
{
    struct http_req *r = px->req;
    px->p->st.aborted++;
    write_log(px, r->status ? r->status : 502, -1);
    px_release(px);
    http_resp_abort(r);
}

/* A complete response of our own (error pages, plain errors), then the end of the request. */
static void px_reply(struct pxreq *px, int status, const char *ctype, bool nosniff,
                     const char *body, size_t len)
{
    struct http_req *r = px->req;
    struct http_hdrs h;
    http_hdrs_init(&h, &r->arena);
    if (nosniff && http_hdrs_add(&h, "X-Content-Type-Options", 22, "nosniff", 7) != NB_OK) {
        px_abort(px);
        return;
    }
    px->resp_started = true;
    write_log(px, status, r->is_head ? 0 : (int64_t)len);
    px_release(px);
    (void)http_resp_simple(r, status, ctype, &h, body, len);
}

static void px_plain(struct pxreq *px, int status, const char *msg)
{
    const char *body;
    size_t len;
    if (http_plain_error(&px->req->arena, msg, &body, &len) != NB_OK) {
        px_abort(px);
        return;
    }
    px_reply(px, status, HTTP_PLAIN_CONTENT_TYPE, true, body, len);
}

static void px_page(struct pxreq *px, const struct http_error *e)
{
    const char *body;
    size_t len;
    if (px->dpath && http_page_robots(px->dpath, px->dpath_len, &body, &len)) {
        px_reply(px, 200, HTTP_ROBOTS_CONTENT_TYPE, false, body, len);
        return;
    }
    if (http_errpage_render(&px->req->arena, e, px->log_id, &body, &len) != NB_OK) {
        px_abort(px);
        return;
    }
    px_reply(px, e->status, HTTP_PAGE_CONTENT_TYPE, false, body, len);
}

static void px_upstream_failed(struct pxreq *px, enum http_upstream_err kind, const char *reason)
{
    struct http_proxy *p = px->p;
    p->st.upstream_errors++;
    nb_info("http", "%s %s%.*s: upstream %s failed: %s", px->log_id, px->host, (int)px->dpath_len,
            px->dpath ? px->dpath : "", px->match ? px->match->target.host : "?",
            reason ? reason : "error");
    px_page(px, http_upstream_error(kind, reason));
}

/* ---- request body: client -> upstream ---- */

static void rq_body(void *arg, struct http_req *r, const uint8_t *d, size_t n)
{
    struct pxreq *px = arg;
    if (px->done || px->x == NULL)
        return;
    if (http_exchange_write(px->x, d, n) != NB_OK)
        return; /* the exchange reports the broken connection */
    if (http_exchange_write_full(px->x))
        http_req_pause_body(r, true);
}

static void rq_body_end(void *arg, struct http_req *r)
{
    struct pxreq *px = arg;
    if (!px->done && px->x)
        (void)http_exchange_write_end(px->x, r->trailers.n ? &r->trailers : NULL);
}

static void rq_drain(void *arg, struct http_req *r)
{
    struct pxreq *px = arg;
    if (!px->done && px->x)
        http_exchange_pause(px->x, false);
}

static void rq_abort(void *arg, struct http_req *r, const char *why)
{
    struct pxreq *px = arg;
    if (px->done)
        return;
    /* The client went away: Go's proxy sees "context canceled" (502 when nothing was sent). */
    px->p->st.aborted++;
    write_log(px, r->status ? r->status : 502, -1);
    px_release(px);
}

static const struct http_req_cbs rq_cbs = {
    .on_body = rq_body,
    .on_body_end = rq_body_end,
    .on_drain = rq_drain,
    .on_abort = rq_abort,
};

/* ---- upgraded connections ---- */

static void upgrade_free(struct upgrade *u)
{
    if (u == NULL)
        return;
    free(u->service_id);
    free(u->account_id);
    free(u->host);
    free(u->path);
    free(u->method);
    free(u);
}

static void upgrade_done(void *arg, struct nb_relay *relay, const struct nb_relay_result *res)
{
    struct upgrade *u = arg;
    struct http_proxy *p = u->p;
    if (p->opts.access_log) {
        /* Logged with the real status and bytes (netbird-proxy logs 200 and no bytes). */
        struct nb_access_log_entry e = {
            .log_id = u->log_id,
            .account_id = u->account_id,
            .service_id = u->service_id,
            .host = u->host,
            .path = u->path,
            .duration_ms = (int64_t)(res->ended_ms - u->start_ms),
            .method = u->method,
            .response_code = 101,
            .source_ip = u->source_ip,
            .auth_mechanism = "",
            .bytes_upload = (int64_t)res->bytes_up,
            .bytes_download = (int64_t)res->bytes_down,
            .protocol = "http",
            .agent_network = u->agent_network,
            .disable_access_log = u->disable_access_log,
        };
        nb_access_log_write(p->opts.access_log, &e);
    }
    if (u->prev)
        u->prev->next = u->next;
    else
        p->upgrades = u->next;
    if (u->next)
        u->next->prev = u->prev;
    p->st.upgrades_active--;
    upgrade_free(u);
}

static struct upgrade *upgrade_new(struct pxreq *px)
{
    struct http_req *r = px->req;
    struct upgrade *u = calloc(1, sizeof *u);
    if (u == NULL)
        return NULL;
    u->p = px->p;
    u->service_id = strdup(px->svc->id);
    u->account_id = strdup(px->svc->account_id);
    u->host = strdup(px->host);
    u->path = strndup(px->dpath, px->dpath_len);
    u->method = strndup(r->method, r->method_len);
    memcpy(u->source_ip, px->source_ip, sizeof u->source_ip);
    memcpy(u->log_id, px->log_id, sizeof u->log_id);
    u->start_ms = r->start_ms;
    u->disable_access_log = px->match->target.opts.disable_access_log;
    if (!u->service_id || !u->account_id || !u->host || !u->path || !u->method) {
        upgrade_free(u);
        return NULL;
    }
    return u;
}

/* 101 from the backend: both streams leave HTTP and are relayed as bytes. */
static void px_upgrade(struct pxreq *px, struct http_exchange *x, const struct http_resp_info *ri)
{
    struct http_proxy *p = px->p;
    struct http_req *r = px->req;
    struct upgrade *u = upgrade_new(px);
    const uint8_t *bl, *cl;
    size_t bll, cll;
    struct nb_stream *backend = u ? http_exchange_hijack(x, &bl, &bll) : NULL;
    px->x = NULL; /* the exchange is gone either way: hijacked or failed by client.c */
    if (backend == NULL) {
        upgrade_free(u);
        px_upstream_failed(px, HTTP_UPSTREAM_DIAL, "upgrade failed");
        return;
    }
    /* The 101 goes to the client with the backend's fields as they are (Go copies them). */
    if (http_resp_head(r, 101, ri->hdrs, -1) != NB_OK) {
        nb_stream_close(backend, true);
        upgrade_free(u);
        px_abort(px);
        return;
    }
    struct nb_stream *client = http_req_hijack(r, &cl, &cll);
    if (client == NULL) {
        nb_stream_close(backend, true);
        upgrade_free(u);
        px_abort(px);
        return;
    }
    /* Bytes that already came after the heads belong to the new protocol: pass them on. */
    if (bll)
        (void)nb_stream_write(client, bl, bll);
    if (cll)
        (void)nb_stream_write(backend, cl, cll);
    px_release(px); /* the request is over for HTTP; r is the server's to free */
    struct nb_relay_opts ro = {.idle_timeout_ms = p->opts.upgrade_idle_timeout_ms};
    if (nb_relay_start(p->loop, client, backend, &ro, upgrade_done, u, &u->relay) != NB_OK) {
        upgrade_free(u); /* the relay closed both streams */
        return;
    }
    u->next = p->upgrades;
    if (p->upgrades)
        p->upgrades->prev = u;
    p->upgrades = u;
    p->st.upgrades++;
    p->st.upgrades_active++;
}

/* ---- upstream exchange callbacks ---- */

static void ux_ready(void *arg, struct http_exchange *x)
{
    struct pxreq *px = arg;
    if (px->req->has_body)
        http_req_read_body(px->req); /* sends "100 Continue" when the client waits for it */
}

/*
 * The backend's fields, minus hop-by-hop and framing (the server writes its own). Trailer is
 * hop-by-hop, but the trailers themselves are relayed, so the announcement is made again (as
 * Go's proxy does).
 */
static int copy_resp_hdrs(struct pxreq *px, const struct http_hdrs *in, struct http_hdrs *out)
{
    http_hdrs_init(out, &px->req->arena);
    for (uint32_t i = 0; i < in->n; i++)
        if (http_hdrs_add(out, in->v[i].name, in->v[i].name_len, in->v[i].value,
                          in->v[i].value_len) != NB_OK)
            return NB_E_NOMEM;
    size_t tl;
    const char *announced = http_hdrs_join(in, "trailer", &tl);
    http_strip_hop_by_hop(out);
    http_hdrs_del(out, "content-length");
    if (announced && tl && http_hdrs_add(out, "Trailer", 7, announced, tl) != NB_OK)
        return NB_E_NOMEM;
    return NB_OK;
}

static void ux_interim(void *arg, struct http_exchange *x, int status, const struct http_hdrs *h)
{
    struct pxreq *px = arg;
    struct http_hdrs out;
    if (copy_resp_hdrs(px, h, &out) == NB_OK)
        (void)http_resp_head(px->req, status, &out, -1);
}

static void ux_response(void *arg, struct http_exchange *x, const struct http_resp_info *ri)
{
    struct pxreq *px = arg;
    struct http_req *r = px->req;
    px->response_seen = true;
    if (ri->status == 101) {
        if (!r->upgrade) {
            px_upstream_failed(px, HTTP_UPSTREAM_DIAL, "unsolicited 101 from the backend");
            return;
        }
        px_upgrade(px, x, ri);
        return;
    }
    struct http_hdrs out;
    if (copy_resp_hdrs(px, ri->hdrs, &out) != NB_OK) {
        px_upstream_failed(px, HTTP_UPSTREAM_DIAL, "out of memory");
        return;
    }
    if (px->svc->rewrite_redirects) {
        const struct http_field *loc = http_hdrs_get(&out, "location");
        if (loc) {
            const char *nl;
            size_t nll;
            bool https = http_fwd_https(px->p->opts.fwd, r->info.tls);
            int rc = http_rewrite_location(&r->arena, loc->value, loc->value_len, px->match,
                                           r->host, r->host_len, https, &nl, &nll);
            if (rc != NB_OK) {
                /* Go's proxy fails the request when Location does not parse. */
                px_upstream_failed(px, HTTP_UPSTREAM_DIAL, "unparsable Location from backend");
                return;
            }
            if (http_hdrs_set(&out, "Location", nl, nll) != NB_OK) {
                px_upstream_failed(px, HTTP_UPSTREAM_DIAL, "out of memory");
                return;
            }
        }
    }
    int64_t len = ri->content_length;
    if (!ri->body && !r->is_head)
        len = 0;
    px->resp_started = true;
    if (http_resp_head(r, ri->status, &out, len) != NB_OK) {
        px_abort(px);
        return;
    }
}

static void ux_body(void *arg, struct http_exchange *x, const uint8_t *d, size_t n)
{
    struct pxreq *px = arg;
    if (px->done)
        return;
    if (http_resp_body(px->req, d, n) != NB_OK) {
        px_abort(px);
        return;
    }
    if (http_resp_write_full(px->req))
        http_exchange_pause(x, true);
}

static void backend_done(struct pxreq *px)
{
    nb_hist_observe(&px->p->st.backend_ms, (double)(nb_loop_now_ms(px->p->loop) - px->x_start_ms));
}

static void ux_end(void *arg, struct http_exchange *x, const struct http_hdrs *trailers)
{
    struct pxreq *px = arg;
    px->x = NULL;
    backend_done(px);
    if (!px->done)
        px_finish(px, trailers);
}

static void ux_error(void *arg, struct http_exchange *x, enum http_xerr kind, const char *reason,
                     bool got_response)
{
    struct pxreq *px = arg;
    px->x = NULL;
    backend_done(px);
    if (px->done)
        return;
    if (px->resp_started) {
        /* Mid-body: the client must see a truncated response, not a complete one. */
        nb_info("http", "%s: upstream failed mid-response: %s", px->log_id,
                reason ? reason : "error");
        px_abort(px);
        return;
    }
    switch (kind) {
    case HTTP_XERR_TIMEOUT:
        px_upstream_failed(px, HTTP_UPSTREAM_TIMEOUT, reason);
        return;
    case HTTP_XERR_OVERLOADED:
        px_upstream_failed(px, HTTP_UPSTREAM_OVERLOADED, reason);
        return;
    default:
        px_upstream_failed(px, HTTP_UPSTREAM_DIAL, reason);
        return;
    }
}

static void ux_drain(void *arg, struct http_exchange *x)
{
    struct pxreq *px = arg;
    if (!px->done)
        http_req_pause_body(px->req, false);
}

static const struct http_exchange_cbs ux_cbs = {
    .on_ready = ux_ready,
    .on_interim = ux_interim,
    .on_response = ux_response,
    .on_body = ux_body,
    .on_end = ux_end,
    .on_error = ux_error,
    .on_drain = ux_drain,
};

/* ---- dispatch ---- */

static void px_send(struct pxreq *px)
{
    struct http_req *r = px->req;
    struct http_hdrs h;
    http_hdrs_init(&h, &r->arena);
    /* Host first, then the rewritten fields. */
    if (http_hdrs_add(&h, "Host", 4, px->out.host, px->out.host_len) != NB_OK) {
        px_upstream_failed(px, HTTP_UPSTREAM_DIAL, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < px->out.hdrs.n; i++)
        if (http_hdrs_add(&h, px->out.hdrs.v[i].name, px->out.hdrs.v[i].name_len,
                          px->out.hdrs.v[i].value, px->out.hdrs.v[i].value_len) != NB_OK) {
            px_upstream_failed(px, HTTP_UPSTREAM_DIAL, "out of memory");
            return;
        }
    /* A chunked request may announce trailers; they are relayed, so announce them again. */
    size_t tl;
    const char *announced = r->body_chunked ? http_hdrs_join(&r->hdrs, "trailer", &tl) : NULL;
    if (announced && tl && http_hdrs_add(&h, "Trailer", 7, announced, tl) != NB_OK) {
        px_upstream_failed(px, HTTP_UPSTREAM_DIAL, "out of memory");
        return;
    }
    struct http_out_req rq = {
        .method = r->method,
        .method_len = r->method_len,
        .target = px->out.target,
        .target_len = px->out.target_len,
        .hdrs = &h,
        .body_len = !r->has_body      ? 0
                    : r->body_chunked ? -1
                                      : (int64_t)r->content_length,
    };
    http_req_set_cbs(r, &rq_cbs, px);
    px->x_start_ms = nb_loop_now_ms(px->p->loop);
    int rc = http_exchange_start(px->p->opts.client, &px->up, &rq, &ux_cbs, px, &px->x);
    if (rc != NB_OK) {
        px->x = NULL;
        px_upstream_failed(px, HTTP_UPSTREAM_DIAL, nb_strerror(rc));
    }
}

static void dns_done(void *arg, int err, const char *reason, const struct sockaddr_storage *addrs,
                     size_t n)
{
    struct pxreq *px = arg;
    px->q = NULL;
    if (px->done)
        return;
    if (err != NB_OK || n == 0) {
        /* Go: "dial tcp: lookup <host>: no such host" -> 502 Connection Error. */
        px_upstream_failed(px, err == NB_E_TIMEOUT ? HTTP_UPSTREAM_TIMEOUT : HTTP_UPSTREAM_DIAL,
                           reason ? reason : "lookup failed");
        return;
    }
    px->up.addr = addrs[0];
    px_send(px);
}

static bool is_netbird_asset(const char *path, size_t len)
{
    size_t pl = sizeof NETBIRD_PREFIX - 1;
    return len >= pl && memcmp(path, NETBIRD_PREFIX, pl) == 0;
}

/*
 * Access restrictions of a registered host (spec §4.6): the §4.5 client IP against the service's
 * filter, CIDR rules only on the tunnel listeners. false: the request was answered (403).
 */
static bool restrictions_pass(struct pxreq *px)
{
    struct http_req *r = px->req;
    struct auth_ip ip;
    if (!auth_ip_parse(px->source_ip, &ip)) {
        nb_debug("http", "%s %s: restricted service, client address unresolved: denied", px->log_id,
                 px->host);
        auth_restrict_count_deny(AUTH_DENY_IP, AUTH_PROTO_HTTP);
        px_plain(px, 403, "Forbidden");
        return false;
    }
    enum auth_verdict v =
        auth_restrict_check(px->svc->restrictions, &ip, r->info.overlay, px->p->opts.geo);
    if (v == AUTH_ALLOW)
        return true;
    auth_restrict_count_deny(v, AUTH_PROTO_HTTP);
    nb_debug("http", "%s %s: %s denied: %s", px->log_id, px->host, px->source_ip,
             auth_verdict_name(v));
    px->auth_mechanism = auth_verdict_name(v);
    px_plain(px, 403, "Forbidden");
    return false;
}

static void on_request(void *arg, struct http_req *r)
{
    struct http_proxy *p = arg;
    struct pxreq *px = nb_arena_calloc(&r->arena, sizeof *px);
    if (px == NULL) {
        http_resp_abort(r);
        return;
    }
    px->p = p;
    px->req = r;
    p->st.requests++;
    p->st.active++;
    nb_xid_new(px->log_id);
    http_req_set_cbs(r, &rq_cbs, px);
    if (http_client_ip((const struct sockaddr *)&r->peer, &r->hdrs, p->opts.fwd, px->source_ip) !=
        NB_OK)
        px->source_ip[0] = '\0';
    size_t hl;
    const char *h = http_host_strip_port(r->host ? r->host : "", r->host ? r->host_len : 0, &hl);
    px->host = nb_arena_strndup(&r->arena, h, hl);
    if (px->host == NULL) {
        px_abort(px);
        return;
    }
    if (http_path_decode(&r->arena, r->path, r->path_len, &px->dpath, &px->dpath_len) != NB_OK) {
        px->dpath = NULL;
        px_plain(px, 400, "Bad Request");
        return;
    }
    if (is_netbird_asset(px->dpath, px->dpath_len)) {
        /* The proxy's own assets (the full login UI comes with the auth work). Never logged. */
        const char *body;
        size_t len;
        px->p->st.active--;
        px->done = true;
        if (http_plain_error(&r->arena, "not found", &body, &len) == NB_OK)
            (void)http_resp_simple(r, 404, HTTP_PLAIN_CONTENT_TYPE, NULL, body, len);
        else
            http_resp_abort(r);
        return;
    }
    struct http_service *svc =
        r->info.overlay
            ? http_routes_find_scoped(&p->routes, r->host ? r->host : "", r->host ? r->host_len : 0,
                                      r->info.scope ? r->info.scope : "")
            : http_routes_find(&p->routes, r->host ? r->host : "", r->host ? r->host_len : 0);
    if (svc == NULL) {
        p->st.not_found++;
        px_page(px, &http_error_not_found);
        return;
    }
    px->svc = http_service_ref(svc);
    if (svc->restrictions && !restrictions_pass(px))
        return;
    px->match = http_service_match(svc, px->dpath, px->dpath_len);
    if (px->match == NULL) {
        p->st.not_found++;
        px_page(px, &http_error_not_found);
        return;
    }
    if (r->method_len == 7 && memcmp(r->method, "CONNECT", 7) == 0) {
        px_plain(px, 405, "Method Not Allowed");
        return;
    }
    struct http_inreq in = {
        .path = r->path,
        .path_len = r->path_len,
        .query = r->query,
        .query_len = r->query_len,
        .hdrs = &r->hdrs,
        .host = r->host ? r->host : "",
        .host_len = r->host ? r->host_len : 0,
        .peer = (const struct sockaddr *)&r->peer,
        .tls = r->info.tls,
    };
    int rc = http_rewrite_request(&r->arena, &in, svc, px->match, NULL, p->opts.fwd, &px->out);
    if (rc == NB_E_PARSE) {
        px_plain(px, 400, "Bad Request");
        return;
    }
    if (rc != NB_OK) {
        px_upstream_failed(px, HTTP_UPSTREAM_DIAL,
                           rc == NB_E_UNSUPPORTED ? "invalid Upgrade value" : nb_strerror(rc));
        return;
    }
    const struct http_target *t = &px->match->target;
    /* Loop guard (overlay only): a target that is the requesting peer itself. */
    uint8_t tip[16], cip[16];
    if (r->info.overlay && ip_bytes(t->host, tip) && ip_bytes(px->source_ip, cip) &&
        memcmp(tip, cip, 16) == 0) {
        px_page(px, &http_error_loop);
        return;
    }
    if (t->tls) {
        px_upstream_failed(px, HTTP_UPSTREAM_DIAL, "https targets need the TLS client (not built)");
        return;
    }
    if (t->opts.direct_upstream) {
        px->up.dialer = p->opts.host;
        px->up.net = p->opts.host;
    } else {
        struct net *n = svc->account_id[0] ? net_find(p, svc->account_id) : NULL;
        if (svc->account_id[0] == '\0') {
            px_upstream_failed(px, HTTP_UPSTREAM_NO_ACCOUNT, "no account id");
            return;
        }
        if (n == NULL) {
            px_upstream_failed(px, HTTP_UPSTREAM_NOT_CONNECTED, "no peer connection");
            return;
        }
        px->up.dialer = n->dialer;
        px->up.net = n->dialer;
    }
    if (px->up.dialer == NULL) {
        px_upstream_failed(px, HTTP_UPSTREAM_NOT_CONNECTED, "no host network");
        return;
    }
    px->up.dial_timeout_ms = (uint32_t)clamp_ms(t->opts.request_timeout_ms,
                                                p->opts.max_dial_timeout_ms, DEFAULT_DIAL_MS);
    if (nb_addr_from_ip(t->host, t->port, &px->up.addr, NULL) == NB_OK) {
        px_send(px);
        return;
    }
    if (p->opts.dns == NULL) {
        px_upstream_failed(px, HTTP_UPSTREAM_DIAL, "no resolver for host names");
        return;
    }
    rc = nb_dns_resolve(p->opts.dns, t->host, t->port, AF_UNSPEC, dns_done, px, &px->q);
    if (rc != NB_OK) {
        px->q = NULL;
        px_upstream_failed(px, HTTP_UPSTREAM_DIAL, nb_strerror(rc));
    }
}

/* ---- API ---- */

struct http_proxy *http_proxy_new(struct nb_loop *loop, const struct http_proxy_opts *opts)
{
    struct http_proxy *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->loop = loop;
    p->opts = *opts;
    if (p->opts.upgrade_idle_timeout_ms == 0)
        p->opts.upgrade_idle_timeout_ms = DEFAULT_UPGRADE_IDLE_MS;
    nb_hist_init(&p->st.request_ms, nb_hist_bounds_http_ms, 14);
    nb_hist_init(&p->st.backend_ms, nb_hist_bounds_http_ms, 14);
    http_routes_init(&p->routes);
    return p;
}

void http_proxy_close_upgrades(struct http_proxy *p)
{
    for (struct upgrade *u = p->upgrades; u; u = u->next)
        nb_relay_cancel(u->relay);
}

void http_proxy_free(struct http_proxy *p)
{
    if (p == NULL)
        return;
    http_proxy_close_upgrades(p);
    /* Cancelled relays report from deferred calls that still read p: run them now. */
    for (int i = 0; i < 4 && p->upgrades; i++)
        nb_loop_run_once(p->loop, 0);
    http_routes_deinit(&p->routes);
    for (uint32_t b = 0; b < NET_BUCKETS; b++)
        while (p->nets[b]) {
            struct net *n = p->nets[b];
            p->nets[b] = n->next;
            free(n->account_id);
            free(n);
        }
    free(p);
}

struct http_handler http_proxy_handler(struct http_proxy *p)
{
    return (struct http_handler){.on_request = on_request, .arg = p};
}

int http_proxy_set_network(struct http_proxy *p, const char *account_id,
                           const struct nb_dialer *dialer)
{
    struct net **it = &p->nets[str_hash(account_id) % NET_BUCKETS];
    for (; *it; it = &(*it)->next)
        if (strcmp((*it)->account_id, account_id) == 0)
            break;
    if (dialer == NULL) {
        if (*it) {
            struct net *n = *it;
            *it = n->next;
            http_client_close_idle(p->opts.client, n->dialer);
            free(n->account_id);
            free(n);
        }
        return NB_OK;
    }
    if (*it) {
        (*it)->dialer = dialer;
        return NB_OK;
    }
    struct net *n = calloc(1, sizeof *n);
    if (n == NULL || (n->account_id = strdup(account_id)) == NULL) {
        free(n);
        return NB_E_NOMEM;
    }
    n->dialer = dialer;
    n->next = p->nets[str_hash(account_id) % NET_BUCKETS];
    p->nets[str_hash(account_id) % NET_BUCKETS] = n;
    return NB_OK;
}

int http_proxy_add(struct http_proxy *p, struct http_service *svc, char *err, size_t errlen)
{
    if (svc->private_service) {
        snprintf(err, errlen,
                 "private services need tunnel-peer validation by management "
                 "(not supported yet)");
        return NB_E_UNSUPPORTED;
    }
    int rc = http_routes_put(&p->routes, svc);
    if (rc != NB_OK)
        snprintf(err, errlen, "cannot route %s: %s", svc->domain, nb_strerror(rc));
    return rc;
}

void http_proxy_remove(struct http_proxy *p, const char *service_id)
{
    http_routes_remove(&p->routes, service_id);
    for (struct upgrade *u = p->upgrades; u; u = u->next)
        if (strcmp(u->service_id, service_id) == 0)
            nb_relay_cancel(u->relay);
}

const struct http_routes *http_proxy_routes(const struct http_proxy *p)
{
    return &p->routes;
}

void http_proxy_stats(const struct http_proxy *p, struct http_proxy_stats *st)
{
    *st = p->st;
}
