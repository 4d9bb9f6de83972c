/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_NETSTACK_LWIPOPTS_H
#define NB_NETSTACK_LWIPOPTS_H

/*
 * lwIP 2.1.3 options for nbproxy: one global, single-threaded (NO_SYS=1) raw-API stack with one
 * point-to-point netif per account, fed by our own WireGuard. netstack/README.md explains every
 * limit below; change the two together.
 */

/* ---- system ---- */
#define NO_SYS                     1
#define SYS_LIGHTWEIGHT_PROT       0
#define LWIP_TIMERS                1
#define LWIP_SOCKET                0
#define LWIP_NETCONN               0
#define LWIP_NETIF_API             0
#define LWIP_SINGLE_NETIF          0
#define LWIP_NETIF_LOOPBACK        0
#define LWIP_HAVE_LOOPIF           0
#define LWIP_NETIF_STATUS_CALLBACK 0
#define LWIP_NETIF_LINK_CALLBACK   0
#define LWIP_NETIF_HOSTNAME        0
#define LWIP_NUM_NETIF_CLIENT_DATA 0

/* ---- memory: fixed pools for fixed-size objects, capped libc heap for PBUF_RAM ---- */
#define MEM_ALIGNMENT   8
#define MEM_LIBC_MALLOC 1
/* With MEM_LIBC_MALLOC, MEM_SIZE is not a static array: it is the cap enforced by
 * ns__mem_malloc() on the bytes lwIP has malloc'ed (send data not yet acked, replies). */
#define MEM_SIZE            (64u * 1024u * 1024u)
#define mem_clib_malloc     ns__mem_malloc
#define mem_clib_free       ns__mem_free
#define mem_clib_calloc     ns__mem_calloc
#define MEMP_MEM_MALLOC     0 /* pools stay static arrays with hard caps */
#define MEMP_OVERFLOW_CHECK 0

#define MEMP_NUM_TCP_PCB        4096 /* all TCP connections of all accounts (incl. TIME_WAIT) */
#define MEMP_NUM_TCP_PCB_LISTEN 1024 /* all listeners of all accounts */
#define MEMP_NUM_TCP_SEG        16384
#define MEMP_NUM_PBUF           512 /* PBUF_REF/ROM headers (fragmentation) */
#define MEMP_NUM_REASSDATA      32  /* IPv4 datagrams being reassembled */
#define MEMP_NUM_FRAG_PBUF      128
#define MEMP_NUM_UDP_PCB        4096 /* UDP flows (ns_udp) of all accounts */
#define MEMP_NUM_RAW_PCB        1
#define PBUF_POOL_SIZE          4096 /* every received packet lives in one of these */
#define PBUF_POOL_BUFSIZE       1536 /* one pbuf per packet up to MTU 1500 */
#define IP_REASS_MAX_PBUFS      64
#define IP_REASS_MAXAGE         5
#define LWIP_IPV6_REASS         0 /* see IP_REASSEMBLY */
#define IPV6_REASS_MAXAGE       5
#define IPV6_FRAG_COPYHEADER    1 /* REQUIRED on 64-bit hosts (ip6_frag.c asserts otherwise) */

/* ---- protocols ---- */
#define LWIP_IPV4           1
#define LWIP_IPV6           1
#define LWIP_ARP            0
#define LWIP_ETHERNET       0
#define LWIP_ICMP           1
#define LWIP_BROADCAST_PING 0
#define LWIP_MULTICAST_PING 0
#define LWIP_ICMP6          1
#define LWIP_RAW            0
#define LWIP_UDP            1
#define LWIP_TCP            1
#define LWIP_DNS            0
#define LWIP_DHCP           0
#define LWIP_AUTOIP         0
#define LWIP_IGMP           0
#define IP_FORWARD          0
/*
 * No reassembly of incoming fragments: lwIP matches fragments by addresses, ID and protocol, not
 * by netif, so two accounts with the same addresses could have their fragments merged. Inner
 * packets over WireGuard are not fragmented in practice (TCP uses the MSS of the 1280 MTU), so
 * fragments are dropped (counted by lwIP) rather than risk crossing accounts.
 */
#define IP_REASSEMBLY                 0
#define IP_FRAG                       1
#define IP_DEFAULT_TTL                64
#define LWIP_IPV6_FORWARD             0
#define LWIP_IPV6_FRAG                1
#define LWIP_IPV6_MLD                 0
#define LWIP_IPV6_AUTOCONFIG          0
#define LWIP_IPV6_DHCP6               0
#define LWIP_IPV6_SEND_ROUTER_SOLICIT 0
#define LWIP_IPV6_DUP_DETECT_ATTEMPTS 0
#define LWIP_IPV6_SCOPES              0 /* no link-local addresses on tunnel netifs */
#define LWIP_IPV6_NUM_ADDRESSES       3
#define LWIP_ND6_ALLOW_RA_UPDATES     0
#define LWIP_ND6_QUEUEING             0

