/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The per-account data plane (tunnel.h): glues a UDP socket on the loop, the I/O-free WireGuard
 * device and the account's ns_if together. Nothing here parses packets; wg/ authenticates and
 * checks inner sources against allowed IPs, ns_if checks inner destinations.
 */
#include "netstack/tunnel.h"
#include "netstack/ns_internal.h"

#include "platform/log.h"
#include "platform/loop.h"
#include "wg/config.h"

#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RX_BATCH       32
#define RX_BUF         (NS_IF_MAX_MTU + 128) /* inner MTU + WireGuard header, tag, padding */
#define RX_MAX_BATCHES 4 /* per readiness event: bounded work, the loop calls again */

struct ns_tunnel {
    struct nb_loop *loop;
    int fd;
    int family; /* of the socket */
    uint16_t port;
    struct nb_io io;
    struct nb_timer wg_timer;
    struct wg_device *dev;
    struct ns_if *nif;
    struct ns_tunnel_stats st;
};

/* Receive batch, shared by all tunnels: the loop is single-threaded and a batch is consumed
 * completely before on_udp returns. */
static uint8_t rx_bufs[RX_BATCH][RX_BUF];
static struct sockaddr_storage rx_from[RX_BATCH];
static struct iovec rx_iov[RX_BATCH];
static struct mmsghdr rx_msgs[RX_BATCH];

/*
 * Transmit batch, shared by all tunnels. op_send copies each datagram here and a deferred call
 * sends the whole batch with one sendmmsg after the current event (one UDP receive batch, one
 * timer run) has been handled: one system call for the dozens of datagrams lwIP produces per
 * event instead of one each. A batch belongs to one socket; a send for another tunnel, a full
 * batch, or freeing the tunnel flushes it first.
 */
#define TX_BATCH 64
#define TX_BUF   (NS_IF_MAX_MTU + 128)

static uint8_t tx_bufs[TX_BATCH][TX_BUF];
static struct sockaddr_in6 tx_to[TX_BATCH];
static struct iovec tx_iov[TX_BATCH];
static struct mmsghdr tx_msgs[TX_BATCH];
static unsigned tx_n;
static struct ns_tunnel *tx_owner;
static struct nb_defer tx_defer;

static void tx_flush(void)
{
    struct ns_tunnel *t = tx_owner;
    unsigned off = 0;
    while (off < tx_n) {
        int n = sendmmsg(t->fd, tx_msgs + off, tx_n - off, MSG_DONTWAIT);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            /* EAGAIN included: a full socket buffer drops, TCP retransmits. */
            t->st.udp_tx_errors += tx_n - off;
            break;
        }
        for (int i = 0; i < n; i++) {
            t->st.udp_tx++;
            t->st.udp_tx_bytes += tx_msgs[off + (unsigned)i].msg_len;
        }
        off += (unsigned)n;
    }
    tx_n = 0;
    tx_owner = NULL;
}

static void tx_flush_deferred(struct nb_defer *d)
{
    if (tx_owner)
        tx_flush();
}

/* ::ffff:a.b.c.d -> sockaddr_in, so the device sees the same address family as configured. */
static socklen_t unmap_v4(struct sockaddr_storage *ss, socklen_t len)
{
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (ss->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
        return len;
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = s6->sin6_port};
    memcpy(&s4.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
    memset(ss, 0, sizeof *ss);
    memcpy(ss, &s4, sizeof s4);
    return sizeof s4;
}

/* ---- wg_device ops ---- */

static int op_send(void *ctx, const struct sockaddr *to, socklen_t tolen, const uint8_t *buf,
                   size_t len)
{
    struct ns_tunnel *t = ctx;
    struct sockaddr_in6 mapped;
    if (to->sa_family == AF_INET && t->family == AF_INET6) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)to;
        memset(&mapped, 0, sizeof mapped);
        mapped.sin6_family = AF_INET6;
        mapped.sin6_port = s4->sin_port;
        mapped.sin6_addr.s6_addr[10] = 0xff;
        mapped.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&mapped.sin6_addr.s6_addr[12], &s4->sin_addr, 4);
        to = (const struct sockaddr *)&mapped;
        tolen = sizeof mapped;
    } else if (to->sa_family != t->family) {
        t->st.udp_tx_errors++;
        return NB_E_INVAL;
    }
    if (len > TX_BUF || tolen > sizeof tx_to[0]) {
        t->st.udp_tx_errors++;
        return NB_E_INVAL;
    }
    if (tx_owner != NULL && (tx_owner != t || tx_n == TX_BATCH))
        tx_flush();
    unsigned i = tx_n++;
    tx_owner = t;
    memcpy(tx_bufs[i], buf, len);
    memcpy(&tx_to[i], to, tolen);
    tx_iov[i] = (struct iovec){.iov_base = tx_bufs[i], .iov_len = len};
    tx_msgs[i] = (struct mmsghdr){
        .msg_hdr = {
            .msg_name = &tx_to[i], .msg_namelen = tolen, .msg_iov = &tx_iov[i], .msg_iovlen = 1}};
    nb_defer(t->loop, &tx_defer, tx_flush_deferred, NULL);
    return NB_OK;
}

