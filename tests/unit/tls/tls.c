/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tls/tls.c against real peers over 127.0.0.1: our server with openssl s_client and curl, our
 * client with openssl s_server, and both of ours together where the test must control timing
 * (backpressure, truncation, timeouts). wolfSSL's allocations are counted through
 * wolfSSL_SetAllocators, which gives the memory an idle connection costs and a leak check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tls/ctx.c" /* statics: the ticket callback */
#include "tls/tls.c" /* statics: the stream struct */

#include "platform/sock.h"

#include "helpers.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define BULK (16u << 20)

/* ---- wolfSSL allocation accounting ---- */

static size_t wolf_bytes, wolf_allocs;

static void *cnt_malloc(size_t n)
{
    void *p = malloc(n);
    if (p) {
        wolf_bytes += malloc_usable_size(p);
        wolf_allocs++;
    }
    return p;
}

static void cnt_free(void *p)
{
    if (p) {
        wolf_bytes -= malloc_usable_size(p);
        wolf_allocs--;
    }
    free(p);
}

static void *cnt_realloc(void *p, size_t n)
{
    if (p == NULL)
        return cnt_malloc(n);
    if (n == 0) {
        cnt_free(p);
        return NULL;
    }
    size_t old = malloc_usable_size(p);
    void *q = realloc(p, n);
    if (q)
        wolf_bytes = wolf_bytes - old + malloc_usable_size(q);
    return q;
}

/* ---- shared state ---- */

static struct nb_loop *loop;
static struct tls_cert *cert_a, *cert_b;
static struct tls_ctx *sctx;
static struct nb_listener *lst;
static uint16_t port;
static uint32_t hs_timeout_ms = 10000;
static bool wrap_with_peek; /* accept path acts like an SNI router: reads a few bytes first */
static int fifo_fd = -1;    /* s_server ends with its stdin: it reads a FIFO we hold open */
static size_t cert_bytes;   /* wolfSSL memory held by one loaded certificate (cert_b) */

static int sel_calls;
static char sel_sni[300];
static bool sel_acme, sel_ecdsa;

static struct tls_cert *select_cert(void *arg, const struct tls_hello *h)
{
    (void)arg;
    sel_calls++;
    snprintf(sel_sni, sizeof sel_sni, "%s", h->sni);
    sel_acme = h->acme_only;
    sel_ecdsa = h->ecdsa_ok;
    if (strcmp(h->sni, "a.test") == 0 || h->sni[0] == '\0' || strcmp(h->sni, "x.wild.test") == 0)
        return cert_a;
    if (strcmp(h->sni, "b.test") == 0)
        return cert_b;
    return NULL;
}

/* Byte pattern for bulk transfers. */
static uint8_t pat(uint64_t i)
{
    return (uint8_t)((i * 2654435761u) >> 13);
}

/* ---- the server application ---- */

enum smode { M_GREET, M_ECHO, M_HTTP };

struct sconn {
    struct nb_stream *s;
    bool connected;
    const char *err;
    bool eof;
    bool notify;
    bool closed;
    uint64_t rx;
    size_t max_queued;
    int pauses, drains;
    char alpn[32], sni[300], version[16], cipher[64];
    bool resumed;
    struct tls_cert *cert;
    char head[4096];
    size_t head_len;
};

static enum smode smode;
static bool bye_on_eof; /* M_ECHO: answer the peer's EOF with "bye" before closing */
static struct sconn sconns[256];
static int n_sconns;

static void s_close(struct sconn *c, bool abort)
{
    if (!c->closed) {
        c->closed = true;
        nb_stream_close(c->s, abort);
    }
}

static void s_connect(void *arg, struct nb_stream *s, const char *err)
{
    struct sconn *c = arg;
    c->err = err;
    if (err) {
        s_close(c, false);
        return;
    }
    c->connected = true;
    struct tls_info in = {0};
    assert_int_equal(tls_stream_info(s, &in), NB_OK);
    snprintf(c->alpn, sizeof c->alpn, "%s", in.alpn);
    snprintf(c->sni, sizeof c->sni, "%s", in.sni);
    snprintf(c->version, sizeof c->version, "%s", in.version);
    snprintf(c->cipher, sizeof c->cipher, "%s", in.cipher);
    c->resumed = in.resumed;
    c->cert = in.cert;
    if (smode == M_GREET) {
        char g[400];
        int n = snprintf(g, sizeof g, "hello alpn=%s sni=%s\n", in.alpn, in.sni);
        assert_int_equal(nb_stream_write(s, g, (size_t)n), NB_OK);
        s_close(c, false);
    }
}

static void s_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    struct sconn *c = arg;
    c->rx += n;
    if (smode == M_ECHO) {
        assert_int_equal(nb_stream_write(s, d, n), NB_OK);
        size_t q = nb_stream_queued(s);
        if (q > c->max_queued)
            c->max_queued = q;
        if (nb_stream_write_full(s)) {
            c->pauses++;
            nb_stream_pause(s, true);
        }
        return;
    }
    if (smode == M_HTTP) {
        if (c->head_len + n < sizeof c->head) {
            memcpy(c->head + c->head_len, d, n);
            c->head_len += n;
            c->head[c->head_len] = '\0';
        }
        if (strstr(c->head, "\r\n\r\n")) {
            char body[400], resp[600];
            int bl = snprintf(body, sizeof body, "hello alpn=%s sni=%s\n", c->alpn, c->sni);
            int rl = snprintf(
                resp, sizeof resp,
                "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", bl, body);
            assert_int_equal(nb_stream_write(s, resp, (size_t)rl), NB_OK);
            s_close(c, false);
        }
    }
}

static void s_eof(void *arg, struct nb_stream *s)
{
    struct sconn *c = arg;
    c->eof = true;
    c->notify = ((struct tls_stream *)s)->notify_rx;
    if (smode == M_ECHO && bye_on_eof) {
        /* Half-closed: we may still write, then shut down our side. */
        assert_int_equal(nb_stream_write(s, "bye", 3), NB_OK);
        assert_int_equal(nb_stream_shutdown(s), NB_OK);
        assert_int_equal(nb_stream_write(s, "late", 4), NB_E_CLOSED);
        return;
    }
    if (smode == M_ECHO)
        s_close(c, false); /* flushes the echo, then our close_notify */
}

static void s_drain(void *arg, struct nb_stream *s)
{
    struct sconn *c = arg;
    c->drains++;
    nb_stream_pause(s, false);
}

static void s_error(void *arg, struct nb_stream *s, const char *err)
{
    struct sconn *c = arg;
    (void)s;
    c->err = err;
    s_close(c, false);
}

static const struct nb_stream_cbs scbs = {
    .on_data = s_data,
    .on_eof = s_eof,
    .on_drain = s_drain,
    .on_error = s_error,
    .on_connect = s_connect,
};

