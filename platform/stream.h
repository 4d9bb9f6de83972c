/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_PLATFORM_STREAM_H
#define NB_PLATFORM_STREAM_H

/*
 * The byte stream: one small vtable implemented by host TCP sockets (platform/sock.c), lwIP TCP
 * connections (netstack/) and, later, TLS over any stream. HTTP, gRPC and the L4 relays only see
 * this interface.
 *
 * Reading is pushed: the stream calls cbs->on_data with bytes it owns. Writing is queued: write()
 * takes a copy of everything it is given and returns at once; queued() tells how much is waiting,
 * and when that drops to low_water after having reached high_water, cbs->on_drain runs. A writer
 * that wants bounded memory stops producing (e.g. pauses the other side's reads) while
 * nb_stream_write_full() is true and resumes in on_drain.
 *
 * Lifetime: the owner calls close() exactly once; after that no callback runs and the stream
 * frees itself when its I/O is done (a graceful close flushes the write queue first). Callbacks
 * never free the stream under the caller: close() from inside a callback is allowed and the
 * memory goes away later, on a deferred call.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct nb_loop;
struct nb_stream;

/*
 * Callbacks. `arg` is the owner's pointer given to nb_stream_set_cbs().
 * on_data: `data` belongs to the stream and is valid only during the call; the owner consumes all
 *   of it (copies it or writes it elsewhere). Call nb_stream_pause() to stop further on_data.
 * on_eof: the peer finished sending (half-close). Writing is still allowed.
 * on_drain: the write queue fell to low_water after reaching high_water.
 * on_error: the stream failed (reset, timeout, I/O error); `err` is a static reason string. The
 *   owner must close() the stream; nothing else is delivered.
 * on_connect: outgoing streams only: err == NULL on success, else the reason; on failure the
 *   owner must still close().
 */
struct nb_stream_cbs {
    void (*on_data)(void *arg, struct nb_stream *s, const uint8_t *data, size_t len);
    void (*on_eof)(void *arg, struct nb_stream *s);
    void (*on_drain)(void *arg, struct nb_stream *s);
    void (*on_error)(void *arg, struct nb_stream *s, const char *err);
    void (*on_connect)(void *arg, struct nb_stream *s, const char *err);
};

struct nb_stream_vtbl {
    const char *name; /* "tcp", "lwip", "tls" */
    /* Queues a copy of buf. NB_OK, NB_E_CLOSED after shutdown/close/error, NB_E_NOMEM. */
    int (*write)(struct nb_stream *s, const void *buf, size_t len);
    /* Bytes accepted by write() but not yet handed to the transport. */
    size_t (*queued)(const struct nb_stream *s);
    /* Stops or resumes on_data; while paused the transport's receive window closes. */
    void (*set_paused)(struct nb_stream *s, bool paused);
    /* Half-close: send FIN once the write queue is flushed. */
    int (*shutdown)(struct nb_stream *s);
    /* Graceful (flush, then FIN) when abort is false, else reset now. Exactly once. */
    void (*close)(struct nb_stream *s, bool abort);
    /* Addresses of the connection; NB_E_UNSUPPORTED if the transport has none. */
    int (*addrs)(const struct nb_stream *s, struct sockaddr_storage *local,
                 struct sockaddr_storage *peer);
};

struct nb_stream {
    const struct nb_stream_vtbl *vt;
    const struct nb_stream_cbs *cbs;
    void *arg;
    struct nb_loop *loop;
    size_t high_water; /* default NB_STREAM_HIGH_WATER */
    size_t low_water;  /* default NB_STREAM_LOW_WATER */
    bool _above_high;  /* queue reached high_water since the last on_drain */
};

#define NB_STREAM_HIGH_WATER (256u * 1024u)
#define NB_STREAM_LOW_WATER  (64u * 1024u)

/* For implementations: fills the common part. */
void nb_stream_init(struct nb_stream *s, const struct nb_stream_vtbl *vt, struct nb_loop *loop);
/* For implementations: call after the queue shrank; fires on_drain when it crossed low_water. */
void nb_stream__check_drain(struct nb_stream *s);

static inline void nb_stream_set_cbs(struct nb_stream *s, const struct nb_stream_cbs *cbs,
                                     void *arg)
{
    s->cbs = cbs;
    s->arg = arg;
}

static inline int nb_stream_write(struct nb_stream *s, const void *buf, size_t len)
{
    int rc = s->vt->write(s, buf, len);
    if (rc == 0 && s->vt->queued(s) >= s->high_water)
        s->_above_high = true;
    return rc;
}

static inline size_t nb_stream_queued(const struct nb_stream *s)
{
    return s->vt->queued(s);
}

/* True while the writer should hold off (queue at or above high_water, no on_drain yet). */
static inline bool nb_stream_write_full(const struct nb_stream *s)
{
    return s->_above_high;
}

static inline void nb_stream_pause(struct nb_stream *s, bool paused)
{
    s->vt->set_paused(s, paused);
}

static inline int nb_stream_shutdown(struct nb_stream *s)
{
    return s->vt->shutdown(s);
}

static inline void nb_stream_close(struct nb_stream *s, bool abort)
{
    s->vt->close(s, abort);
}

static inline int nb_stream_addrs(const struct nb_stream *s, struct sockaddr_storage *local,
                                  struct sockaddr_storage *peer)
{
    return s->vt->addrs(s, local, peer);
}

/*
 * Listeners hand out accepted streams. The callback owns the new stream (it must set callbacks
 * or close it before returning).
 */
struct nb_listener;
typedef void (*nb_accept_fn)(void *arg, struct nb_listener *l, struct nb_stream *s);

struct nb_listener_vtbl {
    void (*close)(struct nb_listener *l);
    int (*addr)(const struct nb_listener *l, struct sockaddr_storage *local);
};

struct nb_listener {
    const struct nb_listener_vtbl *vt;
    nb_accept_fn on_accept;
    void *arg;
};

static inline void nb_listener_close(struct nb_listener *l)
{
    l->vt->close(l);
}

/*
 * A way to open outgoing streams into one network: an account's tunnel (lwIP over WireGuard)
 * or the host (direct_upstream targets). dial() has nb_tcp_connect's contract: on NB_OK *out is
 * valid at once (writes queue until connected) and cbs->on_connect reports the result; the
 * caller owns the stream and closes it exactly once. Dial timeouts are the caller's (arm a timer
 * and close(true)).
 */
struct nb_dialer {
    int (*dial)(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs, void *arg,
                struct nb_stream **out);
    void *ctx;
};

#endif
