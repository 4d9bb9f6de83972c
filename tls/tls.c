/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * TLS streams: wolfSSL between an owner and an inner nb_stream. Ciphertext from the inner
 * stream's on_data is offered to wolfSSL through its receive callback (straight from the
 * inner's buffer; only what wolfSSL does not take yet is copied, into `in`); wolfSSL's send
 * callback writes ciphertext to the inner stream, whose queue is the only output buffer.
 * Plaintext is decrypted into one process-wide record buffer and handed to the owner's on_data,
 * so an idle connection holds no buffer of its own.
 *
 * A server stream reads the ClientHello itself (tls/hello.c) before creating the wolfSSL
 * object: the certificate and the ALPN protocol are chosen from it, and the wolfSSL object is
 * created from the chosen certificate's context with ALPN narrowed to that one protocol.
 *
 * Lifetime (house style §8.23): close() marks the stream and the memory goes on a deferred
 * call; a graceful close during the handshake with plaintext queued keeps running the handshake
 * (no callbacks) to deliver it. Nothing here calls the owner from inside the owner's own call:
 * failures found in write() go through err_defer, resumption after set_paused(false) through
 * pump_defer.
 */
#include "tls/tls.h"
#include "tls/tls_internal.h"
#include "platform/bufq.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"

#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfio.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

const char tls_err_handshake[] = "TLS handshake failed";
const char tls_err_verify[] = "TLS certificate verification failed";
const char tls_err_timeout[] = "TLS handshake timed out";
const char tls_err_no_cert[] = "no TLS certificate for the server name";
const char tls_err_alpn[] = "no common TLS application protocol";
const char tls_err_not_tls[] = "not a TLS client hello";
const char tls_err_closed[] = "connection closed during the TLS handshake";
const char tls_err_truncated[] = "connection closed inside a TLS record";
const char tls_err_protocol[] = "TLS protocol error";
const char tls_err_nomem[] = "out of memory";

#define PLAIN_BUF       16384 /* a record's plaintext: wolfSSL_read returns one record at most */
#define WRITE_CHUNK     (1u << 20) /* wolfSSL_write takes an int */
#define CLOSE_LINGER_MS 30000      /* bound on finishing a handshake after close() */

static const char plain_http_answer[] = "HTTP/1.0 400 Bad Request\r\n\r\n"
                                        "Client sent an HTTP request to an HTTPS server.\n";

static uint8_t plain_buf[PLAIN_BUF];
static size_t streams_live;
static uint64_t n_handshakes, n_resumed, n_failures;

enum ts_state {
    TS_HELLO,     /* server: reading the ClientHello, no wolfSSL object yet */
    TS_HANDSHAKE, /* wolfSSL handshake running */
    TS_OPEN,      /* application data */
    TS_DEAD,      /* failed; the owner has been told and will close */
};

struct tls_stream {
    struct nb_stream base;
    struct nb_stream *inner; /* owned; NULL once handed back to its own close */
    struct tls_ctx *ctx;     /* reference */
    struct tls_cert *cert;   /* server: the certificate served (reference) */
    WOLFSSL *ssl;
    enum ts_state state;
    struct nb_bufq in;  /* ciphertext received and not yet taken by wolfSSL */
    const uint8_t *cur; /* the inner's on_data bytes being offered (borrowed), cur_len left */
    size_t cur_len;
    struct nb_bufq wq; /* plaintext written before the handshake finished */
    uint8_t *hello;    /* server, TS_HELLO: the ClientHello so far when it came in pieces */
    size_t hello_len;
    struct nb_timer timer;
    struct nb_defer free_defer;
    struct nb_defer pump_defer; /* resume reading after set_paused(false) */
    struct nb_defer err_defer;  /* report a failure found inside write() */
    const char *pending_err;
    char *name;       /* server: the client's SNI; client: the name sent (NULL = none) */
    const char *alpn; /* negotiated: into ctx->alpn_store, or alpn_own; NULL = none */
    char *alpn_own;   /* client: a negotiated name not in the ctx's list (per-stream offer) */
    const char *version;
    const char *cipher;
    uint32_t rec_left; /* record tracker over the bytes given to wolfSSL: payload left */
    uint8_t rec_hdr[5];
    uint8_t rec_hdr_have;
    bool server;
    bool resumed;
    bool paused;       /* by the owner */
    bool inner_paused; /* what we last asked of the inner stream */
    bool inner_eof;    /* the transport ended */
    bool eof_sent;     /* on_eof delivered (close_notify or a clean transport EOF) */
    bool notify_rx;    /* the peer's close_notify arrived */
    bool want_shutdown;
    bool shut_sent; /* close_notify written, inner shut down */
    bool connect_told;
    bool closed; /* the owner called close() */
    bool freeing;
};

static const struct nb_stream_vtbl tls_vtbl;
static void ts_pump(struct tls_stream *ts);

/* ---- the stream ---- */

