/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * core/udp_relay: the session table, limit, creation rate limiter and idle reaping, with real
 * host UDP sockets on 127.0.0.1 for the clients and an in-memory backend (a fake dialer whose
 * flows echo every datagram back from a deferred call, as a tunnel would from the loop). Time
 * is a fake clock (frozen at the start of each test, moved by skew) so reaping and refills are
 * exact, not timed; test_idle_timer alone runs on the loop's clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "auth/restrict.h"
#include "core/proxy.h"
#include "core/udp_relay.h"
#include "http/accesslog.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/loop.h"
#include "platform/sock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct nb_loop *loop;
static uint64_t skew;
static uint64_t frozen_ms; /* the relay's clock: frozen at h_start, moved only by skew */
static bool real_clock;    /* test_idle_timer: the loop's clock (its timers must see time pass) */

static uint64_t fake_now(void *ctx)
{
    (void)ctx;
    /* Frozen, so a slow run (ASan, a loaded machine) cannot age a session between two steps of
     * a test: reaping and refills depend on skew alone. */
    return (real_clock ? nb_loop_now_ms(loop) : frozen_ms) + skew;
}

/* ---- fake backend ---- */

struct fake_flow {
    struct nb_dgram base;
    nb_dgram_recv_fn on_recv;
    void *arg;
    struct nb_defer defer;
    uint8_t pending[2048];
    size_t pending_len;
    bool has_pending;
    bool closed;
};

struct fake_net {
    int dials, open, sends;
    int fail_dial; /* return this from dial when non-zero */
    int fail_send; /* return this from send when non-zero */
    bool no_echo;
};
static struct fake_net net;

static void flow_echo(struct nb_defer *d)
{
    struct fake_flow *f = d->arg;
    if (f->closed) {
        free(f);
        return;
    }
    f->has_pending = false;
    f->on_recv(f->arg, f->pending, f->pending_len); /* may close f */
}

static int flow_send(struct nb_dgram *d, const void *buf, size_t len)
{
    struct fake_flow *f = (struct fake_flow *)d;
    net.sends++;
    if (net.fail_send)
        return net.fail_send;
    if (!net.no_echo && len <= sizeof f->pending && !f->has_pending) {
        memcpy(f->pending, buf, len);
        f->pending_len = len;
        f->has_pending = true;
        nb_defer(loop, &f->defer, flow_echo, f);
    }
    return NB_OK;
}

static void flow_close(struct nb_dgram *d)
{
    struct fake_flow *f = (struct fake_flow *)d;
    net.open--;
    f->closed = true;
    if (f->has_pending)
        return; /* freed by the pending echo */
    free(f);
}

static const struct nb_dgram_vtbl flow_vtbl = {.send = flow_send, .close = flow_close};

static int fake_dial(void *ctx, const struct sockaddr *dst, nb_dgram_recv_fn on_recv, void *arg,
                     struct nb_dgram **out)
{
    (void)ctx;
    (void)dst;
    net.dials++;
    if (net.fail_dial)
        return net.fail_dial;
    struct fake_flow *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->base.vt = &flow_vtbl;
    f->on_recv = on_recv;
    f->arg = arg;
    net.open++;
    *out = &f->base;
    return NB_OK;
}

static const struct nb_udp_dialer dialer = {fake_dial, NULL};

/* ---- access log capture ---- */

struct rec {
    char source_ip[64];
    int64_t duration_ms, up, down;
    char protocol[8];
    char service[32];
    char mech[32];
};
static struct rec recs[64];
static int nrecs;

static void sink(void *arg, const struct nb_access_log_entry *e)
{
    (void)arg;
    if (nrecs >= 64)
        return;
    struct rec *r = &recs[nrecs++];
    snprintf(r->source_ip, sizeof r->source_ip, "%s", e->source_ip ? e->source_ip : "");
    snprintf(r->protocol, sizeof r->protocol, "%s", e->protocol ? e->protocol : "");
    snprintf(r->service, sizeof r->service, "%s", e->service_id ? e->service_id : "");
    snprintf(r->mech, sizeof r->mech, "%s", e->auth_mechanism ? e->auth_mechanism : "");
    r->duration_ms = e->duration_ms;
    r->up = e->bytes_upload;
    r->down = e->bytes_download;
}

/* ---- harness ---- */

