/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_HTTP_REWRITE_H
#define NB_HTTP_REWRITE_H

/*
 * The proxy's request and response rules (spec/proxy.md §4.4, §4.5, §4.8), as pure functions:
 * no sockets, no clock, results in the request's arena. The engine calls, per request:
 *
 *   http_path_decode()      -> decoded path (NB_E_PARSE: answer 400), for routing;
 *   http_routes_find() + http_service_match()  (http/route.h);
 *   http_client_ip()        -> client IP for restrictions and logs;
 *   http_rewrite_request()  -> upstream request-target, Host and header list;
 *   per response: http_strip_hop_by_hop() (not on a 101) and, when the service has
 *   rewrite_redirects, http_rewrite_location() on the first Location field.
 *
 * Go semantics are reproduced where they reach the wire: httputil.ReverseProxy's scrubbing and
 * upgrade handling, url.URL's path escaping (EscapedPath), the single-slash path join and query
 * merge of ProxyRequest.SetURL, url.Values.Encode, http.Request.Cookies/AddCookie, and
 * url.Parse/URL.String for Location.
 */

#include "http/hdrs.h"
#include "http/route.h"
#include "platform/addr.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct nb_arena;

/* ---- configuration (--trusted-proxies, --forwarded-proto) ---- */

enum http_fwd_proto {
    HTTP_FWD_PROTO_AUTO = 0, /* https iff the request arrived over TLS */
    HTTP_FWD_PROTO_HTTP,
    HTTP_FWD_PROTO_HTTPS,
};

/* An IP prefix (Go netip.Prefix): addr is stored masked to bits. */
struct http_prefix {
    int family; /* AF_INET or AF_INET6 */
    uint8_t bits;
    uint8_t addr[16]; /* 4 bytes used for AF_INET */
};

struct http_fwd_cfg {
    struct http_prefix *trusted; /* heap, owned */
    size_t n_trusted;
    enum http_fwd_proto proto;
};

/* No trusted proxies, proto AUTO. */
void http_fwd_cfg_init(struct http_fwd_cfg *c);
void http_fwd_cfg_deinit(struct http_fwd_cfg *c);
/*
 * Parses a --trusted-proxies value into c (replacing its list): comma-separated CIDRs or bare
 * IPs (a bare IP is a /32 or /128), blanks around items trimmed, empty items skipped. Go netip
 * rules: no leading zeros in IPv4 parts or in the prefix length, no zones. An invalid item gives
 * NB_E_PARSE, leaves c unchanged and writes "invalid trusted proxy \"<item>\"" to err.
 * NB_OK, NB_E_PARSE, NB_E_NOMEM.
 */
