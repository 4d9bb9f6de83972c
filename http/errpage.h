/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_HTTP_ERRPAGE_H
#define NB_HTTP_ERRPAGE_H

/*
 * The proxy's own responses (spec §4.2, §4.9, §5.6, §12): the HTML page that renders both error
 * pages and the login page, Go http.Error plain-text bodies, the robots.txt quirk, and the
 * classification of upstream failures into error pages.
 *
 * The HTML is web/index.html (embedded at build time) with `window.__DATA__ = <JSON>` filled in,
 * as netbird-proxy does. The page data shapes, with keys in Go's order (encoding/json sorts map
 * keys, so the bytes match what netbird-proxy sends):
 *   error:  {"error":{"code":N,"destination":b,"message":s,"proxy":b,"requestId":s,"title":s},
 *            "page":"error"}
 *   denied: {"error":{"code":403,"message":s,"requestId":s,"retryUrl":s,"simple":true,
 *            "title":"Access Denied"},"page":"error"}
 *   login:  {"methods":{"<name>":"<prompt>",...}}   e.g. "password":"password", "pin":"pin",
 *            "oidc":"<IdP URL>", "header":""
 *
 * Script safety: the JSON sits inside a <script> element, so before insertion `<`, `>`, `&`,
 * U+2028 and U+2029 are written as \u003c, \u003e, \u0026, \u2028, \u2029 (what Go's json.Marshal
 * does) and every byte that is not part of valid UTF-8 becomes \ufffd. Inside JSON these bytes
 * only occur in strings, where the escapes mean the same characters; no value can close the
 * script element, open a comment or inject markup.
 *
 * Bodies live in the caller's arena (one per request). All functions return NB_OK, or
 * NB_E_NOMEM (arena or cJSON allocation failed; *body is then untouched).
 */

#include <stdbool.h>
#include <stddef.h>

struct nb_arena;

/* Content-Type of rendered pages. Go sets exactly this, without a charset (the page declares
 * <meta charset="utf-8">). */
#define HTTP_PAGE_CONTENT_TYPE "text/html"
/* Content-Type of http.Error bodies; send with X-Content-Type-Options: nosniff (spec §12). */
#define HTTP_PLAIN_CONTENT_TYPE "text/plain; charset=utf-8"
/* Content-Type of the robots.txt answer (§4.2; Go sets it without a charset). */
#define HTTP_ROBOTS_CONTENT_TYPE "text/plain"

/* An error page: status plus the data the page shows. Strings are static. */
struct http_error {
    int status;
    const char *title;
    const char *message;
    bool proxy;       /* the page shows the proxy hop as working */
    bool destination; /* the page shows the destination as reachable */
};

/* What the engine knows about a failed upstream request (§4.9 table, in its first-match order). */
enum http_upstream_err {
    HTTP_UPSTREAM_TIMEOUT = 0,   /* deadline passed or the network timed out: 504 */
    HTTP_UPSTREAM_CANCELED,      /* the client went away: 502 */
    HTTP_UPSTREAM_NO_ACCOUNT,    /* no account id for the request: 500 */
    HTTP_UPSTREAM_NOT_CONNECTED, /* no embedded client, or it failed to start: 502 */
    HTTP_UPSTREAM_OVERLOADED,    /* the per-backend in-flight cap was hit: 503 */
    HTTP_UPSTREAM_DIAL,          /* dialing or talking to the backend failed: see `reason` */
};

/*
 * The error page for an upstream failure. For HTTP_UPSTREAM_DIAL the reason text (a static
 * stream error such as "connection refused", strerror() text, or lwIP's "host unreachable";
 * NULL allowed) is matched case-insensitively, first match wins:
 *   contains "timed out" or "timeout"               -> 504 Request Timeout (Go reports ETIMEDOUT
 *                                                      as a net timeout, the table's first row)
 *   contains "refused"                              -> 502 Service Unavailable
 *   contains "unreachable" or "no route to host"    -> 502 Peer Not Connected
 *   anything else                                   -> 502 Connection Error
 * Never NULL; unknown kinds give Connection Error.
 */
const struct http_error *http_upstream_error(enum http_upstream_err kind, const char *reason);

extern const struct http_error http_error_not_found; /* 404 Service Not Found: unknown host/path */
extern const struct http_error http_error_loop;      /* 421 Loop Detected: target is the client */

/*
 * The page with data_json[0..len) as window.__DATA__, made script-safe as described above.
 * data_json should be one JSON value (normally from cJSON); it is not validated, but whatever it
 * holds cannot break out of the script element. *body is NUL-terminated (not counted in *len).
 */
int http_page_render(struct nb_arena *a, const char *data_json, size_t len, const char **body,
                     size_t *body_len) __attribute__((warn_unused_result));

/* An error page for e (status e->status). request_id is the request's xid (NULL = ""). */
int http_errpage_render(struct nb_arena *a, const struct http_error *e, const char *request_id,
                        const char **body, size_t *body_len) __attribute__((warn_unused_result));

/*
 * The access-denied page (status 403, title "Access Denied", no connection graph). retry_url is
 * the request URI with session_token, error and error_description removed (the caller builds
 * it); NULL leaves "retryUrl" out. The page only follows same-origin retry URLs. NULL message or
 * request_id count as "".
 */
int http_denied_render(struct nb_arena *a, const char *message, const char *request_id,
                       const char *retry_url, const char **body, size_t *body_len)
    __attribute__((warn_unused_result));

/* One offered login method: name ("password", "pin", "oidc", "header") and the prompt data the
 * page needs (the form field name, or the OIDC URL; "" for header). */
struct http_login_method {
    const char *name;
    const char *prompt; /* NULL = "" */
};

/*
 * The login page (status 401 in netbird-proxy) offering methods m[0..n). Keys are written sorted
 * like Go's map encoding; a repeated name keeps its last prompt (map assignment). NB_E_INVAL if a
 * name is NULL.
 */
int http_login_render(struct nb_arena *a, const struct http_login_method *m, size_t n,
                      const char **body, size_t *body_len) __attribute__((warn_unused_result));

/*
 * Go http.Error's body: msg followed by "\n" (send with HTTP_PLAIN_CONTENT_TYPE and
 * X-Content-Type-Options: nosniff). e.g. "Forbidden" -> "Forbidden\n".
 */
int http_plain_error(struct nb_arena *a, const char *msg, const char **body, size_t *body_len)
    __attribute__((warn_unused_result));

/*
 * The §4.2 quirk. Call it with the request's decoded URL path before rendering any page (login
 * or error): if the path is exactly "/robots.txt", it returns true and the static robots file
 * ("User-agent: *\nDisallow: /\n"), which the engine sends instead of the page with status 200
 * and HTTP_ROBOTS_CONTENT_TYPE. Otherwise false and nothing is written.
 */
bool http_page_robots(const char *path, size_t path_len, const char **body, size_t *body_len);

#endif
