/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Table-driven flags and environment. Each option names its flag, its env var and its default;
 * loading applies default, then env (a bad env value is warned about and ignored, as Go's
 * helpers do), then argv (a bad flag value is an error).
 */
#include "core/config.h"
#include "platform/err.h"
#include "platform/log.h"

#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum opt_type { T_STR, T_BOOL, T_U16, T_DUR, T_U32 };

struct opt {
    const char *flag; /* without the leading dashes */
    const char *env;  /* NULL when flag-only */
    enum opt_type type;
    size_t off;
    const char *def;
    bool supported; /* false: accepted but the feature is not built yet */
    const char *help;
};

#define O(f) offsetof(struct nb_config, f)

static const struct opt opts[] = {
    {"log-level", "NB_PROXY_LOG_LEVEL", T_STR, O(log_level), "info", true,
     "panic,fatal,error,warn,info,debug,trace"},
    {"debug", "NB_PROXY_DEBUG_LOGS", T_BOOL, O(debug_logs), "false", true,
     "deprecated: same as --log-level debug"},
    {"mgmt", "NB_PROXY_MANAGEMENT_ADDRESS", T_STR, O(mgmt_addr), "https://api.netbird.io:443", true,
     "management server URL"},
    {"addr", "NB_PROXY_ADDRESS", T_STR, O(addr), ":443", true,
     "main TLS listener (standalone: only when set explicitly)"},
    {"domain", "NB_PROXY_DOMAIN", T_STR, O(domain), "", true, "proxy domain (cluster)"},
    {"cert-dir", "NB_PROXY_CERTIFICATE_DIRECTORY", T_STR, O(cert_dir), "./certs", true,
     "certificate directory / ACME cache"},
    {"cert-file", "NB_PROXY_CERTIFICATE_FILE", T_STR, O(cert_file), "tls.crt", true,
     "certificate file in cert-dir"},
    {"cert-key-file", "NB_PROXY_CERTIFICATE_KEY_FILE", T_STR, O(cert_key_file), "tls.key", true,
     "key file in cert-dir"},
    {"acme-certs", "NB_PROXY_ACME_CERTIFICATES", T_BOOL, O(acme_certs), "false", true,
     "obtain certificates with ACME"},
    {"acme-addr", "NB_PROXY_ACME_ADDRESS", T_STR, O(acme_addr), ":80", true,
     "http-01 challenge listener"},
    {"acme-dir", "NB_PROXY_ACME_DIRECTORY", T_STR, O(acme_dir),
     "https://acme-v02.api.letsencrypt.org/directory", true, "ACME directory URL"},
    {"acme-eab-kid", "NB_PROXY_ACME_EAB_KID", T_STR, O(acme_eab_kid), "", true, "EAB key id"},
    {"acme-eab-hmac-key", "NB_PROXY_ACME_EAB_HMAC_KEY", T_STR, O(acme_eab_hmac_key), "", true,
     "EAB HMAC key (base64url)"},
    {"acme-challenge-type", "NB_PROXY_ACME_CHALLENGE_TYPE", T_STR, O(acme_challenge_type),
     "tls-alpn-01", true, "tls-alpn-01 or http-01"},
    {"cert-lock-method", "NB_PROXY_CERT_LOCK_METHOD", T_STR, O(cert_lock_method), "auto", true,
     "auto, flock, k8s-lease"},
    {"wildcard-cert-dir", "NB_PROXY_WILDCARD_CERT_DIR", T_STR, O(wildcard_cert_dir), "", true,
     "wildcard certificates (*.crt + .key)"},
    {"debug-endpoint", "NB_PROXY_DEBUG_ENDPOINT", T_BOOL, O(debug_endpoint), "false", false,
     "serve the debug endpoint"},
    {"debug-endpoint-addr", "NB_PROXY_DEBUG_ENDPOINT_ADDRESS", T_STR, O(debug_endpoint_addr),
     "localhost:8444", false, "debug endpoint address"},
    {"health-addr", "NB_PROXY_HEALTH_ADDRESS", T_STR, O(health_addr), "localhost:8080", true,
     "health and metrics server (empty: off; standalone mode: only when set)"},
    {"forwarded-proto", "NB_PROXY_FORWARDED_PROTO", T_STR, O(forwarded_proto), "auto", true,
     "X-Forwarded-Proto: auto, http, https"},
    {"trusted-proxies", "NB_PROXY_TRUSTED_PROXIES", T_STR, O(trusted_proxies), "", true,
     "comma-separated CIDRs or IPs whose X-Forwarded-* are kept"},
    {"wg-port", "NB_PROXY_WG_PORT", T_U16, O(wg_port), "0", true,
     "WireGuard UDP port (0 = random)"},
    {"proxy-protocol", "NB_PROXY_PROXY_PROTOCOL", T_BOOL, O(proxy_protocol), "false", true,
     "accept PROXY protocol v1/v2"},
    {"preshared-key", "NB_PROXY_PRESHARED_KEY", T_STR, O(preshared_key), "", true,
     "WireGuard preshared key for every peer"},
    {"supports-custom-ports", "NB_PROXY_SUPPORTS_CUSTOM_PORTS", T_BOOL, O(supports_custom_ports),
     "true", true, "capability"},
    {"require-subdomain", "NB_PROXY_REQUIRE_SUBDOMAIN", T_BOOL, O(require_subdomain), "false", true,
     "capability"},
    {"private", "NB_PROXY_PRIVATE", T_BOOL, O(private_mode), "false", true,
     "per-account tunnel listeners (HTTP and HTTPS on ports 80 and 443 of each account's tunnel "
     "address)"},
    {"max-dial-timeout", "NB_PROXY_MAX_DIAL_TIMEOUT", T_DUR, O(max_dial_timeout_ms), "0", true,
     "cap for per-target dial timeouts"},
    {"max-session-idle-timeout", "NB_PROXY_MAX_SESSION_IDLE_TIMEOUT", T_DUR,
     O(max_session_idle_timeout_ms), "0", true, "cap for L4 idle timeouts"},
    {"geo-data-dir", "NB_PROXY_GEO_DATA_DIR", T_STR, O(geo_data_dir),
     "/var/lib/netbird/geolocation", true,
     "GeoLite2 directory: the last GeoLite2-City_*.mmdb in it (never downloaded)"},
    {"crowdsec-api-url", "NB_PROXY_CROWDSEC_API_URL", T_STR, O(crowdsec_api_url), "", false,
     "CrowdSec LAPI URL"},
    {"crowdsec-api-key", "NB_PROXY_CROWDSEC_API_KEY", T_STR, O(crowdsec_api_key), "", false,
     "CrowdSec LAPI key"},
    {"config", "NB_PROXY_CONFIG", T_STR, O(config_file), "", true,
     "standalone JSON configuration (accounts and mappings)"},
    {"http-addr", "NB_PROXY_HTTP_ADDRESS", T_STR, O(http_addr), "", true,
     "plain-HTTP public listener, e.g. :8080 (nbproxy; empty: none)"},
    {"access-log", "NB_PROXY_ACCESS_LOG", T_STR, O(access_log), "", true,
     "access log as JSON lines: a file path, or - for stdout (nbproxy; empty: none)"},
    {"version", NULL, T_BOOL, O(version), "false", true, "print the version and exit"},
    {"help", NULL, T_BOOL, O(help), "false", true, "print this help and exit"},
};

