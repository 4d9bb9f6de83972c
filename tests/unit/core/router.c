/* SPDX-License-Identifier: BSD-3-Clause */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "auth/restrict.h"
#include "core/certs.h"
#include "core/router.h"
#include "http/server.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/loop.h"
#include "platform/relay.h"
#include "platform/sock.h"
#include "tls/tls.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * The router's decisions (nb_router_decide, pure) over the matrix of netbird-proxy's
 * internal/tcp/router_test.go, then the router on real loopback sockets: route removal cancels
 * only that service's relays, and the plain channel replays the peeked bytes.
 */

static struct nb_loop *loop;

static struct tls_cert *no_cert(void *arg, const struct tls_hello *h)
{
    return NULL;
}

static struct tls_ctx *make_tls(void)
{
    struct tls_server_opts o = {.select = no_cert, .alpn = "http/1.1"};
    struct tls_ctx *c = NULL;
    assert_int_equal(tls_ctx_new_server(&o, &c), NB_OK);
    return c;
}

static struct nb_l4_target target(const char *svc, uint16_t port)
{
    struct nb_l4_target t = {.service_id = svc, .account_id = "acct", .protocol = "tls"};
    nb_addr_from_ip("127.0.0.1", port, &t.target, NULL);
    return t;
}

#define SNI(s) L4_TLS_SNI, s, strlen(s)

static enum nb_route_verdict decide(struct nb_router *r, enum l4_tls_kind k, const char *sni,
                                    size_t n, const char **svc)
{
    const struct nb_l4_target *t = NULL;
    enum nb_route_verdict v = nb_router_decide(r, k, sni, n, &t);
    *svc = t ? t->service_id : NULL;
    if (v == NB_RV_RELAY)
        assert_non_null(t);
    else
        assert_null(t);
    return v;
}

static void test_decide_main_router(void **state)
{
    struct tls_ctx *tls = make_tls();
    struct nb_router_opts o = {.name = "main", .tls = tls};
    struct nb_router *r = nb_router_new(NULL, &o);
    tls_ctx_unref(tls); /* the router holds its own reference */
    const char *svc;
    /* no routes: everything goes to the TLS HTTP server (non-TLS too: Go's 400 there) */
    assert_int_equal(decide(r, SNI("x.test"), &svc), NB_RV_TLS_HTTP);
    assert_int_equal(decide(r, L4_TLS_NO_SNI, NULL, 0, &svc), NB_RV_TLS_HTTP);
    assert_int_equal(decide(r, L4_NOT_TLS, NULL, 0, &svc), NB_RV_TLS_HTTP);
    assert_true(nb_router_empty(r));

    struct nb_l4_target ta = target("svc-a-tls", 1), tb = target("svc-b", 2);
    assert_int_equal(nb_router_add_http(r, "A.test", "svc-a-http"), NB_OK);
    assert_int_equal(nb_router_add_tls(r, "a.test", &ta), NB_OK);
    assert_int_equal(nb_router_add_tls(r, "b.test", &tb), NB_OK);
    assert_false(nb_router_empty(r));
    /* HTTP beats TCP for the same name; lookups are case-insensitive */
    assert_int_equal(decide(r, SNI("a.test"), &svc), NB_RV_TLS_HTTP);
    assert_int_equal(decide(r, SNI("B.Test"), &svc), NB_RV_RELAY);
    assert_string_equal(svc, "svc-b");
    assert_int_equal(decide(r, SNI("c.test"), &svc), NB_RV_TLS_HTTP);

    /* fallback: catches unknown SNI, no SNI and non-TLS; SNI routes still win */
    struct nb_l4_target fb = target("svc-fb", 3);
    assert_int_equal(nb_router_set_fallback(r, &fb), NB_OK);
    assert_int_equal(decide(r, SNI("c.test"), &svc), NB_RV_RELAY);
    assert_string_equal(svc, "svc-fb");
    assert_int_equal(decide(r, L4_NOT_TLS, NULL, 0, &svc), NB_RV_RELAY);
    assert_int_equal(decide(r, L4_TLS_NO_SNI, NULL, 0, &svc), NB_RV_RELAY);
    assert_int_equal(decide(r, SNI("b.test"), &svc), NB_RV_RELAY);
    assert_string_equal(svc, "svc-b");
    assert_int_equal(decide(r, SNI("a.test"), &svc), NB_RV_TLS_HTTP);

    /* transitions: the HTTP route goes -> a.test is passthrough; the fallback goes -> HTTP */
    nb_router_remove_service(r, "svc-a-http");
    assert_int_equal(decide(r, SNI("a.test"), &svc), NB_RV_RELAY);
    assert_string_equal(svc, "svc-a-tls");
    nb_router_remove_service(r, "svc-fb");
    assert_int_equal(decide(r, SNI("zz.test"), &svc), NB_RV_TLS_HTTP);

    /* several services per name: removing one leaves the other */
    struct nb_l4_target tb2 = target("svc-b2", 4);
    assert_int_equal(nb_router_add_tls(r, "b.test", &tb2), NB_OK);
    nb_router_remove_service(r, "svc-b2");
    assert_int_equal(decide(r, SNI("b.test"), &svc), NB_RV_RELAY);
    assert_string_equal(svc, "svc-b");
    /* the same service re-added replaces its route */
    tb.target.ss_family = AF_INET;
    assert_int_equal(nb_router_add_tls(r, "b.test", &tb), NB_OK);
    nb_router_remove_service(r, "svc-b");
    assert_int_equal(decide(r, SNI("b.test"), &svc), NB_RV_TLS_HTTP);
    nb_router_remove_service(r, "svc-a-tls");
    assert_true(nb_router_empty(r));
    /* invalid names */
    assert_int_equal(nb_router_add_http(r, "", "x"), NB_E_INVAL);
    nb_router_free(r);
}

