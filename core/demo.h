/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_CORE_DEMO_H
#define NB_CORE_DEMO_H

/*
 * The embedded default (`nbproxy --demo`): a standalone configuration that needs no management
 * server and no other machine. Two accounts live in the process and talk real WireGuard to each
 * other over UDP on 127.0.0.1: "demo" (the proxy side) and "demo-backend" (a stand-in for a
 * NetBird peer, answering HTTP on its tunnel address 100.64.0.2:80 from its own lwIP netstack).
 * Two HTTP mappings (Hosts "localhost" and "127.0.0.1") route requests from the plain-HTTP
 * listener through the tunnel to that backend.
 */

#include "core/standalone.h"
#include "platform/stream.h"

#include <stdint.h>

struct nb_loop;
struct http_server;

#define NB_DEMO_PORT       8080
#define NB_DEMO_BACKEND_IP "100.64.0.2"
#define NB_DEMO_PROXY_IP   "100.64.0.1"

/* Builds the demo configuration with fresh keys. backend_wg_port is the UDP port the backend
 * account listens on (the proxy account's peer endpoint points there). */
int nb_demo_config(struct nb_standalone *out, uint16_t backend_wg_port, uint16_t proxy_wg_port);

/* The backend account's web server: answers every request with a page showing what it
 * received (method, target, Host, X-Forwarded-*). banner (static) names the backend. */
struct http_server *nb_demo_backend_new(struct nb_loop *loop, const char *banner);

#endif
