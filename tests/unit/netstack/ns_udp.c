/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ns_udp: UDP flows through tunnel interfaces. The "peer" side is this test: it reads the
 * datagrams an interface sends (the wire port records them) and injects hand-built replies with
 * ns_if_input. Two accounts carry the same addresses: a datagram for one account's flow must
 * never reach the other's, even when it names the other flow's port.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "netstack/ns_udp.h"
#include "wire.h"

#include <stdio.h>

static struct nb_loop *loop;
static struct wire_port pa, pb; /* accounts A and B, same addresses, output recorded only */

struct sink {
    int n;
    size_t len;
    uint8_t data[2048];
    struct ns_udp *close_me; /* closed from inside on_recv when set */
};

static void on_recv(void *arg, struct ns_udp *u, const uint8_t *data, size_t len)
{
    struct sink *s = arg;
    s->n++;
    s->len = len;
    memcpy(s->data, data, len < sizeof s->data ? len : sizeof s->data);
    if (s->close_me == u) {
        ns_udp_close(u);
        s->close_me = NULL;
    }
}

static int setup(void **state)
{
    (void)state;
    loop = nb_loop_new();
    assert_non_null(loop);
    assert_int_equal(ns_init(loop), NB_OK);
    wire_init(loop);
    assert_non_null(wire_if(&pa, "acct-a", "10.99.60.1/24", "fd00:60::1/64"));
    assert_non_null(wire_if(&pb, "acct-b", "10.99.60.1/24", "fd00:60::1/64"));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    run_for(10);
    ns_if_free(pa.nif);
    ns_if_free(pb.nif);
    run_for(10);
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

/* An IPv4 UDP datagram src:sport -> dst:dport (checksum 0: none). Returns its length. */
static size_t udp4(uint8_t *pkt, const char *src, uint16_t sport, const char *dst, uint16_t dport,
                   const void *payload, size_t plen)
{
    ip4_hdr(pkt, 17, src, dst, 8 + plen);
    uint8_t *u = pkt + 20;
    u[0] = (uint8_t)(sport >> 8), u[1] = (uint8_t)sport;
    u[2] = (uint8_t)(dport >> 8), u[3] = (uint8_t)dport;
    u[4] = (uint8_t)((8 + plen) >> 8), u[5] = (uint8_t)(8 + plen);
    u[6] = u[7] = 0;
    memcpy(u + 8, payload, plen);
    return 28 + plen;
}

/* An IPv6 UDP datagram with its (mandatory) checksum. */
static size_t udp6(uint8_t *pkt, const char *src, uint16_t sport, const char *dst, uint16_t dport,
                   const void *payload, size_t plen)
{
    size_t ulen = 8 + plen;
    memset(pkt, 0, 48);
    pkt[0] = 0x60;
    pkt[4] = (uint8_t)(ulen >> 8), pkt[5] = (uint8_t)ulen;
    pkt[6] = 17;
    pkt[7] = 64;
    inet_pton(AF_INET6, src, pkt + 8);
    inet_pton(AF_INET6, dst, pkt + 24);
    uint8_t *u = pkt + 40;
    u[0] = (uint8_t)(sport >> 8), u[1] = (uint8_t)sport;
    u[2] = (uint8_t)(dport >> 8), u[3] = (uint8_t)dport;
    u[4] = (uint8_t)(ulen >> 8), u[5] = (uint8_t)ulen;
    memcpy(u + 8, payload, plen);
    uint8_t ph[8] = {0, 0, (uint8_t)(ulen >> 8), (uint8_t)ulen, 0, 0, 0, 17};
    uint32_t s = csum_add(0, pkt + 8, 32);
    s = csum_add(s, ph, 8);
    s = csum_add(s, u, ulen);
    uint16_t c = csum_fold(s);
    if (c == 0)
        c = 0xffff;
    u[6] = (uint8_t)(c >> 8), u[7] = (uint8_t)c;
    return 40 + ulen;
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void test_send_recv_v4(void **state)
{
    (void)state;
    struct sink s = {0};
    struct sockaddr_storage dst = sa_of("10.99.60.2", 7000);
    struct ns_udp *u = NULL;
    assert_int_equal(ns_udp_open(pa.nif, (struct sockaddr *)&dst, on_recv, &s, &u), NB_OK);
    struct ns_if_stats is;
    ns_if_stats(pa.nif, &is);
    assert_true(is.attached);
    assert_int_equal(is.udp_flows, 1);
    uint64_t out = pa.out_count;
    assert_int_equal(ns_udp_send(u, "hello", 5), NB_OK);
    assert_int_equal(pa.out_count, out + 1);
    /* What the tunnel carries: IPv4/UDP from our address to 10.99.60.2:7000, "hello". */
    assert_int_equal(pa.last_len, 33);
    assert_int_equal(pa.last[9], 17);
    uint8_t ip[4];
    inet_pton(AF_INET, "10.99.60.1", ip);
    assert_memory_equal(pa.last + 12, ip, 4);
    assert_int_equal(be16(pa.last + 22), 7000);
    assert_memory_equal(pa.last + 28, "hello", 5);
    uint16_t lport = be16(pa.last + 20);
    assert_true(lport >= 0xc000);
    struct sockaddr_storage la, ra;
    ns_udp_addrs(u, &la, &ra);
    assert_int_equal(ntohs(((struct sockaddr_in *)&la)->sin_port), lport);

    /* The reply comes back to on_recv. */
    uint8_t pkt[256];
    size_t n = udp4(pkt, "10.99.60.2", 7000, "10.99.60.1", lport, "world!", 6);
    assert_int_equal(ns_if_input(pa.nif, pkt, n), NB_OK);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.len, 6);
    assert_memory_equal(s.data, "world!", 6);
    /* An empty datagram is a datagram. */
    n = udp4(pkt, "10.99.60.2", 7000, "10.99.60.1", lport, "", 0);
    assert_int_equal(ns_if_input(pa.nif, pkt, n), NB_OK);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.len, 0);
    /* From another source port or address: not this flow's (ICMP port unreachable instead). */
    out = pa.out_count;
    n = udp4(pkt, "10.99.60.2", 7001, "10.99.60.1", lport, "x", 1);
    assert_int_equal(ns_if_input(pa.nif, pkt, n), NB_OK);
    n = udp4(pkt, "10.99.60.3", 7000, "10.99.60.1", lport, "x", 1);
    assert_int_equal(ns_if_input(pa.nif, pkt, n), NB_OK);
    assert_int_equal(s.n, 2);
    assert_int_equal(pa.out_count, out + 2);
    assert_int_equal(pa.last[9], 1);  /* ICMP */
    assert_int_equal(pa.last[20], 3); /* unreachable */
    assert_int_equal(pa.last[21], 3); /* port */
    struct ns_udp_stats us;
    ns_udp_stats(u, &us);
    assert_int_equal(us.tx_packets, 1);
    assert_int_equal(us.tx_bytes, 5);
    assert_int_equal(us.rx_packets, 2);
    assert_int_equal(us.rx_bytes, 6);
    ns_udp_close(u);
    /* Closed: the port is unreachable again and nothing is delivered. */
    n = udp4(pkt, "10.99.60.2", 7000, "10.99.60.1", lport, "late", 4);
    assert_int_equal(ns_if_input(pa.nif, pkt, n), NB_OK);
    assert_int_equal(s.n, 2);
    run_for(5);
}

