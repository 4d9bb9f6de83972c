/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * gRPC client channel on nghttp2 over an nb_stream (grpc.h). Place in the pipeline: the
 * management lifecycle (SyncMappings, status updates, access logs) starts calls here; this file
 * owns the HTTP/2 connection to management and turns its frames into whole messages and final
 * statuses; grpc_frame.c does the pure gRPC wire work.
 *
 * nghttp2 runs "in memory": bytes from the stream go to nghttp2_session_mem_recv(), and
 * nghttp2_session_mem_send() output goes to nb_stream_write() only while the stream is below its
 * high-water mark (the rest waits in nghttp2 until on_drain). Receive flow control is manual
 * (NO_AUTO_WINDOW_UPDATE): the connection window is reopened as soon as bytes arrive, a stream's
 * window only once its bytes have been decoded into messages, so a paused call holds at most
 * one stream window (STREAM_WINDOW) and never starves the others.
 *
 * Callback discipline (house style §8.22-23): nghttp2's callbacks only record what happened in
 * the call objects and put them on a pending list; every owner callback runs from one place,
 * the channel's deferred "kick" (ch_kick), outside nghttp2 and outside any API call. The kick
 * holds the channel busy, so an owner freeing the channel from a callback only tears down the
 * I/O; the memory goes when the kick unwinds. Calls are freed only by the kick's reaper.
 */
#include "mgmt/grpc.h"
#include "platform/addr.h"
#include "platform/bufq.h"
#include "platform/dns.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"
#include "platform/sock.h"
#include "tls/tls.h"

#include <nghttp2/nghttp2.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MOD "mgmt"

#define DEFAULT_CONNECT_TIMEOUT   20000u
#define DEFAULT_KEEPALIVE         20000u
#define DEFAULT_KEEPALIVE_TIMEOUT 10000u
#define STREAM_WINDOW             (1u << 20)  /* per call: what a paused call may buffer */
#define CONN_WINDOW               (32u << 20) /* reopened as bytes arrive */
#define SEND_HIGH                 (256u * 1024u)
#define SEND_LOW                  (64u * 1024u)
#define STATUS_MSG_MAX            1024u
#define PATH_MAX_LEN              512u
#define KICK_ROUNDS               16 /* dispatch/flush rounds per kick before yielding */
#define DEFAULT_USER_AGENT        "nbproxy/" NB_MGMT_VERSION " grpc-c"

const char mgmt_grpc_err_tls_unavailable[] =
    "TLS management connections need the TLS stream (not built yet)";
const char mgmt_grpc_err_insecure[] =
    "refusing to send the management token over a plaintext (http://) connection: use an "
    "https:// management URL or set NB_PROXY_ALLOW_INSECURE=true";
const char mgmt_grpc_err_connect_timeout[] = "timed out connecting to management";
const char mgmt_grpc_err_keepalive[] = "keepalive ping not acknowledged in time";
const char mgmt_grpc_err_eof[] = "connection closed by the management server";
const char mgmt_grpc_err_goaway[] = "the management server sent GOAWAY";
const char mgmt_grpc_err_protocol[] = "HTTP/2 protocol error";
const char mgmt_grpc_err_nomem[] = "out of memory";
const char mgmt_grpc_err_deadline[] = "deadline exceeded";

static const char err_no_authority[] = "management authority missing";
static const char err_no_address[] = "management address missing";
static const char err_need_dns[] = "a management host name needs a resolver";
static const char err_dial[] = "cannot dial management";
static const char err_going_away[] = "the management server is going away (GOAWAY)";

struct mgmt_call {
    struct mgmt_grpc *ch;
    struct mgmt_call *next, *prev; /* ch->calls */
    struct mgmt_call *pnext;       /* ch->pending */
    bool pending;
    const struct mgmt_call_cbs *cbs;
    void *arg;
    char *path;
    int32_t sid;          /* HTTP/2 stream id; 0 until submitted */
    uint64_t deadline_at; /* nb_loop_now_ms() time, 0 = none */
    struct nb_timer timer;
    /* sending */
    struct nb_bufq sq; /* framed messages nghttp2 has not taken yet */
    bool send_closed;  /* close_send() called */
    bool deferred;     /* the data provider is parked (NGHTTP2_ERR_DEFERRED) */
    bool send_full;    /* sq reached SEND_HIGH; on_drain due at SEND_LOW */
    bool want_drain;
    /* receiving */
    struct nb_bufq rq; /* DATA not decoded yet; its stream window is still closed */
    uint32_t drop;     /* DATA bytes dropped (not a gRPC body) whose window must reopen */
    struct mgmt_grpc_dec dec;
    uint8_t *msg; /* the message being assembled */
    uint32_t msg_len;
    uint32_t msg_have;
    bool paused;
    int http_status; /* final :status, 0 until the response head */
    bool ct_ok;      /* content-type application/grpc seen */
    bool have_status;
    bool bad_status; /* grpc-status present but malformed */
    int status_code;
    char *status_msg;  /* grpc-message, decoded */
    bool remote_end;   /* END_STREAM received: the server finished the call */
    bool h2_closed;    /* nghttp2 closed the stream (or the session is gone) */
    uint32_t h2_error; /* RST_STREAM / close error code */
    /* the end */
    bool ended; /* final status decided: nothing more is sent or delivered */
    int end_code;
    const char *end_text; /* static, status_msg or end_owned */
    char *end_owned;
    bool dead; /* on_close delivered or cancelled: no callback; reaped by the kick */
};

struct mgmt_grpc {
    struct nb_loop *loop;
    mgmt_grpc_state_fn on_state;
    void *arg;
    enum mgmt_grpc_state state;
    /* configuration (copies) */
    char *authority;
    char *host;
    char *user_agent;
    char *auth; /* "Bearer <token>": the one copy of the token; wiped on free */
    size_t auth_len;
    bool tls;
    bool allow_insecure;
    uint16_t port;
    struct nb_dns *dns;
    const struct nb_dialer *dialer;
    uint32_t connect_timeout_ms;
    uint32_t keepalive_ms;
    uint32_t keepalive_timeout_ms;
    uint32_t max_recv;
    uint32_t max_send;
    /* connecting */
    struct sockaddr_storage addrs[NB_DNS_MAX_ADDRS];
    size_t naddrs;
    size_t addr_i;
    const char *last_err;
    struct nb_dns_query *dq;
    /* the connection */
    struct nb_stream *s;
    nghttp2_session *h2;
    size_t conn_consume; /* DATA bytes whose connection window is to reopen */
    uint64_t last_read_ms;
    bool ka_waiting; /* a keepalive PING is out */
    struct nb_timer conn_timer;
    struct nb_timer ka_timer;
    struct nb_defer start_d;
    struct nb_defer kick_d;
    /* calls */
    struct mgmt_call *calls, *calls_tail; /* in start order: submitted in that order */
    struct mgmt_call *pending, *pending_tail;
    /* state reports due */
    bool notify_ready;
    bool notify_goaway;
    bool notify_failed;
    const char *fail_reason;
    int busy;     /* inside ch_kick: owner callbacks may run */
    bool closing; /* mgmt_grpc_free() called */
    struct mgmt_grpc_stats st;
};

