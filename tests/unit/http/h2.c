/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * http/h2.c in memory: an nghttp2 client session (the library's client side, not ours) talks
 * to http_server_accept_h2 over a fake nb_stream whose write queue is what the client has not
 * read yet (so backpressure is real). A handler chosen by path checks the http_req fields,
 * bodies with flow control and pause, streamed responses with trailers, write_full/on_drain,
 * aborts both ways, close_after, drain, the header list limit and the idle timeout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http/server.h"
#include "platform/err.h"
#include "platform/loop.h"

#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct nb_loop *loop;
static struct http_server *srv;

/* ---- the fake stream: server -> client bytes wait in `q` until the client pumps them ---- */

struct fake {
    struct nb_stream base;
    struct nb_defer free_d;
    uint8_t *q;
    size_t qlen, qcap;
    bool closed, paused, aborted;
};
static struct fake *fk;

static nghttp2_session *cli;

static void fk_free(struct nb_defer *d)
{
    struct fake *f = d->arg;
    if (f == fk)
        fk = NULL;
    /* A graceful close flushes the queue first, as a real stream does. */
    if (!f->aborted && f->qlen && cli)
        (void)nghttp2_session_mem_recv(cli, f->q, f->qlen);
    free(f->q);
    free(f);
}

static int fk_write(struct nb_stream *s, const void *buf, size_t len)
{
    struct fake *f = (struct fake *)s;
    assert_false(f->closed);
    if (f->qlen + len > f->qcap) {
        size_t cap = f->qcap ? f->qcap : 4096;
        while (cap < f->qlen + len)
            cap *= 2;
        f->q = realloc(f->q, cap);
        assert_non_null(f->q);
        f->qcap = cap;
    }
    memcpy(f->q + f->qlen, buf, len);
    f->qlen += len;
    return NB_OK;
}

static size_t fk_queued(const struct nb_stream *s)
{
    return ((const struct fake *)s)->qlen;
}

static void fk_pause(struct nb_stream *s, bool p)
{
    ((struct fake *)s)->paused = p;
}

static int fk_shutdown(struct nb_stream *s)
{
    return NB_OK;
}

static void fk_close(struct nb_stream *s, bool abort)
{
    struct fake *f = (struct fake *)s;
    assert_false(f->closed);
    f->closed = true;
    f->aborted = abort;
    nb_defer(loop, &f->free_d, fk_free, f);
}

static int fk_addrs(const struct nb_stream *s, struct sockaddr_storage *l,
                    struct sockaddr_storage *p)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(40000)};
    a.sin_addr.s_addr = htonl(0x7f000001);
    if (l)
        memcpy(l, &a, sizeof a);
    if (p)
        memcpy(p, &a, sizeof a);
    return NB_OK;
}

static const struct nb_stream_vtbl fk_vt = {"fake",      fk_write, fk_queued, fk_pause,
                                            fk_shutdown, fk_close, fk_addrs};

/* ---- the client ---- */

#define MAXS 64
static struct cstream {
    int status;
    size_t body;
    char text[256];
    char trailer[64];
    uint32_t rst;
    bool closed;
} cs[MAXS];
static bool goaway_seen;
static uint32_t goaway_code;
static int32_t goaway_last;
static bool client_reads = true; /* false: the client stops consuming DATA */

static struct cstream *cst(int32_t sid)
{
    assert_true(sid > 0 && sid / 2 < MAXS);
    return &cs[sid / 2];
}

static int c_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl,
                    const uint8_t *v, size_t vl, uint8_t fl, void *ud)
{
    struct cstream *c = cst(f->hd.stream_id);
    if (nl == 7 && memcmp(n, ":status", 7) == 0)
        c->status = atoi((const char *)v);
    else if (f->headers.cat == NGHTTP2_HCAT_HEADERS && c->status >= 200)
        snprintf(c->trailer, sizeof c->trailer, "%.*s=%.*s", (int)nl, n, (int)vl, v);
    return 0;
}

static int c_data(nghttp2_session *s, uint8_t fl, int32_t sid, const uint8_t *d, size_t len,
                  void *ud)
{
    struct cstream *c = cst(sid);
    if (c->body + len < sizeof c->text)
        memcpy(c->text + c->body, d, len);
    c->body += len;
    return 0;
}