static void ts_free_deferred(struct nb_defer *d)
{
    struct tls_stream *ts = d->arg;
    if (ts->ssl)
        wolfSSL_free(ts->ssl);
    nb_bufq_clear(&ts->in);
    nb_bufq_clear(&ts->wq);
    free(ts->hello);
    tls_cert_unref(ts->cert);
    tls_ctx_unref(ts->ctx);
    free(ts->name);
    free(ts->alpn_own);
    free(ts);
    streams_live--;
}

/* Ends our use of the inner stream and frees the TLS stream later. */
static void ts_release(struct tls_stream *ts, bool abort_inner)
{
    if (ts->freeing)
        return;
    ts->freeing = true;
    nb_timer_cancel(&ts->timer);
    nb_defer_cancel(ts->base.loop, &ts->pump_defer);
    nb_defer_cancel(ts->base.loop, &ts->err_defer);
    if (ts->inner) {
        nb_stream_close(ts->inner, abort_inner);
        ts->inner = NULL;
    }
    nb_defer(ts->base.loop, &ts->free_defer, ts_free_deferred, ts);
}

static void ts_set_inner_pause(struct tls_stream *ts)
{
    /* A handshake always reads; afterwards the owner's pause is the inner's. */
    bool want = ts->state == TS_OPEN && ts->paused && !ts->closed;
    if (ts->inner == NULL || want == ts->inner_paused)
        return;
    ts->inner_paused = want;
    nb_stream_pause(ts->inner, want);
}

/* Fails the stream: the owner hears `why` once (on_connect during the handshake, else
 * on_error) and must close. After close() a failure just ends everything. */
static void ts_fail(struct tls_stream *ts, const char *why)
{
    if (ts->state == TS_DEAD || ts->freeing)
        return;
    if (ts->state != TS_OPEN)
        n_failures++;
    ts->state = TS_DEAD;
    nb_timer_cancel(&ts->timer);
    nb_bufq_clear(&ts->wq);
    nb_bufq_clear(&ts->in);
    free(ts->hello);
    ts->hello = NULL;
    ts->hello_len = 0;
    ts->cur_len = 0;
    if (ts->closed) {
        ts_release(ts, true);
        return;
    }
    /* Keep the inner stream (an alert may be queued on it) but stop reading it. */
    if (ts->inner && !ts->inner_paused) {
        ts->inner_paused = true;
        nb_stream_pause(ts->inner, true);
    }
    const struct nb_stream_cbs *cbs = ts->base.cbs;
    if (!ts->connect_told && cbs && cbs->on_connect) {
        ts->connect_told = true;
        cbs->on_connect(ts->base.arg, &ts->base, why);
    } else if (cbs && cbs->on_error) {
        cbs->on_error(ts->base.arg, &ts->base, why);
    }
}

/* Maps a wolfSSL failure to our reason. */
static const char *ssl_reason(struct tls_stream *ts, int err)
{
    switch (err) {
    case DOMAIN_NAME_MISMATCH:
    case IPADDR_MISMATCH:
    case ASN_NO_SIGNER_E:
    case ASN_AFTER_DATE_E:
    case ASN_BEFORE_DATE_E:
    case ASN_SIG_CONFIRM_E:
    case ASN_SELF_SIGNED_E:
    case ASN_PATHLEN_INV_E:
    case ASN_PATHLEN_SIZE_E:
    case VERIFY_CERT_ERROR:
        return tls_err_verify;
    case UNKNOWN_ALPN_PROTOCOL_NAME_E:
        return tls_err_alpn;
    case MEMORY_E:
        return tls_err_nomem;
    default:
        break;
    }
    if (!ts->server && ts->ssl && wolfSSL_get_verify_result(ts->ssl) != 0)
        return tls_err_verify;
    WOLFSSL_ALERT_HISTORY ah;
    if (ts->ssl && wolfSSL_get_alert_history(ts->ssl, &ah) == WOLFSSL_SUCCESS &&
        ah.last_rx.level == alert_fatal && ah.last_rx.code == no_application_protocol)
        return tls_err_alpn;
    return ts->state == TS_OPEN ? tls_err_protocol : tls_err_handshake;
}

static void ts_fail_ssl(struct tls_stream *ts, int err)
{
    char buf[WOLFSSL_MAX_ERROR_SZ];
    nb_debug("tls", "%s %s: wolfSSL error %d (%s)", ts->server ? "server" : "client",
             ts->state == TS_OPEN ? "stream" : "handshake", err,
             wolfSSL_ERR_error_string((unsigned long)err, buf));
    ts_fail(ts, ssl_reason(ts, err));
}

/* The record tracker: follows TLS record boundaries in the bytes given to wolfSSL, so a
 * transport EOF can be told clean (between records) from a truncation. */
