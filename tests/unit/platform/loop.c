/* SPDX-License-Identifier: BSD-3-Clause */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/loop.h"

#include <stdlib.h>
#include <unistd.h>

static int order[16];
static int norder;

static void rec(struct nb_timer *t)
{
    order[norder++] = (int)(intptr_t)t->arg;
}

static void test_timers_fire_in_due_order(void **state)
{
    struct nb_loop *loop = nb_loop_new();
    struct nb_timer t[5];
    static const int delays[5] = {30, 10, 50, 20, 40};
    norder = 0;
    for (int i = 0; i < 5; i++) {
        nb_timer_init(&t[i], rec, (void *)(intptr_t)delays[i]);
        nb_timer_arm(loop, &t[i], (uint64_t)delays[i]);
    }
    /* Cancel one and re-arm another later: cancellation must hold and re-arm must move it. */
    nb_timer_cancel(&t[4]);
    nb_timer_arm(loop, &t[1], 60);
    uint64_t start = nb_now_ms();
    while (norder < 4 && nb_now_ms() - start < 2000)
        nb_loop_run_once(loop, 100);
    assert_int_equal(norder, 4);
    assert_int_equal(order[0], 20);
    assert_int_equal(order[1], 30);
    assert_int_equal(order[2], 50);
    assert_int_equal(order[3], 10); /* re-armed to 60 ms */
    assert_false(nb_timer_armed(&t[4]));
    nb_loop_free(loop);
}

static uint64_t last_due;
static int out_of_order;

static void rec_due(struct nb_timer *t)
{
    if (t->due_ms < last_due)
        out_of_order++;
    last_due = t->due_ms;
    norder++;
}

static void test_timer_heap_random(void **state)
{
    /* Many timers with random deadlines, some cancelled: fired ones come out sorted. */
    struct nb_loop *loop = nb_loop_new();
    enum { N = 300 };
    static struct nb_timer t[N];
    static uint64_t due[N];
    srand(7);
    uint64_t base = nb_now_ms();
    for (int i = 0; i < N; i++) {
        nb_timer_init(&t[i], rec_due, NULL);
        due[i] = base + (uint64_t)(rand() % 1000);
        nb_timer_arm_at(loop, &t[i], due[i]);
    }
    for (int i = 0; i < N; i += 3)
        nb_timer_cancel(&t[i]);
    int fired = 0;
    last_due = 0;
    out_of_order = 0;
    /* Pop by hand through the public API: arm_at in the past fires on the next iteration. */
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0) {
            assert_false(nb_timer_armed(&t[i]));
            continue;
        }
        assert_true(nb_timer_armed(&t[i]));
    }
    norder = 0;
    while (fired < N - (N + 2) / 3 && nb_now_ms() - base < 3000) {
        int before = norder;
        nb_loop_run_once(loop, 50);
        fired += norder - before;
        norder = 0;
    }
    for (int i = 0; i < N; i++)
        assert_false(nb_timer_armed(&t[i]));
    assert_int_equal(out_of_order, 0);
    assert_int_equal(fired, N - (N + 2) / 3);
    nb_loop_free(loop);
}

static int defers_run;
static struct nb_defer d2;
static struct nb_loop *dloop;

static void defer2(struct nb_defer *d)
{
    defers_run += 10;
}

static void defer1(struct nb_defer *d)
{
    defers_run += 1;
    /* A defer queued from a defer runs in the same pass. */
    nb_defer(dloop, &d2, defer2, NULL);
}

static void test_defer_chains_settle(void **state)
{
    struct nb_defer d1 = {0};
    dloop = nb_loop_new();
    defers_run = 0;
    nb_defer(dloop, &d1, defer1, NULL);
    nb_defer(dloop, &d1, defer1, NULL); /* queued once only */
    nb_loop_run_once(dloop, 0);
    assert_int_equal(defers_run, 11);
    nb_loop_free(dloop);
}

static int io_hits;

static void on_pipe(struct nb_io *io, uint32_t ev)
{
    char c;
    if (ev & NB_IO_READ) {
        ssize_t r = read(io->fd, &c, 1);
        assert_int_equal(r, 1);
        io_hits++;
    }
}

static void test_io_watch_and_stop(void **state)
{
    struct nb_loop *loop = nb_loop_new();
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct nb_io io;
    assert_int_equal(nb_io_start(loop, &io, p[0], NB_IO_READ, on_pipe, NULL), 0);
    io_hits = 0;
    assert_int_equal(write(p[1], "ab", 2), 2);
    nb_loop_run_once(loop, 100);
    nb_loop_run_once(loop, 100);
    assert_int_equal(io_hits, 2);
    nb_io_set(&io, 0);
    assert_int_equal(write(p[1], "c", 1), 1);
    nb_loop_run_once(loop, 50);
    assert_int_equal(io_hits, 2); /* quiet while no events are requested */
    nb_io_stop(&io);
    close(p[0]);
    close(p[1]);
    nb_loop_free(loop);
}

static int rearms;

static void rearm_now(struct nb_timer *t)
{
    rearms++;
    nb_timer_arm(t->loop, t, 0); /* "again, now" from its own callback */
}

static void test_timer_rearmed_for_now_waits_for_next_iteration(void **state)
{
    struct nb_loop *loop = nb_loop_new();
    struct nb_timer t;
    nb_timer_init(&t, rearm_now, NULL);
    nb_timer_arm(loop, &t, 0);
    rearms = 0;
    nb_loop_run_once(loop, 10);
    /* Once per pass, not an endless loop inside one pass. */
    assert_in_range(rearms, 1, 2);
    nb_loop_run_once(loop, 10);
    assert_in_range(rearms, 2, 4);
    nb_timer_cancel(&t);
    nb_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_due_order),
        cmocka_unit_test(test_timer_heap_random),
        cmocka_unit_test(test_defer_chains_settle),
        cmocka_unit_test(test_io_watch_and_stop),
        cmocka_unit_test(test_timer_rearmed_for_now_waits_for_next_iteration),
    };
    return cmocka_run_group_tests_name("platform/loop", tests, NULL, NULL);
}