struct h {
    struct nb_access_log *log;
    struct nb_udp_relay *r;
    struct nb_udp_stats st;
    struct sockaddr_storage addr; /* the relay's public address */
    int clients[8];
};

static struct auth_restrict *h_restrictions; /* for the next h_start (it keeps a reference) */

static void h_start(struct h *h, uint32_t max_sessions, uint32_t rate, uint32_t burst,
                    uint32_t idle_ms)
{
    memset(h, 0, sizeof *h);
    memset(&net, 0, sizeof net);
    nrecs = 0;
    skew = 0;
    frozen_ms = nb_loop_now_ms(loop);
    real_clock = false;
    assert_int_equal(nb_access_log_new(NULL, NULL, &h->log), NB_OK);
    assert_int_equal(nb_access_log_add_sink(h->log, sink, NULL), NB_OK);
    struct sockaddr_storage la, ta;
    nb_addr_from_ip("127.0.0.1", 0, &la, NULL);
    nb_addr_from_ip("10.99.60.2", 7000, &ta, NULL);
    struct nb_udp_relay_opts o = {
        .service_id = "svc-udp",
        .account_id = "acct",
        .host = "udp.example",
        .listen = (struct sockaddr *)&la,
        .target = (struct sockaddr *)&ta,
        .dialer = &dialer,
        .idle_timeout_ms = idle_ms,
        .max_sessions = max_sessions,
        .rate_per_s = rate,
        .burst = burst,
        .access_log = h->log,
        .restrictions = h_restrictions,
        .stats = &h->st,
        .now_ms = fake_now,
    };
    char err[128];
    assert_int_equal(nb_udp_relay_new(loop, &o, &h->r, err, sizeof err), NB_OK);
    auth_restrict_unref(h_restrictions);
    h_restrictions = NULL;
    assert_int_equal(nb_udp_relay_addr(h->r, &h->addr), NB_OK);
    for (int i = 0; i < 8; i++) {
        h->clients[i] = nb_udp_bind((struct sockaddr *)&la);
        assert_true(h->clients[i] >= 0);
    }
}

static void h_stop(struct h *h)
{
    if (h->r)
        nb_udp_relay_close(h->r);
    for (int i = 0; i < 8; i++)
        close(h->clients[i]);
    for (int i = 0; i < 5; i++)
        nb_loop_run_once(loop, 0);
    nb_access_log_free(h->log);
    assert_int_equal(net.open, 0);
}

static void send_from(struct h *h, int c, const void *buf, size_t len)
{
    ssize_t n = sendto(h->clients[c], buf, len, 0, (struct sockaddr *)&h->addr,
                       nb_addr_len((struct sockaddr *)&h->addr));
    assert_int_equal(n, (ssize_t)len);
}

