/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_HTTP_ROUTE_H
#define NB_HTTP_ROUTE_H

/*
 * The HTTP routing table (spec/proxy.md §3.4, §4.3): Host -> service (one HTTP-mode mapping),
 * then decoded URL path -> target by longest raw prefix. Pure data structures: no I/O, no clock.
 *
 * Lifetimes. A `struct http_service` is built once from a mapping, is immutable afterwards and
 * owns copies of every string it holds. It is refcounted, with the invariant "refs = number of
 * pointers to it": the table holds one while the service is routed, and every in-flight request
 * that looked it up takes its own (http_service_ref) for as long as it uses the service, its
 * paths or its targets, because a management update may replace or remove the table's entry at
 * any moment. Counts are plain integers: everything runs on the one loop thread.
 */

#include "core/mapping.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * A PathMapping target, parsed from "<scheme>://<host>[:port][/path][?query]" (management sends
 * "<scheme>://<host>[:port]/"). Only http and https (any case); IPv6 literals in brackets; no
 * userinfo, no fragment, no IPv6 zone, no empty port; the host is a DNS name or IPv4 literal
 * (letters, digits, '-', '.', '_') or a bracketed IPv6 literal; path and query are visible ASCII
 * with valid %-escapes.
 */
struct http_target {
    bool tls;        /* https */
    char *host;      /* without brackets: what to dial / resolve */
    char *authority; /* host[:port] as the URL spells it (brackets for IPv6, port only if the
                        URL has one): the Host field when pass_host_header is off */
    uint16_t port;   /* explicit, else 80 / 443 */
    bool port_explicit;
    char *path;  /* raw (%-encoded) path, "" allowed */
    char *query; /* raw query without '?', "" if none */
    /*
     * Per-target options, copied from the PathMapping. custom_headers holds only valid entries:
     * names are RFC 9110 tokens in Go's canonical spelling ("x-api-key" -> "X-Api-Key"), values
     * have surrounding blanks trimmed (as Go writes them). request_timeout_ms is the unclamped
     * management value (the engine clamps it with --max-dial-timeout).
     */
    struct nb_target_options opts;
    /* Go url.URL view of the path, for the path join (http/rewrite.c). */
    char *_path_dec;      /* decoded path */
    size_t _path_dec_len; /* may contain NUL bytes from %00 */
};

/*
 * Parses url into t (URL fields only: t->opts is zeroed). On NB_E_PARSE, why (if non-NULL)
 * receives a short reason ("scheme must be http or https", ...). NB_OK, NB_E_PARSE, NB_E_NOMEM.
 * t needs http_target_deinit() after NB_OK; after a failure there is nothing to free.
 */
int http_target_parse(const char *url, struct http_target *t, char *why, size_t whylen)
    __attribute__((warn_unused_result));
void http_target_deinit(struct http_target *t);

/* One routed path of a service. */
struct http_route_path {
    char *path; /* match key (raw string, NUL-terminated); "" matches every path */
    size_t path_len;
    struct http_target target;
};

struct http_service {
    uint32_t _refs;
    char *id;
    char *account_id; /* "" when the mapping has none */
    char *domain;
    struct http_route_path *paths; /* longest key first */
    uint32_t n_paths;
    bool pass_host_header;
    bool rewrite_redirects;
    bool private_service;
    char **header_auth_names; /* auth.header_auths[].header: stripped from upstream requests */
    uint32_t n_header_auth_names;
    /* access_restrictions (auth/restrict.h), a reference shared with the mapping; NULL = none.
     * Checked by http/proxy.c before anything else for the service (spec §4.6). */
    struct auth_restrict *restrictions;
};

/*
 * Builds a service from an HTTP-mode mapping (one reference, owned by the caller). Paths whose
 * target does not parse are skipped and described in warn (the reference reports an ERROR
 * status for them but still applies the mapping); so are custom headers Go would refuse to send
 * (name not a token, control bytes in the value) or would ignore (Host, Content-Length,
 * Transfer-Encoding, Trailer). warn is "" when nothing was skipped; it is truncated to warnlen.
 * Duplicate match paths: the last one wins. A mapping with no usable path gives a service with
 * n_paths == 0 (every request 404s, as in the reference).
 * NB_OK, NB_E_INVAL (not HTTP mode, or no id or domain), NB_E_NOMEM.
 */
