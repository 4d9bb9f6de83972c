/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_CORE_STANDALONE_H
#define NB_CORE_STANDALONE_H

/*
 * The standalone configuration file (--config FILE): accounts with their WireGuard devices, and
 * mappings shaped like management's ProxyMapping (protobuf JSON names, camelCase or snake_case).
 * See docs/standalone.md for the format. Parsing validates everything up front: a bad file is
 * reported with the path of the offending field and nothing starts.
 */

#include "core/mapping.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NB_KEY_LEN 32

struct nb_prefix {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    uint8_t len;
};

struct nb_peer_conf {
    uint8_t public_key[NB_KEY_LEN];
    bool has_psk;
    uint8_t psk[NB_KEY_LEN]; /* secret */
    bool has_endpoint;
    struct sockaddr_storage endpoint;
    struct nb_prefix *allowed_ips;
    uint32_t n_allowed_ips;
    uint16_t persistent_keepalive; /* seconds, 0 = off */
};

struct nb_account_conf {
    char *id;
    uint8_t private_key[NB_KEY_LEN]; /* secret */
    uint16_t listen_port;            /* 0 = random */
    struct nb_prefix *addresses;     /* tunnel addresses with prefix length */
    uint32_t n_addresses;
    uint16_t mtu; /* default 1280, NetBird's tunnel MTU */
    struct nb_peer_conf *peers;
    uint32_t n_peers;
};

struct nb_standalone {
    struct nb_account_conf *accounts;
    uint32_t n_accounts;
    struct nb_mapping *mappings;
    uint32_t n_mappings;
};

/* Parses JSON text. base_dir resolves relative wg-quick file paths. On error returns NB_E_INVAL
 * and writes "field.path: reason" into err. */
int nb_standalone_parse(const char *json, size_t len, const char *base_dir,
                        struct nb_standalone *out, char *err, size_t errlen);
/* Reads and parses a file. */
int nb_standalone_load(const char *path, struct nb_standalone *out, char *err, size_t errlen);
/* Parses a wg-quick style file ([Interface]/[Peer]) into an account's device fields. */
int nb_wgquick_parse(const char *text, struct nb_account_conf *acct, char *err, size_t errlen);
/* Frees everything and wipes keys. */
void nb_standalone_free(struct nb_standalone *s);

/* "10.0.0.1/24", "fd00::1/64", or a bare address (/32, /128). */
int nb_prefix_parse(const char *s, struct nb_prefix *out);
/* 32-byte key from standard base64 (44 chars). */
int nb_key_parse(const char *b64, uint8_t key[NB_KEY_LEN]);

#endif