static size_t calls_live;

static const struct nb_stream_cbs stream_cbs;
static void ch_fail(struct mgmt_grpc *ch, const char *reason);
static void ch_kick(struct mgmt_grpc *ch);

size_t mgmt_grpc_calls_live(void)
{
    return calls_live;
}

/* ---- calls: bookkeeping ---- */

static void pending_add(struct mgmt_call *c)
{
    struct mgmt_grpc *ch = c->ch;
    if (c->pending || c->dead)
        return;
    c->pending = true;
    c->pnext = NULL;
    if (ch->pending_tail)
        ch->pending_tail->pnext = c;
    else
        ch->pending = c;
    ch->pending_tail = c;
}

static struct mgmt_call *pending_pop(struct mgmt_grpc *ch)
{
    struct mgmt_call *c = ch->pending;
    if (c == NULL)
        return NULL;
    ch->pending = c->pnext;
    if (ch->pending == NULL)
        ch->pending_tail = NULL;
    c->pending = false;
    c->pnext = NULL;
    return c;
}

static void call_free(struct mgmt_call *c)
{
    struct mgmt_grpc *ch = c->ch;
    if (c->prev)
        c->prev->next = c->next;
    else
        ch->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        ch->calls_tail = c->prev;
    if (c->pending) { /* unlink from the pending list (rare: reaped while queued) */
        struct mgmt_call **pp = &ch->pending, *prev = NULL;
        while (*pp && *pp != c) {
            prev = *pp;
            pp = &(*pp)->pnext;
        }
        if (*pp) {
            *pp = c->pnext;
            if (ch->pending_tail == c)
                ch->pending_tail = prev;
        }
    }
    nb_timer_cancel(&c->timer);
    nb_bufq_clear(&c->sq);
    nb_bufq_clear(&c->rq);
    free(c->msg);
    free(c->path);
    free(c->status_msg);
    free(c->end_owned);
    free(c);
    calls_live--;
    ch->st.calls_live--;
}

/* Reopens `n` bytes of the call's stream window (decoded or dropped DATA). */
static void stream_consume(struct mgmt_call *c, size_t n)
{
    struct mgmt_grpc *ch = c->ch;
    if (n && ch->h2 && c->sid > 0 && !c->h2_closed)
        (void)nghttp2_session_consume_stream(ch->h2, c->sid, n);
}

/*
 * Decides the call's final status locally (deadline, limits, channel failure, refusal). The
 * stream, if sent, is reset with CANCEL; on_close follows from the kick. `text` is static or
 * copied (copy true). Safe inside nghttp2 callbacks (only submits).
 */
static void call_end_rst(struct mgmt_call *c, int code, const char *text, bool copy, uint32_t rst)
{
    struct mgmt_grpc *ch = c->ch;
    if (c->ended || c->dead)
        return;
    c->ended = true;
    c->end_code = code;
    c->end_text = text;
    if (copy && (c->end_owned = strdup(text)) != NULL)
        c->end_text = c->end_owned;
    else if (copy)
        c->end_text = mgmt_grpc_err_nomem;
    if (ch->h2 && c->sid > 0 && !c->h2_closed)
        (void)nghttp2_submit_rst_stream(ch->h2, NGHTTP2_FLAG_NONE, c->sid, rst);
    nb_timer_cancel(&c->timer);
    nb_bufq_clear(&c->sq);
    nb_bufq_clear(&c->rq);
    free(c->msg);
    c->msg = NULL;
    pending_add(c);
}

static void call_end(struct mgmt_call *c, int code, const char *text, bool copy)
{
    /* We give up on a call the server may still be working on: CANCEL. */
    call_end_rst(c, code, text, copy, c->remote_end ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL);
}

/* The final status of a stream the server closed, once its messages are delivered. */
static void call_end_remote(struct mgmt_call *c)
{
    char buf[96];

    if (c->h2_closed && c->h2_error != NGHTTP2_NO_ERROR && !c->have_status) {
        /* After a GOAWAY, a reset without a status is the server going away (grpc-js's
         * forceShutdown() resets with CANCEL): UNAVAILABLE, so the owner reconnects. */
        bool going = c->ch->state == MGMT_GRPC_GOAWAY;
        snprintf(buf, sizeof buf, "stream reset by the server%s: %s", going ? " after GOAWAY" : "",
                 nghttp2_http2_strerror(c->h2_error));
        call_end(c, going ? MGMT_GRPC_UNAVAILABLE : mgmt_grpc_code_from_h2(c->h2_error), buf, true);
    } else if (c->http_status != 200) {
        if (c->http_status == 0)
            call_end(c, MGMT_GRPC_INTERNAL, "stream closed before the response head", false);
        else {
            snprintf(buf, sizeof buf, "unexpected HTTP status %d from the server", c->http_status);
            call_end(c, mgmt_grpc_code_from_http(c->http_status), buf, true);
        }
    } else if (!c->ct_ok) {
        call_end(c, MGMT_GRPC_UNKNOWN, "not a gRPC response (content-type)", false);
    } else if (c->bad_status) {
        call_end(c, MGMT_GRPC_INTERNAL, "malformed grpc-status", false);
    } else if (!c->have_status) {
        call_end(c, MGMT_GRPC_INTERNAL, "server closed the stream without sending trailers", false);
    } else if (c->status_code == MGMT_GRPC_OK && !mgmt_grpc_dec_at_boundary(&c->dec)) {
        call_end(c, MGMT_GRPC_INTERNAL, "stream ended inside a message", false);
    } else {
        /* The server finished; if our side is still open (a bidi or client-streaming call we
         * never half-closed) the stream is reset with NO_ERROR, as grpc-go does. */
        call_end_rst(c, c->status_code, c->status_msg ? c->status_msg : "", false,
                     NGHTTP2_NO_ERROR);
    }
}

static void call_deadline_cb(struct nb_timer *t)
{
    struct mgmt_call *c = t->arg;
    call_end(c, MGMT_GRPC_DEADLINE_EXCEEDED, mgmt_grpc_err_deadline, false);
    ch_kick(c->ch);
}

/* ---- calls: submission ---- */

