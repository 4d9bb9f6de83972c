/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Asynchronous resolver (platform/dns.h): the piece between a dialer holding a host name and
 * nb_sock connecting to an address. c-ares does the protocol work (hosts file, search domains,
 * retransmission, RFC 6724 sorting); this file plugs its sockets and deadlines into the loop and
 * adds what a proxy needs on top: a per-(host, family) cache honouring TTLs, a negative cache,
 * coalescing of concurrent lookups, hard bounds, and delivery that never re-enters the caller.
 *
 * Objects:
 *   - an entry per (host, family): PENDING while its c-ares lookup runs, then DONE holding the
 *     answer or the failure. DONE entries sit on an LRU list and are the cache. An entry with
 *     waiters or a lookup on the wire is never evicted.
 *   - a query per nb_dns_resolve(): on its entry's waiter list, or on the literal list when the
 *     host was an IP literal.
 * Every callback runs from a deferred call (one per entry, one for literals), never from inside
 * a c-ares call: c-ares completes hosts-file lookups synchronously inside ares_getaddrinfo(), and
 * a user callback that freed the resolver inside ares_process_fd() would pull the channel out
 * from under c-ares.
 */
#include "platform/dns.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"

#include <ares.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

const char nb_dns_err_nxdomain[] = "no such domain";
const char nb_dns_err_nodata[] = "no address for the name";
const char nb_dns_err_timeout[] = "DNS timeout";
const char nb_dns_err_refused[] = "DNS server refused, failed or unreachable";
const char nb_dns_err_no_servers[] = "no DNS server configured";
const char nb_dns_err_failed[] = "DNS lookup failed";
const char nb_dns_err_nomem[] = "out of memory";
const char nb_dns_err_closed[] = "resolver closed";

#define HASH_MAX_BUCKETS 65536u

enum entry_state {
    ENTRY_PENDING, /* c-ares lookup in flight; c-ares holds a pointer to the entry */
    ENTRY_DONE,    /* result below is valid (answer or failure) */
};

union dns_sa {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
};

struct entry {
    struct nb_dns *dns;
    struct entry *hnext;               /* hash chain */
    struct entry *lru_prev, *lru_next; /* LRU list, DONE entries only */
    struct nb_dns_query *waiters;      /* head of a doubly linked list, FIFO via tail */
    struct nb_dns_query *waiters_tail;
    struct nb_defer deliver;
    enum entry_state state;
    bool in_lru;
    int family;
    uint32_t hash;
    /* result, when DONE */
    int err;
    const char *reason;
    uint64_t expires_ms; /* loop clock; the entry is served from cache until then */
    size_t naddrs;
    union dns_sa *addrs; /* ports are 0; the query's port is set on delivery */
    char name[];         /* lower-cased, as given to c-ares */
};

struct nb_dns_query {
    struct nb_dns *dns;
    struct entry *entry; /* NULL for a literal */
    struct nb_dns_query *prev, *next;
    nb_dns_fn cb;
    void *arg;
    uint16_t port;
    bool in_cb;
    union dns_sa lit; /* literal answer, port included */
};

struct dns_sock {
    struct nb_io io;
    struct nb_dns *dns;
    struct dns_sock *next;
};

struct nb_dns {
    struct nb_loop *loop;
    ares_channel channel;
    struct nb_dns_opts opts;
    int nservers;
    struct entry **buckets;
    uint32_t nbuckets;                 /* power of two */
    struct entry *lru_head, *lru_tail; /* head = most recently used */
    struct nb_dns_query *literals, *literals_tail;
    struct nb_defer lit_defer;
    struct nb_timer timer;
    struct dns_sock *socks;
    /*
     * Callback depth and closing: nb_dns_free() called from inside a callback fails every other
     * query at once but leaves the memory to the delivery loop that ran that callback, which
     * notices `closing` when the callback returns and frees everything on its way out.
     */
    unsigned depth;
    bool closing;
    bool library_init;
    struct nb_dns_stats stats;
};

