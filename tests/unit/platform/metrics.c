/* SPDX-License-Identifier: BSD-3-Clause */
/* platform/metrics: histogram buckets and the Prometheus text format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/metrics.h"

#include <string.h>

static void test_histogram_buckets(void **state)
{
    static const double b[3] = {1, 5, 10};
    struct nb_histogram h;
    nb_hist_init(&h, b, 3);
    double vals[] = {0.5, 1, 1.5, 5, 7, 10, 11, 1000};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        nb_hist_observe(&h, vals[i]);
    /* le=1: 0.5, 1; le=5: +1.5, 5; le=10: +7, 10; +Inf: +11, 1000 (upper bounds inclusive) */
    assert_int_equal(h.counts[0], 2);
    assert_int_equal(h.counts[1], 2);
    assert_int_equal(h.counts[2], 2);
    assert_int_equal(h.counts[3], 2);
    assert_int_equal(h.count, 8);
    struct nb_prom p;
    nb_prom_init(&p);
    const char *l[] = {"mode", "tcp", NULL};
    nb_prom_family(&p, "x_ms", "histogram", "help");
    nb_prom_histogram(&p, "x_ms", l, &h);
    assert_false(p.failed);
    assert_string_equal(p.buf, "# HELP x_ms help\n# TYPE x_ms histogram\n"
                               "x_ms_bucket{mode=\"tcp\",le=\"1\"} 2\n"
                               "x_ms_bucket{mode=\"tcp\",le=\"5\"} 4\n"
                               "x_ms_bucket{mode=\"tcp\",le=\"10\"} 6\n"
                               "x_ms_bucket{mode=\"tcp\",le=\"+Inf\"} 8\n"
                               "x_ms_sum{mode=\"tcp\"} 1036\n"
                               "x_ms_count{mode=\"tcp\"} 8\n");
    nb_prom_free(&p);
}

static void test_samples_and_escaping(void **state)
{
    struct nb_prom p;
    nb_prom_init(&p);
    const char *l[] = {"account_id", "a\"b\\c\nd", "result", "ok", NULL};
    nb_prom_family(&p, "y_total", "counter", "two\nlines \\ here");
    nb_prom_sample(&p, "y_total", l, 12345678901.0);
    nb_prom_sample(&p, "y_total", NULL, 0.25);
    assert_string_equal(p.buf, "# HELP y_total two\\nlines \\\\ here\n# TYPE y_total counter\n"
                               "y_total{account_id=\"a\\\"b\\\\c\\nd\",result=\"ok\"} 12345678901\n"
                               "y_total 0.25\n");
    /* A value that is not UTF-8 (bytes from the wire): each bad byte becomes U+FFFD, valid
     * multi-byte sequences pass whole. */
    nb_prom_free(&p);
    nb_prom_init(&p);
    const char *bad[] = {"account_id", "a\xff\xc3\xa9\xed\xa0\x80z", NULL};
    nb_prom_sample(&p, "u", bad, 1);
    assert_string_equal(p.buf, "u{account_id=\"a\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd"
                               "\xef\xbf\xbdz\"} 1\n");
    nb_prom_free(&p);
    nb_prom_init(&p);
    /* Growth past the first buffer keeps everything. */
    for (int i = 0; i < 2000; i++)
        nb_prom_sample(&p, "z", NULL, i);
    assert_false(p.failed);
    assert_non_null(strstr(p.buf, "\nz 1999\n"));
    nb_prom_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test(test_samples_and_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