static ssize_t data_read_cb(nghttp2_session *h2, int32_t sid, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct mgmt_call *c = nghttp2_session_get_stream_user_data(h2, sid);
    size_t n = 0;

    if (c == NULL || c->ended || c->dead)
        return NGHTTP2_ERR_DEFERRED; /* a reset is queued; it closes the stream */
    while (n < len && c->sq.len) {
        size_t avail;
        const uint8_t *p = nb_bufq_peek(&c->sq, &avail);
        size_t k = avail < len - n ? avail : len - n;
        memcpy(buf + n, p, k);
        nb_bufq_consume(&c->sq, k);
        n += k;
    }
    if (c->send_full && c->sq.len <= SEND_LOW) {
        c->send_full = false;
        c->want_drain = true;
        pending_add(c);
    }
    if (c->sq.len == 0 && c->send_closed) {
        *flags |= NGHTTP2_DATA_FLAG_EOF; /* half-close: END_STREAM, no trailers */
        return (ssize_t)n;
    }
    if (n == 0) {
        c->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

#define NV(n, v, f)                                                   \
    (nghttp2_nv)                                                      \
    {                                                                 \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), (f) \
    }

/* Sends the request head (PROTOCOL-HTTP2.md "Requests") and attaches the message queue. */
static void call_submit(struct mgmt_call *c)
{
    struct mgmt_grpc *ch = c->ch;
    nghttp2_nv nva[9];
    size_t n = 0;
    char timeout[MGMT_GRPC_TIMEOUT_MAX];
    nghttp2_data_provider dp = {.source.ptr = NULL, .read_callback = data_read_cb};

    if (c->deadline_at) {
        uint64_t now = nb_loop_now_ms(ch->loop);
        if (now >= c->deadline_at) {
            call_end(c, MGMT_GRPC_DEADLINE_EXCEEDED, mgmt_grpc_err_deadline, false);
            return;
        }
        mgmt_grpc_timeout_encode(c->deadline_at - now, timeout);
    }
    nva[n++] = NV(":method", "POST", NGHTTP2_NV_FLAG_NONE);
    nva[n++] = NV(":scheme", ch->tls ? "https" : "http", NGHTTP2_NV_FLAG_NONE);
    nva[n++] = NV(":path", c->path, NGHTTP2_NV_FLAG_NONE);
    nva[n++] = NV(":authority", ch->authority, NGHTTP2_NV_FLAG_NONE);
    nva[n++] = NV("content-type", "application/grpc", NGHTTP2_NV_FLAG_NONE);
    nva[n++] = NV("te", "trailers", NGHTTP2_NV_FLAG_NONE);
    nva[n++] = NV("user-agent", ch->user_agent, NGHTTP2_NV_FLAG_NONE);
    if (c->deadline_at)
        nva[n++] = NV("grpc-timeout", timeout, NGHTTP2_NV_FLAG_NONE);
    if (ch->auth) {
        /* Never HPACK-indexed (RFC 7541 §7.1.3), and not copied by nghttp2: the channel's
         * buffer outlives the session. */
        nva[n] =
            NV("authorization", ch->auth, NGHTTP2_NV_FLAG_NO_INDEX | NGHTTP2_NV_FLAG_NO_COPY_VALUE);
        nva[n++].valuelen = ch->auth_len;
    }
    int32_t sid = nghttp2_submit_request(ch->h2, NULL, nva, n, &dp, c);
    if (sid < 0) {
        call_end(c, sid == NGHTTP2_ERR_NOMEM ? MGMT_GRPC_RESOURCE_EXHAUSTED : MGMT_GRPC_UNAVAILABLE,
                 nghttp2_strerror(sid), false);
        return;
    }
    c->sid = sid;
    nb_trace(MOD, "call %s on stream %d", c->path, (int)sid);
}

/* ---- calls: delivery (from the kick only) ---- */

/* After an owner callback: false when the call or the channel went away meanwhile. */
#define CALLBACK_ALIVE(c) (!(c)->dead && !(c)->ch->closing)

static void call_deliver_messages(struct mgmt_call *c)
{
    struct mgmt_grpc *ch = c->ch;

    while (!c->paused && !c->ended && !c->dead) {
        size_t n = 0;
        const uint8_t *p = nb_bufq_peek(&c->rq, &n);
        struct mgmt_grpc_dec_ev ev;
        ssize_t r = mgmt_grpc_dec_feed(&c->dec, p, n, &ev);
        if (r < 0) {
            if (r == NB_E_TOO_BIG) {
                char buf[96];
                snprintf(buf, sizeof buf, "received message larger than max (%u bytes)",
                         ch->max_recv);
                call_end(c, MGMT_GRPC_RESOURCE_EXHAUSTED, buf, true);
            } else {
                call_end(c, MGMT_GRPC_INTERNAL,
                         r == NB_E_UNSUPPORTED ? "compressed message received, but no "
                                                 "grpc-encoding was negotiated"
                                               : "malformed message prefix",
                         false);
            }
            return;
        }
        /* ev.data points into the queue's chunk: copy it out before consuming (consuming
         * may free the chunk). */
        if (ev.kind == MGMT_GRPC_DEC_DATA) {
            memcpy(c->msg + c->msg_have, ev.data, ev.len);
            c->msg_have += (uint32_t)ev.len;
        }
        if (r > 0) {
            nb_bufq_consume(&c->rq, (size_t)r);
            stream_consume(c, (size_t)r);
        }
        switch (ev.kind) {
        case MGMT_GRPC_DEC_NONE:
            if (n == 0)
                return; /* nothing buffered */
            break;
        case MGMT_GRPC_DEC_BEGIN:
            c->msg = malloc(ev.msg_len ? ev.msg_len : 1);
            if (c->msg == NULL) {
                call_end(c, MGMT_GRPC_RESOURCE_EXHAUSTED, mgmt_grpc_err_nomem, false);
                return;
            }
            c->msg_len = ev.msg_len;
            c->msg_have = 0;
            break;
        case MGMT_GRPC_DEC_DATA:
            break; /* copied above */
        case MGMT_GRPC_DEC_END: {
            uint8_t *m = c->msg;
            c->msg = NULL;
            ch->st.msgs_received++;
            if (c->cbs->on_message)
                c->cbs->on_message(c->arg, c, m, c->msg_len);
            free(m);
            if (!CALLBACK_ALIVE(c))
                return;
            break;
        }
        }
    }
}

static void call_progress(struct mgmt_call *c)
{
    struct mgmt_grpc *ch = c->ch;

    if (c->dead)
        return;
    if (c->drop) {
        stream_consume(c, c->drop);
        c->drop = 0;
    }
    if (c->want_drain && !c->ended) {
        c->want_drain = false;
        if (c->cbs->on_drain) {
            c->cbs->on_drain(c->arg, c);
            if (!CALLBACK_ALIVE(c))
                return;
        }
    }
    if (!c->ended) {
        call_deliver_messages(c);
        if (!CALLBACK_ALIVE(c))
            return;
        /* A reset loses what is still buffered; a clean end waits until every message is
         * delivered (not paused and nothing buffered: the decoder reported its last END). */
        if (!c->ended && ((c->h2_closed && c->h2_error != NGHTTP2_NO_ERROR) ||
                          ((c->remote_end || c->h2_closed) && !c->paused && c->rq.len == 0)))
            call_end_remote(c);
    }
    if (c->ended) {
        c->dead = true;
        if (c->end_code == MGMT_GRPC_OK)
            ch->st.calls_ok++;
        else
            ch->st.calls_failed++;
        nb_debug(MOD, "call %s ended: %s: %s", c->path, mgmt_grpc_code_name(c->end_code),
                 c->end_text);
        c->cbs->on_close(c->arg, c, c->end_code, c->end_text);
    }
}

/* ---- nghttp2 callbacks: record only ---- */

static int on_header_cb(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *ud)
{
    struct mgmt_call *c;

    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    c = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
    if (c == NULL || c->ended || c->dead)
        return 0;
#define IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, sizeof(lit) - 1) == 0)
    if (IS(":status")) {
        int st = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++)
            st = st * 10 + (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
        /* 1xx heads are interim (RFC 9113 §8.1): the final one follows */
        c->http_status = st >= 100 && st < 200 ? 0 : st;
    } else if (IS("content-type")) {
        c->ct_ok = mgmt_grpc_content_type_ok((const char *)value, valuelen);
    } else if (IS("grpc-status")) {
        int code;
        if (mgmt_grpc_status_parse((const char *)value, valuelen, &code) == NB_OK) {
            c->have_status = true;
            c->bad_status = false;
            c->status_code = code;
        } else {
            c->bad_status = true;
        }
    } else if (IS("grpc-message")) {
        char *m = malloc(STATUS_MSG_MAX);
        if (m) {
            mgmt_grpc_message_decode((const char *)value, valuelen, m, STATUS_MSG_MAX);
            free(c->status_msg);
            c->status_msg = m;
        }
    }
#undef IS
    return 0;
}

static int on_data_chunk_cb(nghttp2_session *h2, uint8_t flags, int32_t sid, const uint8_t *data,
                            size_t len, void *ud)
{
    struct mgmt_grpc *ch = ud;
    struct mgmt_call *c = nghttp2_session_get_stream_user_data(h2, sid);

    ch->conn_consume += len;
    if (c == NULL || c->ended || c->dead)
        return 0;
    if (c->http_status != 200 || !c->ct_ok) {
        c->drop += (uint32_t)len; /* an error page, not messages */
        pending_add(c);
        return 0;
    }
    if (nb_bufq_append(&c->rq, data, len) != NB_OK)
        call_end(c, MGMT_GRPC_RESOURCE_EXHAUSTED, mgmt_grpc_err_nomem, false);
    pending_add(c);
    return 0;
}

static int on_stream_close_cb(nghttp2_session *h2, int32_t sid, uint32_t error_code, void *ud)
{
    struct mgmt_call *c = nghttp2_session_get_stream_user_data(h2, sid);
    if (c == NULL || c->dead)
        return 0;
    c->h2_closed = true;
    c->h2_error = error_code;
    pending_add(c);
    return 0;
}

static int on_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *f, void *ud)
{
    struct mgmt_grpc *ch = ud;

    switch (f->hd.type) {
    case NGHTTP2_SETTINGS:
        /* RFC 9113 §3.4: the server's connection preface is a SETTINGS frame */
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && ch->state == MGMT_GRPC_CONNECTING) {
            ch->state = MGMT_GRPC_READY;
            ch->notify_ready = true;
            nb_timer_cancel(&ch->conn_timer);
        }
        break;
    case NGHTTP2_PING:
        if (f->hd.flags & NGHTTP2_FLAG_ACK)
            ch->st.pings_acked++;
        break;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        /* END_STREAM from the server ends the call (trailers, or a Trailers-Only response)
         * even while our half of the stream is still open. */
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            struct mgmt_call *c = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
            if (c && !c->dead) {
                c->remote_end = true;
                pending_add(c);
            }
        }
        break;
    case NGHTTP2_GOAWAY: {
        /* RFC 9113 §6.8: streams above last_stream_id were not processed; nghttp2 closes them
         * with REFUSED_STREAM (-> UNAVAILABLE). No new stream may be opened. */
        ch->st.goaway_last_id = (uint32_t)f->goaway.last_stream_id;
        ch->st.goaway_error = f->goaway.error_code;
        if (f->goaway.error_code == NGHTTP2_ENHANCE_YOUR_CALM &&
            f->goaway.opaque_data_len == sizeof "too_many_pings" - 1 &&
            memcmp(f->goaway.opaque_data, "too_many_pings", sizeof "too_many_pings" - 1) == 0)
            ch->st.goaway_too_many_pings = true;
        char dbg[128];
        mgmt_grpc_message_decode((const char *)f->goaway.opaque_data, f->goaway.opaque_data_len,
                                 dbg, sizeof dbg);
        nb_info(MOD, "management sent GOAWAY (%s, last stream %d%s%s)",
                nghttp2_http2_strerror(f->goaway.error_code), (int)f->goaway.last_stream_id,
                dbg[0] ? ": " : "", dbg);
        if (ch->state == MGMT_GRPC_CONNECTING || ch->state == MGMT_GRPC_READY) {
            ch->state = MGMT_GRPC_GOAWAY;
            ch->notify_goaway = true;
            nb_timer_cancel(&ch->conn_timer);
        }
        for (struct mgmt_call *c = ch->calls; c; c = c->next)
            if (c->sid == 0)
                call_end(c, MGMT_GRPC_UNAVAILABLE, err_going_away, false);
        break;
    }
    default:
        break;
    }
    return 0;
}

