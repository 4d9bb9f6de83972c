/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_TLS_HELLO_H
#define NB_TLS_HELLO_H

/*
 * The TLS ClientHello, read without a TLS library (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2): what a
 * server must know before it picks a certificate (SNI, ALPN, whether the client takes ECDSA) and
 * what an SNI router (spec/proxy.md §3.7) needs to route a connection it does not terminate.
 * Pure: bytes in, a filled struct out; no allocation, no I/O, no wolfSSL.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLS_HELLO_MAX_SNI  253 /* longest DNS name (RFC 1035); longer server names are refused */
#define TLS_HELLO_MAX_ALPN 256 /* bytes of the ALPN list kept (whole names only) */
/* bytes of records the ClientHello may span: one full record */
#define TLS_HELLO_MAX (5u + 16384u)

struct tls_hello {
    /* server_name: the first host_name entry, lower-cased (ASCII); "" when absent. */
    char sni[TLS_HELLO_MAX_SNI + 1];
    /* application_layer_protocol_negotiation as on the wire: each name is one length byte and
     * the name. Names that do not fit in TLS_HELLO_MAX_ALPN bytes are dropped. */
    uint8_t alpn[TLS_HELLO_MAX_ALPN];
    uint16_t alpn_len;
    bool has_alpn;  /* the extension was present (even if every name was dropped) */
    bool acme_only; /* ALPN is exactly ["acme-tls/1"]: a tls-alpn-01 challenge (RFC 8737 §3) */
    /* The client accepts an ECDSA P-256 certificate: it offers an ECDSA signature scheme (or no
     * signature_algorithms), P-256 (or no supported_groups), and an ECDHE-ECDSA or TLS 1.3 suite.
     * Go's autocert asks the same, except that it ignores TLS 1.3 suites. */
    bool ecdsa_ok;
    bool tls13;           /* supported_versions offers TLS 1.3 */
    uint16_t max_version; /* highest version offered (0x0304 = TLS 1.3, 0x0303 = TLS 1.2...) */
    size_t len;           /* bytes of records the ClientHello took, headers included */
};

/*
 * Parses the ClientHello at the start of buf (TLS records as received, possibly several).
 * NB_OK: complete, *h filled. NB_E_AGAIN: incomplete, call again with more bytes.
 * NB_E_PARSE: not a TLS handshake record, not a ClientHello, malformed, or a server name that
 * is not a valid host name (longer than 253 bytes, NUL or other bytes outside printable ASCII,
 * trailing dot). NB_E_TOO_BIG: the ClientHello needs more than TLS_HELLO_MAX bytes of records.
 */
int tls_hello_parse(const uint8_t *buf, size_t len, struct tls_hello *h)
    __attribute__((warn_unused_result));

/*
 * True when the first bytes of a connection are a plaintext HTTP request line ("GET /", "HEAD ",
 * "POST ", "PUT /", "OPTIO": the test Go's HTTPS server uses to answer 400). len >= 5 needed.
 */
bool tls_hello_looks_like_http(const uint8_t *buf, size_t len);

/*
 * ALPN negotiation as Go's crypto/tls does it (server preference): the first name of `server`
 * (count n) that the client offered. When there is none: NULL with *refuse false if either list
 * is empty or the client offered "http/1.1" to a server that speaks "h2" (Go lets such clients
 * in without ALPN), else NULL with *refuse true (the handshake must fail with
 * no_application_protocol). Returns an element of `server`.
 */
const char *tls_hello_alpn_select(const struct tls_hello *h, const char *const *server, size_t n,
                                  bool *refuse);

#endif
