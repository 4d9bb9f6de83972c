/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * UDP flows over lwIP's raw UDP API (ns_udp.h). One lwIP pcb per flow, bound to the account's
 * netif (udp_bind_netif: lwIP then matches input by netif index and sends through that netif
 * only) and connected to the remote address, so lwIP delivers only the remote's datagrams.
 *
 * Ownership: the owner holds the ns_udp until ns_udp_close(); lwIP holds the pcb until we
 * udp_remove() it (on close, or when the interface goes). The memory is freed from a deferred
 * call after close, so an on_recv that closes its own flow returns into valid memory.
 */
#include "netstack/ns_udp.h"
#include "netstack/ns_internal.h"

#include "lwip/ip_addr.h"
#include "lwip/pbuf.h"
#include "lwip/udp.h"
#include "platform/loop.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct ns_udp {
    struct ns_if *nif; /* NULL once the interface is gone */
    struct udp_pcb *pcb;
    ns_udp_recv_fn on_recv;
    void *arg;
    struct sockaddr_storage local, remote;
    struct ns_udp *prev, *next; /* nif->udps */
    struct nb_defer defer;
    struct ns_udp_stats st;
    bool closed;
};

size_t ns__n_udp;

/* Receive buffer for datagrams lwIP hands over as a pbuf chain (MTU above the pool's buffer
 * size): one per process, the loop is single-threaded and on_recv gets it only for the call. */
static uint8_t rxbuf[65536];

static void unlink_udp(struct ns_udp *u)
{
    struct ns_if *nif = u->nif;
    if (nif == NULL)
        return;
    if (u->prev)
        u->prev->next = u->next;
    else
        nif->udps = u->next;
    if (u->next)
        u->next->prev = u->prev;
    u->prev = u->next = NULL;
    nif->n_udps--;
    u->nif = NULL;
}

static void drop_pcb(struct ns_udp *u)
{
    if (u->pcb) {
        udp_recv(u->pcb, NULL, NULL);
        udp_remove(u->pcb);
        u->pcb = NULL;
    }
}

static void on_udp_recv(void *arg, struct udp_pcb *pcb, struct pbuf *p, const ip_addr_t *addr,
                        u16_t port)
{
    struct ns_udp *u = arg;
    (void)pcb;
    (void)addr;
    (void)port;
    if (u == NULL || u->closed || u->on_recv == NULL) {
        pbuf_free(p);
        return;
    }
    const uint8_t *data = p->payload;
    size_t len = p->tot_len;
    if (p->len != p->tot_len)
        data = rxbuf, len = pbuf_copy_partial(p, rxbuf, p->tot_len, 0);
    u->st.rx_packets++;
    u->st.rx_bytes += len;
    /* The owner may close u (or any flow) in here; u stays valid until the deferred free, and
     * the pbuf is ours until we free it below. */
    u->on_recv(u->arg, u, data, len);
    pbuf_free(p);
}

int ns_udp_open(struct ns_if *nif, const struct sockaddr *dst, ns_udp_recv_fn on_recv, void *arg,
                struct ns_udp **out)
{
    ip_addr_t ip;
    u16_t port;
    bool fam_ok = dst->sa_family == AF_INET ? nif->has_v4 : nif->has_v6;
    if (!fam_ok || ns__from_sockaddr(dst, &ip, &port) != NB_OK)
        return NB_E_INVAL;
    if (port == 0 || ip_addr_isany(&ip))
        return NB_E_INVAL;
    if (nif->max_conns && nif->n_udps >= nif->max_conns)
        return NB_E_NOMEM;
    if (ns__if_attach(nif) != NB_OK) {
        nif->st.open_no_slot++;
        return NB_E_NOMEM;
    }
    struct ns_udp *u = calloc(1, sizeof *u);
    if (u == NULL)
        return NB_E_NOMEM;
    struct udp_pcb *pcb =
        udp_new_ip_type(dst->sa_family == AF_INET ? IPADDR_TYPE_V4 : IPADDR_TYPE_V6);
    if (pcb == NULL) {
        free(u);
        return NB_E_NOMEM;
    }
    udp_bind_netif(pcb, nif->netif);
    /* udp_connect binds the any address with a fresh ephemeral port (unique over every pcb of
     * every account) and makes the pcb accept only dst's datagrams. */
    err_t e = udp_connect(pcb, &ip, port);
    if (e != ERR_OK) {
        udp_remove(pcb);
        free(u);
        return e == ERR_MEM || e == ERR_USE ? NB_E_NOMEM : NB_E_INVAL;
    }
    u->pcb = pcb;
    u->on_recv = on_recv;
    u->arg = arg;
    u->nif = nif;
    udp_recv(pcb, on_udp_recv, u);
    /* The local address as the peer will see it: the interface's address of that family. */
    for (size_t i = 0; i < nif->n_addrs; i++)
        if (nif->addrs[i].family == dst->sa_family) {
            ip_addr_t la;
            if (dst->sa_family == AF_INET) {
                ip_addr_set_zero_ip4(&la);
                memcpy(&ip_2_ip4(&la)->addr, nif->addrs[i].ip, 4);
            } else {
                ip_addr_set_zero_ip6(&la);
                memcpy(ip_2_ip6(&la)->addr, nif->addrs[i].ip, 16);
            }
            ns__to_sockaddr(&la, pcb->local_port, &u->local);
            break;
        }
    ns__to_sockaddr(&ip, port, &u->remote);
    u->next = nif->udps;
    if (nif->udps)
        nif->udps->prev = u;
    nif->udps = u;
    nif->n_udps++;
    ns__n_udp++;
    *out = u;
    return NB_OK;
}

