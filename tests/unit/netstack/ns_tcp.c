/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * netstack TCP streams over an in-process wire (tests/unit/netstack/wire.h): connect/accept/echo
 * of several MB, backpressure, half-close both ways, abort, refused connect, graceful close that
 * flushes, interface removal under live streams. Every test ends with all lwIP pools empty.
 * ns_tcp.c is included for the give-up hold (its statics, driven on a pcb the test owns).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "netstack/ns_tcp.c" /* before wire.h: lwIP's byte-order macros first */

#include "wire.h"

#include "platform/addr.h"
#include "platform/bufq.h"
#include "platform/stream.h"

#include <stdio.h>

static struct nb_loop *loop;
static struct wire_port srv_port, cli_port;

static int setup(void **state)
{
    (void)state;
    loop = nb_loop_new();
    assert_non_null(loop);
    assert_int_equal(ns_init(loop), NB_OK);
    wire_init(loop);
    assert_non_null(wire_if(&srv_port, "acct", "10.99.100.1/24", "fd00:99::1/64"));
    assert_non_null(wire_if(&cli_port, "peer", "10.99.100.2/24", "fd00:99::2/64"));
    wire_link(&srv_port, &cli_port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    run_for(20);
    ns_if_free(srv_port.nif);
    ns_if_free(cli_port.nif);
    srv_port.nif = cli_port.nif = NULL;
    run_for(20); /* deferred frees */
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

/* ---- an echo server with backpressure ---- */

struct echo_srv {
    struct nb_listener *l;
    struct nb_stream *s;
    size_t rx;
    bool eof, closed_after_eof;
    const char *err;
    bool paused_by_test;
    int accepts;
};

static void echo_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    struct echo_srv *e = arg;
    e->rx += n;
    assert_int_equal(nb_stream_write(s, d, n), NB_OK);
    if (nb_stream_write_full(s))
        nb_stream_pause(s, true);
}

static void echo_drain(void *arg, struct nb_stream *s)
{
    struct echo_srv *e = arg;
    if (!e->paused_by_test)
        nb_stream_pause(s, false);
}

static void echo_eof(void *arg, struct nb_stream *s)
{
    struct echo_srv *e = arg;
    e->eof = true;
    nb_stream_shutdown(s);
}

static void echo_error(void *arg, struct nb_stream *s, const char *err)
{
    struct echo_srv *e = arg;
    e->err = err;
    nb_stream_close(s, false);
    e->s = NULL;
}

static const struct nb_stream_cbs echo_cbs = {
    .on_data = echo_data,
    .on_eof = echo_eof,
    .on_drain = echo_drain,
    .on_error = echo_error,
};

static void echo_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    struct echo_srv *e = arg;
    e->accepts++;
    e->s = s;
    nb_stream_set_cbs(s, &echo_cbs, e);
}

/* ---- a client that sends a buffer and collects what comes back ---- */

struct client {
    struct nb_stream *s;
    const uint8_t *tx;
    size_t tx_len, tx_off;
    uint8_t *rx;
    size_t rx_len, rx_cap;
    bool connected, eof, shut_after_send;
    const char *conn_err, *err;
    int drains;
};

static void cli_pump(struct client *c)
{
    while (c->tx_off < c->tx_len && !nb_stream_write_full(c->s)) {
        size_t n = c->tx_len - c->tx_off;
        if (n > 8192)
            n = 8192;
        assert_int_equal(nb_stream_write(c->s, c->tx + c->tx_off, n), NB_OK);
        c->tx_off += n;
    }
    if (c->tx_off == c->tx_len && c->shut_after_send) {
        c->shut_after_send = false;
        assert_int_equal(nb_stream_shutdown(c->s), NB_OK);
    }
}

static void cli_connect(void *arg, struct nb_stream *s, const char *err)
{
    struct client *c = arg;
    c->conn_err = err;
    if (err == NULL) {
        c->connected = true;
        cli_pump(c);
    }
}

static void cli_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    struct client *c = arg;
    assert_true(c->rx_len + n <= c->rx_cap);
    memcpy(c->rx + c->rx_len, d, n);
    c->rx_len += n;
}