static void test_decide_port_and_inbound_routers(void **state)
{
    const char *svc;
    /* a per-port router: no HTTP channel */
    struct nb_router_opts o = {.name = "port"};
    struct nb_router *r = nb_router_new(NULL, &o);
    assert_int_equal(decide(r, SNI("x.test"), &svc), NB_RV_CLOSE); /* no fallback, no HTTP */
    assert_int_equal(decide(r, L4_NOT_TLS, NULL, 0, &svc), NB_RV_CLOSE);
    struct nb_l4_target t = target("svc-t", 1), fb = target("svc-fb", 2), fb2 = target("svc-2", 3);
    assert_int_equal(nb_router_add_tls(r, "t.test", &t), NB_OK);
    assert_int_equal(decide(r, SNI("t.test"), &svc), NB_RV_RELAY);
    assert_int_equal(decide(r, SNI("u.test"), &svc), NB_RV_CLOSE);
    assert_int_equal(nb_router_set_fallback(r, &fb), NB_OK);
    assert_int_equal(decide(r, SNI("u.test"), &svc), NB_RV_RELAY);
    assert_string_equal(svc, "svc-fb");
    /* a new fallback replaces the old one */
    assert_int_equal(nb_router_set_fallback(r, &fb2), NB_OK);
    assert_int_equal(decide(r, L4_NOT_TLS, NULL, 0, &svc), NB_RV_RELAY);
    assert_string_equal(svc, "svc-2");
    nb_router_remove_service(r, "svc-fb"); /* no longer the fallback: nothing changes */
    assert_int_equal(decide(r, L4_NOT_TLS, NULL, 0, &svc), NB_RV_RELAY);
    nb_router_remove_service(r, "svc-2");
    nb_router_remove_service(r, "svc-t");
    assert_true(nb_router_empty(r));
    nb_router_free(r);

    /* an inbound (tunnel) router: TLS -> TLS server, anything else -> plain HTTP */
    struct tls_ctx *tls = make_tls();
    struct http_server *fake = (struct http_server *)&o; /* never dereferenced by decide */
    struct nb_router_opts io = {.name = "acct", .tls = tls, .https = fake, .plain = fake};
    r = nb_router_new(NULL, &io);
    tls_ctx_unref(tls);
    assert_int_equal(decide(r, L4_NOT_TLS, NULL, 0, &svc), NB_RV_PLAIN_HTTP);
    assert_int_equal(decide(r, SNI("x.test"), &svc), NB_RV_TLS_HTTP);
    assert_int_equal(decide(r, L4_TLS_NO_SNI, NULL, 0, &svc), NB_RV_TLS_HTTP);
    nb_router_free(r);
}

