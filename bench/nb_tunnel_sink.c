/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * nb_tunnel_sink: the far end of the nbproxy <-> nbproxy tunnel benchmark
 * (bench/tunnel_throughput.sh, case c). It loads a standalone JSON file (docs/standalone.md;
 * only "accounts" matter, mappings are ignored), opens the accounts on one loop with their own
 * netstack, and for every --forward TUNNELPORT:HOSTIP:HOSTPORT listens on TUNNELPORT of an
 * account's tunnel address and relays each accepted connection to HOSTIP:HOSTPORT on the host,
 * with nb_tcp_connect + nb_relay_start: the same relay the proxy uses for tcp mappings. So a
 * server on the host answers through this process's netstack and WireGuard.
 *
 *   nb_tunnel_sink --config FILE [--account ID] --forward 5201:127.0.0.1:5201 [...]
 *                  [--log-level LEVEL]
 *
 * Not a test, not part of the appliance. SIGINT/SIGTERM stop it.
 */
#include "core/account.h"
#include "platform/relay.h"
#include "core/standalone.h"
#include "netstack/ns.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"
#include "platform/sock.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FORWARDS 16
#define DIAL_MS      10000u

struct forward {
    struct sink *sink;
    uint16_t tunnel_port;
    struct sockaddr_storage host;
    char host_str[NB_ADDRSTRLEN];
};

/* One accepted tunnel connection: dialling the host, then relayed. */
struct conn {
    struct sink *sink;
    struct forward *fwd;
    struct nb_stream *tunnel; /* accepted from the account's netstack */
    struct nb_stream *host;   /* host TCP towards fwd->host */
    struct nb_relay *relay;   /* non-NULL once relaying: it owns both streams */
    struct conn *next, **pprev;
};

struct sink {
    struct nb_loop *loop;
    struct nb_account **accounts;
    uint32_t n_accounts;
    struct forward fwd[MAX_FORWARDS];
    uint32_t n_fwd;
    struct conn *conns;
    uint64_t accepted, relayed, failed;
};

static void conn_unlink(struct conn *c)
{
    if (c->pprev == NULL)
        return;
    *c->pprev = c->next;
    if (c->next)
        c->next->pprev = c->pprev;
    c->pprev = NULL;
}

/* Ends a connection that has no relay (dial pending or failed). */
static void conn_abort(struct conn *c, const char *why)
{
    nb_info("sink", "tunnel port %u -> %s: %s", (unsigned)c->fwd->tunnel_port, c->fwd->host_str,
            why);
    c->sink->failed++;
    if (c->host)
        nb_stream_close(c->host, true);
    if (c->tunnel)
        nb_stream_close(c->tunnel, true);
    conn_unlink(c);
    free(c);
}

static void relay_done(void *arg, struct nb_relay *r, const struct nb_relay_result *res)
{
    struct conn *c = arg;
    nb_info("sink", "tunnel port %u -> %s: done, up %llu bytes, down %llu bytes, %llu ms%s%s",
            (unsigned)c->fwd->tunnel_port, c->fwd->host_str, (unsigned long long)res->bytes_up,
            (unsigned long long)res->bytes_down,
            (unsigned long long)(res->ended_ms - res->started_ms), res->reason ? ", " : "",
            res->reason ? res->reason : "");
    conn_unlink(c);
    free(c);
}

static void host_connected(void *arg, struct nb_stream *s, const char *err)
{
    struct conn *c = arg;
    if (err != NULL) {
        conn_abort(c, err);
        return;
    }
    struct nb_stream *tunnel = c->tunnel, *host = c->host;
    c->tunnel = c->host = NULL; /* the relay owns them from here on, also on failure */
    struct nb_relay_opts ro = {.idle_timeout_ms = 0};
    if (nb_relay_start(c->sink->loop, tunnel, host, &ro, relay_done, c, &c->relay) != NB_OK) {
        conn_abort(c, "out of memory starting the relay");
        return;
    }
    c->sink->relayed++;
}

static void host_error(void *arg, struct nb_stream *s, const char *err)
{
    conn_abort(arg, err);
}

static const struct nb_stream_cbs host_cbs = {
    .on_error = host_error,
    .on_connect = host_connected,
};

static void tunnel_error(void *arg, struct nb_stream *s, const char *err)
{
    conn_abort(arg, err);
}

static void tunnel_eof(void *arg, struct nb_stream *s)
{
    /* Paused while dialling: no EOF is reported. */
}

static const struct nb_stream_cbs waiting_tunnel_cbs = {
    .on_eof = tunnel_eof,
    .on_error = tunnel_error,
};

static void on_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    struct forward *f = arg;
    struct sink *k = f->sink;
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        k->failed++;
        nb_stream_close(s, true);
        return;
    }
    k->accepted++;
    c->sink = k;
    c->fwd = f;
    c->tunnel = s;
    nb_stream_set_cbs(s, &waiting_tunnel_cbs, c);
    nb_stream_pause(s, true);
    c->next = k->conns;
    if (k->conns)
        k->conns->pprev = &c->next;
    k->conns = c;
    c->pprev = &k->conns;
    int rc = nb_tcp_connect(k->loop, (struct sockaddr *)&f->host, DIAL_MS, &host_cbs, c, &c->host);
    if (rc != NB_OK) {
        c->host = NULL;
        conn_abort(c, nb_strerror(rc));
    }
}

static void on_signal(void *arg, int signo)
{
    struct sink *k = arg;
    nb_info("sink", "signal %d: stopping", signo);
    nb_loop_stop(k->loop);
}

