/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Accounts: an nb_account_conf turned into a netstack tunnel (netstack/tunnel.h), a dialer for
 * core/proxy.c, and the tunnel-side listeners the appliance opens. Conversions from the config
 * types happen here so that neither netstack/ nor wg/ knows about configuration files.
 */
#include "core/account.h"
#include "netstack/ns_tcp.h"
#include "netstack/ns_udp.h"
#include "netstack/tunnel.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/log.h"
#include "wg/config.h"

#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LISTENERS 8
/* Live TCP connections per account through its tunnel: a quarter of the netstack's 4096 pcbs,
 * so one busy or hostile account cannot starve the others. */
#define NB_ACCOUNT_MAX_CONNS 1024

struct nb_account {
    char *id;
    struct ns_tunnel *tun;
    struct nb_listener *listeners[MAX_LISTENERS];
    unsigned n_listeners;
};

static int dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs, void *arg,
                struct nb_stream **out)
{
    struct nb_account *a = ctx;
    return ns_tcp_connect(ns_tunnel_if(a->tun), dst, cbs, arg, out);
}

/* A UDP flow of the tunnel as an nb_dgram (core/udp_relay.h). */
struct acct_dgram {
    struct nb_dgram base; /* first */
    struct ns_udp *u;
    nb_dgram_recv_fn on_recv;
    void *arg;
};

static void dgram_recv(void *arg, struct ns_udp *u, const uint8_t *data, size_t len)
{
    struct acct_dgram *g = arg;
    (void)u;
    g->on_recv(g->arg, data, len); /* may close (free) g: not touched after */
}

static int dgram_send(struct nb_dgram *d, const void *buf, size_t len)
{
    return ns_udp_send(((struct acct_dgram *)d)->u, buf, len);
}

static void dgram_close(struct nb_dgram *d)
{
    struct acct_dgram *g = (struct acct_dgram *)d;
    ns_udp_close(g->u);
    free(g);
}

static const struct nb_dgram_vtbl dgram_vtbl = {.send = dgram_send, .close = dgram_close};

static int dial_udp(void *ctx, const struct sockaddr *dst, nb_dgram_recv_fn on_recv, void *arg,
                    struct nb_dgram **out)
{
    struct nb_account *a = ctx;
    struct acct_dgram *g = calloc(1, sizeof *g);
    if (g == NULL)
        return NB_E_NOMEM;
    g->base.vt = &dgram_vtbl;
    g->on_recv = on_recv;
    g->arg = arg;
    int rc = ns_udp_open(ns_tunnel_if(a->tun), dst, dgram_recv, g, &g->u);
    if (rc != NB_OK) {
        free(g);
        return rc;
    }
    *out = &g->base;
    return NB_OK;
}

