/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The event loop (platform/loop.h): epoll for fds, a binary min-heap of one-shot timers, and a
 * FIFO of deferred calls. One iteration = wait for fds (bounded by the nearest timer), dispatch
 * fd events, run due timers, run deferred calls. Deferred calls queued while running deferred
 * calls run in the same pass, so "close later" chains settle before the next wait.
 */
#include "platform/loop.h"
#include "platform/err.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

struct nb_loop {
    int epfd;
    bool stop;
    uint64_t now_ms;
    struct nb_timer **heap;
    uint32_t heap_len;
    uint32_t heap_cap;
    struct nb_defer *defer_head;
    struct nb_defer *defer_tail;
    /* signals */
    struct nb_io sig_io;
    nb_signal_fn sig_cb;
    void *sig_arg;
    /*
     * The fd watcher being dispatched may be stopped by an earlier callback in the same batch
     * (e.g. a stream closing its peer). Stopped watchers are marked by generation so stale
     * epoll events are skipped.
     */
    struct epoll_event events[MAX_EVENTS];
    int nevents;
    int cur_event;
    bool in_timers; /* run_timers() is running: arming for "now" means the next iteration */
};

uint64_t nb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t nb_now_ms(void)
{
    return nb_now_ns() / 1000000u;
}

struct nb_loop *nb_loop_new(void)
{
    struct nb_loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        free(loop);
        return NULL;
    }
    loop->now_ms = nb_now_ms();
    loop->sig_io.fd = -1;
    return loop;
}

void nb_loop_free(struct nb_loop *loop)
{
    if (loop == NULL)
        return;
    /* Deferred calls still queued never run; mark them free so a later loop can take them
     * (objects with static defers outlive a loop in tests). */
    for (struct nb_defer *d = loop->defer_head; d; d = d->_next)
        d->_queued = false;
    if (loop->sig_io.loop) {
        int fd = loop->sig_io.fd;
        nb_io_stop(&loop->sig_io);
        close(fd);
    }
    close(loop->epfd);
    free(loop->heap);
    free(loop);
}

uint64_t nb_loop_now_ms(struct nb_loop *loop)
{
    return loop->now_ms;
}

void nb_loop_stop(struct nb_loop *loop)
{
    loop->stop = true;
}

/* ---- fd watchers ---- */

static uint32_t to_epoll(uint32_t ev)
{
    return (ev & NB_IO_READ ? EPOLLIN | EPOLLRDHUP : 0) | (ev & NB_IO_WRITE ? EPOLLOUT : 0);
}

int nb_io_start(struct nb_loop *loop, struct nb_io *io, int fd, uint32_t events, nb_io_fn cb,
                void *arg)
{
    struct epoll_event ee = {.events = to_epoll(events), .data.ptr = io};
    io->loop = loop;
    io->fd = fd;
    io->events = events;
    io->cb = cb;
    io->arg = arg;
    io->_in_epoll = false;
    if (events == 0)
        return NB_OK;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ee) < 0) {
        io->loop = NULL;
        return NB_E_IO;
    }
    io->_in_epoll = true;
    return NB_OK;
}

/* Forgets pending events of this batch that still point at io (it may be freed next). */
static void forget_pending(struct nb_loop *loop, struct nb_io *io)
{
    for (int i = loop->cur_event + 1; i < loop->nevents; i++)
        if (loop->events[i].data.ptr == io)
            loop->events[i].data.ptr = NULL;
}