static struct sconn *new_sconn(struct nb_stream *t)
{
    assert_true(n_sconns < (int)(sizeof sconns / sizeof sconns[0]));
    struct sconn *c = &sconns[n_sconns++];
    memset(c, 0, sizeof *c);
    c->s = t;
    nb_stream_set_cbs(t, &scbs, c);
    return c;
}

/* Router emulation: the first bytes are read by someone else and handed over as `initial`. */
struct peek {
    uint8_t buf[TLS_HELLO_MAX];
    size_t len;
};

static void peek_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    struct peek *p = arg;
    assert_true(p->len + n <= sizeof p->buf);
    memcpy(p->buf + p->len, d, n);
    p->len += n;
    if (p->len < 5)
        return;
    /* Everything read so far is handed over (what an SNI router does after its peek). */
    nb_stream_pause(s, true);
    struct nb_stream *t;
    assert_int_equal(tls_server_wrap(sctx, s, p->buf, p->len, hs_timeout_ms, &t), NB_OK);
    new_sconn(t);
    free(p);
}

static void peek_other(void *arg, struct nb_stream *s)
{
    free(arg);
    nb_stream_close(s, true);
}

static void peek_error(void *arg, struct nb_stream *s, const char *err)
{
    (void)err;
    peek_other(arg, s);
}

static const struct nb_stream_cbs peek_cbs = {
    .on_data = peek_data, .on_eof = peek_other, .on_error = peek_error};

static void on_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    (void)arg;
    (void)l;
    if (wrap_with_peek) {
        struct peek *p = calloc(1, sizeof *p);
        nb_stream_set_cbs(s, &peek_cbs, p);
        return;
    }
    struct nb_stream *t;
    assert_int_equal(tls_server_wrap(sctx, s, NULL, 0, hs_timeout_ms, &t), NB_OK);
    new_sconn(t);
}

/* ---- loop helpers ---- */

static void settle(int iterations)
{
    for (int i = 0; i < iterations; i++)
        nb_loop_run_once(loop, 5);
}

/* Runs the loop until the child exits; returns its status. */
static int run_child(pid_t pid, uint32_t timeout_ms)
{
    uint64_t end = nb_now_ms() + timeout_ms;
    int st = -1;
    while (!reaped(pid, &st)) {
        if (nb_now_ms() > end) {
            stop_child(pid);
            fail_msg("child %d timed out", (int)pid);
        }
        nb_loop_run_once(loop, 10);
    }
    settle(20);
    return st;
}

static bool run_until(bool (*cond)(void), uint32_t timeout_ms)
{
    uint64_t end = nb_now_ms() + timeout_ms;
    while (!cond()) {
        if (nb_now_ms() > end)
            return false;
        nb_loop_run_once(loop, 10);
    }
    return true;
}

static char *s_client(const char *args, const char *in, int *status)
{
    pid_t pid = spawn(in, "sc.out", "openssl s_client -connect 127.0.0.1:%u %s", port, args);
    int st = run_child(pid, 30000);
    if (status)
        *status = st;
    return slurp("sc.out", NULL);
}

static void reset_server(enum smode m)
{
    for (int i = 0; i < n_sconns; i++)
        s_close(&sconns[i], true);
    settle(10);
    n_sconns = 0;
    smode = m;
    sel_calls = 0;
    wrap_with_peek = false;
    bye_on_eof = false;
    hs_timeout_ms = 10000;
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static struct sockaddr_in loopback(uint16_t p)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(p), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return a;
}

/* ---- setup ---- */

static int setup(void **state)
{
    (void)state;
    make_tdir();
    if (make_pki() != 0)
        return -1;
    loop = nb_loop_new();
    char c[512], k[512];
    tpath(c, sizeof c, "a.chain");
    tpath(k, sizeof k, "a.key");
    if (tls_cert_load_pem(c, k, &cert_a) != NB_OK)
        return -1;
    tpath(c, sizeof c, "b.pem");
    tpath(k, sizeof k, "b.key");
    size_t before = wolf_bytes;
    if (tls_cert_load_pem(c, k, &cert_b) != NB_OK)
        return -1;
    cert_bytes = wolf_bytes - before;
    struct tls_server_opts so = {
        .select = select_cert, .alpn = "h2,http/1.1,acme-tls/1", .answer_plain_http = true};
    if (tls_ctx_new_server(&so, &sctx) != NB_OK)
        return -1;
    tpath(c, sizeof c, "bulk.in");
    FILE *f = fopen(c, "wb");
    for (uint64_t i = 0; i < BULK; i++)
        fputc(pat(i), f);
    fclose(f);
    struct sockaddr_in a = loopback(0);
    if (nb_tcp_listen(loop, (struct sockaddr *)&a, 128, on_accept, NULL, &lst) != NB_OK)
        return -1;
    struct sockaddr_storage ss;
    lst->vt->addr(lst, &ss);
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    reset_server(M_GREET);
    nb_listener_close(lst);
    tls_ctx_unref(sctx);
    tls_cert_unref(cert_a);
    tls_cert_unref(cert_b);
    settle(20);
    struct tls_stats st;
    tls_stats(&st);
    int bad = st.streams_live || st.ctx_live || st.certs_live || nb_tcp_streams_live();
    if (bad)
        fprintf(stderr, "leak: streams %zu ctx %zu certs %zu tcp %zu\n", st.streams_live,
                st.ctx_live, st.certs_live, nb_tcp_streams_live());
    /* Every wolfSSL allocation is back (wolfSSL_Cleanup ran with the last reference). */
    if (wolf_allocs != 0) {
        fprintf(stderr, "wolfSSL still holds %zu allocations (%zu bytes)\n", wolf_allocs,
                wolf_bytes);
        bad = 1;
    }
    nb_loop_free(loop);
    if (fifo_fd >= 0)
        close(fifo_fd);
    remove_tdir();
    return bad ? -1 : 0;
}

/* ---- server tests: openssl s_client and curl ---- */

