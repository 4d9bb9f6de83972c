/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_TLS_CERT_H
#define NB_TLS_CERT_H

/*
 * Server certificates: a leaf, its chain and its private key, loaded from PEM, checked against
 * each other and ready to serve (a tls_cert carries a wolfSSL server context with nbproxy's
 * cipher policy; tls/tls.c serves a handshake straight from it). The leaf's facts (serial,
 * issuer CN, validity, DNS SANs, key type) are parsed once at load, for the layers above:
 * hot reload (spec/proxy.md §7.1: reload skipped when serial and issuer CN are unchanged),
 * the wildcard directory (§7.3) and ACME renewal (§7.2).
 *
 * A tls_cert is immutable and refcounted (refcount = number of pointers to it: the holder's,
 * plus one per TLS stream serving it), so a reload builds a new one and swaps the pointer while
 * handshakes in flight keep the old one alive. Not thread-safe (one loop thread).
 *
 * Private keys: the PEM read from disk and every intermediate copy are wiped before they are
 * freed; wolfSSL keeps its own DER copy, which it wipes when the last reference goes. Keys are
 * never logged.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_cert;

enum tls_key_type {
    TLS_KEY_OTHER = 0,
    TLS_KEY_ECDSA,
    TLS_KEY_RSA,
};

/*
 * Loads a PEM chain (leaf first, then intermediates) and its PEM private key (PKCS#8,
 * "EC PRIVATE KEY" or "RSA PRIVATE KEY"). NB_OK; NB_E_IO (a file cannot be read, errno kept);
 * NB_E_PARSE (no certificate, unreadable key, or a key that does not match the leaf);
 * NB_E_TOO_BIG (a file over 1 MiB); NB_E_NOMEM. On success *out holds one reference.
 */
int tls_cert_load_pem(const char *chain_path, const char *key_path, struct tls_cert **out)
    __attribute__((warn_unused_result));
/* The same from memory. The buffers stay the caller's (wipe the key yourself). */
int tls_cert_from_pem(const void *chain, size_t chain_len, const void *key, size_t key_len,
                      struct tls_cert **out) __attribute__((warn_unused_result));
/*
 * The same for an ACME tls-alpn-01 challenge certificate (RFC 8737): wolfSSL refuses to parse a
 * leaf with an unknown critical extension (acmeIdentifier, 1.3.6.1.5.5.7.1.31) but loads and
 * serves it, so the leaf is not parsed (serial, validity, SANs stay empty; tls_cert_covers is
 * false) and the key is not checked against it: only for certificates the caller just made.
 */
int tls_cert_challenge_from_pem(const void *chain, size_t chain_len, const void *key,
                                size_t key_len, struct tls_cert **out)
    __attribute__((warn_unused_result));

/* Takes a reference; returns c. */
struct tls_cert *tls_cert_ref(struct tls_cert *c);
/* Drops a reference; the last one frees the certificate and wipes its key. NULL is a no-op. */
void tls_cert_unref(struct tls_cert *c);

/* The leaf's serial number, big-endian bytes as encoded (leading zero kept); length returned. */
size_t tls_cert_serial(const struct tls_cert *c, const uint8_t **serial);
/* The leaf issuer's common name ("" when it has none). */
const char *tls_cert_issuer_cn(const struct tls_cert *c);
/* Validity of the leaf, Unix seconds. */
int64_t tls_cert_not_before(const struct tls_cert *c);
int64_t tls_cert_not_after(const struct tls_cert *c);
/* The leaf's DNS subjectAltNames ("*.example.com" included; IP, email and URI entries are
 * not listed), in no particular order. */
size_t tls_cert_san_count(const struct tls_cert *c);
const char *tls_cert_san(const struct tls_cert *c, size_t i);
enum tls_key_type tls_cert_key_type(const struct tls_cert *c);

/*
 * True when the leaf is valid for `host` by its DNS SANs (RFC 6125 §6.4: case-insensitive, a
 * "*" only as the whole left-most label and matching exactly one label), as Go's
 * VerifyHostname does for a DNS name. The common name is not used (Go ignores it too).
 */
bool tls_cert_covers(const struct tls_cert *c, const char *host);
/* Same leaf serial and issuer CN: the test spec/proxy.md §7.1 uses to skip a reload. */
bool tls_cert_same_leaf(const struct tls_cert *a, const struct tls_cert *b);

/*
 * Makes a self-signed certificate for `names` (DNS names, at least one; the first is also the
 * subject CN when it fits in 64 bytes) with a fresh ECDSA P-256 key, valid from a day ago
 * (wolfCrypt backdates notBefore) for `days` days (0 = 365), signed with ECDSA-SHA256 by
 * wolfCrypt's certificate generation (Debian's libwolfssl has WOLFSSL_CERT_GEN). For the
 * standalone mode when no certificate is configured.
 * tls_selfsigned_pem returns the PEM certificate and PEM key ("EC PRIVATE KEY") in malloc'd,
 * NUL-terminated buffers the caller frees with tls_pem_free() (which wipes them);
 * tls_selfsigned_new returns a loaded tls_cert. NB_OK; NB_E_INVAL (no names, a name that is
 * empty or over 253 bytes); NB_E_NOMEM; NB_E_IO (key generation or signing failed).
 */
int tls_selfsigned_pem(const char *const *names, size_t n, uint32_t days, char **cert_pem,
                       size_t *cert_len, char **key_pem, size_t *key_len)
    __attribute__((warn_unused_result));
int tls_selfsigned_new(const char *const *names, size_t n, uint32_t days, struct tls_cert **out)
    __attribute__((warn_unused_result));
/* Wipes and frees a PEM buffer from tls_selfsigned_pem(). NULL is a no-op. */
void tls_pem_free(char *pem, size_t len);

#endif
