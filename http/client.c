/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Upstream HTTP/1.1 client and connection pool (client.h). Place in the pipeline: the reverse
 * proxy (http/proxy.c) turns a client request into an http_out_req and an http_upstream (which
 * network, which address) and streams bodies both ways through an exchange; this file owns the
 * backend connections.
 *
 * Objects:
 *   hpool     one per (network, address): idle connections, open-connection count, in-flight
 *             exchanges, exchanges waiting for a connection slot. Freed when all are zero.
 *   up_conn   one backend stream: busy with one exchange, or idle in its hpool (and in the
 *             client-wide idle LRU that enforces max_idle_conns).
 *   exchange  one request/response.
 * Exchanges and connections are freed only from deferred calls; every callback site re-checks
 * `dead` after calling out, because the callee may cancel.
 */
#include "http/client.h"
#include "http/h1_parse.h"
#include "platform/addr.h"
#include "platform/arena.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_IDLE     100u
#define DEFAULT_IDLE_TIMEOUT 90000u
#define DEFAULT_DIAL_TIMEOUT 30000u
#define DEFAULT_MAX_HEAD     (64u * 1024u)
#define MAX_RESP_HEADERS     128u
#define HASH_BUCKETS         1024u
#define SCRATCH              65536u

struct hpool;
struct up_conn;

struct http_client {
    struct nb_loop *loop;
    struct http_client_opts opts;
    struct hpool *buckets[HASH_BUCKETS];
    struct up_conn *lru_head; /* idle connections, oldest first */
    struct up_conn *lru_tail;
    struct http_exchange *live; /* every exchange not yet freed, for http_client_free */
    bool closing;               /* http_client_free is running: wake no waiter */
    struct http_client_stats st;
};

struct hpool {
    struct hpool *next;
    struct http_client *cl;
    const void *net;
    struct sockaddr_storage addr;
    struct up_conn *idle; /* most recently used first */
    uint32_t nidle;
    uint32_t nconns;
    uint32_t inflight;
    struct http_exchange *wait_head;
    struct http_exchange *wait_tail;
};

struct up_conn {
    struct http_client *cl;
    struct hpool *hp;
    struct nb_stream *stream;
    struct http_exchange *x;
    const struct nb_dialer *dialer;
    uint8_t *rbuf; /* response bytes not consumed yet */
    uint32_t rcap;
    uint32_t rlen;
    uint32_t roff;
    bool connected;
    bool reused; /* taken from the pool at least once (a stale keep-alive may fail) */
    bool dead;
    struct up_conn *inext; /* hpool idle list */
    struct up_conn *iprev;
    struct up_conn *lnext; /* client-wide LRU */
    struct up_conn *lprev;
    bool in_idle;
    struct nb_timer timer; /* idle timeout */
    struct nb_defer free_d;
};

enum xstate {
    XS_WAIT,       /* queued for a connection slot */
    XS_CONNECTING, /* dialling */
    XS_SENT,       /* head written, waiting for the response head */
    XS_BODY,       /* response body */
};

struct http_exchange {
    struct http_client *cl;
    struct hpool *hp;
    struct up_conn *conn;
    const struct http_exchange_cbs *cbs;
    void *arg;
    const struct nb_dialer *dialer;
    uint32_t dial_timeout_ms;
    char *head; /* serialised request head (kept for a retry) */
    size_t head_len;
    size_t method_len; /* the method is head[0, method_len) */
    int64_t body_len;
    uint64_t body_sent;
    bool body_ended;
    enum xstate state;
    bool ready_sent;
    bool got_response;
    bool retried;
    bool paused;
    bool dead;
    bool counted; /* holds an in-flight slot */
    bool resp_close;
    enum h1_body rframe;
    uint64_t rleft;
    struct h1_chunked chk;
    struct nb_arena arena; /* response header lists */
    char *trailers;        /* raw trailer field lines of a chunked response (heap) */
    size_t trailers_len;
    size_t trailers_cap;
    struct nb_timer timer; /* dial timeout, then response header timeout */
    struct nb_defer defer; /* runs x_deferred: a pending failure, on_ready, or resumed delivery */
    bool want_fail;
    bool want_ready;
    bool want_resume;
    enum http_xerr pend_kind;
    const char *pend_reason;
    struct http_exchange *wnext; /* hpool wait queue */
    struct http_exchange *lnext; /* client live list */
    struct http_exchange **lpprev;
    struct nb_defer free_d;
};

static uint8_t scratch[SCRATCH];
static bool scratch_busy;

static const struct nb_stream_cbs conn_cbs;
static void x_fail(struct http_exchange *x, enum http_xerr kind, const char *reason);
static void conn_release(struct up_conn *c, bool reusable);
static void x_acquire(struct http_exchange *x, bool fresh);
static void x_deliver_buffered(struct http_exchange *x);