/* Account B's interface has the same addresses; its flows and A's never see each other's data. */
static void test_isolation(void **state)
{
    (void)state;
    struct sink sa = {0}, sb = {0};
    struct sockaddr_storage dst = sa_of("10.99.60.2", 7000);
    struct ns_udp *ua = NULL, *ub = NULL;
    assert_int_equal(ns_udp_open(pa.nif, (struct sockaddr *)&dst, on_recv, &sa, &ua), NB_OK);
    assert_int_equal(ns_udp_open(pb.nif, (struct sockaddr *)&dst, on_recv, &sb, &ub), NB_OK);
    uint64_t a_out = pa.out_count, b_out = pb.out_count;
    assert_int_equal(ns_udp_send(ua, "from-a", 6), NB_OK);
    uint16_t pa_port = be16(pa.last + 20);
    assert_int_equal(ns_udp_send(ub, "from-b", 6), NB_OK);
    uint16_t pb_port = be16(pb.last + 20);
    /* Each datagram left through its own account's interface only. */
    assert_int_equal(pa.out_count, a_out + 1);
    assert_int_equal(pb.out_count, b_out + 1);
    assert_memory_equal(pa.last + 28, "from-a", 6);
    assert_memory_equal(pb.last + 28, "from-b", 6);
    assert_int_not_equal(pa_port, pb_port);

    uint8_t pkt[256];
    /* B's network sends to A's flow port: lwIP would match A's pcb by addresses and ports, the
     * netif binding keeps it out. B answers with port unreachable; A sees nothing. */
    a_out = pa.out_count;
    b_out = pb.out_count;
    size_t n = udp4(pkt, "10.99.60.2", 7000, "10.99.60.1", pa_port, "intruder", 8);
    assert_int_equal(ns_if_input(pb.nif, pkt, n), NB_OK);
    assert_int_equal(sa.n, 0);
    assert_int_equal(sb.n, 0);
    assert_int_equal(pa.out_count, a_out);
    assert_int_equal(pb.out_count, b_out + 1);
    assert_int_equal(pb.last[21], 3);
    /* And the other way round. */
    n = udp4(pkt, "10.99.60.2", 7000, "10.99.60.1", pb_port, "intruder", 8);
    assert_int_equal(ns_if_input(pa.nif, pkt, n), NB_OK);
    assert_int_equal(sa.n, 0);
    assert_int_equal(sb.n, 0);
    /* Each account's own reply reaches its own flow. */
    n = udp4(pkt, "10.99.60.2", 7000, "10.99.60.1", pb_port, "to-b", 4);
    assert_int_equal(ns_if_input(pb.nif, pkt, n), NB_OK);
    n = udp4(pkt, "10.99.60.2", 7000, "10.99.60.1", pa_port, "to-a", 4);
    assert_int_equal(ns_if_input(pa.nif, pkt, n), NB_OK);
    assert_int_equal(sa.n, 1);
    assert_int_equal(sb.n, 1);
    assert_memory_equal(sa.data, "to-a", 4);
    assert_memory_equal(sb.data, "to-b", 4);
    /* Closing from inside on_recv is allowed. */
    sa.close_me = ua;
    n = udp4(pkt, "10.99.60.2", 7000, "10.99.60.1", pa_port, "bye", 3);
    assert_int_equal(ns_if_input(pa.nif, pkt, n), NB_OK);
    assert_int_equal(sa.n, 2);
    assert_null(sa.close_me);
    ns_udp_close(ub);
    run_for(5);
}

