/* SPDX-License-Identifier: BSD-3-Clause */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/addr.h"
#include "platform/err.h"
#include "platform/loop.h"
#include "platform/sock.h"

#include <netinet/in.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <string.h>

#define TOTAL (4u << 20)
/*
 * The backpressure tests must move more than the kernel will buffer by itself, or the writer is
 * never held back: Linux 6.x grows a loopback send buffer to tcp_wmem[2] (4 MiB) and a receive
 * buffer up to tcp_rmem[2] (32 MiB by default since 6.x). 64 MiB is well past both.
 */
#define BIG_TOTAL (64u << 20)

static size_t total = TOTAL; /* what pump_client sends in the current test */

struct side {
    struct nb_stream *s;
    uint64_t rx;
    uint64_t tx;
    bool eof;
    bool connected;
    const char *err;
    int drains;
    uint32_t rx_check; /* running pattern check */
    bool bad;
    bool echo;
};

static struct nb_loop *loop;
static struct side server, client;

static uint8_t pat(uint64_t i)
{
    return (uint8_t)(i * 2654435761u >> 13);
}

static void s_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    struct side *x = arg;
    if (x->echo) {
        assert_int_equal(nb_stream_write(s, d, n), NB_OK);
        if (nb_stream_write_full(s))
            nb_stream_pause(s, true);
    } else {
        for (size_t i = 0; i < n; i++)
            if (d[i] != pat(x->rx + i))
                x->bad = true;
    }
    x->rx += n;
}

static void s_eof(void *arg, struct nb_stream *s)
{
    struct side *x = arg;
    x->eof = true;
    if (x->echo)
        nb_stream_shutdown(s);
}

static void s_drain(void *arg, struct nb_stream *s)
{
    struct side *x = arg;
    x->drains++;
    if (x->echo)
        nb_stream_pause(s, false);
}

static void s_error(void *arg, struct nb_stream *s, const char *err)
{
    ((struct side *)arg)->err = err;
}

static void s_connect(void *arg, struct nb_stream *s, const char *err)
{
    struct side *x = arg;
    x->connected = err == NULL;
    x->err = err;
}

static const struct nb_stream_cbs cbs = {s_data, s_eof, s_drain, s_error, s_connect};

static void on_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    server.s = s;
    nb_stream_set_cbs(s, &cbs, &server);
}

static void pump_client(void)
{
    uint8_t buf[65536];
    while (client.tx < total && !nb_stream_write_full(client.s)) {
        size_t n = total - client.tx < sizeof buf ? total - client.tx : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = pat(client.tx + i);
        assert_int_equal(nb_stream_write(client.s, buf, n), NB_OK);
        client.tx += n;
    }
    if (client.tx == total) {
        nb_stream_shutdown(client.s);
        client.tx++;
    }
}

static struct nb_listener *listen_local(uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t l;
    struct nb_listener *lst;
    nb_addr_parse("127.0.0.1:0", &ss, &l);
    assert_int_equal(nb_tcp_listen(loop, (struct sockaddr *)&ss, 16, on_accept, NULL, &lst), 0);
    assert_int_equal(lst->vt->addr(lst, &ss), 0);
    *port = nb_addr_port((struct sockaddr *)&ss);
    return lst;
}

static void test_echo_with_backpressure_and_half_close(void **state)
{
    uint16_t port;
    loop = nb_loop_new();
    memset(&server, 0, sizeof server);
    memset(&client, 0, sizeof client);
    server.echo = true;
    total = BIG_TOTAL;
    struct nb_listener *lst = listen_local(&port);
    struct sockaddr_storage ss;
    nb_addr_from_ip("127.0.0.1", port, &ss, NULL);
    assert_int_equal(nb_tcp_connect(loop, (struct sockaddr *)&ss, 2000, &cbs, &client, &client.s),
                     0);
    uint64_t start = nb_now_ms();
    while (!(client.eof && server.eof) && client.err == NULL && nb_now_ms() - start < 20000) {
        if (client.connected)
            pump_client();
        nb_loop_run_once(loop, 50);
    }
    assert_null(client.err);
    assert_true(client.connected);
    assert_true(server.eof);
    assert_true(client.eof);
    assert_int_equal(client.rx, total);
    assert_int_equal(server.rx, total);
    assert_false(client.bad);
    /* 64 MiB through 256 KiB high-water marks: the writer must have been held back. */
    assert_true(client.drains > 0);
    nb_stream_close(client.s, false);
    nb_stream_close(server.s, false);
    nb_listener_close(lst);
    for (int i = 0; i < 5; i++)
        nb_loop_run_once(loop, 10);
    assert_int_equal(nb_tcp_streams_live(), 0);
    nb_loop_free(loop);
}