static int c_close(nghttp2_session *s, int32_t sid, uint32_t err, void *ud)
{
    cst(sid)->closed = true;
    cst(sid)->rst = err;
    return 0;
}

static int c_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    if (f->hd.type == NGHTTP2_GOAWAY) {
        goaway_seen = true;
        goaway_code = f->goaway.error_code;
        goaway_last = f->goaway.last_stream_id;
    }
    return 0;
}

/* Moves bytes both ways and runs the loop until nothing moves (bounded). */
static void pump(void)
{
    for (int i = 0; i < 2000; i++) {
        bool moved = false;
        const uint8_t *d;
        ssize_t n;
        while (fk && !fk->closed && !fk->paused && (n = nghttp2_session_mem_send(cli, &d)) > 0) {
            fk->base.cbs->on_data(fk->base.arg, &fk->base, d, (size_t)n);
            moved = true;
        }
        nb_loop_run_once(loop, 0);
        if (fk && fk->qlen && client_reads) {
            size_t len = fk->qlen;
            uint8_t *tmp = malloc(len);
            memcpy(tmp, fk->q, len);
            fk->qlen = 0;
            assert_true(nghttp2_session_mem_recv(cli, tmp, len) == (ssize_t)len);
            free(tmp);
            if (!fk->closed)
                nb_stream__check_drain(&fk->base);
            moved = true;
        }
        if (!moved && !nghttp2_session_want_write(cli))
            break;
    }
}

/* ---- the handler ---- */

static struct http_req *held;
static int aborts;
static int drains;
static size_t got_body;
static char fields[512];
static bool pause_mode;

static bool path_is(const struct http_req *r, const char *p)
{
    return r->path_len == strlen(p) && memcmp(r->path, p, r->path_len) == 0;
}

static void h_body(void *arg, struct http_req *r, const uint8_t *d, size_t n)
{
    got_body += n;
    if (pause_mode)
        http_req_pause_body(r, true);
}

static void h_body_end(void *arg, struct http_req *r)
{
    char out[128];
    int n = snprintf(out, sizeof out, "%zu", got_body);
    struct http_hdrs h;
    http_hdrs_init(&h, &r->arena);
    if (r->trailers.n)
        assert_int_equal(http_hdrs_add(&h, "X-Got-Trailer", 13, r->trailers.v[0].value,
                                       r->trailers.v[0].value_len),
                         NB_OK);
    if (r == held)
        held = NULL;
    assert_int_equal(http_resp_simple(r, 200, "text/plain", &h, out, (size_t)n), NB_OK);
}

static void h_abort(void *arg, struct http_req *r, const char *why)
{
    aborts++;
    if (r == held)
        held = NULL;
}

static void h_drain(void *arg, struct http_req *r)
{
    drains++;
}

static const struct http_req_cbs cbs = {h_body, h_body_end, h_drain, h_abort};

static bool crumbs_ok;

