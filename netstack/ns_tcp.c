/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * TCP over lwIP as nb_stream / nb_listener (platform/stream.h). Sits between lwIP's raw callback
 * API (tcp_recv/sent/err/poll/accept/connected) and the proxy, which only sees streams.
 *
 * Ownership and lifetime:
 *   - The owner holds the nb_stream until it calls close() exactly once. lwIP holds the pcb.
 *     s->pcb is non-NULL only while we may still call lwIP on it; it becomes NULL when lwIP freed
 *     it (err callback: the pcb is already gone), when we aborted it, or when we "handed it off"
 *     (tcp_close succeeded: lwIP finishes FIN/TIME_WAIT on its own, our callbacks detached).
 *   - The ns_tcp memory is freed only from its nb_defer, once owner_closed && pcb == NULL, so no
 *     callback chain ever sees it vanish.
 *   - Before a pcb leaves our hands every lwIP callback (arg/recv/sent/err/poll) is detached.
 *   - close(true) from inside an lwIP callback of the same pcb aborts at once and makes that
 *     callback return ERR_ABRT (lwIP's contract); cb_depth tells whether we are in one.
 *   - Received data is handed to on_data straight from lwIP's pbufs when the owner is reading;
 *     whatever the owner cannot take now (paused, or closed mid-chain) is copied into the
 *     stream's own byte queue (rq) and the pbufs are freed at once. So a slow reader holds heap
 *     memory bounded by its TCP window (its window closes as rq grows, since only delivered
 *     bytes are tcp_recved), never the pbuf pool that every account's input shares.
 */
#include "netstack/ns_tcp.h"
#include "netstack/ns_internal.h"

#include "lwip/ip_addr.h"
#include "lwip/pbuf.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"
#include "platform/bufq.h"
#include "platform/log.h"
#include "platform/loop.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

const char ns_tcp_err_refused[] = "connection refused";
const char ns_tcp_err_reset[] = "connection reset by peer";
const char ns_tcp_err_timeout[] = "connection timed out";
const char ns_tcp_err_nomem[] = "out of memory";
const char ns_tcp_err_closed[] = "connection closed";
const char ns_tcp_err_if_gone[] = "tunnel interface removed";

/* lwIP coarse timer shots (2 x TCP_TMR_INTERVAL each) between polls: about 200 ms */
#define POLL_TICKS (200 / TCP_SLOW_INTERVAL > 0 ? 200 / TCP_SLOW_INTERVAL : 1)
#define POLL_MS    (POLL_TICKS * TCP_SLOW_INTERVAL)

/*
 * lwIP drops a connection after TCP_MAXRTX retransmission timeouts in a row, or after
 * TCP_MAXRTX zero-window probes, and allows at most 12 (its backoff table). With our fine timer
 * ticks (lwipopts.h: a 30 ms RTO on a fast path) that would be about 23 s of a silent peer, or
 * 10 s of a closed window. While our pcb is retransmitting or probing, on_poll holds both counts
 * at GIVEUP_HOLD until NS_TCP_GIVEUP_MS have passed; lwIP then drops it after at most four more
 * attempts. Held at 8 or more, the timeout stays at its maximum (128x the RTO).
 */
#define GIVEUP_HOLD (TCP_MAXRTX - 4)
#if GIVEUP_HOLD < 7
#error "TCP_MAXRTX: the give-up hold needs at least 11"
#endif

struct ns_tcp {
    struct nb_stream base; /* first: nb_stream * <-> ns_tcp * */
    struct ns_if *nif;     /* NULL once the interface is gone */
    struct tcp_pcb *pcb;
    struct nb_bufq wq;  /* bytes lwIP's send buffer had no room for */
    struct nb_bufq rq;  /* received bytes the owner has not taken yet (see the top comment) */
    size_t rx_unacked;  /* bytes in rq not yet tcp_recved */
    size_t ack_pending; /* delivered (or discarded) bytes not yet tcp_recved */
    struct sockaddr_storage local, peer;
    struct nb_defer defer;
    struct ns_tcp *prev, *next; /* nif->streams */
    const char *err;            /* why the pcb died, delivered once */
    unsigned linger_ms;
    unsigned stuck_ms; /* polled time the pcb has been retransmitting or probing */
    int cb_depth;
    bool connecting, connected, paused, rx_eof, eof_delivered, shut_req, fin_sent;
    bool owner_closed, aborted_in_cb, err_delivered;
    bool want_output; /* written since the last tcp_output: sent from the deferred call */
};

struct ns_listener {
    struct nb_listener base; /* first */
    struct ns_if *nif;
    struct tcp_pcb *pcb; /* the LISTEN pcb */
    struct sockaddr_storage local;
    struct nb_defer defer;
    struct ns_listener *prev, *next;
    bool closed;
};

static const struct nb_stream_vtbl tcp_vtbl;
static const struct nb_listener_vtbl listener_vtbl;

static void on_defer(struct nb_defer *d);
static void handoff(struct ns_tcp *s);
static err_t on_poll(void *arg, struct tcp_pcb *pcb);
static void on_err(void *arg, err_t err);

/* ---- helpers ---- */

static void schedule(struct ns_tcp *s)
{
    nb_defer(s->base.loop, &s->defer, on_defer, s);
}

static void recved(struct tcp_pcb *pcb, size_t n)
{
    while (n > 0) {
        u16_t k = n > 0xffff ? 0xffff : (u16_t)n;
        tcp_recved(pcb, k);
        n -= k;
    }
}

/* Opens the window for everything delivered or discarded so far. */
static void ack_flush(struct ns_tcp *s)
{
    if (s->pcb && s->ack_pending) {
        recved(s->pcb, s->ack_pending);
        s->ack_pending = 0;
    }
}

/* Acknowledges everything still held too (the owner will not see it, or lwIP must not RST). */
static void ack_all(struct ns_tcp *s)
{
    s->ack_pending += s->rx_unacked;
    s->rx_unacked = 0;
    ack_flush(s);
}

void ns__to_sockaddr(const ip_addr_t *ip, u16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (IP_IS_V6(ip)) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, ip_2_ip6(ip)->addr, 16);
        sin6->sin6_port = htons(port);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = ip_2_ip4(ip)->addr;
        sin->sin_port = htons(port);
    }
}

