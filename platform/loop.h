/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_PLATFORM_LOOP_H
#define NB_PLATFORM_LOOP_H

/*
 * The event loop: one per thread, epoll underneath. Everything in nbproxy runs from here and
 * nothing blocks. Three kinds of event source:
 *   - fd watchers (struct nb_io), level-triggered;
 *   - monotonic one-shot timers (struct nb_timer) kept in a binary heap;
 *   - deferred calls (struct nb_defer), run once after the current batch of events. They are how
 *     an object is closed "later" instead of from inside its own callback.
 * All three are embedded in their owner (no allocation by the loop); the owner must stop/cancel
 * them before freeing the memory.
 */

#include <stdbool.h>
#include <stdint.h>

struct nb_loop;
struct nb_io;
struct nb_timer;
struct nb_defer;

enum {
    NB_IO_READ = 1u << 0,
    NB_IO_WRITE = 1u << 1,
    /* Reported with EPOLLERR/EPOLLHUP. Requested alone, it keeps a watcher registered only for
     * errors and hang-ups (a paused stream still learns about a reset). */
    NB_IO_ERROR = 1u << 2,
};

/* Called with the ready events. The watcher may be stopped or freed inside the callback. */
typedef void (*nb_io_fn)(struct nb_io *io, uint32_t events);
typedef void (*nb_timer_fn)(struct nb_timer *t);
typedef void (*nb_defer_fn)(struct nb_defer *d);

struct nb_io {
    struct nb_loop *loop;
    int fd;
    uint32_t events; /* NB_IO_READ | NB_IO_WRITE currently requested */
    nb_io_fn cb;
    void *arg;
    bool _in_epoll; /* registered with epoll; a quiet watcher (events 0) is not */
};

struct nb_timer {
    struct nb_loop *loop;
    uint64_t due_ms;  /* absolute, nb_loop_now_ms() clock */
    uint32_t _heap_i; /* position in the heap, UINT32_MAX when not armed */
    nb_timer_fn cb;
    void *arg;
};

struct nb_defer {
    struct nb_defer *_next;
    bool _queued;
    nb_defer_fn cb;
    void *arg;
};

/* Creates a loop; NULL when out of memory or epoll_create fails. */
struct nb_loop *nb_loop_new(void);
/* Frees the loop. Every watcher and timer must be stopped first. */
void nb_loop_free(struct nb_loop *loop);

/* Runs until nb_loop_stop(). Returns NB_OK, or NB_E_IO if epoll_wait fails. */
int nb_loop_run(struct nb_loop *loop);
/* Makes nb_loop_run() return after the current iteration. */
void nb_loop_stop(struct nb_loop *loop);
/* Runs one iteration, waiting at most timeout_ms (-1 = until an event or timer). For tests. */
int nb_loop_run_once(struct nb_loop *loop, int timeout_ms);

/* Monotonic milliseconds, cached once per loop iteration. */
uint64_t nb_loop_now_ms(struct nb_loop *loop);
/* Fresh monotonic clock readings (not cached). */
uint64_t nb_now_ms(void);
uint64_t nb_now_ns(void);

/* Watches fd for `events` (NB_IO_READ/WRITE). The fd must be non-blocking. */
int nb_io_start(struct nb_loop *loop, struct nb_io *io, int fd, uint32_t events, nb_io_fn cb,
                void *arg);
/*
 * Changes the requested events of a started watcher. 0 makes it quiet: it is taken out of epoll
 * (which would otherwise keep reporting a hang-up or error on the fd forever, level-triggered)
 * and put back when events are requested again.
 */
int nb_io_set(struct nb_io *io, uint32_t events);
/* Stops watching; safe on a watcher that was never started (io->loop == NULL). */
void nb_io_stop(struct nb_io *io);

/* Prepares a timer; it is not armed. */
void nb_timer_init(struct nb_timer *t, nb_timer_fn cb, void *arg);
/* Arms (or re-arms) the timer to fire after `after_ms` milliseconds. A timer armed from a timer
 * callback for "now or earlier" fires in the next iteration, never in the same pass. */
void nb_timer_arm(struct nb_loop *loop, struct nb_timer *t, uint64_t after_ms);
/* Arms the timer at an absolute nb_loop_now_ms() time. */
void nb_timer_arm_at(struct nb_loop *loop, struct nb_timer *t, uint64_t due_ms);
void nb_timer_cancel(struct nb_timer *t);
bool nb_timer_armed(const struct nb_timer *t);

/* Queues cb(d) to run after the current event batch; a queued defer is not queued twice. */
void nb_defer(struct nb_loop *loop, struct nb_defer *d, nb_defer_fn cb, void *arg);
void nb_defer_cancel(struct nb_loop *loop, struct nb_defer *d);

/*
 * Signals: SIGINT and SIGTERM are blocked and read through a signalfd; cb runs on the loop with
 * the signal number. SIGPIPE is ignored process-wide.
 */
typedef void (*nb_signal_fn)(void *arg, int signo);
int nb_loop_watch_signals(struct nb_loop *loop, nb_signal_fn cb, void *arg);

#endif
