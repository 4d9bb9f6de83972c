/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_NETSTACK_NS_H
#define NB_NETSTACK_NS_H

/*
 * netstack: the process-wide lwIP instance (one, single-threaded, NO_SYS=1, raw API) that turns
 * the IP packets of every account's tunnel into nb_streams. Modules:
 *   ns.h      init/deinit, lwIP timers on the loop, statistics (this file)
 *   ns_if.h   one point-to-point interface per account: packets in, packets out (its lwIP netif
 *             is attached lazily, NS_IF_MAX_ATTACHED at once)
 *   ns_tcp.h  TCP over an interface as nb_stream / nb_listener (platform/stream.h)
 *   tunnel.h  an account's data plane: UDP socket + WireGuard device + ns_if
 *
 * Threading: everything runs on the loop given to ns_init(); nothing here is thread-safe.
 * Re-entrancy: lwIP is not re-entrant. ns_if_input() must be called from the loop (an fd
 * callback, timer or deferred call), never from inside an output hook or a stream callback;
 * it refuses (NB_E_AGAIN, counted) when called re-entrantly.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nb_loop;

/*
 * Initialises lwIP (once per process; later calls after ns_deinit() only re-attach the loop) and
 * drives lwIP's timers from an nb_timer on `loop`. NB_OK, NB_E_EXISTS if already initialised,
 * NB_E_NOMEM if libsodium cannot initialise.
 */
int ns_init(struct nb_loop *loop);
/* Detaches from the loop. Every ns_if must be freed first (checked with an assert). */
void ns_deinit(void);

/* Counters over the whole stack (all accounts). Pool figures are "in use" unless named _max. */
struct ns_stats {
    size_t tcp_pcbs, tcp_pcbs_max;     /* MEMP_TCP_PCB: connections incl. SYN_RCVD, TIME_WAIT */
    size_t tcp_listen, tcp_listen_max; /* MEMP_TCP_PCB_LISTEN */
    size_t tcp_segs, tcp_segs_max;     /* MEMP_TCP_SEG */
    size_t pbuf_pool, pbuf_pool_max;   /* MEMP_PBUF_POOL: received packets held by lwIP/us */
    size_t pbuf_ref;                   /* MEMP_PBUF */
    size_t frag;                       /* MEMP_FRAG_PBUF */
    size_t heap_bytes, heap_peak;      /* lwIP heap (PBUF_RAM), capped at MEM_SIZE */
    size_t heap_max;                   /* the cap */
    uint64_t pool_errs;                /* allocation failures, all pools + heap, since start */
    size_t time_wait;                  /* pcbs in TIME_WAIT (part of tcp_pcbs) */
    size_t streams;                    /* live ns_tcp streams (ours) */
    size_t listeners;                  /* live ns_tcp listeners (ours) */
    size_t udp_flows;                  /* live ns_udp flows (ours) */
    size_t udp_pcbs, udp_pcbs_max;     /* MEMP_UDP_PCB */
    size_t ifs;                        /* live ns_if */
    size_t ifs_attached;               /* of which have an lwIP netif now */
    size_t ifs_attached_max;           /* NS_IF_MAX_ATTACHED */
    uint64_t if_attaches, if_detaches; /* lwIP netifs added / removed, since start */
    uint64_t if_no_slot;               /* attaches refused: all slots busy (input + open) */
    uint64_t time_wait_purged;         /* TIME_WAIT pcbs aborted by a detach */
    uint64_t blackholed;               /* packets lwIP could not route to an account: dropped */
};
void ns_stats(struct ns_stats *st);

/*
 * True when nothing is allocated: every lwIP pool (except the cyclic-timer entries), the lwIP
 * heap, and our stream/listener objects are at zero. Otherwise false, with the first non-empty
 * pool named in `why` (may be NULL). Use after all streams and interfaces are closed and freed.
 */
bool ns_pools_idle(char *why, size_t why_len);

#endif