int nb_io_set(struct nb_io *io, uint32_t events)
{
    if (io->loop == NULL)
        return NB_E_INVAL;
    if (io->events == events && io->_in_epoll == (events != 0))
        return NB_OK;
    struct epoll_event ee = {.events = to_epoll(events), .data.ptr = io};
    if (events == 0) {
        if (io->_in_epoll)
            epoll_ctl(io->loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
        io->_in_epoll = false;
        forget_pending(io->loop, io);
    } else if (epoll_ctl(io->loop->epfd, io->_in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, io->fd,
                         &ee) < 0) {
        return NB_E_IO;
    } else {
        io->_in_epoll = true;
    }
    io->events = events;
    return NB_OK;
}

void nb_io_stop(struct nb_io *io)
{
    struct nb_loop *loop = io->loop;
    if (loop == NULL)
        return;
    if (io->_in_epoll)
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->_in_epoll = false;
    forget_pending(loop, io);
    io->loop = NULL;
}

/* ---- timers: binary min-heap on due_ms ---- */

static void heap_swap(struct nb_loop *loop, uint32_t a, uint32_t b)
{
    struct nb_timer *t = loop->heap[a];
    loop->heap[a] = loop->heap[b];
    loop->heap[b] = t;
    loop->heap[a]->_heap_i = a;
    loop->heap[b]->_heap_i = b;
}

static void heap_up(struct nb_loop *loop, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (loop->heap[p]->due_ms <= loop->heap[i]->due_ms)
            break;
        heap_swap(loop, i, p);
        i = p;
    }
}

static void heap_down(struct nb_loop *loop, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->heap_len && loop->heap[l]->due_ms < loop->heap[m]->due_ms)
            m = l;
        if (r < loop->heap_len && loop->heap[r]->due_ms < loop->heap[m]->due_ms)
            m = r;
        if (m == i)
            return;
        heap_swap(loop, i, m);
        i = m;
    }
}

void nb_timer_init(struct nb_timer *t, nb_timer_fn cb, void *arg)
{
    t->loop = NULL;
    t->due_ms = 0;
    t->_heap_i = UINT32_MAX;
    t->cb = cb;
    t->arg = arg;
}

bool nb_timer_armed(const struct nb_timer *t)
{
    return t->_heap_i != UINT32_MAX;
}

void nb_timer_cancel(struct nb_timer *t)
{
    struct nb_loop *loop = t->loop;
    if (!nb_timer_armed(t))
        return;
    uint32_t i = t->_heap_i;
    uint32_t last = --loop->heap_len;
    if (i != last) {
        loop->heap[i] = loop->heap[last];
        loop->heap[i]->_heap_i = i;
        heap_down(loop, i);
        heap_up(loop, i);
    }
    t->_heap_i = UINT32_MAX;
}

void nb_timer_arm_at(struct nb_loop *loop, struct nb_timer *t, uint64_t due_ms)
{
    nb_timer_cancel(t);
    if (loop->in_timers && due_ms <= loop->now_ms)
        due_ms = loop->now_ms + 1; /* not again in this pass: see run_timers() */
    if (loop->heap_len == loop->heap_cap) {
        uint32_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        struct nb_timer **h = realloc(loop->heap, cap * sizeof *h);
        if (h == NULL)
            abort(); /* a timer that silently never fires is worse than a crash report */
        loop->heap = h;
        loop->heap_cap = cap;
    }
    t->loop = loop;
    t->due_ms = due_ms;
    t->_heap_i = loop->heap_len;
    loop->heap[loop->heap_len++] = t;
    heap_up(loop, t->_heap_i);
}

void nb_timer_arm(struct nb_loop *loop, struct nb_timer *t, uint64_t after_ms)
{
    nb_timer_arm_at(loop, t, nb_now_ms() + after_ms);
}

static void run_timers(struct nb_loop *loop)
{
    /* Timers armed by callbacks for "now" run in the next iteration, not in this loop. */
    uint64_t now = loop->now_ms;
    loop->in_timers = true;
    while (loop->heap_len > 0 && loop->heap[0]->due_ms <= now) {
        struct nb_timer *t = loop->heap[0];
        nb_timer_cancel(t);
        t->cb(t);
    }
    loop->in_timers = false;
}

/* ---- deferred calls ---- */

void nb_defer(struct nb_loop *loop, struct nb_defer *d, nb_defer_fn cb, void *arg)
{
    if (d->_queued)
        return;
    d->cb = cb;
    d->arg = arg;
    d->_next = NULL;
    d->_queued = true;
    if (loop->defer_tail)
        loop->defer_tail->_next = d;
    else
        loop->defer_head = d;
    loop->defer_tail = d;
}

