/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_L4_PROXY_PROTO_H
#define NB_L4_PROXY_PROTO_H

/*
 * PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2) for the L4 router
 * (spec/proxy.md §10.1): an incremental, allocation-free header parser for the inbound side, the
 * v2 encoder for the outbound side, and the trusted-proxy policy, all pure.
 *
 * Inbound, per accepted connection on a --proxy-protocol listener:
 *   pol = l4_pp_policy(peer, trusted, n_trusted);          once, at accept
 *   act = l4_pp_decide(pol, buf, len, final, &hdr, &hlen);  after every read (final: EOF, error
 *                                                           or the 5 s header deadline passed)
 * and act says what to do (see enum l4_pp_action). Outbound, before relaying to a target with
 * proxy_protocol set: l4_pp_v2_encode(client, local, out) and write the bytes first.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum {
    L4_PP_V1_MAX = 107,         /* a v1 line, CRLF included, is at most this long */
    L4_PP_V2_HEADER = 16,       /* signature (12), ver/cmd, family/proto, length (2) */
    L4_PP_V2_MAX = 16 + 65535,  /* the longest v2 header (addresses + TLVs) */
    L4_PP_V2_ENC_MAX = 16 + 36, /* what l4_pp_v2_encode writes at most (TCP over IPv6) */
    L4_PP_V2_ADDR_INET = 12,    /* address block sizes per family */
    L4_PP_V2_ADDR_INET6 = 36,
    L4_PP_V2_ADDR_UNIX = 216,
};

/* The 12-byte v2 signature "\r\n\r\n\0\r\nQUIT\n". */
extern const uint8_t l4_pp_v2_sig[12];

/* A parsed header. Meaningful only when l4_pp_parse returns > 0 (scratch otherwise). */
struct l4_pp_header {
    int version; /* 1 or 2 */
    /*
     * True when src and dst hold the connection's real endpoints (v1 TCP4/TCP6, v2 PROXY over
     * AF_INET or AF_INET6). False for v1 UNKNOWN, v2 LOCAL (a health check from the proxy
     * itself), and v2 PROXY with AF_UNSPEC or AF_UNIX: then the socket's own addresses stay.
     */
    bool has_addr;
    bool local;   /* v2 LOCAL command */
    int family;   /* has_addr: AF_INET or AF_INET6; else AF_UNSPEC (or AF_UNIX for v2 UNIX) */
    int socktype; /* v2: SOCK_STREAM, SOCK_DGRAM or 0 (UNSPEC); v1: SOCK_STREAM */
    struct sockaddr_storage src; /* has_addr: the client (sockaddr_in or sockaddr_in6) */
    struct sockaddr_storage dst; /* has_addr: the address the client connected to */
    /* v2 PROXY: the TLV area (framing validated, contents not interpreted), into the buffer */
    const uint8_t *tlv;
    size_t tlv_len;
};

/*
 * Parses a PROXY header at the start of buf[0..len). Returns:
 *   > 0           the header is complete and valid; the value is its length (application data
 *                 starts at buf + ret); *out is filled;
 *   NB_E_AGAIN    buf is a proper prefix of a header (or of a signature): read more. A v1 line
 *                 never needs more than 107 bytes, a v2 header more than 16 + its length field;
 *   NB_E_NOTFOUND buf does not start with a PROXY signature: there is no header, every byte is
 *                 application data (decided at the first byte that differs from both signatures);
 *   NB_E_PARSE    a signature followed by an invalid header: v1 without CRLF within 107 bytes,
 *                 bad tokens, addresses or ports (decimal without leading zeros, 0..65535); v2
 *                 with version != 2, a command other than LOCAL/PROXY, an undefined
 *                 family/protocol byte, a length too short for its family, or TLVs overrunning
 *                 the header.
 * Stateless: call it again with the whole buffer after every read. Never reads outside buf.
 */
int l4_pp_parse(const uint8_t *buf, size_t len, struct l4_pp_header *out);