static void test_server_tls13_alpn_sni(void **state)
{
    reset_server(M_GREET);
    int st;
    char *out = s_client("-servername a.test -alpn h2 -tls1_3 -CAfile ca.pem -ign_eof", NULL, &st);
    assert_int_equal(st, 0);
    assert_true(contains(out, "New, TLSv1.3"));
    assert_true(contains(out, "ALPN protocol: h2"));
    assert_true(contains(out, "Verify return code: 0 (ok)"));
    assert_true(contains(out, "subject=CN = a"));
    assert_true(contains(out, "hello alpn=h2 sni=a.test"));
    free(out);
    assert_int_equal(n_sconns, 1);
    struct sconn *c = &sconns[0];
    assert_true(c->connected);
    assert_string_equal(c->version, "TLSv1.3");
    assert_true(strncmp(c->cipher, "TLS_AES_", 8) == 0 ||
                strcmp(c->cipher, "TLS_CHACHA20_POLY1305_SHA256") == 0);
    assert_string_equal(c->alpn, "h2");
    assert_string_equal(c->sni, "a.test");
    assert_ptr_equal(c->cert, cert_a);
    assert_false(c->resumed);
    assert_int_equal(sel_calls, 1);
    assert_true(sel_ecdsa);

    /* ALPN as offered: http/1.1 alone; both (server preference: h2); none. */
    reset_server(M_GREET);
    out = s_client("-servername a.test -alpn http/1.1 -ign_eof", NULL, &st);
    assert_true(contains(out, "ALPN protocol: http/1.1"));
    assert_true(contains(out, "hello alpn=http/1.1 sni=a.test"));
    free(out);
    out = s_client("-servername a.test -alpn http/1.1,h2 -ign_eof", NULL, &st);
    assert_true(contains(out, "ALPN protocol: h2"));
    free(out);
    out = s_client("-servername a.test -ign_eof", NULL, &st);
    assert_true(contains(out, "No ALPN negotiated"));
    assert_true(contains(out, "hello alpn= sni=a.test"));
    free(out);
    /* A protocol we do not speak: refused (no_application_protocol), as Go does. */
    out = s_client("-servername a.test -alpn spdy/3 -ign_eof", NULL, &st);
    assert_int_not_equal(st, 0);
    assert_true(contains(out, "no application protocol"));
    free(out);
    assert_ptr_equal(sconns[n_sconns - 1].err, tls_err_alpn);
    /* A key share we do not take: HelloRetryRequest, then P-256 (a second ClientHello that
     * only wolfSSL reads). */
    out = s_client("-servername a.test -alpn h2 -groups secp521r1:P-256 -ign_eof", NULL, &st);
    if (st != 0 || !contains(out, "Server Temp Key: ECDH, prime256v1"))
        fail_msg("HRR: %s", out);
    assert_true(contains(out, "hello alpn=h2 sni=a.test"));
    free(out);
    /* The tls-alpn-01 challenge shape. */
    out = s_client("-servername a.test -alpn acme-tls/1 -ign_eof", NULL, &st);
    assert_true(contains(out, "ALPN protocol: acme-tls/1"));
    free(out);
    assert_true(sel_acme);
}

static void test_server_tls12_and_sni(void **state)
{
    reset_server(M_GREET);
    int st;
    char *out = s_client("-servername a.test -tls1_2 -CAfile ca.pem -ign_eof", NULL, &st);
    if (st != 0)
        fail_msg("s_client: %s", out);
    assert_true(contains(out, "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES"));
    assert_true(contains(out, "GCM"));
    assert_true(contains(out, "hello alpn= sni=a.test"));
    free(out);
    assert_string_equal(sconns[0].version, "TLSv1.2");
    if (strncmp(sconns[0].cipher, "TLS_ECDHE_ECDSA_WITH_AES_", 25) != 0)
        fail_msg("cipher %s", sconns[0].cipher);

    /* SNI picks the RSA certificate; TLS 1.2 then uses ECDHE-RSA. */
    out = s_client("-servername b.test -tls1_2 -CAfile ca.pem -ign_eof", NULL, &st);
    assert_int_equal(st, 0);
    assert_true(contains(out, "subject=CN = b"));
    assert_true(contains(out, "Cipher is ECDHE-RSA-AES"));
    assert_true(contains(out, "Verify return code: 0 (ok)"));
    free(out);
    out = s_client("-servername b.test -tls1_3 -CAfile ca.pem -ign_eof", NULL, &st);
    assert_int_equal(st, 0);
    assert_true(contains(out, "subject=CN = b"));
    assert_true(contains(out, "Peer signature type: RSA-PSS"));
    free(out);
    assert_ptr_equal(sconns[2].cert, cert_b);
    assert_string_equal(sconns[2].sni, "b.test");
    /* A wildcard name served by a: the selector got the lower-cased SNI. */
    out = s_client("-servername X.Wild.TEST -CAfile ca.pem -verify_hostname x.wild.test -ign_eof",
                   NULL, &st);
    assert_int_equal(st, 0);
    assert_true(contains(out, "Verify return code: 0 (ok)"));
    free(out);
    assert_string_equal(sel_sni, "x.wild.test");
    /* ChaCha20-Poly1305 on TLS 1.3 and TLS 1.2. */
    out = s_client("-servername a.test -ciphersuites TLS_CHACHA20_POLY1305_SHA256 -ign_eof", NULL,
                   &st);
    assert_true(contains(out, "Cipher is TLS_CHACHA20_POLY1305_SHA256"));
    free(out);
    out = s_client("-servername a.test -tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305 -ign_eof",
                   NULL, &st);
    assert_true(contains(out, "Cipher is ECDHE-ECDSA-CHACHA20-POLY1305"));
    free(out);
}

static void test_server_refusals(void **state)
{
    reset_server(M_GREET);
    int st;
    /* Unknown SNI: the selector says no, the client gets unrecognized_name. */
    char *out = s_client("-servername nope.test -ign_eof", NULL, &st);
    assert_int_not_equal(st, 0);
    assert_true(contains(out, "unrecognized name"));
    free(out);
    assert_ptr_equal(sconns[0].err, tls_err_no_cert);
    assert_string_equal(sel_sni, "nope.test");

    /* Old versions: openssl allows them only at security level 0; our server still refuses. */
    const char *old[] = {"-tls1", "-tls1_1"};
    for (int i = 0; i < 2; i++) {
        char args[200];
        snprintf(args, sizeof args, "-servername a.test %s -cipher DEFAULT@SECLEVEL=0 -ign_eof",
                 old[i]);
        out = s_client(args, NULL, &st);
        assert_int_not_equal(st, 0);
        assert_false(contains(out, "hello alpn"));
        free(out);
        assert_ptr_equal(sconns[n_sconns - 1].err, tls_err_handshake);
    }
    /* No forward secrecy (RSA key exchange), and CBC-only offers: no shared cipher. */
    const char *ciphers[] = {"AES128-GCM-SHA256:AES256-GCM-SHA384",
                             "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384",
                             "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-SHA"};
    const char *names[] = {"b.test", "a.test", "b.test"};
    for (int i = 0; i < 3; i++) {
        char args[300];
        snprintf(args, sizeof args, "-servername %s -tls1_2 -cipher %s -ign_eof", names[i],
                 ciphers[i]);
        out = s_client(args, NULL, &st);
        assert_int_not_equal(st, 0);
        assert_false(contains(out, "hello alpn"));
        free(out);
        assert_ptr_equal(sconns[n_sconns - 1].err, tls_err_handshake);
    }
    struct tls_stats ts;
    tls_stats(&ts);
    assert_true(ts.failures >= 6);
}

