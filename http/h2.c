/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * HTTP/2 server connections (server.h: http_server_accept_h2) on nghttp2. Place in the
 * pipeline: a TLS listener that negotiated ALPN "h2" hands its stream here instead of to
 * http_server_accept(); every HTTP/2 stream becomes one struct http_req for the same handler
 * (http/proxy.c), through the same http_req_* / http_resp_* calls, which server.c forwards to
 * the h2_* functions below when req->_h2 is set.
 *
 * nghttp2 runs "in memory" as in mgmt/grpc.c: bytes from the stream go to
 * nghttp2_session_mem_recv(), nghttp2_session_mem_send() output goes to nb_stream_write() only
 * while the stream is below its high-water mark (the rest waits inside nghttp2 until on_drain),
 * and reading pauses while the client does not read what we send.
 *
 * Callback discipline: nghttp2's callbacks only record (copy header fields into the stream's
 * arena, queue body bytes, set flags); every handler callback (on_request, on_body,
 * on_body_end, on_drain, on_abort) runs from one place, conn_process(), called at the top of a
 * stream callback or from the deferred kick, never inside nghttp2 and never inside a handler's
 * call into us (the http_resp_* functions only submit to nghttp2 and schedule the kick).
 * Streams are freed only by conn_process's reaper (once nghttp2 closed them and the handler no
 * longer owns them); connections only from a deferred call.
 *
 * Flow control (NO_AUTO_WINDOW_UPDATE): request body bytes are consumed (their window
 * reopened) only when the handler took them, or when they are discarded; so a paused handler
 * holds at most one stream window (STREAM_WINDOW) and the connection at most CONN_WINDOW of
 * undelivered body bytes (Go's server refunds its windows on the handler's reads as well).
 * Responses go through a deferred data provider fed from a per-stream queue; a stream reports
 * "write full" above OUT_HIGH, or above OUT_MIN while the whole connection holds more than
 * CONN_OUT_HIGH, so response memory per connection stays bounded without letting one stream
 * that the client does not read starve the others.
 */
#include "http/server_int.h"
#include "platform/bufq.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "http2"

/* Settings and limits (http/README.md "HTTP/2" lists them next to Go's). */
#define MAX_STREAMS     250u                 /* SETTINGS_MAX_CONCURRENT_STREAMS, as Go */
#define STREAM_WINDOW   (256u * 1024u)       /* SETTINGS_INITIAL_WINDOW_SIZE (Go: 1 MiB) */
#define CONN_WINDOW     (1024u * 1024u)      /* connection receive window, as Go */
#define OUT_HIGH        (128u * 1024u)       /* a stream's response queue: write_full above */
#define OUT_LOW         (32u * 1024u)        /* ... on_drain below */
#define OUT_MIN         (16u * 1024u)        /* a stream may always queue this much */
#define CONN_OUT_HIGH   (4u * 1024u * 1024u) /* response bytes queued per connection */
#define RST_BURST       200u                 /* client RST_STREAMs: bucket size ... */
#define RST_RATE        33u                  /* ... refilled per second (CVE-2023-44487) */
#define EMPTY_FRAME_MAX 1000u /* empty DATA frames without END_STREAM (CVE-2019-9518) */
#define FIELD_OVERHEAD  32u   /* RFC 9113 §6.5.2 per-field overhead */

struct h2_conn {
    struct h2_conn *next;
    struct h2_conn **pprev;
    struct http_server *srv;
    struct nb_stream *stream;
    nghttp2_session *ng;
    struct h2_stream *streams; /* every stream object, newest first */
    uint32_t live;             /* streams dispatched to the handler and not yet reaped */
    size_t out_total;          /* response bytes queued in all streams */
    size_t conn_consume;       /* bytes to give back to the connection window */
    uint32_t empty_frames;
    struct http_conn_info info;
    struct sockaddr_storage peer;
    struct sockaddr_storage local;
    struct nb_timer timer; /* preface (read_header_timeout), then idle_timeout */
    struct nb_defer kick;
    struct nb_defer free_d;
    bool dead;        /* stream closed, free queued */
    bool got_preface; /* a first frame arrived */
    bool idle_armed;
    bool goaway;     /* we sent (queued) a graceful GOAWAY */
    bool paused;     /* we paused the stream (the client does not read) */
    bool in_process; /* conn_process on the stack */
    bool again;      /* conn_process should loop once more */
};