int http_trusted_parse(struct http_fwd_cfg *c, const char *list, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* "auto", "http" or "https" (exactly); anything else NB_E_PARSE (a startup error). */
int http_forwarded_proto_parse(const char *s, enum http_fwd_proto *out)
    __attribute__((warn_unused_result));
/* The resolved proto: forced by --forwarded-proto, else https iff tls. */
bool http_fwd_https(const struct http_fwd_cfg *c, bool tls);

/* ---- the request ---- */

/*
 * The client request as the rules need it. Slices must outlive the call's results (they are
 * referenced, not copied).
 */
struct http_inreq {
    const char *path; /* raw path of the request-target as on the wire ("" or "*" possible) */
    size_t path_len;
    const char *query; /* raw query after '?', or NULL when the target had no '?' */
    size_t query_len;
    const struct http_hdrs *hdrs; /* the client's fields */
    const char *host;             /* Host as sent (with port) or the absolute-form authority */
    size_t host_len;
    const struct sockaddr *peer; /* TCP peer, after PROXY protocol */
    bool tls;                    /* arrived over TLS */
};

/* Who the auth layer authenticated; every member may be NULL / 0. */
struct http_identity {
    const char *user; /* email or display name */
    const char *const *group_ids;
    const char *const *group_names; /* parallel to group_ids; NULL or "" entries use the id */
    size_t n_groups;
};

/*
 * The upstream request. All slices point into the arena, the input request or the service (the
 * request holds a service reference while it uses them).
 *
 * hdrs carries neither Host (see host; write it first) nor framing: Content-Length and
 * Transfer-Encoding are the upstream client's to write for the body it actually sends (Go's
 * transport does the same from the request's ContentLength), and Expect is dropped because the
 * server answers "100 Continue" itself when the handler reads the body (http_req_read_body), so
 * the upstream must not wait for one. For an upgrade request hdrs contains "Connection: Upgrade"
 * and the client's Upgrade value; otherwise no Connection field (the client adds its own).
 */
struct http_outreq {
    const char *target; /* request-target: escaped path, then '?' and the query if any */
    size_t target_len;
    const char *host; /* Host field value */
    size_t host_len;
    struct http_hdrs hdrs;
    const char *upgrade; /* protocol of an upgrade request (e.g. "websocket"), or NULL */
    size_t upgrade_len;
};

/*
 * Go's URL.Path for a raw request path: %XX decoded (no '+' rule). *out points at raw itself
 * when there is nothing to decode, else into the arena; it may contain NUL bytes (lengths
 * everywhere). NB_OK, NB_E_PARSE (a '%' without two hex digits: answer 400, as Go's server
 * does), NB_E_NOMEM.
 */
int http_path_decode(struct nb_arena *a, const char *raw, size_t len, const char **out,
                     size_t *out_len) __attribute__((warn_unused_result));

/*
 * Builds the upstream request for `in`, routed to `match` (a path of svc), in the order of
 * §4.4: Go ReverseProxy pre-processing (hop-by-hop fields and the fields Connection names,
 * Te: trailers kept, Connection/Upgrade re-added for upgrades, Forwarded and X-Forwarded-* dropped,
 * unparsable query parameters cleaned), then 1-2 path strip (DEFAULT mode, matched path not ""
 * or "/") and single-slash join with the target's path and query, 3 Host (client's if
 * pass_host_header, else the target authority), 4 header-auth names deleted, 5 custom headers
 * set, 6 identity (client X-NetBird-User/-Groups always deleted; set from id when valid),
 * 7 X-Forwarded-For/-Host/-Proto/-Port and X-Real-IP (trusted peers extend, others replace),
 * 8 Cookie rebuilt without nb_session, 9 session_token removed from the query (which is then
 * re-encoded with sorted keys). Only the first User-Agent is kept and an empty one is dropped
 * (Go sends none then). No Via. Fields the proxy writes carry Go's canonical spelling, as on
 * NetBird's wire ("X-Real-Ip", "X-Netbird-User", "X-Netbird-Groups"); client fields keep theirs.
 * in->hdrs is required; id may be NULL (unauthenticated) and is copied.
 *
 * NB_OK; NB_E_PARSE: the request path has a bad %-escape, or path/query hold a control byte or
 * a space (400); NB_E_UNSUPPORTED: the Upgrade value has bytes outside 0x20..0x7E (Go's proxy
 * refuses: 502 "Connection Error"); NB_E_NOMEM.
 */
int http_rewrite_request(struct nb_arena *a, const struct http_inreq *in,
                         const struct http_service *svc, const struct http_route_path *match,
                         const struct http_identity *id, const struct http_fwd_cfg *cfg,
                         struct http_outreq *out) __attribute__((warn_unused_result));

/*
 * The client IP (§4.5) as text into out: the peer's IP unless the peer is a trusted proxy; then
 * X-Forwarded-For (first field) walked right to left, skipping blank, unparsable and trusted
 * entries: the first untrusted IP; if every parsable entry is trusted, the leftmost parsable one;
 * none at all -> the peer. IPv4-mapped IPv6 addresses are unmapped (the peer's too), output is
 * Go's netip text form. NB_OK, or NB_E_INVAL (the peer is not an IP: "" in out; answer 403 when
 * restrictions apply).
 */
int http_client_ip(const struct sockaddr *peer, const struct http_hdrs *hdrs,
                   const struct http_fwd_cfg *cfg, char out[NB_ADDRSTRLEN]);

/*
 * Location rewriting for services with rewrite_redirects (§4.8). loc is the first Location value
 * of the upstream response. If it parses (Go url.Parse) as a URL with a host whose authority
 * equals the target's, default ports normalised ("https" + ":443", "http" + ":80"; schemes are
 * not compared), the result has the client's Host and scheme ("https" when `https`, the resolved
 * proto), and, unless the target is in PRESERVE mode or the matched path is "" or "/", the path
 * prefixed with the matched path (trailing '/' trimmed, single '/' join); query and fragment are
 * kept. Otherwise (relative, other authority, opaque, empty) *out = loc unchanged. The result is
 * serialised like Go's URL.String (path and fragment re-escaped only where needed).
 * NB_OK; NB_E_PARSE: loc does not parse (the engine answers 502); NB_E_NOMEM.
 */
int http_rewrite_location(struct nb_arena *a, const char *loc, size_t len,
                          const struct http_route_path *match, const char *client_host,
                          size_t client_host_len, bool https, const char **out, size_t *out_len)
    __attribute__((warn_unused_result));

/*
 * Removes hop-by-hop fields, as Go's ReverseProxy does on requests and responses: every field
 * named in a Connection field, then Connection, Proxy-Connection, Keep-Alive,
 * Proxy-Authenticate, Proxy-Authorization, Te, Trailer, Transfer-Encoding, Upgrade. Not for a
 * 101 response (Go copies those as they are). When the engine relays chunked trailers it
 * announces them again with its own Trailer field, as Go's proxy does.
 */
void http_strip_hop_by_hop(struct http_hdrs *h);

#endif
