/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Lazy lwIP netifs (ns_if.h): many more interfaces than lwIP's 254 netif indices, attached only
 * while they hold TCP state or process input; slot exhaustion fails cleanly; a reused netif index
 * never matches another account's pcbs. The netstack sources are #included (house style §41) to
 * reach the attach table, the detach function and lwIP's pcb lists; the library's copies of
 * those objects are then not linked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "netstack/ns.c"
#include "netstack/ns_if.c"
#include "netstack/ns_tcp.c"
#include "wire.h"

#include <stdio.h>

#define N_IFS     1000
#define N_TURNS   300
#define GRACE_RUN ((int)(NS_IF_DETACH_GRACE_MS + 2 * NS_IF_SWEEP_MS + 500))

static struct nb_loop *loop;
static struct wire_port ports[N_IFS];
static struct wire_port peer_port, pa, pb; /* the peer; two spare accounts / peers */

static int setup(void **state)
{
    (void)state;
    loop = nb_loop_new();
    assert_non_null(loop);
    assert_int_equal(ns_init(loop), NB_OK);
    wire_init(loop);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    run_for(20);
    for (size_t i = 0; i < N_IFS; i++) {
        ns_if_free(ports[i].nif);
        ports[i].nif = NULL;
    }
    ns_if_free(peer_port.nif);
    ns_if_free(pa.nif);
    ns_if_free(pb.nif);
    peer_port.nif = pa.nif = pb.nif = NULL;
    run_for(20);
    char why[128];
    bool idle = ns_pools_idle(why, sizeof why);
    if (!idle)
        fprintf(stderr, "pools not idle: %s\n", why);
    struct ns_stats st;
    ns_stats(&st);
    wire_deinit();
    ns_deinit();
    nb_loop_free(loop);
    assert_true(idle);
    assert_int_equal(st.ifs, 0);
    assert_int_equal(st.ifs_attached, 0);
    return 0;
}

static size_t attached_now(void)
{
    struct ns_stats st;
    ns_stats(&st);
    return st.ifs_attached;
}

/* No pcb in any lwIP list is bound to idx. */
static bool no_pcb_on(u8_t idx)
{
    struct tcp_pcb *lists[] = {tcp_active_pcbs, tcp_tw_pcbs, tcp_bound_pcbs};
    for (size_t i = 0; i < 3; i++)
        for (struct tcp_pcb *p = lists[i]; p; p = p->next)
            if (p->netif_idx == idx)
                return false;
    for (struct tcp_pcb_listen *p = tcp_listen_pcbs.listen_pcbs; p; p = p->next)
        if (p->netif_idx == idx)
            return false;
    return true;
}

static size_t tw_on(u8_t idx)
{
    size_t n = 0;
    for (struct tcp_pcb *p = tcp_tw_pcbs; p; p = p->next)
        n += p->netif_idx == idx;
    return n;
}

/* ---- a greeter (says its argument and closes) and a reader ---- */

static void greet_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    static const struct nb_stream_cbs none = {0};
    nb_stream_set_cbs(s, &none, NULL);
    nb_stream_write(s, arg, strlen(arg));
    nb_stream_close(s, false);
}

/* Connects from `from` to dst, expects `want` then EOF; closes. Returns the client's port. */
static uint16_t fetch(struct ns_if *from, const char *dst, uint16_t port, const char *want)
{
    struct reader r = {0};
    struct sockaddr_storage sa = sa_of(dst, port);
    assert_int_equal(ns_tcp_connect(from, (struct sockaddr *)&sa, &rd_cbs, &r, &r.s), NB_OK);
    assert_true(run_until(rd_done, &r, 5000));
    assert_null(r.err);
    assert_int_equal(r.len, strlen(want));
    assert_memory_equal(r.buf, want, r.len);
    struct sockaddr_storage local;
    nb_stream_addrs(r.s, &local, NULL);
    nb_stream_close(r.s, false);
    return ntohs(((struct sockaddr_in *)&local)->sin_port);
}

