/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Histograms and the Prometheus text writer (metrics.h). Scrapes are rare and small, so the
 * writer simply grows one buffer; formatting uses the shortest exact representation Prometheus
 * accepts (%.17g for values, integers printed as integers).
 */
#include "platform/metrics.h"
#include "platform/utf8.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double nb_hist_bounds_sync_ms[11] = {100,   250,   500,   1000,   2500,  5000,
                                           10000, 30000, 60000, 120000, 300000};
const double nb_hist_bounds_peer_ms[10] = {10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
const double nb_hist_bounds_http_ms[14] = {1,   2.5, 5,    10,   25,   50,    100,
                                           250, 500, 1000, 2500, 5000, 10000, 60000};

void nb_hist_init(struct nb_histogram *h, const double *bounds, uint32_t n_bounds)
{
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->n_bounds = n_bounds > NB_HIST_MAX_BUCKETS ? NB_HIST_MAX_BUCKETS : n_bounds;
}

void nb_hist_observe(struct nb_histogram *h, double v)
{
    uint32_t i = 0;
    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

void nb_prom_init(struct nb_prom *p)
{
    memset(p, 0, sizeof *p);
}

void nb_prom_free(struct nb_prom *p)
{
    free(p->buf);
    memset(p, 0, sizeof *p);
}

static void put(struct nb_prom *p, const char *s, size_t n)
{
    if (p->failed)
        return;
    if (p->len + n + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap < p->len + n + 1)
            cap *= 2;
        char *nb = realloc(p->buf, cap);
        if (nb == NULL) {
            p->failed = true;
            return;
        }
        p->buf = nb;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    p->buf[p->len] = '\0';
}

static void puts_(struct nb_prom *p, const char *s)
{
    put(p, s, strlen(s));
}

static void putf(struct nb_prom *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct nb_prom *p, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    put(p, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void put_value(struct nb_prom *p, double v)
{
    if (isnan(v))
        puts_(p, "NaN");
    else if (isinf(v))
        puts_(p, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 9.007199254740992e15)
        putf(p, "%.0f", v);
    else
        putf(p, "%.17g", v);
}

/* Label values: backslash, double quote and newline are escaped; a byte that does not start a
 * valid UTF-8 sequence becomes U+FFFD (the text format is UTF-8, and one bad value, e.g. an
 * account id from the wire, would make Prometheus reject the whole scrape). */
static void put_label_value(struct nb_prom *p, const char *v)
{
    size_t left = strlen(v);
    while (left) {
        size_t k = nb_utf8_seq((const unsigned char *)v, left);
        if (k == 0)
            puts_(p, "\xef\xbf\xbd");
        else if (*v == '\\')
            puts_(p, "\\\\");
        else if (*v == '"')
            puts_(p, "\\\"");
        else if (*v == '\n')
            puts_(p, "\\n");
        else
            put(p, v, k);
        k = k ? k : 1;
        v += k;
        left -= k;
    }
}

static void put_labels(struct nb_prom *p, const char *const *labels, const char *extra_k,
                       const char *extra_v)
{
    bool any = (labels && labels[0]) || extra_k;
    if (!any)
        return;
    puts_(p, "{");
    bool first = true;
    for (size_t i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
        if (!first)
            puts_(p, ",");
        first = false;
        puts_(p, labels[i]);
        puts_(p, "=\"");
        put_label_value(p, labels[i + 1]);
        puts_(p, "\"");
    }
    if (extra_k) {
        if (!first)
            puts_(p, ",");
        puts_(p, extra_k);
        puts_(p, "=\"");
        put_label_value(p, extra_v);
        puts_(p, "\"");
    }
    puts_(p, "}");
}

void nb_prom_family(struct nb_prom *p, const char *name, const char *type, const char *help)
{
    putf(p, "# HELP %s ", name);
    /* HELP text: backslash and newline escaped. */
    for (const char *h = help; *h; h++) {
        if (*h == '\\')
            puts_(p, "\\\\");
        else if (*h == '\n')
            puts_(p, "\\n");
        else
            put(p, h, 1);
    }
    putf(p, "\n# TYPE %s %s\n", name, type);
}

void nb_prom_sample(struct nb_prom *p, const char *name, const char *const *labels, double value)
{
    puts_(p, name);
    put_labels(p, labels, NULL, NULL);
    puts_(p, " ");
    put_value(p, value);
    puts_(p, "\n");
}

void nb_prom_histogram(struct nb_prom *p, const char *name, const char *const *labels,
                       const struct nb_histogram *h)
{
    char series[128];
    uint64_t cum = 0;
    snprintf(series, sizeof series, "%s_bucket", name);
    for (uint32_t i = 0; i <= h->n_bounds; i++) {
        cum += h->counts[i];
        char le[32];
        if (i == h->n_bounds)
            snprintf(le, sizeof le, "+Inf");
        else if (h->bounds[i] == floor(h->bounds[i]))
            snprintf(le, sizeof le, "%.0f", h->bounds[i]);
        else
            snprintf(le, sizeof le, "%g", h->bounds[i]);
        puts_(p, series);
        put_labels(p, labels, "le", le);
        puts_(p, " ");
        put_value(p, (double)cum);
        puts_(p, "\n");
    }
    snprintf(series, sizeof series, "%s_sum", name);
    nb_prom_sample(p, series, labels, h->sum);
    snprintf(series, sizeof series, "%s_count", name);
    nb_prom_sample(p, series, labels, (double)h->count);
}
