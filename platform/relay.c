/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Byte relay between two streams. Each direction is a "leg": bytes read from leg.from are
 * written to leg.to. When leg.to's queue reaches its high-water mark, leg.from is paused; the
 * on_drain of leg.to resumes it. So at most high_water bytes per direction are held here.
 */
#include "platform/relay.h"
#include "platform/err.h"
#include "platform/loop.h"
#include "platform/stream.h"

#include <stdlib.h>

#define DEFAULT_IDLE_MS (5u * 60u * 1000u)

struct relay_end {
    struct nb_relay *r;
    struct nb_stream *s;
    bool eof;     /* this side sent FIN */
    bool paused;  /* reads paused because the other side is full */
    uint64_t *rx; /* counter of bytes read from this side */
};

struct nb_relay {
    struct nb_loop *loop;
    struct relay_end client;
    struct relay_end backend;
    struct nb_timer idle;
    struct nb_defer end_defer;
    uint32_t idle_ms;
    uint64_t last_activity_ms;
    struct nb_relay_result res;
    nb_relay_done_fn done;
    void *arg;
    bool ending;
    bool abort_client;  /* reset instead of flushing: the side failed, or the relay was */
    bool abort_backend; /* cancelled / timed out */
};

static uint64_t relays_live;

uint64_t nb_relay_live(void)
{
    return relays_live;
}

static struct relay_end *other(struct relay_end *e)
{
    return e == &e->r->client ? &e->r->backend : &e->r->client;
}

static void relay_finish(struct nb_defer *d)
{
    struct nb_relay *r = d->arg;
    nb_timer_cancel(&r->idle);
    nb_stream_close(r->client.s, r->abort_client);
    nb_stream_close(r->backend.s, r->abort_backend);
    r->res.ended_ms = nb_loop_now_ms(r->loop);
    if (r->done)
        r->done(r->arg, r, &r->res);
    relays_live--;
    free(r);
}

/*
 * Ends the relay from the loop; streams are closed there, never inside their own callback. A
 * side is reset when `abort_*` says so; the other is closed gracefully, so bytes already read
 * from a backend that then failed still reach the client (flush, then FIN, bounded by the
 * stream's close linger).
 */
static void relay_end(struct nb_relay *r, const char *reason, bool abort_client, bool abort_backend)
{
    if (r->ending)
        return;
    r->ending = true;
    r->abort_client = abort_client;
    r->abort_backend = abort_backend;
    r->res.reason = reason;
    /* No more callbacks from either stream. */
    nb_stream_set_cbs(r->client.s, NULL, NULL);
    nb_stream_set_cbs(r->backend.s, NULL, NULL);
    nb_stream_pause(r->client.s, true);
    nb_stream_pause(r->backend.s, true);
    nb_defer(r->loop, &r->end_defer, relay_finish, r);
}

static void on_data(void *arg, struct nb_stream *s, const uint8_t *data, size_t len)
{
    struct relay_end *e = arg;
    struct nb_relay *r = e->r;
    struct relay_end *o = other(e);
    *e->rx += len;
    r->last_activity_ms = nb_loop_now_ms(r->loop);
    int rc = nb_stream_write(o->s, data, len);
    if (rc != NB_OK) {
        relay_end(r, rc == NB_E_NOMEM ? "out of memory" : "write after close", true, true);
        return;
    }
    if (nb_stream_write_full(o->s) && !e->paused) {
        e->paused = true;
        nb_stream_pause(e->s, true);
    }
}

static void on_eof(void *arg, struct nb_stream *s)
{
    struct relay_end *e = arg;
    struct relay_end *o = other(e);
    e->eof = true;
    e->r->last_activity_ms = nb_loop_now_ms(e->r->loop);
    nb_stream_shutdown(o->s);
    if (o->eof)
        relay_end(e->r, NULL, false, false);
}

static void on_drain(void *arg, struct nb_stream *s)
{
    /* `s` (this end) drained: resume reading the other end, which feeds it. */
    struct relay_end *e = arg;
    struct relay_end *o = other(e);
    if (o->paused) {
        o->paused = false;
        nb_stream_pause(o->s, false);
    }
}

static void on_error(void *arg, struct nb_stream *s, const char *err)
{
    /* Only the failed side is reset; the other keeps what it was already given. */
    struct relay_end *e = arg;
    bool client_failed = e == &e->r->client;
    relay_end(e->r, err ? err : "stream error", client_failed, !client_failed);
}

static const struct nb_stream_cbs relay_cbs = {
    .on_data = on_data,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_error = on_error,
};

static void on_idle(struct nb_timer *t)
{
    struct nb_relay *r = t->arg;
    uint64_t now = nb_loop_now_ms(r->loop);
    uint64_t due = r->last_activity_ms + r->idle_ms;
    if (now >= due) {
        relay_end(r, "idle timeout", true, true);
        return;
    }
    nb_timer_arm_at(r->loop, &r->idle, due);
}

int nb_relay_start(struct nb_loop *loop, struct nb_stream *client, struct nb_stream *backend,
                   const struct nb_relay_opts *opts, nb_relay_done_fn done, void *arg,
                   struct nb_relay **out)
{
    struct nb_relay *r = calloc(1, sizeof *r);
    if (r == NULL) {
        nb_stream_close(client, true);
        nb_stream_close(backend, true);
        return NB_E_NOMEM;
    }
    relays_live++;
    r->loop = loop;
    r->done = done;
    r->arg = arg;
    r->idle_ms = opts && opts->idle_timeout_ms ? opts->idle_timeout_ms : DEFAULT_IDLE_MS;
    r->res.started_ms = r->last_activity_ms = nb_loop_now_ms(loop);
    r->client = (struct relay_end){.r = r, .s = client, .rx = &r->res.bytes_up};
    r->backend = (struct relay_end){.r = r, .s = backend, .rx = &r->res.bytes_down};
    nb_stream_set_cbs(client, &relay_cbs, &r->client);
    nb_stream_set_cbs(backend, &relay_cbs, &r->backend);
    nb_stream_pause(client, false);
    nb_stream_pause(backend, false);
    nb_timer_init(&r->idle, on_idle, r);
    nb_timer_arm(loop, &r->idle, r->idle_ms);
    if (out)
        *out = r;
    return NB_OK;
}

void nb_relay_cancel(struct nb_relay *r)
{
    relay_end(r, "cancelled", true, true);
}