static void test_wildcard_match(void **state)
{
    assert_true(nb_wildcard_match("example.com", "a.example.com"));
    assert_true(nb_wildcard_match("example.com", "A.Example.COM"));
    assert_false(nb_wildcard_match("example.com", "example.com"));
    assert_false(nb_wildcard_match("example.com", "a.b.example.com"));
    assert_false(nb_wildcard_match("example.com", ".example.com"));
    assert_false(nb_wildcard_match("example.com", "aexample.com"));
    assert_false(nb_wildcard_match("", "a.b"));
}

/* ---- on sockets ---- */

static int host_dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                     void *arg, struct nb_stream **out)
{
    return nb_tcp_connect(loop, dst, 0, cbs, arg, out);
}

static int dialer(void *arg, const char *account, bool direct, struct nb_dialer *out)
{
    *out = (struct nb_dialer){host_dial, NULL};
    return NB_OK;
}

static struct nb_stream *echo_conns[8];
static void echo_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    nb_stream_write(s, d, n);
}
static void echo_eof(void *arg, struct nb_stream *s)
{
    nb_stream_shutdown(s);
}
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
    for (int i = 0; i < 8; i++)
        if (echo_conns[i] == NULL) {
            echo_conns[i] = s;
            break;
        }
    nb_stream_set_cbs(s, &echo_cbs, NULL);
}

struct client {
    struct nb_stream *s;
    bool connected, eof;
    const char *err;
    uint8_t rx[4096];
    size_t n;
};
static void c_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    struct client *c = arg;
    size_t k = n < sizeof c->rx - c->n ? n : sizeof c->rx - c->n;
    memcpy(c->rx + c->n, d, k);
    c->n += k;
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

static void spin(int ms)
{
    uint64_t end = nb_now_ms() + (uint64_t)ms;
    while (nb_now_ms() < end)
        nb_loop_run_once(loop, 10);
}

static void spin_until(bool (*cond)(void *), void *arg, int ms)
{
    uint64_t end = nb_now_ms() + (uint64_t)ms;
    while (!cond(arg) && nb_now_ms() < end)
        nb_loop_run_once(loop, 10);
}

static bool got(void *arg)
{
    struct client *c = arg;
    return c->n > 0 || c->err || c->eof;
}

static bool ended(void *arg)
{
    struct client *c = arg;
    return c->err || c->eof;
}

/* A minimal TLS 1.2 ClientHello record with a server_name extension. */
static size_t client_hello(const char *sni, uint8_t *out)
{
    size_t sl = strlen(sni), o = 0;
    uint8_t body[512];
    size_t b = 0;
    body[b++] = 3;
    body[b++] = 3;
    memset(body + b, 0x11, 32);
    b += 32;
    body[b++] = 0;    /* session id */
    body[b++] = 0;    /* suites length */
    body[b++] = 2;    /* */
    body[b++] = 0xc0; /* ECDHE-ECDSA-AES128-GCM-SHA256 */
    body[b++] = 0x2b; /* */
    body[b++] = 1;    /* compression methods */
    body[b++] = 0;    /* null */
    size_t ext_len = 4 + 2 + 3 + sl;
    body[b++] = (uint8_t)(ext_len >> 8);
    body[b++] = (uint8_t)ext_len;
    body[b++] = 0; /* server_name */
    body[b++] = 0;
    body[b++] = (uint8_t)((2 + 3 + sl) >> 8);
    body[b++] = (uint8_t)(2 + 3 + sl);
    body[b++] = (uint8_t)((3 + sl) >> 8);
    body[b++] = (uint8_t)(3 + sl);
    body[b++] = 0; /* host_name */
    body[b++] = (uint8_t)(sl >> 8);
    body[b++] = (uint8_t)sl;
    memcpy(body + b, sni, sl);
    b += sl;
    out[o++] = 22;
    out[o++] = 3;
    out[o++] = 1;
    out[o++] = (uint8_t)((b + 4) >> 8);
    out[o++] = (uint8_t)(b + 4);
    out[o++] = 1; /* ClientHello */
    out[o++] = 0;
    out[o++] = (uint8_t)(b >> 8);
    out[o++] = (uint8_t)b;
    memcpy(out + o, body, b);
    return o + b;
}

