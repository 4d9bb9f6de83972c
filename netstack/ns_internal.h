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

struct ns_if {
    struct netif netif; /* netif.state points back here */
    char tag[NS_IF_TAG_MAX];
    uint16_t mtu;
    struct ns_addr addrs[NS_IF_MAX_ADDRS];
    size_t n_addrs;
    bool has_v4, has_v6;
    ns_output_fn output;
    void *output_ctx;
    uint32_t max_conns;
    uint8_t *obuf; /* NS_IF_HEADROOM + mtu + NS_IF_TAILROOM */
    struct ns_if_stats st;
    struct ns_tcp *streams; /* doubly linked through ns_tcp */
    struct ns_listener *listeners;
    size_t n_streams, n_listeners;
};

/* lwip_port.c */
extern struct nb_loop *ns__loop;
extern struct netif ns__blackhole;
extern uint64_t ns__blackhole_drops;
int ns__blackhole_add(void);
void ns__blackhole_remove(void);

/* ns.c */
extern int ns__input_depth; /* >0 while lwIP is processing input or timers */
extern size_t ns__n_streams;
extern size_t ns__n_listeners;
extern size_t ns__n_ifs;
/* Re-arms the lwIP timer after anything that may have added an lwIP timeout. */
void ns__timers_kick(void);

/* ns_tcp.c: detaches and aborts every stream/listener/pcb bound to nif (from ns_if_free). */
void ns__tcp_if_gone(struct ns_if *nif);

#endif
