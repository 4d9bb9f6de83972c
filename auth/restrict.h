/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_AUTH_RESTRICT_H
#define NB_AUTH_RESTRICT_H

/*
 * Access restrictions (spec/proxy.md §4.6, ProxyMapping.access_restrictions): a compiled,
 * immutable, refcounted filter built once from a mapping's AccessRestrictions, and the pure
 * check every path runs on a client address (HTTP for registered hosts, TCP/TLS relays, the
 * first datagram of a UDP session).
 *
 * Compilation (auth_restrict_new):
 *   - CIDRs as netip.ParsePrefix reads them ("a.b.c.d/n", "v6/n"; no bare address, no zone, no
 *     leading zero or sign in n, n <= 32 / 128), canonicalised (host bits masked); an invalid
 *     entry is skipped with a warning naming it (the reference does the same);
 *   - country codes upper-cased (ASCII), compared exactly;
 *   - crowdsec_mode "enforce" / "observe"; "", "off" and anything else = disabled;
 *   - nothing configured (no CIDR, no country, CrowdSec disabled) -> no filter (*out = NULL),
 *     which allows everything, as the reference's nil filter.
 *
 * Check order (auth_restrict_check), first deny wins:
 *   1. CIDR: allow-list non-empty and the address in none of it -> IP_RESTRICTED; then any
 *      block-list hit -> IP_RESTRICTED. Overlay connections (the tunnel listeners) stop here.
 *   2. Country (only when a country rule exists): no geo lookup -> GEO_UNAVAILABLE (fail closed);
 *      country unknown -> COUNTRY_RESTRICTED only with an allow-list, else on; not in the
 *      allow-list or in the block-list -> COUNTRY_RESTRICTED.
 *   3. CrowdSec: this build has no bouncer (no LAPI client), so "enforce" -> CROWDSEC_UNAVAILABLE
 *      (fail closed) and "observe" -> ALLOW, as the reference behaves before its bouncer synced.
 * IPv4-mapped IPv6 addresses are unmapped first; an IPv4 prefix never matches an IPv6 address
 * and the reverse.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A client address: 4 bytes (v4) or 16 (v6), v4-mapped v6 already unmapped. */
struct auth_ip {
    uint8_t b[16];
    bool v4;
};

/* false for NULL, an unknown family, or unparsable text. */
bool auth_ip_from_sockaddr(const struct sockaddr *sa, struct auth_ip *out);
bool auth_ip_parse(const char *s, struct auth_ip *out);
/* "1.2.3.4" or "2001:db8::1" (len >= 46); returns buf. */
const char *auth_ip_str(const struct auth_ip *ip, char *buf, size_t len);

enum auth_verdict {
    AUTH_ALLOW = 0,
    AUTH_DENY_IP,                   /* "ip_restricted" */
    AUTH_DENY_COUNTRY,              /* "country_restricted" */
    AUTH_DENY_GEO_UNAVAILABLE,      /* "geo_unavailable" */
    AUTH_DENY_CROWDSEC_BAN,         /* "crowdsec_ban" (needs a bouncer: not produced yet) */
    AUTH_DENY_CROWDSEC_CAPTCHA,     /* "crowdsec_captcha" (idem) */
    AUTH_DENY_CROWDSEC_THROTTLE,    /* "crowdsec_throttle" (idem) */
    AUTH_DENY_CROWDSEC_UNAVAILABLE, /* "crowdsec_unavailable" */
    AUTH_VERDICT_COUNT,
};

/* The access-log auth_mechanism of a verdict ("allow" for AUTH_ALLOW). */
const char *auth_verdict_name(enum auth_verdict v);

enum auth_crowdsec_mode {
    AUTH_CROWDSEC_OFF = 0,
    AUTH_CROWDSEC_ENFORCE,
    AUTH_CROWDSEC_OBSERVE,
};

/* The AccessRestrictions message, borrowed for the duration of auth_restrict_new(). */
struct auth_restrict_spec {
    const char *const *allowed_cidrs;
    size_t n_allowed_cidrs;
    const char *const *blocked_cidrs;
    size_t n_blocked_cidrs;
    const char *const *allowed_countries;
    size_t n_allowed_countries;
    const char *const *blocked_countries;
    size_t n_blocked_countries;
    const char *crowdsec_mode; /* NULL = "" */
};

/*
 * Country lookup (the GeoLite2 database, auth/geo.h; tests plug a table). Returns true with the
 * ISO 3166 alpha-2 code (upper case, NUL-terminated) in cc, false when the address has no
 * country. A NULL ops (or NULL country) means "no geo database".
 */
struct auth_geo_ops {
    bool (*country)(void *ctx, const struct auth_ip *ip, char cc[3]);
    void *ctx;
};

struct auth_restrict;

/*
 * Compiles spec. NB_OK with *out a new filter (one reference) or NULL when nothing is
 * configured; n_skipped (may be NULL) counts the invalid CIDRs left out. NB_E_NOMEM.
 */
int auth_restrict_new(const struct auth_restrict_spec *spec, struct auth_restrict **out,
                      size_t *n_skipped) __attribute__((warn_unused_result));
/* Takes a reference (NULL ok); returns f. */
struct auth_restrict *auth_restrict_ref(struct auth_restrict *f);
/* Drops a reference (NULL ok); the last one frees. */
void auth_restrict_unref(struct auth_restrict *f);

/*
 * The check. f NULL -> ALLOW. ip NULL (the client address could not be resolved) -> IP_RESTRICTED
 * when a filter exists (fail closed; the HTTP path answers 403 without a verdict name, as the
 * reference does). overlay: CIDR rules only (tunnel-listener connections never carry a
 * geolocatable or CrowdSec-listed address).
 */
enum auth_verdict auth_restrict_check(const struct auth_restrict *f, const struct auth_ip *ip,
                                      bool overlay, const struct auth_geo_ops *geo);

/* Read-only views (tests, logs). */
size_t auth_restrict_n_cidrs(const struct auth_restrict *f, bool blocked);
/* The i-th CIDR, canonical ("10.0.0.0/8"); buf of at least 64 bytes. */
const char *auth_restrict_cidr_str(const struct auth_restrict *f, bool blocked, size_t i, char *buf,
                                   size_t len);
bool auth_restrict_has_country_rules(const struct auth_restrict *f);
enum auth_crowdsec_mode auth_restrict_crowdsec_mode(const struct auth_restrict *f);

/*
 * Deny-log rate limit per (service, verdict) (spec §8.3): a filter belongs to one service, so it
 * keeps the last log time per verdict. True for the first deny of a verdict, then at most once
 * per AUTH_DENY_LOG_INTERVAL_MS; the skipped ones are counted and reported by the next one
 * (*suppressed). Single-threaded (the loop).
 */
#define AUTH_DENY_LOG_INTERVAL_MS 10000u
bool auth_restrict_log_deny(struct auth_restrict *f, enum auth_verdict v, uint64_t now_ms,
                            uint64_t *suppressed);

/* Process-wide denial counters by verdict and protocol (the /metrics exposition). */
enum auth_proto {
    AUTH_PROTO_HTTP = 0,
    AUTH_PROTO_TCP,
    AUTH_PROTO_TLS,
    AUTH_PROTO_UDP,
    AUTH_PROTO_COUNT
};
const char *auth_proto_name(enum auth_proto p);
void auth_restrict_count_deny(enum auth_verdict v, enum auth_proto p);
uint64_t auth_restrict_denials(enum auth_verdict v, enum auth_proto p);

#endif