/* ---- the connection ---- */

static void ch_flush(struct mgmt_grpc *ch)
{
    while (ch->h2 && ch->s && !nb_stream_write_full(ch->s)) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(ch->h2, &d);
        if (n < 0) {
            nb_warn(MOD, "HTTP/2 send: %s", nghttp2_strerror((int)n));
            ch_fail(ch, mgmt_grpc_err_protocol);
            return;
        }
        if (n == 0)
            break;
        if (nb_stream_write(ch->s, d, (size_t)n) != NB_OK) {
            ch_fail(ch, mgmt_grpc_err_eof);
            return;
        }
    }
    /* Both sides are done with the session (GOAWAY and no stream left): close. */
    if (ch->h2 && !nghttp2_session_want_read(ch->h2) && !nghttp2_session_want_write(ch->h2))
        ch_fail(ch, ch->state == MGMT_GRPC_GOAWAY ? mgmt_grpc_err_goaway : mgmt_grpc_err_eof);
}

static void ch_reap(struct mgmt_grpc *ch)
{
    struct mgmt_call *c = ch->calls, *next;
    for (; c; c = next) {
        next = c->next;
        if (!c->dead)
            continue;
        if (ch->h2 && c->sid > 0 && !c->h2_closed)
            (void)nghttp2_session_set_stream_user_data(ch->h2, c->sid, NULL);
        call_free(c);
    }
}

static const struct mgmt_call_cbs unary_cbs;
static void unary_drop(void *u);

