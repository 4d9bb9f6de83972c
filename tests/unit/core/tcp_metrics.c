/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * core/tcp_metrics: per-account entries live exactly as long as something holds them (bounded
 * cardinality), the table outlives its creator's reference while entries exist, and the
 * rendered series carry escaped account_id labels, lifetimes and byte counts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/tcp_metrics.h"
#include "platform/metrics.h"

#include <stdio.h>
#include <string.h>

static void holds_and_releases(void **state)
{
    (void)state;
    struct nb_tcp_metrics *m = nb_tcp_metrics_new();
    assert_non_null(m);
    struct nb_tcp_acct *a1 = nb_tcp_acct_hold(m, "acct-a");
    struct nb_tcp_acct *a2 = nb_tcp_acct_hold(m, "acct-a");
    struct nb_tcp_acct *b = nb_tcp_acct_hold(m, "acct-b");
    assert_ptr_equal(a1, a2);
    assert_ptr_not_equal(a1, b);
    assert_int_equal(m->accounts.count, 2);
    a1->success = 5;
    nb_tcp_acct_release(a2);
    assert_int_equal(m->accounts.count, 2); /* a1 still holds acct-a */
    assert_int_equal(a1->success, 5);
    nb_tcp_acct_release(a1);
    assert_int_equal(m->accounts.count, 1); /* gone with its last hold */
    /* A new hold starts from zero. */
    a1 = nb_tcp_acct_hold(m, "acct-a");
    assert_int_equal(a1->success, 0);
    /* The creator lets go first: the entries keep the table alive (ASan checks the rest). */
    nb_tcp_metrics_unref(m);
    b->active = 1;
    nb_tcp_acct_release(b);
    nb_tcp_acct_release(a1);
    nb_tcp_acct_release(NULL);
    assert_null(nb_tcp_acct_hold(NULL, "x"));
}

/* Many accounts come and go: the map holds only the live ones. */
static void churn_is_bounded(void **state)
{
    (void)state;
    struct nb_tcp_metrics *m = nb_tcp_metrics_new();
    char id[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof id, "acct-%d", i);
        struct nb_tcp_acct *a = nb_tcp_acct_hold(m, id);
        assert_non_null(a);
        a->success++;
        nb_tcp_acct_release(a);
    }
    assert_int_equal(m->accounts.count, 0);
    nb_tcp_metrics_unref(m);
}

static void render(void **state)
{
    (void)state;
    struct nb_tcp_metrics *m = nb_tcp_metrics_new();
    struct nb_tcp_acct *a = nb_tcp_acct_hold(m, "we\"ird\\acct\nid");
    a->active = 2;
    a->success = 7;
    a->dial_error = 1;
    a->rejected = 3;
    nb_tcp_metrics_relay_done(m, 250, 1000, 70);
    nb_tcp_metrics_relay_done(m, 40000, 5, 0);
    struct nb_prom p;
    nb_prom_init(&p);
    nb_tcp_metrics_render(m, &p);
    assert_false(p.failed);
    const char *want[] = {
        "# TYPE proxy_tcp_active_connections gauge\n",
        "proxy_tcp_active_connections{account_id=\"we\\\"ird\\\\acct\\nid\"} 2\n",
        "proxy_tcp_connections_total{account_id=\"we\\\"ird\\\\acct\\nid\",result=\"success\"} 7\n",
        "proxy_tcp_connections_total{account_id=\"we\\\"ird\\\\acct\\nid\",result=\"dial_error\"} "
        "1\n",
        "proxy_tcp_connections_total{account_id=\"we\\\"ird\\\\acct\\nid\",result=\"rejected\"} "
        "3\n",
        "# TYPE proxy_tcp_connection_duration_ms histogram\n",
        "proxy_tcp_connection_duration_ms_bucket{le=\"100\"} 0\n",
        "proxy_tcp_connection_duration_ms_bucket{le=\"500\"} 1\n",
        "proxy_tcp_connection_duration_ms_bucket{le=\"30000\"} 1\n",
        "proxy_tcp_connection_duration_ms_bucket{le=\"60000\"} 2\n",
        "proxy_tcp_connection_duration_ms_bucket{le=\"+Inf\"} 2\n",
        "proxy_tcp_connection_duration_ms_sum 40250\n",
        "proxy_tcp_connection_duration_ms_count 2\n",
        "# TYPE proxy_tcp_bytes_total counter\n",
        "proxy_tcp_bytes_total{direction=\"client_to_backend\"} 1005\n",
        "proxy_tcp_bytes_total{direction=\"backend_to_client\"} 70\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (strstr(p.buf, want[i]) == NULL)
            fail_msg("missing %s in:\n%s", want[i], p.buf);
    nb_prom_free(&p);
    /* The account's last hold goes: its series go too; the families stay. */
    nb_tcp_acct_release(a);
    nb_prom_init(&p);
    nb_tcp_metrics_render(m, &p);
    assert_null(strstr(p.buf, "account_id="));
    assert_non_null(strstr(p.buf, "# TYPE proxy_tcp_connections_total counter\n"));
    assert_non_null(strstr(p.buf, "proxy_tcp_bytes_total{direction=\"backend_to_client\"} 70\n"));
    nb_prom_free(&p);
    nb_tcp_metrics_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(holds_and_releases),
        cmocka_unit_test(churn_is_bounded),
        cmocka_unit_test(render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
