/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * The proxy's own pages. Sits at the end of the engine's request path: when routing, auth or the
 * upstream fails, the engine picks a struct http_error (http_upstream_error for §4.9), renders
 * it here into the request's arena and writes the body with HTTP_PAGE_CONTENT_TYPE. The page
 * data is built with cJSON (this is the rare path) and then passed through one escaping loop
 * that makes it safe inside a <script> element; that loop is the only security-relevant code
 * here and the tests feed it hostile strings.
 */
#include "http/errpage.h"

#include "platform/arena.h"
#include "platform/err.h"
#include "platform/utf8.h"
#include "web/index_html.h"

#include <cjson/cJSON.h>
#include <string.h>

/* ---- error table (§4.9) ---- */

static const struct http_error err_timeout = {
    504, "Request Timeout", "The service took too long to respond. Refresh the page to try again.",
    true, false};
static const struct http_error err_canceled = {
    502, "Request Canceled",
    "The request was cancelled before it could complete. Refresh the page to try again.", true,
    false};
static const struct http_error err_no_account = {
    500, "Configuration Error",
    "The proxy could not match this request to a configured account. Refresh the page to try "
    "again, or contact your administrator if it keeps happening.",
    false, false};
static const struct http_error err_not_connected = {
    502, "Proxy Not Connected",
    "The proxy has no connection to the NetBird network right now. Try again later or contact "
    "your administrator.",
    false, false};
static const struct http_error err_overloaded = {
    503, "Service Overloaded",
    "The service is handling too many requests right now. Please try again in a moment.", true,
    false};
static const struct http_error err_refused = {
    502, "Service Unavailable",
    "The service refused the connection. Make sure it is running and try again.", true, false};
static const struct http_error err_unreachable = {
    502, "Peer Not Connected",
    "The peer that hosts this service could not be reached. Make sure it is running and "
    "connected to the NetBird network.",
    true, false};
static const struct http_error err_connection = {
    502, "Connection Error",
    "Something went wrong while connecting to the service. Please try again later.", true, false};

const struct http_error http_error_not_found = {
    404, "Service Not Found",
    "No service is configured at this address. Check the URL, refresh the page, or make sure "
    "the peer that hosts the service is running.",
    true, false};
const struct http_error http_error_loop = {
    421, "Loop Detected",
    "The request would have been sent back to the client it came from, so the proxy stopped it. "
    "Check the service's target address.",
    true, false};

static bool has(const char *s, const char *needle)
{
    return strcasestr(s, needle) != NULL;
}

const struct http_error *http_upstream_error(enum http_upstream_err kind, const char *reason)
{
    switch (kind) {
    case HTTP_UPSTREAM_TIMEOUT:
        return &err_timeout;
    case HTTP_UPSTREAM_CANCELED:
        return &err_canceled;
    case HTTP_UPSTREAM_NO_ACCOUNT:
        return &err_no_account;
    case HTTP_UPSTREAM_NOT_CONNECTED:
        return &err_not_connected;
    case HTTP_UPSTREAM_OVERLOADED:
        return &err_overloaded;
    case HTTP_UPSTREAM_DIAL:
        break;
    default:
        return &err_connection;
    }
    if (reason == NULL)
        return &err_connection;
    /* Go checks net timeouts before anything else, and ETIMEDOUT counts as one there. */
    if (has(reason, "timed out") || has(reason, "timeout"))
        return &err_timeout;
    if (has(reason, "refused"))
        return &err_refused;
    if (has(reason, "unreachable") || has(reason, "no route to host"))
        return &err_unreachable;
    return &err_connection;
}

/* ---- script-safe JSON ---- */

/* Escapes src into dst (NULL: only count). Returns the output length. */
static size_t script_escape(const unsigned char *src, size_t n, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        const char *esc = NULL;
        size_t k = nb_utf8_seq(src + i, n - i);
        if (k == 0) {
            esc = "\\ufffd"; /* one per invalid byte, as Go's encoder */
            k = 1;
        } else if (k == 1) {
            if (src[i] == '<')
                esc = "\\u003c";
            else if (src[i] == '>')
                esc = "\\u003e";
            else if (src[i] == '&')
                esc = "\\u0026";
        } else if (k == 3 && src[i] == 0xe2 && src[i + 1] == 0x80 &&
                   (src[i + 2] == 0xa8 || src[i + 2] == 0xa9)) {
            /* Line and paragraph separators end a line in pre-ES2019 script parsers. */
            esc = src[i + 2] == 0xa8 ? "\\u2028" : "\\u2029";
        }
        if (esc) {
            if (dst)
                memcpy(dst + o, esc, 6);
            o += 6;
        } else {
            if (dst)
                memcpy(dst + o, src + i, k);
            o += k;
        }
        i += k;
    }
    return o;
}

int http_page_render(struct nb_arena *a, const char *data_json, size_t len, const char **body,
                     size_t *body_len)
{
    const unsigned char *tpl = nb_web_index_html;
    size_t head = nb_web_index_html_data_at;
    size_t tail_at = head + nb_web_index_html_data_len;
    size_t tail = nb_web_index_html_len - tail_at;
    const unsigned char *src = (const unsigned char *)data_json;
    if (src == NULL || len == 0) {
        src = (const unsigned char *)"{}";
        len = 2;
    }
    /* At most 6 output bytes per input byte: check before adding it all up. */
    if (len > (SIZE_MAX - nb_web_index_html_len - 1) / 6)
        return NB_E_NOMEM;
    size_t data = script_escape(src, len, NULL);
    size_t total = head + data + tail;
    char *out = nb_arena_alloc(a, total + 1);
    if (out == NULL)
        return NB_E_NOMEM;
    memcpy(out, tpl, head);
    script_escape(src, len, out + head);
    memcpy(out + head + data, tpl + tail_at, tail);
    out[total] = '\0';
    *body = out;
    *body_len = total;
    return NB_OK;
}