static void test_server_resumption(void **state)
{
    reset_server(M_GREET);
    int st;
    const char *vers[] = {"-tls1_3", "-tls1_2"};
    const char *want[] = {"Reused, TLSv1.3", "Reused, TLSv1.2"};
    for (int i = 0; i < 2; i++) {
        char args[300];
        snprintf(args, sizeof args, "-servername a.test %s -sess_out sess%d.pem -ign_eof", vers[i],
                 i);
        char *out = s_client(args, NULL, &st);
        assert_int_equal(st, 0);
        assert_true(contains(out, "New, TLSv1."));
        free(out);
        snprintf(args, sizeof args, "-servername a.test %s -sess_in sess%d.pem -ign_eof", vers[i],
                 i);
        out = s_client(args, NULL, &st);
        assert_int_equal(st, 0);
        if (!contains(out, want[i]))
            fail_msg("no resumption with %s:\n%s", vers[i], out);
        assert_true(contains(out, "hello alpn= sni=a.test"));
        free(out);
        assert_true(sconns[n_sconns - 1].resumed);
        assert_false(sconns[n_sconns - 2].resumed);
    }
    struct tls_stats ts;
    tls_stats(&ts);
    assert_true(ts.resumed >= 2);
}

/* The ticket binds the SNI: a ticket from a.test never opens for b.test. Keys rotate. */
static void test_ticket_keys(void **state)
{
    struct tls_stream fake;
    memset(&fake, 0, sizeof fake);
    fake.ctx = sctx;
    WOLFSSL *ssl = wolfSSL_new(cert_a->_wctx);
    assert_non_null(ssl);
    wolfSSL_set_app_data(ssl, &fake);
    uint8_t name[16], iv[16], mac[32], t[200], orig[200];
    for (size_t i = 0; i < sizeof t; i++)
        orig[i] = t[i] = (uint8_t)i;
    int out = 0;
    fake.name = "a.test";
    assert_int_equal(ticket_cb(ssl, name, iv, mac, 1, t, (int)sizeof t, &out, NULL),
                     WOLFSSL_TICKET_RET_OK);
    assert_int_equal(out, (int)sizeof t);
    assert_memory_not_equal(t, orig, sizeof t);
    uint8_t sealed[200];
    memcpy(sealed, t, sizeof t);
    fake.name = "b.test";
    assert_int_equal(ticket_cb(ssl, name, iv, mac, 0, t, (int)sizeof t, &out, NULL),
                     WOLFSSL_TICKET_RET_REJECT);
    fake.name = "a.test";
    memcpy(t, sealed, sizeof t);
    assert_int_equal(ticket_cb(ssl, name, iv, mac, 0, t, (int)sizeof t, &out, NULL),
                     WOLFSSL_TICKET_RET_OK);
    assert_memory_equal(t, orig, sizeof t);
    /* A flipped byte anywhere fails. */
    memcpy(t, sealed, sizeof t);
    t[7] ^= 1;
    assert_int_equal(ticket_cb(ssl, name, iv, mac, 0, t, (int)sizeof t, &out, NULL),
                     WOLFSSL_TICKET_RET_REJECT);
    /* One period later the key is the previous one: still opens, asks for a new ticket. */
    uint64_t period = (uint64_t)TLS_TICKET_LIFETIME_S * 1000;
    sctx->keys[0].born_ms -= period;
    memcpy(t, sealed, sizeof t);
    assert_int_equal(ticket_cb(ssl, name, iv, mac, 0, t, (int)sizeof t, &out, NULL),
                     WOLFSSL_TICKET_RET_CREATE);
    assert_memory_not_equal(sctx->keys[0].name, name, 16);
    /* Two periods: gone. */
    sctx->keys[1].born_ms -= period;
    sctx->keys[0].born_ms -= 2 * period;
    memcpy(t, sealed, sizeof t);
    assert_int_equal(ticket_cb(ssl, name, iv, mac, 0, t, (int)sizeof t, &out, NULL),
                     WOLFSSL_TICKET_RET_REJECT);
    wolfSSL_free(ssl);
}

static void test_server_plain_http_and_curl(void **state)
{
    reset_server(M_HTTP);
    /* Plaintext HTTP to the TLS port gets Go's answer. */
    pid_t pid = spawn(NULL, "curl.out", "curl -sS http://127.0.0.1:%u/x", port);
    run_child(pid, 20000);
    char *out = slurp("curl.out", NULL);
    assert_true(contains(out, "Client sent an HTTP request to an HTTPS server."));
    free(out);
    assert_ptr_equal(sconns[0].err, tls_err_not_tls);

    /* curl over TLS (HTTP/1.1 over ALPN), verifying with the test CA. */
    pid = spawn(NULL, "curl.out",
                "curl -sS -v --http1.1 --cacert ca.pem --resolve a.test:%u:127.0.0.1 "
                "https://a.test:%u/",
                port, port);
    int st = run_child(pid, 20000);
    out = slurp("curl.out", NULL);
    if (st != 0 || !contains(out, "hello alpn=http/1.1 sni=a.test"))
        fail_msg("curl: %s", out);
    assert_true(contains(out, "SSL connection using TLSv1.3"));
    assert_true(contains(out, "ALPN: server accepted http/1.1") ||
                contains(out, "ALPN, server accepted to use http/1.1"));
    free(out);
}

/* A router read the first bytes and hands them over with the stream. */
static void test_server_initial_bytes(void **state)
{
    reset_server(M_GREET);
    wrap_with_peek = true;
    int st;
    char *out = s_client("-servername b.test -alpn h2 -ign_eof", NULL, &st);
    assert_int_equal(st, 0);
    assert_true(contains(out, "hello alpn=h2 sni=b.test"));
    free(out);
    assert_true(sconns[0].connected);
}

/* 16 MiB through openssl s_client and our echo: byte-identical; close_notify back to it. */
static void test_server_echo_bulk(void **state)
{
    reset_server(M_ECHO);
    /* -quiet: only the received bytes on stdout; -ign_eof: keep reading after stdin ends. Our
     * echo server closes (close_notify) when it sees s_client's EOF... which never comes with
     * -ign_eof, so it closes after BULK bytes. */
    pid_t pid = spawn("bulk.in", "bulk.out",
                      "openssl s_client -connect 127.0.0.1:%u -servername a.test -quiet "
                      "2>/dev/null",
                      port);
    /* Close once everything came back: done from the loop by watching rx. */
    uint64_t end = nb_now_ms() + 60000;
    int st = -1;
    bool closed = false;
    while (!reaped(pid, &st)) {
        assert_true(nb_now_ms() < end);
        nb_loop_run_once(loop, 10);
        if (!closed && n_sconns == 1 && sconns[0].rx == BULK) {
            s_close(&sconns[0], false);
            closed = true;
        }
    }
    settle(20);
    assert_int_equal(sconns[0].rx, BULK);
    assert_int_equal(sh("cmp bulk.in bulk.out"), 0);
    assert_true(sconns[0].max_queued <= NB_STREAM_HIGH_WATER + BULK / 4);
}

/* s_client sends close_notify when its input ends: our server reports on_eof from it. */
static void test_server_close_notify_in(void **state)
{
    reset_server(M_ECHO);
    assert_int_equal(sh("printf 'ping\\n' > ping.in"), 0);
    int st;
    char *out = s_client("-servername a.test -quiet -no_ign_eof", "ping.in", &st);
    free(out);
    settle(20);
    assert_true(sconns[0].eof);
    assert_true(sconns[0].notify);
    assert_null(sconns[0].err);
}

