/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * HTTP/1.1 server connections (server.h). Place in the pipeline: a listener (host socket, tunnel
 * listener, later TLS) hands a stream to http_server_accept(); this file turns bytes into
 * requests for a handler (the reverse proxy, the health endpoints) and the handler's response
 * calls back into bytes.
 *
 * Two buffers per connection, both allocated only when needed, so an idle keep-alive connection
 * holds neither:
 *   - hbuf: the request head being read. Once parsed it is frozen for the life of the request
 *     (the handler's header slices point into it) and freed afterwards.
 *   - pbuf: bytes received but not consumed yet: the start of the body that came with the head,
 *     body bytes the handler is not ready for, a pipelined next request. It may grow (nothing
 *     points into it); between requests it becomes the next hbuf.
 *
 * Every state change that involves the handler runs from conn_process(), called at the top of
 * a stream callback or from a deferred call (`kick`), never from inside a handler's call into
 * us: http_resp_end() and friends only mark and schedule. Connections are freed from a
 * deferred call (conn_kill), so a stream or handler callback never finds its connection gone.
 */
#include "http/server.h"
#include "http/h1_parse.h"
#include "http/server_int.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_HEADER_TIMEOUT_MS 10000u
#define DEFAULT_IDLE_TIMEOUT_MS   120000u
#define SCRATCH                   65536u /* chunked bodies are decoded in a copy of this size */
/* While a handler works on a request whose body was read, the connection keeps reading up to
 * this much (a pipelined request), so a client that goes away is noticed (Go cancels the
 * request then) instead of the upstream working for nobody. */
#define PEEK_WHILE_ACTIVE 16384u

enum conn_state {
    CS_HEAD,     /* reading a request head, or idle before one */
    CS_ACTIVE,   /* a handler owns the request */
    CS_DISCARD,  /* the response is done; what is left of the request body is dropped */
    CS_CLOSING,  /* the stream was closed; the deferred free is queued */
    CS_HIJACKED, /* the stream was handed to the handler after a 101 */
};

struct http_conn {
    struct http_conn *next;
    struct http_conn **pprev;
    struct http_server *srv;
    struct nb_stream *stream;
    struct http_req *req; /* current request, or NULL */
    char *hbuf;
    uint32_t hcap;
    uint32_t hlen;
    uint8_t *pbuf;
    uint32_t pcap;
    uint32_t plen; /* bytes in pbuf */
    uint32_t poff; /* consumed bytes at the front of pbuf */
    enum conn_state state;
    bool body_reading;     /* the handler asked for the body */
    bool body_done;        /* the request body has been read to its end */
    bool body_end_sent;    /* on_body_end delivered */
    bool user_paused;      /* the handler paused the body */
    bool paused;           /* the stream is paused (by us) */
    bool resp_done;        /* the handler ended the response */
    bool keep_alive;       /* client-side wish, then the decision at response time */
    bool close_after;      /* handler or drain asked to close after this response */
    bool resp_started;     /* final head written */
    bool resp_chunked;     /* body chunk-framed */
    bool resp_no_body;     /* HEAD, 1xx, 204, 304 */
    bool sent_continue;    /* "100 Continue" written */
    bool eof;              /* the client half-closed */
    bool idle;             /* waiting for the first byte of a kept-alive request */
    uint64_t body_left;    /* Content-Length bytes still to come */
    struct h1_chunked chk; /* chunked decoder state */
    char *tbuf;            /* the request body's trailer lines (heap, while a request runs) */
    size_t tlen;
    size_t tcap;
    int64_t resp_len; /* declared response length, -1 if none */
    struct nb_timer timer;
    struct nb_defer kick;
    struct nb_defer free_d;
    struct http_conn_info info;
    struct sockaddr_storage peer;
};

static const struct nb_stream_cbs conn_cbs;
static void conn_process(struct http_conn *c);

static uint8_t scratch[SCRATCH];
static bool scratch_busy;

/* ---- small helpers ---- */

static void set_paused(struct http_conn *c, bool p)
{
    if (c->paused == p || c->stream == NULL)
        return;
    c->paused = p;
    nb_stream_pause(c->stream, p);
}

static uint32_t pend_len(const struct http_conn *c)
{
    return c->plen - c->poff;
}

static void kick_cb(struct nb_defer *d)
{
    conn_process(d->arg);
}

static void schedule(struct http_conn *c)
{
    if (c->state != CS_CLOSING && c->state != CS_HIJACKED)
        nb_defer(c->srv->loop, &c->kick, kick_cb, c);
}

/* Appends to pbuf, compacting or growing it. Bounded: a paused stream delivers at most one
 * more read, so a cap of max_head plus two reads' worth is never hit by a well-behaved client. */
static bool pend_append(struct http_conn *c, const uint8_t *d, size_t n)
{
    size_t hard = (size_t)c->srv->opts.max_head + 2 * 65536u;
    if (c->poff && c->poff == c->plen)
        c->poff = c->plen = 0;
    if (c->plen + n > c->pcap) {
        if (c->poff) {
            memmove(c->pbuf, c->pbuf + c->poff, c->plen - c->poff);
            c->plen -= c->poff;
            c->poff = 0;
        }
        if (c->plen + n > c->pcap) {
            if (c->plen + n > hard)
                return false;
            size_t cap = c->pcap ? c->pcap : 1024u;
            while (cap < c->plen + n)
                cap *= 2;
            uint8_t *nb = realloc(c->pbuf, cap);
            if (nb == NULL)
                return false;
            c->pbuf = nb;
            c->pcap = (uint32_t)cap;
        }
    }
    memcpy(c->pbuf + c->plen, d, n);
    c->plen += (uint32_t)n;
    return true;
}

/* ---- teardown ---- */

static void req_free(struct http_req *r)
{
    if (r == NULL)
        return;
    nb_arena_deinit(&r->arena);
    free(r);
}

static void conn_free_deferred(struct nb_defer *d)
{
    struct http_conn *c = d->arg;
    req_free(c->req);
    free(c->hbuf);
    free(c->pbuf);
    free(c->tbuf);
    free(c);
}

/* Closes the stream and frees the connection from a deferred call. Never calls the handler. */
static void conn_kill(struct http_conn *c, bool abort)
{
    if (c->state == CS_CLOSING)
        return;
    c->state = CS_CLOSING;
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

/* The client side failed: tell a handler that still owns the request, then reset. */
static void conn_fail(struct http_conn *c, const char *why)
{
    if (c->state == CS_ACTIVE && !c->resp_done && c->req) {
        struct http_req *r = c->req;
        c->srv->st.client_aborts++;
        c->state = CS_DISCARD; /* from here on the handler does not own it */
        if (r->_cbs && r->_cbs->on_abort)
            r->_cbs->on_abort(r->_cbs_arg, r, why);
    }
    conn_kill(c, true);
}

/* A plain-text error written by the server itself (parser failures), then close. */
static void reply_and_close(struct http_conn *c, int status, const char *reason)
{
    char msg[160];
    int blen = snprintf(msg, sizeof msg, "%d %s", status, reason);
    char head[320];
    int hlen = snprintf(head, sizeof head,
                        "HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        "Connection: close\r\nContent-Length: %d\r\n\r\n%s",
                        msg, blen, msg);
    if (c->stream && hlen > 0)
        (void)nb_stream_write(c->stream, head, (size_t)hlen);
    conn_kill(c, false);
}

/* ---- timers ---- */

static void conn_timeout(struct nb_timer *t)
{
    struct http_conn *c = t->arg;
    if (c->state != CS_HEAD)
        return;
    if (c->idle)
        c->srv->st.idle_timeouts++;
    else
        c->srv->st.header_timeouts++;
    conn_kill(c, false); /* like Go's server: a head that does not arrive is closed silently */
}

/* ---- request heads ---- */

static void split_absolute(struct http_req *r)
{
    const char *t = r->target, *end = t + r->target_len;
    const char *p = memchr(t, ':', r->target_len);
    if (p == NULL || end - p < 3)
        return;
    p += 3; /* "://" (the parser checked the scheme) */
    const char *a = p;
    while (p < end && *p != '/' && *p != '?')
        p++;
    r->host = a;
    r->host_len = (size_t)(p - a);
    if (p == end || *p == '?') {
        /* "http://h" and "http://h?q" have the path "/" (RFC 9112 §3.2.2). */
        if (p < end) {
            r->query = p + 1;
            r->query_len = (size_t)(end - p - 1);
        }
        r->path = "/";
        r->path_len = 1;
        return;
    }
    r->path = p;
    r->path_len = (size_t)(end - p);
}

static void split_query(struct http_req *r)
{
    if (r->query)
        return;
    const char *q = memchr(r->path, '?', r->path_len);
    if (q) {
        r->query = q + 1;
        r->query_len = r->path_len - (size_t)(q - r->path) - 1;
        r->path_len = (size_t)(q - r->path);
    }
}

/* h1_chunked's on_trailer: the request body's trailer lines (bounded by H1_MAX_TRAILER). */
static void collect_trailer(void *arg, const char *d, size_t n)
{
    struct http_conn *c = arg;
    if (c->tlen + n > c->tcap) {
        size_t cap = c->tcap ? c->tcap * 2 : 256;
        while (cap < c->tlen + n)
            cap *= 2;
        char *nb = realloc(c->tbuf, cap);
        if (nb == NULL)
            return; /* the trailers are lost, the body is not */
        c->tbuf = nb;
        c->tcap = cap;
    }
    memcpy(c->tbuf + c->tlen, d, n);
    c->tlen += n;
}

/* Parses hbuf. Returns true when a request went to the handler or the connection ended. */
static bool try_head(struct http_conn *c)
{
    struct http_server *srv = c->srv;
    struct h1_header fields[HTTP_SERVER_MAX_HEADERS];
    struct h1_request pr = {
        .headers = fields, .max_headers = srv->opts.max_headers, .max_head = srv->opts.max_head};
    int rc = h1_parse_request(c->hbuf, c->hlen, &pr);
    if (rc == NB_E_AGAIN)
        return false;
    if (rc == NB_E_TOO_BIG) {
        srv->st.too_large++;
        reply_and_close(c, 431, "Request Header Fields Too Large");
        return true;
    }
    if (rc < 0) {
        srv->st.bad_requests++;
        reply_and_close(c, 400, "Bad Request");
        return true;
    }
    struct http_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        reply_and_close(c, 503, "Service Unavailable");
        return true;
    }
    nb_arena_init(&r->arena);
    /* Bytes after the head move to pbuf; hbuf then holds exactly the frozen head. */
    if ((uint32_t)rc < c->hlen &&
        !pend_append(c, (const uint8_t *)c->hbuf + rc, c->hlen - (uint32_t)rc)) {
        req_free(r);
        conn_kill(c, true);
        return true;
    }
    c->hlen = (uint32_t)rc;
    nb_timer_cancel(&c->timer);
    srv->st.requests++;
    c->req = r;
    r->_conn = c;
    r->method = pr.method;
    r->method_len = pr.method_len;
    r->target = pr.target;
    r->target_len = pr.target_len;
    r->path = pr.target;
    r->path_len = pr.target_len;
    r->host = pr.host;
    r->host_len = pr.host_len;
    r->minor_version = pr.minor_version;
    if (pr.target_form == H1_TARGET_ABSOLUTE) {
        split_absolute(r);
    } else if (pr.target_form == H1_TARGET_AUTHORITY) {
        r->host = pr.target;
        r->host_len = pr.target_len;
        r->path = "";
        r->path_len = 0;
    }
    split_query(r);
    http_hdrs_init(&r->hdrs, &r->arena);
    http_hdrs_init(&r->trailers, &r->arena);
    if (http_hdrs_from_h1(&r->hdrs, fields, pr.num_headers) != NB_OK) {
        conn_kill(c, true);
        return true;
    }
    r->body_chunked = pr.body == H1_BODY_CHUNKED;
    r->content_length = pr.body == H1_BODY_LENGTH ? pr.content_length : 0;
    r->has_body = r->body_chunked || r->content_length > 0;
    r->is_head = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
    const struct http_field *ex = http_hdrs_get(&r->hdrs, "expect");
    r->expect_continue =
        ex && r->minor_version >= 1 && http_ieq(ex->value, ex->value_len, "100-continue");
    size_t cl;
    const char *cv = http_hdrs_join(&r->hdrs, "connection", &cl);
    r->upgrade = cv && http_list_has(cv, cl, "upgrade") && http_hdrs_get(&r->hdrs, "upgrade");
    if (r->minor_version >= 1)
        c->keep_alive = !(cv && http_list_has(cv, cl, "close"));
    else
        c->keep_alive = cv && http_list_has(cv, cl, "keep-alive");
    r->peer = c->peer;
    if (c->stream)
        (void)nb_stream_addrs(c->stream, &r->local, NULL);
    r->info = c->info;
    r->start_ms = nb_loop_now_ms(srv->loop);

    memset(&c->chk, 0, sizeof c->chk);
    if (r->body_chunked) {
        c->chk.on_trailer = collect_trailer;
        c->chk.trailer_arg = c;
    }
    c->tlen = 0;
    c->body_left = r->content_length;
    c->body_done = !r->has_body;
    c->body_reading = c->body_end_sent = c->user_paused = false;
    c->resp_done = c->resp_started = c->resp_chunked = c->resp_no_body = false;
    c->sent_continue = false;
    c->resp_len = -1;
    c->close_after = srv->draining;
    c->state = CS_ACTIVE;
    c->idle = false;
    /* Nothing more is read until the handler asks for the body or the response is done. */
    set_paused(c, true);
    srv->handler.on_request(srv->handler.arg, r);
    return true;
}

/* ---- request bodies ---- */

/*
 * Consumes body bytes from data (mutable: chunked decoding works in place), delivering them to
 * the handler when `deliver`. Returns bytes consumed (bytes after the end of the body are left),
 * or -1 for a malformed chunked body. The handler may end or abort the request inside on_body:
 * callers re-check the state.
 */
static ssize_t body_feed(struct http_conn *c, uint8_t *data, size_t len, bool deliver)
{
    struct http_req *r = c->req;
    if (!r->body_chunked) {
        size_t n = len < c->body_left ? len : (size_t)c->body_left;
        c->body_left -= n;
        if (c->body_left == 0)
            c->body_done = true;
        if (n && deliver) {
            r->bytes_in += n;
            r->_cbs->on_body(r->_cbs_arg, r, data, n);
        }
        return (ssize_t)n;
    }
    size_t out = len;
    ssize_t rc = h1_chunked_decode(&c->chk, (char *)data, &out);
    if (rc != NB_E_AGAIN && rc < 0)
        return -1;
    size_t rest = rc == NB_E_AGAIN ? 0 : (size_t)rc;
    if (rc != NB_E_AGAIN)
        c->body_done = true;
    /* The decoder moved what followed the body to data[out, out + rest); put it back at the
     * tail, where the caller looks for unconsumed bytes, before on_body may run. */
    if (rest) {
        if (out + rest != len)
            memmove(data + len - rest, data + out, rest);
    }
    if (out && deliver) {
        r->bytes_in += out;
        r->_cbs->on_body(r->_cbs_arg, r, data, out);
    }
    return (ssize_t)(len - rest);
}

/* True while body bytes can go to the handler right now. */
static bool body_flowing(const struct http_conn *c)
{
    if (c->body_done)
        return false;
    if (c->state == CS_DISCARD)
        return true;
    return c->state == CS_ACTIVE && c->body_reading && !c->user_paused;
}

/* Feeds body from pbuf while it flows. Returns false if the connection went away. */
static bool drain_pending_body(struct http_conn *c)
{
    while (body_flowing(c) && pend_len(c) > 0) {
        bool deliver = c->state == CS_ACTIVE;
        ssize_t n = body_feed(c, c->pbuf + c->poff, pend_len(c), deliver);
        if (n < 0) {
            conn_fail(c, "malformed request body");
            return false;
        }
        c->poff += (uint32_t)n;
        if (c->state == CS_CLOSING || c->state == CS_HIJACKED)
            return false;
        if (n == 0)
            break;
    }
    return true;
}

/* The response is done and so is the body: free the request, go on with the next one. */
static void request_finish(struct http_conn *c)
{
    struct http_server *srv = c->srv;
    req_free(c->req);
    c->req = NULL;
    free(c->hbuf);
    c->hbuf = NULL;
    c->hcap = c->hlen = 0;
    free(c->tbuf);
    c->tbuf = NULL;
    c->tlen = c->tcap = 0;
    if (!c->keep_alive || c->close_after || srv->draining || c->eof) {
        conn_kill(c, false);
        return;
    }
    /* Pending bytes are the next request's head: pbuf becomes hbuf. */
    if (pend_len(c) > 0) {
        if (c->poff)
            memmove(c->pbuf, c->pbuf + c->poff, pend_len(c));
        c->hbuf = (char *)c->pbuf;
        c->hcap = c->pcap;
        c->hlen = pend_len(c);
    } else {
        free(c->pbuf);
    }
    c->pbuf = NULL;
    c->pcap = c->plen = c->poff = 0;
    c->state = CS_HEAD;
    c->idle = c->hlen == 0;
    nb_timer_arm(srv->loop, &c->timer,
                 c->idle ? srv->opts.idle_timeout_ms : srv->opts.read_header_timeout_ms);
}

/*
 * The state machine's driver: parses heads, moves buffered body bytes, finishes requests, and
 * decides whether the stream should read. Loops because one step can enable the next (a
 * finished request with a pipelined head behind it).
 */
static void conn_process(struct http_conn *c)
{
    for (int guard = 0; guard < 64; guard++) {
        switch (c->state) {
        case CS_CLOSING:
        case CS_HIJACKED:
            return;
        case CS_HEAD:
            if (c->hlen > 0 && try_head(c))
                continue;
            if (c->state == CS_HEAD) {
                if (c->eof) {
                    conn_kill(c, false);
                    return;
                }
                set_paused(c, false);
            }
            return;
        case CS_ACTIVE:
        case CS_DISCARD:
            if (!drain_pending_body(c))
                return;
            if (c->state == CS_ACTIVE && c->body_done && c->body_reading && !c->body_end_sent) {
                struct http_req *r = c->req;
                c->body_end_sent = true;
                if (c->tlen && http_hdrs_parse_lines(&r->trailers, c->tbuf, c->tlen) != NB_OK)
                    r->trailers.n = 0;
                if (r->_cbs && r->_cbs->on_body_end)
                    r->_cbs->on_body_end(r->_cbs_arg, r);
                continue; /* the handler may have ended the response */
            }
            if (c->state == CS_DISCARD) {
                if (c->body_done) {
                    request_finish(c);
                    continue;
                }
                if (c->eof || !c->keep_alive) {
                    /* Nothing more will be read on this connection: flush and close. */
                    conn_kill(c, false);
                    return;
                }
            }
            if (c->state == CS_ACTIVE && c->eof && c->body_done) {
                /* The client left (or half-closed) while its request is handled. */
                conn_fail(c, "client closed the connection");
                return;
            }
            /* Read when it can be consumed right away, or (body done, handler busy) to notice
             * the client leaving, with a small bound on pipelined bytes. */
            set_paused(
                c, !((body_flowing(c) && pend_len(c) == 0) ||
                     (c->state == CS_ACTIVE && c->body_done && pend_len(c) < PEEK_WHILE_ACTIVE)));
            if (c->eof && !c->body_done && body_flowing(c)) {
                conn_fail(c, "client closed the connection during the request body");
                return;
            }
            return;
        }
    }
    /* Pathological pipelining: continue from the loop instead of spinning here. */
    schedule(c);
}

/* ---- stream callbacks ---- */

/* Body bytes straight from the stream (no copy unless chunked). */
static void feed_direct(struct http_conn *c, const uint8_t *data, size_t len)
{
    while (len > 0 && body_flowing(c) && pend_len(c) == 0) {
        bool deliver = c->state == CS_ACTIVE;
        ssize_t n;
        size_t take;
        if (!c->req->body_chunked) {
            take = len;
            /* Content-Length bodies need no copy: on_body gets the stream's bytes. */
            n = body_feed(c, (uint8_t *)data, len, deliver);
        } else {
            if (scratch_busy)
                break; /* re-entered from inside on_body of another connection: buffer it */
            take = len < SCRATCH ? len : SCRATCH;
            memcpy(scratch, data, take);
            scratch_busy = true;
            n = body_feed(c, scratch, take, deliver);
            scratch_busy = false;
        }
        if (n < 0) {
            conn_fail(c, "malformed request body");
            return;
        }
        data += n;
        len -= (size_t)n;
        if (c->state == CS_CLOSING || c->state == CS_HIJACKED)
            return;
        if ((size_t)n < take)
            break; /* the body ended inside this piece */
    }
    if (len > 0 && !pend_append(c, data, len)) {
        conn_fail(c, "too much pipelined data");
        return;
    }
    conn_process(c);
}

static void on_data(void *arg, struct nb_stream *s, const uint8_t *data, size_t len)
{
    struct http_conn *c = arg;
    switch (c->state) {
    case CS_HEAD:
        if (c->idle) {
            c->idle = false;
            nb_timer_arm(c->srv->loop, &c->timer, c->srv->opts.read_header_timeout_ms);
        }
        if (c->hlen + len > c->hcap) {
            size_t limit = (size_t)c->srv->opts.max_head + 65536u;
            size_t want = (size_t)c->hlen + len;
            if (want > limit) {
                c->srv->st.too_large++;
                reply_and_close(c, 431, "Request Header Fields Too Large");
                return;
            }
            size_t cap = c->hcap ? c->hcap : 2048u;
            while (cap < want)
                cap *= 2;
            char *nb = realloc(c->hbuf, cap);
            if (nb == NULL) {
                conn_kill(c, true);
                return;
            }
            c->hbuf = nb;
            c->hcap = (uint32_t)cap;
        }
        memcpy(c->hbuf + c->hlen, data, len);
        c->hlen += (uint32_t)len;
        conn_process(c);
        return;
    case CS_ACTIVE:
    case CS_DISCARD:
        feed_direct(c, data, len);
        return;
    case CS_CLOSING:
    case CS_HIJACKED:
        return;
    }
}

static void on_eof(void *arg, struct nb_stream *s)
{
    struct http_conn *c = arg;
    c->eof = true;
    conn_process(c);
}

static void on_drain(void *arg, struct nb_stream *s)
{
    struct http_conn *c = arg;
    if (c->state == CS_ACTIVE && !c->resp_done && c->req->_cbs && c->req->_cbs->on_drain)
        c->req->_cbs->on_drain(c->req->_cbs_arg, c->req);
}

static void on_error(void *arg, struct nb_stream *s, const char *err)
{
    conn_fail(arg, err);
}

static const struct nb_stream_cbs conn_cbs = {
    .on_data = on_data,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_error = on_error,
};

/* ---- server ---- */

struct http_server *http_server_new(struct nb_loop *loop, const struct http_server_opts *opts,
                                    const struct http_handler *handler)
{
    struct http_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return NULL;
    srv->loop = loop;
    if (opts)
        srv->opts = *opts;
    if (srv->opts.read_header_timeout_ms == 0)
        srv->opts.read_header_timeout_ms = DEFAULT_HEADER_TIMEOUT_MS;
    if (srv->opts.idle_timeout_ms == 0)
        srv->opts.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
    if (srv->opts.max_head == 0)
        srv->opts.max_head = HTTP_SERVER_MAX_HEAD;
    if (srv->opts.max_headers == 0 || srv->opts.max_headers > HTTP_SERVER_MAX_HEADERS)
        srv->opts.max_headers = HTTP_SERVER_MAX_HEADERS;
    srv->handler = *handler;
    return srv;
}

void http_server_free(struct http_server *srv)
{
    if (srv == NULL)
        return;
    while (srv->conns)
        conn_fail(srv->conns, "server stopped");
    h2_server_free_all(srv);
    free(srv);
}

int http_server_accept(struct http_server *srv, struct nb_stream *s,
                       const struct http_conn_info *info)
{
    if (srv->draining || (srv->opts.max_conns && srv->nconns >= srv->opts.max_conns)) {
        srv->st.conns_rejected++;
        nb_stream_close(s, true);
        return NB_E_CLOSED;
    }
    struct http_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        srv->st.conns_rejected++;
        nb_stream_close(s, true);
        return NB_E_NOMEM;
    }
    c->srv = srv;
    c->stream = s;
    c->state = CS_HEAD;
    c->resp_len = -1;
    if (info)
        c->info = *info;
    (void)nb_stream_addrs(s, NULL, &c->peer);
    nb_timer_init(&c->timer, conn_timeout, c);
    nb_timer_arm(srv->loop, &c->timer, srv->opts.read_header_timeout_ms);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->pprev = &c->next;
    srv->conns = c;
    c->pprev = &srv->conns;
    srv->nconns++;
    srv->st.conns_accepted++;
    nb_stream_set_cbs(s, &conn_cbs, c);
    return NB_OK;
}