static void test_paused_reader_bounds_writer(void **state)
{
    uint16_t port;
    loop = nb_loop_new();
    memset(&server, 0, sizeof server);
    memset(&client, 0, sizeof client);
    total = BIG_TOTAL;
    struct nb_listener *lst = listen_local(&port);
    struct sockaddr_storage ss;
    nb_addr_from_ip("127.0.0.1", port, &ss, NULL);
    assert_int_equal(nb_tcp_connect(loop, (struct sockaddr *)&ss, 2000, &cbs, &client, &client.s),
                     0);
    while (!client.connected || server.s == NULL)
        nb_loop_run_once(loop, 50);
    nb_stream_pause(server.s, true);
    /* Write until the stream says stop; the kernel buffers fill, then our queue. */
    uint64_t start = nb_now_ms();
    while (!nb_stream_write_full(client.s) && nb_now_ms() - start < 5000) {
        pump_client();
        nb_loop_run_once(loop, 5);
    }
    assert_true(nb_stream_write_full(client.s));
    assert_true(nb_stream_queued(client.s) >= NB_STREAM_HIGH_WATER);
    assert_true(nb_stream_queued(client.s) < NB_STREAM_HIGH_WATER + 65536);
    assert_int_equal(client.drains, 0);
    nb_stream_pause(server.s, false);
    start = nb_now_ms();
    while (client.drains == 0 && nb_now_ms() - start < 5000)
        nb_loop_run_once(loop, 5);
    assert_int_equal(client.drains, 1);
    assert_false(server.bad);
    nb_stream_close(client.s, true);
    nb_stream_close(server.s, true);
    nb_listener_close(lst);
    for (int i = 0; i < 5; i++)
        nb_loop_run_once(loop, 10);
    assert_int_equal(nb_tcp_streams_live(), 0);
    nb_loop_free(loop);
}

static void test_connect_refused_reports_error(void **state)
{
    uint16_t port;
    loop = nb_loop_new();
    memset(&client, 0, sizeof client);
    struct nb_listener *lst = listen_local(&port);
    nb_listener_close(lst); /* the port is now closed */
    struct sockaddr_storage ss;
    nb_addr_from_ip("127.0.0.1", port, &ss, NULL);
    assert_int_equal(nb_tcp_connect(loop, (struct sockaddr *)&ss, 2000, &cbs, &client, &client.s),
                     0);
    uint64_t start = nb_now_ms();
    while (client.err == NULL && nb_now_ms() - start < 3000)
        nb_loop_run_once(loop, 50);
    assert_string_equal(client.err, "connection refused");
    assert_false(client.connected);
    nb_stream_close(client.s, false);
    nb_loop_run_once(loop, 0);
    assert_int_equal(nb_tcp_streams_live(), 0);
    nb_loop_free(loop);
}

static void test_paused_stream_reports_reset_without_spinning(void **state)
{
    uint16_t port;
    loop = nb_loop_new();
    memset(&server, 0, sizeof server);
    struct nb_listener *lst = listen_local(&port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    nb_addr_from_ip("127.0.0.1", port, &ss, NULL);
    assert_int_equal(connect(fd, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)), 0);
    while (server.s == NULL)
        nb_loop_run_once(loop, 50);
    nb_stream_pause(server.s, true);
    nb_loop_run_once(loop, 10);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd); /* RST while the stream is paused */
    int iterations = 0;
    uint64_t start = nb_now_ms();
    while (server.err == NULL && nb_now_ms() - start < 1000) {
        nb_loop_run_once(loop, 100);
        iterations++;
    }
    assert_non_null(server.err);
    assert_string_equal(server.err, "connection reset");
    /* Quiet afterwards: a failed stream is out of epoll, nothing wakes the loop. */
    start = nb_now_ms();
    iterations = 0;
    while (nb_now_ms() - start < 200) {
        nb_loop_run_once(loop, 50);
        iterations++;
    }
    assert_true(iterations < 10);
    nb_stream_close(server.s, true);
    nb_listener_close(lst);
    nb_loop_run_once(loop, 0);
    assert_int_equal(nb_tcp_streams_live(), 0);
    nb_loop_free(loop);
}

static void test_immediate_connect_failure_is_reported(void **state)
{
    /* connect() failing synchronously (no route to a broadcast address) must reach on_connect
     * with a reason, from the loop, not be mistaken for success. */
    loop = nb_loop_new();
    memset(&client, 0, sizeof client);
    struct sockaddr_storage ss;
    nb_addr_from_ip("255.255.255.255", 9, &ss, NULL);
    assert_int_equal(nb_tcp_connect(loop, (struct sockaddr *)&ss, 1000, &cbs, &client, &client.s),
                     0);
    assert_null(client.err); /* not from inside the call */
    uint64_t start = nb_now_ms();
    while (client.err == NULL && nb_now_ms() - start < 2000)
        nb_loop_run_once(loop, 50);
    assert_non_null(client.err);
    assert_false(client.connected);
    nb_stream_close(client.s, false);
    nb_loop_run_once(loop, 0);
    assert_int_equal(nb_tcp_streams_live(), 0);
    nb_loop_free(loop);
}

/* A server that answers a request with 8 MiB and closes gracefully as soon as the client has
 * half-closed: the whole answer must arrive before the EOF (a slow client, a big response). */