static bool all_detached(void *arg)
{
    (void)arg;
    return attached_now() == 0;
}

/*
 * 1000 interfaces (half share one address, half have their own); none attached at rest. 300 of
 * them in turn carry a connection (even turns: the peer connects to the account's listener; odd
 * turns: the account connects out). That is more accounts than slots within one grace period,
 * so idle accounts in their grace period are evicted on demand. After the grace period every
 * interface is detached and lwIP holds nothing (TIME_WAIT purged) while all 1000 still exist.
 */
static void test_thousand_ifs(void **state)
{
    (void)state;
    char addr[64], tag[32];
    for (size_t i = 0; i < N_IFS; i++) {
        if (i % 2 == 0)
            snprintf(addr, sizeof addr, "10.99.100.1/24");
        else
            snprintf(addr, sizeof addr, "10.100.%zu.%zu/32", i / 250, i % 250 + 1);
        char a6[64];
        snprintf(a6, sizeof a6, "fd00:%zx::1/64", i);
        snprintf(tag, sizeof tag, "acct-%zu", i);
        assert_non_null(wire_if(&ports[i], tag, addr, a6));
    }
    assert_non_null(wire_if(&peer_port, "peer", "10.200.0.2/16", NULL));
    struct ns_stats st;
    ns_stats(&st);
    assert_int_equal(st.ifs, N_IFS + 1);
    assert_int_equal(st.ifs_attached, 0);
    assert_int_equal(st.ifs_attached_max, NS_IF_MAX_ATTACHED);
    print_message("idle ns_if: %zu bytes (struct ns_if), lwIP netif when attached: %zu bytes\n",
                  sizeof(struct ns_if), sizeof(struct netif));

    struct nb_listener *pl;
    struct sockaddr_storage any7 = sa_of("0.0.0.0", 7);
    assert_int_equal(
        ns_tcp_listen(peer_port.nif, (struct sockaddr *)&any7, greet_accept, "peer", &pl), NB_OK);
    size_t max_attached = 0;
    for (size_t t = 0; t < N_TURNS; t++) {
        size_t i = t * 3;
        struct wire_port *acct = &ports[i];
        wire_link(acct, &peer_port);
        if (t % 2 == 0) {
            snprintf(tag, sizeof tag, "acct-%zu", i);
            struct nb_listener *l;
            struct sockaddr_storage a80 = sa_of("0.0.0.0", 80);
            assert_int_equal(
                ns_tcp_listen(acct->nif, (struct sockaddr *)&a80, greet_accept, tag, &l), NB_OK);
            if (i % 2 == 0)
                snprintf(addr, sizeof addr, "10.99.100.1");
            else
                snprintf(addr, sizeof addr, "10.100.%zu.%zu", i / 250, i % 250 + 1);
            fetch(peer_port.nif, addr, 80, tag);
            nb_listener_close(l);
        } else {
            fetch(acct->nif, "10.200.0.2", 7, "peer");
        }
        run_for(5);
        size_t a = attached_now();
        if (a > max_attached)
            max_attached = a;
        struct ns_if_stats is;
        ns_if_stats(acct->nif, &is);
        assert_true(is.attaches >= 1);
        assert_int_equal(is.in_no_slot + is.open_no_slot, 0);
    }
    ns_stats(&st);
    print_message("%d turns: max %zu attached, %llu attaches, %llu detaches, %llu TIME_WAIT "
                  "purged\n",
                  N_TURNS, max_attached, (unsigned long long)st.if_attaches,
                  (unsigned long long)st.if_detaches, (unsigned long long)st.time_wait_purged);
    assert_true(max_attached <= NS_IF_MAX_ATTACHED);
    assert_int_equal(st.if_no_slot, 0);
    assert_true(st.if_detaches > 0); /* 300 accounts > 254 slots within one grace period */
    assert_true(st.time_wait_purged > 0);
    nb_listener_close(pl);
    assert_true(run_until(all_detached, NULL, GRACE_RUN));
    ns_stats(&st);
    assert_int_equal(st.ifs, N_IFS + 1);
    assert_int_equal(st.time_wait, 0);
    assert_int_equal(st.tcp_pcbs, 0);
    char why[128];
    assert_true(ns_pools_idle(why, sizeof why));
    for (size_t i = 0; i < N_IFS; i++) {
        struct ns_if_stats is;
        ns_if_stats(ports[i].nif, &is);
        assert_false(is.attached);
        if (i % 3 != 0 || i / 3 >= N_TURNS)
            assert_int_equal(is.attaches, 0); /* never used: never attached */
    }
}