void http_server_accept_cb(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    struct http_listener_ctx *ctx = arg;
    (void)http_server_accept(ctx->server, s, &ctx->info);
}

void http_server_drain(struct http_server *srv)
{
    srv->draining = true;
    struct http_conn *c = srv->conns;
    while (c) {
        struct http_conn *next = c->next;
        if (c->state == CS_HEAD && c->hlen == 0)
            conn_kill(c, false);
        else
            c->close_after = true;
        c = next;
    }
    h2_server_drain(srv);
}

uint32_t http_server_conns(const struct http_server *srv)
{
    return srv->nconns;
}

void http_server_stats(const struct http_server *srv, struct http_server_stats *st)
{
    *st = srv->st;
}

/* ---- the handler's side ---- */

void http_req_set_cbs(struct http_req *req, const struct http_req_cbs *cbs, void *arg)
{
    req->_cbs = cbs;
    req->_cbs_arg = arg;
}

static bool owned(const struct http_req *req)
{
    const struct http_conn *c = req->_conn;
    return c->state == CS_ACTIVE && !c->resp_done;
}

void http_req_read_body(struct http_req *req)
{
    if (req->_h2) {
        h2_req_read_body(req);
        return;
    }
    struct http_conn *c = req->_conn;
    if (!owned(req) || c->body_reading)
        return;
    c->body_reading = true;
    if (req->expect_continue && !c->body_done && !c->sent_continue && !c->resp_started &&
        c->stream) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        c->sent_continue = true;
        (void)nb_stream_write(c->stream, cont, sizeof cont - 1);
    }
    schedule(c);
}

