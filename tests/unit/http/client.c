/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * http/client: exchanges against a scripted backend on loopback (plain sockets driven from the
 * test's pump loop), plus a fake dialer for connects that never finish. Checks framing both
 * ways, reuse, limits, retries, timeouts, errors, backpressure and upgrades.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http/client.h"
#include "platform/addr.h"
#include "platform/arena.h"
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
static struct http_client *cl;

/* ---- scripted backend ---- */

enum script {
    S_OK,          /* 200 + "hello" (Content-Length) */
    S_CHUNKED,     /* 200 chunked "hello world" */
    S_CLOSE,       /* HTTP/1.0 200, body until close */
    S_ECHO,        /* 200 with the request body echoed */
    S_CLOSE_AFTER, /* S_OK, then close the connection (no Connection: close) */
    S_DROP,        /* close without answering */
    S_DROP_ONCE,   /* close without answering, then behave like S_OK */
    S_SILENT,      /* never answer */
    S_GARBAGE,     /* not HTTP */
    S_RESET_MID,   /* head + part of the body, then reset */
    S_BIG,         /* 200 with 1 MiB body */
    S_UPGRADE,     /* 101 + "leftover" */
    S_EARLY,       /* 103 then 200 */
    S_HEAD,        /* 200 with Content-Length: 42 and no body (HEAD) */
    S_EMPTY,       /* 200 with Content-Length: 0 */
};

static int lfd = -1;
static uint16_t bport;
static int accepts;
static enum script script;
static struct bconn {
    int fd;
    char in[1 << 16];
    size_t len;
    int served;
    uint64_t reset_at; /* loop time to reset the connection, 0 = never */
} bc[8];
static char last_request[1 << 16];

static void backend_start(void)
{
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 16), 0);
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    bport = ntohs(a.sin_port);
    accepts = 0;
    for (int i = 0; i < 8; i++)
        bc[i].fd = -1;
}

static void backend_stop(void)
{
    for (int i = 0; i < 8; i++)
        if (bc[i].fd >= 0) {
            close(bc[i].fd);
            bc[i].fd = -1;
        }
    close(lfd);
}

static void bsend(int fd, const void *d, size_t n)
{
    const char *p = d;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
            nb_loop_run_once(loop, 1);
            continue;
        }
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void bclose(struct bconn *b, bool reset)
{
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(b->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(b->fd);
    b->fd = -1;
}

/* Length of a complete request in b->in (head + body), or 0. */
static size_t request_complete(struct bconn *b)
{
    b->in[b->len] = '\0';
    char *e = strstr(b->in, "\r\n\r\n");
    if (e == NULL)
        return 0;
    size_t head = (size_t)(e + 4 - b->in);
    char *clh = strcasestr(b->in, "content-length:");
    if (clh && clh < e) {
        size_t n = strtoul(clh + 15, NULL, 10);
        return b->len >= head + n ? head + n : 0;
    }
    if (strcasestr(b->in, "transfer-encoding: chunked")) {
        char *z = strstr(e + 4, "0\r\n\r\n");
        return z ? (size_t)(z + 5 - b->in) : 0;
    }
    return head;
}

static void serve(struct bconn *b, size_t reqlen)
{
    memcpy(last_request, b->in, reqlen);
    last_request[reqlen] = '\0';
    b->served++;
    char buf[256];
    switch (script) {
    case S_OK:
    case S_CLOSE_AFTER: {
        static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        bsend(b->fd, r, sizeof r - 1);
        if (script == S_CLOSE_AFTER)
            bclose(b, false);
        break;
    }
    case S_CHUNKED: {
        static const char r[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42 \r\n\r\n";
        bsend(b->fd, r, sizeof r - 1);
        break;
    }
    case S_CLOSE: {
        static const char r[] = "HTTP/1.0 200 OK\r\n\r\nuntil close";
        bsend(b->fd, r, sizeof r - 1);
        bclose(b, false);
        break;
    }
    case S_ECHO: {
        char *body = strstr(last_request, "\r\n\r\n") + 4;
        int n = snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
                         strlen(body));
        bsend(b->fd, buf, (size_t)n);
        bsend(b->fd, body, strlen(body));
        break;
    }
    case S_DROP:
        bclose(b, false);
        break;
    case S_DROP_ONCE:
        bclose(b, false);
        script = S_OK;
        break;
    case S_SILENT:
        break;
    case S_GARBAGE:
        bsend(b->fd, "SSH-2.0-nope\r\n\r\n", 16);
        break;
    case S_RESET_MID: {
        static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial";
        bsend(b->fd, r, sizeof r - 1);
        /* Reset a little later: a reset discards what the client has not read yet. */
        b->reset_at = nb_now_ms() + 50;
        break;
    }
    case S_BIG: {
        static char big[1 << 20];
        memset(big, 'b', sizeof big);
        int n =
            snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", sizeof big);
        bsend(b->fd, buf, (size_t)n);
        bsend(b->fd, big, sizeof big);
        break;
    }
    case S_UPGRADE: {
        static const char r[] =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nleftover";
        bsend(b->fd, r, sizeof r - 1);
        break;
    }
    case S_EARLY: {
        static const char r[] = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        bsend(b->fd, r, sizeof r - 1);
        break;
    }
    case S_EMPTY: {
        static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        bsend(b->fd, r, sizeof r - 1);
        break;
    }
    case S_HEAD: {
        static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n";
        bsend(b->fd, r, sizeof r - 1);
        break;
    }
    }
}

static void backend_poll(void)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0)
            break;
        accepts++;
        for (int i = 0; i < 8; i++)
            if (bc[i].fd < 0) {
                bc[i].fd = fd;
                bc[i].len = 0;
                bc[i].served = 0;
                bc[i].reset_at = 0;
                break;
            }
    }
    for (int i = 0; i < 8; i++) {
        struct bconn *b = &bc[i];
        if (b->fd < 0)
            continue;
        if (b->reset_at && nb_now_ms() >= b->reset_at) {
            bclose(b, true);
            continue;
        }
        ssize_t r = recv(b->fd, b->in + b->len, sizeof b->in - b->len - 1, 0);
        if (r == 0) {
            bclose(b, false);
            continue;
        }
        if (r > 0)
            b->len += (size_t)r;
        size_t n;
        while (b->fd >= 0 && (n = request_complete(b)) > 0) {
            serve(b, n);
            if (b->fd < 0)
                break;
            memmove(b->in, b->in + n, b->len - n);
            b->len -= n;
        }
    }
}