/* ---- pools ---- */

static uint32_t addr_hash(const void *net, const struct sockaddr_storage *a)
{
    uint64_t h = 1469598103934665603ull;
    uintptr_t n = (uintptr_t)net;
    const uint8_t *p = (const uint8_t *)&n;
    for (size_t i = 0; i < sizeof n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    socklen_t len = nb_addr_len((const struct sockaddr *)a);
    p = (const uint8_t *)a;
    for (socklen_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return (uint32_t)(h % HASH_BUCKETS);
}

static struct hpool *hpool_get(struct http_client *cl, const void *net,
                               const struct sockaddr_storage *a, bool create)
{
    uint32_t b = addr_hash(net, a);
    for (struct hpool *hp = cl->buckets[b]; hp; hp = hp->next)
        if (hp->net == net &&
            nb_addr_equal((const struct sockaddr *)&hp->addr, (const struct sockaddr *)a))
            return hp;
    if (!create)
        return NULL;
    struct hpool *hp = calloc(1, sizeof *hp);
    if (hp == NULL)
        return NULL;
    hp->cl = cl;
    hp->net = net;
    hp->addr = *a;
    hp->next = cl->buckets[b];
    cl->buckets[b] = hp;
    return hp;
}

static void hpool_maybe_free(struct hpool *hp)
{
    if (hp->nconns || hp->inflight || hp->wait_head || hp->nidle)
        return;
    struct http_client *cl = hp->cl;
    for (struct hpool **it = &cl->buckets[addr_hash(hp->net, &hp->addr)]; *it; it = &(*it)->next)
        if (*it == hp) {
            *it = hp->next;
            free(hp);
            return;
        }
}

/* ---- connections ---- */

static void idle_unlink(struct up_conn *c)
{
    if (!c->in_idle)
        return;
    struct hpool *hp = c->hp;
    struct http_client *cl = c->cl;
    if (c->iprev)
        c->iprev->inext = c->inext;
    else
        hp->idle = c->inext;
    if (c->inext)
        c->inext->iprev = c->iprev;
    if (c->lprev)
        c->lprev->lnext = c->lnext;
    else
        cl->lru_head = c->lnext;
    if (c->lnext)
        c->lnext->lprev = c->lprev;
    else
        cl->lru_tail = c->lprev;
    c->inext = c->iprev = c->lnext = c->lprev = NULL;
    c->in_idle = false;
    hp->nidle--;
    cl->st.conns_idle--;
    nb_timer_cancel(&c->timer);
}

static void conn_free_deferred(struct nb_defer *d)
{
    struct up_conn *c = d->arg;
    free(c->rbuf);
    free(c);
}

/* Closes a connection for good (no exchange may still point at it). */
static void conn_close(struct up_conn *c, bool abort)
{
    if (c->dead)
        return;
    c->dead = true;
    idle_unlink(c);
    nb_timer_cancel(&c->timer);
    if (c->stream) {
        nb_stream_close(c->stream, abort);
        c->stream = NULL;
    }
    struct hpool *hp = c->hp;
    hp->nconns--;
    c->cl->st.conns_open--;
    nb_defer(c->cl->loop, &c->free_d, conn_free_deferred, c);
    /* A slot opened: a waiting exchange may dial now. */
    if (hp->wait_head && !c->cl->closing) {
        struct http_exchange *w = hp->wait_head;
        hp->wait_head = w->wnext;
        if (hp->wait_head == NULL)
            hp->wait_tail = NULL;
        w->wnext = NULL;
        x_acquire(w, true);
    }
    hpool_maybe_free(hp);
}

static void conn_idle_timeout(struct nb_timer *t)
{
    conn_close(t->arg, false);
}

static void x_send_head(struct http_exchange *x, struct up_conn *c);

/* An exchange finished with this connection. */
static void conn_release(struct up_conn *c, bool reusable)
{
    c->x = NULL;
    struct http_client *cl = c->cl;
    struct hpool *hp = c->hp;
    if (!reusable || c->dead || c->stream == NULL || c->rlen != c->roff) {
        conn_close(c, !reusable);
        return;
    }
    c->rlen = c->roff = 0;
    /* A waiting exchange takes it directly. */
    if (hp->wait_head) {
        struct http_exchange *w = hp->wait_head;
        hp->wait_head = w->wnext;
        if (hp->wait_head == NULL)
            hp->wait_tail = NULL;
        w->wnext = NULL;
        cl->st.conns_reused++;
        c->reused = true;
        x_send_head(w, c);
        return;
    }
    if (hp->nidle >= cl->opts.max_idle_per_host) {
        conn_close(c, false);
        return;
    }
    if (cl->st.conns_idle >= cl->opts.max_idle_conns && cl->lru_head)
        conn_close(cl->lru_head, false); /* evict the oldest idle connection */
    free(c->rbuf);
    c->rbuf = NULL;
    c->rcap = 0;
    c->inext = hp->idle;
    c->iprev = NULL;
    if (hp->idle)
        hp->idle->iprev = c;
    hp->idle = c;
    c->lprev = cl->lru_tail;
    c->lnext = NULL;
    if (cl->lru_tail)
        cl->lru_tail->lnext = c;
    else
        cl->lru_head = c;
    cl->lru_tail = c;
    c->in_idle = true;
    hp->nidle++;
    cl->st.conns_idle++;
    nb_stream_pause(c->stream, false); /* hear the backend closing it */
    nb_timer_arm(cl->loop, &c->timer, cl->opts.idle_conn_timeout_ms);
}

static bool rbuf_append(struct up_conn *c, const uint8_t *d, size_t n)
{
    if (c->roff == c->rlen)
        c->roff = c->rlen = 0;
    if (c->rlen + n > c->rcap) {
        if (c->roff) {
            memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
            c->rlen -= c->roff;
            c->roff = 0;
        }
        if (c->rlen + n > c->rcap) {
            size_t limit = (size_t)c->cl->opts.max_head + 2 * SCRATCH;
            if (c->rlen + n > limit)
                return false;
            size_t cap = c->rcap ? c->rcap : 4096u;
            while (cap < c->rlen + n)
                cap *= 2;
            uint8_t *nb = realloc(c->rbuf, cap);
            if (nb == NULL)
                return false;
            c->rbuf = nb;
            c->rcap = (uint32_t)cap;
        }
    }
    memcpy(c->rbuf + c->rlen, d, n);
    c->rlen += (uint32_t)n;
    return true;
}

/* ---- exchanges: lifetime ---- */

static void x_free_deferred(struct nb_defer *d)
{
    struct http_exchange *x = d->arg;
    nb_arena_deinit(&x->arena);
    free(x->trailers);
    free(x->head);
    free(x);
}

/* Detaches x from everything and frees it later. The connection (if any) is closed unless the
 * caller released it already. */
static void x_kill(struct http_exchange *x)
{
    if (x->dead)
        return;
    x->dead = true;
    struct http_client *cl = x->cl;
    nb_timer_cancel(&x->timer);
    nb_defer_cancel(cl->loop, &x->defer);
    if (x->conn) {
        /* Mid-exchange (or still dialling): the connection cannot be reused. */
        struct up_conn *c = x->conn;
        x->conn = NULL;
        conn_release(c, false);
    }
    struct hpool *hp = x->hp;
    if (x->state == XS_WAIT && hp) {
        for (struct http_exchange **it = &hp->wait_head; *it; it = &(*it)->wnext)
            if (*it == x) {
                *it = x->wnext;
                break;
            }
        hp->wait_tail = NULL;
        for (struct http_exchange *w = hp->wait_head; w; w = w->wnext)
            hp->wait_tail = w;
    }
    if (x->counted) {
        hp->inflight--;
        x->counted = false;
    }
    if (x->lpprev) {
        *x->lpprev = x->lnext;
        if (x->lnext)
            x->lnext->lpprev = x->lpprev;
        x->lpprev = NULL;
    }
    nb_defer(cl->loop, &x->free_d, x_free_deferred, x);
    if (hp)
        hpool_maybe_free(hp);
}

/* Reports a failure now (callers are stream or timer callbacks, never API calls). */
static void x_fail(struct http_exchange *x, enum http_xerr kind, const char *reason)
{
    if (x->dead)
        return;
    bool got = x->got_response;
    const struct http_exchange_cbs *cbs = x->cbs;
    void *arg = x->arg;
    x_kill(x);
    if (cbs->on_error)
        cbs->on_error(arg, x, kind, reason, got);
}

static void x_deferred(struct nb_defer *d);

static void x_poke(struct http_exchange *x)
{
    nb_defer(x->cl->loop, &x->defer, x_deferred, x);
}

/* Reports a failure from the loop (for failures found inside an API call). */
static void x_fail_later(struct http_exchange *x, enum http_xerr kind, const char *reason)
{
    if (x->want_fail)
        return;
    x->want_fail = true;
    x->pend_kind = kind;
    x->pend_reason = reason;
    x_poke(x);
}

/* Collects the response's trailer lines (h1_chunked on_trailer; bounded by H1_MAX_TRAILER). */
static void x_trailer(void *arg, const char *d, size_t n)
{
    struct http_exchange *x = arg;
    if (x->trailers_len + n > x->trailers_cap) {
        size_t cap = x->trailers_cap ? x->trailers_cap * 2 : 256;
        while (cap < x->trailers_len + n)
            cap *= 2;
        char *nb = realloc(x->trailers, cap);
        if (nb == NULL)
            return; /* trailers are lost, the body is not */
        x->trailers = nb;
        x->trailers_cap = cap;
    }
    memcpy(x->trailers + x->trailers_len, d, n);
    x->trailers_len += n;
}

static void x_complete(struct http_exchange *x)
{
    struct up_conn *c = x->conn;
    bool reusable =
        !x->resp_close && x->rframe != H1_BODY_CLOSE && (x->body_ended || x->body_len == 0);
    x->conn = NULL;
    if (c)
        conn_release(c, reusable);
    const struct http_exchange_cbs *cbs = x->cbs;
    void *arg = x->arg;
    struct http_hdrs tr;
    http_hdrs_init(&tr, &x->arena);
    bool have_tr =
        x->trailers_len && http_hdrs_parse_lines(&tr, x->trailers, x->trailers_len) == NB_OK;
    x_kill(x); /* x's memory stays until the deferred free: tr is valid during on_end */
    if (cbs->on_end)
        cbs->on_end(arg, x, have_tr && tr.n ? &tr : NULL);
}

/* ---- exchanges: sending ---- */

static void x_timeout(struct nb_timer *t)
{
    struct http_exchange *x = t->arg;
    if (x->state == XS_CONNECTING)
        x_fail(x, HTTP_XERR_TIMEOUT, "dial timeout");
    else
        x_fail(x, HTTP_XERR_TIMEOUT, "timeout awaiting response headers");
}

static void arm_header_timeout(struct http_exchange *x)
{
    if (x->cl->opts.response_header_timeout && x->state == XS_SENT)
        nb_timer_arm(x->cl->loop, &x->timer, x->cl->opts.response_header_timeout);
}

/* Binds x to a connected connection and writes the head. */
static void x_send_head(struct http_exchange *x, struct up_conn *c)
{
    x->conn = c;
    c->x = x;
    x->state = XS_SENT;
    nb_timer_cancel(&x->timer);
    nb_stream_pause(c->stream, false);
    if (nb_stream_write(c->stream, x->head, x->head_len) != NB_OK) {
        x_fail_later(x, HTTP_XERR_RESET, "connection lost");
        return;
    }
    if (x->body_len == 0)
        arm_header_timeout(x);
    if (!x->ready_sent) {
        x->want_ready = true;
        x_poke(x);
    }
}

/* Finds a connection for x: an idle one, a new one, or a place in the wait queue. */
static void x_acquire(struct http_exchange *x, bool fresh)
{
    struct http_client *cl = x->cl;
    struct hpool *hp = x->hp;
    if (!fresh) {
        while (hp->idle) {
            struct up_conn *c = hp->idle;
            idle_unlink(c);
            if (c->stream == NULL || c->dead) {
                conn_close(c, true);
                continue;
            }
            cl->st.conns_reused++;
            c->reused = true;
            x_send_head(x, c);
            return;
        }
    }
    if (cl->opts.max_conns_per_host && hp->nconns >= cl->opts.max_conns_per_host) {
        x->state = XS_WAIT;
        x->wnext = NULL;
        if (hp->wait_tail)
            hp->wait_tail->wnext = x;
        else
            hp->wait_head = x;
        hp->wait_tail = x;
        return;
    }
    struct up_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        x_fail_later(x, HTTP_XERR_NOMEM, "out of memory");
        return;
    }
    c->cl = cl;
    c->hp = hp;
    c->dialer = x->dialer;
    nb_timer_init(&c->timer, conn_idle_timeout, c);
    hp->nconns++;
    cl->st.conns_open++;
    cl->st.conns_opened++;
    x->state = XS_CONNECTING;
    x->conn = c;
    c->x = x;
    int rc = x->dialer->dial(x->dialer->ctx, (const struct sockaddr *)&hp->addr, &conn_cbs, c,
                             &c->stream);
    if (rc != NB_OK) {
        c->stream = NULL;
        x->conn = NULL;
        c->x = NULL;
        conn_close(c, true);
        x_fail_later(x, HTTP_XERR_DIAL, nb_strerror(rc));
        return;
    }
    nb_timer_arm(cl->loop, &x->timer, x->dial_timeout_ms);
}

/* ---- responses ---- */

static int64_t content_length_field(const struct http_hdrs *h)
{
    const struct http_field *f = http_hdrs_get(h, "content-length");
    if (f == NULL || f->value_len == 0 || f->value_len > 18)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < f->value_len; i++) {
        if (f->value[i] < '0' || f->value[i] > '9')
            return -1;
        v = v * 10 + (f->value[i] - '0');
    }
    return v;
}

