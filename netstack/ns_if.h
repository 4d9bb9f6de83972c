/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_NETSTACK_NS_IF_H
#define NB_NETSTACK_NS_IF_H

/*
 * A tunnel interface: one per account, point to point (no ARP, no link layer).
 *
 * Lazy attachment: an ns_if is plain memory (addresses, hook, counters, a few hundred bytes);
 * the lwIP netif behind it is added only while the interface needs one and removed after
 * NS_IF_DETACH_GRACE_MS without need. It needs one while any pcb is bound to it (connecting,
 * established, closing, SYN_RCVD, listening; TIME_WAIT alone does not count, see below) and for
 * the duration of each input packet. lwIP's netif index is one byte, so at most
 * NS_IF_MAX_ATTACHED interfaces are attached at once: at most ~253 accounts with live TCP state
 * or listeners at the same time, any number of idle accounts. When every slot is taken, an
 * attached interface that no longer needs its netif (one in its grace period) is detached on
 * the spot if we are not inside lwIP; otherwise the attach fails: input is dropped and counted
 * (in_no_slot, NB_E_NOMEM), ns_tcp_connect/ns_tcp_listen return NB_E_NOMEM (open_no_slot).
 *
 * Detaching aborts the interface's TIME_WAIT pcbs (silently, no RST): lwIP matches pcbs to
 * interfaces by index, and indices are reused by the next attach, so no pcb may outlive its
 * netif. The cost is a TIME_WAIT cut short to the grace period for accounts that go idle.
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

/* lwIP netif indices are u8 (1..255) and one goes to the black-hole netif. */
#define NS_IF_MAX_ATTACHED 254
/* An interface keeps its lwIP netif this long after it last needed it, so a burst of short
 * connections or pings does not add and remove the netif each time. */
#define NS_IF_DETACH_GRACE_MS 3000u
/* How often attached interfaces are checked for detachment (only while any is attached). */
#define NS_IF_SWEEP_MS 1000u

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

/* Creates the interface (detached: no lwIP netif yet, see above). NB_OK, NB_E_INVAL (bad
 * config), NB_E_NOMEM. Any number of interfaces may exist. */
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
 * interface's addresses. Attaches the lwIP netif if needed. NB_OK when handed to lwIP, NB_E_DROP
 * when dropped, NB_E_NOMEM when the pbuf pool is exhausted or no netif slot is free (in_no_slot),
 * NB_E_AGAIN when called re-entrantly (see ns.h).
 */
int ns_if_input(struct ns_if *nif, const uint8_t *pkt, size_t len);

struct ns_if_stats {
    uint64_t in_packets, in_bytes;   /* handed to lwIP */
    uint64_t in_invalid;             /* failed header validation */
    uint64_t in_not_ours;            /* destination is not one of our addresses */
    uint64_t in_nomem;               /* pbuf pool exhausted */
    uint64_t in_reentrant;           /* refused: called from inside the netstack */
    uint64_t in_no_slot;             /* dropped: no lwIP netif slot free (NS_IF_MAX_ATTACHED) */
    uint64_t open_no_slot;           /* connect/listen refused: no lwIP netif slot free */
    uint64_t attaches;               /* times an lwIP netif was attached */
    bool attached;                   /* an lwIP netif is attached now */
    uint64_t out_packets, out_bytes; /* accepted by the output hook */
    uint64_t out_errors;             /* output hook returned an error, or packet > MTU */
    size_t streams;                  /* live streams on this interface */
    size_t listeners;
    size_t udp_flows; /* open ns_udp flows on this interface */
};
void ns_if_stats(const struct ns_if *nif, struct ns_if_stats *st);
const char *ns_if_tag(const struct ns_if *nif);
uint16_t ns_if_mtu(const struct ns_if *nif);
/* True if sa's address (port ignored) is one of the interface's own addresses. */
bool ns_if_has_addr(const struct ns_if *nif, const struct sockaddr *sa);

#endif