struct h2_stream {
    struct http_req req; /* the handler's view; req._h2 points back here */
    struct h2_stream *next;
    struct h2_stream **pprev;
    struct h2_conn *c;
    int32_t sid;
    uint32_t hsize;              /* header list size so far (RFC 9113 §6.5.2 accounting) */
    uint32_t nfields;            /* non-cookie fields */
    const char *m, *p, *a, *sch; /* :method, :path, :authority, :scheme (arena) */
    size_t ml, pl, al, schl;
    char *cookie; /* cookie crumbs joined with "; " (RFC 9113 §8.2.3) */
    size_t cookie_len;
    size_t cookie_cap; /* bytes st->cookie can hold (plus its NUL) */
    const char *cl;    /* content-length value */
    size_t cll;
    struct nb_bufq in;  /* request body received, not delivered yet */
    struct nb_bufq out; /* response body not taken by nghttp2 yet */
    nghttp2_nv *tnv;    /* response trailers, sent after the last DATA */
    size_t ntnv;
    int64_t resp_len;
    uint32_t close_err;
    bool ready;        /* request header block complete */
    bool dispatched;   /* went to the handler (or to our own error reply) */
    bool owned;        /* the handler owns the exchange */
    bool too_large;    /* header list over the limit: 431 */
    bool body_done;    /* END_STREAM received */
    bool head_end;     /* END_STREAM on the request HEADERS: no body at all */
    bool body_reading; /* the handler asked for the body */
    bool user_paused;
    bool body_end_sent;
    bool resp_started; /* final HEADERS submitted */
    bool resp_ended;   /* the handler ended the response */
    bool deferred;     /* the data provider returned DEFERRED */
    bool want_drain;   /* write_full was reported: on_drain owed */
    bool closed;       /* nghttp2 closed the stream */
    bool reset_sent;   /* we reset the stream */
};

static const struct nb_stream_cbs conn_cbs;
static void conn_process(struct h2_conn *c);

/* ---- small helpers ---- */

static void kick_cb(struct nb_defer *d)
{
    conn_process(d->arg);
}

static void schedule(struct h2_conn *c)
{
    if (c->dead)
        return;
    if (c->in_process)
        c->again = true;
    else
        nb_defer(c->srv->loop, &c->kick, kick_cb, c);
}

static bool stream_full(const struct h2_stream *st)
{
    const struct h2_conn *c = st->c;
    if (c->stream && nb_stream_write_full(c->stream))
        return true;
    return st->out.len >= OUT_HIGH || (c->out_total >= CONN_OUT_HIGH && st->out.len >= OUT_MIN);
}

static bool stream_drained(const struct h2_stream *st)
{
    const struct h2_conn *c = st->c;
    if (c->stream && nb_stream_write_full(c->stream))
        return false;
    return st->out.len <= OUT_LOW && (c->out_total < CONN_OUT_HIGH / 2 || st->out.len < OUT_MIN);
}

static void stream_free(struct h2_stream *st)
{
    struct h2_conn *c = st->c;
    if (st->pprev) {
        *st->pprev = st->next;
        if (st->next)
            st->next->pprev = st->pprev;
    }
    if (st->dispatched && c->live)
        c->live--;
    /* Undelivered body bytes still count against the connection window: give them back. */
    c->conn_consume += st->in.len;
    c->out_total -= st->out.len;
    nb_bufq_clear(&st->in);
    nb_bufq_clear(&st->out);
    nb_arena_deinit(&st->req.arena);
    free(st);
}

/* ---- teardown ---- */

static void conn_free_deferred(struct nb_defer *d)
{
    struct h2_conn *c = d->arg;
    while (c->streams)
        stream_free(c->streams);
    if (c->ng)
        nghttp2_session_del(c->ng);
    free(c);
}

/* Closes the stream and frees the connection from a deferred call. Never calls the handler. */
static void conn_kill(struct h2_conn *c, bool abort)
{
    if (c->dead)
        return;
    c->dead = true;
    nb_timer_cancel(&c->timer);
    nb_defer_cancel(c->srv->loop, &c->kick);
    if (c->stream) {
        nb_stream_close(c->stream, abort);
        c->stream = NULL;
    }
    if (c->pprev) {
        *c->pprev = c->next;
        if (c->next)
            c->next->pprev = c->pprev;
        c->pprev = NULL;
        c->srv->nconns--;
    }
    nb_defer(c->srv->loop, &c->free_d, conn_free_deferred, c);
}

/* The connection is over: every handler that owns a request hears on_abort, then close. */
static void conn_fail(struct h2_conn *c, const char *why, bool abort)
{
    if (c->dead)
        return;
    for (struct h2_stream *st = c->streams; st; st = st->next) {
        if (!st->owned)
            continue;
        st->owned = false;
        c->srv->st.client_aborts++;
        if (st->req._cbs && st->req._cbs->on_abort)
            st->req._cbs->on_abort(st->req._cbs_arg, &st->req, why);
    }
    conn_kill(c, abort);
}