static void on_request(void *arg, struct http_req *r)
{
    http_req_set_cbs(r, &cbs, NULL);
    if (path_is(r, "/hello")) {
        assert_int_equal(http_resp_simple(r, 200, "text/plain", NULL, "hello", 5), NB_OK);
    } else if (path_is(r, "/fields")) {
        const struct http_field *ck = http_hdrs_get(&r->hdrs, "cookie");
        snprintf(fields, sizeof fields, "%.*s|%.*s|%.*s|%.*s|%s|%d|%d|%llu|%d|%.*s|%d",
                 (int)r->method_len, r->method, (int)r->path_len, r->path, (int)r->query_len,
                 r->query ? r->query : "", (int)r->host_len, r->host ? r->host : "",
                 r->info.tls ? "tls" : "plain", r->has_body, r->body_chunked,
                 (unsigned long long)r->content_length, r->is_head, ck ? (int)ck->value_len : 0,
                 ck ? ck->value : "", http_hdrs_count(&r->hdrs, "cookie"));
        assert_int_equal(http_resp_simple(r, 204, NULL, NULL, NULL, 0), NB_OK);
    } else if (path_is(r, "/crumbs")) {
        /* 300 crumbs "k0=v", "k1=v", ... arrive as one field joined with "; " in order. */
        char want[300 * 12];
        size_t n = 0;
        for (int i = 0; i < 300; i++)
            n += (size_t)snprintf(want + n, sizeof want - n, "%sk%d=v", i ? "; " : "", i);
        const struct http_field *ck = http_hdrs_get(&r->hdrs, "cookie");
        crumbs_ok = ck && ck->value_len == n && memcmp(ck->value, want, n) == 0 &&
                    ck->value[n] == '\0' && http_hdrs_count(&r->hdrs, "cookie") == 1;
        assert_int_equal(http_resp_simple(r, 204, NULL, NULL, NULL, 0), NB_OK);
    } else if (path_is(r, "/echo")) {
        got_body = 0;
        held = r;
        http_req_read_body(r);
    } else if (path_is(r, "/stream")) {
        assert_int_equal(http_resp_head(r, 103, NULL, -1), NB_OK);
        assert_int_equal(http_resp_head(r, 200, NULL, -1), NB_OK);
        assert_int_equal(http_resp_body(r, "one,", 4), NB_OK);
        assert_int_equal(http_resp_body(r, "two", 3), NB_OK);
        /* Trailer values are copied at the call (server.h): overwrite ours right after. */
        char val[4] = "yes";
        struct http_hdrs t;
        http_hdrs_init(&t, &r->arena);
        assert_int_equal(http_hdrs_add(&t, "X-Done", 6, val, 3), NB_OK);
        http_resp_end_trailers(r, &t);
        memcpy(val, "BAD", 3);
    } else if (path_is(r, "/short")) {
        assert_int_equal(http_resp_head(r, 200, NULL, 10), NB_OK);
        assert_int_equal(http_resp_body(r, "abc", 3), NB_OK);
        assert_int_equal(http_resp_body(r, "0123456789", 10), NB_E_INVAL); /* over the length */
        http_resp_end(r); /* short: must become a reset */
    } else if (path_is(r, "/abort")) {
        assert_int_equal(http_resp_head(r, 200, NULL, -1), NB_OK);
        http_resp_abort(r);
    } else if (path_is(r, "/close")) {
        http_resp_close_after(r);
        assert_int_equal(http_resp_simple(r, 200, "text/plain", NULL, "bye", 3), NB_OK);
    } else if (path_is(r, "/upgrade")) {
        assert_false(r->upgrade);
        assert_int_equal(http_resp_head(r, 101, NULL, -1), NB_E_INVAL);
        const uint8_t *l;
        size_t ll;
        assert_null(http_req_hijack(r, &l, &ll));
        assert_int_equal(http_resp_simple(r, 400, "text/plain", NULL, "no", 2), NB_OK);
    } else { /* /hold */
        held = r;
    }
}

/* ---- setup ---- */

static void start(uint32_t idle_ms)
{
    memset(cs, 0, sizeof cs);
    held = NULL;
    aborts = drains = 0;
    got_body = 0;
    pause_mode = false;
    client_reads = true;
    goaway_seen = false;
    struct http_server_opts o = {.idle_timeout_ms = idle_ms};
    struct http_handler h = {on_request, NULL};
    srv = http_server_new(loop, &o, &h);
    fk = calloc(1, sizeof *fk);
    nb_stream_init(&fk->base, &fk_vt, loop);
    struct http_conn_info info = {.tls = true};
    assert_int_equal(http_server_accept_h2(srv, &fk->base, &info), NB_OK);

    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, c_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, c_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, c_frame);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_max_send_header_block_length(opt, 256 * 1024); /* to test the limit */
    assert_int_equal(nghttp2_session_client_new2(&cli, cb, NULL, opt), 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    assert_int_equal(nghttp2_submit_settings(cli, NGHTTP2_FLAG_NONE, NULL, 0), 0);
    pump();
}

static void stop(void)
{
    http_server_free(srv);
    for (int i = 0; i < 4; i++)
        nb_loop_run_once(loop, 0);
    assert_null(fk); /* the stream was closed and freed */
    nghttp2_session_del(cli);
}

#define NV(n, v)                                                                   \
    {                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE \
    }

static int32_t get(const char *path)
{
    nghttp2_nv nva[] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":path", path),
                        NV(":authority", "app.test")};
    return nghttp2_submit_request(cli, NULL, nva, 4, NULL, NULL);
}

/* ---- request body provider for the client ---- */

static size_t up_left;
static bool up_trailer;

