/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_NETSTACK_NS_UDP_H
#define NB_NETSTACK_NS_UDP_H

/*
 * UDP over a tunnel interface: a "connected" lwIP UDP pcb from the interface's own address (and
 * an ephemeral port from lwIP's range, shared by all accounts) to one remote ip:port, bound to
 * the interface's netif like every other pcb (ns_if.h, isolation). Datagrams go out with
 * ns_udp_send() and come back through the on_recv callback; only datagrams from the connected
 * remote address and port are delivered (anything else to that port is not matched and gets
 * ICMP port unreachable from lwIP).
 *
 * Memory: a send copies the datagram into one lwIP heap pbuf (capped, MEM_SIZE), handed to the
 * interface's output hook at once and freed; received datagrams live in pool pbufs only for the
 * duration of on_recv. Nothing is queued here, so a datagram that cannot go out now is dropped
 * and counted (UDP semantics). Incoming IP fragments are dropped before lwIP (no reassembly,
 * lwipopts.h); outgoing datagrams larger than the MTU are fragmented by lwIP.
 *
 * Lifetime: the owner holds the ns_udp until ns_udp_close(), callable from anywhere including
 * on_recv; on_recv is never called after it. The memory is released on a deferred call. If the
 * interface is freed first, the pcb is removed and ns_udp_send() returns NB_E_CLOSED; the owner
 * must still close.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ns_if;
struct ns_udp;

/* A received datagram, valid only during the call. Runs from inside lwIP input processing: it
 * may call ns_udp_send() and ns_udp_close() (of any ns_udp), nothing that feeds input. */
typedef void (*ns_udp_recv_fn)(void *arg, struct ns_udp *u, const uint8_t *data, size_t len);

/*
 * Opens a UDP flow from the interface to `dst` (sockaddr_in or sockaddr_in6; the interface
 * needs an address of that family; port non-zero). NB_OK, NB_E_INVAL (bad address/family),
 * NB_E_NOMEM (no pcb, interface max_conns of UDP flows reached, or no lwIP netif slot:
 * ns_if_stats.open_no_slot). An open flow keeps the interface's netif attached.
 */
int ns_udp_open(struct ns_if *nif, const struct sockaddr *dst, ns_udp_recv_fn on_recv, void *arg,
                struct ns_udp **out);

/*
 * Sends one datagram (at most NS_UDP_MAX_PAYLOAD_V4 / _V6 bytes). NB_OK when
 * handed to the interface; NB_E_NOMEM when lwIP had no memory for it (dropped, counted: the
 * flow stays usable); NB_E_INVAL when it is too large; NB_E_IO when the interface refused it
 * (output hook error); NB_E_CLOSED when the interface is gone. Not re-entrant into input: may
 * be called from on_recv.
 */
int ns_udp_send(struct ns_udp *u, const void *data, size_t len);

/* Largest payload: 65535 - 8 (UDP) - 20 (IPv4 header) / - 40 (IPv6 header). */
#define NS_UDP_MAX_PAYLOAD_V4 65507u
#define NS_UDP_MAX_PAYLOAD_V6 65487u

void ns_udp_close(struct ns_udp *u);

/* Local (tunnel address, ephemeral port) and remote address of the flow. */
void ns_udp_addrs(const struct ns_udp *u, struct sockaddr_storage *local,
                  struct sockaddr_storage *remote);

struct ns_udp_stats {
    uint64_t tx_packets, tx_bytes; /* handed to the interface */
    uint64_t tx_dropped;           /* NB_E_NOMEM/NB_E_IO from ns_udp_send */
    uint64_t rx_packets, rx_bytes; /* delivered to on_recv */
};
void ns_udp_stats(const struct ns_udp *u, struct ns_udp_stats *st);

#endif