void nb_dns_opts_init(struct nb_dns_opts *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->timeout_ms = 2000;
    opts->tries = 2;
    opts->max_queries = 1024;
    opts->cache_size = 1024;
    opts->max_ttl_ms = 300000;
    opts->neg_ttl_ms = 5000;
}

/* ---- names ---- */

/*
 * Copies a host name into `out` lower-cased, checking it is a plausible DNS name: labels of 1-63
 * letters, digits, '-' or '_', separated by single dots, with at most one final dot. Anything
 * else (spaces, backslash escapes c-ares would interpret, empty labels) is refused up front.
 */
static int normalize_name(const char *host, char out[NB_DNS_MAX_NAME + 1])
{
    size_t len = strlen(host), label = 0;
    if (len == 0 || len > NB_DNS_MAX_NAME || (len == NB_DNS_MAX_NAME && host[len - 1] != '.'))
        return NB_E_INVAL;
    for (size_t i = 0; i < len; i++) {
        char c = host[i];
        if (c == '.') {
            if (label == 0)
                return NB_E_INVAL; /* leading dot or ".." */
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            label++;
        } else if (c >= 'A' && c <= 'Z') {
            c = (char)(c - 'A' + 'a');
            label++;
        } else {
            return NB_E_INVAL;
        }
        if (label > 63)
            return NB_E_INVAL;
        out[i] = c;
    }
    out[len] = '\0';
    /* c-ares keeps "localhost" off the wire only when spelt exactly so (RFC 6761 §6.3). */
    if (strcmp(out, "localhost.") == 0)
        out[len - 1] = '\0';
    return NB_OK;
}

/* IP literal: "1.2.3.4", "::1" or "[::1]". NB_OK, NB_E_NOTFOUND (not a literal), NB_E_INVAL. */
static int parse_literal(const char *host, uint16_t port, int family, union dns_sa *out)
{
    char buf[NB_ADDRSTRLEN];
    struct sockaddr_storage ss;
    const char *ip = host;
    size_t len = strlen(host);
    bool bracketed = len >= 2 && host[0] == '[' && host[len - 1] == ']';
    if (bracketed) {
        if (len - 2 >= sizeof buf)
            return NB_E_INVAL;
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = '\0';
        ip = buf;
    }
    if (nb_addr_from_ip(ip, port, &ss, NULL) != NB_OK)
        return bracketed ? NB_E_INVAL : NB_E_NOTFOUND;
    if (bracketed && ss.ss_family != AF_INET6)
        return NB_E_INVAL; /* "[1.2.3.4]" is no valid host */
    if (family != AF_UNSPEC && family != ss.ss_family)
        return NB_E_INVAL;
    memset(out, 0, sizeof *out);
    memcpy(out, &ss, nb_addr_len((const struct sockaddr *)&ss));
    return NB_OK;
}

static uint32_t hash_key(const char *name, int family)
{
    uint32_t h = 2166136261u ^ (uint32_t)family;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h;
}

/* ---- entries, cache ---- */