/* ---- the client side ---- */

struct result {
    int ready;
    int status;
    int interim;
    int64_t clen;
    bool body_flag;
    char body[1 << 21];
    size_t body_len;
    bool ended;
    bool failed;
    enum http_xerr kind;
    const char *reason;
    bool got_response;
    bool pause_on_body;
    bool send_body;
    const char *req_body;
    struct nb_stream *hijacked;
    char leftover[64];
    struct http_exchange *x;
    struct result *chain; /* start this one from on_end */
    char trailer[64];     /* first trailer field as name=value */
};

static struct nb_dialer host_dialer;

static int host_dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                     void *arg, struct nb_stream **out)
{
    return nb_tcp_connect(loop, dst, 0, cbs, arg, out);
}

static void start(struct result *r, const char *method, int64_t body_len);

static void x_ready(void *arg, struct http_exchange *x)
{
    struct result *r = arg;
    r->ready++;
    if (r->req_body) {
        assert_int_equal(http_exchange_write(x, r->req_body, strlen(r->req_body)), NB_OK);
        assert_int_equal(http_exchange_write_end(x, NULL), NB_OK);
    }
}

static void x_interim(void *arg, struct http_exchange *x, int status, const struct http_hdrs *h)
{
    ((struct result *)arg)->interim = status;
}

static void x_response(void *arg, struct http_exchange *x, const struct http_resp_info *ri)
{
    struct result *r = arg;
    r->status = ri->status;
    r->clen = ri->content_length;
    r->body_flag = ri->body;
    if (ri->status == 101) {
        const uint8_t *left;
        size_t ll;
        r->hijacked = http_exchange_hijack(x, &left, &ll);
        assert_non_null(r->hijacked);
        assert_true(ll < sizeof r->leftover);
        memcpy(r->leftover, left, ll);
    }
}

static void x_body(void *arg, struct http_exchange *x, const uint8_t *d, size_t n)
{
    struct result *r = arg;
    assert_true(r->body_len + n <= sizeof r->body);
    memcpy(r->body + r->body_len, d, n);
    r->body_len += n;
    if (r->pause_on_body)
        http_exchange_pause(x, true);
}

static void x_end(void *arg, struct http_exchange *x, const struct http_hdrs *tr)
{
    struct result *r = arg;
    r->ended = true;
    if (tr && tr->n)
        snprintf(r->trailer, sizeof r->trailer, "%.*s=%.*s", (int)tr->v[0].name_len, tr->v[0].name,
                 (int)tr->v[0].value_len, tr->v[0].value);
    if (r->chain) {
        /* The next request goes out on this connection at once, and the backend drops it
         * as if its keep-alive had just expired. */
        script = S_DROP_ONCE;
        start(r->chain, "GET", 0);
    }
}

