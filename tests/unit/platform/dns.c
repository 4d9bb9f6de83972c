/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The resolver against a real DNS server: dnsmasq (Debian's dnsmasq-base), started here on
 * 127.0.0.1 at a free high port with a fixed set of records and query logging, and stopped by its
 * PID. The log tells how many queries really reached the server. Timeouts use a UDP socket of
 * our own that never answers; "unreachable" a port nobody listens on. All traffic stays on
 * 127.0.0.1. The .c is included to check cache expiry times and the address ordering directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/dns.c"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the DNS server ---- */

static struct {
    pid_t pid;    /* the keeper of dnsmasq, see start_dnsmasq() */
    int lifeline; /* closing it stops dnsmasq */
    uint16_t port;
    char dir[64];
    char log[128];
    unsigned sync_seq;
} srv = {.pid = -1, .lifeline = -1};

static const char *dnsmasq_path(void)
{
    static const char *const cands[] = {"/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"};
    const char *env = getenv("NB_TEST_DNSMASQ");
    if (env && *env)
        return access(env, X_OK) == 0 ? env : NULL;
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++)
        if (access(cands[i], X_OK) == 0)
            return cands[i];
    return NULL;
}

/* A UDP socket bound to 127.0.0.1 at `port` (0 = any); -1 on failure. */
static int udp_bound(uint16_t port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static uint16_t local_port(int fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    if (getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
        return 0;
    return ntohs(sin.sin_port);
}

/* A port free for both UDP and TCP on 127.0.0.1 right now (dnsmasq takes both). */
static uint16_t free_port(void)
{
    for (int tries = 0; tries < 50; tries++) {
        int u = udp_bound(0);
        uint16_t port = local_port(u);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int ok = port > 1024 && t >= 0 && bind(t, (struct sockaddr *)&sin, sizeof sin) == 0;
        if (t >= 0)
            close(t);
        close(u);
        if (ok)
            return port;
    }
    return 0;
}

static void dump_file(const char *path)
{
    char buf[512];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    while (fgets(buf, sizeof buf, f))
        print_error("    %s", buf);
    fclose(f);
}

static int stop_dnsmasq(void **state)
{
    char path[160];
    if (srv.lifeline >= 0) {
        close(srv.lifeline); /* the keeper stops dnsmasq and exits */
        srv.lifeline = -1;
    }
    if (srv.pid > 0) {
        waitpid(srv.pid, NULL, 0);
        srv.pid = -1;
    }
    if (srv.dir[0]) {
        unlink(srv.log);
        snprintf(path, sizeof path, "%s/stderr", srv.dir);
        unlink(path);
        rmdir(srv.dir);
    }
    (void)state;
    return 0;
}

static int start_dnsmasq(void **state)
{
    const char *bin = dnsmasq_path();
    char port_arg[32], log_arg[160], err_path[128];
    if (bin == NULL) {
        print_error("dnsmasq not found (/usr/sbin/dnsmasq or $NB_TEST_DNSMASQ): these tests need a "
                    "real DNS server; install it with `apt-get install dnsmasq-base` "
                    "(scripts/install-deps.sh --test)\n");
        return -1;
    }
    snprintf(srv.dir, sizeof srv.dir, "/tmp/nb-dns-test-XXXXXX");
    if (mkdtemp(srv.dir) == NULL) {
        print_error("mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    snprintf(srv.log, sizeof srv.log, "%s/queries.log", srv.dir);
    snprintf(err_path, sizeof err_path, "%s/stderr", srv.dir);
    srv.port = free_port();
    if (srv.port == 0) {
        print_error("no free port on 127.0.0.1\n");
        return -1;
    }
    snprintf(port_arg, sizeof port_arg, "--port=%u", srv.port);
    snprintf(log_arg, sizeof log_arg, "--log-facility=%s", srv.log);
    const char *argv[] = {
        bin, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        "--no-poll", port_arg, "--listen-address=127.0.0.1", "--bind-interfaces", "--log-queries",
        log_arg, "--local-ttl=600", "--local=/svc.test/", "--address=/nx.test/",
        "--host-record=v4.svc.test,10.99.1.5", "--host-record=v6.svc.test,fd00:99::6",
        "--host-record=multi.svc.test,10.99.1.7,fd00:99::7",
        "--host-record=multi.svc.test,10.99.1.8,fd00:99::8",
        "--host-record=co.svc.test,10.99.1.10,fd00:99::10", "--host-record=co2.svc.test,10.99.1.11",
        "--host-record=short.svc.test,10.99.1.9,1", "--host-record=e1.svc.test,10.99.1.21",
        "--host-record=e2.svc.test,10.99.1.22", "--host-record=e3.svc.test,10.99.1.23",
        "--host-record=cb.svc.test,10.99.1.30",
        /* Last: as root, dnsmasq would otherwise switch to a user that cannot write the log. */
        geteuid() == 0 ? "--user=root" : NULL, NULL};
    /*
     * dnsmasq runs under a small keeper process of ours that holds the read end of a pipe: when
     * the test process goes away, even killed, the pipe closes and the keeper stops dnsmasq by
     * its PID. (PR_SET_PDEATHSIG would not do: dnsmasq changing its credentials clears it.)
     */
    int lifeline[2];
    if (pipe2(lifeline, O_CLOEXEC) < 0) {
        print_error("pipe: %s\n", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        print_error("fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        close(lifeline[1]);
        pid_t d = fork();
        if (d == 0) {
            int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
            execv(bin, (char *const *)argv);
            _exit(127);
        }
        for (;;) {
            int st;
            struct pollfd pfd = {.fd = lifeline[0], .events = POLLIN};
            if (d < 0 || poll(&pfd, 1, 100) > 0) { /* EOF: the test is done or gone */
                if (d > 0) {
                    kill(d, SIGTERM);
                    waitpid(d, NULL, 0);
                }
                unlink(srv.log);
                unlink(err_path);
                rmdir(srv.dir);
                _exit(0);
            }
            if (waitpid(d, &st, WNOHANG) == d) /* dnsmasq exited by itself: tell the test */
                _exit(WIFEXITED(st) ? 100 + (WEXITSTATUS(st) & 0x1f) : 99);
        }
    }
    close(lifeline[0]);
    srv.lifeline = lifeline[1];
    srv.pid = pid;
    /* Ready when its UDP port is taken; give up if it exits or after 10 s. */
    uint64_t deadline = nb_now_ms() + 10000;
    for (;;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            srv.pid = -1;
            print_error("dnsmasq (%s) exited at start-up (keeper status %d):\n", bin,
                        WIFEXITED(status) ? WEXITSTATUS(status) : -1);
            dump_file(err_path);
            dump_file(srv.log);
            stop_dnsmasq(state); /* cmocka runs no group teardown after a failed setup */
            return -1;
        }
        int probe = udp_bound(srv.port);
        if (probe < 0 && errno == EADDRINUSE)
            break;
        if (probe >= 0)
            close(probe);
        if (nb_now_ms() > deadline) {
            print_error("dnsmasq did not bind 127.0.0.1:%u within 10 s\n", srv.port);
            dump_file(err_path);
            stop_dnsmasq(state);
            return -1;
        }
        usleep(10000);
    }
    return 0;
}

/* Queries of `type` ("A", "AAAA", or NULL for both) for `name` the server has logged. */
static int server_queries(const char *name, const char *type)
{
    char line[512], a[160], aaaa[160];
    int n = 0;
    snprintf(a, sizeof a, "query[A] %s from ", name);
    snprintf(aaaa, sizeof aaaa, "query[AAAA] %s from ", name);
    FILE *f = fopen(srv.log, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if ((type == NULL || strcmp(type, "A") == 0) && strstr(line, a))
            n++;
        if ((type == NULL || strcmp(type, "AAAA") == 0) && strstr(line, aaaa))
            n++;
    }
    fclose(f);
    return n;
}

/*
 * Waits until everything sent to the server so far is in its log: sends a query of our own for
 * a fresh name straight to it and waits for its answer and then its log line (dnsmasq handles
 * and logs queries in order).
 */
static void server_sync(void)
{
    uint8_t pkt[128], ans[512];
    char name[32];
    size_t len = 12;
    snprintf(name, sizeof name, "sync%u.svc.test", ++srv.sync_seq);
    memset(pkt, 0, sizeof pkt);
    pkt[0] = 0x4e;
    pkt[1] = (uint8_t)srv.sync_seq;
    pkt[2] = 0x01; /* RD */
    pkt[5] = 1;    /* QDCOUNT */
    for (const char *p = name; *p;) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        pkt[len++] = (uint8_t)l;
        memcpy(pkt + len, p, l);
        len += l;
        p += l + (dot ? 1 : 0);
    }
    pkt[len++] = 0;
    pkt[len++] = 0;
    pkt[len++] = 1; /* A */
    pkt[len++] = 0;
    pkt[len++] = 1; /* IN */
    int fd = udp_bound(0);
    assert_true(fd >= 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(srv.port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    uint64_t deadline = nb_now_ms() + 5000;
    bool answered = false;
    assert_int_equal(sendto(fd, pkt, len, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)len);
    while (nb_now_ms() < deadline) {
        if (!answered && recv(fd, ans, sizeof ans, 0) > 0)
            answered = true;
        if (answered && server_queries(name, "A") == 1)
            break;
        usleep(2000);
    }
    close(fd);
    assert_true(answered);
    assert_int_equal(server_queries(name, "A"), 1);
}

/* ---- helpers ---- */

struct res {
    int calls;
    int err;
    const char *reason;
    size_t n;
    struct sockaddr_storage a[NB_DNS_MAX_ADDRS];
    /* optional actions from inside the callback */
    struct nb_dns *free_dns;      /* nb_dns_free() this */
    struct nb_dns *resolve_dns;   /* nb_dns_resolve() on this; result in resolve_rc */
    struct nb_dns_query **cancel; /* nb_dns_cancel(*cancel) (our own handle: a no-op) */
    struct res *again;            /* second result for resolve_dns */
    int resolve_rc;
};

static void on_res(void *arg, int err, const char *reason, const struct sockaddr_storage *addrs,
                   size_t n)
{
    struct res *r = arg;
    r->calls++;
    r->err = err;
    r->reason = reason;
    r->n = n;
    assert_true(n <= NB_DNS_MAX_ADDRS);
    assert_true((err == NB_OK) == (n > 0 && addrs != NULL && reason == NULL));
    if (n)
        memcpy(r->a, addrs, n * sizeof *addrs);
    if (r->cancel)
        nb_dns_cancel(*r->cancel);
    if (r->resolve_dns)
        r->resolve_rc =
            nb_dns_resolve(r->resolve_dns, "cb.svc.test", 7, AF_INET, on_res, r->again, NULL);
    if (r->free_dns)
        nb_dns_free(r->free_dns);
}

static struct nb_loop *loop;

/* Runs the loop until *calls >= want or ms pass; returns whether it got there. */
static bool run_until(const int *calls, int want, int ms)
{
    uint64_t deadline = nb_now_ms() + (uint64_t)ms;
    while (*calls < want && nb_now_ms() < deadline)
        nb_loop_run_once(loop, 20);
    return *calls >= want;
}

static void run_for(int ms)
{
    uint64_t deadline = nb_now_ms() + (uint64_t)ms;
    while (nb_now_ms() < deadline)
        nb_loop_run_once(loop, 10);
}

static struct nb_dns *new_dns(struct nb_dns_opts *o)
{
    char servers[32];
    struct nb_dns_opts d;
    struct nb_dns *dns = NULL;
    if (o == NULL) {
        nb_dns_opts_init(&d);
        o = &d;
    }
    if (o->servers == NULL) {
        snprintf(servers, sizeof servers, "127.0.0.1:%u", srv.port);
        o->servers = servers;
    }
    o->no_search = true; /* the machine's search domains would add queries */
    assert_int_equal(nb_dns_new(loop, o, &dns), NB_OK);
    o->servers = NULL;
    return dns;
}

/* Resolves and waits for the answer, checking it was not delivered from inside resolve(). */
static void resolve_wait(struct nb_dns *dns, const char *host, uint16_t port, int family,
                         struct res *r)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(nb_dns_resolve(dns, host, port, family, on_res, r, NULL), NB_OK);
    assert_int_equal(r->calls, 0);
    assert_true(run_until(&r->calls, 1, 5000));
    assert_int_equal(r->calls, 1);
}

static const char *ip_of(const struct sockaddr_storage *ss, char buf[NB_ADDRSTRLEN])
{
    return nb_addr_ip_str((const struct sockaddr *)ss, buf);
}

static bool has_ip(const struct res *r, const char *ip)
{
    char buf[NB_ADDRSTRLEN];
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(ip_of(&r->a[i], buf), ip) == 0)
            return true;
    return false;
}

static void assert_ports(const struct res *r, uint16_t port)
{
    for (size_t i = 0; i < r->n; i++)
        assert_int_equal(nb_addr_port((const struct sockaddr *)&r->a[i]), port);
}

static struct nb_dns_stats stats_of(const struct nb_dns *dns)
{
    struct nb_dns_stats st;
    nb_dns_stats(dns, &st);
    return st;
}

static int setup(void **state)
{
    loop = nb_loop_new();
    return loop ? 0 : -1;
}

static int teardown(void **state)
{
    /* A watcher or timer left armed by a freed resolver would fire here into freed memory. */
    run_for(30);
    nb_loop_free(loop);
    loop = NULL;
    return 0;
}

/* ---- tests ---- */

static void test_a_and_aaaa(void **state)
{
    struct nb_dns *dns = new_dns(NULL);
    struct res r;

    resolve_wait(dns, "multi.svc.test", 8080, AF_INET, &r);
    assert_int_equal(r.err, NB_OK);
    assert_int_equal(r.n, 2);
    assert_true(has_ip(&r, "10.99.1.7") && has_ip(&r, "10.99.1.8"));
    assert_int_equal(r.a[0].ss_family, AF_INET);
    assert_int_equal(r.a[1].ss_family, AF_INET);
    assert_ports(&r, 8080);

    resolve_wait(dns, "multi.svc.test", 443, AF_INET6, &r);
    assert_int_equal(r.err, NB_OK);
    assert_int_equal(r.n, 2);
    assert_true(has_ip(&r, "fd00:99::7") && has_ip(&r, "fd00:99::8"));
    assert_int_equal(r.a[0].ss_family, AF_INET6);
    assert_ports(&r, 443);

    /* Both families, interleaved whatever family comes first. */
    resolve_wait(dns, "MULTI.svc.test.", 80, AF_UNSPEC, &r);
    assert_int_equal(r.err, NB_OK);
    assert_int_equal(r.n, 4);
    assert_true(has_ip(&r, "10.99.1.7") && has_ip(&r, "10.99.1.8"));
    assert_true(has_ip(&r, "fd00:99::7") && has_ip(&r, "fd00:99::8"));
    for (size_t i = 1; i < r.n; i++)
        assert_int_not_equal(r.a[i].ss_family, r.a[i - 1].ss_family);
    assert_ports(&r, 80);

    /* v4 only: AF_UNSPEC gets the A record (the AAAA query says NODATA). */
    resolve_wait(dns, "v4.svc.test", 1, AF_UNSPEC, &r);
    assert_int_equal(r.err, NB_OK);
    assert_int_equal(r.n, 1);
    assert_true(has_ip(&r, "10.99.1.5"));

    resolve_wait(dns, "v6.svc.test", 1, AF_INET6, &r);
    assert_int_equal(r.err, NB_OK);
    assert_int_equal(r.n, 1);
    assert_true(has_ip(&r, "fd00:99::6"));

    resolve_wait(dns, "v6.svc.test", 1, AF_INET, &r);
    assert_int_equal(r.err, NB_E_NOTFOUND);
    assert_ptr_equal(r.reason, nb_dns_err_nodata);

    server_sync();
    assert_int_equal(server_queries("multi.svc.test", "A"), 2);    /* AF_INET, AF_UNSPEC */
    assert_int_equal(server_queries("multi.svc.test", "AAAA"), 2); /* AF_INET6, AF_UNSPEC */
    assert_int_equal(stats_of(dns).lookups, 6);
    nb_dns_free(dns);
}

static void test_nxdomain_and_negative_cache(void **state)
{
    struct nb_dns_opts o;
    nb_dns_opts_init(&o);
    o.neg_ttl_ms = 300;
    struct nb_dns *dns = new_dns(&o);
    struct res r;

    resolve_wait(dns, "nx1.svc.test", 80, AF_INET, &r);
    assert_int_equal(r.err, NB_E_NOTFOUND);
    assert_ptr_equal(r.reason, nb_dns_err_nxdomain);
    assert_int_equal(r.n, 0);

    /* Remembered: same answer, no query. */
    resolve_wait(dns, "nx1.svc.test", 80, AF_INET, &r);
    assert_int_equal(r.err, NB_E_NOTFOUND);
    assert_ptr_equal(r.reason, nb_dns_err_nxdomain);
    assert_int_equal(stats_of(dns).lookups, 1);
    assert_int_equal(stats_of(dns).neg_hits, 1);

    resolve_wait(dns, "deep.a.nx.test", 80, AF_UNSPEC, &r);
    assert_int_equal(r.err, NB_E_NOTFOUND);
    assert_ptr_equal(r.reason, nb_dns_err_nxdomain);

    /* After the negative TTL the name is asked again. */
    run_for(350);
    resolve_wait(dns, "nx1.svc.test", 80, AF_INET, &r);
    assert_int_equal(r.err, NB_E_NOTFOUND);
    assert_int_equal(stats_of(dns).lookups, 3);
    server_sync();
    assert_int_equal(server_queries("nx1.svc.test", NULL), 2);
    nb_dns_free(dns);

    /* neg_ttl_ms 0: failures are not remembered. */
    o.neg_ttl_ms = 0;
    dns = new_dns(&o);
    resolve_wait(dns, "nx2.svc.test", 80, AF_INET, &r);
    resolve_wait(dns, "nx2.svc.test", 80, AF_INET, &r);
    assert_int_equal(r.err, NB_E_NOTFOUND);
    assert_int_equal(stats_of(dns).lookups, 2);
    assert_int_equal(stats_of(dns).neg_hits, 0);
    assert_int_equal(stats_of(dns).cached, 0);
    nb_dns_free(dns);
}

static void test_refused(void **state)
{
    struct nb_dns *dns = new_dns(NULL);
    struct res r;
    /* Outside the server's local domains, with no upstream: it answers REFUSED. */
    resolve_wait(dns, "www.example", 80, AF_INET, &r);
    assert_int_equal(r.err, NB_E_IO);
    assert_ptr_equal(r.reason, nb_dns_err_refused);
    resolve_wait(dns, "www.example", 80, AF_INET, &r);
    assert_ptr_equal(r.reason, nb_dns_err_refused);
    assert_int_equal(stats_of(dns).neg_hits, 1);
    nb_dns_free(dns);
}

static void test_timeout(void **state)
{
    int hole = udp_bound(0); /* receives, never answers */
    char servers[32];
    uint8_t buf[512];
    struct nb_dns_opts o;
    struct res r;
    assert_true(hole >= 0);
    snprintf(servers, sizeof servers, "127.0.0.1:%u", local_port(hole));
    nb_dns_opts_init(&o);
    o.servers = servers;
    o.timeout_ms = 100;
    o.tries = 2; /* 100 ms, then 200 ms */
    struct nb_dns *dns = new_dns(&o);

    uint64_t t0 = nb_now_ms();
    resolve_wait(dns, "slow.svc.test", 80, AF_INET, &r);
    uint64_t took = nb_now_ms() - t0;
    assert_int_equal(r.err, NB_E_TIMEOUT);
    assert_ptr_equal(r.reason, nb_dns_err_timeout);
    assert_in_range(took, 250, 3000);
    int got = 0;
    while (recv(hole, buf, sizeof buf, 0) > 0)
        got++;
    assert_int_equal(got, 2); /* both tries reached the server */
    /* Nothing left behind: c-ares closed its socket, our timer is off. */
    assert_int_equal(stats_of(dns).sockets, 0);
    assert_int_equal(stats_of(dns).inflight, 0);
    assert_false(nb_timer_armed(&dns->timer));

    /* Timeouts are not remembered: the next request asks again. */
    resolve_wait(dns, "slow.svc.test", 80, AF_INET, &r);
    assert_int_equal(r.err, NB_E_TIMEOUT);
    assert_int_equal(stats_of(dns).lookups, 2);
    assert_int_equal(stats_of(dns).neg_hits, 0);
    nb_dns_free(dns);
    close(hole);
}

static void test_unreachable_and_no_servers(void **state)
{
    int tmp = udp_bound(0);
    uint16_t dead = local_port(tmp);
    char servers[32];
    struct nb_dns_opts o;
    struct res r;
    close(tmp); /* nothing listens there now: ICMP port unreachable */
    snprintf(servers, sizeof servers, "127.0.0.1:%u", dead);
    nb_dns_opts_init(&o);
    o.servers = servers;
    o.timeout_ms = 3000;
    struct nb_dns *dns = new_dns(&o);
    uint64_t t0 = nb_now_ms();
    resolve_wait(dns, "x.svc.test", 80, AF_INET, &r);
    assert_int_equal(r.err, NB_E_IO);
    assert_ptr_equal(r.reason, nb_dns_err_refused);
    assert_true(nb_now_ms() - t0 < 2000); /* from the ICMP error, not a timeout */
    nb_dns_free(dns);

    nb_dns_opts_init(&o);
    o.servers = "";
    dns = new_dns(&o);
    resolve_wait(dns, "v4.svc.test", 80, AF_INET, &r);
    assert_int_equal(r.err, NB_E_IO);
    assert_ptr_equal(r.reason, nb_dns_err_no_servers);
    resolve_wait(dns, "localhost", 80, AF_INET, &r); /* needs no server */
    assert_int_equal(r.err, NB_OK);
    assert_true(has_ip(&r, "127.0.0.1"));
    nb_dns_free(dns);
}

static void test_literals(void **state)
{
    struct nb_dns *dns = new_dns(NULL);
    struct res r;
    char buf[NB_ADDRSTRLEN];

    resolve_wait(dns, "10.1.2.3", 80, AF_UNSPEC, &r);
    assert_int_equal(r.err, NB_OK);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.a[0].ss_family, AF_INET);
    assert_string_equal(nb_addr_str((struct sockaddr *)&r.a[0], buf), "10.1.2.3:80");

    resolve_wait(dns, "::1", 8443, AF_UNSPEC, &r);
    assert_int_equal(r.err, NB_OK);
    assert_string_equal(nb_addr_str((struct sockaddr *)&r.a[0], buf), "[::1]:8443");

    resolve_wait(dns, "[fd00:99::1]", 9, AF_INET6, &r);
    assert_int_equal(r.err, NB_OK);
    assert_string_equal(nb_addr_str((struct sockaddr *)&r.a[0], buf), "[fd00:99::1]:9");

    resolve_wait(dns, "10.1.2.3", 1, AF_INET, &r);
    assert_int_equal(r.err, NB_OK);

    /* A literal of the other family, or a bracketed v4, is the caller's mistake. */
    assert_int_equal(nb_dns_resolve(dns, "::1", 1, AF_INET, on_res, &r, NULL), NB_E_INVAL);
    assert_int_equal(nb_dns_resolve(dns, "10.1.2.3", 1, AF_INET6, on_res, &r, NULL), NB_E_INVAL);
    assert_int_equal(nb_dns_resolve(dns, "[10.1.2.3]", 1, AF_UNSPEC, on_res, &r, NULL), NB_E_INVAL);
    assert_int_equal(nb_dns_resolve(dns, "[::1", 1, AF_UNSPEC, on_res, &r, NULL), NB_E_INVAL);

    struct nb_dns_stats st = stats_of(dns);
    assert_int_equal(st.literals, 4);
    assert_int_equal(st.lookups, 0);
    assert_int_equal(st.sockets, 0);
    assert_int_equal(st.queries, 0);
    nb_dns_free(dns);
}

static void test_bad_arguments(void **state)
{
    struct nb_dns *dns = new_dns(NULL);
    struct res r;
    char big[300], label[80];
    memset(big, 'a', sizeof big);
    for (size_t i = 1; i < sizeof big - 1; i += 2)
        big[i] = '.';
    big[sizeof big - 1] = '\0';
    memset(label, 'b', sizeof label);
    label[64] = '\0';
    static const char *const bad[] = {"",      ".",   "a..b",   ".a",    "a b",
                                      "a\\.b", "a/b", "é.test", "a.b..", "host:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(nb_dns_resolve(dns, bad[i], 1, AF_UNSPEC, on_res, &r, NULL), NB_E_INVAL);
    assert_int_equal(nb_dns_resolve(dns, big, 1, AF_UNSPEC, on_res, &r, NULL), NB_E_INVAL);
    assert_int_equal(nb_dns_resolve(dns, label, 1, AF_UNSPEC, on_res, &r, NULL), NB_E_INVAL);
    label[63] = '\0'; /* 63 is fine */
    struct nb_dns_query *q = NULL;
    assert_int_equal(nb_dns_resolve(dns, label, 1, AF_UNSPEC, on_res, &r, &q), NB_OK);
    assert_non_null(q);
    nb_dns_cancel(q);
    assert_int_equal(nb_dns_resolve(dns, NULL, 1, AF_UNSPEC, on_res, &r, NULL), NB_E_INVAL);
    assert_int_equal(nb_dns_resolve(dns, "a.test", 1, AF_UNIX, on_res, &r, NULL), NB_E_INVAL);
    q = (struct nb_dns_query *)&r; /* cleared on failure */
    assert_int_equal(nb_dns_resolve(dns, "a.test", 1, AF_INET, NULL, &r, &q), NB_E_INVAL);
    assert_null(q);

    struct nb_dns_opts o;
    struct nb_dns *d2 = (struct nb_dns *)&r;
    nb_dns_opts_init(&o);
    o.servers = "not an address";
    assert_int_equal(nb_dns_new(loop, &o, &d2), NB_E_INVAL);
    assert_null(d2);
    nb_dns_opts_init(&o);
    o.timeout_ms = 0;
    assert_int_equal(nb_dns_new(loop, &o, &d2), NB_E_INVAL);
    nb_dns_free(NULL);
    nb_dns_cancel(NULL);
    nb_dns_free(dns);
}

static void test_cache_hit_and_ttl_cap(void **state)
{
    struct nb_dns_opts o;
    struct res r, again;
    nb_dns_opts_init(&o);
    o.max_ttl_ms = 3600 * 1000;
    struct nb_dns *dns = new_dns(&o);
    server_sync(); /* other tests asked for v4.svc.test too: count from here */
    int before = server_queries("v4.svc.test", NULL);

    resolve_wait(dns, "v4.svc.test", 1000, AF_INET, &r);
    assert_int_equal(r.err, NB_OK);
    /* The server's TTL (600 s) is what the cache keeps. */
    struct entry *e = entry_find(dns, "v4.svc.test", AF_INET, hash_key("v4.svc.test", AF_INET));
    assert_non_null(e);
    assert_in_range(e->expires_ms - nb_loop_now_ms(loop), 598000, 600000);

    /* Second request: answered from the cache, still from the loop, with its own port. */
    resolve_wait(dns, "V4.SVC.TEST", 2000, AF_INET, &r);
    assert_int_equal(r.err, NB_OK);
    assert_true(has_ip(&r, "10.99.1.5"));
    assert_ports(&r, 2000);
    assert_int_equal(stats_of(dns).lookups, 1);
    assert_int_equal(stats_of(dns).cache_hits, 1);

    /* Resolving again from inside a callback works and is delivered later, not nested. */
    memset(&again, 0, sizeof again);
    resolve_wait(dns, "cb.svc.test", 7, AF_INET, &r);
    memset(&r, 0, sizeof r);
    r.resolve_dns = dns;
    r.again = &again;
    assert_int_equal(nb_dns_resolve(dns, "cb.svc.test", 7, AF_INET, on_res, &r, NULL), NB_OK);
    assert_true(run_until(&r.calls, 1, 5000));
    assert_int_equal(r.resolve_rc, NB_OK);
    assert_true(run_until(&again.calls, 1, 5000));
    assert_int_equal(again.err, NB_OK);
    assert_true(has_ip(&again, "10.99.1.30"));

    server_sync();
    assert_int_equal(server_queries("v4.svc.test", NULL), before + 1);
    assert_int_equal(server_queries("cb.svc.test", NULL), 1);
    nb_dns_free(dns);

    /* The default cap (300 s) shortens the same answer. */
    dns = new_dns(NULL);
    resolve_wait(dns, "v4.svc.test", 1000, AF_INET, &r);
    e = entry_find(dns, "v4.svc.test", AF_INET, hash_key("v4.svc.test", AF_INET));
    assert_non_null(e);
    assert_in_range(e->expires_ms - nb_loop_now_ms(loop), 298000, 300000);
    nb_dns_free(dns);
}

static void test_ttl_expiry(void **state)
{
    struct nb_dns *dns = new_dns(NULL);
    struct res r;
    resolve_wait(dns, "short.svc.test", 80, AF_INET, &r); /* TTL 1 s */
    assert_int_equal(r.err, NB_OK);
    resolve_wait(dns, "short.svc.test", 80, AF_INET, &r);
    assert_int_equal(stats_of(dns).lookups, 1);
    assert_int_equal(stats_of(dns).cache_hits, 1);
    run_for(1100);
    resolve_wait(dns, "short.svc.test", 80, AF_INET, &r);
    assert_int_equal(r.err, NB_OK);
    assert_true(has_ip(&r, "10.99.1.9"));
    assert_int_equal(stats_of(dns).lookups, 2);
    server_sync();
    assert_int_equal(server_queries("short.svc.test", NULL), 2);
    nb_dns_free(dns);
}

static void test_coalescing(void **state)
{
    struct nb_dns_opts o;
    struct res r[8], v4;
    nb_dns_opts_init(&o);
    o.cache_size = 0; /* coalescing does not depend on the cache */
    struct nb_dns *dns = new_dns(&o);
    for (int i = 0; i < 8; i++) {
        memset(&r[i], 0, sizeof r[i]);
        assert_int_equal(nb_dns_resolve(dns, i % 2 ? "co.svc.test" : "CO.svc.test",
                                        (uint16_t)(100 + i), AF_UNSPEC, on_res, &r[i], NULL),
                         NB_OK);
    }
    /* The same name for another family is another lookup. */
    memset(&v4, 0, sizeof v4);
    assert_int_equal(nb_dns_resolve(dns, "co.svc.test", 1, AF_INET, on_res, &v4, NULL), NB_OK);
    struct nb_dns_stats st = stats_of(dns);
    assert_int_equal(st.lookups, 2);
    assert_int_equal(st.coalesced, 7);
    assert_int_equal(st.inflight, 2);
    assert_int_equal(st.queries, 9);
    for (int i = 0; i < 8; i++) {
        assert_true(run_until(&r[i].calls, 1, 5000));
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].err, NB_OK);
        assert_int_equal(r[i].n, 2);
        assert_true(has_ip(&r[i], "10.99.1.10") && has_ip(&r[i], "fd00:99::10"));
        assert_ports(&r[i], (uint16_t)(100 + i));
    }
    assert_true(run_until(&v4.calls, 1, 5000));
    assert_int_equal(v4.n, 1);
    server_sync();
    assert_int_equal(server_queries("co.svc.test", "A"), 2);
    assert_int_equal(server_queries("co.svc.test", "AAAA"), 1);
    /* Without a cache nothing stays. */
    assert_int_equal(stats_of(dns).cached, 0);
    assert_int_equal(stats_of(dns).queries, 0);
    nb_dns_free(dns);
}

static void test_cancel(void **state)
{
    struct nb_dns *dns = new_dns(NULL);
    struct nb_dns_query *q1, *q2, *q3;
    struct res a, b, c;

    /* In flight: the lookup finishes (and fills the cache), the callback never runs. */
    memset(&a, 0, sizeof a);
    assert_int_equal(nb_dns_resolve(dns, "co2.svc.test", 80, AF_INET, on_res, &a, &q1), NB_OK);
    nb_dns_cancel(q1);
    uint64_t deadline = nb_now_ms() + 5000;
    while (stats_of(dns).inflight > 0 && nb_now_ms() < deadline)
        nb_loop_run_once(loop, 20);
    run_for(50);
    assert_int_equal(a.calls, 0);
    assert_int_equal(stats_of(dns).queries, 0);
    assert_int_equal(stats_of(dns).cached, 1);

    /* Answered from the cache and from a literal: cancelled before the loop delivers. */
    assert_int_equal(nb_dns_resolve(dns, "co2.svc.test", 80, AF_INET, on_res, &a, &q1), NB_OK);
    assert_int_equal(nb_dns_resolve(dns, "10.0.0.1", 80, AF_INET, on_res, &a, &q2), NB_OK);
    nb_dns_cancel(q2);
    nb_dns_cancel(q1);
    run_for(50);
    assert_int_equal(a.calls, 0);
    assert_int_equal(stats_of(dns).cache_hits, 1);
    assert_int_equal(stats_of(dns).lookups, 1);

    /* Three waiters on one lookup, the middle one cancelled: the others get the answer. */
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    assert_int_equal(nb_dns_resolve(dns, "v4.svc.test", 1, AF_INET, on_res, &b, &q1), NB_OK);
    assert_int_equal(nb_dns_resolve(dns, "v4.svc.test", 2, AF_INET, on_res, &a, &q2), NB_OK);
    assert_int_equal(nb_dns_resolve(dns, "v4.svc.test", 3, AF_INET, on_res, &c, &q3), NB_OK);
    nb_dns_cancel(q2);
    /* Cancelling one's own handle from inside the callback is harmless. */
    b.cancel = &q1;
    assert_true(run_until(&b.calls, 1, 5000));
    assert_true(run_until(&c.calls, 1, 5000));
    run_for(30);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.err, NB_OK);
    assert_int_equal(c.err, NB_OK);
    assert_ports(&b, 1);
    assert_ports(&c, 3);
    assert_int_equal(stats_of(dns).queries, 0);
    nb_dns_free(dns);
}

static void test_free_with_queries_in_flight(void **state)
{
    int hole = udp_bound(0);
    char servers[32];
    struct nb_dns_opts o;
    struct res r[5];
    assert_true(hole >= 0);
    snprintf(servers, sizeof servers, "127.0.0.1:%u", local_port(hole));
    nb_dns_opts_init(&o);
    o.servers = servers;
    o.timeout_ms = 5000;
    struct nb_dns *dns = new_dns(&o);
    memset(r, 0, sizeof r);
    assert_int_equal(nb_dns_resolve(dns, "a.svc.test", 1, AF_UNSPEC, on_res, &r[0], NULL), NB_OK);
    assert_int_equal(nb_dns_resolve(dns, "a.svc.test", 2, AF_UNSPEC, on_res, &r[1], NULL), NB_OK);
    assert_int_equal(nb_dns_resolve(dns, "b.svc.test", 3, AF_INET, on_res, &r[2], NULL), NB_OK);
    assert_int_equal(nb_dns_resolve(dns, "10.9.9.9", 4, AF_INET, on_res, &r[3], NULL), NB_OK);
    assert_int_equal(nb_dns_resolve(dns, "localhost", 5, AF_INET, on_res, &r[4], NULL), NB_OK);
    run_for(50); /* literal and localhost delivered; the rest are on the wire */
    assert_int_equal(r[3].calls, 1);
    assert_int_equal(r[4].calls, 1);
    assert_int_equal(stats_of(dns).sockets, 1);
    assert_true(nb_timer_armed(&dns->timer));
    /* A callback run by free() cannot start anything new. */
    r[1].resolve_dns = dns;
    r[1].again = &r[3];
    nb_dns_free(dns);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].err, NB_E_CLOSED);
        assert_ptr_equal(r[i].reason, nb_dns_err_closed);
    }
    assert_int_equal(r[1].resolve_rc, NB_E_CLOSED);
    /* Nothing after free: no callback, no watcher, no timer (ASan would catch a stale one). */
    run_for(100);
    for (int i = 0; i < 5; i++)
        assert_int_equal(r[i].calls, 1);
    close(hole);
}