/* "5201:127.0.0.1:5201" or "5201:[::1]:5201". */
static int parse_forward(const char *spec, struct forward *f)
{
    char *end;
    unsigned long tp = strtoul(spec, &end, 10);
    if (end == spec || *end != ':' || tp < 1 || tp > 65535)
        return NB_E_INVAL;
    socklen_t len;
    if (nb_addr_parse(end + 1, &f->host, &len) != NB_OK)
        return NB_E_INVAL;
    f->tunnel_port = (uint16_t)tp;
    nb_addr_str((struct sockaddr *)&f->host, f->host_str);
    return NB_OK;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: nb_tunnel_sink --config FILE [--account ID] "
                 "--forward TUNNELPORT:HOSTIP:HOSTPORT [...] [--log-level LEVEL]\n");
}

int main(int argc, char **argv)
{
    const char *config = NULL, *account_id = NULL, *level = "info";
    struct sink k = {0};
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL) {
            usage(stderr);
            return 2;
        }
        if (strcmp(argv[i], "--config") == 0) {
            config = v;
        } else if (strcmp(argv[i], "--account") == 0) {
            account_id = v;
        } else if (strcmp(argv[i], "--log-level") == 0) {
            level = v;
        } else if (strcmp(argv[i], "--forward") == 0) {
            if (k.n_fwd == MAX_FORWARDS || parse_forward(v, &k.fwd[k.n_fwd]) != NB_OK) {
                fprintf(stderr, "nb_tunnel_sink: bad or too many --forward: %s\n", v);
                return 2;
            }
            k.fwd[k.n_fwd].sink = &k;
            k.n_fwd++;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (config == NULL || k.n_fwd == 0) {
        usage(stderr);
        return 2;
    }
    int lvl = nb_log_level_parse(level);
    if (lvl < 0) {
        fprintf(stderr, "nb_tunnel_sink: unknown log level %s\n", level);
        return 2;
    }
    nb_log_set_level((enum nb_log_level)lvl);
    if (sodium_init() < 0) {
        fprintf(stderr, "nb_tunnel_sink: libsodium failed to initialise\n");
        return 1;
    }

    char err[512];
    struct nb_standalone sa;
    if (nb_standalone_load(config, &sa, err, sizeof err) != NB_OK) {
        fprintf(stderr, "nb_tunnel_sink: %s: %s\n", config, err);
        return 1;
    }
    int rc = 1;
    k.loop = nb_loop_new();
    if (k.loop == NULL || nb_loop_watch_signals(k.loop, on_signal, &k) != NB_OK ||
        ns_init(k.loop) != NB_OK) {
        fprintf(stderr, "nb_tunnel_sink: cannot set up the event loop or netstack\n");
        goto out;
    }
    k.accounts = calloc(sa.n_accounts ? sa.n_accounts : 1, sizeof *k.accounts);
    if (k.accounts == NULL)
        goto out_ns;
    struct nb_account *target = NULL;
    for (uint32_t i = 0; i < sa.n_accounts; i++) {
        struct nb_account_opts ao = {0};
        if (nb_account_open(k.loop, &sa.accounts[i], &ao, &k.accounts[i], err, sizeof err) !=
            NB_OK) {
            nb_error("sink", "account %s: %s", sa.accounts[i].id, err);
            goto out_accounts;
        }
        k.n_accounts++;
        if (target == NULL && (account_id == NULL || strcmp(account_id, sa.accounts[i].id) == 0))
            target = k.accounts[i];
    }
    if (target == NULL) {
        nb_error("sink", "no account %s in %s", account_id ? account_id : "at all", config);
        goto out_accounts;
    }
    for (uint32_t i = 0; i < k.n_fwd; i++) {
        int lrc = nb_account_listen(target, k.fwd[i].tunnel_port, on_accept, &k.fwd[i]);
        if (lrc != NB_OK) {
            nb_error("sink", "listen on tunnel port %u: %s", (unsigned)k.fwd[i].tunnel_port,
                     nb_strerror(lrc));
            goto out_accounts;
        }
        nb_info("sink", "tunnel port %u -> %s", (unsigned)k.fwd[i].tunnel_port, k.fwd[i].host_str);
    }
    nb_info("sink", "serving %u account(s), WireGuard UDP port %u", k.n_accounts,
            (unsigned)nb_account_wg_port(target));
    rc = nb_loop_run(k.loop) == NB_OK ? 0 : 1;
    nb_info("sink", "stopped: %llu accepted, %llu relayed, %llu failed",
            (unsigned long long)k.accepted, (unsigned long long)k.relayed,
            (unsigned long long)k.failed);

out_accounts:
    while (k.conns) {
        struct conn *c = k.conns;
        if (c->relay) {
            conn_unlink(c);
            nb_relay_cancel(c->relay); /* relay_done frees c from a deferred call */
        } else {
            conn_abort(c, "stopping");
        }
    }
    /* Let cancelled relays and closing streams settle before the netstack goes away. */
    for (int i = 0; i < 3; i++)
        nb_loop_run_once(k.loop, 0);
    for (uint32_t i = 0; i < k.n_accounts; i++)
        nb_account_close(k.accounts[i]);
    free(k.accounts);
    for (int i = 0; i < 3; i++)
        nb_loop_run_once(k.loop, 0);
out_ns:
    ns_deinit();
out:
    nb_standalone_free(&sa);
    nb_loop_free(k.loop);
    return rc;
}
