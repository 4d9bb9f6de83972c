/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Test-only program for tests/interop/acme_test.sh: runs the ACME manager on the loop against a
 * real CA (pebble), with
 *   - a TLS listener (tls_server_wrap, ALPN "http/1.1,acme-tls/1") whose certificate selector
 *     calls acme_challenge_cert() when the ClientHello offers only acme-tls/1 and
 *     acme_cert_for() otherwise; it answers any request with "ok <sni>\n" (for curl);
 *   - a plain HTTP listener answering with acme_mgr_http01() (the --acme-addr handler).
 * It prints "READY <domain> issued=<0|1>" on every certificate that becomes ready, and on
 * SIGTERM/SIGINT "STATS orders=.. issued=.. from_cache=.. failures=.. renewals=.." and exits.
 *
 * usage: acme_e2e --dir URL --ca FILE --cert-dir DIR --tls-port P --http-port P [--http01]
 *                 [--eab-kid K --eab-key B64URL] [--no-alpn DOMAIN] DOMAIN...
 * --no-alpn DOMAIN: the selector refuses tls-alpn-01 for that domain (forces http-01 fallback).
 */
#include "acme/mgr.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"
#include "platform/sock.h"
#include "tls/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct nb_loop *loop;
static struct acme_mgr *mgr;
static const char *no_alpn;

struct conn {
    struct nb_stream *s;
    bool tls;
    char buf[4096];
    size_t len;
};

static void on_ready(void *arg, const char *domain, bool issued)
{
    printf("READY %s issued=%d\n", domain, issued ? 1 : 0);
    fflush(stdout);
}

static struct tls_cert *select_cert(void *arg, const struct tls_hello *h)
{
    if (h->acme_only) {
        if (no_alpn && strcmp(h->sni, no_alpn) == 0)
            return NULL;
        return acme_challenge_cert(mgr, h->sni);
    }
    return acme_cert_for(mgr, h->sni, h->ecdsa_ok);
}

static void c_close(struct conn *c)
{
    nb_stream_close(c->s, false);
    free(c); /* no callback runs after close */
}

static void c_error(void *arg, struct nb_stream *s, const char *err)
{
    c_close(arg);
}

static void c_eof(void *arg, struct nb_stream *s)
{
    c_close(arg);
}

static void c_connect(void *arg, struct nb_stream *s, const char *err)
{
    if (err)
        c_close(arg);
}

/* Host field value of the head in c->buf ("" when none). */
static void header_host(const char *head, char *out, size_t cap)
{
    out[0] = '\0';
    const char *p = strcasestr(head, "\r\nHost:");
    if (!p)
        return;
    p += 7;
    while (*p == ' ')
        p++;
    size_t l = strcspn(p, "\r\n ");
    if (l < cap) {
        memcpy(out, p, l);
        out[l] = '\0';
    }
}

static void c_data(void *arg, struct nb_stream *s, const uint8_t *data, size_t len)
{
    struct conn *c = arg;
    if (c->len + len >= sizeof c->buf) {
        c_close(c);
        return;
    }
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    c->buf[c->len] = '\0';
    if (!strstr(c->buf, "\r\n\r\n"))
        return;
    char out[4096];
    int n;
    if (c->tls) {
        struct tls_info ti;
        const char *sni = tls_stream_info(s, &ti) == NB_OK ? ti.sni : "?";
        n = snprintf(out, sizeof out,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\nok %s\n",
                     strlen(sni) + 4, sni);
    } else {
        char method[16], target[2048], host[256];
        if (sscanf(c->buf, "%15s %2047s", method, target) != 2) {
            c_close(c);
            return;
        }
        header_host(c->buf, host, sizeof host);
        struct acme_http01_reply r;
        acme_mgr_http01(mgr, method, host, target, &r);
        n = snprintf(out, sizeof out,
                     "HTTP/1.1 %d X\r\nContent-Type: %s\r\n%s%s%sContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%.*s",
                     r.status, r.content_type, r.location[0] ? "Location: " : "", r.location,
                     r.location[0] ? "\r\n" : "", r.body_len, (int)r.body_len, r.body);
    }
    if (n > 0 && (size_t)n < sizeof out)
        (void)nb_stream_write(s, out, (size_t)n);
    c_close(c);
}

static const struct nb_stream_cbs ccbs = {
    .on_data = c_data, .on_eof = c_eof, .on_error = c_error, .on_connect = c_connect};

static struct tls_ctx *sctx;

