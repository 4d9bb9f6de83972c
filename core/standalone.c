/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Standalone configuration: JSON (cJSON) and wg-quick files into nb_standalone. All validation
 * happens here so that start-up either gets a complete, consistent configuration or a message
 * naming the field ("mappings[2].listenPort: duplicate port 8080 (also mappings[0])").
 */
#include "core/standalone.h"
#include "core/config.h"
#include "auth/restrict.h"
#include "http/route.h"
#include "platform/addr.h"
#include "platform/err.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct perr {
    char *buf;
    size_t len;
};

static int fail(struct perr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct perr *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->buf, e->len, fmt, ap);
    va_end(ap);
    return NB_E_INVAL;
}

int nb_key_parse(const char *b64, uint8_t key[NB_KEY_LEN])
{
    size_t n = 0;
    if (b64 == NULL || strlen(b64) != 44)
        return NB_E_PARSE;
    if (sodium_base642bin(key, NB_KEY_LEN, b64, 44, NULL, &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        n != NB_KEY_LEN) {
        sodium_memzero(key, NB_KEY_LEN);
        return NB_E_PARSE;
    }
    return NB_OK;
}

int nb_prefix_parse(const char *s, struct nb_prefix *out)
{
    char ip[NB_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t iplen = slash ? (size_t)(slash - s) : strlen(s);
    if (iplen == 0 || iplen >= sizeof ip)
        return NB_E_PARSE;
    memcpy(ip, s, iplen);
    ip[iplen] = '\0';
    memset(out, 0, sizeof *out);
    unsigned max;
    if (inet_pton(AF_INET, ip, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, ip, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return NB_E_PARSE;
    }
    unsigned len = max;
    if (slash) {
        const char *p = slash + 1;
        if (*p == '\0' || strlen(p) > 3)
            return NB_E_PARSE;
        len = 0;
        for (; *p; p++) {
            if (!isdigit((unsigned char)*p))
                return NB_E_PARSE;
            len = len * 10 + (unsigned)(*p - '0');
        }
        if (len > max)
            return NB_E_PARSE;
    }
    out->len = (uint8_t)len;
    return NB_OK;
}

/* ---- JSON helpers: every accessor knows the field path for its error message ---- */

static const cJSON *field(const cJSON *obj, const char *camel, const char *snake)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, camel);
    if (v == NULL && snake)
        v = cJSON_GetObjectItemCaseSensitive(obj, snake);
    return v;
}

static int check_keys(const cJSON *obj, const char *const *allowed, const char *where,
                      struct perr *e)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(it->string, *a) == 0)
                ok = true;
        if (!ok)
            return fail(e, "%s.%s: unknown field", where, it->string);
    }
    return NB_OK;
}

static int get_str(const cJSON *obj, const char *camel, const char *snake, const char *where,
                   bool required, char **out, struct perr *e)
{
    const cJSON *v = field(obj, camel, snake);
    if (v == NULL || cJSON_IsNull(v)) {
        if (required)
            return fail(e, "%s.%s: required", where, camel);
        return NB_OK;
    }
    if (!cJSON_IsString(v))
        return fail(e, "%s.%s: must be a string", where, camel);
    free(*out);
    *out = strdup(v->valuestring);
    return *out ? NB_OK : NB_E_NOMEM;
}

static int get_bool(const cJSON *obj, const char *camel, const char *snake, const char *where,
                    bool *out, struct perr *e)
{
    const cJSON *v = field(obj, camel, snake);
    if (v == NULL || cJSON_IsNull(v))
        return NB_OK;
    if (!cJSON_IsBool(v))
        return fail(e, "%s.%s: must be true or false", where, camel);
    *out = cJSON_IsTrue(v);
    return NB_OK;
}

static int get_int(const cJSON *obj, const char *camel, const char *snake, const char *where,
                   long min, long max, long *out, struct perr *e)
{
    const cJSON *v = field(obj, camel, snake);
    if (v == NULL || cJSON_IsNull(v))
        return NB_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long)v->valuedouble)
        return fail(e, "%s.%s: must be an integer", where, camel);
    long n = (long)v->valuedouble;
    if (n < min || n > max)
        return fail(e, "%s.%s: %ld is out of range %ld..%ld", where, camel, n, min, max);
    *out = n;
    return NB_OK;
}

/* protobuf JSON Duration: "1.5s"; we also accept Go syntax ("5m", "300ms"). */
static int get_duration(const cJSON *obj, const char *camel, const char *snake, const char *where,
                        uint64_t *out, struct perr *e)
{
    const cJSON *v = field(obj, camel, snake);
    if (v == NULL || cJSON_IsNull(v))
        return NB_OK;
    if (!cJSON_IsString(v) || nb_parse_duration_ms(v->valuestring, out) != NB_OK)
        return fail(e, "%s.%s: must be a duration string like \"30s\"", where, camel);
    return NB_OK;
}