/* ---- slot exhaustion ---- */

static int inner_rc = 1;
static struct ns_if *inner_target;

/* Accepts, and from inside lwIP's input tries to open a connection on an unattached interface. */
static void inner_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    struct nb_stream *c = NULL;
    struct sockaddr_storage sa = sa_of("10.200.0.2", 9);
    inner_rc = ns_tcp_connect(inner_target, (struct sockaddr *)&sa, &rd_cbs, NULL, &c);
    if (inner_rc == NB_OK)
        nb_stream_close(c, true);
    greet_accept(arg, l, s);
}

/*
 * 254 interfaces hold listeners (253 accounts + the peer): one more interface can neither
 * listen, connect nor take input, and says so in its counters; nothing is sent. An attached but
 * idle interface is evicted for a new one at the top of the loop, never from inside lwIP.
 */
static void test_slot_exhaustion(void **state)
{
    (void)state;
    enum { N = NS_IF_MAX_ATTACHED };
    static struct nb_listener *ls[N];
    char tag[32];
    struct sockaddr_storage a80 = sa_of("10.99.100.1", 80), any9 = sa_of("0.0.0.0", 9);
    assert_non_null(wire_if(&peer_port, "peer", "10.200.0.2/16", NULL));
    struct nb_listener *pl;
    assert_int_equal(
        ns_tcp_listen(peer_port.nif, (struct sockaddr *)&any9, greet_accept, "peer", &pl), NB_OK);
    for (size_t i = 0; i < N; i++) {
        snprintf(tag, sizeof tag, "acct-%zu", i);
        assert_non_null(wire_if(&ports[i], tag, "10.99.100.1/24", NULL));
        if (i < N - 1)
            assert_int_equal(
                ns_tcp_listen(ports[i].nif, (struct sockaddr *)&a80, greet_accept, "hello", &ls[i]),
                NB_OK);
    }
    assert_int_equal(attached_now(), NS_IF_MAX_ATTACHED);
    struct ns_if *last = ports[N - 1].nif;
    struct nb_listener *l;
    struct nb_stream *c;
    struct sockaddr_storage peer9 = sa_of("10.200.0.2", 9);
    assert_int_equal(ns_tcp_listen(last, (struct sockaddr *)&a80, greet_accept, "x", &l),
                     NB_E_NOMEM);
    assert_int_equal(ns_tcp_connect(last, (struct sockaddr *)&peer9, &rd_cbs, NULL, &c),
                     NB_E_NOMEM);
    uint8_t pkt[64];
    size_t n = tcp4_seg(pkt, "10.99.100.2", 5555, "10.99.100.1", 80, 0x02, 1);
    assert_int_equal(ns_if_input(last, pkt, n), NB_E_NOMEM);
    run_for(10);
    struct ns_if_stats is;
    ns_if_stats(last, &is);
    assert_int_equal(is.in_no_slot, 1);
    assert_int_equal(is.open_no_slot, 2);
    assert_int_equal(is.in_packets, 0);
    assert_false(is.attached);
    assert_int_equal(ports[N - 1].out_count, 0);
    struct ns_stats st;
    ns_stats(&st);
    assert_int_equal(st.if_no_slot, 3);
    assert_int_equal(st.ifs_attached, NS_IF_MAX_ATTACHED);

    /* Release one: account 0 keeps its netif (grace period) but needs it no more. */
    nb_listener_close(ls[0]);
    ls[0] = NULL;
    run_for(10);
    assert_int_equal(attached_now(), NS_IF_MAX_ATTACHED);
    /* Inside lwIP (an accept callback on account 1) nothing is evicted: refused. */
    wire_link(&ports[1], &peer_port);
    inner_target = last;
    fetch(peer_port.nif, "10.99.100.1", 80, "hello"); /* the greeter under inner_accept below */
    nb_listener_close(ls[1]);
    assert_int_equal(
        ns_tcp_listen(ports[1].nif, (struct sockaddr *)&a80, inner_accept, "inner", &ls[1]), NB_OK);
    fetch(peer_port.nif, "10.99.100.1", 80, "inner");
    assert_int_equal(inner_rc, NB_E_NOMEM);
    ns_if_stats(last, &is);
    assert_int_equal(is.open_no_slot, 3);
    /* At the top of the loop the idle account 0 is evicted for the newcomer. */
    ns_stats(&st);
    uint64_t det = st.if_detaches;
    assert_int_equal(ns_tcp_listen(last, (struct sockaddr *)&a80, greet_accept, "last", &l), NB_OK);
    ns_stats(&st);
    assert_int_equal(st.if_detaches, det + 1);
    ns_if_stats(ports[0].nif, &is);
    assert_false(is.attached);
    /* Now account 0 is the one without a slot. */
    assert_int_equal(ns_if_input(ports[0].nif, pkt, n), NB_E_NOMEM);
    ns_if_stats(ports[0].nif, &is);
    assert_int_equal(is.in_no_slot, 1);
    /* The newcomer works. */
    wire_link(&ports[N - 1], &peer_port);
    fetch(peer_port.nif, "10.99.100.1", 80, "last");
    nb_listener_close(l);
    for (size_t i = 1; i < N - 1; i++)
        nb_listener_close(ls[i]);
    nb_listener_close(pl);
    assert_true(run_until(all_detached, NULL, GRACE_RUN));
}