static uint16_t listen_any(nb_accept_fn fn, void *arg, struct nb_listener **l)
{
    struct sockaddr_storage ss;
    nb_addr_from_ip("127.0.0.1", 0, &ss, NULL);
    assert_int_equal(nb_tcp_listen(loop, (struct sockaddr *)&ss, 16, fn, arg, l), NB_OK);
    struct sockaddr_storage la;
    assert_int_equal((*l)->vt->addr(*l, &la), NB_OK);
    return nb_addr_port((struct sockaddr *)&la);
}

static void connect_to(struct client *c, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(c, 0, sizeof *c);
    nb_addr_from_ip("127.0.0.1", port, &ss, NULL);
    assert_int_equal(nb_tcp_connect(loop, (struct sockaddr *)&ss, 2000, &client_cbs, c, &c->s),
                     NB_OK);
}

/* After the routers are freed: no relay left; the echo backend and the loop go. */
static void end_relay_test(struct nb_listener *el)
{
    spin(50);
    assert_int_equal(nb_relay_live(), 0);
    nb_listener_close(el);
    for (int i = 0; i < 8; i++)
        if (echo_conns[i])
            nb_stream_close(echo_conns[i], true);
    spin(20);
    nb_loop_free(loop);
}

static void test_route_removal_cancels_only_that_service(void **state)
{
    loop = nb_loop_new();
    memset(echo_conns, 0, sizeof echo_conns);
    struct nb_listener *el, *rl;
    uint16_t eport = listen_any(echo_accept, NULL, &el);
    struct nb_router_opts o = {.name = "port", .dialer = dialer};
    struct nb_router *r = nb_router_new(loop, &o);
    struct nb_l4_target t1 = target("svc-one", eport), t2 = target("svc-two", eport);
    assert_int_equal(nb_router_add_tls(r, "one.test", &t1), NB_OK);
    assert_int_equal(nb_router_add_tls(r, "two.test", &t2), NB_OK);
    uint16_t rport = listen_any(nb_router_accept_cb, r, &rl);

    struct client c1, c2, c3;
    uint8_t h1[600], h2[600], h3[600];
    size_t n1 = client_hello("one.test", h1), n2 = client_hello("Two.Test", h2),
           n3 = client_hello("three.test", h3);
    connect_to(&c1, rport);
    connect_to(&c2, rport);
    connect_to(&c3, rport);
    /* c1's ClientHello arrives in two pieces: the peek waits for the whole record */
    nb_stream_write(c1.s, h1, 7);
    spin(50);
    nb_stream_write(c1.s, h1 + 7, n1 - 7);
    nb_stream_write(c2.s, h2, n2);
    nb_stream_write(c3.s, h3, n3);
    spin_until(got, &c1, 3000);
    spin_until(got, &c2, 3000);
    spin_until(ended, &c3, 3000);
    /* the peeked ClientHello was replayed to the backend, which echoed it */
    assert_int_equal(c1.n, n1);
    assert_memory_equal(c1.rx, h1, n1);
    assert_int_equal(c2.n, n2);
    assert_true(ended(&c3)); /* unknown SNI, no fallback, no HTTP channel: closed */
    struct nb_router_stats st;
    nb_router_stats(r, &st);
    assert_int_equal(st.relays_active, 2);

    nb_router_remove_service(r, "svc-one");
    spin_until(ended, &c1, 3000);
    assert_true(ended(&c1));
    spin(100);
    assert_false(ended(&c2)); /* the other service's relay lives on */
    c2.n = 0;
    nb_stream_write(c2.s, "ping", 4);
    spin_until(got, &c2, 3000);
    assert_int_equal(c2.n, 4);
    assert_memory_equal(c2.rx, "ping", 4);
    nb_router_stats(r, &st);
    assert_int_equal(st.relays_active, 1);
    assert_int_equal(st.relays_total, 2);

    nb_stream_close(c1.s, true);
    nb_stream_close(c2.s, true);
    nb_stream_close(c3.s, true);
    nb_listener_close(rl);
    nb_router_free(r); /* cancels the last relay */
    end_relay_test(el);
}