/*
 * Delivers body bytes from `data` (mutable for chunked). Returns bytes consumed, or -1 after
 * failing x (malformed chunked body). Sets *complete when the body ended.
 */
static ssize_t x_body(struct http_exchange *x, uint8_t *data, size_t len, bool *complete)
{
    *complete = false;
    switch (x->rframe) {
    case H1_BODY_LENGTH: {
        size_t n = len < x->rleft ? len : (size_t)x->rleft;
        x->rleft -= n;
        if (x->rleft == 0)
            *complete = true;
        if (n)
            x->cbs->on_body(x->arg, x, data, n);
        return (ssize_t)n;
    }
    case H1_BODY_CHUNKED: {
        size_t out = len;
        ssize_t rc = h1_chunked_decode(&x->chk, (char *)data, &out);
        if (rc != NB_E_AGAIN && rc < 0) {
            x_fail(x, HTTP_XERR_PROTOCOL, "malformed chunked response body");
            return -1;
        }
        size_t rest = rc == NB_E_AGAIN ? 0 : (size_t)rc;
        if (rc != NB_E_AGAIN)
            *complete = true;
        if (out)
            x->cbs->on_body(x->arg, x, data, out);
        return (ssize_t)(len - rest);
    }
    case H1_BODY_CLOSE:
        if (len)
            x->cbs->on_body(x->arg, x, data, len);
        return (ssize_t)len;
    default:
        *complete = true;
        return 0;
    }
}

