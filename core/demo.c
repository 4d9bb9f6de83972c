/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The embedded demo: configuration with fresh keys, and a tiny HTTP responder for the backend
 * account. The responder reads a request head (bounded at 8 KiB), answers one page and closes;
 * it exists to show that bytes crossed a real WireGuard tunnel, not to be a web server.
 */
#include "core/demo.h"
#include "platform/err.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_prefix(struct nb_prefix **list, uint32_t *n, const char *s)
{
    struct nb_prefix *p = realloc(*list, (*n + 1) * sizeof *p);
    if (p == NULL)
        return NB_E_NOMEM;
    *list = p;
    if (nb_prefix_parse(s, &p[*n]) != NB_OK)
        return NB_E_INVAL;
    (*n)++;
    return NB_OK;
}

static int demo_account(struct nb_account_conf *a, const char *id, const uint8_t priv[32],
                        const uint8_t peer_pub[32], const char *addr, const char *peer_ip,
                        uint16_t port, uint16_t peer_port)
{
    memset(a, 0, sizeof *a);
    a->id = strdup(id);
    a->peers = calloc(1, sizeof *a->peers);
    if (a->id == NULL || a->peers == NULL)
        return NB_E_NOMEM;
    a->n_peers = 1;
    memcpy(a->private_key, priv, 32);
    a->listen_port = port;
    a->mtu = 1280;
    int rc = add_prefix(&a->addresses, &a->n_addresses, addr);
    if (rc != NB_OK)
        return rc;
    struct nb_peer_conf *p = &a->peers[0];
    memcpy(p->public_key, peer_pub, 32);
    p->persistent_keepalive = 25;
    if (peer_port) {
        struct sockaddr_in *in = (struct sockaddr_in *)&p->endpoint;
        in->sin_family = AF_INET;
        in->sin_port = htons(peer_port);
        in->sin_addr.s_addr = htonl(0x7f000001);
        p->has_endpoint = true;
    }
    return add_prefix(&p->allowed_ips, &p->n_allowed_ips, peer_ip);
}

int nb_demo_config(struct nb_standalone *out, uint16_t listen_port, uint16_t backend_wg_port,
                   uint16_t proxy_wg_port)
{
    uint8_t kp[32], kb[32], pp[32], pb[32];
    memset(out, 0, sizeof *out);
    randombytes_buf(kp, sizeof kp);
    randombytes_buf(kb, sizeof kb);
    crypto_scalarmult_base(pp, kp);
    crypto_scalarmult_base(pb, kb);
    int rc = NB_E_NOMEM;
    out->accounts = calloc(2, sizeof *out->accounts);
    out->mappings = calloc(1, sizeof *out->mappings);
    if (out->accounts == NULL || out->mappings == NULL)
        goto out;
    out->n_accounts = 2;
    if ((rc = demo_account(&out->accounts[0], "demo", kp, pb, NB_DEMO_PROXY_IP "/16",
                           NB_DEMO_BACKEND_IP "/32", proxy_wg_port, backend_wg_port)) ||
        (rc = demo_account(&out->accounts[1], "demo-backend", kb, pp, NB_DEMO_BACKEND_IP "/16",
                           NB_DEMO_PROXY_IP "/32", backend_wg_port, 0)))
        goto out;
    struct nb_mapping *m = &out->mappings[0];
    out->n_mappings = 1;
    rc = NB_E_NOMEM;
    m->type = NB_UPDATE_CREATED;
    m->id = strdup("demo-tcp");
    m->account_id = strdup("demo");
    m->mode = strdup("tcp");
    m->listen_port = listen_port;
    m->paths = calloc(1, sizeof *m->paths);
    if (!m->id || !m->account_id || !m->mode || !m->paths)
        goto out;
    m->n_paths = 1;
    m->paths[0].target = strdup(NB_DEMO_BACKEND_IP ":80");
    if (m->paths[0].target == NULL)
        goto out;
    rc = NB_OK;
out:
    sodium_memzero(kp, sizeof kp);
    sodium_memzero(kb, sizeof kb);
    if (rc != NB_OK)
        nb_standalone_free(out);
    return rc;
}

/* ---- the responder ---- */

#define HEAD_MAX 8192

struct demo_conn {
    struct nb_stream *s;
    const char *banner;
    size_t got;
    char head[HEAD_MAX];
    bool answered;
};

static uint64_t demo_live;

uint64_t nb_demo_http_live(void)
{
    return demo_live;
}

static void demo_close(struct demo_conn *c, bool abort)
{
    nb_stream_close(c->s, abort);
    demo_live--;
    free(c);
}

static void demo_answer(struct demo_conn *c, int status, const char *reason)
{
    char body[1024], msg[1536];
    int bl;
    if (status == 200)
        bl =
            snprintf(body, sizeof body,
                     "hello from %s\n"
                     "This page was served by an lwIP netstack inside nbproxy and reached you\n"
                     "through a WireGuard tunnel (Noise_IKpsk2, ChaCha20-Poly1305) between two\n"
                     "userspace accounts of the same process. No TUN, no kernel module, no root.\n",
                     c->banner);
    else
        bl = snprintf(body, sizeof body, "%d %s\n", status, reason);
    if (bl < 0 || (size_t)bl >= sizeof body)
        bl = (int)strlen(body); /* truncated: send what fits */
    int ml = snprintf(msg, sizeof msg,
                      "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                      "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                      status, reason, bl, body);
    if (ml < 0 || (size_t)ml >= sizeof msg)
        ml = (int)strlen(msg);
    c->answered = true;
    nb_stream_write(c->s, msg, (size_t)ml);
    nb_stream_shutdown(c->s);
}

static void d_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    struct demo_conn *c = arg;
    if (c->answered)
        return;
    size_t take = n < HEAD_MAX - 1 - c->got ? n : HEAD_MAX - 1 - c->got;
    memcpy(c->head + c->got, d, take);
    c->got += take;
    c->head[c->got] = '\0';
    if (strstr(c->head, "\r\n\r\n") || strstr(c->head, "\n\n"))
        demo_answer(c, 200, "OK");
    else if (c->got == HEAD_MAX - 1)
        demo_answer(c, 431, "Request Header Fields Too Large");
}

static void d_eof(void *arg, struct nb_stream *s)
{
    struct demo_conn *c = arg;
    if (!c->answered)
        demo_answer(c, 400, "Bad Request");
    demo_close(c, false);
}

static void d_error(void *arg, struct nb_stream *s, const char *err)
{
    demo_close(arg, true);
}

static const struct nb_stream_cbs demo_cbs = {
    .on_data = d_data, .on_eof = d_eof, .on_error = d_error};

void nb_demo_http_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    struct demo_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        nb_stream_close(s, true);
        return;
    }
    demo_live++;
    c->s = s;
    c->banner = arg ? arg : "nbproxy";
    nb_stream_set_cbs(s, &demo_cbs, c);
}