static void test_relay_limit(void **state)
{
    loop = nb_loop_new();
    memset(echo_conns, 0, sizeof echo_conns);
    struct nb_listener *el, *rl;
    uint16_t eport = listen_any(echo_accept, NULL, &el);
    struct nb_router_opts o = {.name = "port", .dialer = dialer, .max_relays = 1};
    struct nb_router *r = nb_router_new(loop, &o);
    struct nb_l4_target fb = target("svc-fb", eport);
    fb.protocol = "tcp";
    assert_int_equal(nb_router_set_fallback(r, &fb), NB_OK);
    uint16_t rport = listen_any(nb_router_accept_cb, r, &rl);
    struct client c1, c2;
    connect_to(&c1, rport);
    nb_stream_write(c1.s, "one", 3); /* a pure tcp router relays without reading */
    spin_until(got, &c1, 3000);
    assert_int_equal(c1.n, 3);
    connect_to(&c2, rport);
    spin_until(ended, &c2, 3000);
    assert_true(ended(&c2)); /* over the limit: closed */
    struct nb_router_stats st;
    nb_router_stats(r, &st);
    assert_int_equal(st.relays_rejected, 1);
    assert_int_equal(st.relays_active, 1);
    nb_stream_close(c1.s, true);
    nb_stream_close(c2.s, true);
    nb_listener_close(rl);
    nb_router_free(r);
    end_relay_test(el);
}

/* Access restrictions on relays (spec §3.7): a denied client is closed with a FIN, nothing
 * dialled; an allowed one relays; a tunnel (overlay) router skips country rules. */
static void test_relay_restrictions(void **state)
{
    loop = nb_loop_new();
    memset(echo_conns, 0, sizeof echo_conns);
    struct nb_listener *el, *rl, *ol;
    uint16_t eport = listen_any(echo_accept, NULL, &el);
    struct nb_router_opts o = {.name = "port", .dialer = dialer};
    struct nb_router *r = nb_router_new(loop, &o);
    o.overlay = true;
    struct nb_router *ovr = nb_router_new(loop, &o);
    const char *block[] = {"127.0.0.0/8"}, *cc[] = {"DE"};
    struct auth_restrict_spec spec = {.blocked_cidrs = block, .n_blocked_cidrs = 1};
    struct nb_l4_target fb = target("svc-fb", eport);
    fb.protocol = "tcp";
    assert_int_equal(auth_restrict_new(&spec, &fb.restrictions, NULL), NB_OK);
    assert_int_equal(nb_router_set_fallback(r, &fb), NB_OK);
    auth_restrict_unref(fb.restrictions); /* the router keeps its own reference */
    spec = (struct auth_restrict_spec){.allowed_countries = cc, .n_allowed_countries = 1};
    assert_int_equal(auth_restrict_new(&spec, &fb.restrictions, NULL), NB_OK);
    assert_int_equal(nb_router_set_fallback(ovr, &fb), NB_OK);
    auth_restrict_unref(fb.restrictions);
    uint16_t rport = listen_any(nb_router_accept_cb, r, &rl);
    uint16_t oport = listen_any(nb_router_accept_cb, ovr, &ol);

    struct client c1, c2;
    connect_to(&c1, rport);
    nb_stream_write(c1.s, "one", 3);
    spin_until(ended, &c1, 3000);
    assert_true(c1.eof); /* a FIN, not a reset */
    assert_null(c1.err);
    assert_int_equal(c1.n, 0);
    struct nb_router_stats st;
    nb_router_stats(r, &st);
    assert_int_equal(st.restricted, 1);
    assert_int_equal(st.relays_total, 0);
    assert_null(echo_conns[0]); /* the backend never saw a connection */
    /* Country rules without geo would deny a public client; the tunnel router checks CIDRs. */
    connect_to(&c2, oport);
    nb_stream_write(c2.s, "two", 3);
    spin_until(got, &c2, 3000);
    assert_int_equal(c2.n, 3);
    nb_router_stats(ovr, &st);
    assert_int_equal(st.restricted, 0);
    assert_int_equal(st.relays_total, 1);

    nb_stream_close(c1.s, true);
    nb_stream_close(c2.s, true);
    nb_listener_close(rl);
    nb_listener_close(ol);
    nb_router_free(r);
    nb_router_free(ovr);
    end_relay_test(el);
}

/* §3.7 "peek errors": EOF after a record header but before its payload is an unmatched TLS
 * connection (here: the fallback relay gets the bytes, then the EOF); EOF before a whole header
 * closes without a route. */