#define NOPTS (sizeof opts / sizeof opts[0])
_Static_assert(NOPTS <= 128, "nb_config._explicit holds 128 bits");

/* Env-only knobs (no flag), spec/proxy.md §1.3. */
static const struct opt env_opts[] = {
    {NULL, "NB_PROXY_MAX_IDLE_CONNS", T_U32, O(max_idle_conns), "100", true, NULL},
    {NULL, "NB_PROXY_MAX_IDLE_CONNS_PER_HOST", T_U32, O(max_idle_conns_per_host), "100", true,
     NULL},
    {NULL, "NB_PROXY_MAX_CONNS_PER_HOST", T_U32, O(max_conns_per_host), "0", true, NULL},
    {NULL, "NB_PROXY_IDLE_CONN_TIMEOUT", T_DUR, O(idle_conn_timeout_ms), "90s", true, NULL},
    {NULL, "NB_PROXY_TLS_HANDSHAKE_TIMEOUT", T_DUR, O(tls_handshake_timeout_ms), "10s", false,
     NULL},
    {NULL, "NB_PROXY_EXPECT_CONTINUE_TIMEOUT", T_DUR, O(expect_continue_timeout_ms), "1s", true,
     NULL},
    {NULL, "NB_PROXY_RESPONSE_HEADER_TIMEOUT", T_DUR, O(response_header_timeout_ms), "0", true,
     NULL},
    {NULL, "NB_PROXY_WRITE_BUFFER_SIZE", T_U32, O(write_buffer_size), "0", true, NULL},
    {NULL, "NB_PROXY_READ_BUFFER_SIZE", T_U32, O(read_buffer_size), "0", true, NULL},
    {NULL, "NB_PROXY_DISABLE_COMPRESSION", T_BOOL, O(disable_compression), "false", true, NULL},
    {NULL, "NB_PROXY_MAX_INFLIGHT", T_U32, O(max_inflight), "0", true, NULL},
    {NULL, "NB_PROXY_ALLOW_INSECURE", T_BOOL, O(allow_insecure), "false", true, NULL},
    {NULL, "NB_PROXY_MAPPING_BATCH_WATCHDOG", T_DUR, O(batch_watchdog_ms), "0", true, NULL},
    {NULL, "NB_PROXY_PREALLOCATED_BUFFERS", T_U32, O(preallocated_buffers), "0", false, NULL},
    {NULL, "NB_PROXY_MAX_BATCH_SIZE", T_U32, O(max_batch_size), "0", false, NULL},
    {NULL, "NB_PROXY_TUNNEL_CACHE_TTL", T_DUR, O(tunnel_cache_ttl_ms), "300s", false, NULL},
    {NULL, "NB_PROXY_CLIENT_LOG_LEVEL", T_STR, O(client_log_level), "warn", false, NULL},
    {NULL, "NB_PROXY_DISABLE_GEOLOCATION", T_BOOL, O(disable_geolocation), "false", true, NULL},
};

