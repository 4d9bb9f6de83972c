/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_CORE_CONFIG_H
#define NB_CORE_CONFIG_H

/*
 * Process configuration: netbird-proxy's flags and environment variables (spec/proxy.md §1.2,
 * §1.3) with the same names, defaults and precedence (flag > env > default), plus nbproxy's own
 * (--config, --access-log...). Every recognised option is stored even when the feature behind it
 * is not built yet; nb_config_warn_unsupported() names those in the log.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct nb_config {
    /* logging */
    char *log_level; /* --log-level / NB_PROXY_LOG_LEVEL, "info" */
    bool debug_logs; /* --debug / NB_PROXY_DEBUG_LOGS */
    /* management and listeners */
    char *mgmt_addr;   /* --mgmt / NB_PROXY_MANAGEMENT_ADDRESS */
    char *addr;        /* --addr / NB_PROXY_ADDRESS, ":443" */
    char *domain;      /* --domain / NB_PROXY_DOMAIN */
    char *health_addr; /* --health-addr / NB_PROXY_HEALTH_ADDRESS, "localhost:8080" */
    /* certificates */
    char *cert_dir;
    char *cert_file;
    char *cert_key_file;
    bool acme_certs;
    char *acme_addr;
    char *acme_dir;
    char *acme_eab_kid;
    char *acme_eab_hmac_key;
    char *acme_challenge_type;
    char *cert_lock_method;
    char *wildcard_cert_dir;
    /* debug endpoint */
    bool debug_endpoint;
    char *debug_endpoint_addr;
    /* forwarding */
    char *forwarded_proto;
    char *trusted_proxies;
    /* WireGuard / embedded peer */
    uint16_t wg_port;
    bool proxy_protocol;
    char *preshared_key;
    bool supports_custom_ports;
    bool require_subdomain;
    bool private_mode;
    uint64_t max_dial_timeout_ms;
    uint64_t max_session_idle_timeout_ms;
    char *geo_data_dir;
    char *crowdsec_api_url;
    char *crowdsec_api_key;
    /* Backend HTTP transport, env only (spec/proxy.md §1.3; negative or unparsable values are
     * ignored with a warning, as netbird-proxy does). */
    uint32_t max_idle_conns;             /* NB_PROXY_MAX_IDLE_CONNS, 100 */
    uint32_t max_idle_conns_per_host;    /* NB_PROXY_MAX_IDLE_CONNS_PER_HOST, 100 */
    uint32_t max_conns_per_host;         /* NB_PROXY_MAX_CONNS_PER_HOST, 0 = unlimited */
    uint64_t idle_conn_timeout_ms;       /* NB_PROXY_IDLE_CONN_TIMEOUT, 90s */
    uint64_t tls_handshake_timeout_ms;   /* NB_PROXY_TLS_HANDSHAKE_TIMEOUT, 10s */
    uint64_t expect_continue_timeout_ms; /* NB_PROXY_EXPECT_CONTINUE_TIMEOUT, 1s */
    uint64_t response_header_timeout_ms; /* NB_PROXY_RESPONSE_HEADER_TIMEOUT, 0 = none */
    uint32_t write_buffer_size;          /* NB_PROXY_WRITE_BUFFER_SIZE, 0 = default */
    uint32_t read_buffer_size;           /* NB_PROXY_READ_BUFFER_SIZE, 0 = default */
    bool disable_compression;            /* NB_PROXY_DISABLE_COMPRESSION */
    uint32_t max_inflight;               /* NB_PROXY_MAX_INFLIGHT, 0 = unlimited */
    /* Management connection and embedded clients, env only (§1.3). */
    bool allow_insecure;           /* NB_PROXY_ALLOW_INSECURE: token over plaintext h2c */
    uint64_t batch_watchdog_ms;    /* NB_PROXY_MAPPING_BATCH_WATCHDOG, 0 = 2m */
    uint32_t preallocated_buffers; /* NB_PROXY_PREALLOCATED_BUFFERS (embedded clients) */
    uint32_t max_batch_size;       /* NB_PROXY_MAX_BATCH_SIZE (embedded clients) */
    uint64_t tunnel_cache_ttl_ms;  /* NB_PROXY_TUNNEL_CACHE_TTL, 300s */
    char *client_log_level;        /* NB_PROXY_CLIENT_LOG_LEVEL, "warn" */
    bool disable_geolocation;      /* NB_PROXY_DISABLE_GEOLOCATION */
    /* nbproxy's own */
    char *config_file;     /* --config / NB_PROXY_CONFIG: standalone JSON config */
    char *http_addr;       /* --http-addr / NB_PROXY_HTTP_ADDRESS: plain-HTTP public listener */
    char *access_log;      /* --access-log / NB_PROXY_ACCESS_LOG: JSON lines, "-" = stdout */
    bool version;          /* --version */
    bool help;             /* --help */
    uint64_t _explicit[2]; /* options set by env or flag (bit = index in the option table) */
};

/* Fills defaults, then env, then argv (argv[0] skipped; a leading "proxy" subcommand is
 * accepted). On error returns NB_E_INVAL and writes a one-line reason into err. */
int nb_config_load(struct nb_config *c, int argc, char **argv, char *err, size_t errlen);
void nb_config_free(struct nb_config *c);
/* True when the option (flag name without dashes) was given by env or flag, not defaulted. */
bool nb_config_explicit(const struct nb_config *c, const char *flag);
/* Logs (warn) every option that is set to a non-default value but not implemented yet. */
void nb_config_warn_unsupported(const struct nb_config *c);
/* Prints the flag table (name, env, default) for --help. */
void nb_config_usage(FILE *out);

/* Go duration syntax ("300ms", "1h2m", "1.5s", "0"). NB_OK or NB_E_PARSE. */
int nb_parse_duration_ms(const char *s, uint64_t *ms);
/* Go strconv.ParseBool. NB_OK or NB_E_PARSE. */
int nb_parse_bool(const char *s, bool *out);

#endif
