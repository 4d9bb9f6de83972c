/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Two tunnels (WireGuard + lwIP) in one process talking over real UDP on loopback: handshake,
 * ICMP-free TCP echo of 1 MiB through the encrypted path, account isolation of the allowed IPs,
 * then teardown with every pool back to zero.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "netstack/ns.h"
#include "netstack/ns_if.h"
#include "netstack/ns_tcp.h"
#include "netstack/tunnel.h"
#include "platform/loop.h"
#include "platform/err.h"
#include "wg/config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct nb_loop *loop;

struct echo {
    struct nb_stream *s;
    size_t rx;
};

static void echo_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    ((struct echo *)arg)->rx += n;
    nb_stream_write(s, d, n);
    if (nb_stream_write_full(s))
        nb_stream_pause(s, true);
}

static void echo_drain(void *arg, struct nb_stream *s)
{
    nb_stream_pause(s, false);
}

static void echo_eof(void *arg, struct nb_stream *s)
{
    nb_stream_shutdown(s);
}

static const struct nb_stream_cbs echo_cbs = {
    .on_data = echo_data, .on_eof = echo_eof, .on_drain = echo_drain};

static void echo_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    struct echo *e = arg;
    e->s = s;
    nb_stream_set_cbs(s, &echo_cbs, e);
}

struct client {
    struct nb_stream *s;
    uint8_t *tx, *rx;
    size_t len, off, rx_len;
    bool eof;
    const char *err;
};

static void cli_pump(struct client *c)
{
    while (c->off < c->len && !nb_stream_write_full(c->s)) {
        size_t n = c->len - c->off > 16384 ? 16384 : c->len - c->off;
        nb_stream_write(c->s, c->tx + c->off, n);
        c->off += n;
    }
    if (c->off == c->len) {
        c->off++; /* once */
        nb_stream_shutdown(c->s);
    }
}

static void cli_connect(void *arg, struct nb_stream *s, const char *err)
{
    struct client *c = arg;
    if (err)
        c->err = err;
    else
        cli_pump(c);
}

static void cli_drain(void *arg, struct nb_stream *s)
{
    cli_pump(arg);
}

static void cli_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    struct client *c = arg;
    assert_true(c->rx_len + n <= c->len);
    memcpy(c->rx + c->rx_len, d, n);
    c->rx_len += n;
}

static void cli_eof(void *arg, struct nb_stream *s)
{
    ((struct client *)arg)->eof = true;
}

static void cli_error(void *arg, struct nb_stream *s, const char *err)
{
    ((struct client *)arg)->err = err;
}

static const struct nb_stream_cbs cli_cbs = {.on_data = cli_data,
                                             .on_eof = cli_eof,
                                             .on_drain = cli_drain,
                                             .on_error = cli_error,
                                             .on_connect = cli_connect};

static struct ns_tunnel *mk_tunnel(const char *tag, const char *addr, wg_key priv)
{
    struct ns_addr a;
    assert_int_equal(ns_addr_parse(addr, &a), NB_OK);
    wg_key_generate(priv);
    struct ns_tunnel_config cfg = {
        .tag = tag, .private_key = priv, .addrs = &a, .n_addrs = 1, .mtu = 1280};
    struct ns_tunnel *t;
    assert_int_equal(ns_tunnel_new(loop, &cfg, &t), NB_OK);
    return t;
}

static void peer_to(struct ns_tunnel *t, const wg_key their_priv, uint16_t their_port,
                    const char *allowed)
{
    struct ns_tunnel_peer p = {0};
    assert_int_equal(wg_pubkey_from_private(p.public_key, their_priv), NB_OK);
    struct sockaddr_in ep = {.sin_family = AF_INET, .sin_port = htons(their_port)};
    inet_pton(AF_INET, "127.0.0.1", &ep.sin_addr);
    p.endpoint = (struct sockaddr *)&ep;
    p.endpoint_len = sizeof ep;
    struct wg_allowedip aip;
    assert_int_equal(wg_allowedip_parse(&aip, allowed), NB_OK);
    p.allowed_ips = &aip;
    p.n_allowed_ips = 1;
    assert_int_equal(ns_tunnel_add_peer(t, &p), NB_OK);
}

static bool cli_done(struct client *c, int max_ms)
{
    uint64_t end = nb_now_ms() + (uint64_t)max_ms;
    while (!c->eof && !c->err && nb_now_ms() < end)
        nb_loop_run_once(loop, 10);
    return c->eof;
}

static void test_tcp_through_wireguard(void **state)
{
    (void)state;
    loop = nb_loop_new();
    assert_int_equal(ns_init(loop), NB_OK);
    wg_key ka, kb;
    struct ns_tunnel *a = mk_tunnel("acct", "10.99.0.1/24", ka);
    struct ns_tunnel *b = mk_tunnel("peer", "10.99.0.2/24", kb);
    peer_to(a, kb, ns_tunnel_port(b), "10.99.0.2/32");
    peer_to(b, ka, ns_tunnel_port(a), "10.99.0.1/32");

    struct echo e = {0};
    struct nb_listener *l;
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons(8080)};
    assert_int_equal(ns_tcp_listen(ns_tunnel_if(a), (struct sockaddr *)&la, echo_accept, &e, &l),
                     NB_OK);

    size_t len = 1u << 20;
    struct client c = {.tx = malloc(len), .rx = malloc(len), .len = len};
    for (size_t i = 0; i < len; i++)
        c.tx[i] = (uint8_t)(i * 131 + (i >> 9));
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(8080)};
    inet_pton(AF_INET, "10.99.0.1", &dst.sin_addr);
    assert_int_equal(ns_tcp_connect(ns_tunnel_if(b), (struct sockaddr *)&dst, &cli_cbs, &c, &c.s),
                     NB_OK);
    assert_true(cli_done(&c, 20000));
    assert_null(c.err);
    assert_int_equal(c.rx_len, len);
    assert_memory_equal(c.rx, c.tx, len);

    struct ns_tunnel_stats sa, sb;
    ns_tunnel_stats(a, &sa);
    ns_tunnel_stats(b, &sb);
    assert_true(sa.wg.rx_handshake_init + sa.wg.rx_handshake_resp >= 1);
    assert_true(sa.udp_rx > 700 && sb.udp_rx > 700); /* 1 MiB each way at MSS 1240 */
    assert_int_equal(sa.nif.in_not_ours + sa.nif.in_invalid, 0);

    nb_stream_close(c.s, false);
    if (e.s)
        nb_stream_close(e.s, false);
    nb_listener_close(l);
    for (int i = 0; i < 10; i++)
        nb_loop_run_once(loop, 5);
    ns_tunnel_free(a);
    ns_tunnel_free(b);
    for (int i = 0; i < 5; i++)
        nb_loop_run_once(loop, 1);
    char why[128];
    bool idle = ns_pools_idle(why, sizeof why);
    if (!idle)
        fprintf(stderr, "pools not idle: %s\n", why);
    assert_true(idle);
    ns_deinit();
    nb_loop_free(loop);
    free(c.tx);
    free(c.rx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_through_wireguard),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
