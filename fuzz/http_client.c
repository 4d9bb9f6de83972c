/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target: the upstream client (http/client.c) reading arbitrary backend bytes. A fake
 * dialer hands out streams that connect at once; the input is split into a control header and
 * the backend's byte stream, fed in pieces. The exchange owner pauses, resumes, cancels, sends
 * request bodies and takes upgrades as the control bytes say, and runs several exchanges one
 * after another so pooled connections are reused.
 *
 * Asserts: every exchange ends in exactly one of on_end / on_error (or the owner cancelled it),
 * no callback runs after that, a stream is never used after close and closed once, and nothing
 * leaks (LeakSanitizer).
 */
#include "http/client.h"
#include "platform/arena.h"
#include "platform/err.h"
#include "platform/loop.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct nb_loop *loop;

struct fake {
    struct nb_stream base;
    struct nb_defer d;
    bool closed;
    bool connected;
    struct fake *next;
};

static struct fake *fakes; /* open fakes, newest first */

static void fk_unlink(struct fake *f)
{
    for (struct fake **it = &fakes; *it; it = &(*it)->next)
        if (*it == f) {
            *it = f->next;
            return;
        }
}

static void fk_free(struct nb_defer *d)
{
    free(d->arg);
}

static int fk_write(struct nb_stream *s, const void *b, size_t l)
{
    if (((struct fake *)s)->closed)
        abort();
    return NB_OK;
}

static size_t fk_queued(const struct nb_stream *s)
{
    return 0;
}

static void fk_pause(struct nb_stream *s, bool p)
{
    if (((struct fake *)s)->closed)
        abort();
}

static int fk_shutdown(struct nb_stream *s)
{
    return NB_OK;
}

static void fk_close(struct nb_stream *s, bool abort_)
{
    struct fake *f = (struct fake *)s;
    if (f->closed)
        abort();
    f->closed = true;
    fk_unlink(f);
    nb_defer_cancel(loop, &f->d);
    nb_defer(loop, &f->d, fk_free, f);
}

static int fk_addrs(const struct nb_stream *s, struct sockaddr_storage *l,
                    struct sockaddr_storage *p)
{
    return NB_E_UNSUPPORTED;
}

static const struct nb_stream_vtbl fk_vt = {"fuzz",      fk_write, fk_queued, fk_pause,
                                            fk_shutdown, fk_close, fk_addrs};

static void fk_connect(struct nb_defer *d)
{
    struct fake *f = d->arg;
    f->connected = true;
    if (f->base.cbs && f->base.cbs->on_connect)
        f->base.cbs->on_connect(f->base.arg, &f->base, NULL);
}

static int fk_dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                   void *arg, struct nb_stream **out)
{
    struct fake *f = calloc(1, sizeof *f);
    if (f == NULL)
        return NB_E_NOMEM;
    nb_stream_init(&f->base, &fk_vt, loop);
    nb_stream_set_cbs(&f->base, cbs, arg);
    f->next = fakes;
    fakes = f;
    nb_defer(loop, &f->d, fk_connect, f);
    *out = &f->base;
    return NB_OK;
}

/* ---- the exchange owner ---- */

struct owner {
    struct http_exchange *x;
    uint8_t ctl;
    bool finished;
    bool cancelled;
    unsigned bodies;
};

static void o_done(struct owner *o)
{
    if (o->finished || o->cancelled)
        abort(); /* a second ending, or a callback after cancel */
    o->finished = true;
}

static void o_ready(void *arg, struct http_exchange *x)
{
    struct owner *o = arg;
    if (o->finished || o->cancelled)
        abort();
    if (o->ctl & 1) {
        (void)http_exchange_write(x, "body", 4);
        (void)http_exchange_write_end(x, NULL);
    }
}

static void o_interim(void *arg, struct http_exchange *x, int st, const struct http_hdrs *h)
{
    struct owner *o = arg;
    if (o->finished || o->cancelled)
        abort();
}

static void o_response(void *arg, struct http_exchange *x, const struct http_resp_info *ri)
{
    struct owner *o = arg;
    if (o->finished || o->cancelled || ri->status < 100 || ri->status > 999)
        abort();
    if (ri->status == 101 && (o->ctl & 2)) {
        const uint8_t *left;
        size_t ll;
        struct nb_stream *s = http_exchange_hijack(x, &left, &ll);
        if (s == NULL)
            abort();
        o->finished = true;
        nb_stream_close(s, true);
        return;
    }
    if (o->ctl & 4) {
        http_exchange_cancel(x);
        o->cancelled = true;
    }
}