static void on_accept_tls(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    struct nb_stream *t;
    if (tls_server_wrap(sctx, s, NULL, 0, 10000, &t) != NB_OK) {
        nb_stream_close(s, true);
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        nb_stream_close(t, true);
        return;
    }
    c->s = t;
    c->tls = true;
    nb_stream_set_cbs(t, &ccbs, c);
}

static void on_accept_http(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        nb_stream_close(s, true);
        return;
    }
    c->s = s;
    nb_stream_set_cbs(s, &ccbs, c);
}

static void on_signal(void *arg, int signo)
{
    nb_loop_stop(loop);
}

int main(int argc, char **argv)
{
    struct acme_mgr_opts o = {0};
    const char *domains[16];
    size_t nd = 0;
    int tls_port = 0, http_port = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dir") && v)
            o.dir_url = v, i++;
        else if (!strcmp(a, "--ca") && v)
            o.ca_file = v, i++;
        else if (!strcmp(a, "--cert-dir") && v)
            o.cert_dir = v, i++;
        else if (!strcmp(a, "--tls-port") && v)
            tls_port = atoi(v), i++;
        else if (!strcmp(a, "--http-port") && v)
            http_port = atoi(v), i++;
        else if (!strcmp(a, "--eab-kid") && v)
            o.eab_kid = v, i++;
        else if (!strcmp(a, "--eab-key") && v)
            o.eab_hmac_key = v, i++;
        else if (!strcmp(a, "--no-alpn") && v)
            no_alpn = v, i++;
        else if (!strcmp(a, "--http01"))
            o.http01 = true;
        else if (!strcmp(a, "--retry-ms") && v)
            o.retry_ms = (uint32_t)atoi(v), i++;
        else if (a[0] != '-' && nd < 16)
            domains[nd++] = a;
        else {
            fprintf(stderr, "acme_e2e: bad argument %s\n", a);
            return 2;
        }
    }
    const char *lvl = getenv("NB_LOG_LEVEL");
    nb_log_set_level(lvl && !strcmp(lvl, "debug") ? NB_LOG_DEBUG : NB_LOG_INFO);
    loop = nb_loop_new();
    o.loop = loop;
    o.on_ready = on_ready;
    if (nb_loop_watch_signals(loop, on_signal, NULL) != NB_OK)
        return 1;
    struct tls_server_opts so = {.select = select_cert, .alpn = "http/1.1,acme-tls/1"};
    if (tls_ctx_new_server(&so, &sctx) != NB_OK)
        return 1;
    struct sockaddr_storage a1, a2;
    struct nb_listener *l1 = NULL, *l2 = NULL;
    nb_addr_from_ip("127.0.0.1", (uint16_t)tls_port, &a1, NULL);
    nb_addr_from_ip("127.0.0.1", (uint16_t)http_port, &a2, NULL);
    if (nb_tcp_listen(loop, (struct sockaddr *)&a1, 64, on_accept_tls, NULL, &l1) != NB_OK ||
        nb_tcp_listen(loop, (struct sockaddr *)&a2, 64, on_accept_http, NULL, &l2) != NB_OK) {
        fprintf(stderr, "acme_e2e: cannot listen\n");
        return 1;
    }
    int rc = acme_mgr_new(&o, &mgr);
    if (rc != NB_OK) {
        fprintf(stderr, "acme_e2e: acme_mgr_new: %s\n", nb_strerror(rc));
        return 1;
    }
    for (size_t i = 0; i < nd; i++)
        if (acme_mgr_add(mgr, domains[i]) != NB_OK) {
            fprintf(stderr, "acme_e2e: bad domain %s\n", domains[i]);
            return 2;
        }
    printf("STARTED\n");
    fflush(stdout);
    nb_loop_run(loop);
    struct acme_mgr_stats st;
    acme_mgr_stats(mgr, &st);
    printf("STATS orders=%llu issued=%llu from_cache=%llu failures=%llu renewals=%llu\n",
           (unsigned long long)st.orders, (unsigned long long)st.issued,
           (unsigned long long)st.from_cache, (unsigned long long)st.failures,
           (unsigned long long)st.renewals);
    for (size_t i = 0; i < nd; i++)
        printf("STATE %s %s\n", domains[i], acme_dstate_name(acme_mgr_state(mgr, domains[i])));
    fflush(stdout);
    acme_mgr_free(mgr);
    nb_listener_close(l1);
    nb_listener_close(l2);
    tls_ctx_unref(sctx);
    for (int i = 0; i < 20; i++)
        nb_loop_run_once(loop, 5);
    nb_loop_free(loop);
    return 0;
}
