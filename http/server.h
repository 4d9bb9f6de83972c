/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_HTTP_SERVER_H
#define NB_HTTP_SERVER_H

/*
 * HTTP/1.1 server connections on any nb_stream (host TCP, lwIP TCP through a tunnel, TLS), and
 * HTTP/2 ones (http_server_accept_h2, http/h2.c) behind the same request API.
 * The server parses request heads (http/h1_parse.h), hands each request to a handler, streams the
 * request body to it on demand, and frames the handler's response (Content-Length, chunked, or
 * close-delimited for HTTP/1.0). One request at a time per connection: pipelined requests wait
 * (the stream is paused) until the previous response is complete.
 *
 * Request lifetime. The handler receives `struct http_req *` in on_request and owns the exchange
 * until it calls one of http_resp_end(), http_resp_abort() or http_req_hijack(); after that call
 * the handler must not touch req again and no handler callback runs for it. If the client
 * connection fails first, the handler's on_abort runs once; the handler cleans up its side and
 * must not touch req after on_abort returns. req memory is released by the server afterwards
 * (from a deferred call, never under the handler's feet).
 *
 * Timeouts (spec/proxy.md §4.1): a request head must arrive within read_header_timeout of its
 * first byte (of the accept, for the first request); a keep-alive connection may sit idle for
 * idle_timeout. There is no timeout while a request is being handled: the handler bounds its own
 * work (the proxy's upstream timeouts).
 *
 * Memory: an idle keep-alive connection holds only its struct (no head buffer; host streams read
 * through a shared buffer). The head buffer grows to max_head while a head is read and lives
 * until the response is done (the parsed header slices point into it).
 */

#include "http/hdrs.h"
#include "platform/arena.h"
#include "platform/stream.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct nb_loop;
struct http_server;
struct http_req;
struct http_conn;
struct http_req_cbs;
struct h2_stream;

/* What a listener tells the server about the connections it hands over. */
struct http_conn_info {
    bool tls;           /* arrived over TLS (X-Forwarded-Proto, OIDC checks) */
    bool overlay;       /* arrived on an account's tunnel listener (spec/proxy.md §6) */
    const char *scope;  /* account id the listener serves (overlay), or NULL; not copied */
    void *listener_arg; /* opaque, for the handler */
};

struct http_handler {
    /* A request head arrived. The handler must eventually end it (see the top of this file). */
    void (*on_request)(void *arg, struct http_req *req);
    void *arg;
};

struct http_server_opts {
    uint32_t read_header_timeout_ms; /* 0 = 10 s */
    uint32_t idle_timeout_ms;        /* 0 = 120 s */
    uint32_t max_head;               /* 0 = HTTP_SERVER_MAX_HEAD */
    uint32_t max_headers;            /* 0 = HTTP_SERVER_MAX_HEADERS */
    uint32_t max_conns;              /* 0 = unlimited; beyond it new connections are closed */
    const char *server_header;       /* "Server" field on our own responses, NULL = none */
};

#define HTTP_SERVER_MAX_HEAD    (64u * 1024u)
#define HTTP_SERVER_MAX_HEADERS 128u
/* Request body left unread when the response ends: discarded up to this much, so the
 * connection can be kept; beyond it (or unbounded) the connection is closed. */
#define HTTP_SERVER_DISCARD_MAX (256u * 1024u)

struct http_server *http_server_new(struct nb_loop *loop, const struct http_server_opts *opts,
                                    const struct http_handler *handler);
/* Aborts every connection (their handlers get on_abort) and frees the server. */
void http_server_free(struct http_server *srv);

/*
 * Takes ownership of an accepted stream. info is copied (scope is not: it must outlive the
 * connection). NB_OK, or NB_E_NOMEM / NB_E_CLOSED (draining, over max_conns): the stream is
 * closed then.
 */
int http_server_accept(struct http_server *srv, struct nb_stream *s,
                       const struct http_conn_info *info);
/*
 * The same for a connection that speaks HTTP/2 (RFC 9113; TLS with ALPN "h2", or prior knowledge):
 * same ownership contract and results as http_server_accept. Each stream becomes one http_req
 * with the same fields and API as an HTTP/1.1 request (see http/h2.c and http/README.md for
 * what differs on the wire: no Upgrade/hijack, no 100 Continue, http_resp_abort resets only the
 * stream, http_resp_close_after sends GOAWAY).
 */
int http_server_accept_h2(struct http_server *srv, struct nb_stream *s,
                          const struct http_conn_info *info);
/* An nb_accept_fn for listeners whose arg is a struct http_listener_ctx. */
struct http_listener_ctx {
    struct http_server *server;
    struct http_conn_info info;
};
void http_server_accept_cb(void *arg, struct nb_listener *l, struct nb_stream *s);

/*
 * Graceful stop: idle connections close now, connections reading a head get until their header
 * timeout, responses in progress finish with "Connection: close". Returns at once; watch
 * http_server_conns() reach 0.
 */
void http_server_drain(struct http_server *srv);
uint32_t http_server_conns(const struct http_server *srv);

struct http_server_stats {
    uint64_t conns_accepted;
    uint64_t conns_rejected; /* over max_conns or draining */
    uint64_t requests;
    uint64_t bad_requests;     /* 400 from the parser */
    uint64_t too_large;        /* 431 */
    uint64_t header_timeouts;  /* cut by read_header_timeout */
    uint64_t idle_timeouts;    /* keep-alive connections closed idle */
    uint64_t client_aborts;    /* connection failed while a handler owned a request */
    uint64_t upgrades;         /* hijacked after 101 */
    uint64_t h2_conns;         /* HTTP/2 connections accepted (also in conns_accepted) */
    uint64_t h2_goaways;       /* HTTP/2 connections ended by our GOAWAY with an error code */
    uint64_t h2_stream_errors; /* HTTP/2 requests refused with RST_STREAM (malformed...) */
};
void http_server_stats(const struct http_server *srv, struct http_server_stats *st);

