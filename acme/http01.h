/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_ACME_HTTP01_H
#define NB_ACME_HTTP01_H

/*
 * The --acme-addr handler of spec/proxy.md §7.2 (Go's autocert HTTPHandler(nil) with
 * netbird-proxy's host policy) as a pure function of (method, Host, request-target) and two
 * lookups, so every rule is unit-tested without a socket:
 *   - path /.well-known/acme-challenge/<token>, any method: host (port stripped) not allowed
 *     -> 403; token unknown -> 404 "acme/autocert: certificate cache miss"; else 200 with the
 *     key authorization (text/plain);
 *   - any other path, GET or HEAD -> 302 to https://<host><uri>, where a host given with a port
 *     becomes <host>:443 (autocert's stripPort);
 *   - anything else -> 400 "Use HTTPS".
 * Bodies are Go's http.Error texts (with the trailing newline).
 */

#include <stdbool.h>
#include <stddef.h>

#define ACME_HTTP01_PREFIX "/.well-known/acme-challenge/"

/* Allowed host? `host` has its port stripped. */
typedef bool (*acme_host_ok_fn)(void *arg, const char *host);
/* The key authorization for a token, or NULL; the string stays valid until the next call into
 * the manager. */
typedef const char *(*acme_token_fn)(void *arg, const char *token);

struct acme_http01_reply {
    int status;               /* 200, 302, 400, 403, 404 */
    const char *content_type; /* static */
    const char *body;         /* static, the key authorization (valid as the lookup says), or buf */
    size_t body_len;          /* 0 for HEAD redirects as Go writes none */
    char location[1100];      /* for 302, "" otherwise */
    char buf[1200];           /* storage for generated bodies */
};

/* Fills *r. host may include a port; an empty host gets 403 on challenge paths. */
void acme_http01_handle(const char *method, const char *host, const char *target,
                        acme_host_ok_fn host_ok, acme_token_fn token, void *arg,
                        struct acme_http01_reply *r);

/* "host" or "[v6]" without its ":port" into out (cap); returns out. */
const char *acme_strip_port(const char *hostport, char *out, size_t cap);

#endif
