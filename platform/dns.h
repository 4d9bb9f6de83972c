/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_PLATFORM_DNS_H
#define NB_PLATFORM_DNS_H

/*
 * Asynchronous host name resolution on the event loop (c-ares underneath). Used by dialers that
 * get targets by name (`http://backend.internal:8080/`). Nothing here blocks: c-ares sockets are
 * nb_io watchers and its retransmission deadlines one nb_timer. The only synchronous I/O is
 * reading the resolver configuration (/etc/resolv.conf) once in nb_dns_new() and /etc/hosts on
 * each lookup not answered from the cache (a local file, as glibc does).
 *
 * Lookups: /etc/hosts first, then DNS with the host's resolver configuration (servers, search
 * domains, ndots, rotate), unless nb_dns_opts overrides it. "localhost" never goes to DNS (RFC
 * 6761: loopback if /etc/hosts lacks it). IP literals ("10.0.0.1", "::1", "[::1]") are answered
 * without any lookup. Answers from /etc/hosts carry no TTL and are not cached.
 *
 * Results come back through the callback, always from the loop, never from inside
 * nb_dns_resolve(). Answers are cached per (host, family) for their DNS TTL (capped), failures
 * (NXDOMAIN, no data, server refused) for a short negative TTL, and concurrent requests for the
 * same (host, family) share one lookup.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct nb_loop;
struct nb_dns;
struct nb_dns_query;

/* Most addresses a result carries; extra answers are dropped (after ordering, see below). */
#define NB_DNS_MAX_ADDRS 16
/* Longest host name accepted (RFC 1035 presentation form, plus an optional final dot). */
#define NB_DNS_MAX_NAME 254

/*
 * Failure reasons passed to nb_dns_fn, static strings compared by pointer. Each pairs with one
 * nb_err value:
 */
extern const char nb_dns_err_nxdomain[];   /* NB_E_NOTFOUND: the name does not exist */
extern const char nb_dns_err_nodata[];     /* NB_E_NOTFOUND: it exists, no address of the family */
extern const char nb_dns_err_timeout[];    /* NB_E_TIMEOUT: no answer within the tries */
extern const char nb_dns_err_refused[];    /* NB_E_IO: servers refused, failed or unreachable */
extern const char nb_dns_err_no_servers[]; /* NB_E_IO: no DNS server configured */
extern const char nb_dns_err_failed[];     /* NB_E_IO: anything else (bad response, ...) */
extern const char nb_dns_err_nomem[];      /* NB_E_NOMEM */
extern const char nb_dns_err_closed[];     /* NB_E_CLOSED: the resolver is being freed */

/*
 * Completion callback, run exactly once per query unless the query was cancelled.
 *   err == NB_OK: `addrs` holds n >= 1 addresses (AF_INET / AF_INET6, port filled in), in the
 *     order to try them: c-ares's RFC 6724 destination order, then interleaved by family (RFC
 *     8305 §4: first of the preferred family, first of the other, second of the preferred, ...)
 *     so a dialer trying them in order falls back across families early. reason is NULL.
 *   err < 0: addrs is NULL, n is 0, reason is one of the nb_dns_err_* strings above.
 * Ownership: `addrs` belongs to the resolver and is valid only during the call; copy what you
 * keep. The query handle is dead once the callback starts (it is freed after it returns); calling
 * nb_dns_cancel() on it from inside the callback is a harmless no-op. The callback may call
 * nb_dns_resolve(), nb_dns_cancel() on other queries, and nb_dns_free().
 */
typedef void (*nb_dns_fn)(void *arg, int err, const char *reason,
                          const struct sockaddr_storage *addrs, size_t n);