/* Runs the loop until client c has a datagram (returned length) or 200 passes (-1). */
static ssize_t recv_on(struct h *h, int c, void *buf, size_t cap)
{
    for (int i = 0; i < 200; i++) {
        ssize_t n = recv(h->clients[c], buf, cap, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        nb_loop_run_once(loop, 5);
    }
    return -1;
}

/* Runs the loop a bounded number of times so the relay reads what was sent. */
static void pump(void)
{
    for (int i = 0; i < 10; i++)
        nb_loop_run_once(loop, 2);
}

/* ---- tests ---- */

static void test_tbucket(void **state)
{
    (void)state;
    struct nb_tbucket tb;
    nb_tbucket_init(&tb, 50, 100, 1000);
    for (int i = 0; i < 100; i++)
        assert_true(nb_tbucket_take(&tb, 1000));
    assert_false(nb_tbucket_take(&tb, 1000));
    assert_false(nb_tbucket_take(&tb, 1019)); /* 50/s: one token per 20 ms */
    assert_true(nb_tbucket_take(&tb, 1020));
    assert_false(nb_tbucket_take(&tb, 1020));
    /* A long pause refills to the burst, not beyond. */
    int n = 0;
    while (nb_tbucket_take(&tb, 1000000) && n < 1000)
        n++;
    assert_int_equal(n, 100);
    /* A clock that does not move (or steps back) adds nothing. */
    assert_false(nb_tbucket_take(&tb, 999999));
}

static void test_echo_sessions(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, 0, 0, 0, 0);
    uint8_t buf[2048];
    send_from(&h, 0, "ping", 4);
    assert_int_equal(recv_on(&h, 0, buf, sizeof buf), 4);
    assert_memory_equal(buf, "ping", 4);
    /* Same client: same session, no new dial. */
    send_from(&h, 0, "again", 5);
    assert_int_equal(recv_on(&h, 0, buf, sizeof buf), 5);
    assert_int_equal(net.dials, 1);
    /* Other client ports: a session each. Sizes from empty to 1400 bytes. */
    static const size_t sizes[] = {0, 1, 512, 1400};
    for (int c = 1; c < 5; c++) {
        memset(buf, 'a' + c, sizes[c - 1]);
        send_from(&h, c, buf, sizes[c - 1]);
        uint8_t got[2048];
        assert_int_equal(recv_on(&h, c, got, sizeof got), (ssize_t)sizes[c - 1]);
        assert_memory_equal(got, buf, sizes[c - 1]);
    }
    assert_int_equal(net.dials, 5);
    assert_int_equal(nb_udp_relay_sessions(h.r), 5);
    assert_int_equal(h.st.sessions_active, 5);
    assert_int_equal(h.st.sessions_total, 5);
    assert_int_equal(h.st.packets_up, 6);
    assert_int_equal(h.st.packets_down, 6);
    assert_int_equal(h.st.bytes_up, 4 + 5 + 0 + 1 + 512 + 1400);
    assert_int_equal(h.st.bytes_down, h.st.bytes_up);
    /* Closing the relay ends every session with one record each. */
    nb_udp_relay_close(h.r);
    h.r = NULL;
    assert_int_equal(nrecs, 5);
    assert_int_equal(h.st.sessions_active, 0);
    int found = 0;
    for (int i = 0; i < nrecs; i++) {
        assert_string_equal(recs[i].protocol, "udp");
        assert_string_equal(recs[i].source_ip, "127.0.0.1");
        assert_string_equal(recs[i].service, "svc-udp");
        assert_int_equal(recs[i].up, recs[i].down);
        if (recs[i].up == 9)
            found++;
    }
    assert_int_equal(found, 1); /* the first client's "ping" + "again" */
    h_stop(&h);
}

static void test_session_limit(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, 3, 0, 0, 0);
    for (int c = 0; c < 5; c++)
        send_from(&h, c, "x", 1);
    pump();
    assert_int_equal(nb_udp_relay_sessions(h.r), 3);
    assert_int_equal(h.st.rejected_limit, 2);
    assert_int_equal(h.st.dropped_packets, 2);
    assert_int_equal(net.dials, 3);
    /* Refused clients get nothing back; admitted ones keep working. */
    uint8_t buf[16];
    int answered = 0;
    for (int c = 0; c < 5; c++)
        if (recv_on(&h, c, buf, sizeof buf) == 1)
            answered++;
    assert_int_equal(answered, 3);
    h_stop(&h);
}

static struct auth_restrict *cidr_filter(bool block, const char *cidr)
{
    const char *l[] = {cidr};
    struct auth_restrict_spec spec = {.allowed_cidrs = block ? NULL : l,
                                      .n_allowed_cidrs = block ? 0 : 1,
                                      .blocked_cidrs = block ? l : NULL,
                                      .n_blocked_cidrs = block ? 1 : 0};
    struct auth_restrict *f = NULL;
    assert_int_equal(auth_restrict_new(&spec, &f, NULL), NB_OK);
    return f;
}

/* Access restrictions on the first datagram of a session (spec §3.8): denied -> dropped, nothing
 * dialled, no session; one deny record per verdict every 10 s. */