static struct entry *entry_find(struct nb_dns *dns, const char *name, int family, uint32_t h)
{
    for (struct entry *e = dns->buckets[h & (dns->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->family == family && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static void lru_remove(struct nb_dns *dns, struct entry *e)
{
    if (!e->in_lru)
        return;
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        dns->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        dns->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
    e->in_lru = false;
    dns->stats.cached--;
}

static void lru_push(struct nb_dns *dns, struct entry *e)
{
    lru_remove(dns, e);
    e->lru_prev = NULL;
    e->lru_next = dns->lru_head;
    if (dns->lru_head)
        dns->lru_head->lru_prev = e;
    else
        dns->lru_tail = e;
    dns->lru_head = e;
    e->in_lru = true;
    dns->stats.cached++;
}

/* Unlinks and frees an entry. Only for entries c-ares no longer points at (not PENDING). */
static void entry_free(struct nb_dns *dns, struct entry *e)
{
    struct entry **pp = &dns->buckets[e->hash & (dns->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_remove(dns, e);
    nb_defer_cancel(dns->loop, &e->deliver);
    free(e->addrs);
    free(e);
}

static bool entry_fresh(struct nb_dns *dns, const struct entry *e)
{
    return e->state == ENTRY_DONE && nb_loop_now_ms(dns->loop) < e->expires_ms;
}

/* Evicts least recently used entries nobody waits on until the cache is within its size. */
static void cache_trim(struct nb_dns *dns)
{
    struct entry *e = dns->lru_tail;
    while (e && dns->stats.cached > dns->opts.cache_size) {
        struct entry *prev = e->lru_prev;
        if (e->waiters == NULL)
            entry_free(dns, e);
        e = prev;
    }
}

static void waiter_unlink(struct nb_dns_query *q)
{
    struct nb_dns_query **head, **tail;
    if (q->entry) {
        head = &q->entry->waiters;
        tail = &q->entry->waiters_tail;
    } else {
        head = &q->dns->literals;
        tail = &q->dns->literals_tail;
    }
    if (q->prev)
        q->prev->next = q->next;
    else
        *head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        *tail = q->prev;
    q->prev = q->next = NULL;
}

static void waiter_append(struct nb_dns_query **head, struct nb_dns_query **tail,
                          struct nb_dns_query *q)
{
    q->next = NULL;
    q->prev = *tail;
    if (*tail)
        (*tail)->next = q;
    else
        *head = q;
    *tail = q;
}

/* ---- delivery ---- */

static void destroy(struct nb_dns *dns);

/*
 * Runs q's callback and frees q (already unlinked). Returns false when the resolver went away
 * during the callback: the caller must return at once without touching anything.
 */
static bool invoke(struct nb_dns *dns, struct nb_dns_query *q, int err, const char *reason,
                   const struct sockaddr_storage *addrs, size_t n)
{
    q->in_cb = true;
    dns->stats.queries--; /* a callback that resolves again may reuse the slot */
    dns->depth++;
    q->cb(q->arg, err, reason, addrs, n);
    dns->depth--;
    free(q);
    if (dns->closing) {
        if (dns->depth == 0)
            destroy(dns);
        return false;
    }
    return true;
}

static void on_literals(struct nb_defer *d)
{
    struct nb_dns *dns = d->arg;
    struct nb_dns_query *q;
    while ((q = dns->literals) != NULL) {
        struct sockaddr_storage ss;
        waiter_unlink(q);
        memset(&ss, 0, sizeof ss);
        memcpy(&ss, &q->lit, sizeof q->lit);
        if (!invoke(dns, q, NB_OK, NULL, &ss, 1))
            return;
    }
}

/* An entry that nobody waits on: keep it as a cache entry, or drop it. */
static void entry_settle(struct nb_dns *dns, struct entry *e)
{
    if (e->state != ENTRY_DONE || e->waiters)
        return;
    if (!entry_fresh(dns, e) || dns->opts.cache_size == 0) {
        entry_free(dns, e);
        return;
    }
    cache_trim(dns);
}

static void on_deliver(struct nb_defer *d)
{
    struct entry *e = d->arg;
    struct nb_dns *dns = e->dns;
    struct sockaddr_storage out[NB_DNS_MAX_ADDRS];
    /* A callback may restart this entry (nb_dns_resolve() after expiry): the remaining waiters
     * then wait for that lookup. */
    while (e->state == ENTRY_DONE && e->waiters) {
        struct nb_dns_query *q = e->waiters;
        waiter_unlink(q);
        for (size_t i = 0; i < e->naddrs; i++) {
            memset(&out[i], 0, sizeof out[i]);
            memcpy(&out[i], &e->addrs[i], sizeof e->addrs[i]);
            if (out[i].ss_family == AF_INET)
                ((struct sockaddr_in *)&out[i])->sin_port = htons(q->port);
            else
                ((struct sockaddr_in6 *)&out[i])->sin6_port = htons(q->port);
        }
        if (!invoke(dns, q, e->err, e->reason, e->err == NB_OK ? out : NULL,
                    e->err == NB_OK ? e->naddrs : 0))
            return;
    }
    entry_settle(dns, e);
}

/* ---- c-ares results ---- */

static void map_status(struct nb_dns *dns, int status, int *err, const char **reason)
{
    switch (status) {
    case ARES_SUCCESS:
        *err = NB_OK;
        *reason = NULL;
        break;
    case ARES_ENOTFOUND:
        *err = NB_E_NOTFOUND;
        *reason = nb_dns_err_nxdomain;
        break;
    case ARES_ENODATA:
        *err = NB_E_NOTFOUND;
        *reason = nb_dns_err_nodata;
        break;
    case ARES_ETIMEOUT:
        *err = NB_E_TIMEOUT;
        *reason = nb_dns_err_timeout;
        break;
    /*
     * c-ares 1.18 reports REFUSED and SERVFAIL answers as ECONNREFUSED too, and a name missing
     * from /etc/hosts with no DNS to ask (lookups "f") as well; ESERVFAIL only comes from
     * ares_send() with no server.
     */
    case ARES_ECONNREFUSED:
    case ARES_EREFUSED:
    case ARES_ESERVFAIL:
        *err = NB_E_IO;
        *reason = dns->nservers == 0 ? nb_dns_err_no_servers : nb_dns_err_refused;
        break;
    case ARES_ENOMEM:
        *err = NB_E_NOMEM;
        *reason = nb_dns_err_nomem;
        break;
    case ARES_EDESTRUCTION:
    case ARES_ECANCELLED:
        *err = NB_E_CLOSED;
        *reason = nb_dns_err_closed;
        break;
    default:
        *err = NB_E_IO;
        *reason = nb_dns_err_failed;
        break;
    }
}

static bool same_addr(const union dns_sa *a, const struct sockaddr *b)
{
    if (a->sa.sa_family != b->sa_family)
        return false;
    if (b->sa_family == AF_INET)
        return a->in4.sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&a->in6.sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0 &&
           a->in6.sin6_scope_id == ((const struct sockaddr_in6 *)b)->sin6_scope_id;
}

/*
 * Takes c-ares's (RFC 6724 sorted) nodes of the wanted family, without duplicates, and
 * interleaves the two families starting with the first one's (RFC 8305 §4), so a dialer that
 * tries addresses in order does not exhaust a broken family first. Returns the count (<= max).
 */
static size_t collect_addrs(const struct ares_addrinfo_node *nodes, int family, union dns_sa *out,
                            size_t max)
{
    union dns_sa v4[NB_DNS_MAX_ADDRS], v6[NB_DNS_MAX_ADDRS];
    size_t n4 = 0, n6 = 0, n = 0;
    int first = AF_UNSPEC;
    for (const struct ares_addrinfo_node *ai = nodes; ai; ai = ai->ai_next) {
        union dns_sa *list;
        size_t *cnt;
        if (ai->ai_addr == NULL || (family != AF_UNSPEC && ai->ai_family != family))
            continue;
        if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
            list = v4;
            cnt = &n4;
        } else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(struct sockaddr_in6)) {
            list = v6;
            cnt = &n6;
        } else {
            continue;
        }
        bool dup = false;
        for (size_t i = 0; i < *cnt && !dup; i++)
            dup = same_addr(&list[i], ai->ai_addr);
        if (dup || *cnt == NB_DNS_MAX_ADDRS)
            continue;
        if (first == AF_UNSPEC)
            first = ai->ai_family;
        memset(&list[*cnt], 0, sizeof list[*cnt]);
        memcpy(&list[*cnt], ai->ai_addr,
               ai->ai_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
        list[*cnt].in4.sin_port = 0; /* same offset in both */
        (*cnt)++;
    }
    const union dns_sa *a = first == AF_INET6 ? v6 : v4, *b = first == AF_INET6 ? v4 : v6;
    size_t na = first == AF_INET6 ? n6 : n4, nb = first == AF_INET6 ? n4 : n6;
    for (size_t i = 0; n < max && (i < na || i < nb); i++) {
        if (i < na && n < max)
            out[n++] = a[i];
        if (i < nb && n < max)
            out[n++] = b[i];
    }
    return n;
}

/* The answer's TTL: the smallest of its address and CNAME records, in seconds. */
static unsigned answer_ttl(const struct ares_addrinfo *ai)
{
    long ttl = -1;
    for (const struct ares_addrinfo_node *n = ai->nodes; n; n = n->ai_next)
        if (ttl < 0 || n->ai_ttl < ttl)
            ttl = n->ai_ttl;
    for (const struct ares_addrinfo_cname *c = ai->cnames; c; c = c->next)
        if (ttl < 0 || c->ttl < ttl)
            ttl = c->ttl;
    return ttl < 0 ? 0u : (unsigned)ttl;
}

static void update_timer(struct nb_dns *dns);

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    struct entry *e = arg;
    struct nb_dns *dns = e->dns;
    uint64_t ttl_ms = 0;
    dns->stats.inflight--;
    if (dns->closing)
        goto out; /* ares_destroy() from destroy(): the entries go next */

    e->state = ENTRY_DONE;
    e->naddrs = 0;
    map_status(dns, status, &e->err, &e->reason);
    if (status == ARES_SUCCESS) {
        union dns_sa tmp[NB_DNS_MAX_ADDRS];
        size_t n = ai ? collect_addrs(ai->nodes, e->family, tmp, NB_DNS_MAX_ADDRS) : 0;
        if (n == 0) {
            e->err = NB_E_NOTFOUND;
            e->reason = nb_dns_err_nodata;
        } else if ((e->addrs = malloc(n * sizeof *e->addrs)) == NULL) {
            e->err = NB_E_NOMEM;
            e->reason = nb_dns_err_nomem;
        } else {
            memcpy(e->addrs, tmp, n * sizeof *e->addrs);
            e->naddrs = n;
            ttl_ms = (uint64_t)answer_ttl(ai) * 1000u;
            if (ttl_ms > dns->opts.max_ttl_ms)
                ttl_ms = dns->opts.max_ttl_ms;
        }
    }
    /*
     * Failures are remembered briefly so a flood of requests for a dead name costs one lookup
     * per neg_ttl. Timeouts are not: requests already share the lookup in flight, and a lost
     * packet should not fail the name for longer than it took to notice.
     */
    if (e->err != NB_OK && e->err != NB_E_TIMEOUT && e->err != NB_E_NOMEM && e->err != NB_E_CLOSED)
        ttl_ms = dns->opts.neg_ttl_ms;
    e->expires_ms = nb_loop_now_ms(dns->loop) + ttl_ms;
    if (e->err == NB_OK)
        nb_debug("dns", "%s: %zu address(es), ttl %llu ms", e->name, e->naddrs,
                 (unsigned long long)ttl_ms);
    else
        nb_debug("dns", "%s: %s (%d timeouts)", e->name, e->reason, timeouts);
    lru_push(dns, e);
    nb_defer(dns->loop, &e->deliver, on_deliver, e);
out:
    if (ai)
        ares_freeaddrinfo(ai);
}

static void start_lookup(struct nb_dns *dns, struct entry *e)
{
    struct ares_addrinfo_hints hints;
    lru_remove(dns, e);
    nb_defer_cancel(dns->loop, &e->deliver);
    free(e->addrs);
    e->addrs = NULL;
    e->naddrs = 0;
    e->state = ENTRY_PENDING;
    dns->stats.inflight++;
    dns->stats.lookups++;
    nb_debug("dns", "lookup %s (family %d)", e->name, e->family);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = e->family;
    /* May call on_addrinfo() before returning (hosts file, localhost). */
    ares_getaddrinfo(dns->channel, e->name, NULL, &hints, on_addrinfo, e);
    update_timer(dns);
}

/* ---- loop integration ---- */

static void update_timer(struct nb_dns *dns)
{
    struct timeval tv, *tvp = ares_timeout(dns->channel, NULL, &tv);
    if (tvp == NULL) {
        nb_timer_cancel(&dns->timer);
        return;
    }
    /* ares_timeout() truncates to milliseconds: one more keeps us from waking up just early. */
    uint64_t ms = (uint64_t)tvp->tv_sec * 1000u + (uint64_t)tvp->tv_usec / 1000u + 1u;
    nb_timer_arm(dns->loop, &dns->timer, ms);
}

static void on_timer(struct nb_timer *t)
{
    struct nb_dns *dns = t->arg;
    ares_process_fd(dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    update_timer(dns);
}

static void on_sock_io(struct nb_io *io, uint32_t events)
{
    struct dns_sock *s = io->arg;
    struct nb_dns *dns = s->dns;
    int fd = io->fd;
    /* `s` may be freed inside ares_process_fd() (c-ares closing the socket): not used after. */
    ares_process_fd(dns->channel, events & (NB_IO_READ | NB_IO_ERROR) ? fd : ARES_SOCKET_BAD,
                    events & NB_IO_WRITE ? fd : ARES_SOCKET_BAD);
    update_timer(dns);
}

/* c-ares: socket `fd` wants these events; (0, 0) means it is about to be closed. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct nb_dns *dns = data;
    struct dns_sock **pp = &dns->socks, *s;
    uint32_t ev = (readable ? NB_IO_READ : 0) | (writable ? NB_IO_WRITE : 0);
    while (*pp && (*pp)->io.fd != fd)
        pp = &(*pp)->next;
    s = *pp;
    if (ev == 0) {
        if (s) {
            nb_io_stop(&s->io);
            *pp = s->next;
            free(s);
            dns->stats.sockets--;
        }
        return;
    }
    if (s) {
        if (nb_io_set(&s->io, ev) != NB_OK)
            nb_warn("dns", "cannot watch resolver socket %d", fd);
        return;
    }
    /* Without a watcher the queries on this socket still end, by timeout (the timer). */
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        nb_warn("dns", "out of memory watching resolver socket %d", fd);
        return;
    }
    s->dns = dns;
    if (nb_io_start(dns->loop, &s->io, fd, ev, on_sock_io, s) != NB_OK) {
        nb_warn("dns", "cannot watch resolver socket %d", fd);
        free(s);
        return;
    }
    s->next = dns->socks;
    dns->socks = s;
    dns->stats.sockets++;
}

/* ---- API ---- */

int nb_dns_new(struct nb_loop *loop, const struct nb_dns_opts *opts, struct nb_dns **out)
{
    struct ares_options ao;
    struct ares_addr_port_node *servers = NULL;
    struct nb_dns *dns = NULL;
    int rc = NB_E_INVAL, mask;

    *out = NULL;
    if (loop == NULL)
        goto out;
    dns = calloc(1, sizeof *dns);
    if (dns == NULL) {
        rc = NB_E_NOMEM;
        goto out;
    }
    dns->loop = loop;
    if (opts)
        dns->opts = *opts;
    else
        nb_dns_opts_init(&dns->opts);
    if (dns->opts.timeout_ms == 0 || dns->opts.timeout_ms > INT32_MAX || dns->opts.tries == 0 ||
        dns->opts.tries > 16 || dns->opts.max_queries == 0)
        goto out;             /* rc = NB_E_INVAL */
    dns->opts.servers = NULL; /* not kept: the caller's string */

    uint64_t want = (uint64_t)dns->opts.cache_size + dns->opts.max_queries;
    dns->nbuckets = 64;
    while (dns->nbuckets < want && dns->nbuckets < HASH_MAX_BUCKETS)
        dns->nbuckets *= 2;
    dns->buckets = calloc(dns->nbuckets, sizeof *dns->buckets);
    if (dns->buckets == NULL) {
        rc = NB_E_NOMEM;
        goto out;
    }
    nb_timer_init(&dns->timer, on_timer, dns);

    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
        rc = NB_E_IO;
        goto out;
    }
    dns->library_init = true;

    memset(&ao, 0, sizeof ao);
    ao.timeout = (int)dns->opts.timeout_ms;
    ao.tries = (int)dns->opts.tries;
    ao.sock_state_cb = on_sock_state;
    ao.sock_state_cb_data = dns;
    /*
     * Files then DNS, whatever nsswitch.conf says: /etc/hosts must win for upstream names. With
     * no server, files only: c-ares 1.18's ares_send() leaks its query buffer when it has no
     * server to send to.
     */
    bool no_servers = opts && opts->servers && opts->servers[0] == '\0';
    ao.lookups = (char *)(no_servers ? "f" : "fb");
    mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS;
    if (dns->opts.no_search) {
        ao.domains = NULL;
        ao.ndomains = 0; /* set explicitly, so neither resolv.conf nor the hostname adds any */
        mask |= ARES_OPT_DOMAINS;
    }
    int st = ares_init_options(&dns->channel, &ao, mask);
    if (st != ARES_SUCCESS) {
        dns->channel = NULL;
        rc = st == ARES_ENOMEM ? NB_E_NOMEM : NB_E_IO;
        goto out;
    }
    if (opts && opts->servers) {
        /* c-ares 1.18 ignores an empty CSV instead of clearing the list. */
        if (no_servers)
            st = ares_set_servers_ports(dns->channel, NULL);
        else
            st = ares_set_servers_ports_csv(dns->channel, opts->servers);
        if (st != ARES_SUCCESS) {
            rc = st == ARES_ENOMEM ? NB_E_NOMEM : NB_E_INVAL;
            goto out;
        }
    }
    st = ares_get_servers_ports(dns->channel, &servers);
    if (st != ARES_SUCCESS) {
        rc = NB_E_NOMEM;
        goto out;
    }
    for (struct ares_addr_port_node *n = servers; n; n = n->next)
        dns->nservers++;
    *out = dns;
    dns = NULL;
    rc = NB_OK;
out:
    if (servers)
        ares_free_data(servers);
    if (dns) {
        if (dns->channel)
            ares_destroy(dns->channel);
        if (dns->library_init)
            ares_library_cleanup();
        free(dns->buckets);
        free(dns);
    }
    return rc;
}

/* Frees everything. No query is left (nb_dns_free() failed them all first). */
static void destroy(struct nb_dns *dns)
{
    /* Calls on_addrinfo(ARES_EDESTRUCTION) for lookups in flight and closes the sockets (each
     * through on_sock_state(0, 0), which stops its watcher). */
    ares_destroy(dns->channel);
    while (dns->socks) {
        struct dns_sock *s = dns->socks;
        dns->socks = s->next;
        nb_io_stop(&s->io);
        free(s);
    }
    nb_timer_cancel(&dns->timer);
    nb_defer_cancel(dns->loop, &dns->lit_defer);
    for (uint32_t i = 0; i < dns->nbuckets; i++)
        while (dns->buckets[i])
            entry_free(dns, dns->buckets[i]);
    free(dns->buckets);
    ares_library_cleanup();
    free(dns);
}

/* Runs q's callback with NB_E_CLOSED while the resolver is closing, then frees q. */
static void fail_closed(struct nb_dns *dns, struct nb_dns_query *q)
{
    waiter_unlink(q);
    q->in_cb = true;
    dns->stats.queries--;
    dns->depth++;
    q->cb(q->arg, NB_E_CLOSED, nb_dns_err_closed, NULL, 0);
    dns->depth--;
    free(q);
}

void nb_dns_free(struct nb_dns *dns)
{
    if (dns == NULL || dns->closing)
        return;
    dns->closing = true;
    /* The callbacks may cancel other queries but can neither add queries (nb_dns_resolve()
     * fails now) nor free entries, so walking the table is safe. */
    while (dns->literals)
        fail_closed(dns, dns->literals);
    for (uint32_t i = 0; i < dns->nbuckets; i++)
        for (struct entry *e = dns->buckets[i]; e; e = e->hnext)
            while (e->waiters)
                fail_closed(dns, e->waiters);
    /* From inside a callback: the delivery loop running it frees us when it returns. */
    if (dns->depth == 0)
        destroy(dns);
}

static struct entry *entry_new(struct nb_dns *dns, const char *name, int family, uint32_t h)
{
    size_t len = strlen(name);
    struct entry *e = calloc(1, sizeof *e + len + 1);
    if (e == NULL)
        return NULL;
    memcpy(e->name, name, len + 1);
    e->dns = dns;
    e->family = family;
    e->hash = h;
    e->state = ENTRY_DONE; /* no result yet: start_lookup() follows at once */
    e->hnext = dns->buckets[h & (dns->nbuckets - 1)];
    dns->buckets[h & (dns->nbuckets - 1)] = e;
    return e;
}

int nb_dns_resolve(struct nb_dns *dns, const char *host, uint16_t port, int family, nb_dns_fn cb,
                   void *arg, struct nb_dns_query **qp)
{
    char name[NB_DNS_MAX_NAME + 1];
    struct nb_dns_query *q = NULL;
    struct entry *e = NULL;
    union dns_sa lit;
    bool literal;
    int rc;

    if (qp)
        *qp = NULL;
    if (dns == NULL || host == NULL || cb == NULL ||
        (family != AF_UNSPEC && family != AF_INET && family != AF_INET6))
        return NB_E_INVAL;
    if (dns->closing)
        return NB_E_CLOSED;
    if (dns->stats.queries >= dns->opts.max_queries) {
        dns->stats.rejected++;
        return NB_E_NOMEM;
    }
    rc = parse_literal(host, port, family, &lit);
    literal = rc == NB_OK;
    if (rc == NB_E_NOTFOUND)
        rc = normalize_name(host, name);
    if (rc != NB_OK)
        return rc;
    q = calloc(1, sizeof *q);
    if (q == NULL)
        return NB_E_NOMEM;
    q->dns = dns;
    q->cb = cb;
    q->arg = arg;
    q->port = port;

    uint32_t h = literal ? 0 : hash_key(name, family);
    if (!literal)
        e = entry_find(dns, name, family, h);
    if (literal) {
        q->lit = lit;
        waiter_append(&dns->literals, &dns->literals_tail, q);
        nb_defer(dns->loop, &dns->lit_defer, on_literals, dns);
        dns->stats.literals++;
    } else if (e && (e->state == ENTRY_PENDING || entry_fresh(dns, e) || e->waiters)) {
        /* In flight, fresh, or DONE with deliveries still queued (answered this very
         * iteration, TTL 0 or not): share it. */
        q->entry = e;
        waiter_append(&e->waiters, &e->waiters_tail, q);
        if (e->state == ENTRY_PENDING) {
            dns->stats.coalesced++;
        } else {
            if (e->err == NB_OK)
                dns->stats.cache_hits++;
            else
                dns->stats.neg_hits++;
            lru_push(dns, e);
            nb_defer(dns->loop, &e->deliver, on_deliver, e);
        }
    } else if (dns->stats.inflight >= dns->opts.max_queries) {
        dns->stats.rejected++;
        rc = NB_E_NOMEM;
        goto out;
    } else {
        if (e == NULL && (e = entry_new(dns, name, family, h)) == NULL) {
            rc = NB_E_NOMEM;
            goto out;
        }
        q->entry = e;
        waiter_append(&e->waiters, &e->waiters_tail, q);
        start_lookup(dns, e);
    }
    dns->stats.queries++;
    if (qp)
        *qp = q;
    q = NULL;
    rc = NB_OK;
out:
    free(q);
    return rc;
}

void nb_dns_cancel(struct nb_dns_query *q)
{
    if (q == NULL || q->in_cb)
        return;
    /* The entry stays: its lookup (if any) runs on and settles it on delivery. */
    waiter_unlink(q);
    q->dns->stats.queries--;
    free(q);
}

void nb_dns_stats(const struct nb_dns *dns, struct nb_dns_stats *out)
{
    *out = dns->stats;
}