/* Env knobs whose bad value stops start-up instead of being ignored (spec/proxy.md §1.3). */
static bool env_strict(const char *name)
{
    return strcmp(name, "NB_PROXY_PREALLOCATED_BUFFERS") == 0 ||
           strcmp(name, "NB_PROXY_MAX_BATCH_SIZE") == 0;
}

#define NENV (sizeof env_opts / sizeof env_opts[0])

int nb_parse_bool(const char *s, bool *out)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < 6; i++) {
        if (strcmp(s, t[i]) == 0) {
            *out = true;
            return NB_OK;
        }
        if (strcmp(s, f[i]) == 0) {
            *out = false;
            return NB_OK;
        }
    }
    return NB_E_PARSE;
}

int nb_parse_duration_ms(const char *s, uint64_t *ms)
{
    /* Go's time.ParseDuration: [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+, or "0". Negative rejected. */
    static const struct {
        const char *unit;
        double ms;
    } units[] = {{"ns", 1e-6}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"ms", 1},
                 {"s", 1e3},   {"m", 60e3},  {"h", 3600e3}};
    if (s == NULL || *s == '\0')
        return NB_E_PARSE;
    if (*s == '+')
        s++;
    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return NB_OK;
    }
    double total = 0;
    while (*s) {
        double v = 0, frac = 0, scale = 1;
        bool digits = false;
        while (*s >= '0' && *s <= '9') {
            v = v * 10 + (*s++ - '0');
            digits = true;
        }
        if (*s == '.') {
            s++;
            while (*s >= '0' && *s <= '9') {
                frac = frac * 10 + (*s++ - '0');
                scale *= 10;
                digits = true;
            }
        }
        if (!digits)
            return NB_E_PARSE;
        size_t best = 0;
        double mul = -1;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t n = strlen(units[i].unit);
            if (strncmp(s, units[i].unit, n) == 0 && n > best) {
                best = n;
                mul = units[i].ms;
            }
        }
        if (mul < 0)
            return NB_E_PARSE;
        s += best;
        total += (v + frac / scale) * mul;
        if (total > 9.2e15)
            return NB_E_PARSE;
    }
    *ms = (uint64_t)(total + 0.5);
    return NB_OK;
}