/* Hands nghttp2's output to the stream while it is below its high-water mark. */
static bool conn_flush(struct h2_conn *c)
{
    while (!c->dead && c->stream && !nb_stream_write_full(c->stream)) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(c->ng, &d);
        if (n < 0) {
            nb_debug(MOD, "send: %s", nghttp2_strerror((int)n));
            conn_fail(c, "HTTP/2 protocol error", true);
            return false;
        }
        if (n == 0)
            break;
        if (nb_stream_write(c->stream, d, (size_t)n) != NB_OK) {
            conn_fail(c, "client connection closed", true);
            return false;
        }
    }
    return !c->dead;
}

/* ---- timers ---- */

static void conn_timeout(struct nb_timer *t)
{
    struct h2_conn *c = t->arg;
    c->idle_armed = false;
    if (!c->got_preface) {
        c->srv->st.header_timeouts++;
        conn_kill(c, false);
        return;
    }
    if (c->live)
        return;
    /* Idle: like Go, a GOAWAY(NO_ERROR) and close. */
    c->srv->st.idle_timeouts++;
    (void)nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE,
                                nghttp2_session_get_last_proc_stream_id(c->ng), NGHTTP2_NO_ERROR,
                                NULL, 0);
    (void)conn_flush(c);
    conn_fail(c, "idle timeout", false);
}

/* ---- nghttp2 callbacks: record only ---- */

static struct h2_stream *stream_of(nghttp2_session *ng, int32_t sid)
{
    return sid > 0 ? nghttp2_session_get_stream_user_data(ng, sid) : NULL;
}