static uint8_t *big;
static void big_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    assert_int_equal(nb_stream_write(s, big, TOTAL * 2), NB_OK);
}
static void big_eof(void *arg, struct nb_stream *s)
{
    nb_stream_close(s, false);
    *(bool *)arg = true;
}
static const struct nb_stream_cbs big_cbs = {.on_data = big_data, .on_eof = big_eof};
static void big_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    nb_stream_set_cbs(s, &big_cbs, arg);
}

/* Client side of the close tests: reads fd (running the loop) until EOF within 20 s; every
 * byte must follow pat() and there must be exactly `want` of them (a reset fails at once). */
static void read_pattern_to_eof(int fd, size_t want)
{
    size_t got = 0;
    bool eof = false, bad = false;
    static uint8_t rb[65536];
    uint64_t start = nb_now_ms();
    while (!eof && nb_now_ms() - start < 20000) {
        nb_loop_run_once(loop, 1);
        ssize_t r = recv(fd, rb, sizeof rb, MSG_DONTWAIT);
        if (r > 0) {
            for (ssize_t i = 0; i < r; i++)
                bad |= rb[i] != pat(got + (size_t)i);
            got += (size_t)r;
        } else if (r == 0) {
            eof = true;
        } else if (errno != EAGAIN) {
            fail_msg("client: %s after %zu bytes (a reset lost the tail)", strerror(errno), got);
        }
    }
    assert_true(eof);
    assert_int_equal(got, want);
    assert_false(bad);
}

static void test_graceful_close_after_peer_eof_delivers_everything(void **state)
{
    bool closed = false;
    loop = nb_loop_new();
    big = malloc(TOTAL * 2);
    for (size_t i = 0; i < TOTAL * 2; i++)
        big[i] = pat(i);
    struct sockaddr_storage ss;
    socklen_t l;
    struct nb_listener *lst;
    nb_addr_parse("127.0.0.1:0", &ss, &l);
    assert_int_equal(nb_tcp_listen(loop, (struct sockaddr *)&ss, 4, big_accept, &closed, &lst), 0);
    lst->vt->addr(lst, &ss);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    assert_int_equal(connect(fd, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)), 0);
    assert_int_equal(write(fd, "GET", 3), 3);
    for (int i = 0; i < 20; i++)
        nb_loop_run_once(loop, 1);
    shutdown(fd, SHUT_WR); /* the server closes while most of its answer is still queued */
    while (!closed)
        nb_loop_run_once(loop, 10);
    read_pattern_to_eof(fd, TOTAL * 2);
    close(fd);
    nb_listener_close(lst);
    for (int i = 0; i < 5; i++)
        nb_loop_run_once(loop, 5);
    assert_int_equal(nb_tcp_streams_live(), 0);
    free(big);
    nb_loop_free(loop);
}

/*
 * Closing with unread input must not turn into a reset that throws away the tail of what we
 * sent: the server never reads the client's bytes (paused), queues 8 MiB and closes
 * gracefully; the client must get all of it and a clean EOF, and the server's socket goes once
 * the client closes too (the drain after our FIN).
 */
static void unread_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    nb_stream_pause(s, true);
    assert_int_equal(nb_stream_write(s, big, TOTAL * 2), NB_OK);
    nb_stream_close(s, false);
    *(bool *)arg = true;
}

static void test_graceful_close_with_unread_input_delivers_everything(void **state)
{
    bool closed = false;
    loop = nb_loop_new();
    big = malloc(TOTAL * 2);
    for (size_t i = 0; i < TOTAL * 2; i++)
        big[i] = pat(i);
    struct sockaddr_storage ss;
    socklen_t l;
    struct nb_listener *lst;
    nb_addr_parse("127.0.0.1:0", &ss, &l);
    assert_int_equal(nb_tcp_listen(loop, (struct sockaddr *)&ss, 4, unread_accept, &closed, &lst),
                     0);
    lst->vt->addr(lst, &ss);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    assert_int_equal(connect(fd, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)), 0);
    static const char junk[100] = "never read by the server";
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    while (!closed)
        nb_loop_run_once(loop, 10);
    read_pattern_to_eof(fd, TOTAL * 2);
    assert_int_equal(nb_tcp_streams_live(), 1); /* draining: waits for the client's FIN */
    close(fd);
    for (int i = 0; i < 50 && nb_tcp_streams_live() > 0; i++)
        nb_loop_run_once(loop, 10);
    assert_int_equal(nb_tcp_streams_live(), 0);
    nb_listener_close(lst);
    for (int i = 0; i < 5; i++)
        nb_loop_run_once(loop, 5);
    free(big);
    nb_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_with_backpressure_and_half_close),
        cmocka_unit_test(test_paused_reader_bounds_writer),
        cmocka_unit_test(test_connect_refused_reports_error),
        cmocka_unit_test(test_paused_stream_reports_reset_without_spinning),
        cmocka_unit_test(test_immediate_connect_failure_is_reported),
        cmocka_unit_test(test_graceful_close_after_peer_eof_delivers_everything),
        cmocka_unit_test(test_graceful_close_with_unread_input_delivers_everything),
    };
    return cmocka_run_group_tests_name("platform/sock", tests, NULL, NULL);
}