static void ch_destroy(struct mgmt_grpc *ch)
{
    while (ch->calls) {
        ch->calls->pending = false;
        /* A unary call's wrapper belongs to the call (its callback will never run now). */
        if (ch->calls->cbs == &unary_cbs)
            unary_drop(ch->calls->arg);
        call_free(ch->calls);
    }
    if (ch->auth) {
        sodium_memzero(ch->auth, ch->auth_len);
        free(ch->auth);
    }
    free(ch->authority);
    free(ch->host);
    free(ch->user_agent);
    free(ch);
}

/* The only place owner callbacks run (see the file comment). */
static void ch_kick_cb(struct nb_defer *d)
{
    struct mgmt_grpc *ch = d->arg;
    struct mgmt_call *c;

    ch->busy++;
    for (int round = 0; round < KICK_ROUNDS && !ch->closing; round++) {
        if (ch->notify_ready) {
            ch->notify_ready = false;
            nb_info(MOD, "connected to management (%s)", ch->authority);
            if (ch->on_state)
                ch->on_state(ch->arg, ch, MGMT_GRPC_READY, NULL);
        }
        while (!ch->closing && (c = pending_pop(ch)) != NULL)
            call_progress(c);
        if (ch->closing)
            break;
        if (ch->notify_goaway) {
            ch->notify_goaway = false;
            if (ch->on_state)
                ch->on_state(ch->arg, ch, MGMT_GRPC_GOAWAY, mgmt_grpc_err_goaway);
            continue;
        }
        if (ch->notify_failed && ch->pending == NULL) {
            ch->notify_failed = false;
            if (ch->on_state)
                ch->on_state(ch->arg, ch, MGMT_GRPC_FAILED, ch->fail_reason);
            continue;
        }
        ch_flush(ch);
        if (ch->pending == NULL && !ch->notify_failed && !ch->notify_ready)
            break;
    }
    ch->busy--;
    if (ch->closing) {
        if (ch->busy == 0)
            ch_destroy(ch);
        return;
    }
    ch_reap(ch);
    if (ch->pending || ch->notify_failed || ch->notify_goaway || ch->notify_ready)
        ch_kick(ch); /* the round budget ran out: yield to the loop */
}

static void ch_kick(struct mgmt_grpc *ch)
{
    if (!ch->closing)
        nb_defer(ch->loop, &ch->kick_d, ch_kick_cb, ch);
}

/*
 * The channel is dead: the stream is reset, nghttp2 dropped, every call ends UNAVAILABLE with
 * the reason, then FAILED is reported. Never called from inside nghttp2.
 */
static void ch_fail(struct mgmt_grpc *ch, const char *reason)
{
    if (ch->state == MGMT_GRPC_FAILED || ch->closing)
        return;
    nb_warn(MOD, "management connection (%s) failed: %s", ch->authority, reason);
    ch->state = MGMT_GRPC_FAILED;
    ch->fail_reason = reason;
    ch->notify_failed = true;
    ch->notify_ready = false;
    nb_timer_cancel(&ch->conn_timer);
    nb_timer_cancel(&ch->ka_timer);
    if (ch->dq) {
        nb_dns_cancel(ch->dq);
        ch->dq = NULL;
    }
    for (struct mgmt_call *c = ch->calls; c; c = c->next)
        if (!c->ended && !c->dead) {
            c->h2_closed = true; /* no stream to reset any more */
            call_end(c, MGMT_GRPC_UNAVAILABLE, reason, false);
        }
    if (ch->h2) {
        nghttp2_session_del(ch->h2);
        ch->h2 = NULL;
    }
    if (ch->s) {
        nb_stream_close(ch->s, true);
        ch->s = NULL;
    }
    ch_kick(ch);
}

static void ka_arm(struct mgmt_grpc *ch, uint64_t after)
{
    nb_timer_arm(ch->loop, &ch->ka_timer, after);
}

/* Keepalive (grpc-go's client parameters): after keepalive_ms without reading anything, PING;
 * nothing read within keepalive_timeout_ms after it fails the channel. Also with no call. */
static void ka_cb(struct nb_timer *t)
{
    struct mgmt_grpc *ch = t->arg;
    uint64_t now = nb_loop_now_ms(ch->loop);

    if (ch->h2 == NULL)
        return;
    if (ch->ka_waiting) {
        ch_fail(ch, mgmt_grpc_err_keepalive);
        return;
    }
    if (now - ch->last_read_ms < ch->keepalive_ms) {
        ka_arm(ch, ch->last_read_ms + ch->keepalive_ms - now);
        return;
    }
    if (nghttp2_submit_ping(ch->h2, NGHTTP2_FLAG_NONE, NULL) != 0) {
        ch_fail(ch, mgmt_grpc_err_nomem);
        return;
    }
    ch->st.pings_sent++;
    ch->ka_waiting = true;
    ka_arm(ch, ch->keepalive_timeout_ms);
    ch_kick(ch);
}

static void conn_timeout_cb(struct nb_timer *t)
{
    ch_fail(t->arg, mgmt_grpc_err_connect_timeout);
}