static void test_free_from_inside_a_callback(void **state)
{
    int hole = udp_bound(0);
    char servers[32];
    struct nb_dns_opts o;
    struct res r[4];
    assert_true(hole >= 0);
    snprintf(servers, sizeof servers, "127.0.0.1:%u", local_port(hole));
    nb_dns_opts_init(&o);
    o.servers = servers;
    o.timeout_ms = 5000;

    /* From a literal's callback, with another literal and a lookup outstanding. */
    struct nb_dns *dns = new_dns(&o);
    memset(r, 0, sizeof r);
    r[0].free_dns = dns;
    assert_int_equal(nb_dns_resolve(dns, "10.0.0.1", 1, AF_INET, on_res, &r[0], NULL), NB_OK);
    assert_int_equal(nb_dns_resolve(dns, "10.0.0.2", 1, AF_INET, on_res, &r[1], NULL), NB_OK);
    assert_int_equal(nb_dns_resolve(dns, "x.svc.test", 1, AF_INET, on_res, &r[2], NULL), NB_OK);
    run_for(50);
    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[0].err, NB_OK);
    assert_int_equal(r[1].calls, 1);
    assert_int_equal(r[1].err, NB_E_CLOSED);
    assert_int_equal(r[2].calls, 1);
    assert_int_equal(r[2].err, NB_E_CLOSED);

    /* From an entry's delivery, with another waiter on the same entry. */
    dns = new_dns(&o);
    memset(r, 0, sizeof r);
    r[0].free_dns = dns;
    assert_int_equal(nb_dns_resolve(dns, "localhost", 1, AF_INET, on_res, &r[0], NULL), NB_OK);
    assert_int_equal(nb_dns_resolve(dns, "localhost", 2, AF_INET, on_res, &r[1], NULL), NB_OK);
    run_for(50);
    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[0].err, NB_OK);
    assert_int_equal(r[1].calls, 1);
    assert_int_equal(r[1].err, NB_E_CLOSED);
    run_for(50);
    close(hole);
}

