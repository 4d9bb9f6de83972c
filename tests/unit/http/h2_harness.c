/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Test-only HTTPS front for tests/interop/http2_test.sh: listens on 127.0.0.1:<port> with TLS
 * (a self-signed certificate for "localhost" and "h2.test", ALPN "h2","http/1.1"), hands each
 * connection to http_server_accept_h2 or http_server_accept by the negotiated ALPN (what the
 * main listener will do), and serves it with the real reverse proxy (http/proxy.c) forwarding
 * every host to http://127.0.0.1:<upstream>/ (direct_upstream).
 *
 *   h2_harness <port> <upstream-port> [idle-timeout-ms]
 *
 * GET /__h2stats (any host, any protocol) answers the server counters and the heap in use
 * (mallinfo2) as "key=value" lines, without going upstream. Access-log records go to stderr as
 * "ACCESS <method> <host> <path> <status> <up> <down>". SIGTERM: graceful drain
 * (http_server_drain), exit when the last connection is gone; SIGINT: exit now.
 */
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
#include "tls/cert.h"
#include "tls/tls.h"

#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct nb_loop *loop;
static struct http_server *srv;
static struct http_proxy *proxy;
static struct tls_ctx *tctx;
static struct tls_cert *cert;
static struct http_handler proxy_h;
static struct nb_timer drain_t;

static int host_dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                     void *arg, struct nb_stream **out)
{
    return nb_tcp_connect(loop, dst, 0, cbs, arg, out);
}

static void sink(void *arg, const struct nb_access_log_entry *e)
{
    fprintf(stderr, "ACCESS %s %s %s %d %" PRId64 " %" PRId64 "\n", e->method, e->host, e->path,
            e->response_code, e->bytes_upload, e->bytes_download);
}

static void on_request(void *arg, struct http_req *r)
{
    if (r->path_len == 10 && memcmp(r->path, "/__h2stats", 10) == 0) {
        struct http_server_stats st;
        http_server_stats(srv, &st);
        struct mallinfo2 mi = mallinfo2();
        char body[512];
        int n =
            snprintf(body, sizeof body,
                     "conns=%u\nconns_accepted=%" PRIu64 "\nh2_conns=%" PRIu64 "\nrequests=%" PRIu64
                     "\nbad_requests=%" PRIu64 "\ntoo_large=%" PRIu64 "\nclient_aborts=%" PRIu64
                     "\nidle_timeouts=%" PRIu64 "\nheader_timeouts=%" PRIu64 "\nh2_goaways=%" PRIu64
                     "\nh2_stream_errors=%" PRIu64 "\nheap=%zu\n",
                     http_server_conns(srv), st.conns_accepted, st.h2_conns, st.requests,
                     st.bad_requests, st.too_large, st.client_aborts, st.idle_timeouts,
                     st.header_timeouts, st.h2_goaways, st.h2_stream_errors, mi.uordblks);
        (void)http_resp_simple(r, 200, "text/plain", NULL, body, (size_t)n);
        return;
    }
    proxy_h.on_request(proxy_h.arg, r);
}

/* A TLS connection until its handshake is done. */
struct pending {
    struct nb_stream *s;
};

static void p_connect(void *arg, struct nb_stream *s, const char *err)
{
    struct pending *p = arg;
    free(p);
    if (err) {
        nb_stream_close(s, true);
        return;
    }
    struct tls_info ti;
    struct http_conn_info info = {.tls = true};
    if (tls_stream_info(s, &ti) == NB_OK && strcmp(ti.alpn, "h2") == 0)
        (void)http_server_accept_h2(srv, s, &info);
    else
        (void)http_server_accept(srv, s, &info);
}

static void p_error(void *arg, struct nb_stream *s, const char *err)
{
    free(arg);
    nb_stream_close(s, true);
}

static const struct nb_stream_cbs pending_cbs = {.on_connect = p_connect, .on_error = p_error};

static void on_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    struct nb_stream *t;
    struct pending *p = calloc(1, sizeof *p);
    if (p == NULL || tls_server_wrap(tctx, s, NULL, 0, 5000, &t) != NB_OK) {
        free(p);
        nb_stream_close(s, true);
        return;
    }
    p->s = t;
    nb_stream_set_cbs(t, &pending_cbs, p);
}