void http_req_pause_body(struct http_req *req, bool paused)
{
    if (req->_h2) {
        h2_req_pause_body(req, paused);
        return;
    }
    struct http_conn *c = req->_conn;
    if (!owned(req) || c->user_paused == paused)
        return;
    c->user_paused = paused;
    if (paused)
        set_paused(c, true);
    else
        schedule(c);
}

const char *http_date_now(struct nb_loop *loop)
{
    static char buf[40];
    static time_t cached = -1;
    time_t now = time(NULL);
    if (now != cached) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached = now;
    }
    return buf;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 102:
        return "Processing";
    case 103:
        return "Early Hints";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 207:
        return "Multi-Status";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Request Entity Too Large";
    case 414:
        return "Request URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Requested Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Entity";
    case 425:
        return "Too Early";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 451:
        return "Unavailable For Legal Reasons";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "";
    }
}

/* Head formatting without snprintf (it showed in the 100 B profile, docs/benchmarks.md 5.4):
 * the caller has sized buf. */
static void put_str(char *buf, size_t *w, const char *s, size_t n)
{
    memcpy(buf + *w, s, n);
    *w += n;
}

#define put_lit(buf, w, lit) put_str(buf, w, lit, sizeof(lit) - 1)

static void put_u64(char *buf, size_t *w, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        buf[(*w)++] = tmp[--n];
}