/* ---- isolation across index reuse ---- */

static u8_t idx_of(const struct ns_if *nif)
{
    return nif->netif ? netif_get_index(nif->netif) : NETIF_NO_INDEX;
}

/* Sends a FIN|ACK of the connection 10.99.100.2:sport -> 10.99.100.1:80 into nif; returns the
 * TCP flags of the answer (0 if none). */
static uint8_t poke_fin(struct wire_port *port, uint16_t sport)
{
    struct wire_port *saved = port->peer;
    port->peer = NULL; /* record only */
    uint64_t before = port->out_count;
    uint8_t pkt[64];
    size_t n = tcp4_seg(pkt, "10.99.100.2", sport, "10.99.100.1", 80, 0x11, 12345);
    assert_int_equal(ns_if_input(port->nif, pkt, n), NB_OK);
    port->peer = saved;
    if (port->out_count == before)
        return 0;
    assert_int_equal(port->out_count, before + 1);
    return port->last[20 + 13];
}

/*
 * Account A (same addresses as B) leaves a connection in TIME_WAIT, goes idle and is detached
 * by the sweep: the TIME_WAIT pcb is purged. B then attaches on A's old netif index: a segment
 * of A's old connection into B finds nothing (RST from B). B leaves its own TIME_WAIT on that
 * index; A re-attaches on another index and the same kind of segment into A does not reach B's
 * pcb (RST from A, B silent), while into B it does (ACK, no RST).
 */
