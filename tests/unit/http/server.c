/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * http/server: a real loopback listener, a raw client socket, and a handler whose behaviour is
 * chosen by the request path. Checks framing, keep-alive, pipelining, bodies (length, chunked,
 * 100-continue), limits, timeouts, aborts, drain and hijacking.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http/server.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/loop.h"
#include "platform/sock.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct nb_loop *loop;
static struct http_server *srv;
static struct nb_listener *lst;
static struct http_listener_ctx lctx;
static uint16_t port;

/* What the handler saw. */
static int aborts;
static const char *abort_why;
static struct http_req *held;
static char body_seen[1 << 16];
static size_t body_seen_len;
static struct nb_stream *hijacked;

static struct {
    struct http_req *req;
    char buf[1 << 16];
    size_t len;
} echo;

static void h_body(void *arg, struct http_req *req, const uint8_t *d, size_t n)
{
    if (echo.len + n <= sizeof echo.buf)
        memcpy(echo.buf + echo.len, d, n);
    echo.len += n;
    if (body_seen_len + n <= sizeof body_seen) {
        memcpy(body_seen + body_seen_len, d, n);
        body_seen_len += n;
    }
}

static char last_trailer[64];

static void h_body_end(void *arg, struct http_req *req)
{
    if (req->trailers.n)
        snprintf(last_trailer, sizeof last_trailer, "%.*s=%.*s", (int)req->trailers.v[0].name_len,
                 req->trailers.v[0].name, (int)req->trailers.v[0].value_len,
                 req->trailers.v[0].value);
    assert_int_equal(http_resp_simple(req, 200, "text/plain", NULL, echo.buf, echo.len), NB_OK);
    echo.len = 0;
}

static void h_abort(void *arg, struct http_req *req, const char *why)
{
    aborts++;
    abort_why = why;
    if (req == held)
        held = NULL;
}

static const struct http_req_cbs echo_cbs = {
    .on_body = h_body, .on_body_end = h_body_end, .on_abort = h_abort};
static const struct http_req_cbs hold_cbs = {.on_body = h_body, .on_abort = h_abort};

static void hj_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    (void)nb_stream_write(s, d, n);
}

static void hj_eof(void *arg, struct nb_stream *s)
{
    nb_stream_close(s, false);
    hijacked = NULL;
}

static void hj_error(void *arg, struct nb_stream *s, const char *err)
{
    nb_stream_close(s, true);
    hijacked = NULL;
}

static const struct nb_stream_cbs hj_cbs = {
    .on_data = hj_data, .on_eof = hj_eof, .on_error = hj_error};

static bool path_is(const struct http_req *r, const char *p)
{
    return r->path_len == strlen(p) && memcmp(r->path, p, r->path_len) == 0;
}

static void on_request(void *arg, struct http_req *r)
{
    if (path_is(r, "/hello")) {
        struct http_hdrs h;
        http_hdrs_init(&h, &r->arena);
        assert_int_equal(http_hdrs_add_copy(&h, "X-Query", r->query ? "yes" : "no"), NB_OK);
        assert_int_equal(http_resp_simple(r, 200, "text/plain", &h, "hello", 5), NB_OK);
    } else if (path_is(r, "/echo")) {
        http_req_set_cbs(r, &echo_cbs, NULL);
        http_req_read_body(r);
    } else if (path_is(r, "/stream")) {
        assert_int_equal(http_resp_head(r, 200, NULL, -1), NB_OK);
        assert_int_equal(http_resp_body(r, "one,", 4), NB_OK);
        assert_int_equal(http_resp_body(r, "two,", 4), NB_OK);
        assert_int_equal(http_resp_body(r, "three", 5), NB_OK);
        struct http_hdrs t;
        http_hdrs_init(&t, &r->arena);
        assert_int_equal(http_hdrs_add_copy(&t, "X-Done", "yes"), NB_OK);
        http_resp_end_trailers(r, &t);
    } else if (path_is(r, "/short")) {
        /* Declares 10 bytes and ends after 3: the client must see a reset, not a response. */
        assert_int_equal(http_resp_head(r, 200, NULL, 10), NB_OK);
        assert_int_equal(http_resp_body(r, "abc", 3), NB_OK);
        http_resp_end(r);
    } else if (path_is(r, "/early")) {
        assert_int_equal(http_resp_simple(r, 413, "text/plain", NULL, "no", 2), NB_OK);
    } else if (path_is(r, "/hold")) {
        held = r;
        http_req_set_cbs(r, &hold_cbs, NULL);
        http_req_read_body(r);
    } else if (path_is(r, "/upgrade")) {
        assert_true(r->upgrade);
        struct http_hdrs h;
        http_hdrs_init(&h, &r->arena);
        assert_int_equal(http_hdrs_add_copy(&h, "Connection", "Upgrade"), NB_OK);
        assert_int_equal(http_hdrs_add_copy(&h, "Upgrade", "echo"), NB_OK);
        assert_int_equal(http_resp_head(r, 101, &h, -1), NB_OK);
        const uint8_t *left;
        size_t ll;
        hijacked = http_req_hijack(r, &left, &ll);
        assert_non_null(hijacked);
        nb_stream_set_cbs(hijacked, &hj_cbs, NULL);
        if (ll)
            (void)nb_stream_write(hijacked, left, ll);
        nb_stream_pause(hijacked, false);
    } else {
        assert_int_equal(http_resp_simple(r, 404, "text/plain", NULL, "nf", 2), NB_OK);
    }
}

