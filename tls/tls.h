/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_TLS_TLS_H
#define NB_TLS_TLS_H

/*
 * TLS (wolfSSL) as the third nb_stream implementation (platform/stream.h), wrapping any other
 * stream: host TCP, lwIP TCP over a tunnel, even another TLS stream. HTTP, gRPC and the relays
 * run unchanged over it (house style §8.31). wolfSSL never touches a socket: it gets the
 * ciphertext the inner stream delivered through custom I/O callbacks and hands back ciphertext
 * that is written to the inner stream. One loop thread, nothing blocks.
 *
 * Policy: TLS 1.2 and 1.3 only; TLS 1.2 with ECDHE and an AEAD (AES-GCM, ChaCha20-Poly1305);
 * TLS 1.3 with AES-128/256-GCM and ChaCha20-Poly1305; groups X25519, P-256, P-384.
 *
 * Server: the certificate is chosen per handshake by a selector callback from the ClientHello
 * (SNI, ALPN, ECDSA support), parsed by tls/hello.c before wolfSSL sees a byte, so a connection
 * that has not finished its ClientHello holds no wolfSSL object. ALPN is negotiated the way Go
 * does (server preference; no common protocol fails the handshake, except Go's fallback for an
 * http/1.1 client of an h2 server). A plaintext HTTP request can be answered with Go's 400.
 * Resumption: TLS 1.3 tickets and TLS 1.2 tickets (RFC 5077), stateless, sealed with
 * ChaCha20-Poly1305 under keys of the tls_ctx that rotate every TLS_TICKET_LIFETIME_S (the previous
 * key still opens tickets for one more period); the SNI is bound into each ticket, so a ticket
 * never resumes a session for another name. No server-side session cache.
 *
 * Client: verification against a CA bundle (the system roots by default), host name or IP
 * address checked, SNI sent for names (never for IP literals), ALPN offered; skip_verify turns
 * verification off per connection (the mapping's skip_tls_verify).
 *
 * The stream (after tls_server_wrap / tls_client_wrap):
 *   - on_connect(NULL) reports the finished handshake on BOTH sides; tls_stream_info() is valid
 *     from then on (negotiated ALPN, SNI, version). on_connect(err) reports a failed handshake
 *     (the owner closes). A server owner without on_connect hears failures through on_error.
 *   - Writes before the handshake is done are queued (plaintext, counted by queued()) and sent
 *     when it is. queued() is that queue plus the inner stream's queue, the stream uses the
 *     inner stream's on_drain, and the inner's water marks follow this stream's, so
 *     nb_stream_write_full() and on_drain mean what they mean on a socket.
 *   - on_data gets one decrypted record (at most 16 KiB) in a process-wide buffer that belongs
 *     to the stream and is valid during the call only (the stream contract).
 *   - set_paused() pauses the inner stream (after the handshake; a handshake always reads).
 *     Ciphertext buffered while paused is at most one inner on_data delivery.
 *   - shutdown() sends close_notify (after the queue) then shuts the inner write side; the
 *     peer's close_notify is on_eof. A transport EOF at a record boundary after the handshake is
 *     also on_eof (Go's crypto/tls says io.EOF there too); inside a record it is
 *     tls_err_truncated.
 *   - close(false) sends close_notify and closes the inner stream gracefully (a close during
 *     the handshake with data queued finishes the handshake first, bounded by its timeout);
 *     close(true) aborts the inner stream. The TLS stream owns the inner stream from a
 *     successful wrap on; it replaces the inner's callbacks and resumes its reading.
 *   - Callbacks never run from inside a call into the stream (write, shutdown, set_paused...):
 *     what is found there is reported from a deferred call. After close() no callback runs; the
 *     memory (the wolfSSL object included) goes on a deferred call.
 *   - Errors are the static reasons below, compared by pointer; transport errors pass the inner
 *     stream's own reason. They never contain secrets. wolfSSL's code is logged at debug level.
 *
 * Memory: an established idle connection holds the tls_stream (384 bytes), the wolfSSL object,
 * and nothing else: the read buffer is shared, wolfSSL's record buffers are released after each
 * record (Debian's build uses dynamic buffers), the inner stream's write queue is empty. The
 * wolfSSL object is most of it and depends on how libwolfssl was built: tls/README.md has the
 * measurements.
 */