static void track_records(struct tls_stream *ts, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (ts->rec_left == 0) {
            size_t take = 5u - ts->rec_hdr_have;
            if (take > n)
                take = n;
            memcpy(ts->rec_hdr + ts->rec_hdr_have, p, take);
            ts->rec_hdr_have += (uint8_t)take;
            p += take;
            n -= take;
            if (ts->rec_hdr_have == 5) {
                ts->rec_left = (uint32_t)ts->rec_hdr[3] << 8 | ts->rec_hdr[4];
                if (ts->rec_left == 0)
                    ts->rec_hdr_have = 0;
            }
            continue;
        }
        size_t take = n < ts->rec_left ? n : ts->rec_left;
        ts->rec_left -= (uint32_t)take;
        p += take;
        n -= take;
        if (ts->rec_left == 0)
            ts->rec_hdr_have = 0;
    }
}

static bool at_record_boundary(const struct tls_stream *ts)
{
    return ts->rec_left == 0 && ts->rec_hdr_have == 0 && ts->in.len == 0 && ts->cur_len == 0;
}

/* wolfSSL's receive callback: ciphertext from `in`, then from the inner's current buffer. */
static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
    struct tls_stream *ts = arg;
    size_t n = 0;
    (void)ssl;
    if (sz <= 0)
        return 0;
    if (ts->in.len > 0) {
        const uint8_t *p = nb_bufq_peek(&ts->in, &n);
        if (n > (size_t)sz)
            n = (size_t)sz;
        memcpy(buf, p, n);
        nb_bufq_consume(&ts->in, n);
    } else if (ts->cur_len > 0) {
        n = ts->cur_len < (size_t)sz ? ts->cur_len : (size_t)sz;
        memcpy(buf, ts->cur, n);
        ts->cur += n;
        ts->cur_len -= n;
    } else {
        /* Also at the transport's EOF: the pump decides what an EOF means. */
        return WOLFSSL_CBIO_ERR_WANT_READ;
    }
    track_records(ts, (const uint8_t *)buf, n);
    return (int)n;
}

/* wolfSSL's send callback: the inner stream queues a copy, so this never blocks. */
static int io_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
    struct tls_stream *ts = arg;
    (void)ssl;
    if (ts->inner == NULL || sz < 0)
        return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    if (nb_stream_write(ts->inner, buf, (size_t)sz) != NB_OK)
        return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    return sz;
}

/* Keeps what wolfSSL has not taken from the inner's buffer before that buffer goes away. */
static void stash_rest(struct tls_stream *ts)
{
    if (ts->cur_len == 0)
        return;
    if (nb_bufq_append(&ts->in, ts->cur, ts->cur_len) != NB_OK) {
        ts->cur_len = 0;
        ts_fail(ts, tls_err_nomem);
        return;
    }
    ts->cur_len = 0;
}

static void send_alert(struct tls_stream *ts, uint8_t desc)
{
    const uint8_t alert[7] = {21, 3, 3, 0, 2, 2 /* fatal */, desc};
    if (ts->inner)
        (void)nb_stream_write(ts->inner, alert, sizeof alert);
}