/* sockaddr -> lwIP address + port. NB_OK or NB_E_INVAL. */
int ns__from_sockaddr(const struct sockaddr *sa, ip_addr_t *ip, u16_t *port)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        ip_addr_set_zero_ip4(ip);
        ip_2_ip4(ip)->addr = sin->sin_addr.s_addr;
        *port = ntohs(sin->sin_port);
        return NB_OK;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        ip_addr_set_zero_ip6(ip);
        memcpy(ip_2_ip6(ip)->addr, &sin6->sin6_addr, 16);
        *port = ntohs(sin6->sin6_port);
        return NB_OK;
    }
    return NB_E_INVAL;
}

static void detach(struct tcp_pcb *pcb)
{
    tcp_arg(pcb, NULL);
    tcp_recv(pcb, NULL);
    tcp_sent(pcb, NULL);
    tcp_err(pcb, NULL);
    tcp_poll(pcb, NULL, 0);
}

/* Resets the connection now. Safe anywhere; inside our own lwIP callback it sets ERR_ABRT. */
static void abort_pcb(struct ns_tcp *s)
{
    struct tcp_pcb *pcb = s->pcb;
    if (pcb == NULL)
        return;
    s->pcb = NULL;
    detach(pcb);
    tcp_abort(pcb);
    if (s->cb_depth > 0)
        s->aborted_in_cb = true;
}

/* Leaves an lwIP callback of s: ERR_ABRT if s aborted its pcb meanwhile. */
static err_t cb_leave(struct ns_tcp *s)
{
    s->cb_depth--;
    if (s->aborted_in_cb && s->cb_depth == 0) {
        s->aborted_in_cb = false;
        return ERR_ABRT;
    }
    return ERR_OK;
}

/* ---- owner callbacks (never after close) ---- */

static void cb_data(struct ns_tcp *s, const uint8_t *d, size_t n)
{
    if (!s->owner_closed && s->base.cbs && s->base.cbs->on_data)
        s->base.cbs->on_data(s->base.arg, &s->base, d, n);
}

static void cb_eof(struct ns_tcp *s)
{
    if (!s->owner_closed && s->base.cbs && s->base.cbs->on_eof)
        s->base.cbs->on_eof(s->base.arg, &s->base);
}

static void cb_connect(struct ns_tcp *s, const char *err)
{
    if (!s->owner_closed && s->base.cbs && s->base.cbs->on_connect)
        s->base.cbs->on_connect(s->base.arg, &s->base, err);
}

static void cb_error(struct ns_tcp *s, const char *err)
{
    if (!s->owner_closed && s->base.cbs && s->base.cbs->on_error)
        s->base.cbs->on_error(s->base.arg, &s->base, err);
}

/* ---- sending ---- */

