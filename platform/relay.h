/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_PLATFORM_RELAY_H
#define NB_PLATFORM_RELAY_H

/*
 * L4 relay: copies bytes both ways between two nb_streams (a client and a backend), with
 * backpressure (a side whose peer's write queue is full is paused until on_drain), half-close
 * propagation (a clean EOF on one side shuts down writing on the other; the relay ends when both
 * directions finished), and an idle timeout over the whole connection (it also bounds how long
 * a half-closed connection may linger). When one side fails, only that side is reset: the other
 * is closed gracefully so bytes already relayed to it are delivered.
 *
 * The relay owns both streams from nb_relay_start() on and closes them when it ends. `done` runs
 * exactly once, from the loop (never from inside nb_relay_start), with byte counts for the L4
 * access log; the relay memory is freed right after `done` returns.
 */

#include <stdbool.h>
#include <stdint.h>

struct nb_loop;
struct nb_stream;
struct nb_relay;

struct nb_relay_result {
    uint64_t bytes_up;   /* client -> backend */
    uint64_t bytes_down; /* backend -> client */
    uint64_t started_ms;
    uint64_t ended_ms;
    const char *reason; /* NULL for a clean finish, else "idle timeout", "connection reset"... */
};

typedef void (*nb_relay_done_fn)(void *arg, struct nb_relay *r, const struct nb_relay_result *res);

struct nb_relay_opts {
    uint32_t idle_timeout_ms; /* 0 = 5 minutes (the reference default) */
};

/* Starts relaying; takes ownership of both streams (also on failure). */
int nb_relay_start(struct nb_loop *loop, struct nb_stream *client, struct nb_stream *backend,
                   const struct nb_relay_opts *opts, nb_relay_done_fn done, void *arg,
                   struct nb_relay **out);
/* Ends the relay now (route removed, shutdown): both streams reset, `done` runs deferred. */
void nb_relay_cancel(struct nb_relay *r);

/* Number of relays alive in this process (tests, metrics). */
uint64_t nb_relay_live(void);

#endif