static int encrypt_out(struct tls_stream *ts, const uint8_t *p, size_t len)
{
    ts->inner->high_water = ts->base.high_water;
    ts->inner->low_water = ts->base.low_water;
    while (len > 0) {
        int n = len > WRITE_CHUNK ? (int)WRITE_CHUNK : (int)len;
        int w = wolfSSL_write(ts->ssl, p, n);
        if (w <= 0)
            return wolfSSL_get_error(ts->ssl, w);
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static void send_close_notify(struct tls_stream *ts)
{
    if (ts->shut_sent)
        return;
    ts->shut_sent = true;
    /* Sends close_notify; not waiting for the peer's (that comes as on_eof). */
    (void)wolfSSL_shutdown(ts->ssl);
    if (ts->inner)
        (void)nb_stream_shutdown(ts->inner);
}

/* Creates the wolfSSL object for a server stream from the chosen certificate. */
static int server_start(struct tls_stream *ts, const struct tls_hello *h)
{
    struct tls_ctx *c = ts->ctx;
    bool refuse;
    const char *alpn = tls_hello_alpn_select(h, c->alpn, c->alpn_n, &refuse);
    if (refuse) {
        send_alert(ts, 120 /* no_application_protocol */);
        ts_fail(ts, tls_err_alpn);
        return NB_E_INVAL;
    }
    struct tls_cert *cert = c->select(c->select_arg, h);
    if (ts->freeing || ts->state == TS_DEAD)
        return NB_E_CLOSED;
    if (cert == NULL) {
        send_alert(ts, 112 /* unrecognized_name */);
        ts_fail(ts, tls_err_no_cert);
        return NB_E_NOTFOUND;
    }
    ts->cert = tls_cert_ref(cert);
    ts->name = strdup(h->sni);
    ts->ssl = wolfSSL_new(cert->_wctx);
    if (ts->name == NULL || ts->ssl == NULL) {
        ts_fail(ts, tls_err_nomem);
        return NB_E_NOMEM;
    }
    wolfSSL_set_app_data(ts->ssl, ts);
    wolfSSL_SSLSetIORecv(ts->ssl, io_recv);
    wolfSSL_SSLSetIOSend(ts->ssl, io_send);
    wolfSSL_SetIOReadCtx(ts->ssl, ts);
    wolfSSL_SetIOWriteCtx(ts->ssl, ts);
    if (c->no_tickets) {
        (void)wolfSSL_NoTicketTLSv12(ts->ssl);
        (void)wolfSSL_no_ticket_TLSv13(ts->ssl);
    }
    /* ALPN was decided above; wolfSSL only has to confirm that one name. */
    if (alpn) {
        ts->alpn = alpn;
        if (wolfSSL_UseALPN(ts->ssl, (char *)alpn, (unsigned)strlen(alpn),
                            WOLFSSL_ALPN_FAILED_ON_MISMATCH) != WOLFSSL_SUCCESS) {
            ts_fail(ts, tls_err_nomem);
            return NB_E_NOMEM;
        }
    }
    ts->state = TS_HANDSHAKE;
    return NB_OK;
}

/* Appends to the ClientHello buffer, which never holds more than TLS_HELLO_MAX bytes: a
 * client sends nothing after its ClientHello before the server answers. */
static int hello_append(struct tls_stream *ts, const uint8_t *p, size_t n)
{
    if (n == 0)
        return NB_OK;
    if (ts->hello_len + n > TLS_HELLO_MAX)
        return NB_E_TOO_BIG;
    uint8_t *b = realloc(ts->hello, ts->hello_len + n);
    if (b == NULL)
        return NB_E_NOMEM;
    memcpy(b + ts->hello_len, p, n);
    ts->hello = b;
    ts->hello_len += n;
    return NB_OK;
}

/* Server, TS_HELLO: waits for the whole ClientHello, then starts wolfSSL on it. The bytes are
 * parsed where they are when one delivery holds them all (the usual case), else gathered in
 * ts->hello; either way wolfSSL then reads them all again through io_recv. */
static void hello_step(struct tls_stream *ts)
{
    const uint8_t *p;
    size_t n;
    struct tls_hello h;

    if (ts->hello_len == 0) {
        p = ts->cur;
        n = ts->cur_len;
    } else {
        int arc = hello_append(ts, ts->cur, ts->cur_len);
        ts->cur_len = 0;
        if (arc != NB_OK) {
            if (arc == NB_E_TOO_BIG)
                send_alert(ts, 50 /* decode_error */);
            ts_fail(ts, arc == NB_E_TOO_BIG ? tls_err_not_tls : tls_err_nomem);
            return;
        }
        p = ts->hello;
        n = ts->hello_len;
    }
    if (tls_hello_looks_like_http(p, n)) {
        if (ts->ctx->answer_plain_http && ts->inner)
            (void)nb_stream_write(ts->inner, plain_http_answer, sizeof plain_http_answer - 1);
        ts_fail(ts, tls_err_not_tls);
        return;
    }
    int rc = tls_hello_parse(p, n, &h);
    switch (rc) {
    case NB_OK:
        /* Hand every byte read so far to wolfSSL, in order: the gathered ClientHello goes to
         * `in` (io_recv reads it first), the current delivery stays in cur. */
        if (ts->hello_len > 0) {
            int arc = nb_bufq_append(&ts->in, ts->hello, ts->hello_len);
            free(ts->hello);
            ts->hello = NULL;
            ts->hello_len = 0;
            if (arc != NB_OK) {
                ts_fail(ts, tls_err_nomem);
                return;
            }
        }
        (void)server_start(ts, &h);
        return;
    case NB_E_AGAIN:
        if (ts->hello_len == 0) {
            /* TLS_HELLO_MAX bounds what the parser asks for: this fits. */
            int arc = hello_append(ts, ts->cur, ts->cur_len);
            ts->cur_len = 0;
            if (arc != NB_OK) {
                ts_fail(ts, tls_err_nomem);
                return;
            }
        }
        if (ts->inner_eof)
            ts_fail(ts, tls_err_closed);
        return;
    case NB_E_PARSE:
    case NB_E_TOO_BIG:
        send_alert(ts, 50 /* decode_error */);
        ts_fail(ts, tls_err_not_tls);
        return;
    default:
        ts_fail(ts, tls_err_handshake);
        return;
    }
}

static void handshake_done(struct tls_stream *ts)
{
    char *proto = NULL;
    unsigned short plen = 0;

    nb_timer_cancel(&ts->timer);
    ts->state = TS_OPEN;
    ts->version = wolfSSL_get_version(ts->ssl);
    int suite = wolfSSL_get_current_cipher_suite(ts->ssl);
    ts->cipher =
        wolfSSL_get_cipher_name_iana_from_suite((unsigned char)(suite >> 8), (unsigned char)suite);
    if (ts->cipher == NULL || strcmp(ts->cipher, "None") == 0)
        ts->cipher = wolfSSL_get_cipher_name(ts->ssl);
    ts->resumed = wolfSSL_session_reused(ts->ssl) == 1;
    n_handshakes++;
    if (ts->resumed)
        n_resumed++;
    if (!ts->server && wolfSSL_ALPN_GetProtocol(ts->ssl, &proto, &plen) == WOLFSSL_SUCCESS) {
        for (size_t i = 0; i < ts->ctx->alpn_n && ts->alpn == NULL; i++)
            if (strlen(ts->ctx->alpn[i]) == plen && memcmp(ts->ctx->alpn[i], proto, plen) == 0)
                ts->alpn = ts->ctx->alpn[i];
        if (ts->alpn == NULL) {
            ts->alpn = ts->alpn_own = strndup(proto, plen);
            if (ts->alpn == NULL) {
                ts_fail(ts, tls_err_nomem);
                return;
            }
        }
    }
    /* Plaintext queued during the handshake goes out now. */
    while (ts->wq.len > 0) {
        size_t n;
        const uint8_t *p = nb_bufq_peek(&ts->wq, &n);
        int e = encrypt_out(ts, p, n);
        if (e != 0) {
            ts_fail_ssl(ts, e);
            return;
        }
        nb_bufq_consume(&ts->wq, n);
    }
    if (ts->closed) {
        /* Closed gracefully during the handshake: what was queued is out, finish. */
        send_close_notify(ts);
        ts_release(ts, false);
        return;
    }
    if (ts->want_shutdown)
        send_close_notify(ts);
    ts_set_inner_pause(ts);
    const struct nb_stream_cbs *cbs = ts->base.cbs;
    ts->connect_told = true;
    if (cbs && cbs->on_connect)
        cbs->on_connect(ts->base.arg, &ts->base, NULL);
    if (ts->closed || ts->state != TS_OPEN)
        return;
    nb_stream__check_drain(&ts->base);
}

/* The transport ended and wolfSSL has consumed everything: clean EOF or truncation. */
static void transport_eof(struct tls_stream *ts)
{
    if (ts->state != TS_OPEN) {
        ts_fail(ts, tls_err_closed);
        return;
    }
    if (ts->eof_sent)
        return;
    if (!at_record_boundary(ts)) {
        ts_fail(ts, tls_err_truncated);
        return;
    }
    ts->eof_sent = true;
    if (ts->base.cbs && ts->base.cbs->on_eof)
        ts->base.cbs->on_eof(ts->base.arg, &ts->base);
}

/* Runs the state machine over the input available: handshake, then decrypt and deliver. */
static void ts_pump(struct tls_stream *ts)
{
    if (ts->freeing || ts->state == TS_DEAD)
        return;
    if (ts->state == TS_HELLO) {
        hello_step(ts);
        if (ts->state != TS_HANDSHAKE)
            return;
    }
    if (ts->state == TS_HANDSHAKE) {
        int r = ts->server ? wolfSSL_accept(ts->ssl) : wolfSSL_connect(ts->ssl);
        if (r != WOLFSSL_SUCCESS) {
            int e = wolfSSL_get_error(ts->ssl, r);
            if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE) {
                ts_fail_ssl(ts, e);
                return;
            }
            stash_rest(ts);
            if (ts->inner_eof && ts->state == TS_HANDSHAKE && ts->in.len == 0)
                ts_fail(ts, tls_err_closed);
            return;
        }
        handshake_done(ts);
        if (ts->freeing || ts->state != TS_OPEN)
            return;
    }
    while (ts->state == TS_OPEN && !ts->paused && !ts->closed && !ts->eof_sent) {
        int n = wolfSSL_read(ts->ssl, plain_buf, (int)sizeof plain_buf);
        if (n > 0) {
            if (ts->base.cbs && ts->base.cbs->on_data)
                ts->base.cbs->on_data(ts->base.arg, &ts->base, plain_buf, (size_t)n);
            continue;
        }
        int e = wolfSSL_get_error(ts->ssl, n);
        if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) {
            if (ts->inner_eof && ts->in.len == 0 && ts->cur_len == 0)
                transport_eof(ts);
            break;
        }
        if (e == WOLFSSL_ERROR_ZERO_RETURN) {
            /* close_notify: the peer is done sending. */
            ts->eof_sent = true;
            ts->notify_rx = true;
            if (ts->base.cbs && ts->base.cbs->on_eof)
                ts->base.cbs->on_eof(ts->base.arg, &ts->base);
            break;
        }
        ts_fail_ssl(ts, e);
        return;
    }
    if (!ts->freeing && ts->state != TS_DEAD) {
        if (ts->closed || ts->notify_rx) {
            ts->cur_len = 0; /* nobody will read it */
            nb_bufq_clear(&ts->in);
        } else {
            stash_rest(ts);
        }
        ts_set_inner_pause(ts);
    }
}