static ssize_t up_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *fl,
                       nghttp2_data_source *src, void *ud)
{
    size_t n = len < up_left ? len : up_left;
    memset(buf, 'x', n);
    up_left -= n;
    if (up_left == 0) {
        *fl |= NGHTTP2_DATA_FLAG_EOF;
        if (up_trailer) {
            nghttp2_nv t[] = {NV("x-trailer", "tv")};
            *fl |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            assert_int_equal(nghttp2_submit_trailer(s, sid, t, 1), 0);
        }
    }
    return (ssize_t)n;
}

static int32_t post(const char *path, size_t len, bool with_cl, bool trailer)
{
    char cl[24];
    snprintf(cl, sizeof cl, "%zu", len);
    nghttp2_nv nva[] = {NV(":method", "POST"), NV(":scheme", "https"), NV(":path", path),
                        NV(":authority", "app.test"), NV("content-length", cl)};
    up_left = len;
    up_trailer = trailer;
    nghttp2_data_provider dp = {.read_callback = up_read};
    return nghttp2_submit_request(cli, NULL, nva, with_cl ? 5 : 4, &dp, NULL);
}

/* ---- tests ---- */

static void test_fields(void **state)
{
    start(0);
    nghttp2_nv nva[] = {NV(":method", "HEAD"),      NV(":scheme", "https"),
                        NV(":path", "/fields?a=1"), NV(":authority", "app.test:8443"),
                        NV("cookie", "a=1"),        NV("x-other", "y"),
                        NV("cookie", "b=2"),        NV("content-length", "0")};
    int32_t sid = nghttp2_submit_request(cli, NULL, nva, 8, NULL, NULL);
    pump();
    assert_int_equal(cst(sid)->status, 204);
    assert_string_equal(fields, "HEAD|/fields|a=1|app.test:8443|tls|0|0|0|1|a=1; b=2|1");
    /* No :authority: the Host field is the host. */
    nghttp2_nv nv2[] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":path", "/fields"),
                        NV("host", "h.test")};
    sid = nghttp2_submit_request(cli, NULL, nv2, 4, NULL, NULL);
    pump();
    assert_int_equal(cst(sid)->status, 204);
    assert_string_equal(fields, "GET|/fields||h.test|tls|0|0|0|0||0");
    /* Many crumbs (the joining buffer grows by doubling). */
    static char names[300][8];
    nghttp2_nv nv3[304] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":path", "/crumbs"),
                           NV(":authority", "h.test")};
    for (int i = 0; i < 300; i++) {
        int l = snprintf(names[i], sizeof names[i], "k%d=v", i);
        nv3[4 + i] = (nghttp2_nv){(uint8_t *)"cookie", (uint8_t *)names[i], 6, (size_t)l,
                                  NGHTTP2_NV_FLAG_NONE};
    }
    crumbs_ok = false;
    sid = nghttp2_submit_request(cli, NULL, nv3, 304, NULL, NULL);
    pump();
    assert_int_equal(cst(sid)->status, 204);
    assert_true(crumbs_ok);
    struct http_server_stats st;
    http_server_stats(srv, &st);
    assert_int_equal(st.h2_conns, 1);
    assert_int_equal(st.requests, 3);
    assert_int_equal(http_server_conns(srv), 1);
    stop();
}

static void test_simple_and_stream(void **state)
{
    start(0);
    int32_t a = get("/hello"), b = get("/stream"), c = get("/upgrade");
    pump();
    assert_int_equal(cst(a)->status, 200);
    assert_memory_equal(cst(a)->text, "hello", 5);
    assert_int_equal(cst(b)->status, 200);
    assert_int_equal(cst(b)->body, 7);
    assert_memory_equal(cst(b)->text, "one,two", 7);
    assert_string_equal(cst(b)->trailer, "x-done=yes");
    assert_int_equal(cst(c)->status, 400);
    assert_true(cst(a)->closed && cst(b)->closed && cst(c)->closed);
    stop();
}

static void test_bodies(void **state)
{
    start(0);
    int32_t a = post("/echo", 1000000, true, false);
    pump();
    assert_int_equal(cst(a)->status, 200);
    assert_string_equal(cst(a)->text, "1000000");
    /* No content-length: a body of unknown length, with a trailer. */
    int32_t b = post("/echo", 70000, false, true);
    pump();
    assert_int_equal(cst(b)->status, 200);
    assert_string_equal(cst(b)->text, "70000");
    stop();
}

