/* SPDX-License-Identifier: BSD-3-Clause */
/* core/health: the endpoints' codes and JSON as the state changes, in both modes; /metrics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/health.h"
#include "platform/err.h"
#include "platform/loop.h"
#include "platform/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct nb_loop *loop;
static struct nb_health *h;
static int scrapes;

static void metrics(void *arg, struct nb_prom *p)
{
    scrapes++;
    nb_prom_family(p, "t_total", "counter", "test");
    nb_prom_sample(p, "t_total", NULL, 7);
}

/* GET path; returns the status code and copies the body. */
static int get(const char *path, char *body, size_t blen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(nb_health_port(h))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    char req[256];
    int n =
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", path);
    assert_int_equal(send(fd, req, (size_t)n, 0), n);
    char buf[8192];
    size_t len = 0;
    uint64_t end = nb_now_ms() + 2000;
    while (nb_now_ms() < end) {
        nb_loop_run_once(loop, 2);
        ssize_t r = recv(fd, buf + len, sizeof buf - len - 1, 0);
        if (r > 0)
            len += (size_t)r;
        else if (r == 0)
            break;
    }
    close(fd);
    buf[len] = '\0';
    int status = 0;
    sscanf(buf, "HTTP/1.1 %d", &status);
    char *b = strstr(buf, "\r\n\r\n");
    snprintf(body, blen, "%s", b ? b + 4 : "");
    return status;
}

static void start(bool standalone)
{
    loop = nb_loop_new();
    scrapes = 0;
    struct nb_health_opts o = {"127.0.0.1:0", standalone, metrics, NULL};
    assert_int_equal(nb_health_start(loop, &o, &h), NB_OK);
}

static void stop(void)
{
    nb_health_free(h);
    for (int i = 0; i < 5; i++)
        nb_loop_run_once(loop, 0);
    nb_loop_free(loop);
}

static void test_management_mode(void **state)
{
    char body[4096];
    start(false);
    assert_int_equal(get("/healthz/live", body, sizeof body), 200);
    assert_string_equal(body, "{\"status\":\"ok\"}\n");
    /* Not connected yet. */
    assert_int_equal(get("/healthz/ready", body, sizeof body), 503);
    assert_string_equal(body,
                        "{\"status\":\"fail\",\"checks\":{\"management_connected\":false}}\n");
    nb_health_set_connected(h, true);
    assert_int_equal(get("/healthz/ready", body, sizeof body), 200);
    /* Startup needs the snapshot too. */
    assert_int_equal(get("/healthz/startup", body, sizeof body), 503);
    assert_string_equal(body, "{\"status\":\"fail\",\"checks\":{\"all_clients_healthy\":true,"
                              "\"initial_sync_complete\":false,\"management_connected\":true}}\n");
    /* /healthz follows readiness while showing the startup checks. */
    assert_int_equal(get("/healthz", body, sizeof body), 200);
    nb_health_set_initial_sync(h);
    assert_int_equal(get("/healthz/startup", body, sizeof body), 200);
    nb_health_set_clients_healthy(h, false);
    assert_int_equal(get("/healthz/startup", body, sizeof body), 503);
    nb_health_set_clients_healthy(h, true);
    /* Reconnecting: readiness drops, the snapshot flag stays. */
    nb_health_set_connected(h, false);
    assert_int_equal(get("/healthz/ready", body, sizeof body), 503);
    nb_health_set_connected(h, true);
    nb_health_set_shutting_down(h);
    assert_int_equal(get("/healthz/ready", body, sizeof body), 503);
    assert_int_equal(get("/healthz/live", body, sizeof body), 200);
    assert_int_equal(get("/nope", body, sizeof body), 404);
    stop();
}

static void test_standalone_and_metrics(void **state)
{
    char body[4096];
    start(true);
    assert_int_equal(get("/healthz/ready", body, sizeof body), 200);
    assert_string_equal(body, "{\"status\":\"ok\",\"checks\":{\"standalone\":true}}\n");
    assert_int_equal(get("/healthz/startup", body, sizeof body), 200);
    assert_int_equal(get("/metrics", body, sizeof body), 200);
    assert_string_equal(body, "# HELP t_total test\n# TYPE t_total counter\nt_total 7\n");
    assert_int_equal(scrapes, 1);
    nb_health_set_shutting_down(h);
    assert_int_equal(get("/healthz/ready", body, sizeof body), 503);
    stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_management_mode),
        cmocka_unit_test(test_standalone_and_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