static void test_restrictions(void **state)
{
    (void)state;
    struct h h;
    uint8_t buf[16];
    h_restrictions = cidr_filter(true, "127.0.0.0/8");
    h_start(&h, 0, 0, 0, 0);
    send_from(&h, 0, "a", 1);
    send_from(&h, 1, "bb", 2);
    send_from(&h, 0, "c", 1);
    pump();
    assert_int_equal(net.dials, 0);
    assert_int_equal(nb_udp_relay_sessions(h.r), 0);
    assert_int_equal(h.st.restricted, 3);
    assert_int_equal(h.st.dropped_packets, 3);
    assert_int_equal(h.st.sessions_total, 0);
    assert_int_equal(recv_on(&h, 0, buf, sizeof buf), -1);
    assert_int_equal(nrecs, 1);
    assert_string_equal(recs[0].mech, "ip_restricted");
    assert_string_equal(recs[0].protocol, "udp");
    assert_string_equal(recs[0].source_ip, "127.0.0.1");
    assert_int_equal(recs[0].up + recs[0].down, 0);
    skew += 10000; /* the next deny after 10 s is logged again */
    send_from(&h, 2, "d", 1);
    pump();
    assert_int_equal(nrecs, 2);
    h_stop(&h);

    h_restrictions = cidr_filter(false, "127.0.0.1/32");
    h_start(&h, 0, 0, 0, 0);
    send_from(&h, 0, "ok", 2);
    assert_int_equal(recv_on(&h, 0, buf, sizeof buf), 2);
    assert_int_equal(h.st.restricted, 0);
    assert_int_equal(net.dials, 1);
    h_stop(&h);
    assert_int_equal(nrecs, 1); /* the session's own record, no mechanism */
    assert_string_equal(recs[0].mech, "");
}

static void test_rate_limit(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, 0, 1, 2, 0); /* 1 new session per second, burst 2 */
    for (int c = 0; c < 4; c++)
        send_from(&h, c, "x", 1);
    pump();
    assert_int_equal(nb_udp_relay_sessions(h.r), 2);
    assert_int_equal(h.st.rejected_rate, 2);
    /* Existing sessions are not rate limited. */
    send_from(&h, 0, "y", 1);
    send_from(&h, 0, "z", 1);
    pump();
    assert_int_equal(h.st.packets_up, 4);
    /* One second later, one more session. */
    skew += 1000;
    send_from(&h, 5, "x", 1);
    send_from(&h, 6, "x", 1);
    pump();
    assert_int_equal(nb_udp_relay_sessions(h.r), 3);
    assert_int_equal(h.st.rejected_rate, 3);
    h_stop(&h);
}

static void test_idle_reap(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, 0, 0, 0, 1000);
    uint8_t buf[16];
    send_from(&h, 0, "a", 1);
    assert_int_equal(recv_on(&h, 0, buf, sizeof buf), 1);
    send_from(&h, 1, "bb", 2);
    assert_int_equal(recv_on(&h, 1, buf, sizeof buf), 2);
    assert_int_equal(nb_udp_relay_sessions(h.r), 2);
    skew += 600;
    /* Client 1 stays active; client 0 goes quiet. */
    send_from(&h, 1, "bb", 2);
    assert_int_equal(recv_on(&h, 1, buf, sizeof buf), 2);
    skew += 399;
    nb_udp_relay_reap(h.r);
    assert_int_equal(nb_udp_relay_sessions(h.r), 2);
    skew += 1; /* client 0: 1000 ms idle */
    nb_udp_relay_reap(h.r);
    assert_int_equal(nb_udp_relay_sessions(h.r), 1);
    assert_int_equal(h.st.ended_idle, 1);
    assert_int_equal(nrecs, 1);
    assert_int_equal(recs[0].up, 1);
    assert_int_equal(recs[0].down, 1);
    assert_true(recs[0].duration_ms < 600); /* last activity - creation, not idle time */
    skew += 599;
    nb_udp_relay_reap(h.r);
    assert_int_equal(nb_udp_relay_sessions(h.r), 1);
    skew += 1;
    nb_udp_relay_reap(h.r);
    assert_int_equal(nb_udp_relay_sessions(h.r), 0);
    assert_int_equal(nrecs, 2);
    assert_int_equal(recs[1].up, 4);
    assert_int_equal(recs[1].duration_ms, 600);
    /* The client comes back: a new session. */
    send_from(&h, 0, "a", 1);
    assert_int_equal(recv_on(&h, 0, buf, sizeof buf), 1);
    assert_int_equal(h.st.sessions_total, 3);
    assert_int_equal(net.open, 1);
    h_stop(&h);
}

/* The relay's own timer reaps without help (real clock, 50 ms idle; bounded wait). */
static void test_idle_timer(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, 0, 0, 0, 50);
    real_clock = true;
    uint8_t buf[16];
    send_from(&h, 0, "a", 1);
    assert_int_equal(recv_on(&h, 0, buf, sizeof buf), 1);
    for (int i = 0; i < 400 && nb_udp_relay_sessions(h.r) > 0; i++)
        nb_loop_run_once(loop, 5);
    assert_int_equal(nb_udp_relay_sessions(h.r), 0);
    assert_int_equal(h.st.ended_idle, 1);
    assert_int_equal(nrecs, 1);
    h_stop(&h);
}

