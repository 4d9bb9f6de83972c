/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_NETSTACK_NS_TCP_H
#define NB_NETSTACK_NS_TCP_H

/*
 * TCP over a tunnel interface, exposed as platform/stream.h streams and listeners.
 *
 * Semantics beyond stream.h:
 *   - write(): bytes go straight into lwIP's send buffer (copied) as far as it has room; the rest
 *     waits in the stream's nb_bufq and is pushed from lwIP's `sent` callback. queued() counts the
 *     bufq only (bytes inside lwIP's send buffer are "handed to the transport").
 *   - receive: data is delivered with on_data and acknowledged to lwIP (tcp_recved) only once
 *     delivered. While paused, received pbufs are held (bounded by the TCP window, 256 KiB) and
 *     not acknowledged, so the peer's window closes.
 *   - shutdown(): FIN after the write queue is flushed. on_eof after the peer's FIN and after all
 *     data before it was delivered.
 *   - close(false): received-but-undelivered data is discarded (acknowledged, so no RST), the
 *     write queue is flushed, then FIN. If the peer does not take the queued bytes within
 *     NS_TCP_LINGER_MS the connection is reset. On a stream still connecting, close(false) waits
 *     for the connection, flushes, then FINs (a failed connect just frees it). close(true): RST.
 *   - Callbacks (on_data, on_eof, on_drain, on_connect for success) run from inside lwIP input or
 *     timer processing, or from a deferred call; on_error and failed on_connect always run from a
 *     deferred call. Everything may be called from inside any callback, including close(); the
 *     stream memory is released on a deferred call after close().
 *   - Connect timeout: lwIP gives up after TCP_SYNMAXRTX SYN retransmissions (about 45 s) and
 *     reports ns_tcp_err_timeout. Callers wanting less arm their own nb_timer and close(true).
 *   - Give-up: an established stream whose peer acknowledges nothing (gone, roaming), or keeps
 *     its window closed, is dropped with ns_tcp_err_timeout once that has lasted
 *     NS_TCP_GIVEUP_MS (plus at most four retransmissions or probes, about 15 s).
 */

#include "platform/stream.h"

#include <sys/socket.h>

struct ns_if;

#define NS_TCP_LINGER_MS 30000u
#define NS_TCP_GIVEUP_MS 150000u

/* Error reasons (compare by pointer) passed to on_error / on_connect. */
extern const char ns_tcp_err_refused[]; /* RST in answer to our SYN */
extern const char ns_tcp_err_reset[];   /* RST on an established connection */
extern const char ns_tcp_err_timeout[]; /* retransmissions exhausted, or killed by lwIP */
extern const char ns_tcp_err_nomem[];   /* out of pcbs / segments */
extern const char ns_tcp_err_closed[];  /* closed by lwIP */
extern const char ns_tcp_err_if_gone[]; /* the interface was freed */

/*
 * Opens a connection to `dst` (sockaddr_in or sockaddr_in6; the interface needs an address of
 * that family) from the interface's address and an ephemeral port. On NB_OK *out is the stream
 * (owned by the caller, which must close() it exactly once) and on_connect will run. Errors:
 * NB_E_INVAL (bad address/family), NB_E_NOMEM (no pcb or memory, interface max_conns hit, or no
 * lwIP netif slot for the interface: ns_if.h, counted in ns_if_stats.open_no_slot).
 */
int ns_tcp_connect(struct ns_if *nif, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                   void *arg, struct nb_stream **out);

/*
 * Listens on `local` (the address must be one of the interface's, or any: 0.0.0.0 = IPv4 only,
 * :: = IPv4 and IPv6; the port must be non-zero). Accepted streams are handed to on_accept (see
 * stream.h for ownership). Two interfaces may listen on the same address and port; on one
 * interface a duplicate is NB_E_EXISTS. NB_E_INVAL, NB_E_NOMEM otherwise (also: no lwIP netif
 * slot, as for connect). A listener keeps its interface's netif attached (one slot).
 */
int ns_tcp_listen(struct ns_if *nif, const struct sockaddr *local, nb_accept_fn on_accept,
                  void *arg, struct nb_listener **out);

#endif
