/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_ACME_CACHE_H
#define NB_ACME_CACHE_H

/*
 * The --cert-dir cache, laid out as Go's autocert.DirCache (spec/proxy.md §7.2) so an existing
 * netbird-proxy certificate directory keeps working:
 *   <domain>          PEM "EC PRIVATE KEY" then the CERTIFICATE chain (leaf first)
 *   acme_account+key  PEM "EC PRIVATE KEY" (the legacy name acme_account.key is read too)
 *   <domain>+token    the tls-alpn-01 certificate (key + cert), transient
 *   <token>+http-01   the http-01 key authorization, transient
 * Directory 0700, files 0600, written to a temporary file in the directory and renamed.
 * The file helpers are plain blocking syscalls on small local files (as autocert does); they
 * never touch the network.
 */

#include <stddef.h>
#include <stdint.h>

#define ACME_CACHE_MAX (1u << 20) /* a cache file over 1 MiB is refused */

/* Splits a "<domain>" entry into the key part (everything before the first CERTIFICATE block,
 * which must contain a PRIVATE KEY block) and the chain. Pointers into pem. NB_OK/NB_E_PARSE. */
int acme_cache_split(const char *pem, size_t len, const char **key, size_t *key_len,
                     const char **chain, size_t *chain_len) __attribute__((warn_unused_result));

/* When to renew (Unix s): not_after minus the lesser of 30 days and a third of the lifetime
 * (autocert's renewBefore, applied as Let's Encrypt recommends). */
int64_t acme_renew_at(int64_t not_before, int64_t not_after);

/* A cache key is a file name: not empty, no '/', not "." or "..", at most 255 bytes. */
int acme_cache_name_ok(const char *name);

/* Reads <dir>/<name> into a malloc'd NUL-terminated buffer (wipe+free with acme_pem_free).
 * NB_OK, NB_E_NOTFOUND, NB_E_TOO_BIG, NB_E_IO, NB_E_INVAL (bad name). */
int acme_cache_get(const char *dir, const char *name, char **out, size_t *len)
    __attribute__((warn_unused_result));
/* Writes atomically (mkdir 0700 of dir, temp file 0600, fsync, rename). NB_OK, NB_E_IO,
 * NB_E_INVAL. */
int acme_cache_put(const char *dir, const char *name, const void *data, size_t len)
    __attribute__((warn_unused_result));
/* Removes <dir>/<name> (missing is fine). */
void acme_cache_del(const char *dir, const char *name);

#endif