int ns_udp_send(struct ns_udp *u, const void *data, size_t len)
{
    if (u->closed || u->pcb == NULL || u->nif == NULL)
        return NB_E_CLOSED;
    size_t max = u->remote.ss_family == AF_INET ? NS_UDP_MAX_PAYLOAD_V4 : NS_UDP_MAX_PAYLOAD_V6;
    if (len > max)
        return NB_E_INVAL;
    /* Every flow keeps its netif attached (ns__udp_busy), but a flow opened before an eviction
     * race must never send through a missing netif. */
    if (u->nif->netif == NULL)
        return NB_E_CLOSED;
    struct pbuf *p = pbuf_alloc(PBUF_TRANSPORT, (u16_t)len, PBUF_RAM);
    if (p == NULL) {
        u->st.tx_dropped++;
        return NB_E_NOMEM;
    }
    if (len)
        pbuf_take(p, data, (u16_t)len);
    ns__input_depth++; /* lwIP is running: no input may be injected from the output hook */
    err_t e = udp_send(u->pcb, p);
    ns__input_depth--;
    pbuf_free(p);
    ns__timers_kick();
    if (e != ERR_OK) {
        u->st.tx_dropped++;
        return e == ERR_MEM || e == ERR_BUF ? NB_E_NOMEM : NB_E_IO;
    }
    u->st.tx_packets++;
    u->st.tx_bytes += len;
    return NB_OK;
}

static void udp_defer_free(struct nb_defer *d)
{
    free(d->arg);
    ns__n_udp--;
}

void ns_udp_close(struct ns_udp *u)
{
    if (u == NULL || u->closed)
        return;
    u->closed = true;
    drop_pcb(u);
    unlink_udp(u);
    nb_defer(ns__loop, &u->defer, udp_defer_free, u);
}

void ns_udp_addrs(const struct ns_udp *u, struct sockaddr_storage *local,
                  struct sockaddr_storage *remote)
{
    if (local)
        *local = u->local;
    if (remote)
        *remote = u->remote;
}

void ns_udp_stats(const struct ns_udp *u, struct ns_udp_stats *st)
{
    *st = u->st;
}

/* ---- interface hooks (ns_internal.h) ---- */

void ns__udp_if_gone(struct ns_if *nif)
{
    while (nif->udps) {
        struct ns_udp *u = nif->udps;
        drop_pcb(u);
        unlink_udp(u);
    }
}

void ns__udp_busy(bool busy[256])
{
    for (struct udp_pcb *p = udp_pcbs; p != NULL; p = p->next)
        busy[p->netif_idx] = true;
}

void ns__udp_purge(u8_t idx)
{
    if (idx == NETIF_NO_INDEX)
        return;
    /* Only our flows bind UDP pcbs and they keep their netif busy, so this finds nothing unless
     * an interface is freed with flows open (ns__udp_if_gone removed those): a backstop for the
     * "no pcb outlives its netif index" invariant. */
    struct udp_pcb *p = udp_pcbs;
    while (p != NULL) {
        struct udp_pcb *next = p->next;
        if (p->netif_idx == idx) {
            struct ns_udp *u = p->recv_arg;
            if (u) {
                u->pcb = NULL;
                unlink_udp(u);
            }
            udp_remove(p);
        }
        p = next;
    }
}
