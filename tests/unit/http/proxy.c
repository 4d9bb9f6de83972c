/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * http/proxy: the whole handler in one process over loopback: a client socket -> http_server
 * with the proxy handler -> http_client -> a backend (an http_server of ours that reports what
 * it received, or nothing at all for refused dials). "Accounts" are host dialers registered as
 * networks. Checks routing and scoping, error pages and their classification, the loop guard,
 * access-log records, upgrades and their closing when the service goes away.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/mapping.h"
#include "auth/restrict.h"
#include "http/accesslog.h"
#include "http/client.h"
#include "http/proxy.h"
#include "http/rewrite.h"
#include "http/route.h"
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
static struct http_client *client;
static struct http_proxy *proxy;
static struct http_fwd_cfg fwd;
static struct nb_access_log *alog;
static struct http_server *front, *back;
static struct nb_listener *front_l, *overlay_l, *back_l;
static struct http_listener_ctx front_ctx, overlay_ctx, back_ctx;
static uint16_t front_port, overlay_port, back_port;
static struct nb_dialer host_dialer;

/* access-log records seen by a sink */
static struct {
    int n;
    int status;
    char service[64];
    char host[64];
    char log_id[32];
    char mech[32];
    int64_t down;
} seen;

static void sink(void *arg, const struct nb_access_log_entry *e)
{
    seen.n++;
    seen.status = e->response_code;
    snprintf(seen.service, sizeof seen.service, "%s", e->service_id);
    snprintf(seen.host, sizeof seen.host, "%s", e->host);
    snprintf(seen.log_id, sizeof seen.log_id, "%s", e->log_id);
    snprintf(seen.mech, sizeof seen.mech, "%s", e->auth_mechanism);
    seen.down = e->bytes_download;
}

static int host_dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                     void *arg, struct nb_stream **out)
{
    return nb_tcp_connect(loop, dst, 0, cbs, arg, out);
}

/* ---- the backend: reports the request, or upgrades to an echo ---- */

static struct nb_stream *back_upgraded;

static void bu_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    (void)nb_stream_write(s, d, n);
}
static void bu_end(void *arg, struct nb_stream *s)
{
    if (back_upgraded == s)
        back_upgraded = NULL;
    nb_stream_close(s, true);
}
static void bu_err(void *arg, struct nb_stream *s, const char *e)
{
    bu_end(arg, s);
}
static const struct nb_stream_cbs bu_cbs = {bu_data, bu_end, NULL, bu_err, NULL};

static void back_request(void *arg, struct http_req *r)
{
    if (r->upgrade) {
        struct http_hdrs h;
        http_hdrs_init(&h, &r->arena);
        assert_int_equal(http_hdrs_add_copy(&h, "Connection", "Upgrade"), NB_OK);
        assert_int_equal(http_hdrs_add_copy(&h, "Upgrade", "echo"), NB_OK);
        assert_int_equal(http_resp_head(r, 101, &h, -1), NB_OK);
        const uint8_t *left;
        size_t ll;
        back_upgraded = http_req_hijack(r, &left, &ll);
        assert_non_null(back_upgraded);
        nb_stream_set_cbs(back_upgraded, &bu_cbs, NULL);
        nb_stream_pause(back_upgraded, false);
        return;
    }
    /* The body: the request line and every field, one per line. */
    char body[4096];
    int n = snprintf(body, sizeof body, "%.*s %.*s\n", (int)r->method_len, r->method,
                     (int)r->target_len, r->target);
    for (uint32_t i = 0; i < r->hdrs.n && n < (int)sizeof body - 200; i++)
        n += snprintf(body + n, sizeof body - (size_t)n, "%.*s: %.*s\n", (int)r->hdrs.v[i].name_len,
                      r->hdrs.v[i].name, (int)r->hdrs.v[i].value_len, r->hdrs.v[i].value);
    assert_int_equal(http_resp_simple(r, 200, "text/plain", NULL, body, (size_t)n), NB_OK);
}

static uint16_t listen_on(struct http_listener_ctx *ctx, struct nb_listener **l)
{
    struct sockaddr_storage a;
    socklen_t al;
    nb_addr_parse("127.0.0.1:0", &a, &al);
    assert_int_equal(nb_tcp_listen(loop, (struct sockaddr *)&a, 64, http_server_accept_cb, ctx, l),
                     NB_OK);
    struct sockaddr_storage la;
    (*l)->vt->addr(*l, &la);
    return nb_addr_port((struct sockaddr *)&la);
}