static int session_new(struct mgmt_grpc *ch)
{
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    int rc = NB_E_NOMEM;
    /* RFC 9113 §6.5.2; a client never wants pushes */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
    };

    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
        goto out;
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv_cb);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    if (nghttp2_session_client_new2(&ch->h2, cb, ch, opt) != 0) {
        ch->h2 = NULL;
        goto out;
    }
    /* RFC 9113 §3.4: the client preface (magic + SETTINGS) goes out with the first send */
    if (nghttp2_submit_settings(ch->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(ch->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0) {
        nghttp2_session_del(ch->h2);
        ch->h2 = NULL;
        goto out;
    }
    rc = NB_OK;
out:
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    return rc;
}

static void dial_next(struct mgmt_grpc *ch);

static const char err_no_h2[] = "management's TLS server did not select ALPN h2";

/* A TLS stream from tls/ must have agreed on "h2"; another dialer's TLS is trusted as is. */
static bool alpn_is_h2(const struct nb_stream *s)
{
    struct tls_info info;
    if (!tls_stream_is(s))
        return true;
    return tls_stream_info(s, &info) == NB_OK && strcmp(info.alpn, "h2") == 0;
}

static void s_on_connect(void *arg, struct nb_stream *s, const char *err)
{
    struct mgmt_grpc *ch = arg;

    if (err) {
        nb_debug(MOD, "dial management: %s", err);
        nb_stream_close(s, true);
        ch->s = NULL;
        ch->last_err = err;
        ch->addr_i++;
        dial_next(ch);
        return;
    }
    if (ch->tls && !alpn_is_h2(s)) {
        /* grpc-go refuses a TLS peer that did not select h2 (its ALPN enforcement): so do we,
         * rather than speak HTTP/2 to a server that agreed to something else. */
        ch_fail(ch, err_no_h2); /* closes ch->s (== s) */
        return;
    }
    if (session_new(ch) != NB_OK) {
        ch_fail(ch, mgmt_grpc_err_nomem);
        return;
    }
    ch->last_read_ms = nb_loop_now_ms(ch->loop);
    ka_arm(ch, ch->keepalive_ms);
    for (struct mgmt_call *c = ch->calls; c; c = c->next)
        if (c->sid == 0 && !c->ended && !c->dead)
            call_submit(c);
    ch_kick(ch);
}

static void s_on_data(void *arg, struct nb_stream *s, const uint8_t *data, size_t len)
{
    struct mgmt_grpc *ch = arg;

    if (ch->h2 == NULL)
        return;
    ch->last_read_ms = nb_loop_now_ms(ch->loop);
    if (ch->ka_waiting) { /* anything read answers the keepalive */
        ch->ka_waiting = false;
        ka_arm(ch, ch->keepalive_ms);
    }
    ssize_t r = nghttp2_session_mem_recv(ch->h2, data, len);
    if (r < 0) {
        nb_warn(MOD, "HTTP/2 receive: %s", nghttp2_strerror((int)r));
        ch_fail(ch, mgmt_grpc_err_protocol);
        return;
    }
    if (ch->conn_consume) {
        (void)nghttp2_session_consume_connection(ch->h2, ch->conn_consume);
        ch->conn_consume = 0;
    }
    ch_kick(ch);
}

static void s_on_eof(void *arg, struct nb_stream *s)
{
    ch_fail(arg, mgmt_grpc_err_eof);
}

static void s_on_drain(void *arg, struct nb_stream *s)
{
    ch_kick(arg);
}

static void s_on_error(void *arg, struct nb_stream *s, const char *err)
{
    ch_fail(arg, err);
}

static const struct nb_stream_cbs stream_cbs = {
    .on_data = s_on_data,
    .on_eof = s_on_eof,
    .on_drain = s_on_drain,
    .on_error = s_on_error,
    .on_connect = s_on_connect,
};

static void dial_next(struct mgmt_grpc *ch)
{
    for (; ch->addr_i < ch->naddrs; ch->addr_i++) {
        const struct sockaddr *sa = (const struct sockaddr *)&ch->addrs[ch->addr_i];
        char abuf[NB_ADDRSTRLEN];
        int rc;
        nb_debug(MOD, "dialling management at %s", nb_addr_str(sa, abuf));
        if (ch->dialer)
            rc = ch->dialer->dial(ch->dialer->ctx, sa, &stream_cbs, ch, &ch->s);
        else
            rc = nb_tcp_connect(ch->loop, sa, ch->connect_timeout_ms, &stream_cbs, ch, &ch->s);
        if (rc == NB_OK)
            return; /* s_on_connect follows */
        ch->s = NULL;
        ch->last_err = err_dial;
    }
    ch_fail(ch, ch->last_err ? ch->last_err : err_dial);
}

static void dns_cb(void *arg, int err, const char *reason, const struct sockaddr_storage *addrs,
                   size_t n)
{
    struct mgmt_grpc *ch = arg;

    ch->dq = NULL;
    if (err != NB_OK) {
        ch_fail(ch, reason);
        return;
    }
    ch->naddrs = n < NB_DNS_MAX_ADDRS ? n : NB_DNS_MAX_ADDRS;
    memcpy(ch->addrs, addrs, ch->naddrs * sizeof *addrs);
    ch->addr_i = 0;
    dial_next(ch);
}

static void start_cb(struct nb_defer *d)
{
    struct mgmt_grpc *ch = d->arg;
    socklen_t sl;

    if (ch->state == MGMT_GRPC_FAILED)
        return;
    nb_timer_arm(ch->loop, &ch->conn_timer, ch->connect_timeout_ms);
    if (ch->host == NULL) {
        dial_next(ch);
        return;
    }
    if (nb_addr_from_ip(ch->host, ch->port, &ch->addrs[0], &sl) == NB_OK) {
        ch->naddrs = 1;
        dial_next(ch);
        return;
    }
    int rc = nb_dns_resolve(ch->dns, ch->host, ch->port, AF_UNSPEC, dns_cb, ch, &ch->dq);
    if (rc != NB_OK) {
        ch->dq = NULL;
        ch_fail(ch, rc == NB_E_NOMEM ? mgmt_grpc_err_nomem : nb_dns_err_failed);
    }
}

/* ---- the channel API ---- */

const char *mgmt_grpc_opts_check(const struct mgmt_grpc_opts *o)
{
    socklen_t sl;
    struct sockaddr_storage tmp;

    if (o->authority == NULL || o->authority[0] == '\0' || strpbrk(o->authority, " \r\n\t"))
        return err_no_authority;
    if (o->tls && o->dialer == NULL)
        return mgmt_grpc_err_tls_unavailable;
    if (o->host == NULL && nb_addr_len((const struct sockaddr *)&o->addr) == 0)
        return err_no_address;
    if (o->host && o->dns == NULL && nb_addr_from_ip(o->host, o->port, &tmp, &sl) != NB_OK)
        return err_need_dns;
    return NULL;
}

int mgmt_grpc_new(struct nb_loop *loop, const struct mgmt_grpc_opts *o, mgmt_grpc_state_fn on_state,
                  void *arg, struct mgmt_grpc **out)
{
    const char *why = mgmt_grpc_opts_check(o);
    struct mgmt_grpc *ch = NULL;

    *out = NULL;
    if (why)
        return why == mgmt_grpc_err_tls_unavailable ? NB_E_UNSUPPORTED : NB_E_INVAL;
    ch = calloc(1, sizeof *ch);
    if (ch == NULL)
        return NB_E_NOMEM;
    ch->loop = loop;
    ch->on_state = on_state;
    ch->arg = arg;
    ch->state = MGMT_GRPC_CONNECTING;
    ch->tls = o->tls;
    ch->allow_insecure = o->allow_insecure;
    ch->port = o->port;
    ch->dns = o->dns;
    ch->dialer = o->dialer;
    ch->connect_timeout_ms =
        o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT;
    ch->keepalive_ms = o->keepalive_ms ? o->keepalive_ms : DEFAULT_KEEPALIVE;
    ch->keepalive_timeout_ms =
        o->keepalive_timeout_ms ? o->keepalive_timeout_ms : DEFAULT_KEEPALIVE_TIMEOUT;
    ch->max_recv = o->max_recv_message ? o->max_recv_message : MGMT_GRPC_MAX_MESSAGE;
    ch->max_send = o->max_send_message ? o->max_send_message : MGMT_GRPC_MAX_MESSAGE;
    nb_timer_init(&ch->conn_timer, conn_timeout_cb, ch);
    nb_timer_init(&ch->ka_timer, ka_cb, ch);
    ch->authority = strdup(o->authority);
    ch->user_agent = strdup(o->user_agent ? o->user_agent : DEFAULT_USER_AGENT);
    if (o->host)
        ch->host = strdup(o->host);
    else {
        ch->addrs[0] = o->addr;
        ch->naddrs = 1;
    }
    if (!ch->authority || !ch->user_agent || (o->host && !ch->host))
        goto err_alloc;
    if (o->token && o->token[0]) {
        static const char bearer[] = "Bearer ";
        size_t tl = strlen(o->token);
        ch->auth_len = sizeof bearer - 1 + tl;
        ch->auth = malloc(ch->auth_len + 1);
        if (ch->auth == NULL)
            goto err_alloc;
        memcpy(ch->auth, bearer, sizeof bearer - 1);
        memcpy(ch->auth + sizeof bearer - 1, o->token, tl + 1);
    }
    nb_defer(loop, &ch->start_d, start_cb, ch);
    *out = ch;
    return NB_OK;
err_alloc:
    ch_destroy(ch);
    return NB_E_NOMEM;
}

void mgmt_grpc_free(struct mgmt_grpc *ch)
{
    if (ch == NULL || ch->closing)
        return;
    ch->closing = true;
    nb_defer_cancel(ch->loop, &ch->start_d);
    nb_defer_cancel(ch->loop, &ch->kick_d);
    nb_timer_cancel(&ch->conn_timer);
    nb_timer_cancel(&ch->ka_timer);
    if (ch->dq) {
        nb_dns_cancel(ch->dq);
        ch->dq = NULL;
    }
    for (struct mgmt_call *c = ch->calls; c; c = c->next) {
        c->dead = true;
        nb_timer_cancel(&c->timer);
    }
    if (ch->h2 && ch->s) {
        /* A polite goodbye (RFC 9113 §6.8), flushed by the graceful close below. */
        if (nghttp2_session_terminate_session(ch->h2, NGHTTP2_NO_ERROR) == 0) {
            const uint8_t *d;
            ssize_t n;
            while ((n = nghttp2_session_mem_send(ch->h2, &d)) > 0)
                if (nb_stream_write(ch->s, d, (size_t)n) != NB_OK)
                    break;
        }
    }
    if (ch->h2) {
        nghttp2_session_del(ch->h2);
        ch->h2 = NULL;
    }
    if (ch->s) {
        nb_stream_close(ch->s, false);
        ch->s = NULL;
    }
    if (ch->busy == 0)
        ch_destroy(ch);
}

enum mgmt_grpc_state mgmt_grpc_state(const struct mgmt_grpc *ch)
{
    return ch->state;
}

void mgmt_grpc_stats(const struct mgmt_grpc *ch, struct mgmt_grpc_stats *st)
{
    *st = ch->st;
}

/* ---- the call API ---- */

static bool path_ok(const char *p)
{
    size_t n = p ? strlen(p) : 0;
    if (n < 2 || n > PATH_MAX_LEN || p[0] != '/')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
            return false;
    return true;
}

int mgmt_call_start(struct mgmt_grpc *ch, const char *path, uint32_t deadline_ms,
                    const struct mgmt_call_cbs *cbs, void *arg, struct mgmt_call **out)
{
    struct mgmt_call *c;

    *out = NULL;
    if (ch->closing || cbs == NULL || cbs->on_close == NULL || !path_ok(path))
        return NB_E_INVAL;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return NB_E_NOMEM;
    c->path = strdup(path);
    if (c->path == NULL) {
        free(c);
        return NB_E_NOMEM;
    }
    c->ch = ch;
    c->cbs = cbs;
    c->arg = arg;
    c->dec.max_len = ch->max_recv;
    nb_bufq_init(&c->sq);
    nb_bufq_init(&c->rq);
    nb_timer_init(&c->timer, call_deadline_cb, c);
    c->prev = ch->calls_tail;
    if (ch->calls_tail)
        ch->calls_tail->next = c;
    else
        ch->calls = c;
    ch->calls_tail = c;
    calls_live++;
    ch->st.calls_live++;
    ch->st.calls_started++;
    if (deadline_ms) {
        c->deadline_at = nb_loop_now_ms(ch->loop) + deadline_ms;
        nb_timer_arm(ch->loop, &c->timer, deadline_ms);
    }
    if (ch->auth && !ch->tls && !ch->allow_insecure)
        call_end(c, MGMT_GRPC_UNAUTHENTICATED, mgmt_grpc_err_insecure, false);
    else if (ch->state == MGMT_GRPC_FAILED)
        call_end(c, MGMT_GRPC_UNAVAILABLE, ch->fail_reason, false);
    else if (ch->state == MGMT_GRPC_GOAWAY)
        call_end(c, MGMT_GRPC_UNAVAILABLE, err_going_away, false);
    else if (ch->h2)
        call_submit(c);
    ch_kick(ch);
    *out = c;
    return NB_OK;
}

static void call_wake_sender(struct mgmt_call *c)
{
    struct mgmt_grpc *ch = c->ch;
    if (c->deferred && ch->h2 && c->sid > 0) {
        c->deferred = false;
        (void)nghttp2_session_resume_data(ch->h2, c->sid);
    }
    ch_kick(ch);
}

/* protobuf-c packs straight into the call's queue through this. */
struct bufq_sink {
    ProtobufCBuffer base;
    struct nb_bufq *q;
    bool failed;
};

static void bufq_sink_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    struct bufq_sink *s = (struct bufq_sink *)b;
    if (!s->failed && nb_bufq_append(s->q, data, len) != NB_OK)
        s->failed = true;
}