static void cli_drain(void *arg, struct nb_stream *s)
{
    struct client *c = arg;
    c->drains++;
    cli_pump(c);
}

static void cli_eof(void *arg, struct nb_stream *s)
{
    struct client *c = arg;
    c->eof = true;
}

static void cli_error(void *arg, struct nb_stream *s, const char *err)
{
    struct client *c = arg;
    c->err = err;
}

static const struct nb_stream_cbs cli_cbs = {
    .on_data = cli_data,
    .on_eof = cli_eof,
    .on_drain = cli_drain,
    .on_error = cli_error,
    .on_connect = cli_connect,
};

static bool cli_done(void *arg)
{
    struct client *c = arg;
    return c->eof || c->err || c->conn_err;
}

static bool cli_connected(void *arg)
{
    struct client *c = arg;
    return c->connected || c->conn_err;
}

static void fill_pattern(uint8_t *b, size_t n, uint32_t seed)
{
    uint32_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (uint8_t)(x >> 16);
    }
}

static void echo_roundtrip(const char *srv_ip, const char *any_ip, size_t total)
{
    struct echo_srv e = {0};
    struct sockaddr_storage la = sa_of(any_ip, 7);
    assert_int_equal(ns_tcp_listen(srv_port.nif, (struct sockaddr *)&la, echo_accept, &e, &e.l),
                     NB_OK);
    uint8_t *tx = malloc(total), *rx = malloc(total);
    fill_pattern(tx, total, 7);
    struct client c = {
        .tx = tx, .tx_len = total, .rx = rx, .rx_cap = total, .shut_after_send = true};
    struct sockaddr_storage dst = sa_of(srv_ip, 7);
    assert_int_equal(ns_tcp_connect(cli_port.nif, (struct sockaddr *)&dst, &cli_cbs, &c, &c.s),
                     NB_OK);
    assert_true(run_until(cli_done, &c, 20000));
    assert_null(c.conn_err);
    assert_null(c.err);
    assert_int_equal(c.rx_len, total);
    assert_memory_equal(rx, tx, total);
    assert_true(e.eof);
    assert_int_equal(e.rx, total);

    struct sockaddr_storage l, p;
    assert_int_equal(nb_stream_addrs(c.s, &l, &p), NB_OK);
    assert_int_equal(nb_addr_port((struct sockaddr *)&p), 7);

    nb_stream_close(c.s, false);
    if (e.s)
        nb_stream_close(e.s, false);
    nb_listener_close(e.l);
    run_for(50);
    struct ns_stats st;
    ns_stats(&st);
    assert_int_equal(st.streams, 0);
    assert_int_equal(st.listeners, 0);
    free(tx);
    free(rx);
}

static void test_echo_4mb_v4(void **state)
{
    (void)state;
    echo_roundtrip("10.99.100.1", "0.0.0.0", 4u << 20);
}

static void test_echo_1mb_v6(void **state)
{
    (void)state;
    echo_roundtrip("fd00:99::1", "::", 1u << 20);
}

static bool flag_true(void *arg)
{
    return *(bool *)arg;
}

static bool ptr_set(void *arg)
{
    return *(const void **)arg != NULL;
}