static struct tls_cert *select_cert(void *arg, const struct tls_hello *h)
{
    return cert;
}

static void drain_check(struct nb_timer *t)
{
    if (http_server_conns(srv) == 0)
        nb_loop_stop(loop);
    else
        nb_timer_arm(loop, &drain_t, 50);
}

static void on_signal(void *arg, int signo)
{
    if (signo == SIGTERM) {
        fprintf(stderr, "draining\n");
        http_server_drain(srv);
        nb_timer_arm(loop, &drain_t, 0);
    } else {
        nb_loop_stop(loop);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s <port> <upstream-port> [idle-timeout-ms]\n", argv[0]);
        return 2;
    }
    setvbuf(stderr, NULL, _IOLBF, 0);
    loop = nb_loop_new();
    static const char *const names[] = {"localhost", "h2.test"};
    if (tls_selfsigned_new(names, 2, 1, &cert) != NB_OK)
        return 1;
    struct tls_server_opts so = {.select = select_cert, .alpn = "h2,http/1.1"};
    if (tls_ctx_new_server(&so, &tctx) != NB_OK)
        return 1;
    struct http_client *client = http_client_new(loop, NULL);
    struct http_fwd_cfg fwd;
    http_fwd_cfg_init(&fwd);
    struct nb_access_log *alog;
    if (nb_access_log_new(NULL, NULL, &alog) != NB_OK ||
        nb_access_log_add_sink(alog, sink, NULL) != NB_OK)
        return 1;
    struct nb_dialer host = {host_dial, NULL};
    struct http_proxy_opts po = {.client = client, .fwd = &fwd, .access_log = alog, .host = &host};
    proxy = http_proxy_new(loop, &po);
    proxy_h = http_proxy_handler(proxy);
    char target[64];
    snprintf(target, sizeof target, "http://127.0.0.1:%s/", argv[2]);
    const char *domains[] = {"localhost", "h2.test"};
    for (int i = 0; i < 2; i++) {
        struct nb_path_mapping pm = {.path = "/", .target = target};
        pm.options.direct_upstream = true;
        char id[16];
        snprintf(id, sizeof id, "svc-%d", i);
        struct nb_mapping m = {.type = NB_UPDATE_CREATED,
                               .id = id,
                               .account_id = "acct",
                               .domain = (char *)domains[i],
                               .paths = &pm,
                               .n_paths = 1};
        struct http_service *svc;
        char warn[128], err[128];
        if (http_service_new(&m, &svc, warn, sizeof warn) != NB_OK ||
            http_proxy_add(proxy, svc, err, sizeof err) != NB_OK)
            return 1;
        http_service_unref(svc);
    }
    struct http_server_opts so2 = {.idle_timeout_ms = argc > 3 ? (uint32_t)atoi(argv[3]) : 0};
    struct http_handler h = {on_request, NULL};
    srv = http_server_new(loop, &so2, &h);
    struct sockaddr_storage a;
    socklen_t al;
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%s", argv[1]);
    struct nb_listener *l;
    if (nb_addr_parse(addr, &a, &al) != NB_OK ||
        nb_tcp_listen(loop, (struct sockaddr *)&a, 128, on_accept, NULL, &l) != NB_OK) {
        fprintf(stderr, "cannot listen on %s\n", addr);
        return 1;
    }
    nb_timer_init(&drain_t, drain_check, NULL);
    (void)nb_loop_watch_signals(loop, on_signal, NULL);
    fprintf(stderr, "listening on %s\n", addr);
    nb_loop_run(loop);
    nb_listener_close(l);
    nb_timer_cancel(&drain_t);
    http_server_free(srv);
    http_proxy_free(proxy);
    http_client_free(client);
    for (int i = 0; i < 10; i++)
        nb_loop_run_once(loop, 1);
    nb_access_log_free(alog);
    http_fwd_cfg_deinit(&fwd);
    tls_ctx_unref(tctx);
    tls_cert_unref(cert);
    nb_loop_free(loop);
    fprintf(stderr, "exited\n");
    return 0;
}