static int get_prefixes(const cJSON *obj, const char *camel, const char *snake, const char *where,
                        struct nb_prefix **out, uint32_t *n, struct perr *e)
{
    const cJSON *v = field(obj, camel, snake);
    if (v == NULL || cJSON_IsNull(v))
        return NB_OK;
    if (cJSON_IsString(v)) {
        /* wg-quick habit: "10.0.0.1/32, fd00::1/128" */
        char *copy = strdup(v->valuestring);
        if (copy == NULL)
            return NB_E_NOMEM;
        int rc = NB_OK;
        for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
            while (isspace((unsigned char)*tok))
                tok++;
            char *end = tok + strlen(tok);
            while (end > tok && isspace((unsigned char)end[-1]))
                *--end = '\0';
            if (*tok == '\0')
                continue;
            struct nb_prefix *p = realloc(*out, (*n + 1) * sizeof **out);
            if (p == NULL) {
                rc = NB_E_NOMEM;
                break;
            }
            *out = p;
            if (nb_prefix_parse(tok, &p[*n]) != NB_OK) {
                rc = fail(e, "%s.%s: \"%s\" is not an IP prefix", where, camel, tok);
                break;
            }
            (*n)++;
        }
        free(copy);
        return rc;
    }
    if (!cJSON_IsArray(v))
        return fail(e, "%s.%s: must be a list of prefixes", where, camel);
    int count = cJSON_GetArraySize(v);
    *out = calloc((size_t)(count ? count : 1), sizeof **out);
    if (*out == NULL)
        return NB_E_NOMEM;
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, v)
    {
        if (!cJSON_IsString(it) || nb_prefix_parse(it->valuestring, &(*out)[i]) != NB_OK)
            return fail(e, "%s.%s[%d]: not an IP prefix", where, camel, i);
        i++;
        *n = (uint32_t)i;
    }
    return NB_OK;
}

static int get_key(const cJSON *obj, const char *camel, const char *snake, const char *where,
                   bool required, uint8_t key[NB_KEY_LEN], bool *present, struct perr *e)
{
    const cJSON *v = field(obj, camel, snake);
    if (v == NULL || cJSON_IsNull(v)) {
        if (required)
            return fail(e, "%s.%s: required", where, camel);
        return NB_OK;
    }
    if (!cJSON_IsString(v) || nb_key_parse(v->valuestring, key) != NB_OK)
        return fail(e, "%s.%s: not a base64 WireGuard key (44 characters)", where, camel);
    if (present)
        *present = true;
    return NB_OK;
}

static int parse_endpoint(const char *s, struct sockaddr_storage *ep)
{
    socklen_t l;
    return nb_addr_parse(s, ep, &l);
}

/* ---- accounts ---- */

static int parse_peer(const cJSON *p, const char *where, struct nb_peer_conf *peer, struct perr *e)
{
    static const char *const keys[] = {
        "publicKey",  "public_key",  "presharedKey", "preshared_key",       "endpoint",
        "allowedIps", "allowed_ips", "allowedIPs",   "persistentKeepalive", "persistent_keepalive",
        NULL};
    int rc;
    long ka = 0;
    if (!cJSON_IsObject(p))
        return fail(e, "%s: must be an object", where);
    if ((rc = check_keys(p, keys, where, e)) != NB_OK ||
        (rc = get_key(p, "publicKey", "public_key", where, true, peer->public_key, NULL, e)) ||
        (rc = get_key(p, "presharedKey", "preshared_key", where, false, peer->psk, &peer->has_psk,
                      e)) ||
        (rc = get_int(p, "persistentKeepalive", "persistent_keepalive", where, 0, 65535, &ka, e)))
        return rc;
    const cJSON *aips = field(p, "allowedIps", "allowed_ips");
    if (aips == NULL)
        aips = field(p, "allowedIPs", NULL);
    if (aips) {
        cJSON *wrap = cJSON_CreateObject();
        if (wrap == NULL)
            return NB_E_NOMEM;
        cJSON_AddItemReferenceToObject(wrap, "allowedIps", (cJSON *)aips);
        rc = get_prefixes(wrap, "allowedIps", NULL, where, &peer->allowed_ips, &peer->n_allowed_ips,
                          e);
        cJSON_Delete(wrap);
        if (rc)
            return rc;
    }
    peer->persistent_keepalive = (uint16_t)ka;
    char *ep = NULL;
    if ((rc = get_str(p, "endpoint", NULL, where, false, &ep, e)))
        return rc;
    if (ep) {
        rc = parse_endpoint(ep, &peer->endpoint);
        free(ep);
        if (rc != NB_OK)
            return fail(e, "%s.endpoint: must be ip:port or [ipv6]:port", where);
        peer->has_endpoint = true;
    }
    return NB_OK;
}

