/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_MGMT_GRPC_H
#define NB_MGMT_GRPC_H

/*
 * A gRPC client channel: one HTTP/2 connection (nghttp2) over one nb_stream, carrying unary and
 * streaming calls to management's ProxyService (spec/proxy.md §2, docs/management.md).
 *
 * The channel is one connection attempt and, once connected, one connection: it never
 * reconnects by itself. It reports READY when the server's SETTINGS arrive, GOAWAY when the
 * server announces it is going away (no new calls; the calls it accepted go on), and FAILED
 * when the connection is lost, cannot be made, or stops answering keepalive pings; a FAILED
 * channel stays failed (every new call ends UNAVAILABLE) and the owner frees it and makes a new
 * one after its backoff. That loop is the lifecycle's (spec/proxy.md §2.3), not this module's.
 *
 * Transport: the channel opens its stream through opts.dialer (host TCP when NULL), so the same
 * code runs over h2c on a host socket and over TLS once a TLS stream exists: a TLS dialer
 * (wrapping the host one, with the server name for SNI and verification, ALPN "h2") is passed
 * with opts.tls set. Until then a TLS channel is refused with mgmt_grpc_err_tls_unavailable.
 *
 * The token (NB_PROXY_TOKEN) is sent as `authorization: Bearer <token>` on every call, never
 * HPACK-indexed. The channel keeps the only copy, wipes it on free, never logs it and never puts
 * it in a status message. Over plaintext (opts.tls false) it is refused unless
 * opts.allow_insecure: every call then ends UNAUTHENTICATED locally, before anything is sent.
 *
 * Statuses (PROTOCOL-HTTP2.md, http-grpc-status-mapping.md): grpc-status/grpc-message from the
 * trailers or a Trailers-Only response; a non-200 :status mapped as gRPC does (404
 * UNIMPLEMENTED, 503 UNAVAILABLE...); a missing content-type UNKNOWN; missing trailers or a
 * stream ending inside a message INTERNAL; a compressed message INTERNAL (we offer no
 * grpc-encoding); a message over max_recv_message RESOURCE_EXHAUSTED; RST_STREAM by its HTTP/2
 * code (REFUSED_STREAM UNAVAILABLE, CANCEL CANCELLED...), except that once the server sent
 * GOAWAY, streams it refuses or resets end UNAVAILABLE; the connection lost UNAVAILABLE.
 *
 * Callbacks (house style §8.22-23): they never run from inside a call into this module — results
 * found there are delivered from a deferred call; they run from the loop (stream events, timers,
 * deferred calls). Inside any callback the owner may start, send on, cancel calls, and free the
 * channel (the memory goes later). After mgmt_grpc_free() no callback runs at all.
 */

#include "mgmt/grpc_frame.h"
#include "platform/stream.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct nb_loop;
struct nb_dns;
struct mgmt_grpc;
struct mgmt_call;
struct mgmt_unary;

/* Channel failure reasons and local call-failure messages: static strings compared by
 * pointer. Transport failures pass the stream's or resolver's own static reason instead. */
extern const char mgmt_grpc_err_tls_unavailable[]; /* TLS asked for, no TLS dialer given */
extern const char mgmt_grpc_err_insecure[];        /* token over plaintext, not allowed */
extern const char mgmt_grpc_err_connect_timeout[]; /* no server SETTINGS within the timeout */
extern const char mgmt_grpc_err_keepalive[];       /* keepalive ping not acknowledged in time */
extern const char mgmt_grpc_err_eof[];             /* the server closed the connection */
extern const char mgmt_grpc_err_goaway[];          /* the server sent GOAWAY */
extern const char mgmt_grpc_err_protocol[];        /* HTTP/2 protocol error (nghttp2 says why) */
extern const char mgmt_grpc_err_nomem[];           /* out of memory */
extern const char mgmt_grpc_err_deadline[];        /* a call's deadline passed */

enum mgmt_grpc_state {
    MGMT_GRPC_CONNECTING = 0, /* resolving, dialling, waiting for the server's SETTINGS */
    MGMT_GRPC_READY,          /* connected: calls flow */
    MGMT_GRPC_GOAWAY,         /* the server is going away: no new calls; reconnect */
    MGMT_GRPC_FAILED,         /* dead for good: free it */
};

/*
 * Channel callback. READY and GOAWAY come at most once each; FAILED comes once, last, after
 * every live call's on_close. `reason` is a static string for GOAWAY and FAILED, NULL for READY.
 * The owner may free the channel from inside.
 */
typedef void (*mgmt_grpc_state_fn)(void *arg, struct mgmt_grpc *ch, enum mgmt_grpc_state st,
                                   const char *reason);

