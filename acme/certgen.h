/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_ACME_CERTGEN_H
#define NB_ACME_CERTGEN_H

/*
 * Certificates ACME needs, made with wolfCrypt:
 *   - the CSR for finalize (RFC 8555 §7.4): wolfCrypt's wc_MakeCertReq with the domain as
 *     subject CN and the only DNS subjectAltName, signed ECDSA-SHA256 with the certificate key;
 *   - the tls-alpn-01 challenge certificate (RFC 8737 §3): self-signed, the domain as the only
 *     DNS SAN, and the critical acmeIdentifier extension (1.3.6.1.5.5.7.1.31) holding
 *     OCTET STRING(SHA-256(key authorization)). Debian's libwolfssl 5.5.4 is built without
 *     WOLFSSL_CUSTOM_OID, so wc_MakeCert cannot add that extension: the TBSCertificate is written
 *     here by a small DER writer and signed with wc_ecc_sign_hash.
 */

#include "acme/jws.h"

#include <stddef.h>
#include <stdint.h>

/* DER CSR into out (cap). Returns the length or 0. */
size_t acme_csr_der(struct acme_key *cert_key, const char *domain, uint8_t *out, size_t cap);

/*
 * The tls-alpn-01 certificate for `domain` with a fresh P-256 key: PEM certificate and PEM key
 * in malloc'd NUL-terminated buffers (free with acme_pem_free). now = Unix seconds (validity
 * now-1d .. now+7d). NB_OK, NB_E_INVAL (domain empty or over 253 bytes), NB_E_IO, NB_E_NOMEM.
 */
int acme_alpn_cert_pem(const char *domain, const char *key_auth, int64_t now, char **cert_pem,
                       size_t *cert_len, char **key_pem, size_t *key_len)
    __attribute__((warn_unused_result));

#endif