static int set_value(struct nb_config *c, const struct opt *o, const char *v)
{
    void *field = (char *)c + o->off;
    switch (o->type) {
    case T_STR: {
        char *dup = strdup(v);
        if (dup == NULL)
            return NB_E_NOMEM;
        if (*(char **)field)
            sodium_memzero(*(char **)field, strlen(*(char **)field)); /* may be a secret */
        free(*(char **)field);
        *(char **)field = dup;
        return NB_OK;
    }
    case T_BOOL:
        return nb_parse_bool(v, (bool *)field);
    case T_U16: {
        char *end;
        unsigned long n = strtoul(v, &end, 10);
        if (*v == '\0' || *end != '\0' || n > 65535)
            return NB_E_PARSE;
        *(uint16_t *)field = (uint16_t)n;
        return NB_OK;
    }
    case T_DUR:
        return nb_parse_duration_ms(v, (uint64_t *)field);
    case T_U32: {
        char *end;
        unsigned long long n = strtoull(v, &end, 10);
        if (*v < '0' || *v > '9' || *end != '\0' || n > UINT32_MAX)
            return NB_E_PARSE;
        *(uint32_t *)field = (uint32_t)n;
        return NB_OK;
    }
    }
    return NB_E_INVAL;
}

static const struct opt *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(opts[i].flag) == len && strncmp(opts[i].flag, name, len) == 0)
            return &opts[i];
    return NULL;
}

int nb_config_load(struct nb_config *c, int argc, char **argv, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NOPTS; i++)
        if (set_value(c, &opts[i], opts[i].def) != NB_OK) {
            snprintf(err, errlen, "internal: bad default for --%s", opts[i].flag);
            return NB_E_INVAL;
        }
    for (size_t i = 0; i < NOPTS; i++) {
        const char *v = opts[i].env ? getenv(opts[i].env) : NULL;
        if (v == NULL)
            continue;
        c->_explicit[i / 64] |= 1ull << (i % 64);
        if (set_value(c, &opts[i], v) != NB_OK) {
            c->_explicit[i / 64] &= ~(1ull << (i % 64));
            /* Go's env helpers warn and keep the default. */
            nb_warn("config", "ignoring %s: cannot parse %s", opts[i].env,
                    opts[i].type == T_BOOL ? "bool" : "value");
            set_value(c, &opts[i], opts[i].def);
        }
    }
    for (size_t k = 0; k < NENV; k++) {
        const struct opt *o = &env_opts[k];
        if (set_value(c, o, o->def) != NB_OK) {
            snprintf(err, errlen, "internal: bad default for %s", o->env);
            return NB_E_INVAL;
        }
        const char *v = getenv(o->env);
        if (v == NULL || *v == '\0')
            continue;
        int vr = set_value(c, o, v);
        if (vr != NB_OK && env_strict(o->env)) {
            snprintf(err, errlen, "invalid %s \"%s\": not a non-negative integer", o->env, v);
            return NB_E_INVAL;
        }
        if (vr != NB_OK) {
            nb_warn("config", "ignoring %s=%s: not a %s", o->env, v,
                    o->type == T_DUR    ? "duration"
                    : o->type == T_BOOL ? "bool"
                                        : "non-negative integer");
            set_value(c, o, o->def);
        } else if (!o->supported) {
            nb_warn("config", "%s is accepted but not supported yet; ignoring it", o->env);
        }
    }
    int i = 1;
    if (i < argc && strcmp(argv[i], "proxy") == 0)
        i++;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0') {
            snprintf(err, errlen, "unexpected argument \"%s\"", a);
            return NB_E_INVAL;
        }
        a += a[1] == '-' ? 2 : 1;
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const struct opt *o = find_flag(a, nlen);
        if (o == NULL) {
            snprintf(err, errlen, "unknown flag: --%.*s", (int)nlen, a);
            return NB_E_INVAL;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (v == NULL) {
            if (o->type == T_BOOL) {
                v = "true";
            } else if (i + 1 < argc) {
                v = argv[++i];
            } else {
                snprintf(err, errlen, "flag needs an argument: --%s", o->flag);
                return NB_E_INVAL;
            }
        }
        int rc = set_value(c, o, v);
        if (rc != NB_OK) {
            snprintf(err, errlen, "invalid value \"%s\" for flag --%s", v, o->flag);
            return NB_E_INVAL;
        }
        size_t idx = (size_t)(o - opts);
        c->_explicit[idx / 64] |= 1ull << (idx % 64);
    }
    if (nb_log_level_parse(c->log_level) < 0) {
        snprintf(err, errlen, "invalid log level \"%s\"", c->log_level);
        return NB_E_INVAL;
    }
    if (strcmp(c->forwarded_proto, "auto") != 0 && strcmp(c->forwarded_proto, "http") != 0 &&
        strcmp(c->forwarded_proto, "https") != 0) {
        snprintf(err, errlen, "invalid --forwarded-proto \"%s\": must be auto, http or https",
                 c->forwarded_proto);
        return NB_E_INVAL;
    }
    return NB_OK;
}