static int call_send_check(struct mgmt_call *c, size_t len)
{
    struct mgmt_grpc *ch = c->ch;
    if (c->dead || c->ended || c->send_closed || ch->closing)
        return NB_E_CLOSED;
    if (len > ch->max_send)
        return NB_E_TOO_BIG;
    if (c->sq.len > 4u * SEND_HIGH + ch->max_send)
        return NB_E_AGAIN;
    return NB_OK;
}

static int call_sent(struct mgmt_call *c, bool failed)
{
    if (failed) {
        /* Part of a frame may be queued: the stream cannot go on. */
        call_end(c, MGMT_GRPC_RESOURCE_EXHAUSTED, mgmt_grpc_err_nomem, false);
        ch_kick(c->ch);
        return NB_E_NOMEM;
    }
    c->ch->st.msgs_sent++;
    if (c->sq.len >= SEND_HIGH)
        c->send_full = true;
    call_wake_sender(c);
    return NB_OK;
}

int mgmt_call_send(struct mgmt_call *c, const void *msg, size_t len)
{
    uint8_t prefix[MGMT_GRPC_PREFIX_LEN];
    int rc = call_send_check(c, len);

    if (rc != NB_OK)
        return rc;
    mgmt_grpc_prefix_encode(prefix, (uint32_t)len);
    bool failed = nb_bufq_append(&c->sq, prefix, sizeof prefix) != NB_OK ||
                  (len && nb_bufq_append(&c->sq, msg, len) != NB_OK);
    return call_sent(c, failed);
}