static void x_error(void *arg, struct http_exchange *x, enum http_xerr kind, const char *reason,
                    bool got)
{
    struct result *r = arg;
    r->failed = true;
    r->kind = kind;
    r->reason = reason;
    r->got_response = got;
}

static const struct http_exchange_cbs xcbs = {
    .on_ready = x_ready,
    .on_interim = x_interim,
    .on_response = x_response,
    .on_body = x_body,
    .on_end = x_end,
    .on_error = x_error,
};

static struct http_upstream up;

static void start(struct result *r, const char *method, int64_t body_len)
{
    struct nb_arena a;
    nb_arena_init(&a);
    struct http_hdrs h;
    http_hdrs_init(&h, &a);
    assert_int_equal(http_hdrs_add_copy(&h, "Host", "backend.test"), NB_OK);
    struct http_out_req rq = {method, strlen(method), "/x?y=1", 6, &h, body_len};
    assert_int_equal(http_exchange_start(cl, &up, &rq, &xcbs, r, &r->x), NB_OK);
    nb_arena_deinit(&a); /* the head was copied */
}

static void pump_until(bool *flag1, bool *flag2, int max_ms)
{
    uint64_t end = nb_now_ms() + (uint64_t)max_ms;
    while (nb_now_ms() < end && !*flag1 && !(flag2 && *flag2)) {
        nb_loop_run_once(loop, 2);
        backend_poll();
    }
}

static void pump_for(int ms)
{
    uint64_t end = nb_now_ms() + (uint64_t)ms;
    while (nb_now_ms() < end) {
        nb_loop_run_once(loop, 2);
        backend_poll();
    }
}

static struct result *res_new(void)
{
    return calloc(1, sizeof(struct result));
}

static int setup_with(const struct http_client_opts *o)
{
    loop = nb_loop_new();
    cl = http_client_new(loop, o);
    backend_start();
    host_dialer = (struct nb_dialer){host_dial, NULL};
    memset(&up, 0, sizeof up);
    up.dialer = &host_dialer;
    up.net = &host_dialer;
    nb_addr_from_ip("127.0.0.1", bport, &up.addr, NULL);
    script = S_OK;
    return 0;
}

static int setup(void **state)
{
    return setup_with(NULL);
}

static int teardown(void **state)
{
    http_client_free(cl);
    backend_stop();
    for (int i = 0; i < 10; i++)
        nb_loop_run_once(loop, 1);
    assert_int_equal(nb_tcp_streams_live(), 0);
    nb_loop_free(loop);
    return 0;
}

static void test_get_and_reuse(void **state)
{
    struct result *a = res_new(), *b = res_new();
    start(a, "GET", 0);
    pump_until(&a->ended, &a->failed, 2000);
    assert_true(a->ended);
    assert_int_equal(a->ready, 1);
    assert_int_equal(a->status, 200);
    assert_int_equal(a->clen, 5);
    assert_memory_equal(a->body, "hello", 5);
    assert_non_null(strstr(last_request, "GET /x?y=1 HTTP/1.1\r\nHost: backend.test\r\n\r\n"));
    start(b, "GET", 0);
    pump_until(&b->ended, &b->failed, 2000);
    assert_true(b->ended);
    assert_int_equal(accepts, 1);
    struct http_client_stats st;
    http_client_stats(cl, &st);
    assert_int_equal(st.conns_opened, 1);
    assert_int_equal(st.conns_reused, 1);
    assert_int_equal(st.conns_idle, 1);
    free(a);
    free(b);
}