/* ---- client tests: openssl s_server ---- */

struct cconn {
    struct nb_stream *s;
    bool done; /* on_connect came */
    const char *err;
    bool eof;
    bool notify;
    bool closed;
    uint64_t rx;
    bool bad;
    char buf[1 << 16];
    size_t len;
    bool check_pattern; /* after skip bytes */
    size_t skip;
    bool slow;
};

static void c_connect(void *arg, struct nb_stream *s, const char *err)
{
    struct cconn *c = arg;
    (void)s;
    c->done = true;
    c->err = err;
}

static void c_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    struct cconn *c = arg;
    (void)s;
    for (size_t i = 0; i < n; i++) {
        uint64_t at = c->rx + i;
        if (c->len < sizeof c->buf - 1 && (!c->check_pattern || at < c->skip))
            c->buf[c->len++] = (char)d[i];
        if (c->check_pattern && at >= c->skip && d[i] != pat(at - c->skip))
            c->bad = true;
    }
    c->buf[c->len] = '\0';
    c->rx += n;
}

static void c_eof(void *arg, struct nb_stream *s)
{
    struct cconn *c = arg;
    c->eof = true;
    c->notify = ((struct tls_stream *)s)->notify_rx;
}

static void c_error(void *arg, struct nb_stream *s, const char *err)
{
    struct cconn *c = arg;
    (void)s;
    c->err = err;
}

static const struct nb_stream_cbs ccbs = {
    .on_data = c_data, .on_eof = c_eof, .on_error = c_error, .on_connect = c_connect};

static struct cconn cc;

static bool cc_done(void)
{
    return cc.done;
}

static bool cc_finished(void)
{
    return cc.eof || cc.err;
}

static int host_dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                     void *arg, struct nb_stream **out)
{
    (void)ctx;
    return nb_tcp_connect(loop, dst, 5000, cbs, arg, out);
}

static const struct nb_dialer host_dialer = {host_dial, NULL};

static struct tls_ctx *client_ctx(const char *ca, const char *alpn)
{
    size_t l;
    char *pem = slurp(ca, &l);
    struct tls_client_opts o = {.ca_pem = pem, .ca_pem_len = l, .alpn = alpn};
    struct tls_ctx *c = NULL;
    assert_int_equal(tls_ctx_new_client(&o, &c), NB_OK);
    free(pem);
    return c;
}

/* A LISTEN socket on 127.0.0.1:p in /proc/net/tcp (s_server -quiet prints no "ACCEPT"). */
static bool port_listening(uint16_t p)
{
    char want[32], line[256];
    bool found = false;
    snprintf(want, sizeof want, "0100007F:%04X", p);
    FILE *f = fopen("/proc/net/tcp", "r");
    while (f && !found && fgets(line, sizeof line, f)) {
        char local[64], remote[64];
        unsigned st;
        if (sscanf(line, " %*d: %63s %63s %x", local, remote, &st) == 3 && st == 0x0A &&
            strcmp(local, want) == 0)
            found = true;
    }
    if (f)
        fclose(f);
    return found;
}