struct mgmt_grpc_opts {
    /* :authority, "host[:port]" as in the management URL (copied). Required. */
    const char *authority;
    /* Where to connect: `host` (a name resolved with `dns`, or an IP literal) and `port`; when
     * host is NULL, the resolved `addr` (port included). Copied. */
    const char *host;
    uint16_t port;
    struct nb_dns *dns; /* must outlive the channel; needed when host is a name */
    struct sockaddr_storage addr;
    /* Opens the stream; NULL = host TCP (nb_tcp_connect). Must outlive the channel. */
    const struct nb_dialer *dialer;
    /* The dialer's streams are TLS (handshake done and ALPN "h2" agreed when on_connect
     * reports success): :scheme https, and the token may be sent. */
    bool tls;
    /* NB_PROXY_TOKEN, copied into the channel's one copy; NULL or "" sends no authorization. */
    const char *token;
    bool allow_insecure;           /* NB_PROXY_ALLOW_INSECURE */
    const char *user_agent;        /* NULL = "nbproxy/<version> grpc-c" (copied) */
    uint32_t connect_timeout_ms;   /* resolve + dial + server SETTINGS; 0 = 20 s */
    uint32_t keepalive_ms;         /* idle time before a PING; 0 = 20 s */
    uint32_t keepalive_timeout_ms; /* PING ack timeout; 0 = 10 s */
    uint32_t max_recv_message;     /* bytes; 0 = 16 MiB (MGMT_GRPC_MAX_MESSAGE) */
    uint32_t max_send_message;     /* bytes; 0 = 16 MiB */
};

/*
 * Checks opts without creating anything: NULL when usable, else a static reason (e.g.
 * mgmt_grpc_err_tls_unavailable, "management authority missing"). For a clear startup error.
 */
const char *mgmt_grpc_opts_check(const struct mgmt_grpc_opts *opts);

/*
 * Creates a channel and starts connecting (from a deferred call: even an immediate failure is
 * reported through on_state). NB_OK; NB_E_INVAL (mgmt_grpc_opts_check() says why);
 * NB_E_UNSUPPORTED (opts.tls without a TLS dialer: mgmt_grpc_err_tls_unavailable); NB_E_NOMEM.
 */
int mgmt_grpc_new(struct nb_loop *loop, const struct mgmt_grpc_opts *opts,
                  mgmt_grpc_state_fn on_state, void *arg, struct mgmt_grpc **out)
    __attribute__((warn_unused_result));

/*
 * Frees the channel: every live call is dropped without a callback (their handles die with
 * it), a GOAWAY is sent if connected, the stream is closed. Safe from inside any callback of
 * this channel or its calls, and on NULL. Wipes the token.
 */
void mgmt_grpc_free(struct mgmt_grpc *ch);

enum mgmt_grpc_state mgmt_grpc_state(const struct mgmt_grpc *ch);

struct mgmt_grpc_stats {
    uint64_t calls_started;
    uint64_t calls_ok;     /* ended with status OK */
    uint64_t calls_failed; /* ended with any other status */
    uint64_t msgs_sent;
    uint64_t msgs_received;
    uint64_t pings_sent; /* keepalive PINGs */
    uint64_t pings_acked;
    uint32_t calls_live;     /* now */
    uint32_t goaway_last_id; /* last_stream_id of the server's GOAWAY, 0 if none */
    uint32_t goaway_error;   /* its HTTP/2 error code */
    /* GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings"): the server's ping policy is stricter than our
     * keepalive; grpc-go doubles keepalive_ms for its next connection, so should the owner. */
    bool goaway_too_many_pings;
};
void mgmt_grpc_stats(const struct mgmt_grpc *ch, struct mgmt_grpc_stats *st);

/* Calls allocated and not yet freed, across channels (leak checks in tests). */
size_t mgmt_grpc_calls_live(void);

/* ---- calls ---- */

/*
 * Call callbacks; `arg` is the one given to mgmt_call_start().
 * on_message: one whole response message; `data` belongs to the channel and is valid only
 *   during the call. Not called while the call is paused.
 * on_close: the call ended with `code` (enum mgmt_grpc_code) and a NUL-terminated `message`
 *   (the server's grpc-message, percent-decoded, or a local reason), valid during the call.
 *   Exactly once per call unless the owner cancelled it first; the handle is dead after it
 *   returns. Messages received before the status are all delivered before on_close, except
 *   when the stream was reset or the call failed locally (deadline, limits, connection lost).
 * on_drain (optional): the send queue fell to its low-water mark after mgmt_call_send_full()
 *   had become true.
 */
