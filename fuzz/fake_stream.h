/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_FUZZ_FAKE_STREAM_H
#define NB_FUZZ_FAKE_STREAM_H

/*
 * The accepted connection the server fuzz targets (http_server.c, http_h2_server.c) feed: an
 * nb_stream that swallows what the server writes, reports "queue full" when the target sets
 * .full, records pauses, and aborts the process on any use after close or a second close. A
 * header (not a .c) because every .c file in fuzz/ is a target of its own. Freed from a deferred
 * call, like a real stream; fuzz_live is the connection until then.
 */
#include "platform/err.h"
#include "platform/loop.h"
#include "platform/stream.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct fuzz_conn {
    struct nb_stream base;
    struct nb_defer free_d;
    bool closed;
    bool paused;
    bool full;
};

static struct fuzz_conn *fuzz_live;

static void fuzz_conn_free(struct nb_defer *d)
{
    if (d->arg == fuzz_live)
        fuzz_live = NULL;
    free(d->arg);
}

static int fuzz_conn_write(struct nb_stream *s, const void *buf, size_t len)
{
    (void)buf;
    (void)len;
    if (((struct fuzz_conn *)s)->closed)
        abort(); /* written after close */
    return NB_OK;
}

static size_t fuzz_conn_queued(const struct nb_stream *s)
{
    return ((const struct fuzz_conn *)s)->full ? NB_STREAM_HIGH_WATER : 0;
}

static void fuzz_conn_pause(struct nb_stream *s, bool p)
{
    struct fuzz_conn *f = (struct fuzz_conn *)s;
    if (f->closed)
        abort();
    f->paused = p;
}

static int fuzz_conn_shutdown(struct nb_stream *s)
{
    (void)s;
    return NB_OK;
}

static void fuzz_conn_close(struct nb_stream *s, bool abort_)
{
    (void)abort_;
    struct fuzz_conn *f = (struct fuzz_conn *)s;
    if (f->closed)
        abort(); /* closed twice */
    f->closed = true;
    nb_defer(s->loop, &f->free_d, fuzz_conn_free, f);
}

static int fuzz_conn_addrs(const struct nb_stream *s, struct sockaddr_storage *l,
                           struct sockaddr_storage *p)
{
    (void)s;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(40000)};
    a.sin_addr.s_addr = htonl(0x7f000001);
    if (l)
        memcpy(l, &a, sizeof a);
    if (p)
        memcpy(p, &a, sizeof a);
    return NB_OK;
}

static const struct nb_stream_vtbl fuzz_conn_vt = {
    "fuzz",          fuzz_conn_write, fuzz_conn_queued, fuzz_conn_pause, fuzz_conn_shutdown,
    fuzz_conn_close, fuzz_conn_addrs};

/* A new connection (it becomes fuzz_live); aborts when out of memory. */
static struct fuzz_conn *fuzz_conn_new(struct nb_loop *loop)
{
    struct fuzz_conn *f = calloc(1, sizeof *f);
    if (f == NULL)
        abort();
    nb_stream_init(&f->base, &fuzz_conn_vt, loop);
    fuzz_live = f;
    return f;
}

#endif