/* Parses response heads from the connection's buffer; returns false if x went away. */
static bool x_parse_heads(struct http_exchange *x)
{
    struct up_conn *c = x->conn;
    while (x->state == XS_SENT && c->rlen > c->roff) {
        struct h1_header fields[MAX_RESP_HEADERS];
        struct h1_response res = {
            .headers = fields, .max_headers = MAX_RESP_HEADERS, .max_head = x->cl->opts.max_head};
        int rc = h1_parse_response((const char *)c->rbuf + c->roff, c->rlen - c->roff, x->head,
                                   x->method_len, &res);
        if (rc == NB_E_AGAIN)
            return true;
        if (rc < 0) {
            x_fail(x, HTTP_XERR_PROTOCOL,
                   rc == NB_E_TOO_BIG ? "response head too large" : "malformed response head");
            return false;
        }
        struct http_hdrs h;
        nb_arena_reset(&x->arena);
        http_hdrs_init(&h, &x->arena);
        if (http_hdrs_from_h1(&h, fields, res.num_headers) != NB_OK) {
            x_fail(x, HTTP_XERR_NOMEM, "out of memory");
            return false;
        }
        c->roff += (uint32_t)rc;
        if (res.status < 200 && res.status != 101) {
            if (x->cbs->on_interim)
                x->cbs->on_interim(x->arg, x, res.status, &h);
            if (x->dead)
                return false;
            continue;
        }
        nb_timer_cancel(&x->timer);
        x->got_response = true;
        x->state = XS_BODY;
        x->rframe = res.body;
        x->rleft = res.body == H1_BODY_LENGTH ? res.content_length : 0;
        if (res.body == H1_BODY_CHUNKED) {
            x->chk.on_trailer = x_trailer;
            x->chk.trailer_arg = x;
        }
        size_t cl;
        const char *cv = http_hdrs_join(&h, "connection", &cl);
        x->resp_close = (cv && http_list_has(cv, cl, "close")) ||
                        (res.minor_version == 0 && !(cv && http_list_has(cv, cl, "keep-alive")));
        struct http_resp_info ri = {
            .status = res.status,
            .minor_version = res.minor_version,
            .hdrs = &h,
            .content_length =
                res.body == H1_BODY_LENGTH ? (int64_t)res.content_length : content_length_field(&h),
            .body = res.body == H1_BODY_LENGTH || res.body == H1_BODY_CHUNKED ||
                    res.body == H1_BODY_CLOSE,
        };
        if (res.status == 101) {
            ri.body = false;
            x->cbs->on_response(x->arg, x, &ri);
            if (!x->dead) /* not hijacked */
                x_fail(x, HTTP_XERR_PROTOCOL, "upgrade not taken");
            return false;
        }
        x->cbs->on_response(x->arg, x, &ri);
        if (x->dead)
            return false;
        if (res.body == H1_BODY_NONE || res.body == H1_BODY_TUNNEL ||
            (res.body == H1_BODY_LENGTH && res.content_length == 0)) {
            if (res.body == H1_BODY_TUNNEL)
                x->resp_close = true;
            x_complete(x);
            return false;
        }
    }
    return true;
}