/* Adds an HTTP service: domain -> http://127.0.0.1:port/ in account acct. */
static struct auth_restrict *next_restrictions; /* given to the next add_service */

static int add_service(const char *id, const char *acct, const char *domain, uint16_t port,
                       bool direct, bool private_)
{
    char target[64];
    snprintf(target, sizeof target, "http://127.0.0.1:%u/", port);
    struct nb_path_mapping pm = {.path = "/", .target = target};
    pm.options.direct_upstream = direct;
    pm.options.request_timeout_ms = 2000;
    struct nb_mapping m = {.type = NB_UPDATE_CREATED,
                           .id = (char *)id,
                           .account_id = (char *)acct,
                           .domain = (char *)domain,
                           .paths = &pm,
                           .n_paths = 1,
                           .restrictions = next_restrictions,
                           .private_service = private_};
    struct http_service *svc;
    char warn[128], err[128];
    assert_int_equal(http_service_new(&m, &svc, warn, sizeof warn), NB_OK);
    int rc = http_proxy_add(proxy, svc, err, sizeof err);
    http_service_unref(svc);
    auth_restrict_unref(next_restrictions); /* the service holds its own reference */
    next_restrictions = NULL;
    return rc;
}

static int setup(void **state)
{
    loop = nb_loop_new();
    client = http_client_new(loop, NULL);
    http_fwd_cfg_init(&fwd);
    assert_int_equal(nb_access_log_new(NULL, NULL, &alog), NB_OK);
    assert_int_equal(nb_access_log_add_sink(alog, sink, NULL), NB_OK);
    host_dialer = (struct nb_dialer){host_dial, NULL};
    struct http_proxy_opts po = {
        .client = client, .fwd = &fwd, .access_log = alog, .host = &host_dialer};
    proxy = http_proxy_new(loop, &po);
    struct http_handler h = http_proxy_handler(proxy);
    front = http_server_new(loop, NULL, &h);
    front_ctx = (struct http_listener_ctx){.server = front};
    overlay_ctx =
        (struct http_listener_ctx){.server = front, .info = {.overlay = true, .scope = "acct-a"}};
    front_port = listen_on(&front_ctx, &front_l);
    overlay_port = listen_on(&overlay_ctx, &overlay_l);
    struct http_handler bh = {back_request, NULL};
    back = http_server_new(loop, NULL, &bh);
    back_ctx = (struct http_listener_ctx){.server = back};
    back_port = listen_on(&back_ctx, &back_l);
    assert_int_equal(http_proxy_set_network(proxy, "acct-a", &host_dialer), NB_OK);
    memset(&seen, 0, sizeof seen);
    back_upgraded = NULL;
    return 0;
}

static int teardown(void **state)
{
    nb_listener_close(front_l);
    nb_listener_close(overlay_l);
    nb_listener_close(back_l);
    http_server_free(front);
    http_proxy_free(proxy);
    http_client_free(client);
    http_server_free(back);
    if (back_upgraded)
        nb_stream_close(back_upgraded, true);
    for (int i = 0; i < 10; i++)
        nb_loop_run_once(loop, 1);
    nb_access_log_free(alog);
    http_fwd_cfg_deinit(&fwd);
    assert_int_equal(nb_tcp_streams_live(), 0);
    nb_loop_free(loop);
    return 0;
}

static int connect_to(uint16_t port)
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
    assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

struct rx {
    char buf[1 << 16];
    size_t len;
    bool closed;
};

static void pump(int fd, struct rx *rx, const char *until, int max_ms)
{
    uint64_t end = nb_now_ms() + (uint64_t)max_ms;
    while (nb_now_ms() < end && !rx->closed) {
        nb_loop_run_once(loop, 2);
        for (;;) {
            ssize_t r = recv(fd, rx->buf + rx->len, sizeof rx->buf - rx->len - 1, 0);
            if (r > 0) {
                rx->len += (size_t)r;
                rx->buf[rx->len] = '\0';
                continue;
            }
            if (r == 0 || errno == ECONNRESET)
                rx->closed = true;
            break;
        }
        if (until && strstr(rx->buf, until))
            return;
    }
}

/* One request on a fresh connection; returns the response in rx. */
static void request(uint16_t port, const char *req, struct rx *rx, const char *until)
{
    int fd = connect_to(port);
    memset(rx, 0, sizeof *rx);
    send_str(fd, req);
    pump(fd, rx, until, 3000);
    close(fd);
    for (int i = 0; i < 5; i++)
        nb_loop_run_once(loop, 1);
}