/* Writes "HTTP/1.1 <status> <reason>\r\n" + fields + extra + "\r\n" as one buffer. */
static int write_head(struct http_conn *c, int status, const struct http_hdrs *hdrs,
                      const char *extra, size_t extra_len)
{
    struct http_req *r = c->req;
    const char *reason = reason_phrase(status);
    size_t total = 32 + strlen(reason) + (hdrs ? http_hdrs_wire_len(hdrs) : 0) + extra_len + 2;
    char *buf = nb_arena_alloc(&r->arena, total);
    if (buf == NULL)
        return NB_E_NOMEM;
    size_t w = 0;
    put_lit(buf, &w, "HTTP/1.1 ");
    put_u64(buf, &w, (uint64_t)status);
    buf[w++] = ' ';
    put_str(buf, &w, reason, strlen(reason));
    put_lit(buf, &w, "\r\n");
    if (hdrs)
        w += http_hdrs_write(hdrs, buf + w);
    memcpy(buf + w, extra, extra_len);
    w += extra_len;
    buf[w++] = '\r';
    buf[w++] = '\n';
    if (c->stream == NULL)
        return NB_E_CLOSED;
    return nb_stream_write(c->stream, buf, w);
}

int http_resp_head(struct http_req *req, int status, const struct http_hdrs *hdrs,
                   int64_t content_length)
{
    if (req->_h2)
        return h2_resp_head(req, status, hdrs, content_length);
    struct http_conn *c = req->_conn;
    if (!owned(req) || c->resp_started || status < 100 || status > 999)
        return NB_E_INVAL;
    if (status < 200 && status != 101) {
        /* Interim (103 Early Hints...): HTTP/1.0 clients do not get them; a 100 is ours to
         * send (http_req_read_body), never the backend's. */
        if (req->minor_version == 0 || status == 100)
            return NB_OK;
        return write_head(c, status, hdrs, "", 0);
    }
    req->status = status;
    c->resp_started = true;
    if (status == 101)
        return write_head(c, status, hdrs, "", 0);

    char extra[160];
    size_t el = 0;
    const struct http_field *date = hdrs ? http_hdrs_get(hdrs, "date") : NULL;
    if (date == NULL) {
        const char *d = http_date_now(c->srv->loop);
        put_lit(extra, &el, "Date: ");
        put_str(extra, &el, d, strlen(d));
        put_lit(extra, &el, "\r\n");
    }
    c->resp_no_body = req->is_head || status == 204 || status == 304;
    c->resp_len = content_length;
    if (status == 204 || status == 304) {
        c->resp_len = -1;
    } else if (content_length >= 0) {
        put_lit(extra, &el, "Content-Length: ");
        put_u64(extra, &el, (uint64_t)content_length);
        put_lit(extra, &el, "\r\n");
    } else if (!c->resp_no_body) {
        if (req->minor_version >= 1) {
            c->resp_chunked = true;
            put_lit(extra, &el, "Transfer-Encoding: chunked\r\n");
        } else {
            c->keep_alive = false; /* HTTP/1.0: the end of the body is the end of the stream */
        }
    }
    /* A large or unbounded unread request body cannot be skipped cheaply: close after. */
    if (!c->body_done && (req->body_chunked || c->body_left > HTTP_SERVER_DISCARD_MAX))
        c->close_after = true;
    if (c->close_after || c->srv->draining || c->eof)
        c->keep_alive = false;
    if (!c->keep_alive)
        put_lit(extra, &el, "Connection: close\r\n");
    else if (req->minor_version == 0)
        put_lit(extra, &el, "Connection: keep-alive\r\n");
    if (c->srv->opts.server_header && (hdrs == NULL || !http_hdrs_get(hdrs, "server"))) {
        size_t sl = strlen(c->srv->opts.server_header);
        if (sl <= sizeof extra - el - 10) { /* "Server: " + CRLF; the rest is at most 130 */
            put_lit(extra, &el, "Server: ");
            put_str(extra, &el, c->srv->opts.server_header, sl);
            put_lit(extra, &el, "\r\n");
        }
    }
    return write_head(c, status, hdrs, extra, el);
}

