/* SPDX-License-Identifier: BSD-3-Clause */
#include "core/tcp_metrics.h"

#include "platform/err.h"

#include <stdlib.h>
#include <string.h>

const double nb_tcp_duration_bounds_ms[12] = {100,   500,    1000,   5000,   10000,   30000,
                                              60000, 120000, 300000, 600000, 1800000, 3600000};

struct nb_tcp_metrics *nb_tcp_metrics_new(void)
{
    struct nb_tcp_metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->refs = 1;
    nb_strmap_init(&m->accounts);
    nb_hist_init(&m->duration_ms, nb_tcp_duration_bounds_ms, 12);
    return m;
}

struct nb_tcp_metrics *nb_tcp_metrics_ref(struct nb_tcp_metrics *m)
{
    if (m)
        m->refs++;
    return m;
}

void nb_tcp_metrics_unref(struct nb_tcp_metrics *m)
{
    if (m == NULL || --m->refs > 0)
        return;
    /* Every entry holds a reference: the map is empty here. */
    nb_strmap_deinit(&m->accounts);
    free(m);
}

struct nb_tcp_acct *nb_tcp_acct_hold(struct nb_tcp_metrics *m, const char *account_id)
{
    if (m == NULL)
        return NULL;
    const char *id = account_id ? account_id : "";
    struct nb_tcp_acct *a = nb_strmap_get(&m->accounts, id);
    if (a) {
        a->holds++;
        return a;
    }
    a = calloc(1, sizeof *a);
    if (a == NULL || (a->id = strdup(id)) == NULL) {
        free(a);
        return NULL;
    }
    if (nb_strmap_put(&m->accounts, id, a, NULL) != NB_OK) {
        free(a->id);
        free(a);
        return NULL;
    }
    a->m = m;
    a->holds = 1;
    m->refs++;
    return a;
}

void nb_tcp_acct_release(struct nb_tcp_acct *a)
{
    if (a == NULL || --a->holds > 0)
        return;
    struct nb_tcp_metrics *m = a->m;
    nb_strmap_del(&m->accounts, a->id);
    free(a->id);
    free(a);
    nb_tcp_metrics_unref(m);
}

void nb_tcp_metrics_relay_done(struct nb_tcp_metrics *m, uint64_t duration_ms, uint64_t up,
                               uint64_t down)
{
    if (m == NULL)
        return;
    nb_hist_observe(&m->duration_ms, (double)duration_ms);
    m->bytes_up += up;
    m->bytes_down += down;
}

void nb_tcp_metrics_render(const struct nb_tcp_metrics *m, struct nb_prom *p)
{
    struct nb_strmap_iter it = {0};
    void *v;
    nb_prom_family(p, "proxy_tcp_active_connections", "gauge",
                   "Relayed tcp and tls connections open (dialling or relaying), by account.");
    while (nb_strmap_next(&m->accounts, &it, &v) != NULL) {
        const struct nb_tcp_acct *a = v;
        const char *l[] = {"account_id", a->id, NULL};
        nb_prom_sample(p, "proxy_tcp_active_connections", l, (double)a->active);
    }
    nb_prom_family(p, "proxy_tcp_connections_total", "counter",
                   "Relayed tcp and tls connections by account and result.");
    static const char *const results[3] = {"success", "dial_error", "rejected"};
    it = (struct nb_strmap_iter){0};
    while (nb_strmap_next(&m->accounts, &it, &v) != NULL) {
        const struct nb_tcp_acct *a = v;
        const uint64_t n[3] = {a->success, a->dial_error, a->rejected};
        for (int i = 0; i < 3; i++) {
            const char *l[] = {"account_id", a->id, "result", results[i], NULL};
            nb_prom_sample(p, "proxy_tcp_connections_total", l, (double)n[i]);
        }
    }
    nb_prom_family(p, "proxy_tcp_connection_duration_ms", "histogram",
                   "Lifetime of relayed tcp and tls connections, milliseconds.");
    nb_prom_histogram(p, "proxy_tcp_connection_duration_ms", NULL, &m->duration_ms);
    nb_prom_family(p, "proxy_tcp_bytes_total", "counter",
                   "Bytes relayed over tcp and tls connections, by direction.");
    const char *up[] = {"direction", "client_to_backend", NULL},
               *down[] = {"direction", "backend_to_client", NULL};
    nb_prom_sample(p, "proxy_tcp_bytes_total", up, (double)m->bytes_up);
    nb_prom_sample(p, "proxy_tcp_bytes_total", down, (double)m->bytes_down);
}