#include "platform/stream.h"
#include "tls/cert.h"
#include "tls/hello.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_ctx;

/* Failure reasons (on_connect / on_error), static, compared by pointer. */
extern const char tls_err_handshake[]; /* protocol, version, cipher or alert: no agreement */
extern const char tls_err_verify[];    /* peer certificate untrusted, expired or wrong name */
extern const char tls_err_timeout[];   /* handshake not done within the timeout */
extern const char tls_err_no_cert[];   /* server: the selector had no certificate for the SNI */
extern const char tls_err_alpn[];      /* no common application protocol */
extern const char tls_err_not_tls[];   /* server: not a TLS ClientHello (plaintext HTTP...) */
extern const char tls_err_closed[];    /* transport closed during the handshake */
extern const char tls_err_truncated[]; /* transport closed inside a TLS record */
extern const char tls_err_protocol[];  /* bad record or fatal alert after the handshake */
extern const char tls_err_nomem[];     /* out of memory */

/* The system roots (Debian's ca-certificates bundle). */
#define TLS_SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
/* Ticket key period: a key seals tickets for this long, then opens them for as long again.
 * Also the lifetime announced in tickets. */
#define TLS_TICKET_LIFETIME_S 3600u

/*
 * Certificate selector, called once per server handshake with the parsed ClientHello
 * (`hello->sni` lower-cased, "" when absent; `hello->acme_only` for a tls-alpn-01 challenge;
 * `hello->ecdsa_ok` when an ECDSA certificate will do). Returns a certificate the caller holds
 * a reference to (the stream takes its own), or NULL to refuse the handshake (the client gets
 * an unrecognized_name alert, the owner tls_err_no_cert). Runs on the loop, from the stream's
 * input processing, never inside a call the owner made; it must not close the stream.
 */
typedef struct tls_cert *(*tls_select_fn)(void *arg, const struct tls_hello *hello);

struct tls_server_opts {
    tls_select_fn select; /* required */
    void *select_arg;
    /* ALPN protocols to accept, comma-separated, in preference order, e.g.
     * "h2,http/1.1,acme-tls/1" (copied). NULL or "" = no ALPN. */
    const char *alpn;
    /* Answer a plaintext HTTP request with Go's "HTTP/1.0 400 Bad Request ... Client sent an
     * HTTP request to an HTTPS server." before failing with tls_err_not_tls. */
    bool answer_plain_http;
    bool no_tickets; /* issue no session tickets (no resumption) */
};

struct tls_client_opts {
    /* Trust anchors: ca_pem (copied) if set, else the PEM bundle at ca_file, else
     * TLS_SYSTEM_CA_FILE. */
    const char *ca_file;
    const void *ca_pem;
    size_t ca_pem_len;
    /* ALPN protocols to offer, comma-separated, e.g. "h2,http/1.1" (copied). NULL = none. */
    const char *alpn;
};

/*
 * Creates a server or client context. NB_OK; NB_E_INVAL (no selector, bad ALPN list: empty
 * name or one over 255 bytes); NB_E_IO (CA file unreadable); NB_E_PARSE (no certificate in the
 * CA PEM); NB_E_NOMEM. *out holds one reference; every stream made from it takes another.
 */
int tls_ctx_new_server(const struct tls_server_opts *o, struct tls_ctx **out)
    __attribute__((warn_unused_result));
int tls_ctx_new_client(const struct tls_client_opts *o, struct tls_ctx **out)
    __attribute__((warn_unused_result));
struct tls_ctx *tls_ctx_ref(struct tls_ctx *c);
/* Drops a reference; the last one frees the context and wipes its ticket keys. NULL: no-op. */
void tls_ctx_unref(struct tls_ctx *c);