static void o_body(void *arg, struct http_exchange *x, const uint8_t *d, size_t n)
{
    struct owner *o = arg;
    if (o->finished || o->cancelled || n == 0)
        abort();
    if ((o->ctl & 8) && (o->bodies++ & 1))
        http_exchange_pause(x, true);
}

static void o_end(void *arg, struct http_exchange *x, const struct http_hdrs *tr)
{
    for (uint32_t i = 0; tr && i < tr->n; i++)
        if (tr->v[i].name_len == 0)
            abort(); /* trailer fields always have a name */
    o_done(arg);
}

static void o_error(void *arg, struct http_exchange *x, enum http_xerr k, const char *why, bool got)
{
    o_done(arg);
}

static const struct http_exchange_cbs ocbs = {o_ready, o_interim, o_response, o_body,
                                              o_end,   o_error,   NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (loop == NULL)
        loop = nb_loop_new();
    if (size < 6)
        return 0;
    uint8_t ctl[4];
    memcpy(ctl, data, 4);
    uint8_t sizes = data[4];
    bool head = data[5] & 1;
    data += 6;
    size -= 6;
    struct http_client_opts co = {.max_head = 2048};
    struct http_client *cl = http_client_new(loop, &co);
    struct nb_dialer dl = {fk_dial, NULL};
    struct http_upstream up = {.dialer = &dl, .net = &dl};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80)};
    memcpy(&up.addr, &a, sizeof a);
    struct nb_arena ar;
    nb_arena_init(&ar);
    struct http_hdrs h;
    http_hdrs_init(&h, &ar);
    (void)http_hdrs_add(&h, "Host", 4, "b", 1);
    struct owner owners[4];
    memset(owners, 0, sizeof owners);
    size_t off = 0;
    for (int e = 0; e < 4; e++) {
        struct owner *o = &owners[e];
        o->ctl = ctl[e];
        struct http_out_req rq = {head ? "HEAD" : "GET", head ? 4 : 3, "/", 1, &h,
                                  (o->ctl & 1) ? 4 : 0};
        if (http_exchange_start(cl, &up, &rq, &ocbs, o, &o->x) != NB_OK)
            abort();
        for (int i = 0; i < 3; i++)
            nb_loop_run_once(loop, 0);
        /* Feed this exchange's share of the backend bytes to the newest connected stream. */
        size_t share = size / 4 + (e == 3 ? size % 4 : 0);
        size_t end = off + share;
        unsigned k = 0;
        while (off < end && !o->finished && !o->cancelled) {
            struct fake *f = fakes;
            while (f && !f->connected)
                f = f->next;
            if (f == NULL || f->base.cbs == NULL || f->base.cbs->on_data == NULL)
                break;
            size_t piece = 1 + (size_t)((sizes >> (k++ % 8)) & 0x1f) * 7;
            if (piece > end - off)
                piece = end - off;
            f->base.cbs->on_data(f->base.arg, &f->base, data + off, piece);
            off += piece;
            if (!o->finished && !o->cancelled && (o->ctl & 8))
                http_exchange_pause(o->x, false);
            nb_loop_run_once(loop, 0);
        }
        off = end;
        if (!o->finished && !o->cancelled && (o->ctl & 16)) {
            /* The backend closes. */
            struct fake *f = fakes;
            while (f && !f->connected)
                f = f->next;
            if (f && f->base.cbs && f->base.cbs->on_eof)
                f->base.cbs->on_eof(f->base.arg, &f->base);
            nb_loop_run_once(loop, 0);
        }
        if (!o->finished && !o->cancelled) {
            http_exchange_cancel(o->x);
            o->cancelled = true;
        }
        nb_loop_run_once(loop, 0);
    }
    http_client_free(cl);
    for (int i = 0; i < 4; i++)
        nb_loop_run_once(loop, 0);
    if (fakes != NULL)
        abort(); /* a connection outlived its client */
    nb_arena_deinit(&ar);
    return 0;
}
