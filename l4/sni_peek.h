/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_L4_SNI_PEEK_H
#define NB_L4_SNI_PEEK_H

/*
 * TLS ClientHello peek for the L4 router (spec/proxy.md §3.7, netbird-proxy's
 * internal/tcp/snipeek.go). Pure and allocation-free: bytes in, a verdict and pointers into the
 * caller's buffer out. The caller accumulates the first bytes of a connection and calls
 * l4_sni_peek() after every read with the whole buffer (same start, more bytes appended); it
 * answers NB_E_AGAIN until it can decide, and never needs more than L4_SNI_PEEK_MAX bytes.
 *
 * The algorithm, exactly as the reference:
 *   1. wait for the 5-byte record header; byte 0 != 22 (handshake) -> L4_NOT_TLS;
 *   2. record length 0 or > 16384 -> L4_TLS_NO_SNI (TLS, nothing parsed);
 *   3. wait for the whole record (one record only, never a second one);
 *   4. parse the ClientHello in it: skip version and random (34 bytes), session id, cipher suites,
 *      compression methods, then walk the extensions; SNI = the first host_name entry of the first
 *      server_name extension (type 0). A name longer than 253 bytes or containing NUL, an empty
 *      name, a ClientHello that does not fit in the record, or anything malformed -> no SNI.
 *      A ClientHello without a server_name extension (no SNI, ESNI) -> L4_TLS_NO_SNI. With ECH the
 *      outer ClientHello's cleartext server_name (the public name) is what is reported.
 * The ALPN extension (type 16) of the same record is parsed too, for ACME tls-alpn-01: the
 * connection is an ACME challenge when the client offers exactly one protocol, "acme-tls/1"
 * (what Go's autocert checks).
 *
 * Replay: whatever the verdict, every byte the caller has read from the connection so far must be
 * replayed to whoever gets the connection (relay, TLS server, HTTP server): the peek consumes
 * nothing. out->peeked says how many of them the verdict looked at (5, or 5 + record length).
 *
 * Read failures belong to the caller (§3.7 "peek errors"): when the read ends early (EOF, error,
 * or the 5 s peek deadline) call l4_sni_peek_finish() with what was read. Fewer than 5 bytes (the
 * record header was not read) -> NB_E_CLOSED: close the connection. 5 bytes or more (the header
 * was read, its payload was not) -> NB_OK with L4_TLS_NO_SNI: an unmatched TLS connection, all
 * bytes replayed.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    L4_TLS_RECORD_HEADER = 5,     /* content type, legacy version (2), length (2) */
    L4_TLS_MAX_RECORD = 16384,    /* larger (or empty) first records are "TLS, no SNI" */
    L4_SNI_PEEK_MAX = 5 + 16384,  /* the most bytes l4_sni_peek() ever asks for */
    L4_SNI_MAX = 253,             /* longer host names are rejected (RFC 1035 length) */
    L4_TLS_CONTENT_HANDSHAKE = 22 /* record content type of a ClientHello */
};

enum l4_tls_kind {
    L4_NOT_TLS = 0, /* first byte is not a TLS handshake record */
    L4_TLS_NO_SNI,  /* TLS, but no usable server name: route as unmatched TLS */
    L4_TLS_SNI,     /* TLS with a server name in .sni */
};

/* The verdict. Filled only when a function returns NB_OK. */
struct l4_sni_result {
    enum l4_tls_kind kind;
    /*
     * L4_TLS_SNI only: the host name as sent (not lower-cased: route lookups lower-case it),
     * 1..253 bytes without NUL, pointing into the caller's buffer; NULL and 0 otherwise.
     */
    const uint8_t *sni;
    size_t sni_len;
    /* The ClientHello's ALPN extension lists exactly one protocol, "acme-tls/1". */
    bool alpn_acme_only;
    /* Bytes the verdict is based on: 5 (header only) or 5 + record length. <= len. */
    size_t peeked;
};

/*
 * Peeks at buf[0..len), the first bytes read from a connection. Returns NB_OK with *out filled,
 * or NB_E_AGAIN when more bytes are needed (the same call with more bytes appended will decide;
 * every proper prefix of a complete first record answers NB_E_AGAIN). Never reads past
 * buf[L4_SNI_PEEK_MAX - 1] nor past buf[len - 1]; never fails otherwise (malformed TLS is
 * L4_TLS_NO_SNI, not an error).
 */
int l4_sni_peek(const uint8_t *buf, size_t len, struct l4_sni_result *out);

/*
 * The same, for a read that ended before l4_sni_peek() could decide (EOF, read error, deadline):
 * NB_OK when l4_sni_peek() decides anyway or when the 5-byte header is complete (then
 * L4_TLS_NO_SNI with peeked = len: unmatched TLS, replay everything); NB_E_CLOSED when fewer than
 * 5 bytes arrived (close the connection, nothing to route).
 */
int l4_sni_peek_finish(const uint8_t *buf, size_t len, struct l4_sni_result *out);

#endif