/* Moves queued bytes into lwIP's send buffer as far as it has room, then tcp_output. */
static void flush_wq(struct ns_tcp *s)
{
    bool wrote = false;
    while (s->pcb && s->wq.len > 0) {
        size_t room = tcp_sndbuf(s->pcb);
        if (room == 0 || tcp_sndqueuelen(s->pcb) >= TCP_SND_QUEUELEN)
            break;
        size_t n;
        const uint8_t *d = nb_bufq_peek(&s->wq, &n);
        if (n > room)
            n = room;
        if (n > 0xffff)
            n = 0xffff;
        u8_t flags = TCP_WRITE_FLAG_COPY;
        if (n < s->wq.len)
            flags |= TCP_WRITE_FLAG_MORE;
        if (tcp_write(s->pcb, d, (u16_t)n, flags) != ERR_OK)
            break; /* ERR_MEM: retried from sent or poll */
        nb_bufq_consume(&s->wq, n);
        wrote = true;
    }
    if (wrote && s->pcb)
        tcp_output(s->pcb);
}

/* Sends our FIN (half-close), or closes fully when the peer already sent its FIN. */
static void do_fin(struct ns_tcp *s)
{
    if (s->rx_eof) {
        handoff(s);
        return;
    }
    ack_flush(s);
    if (tcp_shutdown(s->pcb, 0, 1) == ERR_OK) {
        s->fin_sent = true;
        tcp_output(s->pcb);
    } /* else ERR_MEM: retried from poll */
}

/* Pushes the connection forward after anything changed: flush, drain, FIN, close. */
static void progress(struct ns_tcp *s)
{
    if (s->pcb == NULL || !s->connected)
        return;
    flush_wq(s);
    if (s->pcb && !s->owner_closed)
        nb_stream__check_drain(&s->base); /* may re-enter: write, close, ... */
    if (s->pcb == NULL || s->wq.len > 0)
        return;
    if (s->owner_closed)
        handoff(s);
    else if (s->shut_req && !s->fin_sent)
        do_fin(s);
}

/*
 * Gives the pcb to lwIP for the rest of its life (FIN exchange, TIME_WAIT): acknowledge all data
 * (tcp_close sends RST instead of FIN while received data is unacknowledged), detach, tcp_close.
 */
static void handoff(struct ns_tcp *s)
{
    struct tcp_pcb *pcb = s->pcb;
    if (pcb == NULL)
        return;
    ack_all(s);
    detach(pcb);
    if (tcp_close(pcb) != ERR_OK) {
        /* Out of memory for the FIN: stay attached and retry from poll. */
        tcp_arg(pcb, s);
        tcp_err(pcb, on_err);
        tcp_poll(pcb, on_poll, POLL_TICKS);
        return;
    }
    s->pcb = NULL;
    if (s->owner_closed)
        schedule(s);
}

/* ---- receiving ---- */

/*
 * Copies the chain from `offset` on into rq. The bytes are already counted in rx_unacked (see
 * rx_take). false when out of memory.
 */
static bool rx_queue(struct ns_tcp *s, struct pbuf *p, u16_t offset)
{
    static uint8_t flat[0x10000]; /* a chain is at most 64 KiB; single-threaded */
    u16_t n = (u16_t)(p->tot_len - offset);
    if (n == 0)
        return true;
    pbuf_copy_partial(p, flat, n, offset);
    return nb_bufq_append(&s->rq, flat, n) == NB_OK;
}

/* Delivers queued data, then EOF, as long as the owner is not paused. */
static void deliver_rx(struct ns_tcp *s)
{
    while (s->rq.len > 0 && !s->paused && !s->owner_closed) {
        size_t n;
        const uint8_t *d = nb_bufq_peek(&s->rq, &n);
        size_t k = n < s->rx_unacked ? n : s->rx_unacked;
        s->rx_unacked -= k;
        s->ack_pending += k;
        cb_data(s, d, n); /* d stays valid: only this function consumes rq */
        nb_bufq_consume(&s->rq, n);
    }
    ack_flush(s);
    if (s->rq.len == 0 && s->rx_eof && !s->eof_delivered && !s->paused && !s->owner_closed) {
        s->eof_delivered = true;
        cb_eof(s);
    }
}

/*
 * Takes a received chain: hands it to a reading owner (rq empty, not paused) segment by segment
 * and queues whatever the owner does not take (it paused midway), or queues all of it. The whole
 * chain is counted as received-not-acknowledged first, so an owner closing midway acknowledges
 * all of it (a graceful close then sends FIN, not RST). Nothing goes back to lwIP as refused
 * data: when the copy fails (out of memory) the connection is reset instead. false then.
 */