static int parse_device(const cJSON *w, const char *where, struct nb_account_conf *a,
                        struct perr *e)
{
    static const char *const keys[] = {"privateKey",  "private_key", "listenPort",
                                       "listen_port", "addresses",   "address",
                                       "mtu",         "peers",       NULL};
    int rc;
    long port = 0, mtu = 1280;
    if ((rc = check_keys(w, keys, where, e)) ||
        (rc = get_key(w, "privateKey", "private_key", where, true, a->private_key, NULL, e)) ||
        (rc = get_int(w, "listenPort", "listen_port", where, 0, 65535, &port, e)) ||
        (rc = get_int(w, "mtu", NULL, where, 576, 8192, &mtu, e)) ||
        (rc = get_prefixes(w, "addresses", "address", where, &a->addresses, &a->n_addresses, e)))
        return rc;
    if (a->n_addresses == 0)
        return fail(e, "%s.addresses: at least one tunnel address is required", where);
    a->listen_port = (uint16_t)port;
    a->mtu = (uint16_t)mtu;
    const cJSON *peers = field(w, "peers", NULL);
    if (peers == NULL)
        return NB_OK;
    if (!cJSON_IsArray(peers))
        return fail(e, "%s.peers: must be a list", where);
    int n = cJSON_GetArraySize(peers);
    a->peers = calloc((size_t)(n ? n : 1), sizeof *a->peers);
    if (a->peers == NULL)
        return NB_E_NOMEM;
    const cJSON *p;
    int i = 0;
    cJSON_ArrayForEach(p, peers)
    {
        char pw[192];
        snprintf(pw, sizeof pw, "%.128s.peers[%d]", where, i);
        a->n_peers = (uint32_t)i + 1;
        if ((rc = parse_peer(p, pw, &a->peers[i], e)))
            return rc;
        for (int j = 0; j < i; j++)
            if (memcmp(a->peers[j].public_key, a->peers[i].public_key, NB_KEY_LEN) == 0)
                return fail(e, "%s.publicKey: duplicate peer (also peers[%d])", pw, j);
        i++;
    }
    return NB_OK;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
        if (n + 1 == cap) {
            if (cap >= (16u << 20)) { /* 16 MiB is far beyond any sane config */
                sodium_memzero(buf, cap);
                free(buf);
                buf = NULL;
                break;
            }
            /* Grow by copy, wiping the old buffer: the file may hold private keys. */
            char *nb = malloc(cap * 2);
            if (nb != NULL)
                memcpy(nb, buf, n);
            sodium_memzero(buf, cap);
            free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static int parse_account(const cJSON *a, const char *where, const char *base_dir,
                         struct nb_account_conf *acct, struct perr *e)
{
    static const char *const keys[] = {"id", "wireguard", NULL};
    int rc;
    if (!cJSON_IsObject(a))
        return fail(e, "%s: must be an object", where);
    if ((rc = check_keys(a, keys, where, e)) ||
        (rc = get_str(a, "id", NULL, where, true, &acct->id, e)))
        return rc;
    if (acct->id[0] == '\0')
        return fail(e, "%s.id: must not be empty", where);
    const cJSON *w = field(a, "wireguard", NULL);
    char wwhere[128];
    snprintf(wwhere, sizeof wwhere, "%s.wireguard", where);
    if (w == NULL)
        return fail(e, "%s: required (an object, or the path of a wg-quick file)", wwhere);
    if (cJSON_IsString(w)) {
        char path[4096];
        if (w->valuestring[0] == '/' || base_dir == NULL)
            snprintf(path, sizeof path, "%s", w->valuestring);
        else
            snprintf(path, sizeof path, "%s/%s", base_dir, w->valuestring);
        size_t len;
        char *text = read_file(path, &len);
        if (text == NULL)
            return fail(e, "%s: cannot read %s: %s", wwhere, path, strerror(errno));
        char sub[200];
        rc = nb_wgquick_parse(text, acct, sub, sizeof sub);
        sodium_memzero(text, len);
        free(text);
        if (rc != NB_OK)
            return fail(e, "%s (%s): %s", wwhere, path, sub);
        return NB_OK;
    }
    if (!cJSON_IsObject(w))
        return fail(e, "%s: must be an object or a file path", wwhere);
    return parse_device(w, wwhere, acct, e);
}

/* ---- wg-quick ---- */

int nb_wgquick_parse(const char *text, struct nb_account_conf *a, char *err, size_t errlen)
{
    struct perr e = {err, errlen};
    enum { NONE, IFACE, PEER } sect = NONE;
    bool have_key = false;
    int lineno = 0;
    int rc = NB_OK;
    char line[1024]; /* may hold a key: wiped on every exit */
    a->mtu = 1280;
    const char *p = text;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        lineno++;
        if (ll >= sizeof line) {
            rc = fail(&e, "line %d: too long", lineno);
            goto out;
        }
        memcpy(line, p, ll);
        line[ll] = '\0';
        p += ll + (eol ? 1 : 0);
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        char *end = s + strlen(s);
        while (end > s && isspace((unsigned char)end[-1]))
            *--end = '\0';
        if (*s == '\0')
            continue;
        if (strcasecmp(s, "[Interface]") == 0) {
            sect = IFACE;
            continue;
        }
        if (strcasecmp(s, "[Peer]") == 0) {
            /* Not realloc: the old array holds PSKs and must be wiped, not abandoned. */
            struct nb_peer_conf *np = calloc(a->n_peers + 1, sizeof *np);
            if (np == NULL) {
                rc = NB_E_NOMEM;
                goto out;
            }
            if (a->peers) {
                memcpy(np, a->peers, a->n_peers * sizeof *np);
                sodium_memzero(a->peers, a->n_peers * sizeof *np);
                free(a->peers);
            }
            a->peers = np;
            memset(&np[a->n_peers], 0, sizeof *np);
            a->n_peers++;
            sect = PEER;
            continue;
        }
        char *eq = strchr(s, '=');
        if (eq == NULL || sect == NONE) {
            rc = fail(&e, "line %d: expected [Interface], [Peer] or Key = Value", lineno);
            goto out;
        }
        *eq = '\0';
        char *k = s, *v = eq + 1;
        end = k + strlen(k);
        while (end > k && isspace((unsigned char)end[-1]))
            *--end = '\0';
        while (isspace((unsigned char)*v))
            v++;
        struct nb_peer_conf *peer = sect == PEER ? &a->peers[a->n_peers - 1] : NULL;
        char w[64];
        snprintf(w, sizeof w, "line %d", lineno);
        cJSON *tmp = NULL;
        if (sect == IFACE && strcasecmp(k, "PrivateKey") == 0) {
            if (nb_key_parse(v, a->private_key) != NB_OK)
                rc = fail(&e, "line %d: PrivateKey is not a base64 WireGuard key", lineno);
            have_key = true;
        } else if (sect == IFACE && strcasecmp(k, "ListenPort") == 0) {
            char *x;
            long n = strtol(v, &x, 10);
            if (*v == '\0' || *x || n < 0 || n > 65535)
                rc = fail(&e, "line %d: ListenPort must be 0..65535", lineno);
            a->listen_port = (uint16_t)n;
        } else if (sect == IFACE && strcasecmp(k, "MTU") == 0) {
            char *x;
            long n = strtol(v, &x, 10);
            if (*v == '\0' || *x || n < 576 || n > 8192)
                rc = fail(&e, "line %d: MTU must be 576..8192", lineno);
            a->mtu = (uint16_t)n;
        } else if (sect == IFACE && strcasecmp(k, "Address") == 0) {
            tmp = cJSON_CreateObject();
            cJSON_AddStringToObject(tmp, "a", v);
            rc = get_prefixes(tmp, "a", NULL, w, &a->addresses, &a->n_addresses, &e);
        } else if (sect == IFACE &&
                   (strcasecmp(k, "DNS") == 0 || strcasecmp(k, "Table") == 0 ||
                    strcasecmp(k, "FwMark") == 0 || !strncasecmp(k, "Pre", 3) ||
                    !strncasecmp(k, "Post", 4) || strcasecmp(k, "SaveConfig") == 0)) {
            /* wg-quick host-side settings: meaningless for a userspace netstack. */
        } else if (peer && strcasecmp(k, "PublicKey") == 0) {
            if (nb_key_parse(v, peer->public_key) != NB_OK)
                rc = fail(&e, "line %d: PublicKey is not a base64 WireGuard key", lineno);
        } else if (peer && strcasecmp(k, "PresharedKey") == 0) {
            if (nb_key_parse(v, peer->psk) != NB_OK)
                rc = fail(&e, "line %d: PresharedKey is not a base64 WireGuard key", lineno);
            peer->has_psk = true;
        } else if (peer && strcasecmp(k, "Endpoint") == 0) {
            if (parse_endpoint(v, &peer->endpoint) != NB_OK)
                rc = fail(&e, "line %d: Endpoint must be ip:port or [ipv6]:port", lineno);
            peer->has_endpoint = true;
        } else if (peer && strcasecmp(k, "AllowedIPs") == 0) {
            tmp = cJSON_CreateObject();
            cJSON_AddStringToObject(tmp, "a", v);
            rc = get_prefixes(tmp, "a", NULL, w, &peer->allowed_ips, &peer->n_allowed_ips, &e);
        } else if (peer && strcasecmp(k, "PersistentKeepalive") == 0) {
            char *x;
            long n = strcasecmp(v, "off") == 0 ? 0 : strtol(v, &x, 10);
            if (strcasecmp(v, "off") != 0 && (*v == '\0' || *x || n < 0 || n > 65535))
                rc = fail(&e, "line %d: PersistentKeepalive must be 0..65535 or off", lineno);
            peer->persistent_keepalive = (uint16_t)n;
        } else {
            rc = fail(&e, "line %d: unknown key \"%s\"", lineno, k);
        }
        cJSON_Delete(tmp);
        if (rc != NB_OK)
            goto out;
    }
    if (!have_key) {
        rc = fail(&e, "[Interface] PrivateKey is required");
        goto out;
    }
    if (a->n_addresses == 0) {
        rc = fail(&e, "[Interface] Address is required");
        goto out;
    }
    for (uint32_t i = 0; i < a->n_peers; i++) {
        static const uint8_t zero[NB_KEY_LEN];
        if (memcmp(a->peers[i].public_key, zero, NB_KEY_LEN) == 0) {
            rc = fail(&e, "[Peer] #%u: PublicKey is required", i + 1);
            goto out;
        }
    }
out:
    sodium_memzero(line, sizeof line);
    return rc;
}

/* ---- mappings ---- */

static int parse_options(const cJSON *o, const char *where, struct nb_target_options *opt,
                         struct perr *e)
{
    static const char *const keys[] = {"skipTlsVerify",
                                       "skip_tls_verify",
                                       "requestTimeout",
                                       "request_timeout",
                                       "pathRewrite",
                                       "path_rewrite",
                                       "customHeaders",
                                       "custom_headers",
                                       "proxyProtocol",
                                       "proxy_protocol",
                                       "sessionIdleTimeout",
                                       "session_idle_timeout",
                                       "directUpstream",
                                       "direct_upstream",
                                       "disableAccessLog",
                                       "disable_access_log",
                                       NULL};
    int rc;
    if (!cJSON_IsObject(o))
        return fail(e, "%s: must be an object", where);
    if ((rc = check_keys(o, keys, where, e)) ||
        (rc = get_bool(o, "skipTlsVerify", "skip_tls_verify", where, &opt->skip_tls_verify, e)) ||
        (rc = get_duration(o, "requestTimeout", "request_timeout", where, &opt->request_timeout_ms,
                           e)) ||
        (rc = get_bool(o, "proxyProtocol", "proxy_protocol", where, &opt->proxy_protocol, e)) ||
        (rc = get_duration(o, "sessionIdleTimeout", "session_idle_timeout", where,
                           &opt->session_idle_timeout_ms, e)) ||
        (rc = get_bool(o, "directUpstream", "direct_upstream", where, &opt->direct_upstream, e)) ||
        (rc = get_bool(o, "disableAccessLog", "disable_access_log", where, &opt->disable_access_log,
                       e)))
        return rc;
    const cJSON *pr = field(o, "pathRewrite", "path_rewrite");
    if (pr && !cJSON_IsNull(pr)) {
        if (cJSON_IsString(pr) && strcmp(pr->valuestring, "PATH_REWRITE_PRESERVE") == 0)
            opt->path_rewrite = NB_PATH_REWRITE_PRESERVE;
        else if (cJSON_IsString(pr) && strcmp(pr->valuestring, "PATH_REWRITE_DEFAULT") == 0)
            opt->path_rewrite = NB_PATH_REWRITE_DEFAULT;
        else if (cJSON_IsNumber(pr) && (pr->valueint == 0 || pr->valueint == 1))
            opt->path_rewrite = (enum nb_path_rewrite)pr->valueint;
        else
            return fail(e, "%s.pathRewrite: must be PATH_REWRITE_DEFAULT or PATH_REWRITE_PRESERVE",
                        where);
    }
    const cJSON *ch = field(o, "customHeaders", "custom_headers");
    if (ch && !cJSON_IsNull(ch)) {
        if (!cJSON_IsObject(ch))
            return fail(e, "%s.customHeaders: must be an object of strings", where);
        int n = cJSON_GetArraySize(ch);
        opt->custom_headers = calloc((size_t)(n ? n : 1), sizeof *opt->custom_headers);
        if (opt->custom_headers == NULL)
            return NB_E_NOMEM;
        const cJSON *h;
        cJSON_ArrayForEach(h, ch)
        {
            if (!cJSON_IsString(h))
                return fail(e, "%s.customHeaders.%s: must be a string", where, h->string);
            struct nb_header_kv *kv = &opt->custom_headers[opt->n_custom_headers++];
            kv->name = strdup(h->string);
            kv->value = strdup(h->valuestring);
            if (!kv->name || !kv->value)
                return NB_E_NOMEM;
        }
    }
    return NB_OK;
}

/* A list of strings as borrowed pointers into the JSON (valid while the document lives). */
static int get_str_list(const cJSON *obj, const char *camel, const char *snake, const char *where,
                        const char ***out, size_t *n, struct perr *e)
{
    const cJSON *v = field(obj, camel, snake);
    *out = NULL;
    *n = 0;
    if (v == NULL || cJSON_IsNull(v))
        return NB_OK;
    if (!cJSON_IsArray(v))
        return fail(e, "%s.%s: must be a list of strings", where, camel);
    int count = cJSON_GetArraySize(v);
    *out = calloc((size_t)(count ? count : 1), sizeof **out);
    if (*out == NULL)
        return NB_E_NOMEM;
    const cJSON *it;
    cJSON_ArrayForEach(it, v)
    {
        if (!cJSON_IsString(it))
            return fail(e, "%s.%s[%zu]: must be a string", where, camel, *n);
        (*out)[(*n)++] = it->valuestring;
    }
    return NB_OK;
}

/*
 * accessRestrictions (ProxyMapping.access_restrictions, spec/proxy.md §4.6), compiled by
 * auth/restrict.h. Stricter than the management path, which skips an invalid CIDR with a
 * warning: in a file the operator edits, a CIDR that would be skipped is an error.
 */
static int parse_restrictions(const cJSON *o, const char *where, struct nb_mapping *map,
                              struct perr *e)
{
    static const char *const keys[] = {"allowedCidrs",
                                       "allowed_cidrs",
                                       "blockedCidrs",
                                       "blocked_cidrs",
                                       "allowedCountries",
                                       "allowed_countries",
                                       "blockedCountries",
                                       "blocked_countries",
                                       "crowdsecMode",
                                       "crowdsec_mode",
                                       NULL};
    const char **lists[4] = {NULL, NULL, NULL, NULL};
    size_t n[4] = {0, 0, 0, 0};
    char *mode = NULL;
    int rc;
    if (!cJSON_IsObject(o))
        return fail(e, "%s: must be an object", where);
    if ((rc = check_keys(o, keys, where, e)) ||
        (rc = get_str_list(o, "allowedCidrs", "allowed_cidrs", where, &lists[0], &n[0], e)) ||
        (rc = get_str_list(o, "blockedCidrs", "blocked_cidrs", where, &lists[1], &n[1], e)) ||
        (rc = get_str_list(o, "allowedCountries", "allowed_countries", where, &lists[2], &n[2],
                           e)) ||
        (rc = get_str_list(o, "blockedCountries", "blocked_countries", where, &lists[3], &n[3],
                           e)) ||
        (rc = get_str(o, "crowdsecMode", "crowdsec_mode", where, false, &mode, e)))
        goto out;
    if (mode && mode[0] && strcmp(mode, "off") != 0 && strcmp(mode, "enforce") != 0 &&
        strcmp(mode, "observe") != 0) {
        rc = fail(e, "%s.crowdsecMode: must be \"\", off, enforce or observe", where);
        goto out;
    }
    struct auth_restrict_spec spec = {
        .allowed_cidrs = lists[0],
        .n_allowed_cidrs = n[0],
        .blocked_cidrs = lists[1],
        .n_blocked_cidrs = n[1],
        .allowed_countries = lists[2],
        .n_allowed_countries = n[2],
        .blocked_countries = lists[3],
        .n_blocked_countries = n[3],
        .crowdsec_mode = mode,
    };
    size_t skipped = 0;
    if ((rc = auth_restrict_new(&spec, &map->restrictions, &skipped)) != NB_OK)
        goto out;
    if (skipped) {
        rc = fail(e, "%s: %zu CIDR(s) are not IP prefixes (a.b.c.d/n or v6/n)", where, skipped);
        goto out;
    }
out:
    for (int i = 0; i < 4; i++)
        free(lists[i]);
    free(mode);
    return rc;
}

static int parse_mapping(const cJSON *m, const char *where, struct nb_mapping *map, struct perr *e)
{
    static const char *const keys[] = {"type",
                                       "id",
                                       "accountId",
                                       "account_id",
                                       "domain",
                                       "path",
                                       "paths",
                                       "passHostHeader",
                                       "pass_host_header",
                                       "rewriteRedirects",
                                       "rewrite_redirects",
                                       "mode",
                                       "listenPort",
                                       "listen_port",
                                       "private",
                                       "accessRestrictions",
                                       "access_restrictions",
                                       NULL};
    int rc;
    long port = 0;
    if (!cJSON_IsObject(m))
        return fail(e, "%s: must be an object", where);
    if ((rc = check_keys(m, keys, where, e)) ||
        (rc = get_str(m, "id", NULL, where, true, &map->id, e)) ||
        (rc = get_str(m, "accountId", "account_id", where, true, &map->account_id, e)) ||
        (rc = get_str(m, "domain", NULL, where, false, &map->domain, e)) ||
        (rc = get_str(m, "mode", NULL, where, false, &map->mode, e)) ||
        (rc = get_int(m, "listenPort", "listen_port", where, INT32_MIN, INT32_MAX, &port, e)) ||
        (rc =
             get_bool(m, "passHostHeader", "pass_host_header", where, &map->pass_host_header, e)) ||
        (rc = get_bool(m, "rewriteRedirects", "rewrite_redirects", where, &map->rewrite_redirects,
                       e)) ||
        (rc = get_bool(m, "private", NULL, where, &map->private_service, e)))
        return rc;
    if (map->id[0] == '\0')
        return fail(e, "%s.id: must not be empty", where);
    map->type = NB_UPDATE_CREATED;
    map->listen_port = (int32_t)port;
    const cJSON *ar = field(m, "accessRestrictions", "access_restrictions");
    if (ar && !cJSON_IsNull(ar)) {
        char aw[160];
        snprintf(aw, sizeof aw, "%.128s.accessRestrictions", where);
        if ((rc = parse_restrictions(ar, aw, map, e)))
            return rc;
    }
    const cJSON *paths = field(m, "path", "paths");
    if (paths && !cJSON_IsNull(paths)) {
        if (!cJSON_IsArray(paths))
            return fail(e, "%s.path: must be a list", where);
        int n = cJSON_GetArraySize(paths);
        map->paths = calloc((size_t)(n ? n : 1), sizeof *map->paths);
        if (map->paths == NULL)
            return NB_E_NOMEM;
        const cJSON *p;
        int i = 0;
        cJSON_ArrayForEach(p, paths)
        {
            static const char *const pkeys[] = {"path", "target", "options", NULL};
            char pw[160];
            snprintf(pw, sizeof pw, "%.64s.path[%d]", where, i);
            struct nb_path_mapping *pm = &map->paths[i];
            map->n_paths = (uint32_t)++i;
            if (!cJSON_IsObject(p))
                return fail(e, "%s: must be an object", pw);
            if ((rc = check_keys(p, pkeys, pw, e)) ||
                (rc = get_str(p, "path", NULL, pw, false, &pm->path, e)) ||
                (rc = get_str(p, "target", NULL, pw, true, &pm->target, e)))
                return rc;
            const cJSON *o = field(p, "options", NULL);
            if (o && !cJSON_IsNull(o)) {
                char ow[200];
                snprintf(ow, sizeof ow, "%.160s.options", pw);
                if ((rc = parse_options(o, ow, &pm->options, e)))
                    return rc;
            }
        }
    }
    return NB_OK;
}

/* Mode-specific checks the apply step would otherwise reject at run time (spec/proxy.md §3.5). */
static int validate_mapping(const struct nb_mapping *m, const char *where, struct perr *e)
{
    switch (nb_mapping_mode(m)) {
    case NB_MODE_TCP:
    case NB_MODE_TLS:
    case NB_MODE_UDP: {
        /* tcp/tls: 0 (or --addr's port) = the main TLS listener's router (spec/proxy.md §3.5) */
        int lo = nb_mapping_mode(m) == NB_MODE_UDP ? 1 : 0;
        if (m->listen_port < lo || m->listen_port > 65535)
            return fail(e, "%s.listenPort: must be %d..65535 for mode %s", where, lo,
                        nb_mapping_mode(m) == NB_MODE_TCP   ? "tcp"
                        : nb_mapping_mode(m) == NB_MODE_TLS ? "tls"
                                                            : "udp");
        if (nb_mapping_mode(m) == NB_MODE_TLS && (m->domain == NULL || m->domain[0] == '\0'))
            return fail(e, "%s.domain: required for tls mappings (the SNI routed)", where);
        if (m->n_paths == 0 || m->paths[0].target == NULL || m->paths[0].target[0] == '\0')
            return fail(e, "%s.path[0].target: empty target address", where);
        struct sockaddr_storage ss;
        socklen_t l;
        if (nb_addr_parse(m->paths[0].target, &ss, &l) != NB_OK)
            return fail(e, "%s.path[0].target: \"%s\" is not ip:port", where, m->paths[0].target);
        return NB_OK;
    }
    case NB_MODE_HTTP:
        if (m->domain == NULL || m->domain[0] == '\0')
            return fail(e, "%s.domain: required for HTTP mappings", where);
        for (uint32_t i = 0; i < m->n_paths; i++) {
            struct http_target t;
            char why[128] = "";
            if (http_target_parse(m->paths[i].target, &t, why, sizeof why) != NB_OK)
                return fail(e, "%s.path[%u].target: \"%s\": %s", where, i, m->paths[i].target,
                            why[0] ? why : "not an http(s) URL");
            http_target_deinit(&t);
        }
        return NB_OK;
    }
    return NB_OK;
}

/* The tree holds base64 private keys and PSKs: wipe every string before cJSON frees it. */
static void wipe_strings(cJSON *n)
{
    for (; n; n = n->next) {
        if (n->valuestring)
            sodium_memzero(n->valuestring, strlen(n->valuestring));
        wipe_strings(n->child);
    }
}

int nb_standalone_parse(const char *json, size_t len, const char *base_dir,
                        struct nb_standalone *out, char *err, size_t errlen)
{
    struct perr e = {err, errlen};
    int rc = NB_OK;
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (root == NULL) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= json && at <= json + len ? (size_t)(at - json) : 0;
        return fail(&e, "not valid JSON (near byte %zu)", off);
    }
    static const char *const keys[] = {"accounts", "mappings", NULL};
    if (!cJSON_IsObject(root)) {
        rc = fail(&e, "top level must be an object");
        goto out;
    }
    if ((rc = check_keys(root, keys, "config", &e)))
        goto out;
    const cJSON *accts = field(root, "accounts", NULL);
    if (accts && !cJSON_IsArray(accts)) {
        rc = fail(&e, "accounts: must be a list");
        goto out;
    }
    int na = accts ? cJSON_GetArraySize(accts) : 0;
    out->accounts = calloc((size_t)(na ? na : 1), sizeof *out->accounts);
    if (out->accounts == NULL) {
        rc = NB_E_NOMEM;
        goto out;
    }
    const cJSON *it;
    int i = 0;
    if (accts)
        cJSON_ArrayForEach(it, accts)
        {
            char w[64];
            snprintf(w, sizeof w, "accounts[%d]", i);
            out->n_accounts = (uint32_t)i + 1;
            if ((rc = parse_account(it, w, base_dir, &out->accounts[i], &e)))
                goto out;
            for (int j = 0; j < i; j++)
                if (strcmp(out->accounts[j].id, out->accounts[i].id) == 0) {
                    rc = fail(&e, "%s.id: duplicate account \"%s\" (also accounts[%d])", w,
                              out->accounts[i].id, j);
                    goto out;
                }
            for (int j = 0; j < i; j++)
                if (out->accounts[i].listen_port != 0 &&
                    out->accounts[j].listen_port == out->accounts[i].listen_port) {
                    rc = fail(&e, "%s.wireguard.listenPort: duplicate port %u (also accounts[%d])",
                              w, out->accounts[i].listen_port, j);
                    goto out;
                }
            i++;
        }
    const cJSON *maps = field(root, "mappings", NULL);
    if (maps && !cJSON_IsArray(maps)) {
        rc = fail(&e, "mappings: must be a list");
        goto out;
    }
    int nm = maps ? cJSON_GetArraySize(maps) : 0;
    out->mappings = calloc((size_t)(nm ? nm : 1), sizeof *out->mappings);
    if (out->mappings == NULL) {
        rc = NB_E_NOMEM;
        goto out;
    }
    i = 0;
    if (maps)
        cJSON_ArrayForEach(it, maps)
        {
            char w[64];
            snprintf(w, sizeof w, "mappings[%d]", i);
            struct nb_mapping *m = &out->mappings[i];
            out->n_mappings = (uint32_t)i + 1;
            if ((rc = parse_mapping(it, w, m, &e)) || (rc = validate_mapping(m, w, &e)))
                goto out;
            bool known = false;
            for (uint32_t a = 0; a < out->n_accounts; a++)
                if (strcmp(out->accounts[a].id, m->account_id) == 0)
                    known = true;
            if (!known) {
                rc = fail(&e, "%s.accountId: unknown account \"%s\"", w, m->account_id);
                goto out;
            }
            for (int j = 0; j < i; j++) {
                if (strcmp(out->mappings[j].id, m->id) == 0) {
                    rc = fail(&e, "%s.id: duplicate mapping id \"%s\" (also mappings[%d])", w,
                              m->id, j);
                    goto out;
                }
                if ((nb_mapping_mode(m) == NB_MODE_TCP || nb_mapping_mode(m) == NB_MODE_UDP) &&
                    nb_mapping_mode(&out->mappings[j]) == nb_mapping_mode(m) &&
                    out->mappings[j].listen_port == m->listen_port) {
                    rc = fail(&e, "%s.listenPort: duplicate port %d (also mappings[%d])", w,
                              m->listen_port, j);
                    goto out;
                }
                if (nb_mapping_mode(m) == NB_MODE_HTTP &&
                    nb_mapping_mode(&out->mappings[j]) == NB_MODE_HTTP &&
                    strcmp(out->mappings[j].domain, m->domain) == 0) {
                    rc = fail(&e, "%s.domain: duplicate domain \"%s\" (also mappings[%d])", w,
                              m->domain, j);
                    goto out;
                }
            }
            i++;
        }
out:
    wipe_strings(root);
    cJSON_Delete(root);
    if (rc != NB_OK)
        nb_standalone_free(out);
    return rc;
}

int nb_standalone_load(const char *path, struct nb_standalone *out, char *err, size_t errlen)
{
    size_t len;
    char *text = read_file(path, &len);
    if (text == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NB_E_INVAL;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int rc = nb_standalone_parse(text, len, dir, out, err, errlen);
    sodium_memzero(text, len);
    free(text);
    return rc;
}

void nb_standalone_free(struct nb_standalone *s)
{
    for (uint32_t i = 0; i < s->n_accounts; i++) {
        struct nb_account_conf *a = &s->accounts[i];
        free(a->id);
        free(a->addresses);
        for (uint32_t p = 0; p < a->n_peers; p++)
            free(a->peers[p].allowed_ips);
        if (a->peers)
            sodium_memzero(a->peers, a->n_peers * sizeof *a->peers);
        free(a->peers);
        sodium_memzero(a->private_key, sizeof a->private_key);
    }
    free(s->accounts);
    for (uint32_t i = 0; i < s->n_mappings; i++)
        nb_mapping_free(&s->mappings[i]);
    free(s->mappings);
    memset(s, 0, sizeof *s);
}