static void test_localhost(void **state)
{
    struct nb_dns *dns = new_dns(NULL);
    struct res r;
    static const char *const names[] = {"localhost", "LocalHost", "localhost."};
    for (size_t i = 0; i < 3; i++) {
        /* c-ares answers these inside ares_getaddrinfo(); we still deliver from the loop. */
        resolve_wait(dns, names[i], 8080, AF_INET, &r);
        assert_int_equal(r.err, NB_OK);
        assert_true(has_ip(&r, "127.0.0.1"));
        assert_ports(&r, 8080);
    }
    resolve_wait(dns, "localhost", 1, AF_UNSPEC, &r);
    assert_int_equal(r.err, NB_OK);
    assert_true(has_ip(&r, "127.0.0.1"));
    server_sync();
    assert_int_equal(server_queries("localhost", NULL), 0);
    nb_dns_free(dns);
}

static void test_limits(void **state)
{
    int hole = udp_bound(0);
    char servers[32];
    struct nb_dns_opts o;
    struct res r;
    struct nb_dns_query *q1, *q2, *q3;
    assert_true(hole >= 0);
    snprintf(servers, sizeof servers, "127.0.0.1:%u", local_port(hole));
    nb_dns_opts_init(&o);
    o.servers = servers;
    o.max_queries = 2;
    struct nb_dns *dns = new_dns(&o);
    memset(&r, 0, sizeof r);

    assert_int_equal(nb_dns_resolve(dns, "a.svc.test", 1, AF_INET, on_res, &r, &q1), NB_OK);
    assert_int_equal(nb_dns_resolve(dns, "b.svc.test", 1, AF_INET, on_res, &r, &q2), NB_OK);
    assert_int_equal(nb_dns_resolve(dns, "10.0.0.1", 1, AF_INET, on_res, &r, &q3), NB_E_NOMEM);
    assert_null(q3);
    assert_int_equal(stats_of(dns).rejected, 1);
    /* Cancelled queries free their slot, but their lookups still count while in flight. */
    nb_dns_cancel(q1);
    nb_dns_cancel(q2);
    assert_int_equal(nb_dns_resolve(dns, "10.0.0.1", 1, AF_INET, on_res, &r, &q3), NB_OK);
    assert_int_equal(nb_dns_resolve(dns, "c.svc.test", 1, AF_INET, on_res, &r, &q1), NB_E_NOMEM);
    assert_int_equal(nb_dns_resolve(dns, "a.svc.test", 1, AF_INET, on_res, &r, &q1), NB_OK);
    assert_int_equal(stats_of(dns).coalesced, 1);
    assert_int_equal(stats_of(dns).rejected, 2);
    nb_dns_free(dns);
    assert_int_equal(r.calls, 2); /* the literal and a.svc.test, with NB_E_CLOSED */
    close(hole);
}