static void test_proxies_with_forwarding_headers(void **state)
{
    assert_int_equal(add_service("s1", "acct-a", "app.test", back_port, false, false), NB_OK);
    struct rx rx;
    request(front_port,
            "GET /p?q=1&session_token=x HTTP/1.1\r\nHost: app.test:8080\r\n"
            "X-Forwarded-For: 6.6.6.6\r\nX-NetBird-User: mallory\r\nConnection: keep-alive, "
            "X-Drop\r\nX-Drop: 1\r\nCookie: a=1; nb_session=secret\r\n\r\n",
            &rx, "\nX-Real-Ip");
    assert_non_null(strstr(rx.buf, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(rx.buf, "GET /p?q=1 HTTP/1.1") || strstr(rx.buf, "GET /p?q=1\n"));
    char *b = strstr(rx.buf, "\r\n\r\n");
    assert_non_null(b);
    assert_non_null(strstr(b, "Host: 127.0.0.1:"));
    assert_non_null(strstr(b, "X-Forwarded-For: 127.0.0.1\n")); /* untrusted: replaced */
    assert_non_null(strstr(b, "X-Forwarded-Host: app.test:8080\n"));
    assert_non_null(strstr(b, "X-Forwarded-Proto: http\n"));
    assert_non_null(strstr(b, "X-Forwarded-Port: 8080\n"));
    assert_non_null(strstr(b, "X-Real-Ip: 127.0.0.1\n"));
    assert_null(strstr(b, "X-NetBird-User"));
    assert_null(strstr(b, "X-Drop"));
    assert_null(strstr(b, "nb_session"));
    assert_null(strstr(b, "session_token"));
    assert_non_null(strstr(b, "Cookie: a=1\n"));
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.status, 200);
    assert_string_equal(seen.service, "s1");
    assert_string_equal(seen.host, "app.test");
}

static void test_not_found_and_errors(void **state)
{
    struct rx rx;
    request(front_port, "GET / HTTP/1.1\r\nHost: nope.test\r\n\r\n", &rx, "</html>");
    assert_non_null(strstr(rx.buf, "HTTP/1.1 404 "));
    assert_non_null(strstr(rx.buf, "\"code\":404"));
    assert_int_equal(seen.status, 404);
    /* The page's request id is the access log's log id. */
    char want[64];
    snprintf(want, sizeof want, "\"requestId\":\"%s\"", seen.log_id);
    assert_non_null(strstr(rx.buf, want));

    /* A port where nothing listens: 502 Service Unavailable. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    uint16_t dead = ntohs(a.sin_port);
    close(fd);
    assert_int_equal(add_service("s2", "acct-a", "dead.test", dead, true, false), NB_OK);
    request(front_port, "GET / HTTP/1.1\r\nHost: dead.test\r\n\r\n", &rx, "</html>");
    assert_non_null(strstr(rx.buf, "HTTP/1.1 502 "));
    assert_non_null(strstr(rx.buf, "Service Unavailable"));

    /* An account without a network: 502 Proxy Not Connected. */
    assert_int_equal(add_service("s3", "acct-b", "b.test", back_port, false, false), NB_OK);
    request(front_port, "GET / HTTP/1.1\r\nHost: b.test\r\n\r\n", &rx, "</html>");
    assert_non_null(strstr(rx.buf, "HTTP/1.1 502 "));
    assert_non_null(strstr(rx.buf, "Proxy Not Connected"));
    assert_int_equal(seen.status, 502);

    /* Private services are refused until tunnel-peer validation exists. */
    assert_int_equal(add_service("s4", "acct-a", "p.test", back_port, false, true),
                     NB_E_UNSUPPORTED);
    /* A bad %-escape is a 400 of the proxy's own. */
    request(front_port, "GET /%zz HTTP/1.1\r\nHost: b.test\r\n\r\n", &rx, "Bad Request\n");
    assert_non_null(strstr(rx.buf, "HTTP/1.1 400 "));
}

