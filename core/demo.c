/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The embedded demo: configuration with fresh keys, and a tiny HTTP responder for the backend
 * account. The responder reads a request head (bounded at 8 KiB), answers one page and closes;
 * it exists to show that bytes crossed a real WireGuard tunnel, not to be a web server.
 */
#include "core/demo.h"
#include "http/server.h"
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

int nb_demo_config(struct nb_standalone *out, uint16_t backend_wg_port, uint16_t proxy_wg_port)
{
    uint8_t kp[32], kb[32], pp[32], pb[32];
    memset(out, 0, sizeof *out);
    randombytes_buf(kp, sizeof kp);
    randombytes_buf(kb, sizeof kb);
    crypto_scalarmult_base(pp, kp);
    crypto_scalarmult_base(pb, kb);
    int rc = NB_E_NOMEM;
    out->accounts = calloc(2, sizeof *out->accounts);
    out->mappings = calloc(2, sizeof *out->mappings);
    if (out->accounts == NULL || out->mappings == NULL)
        goto out;
    out->n_accounts = 2;
    if ((rc = demo_account(&out->accounts[0], "demo", kp, pb, NB_DEMO_PROXY_IP "/16",
                           NB_DEMO_BACKEND_IP "/32", proxy_wg_port, backend_wg_port)) ||
        (rc = demo_account(&out->accounts[1], "demo-backend", kb, pp, NB_DEMO_BACKEND_IP "/16",
                           NB_DEMO_PROXY_IP "/32", backend_wg_port, 0)))
        goto out;
    /* Two HTTP services so both "curl http://localhost:PORT/" and "curl http://127.0.0.1:PORT/"
     * match a Host (the listener itself is main's --http-addr). */
    static const char *const domains[2] = {"localhost", "127.0.0.1"};
    static const char *const ids[2] = {"demo-localhost", "demo-127.0.0.1"};
    out->n_mappings = 2;
    rc = NB_E_NOMEM;
    for (int i = 0; i < 2; i++) {
        struct nb_mapping *m = &out->mappings[i];
        m->type = NB_UPDATE_CREATED;
        m->id = strdup(ids[i]);
        m->account_id = strdup("demo");
        m->domain = strdup(domains[i]);
        m->mode = strdup("http");
        m->paths = calloc(1, sizeof *m->paths);
        if (!m->id || !m->account_id || !m->domain || !m->mode || !m->paths)
            goto out;
        m->n_paths = 1;
        m->paths[0].path = strdup("/");
        m->paths[0].target = strdup("http://" NB_DEMO_BACKEND_IP "/");
        if (m->paths[0].path == NULL || m->paths[0].target == NULL)
            goto out;
    }
    rc = NB_OK;
out:
    sodium_memzero(kp, sizeof kp);
    sodium_memzero(kb, sizeof kb);
    if (rc != NB_OK)
        nb_standalone_free(out);
    return rc;
}

/* ---- the backend's web server ---- */

/*
 * The demo backend answers every request with a page that shows what it received, so the
 * proxy's rules (Host, X-Forwarded-*, X-Real-IP) are visible from curl.
 */
static void demo_request(void *arg, struct http_req *r)
{
    const char *banner = arg ? arg : "nbproxy";
    const struct http_field *xff = http_hdrs_get(&r->hdrs, "x-forwarded-for");
    const struct http_field *xfh = http_hdrs_get(&r->hdrs, "x-forwarded-host");
    const struct http_field *xfp = http_hdrs_get(&r->hdrs, "x-forwarded-proto");
    size_t len = 0;
    char *body = nb_arena_printf(
        &r->arena, &len,
        "hello from %s\n"
        "This page was served by an lwIP netstack inside nbproxy and reached you through\n"
        "nbproxy's HTTP reverse proxy and a WireGuard tunnel (Noise_IKpsk2, ChaCha20-Poly1305)\n"
        "between two userspace accounts of the same process. No TUN, no kernel module, no root.\n"
        "\nWhat the backend received:\n"
        "  %.*s %.*s\n  Host: %.*s\n  X-Forwarded-For: %.*s\n  X-Forwarded-Host: %.*s\n"
        "  X-Forwarded-Proto: %.*s\n",
        banner, (int)r->method_len, r->method, (int)r->target_len, r->target,
        (int)(r->host ? r->host_len : 0), r->host ? r->host : "", (int)(xff ? xff->value_len : 0),
        xff ? xff->value : "", (int)(xfh ? xfh->value_len : 0), xfh ? xfh->value : "",
        (int)(xfp ? xfp->value_len : 0), xfp ? xfp->value : "");
    if (body == NULL) {
        http_resp_abort(r);
        return;
    }
    (void)http_resp_simple(r, 200, "text/plain; charset=utf-8", NULL, body, len);
}

struct http_server *nb_demo_backend_new(struct nb_loop *loop, const char *banner)
{
    struct http_handler h = {.on_request = demo_request, .arg = (void *)banner};
    return http_server_new(loop, NULL, &h);
}