/* Reader paused -> writer's queue passes high water -> on_drain once the reader resumes. */
static void test_backpressure(void **state)
{
    (void)state;
    struct echo_srv e = {0};
    struct sockaddr_storage la = sa_of("10.99.100.1", 9);
    assert_int_equal(ns_tcp_listen(srv_port.nif, (struct sockaddr *)&la, echo_accept, &e, &e.l),
                     NB_OK);
    size_t total = 2u << 20;
    uint8_t *tx = malloc(total), *rx = malloc(total);
    fill_pattern(tx, total, 9);
    struct client c = {.tx = tx, .tx_len = total, .rx = rx, .rx_cap = total};
    struct sockaddr_storage dst = sa_of("10.99.100.1", 9);
    assert_int_equal(ns_tcp_connect(cli_port.nif, (struct sockaddr *)&dst, &cli_cbs, &c, &c.s),
                     NB_OK);
    assert_true(run_until(cli_connected, &c, 5000));
    assert_true(run_until(ptr_set, &e.s, 5000));
    /* Pause the server before it reads anything more. */
    e.paused_by_test = true;
    nb_stream_pause(e.s, true);
    run_for(300);
    size_t rx_paused = e.rx;
    /* The client could not push everything: its queue is at or above high water. */
    assert_true(nb_stream_write_full(c.s));
    assert_true(nb_stream_queued(c.s) > c.s->low_water);
    assert_true(c.tx_off < total);
    int drains_paused = c.drains;
    size_t tx_paused = c.tx_off;
    run_for(200);
    assert_int_equal(e.rx, rx_paused);         /* nothing delivered while paused */
    assert_int_equal(c.drains, drains_paused); /* the window is closed: no progress at all */
    assert_int_equal(c.tx_off, tx_paused);
    /* The paused reader holds a full window (256 KiB) of data, in its own queue: the pbuf
     * pool every account's input shares is not held by it. */
    struct ns_stats st;
    ns_stats(&st);
    assert_true(st.pbuf_pool < 16);
    /* Resume: everything flows, the client sees on_drain and finishes. */
    e.paused_by_test = false;
    nb_stream_pause(e.s, false);
    c.shut_after_send = true;
    assert_true(run_until(cli_done, &c, 20000));
    assert_true(c.drains > drains_paused);
    assert_int_equal(c.rx_len, total);
    assert_memory_equal(rx, tx, total);
    nb_stream_close(c.s, false);
    if (e.s)
        nb_stream_close(e.s, false);
    nb_listener_close(e.l);
    free(tx);
    free(rx);
}

/* ---- half-close both ways, abort, refused ---- */

struct half {
    struct nb_stream *s;
    char rx[64];
    size_t rx_len;
    bool eof;
    const char *err;
    bool connected;
};

static void half_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    struct half *h = arg;
    memcpy(h->rx + h->rx_len, d, n);
    h->rx_len += n;
}

static void half_eof(void *arg, struct nb_stream *s)
{
    ((struct half *)arg)->eof = true;
}

static void half_error(void *arg, struct nb_stream *s, const char *err)
{
    ((struct half *)arg)->err = err;
}

static void half_connect(void *arg, struct nb_stream *s, const char *err)
{
    struct half *h = arg;
    h->err = err;
    h->connected = err == NULL;
}

static const struct nb_stream_cbs half_cbs = {
    .on_data = half_data,
    .on_eof = half_eof,
    .on_error = half_error,
    .on_connect = half_connect,
};

static void half_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    struct half *h = arg;
    h->s = s;
    nb_stream_set_cbs(s, &half_cbs, h);
}

static void open_pair(struct half *srv, struct half *cli, struct nb_listener **l, uint16_t port)
{
    struct sockaddr_storage la = sa_of("0.0.0.0", port);
    assert_int_equal(ns_tcp_listen(srv_port.nif, (struct sockaddr *)&la, half_accept, srv, l),
                     NB_OK);
    struct sockaddr_storage dst = sa_of("10.99.100.1", port);
    assert_int_equal(ns_tcp_connect(cli_port.nif, (struct sockaddr *)&dst, &half_cbs, cli, &cli->s),
                     NB_OK);
    assert_true(run_until(flag_true, &cli->connected, 5000));
    assert_true(run_until(ptr_set, &srv->s, 5000));
}

static void test_half_close_client_first(void **state)
{
    (void)state;
    struct half srv = {0}, cli = {0};
    struct nb_listener *l;
    open_pair(&srv, &cli, &l, 20);
    assert_int_equal(nb_stream_write(cli.s, "ping", 4), NB_OK);
    assert_int_equal(nb_stream_shutdown(cli.s), NB_OK);
    assert_int_equal(nb_stream_write(cli.s, "x", 1), NB_E_CLOSED);
    assert_true(run_until(flag_true, &srv.eof, 5000));
    assert_int_equal(srv.rx_len, 4);
    assert_memory_equal(srv.rx, "ping", 4);
    /* The server can still talk after the client's FIN. */
    assert_int_equal(nb_stream_write(srv.s, "pong", 4), NB_OK);
    run_for(50);
    assert_int_equal(cli.rx_len, 4);
    assert_false(cli.eof);
    assert_int_equal(nb_stream_shutdown(srv.s), NB_OK);
    assert_true(run_until(flag_true, &cli.eof, 5000));
    assert_memory_equal(cli.rx, "pong", 4);
    assert_null(cli.err);
    assert_null(srv.err);
    nb_stream_close(cli.s, false);
    nb_stream_close(srv.s, false);
    nb_listener_close(l);
}

