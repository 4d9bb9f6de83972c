/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Host TCP sockets behind the nb_stream interface. Reads go through one process-wide 64 KiB
 * buffer and are handed to on_data directly, so an idle connection holds no read memory; writes
 * go straight to the kernel when the queue is empty and into an nb_bufq otherwise.
 *
 * Ownership: the stream belongs to whoever called nb_tcp_connect() or received it from a
 * listener. After close() no callback runs; the object is freed from a deferred call once the
 * fd is closed: immediately on abort; on a graceful close once the queue is out, our FIN sent
 * and the peer's EOF read (input meanwhile discarded), at most CLOSE_DRAIN_MS after the queue
 * drained and CLOSE_LINGER_MS for the queue itself. The drain is the "lingering close" of
 * nginx and Go: closing a socket with unread input makes the kernel send a reset, which also
 * throws away what it has not delivered of our last bytes (seen: the tail of an upload lost
 * to a TLS server's unread session ticket).
 */
#include "platform/sock.h"
#include "platform/bufq.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF        65536
#define READS_PER_EVENT 4
#define CLOSE_LINGER_MS 30000
#define CLOSE_DRAIN_MS  5000
/*
 * Writes smaller than this are queued and sent together from a deferred call after the current
 * event: a relay fed by lwIP gets one segment (~1.2 KiB) per call, dozens per event, and one
 * send() for all of them costs a fraction of one each. Larger writes go straight to the kernel.
 */
#define COALESCE_MIN 16384

struct sock_stream {
    struct nb_stream base;
    struct nb_io io;
    struct nb_bufq wq;
    struct nb_timer timer; /* connect timeout, then close linger */
    struct nb_defer defer;
    struct nb_defer err_defer;   /* reports a failure found inside a call (connect) from the loop */
    struct nb_defer flush_defer; /* sends coalesced small writes after the current event */
    struct nb_defer ev_defer;    /* applies a pause/resume made outside our own I/O callback */
    struct sockaddr_storage local; /* cached by the first addrs() that asks for it */
    bool have_local;
    bool in_io;        /* inside ss_on_io: the event mask is brought up to date at its end */
    int pending_errno; /* failure found inside a call, reported by err_defer */
    int fd;
    bool connecting;
    bool paused;
    bool want_shutdown; /* FIN after the queue drains */
    bool shut_wr;       /* FIN sent */
    bool eof;           /* peer FIN seen */
    bool failed;        /* on_error delivered */
    bool closed;        /* owner called close() */
    bool hup;           /* hang-up without an error seen while nothing was requested */
    bool freeing;
    /* closed but not released yet (flushing or draining): nb_tcp_close_lingering() */
    struct sock_stream *lnext, **lprev;
};

static size_t streams_live;
static struct sock_stream *lingering;

static void linger_link(struct sock_stream *ss)
{
    if (ss->lprev)
        return;
    ss->lnext = lingering;
    if (lingering)
        lingering->lprev = &ss->lnext;
    lingering = ss;
    ss->lprev = &lingering;
}
static uint8_t read_buf[READ_BUF];

size_t nb_tcp_streams_live(void)
{
    return streams_live;
}

static void ss_free_deferred(struct nb_defer *d)
{
    struct sock_stream *ss = d->arg;
    nb_timer_cancel(&ss->timer);
    nb_io_stop(&ss->io);
    if (ss->fd >= 0)
        close(ss->fd);
    nb_bufq_clear(&ss->wq);
    streams_live--;
    free(ss);
}

static void ss_release(struct sock_stream *ss)
{
    if (ss->freeing)
        return;
    ss->freeing = true;
    if (ss->lprev) {
        *ss->lprev = ss->lnext;
        if (ss->lnext)
            ss->lnext->lprev = ss->lprev;
        ss->lprev = NULL;
    }
    nb_io_stop(&ss->io);
    nb_timer_cancel(&ss->timer);
    nb_defer_cancel(ss->base.loop, &ss->err_defer);
    nb_defer_cancel(ss->base.loop, &ss->flush_defer);
    nb_defer_cancel(ss->base.loop, &ss->ev_defer);
    nb_defer(ss->base.loop, &ss->defer, ss_free_deferred, ss);
}

static void ss_update_events(struct sock_stream *ss)
{
    uint32_t ev = 0;
    if (ss->failed || ss->freeing) {
        nb_io_set(&ss->io, 0);
        return;
    }
    if (ss->connecting || ss->wq.len > 0)
        ev |= NB_IO_WRITE;
    if (!ss->connecting && !ss->paused && !ss->eof && !ss->closed)
        ev |= NB_IO_READ;
    if (ev == 0 && !ss->hup)
        ev = NB_IO_ERROR; /* paused or idle: still hear about a reset */
    nb_io_set(&ss->io, ev);
}

static void ss_fail(struct sock_stream *ss, const char *why)
{
    if (ss->closed) {
        ss_release(ss);
        return;
    }
    if (ss->failed)
        return;
    ss->failed = true;
    nb_bufq_clear(&ss->wq);
    nb_io_set(&ss->io, 0);
    if (ss->connecting) {
        ss->connecting = false;
        if (ss->base.cbs && ss->base.cbs->on_connect) {
            ss->base.cbs->on_connect(ss->base.arg, &ss->base, why);
            return;
        }
    }
    if (ss->base.cbs && ss->base.cbs->on_error)
        ss->base.cbs->on_error(ss->base.arg, &ss->base, why);
}

static const char *errno_reason(int e)
{
    switch (e) {
    case ECONNRESET:
        return "connection reset";
    case ECONNREFUSED:
        return "connection refused";
    case ETIMEDOUT:
        return "timed out";
    case EHOSTUNREACH:
    case ENETUNREACH:
        return "unreachable";
    case EPIPE:
        return "broken pipe";
    default:
        return "I/O error";
    }
}

/* Writes as much of the queue as the kernel takes. Returns false if the stream failed. */
static bool ss_flush(struct sock_stream *ss)
{
    while (ss->wq.len > 0) {
        size_t n;
        const uint8_t *p = nb_bufq_peek(&ss->wq, &n);
        ssize_t w = send(ss->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            ss_fail(ss, errno_reason(errno));
            return false;
        }
        nb_bufq_consume(&ss->wq, (size_t)w);
    }
    if (ss->wq.len == 0 && ss->want_shutdown && !ss->shut_wr) {
        shutdown(ss->fd, SHUT_WR);
        ss->shut_wr = true;
    }
    return true;
}

/*
 * Closed, queue out: FIN. Input nobody read means the peer may still be sending: discard it and
 * wait for the peer's EOF (CLOSE_DRAIN_MS at most) so the close does not become a reset. With
 * nothing unread the socket closes now (an idle keep-alive connection never lingers).
 */
static void ss_drain_or_release(struct sock_stream *ss)
{
    if (!ss->shut_wr) {
        shutdown(ss->fd, SHUT_WR);
        ss->shut_wr = true;
    }
    bool unread = false;
    for (int i = 0; !ss->eof && i < 16; i++) { /* at most 1 MiB now; the rest from the loop */
        ssize_t r = recv(ss->fd, read_buf, sizeof read_buf, MSG_DONTWAIT);
        if (r > 0)
            unread = true;
        else if (r == 0)
            ss->eof = true;
        else
            break;
    }
    if (ss->eof || !unread) {
        ss_release(ss);
        return;
    }
    nb_timer_arm(ss->base.loop, &ss->timer, CLOSE_DRAIN_MS);
    nb_io_set(&ss->io, NB_IO_READ);
    linger_link(ss);
}

static void ss_on_io_inner(struct nb_io *io, uint32_t events)
{
    struct sock_stream *ss = io->arg;

    if ((events & NB_IO_ERROR) && !ss->connecting) {
        /* A reset or error is reported at once, even while paused (a client resetting while
         * its backend is being dialled must end that dial). */
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(ss->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0) {
            ss_fail(ss, errno_reason(err));
            return;
        }
        if (!(events & (NB_IO_READ | NB_IO_WRITE))) {
            /* A clean hang-up while paused: stop listening until the owner resumes reading
             * (which then sees the EOF) or closes; level-triggered epoll would repeat it. */
            ss->hup = true;
            if (ss->closed)
                ss_release(ss);
            else
                ss_update_events(ss);
            return;
        }
    }

    if (ss->connecting && (events & (NB_IO_WRITE | NB_IO_ERROR))) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(ss->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0) {
            ss_fail(ss, errno_reason(err));
            return;
        }
        ss->connecting = false;
        if (ss->closed) {
            /* Closed while connecting: flush what was written, bounded by the linger. */
            nb_timer_arm(ss->base.loop, &ss->timer, CLOSE_LINGER_MS);
        } else {
            nb_timer_cancel(&ss->timer);
            if (ss->base.cbs && ss->base.cbs->on_connect)
                ss->base.cbs->on_connect(ss->base.arg, &ss->base, NULL);
            if (ss->closed || ss->failed || ss->freeing)
                return;
        }
    }

    if (events & NB_IO_WRITE) {
        size_t before = ss->wq.len;
        if (!ss_flush(ss))
            return;
        if (ss->closed) {
            if (ss->wq.len == 0)
                ss_drain_or_release(ss);
            return;
        }
        if (ss->wq.len < before)
            nb_stream__check_drain(&ss->base);
        if (ss->closed || ss->failed || ss->freeing)
            return;
    }

    if ((events & (NB_IO_READ | NB_IO_ERROR)) && !ss->connecting) {
        if (ss->closed) {
            /* Graceful close in progress: discard input (unread data would turn our close into
             * a reset), keep flushing until the queue is out, watch for the peer's reset. */
            ssize_t r = recv(ss->fd, read_buf, sizeof read_buf, 0);
            if (r == 0) {
                ss->eof = true;
                if (ss->wq.len == 0)
                    ss_release(ss);
                else
                    nb_io_set(&ss->io, NB_IO_WRITE); /* EOF stays readable: stop reading */
            } else if (r < 0 && errno != EAGAIN && errno != EINTR) {
                ss_release(ss);
            }
            return;
        }
        for (int i = 0;
             i < READS_PER_EVENT && !ss->paused && !ss->eof && !ss->failed && ss->base.cbs != NULL;
             i++) {
            ssize_t r = recv(ss->fd, read_buf, sizeof read_buf, 0);
            if (r > 0) {
                ss->base.cbs->on_data(ss->base.arg, &ss->base, read_buf, (size_t)r);
                if (ss->closed || ss->failed || ss->freeing)
                    return;
                if ((size_t)r < sizeof read_buf)
                    break;
                continue;
            }
            if (r == 0) {
                ss->eof = true;
                if (ss->base.cbs && ss->base.cbs->on_eof)
                    ss->base.cbs->on_eof(ss->base.arg, &ss->base);
                if (ss->closed || ss->failed || ss->freeing)
                    return;
                break;
            }
            if (errno == EAGAIN || errno == EINTR)
                break;
            ss_fail(ss, errno_reason(errno));
            return;
        }
    }
    if (!ss->freeing && !ss->failed)
        ss_update_events(ss);
}