static bool rx_take(struct ns_tcp *s, struct pbuf *p)
{
    u16_t off = 0;
    s->rx_unacked += p->tot_len;
    if (s->rq.len == 0 && !s->paused) {
        for (struct pbuf *q = p; q && !s->paused && !s->owner_closed; q = q->next) {
            size_t k = q->len < s->rx_unacked ? q->len : s->rx_unacked;
            s->rx_unacked -= k;
            s->ack_pending += k;
            if (q->len)
                cb_data(s, q->payload, q->len);
            off = (u16_t)(off + q->len);
        }
    }
    if (s->owner_closed)
        return true; /* close() acknowledged everything still counted (ack_all) */
    if (rx_queue(s, p, off))
        return true;
    if (!s->err)
        s->err = ns_tcp_err_nomem;
    abort_pcb(s);
    schedule(s);
    return false;
}

/* ---- lwIP callbacks ---- */

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
    struct ns_tcp *s = arg;
    if (s == NULL) { /* not reached: detached pcbs get lwIP's tcp_recv_null */
        if (p) {
            tcp_recved(pcb, p->tot_len);
            pbuf_free(p);
        }
        return ERR_OK;
    }
    s->cb_depth++;
    if (p == NULL) {
        s->rx_eof = true;
        /* Both FINs seen: the pcb is in TIME_WAIT (or CLOSING) and lwIP would free it
         * silently later. Hand it off now. */
        if (s->fin_sent)
            handoff(s);
    } else if (s->owner_closed) {
        tcp_recved(pcb, p->tot_len); /* discarding: keep the window open so the FIN gets out */
        pbuf_free(p);
    } else {
        bool ok = rx_take(s, p);
        pbuf_free(p);
        if (!ok)
            return cb_leave(s); /* reset: ERR_ABRT */
    }
    deliver_rx(s);
    if (s->rx_eof && s->shut_req && !s->fin_sent && s->pcb && !s->owner_closed && s->wq.len == 0)
        do_fin(s); /* the owner's FIN is due and the peer's arrived: close fully */
    return cb_leave(s);
}

static err_t on_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
    struct ns_tcp *s = arg;
    if (s == NULL)
        return ERR_OK;
    s->cb_depth++;
    s->linger_ms = 0;
    progress(s);
    return cb_leave(s);
}

/* See GIVEUP_HOLD. */
static void hold_giveup(struct ns_tcp *s, struct tcp_pcb *pcb)
{
    if (pcb->nrtx == 0 && pcb->persist_probe == 0) {
        s->stuck_ms = 0; /* acknowledged since, or the window opened */
        return;
    }
    if (s->stuck_ms < NS_TCP_GIVEUP_MS)
        s->stuck_ms += POLL_MS;
    if (s->stuck_ms >= NS_TCP_GIVEUP_MS)
        return; /* lwIP's own count decides from here */
    if (pcb->nrtx > GIVEUP_HOLD)
        pcb->nrtx = GIVEUP_HOLD;
    if (pcb->persist_probe > GIVEUP_HOLD)
        pcb->persist_probe = GIVEUP_HOLD;
}

static err_t on_poll(void *arg, struct tcp_pcb *pcb)
{
    struct ns_tcp *s = arg;
    if (s == NULL)
        return ERR_OK;
    hold_giveup(s, pcb);
    s->cb_depth++;
    if (s->owner_closed && s->pcb) {
        s->linger_ms += POLL_MS;
        if (s->linger_ms >= NS_TCP_LINGER_MS) {
            abort_pcb(s); /* the peer will not take our last bytes */
            schedule(s);
            return cb_leave(s);
        }
        if (s->wq.len == 0) {
            handoff(s); /* retry a tcp_close that failed */
            return cb_leave(s);
        }
    }
    progress(s);
    return cb_leave(s);
}

static void on_err(void *arg, err_t err)
{
    struct ns_tcp *s = arg;
    if (s == NULL)
        return;
    s->pcb = NULL; /* already freed by lwIP */
    if (!s->owner_closed && s->err == NULL) {
        switch (err) {
        case ERR_RST:
            s->err = s->connecting ? ns_tcp_err_refused : ns_tcp_err_reset;
            break;
        case ERR_ABRT:
            s->err = ns_tcp_err_timeout;
            break;
        case ERR_MEM:
            s->err = ns_tcp_err_nomem;
            break;
        case ERR_CLSD:
            s->err = ns_tcp_err_closed;
            break;
        default:
            s->err = ns_tcp_err_reset;
            break;
        }
    }
    schedule(s);
}