static int on_begin_headers_cb(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2_conn *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2_stream *st = calloc(1, sizeof *st);
    if (st == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
    st->c = c;
    st->sid = f->hd.stream_id;
    st->resp_len = -1;
    st->req._h2 = st;
    nb_arena_init(&st->req.arena);
    http_hdrs_init(&st->req.hdrs, &st->req.arena);
    http_hdrs_init(&st->req.trailers, &st->req.arena);
    nb_bufq_init(&st->in);
    nb_bufq_init(&st->out);
    st->next = c->streams;
    if (c->streams)
        c->streams->pprev = &st->next;
    c->streams = st;
    st->pprev = &c->streams;
    if (nghttp2_session_set_stream_user_data(ng, st->sid, st) != 0) {
        stream_free(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

static bool name_is(const uint8_t *n, size_t nl, const char *lit)
{
    return nl == strlen(lit) && memcmp(n, lit, nl) == 0;
}

static int on_header_cb(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                        const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    struct h2_conn *c = ud;
    struct h2_stream *st = stream_of(ng, f->hd.stream_id);
    if (st == NULL || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    bool trailer = f->headers.cat != NGHTTP2_HCAT_REQUEST;
    /* Header list size as SETTINGS_MAX_HEADER_LIST_SIZE counts it: over the limit the fields
     * are not kept and the request gets a 431 (as Go answers), not the handler. */
    st->hsize += (uint32_t)(nl + vl + FIELD_OVERHEAD);
    bool cookie = name_is(name, nl, "cookie");
    if (!cookie && name[0] != ':')
        st->nfields++;
    if (st->hsize > c->srv->opts.max_head || st->nfields > c->srv->opts.max_headers) {
        st->too_large = true;
        return 0;
    }
    if (st->too_large)
        return 0;
    struct nb_arena *a = &st->req.arena;
    char *v = nb_arena_strndup(a, (const char *)value, vl);
    if (v == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (trailer) {
        char *n = nb_arena_strndup(a, (const char *)name, nl);
        if (n == NULL || http_hdrs_add(&st->req.trailers, n, nl, v, vl) != NB_OK)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return 0;
    }
    if (name[0] == ':') {
        /* nghttp2 validated the set (RFC 9113 §8.3): each at most once, no unknown ones. */
        if (name_is(name, nl, ":method"))
            st->m = v, st->ml = vl;
        else if (name_is(name, nl, ":path"))
            st->p = v, st->pl = vl;
        else if (name_is(name, nl, ":authority"))
            st->a = v, st->al = vl;
        else if (name_is(name, nl, ":scheme"))
            st->sch = v, st->schl = vl;
        return 0;
    }
    if (cookie) {
        if (st->cookie == NULL) {
            st->cookie = v;
            st->cookie_len = st->cookie_cap = vl;
            return 0;
        }
        /* Crumbs are appended into a buffer that doubles, so n crumbs cost O(total) arena
         * bytes, not O(n^2): HPACK makes a repeated crumb about one byte on the wire. */
        size_t need = st->cookie_len + 2 + vl;
        if (need > st->cookie_cap) {
            size_t cap = st->cookie_cap * 2 > need ? st->cookie_cap * 2 : need;
            char *j = nb_arena_alloc(a, cap + 1);
            if (j == NULL)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            memcpy(j, st->cookie, st->cookie_len);
            st->cookie = j;
            st->cookie_cap = cap;
        }
        memcpy(st->cookie + st->cookie_len, "; ", 2);
        memcpy(st->cookie + st->cookie_len + 2, v, vl + 1);
        st->cookie_len = need;
        return 0;
    }
    char *n = nb_arena_strndup(a, (const char *)name, nl);
    if (n == NULL || http_hdrs_add(&st->req.hdrs, n, nl, v, vl) != NB_OK)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (name_is(name, nl, "content-length"))
        st->cl = v, st->cll = vl;
    return 0;
}

static int on_frame_recv_cb(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2_conn *c = ud;
    c->got_preface = true;
    c->again = true;
    struct h2_stream *st = stream_of(ng, f->hd.stream_id);
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (st == NULL)
            break;
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
            st->ready = true;
            st->head_end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        }
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
            st->body_done = true;
        break;
    case NGHTTP2_DATA:
        if (st && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            st->body_done = true;
        if (f->hd.length == 0 && !(f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
            ++c->empty_frames > EMPTY_FRAME_MAX) {
            nb_debug(MOD, "empty DATA frame flood: GOAWAY");
            (void)nghttp2_session_terminate_session(ng, NGHTTP2_ENHANCE_YOUR_CALM);
        }
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk_cb(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data,
                            size_t len, void *ud)
{
    struct h2_conn *c = ud;
    struct h2_stream *st = stream_of(ng, sid);
    /* Nobody will read these (the stream is gone, or its handler is done): give the window
     * back at once. */
    if (st == NULL || (st->dispatched && !st->owned)) {
        c->conn_consume += len;
        return 0;
    }
    if (nb_bufq_append(&st->in, data, len) != NB_OK)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    c->again = true;
    return 0;
}

static int on_stream_close_cb(nghttp2_session *ng, int32_t sid, uint32_t err, void *ud)
{
    struct h2_conn *c = ud;
    struct h2_stream *st = stream_of(ng, sid);
    if (st) {
        st->closed = true;
        st->close_err = err;
    }
    c->again = true;
    return 0;
}

static int on_frame_send_cb(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2_conn *c = ud;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA: {
        /* The response is complete while the request body is not: RFC 9113 §8.1 lets the
         * server reset the rest with NO_ERROR (Go does the same). */
        struct h2_stream *st = stream_of(ng, f->hd.stream_id);
        if (st && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && !st->body_done && !st->reset_sent) {
            st->reset_sent = true;
            (void)nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_NO_ERROR);
        }
        break;
    }
    case NGHTTP2_RST_STREAM:
        if (f->rst_stream.error_code != NGHTTP2_NO_ERROR &&
            f->rst_stream.error_code != NGHTTP2_INTERNAL_ERROR &&
            f->rst_stream.error_code != NGHTTP2_CANCEL)
            c->srv->st.h2_stream_errors++;
        break;
    case NGHTTP2_GOAWAY:
        if (f->goaway.error_code != NGHTTP2_NO_ERROR)
            c->srv->st.h2_goaways++;
        break;
    default:
        break;
    }
    return 0;
}

/* The response body source: the stream's queue; DEFERRED while it is empty and not ended. */
static ssize_t data_read_cb(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct h2_conn *c = ud;
    struct h2_stream *st = src->ptr;
    size_t w = 0;
    while (w < len && st->out.len) {
        size_t n;
        const uint8_t *p = nb_bufq_peek(&st->out, &n);
        if (n > len - w)
            n = len - w;
        memcpy(buf + w, p, n);
        nb_bufq_consume(&st->out, n);
        w += n;
    }
    c->out_total -= w;
    if (st->want_drain)
        c->again = true;
    if (st->out.len == 0) {
        if (!st->resp_ended) {
            if (w)
                return (ssize_t)w;
            st->deferred = true;
            return NGHTTP2_ERR_DEFERRED;
        }
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->ntnv) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (nghttp2_submit_trailer(ng, sid, st->tnv, st->ntnv) != 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    }
    return (ssize_t)w;
}

/* ---- dispatch ---- */

static void server_reply(struct h2_stream *st, int status, const char *msg)
{
    char body[96];
    int n = snprintf(body, sizeof body, "%d %s", status, msg);
    st->owned = true;
    (void)http_resp_simple(&st->req, status, "text/plain; charset=utf-8", NULL, body,
                           n > 0 ? (size_t)n : 0);
    st->owned = false;
}

static void dispatch(struct h2_stream *st)
{
    struct h2_conn *c = st->c;
    struct http_server *srv = c->srv;
    struct http_req *r = &st->req;
    st->dispatched = true;
    c->live++;
    r->peer = c->peer;
    r->local = c->local;
    r->info = c->info;
    r->minor_version = 1;
    r->start_ms = nb_loop_now_ms(srv->loop);
    if (st->too_large) {
        srv->st.too_large++;
        server_reply(st, 431, "Request Header Fields Too Large");
        return;
    }
    r->method = st->m ? st->m : "";
    r->method_len = st->ml;
    if (r->method_len == 7 && memcmp(r->method, "CONNECT", 7) == 0) {
        /* No CONNECT tunnels (nor RFC 8441 extended CONNECT: WebSocket stays on HTTP/1.1). */
        srv->st.bad_requests++;
        server_reply(st, 405, "Method Not Allowed");
        return;
    }
    if (st->p == NULL || st->pl == 0 ||
        !(st->p[0] == '/' || (st->pl == 1 && st->p[0] == '*' && r->method_len == 7 &&
                              memcmp(r->method, "OPTIONS", 7) == 0))) {
        srv->st.bad_requests++;
        server_reply(st, 400, "Bad Request");
        return;
    }
    r->target = r->path = st->p;
    r->target_len = r->path_len = st->pl;
    const char *q = memchr(r->path, '?', r->path_len);
    if (q) {
        r->query = q + 1;
        r->query_len = r->path_len - (size_t)(q - r->path) - 1;
        r->path_len = (size_t)(q - r->path);
    }
    if (st->a && st->al) {
        r->host = st->a;
        r->host_len = st->al;
    } else {
        const struct http_field *h = http_hdrs_get(&r->hdrs, "host");
        if (h) {
            r->host = h->value;
            r->host_len = h->value_len;
        }
    }
    if (st->cookie && http_hdrs_add(&r->hdrs, "cookie", 6, st->cookie, st->cookie_len) != NB_OK) {
        server_reply(st, 503, "Service Unavailable");
        return;
    }
    if (st->cl) {
        /* nghttp2 checked it is a number and that the DATA frames add up to it. */
        r->content_length = strtoull(st->cl, NULL, 10);
        r->has_body = r->content_length > 0;
    } else if (!st->head_end) {
        r->body_chunked = true; /* length unknown: END_STREAM ends it (Go: ContentLength -1) */
        r->has_body = true;
    }
    r->is_head = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
    srv->st.requests++;
    st->owned = true;
    srv->handler.on_request(srv->handler.arg, r);
}

/* One stream's turn in conn_process. Returns false when it was freed. */
static bool stream_process(struct h2_stream *st)
{
    struct h2_conn *c = st->c;
    if (st->ready && !st->dispatched && !st->closed)
        dispatch(st);
    if (st->owned && st->closed) {
        st->owned = false;
        c->srv->st.client_aborts++;
        if (st->req._cbs && st->req._cbs->on_abort)
            st->req._cbs->on_abort(st->req._cbs_arg, &st->req,
                                   st->close_err == NGHTTP2_NO_ERROR ? "client closed the stream"
                                                                     : "client reset the stream");
    }
    for (int guard = 0;
         st->owned && st->body_reading && !st->user_paused && st->in.len && guard < 64; guard++) {
        size_t n;
        const uint8_t *p = nb_bufq_peek(&st->in, &n);
        st->req.bytes_in += n;
        if (st->req._cbs && st->req._cbs->on_body)
            st->req._cbs->on_body(st->req._cbs_arg, &st->req, p, n);
        nb_bufq_consume(&st->in, n);
        (void)nghttp2_session_consume(c->ng, st->sid, n);
    }
    if (st->owned && st->body_reading && !st->user_paused && st->in.len)
        c->again = true; /* more than the guard: the next round */
    if (st->owned && st->body_reading && st->body_done && st->in.len == 0 && !st->body_end_sent) {
        st->body_end_sent = true;
        if (st->req._cbs && st->req._cbs->on_body_end)
            st->req._cbs->on_body_end(st->req._cbs_arg, &st->req);
    }
    if (st->dispatched && !st->owned && st->in.len) {
        (void)nghttp2_session_consume(c->ng, st->sid, st->in.len);
        nb_bufq_clear(&st->in);
    }
    if (st->owned && st->want_drain && stream_drained(st)) {
        st->want_drain = false;
        if (st->req._cbs && st->req._cbs->on_drain)
            st->req._cbs->on_drain(st->req._cbs_arg, &st->req);
    }
    if (st->closed && !st->owned) {
        stream_free(st);
        return false;
    }
    return true;
}

/*
 * The driver: dispatches complete request heads, moves body bytes to handlers, tells them
 * about resets and drained queues, reaps finished streams, flushes nghttp2's output and decides
 * whether the connection reads, idles or closes. Loops while one step enabled another.
 */
static void conn_process(struct h2_conn *c)
{
    if (c->dead || c->in_process)
        return;
    c->in_process = true;
    for (int round = 0; round < 16 && !c->dead; round++) {
        c->again = false;
        struct h2_stream *st = c->streams, *next;
        for (; st && !c->dead; st = next) {
            next = st->next;
            (void)stream_process(st);
        }
        if (c->dead)
            break;
        if (c->conn_consume) {
            (void)nghttp2_session_consume_connection(c->ng, c->conn_consume);
            c->conn_consume = 0;
        }
        if (!conn_flush(c))
            break;
        if (!c->again)
            break;
    }
    c->in_process = false;
    if (c->dead)
        return;
    if (c->again) { /* pathological: continue from the loop instead of spinning here */
        nb_defer(c->srv->loop, &c->kick, kick_cb, c);
        return;
    }
    /* Both sides are done with the session (GOAWAY exchanged, no stream left). */
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng)) {
        conn_fail(c, "connection closed", false);
        return;
    }
    /* Stop reading while the client does not read what we send (bounded output). */
    bool p = nb_stream_write_full(c->stream);
    if (p != c->paused) {
        c->paused = p;
        nb_stream_pause(c->stream, p);
    }
    if (c->got_preface) {
        if (c->live == 0 && !c->idle_armed) {
            c->idle_armed = true;
            nb_timer_arm(c->srv->loop, &c->timer, c->srv->opts.idle_timeout_ms);
        } else if (c->live && c->idle_armed) {
            c->idle_armed = false;
            nb_timer_cancel(&c->timer);
        }
    }
}

/* ---- stream callbacks ---- */

static void on_data(void *arg, struct nb_stream *s, const uint8_t *data, size_t len)
{
    struct h2_conn *c = arg;
    if (c->dead)
        return;
    bool had_preface = c->got_preface;
    ssize_t r = nghttp2_session_mem_recv(c->ng, data, len);
    if (r < 0) {
        nb_debug(MOD, "receive: %s", nghttp2_strerror((int)r));
        if (r != NGHTTP2_ERR_BAD_CLIENT_MAGIC)
            (void)nghttp2_session_terminate_session(c->ng, NGHTTP2_PROTOCOL_ERROR);
        (void)conn_flush(c);
        conn_fail(c, "HTTP/2 protocol error", false);
        return;
    }
    if (!had_preface && c->got_preface)
        nb_timer_cancel(&c->timer);
    conn_process(c);
}

static void on_eof(void *arg, struct nb_stream *s)
{
    /* As Go's server: the end of the client's side is the end of the connection. */
    conn_fail(arg, "client closed the connection", false);
}

static void on_drain(void *arg, struct nb_stream *s)
{
    conn_process(arg);
}

static void on_error(void *arg, struct nb_stream *s, const char *err)
{
    conn_fail(arg, err, true);
}

static const struct nb_stream_cbs conn_cbs = {
    .on_data = on_data,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_error = on_error,
};

/* ---- server ---- */

static int session_new(struct h2_conn *c, uint32_t max_head)
{
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    int rc = NB_E_NOMEM;
    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
        goto out;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers_cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close_cb);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send_cb);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_stream_reset_rate_limit(opt, RST_BURST, RST_RATE);
    if (nghttp2_session_server_new2(&c->ng, cb, c, opt) != 0)
        goto out;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, max_head},
    };
    if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0)
        goto out;
    rc = NB_OK;
