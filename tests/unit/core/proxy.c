/* SPDX-License-Identifier: BSD-3-Clause */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/proxy.h"
#include "platform/relay.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/loop.h"
#include "platform/sock.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Tcp services relayed through a host dialer (what direct_upstream and tests use). */

static struct nb_loop *loop;

static int host_dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                     void *arg, struct nb_stream **out)
{
    return nb_tcp_connect(loop, dst, 0, cbs, arg, out);
}

/* ---- an echo backend on host sockets ---- */

static void echo_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    nb_stream_write(s, d, n);
}
static void echo_eof(void *arg, struct nb_stream *s)
{
    nb_stream_shutdown(s);
}
static struct nb_stream *echo_conns[8];
static int n_echo;
static void echo_err(void *arg, struct nb_stream *s, const char *e)
{
    for (int i = 0; i < 8; i++)
        if (echo_conns[i] == s)
            echo_conns[i] = NULL;
    nb_stream_close(s, true);
}
static const struct nb_stream_cbs echo_cbs = {echo_data, echo_eof, NULL, echo_err, NULL};
static void echo_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    echo_conns[n_echo++ % 8] = s;
    assert_true(n_echo <= 8);
    nb_stream_set_cbs(s, &echo_cbs, NULL);
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- a blocking client in the same thread is impossible; use a stream client ---- */

struct client {
    struct nb_stream *s;
    bool connected, eof;
    const char *err;
    uint64_t rx;
    uint8_t sum;
};
static void c_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    struct client *c = arg;
    for (size_t i = 0; i < n; i++)
        c->sum ^= d[i];
    c->rx += n;
}
static void c_eof(void *arg, struct nb_stream *s)
{
    ((struct client *)arg)->eof = true;
}
static void c_err(void *arg, struct nb_stream *s, const char *e)
{
    ((struct client *)arg)->err = e;
}
static void c_conn(void *arg, struct nb_stream *s, const char *e)
{
    struct client *c = arg;
    c->connected = e == NULL;
    c->err = e;
}
static const struct nb_stream_cbs client_cbs = {c_data, c_eof, NULL, c_err, c_conn};

static void run_until(bool *flag, const char **err, int ms)
{
    uint64_t start = nb_now_ms();
    while (!*flag && (err == NULL || *err == NULL) && nb_now_ms() - start < (uint64_t)ms)
        nb_loop_run_once(loop, 20);
}

static struct nb_mapping tcp_mapping(const char *id, uint16_t port, const char *target,
                                     uint64_t idle_ms)
{
    static struct nb_path_mapping pm;
    memset(&pm, 0, sizeof pm);
    pm.target = (char *)target;
    pm.options.session_idle_timeout_ms = idle_ms;
    struct nb_mapping m = {.type = NB_UPDATE_CREATED,
                           .id = (char *)id,
                           .account_id = "acct",
                           .mode = "tcp",
                           .listen_port = port,
                           .paths = &pm,
                           .n_paths = 1};
    return m;
}

static void connect_client(struct client *c, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(c, 0, sizeof *c);
    nb_addr_from_ip("127.0.0.1", port, &ss, NULL);
    assert_int_equal(nb_tcp_connect(loop, (struct sockaddr *)&ss, 2000, &client_cbs, c, &c->s), 0);
}

static void test_tcp_service_relays_and_half_closes(void **state)
{
    loop = nb_loop_new();
    struct nb_proxy_opts po = {.listen_host = "127.0.0.1"};
    struct nb_proxy *p = nb_proxy_new(loop, &po);
    struct nb_dialer d = {host_dial, NULL};
    assert_int_equal(nb_proxy_add_account(p, "acct", &d), 0);
    uint16_t eport = free_port(), pport = free_port();
    struct sockaddr_storage ea;
    nb_addr_from_ip("127.0.0.1", eport, &ea, NULL);
    struct nb_listener *el;
    n_echo = 0;
    assert_int_equal(nb_tcp_listen(loop, (struct sockaddr *)&ea, 8, echo_accept, NULL, &el), 0);
    char target[64], err[256];
    snprintf(target, sizeof target, "127.0.0.1:%u", eport);
    struct nb_mapping m = tcp_mapping("svc", pport, target, 0);
    assert_int_equal(nb_proxy_apply(p, &m, err, sizeof err), 0);

    struct client c;
    connect_client(&c, pport);
    run_until(&c.connected, &c.err, 2000);
    assert_true(c.connected);
    enum { N = 3 << 20 };
    uint8_t *buf = malloc(N), sum = 0;
    for (size_t i = 0; i < N; i++) {
        buf[i] = (uint8_t)(i * 7 + (i >> 9));
        sum ^= buf[i];
    }
    assert_int_equal(nb_stream_write(c.s, buf, N), 0);
    assert_int_equal(nb_stream_shutdown(c.s), 0);
    run_until(&c.eof, &c.err, 10000);
    assert_null(c.err);
    assert_true(c.eof); /* half-close went through the relay and came back */
    assert_int_equal(c.rx, N);
    assert_int_equal(c.sum, sum);
    free(buf);
    nb_stream_close(c.s, false);
    for (int i = 0; i < 20 && nb_relay_live() > 0; i++)
        nb_loop_run_once(loop, 20);
    assert_int_equal(nb_relay_live(), 0);
    struct nb_proxy_stats st;
    nb_proxy_stats(p, &st);
    assert_int_equal(st.relays_total, 1);
    assert_int_equal(st.relays_active, 0);

    /* Removal closes a live relay at once. */
    connect_client(&c, pport);
    run_until(&c.connected, &c.err, 2000);
    assert_int_equal(nb_stream_write(c.s, "ping", 4), 0);
    while (c.rx < 4)
        nb_loop_run_once(loop, 20);
    assert_int_equal(nb_relay_live(), 1);
    m.type = NB_UPDATE_REMOVED;
    assert_int_equal(nb_proxy_apply(p, &m, err, sizeof err), 0);
    bool ended = false;
    uint64_t start = nb_now_ms();
    while (!ended && nb_now_ms() - start < 3000) {
        nb_loop_run_once(loop, 20);
        ended = c.err != NULL || c.eof;
    }
    assert_true(ended);
    assert_int_equal(nb_relay_live(), 0);
    nb_stream_close(c.s, true);

    /* The port is free again. */
    connect_client(&c, pport);
    run_until(&c.connected, &c.err, 2000);
    assert_false(c.connected);
    nb_stream_close(c.s, true);

    nb_listener_close(el);
    nb_proxy_free(p);
    for (int i = 0; i < 5; i++)
        nb_loop_run_once(loop, 10);
    for (int i = 0; i < 8; i++)
        if (echo_conns[i])
            nb_stream_close(echo_conns[i], true);
    memset(echo_conns, 0, sizeof echo_conns);
    nb_loop_run_once(loop, 10);
    nb_loop_free(loop);
}