/* ---- the request, as the handler sees it (read-only unless said otherwise) ---- */

struct http_req {
    struct nb_arena arena; /* the handler may allocate here; freed with the request */
    const char *method;
    size_t method_len;
    const char *target; /* request-target as sent */
    size_t target_len;
    const char *path; /* origin-form path (raw, %-encoded); for absolute-form, its path part */
    size_t path_len;
    const char *query; /* after '?', or NULL */
    size_t query_len;
    const char *host; /* Host field (or the absolute-form authority), port included */
    size_t host_len;
    int minor_version;
    struct http_hdrs hdrs;     /* the client's fields, slices into the head buffer */
    struct http_hdrs trailers; /* a chunked body's trailer fields, filled before on_body_end */
    bool has_body;             /* Content-Length > 0 or chunked */
    bool body_chunked;
    uint64_t content_length; /* when !body_chunked */
    bool expect_continue;    /* "Expect: 100-continue" */
    bool upgrade;            /* Connection: upgrade and an Upgrade field */
    bool is_head;            /* method HEAD: responses carry no body */
    struct sockaddr_storage peer;
    struct sockaddr_storage local;
    struct http_conn_info info;
    uint64_t start_ms;       /* loop time the head was complete */
    uint64_t bytes_in;       /* request body bytes delivered to the handler */
    uint64_t bytes_out;      /* response body bytes written (framing excluded) */
    int status;              /* final status sent, 0 before */
    struct http_conn *_conn; /* HTTP/1.1 */
    struct h2_stream *_h2;   /* HTTP/2 (http/h2.c), NULL for HTTP/1.1 */
    const struct http_req_cbs *_cbs;
    void *_cbs_arg;
};

/* Handler callbacks for the request's body and the response's flow control. */
struct http_req_cbs {
    /* Request body bytes (already de-chunked); valid during the call only. */
    void (*on_body)(void *arg, struct http_req *req, const uint8_t *data, size_t len);
    /* The request body is complete (also right after http_req_read_body() for a bodiless
     * request, from a deferred call). */
    void (*on_body_end)(void *arg, struct http_req *req);
    /* The response write queue drained below the low-water mark (see http_resp_write_full). */
    void (*on_drain)(void *arg, struct http_req *req);
    /* The client connection failed, or sent a malformed body; req is gone after this. */
    void (*on_abort)(void *arg, struct http_req *req, const char *why);
};

void http_req_set_cbs(struct http_req *req, const struct http_req_cbs *cbs, void *arg);

/*
 * Starts delivering the request body to on_body / on_body_end. Sends "100 Continue" first when
 * the client asked for it (so a client waiting for it sends the body only once the handler is
 * ready for it, e.g. connected upstream).
 */
void http_req_read_body(struct http_req *req);
/* Stops / resumes on_body (the client's receive window closes while paused). */
void http_req_pause_body(struct http_req *req, bool paused);

/*
 * Response head. `status` 100..599; `hdrs` must not carry framing fields (Content-Length,
 * Transfer-Encoding, Connection: the server writes those); content_length -1 = unknown (chunked
 * for HTTP/1.1 clients, close-delimited for HTTP/1.0). Date is added when absent. For a 1xx
 * other than 101 the head is interim and a final one must follow. A 101 (the handler has agreed
 * to an Upgrade) is written as is and must be followed by http_req_hijack().
 * NB_OK, NB_E_INVAL (wrong state), NB_E_CLOSED / NB_E_NOMEM (connection failing).
 */
int http_resp_head(struct http_req *req, int status, const struct http_hdrs *hdrs,
                   int64_t content_length);
/* Body bytes (copied). Chunk-framed when needed. */
int http_resp_body(struct http_req *req, const void *data, size_t len);
/* True while the client's queue is over its high-water mark: hold off until on_drain. */
bool http_resp_write_full(const struct http_req *req);
/* Completes the response; the connection goes on to the next request or closes. */
void http_resp_end(struct http_req *req);
/* The same, with trailer fields after the last chunk (copied now; dropped when the response is
 * not chunked, e.g. for HTTP/1.0 clients or a known Content-Length). */
void http_resp_end_trailers(struct http_req *req, const struct http_hdrs *trailers);
/* Ends the exchange abortively: the connection is reset (a response cut short by an upstream
 * failure must look truncated to the client, never complete). */
void http_resp_abort(struct http_req *req);
/* Ask for the connection to close after this response (sends "Connection: close"). */
void http_resp_close_after(struct http_req *req);

/*
 * Sends a complete response with a fixed body (Content-Type given, plus optional extra fields)
 * and ends the request.
 */
int http_resp_simple(struct http_req *req, int status, const char *content_type,
                     const struct http_hdrs *extra, const void *body, size_t len);

/*
 * After a 101 head: takes the client stream out of the server. *leftover receives bytes the
 * client sent after the request head (they belong to the new protocol); they are valid until
 * the next loop iteration, so the caller forwards them at once. The stream's callbacks are
 * the caller's business from now on; it owns the stream.
 */
struct nb_stream *http_req_hijack(struct http_req *req, const uint8_t **leftover,
                                  size_t *leftover_len);

/* "Mon, 30 Nov 2026 06:14:44 GMT" for the loop's current second (cached). */
const char *http_date_now(struct nb_loop *loop);

#endif