out:
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    return rc;
}

int http_server_accept_h2(struct http_server *srv, struct nb_stream *s,
                          const struct http_conn_info *info)
{
    if (srv->draining || (srv->opts.max_conns && srv->nconns >= srv->opts.max_conns)) {
        srv->st.conns_rejected++;
        nb_stream_close(s, true);
        return NB_E_CLOSED;
    }
    struct h2_conn *c = calloc(1, sizeof *c);
    if (c == NULL || session_new(c, srv->opts.max_head) != NB_OK) {
        if (c && c->ng)
            nghttp2_session_del(c->ng);
        free(c);
        srv->st.conns_rejected++;
        nb_stream_close(s, true);
        return NB_E_NOMEM;
    }
    c->srv = srv;
    c->stream = s;
    if (info)
        c->info = *info;
    (void)nb_stream_addrs(s, &c->local, &c->peer);
    nb_timer_init(&c->timer, conn_timeout, c);
    nb_timer_arm(srv->loop, &c->timer, srv->opts.read_header_timeout_ms);
    c->next = srv->h2_conns;
    if (srv->h2_conns)
        srv->h2_conns->pprev = &c->next;
    srv->h2_conns = c;
    c->pprev = &srv->h2_conns;
    srv->nconns++;
    srv->st.conns_accepted++;
    srv->st.h2_conns++;
    nb_stream_set_cbs(s, &conn_cbs, c);
    (void)conn_flush(c); /* our SETTINGS: the server connection preface */
    return NB_OK;
}