static void test_errors(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, 0, 0, 0, 0);
    /* Dial failure: no session, counted. */
    net.fail_dial = NB_E_NOMEM;
    send_from(&h, 0, "a", 1);
    pump();
    assert_int_equal(h.st.dial_errors, 1);
    assert_int_equal(nb_udp_relay_sessions(h.r), 0);
    net.fail_dial = 0;
    /* A transient NOMEM drops the datagram but keeps the session. */
    net.no_echo = true;
    send_from(&h, 0, "a", 1);
    pump();
    assert_int_equal(nb_udp_relay_sessions(h.r), 1);
    net.fail_send = NB_E_NOMEM;
    send_from(&h, 0, "bb", 2);
    pump();
    assert_int_equal(nb_udp_relay_sessions(h.r), 1);
    /* Any other write error ends the session, with its record. */
    net.fail_send = NB_E_IO;
    send_from(&h, 0, "ccc", 3);
    pump();
    assert_int_equal(nb_udp_relay_sessions(h.r), 0);
    assert_int_equal(h.st.ended_error, 1);
    assert_int_equal(nrecs, 1);
    assert_int_equal(recs[0].up, 1);
    assert_int_equal(h.st.dropped_packets, 3); /* dial error, NOMEM, IO */
    assert_int_equal(h.st.dropped_bytes, 1 + 2 + 3);
    h_stop(&h);
}

/* The public port is taken: a clear error. */
static void test_port_in_use(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, 0, 0, 0, 0);
    struct sockaddr_storage ta;
    nb_addr_from_ip("10.99.60.2", 7000, &ta, NULL);
    struct nb_udp_relay_opts o = {
        .service_id = "dup",
        .listen = (struct sockaddr *)&h.addr,
        .target = (struct sockaddr *)&ta,
        .dialer = &dialer,
    };
    struct nb_udp_relay *r2 = NULL;
    char err[128] = "";
    assert_int_equal(nb_udp_relay_new(loop, &o, &r2, err, sizeof err), NB_E_IO);
    assert_non_null(strstr(err, "listen on udp 127.0.0.1:"));
    h_stop(&h);
}

/* A flood from one client: one session, bounded work per wake-up, no memory growth: the
 * relay's heap objects are the session and its flow only (counted by the fake). */
static void test_flood_one_client(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, 0, 0, 0, 0);
    net.no_echo = true;
    uint8_t buf[1200];
    memset(buf, 'f', sizeof buf);
    int sent = 0;
    for (int i = 0; i < 2000; i++) {
        if (sendto(h.clients[0], buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&h.addr,
                   nb_addr_len((struct sockaddr *)&h.addr)) == (ssize_t)sizeof buf)
            sent++;
        if (i % 100 == 99)
            pump();
    }
    pump();
    assert_int_equal(nb_udp_relay_sessions(h.r), 1);
    assert_int_equal(net.dials, 1);
    assert_int_equal(net.open, 1);
    /* Every datagram read was forwarded or counted as dropped (the kernel may drop some). */
    assert_true(h.st.packets_up + h.st.dropped_packets <= (uint64_t)sent);
    assert_true(h.st.packets_up > 0);
    h_stop(&h);
}

/* ---- the udp mode of nb_proxy_apply (spec/proxy.md §3.5): setup, errors, re-add, removal,
 * drain. Port 18660 (this test's allotment) on 127.0.0.1. ---- */

#define PROXY_PORT 18660

static int no_tcp_dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                       void *arg, struct nb_stream **out)
{
    (void)ctx, (void)dst, (void)cbs, (void)arg, (void)out;
    return NB_E_UNSUPPORTED;
}

static struct nb_mapping udp_mapping(const char *id, int32_t port, const char *target,
                                     uint64_t idle_ms)
{
    static struct nb_path_mapping pm;
    memset(&pm, 0, sizeof pm);
    pm.target = (char *)target;
    pm.options.session_idle_timeout_ms = idle_ms;
    struct nb_mapping m = {.type = NB_UPDATE_CREATED,
                           .id = (char *)id,
                           .account_id = "acct",
                           .mode = "udp",
                           .domain = "udp.example",
                           .listen_port = port,
                           .paths = &pm,
                           .n_paths = 1};
    return m;
}

