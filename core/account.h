/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_CORE_ACCOUNT_H
#define NB_CORE_ACCOUNT_H

/*
 * An account: one WireGuard tunnel (UDP socket + wg device + lwIP netif, netstack/tunnel.h) built
 * from an nb_account_conf, plus the listeners the appliance opens on its tunnel addresses. It
 * offers dialers (TCP streams and UDP flows through the tunnel) to core/proxy.c.
 */

#include "core/proxy.h"
#include "core/standalone.h"
#include "core/udp_relay.h"
#include "platform/stream.h"

#include <stddef.h>
#include <stdint.h>

struct nb_loop;
struct nb_account;

struct nb_account_opts {
    uint16_t wg_port;             /* --wg-port: used when the account has no listen port */
    const uint8_t *preshared_key; /* --preshared-key for peers without their own, or NULL */
    uint64_t rekey_after_time_ms; /* test knob NB_PROXY_WG_REKEY_AFTER_TIME, 0 = protocol's */
};

int nb_account_open(struct nb_loop *loop, const struct nb_account_conf *conf,
                    const struct nb_account_opts *opts, struct nb_account **out, char *err,
                    size_t errlen);
/* Closes listeners, streams, the tunnel; wipes keys. */
void nb_account_close(struct nb_account *a);

void nb_account_dialer(struct nb_account *a, struct nb_dialer *out);
/* UDP flows from the account's tunnel address through its tunnel (netstack/ns_udp.h). */
void nb_account_udp_dialer(struct nb_account *a, struct nb_udp_dialer *out);
/* Listens on `port` of the account's first tunnel address; the listener lives as long as the
 * account. */
int nb_account_listen(struct nb_account *a, uint16_t port, nb_accept_fn on_accept, void *arg);
uint16_t nb_account_wg_port(const struct nb_account *a);
void nb_account_public_key(const struct nb_account *a, uint8_t out[32]);
int nb_account_set_peer_endpoint(struct nb_account *a, const uint8_t peer_pub[32],
                                 const struct sockaddr *ep);

#endif