/* Delivers what is buffered in the connection (head remainder, or data held while paused). */
static void x_deliver_buffered(struct http_exchange *x)
{
    struct up_conn *c = x->conn;
    if (c == NULL)
        return;
    if (x->state == XS_SENT && !x_parse_heads(x))
        return;
    while (x->state == XS_BODY && !x->paused && c->rlen > c->roff) {
        bool done;
        ssize_t n = x_body(x, c->rbuf + c->roff, c->rlen - c->roff, &done);
        if (n < 0 || x->dead)
            return;
        c->roff += (uint32_t)n;
        if (done) {
            if (c->rlen != c->roff)
                x->resp_close = true; /* bytes after the response: never reuse */
            x_complete(x);
            return;
        }
    }
}

/* Everything an API call found but may not report from inside itself. */
static void x_deferred(struct nb_defer *d)
{
    struct http_exchange *x = d->arg;
    if (x->dead)
        return;
    if (x->want_fail) {
        x_fail(x, x->pend_kind, x->pend_reason);
        return;
    }
    if (x->want_ready) {
        x->want_ready = false;
        if (!x->ready_sent) {
            x->ready_sent = true;
            if (x->cbs->on_ready)
                x->cbs->on_ready(x->arg, x);
            if (x->dead)
                return;
        }
    }
    if (x->want_resume) {
        x->want_resume = false;
        if (x->paused)
            return;
        x_deliver_buffered(x);
        if (!x->dead && x->conn && x->conn->stream && !x->paused)
            nb_stream_pause(x->conn->stream, false);
    }
}