int mgmt_call_send_pb(struct mgmt_call *c, const ProtobufCMessage *msg)
{
    uint8_t prefix[MGMT_GRPC_PREFIX_LEN];
    size_t len = protobuf_c_message_get_packed_size(msg);
    struct bufq_sink sink = {.base = {.append = bufq_sink_append}, .q = &c->sq};
    int rc = call_send_check(c, len);

    if (rc != NB_OK)
        return rc;
    mgmt_grpc_prefix_encode(prefix, (uint32_t)len);
    if (nb_bufq_append(&c->sq, prefix, sizeof prefix) != NB_OK)
        sink.failed = true;
    else if (protobuf_c_message_pack_to_buffer(msg, &sink.base) != len)
        sink.failed = true;
    return call_sent(c, sink.failed);
}

bool mgmt_call_send_full(const struct mgmt_call *c)
{
    return c->send_full;
}

int mgmt_call_close_send(struct mgmt_call *c)
{
    if (c->dead || c->ended || c->send_closed || c->ch->closing)
        return NB_E_CLOSED;
    c->send_closed = true;
    call_wake_sender(c);
    return NB_OK;
}

void mgmt_call_pause(struct mgmt_call *c, bool paused)
{
    if (c->dead || c->paused == paused)
        return;
    c->paused = paused;
    if (!paused) {
        pending_add(c);
        ch_kick(c->ch);
    }
}

void mgmt_call_cancel(struct mgmt_call *c)
{
    struct mgmt_grpc *ch;

    if (c == NULL || c->dead)
        return;
    ch = c->ch;
    if (!c->ended && ch->h2 && c->sid > 0 && !c->h2_closed)
        (void)nghttp2_submit_rst_stream(ch->h2, NGHTTP2_FLAG_NONE, c->sid,
                                        c->remote_end ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL);
    c->ended = true;
    c->dead = true;
    nb_timer_cancel(&c->timer);
    ch_kick(ch); /* sends the reset, reaps the call */
}

/* ---- unary calls ---- */

struct mgmt_unary {
    struct mgmt_call *call;
    mgmt_unary_fn cb;
    void *arg;
    const ProtobufCMessageDescriptor *desc;
    ProtobufCMessage *resp;
};

static void unary_drop(void *arg)
{
    struct mgmt_unary *u = arg;
    if (u->resp)
        protobuf_c_message_free_unpacked(u->resp, NULL);
    free(u);
}

static void unary_finish(struct mgmt_unary *u, int code, const char *message)
{
    ProtobufCMessage *resp = code == MGMT_GRPC_OK ? u->resp : NULL;
    u->cb(u->arg, code, message, resp);
    if (u->resp)
        protobuf_c_message_free_unpacked(u->resp, NULL);
    free(u);
}

static void unary_on_message(void *arg, struct mgmt_call *c, const uint8_t *data, size_t len)
{
    struct mgmt_unary *u = arg;
    const char *why = NULL;

    if (u->resp)
        why = "unary call returned more than one response message";
    else if ((u->resp = protobuf_c_message_unpack(u->desc, NULL, len, data)) == NULL)
        why = "cannot unpack the response message";
    if (why) {
        mgmt_call_cancel(c);
        unary_finish(u, MGMT_GRPC_INTERNAL, why);
    }
}

static void unary_on_close(void *arg, struct mgmt_call *c, int code, const char *message)
{
    struct mgmt_unary *u = arg;
    if (code == MGMT_GRPC_OK && u->resp == NULL)
        unary_finish(u, MGMT_GRPC_INTERNAL, "unary call returned no response message");
    else
        unary_finish(u, code, message);
}

static const struct mgmt_call_cbs unary_cbs = {
    .on_message = unary_on_message,
    .on_close = unary_on_close,
};

int mgmt_unary_pb(struct mgmt_grpc *ch, const char *path, uint32_t deadline_ms,
                  const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                  mgmt_unary_fn cb, void *arg, struct mgmt_unary **out)
{
    struct mgmt_unary *u;
    int rc;

    if (out)
        *out = NULL;
    if (cb == NULL || req == NULL || resp_desc == NULL)
        return NB_E_INVAL;
    u = calloc(1, sizeof *u);
    if (u == NULL)
        return NB_E_NOMEM;
    u->cb = cb;
    u->arg = arg;
    u->desc = resp_desc;
    rc = mgmt_call_start(ch, path, deadline_ms, &unary_cbs, u, &u->call);
    if (rc != NB_OK) {
        free(u);
        return rc;
    }
    /* Failures here end the call; its on_close reports them. */
    if (mgmt_call_send_pb(u->call, req) == NB_OK)
        (void)mgmt_call_close_send(u->call);
    else if (!u->call->ended)
        call_end(u->call, MGMT_GRPC_INTERNAL, "request message too large", false);
    if (out)
        *out = u;
    return NB_OK;
}

void mgmt_unary_cancel(struct mgmt_unary *u)
{
    if (u == NULL)
        return;
    mgmt_call_cancel(u->call);
    if (u->resp)
        protobuf_c_message_free_unpacked(u->resp, NULL);
    free(u);
}

/* ---- the management URL ---- */

int mgmt_grpc_target_parse(const char *url, struct mgmt_grpc_target *t)
{
    const char *p, *hs, *he, *end;
    unsigned long port = 443;

    memset(t, 0, sizeof *t);
    if (url == NULL || (p = strstr(url, "://")) == NULL || p == url)
        return NB_E_PARSE;
    for (const char *q = url; q < p; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
              (q > url && ((*q >= '0' && *q <= '9') || *q == '+' || *q == '-' || *q == '.'))))
            return NB_E_PARSE;
    t->tls = (size_t)(p - url) == 5 && strncasecmp(url, "https", 5) == 0;
    hs = p + 3;
    end = hs + strcspn(hs, "/?#");
    if (memchr(hs, '@', (size_t)(end - hs)))
        return NB_E_PARSE; /* userinfo: not a management URL */
    if ((size_t)(end - hs) + 1 > sizeof t->authority)
        return NB_E_PARSE;
    memcpy(t->authority, hs, (size_t)(end - hs));
    if (*hs == '[') {
        he = memchr(hs, ']', (size_t)(end - hs));
        if (he == NULL)
            return NB_E_PARSE;
        p = he + 1;
        hs++;
    } else {
        he = memchr(hs, ':', (size_t)(end - hs));
        if (he == NULL)
            he = end;
        p = he;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof t->host)
        return NB_E_PARSE;
    memcpy(t->host, hs, (size_t)(he - hs));
    for (const char *q = t->host; *q; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f || *q == '%')
            return NB_E_PARSE;
    if (p < end) {
        if (*p != ':' || p + 1 == end || end - p > 6)
            return NB_E_PARSE;
        port = 0;
        for (const char *q = p + 1; q < end; q++) {
            if (*q < '0' || *q > '9')
                return NB_E_PARSE;
            port = port * 10 + (unsigned long)(*q - '0');
        }
        if (port == 0 || port > 65535)
            return NB_E_PARSE;
    }
    t->port = (uint16_t)port;
    return NB_OK;
}