/* Options. Fill with nb_dns_opts_init() (the defaults), then change fields. */
struct nb_dns_opts {
    /* DNS servers as c-ares CSV ("127.0.0.1:5353,[::1]:53"); NULL = from /etc/resolv.conf; ""
     * = none (only /etc/hosts, localhost and literals resolve). */
    const char *servers;
    /* Ignore search domains (resolv.conf `search`/`domain`, the host's domain): names are
     * looked up as given. Default false. */
    bool no_search;
    unsigned timeout_ms;  /* first try per server; c-ares doubles it each round. Default 2000 */
    unsigned tries;       /* rounds over the servers. Default 2: worst case 3 x timeout_ms per
                           * server, 6 s with one */
    unsigned max_queries; /* outstanding queries, and separately lookups in flight. 1024 */
    unsigned cache_size;  /* cached (host, family) answers and failures; 0 = no cache. 1024 */
    unsigned max_ttl_ms;  /* cap on an answer's TTL. Default 300 000 */
    unsigned neg_ttl_ms;  /* how long a failure is remembered (not timeouts); 0 = never. 5000 */
};

struct nb_dns_stats {
    uint64_t lookups;    /* c-ares lookups started (hosts file + DNS) */
    uint64_t cache_hits; /* answered from a cached answer */
    uint64_t neg_hits;   /* answered from a cached failure */
    uint64_t coalesced;  /* joined a lookup already in flight */
    uint64_t literals;   /* IP literals answered without a lookup */
    uint64_t rejected;   /* nb_dns_resolve() refused with NB_E_NOMEM (limits) */
    uint32_t queries;    /* outstanding queries now */
    uint32_t inflight;   /* lookups in flight now */
    uint32_t cached;     /* entries in the cache now */
    uint32_t sockets;    /* c-ares sockets being watched now */
};

/* Fills `opts` with the defaults listed above. */
void nb_dns_opts_init(struct nb_dns_opts *opts);

/*
 * Creates a resolver on `loop` (opts NULL = defaults). Reads the host's resolver configuration
 * now, once. NB_OK, NB_E_INVAL (bad option or server list), NB_E_NOMEM, NB_E_IO (c-ares could
 * not initialise).
 */
int nb_dns_new(struct nb_loop *loop, const struct nb_dns_opts *opts, struct nb_dns **out)
    __attribute__((warn_unused_result));

/*
 * Frees the resolver. Every outstanding query's callback runs once, from inside nb_dns_free(),
 * with NB_E_CLOSED / nb_dns_err_closed (so owners can drop their handle); during those callbacks
 * nb_dns_resolve() on this resolver fails with NB_E_CLOSED. After nb_dns_free() returns no
 * callback runs. Safe from inside a callback (the memory goes when that callback returns) and on
 * NULL. The loop must outlive the resolver.
 */
void nb_dns_free(struct nb_dns *dns);

/*
 * Resolves `host` for `family` (AF_UNSPEC asks for both A and AAAA, AF_INET or AF_INET6 for
 * one) and calls cb(arg, ...) later from the loop, with `port` set in every address. `host` may
 * be a name (letters, digits, '-', '_'; a trailing dot is allowed), an IPv4 literal, or an IPv6
 * literal with or without brackets (no %zone). `q`, if not NULL, receives the handle for
 * nb_dns_cancel(); it stays valid until the callback starts or the query is cancelled. Returns
 * NB_OK (the callback will run), or without ever calling it: NB_E_INVAL (bad host name, family, or
 * a literal of the other family), NB_E_NOMEM (max_queries outstanding or lookups in flight, or out
 * of memory), NB_E_CLOSED (the resolver is being freed).
 */
int nb_dns_resolve(struct nb_dns *dns, const char *host, uint16_t port, int family, nb_dns_fn cb,
                   void *arg, struct nb_dns_query **q) __attribute__((warn_unused_result));

/*
 * Cancels a query: its callback never runs. The lookup itself continues if it is on the wire (its
 * answer still fills the cache). NULL and a query whose callback is running are ignored; a
 * query whose callback has returned must not be passed.
 */
void nb_dns_cancel(struct nb_dns_query *q);

/* Counters and gauges, for tests and metrics. */
void nb_dns_stats(const struct nb_dns *dns, struct nb_dns_stats *out);

#endif