/*
 * Starts a server handshake on `inner`. `initial` (copied) are bytes already read from inner,
 * e.g. by an SNI router's peek, and are processed first. handshake_timeout_ms (0 = none)
 * bounds the time until the handshake is done. NB_OK: *out is the TLS stream, which now owns
 * inner; the owner sets callbacks at once (before returning to the loop). NB_E_INVAL (a client
 * ctx, initial longer than TLS_HELLO_MAX), NB_E_NOMEM: nothing changed, inner is still the
 * caller's.
 */
int tls_server_wrap(struct tls_ctx *ctx, struct nb_stream *inner, const uint8_t *initial,
                    size_t initial_len, uint32_t handshake_timeout_ms, struct nb_stream **out)
    __attribute__((warn_unused_result));

struct tls_connect_opts {
    /* The name to send as SNI and to verify the certificate against. An IP literal is verified
     * against the IP SANs and not sent as SNI. Required unless skip_verify. Copied. */
    const char *server_name;
    bool skip_verify;
    const char *alpn;              /* to offer instead of the ctx's list (copied); "" = none */
    uint32_t handshake_timeout_ms; /* 0 = none */
};

/*
 * Starts a client handshake over `inner`, which may still be connecting (the ClientHello waits
 * in its queue): an inner connect failure is reported as on_connect with the inner's reason.
 * NB_OK: *out owns inner; on_connect reports the handshake. NB_E_INVAL (a server ctx, no
 * server_name without skip_verify), NB_E_NOMEM: inner is still the caller's.
 */
int tls_client_wrap(struct tls_ctx *ctx, struct nb_stream *inner, const struct tls_connect_opts *o,
                    struct nb_stream **out) __attribute__((warn_unused_result));

/* What the handshake agreed. Strings live as long as the stream. */
struct tls_info {
    const char *sni;       /* server: the client's SNI ("" none); client: the name sent ("") */
    const char *alpn;      /* negotiated protocol, "" when none */
    const char *version;   /* "TLSv1.2", "TLSv1.3" */
    const char *cipher;    /* IANA name, e.g. "TLS_AES_128_GCM_SHA256" */
    bool resumed;          /* session resumed from a ticket */
    struct tls_cert *cert; /* server: the certificate served (borrowed); client: NULL */
};

/* True when s is a TLS stream from this module. */
bool tls_stream_is(const struct nb_stream *s);
/* Fills *info once the handshake is done: NB_OK; NB_E_AGAIN before; NB_E_INVAL if s is not a
 * TLS stream. */
int tls_stream_info(const struct nb_stream *s, struct tls_info *info);

/*
 * A dialer whose streams are TLS over another dialer's: dial() dials `inner`, wraps the stream
 * with tls_client_wrap() and returns it at once; cbs->on_connect reports connect + handshake.
 * Embed it (caller-owned storage) and pass &d->base wherever an nb_dialer goes. The options are
 * copied; ctx is referenced; `inner` must outlive the dialer.
 */
struct tls_dialer {
    struct nb_dialer base;
    struct tls_ctx *_ctx;
    const struct nb_dialer *_inner;
    struct tls_connect_opts _o; /* strings owned */
};

int tls_dialer_init(struct tls_dialer *d, struct tls_ctx *ctx, const struct nb_dialer *inner,
                    const struct tls_connect_opts *o) __attribute__((warn_unused_result));
void tls_dialer_deinit(struct tls_dialer *d);

/* Counters, for tests and /metrics. */
struct tls_stats {
    size_t streams_live; /* tls_stream objects not yet freed */
    size_t ctx_live;     /* tls_ctx objects */
    size_t certs_live;   /* tls_cert objects */
    uint64_t handshakes; /* completed */
    uint64_t resumed;    /* completed with a resumed session */
    uint64_t failures;   /* handshakes that failed (any reason) */
};
void tls_stats(struct tls_stats *st);

#endif