/* Callbacks may pause or resume this stream: the mask is updated once, at the end. */
static void ss_on_io(struct nb_io *io, uint32_t events)
{
    struct sock_stream *ss = io->arg;
    ss->in_io = true;
    ss_on_io_inner(io, events);
    ss->in_io = false; /* the memory lives until a deferred free */
    if (!ss->failed && !ss->freeing && !ss->closed)
        ss_update_events(ss);
}

static void ss_pending_failed(struct nb_defer *d)
{
    struct sock_stream *ss = d->arg;
    ss_fail(ss, errno_reason(ss->pending_errno));
}

static void ss_flush_deferred(struct nb_defer *d)
{
    struct sock_stream *ss = d->arg;
    if (ss->failed || ss->freeing)
        return;
    size_t before = ss->wq.len;
    if (!ss_flush(ss))
        return;
    if (ss->closed) {
        if (ss->wq.len == 0)
            ss_drain_or_release(ss);
        else
            ss_update_events(ss);
        return;
    }
    ss_update_events(ss); /* WRITE interest if the kernel did not take everything */
    if (ss->wq.len < before)
        nb_stream__check_drain(&ss->base);
}

static int ss_write(struct nb_stream *s, const void *buf, size_t len)
{
    struct sock_stream *ss = (struct sock_stream *)s;
    if (ss->closed || ss->failed || ss->want_shutdown)
        return NB_E_CLOSED;
    if (len == 0)
        return NB_OK;
    const uint8_t *p = buf;
    if (ss->wq.len == 0 && !ss->connecting && len >= COALESCE_MIN) {
        ssize_t w = send(ss->fd, p, len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                /* send() consumed the socket error: keep it and report it from the loop, not
                 * from inside the caller's write. */
                int e = errno;
                ss->pending_errno = e;
                nb_defer(ss->base.loop, &ss->err_defer, ss_pending_failed, ss);
                return e == EPIPE ? NB_E_CLOSED : NB_E_IO;
            }
            w = 0;
        }
        p += w;
        len -= (size_t)w;
        if (len == 0)
            return NB_OK;
    }
    bool was_empty = ss->wq.len == 0;
    if (nb_bufq_append(&ss->wq, p, len) != NB_OK)
        return NB_E_NOMEM;
    if (was_empty && !ss->connecting)
        nb_defer(ss->base.loop, &ss->flush_defer, ss_flush_deferred, ss);
    else if (!ss->flush_defer._queued)
        ss_update_events(ss); /* the deferred flush sets the mask itself */
    return NB_OK;
}