static void test_framings(void **state)
{
    struct result *r = res_new();
    script = S_CHUNKED;
    start(r, "GET", 0);
    pump_until(&r->ended, &r->failed, 2000);
    assert_true(r->ended);
    assert_int_equal(r->body_len, 11);
    assert_memory_equal(r->body, "hello world", 11);
    assert_int_equal(r->clen, -1);
    assert_string_equal(r->trailer, "X-Sum=42");
    memset(r, 0, sizeof *r);
    script = S_CLOSE;
    start(r, "GET", 0);
    pump_until(&r->ended, &r->failed, 2000);
    assert_true(r->ended);
    assert_memory_equal(r->body, "until close", 11);
    struct http_client_stats st;
    http_client_stats(cl, &st);
    assert_int_equal(st.conns_idle, 0); /* close-delimited: never reused */
    memset(r, 0, sizeof *r);
    script = S_HEAD;
    start(r, "HEAD", 0);
    pump_until(&r->ended, &r->failed, 2000);
    assert_true(r->ended);
    assert_int_equal(r->clen, 42);
    assert_false(r->body_flag);
    assert_int_equal(r->body_len, 0);
    /* An empty Content-Length body ends with the head, and the connection is reused. */
    memset(r, 0, sizeof *r);
    script = S_EMPTY;
    struct http_client_stats before;
    http_client_stats(cl, &before);
    start(r, "GET", 0);
    pump_until(&r->ended, &r->failed, 500);
    assert_true(r->ended);
    assert_int_equal(r->body_len, 0);
    memset(r, 0, sizeof *r);
    start(r, "GET", 0);
    pump_until(&r->ended, &r->failed, 500);
    assert_true(r->ended);
    struct http_client_stats after;
    http_client_stats(cl, &after);
    assert_int_equal(after.conns_opened - before.conns_opened, 0); /* both on the pooled one */
    assert_int_equal(after.conns_reused - before.conns_reused, 2);
    memset(r, 0, sizeof *r);
    script = S_EARLY;
    start(r, "GET", 0);
    pump_until(&r->ended, &r->failed, 2000);
    assert_int_equal(r->interim, 103);
    assert_int_equal(r->status, 200);
    assert_memory_equal(r->body, "ok", 2);
    free(r);
}

static void test_request_bodies(void **state)
{
    struct result *r = res_new();
    script = S_ECHO;
    r->req_body = "payload";
    start(r, "POST", 7);
    pump_until(&r->ended, &r->failed, 2000);
    assert_true(r->ended);
    assert_non_null(strstr(last_request, "Content-Length: 7\r\n\r\npayload"));
    memset(r, 0, sizeof *r);
    r->req_body = "chunky";
    start(r, "POST", -1);
    pump_until(&r->ended, &r->failed, 2000);
    assert_true(r->ended);
    assert_non_null(strstr(last_request, "Transfer-Encoding: chunked\r\n\r\n6\r\nchunky\r\n0\r\n"));
    free(r);
}

static void test_dial_refused(void **state)
{
    struct result *r = res_new();
    close(lfd); /* nothing listens on the port any more */
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    start(r, "GET", 0);
    pump_until(&r->failed, &r->ended, 2000);
    assert_true(r->failed);
    assert_int_equal(r->kind, HTTP_XERR_DIAL);
    assert_non_null(strstr(r->reason, "refused"));
    assert_false(r->got_response);
    assert_int_equal(r->ready, 0);
    free(r);
}

/* A dialer whose streams never connect. */
struct never {
    struct nb_stream base;
    struct nb_defer d;
};
static int never_live;
static void nv_free(struct nb_defer *d)
{
    never_live--;
    free(d->arg);
}
static int nv_write(struct nb_stream *s, const void *b, size_t l)
{
    return NB_OK;
}
static size_t nv_queued(const struct nb_stream *s)
{
    return 0;
}
static void nv_pause(struct nb_stream *s, bool p)
{
}
static int nv_shutdown(struct nb_stream *s)
{
    return NB_OK;
}
static void nv_close(struct nb_stream *s, bool abort)
{
    struct never *n = (struct never *)s;
    nb_defer(loop, &n->d, nv_free, n);
}
static int nv_addrs(const struct nb_stream *s, struct sockaddr_storage *l,
                    struct sockaddr_storage *p)
{
    return NB_E_UNSUPPORTED;
}
static const struct nb_stream_vtbl never_vt = {"never",     nv_write, nv_queued, nv_pause,
                                               nv_shutdown, nv_close, nv_addrs};
static int never_dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                      void *arg, struct nb_stream **out)
{
    struct never *n = calloc(1, sizeof *n);
    nb_stream_init(&n->base, &never_vt, loop);
    nb_stream_set_cbs(&n->base, cbs, arg);
    never_live++;
    *out = &n->base;
    return NB_OK;
}

static void test_dial_timeout(void **state)
{
    struct nb_dialer nd = {never_dial, NULL};
    up.dialer = &nd;
    up.net = &nd;
    up.dial_timeout_ms = 100;
    struct result *r = res_new();
    start(r, "GET", 0);
    pump_until(&r->failed, &r->ended, 2000);
    assert_true(r->failed);
    assert_int_equal(r->kind, HTTP_XERR_TIMEOUT);
    pump_for(10);
    assert_int_equal(never_live, 0);
    free(r);
}