static void op_deliver(void *ctx, struct wg_peer *from, uint8_t *pkt, size_t len)
{
    struct ns_tunnel *t = ctx;
    ns_if_input(t->nif, pkt, len); /* counted there */
}

static uint64_t op_now_ms(void *ctx)
{
    struct ns_tunnel *t = ctx;
    return nb_loop_now_ms(t->loop);
}

static void op_wall(void *ctx, struct timespec *ts)
{
    clock_gettime(CLOCK_REALTIME, ts);
}

static void op_random(void *ctx, void *buf, size_t n)
{
    randombytes_buf(buf, n);
}

static void op_schedule(void *ctx, uint64_t at_ms)
{
    struct ns_tunnel *t = ctx;
    nb_timer_arm_at(t->loop, &t->wg_timer, at_ms);
}

static void on_wg_timer(struct nb_timer *tm)
{
    struct ns_tunnel *t = tm->arg;
    wg_device_timers(t->dev);
}

/* ---- lwIP -> WireGuard ---- */

static int if_output(void *ctx, uint8_t *pkt, size_t len)
{
    struct ns_tunnel *t = ctx;
    int rc = wg_device_output(t->dev, pkt, len);
    /* NB_E_AGAIN: staged until the handshake completes, i.e. taken. */
    return rc == NB_OK || rc == NB_E_AGAIN ? NB_OK : rc;
}

/* ---- UDP -> WireGuard ---- */

static void on_udp(struct nb_io *io, uint32_t events)
{
    struct ns_tunnel *t = io->arg;
    for (int batch = 0; batch < RX_MAX_BATCHES; batch++) {
        for (int i = 0; i < RX_BATCH; i++) {
            rx_iov[i].iov_base = rx_bufs[i];
            rx_iov[i].iov_len = RX_BUF;
            memset(&rx_msgs[i].msg_hdr, 0, sizeof rx_msgs[i].msg_hdr);
            rx_msgs[i].msg_hdr.msg_iov = &rx_iov[i];
            rx_msgs[i].msg_hdr.msg_iovlen = 1;
            rx_msgs[i].msg_hdr.msg_name = &rx_from[i];
            rx_msgs[i].msg_hdr.msg_namelen = sizeof rx_from[i];
        }
        int n = recvmmsg(t->fd, rx_msgs, RX_BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                t->st.udp_rx_errors++;
            return;
        }
        for (int i = 0; i < n; i++) {
            struct msghdr *h = &rx_msgs[i].msg_hdr;
            if (h->msg_flags & MSG_TRUNC) {
                t->st.udp_rx_truncated++;
                continue;
            }
            t->st.udp_rx++;
            t->st.udp_rx_bytes += rx_msgs[i].msg_len;
            socklen_t fl = unmap_v4(&rx_from[i], h->msg_namelen);
            wg_device_input(t->dev, (struct sockaddr *)&rx_from[i], fl, rx_bufs[i],
                            rx_msgs[i].msg_len);
        }
        if (n < RX_BATCH)
            return;
    }
}

/* ---- lifecycle ---- */