/* A graceful GOAWAY: streams up to the last one processed finish, newer ones are refused. */
static void conn_goaway(struct h2_conn *c)
{
    if (c->dead || c->goaway)
        return;
    c->goaway = true;
    (void)nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE,
                                nghttp2_session_get_last_proc_stream_id(c->ng), NGHTTP2_NO_ERROR,
                                NULL, 0);
    schedule(c);
}

void h2_server_drain(struct http_server *srv)
{
    for (struct h2_conn *c = srv->h2_conns; c; c = c->next)
        conn_goaway(c);
}

void h2_server_free_all(struct http_server *srv)
{
    while (srv->h2_conns) {
        struct h2_conn *c = srv->h2_conns;
        conn_fail(c, "server stopped", true);
        /* The deferred free may never run (the loop is going away with the server): the
         * connection is unlinked, so free it here and drop the deferred call. */
        nb_defer_cancel(srv->loop, &c->free_d);
        conn_free_deferred(&c->free_d);
    }
}

/* ---- the handler's side ---- */

static struct h2_stream *owned_stream(const struct http_req *req)
{
    struct h2_stream *st = req->_h2;
    return st->owned && !st->c->dead ? st : NULL;
}

void h2_req_read_body(struct http_req *req)
{
    struct h2_stream *st = owned_stream(req);
    if (st == NULL || st->body_reading)
        return;
    st->body_reading = true;
    schedule(st->c);
}