int http_resp_body(struct http_req *req, const void *data, size_t len)
{
    if (req->_h2)
        return h2_resp_body(req, data, len);
    struct http_conn *c = req->_conn;
    if (!owned(req) || !c->resp_started)
        return NB_E_INVAL;
    if (len == 0 || c->resp_no_body)
        return NB_OK;
    if (c->stream == NULL)
        return NB_E_CLOSED;
    if (c->resp_len >= 0 && req->bytes_out + len > (uint64_t)c->resp_len)
        return NB_E_INVAL; /* more than declared: never send it */
    int rc;
    if (c->resp_chunked) {
        char hdr[24];
        int n = snprintf(hdr, sizeof hdr, "%zx\r\n", len);
        if ((rc = nb_stream_write(c->stream, hdr, (size_t)n)) != NB_OK ||
            (rc = nb_stream_write(c->stream, data, len)) != NB_OK ||
            (rc = nb_stream_write(c->stream, "\r\n", 2)) != NB_OK)
            return rc;
    } else if ((rc = nb_stream_write(c->stream, data, len)) != NB_OK) {
        return rc;
    }
    req->bytes_out += len;
    return NB_OK;
}

bool http_resp_write_full(const struct http_req *req)
{
    if (req->_h2)
        return h2_resp_write_full(req);
    const struct http_conn *c = req->_conn;
    return c->stream && nb_stream_write_full(c->stream);
}

