/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_NETSTACK_LWIP_HOOKS_H
#define NB_NETSTACK_LWIP_HOOKS_H

/*
 * Hook prototypes for lwIP (LWIP_HOOK_FILENAME). Implemented in netstack/lwip_port.c.
 *
 * ns__route_hook: routing for packets that are NOT sent by a netif-bound pcb (every pcb we create
 * is bound, and lwIP's tcp_route() then uses the bound netif without asking). What is left are
 * replies generated while processing input: RSTs to segments without a pcb, ICMP errors. They
 * leave through the netif the input came in on (ip_current_input_netif()). Anything else goes to
 * a black-hole netif that drops and counts, so lwIP's own netmask scan (which cannot tell two
 * accounts with the same addresses apart) never decides.
 */

#include "lwip/ip_addr.h"
#include "lwip/netif.h"

#include <stdint.h>

struct netif *ns__route_hook(void);
struct tcp_pcb;
struct tcp_hdr;
struct pbuf;
/*
 * Sees every segment for an existing pcb before lwIP processes it; != ERR_OK drops it. Used to
 * drop segments lwIP 2.1.3 would abort on: a segment whose sequence number is exactly 2^31
 * away from rcv_nxt passes both halves of TCP_SEQ_BETWEEN in tcp_receive() and trips the
 * "insane offset" assertion (found by fuzz_netstack_ip). Also NewReno's partial ACKs (below).
 */
err_t ns__tcp_inpacket(struct tcp_pcb *pcb, struct tcp_hdr *hdr, struct pbuf *p);
/*
 * Sees every TCP segment lwIP sends (LWIP_HOOK_TCP_OUT_ADD_TCPOPTS; adds no option, changes
 * nothing). Notes lwIP's fast retransmits and retransmission timeouts for NewReno (below).
 */
u32_t *ns__tcp_out_opts(struct pbuf *p, struct tcp_hdr *hdr, const struct tcp_pcb *pcb,
                        u32_t *opts);
/*
 * NewReno (RFC 6582) partial-ACK recovery on top of lwIP's Reno, done by the two TCP hooks and a
 * deferred call (lwip_port.c). The count of retransmissions it made, for tests.
 */
extern uint64_t ns__tcp_nr_rexmits;
u32_t ns__tcp_isn(const ip_addr_t *local_ip, u16_t local_port, const ip_addr_t *remote_ip,
                  u16_t remote_port);

#endif
