/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_CORE_MAPPING_H
#define NB_CORE_MAPPING_H

/*
 * A service mapping shaped like management's ProxyMapping message (spec/proxy.md Appendix A).
 * The standalone config file and (later) the management stream both produce these and hand them
 * to the same apply entry point (core/proxy.h). Strings are owned by the mapping.
 */

#include <stdbool.h>
#include <stdint.h>

struct auth_restrict;

enum nb_update_type {
    NB_UPDATE_CREATED = 0,
    NB_UPDATE_MODIFIED = 1,
    NB_UPDATE_REMOVED = 2,
};

enum nb_path_rewrite {
    NB_PATH_REWRITE_DEFAULT = 0,
    NB_PATH_REWRITE_PRESERVE = 1,
};

struct nb_header_kv {
    char *name;
    char *value;
};

struct nb_target_options {
    bool skip_tls_verify;
    uint64_t request_timeout_ms; /* 0 = unset */
    enum nb_path_rewrite path_rewrite;
    struct nb_header_kv *custom_headers;
    uint32_t n_custom_headers;
    bool proxy_protocol;
    uint64_t session_idle_timeout_ms; /* 0 = unset */
    bool direct_upstream;
    bool disable_access_log;
};

/* Authentication.header_auths[] entry: the header name is all the proxy uses (it strips it
 * upstream and forwards its value to management); hashed_value is never checked locally. */
struct nb_header_auth {
    char *header;
    char *hashed_value; /* argon2id hash; not a secret in itself, still never logged */
};

/* ProxyMapping.auth (Authentication). */
struct nb_auth {
    char *session_key; /* base64 Ed25519 public key, or NULL */
    int64_t max_session_age_seconds;
    bool password;
    bool pin;
    bool oidc;
    struct nb_header_auth *header_auths;
    uint32_t n_header_auths;
};

struct nb_path_mapping {
    char *path;
    char *target;
    struct nb_target_options options;
};

struct nb_mapping {
    enum nb_update_type type;
    char *id;
    char *account_id;
    char *domain;
    struct nb_path_mapping *paths;
    uint32_t n_paths;
    char *auth_token; /* secret: never logged, wiped on free */
    struct nb_auth auth;
    bool pass_host_header;
    bool rewrite_redirects;
    char *mode; /* "", "http", "tcp", "udp", "tls" */
    int32_t listen_port;
    /* access_restrictions, compiled (auth/restrict.h); one reference owned by the mapping,
     * NULL = none configured (everyone allowed). */
    struct auth_restrict *restrictions;
    bool private_service;
};

enum nb_mapping_mode {
    NB_MODE_HTTP = 0, /* "", "http" and any unknown string */
    NB_MODE_TCP,
    NB_MODE_UDP,
    NB_MODE_TLS,
};

enum nb_mapping_mode nb_mapping_mode(const struct nb_mapping *m);
void nb_mapping_free(struct nb_mapping *m);

#endif