/* ---- inner stream callbacks (we are the inner's owner) ---- */

static void in_data(void *arg, struct nb_stream *s, const uint8_t *data, size_t len)
{
    struct tls_stream *ts = arg;
    (void)s;
    /* Nothing valid follows the peer's close_notify: drop it rather than keep it. */
    if (ts->state == TS_DEAD || ts->freeing || ts->notify_rx)
        return;
    if (ts->in.len > 0 && ts->state != TS_HELLO) {
        /* Older bytes are waiting (we were paused): keep the order. */
        if (nb_bufq_append(&ts->in, data, len) != NB_OK) {
            ts_fail(ts, tls_err_nomem);
            return;
        }
    } else {
        ts->cur = data;
        ts->cur_len = len;
    }
    if (ts->state == TS_OPEN && ts->paused && !ts->closed) {
        stash_rest(ts);
        return;
    }
    ts_pump(ts);
    ts->cur_len = 0; /* pump stashed the rest; never keep a pointer into the inner's buffer */
}

static void in_eof(void *arg, struct nb_stream *s)
{
    struct tls_stream *ts = arg;
    (void)s;
    ts->inner_eof = true;
    if (ts->state == TS_DEAD || ts->freeing)
        return;
    if (ts->state == TS_OPEN && ts->paused && !ts->closed)
        return; /* seen when the owner resumes */
    ts_pump(ts);
}