int http_service_new(const struct nb_mapping *m, struct http_service **out, char *warn,
                     size_t warnlen) __attribute__((warn_unused_result));
/* Takes a reference; returns svc. */
struct http_service *http_service_ref(struct http_service *svc);
/* Drops a reference; the last one frees the service. NULL is ignored. */
void http_service_unref(struct http_service *svc);

/*
 * The path entry for a decoded URL path (Go's URL.Path, see http_path_decode in rewrite.h):
 * the longest key that is a plain prefix of it (no segment boundary: "/api" matches "/apix";
 * the key "" matches everything), or NULL (404 "Service Not Found").
 */
const struct http_route_path *http_service_match(const struct http_service *svc, const char *path,
                                                 size_t len);

/*
 * Host without its port, the way Go's net.SplitHostPort-based stripping does it: "a.b:8443" ->
 * "a.b", "[::1]:80" -> "::1", "a.b:" -> "a.b"; when SplitHostPort would fail ("a.b", "::1",
 * "[::1]", "a:b:c") the whole value. Returns a pointer into host and sets *out_len.
 */
const char *http_host_strip_port(const char *host, size_t len, size_t *out_len);

/*
 * Domain -> service table. Hash-indexed by domain and by service id, so lookups are O(1) and
 * removal by id does not scan the table (10 000+ domains). Not thread-safe (loop thread only).
 */
struct http_route_entry;
struct http_routes {
    struct http_route_entry **_by_domain;
    struct http_route_entry **_by_id;
    uint32_t _nbuckets; /* power of two, 0 before the first put */
    uint32_t _count;
    uint64_t _paths; /* n_paths over the routed services */
};

void http_routes_init(struct http_routes *t);
/* Drops every entry (and the table's references). */
void http_routes_deinit(struct http_routes *t);
/*
 * Routes svc->domain to svc, taking a reference. A service already routed for that domain is
 * replaced (its reference dropped), whatever its id. Other domains of the same service id are
 * left alone (a MODIFIED that changes the domain is cleanup + setup: remove first).
 * NB_OK, NB_E_INVAL (svc without domain), NB_E_NOMEM (table unchanged).
 */
int http_routes_put(struct http_routes *t, struct http_service *svc)
    __attribute__((warn_unused_result));
/* Removes every domain routed to a service with this id; returns how many. */
unsigned http_routes_remove(struct http_routes *t, const char *service_id);
/*
 * The service for a Host value as the client sent it (port stripped as by
 * http_host_strip_port, then an exact, case-sensitive match), or NULL. Borrowed: take a
 * reference to keep it past the current callback.
 */
struct http_service *http_routes_find(const struct http_routes *t, const char *host,
                                      size_t host_len);
/*
 * The same, restricted to one account: NULL when the host belongs to another account. The
 * --private tunnel listeners use it so an account's overlay only reaches its own hosts (spec
 * §6.2, last bullet: the reference does not scope; we do).
 */
struct http_service *http_routes_find_scoped(const struct http_routes *t, const char *host,
                                             size_t host_len, const char *account_id);
/* Number of routed domains. */
uint32_t http_routes_count(const struct http_routes *t);
/* Number of paths over the routed services (proxy_paths_count). */
uint64_t http_routes_paths(const struct http_routes *t);

/* ---- exported for http/rewrite.c, not API ---- */

/*
 * Go's url unescape over s[0..n) into dst (n bytes are enough): "%XX" with two hex digits, and
 * '+' -> ' ' when plus_is_space (query components). The decoded length, or -1 when a '%' is not
 * followed by two hex digits.
 */
ssize_t http__pct_decode(const char *s, size_t n, char *dst, bool plus_is_space);
/* Go's net.SplitHostPort; false where it returns an error. Outputs point into s. */
bool http__split_host_port(const char *s, size_t n, const char **host, size_t *host_len,
                           const char **port, size_t *port_len);
/* RFC 9110 tchar. */
bool http__is_tchar(unsigned char c);

#endif
