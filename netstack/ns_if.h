/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_NETSTACK_NS_IF_H
#define NB_NETSTACK_NS_IF_H

/*
 * A tunnel interface: one lwIP netif per account, point to point (no ARP, no link layer).
 *
 * Accounts are independent networks: two interfaces may carry the same addresses. lwIP has one
 * routing table, so isolation is enforced here and in ns_tcp:
 *   - ns_if_input() accepts only packets addressed to one of THIS interface's own addresses
 *     (everything else is dropped and counted before lwIP sees it);
 *   - every pcb is bound to its interface (tcp_bind_netif), so lwIP demultiplexes input and
 *     routes output by interface, not by address;
 *   - replies lwIP generates without a pcb (RST, ICMP) leave through the interface the input
 *     came in on (routing hook in lwip_port.c); anything unroutable is dropped (blackholed).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ns_if;

#define NS_IF_DEFAULT_MTU 1280 /* NetBird's tunnel MTU */
#define NS_IF_MIN_MTU     576
#define NS_IF_MAX_MTU     9000
#define NS_IF_MAX_ADDRS   4 /* at most one IPv4 and three IPv6 addresses */
/* Writable bytes guaranteed before and after every packet handed to the output hook. */
#define NS_IF_HEADROOM 32
#define NS_IF_TAILROOM 32
#define NS_IF_TAG_MAX  64

/* An interface address with its prefix length (the prefix is informational: see README). */
struct ns_addr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t ip[16];
    uint8_t prefix_len;
};

/* Parses "10.99.100.1/24" or "fd00::1/64" (prefix optional: /32 or /128). NB_OK or NB_E_PARSE. */
int ns_addr_parse(const char *s, struct ns_addr *out);

/*
 * Output hook: receives every IP packet lwIP sends on the interface, flattened into a buffer the
 * interface owns. `pkt` has NS_IF_HEADROOM writable bytes before it and NS_IF_TAILROOM after
 * pkt + len, so an encrypting layer can build its header and tag in place. The buffer may be
 * modified and is valid only during the call. Return NB_OK when the packet was taken (sent or
 * queued), anything else counts as an output drop (TCP will retransmit).
 * The hook must not call back into the netstack (no ns_if_input, no stream calls).
 */
typedef int (*ns_output_fn)(void *ctx, uint8_t *pkt, size_t len);

struct ns_if_config {
    const char *tag;             /* account tag for logs and stats (copied, may be NULL) */
    uint16_t mtu;                /* 0 = NS_IF_DEFAULT_MTU */
    const struct ns_addr *addrs; /* at least one; at most one IPv4, three IPv6; no link-local */
    size_t n_addrs;
    ns_output_fn output;
    void *output_ctx;
    uint32_t max_conns; /* cap on live streams of this interface, 0 = no own cap */
};

/* Creates and brings up the interface. NB_OK, NB_E_INVAL (bad config), NB_E_NOMEM (also: out of
 * lwIP netif indices, 254 interfaces per process). */
int ns_if_new(const struct ns_if_config *cfg, struct ns_if **out);

/*
 * Removes the interface. Every pcb bound to it is aborted (connections in TIME_WAIT or closing
 * too). Streams and listeners the owner still holds stay valid: streams get on_error
 * (ns_tcp_err_if_gone) on a deferred call and must still be closed; listeners accept nothing
 * more and must still be closed. Never call from inside a netstack callback; defer it.
 */
void ns_if_free(struct ns_if *nif);

/*
 * Injects one received IP packet (copied into pool pbufs; the caller keeps `pkt`). Validates the
 * IPv4/IPv6 header and drops, counting, anything malformed or not addressed to one of this
 * interface's addresses. NB_OK when handed to lwIP, NB_E_DROP when dropped, NB_E_NOMEM when the
 * pbuf pool is exhausted, NB_E_AGAIN when called re-entrantly (see ns.h).
 */
int ns_if_input(struct ns_if *nif, const uint8_t *pkt, size_t len);

struct ns_if_stats {
    uint64_t in_packets, in_bytes;   /* handed to lwIP */
    uint64_t in_invalid;             /* failed header validation */
    uint64_t in_not_ours;            /* destination is not one of our addresses */
    uint64_t in_nomem;               /* pbuf pool exhausted */
    uint64_t in_reentrant;           /* refused: called from inside the netstack */
    uint64_t out_packets, out_bytes; /* accepted by the output hook */
    uint64_t out_errors;             /* output hook returned an error, or packet > MTU */
    size_t streams;                  /* live streams on this interface */
    size_t listeners;
};
void ns_if_stats(const struct ns_if *nif, struct ns_if_stats *st);
const char *ns_if_tag(const struct ns_if *nif);
uint16_t ns_if_mtu(const struct ns_if *nif);
/* True if sa's address (port ignored) is one of the interface's own addresses. */
bool ns_if_has_addr(const struct ns_if *nif, const struct sockaddr *sa);

#endif