static void test_half_close_server_first(void **state)
{
    (void)state;
    struct half srv = {0}, cli = {0};
    struct nb_listener *l;
    open_pair(&srv, &cli, &l, 21);
    assert_int_equal(nb_stream_write(srv.s, "hello", 5), NB_OK);
    assert_int_equal(nb_stream_shutdown(srv.s), NB_OK);
    assert_true(run_until(flag_true, &cli.eof, 5000));
    assert_int_equal(cli.rx_len, 5);
    assert_int_equal(nb_stream_write(cli.s, "bye", 3), NB_OK);
    assert_int_equal(nb_stream_shutdown(cli.s), NB_OK);
    assert_true(run_until(flag_true, &srv.eof, 5000));
    assert_int_equal(srv.rx_len, 3);
    assert_memory_equal(srv.rx, "bye", 3);
    nb_stream_close(cli.s, false);
    nb_stream_close(srv.s, false);
    nb_listener_close(l);
}

static void test_abort_sends_rst(void **state)
{
    (void)state;
    struct half srv = {0}, cli = {0};
    struct nb_listener *l;
    open_pair(&srv, &cli, &l, 22);
    nb_stream_close(cli.s, true);
    assert_true(run_until(ptr_set, (void *)&srv.err, 5000));
    assert_ptr_equal(srv.err, ns_tcp_err_reset);
    assert_false(srv.eof);
    assert_int_equal(nb_stream_write(srv.s, "x", 1), NB_E_CLOSED);
    nb_stream_close(srv.s, false);
    nb_listener_close(l);
}

static void test_connect_refused(void **state)
{
    (void)state;
    struct half cli = {0};
    struct sockaddr_storage dst = sa_of("10.99.100.1", 4444);
    assert_int_equal(ns_tcp_connect(cli_port.nif, (struct sockaddr *)&dst, &half_cbs, &cli, &cli.s),
                     NB_OK);
    assert_true(run_until(ptr_set, (void *)&cli.err, 5000));
    assert_ptr_equal(cli.err, ns_tcp_err_refused);
    assert_false(cli.connected);
    nb_stream_close(cli.s, false);
}

static void test_connect_bad_args(void **state)
{
    (void)state;
    struct half cli = {0};
    struct nb_stream *s;
    struct sockaddr_storage zero_port = sa_of("10.99.100.1", 0);
    assert_int_equal(
        ns_tcp_connect(cli_port.nif, (struct sockaddr *)&zero_port, &half_cbs, &cli, &s),
        NB_E_INVAL);
    struct ns_stats st;
    ns_stats(&st);
    assert_int_equal(st.streams, 0);
    /* listen: address not ours, port 0, duplicate on the same interface */
    struct nb_listener *l, *l2;
    struct sockaddr_storage other = sa_of("10.99.100.77", 80);
    assert_int_equal(ns_tcp_listen(srv_port.nif, (struct sockaddr *)&other, half_accept, &cli, &l),
                     NB_E_INVAL);
    struct sockaddr_storage a = sa_of("10.99.100.1", 80), any = sa_of("::", 80);
    assert_int_equal(ns_tcp_listen(srv_port.nif, (struct sockaddr *)&a, half_accept, &cli, &l),
                     NB_OK);
    assert_int_equal(ns_tcp_listen(srv_port.nif, (struct sockaddr *)&any, half_accept, &cli, &l2),
                     NB_E_EXISTS);
    nb_listener_close(l);
}

/* close(false) right after a large write: every byte arrives, then EOF. */
struct sink {
    struct nb_stream *s;
    size_t rx;
    bool eof;
};

static void sink_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    ((struct sink *)arg)->rx += n;
}

static void sink_eof(void *arg, struct nb_stream *s)
{
    ((struct sink *)arg)->eof = true;
}