void http_resp_end(struct http_req *req)
{
    http_resp_end_trailers(req, NULL);
}

void http_resp_end_trailers(struct http_req *req, const struct http_hdrs *trailers)
{
    if (req->_h2) {
        h2_resp_end_trailers(req, trailers);
        return;
    }
    struct http_conn *c = req->_conn;
    if (!owned(req))
        return;
    if (!c->resp_started) {
        http_resp_abort(req);
        return;
    }
    if (!c->resp_no_body && c->resp_len >= 0 && req->bytes_out != (uint64_t)c->resp_len) {
        http_resp_abort(req); /* short body: the client must see a truncated response */
        return;
    }
    if (c->resp_chunked && c->stream) {
        size_t tl = trailers ? http_hdrs_wire_len(trailers) : 0;
        char *buf = tl ? nb_arena_alloc(&req->arena, tl + 5) : NULL;
        if (buf) {
            memcpy(buf, "0\r\n", 3);
            size_t w = 3 + http_hdrs_write(trailers, buf + 3);
            memcpy(buf + w, "\r\n", 2);
            (void)nb_stream_write(c->stream, buf, w + 2);
        } else {
            (void)nb_stream_write(c->stream, "0\r\n\r\n", 5);
        }
    }
    /* The handler is done: whatever is left of the body is dropped from here on (also when
     * this runs inside on_body, whose caller then keeps feeding with delivery off). */
    c->resp_done = true;
    c->state = CS_DISCARD;
    schedule(c);
}