static bool port_free(void)
{
    struct sockaddr_storage a;
    nb_addr_from_ip("127.0.0.1", PROXY_PORT, &a, NULL);
    int fd = nb_udp_bind((struct sockaddr *)&a);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* One echo from a fresh client socket through the proxy's port; true if it came back. */
static bool proxy_echo(int *fd_out)
{
    struct sockaddr_storage la, pa;
    nb_addr_from_ip("127.0.0.1", 0, &la, NULL);
    nb_addr_from_ip("127.0.0.1", PROXY_PORT, &pa, NULL);
    int fd = nb_udp_bind((struct sockaddr *)&la);
    assert_true(fd >= 0);
    assert_int_equal(
        sendto(fd, "hey", 3, 0, (struct sockaddr *)&pa, nb_addr_len((struct sockaddr *)&pa)), 3);
    char buf[16];
    ssize_t n = -1;
    for (int i = 0; i < 200 && n < 0; i++) {
        n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0)
            nb_loop_run_once(loop, 5);
    }
    if (fd_out)
        *fd_out = fd;
    else
        close(fd);
    return n == 3 && memcmp(buf, "hey", 3) == 0;
}

static void test_proxy_udp_mode(void **state)
{
    (void)state;
    memset(&net, 0, sizeof net);
    nrecs = 0;
    skew = 0;
    struct nb_access_log *log;
    assert_int_equal(nb_access_log_new(NULL, NULL, &log), NB_OK);
    assert_int_equal(nb_access_log_add_sink(log, sink, NULL), NB_OK);
    struct nb_proxy_opts po = {.listen_host = "127.0.0.1", .wg_port = 18659, .access_log = log};
    struct nb_proxy *p = nb_proxy_new(loop, &po);
    struct nb_dialer td = {no_tcp_dial, NULL};
    assert_int_equal(nb_proxy_add_account(p, "acct", &td), NB_OK);
    char err[256] = "";
    struct nb_mapping m = udp_mapping("svc-u", PROXY_PORT, "10.99.60.2:7000", 0);
    /* The account exists but has no UDP dialer (no tunnel): refused. */
    assert_int_equal(nb_proxy_apply(p, &m, err, sizeof err), NB_E_NOTFOUND);
    assert_string_equal(err, "account acct has no tunnel");
    assert_int_equal(nb_proxy_set_udp_dialer(p, "nobody", &dialer), NB_E_NOTFOUND);
    assert_int_equal(nb_proxy_set_udp_dialer(p, "acct", &dialer), NB_OK);
    /* Mapping errors of spec §3.5. */
    struct nb_mapping bad = udp_mapping("svc-bad", 18659, "10.99.60.2:7000", 0);
    assert_int_equal(nb_proxy_apply(p, &bad, err, sizeof err), NB_E_INVAL);
    assert_string_equal(err, "listen port 18659 conflicts with tunnel port");
    bad = udp_mapping("svc-bad", 0, "10.99.60.2:7000", 0);
    assert_int_equal(nb_proxy_apply(p, &bad, err, sizeof err), NB_E_INVAL);
    bad = udp_mapping("svc-bad", PROXY_PORT, "", 0);
    assert_int_equal(nb_proxy_apply(p, &bad, err, sizeof err), NB_E_INVAL);
    assert_string_equal(err, "empty target address");
    bad = udp_mapping("svc-bad", PROXY_PORT, "host.example:53", 0);
    assert_int_equal(nb_proxy_apply(p, &bad, err, sizeof err), NB_E_INVAL);
    assert_true(port_free());

    /* Installed: echoes, counted in the proxy's stats. (udp_mapping reuses one path.) */
    m = udp_mapping("svc-u", PROXY_PORT, "10.99.60.2:7000", 0);
    assert_int_equal(nb_proxy_apply(p, &m, err, sizeof err), NB_OK);
    assert_false(port_free());
    int keep = -1;
    assert_true(proxy_echo(&keep));
    struct nb_proxy_stats st;
    nb_proxy_stats(p, &st);
    assert_int_equal(st.services, 1);
    assert_int_equal(st.udp.sessions_active, 1);
    assert_int_equal(st.udp.sessions_total, 1);
    assert_int_equal(st.udp.packets_up, 1);
    assert_int_equal(st.udp.packets_down, 1);
    /* Another service cannot take the port. */
    struct nb_mapping other = m;
    other.id = "svc-other";
    assert_int_equal(nb_proxy_apply(p, &other, err, sizeof err), NB_E_IO);
    assert_non_null(strstr(err, "listen on udp 127.0.0.1:18660"));
    /* Re-adding the same service (MODIFIED) closes the old relay first: its session ends with
     * its record, and the new relay binds the same port. */
    m.type = NB_UPDATE_MODIFIED;
    assert_int_equal(nb_proxy_apply(p, &m, err, sizeof err), NB_OK);
    assert_int_equal(nrecs, 1);
    assert_string_equal(recs[0].service, "svc-u");
    assert_int_equal(recs[0].up, 3);
    assert_int_equal(recs[0].down, 3);
    assert_true(proxy_echo(NULL));
    close(keep);
    /* Removal closes everything and frees the port. */
    m.type = NB_UPDATE_REMOVED;
    assert_int_equal(nb_proxy_apply(p, &m, err, sizeof err), NB_OK);
    assert_int_equal(nrecs, 2);
    assert_true(port_free());
    nb_proxy_stats(p, &st);
    assert_int_equal(st.udp.sessions_active, 0);
    assert_int_equal(st.services, 0);
    /* Drain (shutdown) closes the relays at once, with their records. */
    m.type = NB_UPDATE_CREATED;
    assert_int_equal(nb_proxy_apply(p, &m, err, sizeof err), NB_OK);
    assert_true(proxy_echo(NULL));
    nb_proxy_drain(p);
    assert_int_equal(nrecs, 3);
    assert_true(port_free());
    nb_proxy_free(p);
    for (int i = 0; i < 5; i++)
        nb_loop_run_once(loop, 0);
    nb_access_log_free(log);
    assert_int_equal(net.open, 0);
}