/* ---- TCP: NetBird tunnel MTU is 1280 -> MSS 1240 (v4) / 1220 (v6, clamped per netif) ---- */
#define TCP_MSS                    1240
#define TCP_CALCULATE_EFF_SEND_MSS 1
#define LWIP_WND_SCALE             1
#define TCP_RCV_SCALE              3 /* window up to 65535 << 3 = 512 KiB */
#define TCP_WND                    (256u * 1024u)
#define TCP_SND_BUF                (256u * 1024u)
#define TCP_SND_QUEUELEN           ((4u * TCP_SND_BUF + TCP_MSS - 1u) / TCP_MSS)
#define TCP_SNDLOWAT               (32u * 1024u) /* < 0xffff - 4 * MSS (u16 in lwIP) */
#define TCP_SNDQUEUELOWAT          (TCP_SND_QUEUELEN / 2u)
#define TCP_QUEUE_OOSEQ            1
#define TCP_OOSEQ_MAX_BYTES        TCP_WND
/* Out-of-order pbufs come from the pool every account shares: 64 per connection bounds what a
 * peer sending tiny out-of-order segments can pin (64 connections to fill the pool, not 16). */
#define TCP_OOSEQ_MAX_PBUFS        64
#define TCP_LISTEN_BACKLOG         1
#define TCP_DEFAULT_LISTEN_BACKLOG 64
/*
 * lwIP's TCP timers tick every TCP_TMR_INTERVAL (delayed ACKs) and 2x that (retransmission
 * timeouts are whole ticks). lwIP measures RTTs in those ticks, so on a path faster than a tick
 * the RTO settles at 3 ticks: 30 ms here (1.5 s at lwIP's default 250, 300 ms at 50). Losses
 * are mostly repaired by fast retransmit and NewReno (lwip_port.c); the timer is the backstop
 * (a lost retransmission), and at 50 ms ticks each timeout stalled a stream to a wireguard-go
 * peer for 0.3-0.5 s (docs/benchmarks.md). On slower paths the RTO follows the RTT as usual.
 * The timers run only while lwIP has TCP pcbs (TIME_WAIT included).
 *
 * lwIP drops a connection after TCP_MAXRTX timeouts in a row (or zero-window probes), at most
 * 12. The timeout doubles up to 128x the RTO, so with a 30 ms RTO 12 would take only 23 s
 * (10 s of a closed window); ns_tcp holds the count for its streams until NS_TCP_GIVEUP_MS
 * (150 s, about what 10 gave with 50 ms ticks) so a peer that is away for a while (roaming, a
 * relay switch) keeps its connections. SYN retransmissions do not depend on the tick.
 */
#define TCP_TMR_INTERVAL    5
#define TCP_SYNMAXRTX       4       /* ~45 s until an unanswered connect fails */
#define TCP_MAXRTX          12      /* lwIP's maximum; see NS_TCP_GIVEUP_MS */
#define TCP_MSL             30000UL /* TIME_WAIT = 2*MSL = 60 s, like Linux */
#define TCP_TTL             64
#define LWIP_TCP_KEEPALIVE  1
#define SO_REUSE            1 /* needed so accounts may listen on the same addr:port */
#define LWIP_CALLBACK_API   1
#define LWIP_TCP_TIMESTAMPS 0

/* ---- randomness, ISNs, routing: implemented in netstack/lwip_port.c ---- */
#define LWIP_RAND()                               ((u32_t)randombytes_random())
#define LWIP_RANDOMIZE_INITIAL_LOCAL_PORTS        1
#define LWIP_HOOK_FILENAME                        "lwip_hooks.h"
#define LWIP_HOOK_TCP_ISN(lip, lport, rip, rport) ns__tcp_isn((lip), (lport), (rip), (rport))
#define LWIP_HOOK_IP4_ROUTE_SRC(src, dest)        ns__route_hook()
#define LWIP_HOOK_IP6_ROUTE(src, dest)            ns__route_hook()
#define LWIP_HOOK_TCP_INPACKET_PCB(pcb, hdr, optlen, opt1len, opt2, p) \
    ns__tcp_inpacket((pcb), (hdr), (p))
#define LWIP_HOOK_TCP_OUT_ADD_TCPOPTS(p, hdr, pcb, opts) ns__tcp_out_opts((p), (hdr), (pcb), (opts))

/* ---- checksums: generated always; checked on input except in fuzz builds ---- */
#ifdef NB_FUZZING
#define CHECKSUM_CHECK_IP    0
#define CHECKSUM_CHECK_TCP   0
#define CHECKSUM_CHECK_ICMP  0
#define CHECKSUM_CHECK_ICMP6 0
#define CHECKSUM_CHECK_UDP   0
#endif

/* ---- statistics: memp/mem/tcp counters back ns_stats() and the pool-leak checks ---- */
#define LWIP_STATS         1
#define LWIP_STATS_DISPLAY 0
#define MEM_STATS          1
#define MEMP_STATS         1
#define TCP_STATS          1
#define IP_STATS           1
#define IP6_STATS          1
#define ICMP_STATS         1
#define ICMP6_STATS        1
#define LINK_STATS         0
#define ETHARP_STATS       0
#define UDP_STATS          1
#define SYS_STATS          0
#define ND6_STATS          0
#define MLD6_STATS         0
#define IP6_FRAG_STATS     1
#define IPFRAG_STATS       1

#define LWIP_DEBUG_TIMERNAMES  0
#define LWIP_NOASSERT_ON_ERROR 0

#endif
