/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_HTTP_CLIENT_H
#define NB_HTTP_CLIENT_H

/*
 * The upstream HTTP/1.1 client with its connection pool (spec/proxy.md §1.3, §4.7). One
 * http_client per process; connections are pooled per (network, address): the network is the
 * dialer's identity (an account's tunnel, or the host for direct_upstream), so two accounts
 * never share a connection even when their backends have the same address.
 *
 * An exchange is one request/response on one connection, written as a chain of stages (house
 * style §8.32): start -> on_ready (head written, body may flow) -> on_response (final head) ->
 * on_body* -> on_end, or on_error at any point. Callbacks never run from inside a call into this
 * module (http_exchange_start, _write, _cancel...): results found there are reported from a
 * deferred call. After on_end or on_error the exchange is gone; after http_exchange_cancel() no
 * callback runs.
 *
 * Limits (netbird-proxy's env knobs, same defaults): NB_PROXY_MAX_IDLE_CONNS (100 idle in all),
 * NB_PROXY_MAX_IDLE_CONNS_PER_HOST (100), NB_PROXY_MAX_CONNS_PER_HOST (0 = no limit; beyond it
 * exchanges wait for a connection), NB_PROXY_IDLE_CONN_TIMEOUT (90 s),
 * NB_PROXY_RESPONSE_HEADER_TIMEOUT (0 = none), NB_PROXY_MAX_INFLIGHT (0 = no limit; beyond it
 * an exchange fails at once with HTTP_XERR_OVERLOADED, the proxy's 503).
 *
 * A request sent on a reused connection that the backend had already closed is retried once on
 * a fresh connection when nothing of its response arrived and it has no body (what Go's
 * transport does for the same race).
 */

#include "http/hdrs.h"
#include "platform/stream.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct nb_loop;
struct http_client;
struct http_exchange;

struct http_client_opts {
    uint32_t max_idle_conns;          /* 0 = 100 */
    uint32_t max_idle_per_host;       /* 0 = 100 */
    uint32_t max_conns_per_host;      /* 0 = unlimited */
    uint32_t idle_conn_timeout_ms;    /* 0 = 90 s */
    uint32_t response_header_timeout; /* ms, 0 = none */
    uint32_t max_inflight;            /* per (network, address), 0 = unlimited */
    uint32_t max_head;                /* response head limit, 0 = 64 KiB */
};

struct http_client *http_client_new(struct nb_loop *loop, const struct http_client_opts *opts);
/* Cancels every exchange (no callbacks) and closes every connection. */
void http_client_free(struct http_client *cl);
/* Closes the idle connections of one network (an account going away) or of all (net NULL). */
void http_client_close_idle(struct http_client *cl, const void *net);

/* Where an exchange goes. */
struct http_upstream {
    const struct nb_dialer *dialer; /* must outlive every exchange using it */
    const void *net;                /* pool key: identity of the network (e.g. the account) */
    struct sockaddr_storage addr;   /* resolved address with port */
    uint32_t dial_timeout_ms;       /* 0 = 30 s */
};

/* The request to send. */
struct http_out_req {
    const char *method;
    size_t method_len;
    const char *target; /* request-target (origin-form) */
    size_t target_len;
    const struct http_hdrs *hdrs; /* without framing fields; Host included */
    int64_t body_len;             /* 0 = no body, > 0 = Content-Length, -1 = chunked */
};

enum http_xerr {
    HTTP_XERR_DIAL = 1,   /* connecting failed: `reason` says why (refused, unreachable...) */
    HTTP_XERR_TIMEOUT,    /* dial timeout or response header timeout */
    HTTP_XERR_OVERLOADED, /* NB_PROXY_MAX_INFLIGHT reached */
    HTTP_XERR_PROTOCOL,   /* the backend sent a malformed response */
    HTTP_XERR_RESET,      /* the connection broke (before or during the response) */
    HTTP_XERR_NOMEM,
};

/* The final response head, valid during on_response only. */
struct http_resp_info {
    int status;
    int minor_version;
    const struct http_hdrs *hdrs; /* the backend's fields, framing included */
    int64_t content_length;       /* the Content-Length field's value, -1 when absent */
    bool body;                    /* a body follows (false for HEAD, 204, 304, 101) */
};

struct http_exchange_cbs {
    /* Head written on a connected stream: request body bytes may be written now. */
    void (*on_ready)(void *arg, struct http_exchange *x);
    /* An interim 1xx response other than 101 (e.g. 103 Early Hints); valid during the call. */
    void (*on_interim)(void *arg, struct http_exchange *x, int status,
                       const struct http_hdrs *hdrs);
    /* The final response head. For 101 the caller must take the stream with
     * http_exchange_hijack() inside this call, or the exchange is cancelled. */
    void (*on_response)(void *arg, struct http_exchange *x, const struct http_resp_info *ri);
    /* Response body bytes (de-chunked), valid during the call. */
    void (*on_body)(void *arg, struct http_exchange *x, const uint8_t *data, size_t len);
    /* The response is complete; x is gone. `trailers`: the chunked body's trailer fields, or
     * NULL; valid during the call. */
    void (*on_end)(void *arg, struct http_exchange *x, const struct http_hdrs *trailers);
    /* The exchange failed; x is gone. `got_response`: on_response had run. */
    void (*on_error)(void *arg, struct http_exchange *x, enum http_xerr kind, const char *reason,
                     bool got_response);
    /* The request body write queue drained (see http_exchange_write_full). */
    void (*on_drain)(void *arg, struct http_exchange *x);
};

/*
 * Starts an exchange. The request head is copied. NB_OK (the outcome comes through the
 * callbacks, possibly just on_error), or NB_E_NOMEM / NB_E_INVAL with no callback.
 */
int http_exchange_start(struct http_client *cl, const struct http_upstream *up,
                        const struct http_out_req *rq, const struct http_exchange_cbs *cbs,
                        void *arg, struct http_exchange **out);
/* Request body bytes (copied; chunk-framed when body_len was -1). Only after on_ready. */
int http_exchange_write(struct http_exchange *x, const void *data, size_t len);
/* The request body is complete (writes the last chunk for chunked bodies, with `trailers` if
 * not NULL; they are dropped for Content-Length bodies, which cannot carry any). */
int http_exchange_write_end(struct http_exchange *x, const struct http_hdrs *trailers);
bool http_exchange_write_full(const struct http_exchange *x);
/* Stops / resumes response body delivery (the backend's window closes while paused). */
void http_exchange_pause(struct http_exchange *x, bool paused);
/* Abandons the exchange; its connection is closed (it cannot be reused mid-exchange). */
void http_exchange_cancel(struct http_exchange *x);
/*
 * Inside on_response for a 101: takes the stream (the caller owns it from now, with its
 * callbacks unset and reads paused). *leftover: bytes the backend sent after the 101 head,
 * valid during on_response only.
 */
struct nb_stream *http_exchange_hijack(struct http_exchange *x, const uint8_t **leftover,
                                       size_t *leftover_len);

struct http_client_stats {
    uint64_t conns_opened;
    uint64_t conns_reused;
    uint64_t conns_idle; /* now */
    uint64_t conns_open; /* now, idle included */
    uint64_t exchanges;
    uint64_t retries;
    uint64_t overloaded;
    uint64_t waiting; /* now: exchanges queued by max_conns_per_host */
};
void http_client_stats(const struct http_client *cl, struct http_client_stats *st);

#endif
