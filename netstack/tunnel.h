/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_NETSTACK_TUNNEL_H
#define NB_NETSTACK_TUNNEL_H

/*
 * An account's data plane: one host UDP socket (non-blocking, [::]:port dual-stack, or 0.0.0.0
 * when IPv6 is unavailable) + one WireGuard device (wg/device.h) + one ns_if.
 *
 *   UDP readable -> recvmmsg batch -> wg_device_input -> ops.deliver -> ns_if_input -> lwIP
 *   lwIP output -> ns_if output hook -> wg_device_output -> ops.send -> sendto
 *   wg ops.schedule -> nb_timer -> wg_device_timers
 *
 * No allocation per packet: the receive batch buffers are process-wide (single-threaded loop),
 * the device encrypts into its own buffer, the ns_if flattens into its own buffer.
 * Listen and connect through ns_tunnel_if() with ns_tcp_listen / ns_tcp_connect.
 */

#include "netstack/ns_if.h"
#include "wg/crypto.h"
#include "wg/device.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct nb_loop;
struct ns_tunnel;
struct wg_allowedip;

struct ns_tunnel_peer {
    wg_key public_key;
    const uint8_t *psk;              /* WG_KEY_LEN bytes or NULL */
    const struct sockaddr *endpoint; /* NULL = unknown until the peer talks to us */
    socklen_t endpoint_len;
    const struct wg_allowedip *allowed_ips;
    size_t n_allowed_ips;
    uint16_t keepalive_s; /* persistent keepalive, 0 = off (NetBird: 25) */
};

struct ns_tunnel_config {
    const char *tag;             /* account tag */
    const uint8_t *private_key;  /* WG_KEY_LEN bytes */
    uint16_t listen_port;        /* 0 = ephemeral (see ns_tunnel_port) */
    bool ipv4_only;              /* bind 0.0.0.0 instead of [::] */
    const struct ns_addr *addrs; /* tunnel addresses (ns_if_config) */
    size_t n_addrs;
    uint16_t mtu;       /* 0 = 1280 */
    uint32_t max_conns; /* ns_if_config.max_conns */
    const struct ns_tunnel_peer *peers;
    size_t n_peers;
    const struct wg_device_params *wg_params; /* device tunables, NULL = defaults (mtu is set
                                                 from the tunnel MTU either way) */
};

/* Creates the socket, device and interface. NB_OK, NB_E_INVAL, NB_E_NOMEM, NB_E_IO (socket or
 * bind failed; errno kept). ns_init() must have run. */
int ns_tunnel_new(struct nb_loop *loop, const struct ns_tunnel_config *cfg, struct ns_tunnel **out);
/* Frees the interface (see ns_if_free), the device (keys wiped) and the socket. Not from inside
 * a netstack callback. */
void ns_tunnel_free(struct ns_tunnel *t);

/* Adds a peer (or NB_E_EXISTS). */
int ns_tunnel_add_peer(struct ns_tunnel *t, const struct ns_tunnel_peer *p);

struct ns_if *ns_tunnel_if(struct ns_tunnel *t);
/* The device, for peer updates (wg_device_peer_*); do not free it. */
struct wg_device *ns_tunnel_device(struct ns_tunnel *t);
/* The bound UDP port. */
uint16_t ns_tunnel_port(const struct ns_tunnel *t);

struct ns_tunnel_stats {
    uint64_t udp_rx, udp_rx_bytes, udp_rx_errors, udp_rx_truncated;
    uint64_t udp_tx, udp_tx_bytes, udp_tx_errors;
    struct ns_if_stats nif;
    struct wg_device_stats wg;
};
void ns_tunnel_stats(const struct ns_tunnel *t, struct ns_tunnel_stats *st);

#endif
