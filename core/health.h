/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_CORE_HEALTH_H
#define NB_CORE_HEALTH_H

/*
 * The health and metrics server on --health-addr (spec/proxy.md §9.1): /healthz/live,
 * /healthz/ready, /healthz/startup, /healthz with netbird-proxy's JSON, and /metrics in the
 * Prometheus text format (the caller renders the series, see platform/metrics.h).
 *
 * Readiness: in management mode, "the management stream is connected and we are not shutting
 * down"; startup additionally needs the initial snapshot applied and every embedded client
 * healthy. In standalone mode there is no management connection: the configuration was applied
 * at start, so the checks report `standalone` instead and readiness only drops on shutdown.
 */

#include <stdbool.h>
#include <stdint.h>

struct nb_loop;
struct nb_prom;
struct nb_health;

/* Writes the metric families into p at scrape time. */
typedef void (*nb_metrics_fn)(void *arg, struct nb_prom *p);

struct nb_health_opts {
    const char *addr; /* "localhost:8080", ":9090", "[::1]:8080" */
    bool standalone;  /* no management connection */
    nb_metrics_fn metrics;
    void *metrics_arg;
};

/* Binds and serves. NB_OK, NB_E_INVAL (bad address), NB_E_IO (bind failed: fatal, as in the
 * reference), NB_E_NOMEM. */
int nb_health_start(struct nb_loop *loop, const struct nb_health_opts *opts,
                    struct nb_health **out);
void nb_health_free(struct nb_health *h);

/* State changes (management connection, snapshot, shutdown, embedded clients). */
void nb_health_set_connected(struct nb_health *h, bool connected);
void nb_health_set_initial_sync(struct nb_health *h); /* never cleared (reference) */
void nb_health_set_shutting_down(struct nb_health *h);
void nb_health_set_clients_healthy(struct nb_health *h, bool healthy);

bool nb_health_ready(const struct nb_health *h);
/* The bound port (for ":0" in tests). */
uint16_t nb_health_port(const struct nb_health *h);

#endif