void h2_req_pause_body(struct http_req *req, bool paused)
{
    struct h2_stream *st = owned_stream(req);
    if (st == NULL || st->user_paused == paused)
        return;
    st->user_paused = paused;
    if (!paused)
        schedule(st->c);
}

/* Connection-specific fields never go into an HTTP/2 message (RFC 9113 §8.2.2). */
static bool hop_field(const char *n, size_t l)
{
    return http_ieq(n, l, "connection") || http_ieq(n, l, "keep-alive") ||
           http_ieq(n, l, "proxy-connection") || http_ieq(n, l, "transfer-encoding") ||
           http_ieq(n, l, "upgrade") || http_ieq(n, l, "content-length");
}

/* Lower-cased copies of the names in hdrs (minus connection fields) appended to nva[*n]; the
 * values are referenced (nghttp2 copies them on submit) or, with copy_values, copied too (for
 * trailers, submitted later from the data provider). */
static int add_fields(struct nb_arena *a, nghttp2_nv *nva, size_t *n, const struct http_hdrs *h,
                      bool copy_values)
{
    for (uint32_t i = 0; h && i < h->n; i++) {
        const struct http_field *f = &h->v[i];
        if (f->name_len == 0 || hop_field(f->name, f->name_len))
            continue;
        uint8_t *ln = nb_arena_alloc(a, f->name_len);
        if (ln == NULL)
            return NB_E_NOMEM;
        for (size_t k = 0; k < f->name_len; k++) {
            char ch = f->name[k];
            ln[k] = (uint8_t)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        uint8_t *v = (uint8_t *)f->value;
        if (copy_values && f->value_len) {
            if ((v = nb_arena_alloc(a, f->value_len)) == NULL)
                return NB_E_NOMEM;
            memcpy(v, f->value, f->value_len);
        }
        nva[(*n)++] = (nghttp2_nv){ln, v, f->name_len, f->value_len, NGHTTP2_NV_FLAG_NONE};
    }
    return NB_OK;
}

#define NV_LIT(n, v, vl) \
    ((nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE})

int h2_resp_head(struct http_req *req, int status, const struct http_hdrs *hdrs,
                 int64_t content_length)
{
    struct h2_stream *st = owned_stream(req);
    if (st == NULL || st->resp_started || status < 100 || status > 999 || status == 101)
        return NB_E_INVAL;
    struct h2_conn *c = st->c;
    if (status == 100)
        return NB_OK; /* ours to send, and HTTP/2 clients do not wait for it */
    struct nb_arena *a = &req->arena;
    size_t cap = 5 + (hdrs ? hdrs->n : 0);
    nghttp2_nv *nva = nb_arena_alloc(a, cap * sizeof *nva);
    char *sbuf = nb_arena_alloc(a, 4);
    if (nva == NULL || sbuf == NULL)
        return NB_E_NOMEM;
    snprintf(sbuf, 4, "%03d", status);
    size_t n = 0;
    nva[n++] = NV_LIT(":status", sbuf, 3);
    if (status < 200) { /* interim (103 Early Hints...) */
        if (add_fields(a, nva, &n, hdrs, false) != NB_OK)
            return NB_E_NOMEM;
        int rc = nghttp2_submit_headers(c->ng, NGHTTP2_FLAG_NONE, st->sid, NULL, nva, n, NULL);
        schedule(c);
        return rc == 0 ? NB_OK : NB_E_CLOSED;
    }
    if (add_fields(a, nva, &n, hdrs, false) != NB_OK)
        return NB_E_NOMEM;
    if (hdrs == NULL || !http_hdrs_get(hdrs, "date")) {
        const char *d = http_date_now(c->srv->loop);
        nva[n++] = NV_LIT("date", d, strlen(d));
    }
    bool no_body = req->is_head || status == 204 || status == 304;
    if (content_length >= 0 && status != 204 && status != 304) {
        char *lb = nb_arena_alloc(a, 24);
        if (lb == NULL)
            return NB_E_NOMEM;
        int ll = snprintf(lb, 24, "%lld", (long long)content_length);
        nva[n++] = NV_LIT("content-length", lb, (size_t)ll);
        st->resp_len = content_length;
    }
    const char *sv = c->srv->opts.server_header;
    if (sv && (hdrs == NULL || !http_hdrs_get(hdrs, "server")))
        nva[n++] = NV_LIT("server", sv, strlen(sv));
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = data_read_cb};
    int rc = nghttp2_submit_response(c->ng, st->sid, nva, n, no_body ? NULL : &dp);
    if (rc != 0)
        return rc == NGHTTP2_ERR_NOMEM ? NB_E_NOMEM : NB_E_CLOSED;
    req->status = status;
    st->resp_started = true;
    if (no_body) {
        st->resp_len = -1;
        st->resp_ended = true; /* the HEADERS frame carries END_STREAM */
    }
    schedule(c);
    return NB_OK;
}