struct mgmt_call_cbs {
    void (*on_message)(void *arg, struct mgmt_call *c, const uint8_t *data, size_t len);
    void (*on_close)(void *arg, struct mgmt_call *c, int code, const char *message);
    void (*on_drain)(void *arg, struct mgmt_call *c);
};

/*
 * Starts a call to `path` ("/management.ProxyService/SyncMappings"), with a deadline of
 * deadline_ms from now (0 = none; sent as grpc-timeout, and enforced locally as
 * DEADLINE_EXCEEDED). Requests are queued until the channel is connected. NB_OK with *out set
 * (the outcome comes through on_close, possibly a local failure: UNAUTHENTICATED for the token
 * over plaintext, UNAVAILABLE on a failed or going-away channel); NB_E_INVAL (bad path) or
 * NB_E_NOMEM with no callback. cbs must outlive the call.
 */
int mgmt_call_start(struct mgmt_grpc *ch, const char *path, uint32_t deadline_ms,
                    const struct mgmt_call_cbs *cbs, void *arg, struct mgmt_call **out)
    __attribute__((warn_unused_result));

/*
 * Queues one request message (a copy, framed). NB_OK; NB_E_CLOSED after close_send or once the
 * call has ended (its on_close is coming or came); NB_E_TOO_BIG over max_send_message;
 * NB_E_AGAIN when the queue holds more than its hard limit (4 x the high-water mark plus one
 * maximum message): wait for on_drain; NB_E_NOMEM.
 */
int mgmt_call_send(struct mgmt_call *c, const void *msg, size_t len)
    __attribute__((warn_unused_result));
/* mgmt_call_send() of a protobuf-c message, packed here. */
int mgmt_call_send_pb(struct mgmt_call *c, const ProtobufCMessage *msg)
    __attribute__((warn_unused_result));
/* True while the send queue is at or over its high-water mark (256 KiB) and on_drain is due. */
bool mgmt_call_send_full(const struct mgmt_call *c);
/* Half-close: END_STREAM after the queued messages. NB_OK or NB_E_CLOSED (already). */
int mgmt_call_close_send(struct mgmt_call *c);
/*
 * Stops (true) or resumes on_message. While paused the call's HTTP/2 receive window is not
 * reopened, so the server stops sending once one window (1 MiB) is buffered.
 */
void mgmt_call_pause(struct mgmt_call *c, bool paused);
/* Ends the call now: RST_STREAM(CANCEL) if it was sent. No callback runs after this; the handle
 * is dead. Must not be called after on_close returned. */
void mgmt_call_cancel(struct mgmt_call *c);

/* ---- unary calls with protobuf-c messages ---- */

/*
 * Completion of a unary call. code/message as on_close. `resp` is the unpacked response when
 * code is OK (never NULL then), NULL otherwise; it belongs to the channel and is freed after
 * the callback returns (copy what you keep). The handle is dead once the callback starts.
 */
typedef void (*mgmt_unary_fn)(void *arg, int code, const char *message, ProtobufCMessage *resp);

/*
 * Starts a unary call: sends `req`, half-closes, and unpacks the single response as
 * `resp_desc`. A response that is missing, repeated, or does not unpack ends the call INTERNAL
 * (as grpc-go does). Same return values as mgmt_call_start(); `out` may be NULL.
 */
int mgmt_unary_pb(struct mgmt_grpc *ch, const char *path, uint32_t deadline_ms,
                  const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                  mgmt_unary_fn cb, void *arg, struct mgmt_unary **out)
    __attribute__((warn_unused_result));
/* Cancels a unary call: its callback will not run. */
void mgmt_unary_cancel(struct mgmt_unary *u);

/* ---- the management URL ---- */

#define MGMT_GRPC_HOST_MAX 256

/* What --mgmt / NB_PROXY_MANAGEMENT_ADDRESS names (spec/proxy.md §2.1). */
struct mgmt_grpc_target {
    char host[MGMT_GRPC_HOST_MAX];          /* name or IP literal, without brackets */
    char authority[MGMT_GRPC_HOST_MAX + 8]; /* host[:port] as written ("[::1]:8443") */
    uint16_t port;                          /* 443 when the URL has none (grpc-go's default) */
    bool tls;                               /* scheme https; any other scheme is h2c */
};

/* Parses "scheme://host[:port][/...]". NB_OK or NB_E_PARSE (no scheme, empty or bad host, bad
 * port, userinfo). */
int mgmt_grpc_target_parse(const char *url, struct mgmt_grpc_target *t)
    __attribute__((warn_unused_result));

#endif
