/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_NETSTACK_NS_INTERNAL_H
#define NB_NETSTACK_NS_INTERNAL_H

/* Shared between the netstack's own .c files. No other folder includes this. */

#include "netstack/ns.h"
#include "netstack/ns_if.h"
#include "platform/err.h"

#include "lwip/netif.h"

#include <stdbool.h>
#include <stdint.h>

struct nb_loop;
struct ns_tcp;
struct ns_listener;
struct ns_udp;

struct ns_if {
    struct netif *netif; /* attached lwIP netif (netif->state points back here), NULL: detached */
    uint64_t busy_ms;    /* loop time it last needed the netif (detached after the grace) */
    char tag[NS_IF_TAG_MAX];
    uint16_t mtu;
    struct ns_addr addrs[NS_IF_MAX_ADDRS];
    size_t n_addrs;
    bool has_v4, has_v6;
    ns_output_fn output;
    void *output_ctx;
    uint32_t max_conns;
    struct ns_if_stats st;
    struct ns_tcp *streams; /* doubly linked through ns_tcp */
    struct ns_listener *listeners;
    size_t n_streams, n_listeners;
    struct ns_udp *udps; /* open UDP flows, doubly linked through ns_udp */
    size_t n_udps;
};

/* lwip_port.c */
extern struct nb_loop *ns__loop;
extern struct netif ns__blackhole;
extern uint64_t ns__blackhole_drops;
int ns__blackhole_add(void);
void ns__blackhole_remove(void);

/* ns_if.c */
void ns__if_init(void);   /* from ns_init */
void ns__if_deinit(void); /* from ns_deinit */
/*
 * Gives nif an lwIP netif if it has none (and marks it busy now). When all NS_IF_MAX_ATTACHED
 * slots are taken and ns__input_depth == 0, detaches the longest-idle attached interface that no
 * longer needs its netif first. NB_OK or NB_E_NOMEM (counted in ns_stats.if_no_slot; the caller
 * counts its own per-interface figure).
 */
int ns__if_attach(struct ns_if *nif);
extern size_t ns__n_attached;
extern uint64_t ns__if_attaches, ns__if_detaches, ns__if_no_slot, ns__tw_purged;

/* ns.c */
extern int ns__input_depth; /* >0 while lwIP is processing input or timers */
extern size_t ns__n_streams;
extern size_t ns__n_listeners;
extern size_t ns__n_ifs;
/* Re-arms the lwIP timer after anything that may have added an lwIP timeout. */
void ns__timers_kick(void);

/* ns_tcp.c: detaches and aborts every stream/listener/pcb bound to nif (from ns_if_free). */
void ns__tcp_if_gone(struct ns_if *nif);
/* ns_tcp.c: sets busy[i] for every lwIP netif index i that a pcb other than a TIME_WAIT one is
 * bound to (active incl. SYN_RCVD and closing, bound, listening). */
void ns__tcp_busy(bool busy[256]);
/* ns_tcp.c: aborts every pcb lwIP still has bound to index idx (all lists); returns how many of
 * them were in TIME_WAIT. For pcbs no ns_tcp object owns (see ns__tcp_if_gone for ours). */
size_t ns__tcp_purge(u8_t idx);

/* ns_tcp.c: lwIP address + port <-> sockaddr (also used by ns_udp.c). from: NB_OK or
 * NB_E_INVAL (not AF_INET/AF_INET6). */
struct sockaddr;
struct sockaddr_storage;
void ns__to_sockaddr(const ip_addr_t *ip, u16_t port, struct sockaddr_storage *ss);
int ns__from_sockaddr(const struct sockaddr *sa, ip_addr_t *ip, u16_t *port);

/* ns_udp.c: the UDP counterparts of the three above. Every UDP pcb is one of our flows. */
extern size_t ns__n_udp; /* live ns_udp objects (closed ones until their deferred free) */
void ns__udp_if_gone(struct ns_if *nif);
void ns__udp_busy(bool busy[256]);
void ns__udp_purge(u8_t idx);

#endif