/* A paused handler closes the stream window: the client cannot send more than it. */
static void test_pause_flow_control(void **state)
{
    start(0);
    pause_mode = true;
    int32_t a = post("/echo", 2000000, true, false);
    pump();
    assert_true(got_body > 0);
    assert_true(got_body <= 256 * 1024);
    assert_int_equal(cst(a)->status, 0);
    /* What the client still may send is what the server has not consumed. */
    assert_true(nghttp2_session_get_stream_remote_window_size(cli, a) < 256 * 1024);
    assert_true(up_left > 2000000 - 2 * 256 * 1024);
    /* Resume piece by piece (the handler pauses again after each): the body gets through. */
    assert_non_null(held);
    for (int i = 0; i < 10000 && cst(a)->status == 0; i++) {
        http_req_pause_body(held, false);
        pump();
    }
    assert_int_equal(cst(a)->status, 200);
    assert_string_equal(cst(a)->text, "2000000");
    stop();
}

static struct http_req *big_req;
static size_t big_left;

static void big_drain(void *arg, struct http_req *r)
{
    drains++;
    static uint8_t chunk[16384];
    while (big_left && !http_resp_write_full(r)) {
        size_t n = big_left < sizeof chunk ? big_left : sizeof chunk;
        assert_int_equal(http_resp_body(r, chunk, n), NB_OK);
        big_left -= n;
    }
    if (big_left == 0)
        http_resp_end(r);
}

static void big_abort(void *arg, struct http_req *r, const char *why)
{
    aborts++;
}

static const struct http_req_cbs big_cbs = {NULL, NULL, big_drain, big_abort};

static void big_request(void *arg, struct http_req *r)
{
    big_req = r;
    http_req_set_cbs(r, &big_cbs, NULL);
    assert_int_equal(http_resp_head(r, 200, NULL, (int64_t)big_left), NB_OK);
    big_drain(NULL, r);
}

/* A client that does not read: the handler sees write_full and memory stays bounded; once the
 * client reads, on_drain brings the rest. */
static void test_backpressure(void **state)
{
    start(0);
    http_server_free(srv);
    for (int i = 0; i < 4; i++)
        nb_loop_run_once(loop, 0);
    nghttp2_session_del(cli);
    memset(cs, 0, sizeof cs);
    struct http_handler h = {big_request, NULL};
    srv = http_server_new(loop, NULL, &h);
    fk = calloc(1, sizeof *fk);
    nb_stream_init(&fk->base, &fk_vt, loop);
    assert_int_equal(http_server_accept_h2(srv, &fk->base, NULL), NB_OK);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, c_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, c_close);
    assert_int_equal(nghttp2_session_client_new(&cli, cb, NULL), 0);
    nghttp2_session_callbacks_del(cb);
    /* A large client window, so only the server's buffering limits the flow. */
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (1u << 31) - 1}};
    assert_int_equal(nghttp2_submit_settings(cli, NGHTTP2_FLAG_NONE, iv, 1), 0);
    assert_int_equal(
        nghttp2_session_set_local_window_size(cli, NGHTTP2_FLAG_NONE, 0, (1u << 31) - 1), 0);
    big_left = 50u * 1024 * 1024;
    int32_t a = get("/big");
    client_reads = true;
    pump();
    /* The client reads; everything arrives. Then the same with the client stalled. */
    assert_int_equal(cst(a)->status, 200);
    assert_int_equal(cst(a)->body, 50u * 1024 * 1024);
    big_left = 50u * 1024 * 1024;
    int32_t b = get("/big");
    client_reads = false;
    pump();
    assert_true(fk->qlen < 1024u * 1024u); /* bounded: ~ the stream's high-water mark */
    assert_true(big_left > 40u * 1024 * 1024);
    client_reads = true;
    pump();
    assert_int_equal(cst(b)->body, 50u * 1024 * 1024);
    assert_true(drains > 2);
    assert_int_equal(aborts, 0);
    stop();
}