/*
 * Writes the outbound v2 header of spec §10.1 (netbird-proxy writeProxyProtoV2): command PROXY,
 * TCP over IPv4 when the client address is IPv4 (an IPv4-mapped IPv6 address counts as IPv4, like
 * Go's To4()), else TCP over IPv6; source = client (the connection's remote address, after any
 * inbound PROXY header), destination = local (the proxy's address of that connection); no TLVs.
 * In the IPv4 form the destination must be IPv4 or IPv4-mapped too; in the IPv6 form an IPv4
 * destination is written IPv4-mapped. Returns the length written (28 or 52), or NB_E_INVAL for
 * other address families or an IPv4 client with a true IPv6 local address.
 */
int l4_pp_v2_encode(const struct sockaddr *client, const struct sockaddr *local,
                    uint8_t out[L4_PP_V2_ENC_MAX]);

/* A trusted-proxy prefix: family AF_INET (addr[0..4)) or AF_INET6 (addr[0..16)), bits <= 32/128. */
struct l4_prefix {
    int family;
    uint8_t addr[16];
    uint8_t bits;
};

/*
 * What a listener expects from one peer (go-proxyproto's policies as netbird-proxy uses them).
 */
enum l4_pp_policy {
    L4_PP_USE = 0, /* no trusted list: a header is optional and honoured from anyone (log a
                      warning once when such a listener is created) */
    L4_PP_REQUIRE, /* trusted peer: a header must come first, its source is the client */
    L4_PP_IGNORE,  /* untrusted peer: a header, if any, is consumed but not believed; the
                      connection is treated as direct */
    L4_PP_REJECT,  /* peer address unusable (not IPv4/IPv6): a header is an error */
};

/*
 * The policy for a connection from peer (the socket's remote address) given the trusted
 * prefixes: no prefixes -> USE; peer NULL or not AF_INET/AF_INET6 -> REJECT; peer (IPv4-mapped
 * addresses unmapped first, as netip.Addr.Unmap) inside a prefix of its own family -> REQUIRE;
 * otherwise IGNORE. Prefixes with an unknown family or too many bits never match.
 */
enum l4_pp_policy l4_pp_policy(const struct sockaddr *peer, const struct l4_prefix *trusted,
                               size_t n_trusted);

/* What the router does with the bytes read so far. */
enum l4_pp_action {
    L4_PP_WAIT = 0, /* read more (keep the header deadline running) */
    L4_PP_DIRECT,   /* no header: every byte read is application data, socket addresses stay */
    L4_PP_STRIP,    /* drop the first *hdr_len bytes (the header); socket addresses stay */
    L4_PP_APPLY,    /* drop the first *hdr_len bytes; hdr->src becomes the connection's remote
                       address and hdr->dst its local address for everything downstream */
    L4_PP_CLOSE,    /* close the connection */
};

/*
 * One step of the inbound header read, as go-proxyproto's Conn does it: parses buf[0..len) with
 * l4_pp_parse and applies pol. final is true when no more bytes will come in time (EOF, read
 * error, header deadline). Outcomes:
 *   complete header  REJECT -> CLOSE; IGNORE -> STRIP; USE/REQUIRE -> APPLY when hdr->has_addr,
 *                    else STRIP (LOCAL, UNKNOWN, UNSPEC, UNIX);
 *   no signature     REQUIRE -> CLOSE; otherwise DIRECT;
 *   malformed        CLOSE, whatever the policy (also from an ignored peer);
 *   incomplete       WAIT unless final; final: REQUIRE -> CLOSE, otherwise DIRECT while only
 *                    part of a signature arrived (a timeout means "no header", the bytes are
 *                    data: server-first protocols work through a USE listener) and CLOSE once a
 *                    signature was complete (a cut-off header).
 * *hdr_len is the header length for STRIP/APPLY and 0 otherwise; *hdr is filled for STRIP/APPLY.
 */
enum l4_pp_action l4_pp_decide(enum l4_pp_policy pol, const uint8_t *buf, size_t len, bool final,
                               struct l4_pp_header *hdr, size_t *hdr_len);

#endif