static void test_dial_failure_and_idle_timeout(void **state)
{
    loop = nb_loop_new();
    struct nb_proxy_opts po = {.listen_host = "127.0.0.1"};
    struct nb_proxy *p = nb_proxy_new(loop, &po);
    struct nb_dialer d = {host_dial, NULL};
    assert_int_equal(nb_proxy_add_account(p, "acct", &d), 0);
    char target[64], err[256];
    uint16_t dead = free_port(), pport = free_port();
    snprintf(target, sizeof target, "127.0.0.1:%u", dead);
    struct nb_mapping m = tcp_mapping("svc", pport, target, 0);
    assert_int_equal(nb_proxy_apply(p, &m, err, sizeof err), 0);
    struct client c;
    connect_client(&c, pport);
    bool done = false;
    uint64_t start = nb_now_ms();
    while (!done && nb_now_ms() - start < 3000) {
        nb_loop_run_once(loop, 20);
        done = c.err != NULL || c.eof;
    }
    assert_true(done); /* backend refused: the client is cut, not left hanging */
    struct nb_proxy_stats st;
    nb_proxy_stats(p, &st);
    assert_int_equal(st.dial_failures, 1);
    nb_stream_close(c.s, true);

    /* Idle timeout from session_idle_timeout. */
    uint16_t eport = free_port();
    struct sockaddr_storage ea;
    nb_addr_from_ip("127.0.0.1", eport, &ea, NULL);
    struct nb_listener *el;
    n_echo = 0;
    assert_int_equal(nb_tcp_listen(loop, (struct sockaddr *)&ea, 8, echo_accept, NULL, &el), 0);
    snprintf(target, sizeof target, "127.0.0.1:%u", eport);
    m = tcp_mapping("svc", pport, target, 300);
    m.type = NB_UPDATE_MODIFIED;
    assert_int_equal(nb_proxy_apply(p, &m, err, sizeof err), 0);
    connect_client(&c, pport);
    run_until(&c.connected, &c.err, 2000);
    assert_true(c.connected);
    start = nb_now_ms();
    done = false;
    while (!done && nb_now_ms() - start < 3000) {
        nb_loop_run_once(loop, 20);
        done = c.err != NULL || c.eof;
    }
    assert_true(done);
    assert_true(nb_now_ms() - start >= 250);
    nb_stream_close(c.s, true);

    /* udp needs the account's UDP dialer (its tunnel): refused with a reason without one. */
    m.mode = "udp";
    assert_int_equal(nb_proxy_apply(p, &m, err, sizeof err), NB_E_NOTFOUND);
    assert_non_null(strstr(err, "no tunnel"));

    nb_listener_close(el);
    nb_proxy_free(p);
    for (int i = 0; i < 5; i++)
        nb_loop_run_once(loop, 10);
    for (int i = 0; i < 8; i++)
        if (echo_conns[i])
            nb_stream_close(echo_conns[i], true);
    memset(echo_conns, 0, sizeof echo_conns);
    nb_loop_run_once(loop, 10);
    assert_int_equal(nb_relay_live(), 0);
    nb_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_service_relays_and_half_closes),
        cmocka_unit_test(test_dial_failure_and_idle_timeout),
    };
    return cmocka_run_group_tests_name("core/proxy", tests, NULL, NULL);
}
