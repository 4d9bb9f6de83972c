/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_WG_CONFIG_H
#define NB_WG_CONFIG_H

/*
 * Helpers for turning NetBird configuration strings into device settings: base64 keys (standard
 * alphabet with padding, 44 characters, as `wg` and NetBird's management API use) and CIDR
 * prefixes. Pure functions; no allocation.
 */

#include <stdint.h>

#include "wg/crypto.h"

enum { WG_KEY_BASE64_LEN = 44 }; /* without the terminating NUL */

/* Decodes exactly one 32-byte key. NB_OK or NB_E_PARSE (out is zeroed). */
int wg_key_from_base64(wg_key out, const char *b64);
/* Encodes a key; out gets 44 characters and a NUL. */
void wg_key_to_base64(char out[WG_KEY_BASE64_LEN + 1], const wg_key key);
/* Public key of a private key (clamped first). NB_OK or NB_E_INVAL. */
int wg_pubkey_from_private(wg_key pub, const wg_key priv);
/* Fresh clamped private key from libsodium's CSPRNG (for the proxy's own identity). */
void wg_key_generate(wg_key priv);

struct wg_allowedip {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    uint8_t cidr;
};

/*
 * Parses "10.0.0.0/24", "fd00::/64", or a bare address (meaning /32 or /128). Host bits are kept
 * as written (the trie ignores them). NB_OK or NB_E_PARSE.
 */
int wg_allowedip_parse(struct wg_allowedip *out, const char *s);

#endif