/* ---- connection callbacks ---- */

static void c_connect(void *arg, struct nb_stream *s, const char *err)
{
    struct up_conn *c = arg;
    struct http_exchange *x = c->x;
    if (err) {
        c->x = NULL;
        if (x)
            x->conn = NULL;
        conn_close(c, true);
        if (x)
            x_fail(x, HTTP_XERR_DIAL, err);
        return;
    }
    c->connected = true;
    if (x == NULL) {
        conn_release(c, true); /* its exchange went away: keep it for the next */
        return;
    }
    x_send_head(x, c);
}

static void c_data(void *arg, struct nb_stream *s, const uint8_t *data, size_t len)
{
    struct up_conn *c = arg;
    struct http_exchange *x = c->x;
    if (x == NULL) {
        conn_close(c, true); /* an idle backend must not talk */
        return;
    }
    if (x->state == XS_BODY && c->rlen == c->roff && !x->paused) {
        /* Straight through: no copy for length- or close-delimited bodies. */
        while (len > 0) {
            bool done;
            ssize_t n;
            size_t take = len;
            if (x->rframe == H1_BODY_CHUNKED) {
                if (scratch_busy)
                    break;
                take = len < SCRATCH ? len : SCRATCH;
                memcpy(scratch, data, take);
                scratch_busy = true;
                n = x_body(x, scratch, take, &done);
                scratch_busy = false;
            } else {
                n = x_body(x, (uint8_t *)data, len, &done);
            }
            if (n < 0 || x->dead)
                return;
            data += n;
            len -= (size_t)n;
            if (done) {
                if (len)
                    x->resp_close = true;
                x_complete(x);
                return;
            }
            if (x->paused)
                break;
        }
        if (len == 0)
            return;
    }
    if (!rbuf_append(c, data, len)) {
        x_fail(x, HTTP_XERR_PROTOCOL, "response head too large");
        return;
    }
    x_deliver_buffered(x);
}

static void c_error(void *arg, struct nb_stream *s, const char *err);

static void c_eof(void *arg, struct nb_stream *s)
{
    struct up_conn *c = arg;
    struct http_exchange *x = c->x;
    if (x == NULL) {
        conn_close(c, false); /* the backend closed an idle connection */
        return;
    }
    if (x->state == XS_BODY && x->rframe == H1_BODY_CLOSE) {
        x_deliver_buffered(x);
        if (!x->dead && x->state == XS_BODY && x->rframe == H1_BODY_CLOSE)
            x_complete(x);
        return;
    }
    c_error(arg, s,
            x->state == XS_BODY ? "backend closed the connection mid-body"
                                : "backend closed the connection");
}

static void c_error(void *arg, struct nb_stream *s, const char *err)
{
    struct up_conn *c = arg;
    struct http_exchange *x = c->x;
    if (x == NULL) {
        conn_close(c, true);
        return;
    }
    /* A kept-alive connection the backend closed just as we reused it: nothing of the
     * response arrived and there is no body to replay, so try once more on a fresh one. */
    if (x->state == XS_SENT && c->rlen == 0 && !x->retried && x->body_len == 0 && c->reused) {
        x->retried = true;
        c->cl->st.retries++;
        x->conn = NULL;
        c->x = NULL;
        conn_close(c, true);
        x_acquire(x, true);
        return;
    }
    x->conn = NULL;
    c->x = NULL;
    conn_close(c, true);
    x_fail(x, HTTP_XERR_RESET, err);
}