static void resume(struct h2_stream *st)
{
    if (st->deferred) {
        st->deferred = false;
        (void)nghttp2_session_resume_data(st->c->ng, st->sid);
    }
    schedule(st->c);
}

int h2_resp_body(struct http_req *req, const void *data, size_t len)
{
    struct h2_stream *st = owned_stream(req);
    if (st == NULL || !st->resp_started)
        return NB_E_INVAL;
    if (len == 0 || req->is_head || req->status == 204 || req->status == 304)
        return NB_OK;
    if (st->resp_len >= 0 && req->bytes_out + len > (uint64_t)st->resp_len)
        return NB_E_INVAL; /* more than declared: never send it */
    if (st->closed)
        return NB_E_CLOSED;
    if (nb_bufq_append(&st->out, data, len) != NB_OK)
        return NB_E_NOMEM;
    st->c->out_total += len;
    req->bytes_out += len;
    resume(st);
    return NB_OK;
}

bool h2_resp_write_full(const struct http_req *req)
{
    struct h2_stream *st = req->_h2;
    if (!stream_full(st))
        return false;
    st->want_drain = true;
    return true;
}

void h2_resp_end_trailers(struct http_req *req, const struct http_hdrs *trailers)
{
    struct h2_stream *st = owned_stream(req);
    if (st == NULL)
        return;
    if (!st->resp_started || (st->resp_len >= 0 && req->bytes_out != (uint64_t)st->resp_len &&
                              !req->is_head && req->status != 304 && req->status != 204)) {
        h2_resp_abort(req); /* no head, or a short body: the client must see a reset */
        return;
    }
    st->owned = false;
    if (!st->resp_ended && trailers && trailers->n) {
        nghttp2_nv *nva = nb_arena_alloc(&req->arena, trailers->n * sizeof *nva);
        size_t n = 0;
        if (nva && add_fields(&req->arena, nva, &n, trailers, true) == NB_OK && n) {
            st->tnv = nva;
            st->ntnv = n;
        }
    }
    st->resp_ended = true;
    resume(st);
}

void h2_resp_abort(struct http_req *req)
{
    struct h2_stream *st = owned_stream(req);
    if (st == NULL)
        return;
    st->owned = false;
    st->resp_ended = true;
    if (!st->closed && !st->reset_sent) {
        st->reset_sent = true;
        (void)nghttp2_submit_rst_stream(st->c->ng, NGHTTP2_FLAG_NONE, st->sid,
                                        NGHTTP2_INTERNAL_ERROR);
    }
    schedule(st->c);
}

void h2_resp_close_after(struct http_req *req)
{
    struct h2_stream *st = req->_h2;
    conn_goaway(st->c);
}