bool nb_config_explicit(const struct nb_config *c, const char *flag)
{
    const struct opt *o = find_flag(flag, strlen(flag));
    if (o == NULL)
        return false;
    size_t idx = (size_t)(o - opts);
    return (c->_explicit[idx / 64] >> (idx % 64)) & 1;
}

void nb_config_free(struct nb_config *c)
{
    for (size_t i = 0; i < NENV; i++)
        if (env_opts[i].type == T_STR) {
            char **p = (char **)((char *)c + env_opts[i].off);
            free(*p);
            *p = NULL;
        }
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].type == T_STR) {
            char **p = (char **)((char *)c + opts[i].off);
            if (*p)
                sodium_memzero(*p, strlen(*p)); /* PSK, EAB key, CrowdSec key are secrets */
            free(*p);
            *p = NULL;
        }
}

static bool is_default(const struct nb_config *c, const struct opt *o)
{
    const char *field = (const char *)c + o->off;
    struct nb_config d;
    memset(&d, 0, sizeof d);
    if (set_value(&d, o, o->def) != NB_OK)
        return true;
    const char *dfield = (const char *)&d + o->off;
    switch (o->type) {
    case T_STR: {
        char *dv = *(char *const *)dfield;
        bool same = strcmp(*(char *const *)field, dv) == 0;
        free(dv);
        return same;
    }
    case T_BOOL:
        return *(const bool *)field == *(const bool *)dfield;
    case T_U16:
        return *(const uint16_t *)field == *(const uint16_t *)dfield;
    case T_DUR:
        return *(const uint64_t *)field == *(const uint64_t *)dfield;
    case T_U32:
        return *(const uint32_t *)field == *(const uint32_t *)dfield;
    }
    return true;
}

void nb_config_warn_unsupported(const struct nb_config *c)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (!opts[i].supported && !is_default(c, &opts[i]))
            nb_warn("config", "--%s (%s) is accepted but not supported yet; ignoring it",
                    opts[i].flag, opts[i].env ? opts[i].env : "no env");
}

void nb_config_usage(FILE *out)
{
    fprintf(out, "Usage: nbproxy [proxy] [flags]\n\nFlags (flag > env > default):\n");
    for (size_t i = 0; i < NOPTS; i++)
        fprintf(out, "  --%-26s %-34s default \"%s\"%s\n      %s\n", opts[i].flag,
                opts[i].env ? opts[i].env : "", opts[i].def,
                opts[i].supported ? "" : " (not supported yet)", opts[i].help);
    fprintf(out, "\nEnvironment only (backend HTTP transport):\n");
    for (size_t i = 0; i < NENV; i++)
        fprintf(out, "  %-34s default \"%s\"%s\n", env_opts[i].env, env_opts[i].def,
                env_opts[i].supported ? "" : " (not supported yet)");
}