static void test_inflight_and_per_host_limits(void **state)
{
    http_client_free(cl);
    struct http_client_opts o = {.max_inflight = 2, .max_conns_per_host = 1};
    cl = http_client_new(loop, &o);
    struct result *a = res_new(), *b = res_new(), *c = res_new();
    start(a, "GET", 0);
    start(b, "GET", 0);
    start(c, "GET", 0);
    pump_until(&c->failed, NULL, 1000);
    assert_true(c->failed);
    assert_int_equal(c->kind, HTTP_XERR_OVERLOADED);
    pump_until(&b->ended, &b->failed, 2000);
    assert_true(a->ended);
    assert_true(b->ended);
    assert_int_equal(accepts, 1); /* b waited for a's connection */
    free(a);
    free(b);
    free(c);
}

static void test_stale_keepalive_is_retried(void **state)
{
    struct result *a = res_new(), *b = res_new();
    script = S_OK;
    a->chain = b; /* b starts inside a's on_end: it takes a's connection at once */
    start(a, "GET", 0);
    pump_until(&a->ended, NULL, 2000);
    assert_true(a->ended);
    pump_until(&b->ended, &b->failed, 2000);
    struct http_client_stats st;
    http_client_stats(cl, &st);
    if (b->ended) {
        assert_int_equal(b->status, 200);
        assert_int_equal(st.retries, 1);
    } else {
        fail_msg("the retried request failed: %s", b->reason ? b->reason : "?");
    }
    free(a);
    free(b);
}

static void test_response_errors(void **state)
{
    http_client_free(cl);
    struct http_client_opts o = {.response_header_timeout = 100};
    cl = http_client_new(loop, &o);
    struct result *r = res_new();
    script = S_SILENT;
    start(r, "GET", 0);
    pump_until(&r->failed, &r->ended, 2000);
    assert_true(r->failed);
    assert_int_equal(r->kind, HTTP_XERR_TIMEOUT);
    memset(r, 0, sizeof *r);
    script = S_GARBAGE;
    start(r, "GET", 0);
    pump_until(&r->failed, &r->ended, 2000);
    assert_true(r->failed);
    assert_int_equal(r->kind, HTTP_XERR_PROTOCOL);
    memset(r, 0, sizeof *r);
    script = S_RESET_MID;
    start(r, "GET", 0);
    pump_until(&r->failed, &r->ended, 2000);
    assert_true(r->failed);
    assert_int_equal(r->kind, HTTP_XERR_RESET);
    assert_true(r->got_response);
    assert_int_equal(r->status, 200);
    free(r);
}

static void test_pause_resume(void **state)
{
    struct result *r = res_new();
    script = S_BIG;
    r->pause_on_body = true;
    start(r, "GET", 0);
    while (!r->ended && !r->failed) {
        size_t before = r->body_len;
        pump_for(20);
        if ((r->body_len > before || r->status) && !r->ended && !r->failed) {
            /* Paused: nothing more arrives until resumed. */
            size_t held = r->body_len;
            pump_for(20);
            assert_int_equal(r->body_len, held);
            http_exchange_pause(r->x, false);
        }
    }
    assert_true(r->ended);
    assert_int_equal(r->body_len, 1 << 20);
    for (size_t i = 0; i < r->body_len; i++)
        if (r->body[i] != 'b')
            fail_msg("byte %zu", i);
    free(r);
}

static void test_upgrade(void **state)
{
    struct result *r = res_new();
    script = S_UPGRADE;
    start(r, "GET", 0);
    pump_until(&r->ended, &r->failed, 300);
    pump_for(50);
    assert_int_equal(r->status, 101);
    assert_non_null(r->hijacked);
    assert_string_equal(r->leftover, "leftover");
    assert_false(r->failed);
    nb_stream_close(r->hijacked, true);
    free(r);
}

static void test_cancel_runs_no_callback(void **state)
{
    struct result *r = res_new();
    script = S_SILENT;
    start(r, "GET", 0);
    pump_for(30);
    http_exchange_cancel(r->x);
    pump_for(30);
    assert_false(r->failed);
    assert_false(r->ended);
    struct http_client_stats st;
    http_client_stats(cl, &st);
    assert_int_equal(st.conns_open, 0); /* cancelled mid-exchange: not reusable */
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_and_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_framings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dial_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dial_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inflight_and_per_host_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_keepalive_is_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_runs_no_callback, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