static void test_v6_and_limits(void **state)
{
    (void)state;
    struct sink s = {0};
    struct sockaddr_storage dst = sa_of("fd00:60::2", 5353);
    struct ns_udp *u = NULL;
    assert_int_equal(ns_udp_open(pa.nif, (struct sockaddr *)&dst, on_recv, &s, &u), NB_OK);
    assert_int_equal(ns_udp_send(u, "v6", 2), NB_OK);
    assert_int_equal(pa.last[0] >> 4, 6);
    assert_int_equal(pa.last[6], 17);
    uint16_t lport = be16(pa.last + 40);
    uint8_t pkt[256];
    size_t n = udp6(pkt, "fd00:60::2", 5353, "fd00:60::1", lport, "six", 3);
    assert_int_equal(ns_if_input(pa.nif, pkt, n), NB_OK);
    assert_int_equal(s.n, 1);
    assert_memory_equal(s.data, "six", 3);
    /* A bad checksum is dropped by lwIP. */
    pkt[46] ^= 0x55;
    assert_int_equal(ns_if_input(pa.nif, pkt, n), NB_OK);
    assert_int_equal(s.n, 1);
    /* Too large for UDP over IPv6. */
    static uint8_t big[NS_UDP_MAX_PAYLOAD_V6 + 1];
    assert_int_equal(ns_udp_send(u, big, sizeof big), NB_E_INVAL);
    ns_udp_close(u);

    /* Bad destinations. */
    struct sockaddr_storage bad = sa_of("10.99.60.2", 0);
    assert_int_equal(ns_udp_open(pa.nif, (struct sockaddr *)&bad, on_recv, &s, &u), NB_E_INVAL);
    bad = sa_of("0.0.0.0", 53);
    assert_int_equal(ns_udp_open(pa.nif, (struct sockaddr *)&bad, on_recv, &s, &u), NB_E_INVAL);
    run_for(5);
}