static err_t on_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
    struct ns_tcp *s = arg;
    if (s == NULL)
        return ERR_OK;
    s->connecting = false;
    s->connected = true;
    ns__to_sockaddr(&pcb->local_ip, pcb->local_port, &s->local);
    s->cb_depth++;
    cb_connect(s, NULL);
    progress(s);
    return cb_leave(s);
}

static void attach(struct ns_tcp *s)
{
    tcp_arg(s->pcb, s);
    tcp_recv(s->pcb, on_recv);
    tcp_sent(s->pcb, on_sent);
    tcp_err(s->pcb, on_err);
    tcp_poll(s->pcb, on_poll, POLL_TICKS);
    /* Like TCP_NODELAY on host sockets: with Nagle on, a small response body waited for the
     * peer's delayed ACK (about 40 ms per request through a tunnel listener). Writes are
     * coalesced per loop turn instead (tcp_write_ defers tcp_output). */
    tcp_nagle_disable(s->pcb);
}

/* ---- stream objects ---- */

static struct ns_tcp *stream_new(struct ns_if *nif)
{
    struct ns_tcp *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    nb_stream_init(&s->base, &tcp_vtbl, ns__loop);
    nb_bufq_init(&s->wq);
    nb_bufq_init(&s->rq);
    s->nif = nif;
    s->next = nif->streams;
    if (nif->streams)
        nif->streams->prev = s;
    nif->streams = s;
    nif->n_streams++;
    ns__n_streams++;
    return s;
}

static void unlink_stream(struct ns_tcp *s)
{
    struct ns_if *nif = s->nif;
    if (nif == NULL)
        return;
    if (s->prev)
        s->prev->next = s->next;
    else
        nif->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    nif->n_streams--;
    s->nif = NULL;
}

static void stream_free(struct ns_tcp *s)
{
    nb_bufq_clear(&s->rq);
    nb_bufq_clear(&s->wq);
    unlink_stream(s);
    ns__n_streams--;
    free(s);
}

static void on_defer(struct nb_defer *d)
{
    struct ns_tcp *s = d->arg;
    if (s->want_output) {
        /* Everything the owner wrote during this loop turn leaves in as few segments as lwIP
         * can make of it (Nagle is off: a response head and a small body go out together). */
        s->want_output = false;
        if (s->pcb)
            tcp_output(s->pcb);
    }
    if (s->owner_closed) {
        if (s->pcb == NULL)
            stream_free(s);
        return;
    }
    if (s->err && !s->err_delivered) {
        s->err_delivered = true;
        if (s->connecting) {
            s->connecting = false;
            cb_connect(s, s->err);
        } else {
            cb_error(s, s->err);
        }
        return;
    }
    deliver_rx(s);
    if (s->rx_eof && s->shut_req && s->pcb && !s->owner_closed && s->wq.len == 0 && !s->fin_sent)
        do_fin(s);
    ns__timers_kick();
}

/* ---- nb_stream vtable ---- */

static int tcp_write_(struct nb_stream *bs, const void *buf, size_t len)
{
    struct ns_tcp *s = (struct ns_tcp *)bs;
    if (s->owner_closed || s->shut_req || s->err || s->pcb == NULL)
        return NB_E_CLOSED;
    const uint8_t *d = buf;
    bool wrote = false;
    /* Fast path: straight into lwIP's send buffer when nothing is queued ahead. */
    while (s->connected && s->wq.len == 0 && len > 0) {
        size_t room = tcp_sndbuf(s->pcb);
        if (room == 0 || tcp_sndqueuelen(s->pcb) >= TCP_SND_QUEUELEN)
            break;
        size_t n = len < room ? len : room;
        if (n > 0xffff)
            n = 0xffff;
        u8_t flags = TCP_WRITE_FLAG_COPY | (n < len ? TCP_WRITE_FLAG_MORE : 0);
        if (tcp_write(s->pcb, d, (u16_t)n, flags) != ERR_OK)
            break;
        d += n;
        len -= n;
        wrote = true;
    }
    int rc = NB_OK;
    if (len > 0 && nb_bufq_append(&s->wq, d, len) != NB_OK) {
        if (!wrote)
            return NB_E_NOMEM;
        /* Part of the buffer is already in lwIP: the byte stream is broken. */
        s->err = ns_tcp_err_nomem;
        abort_pcb(s);
        schedule(s);
        rc = NB_E_NOMEM;
    }
    if (wrote && s->pcb) {
        s->want_output = true;
        schedule(s);
    }
    ns__timers_kick();
    return rc;
}

static size_t tcp_queued_(const struct nb_stream *bs)
{
    const struct ns_tcp *s = (const struct ns_tcp *)bs;
    return s->wq.len;
}