int nb_account_open(struct nb_loop *loop, const struct nb_account_conf *conf,
                    const struct nb_account_opts *opts, struct nb_account **out, char *err,
                    size_t errlen)
{
    int rc = NB_E_NOMEM;
    struct ns_addr addrs[NS_IF_MAX_ADDRS];
    struct ns_tunnel_peer *peers = NULL;
    struct wg_allowedip *aips = NULL;
    size_t total_aips = 0;
    struct nb_account *a = calloc(1, sizeof *a);
    if (a == NULL || (a->id = strdup(conf->id)) == NULL)
        goto fail;
    if (conf->n_addresses > NS_IF_MAX_ADDRS) {
        snprintf(err, errlen, "at most %d tunnel addresses", NS_IF_MAX_ADDRS);
        rc = NB_E_INVAL;
        goto fail;
    }
    for (uint32_t i = 0; i < conf->n_addresses; i++) {
        addrs[i].family = conf->addresses[i].family;
        memcpy(addrs[i].ip, conf->addresses[i].addr, 16);
        addrs[i].prefix_len = conf->addresses[i].len;
    }
    for (uint32_t i = 0; i < conf->n_peers; i++)
        total_aips += conf->peers[i].n_allowed_ips;
    peers = calloc(conf->n_peers ? conf->n_peers : 1, sizeof *peers);
    aips = calloc(total_aips ? total_aips : 1, sizeof *aips);
    if (peers == NULL || aips == NULL)
        goto fail;
    size_t k = 0;
    for (uint32_t i = 0; i < conf->n_peers; i++) {
        const struct nb_peer_conf *pc = &conf->peers[i];
        struct ns_tunnel_peer *p = &peers[i];
        memcpy(p->public_key, pc->public_key, sizeof p->public_key);
        p->psk = pc->has_psk ? pc->psk : opts ? opts->preshared_key : NULL;
        if (pc->has_endpoint) {
            p->endpoint = (const struct sockaddr *)&pc->endpoint;
            p->endpoint_len = nb_addr_len(p->endpoint);
        }
        p->allowed_ips = &aips[k];
        p->n_allowed_ips = pc->n_allowed_ips;
        for (uint32_t j = 0; j < pc->n_allowed_ips; j++, k++) {
            aips[k].family = pc->allowed_ips[j].family;
            memcpy(aips[k].addr, pc->allowed_ips[j].addr, 16);
            aips[k].cidr = pc->allowed_ips[j].len;
        }
        p->keepalive_s = pc->persistent_keepalive;
    }
    struct wg_device_params wp = {.rekey_after_time_ms = opts ? opts->rekey_after_time_ms : 0};
    struct ns_tunnel_config tc = {
        .wg_params = &wp,
        .tag = conf->id,
        .private_key = conf->private_key,
        .listen_port = conf->listen_port ? conf->listen_port
                       : opts            ? opts->wg_port
                                         : 0,
        .addrs = addrs,
        .n_addrs = conf->n_addresses,
        .mtu = conf->mtu,
        .max_conns = NB_ACCOUNT_MAX_CONNS,
        .peers = peers,
        .n_peers = conf->n_peers,
    };
    rc = ns_tunnel_new(loop, &tc, &a->tun);
    if (rc != NB_OK) {
        if (rc == NB_E_IO)
            snprintf(err, errlen, "cannot open WireGuard UDP port %u: %s", tc.listen_port,
                     strerror(errno));
        else
            snprintf(err, errlen, "cannot create the tunnel: %s", nb_strerror(rc));
        goto fail;
    }
    free(peers);
    free(aips);
    uint8_t pub[32];
    char pub64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    nb_account_public_key(a, pub);
    sodium_bin2base64(pub64, sizeof pub64, pub, 32, sodium_base64_VARIANT_ORIGINAL);
    char ip[NB_ADDRSTRLEN];
    struct sockaddr_storage ss;
    nb_addr_from_ip("0.0.0.0", 0, &ss, NULL);
    if (conf->addresses[0].family == AF_INET) {
        memcpy(&((struct sockaddr_in *)&ss)->sin_addr, conf->addresses[0].addr, 4);
    } else {
        ss.ss_family = AF_INET6;
        memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, conf->addresses[0].addr, 16);
    }
    nb_info("account", "account %s: WireGuard on UDP %u, public key %s, tunnel %s/%u, %u peer(s)",
            a->id, ns_tunnel_port(a->tun), pub64, nb_addr_ip_str((struct sockaddr *)&ss, ip),
            conf->addresses[0].len, conf->n_peers);
    *out = a;
    return NB_OK;
fail:
    if (rc == NB_E_NOMEM && err && errlen && err[0] == '\0')
        snprintf(err, errlen, "out of memory");
    free(peers);
    free(aips);
    if (a)
        free(a->id);
    free(a);
    return rc;
}

void nb_account_close(struct nb_account *a)
{
    if (a == NULL)
        return;
    for (unsigned i = 0; i < a->n_listeners; i++)
        nb_listener_close(a->listeners[i]);
    ns_tunnel_free(a->tun);
    free(a->id);
    free(a);
}

void nb_account_dialer(struct nb_account *a, struct nb_dialer *out)
{
    out->dial = dial;
    out->ctx = a;
}

void nb_account_udp_dialer(struct nb_account *a, struct nb_udp_dialer *out)
{
    out->dial = dial_udp;
    out->ctx = a;
}

int nb_account_listen(struct nb_account *a, uint16_t port, nb_accept_fn on_accept, void *arg)
{
    if (a->n_listeners == MAX_LISTENERS)
        return NB_E_NOMEM;
    struct sockaddr_storage ss;
    nb_addr_from_ip("0.0.0.0", port, &ss, NULL); /* any address of this account's netif */
    int rc = ns_tcp_listen(ns_tunnel_if(a->tun), (struct sockaddr *)&ss, on_accept, arg,
                           &a->listeners[a->n_listeners]);
    if (rc == NB_OK)
        a->n_listeners++;
    return rc;
}

uint16_t nb_account_wg_port(const struct nb_account *a)
{
    return ns_tunnel_port(a->tun);
}

void nb_account_public_key(const struct nb_account *a, uint8_t out[32])
{
    wg_device_public_key(ns_tunnel_device(a->tun), out);
}

int nb_account_set_peer_endpoint(struct nb_account *a, const uint8_t peer_pub[32],
                                 const struct sockaddr *ep)
{
    struct wg_peer *p = wg_device_peer_lookup(ns_tunnel_device(a->tun), peer_pub);
    if (p == NULL)
        return NB_E_NOTFOUND;
    return wg_device_peer_set_endpoint(p, ep, nb_addr_len(ep));
}