static void in_drain(void *arg, struct nb_stream *s)
{
    struct tls_stream *ts = arg;
    (void)s;
    if (ts->state == TS_OPEN && !ts->closed && !ts->freeing)
        nb_stream__check_drain(&ts->base);
}

static void in_error(void *arg, struct nb_stream *s, const char *err)
{
    struct tls_stream *ts = arg;
    (void)s;
    ts_fail(ts, err);
}

static void in_connect(void *arg, struct nb_stream *s, const char *err)
{
    struct tls_stream *ts = arg;
    (void)s;
    if (err)
        ts_fail(ts, err);
}

static const struct nb_stream_cbs inner_cbs = {
    .on_data = in_data,
    .on_eof = in_eof,
    .on_drain = in_drain,
    .on_error = in_error,
    .on_connect = in_connect,
};

/* ---- the vtable ---- */

static void pending_failed(struct nb_defer *d)
{
    struct tls_stream *ts = d->arg;
    ts_fail(ts, ts->pending_err);
}

static int ts_write(struct nb_stream *s, const void *buf, size_t len)
{
    struct tls_stream *ts = (struct tls_stream *)s;
    if (ts->closed || ts->state == TS_DEAD || ts->want_shutdown || ts->pending_err)
        return NB_E_CLOSED;
    if (len == 0)
        return NB_OK;
    if (ts->state != TS_OPEN || ts->wq.len > 0)
        return nb_bufq_append(&ts->wq, buf, len) == NB_OK ? NB_OK : NB_E_NOMEM;
    int e = encrypt_out(ts, buf, len);
    if (e != 0) {
        /* Reported from the loop, never inside the owner's call. */
        ts->pending_err = ssl_reason(ts, e);
        nb_defer(ts->base.loop, &ts->err_defer, pending_failed, ts);
        return e == MEMORY_E ? NB_E_NOMEM : NB_E_IO;
    }
    return NB_OK;
}

static size_t ts_queued(const struct nb_stream *s)
{
    const struct tls_stream *ts = (const struct tls_stream *)s;
    return ts->wq.len + (ts->inner ? nb_stream_queued(ts->inner) : 0);
}

static void pump_deferred(struct nb_defer *d)
{
    ts_pump(d->arg);
}

static void ts_set_paused(struct nb_stream *s, bool paused)
{
    struct tls_stream *ts = (struct tls_stream *)s;
    if (ts->paused == paused || ts->closed || ts->freeing)
        return;
    ts->paused = paused;
    ts_set_inner_pause(ts);
    /* Bytes may be waiting in `in` or inside wolfSSL: deliver them from the loop, not from
     * inside this call (the caller may be in another stream's on_data). */
    if (!paused && ts->state == TS_OPEN)
        nb_defer(ts->base.loop, &ts->pump_defer, pump_deferred, ts);
}

static int ts_shutdown(struct nb_stream *s)
{
    struct tls_stream *ts = (struct tls_stream *)s;
    if (ts->closed || ts->state == TS_DEAD)
        return NB_E_CLOSED;
    ts->want_shutdown = true;
    if (ts->state == TS_OPEN && ts->wq.len == 0)
        send_close_notify(ts);
    return NB_OK;
}

static void linger_expired(struct nb_timer *t)
{
    struct tls_stream *ts = t->arg;
    if (ts->closed)
        ts_release(ts, true);
    else
        ts_fail(ts, tls_err_timeout);
}

static void ts_close(struct nb_stream *s, bool abort)
{
    struct tls_stream *ts = (struct tls_stream *)s;
    if (ts->closed)
        return;
    ts->closed = true;
    ts->base.cbs = NULL;
    if (abort) {
        ts_release(ts, true);
        return;
    }
    switch (ts->state) {
    case TS_OPEN:
        send_close_notify(ts);
        ts_release(ts, false);
        return;
    case TS_DEAD:
        ts_release(ts, false); /* lets an alert already queued go out */
        return;
    case TS_HELLO:
    case TS_HANDSHAKE:
        if (ts->wq.len == 0) {
            ts_release(ts, false);
            return;
        }
        /* Data to deliver: finish the handshake first (no callbacks), within its timeout. */
        if (!nb_timer_armed(&ts->timer))
            nb_timer_arm(ts->base.loop, &ts->timer, CLOSE_LINGER_MS);
        ts_set_inner_pause(ts);
        return;
    }
}