/* Starts s_server and waits until it accepts. */
static pid_t s_server(uint16_t *sp, const char *fmt, ...)
{
    char args[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    *sp = free_port();
    char op[512];
    tpath(op, sizeof op, "ss.out");
    unlink(op);
    if (fifo_fd < 0) {
        char fp[512];
        assert_int_equal(sh("rm -f fifo && mkfifo fifo"), 0);
        tpath(fp, sizeof fp, "fifo");
        fifo_fd = open(fp, O_RDWR | O_CLOEXEC);
        assert_true(fifo_fd >= 0);
    }
    pid_t pid =
        spawn("fifo", "ss.out", "openssl s_server -accept 127.0.0.1:%u -naccept 1 %s", *sp, args);
    uint64_t end = nb_now_ms() + 10000;
    while (!port_listening(*sp)) {
        assert_true(nb_now_ms() < end);
        usleep(20000);
    }
    return pid;
}

static void client_connect(struct tls_ctx *ctx, uint16_t p, const char *name, bool skip,
                           const char *alpn)
{
    memset(&cc, 0, sizeof cc);
    struct tls_dialer d;
    struct tls_connect_opts o = {
        .server_name = name, .skip_verify = skip, .alpn = alpn, .handshake_timeout_ms = 10000};
    assert_int_equal(tls_dialer_init(&d, ctx, &host_dialer, &o), NB_OK);
    struct sockaddr_in a = loopback(p);
    assert_int_equal(d.base.dial(d.base.ctx, (struct sockaddr *)&a, &ccbs, &cc, &cc.s), NB_OK);
    tls_dialer_deinit(&d); /* streams keep their own references */
    assert_true(run_until(cc_done, 15000));
}

static void test_client_verify(void **state)
{
    struct tls_ctx *ctx = client_ctx("ca.pem", "h2,http/1.1");
    uint16_t sp;
    struct {
        const char *cert, *name;
        bool skip;
        const char *want; /* NULL = success */
    } cases[] = {
        {"localhost", "localhost", false, NULL},
        {"localhost", "wrong.test", false, tls_err_verify},
        {"other", "localhost", false, tls_err_verify}, /* signed by an untrusted CA */
        {"other", "localhost", true, NULL},            /* skip_tls_verify */
        {"localhost", "127.0.0.1", false, NULL},       /* IP SAN */
        {"b", "127.0.0.1", false, tls_err_verify},     /* no IP SAN */
        {"a", "x.wild.test", false, NULL},             /* wildcard SAN */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pid_t pid =
            s_server(&sp, "-cert %s.pem -key %s.key -alpn h2", cases[i].cert, cases[i].cert);
        client_connect(ctx, sp, cases[i].name, cases[i].skip, NULL);
        if (cc.err != cases[i].want) {
            char *o = slurp("ss.out", NULL);
            fail_msg("case %zu: got %s\n%s", i + 1, cc.err ? cc.err : "success", o);
        }
        if (cc.err == NULL) {
            struct tls_info in;
            assert_int_equal(tls_stream_info(cc.s, &in), NB_OK);
            assert_string_equal(in.alpn, "h2");
            assert_string_equal(in.version, "TLSv1.3");
            assert_null(in.cert);
        }
        nb_stream_close(cc.s, true);
        stop_child(pid);
        settle(10);
    }
    tls_ctx_unref(ctx);
}

/* The system roots: a real context, and a certificate they do not know. */
static void test_client_system_roots(void **state)
{
    struct tls_ctx *ctx = NULL;
    assert_int_equal(tls_ctx_new_client(NULL, &ctx), NB_OK);
    uint16_t sp;
    pid_t pid = s_server(&sp, "-cert localhost.pem -key localhost.key");
    client_connect(ctx, sp, "localhost", false, NULL);
    assert_ptr_equal(cc.err, tls_err_verify);
    nb_stream_close(cc.s, true);
    stop_child(pid);
    tls_ctx_unref(ctx);
    struct tls_client_opts bad = {.ca_file = "/nonexistent/ca.pem"};
    assert_int_equal(tls_ctx_new_client(&bad, &ctx), NB_E_IO);
    struct tls_client_opts junk = {.ca_pem = "junk", .ca_pem_len = 4};
    assert_int_equal(tls_ctx_new_client(&junk, &ctx), NB_E_PARSE);
    settle(10);
}

/* ALPN: h2 offered and selected; the server choosing nothing is not an error. */
static void test_client_alpn(void **state)
{
    struct tls_ctx *ctx = client_ctx("ca.pem", "h2,http/1.1");
    uint16_t sp;
    pid_t pid = s_server(&sp, "-cert localhost.pem -key localhost.key -alpn h2");
    client_connect(ctx, sp, "localhost", false, "h2");
    assert_null(cc.err);
    struct tls_info in = {0};
    assert_int_equal(tls_stream_info(cc.s, &in), NB_OK);
    assert_string_equal(in.alpn, "h2");
    assert_string_equal(in.sni, "localhost");
    nb_stream_close(cc.s, false);
    run_child(pid, 10000);
    char *o = slurp("ss.out", NULL);
    assert_true(contains(o, "ALPN protocols advertised by the client: h2"));
    free(o);

    /* No protocol in common: OpenSSL's s_server answers no_application_protocol. */
    pid = s_server(&sp, "-cert localhost.pem -key localhost.key -alpn spdy/3");
    client_connect(ctx, sp, "localhost", false, NULL);
    assert_ptr_equal(cc.err, tls_err_alpn);
    nb_stream_close(cc.s, true);
    stop_child(pid);
    /* A server without ALPN: no protocol, no error. */
    pid = s_server(&sp, "-cert localhost.pem -key localhost.key");
    client_connect(ctx, sp, "localhost", false, NULL);
    assert_null(cc.err);
    assert_int_equal(tls_stream_info(cc.s, &in), NB_OK);
    assert_string_equal(in.alpn, "");
    nb_stream_close(cc.s, true);
    stop_child(pid);
    settle(10);
    tls_ctx_unref(ctx);
}

/* 16 MiB each way with s_server: a file served by -WWW, and our upload printed by -quiet. */
static void test_client_bulk(void **state)
{
    struct tls_ctx *ctx = client_ctx("ca.pem", NULL);
    uint16_t sp;
    /* Download: GET /bulk.in (written by setup) from s_server -WWW. */
    pid_t pid = s_server(&sp, "-cert localhost.pem -key localhost.key -WWW");
    memset(&cc, 0, sizeof cc);
    client_connect(ctx, sp, "localhost", false, NULL);
    assert_null(cc.err);
    const char get[] = "GET /bulk.in HTTP/1.0\r\n\r\n";
    assert_int_equal(nb_stream_write(cc.s, get, sizeof get - 1), NB_OK);
    /* The head is "HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n\r\n". */
    cc.check_pattern = true;
    cc.skip = strlen("HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n\r\n");
    assert_true(run_until(cc_finished, 60000));
    assert_null(cc.err);
    assert_false(cc.bad);
    assert_int_equal(cc.rx, cc.skip + BULK);
    assert_true(contains(cc.buf, "HTTP/1.0 200 ok"));
    nb_stream_close(cc.s, false);
    run_child(pid, 10000);

    /* Upload: s_server prints what it gets. */
    pid = s_server(&sp, "-cert localhost.pem -key localhost.key -quiet");
    client_connect(ctx, sp, "localhost", false, NULL);
    assert_null(cc.err);
    static uint8_t chunk[65536];
    uint64_t sent = 0;
    uint64_t end = nb_now_ms() + 60000;
    while (sent < BULK) {
        assert_true(nb_now_ms() < end);
        if (nb_stream_write_full(cc.s)) {
            nb_loop_run_once(loop, 10);
            continue;
        }
        for (size_t i = 0; i < sizeof chunk; i++)
            chunk[i] = pat(sent + i);
        assert_int_equal(nb_stream_write(cc.s, chunk, sizeof chunk), NB_OK);
        assert_true(nb_stream_queued(cc.s) < NB_STREAM_HIGH_WATER + 2 * sizeof chunk);
        sent += sizeof chunk;
    }
    nb_stream_close(cc.s, false); /* close_notify after the queue */
    run_child(pid, 60000);
    assert_int_equal(sh("cmp bulk.in ss.out"), 0);
    tls_ctx_unref(ctx);
}

/* ---- both sides ours ---- */

static struct tls_ctx *cctx_pair;

static void pair_connect(const char *name)
{
    memset(&cc, 0, sizeof cc);
    struct nb_stream *raw;
    struct sockaddr_in a = loopback(port);
    assert_int_equal(nb_tcp_connect(loop, (struct sockaddr *)&a, 5000, NULL, NULL, &raw), NB_OK);
    struct tls_connect_opts o = {.server_name = name, .handshake_timeout_ms = 10000};
    assert_int_equal(tls_client_wrap(cctx_pair, raw, &o, &cc.s), NB_OK);
    nb_stream_set_cbs(cc.s, &ccbs, &cc);
}

/* 16 MiB echo with a slow reader: the server's queue stays bounded and it pauses; half-close
 * both ways with close_notify. Writes before the handshake are queued. */
static void test_pair_backpressure(void **state)
{
    reset_server(M_ECHO);
    cctx_pair = client_ctx("ca.pem", "h2");
    pair_connect("a.test");
    static uint8_t chunk[100000];
    uint64_t sent = 0;
    cc.check_pattern = true;
    /* Before the handshake: queued, counted. */
    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = pat(i);
    assert_int_equal(nb_stream_write(cc.s, chunk, sizeof chunk), NB_OK);
    assert_int_equal(nb_stream_queued(cc.s), sizeof chunk);
    sent = sizeof chunk;
    uint64_t end = nb_now_ms() + 120000;
    /* The client does not read until the server had to stop reading (its echo queue hit the
     * high-water mark) and the client's own writes are held back in turn. */
    nb_stream_pause(cc.s, true);
    bool reading = false;
    while (cc.rx < BULK) {
        assert_true(nb_now_ms() < end);
        if (sent < BULK && !nb_stream_write_full(cc.s)) {
            size_t n = BULK - sent < sizeof chunk ? (size_t)(BULK - sent) : sizeof chunk;
            for (size_t i = 0; i < n; i++)
                chunk[i] = pat(sent + i);
            assert_int_equal(nb_stream_write(cc.s, chunk, n), NB_OK);
            sent += n;
            if (sent == BULK)
                assert_int_equal(nb_stream_shutdown(cc.s), NB_OK);
        }
        if (!reading && n_sconns > 0 && sconns[0].pauses > 0 && nb_stream_write_full(cc.s)) {
            /* Both directions are stalled and memory stayed bounded: read now. */
            assert_true(nb_stream_queued(cc.s) < NB_STREAM_HIGH_WATER + 2 * sizeof chunk);
            nb_stream_pause(cc.s, false);
            reading = true;
        }
        nb_loop_run_once(loop, 10);
    }
    assert_true(reading);
    assert_true(run_until(cc_finished, 10000));
    assert_false(cc.bad);
    assert_int_equal(cc.rx, BULK);
    assert_true(cc.eof);
    assert_true(cc.notify); /* the server's close_notify */
    struct sconn *s = &sconns[0];
    assert_true(s->eof);
    assert_true(s->notify); /* ours, from shutdown() */
    assert_true(s->pauses > 0);
    assert_true(s->drains > 0);
    /* Bounded: high water plus what one read delivered. */
    assert_true(s->max_queued <= NB_STREAM_HIGH_WATER + 4 * PLAIN_BUF);
    assert_string_equal(s->alpn, "h2");
    nb_stream_close(cc.s, false);
    settle(20);
    tls_ctx_unref(cctx_pair);
}

static bool first_failed(void)
{
    return n_sconns > 0 && sconns[0].err != NULL;
}

/* A client that never speaks: the handshake timeout fires. */
static void test_pair_timeout(void **state)
{
    reset_server(M_ECHO);
    hs_timeout_ms = 200;
    struct nb_stream *raw;
    struct sockaddr_in a = loopback(port);
    assert_int_equal(nb_tcp_connect(loop, (struct sockaddr *)&a, 5000, NULL, NULL, &raw), NB_OK);
    uint64_t t0 = nb_now_ms();
    assert_true(run_until(first_failed, 5000));
    assert_ptr_equal(sconns[0].err, tls_err_timeout);
    assert_true(nb_now_ms() - t0 >= 190);
    nb_stream_close(raw, true);
    /* A client timeout too: our client against a server that never answers. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in b = loopback(0);
    socklen_t bl = sizeof b;
    assert_int_equal(bind(lfd, (struct sockaddr *)&b, sizeof b), 0);
    assert_int_equal(listen(lfd, 4), 0);
    getsockname(lfd, (struct sockaddr *)&b, &bl);
    struct tls_ctx *ctx = client_ctx("ca.pem", NULL);
    memset(&cc, 0, sizeof cc);
    assert_int_equal(nb_tcp_connect(loop, (struct sockaddr *)&b, 5000, NULL, NULL, &raw), NB_OK);
    struct tls_connect_opts o = {.server_name = "localhost", .handshake_timeout_ms = 200};
    assert_int_equal(tls_client_wrap(ctx, raw, &o, &cc.s), NB_OK);
    nb_stream_set_cbs(cc.s, &ccbs, &cc);
    assert_true(run_until(cc_done, 5000));
    assert_ptr_equal(cc.err, tls_err_timeout);
    nb_stream_close(cc.s, true);
    close(lfd);
    /* A refused connection is reported by on_connect with the transport's reason. */
    memset(&cc, 0, sizeof cc);
    assert_int_equal(nb_tcp_connect(loop, (struct sockaddr *)&b, 5000, NULL, NULL, &raw), NB_OK);
    assert_int_equal(tls_client_wrap(ctx, raw, &o, &cc.s), NB_OK);
    nb_stream_set_cbs(cc.s, &ccbs, &cc);
    assert_true(run_until(cc_done, 5000));
    assert_string_equal(cc.err, "connection refused");
    nb_stream_close(cc.s, true);
    settle(10);
    tls_ctx_unref(ctx);
}

static bool server_eof_or_err(void)
{
    return n_sconns > 0 && (sconns[0].eof || sconns[0].err);
}

/* The transport ends without close_notify: at a record boundary it is on_eof, inside a record
 * tls_err_truncated. A graceful close during the handshake still delivers what was written. */
static void test_pair_eof_kinds(void **state)
{
    struct tls_ctx *ctx = client_ctx("ca.pem", NULL);
    cctx_pair = ctx;
    for (int trunc = 0; trunc < 2; trunc++) {
        reset_server(M_ECHO);
        pair_connect("a.test");
        assert_true(run_until(cc_done, 5000));
        assert_null(cc.err);
        struct tls_stream *ts = (struct tls_stream *)cc.s;
        if (trunc) {
            const uint8_t part[] = {23, 3, 3, 0, 40, 1, 2};
            assert_int_equal(nb_stream_write(ts->inner, part, sizeof part), NB_OK);
        }
        assert_int_equal(nb_stream_shutdown(ts->inner), NB_OK); /* FIN, no close_notify */
        assert_true(run_until(server_eof_or_err, 5000));
        if (trunc) {
            assert_ptr_equal(sconns[0].err, tls_err_truncated);
        } else {
            assert_true(sconns[0].eof);
            assert_false(sconns[0].notify);
            assert_null(sconns[0].err);
        }
        nb_stream_close(cc.s, true);
        settle(10);
    }
    /* Half-close both ways: the client shuts down (close_notify), the server still writes,
     * then shuts down its side; each side sees the other's close_notify as on_eof. */
    reset_server(M_ECHO);
    bye_on_eof = true;
    pair_connect("a.test");
    assert_int_equal(nb_stream_write(cc.s, "x", 1), NB_OK);
    assert_int_equal(nb_stream_shutdown(cc.s), NB_OK);
    assert_int_equal(nb_stream_write(cc.s, "y", 1), NB_E_CLOSED);
    assert_true(run_until(cc_finished, 5000));
    assert_null(cc.err);
    assert_string_equal(cc.buf, "xbye");
    assert_true(cc.notify);
    assert_true(sconns[0].notify);
    nb_stream_close(cc.s, false);
    settle(10);

    /* Write, then close(false) before the handshake is done: the bytes still arrive. */
    reset_server(M_ECHO);
    pair_connect("a.test");
    assert_int_equal(nb_stream_write(cc.s, "early", 5), NB_OK);
    nb_stream_close(cc.s, false);
    assert_true(run_until(server_eof_or_err, 5000));
    assert_int_equal(sconns[0].rx, 5);
    assert_true(sconns[0].notify);
    settle(10);
    tls_ctx_unref(ctx);
}

static struct cconn multi[8];

static bool multi_done(void)
{
    for (int i = 0; i < 8; i++)
        if (!multi[i].done)
            return false;
    return true;
}

/* Several handshakes at once on one loop. */
static void test_pair_concurrent(void **state)
{
    reset_server(M_ECHO);
    struct tls_ctx *ctx = client_ctx("ca.pem", NULL);
    memset(multi, 0, sizeof multi);
    for (int i = 0; i < 8; i++) {
        struct nb_stream *raw;
        struct sockaddr_in a = loopback(port);
        assert_int_equal(nb_tcp_connect(loop, (struct sockaddr *)&a, 5000, NULL, NULL, &raw),
                         NB_OK);
        struct tls_connect_opts o = {.server_name = i % 2 ? "a.test" : "b.test",
                                     .handshake_timeout_ms = 10000};
        assert_int_equal(tls_client_wrap(ctx, raw, &o, &multi[i].s), NB_OK);
        nb_stream_set_cbs(multi[i].s, &ccbs, &multi[i]);
    }
    assert_true(run_until(multi_done, 10000));
    for (int i = 0; i < 8; i++) {
        if (multi[i].err)
            fail_msg("conn %d: %s", i, multi[i].err);
        nb_stream_close(multi[i].s, false);
    }
    settle(20);
    tls_ctx_unref(ctx);
}

/* ---- memory per idle connection ---- */

static size_t rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t v = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %zu", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

static int want_conns;

static bool all_connected(void)
{
    int n = 0;
    for (int i = 0; i < n_sconns; i++)
        n += sconns[i].connected;
    return n >= want_conns;
}

/* The client side lives in a child process, so the server's allocations are alone here. */
static void idle_clients(int n, bool tls12, int go_fd, int ready_fd)
{
    struct nb_loop *l = nb_loop_new();
    loop = l;
    struct tls_ctx *ctx = client_ctx("ca.pem", NULL);
    if (tls12 && wolfSSL_CTX_set_max_proto_version(ctx->wctx, TLS1_2_VERSION) != WOLFSSL_SUCCESS)
        _exit(6);
    static struct cconn conns[200];
    int up = 0;
    for (int i = 0; i < n; i++) {
        struct nb_stream *raw;
        struct sockaddr_in a = loopback(port);
        if (nb_tcp_connect(l, (struct sockaddr *)&a, 5000, NULL, NULL, &raw) != NB_OK)
            _exit(2);
        struct tls_connect_opts o = {.server_name = "a.test", .handshake_timeout_ms = 10000};
        if (tls_client_wrap(ctx, raw, &o, &conns[i].s) != NB_OK)
            _exit(3);
        nb_stream_set_cbs(conns[i].s, &ccbs, &conns[i]);
    }
    uint64_t end = nb_now_ms() + 30000;
    while (up < n && nb_now_ms() < end) {
        nb_loop_run_once(l, 10);
        up = 0;
        for (int i = 0; i < n; i++)
            up += conns[i].done && !conns[i].err;
    }
    char c = up == n ? 'y' : 'n';
    if (write(ready_fd, &c, 1) != 1)
        _exit(4);
    /* Idle until told to go. */
    if (read(go_fd, &c, 1) < 0)
        _exit(5);
    _exit(0);
}

static void measure_idle(int n, bool tls12, size_t *per_conn_wolf, size_t *per_conn_rss)
{
    reset_server(M_ECHO);
    int go[2], ready[2];
    assert_int_equal(pipe2(go, O_CLOEXEC), 0);
    assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
    /* One connection first, so that process-wide caches (wolfSSL's FP_ECC tables, the bufq
     * free list) are warm and not counted per connection. */
    for (int round = 0; round < 2; round++) {
        int count = round == 0 ? 4 : n;
        size_t before = wolf_bytes, rss_before = rss_kib();
        int base = n_sconns;
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* Only the parent may hold the write end of `go`: if it dies, the child sees EOF. */
            close(go[1]);
            close(ready[0]);
            idle_clients(count, tls12, go[0], ready[1]);
        }
        want_conns = base + count;
        if (!run_until(all_connected, 30000)) {
            int ok = 0, errs = 0;
            for (int i = 0; i < n_sconns; i++) {
                ok += sconns[i].connected;
                errs += sconns[i].err != NULL;
            }
            fail_msg("round %d: %d server streams, %d connected, %d failed (%s)", round, n_sconns,
                     ok, errs, n_sconns ? (sconns[0].err ? sconns[0].err : "-") : "-");
        }
        char c = 0;
        while (read(ready[0], &c, 1) != 1)
            nb_loop_run_once(loop, 10);
        assert_int_equal(c, 'y');
        settle(50); /* idle: tickets sent, buffers shrunk */
        if (round == 1) {
            *per_conn_wolf = (wolf_bytes - before) / (size_t)count;
            *per_conn_rss = (rss_kib() - rss_before) * 1024 / (size_t)count;
        }
        assert_int_equal(write(go[1], "g", 1), 1); /* the child reads one byte and exits */
        run_child(pid, 20000);
    }
    close(go[0]);
    close(go[1]);
    close(ready[0]);
    close(ready[1]);
    reset_server(M_ECHO);
}