static void tcp_set_paused_(struct nb_stream *bs, bool paused)
{
    struct ns_tcp *s = (struct ns_tcp *)bs;
    s->paused = paused;
    if (!paused && (s->rq.len > 0 || (s->rx_eof && !s->eof_delivered)))
        schedule(s);
}

static int tcp_shutdown_(struct nb_stream *bs)
{
    struct ns_tcp *s = (struct ns_tcp *)bs;
    if (s->owner_closed || s->err)
        return NB_E_CLOSED;
    if (s->shut_req)
        return NB_OK;
    s->shut_req = true;
    if (s->pcb && s->connected && s->wq.len == 0)
        do_fin(s);
    ns__timers_kick();
    return NB_OK;
}

static void tcp_close_(struct nb_stream *bs, bool abort)
{
    struct ns_tcp *s = (struct ns_tcp *)bs;
    if (s->owner_closed)
        return;
    s->owner_closed = true;
    if (s->pcb == NULL) {
        schedule(s);
        return;
    }
    if (abort || (!s->connected && !s->connecting)) {
        abort_pcb(s);
        schedule(s);
        return;
    }
    ack_all(s); /* undelivered data is discarded, but acknowledged: FIN, not RST */
    progress(s);
    ns__timers_kick();
}

static int tcp_addrs_(const struct nb_stream *bs, struct sockaddr_storage *local,
                      struct sockaddr_storage *peer)
{
    const struct ns_tcp *s = (const struct ns_tcp *)bs;
    if (local)
        *local = s->local;
    if (peer)
        *peer = s->peer;
    return NB_OK;
}

static const struct nb_stream_vtbl tcp_vtbl = {
    .name = "lwip",
    .write = tcp_write_,
    .queued = tcp_queued_,
    .set_paused = tcp_set_paused_,
    .shutdown = tcp_shutdown_,
    .close = tcp_close_,
    .addrs = tcp_addrs_,
};

/* ---- connect ---- */

static bool family_ok(const struct ns_if *nif, int family)
{
    return family == AF_INET ? nif->has_v4 : family == AF_INET6 ? nif->has_v6 : false;
}

int ns_tcp_connect(struct ns_if *nif, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                   void *arg, struct nb_stream **out)
{
    ip_addr_t ip;
    u16_t port;
    if (ns__from_sockaddr(dst, &ip, &port) != NB_OK || port == 0 || !family_ok(nif, dst->sa_family))
        return NB_E_INVAL;
    if (nif->max_conns && nif->n_streams >= nif->max_conns)
        return NB_E_NOMEM;
    if (ns__if_attach(nif) != NB_OK) {
        nif->st.open_no_slot++;
        return NB_E_NOMEM;
    }
    struct ns_tcp *s = stream_new(nif);
    if (s == NULL)
        return NB_E_NOMEM;
    nb_stream_set_cbs(&s->base, cbs, arg);
    struct tcp_pcb *pcb =
        tcp_new_ip_type(dst->sa_family == AF_INET ? IPADDR_TYPE_V4 : IPADDR_TYPE_V6);
    if (pcb == NULL) {
        stream_free(s);
        return NB_E_NOMEM;
    }
    tcp_bind_netif(pcb, nif->netif);
    s->pcb = pcb;
    s->connecting = true;
    attach(s);
    ns__to_sockaddr(&ip, port, &s->peer);
    err_t e = tcp_connect(pcb, &ip, port, on_connected);
    if (e != ERR_OK) {
        detach(pcb);
        tcp_abort(pcb);
        s->pcb = NULL;
        stream_free(s);
        return e == ERR_MEM || e == ERR_BUF ? NB_E_NOMEM : NB_E_INVAL;
    }
    ns__to_sockaddr(&pcb->local_ip, pcb->local_port, &s->local);
    *out = &s->base;
    ns__timers_kick();
    return NB_OK;
}

/* ---- listen / accept ---- */

static void listener_unlink(struct ns_listener *l)
{
    struct ns_if *nif = l->nif;
    if (nif == NULL)
        return;
    if (l->prev)
        l->prev->next = l->next;
    else
        nif->listeners = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->prev = l->next = NULL;
    nif->n_listeners--;
    l->nif = NULL;
}

