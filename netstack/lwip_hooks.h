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

struct netif *ns__route_hook(void);
u32_t ns__tcp_isn(const ip_addr_t *local_ip, u16_t local_port, const ip_addr_t *remote_ip,
                  u16_t remote_port);

#endif