static const struct nb_stream_cbs sink_cbs = {.on_data = sink_data, .on_eof = sink_eof};

static void sink_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    struct sink *k = arg;
    k->s = s;
    nb_stream_set_cbs(s, &sink_cbs, k);
}

static void noop_connect(void *arg, struct nb_stream *s, const char *err)
{
    *(bool *)arg = true;
}

static const struct nb_stream_cbs writer_cbs = {.on_connect = noop_connect};

static void test_graceful_close_flushes(void **state)
{
    (void)state;
    struct sink k = {0};
    struct nb_listener *l;
    struct sockaddr_storage la = sa_of("10.99.100.1", 23);
    assert_int_equal(ns_tcp_listen(srv_port.nif, (struct sockaddr *)&la, sink_accept, &k, &l),
                     NB_OK);
    bool connected = false;
    struct nb_stream *w;
    assert_int_equal(
        ns_tcp_connect(cli_port.nif, (struct sockaddr *)&la, &writer_cbs, &connected, &w), NB_OK);
    /* Written before the handshake completes: all of it waits in the queue. */
    size_t total = 1u << 20;
    uint8_t *buf = malloc(total);
    fill_pattern(buf, total, 3);
    assert_int_equal(nb_stream_write(w, buf, total), NB_OK);
    assert_int_equal(nb_stream_queued(w), total);
    nb_stream_close(w, false);
    assert_true(run_until(flag_true, &k.eof, 20000));
    assert_int_equal(k.rx, total);
    nb_stream_close(k.s, false);
    nb_listener_close(l);
    free(buf);
}

/* Freeing an interface under live streams: owners get on_error(if_gone) and still close. */
static void test_if_free_with_live_streams(void **state)
{
    (void)state;
    struct half srv = {0}, cli = {0};
    struct nb_listener *l;
    open_pair(&srv, &cli, &l, 24);
    ns_if_free(srv_port.nif);
    srv_port.nif = NULL;
    assert_true(run_until(ptr_set, (void *)&srv.err, 1000));
    assert_ptr_equal(srv.err, ns_tcp_err_if_gone);
    assert_int_equal(nb_stream_write(srv.s, "x", 1), NB_E_CLOSED);
    nb_stream_close(srv.s, false);
    nb_listener_close(l);
    nb_stream_close(cli.s, true);
    run_for(20);
    struct ns_stats st;
    ns_stats(&st);
    assert_int_equal(st.streams, 0);
    assert_int_equal(st.listeners, 0);
}

/* A silent peer: lwIP counts timeouts (or zero-window probes) up to TCP_MAXRTX; polls hold the
 * count below it for NS_TCP_GIVEUP_MS, then let lwIP drop the connection. */
static void test_giveup_hold(void **state)
{
    (void)state;
    struct ns_tcp s;
    struct tcp_pcb pcb;
    memset(&s, 0, sizeof s);
    memset(&pcb, 0, sizeof pcb);
    for (int field = 0; field < 2; field++) {
        u8_t *count = field == 0 ? &pcb.nrtx : &pcb.persist_probe;
        unsigned ms = 0;
        for (; ms + POLL_MS < NS_TCP_GIVEUP_MS; ms += POLL_MS) {
            if (*count < TCP_MAXRTX)
                (*count)++; /* lwIP: one more timeout (faster than that, in fact, early on) */
            hold_giveup(&s, &pcb);
            assert_true(*count <= GIVEUP_HOLD); /* lwIP would drop it at TCP_MAXRTX */
        }
        for (int i = 0; i < 10; i++) {
            if (*count < TCP_MAXRTX)
                (*count)++;
            hold_giveup(&s, &pcb);
        }
        assert_int_equal(*count, TCP_MAXRTX); /* past NS_TCP_GIVEUP_MS: lwIP decides */
        *count = 0;                           /* an ACK, or the window opened */
        hold_giveup(&s, &pcb);
        assert_int_equal(s.stuck_ms, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_4mb_v4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_echo_1mb_v6, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_client_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_server_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_sends_rst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_bad_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graceful_close_flushes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_if_free_with_live_streams, setup, teardown),
        cmocka_unit_test(test_giveup_hold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
