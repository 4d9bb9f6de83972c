/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_PLATFORM_SOCK_H
#define NB_PLATFORM_SOCK_H

/*
 * Host sockets: TCP as nb_stream / nb_listener (platform/stream.h), and a small UDP helper.
 */

#include "platform/stream.h"

#include <stdint.h>
#include <sys/socket.h>

struct nb_loop;

/* Listens on addr (SO_REUSEADDR; "[::]" is dual-stack). The listener is closed with
 * nb_listener_close(). Accepted streams have TCP_NODELAY set. */
int nb_tcp_listen(struct nb_loop *loop, const struct sockaddr *addr, int backlog,
                  nb_accept_fn on_accept, void *arg, struct nb_listener **out);

/*
 * Connects to addr. *out is valid at once (writes are queued until connected); cbs->on_connect
 * reports the result. timeout_ms bounds the connect (0 = the kernel's own timeout).
 */
int nb_tcp_connect(struct nb_loop *loop, const struct sockaddr *addr, uint32_t timeout_ms,
                   const struct nb_stream_cbs *cbs, void *arg, struct nb_stream **out);

/* Live host stream objects (for leak checks in tests). */
size_t nb_tcp_streams_live(void);
/* Releases every stream closed gracefully but still flushing its queue or waiting for the
 * peer's FIN (the lingering close): for process exit. Their memory goes at the next loop turn. */
void nb_tcp_close_lingering(void);

/* A non-blocking, close-on-exec UDP socket bound to addr; returns fd or -1 (errno set). */
int nb_udp_bind(const struct sockaddr *addr);

#endif