/* --max-session-idle-timeout caps the mapping's sessionIdleTimeout (spec/proxy.md §3.5). */
static void test_proxy_idle_clamp(void **state)
{
    (void)state;
    memset(&net, 0, sizeof net);
    nrecs = 0;
    skew = 0;
    struct nb_proxy_opts po = {.listen_host = "127.0.0.1", .max_session_idle_timeout_ms = 50};
    struct nb_proxy *p = nb_proxy_new(loop, &po);
    struct nb_dialer td = {no_tcp_dial, NULL};
    assert_int_equal(nb_proxy_add_account(p, "acct", &td), NB_OK);
    assert_int_equal(nb_proxy_set_udp_dialer(p, "acct", &dialer), NB_OK);
    char err[256] = "";
    struct nb_mapping m = udp_mapping("svc-u", PROXY_PORT, "10.99.60.2:7000", 3600000);
    assert_int_equal(nb_proxy_apply(p, &m, err, sizeof err), NB_OK);
    assert_true(proxy_echo(NULL));
    struct nb_proxy_stats st;
    nb_proxy_stats(p, &st);
    for (int i = 0; i < 400 && st.udp.sessions_active > 0; i++) {
        nb_loop_run_once(loop, 5);
        nb_proxy_stats(p, &st);
    }
    assert_int_equal(st.udp.sessions_active, 0);
    assert_int_equal(st.udp.ended_idle, 1);
    nb_proxy_free(p);
    for (int i = 0; i < 5; i++)
        nb_loop_run_once(loop, 0);
    assert_int_equal(net.open, 0);
}

static int setup(void **state)
{
    (void)state;
    loop = nb_loop_new();
    return loop ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    nb_loop_free(loop);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tbucket),          cmocka_unit_test(test_echo_sessions),
        cmocka_unit_test(test_session_limit),    cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_idle_reap),        cmocka_unit_test(test_idle_timer),
        cmocka_unit_test(test_errors),           cmocka_unit_test(test_port_in_use),
        cmocka_unit_test(test_flood_one_client), cmocka_unit_test(test_proxy_udp_mode),
        cmocka_unit_test(test_proxy_idle_clamp), cmocka_unit_test(test_restrictions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