static int open_socket(struct ns_tunnel *t, uint16_t port, bool v4_only)
{
    int zero = 0;
    if (!v4_only) {
        t->fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (t->fd >= 0) {
            struct sockaddr_in6 a = {
                .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_ANY_INIT};
            setsockopt(t->fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
            if (bind(t->fd, (struct sockaddr *)&a, sizeof a) == 0) {
                t->family = AF_INET6;
                goto bound;
            }
            close(t->fd);
        }
    }
    t->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (t->fd < 0)
        return NB_E_IO;
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(t->fd, (struct sockaddr *)&a4, sizeof a4) != 0) {
        int e = errno;
        close(t->fd);
        t->fd = -1;
        errno = e;
        return NB_E_IO;
    }
    t->family = AF_INET;
bound:;
    int sz = 4 << 20; /* best effort: absorbs bursts at ~1 Gbit/s */
    setsockopt(t->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    setsockopt(t->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(t->fd, (struct sockaddr *)&ss, &sl) == 0)
        t->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return NB_OK;
}

int ns_tunnel_add_peer(struct ns_tunnel *t, const struct ns_tunnel_peer *p)
{
    struct wg_peer *peer = wg_device_add_peer(t->dev, p->public_key);
    if (peer == NULL)
        return wg_device_peer_lookup(t->dev, p->public_key) ? NB_E_EXISTS : NB_E_NOMEM;
    int rc = NB_OK;
    if (p->psk)
        wg_device_peer_set_psk(peer, p->psk);
    for (size_t i = 0; i < p->n_allowed_ips && rc == NB_OK; i++)
        rc = wg_device_peer_add_allowed_ip(peer, p->allowed_ips[i].family, p->allowed_ips[i].addr,
                                           p->allowed_ips[i].cidr);
    if (rc == NB_OK && p->keepalive_s)
        wg_device_peer_set_keepalive(peer, p->keepalive_s);
    if (rc == NB_OK && p->endpoint)
        rc = wg_device_peer_set_endpoint(peer, p->endpoint, p->endpoint_len);
    if (rc != NB_OK)
        wg_device_remove_peer(t->dev, peer);
    return rc;
}

int ns_tunnel_new(struct nb_loop *loop, const struct ns_tunnel_config *cfg, struct ns_tunnel **out)
{
    if (cfg->private_key == NULL)
        return NB_E_INVAL;
    struct ns_tunnel *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NB_E_NOMEM;
    t->loop = loop;
    t->fd = -1;
    nb_timer_init(&t->wg_timer, on_wg_timer, t);
    int rc;

    struct wg_device_ops ops = {
        .ctx = t,
        .send = op_send,
        .deliver = op_deliver,
        .now_ms = op_now_ms,
        .wall = op_wall,
        .random = op_random,
        .schedule = op_schedule,
    };
    struct wg_device_params params = {0};
    if (cfg->wg_params)
        params = *cfg->wg_params;
    params.mtu = cfg->mtu ? cfg->mtu : NS_IF_DEFAULT_MTU;
    t->dev = wg_device_new(&ops, &params);
    if (t->dev == NULL) {
        rc = NB_E_NOMEM;
        goto err_dev;
    }
    rc = wg_device_set_private_key(t->dev, cfg->private_key);
    if (rc != NB_OK)
        goto err_key;

    struct ns_if_config ic = {
        .tag = cfg->tag,
        .mtu = cfg->mtu,
        .addrs = cfg->addrs,
        .n_addrs = cfg->n_addrs,
        .output = if_output,
        .output_ctx = t,
        .max_conns = cfg->max_conns,
    };
    rc = ns_if_new(&ic, &t->nif);
    if (rc != NB_OK)
        goto err_key;

    rc = open_socket(t, cfg->listen_port, cfg->ipv4_only);
    if (rc != NB_OK)
        goto err_sock;
    rc = nb_io_start(loop, &t->io, t->fd, NB_IO_READ, on_udp, t);
    if (rc != NB_OK)
        goto err_io;
    for (size_t i = 0; i < cfg->n_peers; i++) {
        rc = ns_tunnel_add_peer(t, &cfg->peers[i]);
        if (rc != NB_OK)
            goto err_peers;
    }
    *out = t;
    return NB_OK;

err_peers:
    nb_io_stop(&t->io);
err_io:
    close(t->fd);
err_sock:
    ns_if_free(t->nif);
err_key:
    wg_device_free(t->dev);
err_dev:
    nb_timer_cancel(&t->wg_timer);
    free(t);
    return rc;
}

void ns_tunnel_free(struct ns_tunnel *t)
{
    if (t == NULL)
        return;
    nb_io_stop(&t->io);
    ns_if_free(t->nif); /* may still emit RSTs through wg: the device is alive until below */
    nb_timer_cancel(&t->wg_timer);
    wg_device_free(t->dev);
    if (tx_owner == t)
        tx_flush(); /* the last datagrams (RSTs) still go out */
    if (tx_owner == NULL)
        nb_defer_cancel(t->loop, &tx_defer); /* nothing left to send: no stale defer */
    close(t->fd);
    free(t);
}

struct ns_if *ns_tunnel_if(struct ns_tunnel *t)
{
    return t->nif;
}

struct wg_device *ns_tunnel_device(struct ns_tunnel *t)
{
    return t->dev;
}

uint16_t ns_tunnel_port(const struct ns_tunnel *t)
{
    return t->port;
}

void ns_tunnel_stats(const struct ns_tunnel *t, struct ns_tunnel_stats *st)
{
    *st = t->st;
    ns_if_stats(t->nif, &st->nif);
    wg_device_stats(t->dev, &st->wg);
}
