/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target: the whole HTTP/1.1 server state machine (http/server.c) fed arbitrary bytes
 * through a fake stream, in pieces whose sizes come from the input, with a handler whose
 * behaviour (answer at once, read the body first, stream a chunked answer, pause and resume the
 * body, answer early, hijack an upgrade, abort) is chosen by the input too. The fake stream
 * reports "queue full" now and then, to exercise backpressure.
 *
 * Asserts: the stream is closed exactly once and never used after close, no callback reaches
 * the handler after it ended its request, every request the handler received ended (or was
 * aborted by the server), and nothing leaks (LeakSanitizer).
 */
#include "fuzz/fake_stream.h"
#include "http/server.h"
#include "platform/err.h"
#include "platform/loop.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct nb_loop *loop;

/* ---- the handler ---- */

enum {
    A_SIMPLE, /* answer at once */
    A_ECHO,   /* read the body, answer at its end */
    A_STREAM, /* chunked answer in pieces, then read the body */
    A_PAUSE,  /* read the body, pausing after each piece and resuming from the loop */
    A_HIJACK, /* 101 + hijack when it is an upgrade, else like A_SIMPLE */
    A_ABORT,  /* abort the exchange */
    A_COUNT,
};

struct hreq {
    struct http_req *req;
    int action;
    bool ended;
    struct nb_defer resume;
    struct hreq *next;
};

static struct hreq *reqs;
static uint8_t actions[16];
static unsigned n_req;

static void h_end(struct hreq *h)
{
    if (h->ended)
        abort();
    h->ended = true;
}

static void resume_cb(struct nb_defer *d)
{
    struct hreq *h = d->arg;
    if (!h->ended)
        http_req_pause_body(h->req, false);
}

static void on_body(void *arg, struct http_req *r, const uint8_t *d, size_t n)
{
    struct hreq *h = arg;
    if (h->ended)
        abort(); /* a callback after the request ended */
    if (h->action == A_PAUSE) {
        http_req_pause_body(r, true);
        nb_defer(loop, &h->resume, resume_cb, h);
    }
}

static void on_body_end(void *arg, struct http_req *r)
{
    struct hreq *h = arg;
    if (h->ended)
        abort();
    if (h->action == A_STREAM) {
        http_resp_end(r);
        h_end(h);
        return;
    }
    (void)http_resp_simple(r, 200, "text/plain", NULL, "done", 4);
    h_end(h);
}

static void on_drain(void *arg, struct http_req *r)
{
    if (((struct hreq *)arg)->ended)
        abort();
}

static void on_abort(void *arg, struct http_req *r, const char *why)
{
    struct hreq *h = arg;
    if (h->ended)
        abort(); /* aborted after the handler ended it */
    h->ended = true;
}

static const struct http_req_cbs cbs = {on_body, on_body_end, on_drain, on_abort};

static void on_request(void *arg, struct http_req *r)
{
    struct hreq *h = calloc(1, sizeof *h);
    if (h == NULL)
        abort();
    h->req = r;
    h->action = actions[n_req++ % sizeof actions] % A_COUNT;
    h->next = reqs;
    reqs = h;
    http_req_set_cbs(r, &cbs, h);
    switch (h->action) {
    case A_SIMPLE:
        (void)http_resp_simple(r, 204, NULL, NULL, NULL, 0);
        h_end(h);
        return;
    case A_ECHO:
    case A_PAUSE:
        http_req_read_body(r);
        return;
    case A_STREAM:
        if (http_resp_head(r, 200, NULL, -1) == NB_OK) {
            (void)http_resp_body(r, "a", 1);
            (void)http_resp_body(r, "bc", 2);
        }
        http_req_read_body(r);
        return;
    case A_HIJACK:
        if (r->upgrade && http_resp_head(r, 101, NULL, -1) == NB_OK) {
            const uint8_t *left;
            size_t ll;
            struct nb_stream *s = http_req_hijack(r, &left, &ll);
            h_end(h);
            if (s == NULL)
                abort(); /* a 101 was written: hijacking must work */
            nb_stream_close(s, true);
            return;
        }
        (void)http_resp_simple(r, 200, "text/plain", NULL, "x", 1);
        h_end(h);
        return;
    default:
        http_resp_abort(r);
        h_end(h);
        return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (loop == NULL)
        loop = nb_loop_new();
    if (size < 18)
        return 0;
    memcpy(actions, data, sizeof actions);
    uint8_t sizes = data[16], fullness = data[17];
    data += 18;
    size -= 18;
    n_req = 0;
    struct http_server_opts o = {.max_head = 4096, .max_headers = 16};
    struct http_handler hd = {on_request, NULL};
    struct http_server *srv = http_server_new(loop, &o, &hd);
    struct fuzz_conn *f = fuzz_conn_new(loop);
    struct http_conn_info info = {0};
    if (http_server_accept(srv, &f->base, &info) != NB_OK)
        abort();
    /* Feed the input in pieces; the piece size cycles through a pattern from the input. */
    size_t off = 0;
    unsigned k = 0, stalled = 0;
    while (off < size && fuzz_live && !f->closed && stalled < 8) {
        size_t piece = 1 + (size_t)((sizes >> (k % 8)) & 0x3f) * (1 + k % 3);
        if (piece > size - off)
            piece = size - off;
        f->full = (fullness >> (k % 8)) & 1;
        if (!f->paused && f->base.cbs && f->base.cbs->on_data) {
            f->base.cbs->on_data(f->base.arg, &f->base, data + off, piece);
            off += piece;
            stalled = 0;
        } else {
            stalled++; /* paused: the server waits for its handler, give it turns */
        }
        if (!f->full && !f->closed)
            nb_stream__check_drain(&f->base);
        nb_loop_run_once(loop, 0);
        k++;
    }
    if (fuzz_live && !f->closed && f->base.cbs && f->base.cbs->on_eof)
        f->base.cbs->on_eof(f->base.arg, &f->base);
    for (int i = 0; i < 4; i++)
        nb_loop_run_once(loop, 0);
    /* Requests still owned by the handler: end them, as a handler finishing late would. */
    for (struct hreq *h = reqs; h; h = h->next)
        if (!h->ended) {
            http_resp_abort(h->req);
            h->ended = true;
        }
    for (int i = 0; i < 4; i++)
        nb_loop_run_once(loop, 0);
    http_server_free(srv);
    for (int i = 0; i < 4; i++)
        nb_loop_run_once(loop, 0);
    while (reqs) {
        struct hreq *h = reqs;
        reqs = h->next;
        nb_defer_cancel(loop, &h->resume);
        free(h);
    }
    return 0;
}