static int ts_addrs(const struct nb_stream *s, struct sockaddr_storage *local,
                    struct sockaddr_storage *peer)
{
    const struct tls_stream *ts = (const struct tls_stream *)s;
    if (ts->inner == NULL)
        return NB_E_CLOSED;
    return nb_stream_addrs(ts->inner, local, peer);
}

static const struct nb_stream_vtbl tls_vtbl = {
    .name = "tls",
    .write = ts_write,
    .queued = ts_queued,
    .set_paused = ts_set_paused,
    .shutdown = ts_shutdown,
    .close = ts_close,
    .addrs = ts_addrs,
};

static void handshake_expired(struct nb_timer *t)
{
    linger_expired(t);
}

static struct tls_stream *ts_new(struct tls_ctx *ctx, struct nb_loop *loop, bool server)
{
    struct tls_stream *ts = calloc(1, sizeof *ts);
    if (ts == NULL)
        return NULL;
    nb_stream_init(&ts->base, &tls_vtbl, loop);
    nb_bufq_init(&ts->in);
    nb_bufq_init(&ts->wq);
    nb_timer_init(&ts->timer, handshake_expired, ts);
    ts->ctx = tls_ctx_ref(ctx);
    ts->server = server;
    streams_live++;
    return ts;
}

/* Undoes ts_new for a wrap that fails before it took the inner stream. */
static void ts_discard(struct tls_stream *ts)
{
    if (ts->ssl)
        wolfSSL_free(ts->ssl);
    free(ts->hello);
    tls_ctx_unref(ts->ctx);
    free(ts->name);
    free(ts);
    streams_live--;
}

static void ts_attach(struct tls_stream *ts, struct nb_stream *inner, uint32_t timeout_ms)
{
    ts->inner = inner;
    inner->high_water = ts->base.high_water;
    inner->low_water = ts->base.low_water;
    nb_stream_set_cbs(inner, &inner_cbs, ts);
    nb_stream_pause(inner, false);
    if (timeout_ms)
        nb_timer_arm(ts->base.loop, &ts->timer, timeout_ms);
}

int tls_server_wrap(struct tls_ctx *ctx, struct nb_stream *inner, const uint8_t *initial,
                    size_t initial_len, uint32_t handshake_timeout_ms, struct nb_stream **out)
{
    if (ctx == NULL || !ctx->server || inner == NULL)
        return NB_E_INVAL;
    struct tls_stream *ts = ts_new(ctx, inner->loop, true);
    if (ts == NULL)
        return NB_E_NOMEM;
    int rc = hello_append(ts, initial, initial_len);
    if (rc != NB_OK) {
        ts_discard(ts);
        return rc == NB_E_TOO_BIG ? NB_E_INVAL : NB_E_NOMEM;
    }
    ts->state = TS_HELLO;
    ts_attach(ts, inner, handshake_timeout_ms);
    /* The initial bytes may already hold the ClientHello: look from the loop. */
    if (initial_len > 0)
        nb_defer(ts->base.loop, &ts->pump_defer, pump_deferred, ts);
    *out = &ts->base;
    return NB_OK;
}

static bool is_ip_literal(const char *name)
{
    struct in6_addr a6;
    struct in_addr a4;
    return inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1;
}

/* Creates the client's wolfSSL object: SNI, verification, ALPN. */
static int client_setup(struct tls_stream *ts, const struct tls_connect_opts *o)
{
    struct tls_ctx *c = ts->ctx;
    const char *name = o->server_name && o->server_name[0] ? o->server_name : NULL;
    ts->ssl = wolfSSL_new(c->wctx);
    if (ts->ssl == NULL)
        return NB_E_NOMEM;
    wolfSSL_set_app_data(ts->ssl, ts);
    wolfSSL_SSLSetIORecv(ts->ssl, io_recv);
    wolfSSL_SSLSetIOSend(ts->ssl, io_send);
    wolfSSL_SetIOReadCtx(ts->ssl, ts);
    wolfSSL_SetIOWriteCtx(ts->ssl, ts);
    if (name) {
        ts->name = strdup(name);
        if (ts->name == NULL)
            return NB_E_NOMEM;
    }
    bool ip = name && is_ip_literal(name);
    if (name && !ip &&
        wolfSSL_UseSNI(ts->ssl, WOLFSSL_SNI_HOST_NAME, name, (unsigned short)strlen(name)) !=
            WOLFSSL_SUCCESS)
        return NB_E_NOMEM;
    if (o->skip_verify) {
        wolfSSL_set_verify(ts->ssl, WOLFSSL_VERIFY_NONE, NULL);
    } else if (ip) {
        if (wolfSSL_X509_VERIFY_PARAM_set1_ip_asc(wolfSSL_get0_param(ts->ssl), name) !=
            WOLFSSL_SUCCESS)
            return NB_E_INVAL;
    } else if (wolfSSL_check_domain_name(ts->ssl, name) != WOLFSSL_SUCCESS) {
        return NB_E_NOMEM;
    }
    const char *alpn = o->alpn ? o->alpn : c->alpn_csv;
    if (alpn && alpn[0] &&
        wolfSSL_UseALPN(ts->ssl, (char *)alpn, (unsigned)strlen(alpn),
                        WOLFSSL_ALPN_FAILED_ON_MISMATCH) != WOLFSSL_SUCCESS)
        return NB_E_NOMEM;
    return NB_OK;
}