static void test_overlay_scope_and_loop_guard(void **state)
{
    assert_int_equal(add_service("s1", "acct-a", "a.test", back_port, false, false), NB_OK);
    assert_int_equal(add_service("s2", "acct-b", "b.test", back_port, true, false), NB_OK);
    struct rx rx;
    /* acct-a's overlay listener does not serve acct-b's host. */
    request(overlay_port, "GET / HTTP/1.1\r\nHost: b.test\r\n\r\n", &rx, "</html>");
    assert_non_null(strstr(rx.buf, "HTTP/1.1 404 "));
    /* Its own host: the target 127.0.0.1 is the requesting peer itself -> 421. */
    request(overlay_port, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", &rx, "</html>");
    assert_non_null(strstr(rx.buf, "HTTP/1.1 421 "));
    assert_non_null(strstr(rx.buf, "\"code\":421"));
    /* The public listener has no loop guard. */
    request(front_port, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", &rx, "X-Real-Ip");
    assert_non_null(strstr(rx.buf, "HTTP/1.1 200 "));
}

static struct auth_restrict *filter(const char *allow_cc, const char *block_cidr)
{
    const char *cc[] = {allow_cc}, *cidr[] = {block_cidr};
    struct auth_restrict_spec spec = {.allowed_countries = cc,
                                      .n_allowed_countries = allow_cc ? 1 : 0,
                                      .blocked_cidrs = cidr,
                                      .n_blocked_cidrs = block_cidr ? 1 : 0};
    struct auth_restrict *f = NULL;
    assert_int_equal(auth_restrict_new(&spec, &f, NULL), NB_OK);
    return f;
}

/* Access restrictions (spec §4.6): public listener full check, tunnel listener CIDR only. */
static void test_restrictions(void **state)
{
    struct rx rx;
    next_restrictions = filter("US", NULL); /* no geo database in this proxy */
    assert_int_equal(add_service("r1", "acct-a", "cc.test", back_port, true, false), NB_OK);
    next_restrictions = filter(NULL, "127.0.0.0/8");
    assert_int_equal(add_service("r2", "acct-a", "ip.test", back_port, true, false), NB_OK);

    request(front_port, "GET /x HTTP/1.1\r\nHost: cc.test\r\n\r\n", &rx, "Forbidden\n");
    assert_non_null(strstr(rx.buf, "HTTP/1.1 403 "));
    assert_non_null(strstr(rx.buf, "Content-Type: text/plain; charset=utf-8\r\n"));
    assert_non_null(strstr(rx.buf, "X-Content-Type-Options: nosniff\r\n"));
    assert_string_equal(seen.mech, "geo_unavailable");
    assert_string_equal(seen.service, "r1");
    /* The tunnel listener skips the country rule: the request goes on (to the loop guard, as
     * the target is the requesting peer itself). */
    request(overlay_port, "GET /x HTTP/1.1\r\nHost: cc.test\r\n\r\n", &rx, "</html>");
    assert_non_null(strstr(rx.buf, "HTTP/1.1 421 "));
    assert_string_equal(seen.mech, "");
    /* CIDR rules hold on both. */
    request(front_port, "GET /x HTTP/1.1\r\nHost: ip.test\r\n\r\n", &rx, "Forbidden\n");
    assert_non_null(strstr(rx.buf, "HTTP/1.1 403 "));
    assert_string_equal(seen.mech, "ip_restricted");
    request(overlay_port, "GET /x HTTP/1.1\r\nHost: ip.test\r\n\r\n", &rx, "Forbidden\n");
    assert_non_null(strstr(rx.buf, "HTTP/1.1 403 "));
    assert_string_equal(seen.mech, "ip_restricted");
    /* A denied request leaves the connection usable (keep-alive): http.Error does not close. */
    assert_null(strstr(rx.buf, "Connection: close"));
}

static void test_upgrade_closed_with_its_service(void **state)
{
    assert_int_equal(add_service("s1", "acct-a", "ws.test", back_port, false, false), NB_OK);
    int fd = connect_to(front_port);
    struct rx rx = {0};
    send_str(fd, "GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n"
                 "\r\nhello");
    pump(fd, &rx, "hello", 3000);
    assert_non_null(strstr(rx.buf, "HTTP/1.1 101 "));
    assert_non_null(strstr(rx.buf, "\r\n\r\nhello"));
    struct http_proxy_stats st;
    http_proxy_stats(proxy, &st);
    assert_int_equal(st.upgrades_active, 1);
    send_str(fd, "again");
    pump(fd, &rx, "again", 3000);
    assert_non_null(strstr(rx.buf, "again"));
    /* Removing the service closes its upgraded connection. */
    http_proxy_remove(proxy, "s1");
    pump(fd, &rx, NULL, 1000);
    assert_true(rx.closed);
    http_proxy_stats(proxy, &st);
    assert_int_equal(st.upgrades_active, 0);
    assert_int_equal(seen.status, 101);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_proxies_with_forwarding_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlay_scope_and_loop_guard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_closed_with_its_service, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restrictions, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