void nb_defer_cancel(struct nb_loop *loop, struct nb_defer *d)
{
    if (!d->_queued)
        return;
    struct nb_defer **pp = &loop->defer_head, *prev = NULL;
    while (*pp && *pp != d) {
        prev = *pp;
        pp = &(*pp)->_next;
    }
    if (*pp == d) {
        *pp = d->_next;
        if (loop->defer_tail == d)
            loop->defer_tail = prev;
    }
    d->_queued = false;
}

/*
 * Runs deferred calls until none is left, including ones queued meanwhile (a close that
 * schedules a free settles in one go), but at most DEFER_BUDGET per call: a call that keeps
 * re-queueing itself cannot keep the loop from polling; the rest runs after the next poll,
 * which does not sleep while calls are queued.
 */
#define DEFER_BUDGET 65536

static void run_defers(struct nb_loop *loop)
{
    for (int n = 0; n < DEFER_BUDGET && loop->defer_head; n++) {
        struct nb_defer *d = loop->defer_head;
        loop->defer_head = d->_next;
        if (loop->defer_head == NULL)
            loop->defer_tail = NULL;
        d->_queued = false;
        d->cb(d);
    }
}

/* ---- running ---- */

int nb_loop_run_once(struct nb_loop *loop, int timeout_ms)
{
    loop->now_ms = nb_now_ms();
    if (loop->defer_head)
        timeout_ms = 0;
    if (loop->heap_len > 0) {
        uint64_t due = loop->heap[0]->due_ms;
        int until = due <= loop->now_ms
                        ? 0
                        : (int)(due - loop->now_ms > 60000 ? 60000 : due - loop->now_ms);
        if (timeout_ms < 0 || until < timeout_ms)
            timeout_ms = until;
    }
    int n = epoll_wait(loop->epfd, loop->events, MAX_EVENTS, timeout_ms);
    if (n < 0) {
        if (errno != EINTR)
            return NB_E_IO;
        n = 0;
    }
    loop->now_ms = nb_now_ms();
    loop->nevents = n;
    for (loop->cur_event = 0; loop->cur_event < n; loop->cur_event++) {
        struct epoll_event *ee = &loop->events[loop->cur_event];
        struct nb_io *io = ee->data.ptr;
        if (io == NULL)
            continue;
        uint32_t ev = 0;
        if (ee->events & (EPOLLIN | EPOLLRDHUP))
            ev |= NB_IO_READ;
        if (ee->events & EPOLLOUT)
            ev |= NB_IO_WRITE;
        if (ee->events & (EPOLLERR | EPOLLHUP))
            ev |= NB_IO_ERROR | (io->events & (NB_IO_READ | NB_IO_WRITE));
        io->cb(io, ev);
        run_defers(loop);
    }
    loop->nevents = 0;
    loop->cur_event = 0;
    run_timers(loop);
    run_defers(loop);
    return NB_OK;
}

int nb_loop_run(struct nb_loop *loop)
{
    loop->stop = false;
    while (!loop->stop) {
        int rc = nb_loop_run_once(loop, -1);
        if (rc != NB_OK)
            return rc;
    }
    return NB_OK;
}

/* ---- signals ---- */

static void on_signalfd(struct nb_io *io, uint32_t events)
{
    struct nb_loop *loop = io->arg;
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof si) == (ssize_t)sizeof si)
        if (loop->sig_cb)
            loop->sig_cb(loop->sig_arg, (int)si.ssi_signo);
}

int nb_loop_watch_signals(struct nb_loop *loop, nb_signal_fn cb, void *arg)
{
    sigset_t set;
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return NB_E_IO;
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return NB_E_IO;
    loop->sig_cb = cb;
    loop->sig_arg = arg;
    if (nb_io_start(loop, &loop->sig_io, fd, NB_IO_READ, on_signalfd, loop) != NB_OK) {
        close(fd);
        return NB_E_IO;
    }
    return NB_OK;
}