static const struct http_handler handler = {.on_request = on_request};

static int setup_opts(const struct http_server_opts *o)
{
    loop = nb_loop_new();
    srv = http_server_new(loop, o, &handler);
    lctx.server = srv;
    struct sockaddr_storage a;
    socklen_t al;
    nb_addr_parse("127.0.0.1:0", &a, &al);
    if (nb_tcp_listen(loop, (struct sockaddr *)&a, 64, http_server_accept_cb, &lctx, &lst) != 0)
        return -1;
    struct sockaddr_storage la;
    lst->vt->addr(lst, &la);
    port = nb_addr_port((struct sockaddr *)&la);
    aborts = 0;
    abort_why = NULL;
    held = NULL;
    body_seen_len = 0;
    echo.len = 0;
    return 0;
}

static int setup(void **state)
{
    return setup_opts(NULL);
}

static int setup_short_timeouts(void **state)
{
    struct http_server_opts o = {.read_header_timeout_ms = 200, .idle_timeout_ms = 300};
    return setup_opts(&o);
}

static int teardown(void **state)
{
    nb_listener_close(lst);
    http_server_free(srv);
    for (int i = 0; i < 5; i++)
        nb_loop_run_once(loop, 0);
    assert_int_equal(nb_tcp_streams_live(), 0);
    nb_loop_free(loop);
    return 0;
}