static void test_idle_memory(void **state)
{
    size_t w13, r13, w12, r12;
    measure_idle(200, false, &w13, &r13);
    measure_idle(200, true, &w12, &r12);
    void *probe = calloc(1, sizeof(struct tls_stream));
    size_t ours = malloc_usable_size(probe);
    free(probe);
    /* RSS: the first measurement only (the second reuses the heap the first one freed). */
    (void)r12;
    fprintf(stderr,
            "idle TLS server connection: wolfSSL %zu bytes (TLS 1.3), %zu bytes (TLS 1.2); "
            "tls_stream %zu bytes (malloc %zu); process RSS per idle connection %zu bytes "
            "(TLS 1.3; everything: wolfSSL, tls_stream, TCP stream, malloc overhead); "
            "one loaded certificate (RSA 2048, wolfSSL context) %zu bytes\n",
            w13, w12, sizeof(struct tls_stream), ours, r13, cert_bytes);

    /* Debian's libwolfssl (SESSION_CERTS, ALT chains, OPENSSL_ALL...) costs ~53 KiB per
     * connection; this guards against regressions past that, tls/README.md has the numbers. */
    assert_true(w13 < 64 * 1024);
    assert_true(w12 < 64 * 1024);
}

int main(void)
{
    /* Before the first wolfSSL call: count every allocation it makes. */
    wolfSSL_SetAllocators(cnt_malloc, cnt_free, cnt_realloc);
    if (getenv("TLS_TEST"))
        cmocka_set_test_filter(getenv("TLS_TEST"));
    if (getenv("TLS_DEBUG"))
        nb_log_set_level(NB_LOG_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_tls13_alpn_sni),
        cmocka_unit_test(test_server_tls12_and_sni),
        cmocka_unit_test(test_server_refusals),
        cmocka_unit_test(test_server_resumption),
        cmocka_unit_test(test_ticket_keys),
        cmocka_unit_test(test_server_plain_http_and_curl),
        cmocka_unit_test(test_server_initial_bytes),
        cmocka_unit_test(test_server_echo_bulk),
        cmocka_unit_test(test_server_close_notify_in),
        cmocka_unit_test(test_client_verify),
        cmocka_unit_test(test_client_system_roots),
        cmocka_unit_test(test_client_alpn),
        cmocka_unit_test(test_client_bulk),
        cmocka_unit_test(test_pair_backpressure),
        cmocka_unit_test(test_pair_timeout),
        cmocka_unit_test(test_pair_eof_kinds),
        cmocka_unit_test(test_pair_concurrent),
        cmocka_unit_test(test_idle_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