static void test_index_reuse_isolation(void **state)
{
    (void)state;
    struct wire_port *pa_peer = &ports[0], *pb_peer = &ports[1];
    assert_non_null(wire_if(&pa, "acct-a", "10.99.100.1/24", NULL));
    assert_non_null(wire_if(&pb, "acct-b", "10.99.100.1/24", NULL));
    assert_non_null(wire_if(pa_peer, "peer-a", "10.99.100.2/24", NULL));
    assert_non_null(wire_if(pb_peer, "peer-b", "10.99.100.2/24", NULL));
    wire_link(&pa, pa_peer);
    wire_link(&pb, pb_peer);
    struct sockaddr_storage a80 = sa_of("10.99.100.1", 80);
    struct nb_listener *la, *lb;

    assert_int_equal(ns_tcp_listen(pa.nif, (struct sockaddr *)&a80, greet_accept, "account A", &la),
                     NB_OK);
    u8_t k = idx_of(pa.nif);
    assert_int_not_equal(k, NETIF_NO_INDEX);
    uint16_t a_port = fetch(pa_peer->nif, "10.99.100.1", 80, "account A");
    run_for(50);
    assert_int_equal(tw_on(k), 1); /* A closed first */
    nb_listener_close(la);
    struct ns_stats st0, st1;
    ns_stats(&st0);
    /* The sweep detaches A after the grace period (its peer too), purging the TIME_WAIT. */
    uint64_t t0 = nb_now_ms();
    while (pa.nif->netif && nb_now_ms() - t0 < (uint64_t)GRACE_RUN)
        nb_loop_run_once(loop, 50);
    assert_null(pa.nif->netif);
    assert_true(nb_now_ms() - t0 >= NS_IF_DETACH_GRACE_MS - 500);
    ns_stats(&st1);
    assert_true(st1.time_wait_purged >= st0.time_wait_purged + 1);
    assert_true(no_pcb_on(k));

    /* B onto index k: lwIP hands indices out round robin, so cycle B until it lands on k. */
    int spins = 0;
    for (;;) {
        assert_int_equal(ns__if_attach(pb.nif), NB_OK);
        if (idx_of(pb.nif) == k)
            break;
        netif_detach(pb.nif);
        assert_true(++spins < 300);
    }
    uint64_t a_out = pa.out_count, b_out = pb.out_count;
    uint8_t f = poke_fin(&pb, a_port);
    assert_true(f & 0x04); /* RST: A's TIME_WAIT is gone, nothing stale matched */
    assert_int_equal(pa.out_count, a_out);
    assert_int_equal(pb.out_count, b_out + 1);

    /* B works on the reused index and leaves its own TIME_WAIT there. */
    assert_int_equal(ns_tcp_listen(pb.nif, (struct sockaddr *)&a80, greet_accept, "account B", &lb),
                     NB_OK);
    assert_int_equal(idx_of(pb.nif), k);
    uint16_t b_port = fetch(pb_peer->nif, "10.99.100.1", 80, "account B");
    run_for(50);
    assert_int_equal(tw_on(k), 1);
    nb_listener_close(lb);
    run_for(10);

    /* A again (new index): B's connection is invisible to it, and the reverse. */
    a_out = pa.out_count;
    b_out = pb.out_count;
    f = poke_fin(&pa, b_port);
    assert_int_not_equal(idx_of(pa.nif), k);
    assert_true(f & 0x04);
    assert_int_equal(pb.out_count, b_out);
    assert_int_equal(tw_on(k), 1); /* B's TIME_WAIT untouched */
    f = poke_fin(&pb, b_port);     /* into B: its TIME_WAIT pcb answers with an ACK */
    assert_int_not_equal(f, 0);
    assert_false(f & 0x04);
    assert_true(f & 0x10);
    assert_int_equal(pa.out_count, a_out + 1);
    assert_true(run_until(all_detached, NULL, GRACE_RUN));
    assert_true(no_pcb_on(k));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_thousand_ifs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_exhaustion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_reuse_isolation, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