/* ---- page data ---- */

static const char *str(const char *s)
{
    return s ? s : "";
}

/* Renders root (consumed) as the page data. */
static int render_json(struct nb_arena *a, cJSON *root, const char **body, size_t *body_len)
{
    int ret = NB_E_NOMEM;
    char *json = NULL;
    if (root == NULL)
        goto out;
    json = cJSON_PrintUnformatted(root);
    if (json == NULL)
        goto out;
    ret = http_page_render(a, json, strlen(json), body, body_len);
out:
    cJSON_free(json);
    cJSON_Delete(root);
    return ret;
}

/* {"error":{},"page":"error"}; *inner is the "error" object to fill. NULL when out of memory. */
static cJSON *error_doc(cJSON **inner)
{
    cJSON *root = cJSON_CreateObject();
    if (root == NULL)
        return NULL;
    *inner = cJSON_AddObjectToObject(root, "error");
    if (*inner == NULL || cJSON_AddStringToObject(root, "page", "error") == NULL) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

int http_errpage_render(struct nb_arena *a, const struct http_error *e, const char *request_id,
                        const char **body, size_t *body_len)
{
    cJSON *err = NULL;
    cJSON *root = error_doc(&err);
    /* Keys in sorted order: Go marshals the map[string]any this way. */
    if (root && !(cJSON_AddNumberToObject(err, "code", e->status) &&
                  cJSON_AddBoolToObject(err, "destination", e->destination) &&
                  cJSON_AddStringToObject(err, "message", str(e->message)) &&
                  cJSON_AddBoolToObject(err, "proxy", e->proxy) &&
                  cJSON_AddStringToObject(err, "requestId", str(request_id)) &&
                  cJSON_AddStringToObject(err, "title", str(e->title)))) {
        cJSON_Delete(root);
        root = NULL;
    }
    return render_json(a, root, body, body_len);
}

int http_denied_render(struct nb_arena *a, const char *message, const char *request_id,
                       const char *retry_url, const char **body, size_t *body_len)
{
    cJSON *err = NULL;
    cJSON *root = error_doc(&err);
    if (root && !(cJSON_AddNumberToObject(err, "code", 403) &&
                  cJSON_AddStringToObject(err, "message", str(message)) &&
                  cJSON_AddStringToObject(err, "requestId", str(request_id)) &&
                  (retry_url == NULL || cJSON_AddStringToObject(err, "retryUrl", retry_url)) &&
                  cJSON_AddTrueToObject(err, "simple") &&
                  cJSON_AddStringToObject(err, "title", "Access Denied"))) {
        cJSON_Delete(root);
        root = NULL;
    }
    return render_json(a, root, body, body_len);
}

int http_login_render(struct nb_arena *a, const struct http_login_method *m, size_t n,
                      const char **body, size_t *body_len)
{
    for (size_t i = 0; i < n; i++)
        if (m[i].name == NULL)
            return NB_E_INVAL;
    cJSON *root = cJSON_CreateObject();
    cJSON *methods = root ? cJSON_AddObjectToObject(root, "methods") : NULL;
    const char *prev = NULL;
    while (methods) {
        /* A handful of methods: pick the next name in order each round (selection, no copy). */
        size_t best = n;
        for (size_t i = 0; i < n; i++) {
            if (prev && strcmp(m[i].name, prev) <= 0)
                continue;
            /* "<=" keeps the last of equal names: Go's map assignment overwrites. */
            if (best == n || strcmp(m[i].name, m[best].name) <= 0)
                best = i;
        }
        if (best == n)
            break;
        if (cJSON_AddStringToObject(methods, m[best].name, str(m[best].prompt)) == NULL)
            methods = NULL;
        prev = m[best].name;
    }
    if (methods == NULL) {
        cJSON_Delete(root);
        root = NULL; /* render_json reports NB_E_NOMEM */
    }
    return render_json(a, root, body, body_len);
}

/* ---- plain text ---- */

int http_plain_error(struct nb_arena *a, const char *msg, const char **body, size_t *body_len)
{
    size_t n = strlen(str(msg));
    char *out = nb_arena_alloc(a, n + 2);
    if (out == NULL)
        return NB_E_NOMEM;
    memcpy(out, str(msg), n);
    out[n] = '\n';
    out[n + 1] = '\0';
    *body = out;
    *body_len = n + 1;
    return NB_OK;
}

static const char robots_txt[] = "User-agent: *\nDisallow: /\n";

bool http_page_robots(const char *path, size_t path_len, const char **body, size_t *body_len)
{
    static const char robots_path[] = "/robots.txt";
    if (path == NULL || path_len != sizeof robots_path - 1 ||
        memcmp(path, robots_path, path_len) != 0)
        return false;
    *body = robots_txt;
    *body_len = sizeof robots_txt - 1;
    return true;
}