/* Larger than the MTU: lwIP fragments on output (the peer reassembles); incoming fragments are
 * dropped before lwIP (no reassembly: lwipopts.h), so such replies never arrive. */
static void test_fragments(void **state)
{
    (void)state;
    struct sink s = {0};
    struct sockaddr_storage dst = sa_of("10.99.60.2", 7000);
    struct ns_udp *u = NULL;
    assert_int_equal(ns_udp_open(pa.nif, (struct sockaddr *)&dst, on_recv, &s, &u), NB_OK);
    static uint8_t big[3000];
    memset(big, 'z', sizeof big);
    uint64_t out = pa.out_count;
    assert_int_equal(ns_udp_send(u, big, sizeof big), NB_OK);
    assert_int_equal(pa.out_count, out + 3); /* 3008 bytes of UDP in 1256-byte fragments */
    assert_int_equal(pa.last[6] & 0x20, 0);  /* the last fragment: MF clear */
    assert_true((be16(pa.last + 6) & 0x1fff) > 0);
    ns_udp_close(u);
    run_for(5);
}

/* The interface goes first: sends fail with NB_E_CLOSED, close still works, nothing leaks. */
static void test_if_gone(void **state)
{
    (void)state;
    struct wire_port pc;
    assert_non_null(wire_if(&pc, "acct-c", "10.99.60.1/24", NULL));
    struct sink s = {0};
    struct sockaddr_storage dst = sa_of("10.99.60.2", 7000);
    struct ns_udp *u = NULL;
    assert_int_equal(ns_udp_open(pc.nif, (struct sockaddr *)&dst, on_recv, &s, &u), NB_OK);
    assert_int_equal(ns_udp_send(u, "a", 1), NB_OK);
    ns_if_free(pc.nif);
    assert_int_equal(ns_udp_send(u, "a", 1), NB_E_CLOSED);
    ns_udp_close(u);
    run_for(5);
}

/* max_conns caps the open flows of one interface. */
static void test_max_flows(void **state)
{
    (void)state;
    struct wire_port pc;
    struct ns_addr addr;
    assert_int_equal(ns_addr_parse("10.99.160.1/24", &addr), NB_OK);
    memset(&pc, 0, sizeof pc);
    struct ns_if_config cfg = {.tag = "capped",
                               .addrs = &addr,
                               .n_addrs = 1,
                               .output = wire_output,
                               .output_ctx = &pc,
                               .max_conns = 3};
    assert_int_equal(ns_if_new(&cfg, &pc.nif), NB_OK);
    struct sink s = {0};
    struct sockaddr_storage dst = sa_of("10.99.160.2", 7000);
    struct ns_udp *u[4] = {0};
    for (int i = 0; i < 3; i++)
        assert_int_equal(ns_udp_open(pc.nif, (struct sockaddr *)&dst, on_recv, &s, &u[i]), NB_OK);
    assert_int_equal(ns_udp_open(pc.nif, (struct sockaddr *)&dst, on_recv, &s, &u[3]), NB_E_NOMEM);
    ns_udp_close(u[0]);
    assert_int_equal(ns_udp_open(pc.nif, (struct sockaddr *)&dst, on_recv, &s, &u[3]), NB_OK);
    for (int i = 1; i < 4; i++)
        ns_udp_close(u[i]);
    run_for(5);
    ns_if_free(pc.nif);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_send_recv_v4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v6_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_if_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_flows, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