static int client(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void send_str(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
            nb_loop_run_once(loop, 5);
            continue;
        }
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

struct rx {
    char buf[1 << 17];
    size_t len;
    bool closed;
    bool reset;
};

/* Runs the loop and reads until `until` appears (count times) or the peer closes, at most
 * max_ms. */
static void pump(int fd, struct rx *rx, const char *until, int count, int max_ms)
{
    uint64_t end = nb_now_ms() + (uint64_t)max_ms;
    while (nb_now_ms() < end && !rx->closed) {
        nb_loop_run_once(loop, 5);
        for (;;) {
            ssize_t r = recv(fd, rx->buf + rx->len, sizeof rx->buf - rx->len - 1, 0);
            if (r > 0) {
                rx->len += (size_t)r;
                rx->buf[rx->len] = '\0';
                continue;
            }
            if (r == 0)
                rx->closed = true;
            else if (errno == ECONNRESET)
                rx->closed = rx->reset = true;
            break;
        }
        if (until) {
            int n = 0;
            for (const char *p = rx->buf; (p = strstr(p, until)) != NULL; p++)
                n++;
            if (n >= count)
                return;
        }
    }
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void test_keepalive_and_pipelining(void **state)
{
    int fd = client();
    struct rx rx = {0};
    send_str(fd, "GET /hello?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
    pump(fd, &rx, "hello", 1, 2000);
    assert_non_null(strstr(rx.buf, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(rx.buf, "Content-Length: 5\r\n"));
    assert_non_null(strstr(rx.buf, "X-Query: yes\r\n"));
    assert_non_null(strstr(rx.buf, "Date: "));
    assert_null(strstr(rx.buf, "Connection: close"));
    /* Three pipelined requests in one write: three responses, in order. */
    rx.len = 0;
    send_str(fd, "GET /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\n"
                 "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    pump(fd, &rx, "HTTP/1.1 ", 3, 2000);
    pump(fd, &rx, "abc", 1, 2000);
    char *a = strstr(rx.buf, "200 OK"), *b = strstr(rx.buf, "404 Not Found"),
         *c = strstr(rx.buf, "\r\n\r\nabc");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a < b && b < c);
    assert_false(rx.closed);
    close(fd);
}

static void test_chunked_request_and_response(void **state)
{
    int fd = client();
    struct rx rx = {0};
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
    pump(fd, &rx, "hello world", 1, 2000);
    assert_non_null(strstr(rx.buf, "Content-Length: 11\r\n\r\nhello world"));
    assert_string_equal(last_trailer, "X-Trailer=t");
    /* A chunked request body ends the connection's keep-alive only if unread; this one was
     * read whole, so the connection stays. */
    assert_false(rx.closed);
    rx.len = 0;
    send_str(fd, "GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
    pump(fd, &rx, "yes\r\n\r\n", 1, 2000);
    assert_non_null(strstr(rx.buf, "Transfer-Encoding: chunked\r\n"));
    assert_non_null(
        strstr(rx.buf, "\r\n\r\n4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\nX-Done: yes\r\n\r\n"));
    close(fd);
}

static void test_http10(void **state)
{
    int fd = client();
    struct rx rx = {0};
    send_str(fd, "GET /stream HTTP/1.0\r\n\r\n");
    pump(fd, &rx, NULL, 0, 2000);
    assert_true(rx.closed);
    assert_non_null(strstr(rx.buf, "HTTP/1.1 200 OK\r\n"));
    assert_null(strstr(rx.buf, "chunked"));
    assert_non_null(strstr(rx.buf, "Connection: close\r\n"));
    assert_non_null(strstr(rx.buf, "\r\n\r\none,two,three"));
    close(fd);
    /* keep-alive asked for and a known length: kept. */
    fd = client();
    memset(&rx, 0, sizeof rx);
    send_str(fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    pump(fd, &rx, "hello", 1, 2000);
    assert_non_null(strstr(rx.buf, "Connection: keep-alive\r\n"));
    assert_false(rx.closed);
    close(fd);
}

static void test_expect_continue(void **state)
{
    int fd = client();
    struct rx rx = {0};
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                 "Expect: 100-continue\r\n\r\n");
    pump(fd, &rx, "100 Continue", 1, 2000);
    assert_non_null(strstr(rx.buf, "HTTP/1.1 100 Continue\r\n\r\n"));
    send_str(fd, "data");
    pump(fd, &rx, "data", 1, 2000);
    assert_non_null(strstr(rx.buf, "200 OK"));
    close(fd);
}

static void test_bad_and_too_big(void **state)
{
    int fd = client();
    struct rx rx = {0};
    send_str(fd,
             "GET /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    pump(fd, &rx, NULL, 0, 2000);
    assert_true(rx.closed);
    assert_non_null(strstr(rx.buf, "HTTP/1.1 400 Bad Request\r\n"));
    close(fd);

    fd = client();
    memset(&rx, 0, sizeof rx);
    static char big[HTTP_SERVER_MAX_HEAD + 100];
    strcpy(big, "GET /hello HTTP/1.1\r\nHost: a\r\nX-Big: ");
    size_t l = strlen(big);
    memset(big + l, 'a', sizeof big - l - 1);
    send_str(fd, big);
    pump(fd, &rx, NULL, 0, 2000);
    assert_true(rx.closed);
    assert_non_null(strstr(rx.buf, "HTTP/1.1 431 "));
    close(fd);
    struct http_server_stats st;
    http_server_stats(srv, &st);
    assert_int_equal(st.bad_requests, 1);
    assert_int_equal(st.too_large, 1);
}

static void test_early_response_discards_small_body(void **state)
{
    int fd = client();
    struct rx rx = {0};
    /* The handler answers without reading a small body: the body is dropped, the connection
     * kept, and the next request is parsed correctly after it. */
    send_str(fd, "POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789"
                 "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
    pump(fd, &rx, "hello", 1, 2000);
    assert_non_null(strstr(rx.buf, "413 Request Entity Too Large"));
    assert_int_equal(count_of(rx.buf, "HTTP/1.1 "), 2);
    assert_false(rx.closed);
    close(fd);
    /* A large unread body: the response says close. */
    fd = client();
    memset(&rx, 0, sizeof rx);
    send_str(fd, "POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n");
    pump(fd, &rx, NULL, 0, 2000);
    assert_non_null(strstr(rx.buf, "Connection: close\r\n"));
    assert_true(rx.closed);
    close(fd);
}

static void test_short_response_is_reset(void **state)
{
    int fd = client();
    struct rx rx = {0};
    send_str(fd, "GET /short HTTP/1.1\r\nHost: a\r\n\r\n");
    pump(fd, &rx, NULL, 0, 2000);
    assert_true(rx.closed);
    assert_true(rx.reset);
    close(fd);
}

static void test_client_abort_mid_body(void **state)
{
    int fd = client();
    struct rx rx = {0};
    send_str(fd, "POST /hold HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\npartial");
    pump(fd, &rx, NULL, 0, 200);
    assert_non_null(held);
    assert_int_equal(body_seen_len, 7);
    close(fd); /* FIN with 93 bytes missing */
    for (int i = 0; i < 50 && aborts == 0; i++)
        nb_loop_run_once(loop, 10);
    assert_int_equal(aborts, 1);
    assert_null(held);
}

/* A client that leaves while its (bodiless) request is handled cancels it, as in Go. */
static void test_client_gone_while_handled(void **state)
{
    int fd = client();
    struct rx rx = {0};
    send_str(fd, "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n");
    pump(fd, &rx, NULL, 0, 200);
    assert_non_null(held);
    assert_int_equal(aborts, 0);
    close(fd);
    for (int i = 0; i < 50 && aborts == 0; i++)
        nb_loop_run_once(loop, 10);
    assert_int_equal(aborts, 1);
    assert_string_equal(abort_why, "client closed the connection");
    assert_null(held);
}

static void test_header_and_idle_timeouts(void **state)
{
    int fd = client();
    struct rx rx = {0};
    send_str(fd, "GET /hello HTTP/1.1\r\nHost:"); /* never finished */
    pump(fd, &rx, NULL, 0, 1500);
    assert_true(rx.closed);
    assert_int_equal(rx.len, 0); /* closed silently */
    close(fd);
    fd = client();
    memset(&rx, 0, sizeof rx);
    send_str(fd, "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
    pump(fd, &rx, "hello", 1, 1000);
    assert_false(rx.closed);
    pump(fd, &rx, NULL, 0, 1500); /* idle 300 ms */
    assert_true(rx.closed);
    close(fd);
    struct http_server_stats st;
    http_server_stats(srv, &st);
    assert_int_equal(st.header_timeouts, 1);
    assert_int_equal(st.idle_timeouts, 1);
}

static void test_drain(void **state)
{
    int idle = client();
    int busy = client();
    struct rx rx = {0}, rb = {0};
    send_str(idle, "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
    pump(idle, &rx, "hello", 1, 1000);
    send_str(busy, "POST /hold HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab");
    pump(busy, &rb, NULL, 0, 100);
    assert_non_null(held);
    assert_int_equal(http_server_conns(srv), 2);
    http_server_drain(srv);
    pump(idle, &rx, NULL, 0, 500);
    assert_true(rx.closed);
    /* The busy one finishes its response, with Connection: close, then closes. */
    assert_int_equal(http_resp_simple(held, 200, "text/plain", NULL, "bye", 3), NB_OK);
    held = NULL;
    pump(busy, &rb, NULL, 0, 1000);
    assert_non_null(strstr(rb.buf, "Connection: close\r\n"));
    assert_non_null(strstr(rb.buf, "bye"));
    assert_true(rb.closed);
    assert_int_equal(http_server_conns(srv), 0);
    close(idle);
    close(busy);
}

static void test_hijack(void **state)
{
    int fd = client();
    struct rx rx = {0};
    send_str(fd, "GET /upgrade HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
                 "early-bytes");
    pump(fd, &rx, "early-bytes", 1, 2000);
    assert_non_null(strstr(rx.buf, "HTTP/1.1 101 Switching Protocols\r\n"));
    assert_non_null(strstr(rx.buf, "Upgrade: echo\r\n"));
    send_str(fd, "more");
    pump(fd, &rx, "more", 1, 2000);
    assert_int_equal(http_server_conns(srv), 0);
    close(fd);
    for (int i = 0; i < 50 && hijacked; i++)
        nb_loop_run_once(loop, 10);
    assert_null(hijacked);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keepalive_and_pipelining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_request_and_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http10, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_and_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_response_discards_small_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_response_is_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_abort_mid_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_while_handled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_and_idle_timeouts, setup_short_timeouts,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hijack, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
