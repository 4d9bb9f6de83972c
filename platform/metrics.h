/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_PLATFORM_METRICS_H
#define NB_PLATFORM_METRICS_H

/*
 * Metrics without a registry. Modules keep plain counters in their stats structs (nothing on the
 * hot path but an increment) and, where a distribution is needed, an nb_histogram; the /metrics
 * handler reads them at scrape time and writes the Prometheus text exposition format (version
 * 0.0.4) with the writer below. Names and labels follow Prometheus conventions: snake_case,
 * `_total` on counters, base unit in the name (docs/metrics.md lists every series).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A cumulative histogram over fixed upper bounds (ascending); the +Inf bucket is implicit. */
#define NB_HIST_MAX_BUCKETS 16
struct nb_histogram {
    const double *bounds;
    uint32_t n_bounds;
    uint64_t counts[NB_HIST_MAX_BUCKETS + 1]; /* per bucket (not cumulative); [n_bounds] = +Inf */
    uint64_t count;
    double sum;
};

void nb_hist_init(struct nb_histogram *h, const double *bounds, uint32_t n_bounds);
void nb_hist_observe(struct nb_histogram *h, double v);

/* Bucket bounds of spec/proxy.md §9.2 (milliseconds). */
extern const double nb_hist_bounds_sync_ms[11];
extern const double nb_hist_bounds_peer_ms[10];
/* Request and backend latencies (milliseconds): 1 ms .. 60 s. */
extern const double nb_hist_bounds_http_ms[14];

/* The text being written; grows by doubling (malloc). */
struct nb_prom {
    char *buf;
    size_t len;
    size_t cap;
    bool failed; /* an allocation failed: the output is incomplete */
};

void nb_prom_init(struct nb_prom *p);
void nb_prom_free(struct nb_prom *p);
/* "# HELP name help\n# TYPE name type\n" (type: counter, gauge, histogram). Once per family. */
void nb_prom_family(struct nb_prom *p, const char *name, const char *type, const char *help);
/*
 * One sample: name{labels} value. labels is NULL or alternating key, value strings ending with
 * NULL; values are escaped (\\, \", \n) as the format requires.
 */
void nb_prom_sample(struct nb_prom *p, const char *name, const char *const *labels, double value);
/* A whole histogram family's samples (_bucket with le, _sum, _count) for one label set. */
void nb_prom_histogram(struct nb_prom *p, const char *name, const char *const *labels,
                       const struct nb_histogram *h);

#endif