void http_resp_abort(struct http_req *req)
{
    if (req->_h2) {
        h2_resp_abort(req);
        return;
    }
    struct http_conn *c = req->_conn;
    if (!owned(req))
        return;
    c->resp_done = true;
    conn_kill(c, true);
}

void http_resp_close_after(struct http_req *req)
{
    if (req->_h2) {
        h2_resp_close_after(req);
        return;
    }
    req->_conn->close_after = true;
}

int http_resp_simple(struct http_req *req, int status, const char *content_type,
                     const struct http_hdrs *extra, const void *body, size_t len)
{
    struct http_hdrs h;
    http_hdrs_init(&h, &req->arena);
    for (uint32_t i = 0; extra && i < extra->n; i++)
        if (http_hdrs_add(&h, extra->v[i].name, extra->v[i].name_len, extra->v[i].value,
                          extra->v[i].value_len) != NB_OK)
            return NB_E_NOMEM;
    if (content_type &&
        http_hdrs_add(&h, "Content-Type", 12, content_type, strlen(content_type)) != NB_OK)
        return NB_E_NOMEM;
    int rc = http_resp_head(req, status, &h, (int64_t)len);
    if (rc == NB_OK)
        rc = http_resp_body(req, body, len);
    if (rc == NB_OK)
        http_resp_end(req);
    else
        http_resp_abort(req);
    return rc;
}

struct nb_stream *http_req_hijack(struct http_req *req, const uint8_t **leftover,
                                  size_t *leftover_len)
{
    if (req->_h2)
        return NULL; /* no Upgrade over HTTP/2 (RFC 9113 §8.6) */
    struct http_conn *c = req->_conn;
    if (!owned(req) || req->status != 101 || c->stream == NULL)
        return NULL;
    struct nb_stream *s = c->stream;
    c->stream = NULL;
    c->srv->st.upgrades++;
    *leftover = pend_len(c) ? c->pbuf + c->poff : NULL;
    *leftover_len = pend_len(c);
    nb_stream_set_cbs(s, NULL, NULL);
    c->resp_done = true;
    /* Free the connection (and with it the leftover bytes) from the loop, after the caller
     * forwarded them. */
    conn_kill(c, false);
    c->state = CS_HIJACKED;
    return s;
}