static size_t ss_queued(const struct nb_stream *s)
{
    return ((const struct sock_stream *)s)->wq.len;
}

static void ss_ev_deferred(struct nb_defer *d)
{
    struct sock_stream *ss = d->arg;
    if (!ss->failed && !ss->freeing)
        ss_update_events(ss);
}

/*
 * Pausing takes effect for reads at once (the read loop checks the flag); the epoll mask is
 * brought up to date later, at the end of our own I/O callback or from a deferred call, so a
 * pause and resume within one event (an HTTP server between requests) costs no system call.
 */
static void ss_set_paused(struct nb_stream *s, bool paused)
{
    struct sock_stream *ss = (struct sock_stream *)s;
    if (ss->paused == paused)
        return;
    ss->paused = paused;
    if (!paused)
        ss->hup = false;
    if (!ss->failed && !ss->freeing && !ss->in_io)
        nb_defer(ss->base.loop, &ss->ev_defer, ss_ev_deferred, ss);
}

static int ss_shutdown(struct nb_stream *s)
{
    struct sock_stream *ss = (struct sock_stream *)s;
    if (ss->closed || ss->failed)
        return NB_E_CLOSED;
    ss->want_shutdown = true;
    if (ss->wq.len == 0 && !ss->connecting && !ss->shut_wr) {
        shutdown(ss->fd, SHUT_WR);
        ss->shut_wr = true;
    }
    return NB_OK;
}