static err_t on_accept(void *arg, struct tcp_pcb *newpcb, err_t err)
{
    struct ns_listener *l = arg;
    if (l == NULL || l->closed || l->nif == NULL || err != ERR_OK || newpcb == NULL)
        return ERR_VAL; /* lwIP aborts newpcb */
    struct ns_if *nif = l->nif;
    struct ns_tcp *s = NULL;
    if (!nif->max_conns || nif->n_streams < nif->max_conns)
        s = stream_new(nif);
    if (s == NULL) {
        tcp_abort(newpcb);
        return ERR_ABRT;
    }
    s->pcb = newpcb;
    s->connected = true;
    attach(s);
    ns__to_sockaddr(&newpcb->local_ip, newpcb->local_port, &s->local);
    ns__to_sockaddr(&newpcb->remote_ip, newpcb->remote_port, &s->peer);
    s->cb_depth++;
    l->base.on_accept(l->base.arg, &l->base, &s->base);
    if (!s->owner_closed && s->base.cbs == NULL) {
        nb_warn("netstack", "accept callback neither set callbacks nor closed: aborting");
        tcp_close_(&s->base, true);
    }
    return cb_leave(s);
}

static void listener_defer(struct nb_defer *d)
{
    struct ns_listener *l = d->arg;
    if (l->pcb) {
        tcp_close(l->pcb); /* a LISTEN pcb is freed at once */
        l->pcb = NULL;
    }
    listener_unlink(l);
    ns__n_listeners--;
    free(l);
}

static void listener_close(struct nb_listener *bl)
{
    struct ns_listener *l = (struct ns_listener *)bl;
    if (l->closed)
        return;
    l->closed = true;
    if (l->pcb) {
        tcp_arg(l->pcb, NULL);
        tcp_accept(l->pcb, NULL);
    }
    nb_defer(ns__loop, &l->defer, listener_defer, l);
}

static int listener_addr(const struct nb_listener *bl, struct sockaddr_storage *local)
{
    const struct ns_listener *l = (const struct ns_listener *)bl;
    *local = l->local;
    return NB_OK;
}

static const struct nb_listener_vtbl listener_vtbl = {
    .close = listener_close,
    .addr = listener_addr,
};

