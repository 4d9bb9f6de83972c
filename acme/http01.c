/* SPDX-License-Identifier: BSD-3-Clause */
#include "acme/http01.h"

#include <stdio.h>
#include <string.h>

/* Go's net.SplitHostPort on the Host field: strips ":port" when there is one. */
static bool split_port(const char *hp, char *host, size_t cap)
{
    const char *colon = strrchr(hp, ':');
    size_t hl;
    if (hp[0] == '[') {
        const char *rb = strchr(hp, ']');
        if (!rb || rb[1] != ':')
            return false;
        hp++;
        hl = (size_t)(rb - hp);
    } else {
        if (!colon || strchr(hp, ':') != colon)
            return false;
        hl = (size_t)(colon - hp);
    }
    if (hl >= cap)
        return false;
    memcpy(host, hp, hl);
    host[hl] = '\0';
    return true;
}

const char *acme_strip_port(const char *hostport, char *out, size_t cap)
{
    if (!split_port(hostport, out, cap))
        snprintf(out, cap, "%s", hostport);
    return out;
}

static void text(struct acme_http01_reply *r, int status, const char *body)
{
    r->status = status;
    r->content_type = "text/plain; charset=utf-8";
    r->body = body;
    r->body_len = strlen(body);
}

void acme_http01_handle(const char *method, const char *host, const char *target,
                        acme_host_ok_fn host_ok, acme_token_fn token, void *arg,
                        struct acme_http01_reply *r)
{
    memset(r, 0, sizeof *r);
    size_t plen = strcspn(target, "?");
    const size_t pfx = sizeof ACME_HTTP01_PREFIX - 1;
    if (plen >= pfx && strncmp(target, ACME_HTTP01_PREFIX, pfx) == 0) {
        char h[256];
        if (strlen(host) >= sizeof h || !host_ok(arg, acme_strip_port(host, h, sizeof h))) {
            text(r, 403, "acme/autocert: host not configured\n");
            return;
        }
        char tok[256];
        size_t tl = plen - pfx;
        const char *ka = NULL;
        if (tl > 0 && tl < sizeof tok) {
            memcpy(tok, target + pfx, tl);
            tok[tl] = '\0';
            ka = token(arg, tok);
        }
        if (!ka) {
            text(r, 404, "acme/autocert: certificate cache miss\n");
            return;
        }
        r->status = 200;
        r->content_type = "text/plain";
        r->body = ka;
        r->body_len = strlen(ka);
        return;
    }
    bool get = strcmp(method, "GET") == 0, head = strcmp(method, "HEAD") == 0;
    if (!get && !head) {
        text(r, 400, "Use HTTPS\n");
        return;
    }
    char h[256], bare[256];
    const char *dst = host;
    if (strlen(host) < sizeof bare && split_port(host, bare, sizeof bare)) {
        /* net.JoinHostPort(host, "443") */
        snprintf(h, sizeof h, strchr(bare, ':') ? "[%s]:443" : "%s:443", bare);
        dst = h;
    }
    int n = snprintf(r->location, sizeof r->location, "https://%s%s", dst, target);
    if (n < 0 || (size_t)n >= sizeof r->location) {
        text(r, 400, "Use HTTPS\n");
        r->location[0] = '\0';
        return;
    }
    r->status = 302;
    r->content_type = "text/html; charset=utf-8";
    if (get) {
        /* Go's http.Redirect body for GET (the URL HTML-escaped there; ours has no specials
         * that matter for a client that follows Location). */
        int bl = snprintf(r->buf, sizeof r->buf, "<a href=\"%s\">Found</a>.\n\n", r->location);
        r->body = r->buf;
        r->body_len = bl > 0 && (size_t)bl < sizeof r->buf ? (size_t)bl : 0;
    } else {
        r->body = "";
    }
}