static void c_drain(void *arg, struct nb_stream *s)
{
    struct up_conn *c = arg;
    struct http_exchange *x = c->x;
    if (x && x->cbs->on_drain && x->state != XS_WAIT)
        x->cbs->on_drain(x->arg, x);
}

static const struct nb_stream_cbs conn_cbs = {
    .on_data = c_data,
    .on_eof = c_eof,
    .on_drain = c_drain,
    .on_error = c_error,
    .on_connect = c_connect,
};

/* ---- API ---- */

struct http_client *http_client_new(struct nb_loop *loop, const struct http_client_opts *opts)
{
    struct http_client *cl = calloc(1, sizeof *cl);
    if (cl == NULL)
        return NULL;
    cl->loop = loop;
    if (opts)
        cl->opts = *opts;
    if (cl->opts.max_idle_conns == 0)
        cl->opts.max_idle_conns = DEFAULT_MAX_IDLE;
    if (cl->opts.max_idle_per_host == 0)
        cl->opts.max_idle_per_host = DEFAULT_MAX_IDLE;
    if (cl->opts.idle_conn_timeout_ms == 0)
        cl->opts.idle_conn_timeout_ms = DEFAULT_IDLE_TIMEOUT;
    if (cl->opts.max_head == 0)
        cl->opts.max_head = DEFAULT_MAX_HEAD;
    return cl;
}

void http_client_close_idle(struct http_client *cl, const void *net)
{
    struct up_conn *c = cl->lru_head;
    while (c) {
        struct up_conn *next = c->lnext;
        if (net == NULL || c->hp->net == net)
            conn_close(c, false);
        c = next;
    }
}

void http_client_free(struct http_client *cl)
{
    if (cl == NULL)
        return;
    cl->closing = true;
    while (cl->live)
        http_exchange_cancel(cl->live);
    http_client_close_idle(cl, NULL);
    /* Connections still dialling for cancelled exchanges. */
    for (uint32_t b = 0; b < HASH_BUCKETS; b++)
        while (cl->buckets[b]) {
            struct hpool *hp = cl->buckets[b];
            cl->buckets[b] = hp->next;
            free(hp);
        }
    free(cl);
}

int http_exchange_start(struct http_client *cl, const struct http_upstream *up,
                        const struct http_out_req *rq, const struct http_exchange_cbs *cbs,
                        void *arg, struct http_exchange **out)
{
    if (rq->method_len == 0 || rq->target_len == 0 || up->dialer == NULL)
        return NB_E_INVAL;
    struct http_exchange *x = calloc(1, sizeof *x);
    if (x == NULL)
        return NB_E_NOMEM;
    /* "<method> <target> HTTP/1.1\r\n" fields framing "\r\n" */
    size_t hl = rq->method_len + 1 + rq->target_len + 11 + http_hdrs_wire_len(rq->hdrs) + 64;
    x->head = malloc(hl);
    if (x->head == NULL) {
        free(x);
        return NB_E_NOMEM;
    }
    char *p = x->head;
    memcpy(p, rq->method, rq->method_len);
    p += rq->method_len;
    *p++ = ' ';
    memcpy(p, rq->target, rq->target_len);
    p += rq->target_len;
    memcpy(p, " HTTP/1.1\r\n", 11);
    p += 11;
    p += http_hdrs_write(rq->hdrs, p);
    if (rq->body_len > 0)
        p += sprintf(p, "Content-Length: %" PRId64 "\r\n", rq->body_len);
    else if (rq->body_len < 0)
        p += sprintf(p, "Transfer-Encoding: chunked\r\n");
    *p++ = '\r';
    *p++ = '\n';
    x->head_len = (size_t)(p - x->head);
    x->method_len = rq->method_len;
    x->body_len = rq->body_len;
    x->cl = cl;
    x->cbs = cbs;
    x->arg = arg;
    x->dialer = up->dialer;
    x->dial_timeout_ms = up->dial_timeout_ms ? up->dial_timeout_ms : DEFAULT_DIAL_TIMEOUT;
    nb_arena_init(&x->arena);
    nb_timer_init(&x->timer, x_timeout, x);
    x->lnext = cl->live;
    if (cl->live)
        cl->live->lpprev = &x->lnext;
    cl->live = x;
    x->lpprev = &cl->live;
    cl->st.exchanges++;
    *out = x;

    struct hpool *hp = hpool_get(cl, up->net, &up->addr, true);
    if (hp == NULL) {
        x_fail_later(x, HTTP_XERR_NOMEM, "out of memory");
        return NB_OK;
    }
    x->hp = hp;
    if (cl->opts.max_inflight && hp->inflight >= cl->opts.max_inflight) {
        cl->st.overloaded++;
        x_fail_later(x, HTTP_XERR_OVERLOADED, "too many in-flight requests");
        return NB_OK;
    }
    hp->inflight++;
    x->counted = true;
    x_acquire(x, false);
    return NB_OK;
}