int tls_client_wrap(struct tls_ctx *ctx, struct nb_stream *inner, const struct tls_connect_opts *o,
                    struct nb_stream **out)
{
    if (ctx == NULL || ctx->server || inner == NULL || o == NULL)
        return NB_E_INVAL;
    if (!o->skip_verify && (o->server_name == NULL || o->server_name[0] == '\0'))
        return NB_E_INVAL;
    struct tls_stream *ts = ts_new(ctx, inner->loop, false);
    if (ts == NULL)
        return NB_E_NOMEM;
    int rc = client_setup(ts, o);
    if (rc != NB_OK) {
        ts_discard(ts);
        return rc;
    }
    ts->state = TS_HANDSHAKE;
    ts_attach(ts, inner, o->handshake_timeout_ms);
    /* The ClientHello is written from the loop (queued on inner until it connects). */
    nb_defer(ts->base.loop, &ts->pump_defer, pump_deferred, ts);
    *out = &ts->base;
    return NB_OK;
}

struct tls_ctx *tls__ssl_ctx(WOLFSSL *ssl, const char **sni)
{
    struct tls_stream *ts = wolfSSL_get_app_data(ssl);
    if (ts == NULL)
        return NULL;
    *sni = ts->name;
    return ts->ctx;
}

bool tls_stream_is(const struct nb_stream *s)
{
    return s && s->vt == &tls_vtbl;
}

int tls_stream_info(const struct nb_stream *s, struct tls_info *info)
{
    if (!tls_stream_is(s))
        return NB_E_INVAL;
    const struct tls_stream *ts = (const struct tls_stream *)s;
    if (ts->version == NULL)
        return NB_E_AGAIN;
    info->sni = ts->name ? ts->name : "";
    info->alpn = ts->alpn ? ts->alpn : "";
    info->version = ts->version;
    info->cipher = ts->cipher ? ts->cipher : "";
    info->resumed = ts->resumed;
    info->cert = ts->cert;
    return NB_OK;
}

/* ---- dialer ---- */

static int tls_dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                    void *arg, struct nb_stream **out)
{
    struct tls_dialer *d = ctx;
    struct nb_stream *inner = NULL, *s = NULL;
    int rc = d->_inner->dial(d->_inner->ctx, dst, NULL, NULL, &inner);
    if (rc != NB_OK)
        return rc;
    rc = tls_client_wrap(d->_ctx, inner, &d->_o, &s);
    if (rc != NB_OK) {
        nb_stream_close(inner, true);
        return rc;
    }
    nb_stream_set_cbs(s, cbs, arg);
    *out = s;
    return NB_OK;
}

int tls_dialer_init(struct tls_dialer *d, struct tls_ctx *ctx, const struct nb_dialer *inner,
                    const struct tls_connect_opts *o)
{
    memset(d, 0, sizeof *d);
    if (ctx == NULL || ctx->server || inner == NULL || o == NULL ||
        (!o->skip_verify && (o->server_name == NULL || o->server_name[0] == '\0')))
        return NB_E_INVAL;
    d->_o = *o;
    d->_o.server_name = o->server_name ? strdup(o->server_name) : NULL;
    d->_o.alpn = o->alpn ? strdup(o->alpn) : NULL;
    if ((o->server_name && d->_o.server_name == NULL) || (o->alpn && d->_o.alpn == NULL)) {
        free((char *)d->_o.server_name);
        free((char *)d->_o.alpn);
        memset(d, 0, sizeof *d);
        return NB_E_NOMEM;
    }
    d->_ctx = tls_ctx_ref(ctx);
    d->_inner = inner;
    d->base.dial = tls_dial;
    d->base.ctx = d;
    return NB_OK;
}

void tls_dialer_deinit(struct tls_dialer *d)
{
    free((char *)d->_o.server_name);
    free((char *)d->_o.alpn);
    tls_ctx_unref(d->_ctx);
    memset(d, 0, sizeof *d);
}

void tls_stats(struct tls_stats *st)
{
    st->streams_live = streams_live;
    st->ctx_live = tls__ctx_live;
    st->certs_live = tls__certs_live;
    st->handshakes = n_handshakes;
    st->resumed = n_resumed;
    st->failures = n_failures;
}