static void test_eviction(void **state)
{
    struct nb_dns_opts o;
    struct res r;
    nb_dns_opts_init(&o);
    o.cache_size = 2;
    struct nb_dns *dns = new_dns(&o);
    resolve_wait(dns, "e1.svc.test", 1, AF_INET, &r);
    resolve_wait(dns, "e2.svc.test", 1, AF_INET, &r);
    resolve_wait(dns, "e1.svc.test", 1, AF_INET, &r); /* hit: e1 is now the most recent */
    resolve_wait(dns, "e3.svc.test", 1, AF_INET, &r); /* evicts e2 */
    assert_int_equal(stats_of(dns).cached, 2);
    assert_int_equal(stats_of(dns).lookups, 3);
    resolve_wait(dns, "e1.svc.test", 1, AF_INET, &r);
    resolve_wait(dns, "e3.svc.test", 1, AF_INET, &r);
    assert_int_equal(stats_of(dns).lookups, 3);
    resolve_wait(dns, "e2.svc.test", 1, AF_INET, &r);
    assert_true(has_ip(&r, "10.99.1.22"));
    assert_int_equal(stats_of(dns).lookups, 4);
    assert_int_equal(stats_of(dns).cached, 2);
    nb_dns_free(dns);
}

/* The ordering rule alone, on hand-made c-ares results. */
static void test_address_order(void **state)
{
    struct sockaddr_in6 s6[3];
    struct sockaddr_in s4[3];
    struct ares_addrinfo_node n[6];
    union dns_sa out[NB_DNS_MAX_ADDRS];
    char buf[NB_ADDRSTRLEN];
    static const char *const ip6[] = {"fd00::1", "fd00::2", "fd00::3"};
    static const char *const ip4[] = {"10.0.0.1", "10.0.0.1", "10.0.0.2"}; /* one duplicate */
    memset(n, 0, sizeof n);
    for (int i = 0; i < 3; i++) {
        memset(&s6[i], 0, sizeof s6[i]);
        s6[i].sin6_family = AF_INET6;
        s6[i].sin6_port = htons(53);
        inet_pton(AF_INET6, ip6[i], &s6[i].sin6_addr);
        memset(&s4[i], 0, sizeof s4[i]);
        s4[i].sin_family = AF_INET;
        inet_pton(AF_INET, ip4[i], &s4[i].sin_addr);
        n[i].ai_family = AF_INET6;
        n[i].ai_addr = (struct sockaddr *)&s6[i];
        n[i].ai_addrlen = sizeof s6[i];
        n[3 + i].ai_family = AF_INET;
        n[3 + i].ai_addr = (struct sockaddr *)&s4[i];
        n[3 + i].ai_addrlen = sizeof s4[i];
    }
    for (int i = 0; i < 5; i++)
        n[i].ai_next = &n[i + 1];

    static const char *const want[] = {"fd00::1", "10.0.0.1", "fd00::2", "10.0.0.2", "fd00::3"};
    size_t cnt = collect_addrs(n, AF_UNSPEC, out, NB_DNS_MAX_ADDRS);
    assert_int_equal(cnt, 5);
    for (size_t i = 0; i < cnt; i++) {
        assert_string_equal(nb_addr_ip_str(&out[i].sa, buf), want[i]);
        assert_int_equal(nb_addr_port(&out[i].sa), 0);
    }
    cnt = collect_addrs(n, AF_INET, out, NB_DNS_MAX_ADDRS);
    assert_int_equal(cnt, 2);
    assert_string_equal(nb_addr_ip_str(&out[0].sa, buf), "10.0.0.1");
    cnt = collect_addrs(n, AF_UNSPEC, out, 3);
    assert_int_equal(cnt, 3);
    /* v4 first in the resolver's order: v4 leads. */
    n[5].ai_next = &n[0];
    n[2].ai_next = NULL;
    cnt = collect_addrs(&n[3], AF_UNSPEC, out, NB_DNS_MAX_ADDRS);
    assert_int_equal(cnt, 5);
    assert_string_equal(nb_addr_ip_str(&out[0].sa, buf), "10.0.0.1");
    assert_string_equal(nb_addr_ip_str(&out[1].sa, buf), "fd00::1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_and_aaaa, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nxdomain_and_negative_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_and_no_servers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_literals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_hit_and_ttl_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalescing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_queries_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_inside_a_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_localhost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction, setup, teardown),
        cmocka_unit_test(test_address_order),
    };
    return cmocka_run_group_tests_name("platform/dns", tests, start_dnsmasq, stop_dnsmasq);
}