static u16_t sa_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static bool sa_is_any(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == INADDR_ANY;
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

/* Would a listener on `a` and one on `b` (same port) see the same connections? */
static bool listen_overlap(const struct sockaddr *a, const struct sockaddr *b)
{
    bool any_a = sa_is_any(a), any_b = sa_is_any(b);
    /* :: covers both families, 0.0.0.0 and specific addresses only their own */
    bool fam = a->sa_family == b->sa_family || (any_a && a->sa_family == AF_INET6) ||
               (any_b && b->sa_family == AF_INET6);
    if (!fam)
        return false;
    if (any_a || any_b)
        return true;
    return a->sa_family == b->sa_family &&
           (a->sa_family == AF_INET
                ? ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
                      ((const struct sockaddr_in *)b)->sin_addr.s_addr
                : memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                         &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0);
}

int ns_tcp_listen(struct ns_if *nif, const struct sockaddr *local, nb_accept_fn on_accept_fn,
                  void *arg, struct nb_listener **out)
{
    ip_addr_t ip;
    u16_t port;
    if (on_accept_fn == NULL || ns__from_sockaddr(local, &ip, &port) != NB_OK || port == 0)
        return NB_E_INVAL;
    bool any = sa_is_any(local);
    if (any ? !(local->sa_family == AF_INET ? nif->has_v4 : (nif->has_v4 || nif->has_v6))
            : !ns_if_has_addr(nif, local))
        return NB_E_INVAL;
    for (struct ns_listener *o = nif->listeners; o; o = o->next) {
        if (!o->closed && sa_port(&o->local) == port &&
            listen_overlap((const struct sockaddr *)&o->local, local))
            return NB_E_EXISTS;
    }

    if (ns__if_attach(nif) != NB_OK) {
        nif->st.open_no_slot++;
        return NB_E_NOMEM;
    }
    struct ns_listener *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NB_E_NOMEM;
    u8_t type = local->sa_family == AF_INET ? IPADDR_TYPE_V4
                : any                       ? IPADDR_TYPE_ANY
                                            : IPADDR_TYPE_V6;
    struct tcp_pcb *pcb = tcp_new_ip_type(type);
    if (pcb == NULL) {
        free(l);
        return NB_E_NOMEM;
    }
    if (any && type == IPADDR_TYPE_ANY)
        ip_addr_copy(ip, *IP_ANY_TYPE);
    /*
     * Isolation vs. lwIP's port table: lwIP checks address/port conflicts across all netifs.
     * SOF_REUSEADDR on both sides lets tcp_bind() pass; clearing it for tcp_listen() skips that
     * function's own global duplicate check; setting it again on the listening pcb lets the
     * next account bind the same port and is inherited by accepted pcbs. Duplicates within one
     * interface were refused above.
     */
    ip_set_option(pcb, SOF_REUSEADDR);
    tcp_bind_netif(pcb, nif->netif);
    if (tcp_bind(pcb, &ip, port) != ERR_OK) {
        tcp_close(pcb);
        free(l);
        return NB_E_EXISTS;
    }
    ip_reset_option(pcb, SOF_REUSEADDR);
    err_t e;
    struct tcp_pcb *lpcb = tcp_listen_with_backlog_and_err(pcb, TCP_DEFAULT_LISTEN_BACKLOG, &e);
    if (lpcb == NULL) {
        tcp_close(pcb);
        free(l);
        return NB_E_NOMEM;
    }
    ip_set_option(lpcb, SOF_REUSEADDR);
    l->base.vt = &listener_vtbl;
    l->base.on_accept = on_accept_fn;
    l->base.arg = arg;
    l->pcb = lpcb;
    l->nif = nif;
    memset(&l->local, 0, sizeof l->local);
    memcpy(&l->local, local,
           local->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    tcp_arg(lpcb, l);
    tcp_accept(lpcb, on_accept);
    l->next = nif->listeners;
    if (nif->listeners)
        nif->listeners->prev = l;
    nif->listeners = l;
    nif->n_listeners++;
    ns__n_listeners++;
    *out = &l->base;
    return NB_OK;
}

/* ---- interface teardown, detach ---- */

/* Aborts (closes, if never connected) the first pcb in `list` bound to idx; false if none. */
static bool kill_one(struct tcp_pcb *list, u8_t idx)
{
    for (struct tcp_pcb *p = list; p != NULL; p = p->next) {
        if (p->netif_idx != idx)
            continue;
        detach(p);
        if (p->state == CLOSED)
            tcp_close(p);
        else
            tcp_abort(p); /* a TIME_WAIT pcb is freed without RST */
        return true;
    }
    return false;
}

static bool kill_one_listen(u8_t idx)
{
    for (struct tcp_pcb_listen *p = tcp_listen_pcbs.listen_pcbs; p != NULL; p = p->next) {
        if (p->netif_idx != idx)
            continue;
        tcp_arg((struct tcp_pcb *)p, NULL);
        tcp_accept((struct tcp_pcb *)p, NULL);
        tcp_close((struct tcp_pcb *)p);
        return true;
    }
    return false;
}

/* Handed-off closes, TIME_WAIT, half-open SYN_RCVD (before the listeners they reference). */
static size_t kill_conns(u8_t idx)
{
    size_t tw = 0;
    while (kill_one(tcp_active_pcbs, idx))
        ;
    while (kill_one(tcp_tw_pcbs, idx))
        tw++;
    while (kill_one(tcp_bound_pcbs, idx))
        ;
    return tw;
}

size_t ns__tcp_purge(u8_t idx)
{
    if (idx == NETIF_NO_INDEX)
        return 0; /* would match unbound pcbs (we have none, but never kill them) */
    size_t tw = kill_conns(idx);
    while (kill_one_listen(idx))
        ;
    return tw;
}

void ns__tcp_busy(bool busy[256])
{
    for (struct tcp_pcb *p = tcp_active_pcbs; p != NULL; p = p->next)
        busy[p->netif_idx] = true;
    for (struct tcp_pcb *p = tcp_bound_pcbs; p != NULL; p = p->next)
        busy[p->netif_idx] = true;
    for (struct tcp_pcb_listen *p = tcp_listen_pcbs.listen_pcbs; p != NULL; p = p->next)
        busy[p->netif_idx] = true;
}

void ns__tcp_if_gone(struct ns_if *nif)
{
    u8_t idx = nif->netif ? netif_get_index(nif->netif) : NETIF_NO_INDEX;
    while (nif->streams) {
        struct ns_tcp *s = nif->streams;
        abort_pcb(s);
        if (!s->owner_closed && s->err == NULL)
            s->err = ns_tcp_err_if_gone;
        unlink_stream(s);
        schedule(s);
    }
    /* Everything else lwIP still runs for this interface. Detached: there is nothing (no pcb
     * outlives the netif), and index 0 would match unbound pcbs. */
    if (idx != NETIF_NO_INDEX)
        kill_conns(idx);
    while (nif->listeners) {
        struct ns_listener *l = nif->listeners;
        if (l->pcb) {
            tcp_arg(l->pcb, NULL);
            tcp_accept(l->pcb, NULL);
            tcp_close(l->pcb);
            l->pcb = NULL;
        }
        listener_unlink(l);
    }
    if (idx != NETIF_NO_INDEX)
        while (kill_one_listen(idx))
            ;
}
