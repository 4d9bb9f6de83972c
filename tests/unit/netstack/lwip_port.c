/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * lwip_port.c's NewReno over an in-process wire (wire.h) that loses chosen segments: a window
 * that lost a run of segments (as a peer's full socket buffer drops them) gets exactly one
 * retransmission per hole, one per partial ACK, where lwIP's Reno alone waits for the
 * retransmission timer and then resends the whole window. No loss, no retransmission; one hole,
 * lwIP's own fast retransmit and nothing else.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "netstack/lwip_hooks.h" /* before wire.h: lwIP's byte-order macros first */

#include "wire.h"

#include "platform/stream.h"

#include <stdio.h>

static struct nb_loop *loop;
static struct wire_port srv_port, cli_port;

/* What the client's output saw: data segments in order of first transmission, drops, flags. */
static struct {
    uint32_t next_seq; /* end of the highest data sent so far */
    bool started;
    unsigned segs;    /* data segments sent for the first time */
    unsigned drop[4]; /* numbers (1-based) of first transmissions to lose */
    unsigned dropped;
    unsigned rexmits;       /* data segments below the highest sequence sent so far */
    unsigned flagged;       /* ... of them with ns__tcp_tx_rexmit set */
    unsigned flagged_fresh; /* first transmissions with the flag set (must stay 0) */
} lossy;

static int lossy_output(void *ctx, uint8_t *pkt, size_t len)
{
    if (len >= 40 && (pkt[0] >> 4) == 4 && pkt[9] == 6) {
        size_t ihl = (size_t)(pkt[0] & 15) * 4;
        const uint8_t *th = pkt + ihl;
        size_t doff = (size_t)(th[12] >> 4) * 4;
        size_t data = len - ihl - doff;
        uint32_t seq = (uint32_t)th[4] << 24 | (uint32_t)th[5] << 16 | (uint32_t)th[6] << 8 | th[7];
        if (data > 0) {
            if (!lossy.started) {
                lossy.started = true;
                lossy.next_seq = seq;
            }
            if ((int32_t)(seq - lossy.next_seq) < 0) {
                lossy.rexmits++;
            } else {
                lossy.next_seq = seq + (uint32_t)data;
                lossy.segs++;
                for (unsigned i = 0; i < 4; i++)
                    if (lossy.drop[i] == lossy.segs) {
                        lossy.dropped++;
                        return NB_OK; /* lost on the way: lwIP does not know */
                    }
            }
        }
    }
    return wire_output(ctx, pkt, len);
}

static int setup(void **state)
{
    loop = nb_loop_new();
    assert_non_null(loop);
    assert_int_equal(ns_init(loop), NB_OK);
    wire_init(loop);
    assert_non_null(wire_if(&srv_port, "acct", "10.99.100.1/24", NULL));
    /* the client's interface: like wire_if, with the lossy output */
    struct ns_addr a;
    assert_int_equal(ns_addr_parse("10.99.100.2/24", &a), NB_OK);
    memset(&cli_port, 0, sizeof cli_port);
    struct ns_if_config cfg = {.tag = "peer",
                               .mtu = 1280,
                               .addrs = &a,
                               .n_addrs = 1,
                               .output = lossy_output,
                               .output_ctx = &cli_port};
    assert_int_equal(ns_if_new(&cfg, &cli_port.nif), NB_OK);
    wire_link(&srv_port, &cli_port);
    memset(&lossy, 0, sizeof lossy);
    return 0;
}

static int teardown(void **state)
{
    run_for(20);
    ns_if_free(srv_port.nif);
    ns_if_free(cli_port.nif);
    srv_port.nif = cli_port.nif = NULL;
    run_for(20);
    char why[128];
    bool idle = ns_pools_idle(why, sizeof why);
    if (!idle)
        fprintf(stderr, "pools not idle: %s\n", why);
    wire_deinit();
    ns_deinit();
    nb_loop_free(loop);
    assert_true(idle);
    return 0;
}

/* ---- a server that counts what it receives, a client that sends a buffer ---- */

struct sink {
    struct nb_listener *l;
    struct nb_stream *s;
    size_t rx;
    uint32_t sum;
    bool eof;
};

static void sink_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    struct sink *k = arg;
    for (size_t i = 0; i < n; i++)
        k->sum = k->sum * 31u + d[i];
    k->rx += n;
}