static void test_eof_during_peek(void **state)
{
    loop = nb_loop_new();
    memset(echo_conns, 0, sizeof echo_conns);
    struct nb_listener *el, *rl;
    uint16_t eport = listen_any(echo_accept, NULL, &el);
    struct nb_router_opts o = {.name = "port", .dialer = dialer};
    struct nb_router *r = nb_router_new(loop, &o);
    struct nb_l4_target t1 = target("svc-one", eport), fb = target("svc-fb", eport);
    assert_int_equal(nb_router_add_tls(r, "one.test", &t1), NB_OK);
    assert_int_equal(nb_router_set_fallback(r, &fb), NB_OK);
    uint16_t rport = listen_any(nb_router_accept_cb, r, &rl);

    /* a header announcing 100 bytes, 10 of them, then the client's FIN */
    static const uint8_t part[15] = {22, 3, 1, 0, 100, 1, 0, 0, 96, 3, 3, 7, 7, 7, 7};
    struct client c1, c2;
    connect_to(&c1, rport);
    connect_to(&c2, rport);
    nb_stream_write(c1.s, part, sizeof part);
    nb_stream_shutdown(c1.s);
    nb_stream_write(c2.s, part, 3); /* not even a record header */
    nb_stream_shutdown(c2.s);
    spin_until(ended, &c1, 3000);
    spin_until(ended, &c2, 3000);
    /* replayed to the fallback backend, which echoed it and passed the EOF back */
    assert_null(c1.err);
    assert_true(c1.eof);
    assert_int_equal(c1.n, sizeof part);
    assert_memory_equal(c1.rx, part, sizeof part);
    assert_true(ended(&c2));
    assert_int_equal(c2.n, 0);
    struct nb_router_stats st;
    nb_router_stats(r, &st);
    assert_int_equal(st.relays_total, 1);
    assert_int_equal(st.peek_closed, 1);

    nb_stream_close(c1.s, true);
    nb_stream_close(c2.s, true);
    nb_listener_close(rl);
    nb_router_free(r);
    end_relay_test(el);
}

/* ---- the plain channel replays the peeked bytes ---- */

static void on_request(void *arg, struct http_req *req)
{
    char body[128];
    int n = snprintf(body, sizeof body, "path=%.*s overlay=%d scope=%s", (int)req->path_len,
                     req->path, req->info.overlay, req->info.scope ? req->info.scope : "");
    http_resp_simple(req, 200, "text/plain", NULL, body, (size_t)n);
}

static bool has_body(void *arg)
{
    struct client *c = arg;
    return memmem(c->rx, c->n, "scope=", 6) != NULL || c->err || c->eof;
}

static void test_plain_channel_replays(void **state)
{
    loop = nb_loop_new();
    struct http_handler h = {on_request, NULL};
    struct http_server *srv = http_server_new(loop, NULL, &h);
    struct tls_ctx *tls = make_tls();
    struct nb_router_opts o = {
        .name = "acct", .tls = tls, .https = srv, .plain = srv, .overlay = true, .scope = "acct-1"};
    struct nb_router *r = nb_router_new(loop, &o);
    tls_ctx_unref(tls);
    struct nb_listener *rl;
    uint16_t rport = listen_any(nb_router_accept_cb, r, &rl);
    struct client c;
    connect_to(&c, rport);
    /* in two pieces: the peek needs 5 bytes, the request head comes in the second one */
    nb_stream_write(c.s, "GET /he", 7);
    spin(50);
    nb_stream_write(c.s, "llo HTTP/1.1\r\nHost: x\r\n\r\n", 25);
    spin_until(has_body, &c, 3000);
    c.rx[c.n < sizeof c.rx ? c.n : sizeof c.rx - 1] = 0;
    assert_non_null(strstr((char *)c.rx, "HTTP/1.1 200"));
    assert_non_null(strstr((char *)c.rx, "path=/hello overlay=1 scope=acct-1"));
    nb_stream_close(c.s, true);
    nb_listener_close(rl);
    spin(20);
    http_server_free(srv);
    nb_router_free(r);
    spin(20);
    nb_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide_main_router),
        cmocka_unit_test(test_decide_port_and_inbound_routers),
        cmocka_unit_test(test_wildcard_match),
        cmocka_unit_test(test_route_removal_cancels_only_that_service),
        cmocka_unit_test(test_relay_limit),
        cmocka_unit_test(test_relay_restrictions),
        cmocka_unit_test(test_eof_during_peek),
        cmocka_unit_test(test_plain_channel_replays),
    };
    return cmocka_run_group_tests_name("core/router", tests, NULL, NULL);
}