static void ss_linger_expired(struct nb_timer *t)
{
    struct sock_stream *ss = t->arg;
    if (ss->closed) {
        if (ss->wq.len > 0) { /* the peer never took our last bytes: give up with a reset */
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(ss->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        ss_release(ss);
    } else if (ss->connecting) {
        ss_fail(ss, "connect timed out");
    }
}

static void ss_close(struct nb_stream *s, bool abort)
{
    struct sock_stream *ss = (struct sock_stream *)s;
    if (ss->closed)
        return;
    ss->closed = true;
    ss->base.cbs = NULL;
    if (abort || ss->failed) {
        if (abort) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(ss->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        ss_release(ss);
        return;
    }
    if (ss->wq.len == 0 && !ss->connecting) {
        ss->want_shutdown = true;
        ss_drain_or_release(ss);
        return;
    }
    /* Graceful: finish connecting if need be, flush, FIN, close; all within CLOSE_LINGER_MS
     * (the connect timeout, if sooner, still applies while connecting). */
    ss->want_shutdown = true;
    linger_link(ss);
    if (!ss->connecting || !nb_timer_armed(&ss->timer))
        nb_timer_arm(ss->base.loop, &ss->timer, CLOSE_LINGER_MS);
    nb_io_set(&ss->io, NB_IO_WRITE | (ss->connecting || ss->eof ? 0 : NB_IO_READ));
}

static int ss_addrs(const struct nb_stream *s, struct sockaddr_storage *local,
                    struct sockaddr_storage *peer)
{
    struct sock_stream *ss = (struct sock_stream *)s; /* the cache is not the caller's state */
    socklen_t l = sizeof *local;
    if (local && !ss->have_local) {
        if (getsockname(ss->fd, (struct sockaddr *)&ss->local, &l) < 0)
            return NB_E_IO;
        ss->have_local = true;
    }
    if (local)
        *local = ss->local;
    l = sizeof *peer;
    if (peer && getpeername(ss->fd, (struct sockaddr *)peer, &l) < 0)
        return NB_E_IO;
    return NB_OK;
}

static const struct nb_stream_vtbl sock_vtbl = {
    .name = "tcp",
    .write = ss_write,
    .queued = ss_queued,
    .set_paused = ss_set_paused,
    .shutdown = ss_shutdown,
    .close = ss_close,
    .addrs = ss_addrs,
};

static struct sock_stream *ss_new(struct nb_loop *loop, int fd)
{
    struct sock_stream *ss = calloc(1, sizeof *ss);
    if (ss == NULL)
        return NULL;
    nb_stream_init(&ss->base, &sock_vtbl, loop);
    nb_bufq_init(&ss->wq);
    nb_timer_init(&ss->timer, ss_linger_expired, ss);
    ss->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    streams_live++;
    return ss;
}

int nb_tcp_connect(struct nb_loop *loop, const struct sockaddr *addr, uint32_t timeout_ms,
                   const struct nb_stream_cbs *cbs, void *arg, struct nb_stream **out)
{
    socklen_t alen =
        addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NB_E_IO;
    struct sock_stream *ss = ss_new(loop, fd);
    if (ss == NULL) {
        close(fd);
        return NB_E_NOMEM;
    }
    nb_stream_set_cbs(&ss->base, cbs, arg);
    ss->connecting = true;
    if (nb_io_start(loop, &ss->io, fd, NB_IO_WRITE, ss_on_io, ss) != NB_OK) {
        close(fd);
        streams_live--;
        free(ss);
        return NB_E_IO;
    }
    if (connect(fd, addr, alen) < 0 && errno != EINPROGRESS) {
        /* Report from the loop like every other failure, never inside nb_tcp_connect. */
        ss->pending_errno = errno;
        nb_io_set(&ss->io, 0);
        nb_defer(loop, &ss->err_defer, ss_pending_failed, ss);
    }
    if (timeout_ms)
        nb_timer_arm(loop, &ss->timer, timeout_ms);
    *out = &ss->base;
    return NB_OK;
}

/* ---- listener ---- */

struct sock_listener {
    struct nb_listener base;
    struct nb_loop *loop;
    struct nb_io io;
    struct nb_timer backoff;
    uint32_t backoff_ms;
    int fd;
};

static void sl_on_io(struct nb_io *io, uint32_t events);

static void sl_resume(struct nb_timer *t)
{
    struct sock_listener *sl = t->arg;
    nb_io_set(&sl->io, NB_IO_READ);
}

static void sl_on_io(struct nb_io *io, uint32_t events)
{
    struct sock_listener *sl = io->arg;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(sl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                return;
            /* EMFILE/ENFILE/ENOBUFS: back off 5 ms .. 1 s like the reference router. */
            sl->backoff_ms = sl->backoff_ms ? sl->backoff_ms * 2 : 5;
            if (sl->backoff_ms > 1000)
                sl->backoff_ms = 1000;
            nb_warn("sock", "accept failed (%s); pausing %u ms", strerror(errno), sl->backoff_ms);
            nb_io_set(&sl->io, 0);
            nb_timer_arm(sl->loop, &sl->backoff, sl->backoff_ms);
            return;
        }
        sl->backoff_ms = 0;
        struct sock_stream *ss = ss_new(sl->loop, fd);
        if (ss == NULL) {
            close(fd);
            continue;
        }
        if (nb_io_start(sl->loop, &ss->io, fd, 0, ss_on_io, ss) != NB_OK) {
            close(fd);
            streams_live--;
            free(ss);
            continue;
        }
        sl->base.on_accept(sl->base.arg, &sl->base, &ss->base);
        /* The callback either set callbacks (then start reading) or closed the stream. */
        if (!ss->closed && !ss->freeing)
            ss_update_events(ss);
    }
}

static void sl_close(struct nb_listener *l)
{
    struct sock_listener *sl = (struct sock_listener *)l;
    nb_io_stop(&sl->io);
    nb_timer_cancel(&sl->backoff);
    close(sl->fd);
    free(sl);
}

static int sl_addr(const struct nb_listener *l, struct sockaddr_storage *local)
{
    const struct sock_listener *sl = (const struct sock_listener *)l;
    socklen_t len = sizeof *local;
    return getsockname(sl->fd, (struct sockaddr *)local, &len) == 0 ? NB_OK : NB_E_IO;
}

static const struct nb_listener_vtbl listener_vtbl = {.close = sl_close, .addr = sl_addr};

int nb_tcp_listen(struct nb_loop *loop, const struct sockaddr *addr, int backlog,
                  nb_accept_fn on_accept, void *arg, struct nb_listener **out)
{
    socklen_t alen =
        addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NB_E_IO;
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (addr->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, addr, alen) < 0 || listen(fd, backlog > 0 ? backlog : 1024) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return NB_E_IO;
    }
    struct sock_listener *sl = calloc(1, sizeof *sl);
    if (sl == NULL) {
        close(fd);
        return NB_E_NOMEM;
    }
    sl->base.vt = &listener_vtbl;
    sl->base.on_accept = on_accept;
    sl->base.arg = arg;
    sl->loop = loop;
    sl->fd = fd;
    nb_timer_init(&sl->backoff, sl_resume, sl);
    if (nb_io_start(loop, &sl->io, fd, NB_IO_READ, sl_on_io, sl) != NB_OK) {
        close(fd);
        free(sl);
        return NB_E_IO;
    }
    *out = &sl->base;
    return NB_OK;
}

int nb_udp_bind(const struct sockaddr *addr)
{
    socklen_t alen =
        addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int zero = 0;
    if (addr->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, addr, alen) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

void nb_tcp_close_lingering(void)
{
    while (lingering) {
        struct sock_stream *ss = lingering;
        if (ss->wq.len > 0) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(ss->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        ss_release(ss); /* unlinks it */
    }
}
