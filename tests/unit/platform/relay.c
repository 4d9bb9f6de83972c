/* SPDX-License-Identifier: BSD-3-Clause */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/relay.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/loop.h"
#include "platform/sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * The relay between two host streams: client <-> [relay] <-> backend, where "backend" is a
 * plain socket the test drives directly, so it can misbehave (reset mid-stream).
 */

static struct nb_loop *loop;
static struct nb_stream *accepted[2];
static int naccepted;
static bool relay_finished;
static struct nb_relay_result result;

static void on_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    accepted[naccepted++] = s;
}

static void done(void *arg, struct nb_relay *r, const struct nb_relay_result *res)
{
    relay_finished = true;
    result = *res;
}

static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Two host streams out of one listener: accepted[0] faces the client, accepted[1] the backend. */
static void make_pair(int *client_fd, int *backend_fd, struct nb_listener **lst)
{
    struct sockaddr_storage ss;
    socklen_t l;
    nb_addr_parse("127.0.0.1:0", &ss, &l);
    naccepted = 0;
    assert_int_equal(nb_tcp_listen(loop, (struct sockaddr *)&ss, 8, on_accept, NULL, lst), 0);
    (*lst)->vt->addr(*lst, &ss);
    uint16_t port = nb_addr_port((struct sockaddr *)&ss);
    *client_fd = raw_connect(port);
    while (naccepted < 1)
        nb_loop_run_once(loop, 50);
    *backend_fd = raw_connect(port);
    while (naccepted < 2)
        nb_loop_run_once(loop, 50);
}

static void test_backend_reset_keeps_relayed_bytes(void **state)
{
    /* A backend sends a response and then resets. Everything it sent before the reset must
     * still reach the client, followed by a clean end (not a reset). */
    int cfd, bfd;
    struct nb_listener *lst;
    loop = nb_loop_new();
    relay_finished = false;
    make_pair(&cfd, &bfd, &lst);
    assert_int_equal(nb_relay_start(loop, accepted[0], accepted[1], NULL, done, NULL, NULL), 0);

    enum { N = 3 << 20 };
    uint8_t *buf = malloc(N);
    for (size_t i = 0; i < N; i++)
        buf[i] = (uint8_t)(i * 13 + (i >> 11));
    /* The client does not read yet: the relay's queue and the kernel buffers fill up. */
    size_t sent = 0;
    uint64_t start = nb_now_ms();
    while (sent < N && nb_now_ms() - start < 5000) {
        ssize_t w = send(bfd, buf + sent, N - sent, MSG_DONTWAIT);
        if (w > 0)
            sent += (size_t)w;
        nb_loop_run_once(loop, 5);
    }
    assert_true(sent > 512 * 1024);
    for (int i = 0; i < 20; i++)
        nb_loop_run_once(loop, 5);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(bfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(bfd); /* RST */

    size_t got = 0;
    bool bad = false, eof = false;
    uint8_t rb[65536];
    start = nb_now_ms();
    while (!eof && nb_now_ms() - start < 10000) {
        nb_loop_run_once(loop, 5);
        for (;;) {
            ssize_t r = recv(cfd, rb, sizeof rb, MSG_DONTWAIT);
            if (r > 0) {
                for (ssize_t i = 0; i < r; i++)
                    if (rb[i] != buf[got + (size_t)i])
                        bad = true;
                got += (size_t)r;
                continue;
            }
            if (r == 0)
                eof = true;
            else if (errno != EAGAIN)
                fail_msg("client saw an error after %zu of %zu bytes: %s", got, sent,
                         strerror(errno));
            break;
        }
    }
    assert_true(eof);
    assert_false(bad);
    /* Every byte the relay read from the backend reached the client. */
    assert_true(relay_finished);
    assert_int_equal(got, result.bytes_down);
    assert_true(result.reason != NULL); /* the relay knows it ended on an error */
    close(cfd);
    free(buf);
    nb_listener_close(lst);
    for (int i = 0; i < 10; i++)
        nb_loop_run_once(loop, 5);
    assert_int_equal(nb_tcp_streams_live(), 0);
    assert_int_equal(nb_relay_live(), 0);
    nb_loop_free(loop);
}

static void test_cancel_resets_both(void **state)
{
    int cfd, bfd;
    struct nb_listener *lst;
    struct nb_relay *r;
    loop = nb_loop_new();
    relay_finished = false;
    make_pair(&cfd, &bfd, &lst);
    assert_int_equal(nb_relay_start(loop, accepted[0], accepted[1], NULL, done, NULL, &r), 0);
    assert_int_equal(send(cfd, "x", 1, 0), 1);
    while (result.bytes_up == 0 && !relay_finished) {
        nb_loop_run_once(loop, 5);
        char c;
        if (recv(bfd, &c, 1, MSG_DONTWAIT) == 1)
            break;
    }
    nb_relay_cancel(r);
    for (int i = 0; i < 10; i++)
        nb_loop_run_once(loop, 5);
    assert_true(relay_finished);
    assert_string_equal(result.reason, "cancelled");
    char c;
    assert_int_equal(recv(cfd, &c, 1, 0), -1);
    assert_int_equal(errno, ECONNRESET);
    close(cfd);
    close(bfd);
    nb_listener_close(lst);
    nb_loop_run_once(loop, 5);
    assert_int_equal(nb_tcp_streams_live(), 0);
    nb_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_reset_keeps_relayed_bytes),
        cmocka_unit_test(test_cancel_resets_both),
    };
    return cmocka_run_group_tests_name("core/relay", tests, NULL, NULL);
}
