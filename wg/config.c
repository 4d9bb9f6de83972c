/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/* Configuration string parsing for wg/: keys and prefixes. */

#include "wg/config.h"

#include <string.h>

#include <arpa/inet.h>
#include <sodium.h>
#include <sys/socket.h>

#include "platform/err.h"

int wg_key_from_base64(wg_key out, const char *b64)
{
    size_t n = 0;
    const char *end = NULL;

    if (!b64 || strlen(b64) != WG_KEY_BASE64_LEN ||
        sodium_base642bin(out, WG_KEY_LEN, b64, WG_KEY_BASE64_LEN, NULL, &n, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        n != WG_KEY_LEN || end != b64 + WG_KEY_BASE64_LEN) {
        sodium_memzero(out, WG_KEY_LEN);
        return NB_E_PARSE;
    }
    return NB_OK;
}

void wg_key_to_base64(char out[WG_KEY_BASE64_LEN + 1], const wg_key key)
{
    sodium_bin2base64(out, WG_KEY_BASE64_LEN + 1, key, WG_KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
}

int wg_pubkey_from_private(wg_key pub, const wg_key priv)
{
    uint8_t k[WG_KEY_LEN];
    int err;

    memcpy(k, priv, sizeof(k));
    wg_crypto_clamp(k);
    err = wg_crypto_pubkey(pub, k);
    sodium_memzero(k, sizeof(k));
    return err;
}

void wg_key_generate(wg_key priv)
{
    randombytes_buf(priv, WG_KEY_LEN);
    wg_crypto_clamp(priv);
}

int wg_allowedip_parse(struct wg_allowedip *out, const char *s)
{
    char buf[INET6_ADDRSTRLEN + 8];
    const char *slash;
    size_t alen;
    unsigned long cidr;
    char *endp;
    unsigned max;

    memset(out, 0, sizeof(*out));
    if (!s)
        return NB_E_PARSE;
    slash = strchr(s, '/');
    alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= INET6_ADDRSTRLEN)
        return NB_E_PARSE;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return NB_E_PARSE;
    }
    if (!slash) {
        out->cidr = (uint8_t)max;
        return NB_OK;
    }
    if (slash[1] < '0' || slash[1] > '9' || strlen(slash + 1) > 3)
        goto bad;
    cidr = strtoul(slash + 1, &endp, 10);
    if (*endp != '\0' || cidr > max)
        goto bad;
    out->cidr = (uint8_t)cidr;
    return NB_OK;
bad:
    memset(out, 0, sizeof(*out));
    return NB_E_PARSE;
}