static void test_aborts(void **state)
{
    start(0);
    int32_t a = get("/abort"), b = get("/short"), c = get("/hello");
    pump();
    assert_int_equal(cst(a)->rst, NGHTTP2_INTERNAL_ERROR);
    assert_int_equal(cst(b)->rst, NGHTTP2_INTERNAL_ERROR);
    assert_int_equal(cst(c)->status, 200); /* the connection lives on */
    /* The client resets a stream the handler holds: on_abort, once. */
    int32_t d = get("/hold");
    pump();
    assert_non_null(held);
    assert_int_equal(nghttp2_submit_rst_stream(cli, NGHTTP2_FLAG_NONE, d, NGHTTP2_CANCEL), 0);
    pump();
    assert_null(held);
    assert_int_equal(aborts, 1);
    /* The connection dies while a handler holds a request: on_abort too. */
    get("/hold");
    pump();
    assert_non_null(held);
    fk->base.cbs->on_error(fk->base.arg, &fk->base, "test reset");
    assert_null(held);
    assert_int_equal(aborts, 2);
    nb_loop_run_once(loop, 0);
    assert_null(fk);
    stop();
}

static void test_close_after_and_drain(void **state)
{
    start(0);
    int32_t a = get("/close");
    pump();
    assert_int_equal(cst(a)->status, 200);
    assert_true(goaway_seen);
    assert_int_equal(goaway_code, NGHTTP2_NO_ERROR);
    assert_int_equal(goaway_last, a);
    assert_null(fk); /* nothing in flight: closed */
    stop();

    start(0);
    int32_t h = get("/hold");
    pump();
    assert_non_null(held);
    http_server_drain(srv);
    pump();
    assert_true(goaway_seen);
    assert_int_equal(goaway_last, h);
    assert_non_null(fk); /* the request in flight keeps the connection */
    assert_int_equal(http_resp_simple(held, 200, "text/plain", NULL, "late", 4), NB_OK);
    held = NULL;
    pump();
    assert_int_equal(cst(h)->status, 200);
    assert_null(fk);
    assert_int_equal(http_server_conns(srv), 0);
    stop();
}

static void test_too_large_and_connect(void **state)
{
    start(0);
    /* 70 fields of 1000 bytes: over the 64 KiB header list limit. */
    static char big[1001];
    memset(big, 'v', sizeof big - 1);
    nghttp2_nv nva[74] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":path", "/hello"),
                          NV(":authority", "app.test")};
    static char names[70][8];
    for (int i = 0; i < 70; i++) {
        snprintf(names[i], sizeof names[i], "x-%d", i);
        nva[4 + i] = (nghttp2_nv)NV(names[i], big);
    }
    int32_t a = nghttp2_submit_request(cli, NULL, nva, 74, NULL, NULL);
    nghttp2_nv cn[] = {NV(":method", "CONNECT"), NV(":authority", "app.test:443")};
    int32_t b = nghttp2_submit_request(cli, NULL, cn, 2, NULL, NULL);
    pump();
    assert_int_equal(cst(a)->status, 431);
    assert_int_equal(cst(b)->status, 405);
    struct http_server_stats st;
    http_server_stats(srv, &st);
    assert_int_equal(st.too_large, 1);
    assert_int_equal(st.requests, 0); /* neither reached the handler */
    stop();
}

static void test_idle_timeout(void **state)
{
    start(30);
    int32_t a = get("/hello");
    pump();
    assert_int_equal(cst(a)->status, 200);
    for (int i = 0; i < 200 && fk; i++) {
        nb_loop_run_once(loop, 10);
        pump();
    }
    assert_null(fk);
    assert_true(goaway_seen);
    assert_int_equal(goaway_code, NGHTTP2_NO_ERROR);
    struct http_server_stats st;
    http_server_stats(srv, &st);
    assert_int_equal(st.idle_timeouts, 1);
    stop();
}

static void test_garbage(void **state)
{
    start(0);
    static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    /* The client preface was already sent by start(): a frame of garbage follows. */
    fk->base.cbs->on_data(fk->base.arg, &fk->base, (const uint8_t *)junk, sizeof junk - 1);
    nb_loop_run_once(loop, 0);
    assert_null(fk);
    stop();
}

int main(void)
{
    loop = nb_loop_new();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_simple_and_stream),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_pause_flow_control),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_aborts),
        cmocka_unit_test(test_close_after_and_drain),
        cmocka_unit_test(test_too_large_and_connect),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_garbage),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nb_loop_free(loop);
    return rc;
}