static void sink_eof(void *arg, struct nb_stream *s)
{
    ((struct sink *)arg)->eof = true;
    nb_stream_shutdown(s);
}

static const struct nb_stream_cbs sink_cbs = {.on_data = sink_data, .on_eof = sink_eof};

static void sink_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    struct sink *k = arg;
    k->s = s;
    nb_stream_set_cbs(s, &sink_cbs, k);
}

struct sender {
    struct nb_stream *s;
    const uint8_t *buf;
    size_t len, off;
    bool shut;
    const char *err;
};

static void snd_pump(struct sender *c)
{
    while (c->off < c->len && !nb_stream_write_full(c->s)) {
        size_t n = c->len - c->off > 16384 ? 16384 : c->len - c->off;
        assert_int_equal(nb_stream_write(c->s, c->buf + c->off, n), NB_OK);
        c->off += n;
    }
    if (c->off == c->len && !c->shut) {
        c->shut = true;
        nb_stream_shutdown(c->s);
    }
}

static void snd_connect(void *arg, struct nb_stream *s, const char *err)
{
    struct sender *c = arg;
    c->err = err;
    if (err == NULL)
        snd_pump(c);
}

static void snd_drain(void *arg, struct nb_stream *s)
{
    snd_pump(arg);
}

static void snd_error(void *arg, struct nb_stream *s, const char *err)
{
    ((struct sender *)arg)->err = err;
}

static const struct nb_stream_cbs snd_cbs = {
    .on_connect = snd_connect, .on_drain = snd_drain, .on_error = snd_error};

static bool sink_done(void *arg)
{
    return ((struct sink *)arg)->eof;
}

/* Sends len bytes client -> server, losing the first transmissions listed in lossy.drop. */
static void transfer(size_t len)
{
    struct sink k = {0};
    struct sockaddr_storage la = sa_of("0.0.0.0", 9);
    assert_int_equal(ns_tcp_listen(srv_port.nif, (struct sockaddr *)&la, sink_accept, &k, &k.l),
                     NB_OK);
    uint8_t *buf = malloc(len);
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i * 7 + (i >> 11));
        sum = sum * 31u + buf[i];
    }
    struct sender c = {.buf = buf, .len = len};
    struct sockaddr_storage dst = sa_of("10.99.100.1", 9);
    assert_int_equal(ns_tcp_connect(cli_port.nif, (struct sockaddr *)&dst, &snd_cbs, &c, &c.s),
                     NB_OK);
    assert_true(run_until(sink_done, &k, 20000));
    assert_null(c.err);
    assert_int_equal(k.rx, len);
    assert_int_equal(k.sum, sum);
    nb_stream_close(c.s, false);
    if (k.s)
        nb_stream_close(k.s, false);
    nb_listener_close(k.l);
    free(buf);
}

static void test_no_loss_no_flag(void **state)
{
    transfer(256u << 10);
    assert_true(lossy.segs >= (256u << 10) / 1240u);
    assert_int_equal(lossy.rexmits, 0);
}

static void test_one_hole_fast_retransmit(void **state)
{
    uint64_t nr = ns__tcp_nr_rexmits;
    lossy.drop[0] = 30;
    transfer(512u << 10);
    assert_int_equal(lossy.dropped, 1);
    assert_int_equal(lossy.rexmits, 1);       /* lwIP's fast retransmit, nothing else */
    assert_int_equal(ns__tcp_nr_rexmits, nr); /* one hole: no partial ACK */
}

static void test_three_holes_newreno(void **state)
{
    uint64_t nr = ns__tcp_nr_rexmits;
    /* A run of three, like a full socket buffer drops. Early in the transfer, while fewer than
     * 64 segments are in flight: the receiving lwIP keeps at most TCP_OOSEQ_MAX_PBUFS (64)
     * out-of-order segments and would drop more itself. */
    lossy.drop[0] = 30;
    lossy.drop[1] = 31;
    lossy.drop[2] = 32;
    transfer(512u << 10);
    assert_int_equal(lossy.dropped, 3);
    /* One retransmission per hole: lwIP's fast retransmit for the first, NewReno for the two
     * partial ACKs. Reno alone would stall until the timeout and resend the whole window. */
    assert_int_equal(lossy.rexmits, 3);
    assert_int_equal(ns__tcp_nr_rexmits, nr + 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_loss_no_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_hole_fast_retransmit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_three_holes_newreno, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