int http_exchange_write(struct http_exchange *x, const void *data, size_t len)
{
    if (x->dead || x->conn == NULL || x->state == XS_WAIT || x->state == XS_CONNECTING ||
        x->body_ended)
        return NB_E_INVAL;
    if (len == 0)
        return NB_OK;
    if (x->body_len > 0 && x->body_sent + len > (uint64_t)x->body_len)
        return NB_E_INVAL;
    struct nb_stream *s = x->conn->stream;
    if (s == NULL)
        return NB_E_CLOSED;
    int rc;
    if (x->body_len < 0) {
        char hdr[24];
        int n = snprintf(hdr, sizeof hdr, "%zx\r\n", len);
        if ((rc = nb_stream_write(s, hdr, (size_t)n)) != NB_OK ||
            (rc = nb_stream_write(s, data, len)) != NB_OK ||
            (rc = nb_stream_write(s, "\r\n", 2)) != NB_OK)
            return rc;
    } else if ((rc = nb_stream_write(s, data, len)) != NB_OK) {
        return rc;
    }
    x->body_sent += len;
    return NB_OK;
}

int http_exchange_write_end(struct http_exchange *x, const struct http_hdrs *trailers)
{
    if (x->dead || x->conn == NULL || x->body_ended)
        return NB_E_INVAL;
    if (x->body_len > 0 && x->body_sent != (uint64_t)x->body_len)
        return NB_E_INVAL;
    x->body_ended = true;
    if (x->body_len < 0 && x->conn->stream) {
        size_t tl = trailers ? http_hdrs_wire_len(trailers) : 0;
        char small[64], *buf = small;
        if (tl + 5 > sizeof small && (buf = nb_arena_alloc(&x->arena, tl + 5)) == NULL)
            return NB_E_NOMEM;
        memcpy(buf, "0\r\n", 3);
        size_t w = 3 + (tl ? http_hdrs_write(trailers, buf + 3) : 0);
        memcpy(buf + w, "\r\n", 2);
        int rc = nb_stream_write(x->conn->stream, buf, w + 2);
        if (rc != NB_OK)
            return rc;
    }
    if (x->body_len != 0 && x->state == XS_SENT)
        arm_header_timeout(x);
    return NB_OK;
}

bool http_exchange_write_full(const struct http_exchange *x)
{
    return x->conn && x->conn->stream && nb_stream_write_full(x->conn->stream);
}

void http_exchange_pause(struct http_exchange *x, bool paused)
{
    if (x->dead || x->paused == paused)
        return;
    x->paused = paused;
    if (x->conn == NULL || x->conn->stream == NULL)
        return;
    if (paused) {
        if (x->state == XS_BODY)
            nb_stream_pause(x->conn->stream, true);
        return;
    }
    x->want_resume = true;
    x_poke(x);
}

void http_exchange_cancel(struct http_exchange *x)
{
    x_kill(x);
}

struct nb_stream *http_exchange_hijack(struct http_exchange *x, const uint8_t **leftover,
                                       size_t *leftover_len)
{
    struct up_conn *c = x->conn;
    if (x->dead || c == NULL || c->stream == NULL || !x->got_response)
        return NULL;
    struct nb_stream *s = c->stream;
    c->stream = NULL;
    nb_stream_set_cbs(s, NULL, NULL);
    nb_stream_pause(s, true);
    *leftover = c->rlen > c->roff ? c->rbuf + c->roff : NULL;
    *leftover_len = c->rlen - c->roff;
    /* The leftover lives in c->rbuf, freed from a deferred call: valid during on_response. */
    x->conn = NULL;
    c->x = NULL;
    conn_close(c, false);
    x_kill(x);
    return s;
}

void http_client_stats(const struct http_client *cl, struct http_client_stats *st)
{
    *st = cl->st;
    st->waiting = 0;
    for (uint32_t b = 0; b < HASH_BUCKETS; b++)
        for (const struct hpool *hp = cl->buckets[b]; hp; hp = hp->next)
            for (const struct http_exchange *w = hp->wait_head; w; w = w->wnext)
                st->waiting++;
}
