/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Health and metrics endpoints (health.h) as an http_server handler on their own listener. The
 * JSON is written by hand in the exact shape Go's encoding/json gives netbird-proxy's structs
 * (`{"status":..,"checks":{..}}`, map keys sorted, empty maps omitted).
 */
#include "core/health.h"
#include "http/server.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"
#include "platform/metrics.h"
#include "platform/sock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nb_health {
    struct nb_loop *loop;
    struct nb_health_opts opts;
    struct http_server *srv;
    struct nb_listener *lst;
    struct http_listener_ctx ctx;
    bool connected;
    bool initial_sync;
    bool shutting_down;
    bool clients_healthy;
};

bool nb_health_ready(const struct nb_health *h)
{
    if (h->shutting_down)
        return false;
    return h->opts.standalone || h->connected;
}

static bool startup_ok(const struct nb_health *h)
{
    if (h->shutting_down)
        return false;
    if (h->opts.standalone)
        return h->clients_healthy;
    return h->connected && h->initial_sync && h->clients_healthy;
}

static const char *b(bool v)
{
    return v ? "true" : "false";
}

/* The checks object, keys sorted as encoding/json writes map keys. */
static int checks_json(const struct nb_health *h, bool full, char *out, size_t len)
{
    if (h->opts.standalone)
        return full ? snprintf(out, len, "{\"all_clients_healthy\":%s,\"standalone\":true}",
                               b(h->clients_healthy))
                    : snprintf(out, len, "{\"standalone\":true}");
    if (!full)
        return snprintf(out, len, "{\"management_connected\":%s}", b(h->connected));
    return snprintf(out, len,
                    "{\"all_clients_healthy\":%s,\"initial_sync_complete\":%s,"
                    "\"management_connected\":%s}",
                    b(h->clients_healthy), b(h->initial_sync), b(h->connected));
}

static void reply(struct http_req *r, int status, const char *type, const char *body, size_t len)
{
    (void)http_resp_simple(r, status, type, NULL, body, len);
}

static void reply_json(struct http_req *r, bool ok, const char *checks)
{
    char body[512];
    int n = checks ? snprintf(body, sizeof body, "{\"status\":\"%s\",\"checks\":%s}\n",
                              ok ? "ok" : "fail", checks)
                   : snprintf(body, sizeof body, "{\"status\":\"%s\"}\n", ok ? "ok" : "fail");
    reply(r, ok ? 200 : 503, "application/json", body, (size_t)n);
}

static bool path_is(const struct http_req *r, const char *p)
{
    return r->path_len == strlen(p) && memcmp(r->path, p, r->path_len) == 0;
}

static void on_request(void *arg, struct http_req *r)
{
    struct nb_health *h = arg;
    char checks[256];
    if (path_is(r, "/healthz/live")) {
        reply_json(r, true, NULL);
    } else if (path_is(r, "/healthz/ready")) {
        checks_json(h, false, checks, sizeof checks);
        reply_json(r, nb_health_ready(h), checks);
    } else if (path_is(r, "/healthz/startup")) {
        checks_json(h, true, checks, sizeof checks);
        reply_json(r, startup_ok(h), checks);
    } else if (path_is(r, "/healthz")) {
        /* Same checks as startup, status and code follow readiness (reference). */
        checks_json(h, true, checks, sizeof checks);
        reply_json(r, nb_health_ready(h), checks);
    } else if (path_is(r, "/metrics") && h->opts.metrics) {
        struct nb_prom p;
        nb_prom_init(&p);
        h->opts.metrics(h->opts.metrics_arg, &p);
        if (p.failed) {
            nb_prom_free(&p);
            reply(r, 500, "text/plain; charset=utf-8", "out of memory\n", 14);
            return;
        }
        reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", p.buf ? p.buf : "", p.len);
        nb_prom_free(&p);
    } else {
        reply(r, 404, "text/plain; charset=utf-8", "404 page not found\n", 19);
    }
}

int nb_health_start(struct nb_loop *loop, const struct nb_health_opts *opts, struct nb_health **out)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (opts->addr == NULL || nb_addr_parse(opts->addr, &ss, &sl) != NB_OK)
        return NB_E_INVAL;
    struct nb_health *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NB_E_NOMEM;
    h->loop = loop;
    h->opts = *opts;
    h->clients_healthy = true; /* no embedded clients yet: healthy (reference) */
    /* ReadTimeout/WriteTimeout 5 s in the reference: header and idle timeouts here. */
    struct http_server_opts so = {
        .read_header_timeout_ms = 5000, .idle_timeout_ms = 5000, .max_conns = 256};
    struct http_handler hd = {on_request, h};
    h->srv = http_server_new(loop, &so, &hd);
    if (h->srv == NULL) {
        free(h);
        return NB_E_NOMEM;
    }
    h->ctx.server = h->srv;
    int rc =
        nb_tcp_listen(loop, (struct sockaddr *)&ss, 128, http_server_accept_cb, &h->ctx, &h->lst);
    if (rc != NB_OK) {
        int e = errno;
        http_server_free(h->srv);
        free(h);
        errno = e;
        return NB_E_IO;
    }
    *out = h;
    return NB_OK;
}

void nb_health_free(struct nb_health *h)
{
    if (h == NULL)
        return;
    if (h->lst)
        nb_listener_close(h->lst);
    http_server_free(h->srv);
    free(h);
}

uint16_t nb_health_port(const struct nb_health *h)
{
    struct sockaddr_storage ss;
    if (h->lst->vt->addr(h->lst, &ss) != NB_OK)
        return 0;
    return nb_addr_port((struct sockaddr *)&ss);
}

void nb_health_set_connected(struct nb_health *h, bool connected)
{
    if (h)
        h->connected = connected;
}

void nb_health_set_initial_sync(struct nb_health *h)
{
    if (h)
        h->initial_sync = true;
}

void nb_health_set_shutting_down(struct nb_health *h)
{
    if (h)
        h->shutting_down = true;
}

void nb_health_set_clients_healthy(struct nb_health *h, bool healthy)
{
    if (h)
        h->clients_healthy = healthy;
}
