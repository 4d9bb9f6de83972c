/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * PROXY protocol for the L4 router. Inbound, it sits first on a --proxy-protocol listener: the
 * router feeds it the bytes read so far and learns whether a header is there, how long it is and
 * which client it names; the policy (trusted proxies) says whether to believe it. Outbound, the
 * relay writes the v2 header built here before the first client byte. Written from HAProxy's
 * proxy-protocol.txt (sections 2.1 and 2.2 are quoted as step markers below); where the text
 * leaves a choice the behaviour follows go-proxyproto as netbird-proxy uses it, noted inline.
 *
 * The parser is stateless: each call re-examines the buffer from its start, which is cheap
 * because a v1 line is at most 107 bytes and a v2 header is decided from its fixed 16-byte part
 * until its last byte has arrived.
 */

#include "l4/proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "platform/err.h"

const uint8_t l4_pp_v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[5] = {'P', 'R', 'O', 'X', 'Y'};

enum {
    V2_VERSION = 0x20, /* high nibble of byte 13 */
    V2_CMD_LOCAL = 0x0,
    V2_CMD_PROXY = 0x1,
    V2_AF_UNSPEC = 0x0,
    V2_AF_INET = 0x1,
    V2_AF_INET6 = 0x2,
    V2_AF_UNIX = 0x3,
    V2_PROTO_UNSPEC = 0x0,
    V2_PROTO_STREAM = 0x1,
    V2_PROTO_DGRAM = 0x2,
    V2_TLV_HEADER = 3, /* type (1), length (2) */
};

static unsigned be16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void set_in(struct sockaddr_storage *ss, const uint8_t a[4], unsigned port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;

    memset(ss, 0, sizeof(*ss));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    memcpy(&sin->sin_addr, a, 4);
}

static void set_in6(struct sockaddr_storage *ss, const uint8_t a[16], unsigned port)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    memcpy(&sin6->sin6_addr, a, 16);
}

/* ---- version 1: "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n" ---- */

/*
 * "IPv4 addresses must be indicated as a series of exactly 4 integers in the range [0..255]
 * inclusive written in decimal representation separated by exactly one dot between each other.
 * Heading zeroes are not permitted in front of numbers."
 */
static bool v1_ipv4(const uint8_t *s, size_t n, uint8_t out[4])
{
    size_t i = 0;
    int part;

    for (part = 0; part < 4; part++) {
        unsigned v = 0, digits = 0;

        if (part > 0) {
            if (i >= n || s[i] != '.')
                return false;
            i++;
        }
        while (i < n && s[i] >= '0' && s[i] <= '9' && digits < 4) {
            v = v * 10 + (unsigned)(s[i] - '0');
            i++;
            digits++;
        }
        if (digits == 0 || digits > 3 || v > 255 || (digits > 1 && s[i - digits] == '0'))
            return false;
        out[part] = (uint8_t)v;
    }
    return i == n;
}

/*
 * "IPv6 addresses must be indicated as series of 4 hexadecimal digits (upper or lower case)
 * delimited by colons between each other, with the acceptance of one double colon sequence to
 * replace the largest acceptable range of consecutive zeroes." inet_pton's grammar (which also
 * takes a trailing dotted quad, as in ::ffff:1.2.3.4) on a NUL-terminated stack copy.
 */
static bool v1_ipv6(const uint8_t *s, size_t n, uint8_t out[16])
{
    char tmp[INET6_ADDRSTRLEN];
    size_t i;

    if (n == 0 || n >= sizeof(tmp))
        return false;
    for (i = 0; i < n; i++) {
        uint8_t c = s[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
              c == ':' || c == '.'))
            return false;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return inet_pton(AF_INET6, tmp, out) == 1;
}

/* "a decimal integer in the range [0..65535] inclusive", no heading zeroes. */
static bool v1_port(const uint8_t *s, size_t n, unsigned *port)
{
    unsigned v = 0;
    size_t i;

    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = v;
    return true;
}

static bool tok_is(const uint8_t *tok, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(tok, s, n) == 0;
}

static int parse_v1(const uint8_t *buf, size_t len, struct l4_pp_header *out)
{
    size_t scan = len < L4_PP_V1_MAX ? len : L4_PP_V1_MAX, nl, n, pos, start, ntok = 0;
    const uint8_t *lf, *line, *tok[4];
    size_t tok_len[4];
    uint8_t a[16], b[16];
    unsigned sport, dport;
    bool v4;

    /* "PROXY" followed by exactly one space */
    if (len > sizeof(v1_sig) && buf[sizeof(v1_sig)] != ' ')
        return NB_E_PARSE;
    /* "the receiver must wait for the CRLF sequence before starting to decode the addresses";
       "if the CRLF sequence is not found in the first 107 characters, the receiver should
       declare the line invalid" */
    lf = memchr(buf, '\n', scan);
    if (!lf)
        return len >= L4_PP_V1_MAX ? NB_E_PARSE : NB_E_AGAIN;
    nl = (size_t)(lf - buf);
    if (nl < sizeof(v1_sig) + 2 || buf[nl - 1] != '\r')
        return NB_E_PARSE;
    /* line[0..n): what lies between "PROXY " and CRLF */
    line = buf + sizeof(v1_sig) + 1;
    n = nl - 1 - (sizeof(v1_sig) + 1);
    for (pos = 0; pos < n && line[pos] != ' ';)
        pos++;
    memset(out, 0, sizeof(*out));
    out->version = 1;
    out->family = AF_UNSPEC;
    out->socktype = SOCK_STREAM;
    /* "UNKNOWN": "the receiver must ignore anything presented before the CRLF is found" */
    if (tok_is(line, pos, "UNKNOWN"))
        return (int)nl + 1;
    if (tok_is(line, pos, "TCP4"))
        v4 = true;
    else if (tok_is(line, pos, "TCP6"))
        v4 = false;
    else
        return NB_E_PARSE;
    /* source address, destination address, source port, destination port: one space before
       each, nothing after */
    while (pos < n) {
        start = ++pos;
        while (pos < n && line[pos] != ' ')
            pos++;
        if (pos == start || ntok == 4)
            return NB_E_PARSE;
        tok[ntok] = line + start;
        tok_len[ntok++] = pos - start;
    }
    if (ntok != 4 || !v1_port(tok[2], tok_len[2], &sport) || !v1_port(tok[3], tok_len[3], &dport))
        return NB_E_PARSE;
    if (v4) {
        if (!v1_ipv4(tok[0], tok_len[0], a) || !v1_ipv4(tok[1], tok_len[1], b))
            return NB_E_PARSE;
        out->family = AF_INET;
        set_in(&out->src, a, sport);
        set_in(&out->dst, b, dport);
    } else {
        if (!v1_ipv6(tok[0], tok_len[0], a) || !v1_ipv6(tok[1], tok_len[1], b))
            return NB_E_PARSE;
        out->family = AF_INET6;
        set_in6(&out->src, a, sport);
        set_in6(&out->dst, b, dport);
    }
    out->has_addr = true;
    return (int)nl + 1;
}

/* ---- version 2: binary ---- */

static int parse_v2(const uint8_t *buf, size_t len, struct l4_pp_header *out)
{
    unsigned ver_cmd, fam, af, proto, addr_len, total, pos;

    /* "The 13th byte is the protocol version and command. The highest four bits contains the
       version [...] must always be sent as \x2 and the receiver must only accept this value."
       "Other values are unassigned and must not be emitted by senders. Receivers must drop
       connections presenting unexpected values here." */
    if (len <= 12)
        return NB_E_AGAIN;
    ver_cmd = buf[12];
    if ((ver_cmd & 0xF0) != V2_VERSION || (ver_cmd & 0x0F) > V2_CMD_PROXY)
        return NB_E_PARSE;
    if (len <= 13)
        return NB_E_AGAIN;
    /* "The 14th byte contains the transport protocol and address family." Only the combinations
       the text defines; "other values [...] must be rejected as invalid by receivers".
       LOCAL: "the receiver must [...] discard the protocol block including the family". */
    fam = buf[13];
    af = fam >> 4;
    proto = fam & 0x0F;
    if ((ver_cmd & 0x0F) == V2_CMD_PROXY &&
        (af > V2_AF_UNIX || proto > V2_PROTO_DGRAM || ((af == V2_AF_UNSPEC) != (proto == 0))))
        return NB_E_PARSE;
    if (len < L4_PP_V2_HEADER)
        return NB_E_AGAIN;
    /* "The 15th and 16th bytes is the address length in bytes in network endian order." */
    total = L4_PP_V2_HEADER + be16(buf + 14);
    addr_len = 0;
    if ((ver_cmd & 0x0F) == V2_CMD_PROXY) {
        addr_len = af == V2_AF_INET    ? L4_PP_V2_ADDR_INET
                   : af == V2_AF_INET6 ? L4_PP_V2_ADDR_INET6
                   : af == V2_AF_UNIX  ? L4_PP_V2_ADDR_UNIX
                                       : 0;
        if (total - L4_PP_V2_HEADER < addr_len)
            return NB_E_PARSE;
    }
    if (len < total)
        return NB_E_AGAIN;
    memset(out, 0, sizeof(*out));
    out->version = 2;
    out->family = AF_UNSPEC;
    if ((ver_cmd & 0x0F) == V2_CMD_LOCAL) {
        /* "the receiver must accept this connection as valid and must use the real connection
           endpoints" */
        out->local = true;
        return (int)total;
    }
    out->socktype = proto == V2_PROTO_STREAM  ? SOCK_STREAM
                    : proto == V2_PROTO_DGRAM ? SOCK_DGRAM
                                              : 0;
    pos = L4_PP_V2_HEADER;
    if (af == V2_AF_INET) {
        /* src_addr (4), dst_addr (4), src_port (2), dst_port (2) */
        set_in(&out->src, buf + pos, be16(buf + pos + 8));
        set_in(&out->dst, buf + pos + 4, be16(buf + pos + 10));
        out->family = AF_INET;
        out->has_addr = true;
    } else if (af == V2_AF_INET6) {
        /* src_addr (16), dst_addr (16), src_port (2), dst_port (2) */
        set_in6(&out->src, buf + pos, be16(buf + pos + 32));
        set_in6(&out->dst, buf + pos + 16, be16(buf + pos + 34));
        out->family = AF_INET6;
        out->has_addr = true;
    } else if (af == V2_AF_UNIX) {
        /* two 108-byte paths: no use for a TCP router, the socket's addresses stay */
        out->family = AF_UNIX;
    }
    /* UNSPEC: "the receiver is free to accept the connection anyway and use the real endpoint
       addresses" -- go-proxyproto does too. */
    pos += addr_len;
    /* TLVs: type (1), length (2), value. Each one must end inside the header. */
    out->tlv = buf + pos;
    out->tlv_len = total - pos;
    while (pos < total) {
        if (total - pos < V2_TLV_HEADER)
            return NB_E_PARSE;
        pos += V2_TLV_HEADER;
        if (be16(buf + pos - 2) > total - pos)
            return NB_E_PARSE;
        pos += be16(buf + pos - 2);
    }
    return (int)total;
}

int l4_pp_parse(const uint8_t *buf, size_t len, struct l4_pp_header *out)
{
    size_t i;

    if (len == 0)
        return NB_E_AGAIN;
    /* go-proxyproto's Read: 'P' may start v1, '\r' may start v2, anything else is data */
    if (buf[0] == v1_sig[0]) {
        for (i = 1; i < sizeof(v1_sig) && i < len; i++) {
            if (buf[i] != (uint8_t)v1_sig[i])
                return NB_E_NOTFOUND;
        }
        return len < sizeof(v1_sig) ? NB_E_AGAIN : parse_v1(buf, len, out);
    }
    if (buf[0] == l4_pp_v2_sig[0]) {
        for (i = 1; i < sizeof(l4_pp_v2_sig) && i < len; i++) {
            if (buf[i] != l4_pp_v2_sig[i])
                return NB_E_NOTFOUND;
        }
        return len < sizeof(l4_pp_v2_sig) ? NB_E_AGAIN : parse_v2(buf, len, out);
    }
    return NB_E_NOTFOUND;
}

/* ---- outbound v2 ---- */

/* The IPv4 address of sa when it is AF_INET or IPv4-mapped AF_INET6 (Go's To4() != nil). */
static bool as_v4(const struct sockaddr *sa, uint8_t out[4], unsigned *port)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        memcpy(out, &sin->sin_addr, 4);
        *port = ntohs(sin->sin_port);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        if (!IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
            return false;
        memcpy(out, sin6->sin6_addr.s6_addr + 12, 4);
        *port = ntohs(sin6->sin6_port);
        return true;
    }
    return false;
}

/* The 16-byte form of sa (Go's To16()): IPv4 becomes ::ffff:a.b.c.d. */
static bool as_v6(const struct sockaddr *sa, uint8_t out[16], unsigned *port)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        memcpy(out, &sin6->sin6_addr, 16);
        *port = ntohs(sin6->sin6_port);
        return true;
    }
    if (sa->sa_family == AF_INET) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        return as_v4(sa, out + 12, port);
    }
    return false;
}

int l4_pp_v2_encode(const struct sockaddr *client, const struct sockaddr *local,
                    uint8_t out[L4_PP_V2_ENC_MAX])
{
    uint8_t s[16], d[16];
    unsigned sport, dport;

    if (!client || !local)
        return NB_E_INVAL;
    memcpy(out, l4_pp_v2_sig, sizeof(l4_pp_v2_sig));
    out[12] = V2_VERSION | V2_CMD_PROXY;
    if (as_v4(client, s, &sport)) {
        /* TCP over IPv4: the destination must have an IPv4 form too */
        if (!as_v4(local, d, &dport))
            return NB_E_INVAL;
        out[13] = V2_AF_INET << 4 | V2_PROTO_STREAM;
        put16(out + 14, L4_PP_V2_ADDR_INET);
        memcpy(out + 16, s, 4);
        memcpy(out + 20, d, 4);
        put16(out + 24, sport);
        put16(out + 26, dport);
        return L4_PP_V2_HEADER + L4_PP_V2_ADDR_INET;
    }
    if (client->sa_family != AF_INET6 || !as_v6(client, s, &sport) || !as_v6(local, d, &dport))
        return NB_E_INVAL;
    out[13] = V2_AF_INET6 << 4 | V2_PROTO_STREAM;
    put16(out + 14, L4_PP_V2_ADDR_INET6);
    memcpy(out + 16, s, 16);
    memcpy(out + 32, d, 16);
    put16(out + 48, sport);
    put16(out + 50, dport);
    return L4_PP_V2_HEADER + L4_PP_V2_ADDR_INET6;
}

/* ---- policy ---- */

static bool prefix_match(const uint8_t *addr, const uint8_t *prefix, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;

    if (memcmp(addr, prefix, full) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((addr[full] ^ prefix[full]) & (uint8_t)(0xFF << (8 - rest))) == 0;
}

enum l4_pp_policy l4_pp_policy(const struct sockaddr *peer, const struct l4_prefix *trusted,
                               size_t n_trusted)
{
    uint8_t a[16];
    int family;
    size_t i;

    /* proxy/server.go: no trusted proxies -> no ConnPolicy -> go-proxyproto's USE */
    if (n_trusted == 0)
        return L4_PP_USE;
    if (!peer)
        return L4_PP_REJECT;
    if (peer->sa_family == AF_INET) {
        memcpy(a, &((const struct sockaddr_in *)peer)->sin_addr, 4);
        family = AF_INET;
    } else if (peer->sa_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)peer)->sin6_addr;

        /* addr.Unmap(): an IPv4-mapped peer is matched as IPv4 */
        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            memcpy(a, in6->s6_addr + 12, 4);
            family = AF_INET;
        } else {
            memcpy(a, in6->s6_addr, 16);
            family = AF_INET6;
        }
    } else {
        return L4_PP_REJECT;
    }
    for (i = 0; i < n_trusted; i++) {
        const struct l4_prefix *p = &trusted[i];

        if (p->family != family || p->bits > (family == AF_INET ? 32 : 128))
            continue;
        if (prefix_match(a, p->addr, p->bits))
            return L4_PP_REQUIRE;
    }
    return L4_PP_IGNORE;
}

enum l4_pp_action l4_pp_decide(enum l4_pp_policy pol, const uint8_t *buf, size_t len, bool final,
                               struct l4_pp_header *hdr, size_t *hdr_len)
{
    int rc = l4_pp_parse(buf, len, hdr);

    *hdr_len = 0;
    if (rc > 0) {
        /* go-proxyproto readHeader: REJECT -> ErrSuperfluousProxyHeader; USE/REQUIRE keep the
           header (a LOCAL or address-less one leaves the socket's addresses); IGNORE reads and
           drops it */
        if (pol == L4_PP_REJECT)
            return L4_PP_CLOSE;
        *hdr_len = (size_t)rc;
        if (pol == L4_PP_IGNORE || !hdr->has_addr)
            return L4_PP_STRIP;
        return L4_PP_APPLY;
    }
    switch (rc) {
    case NB_E_NOTFOUND:
        /* ErrNoProxyProtocol: only REQUIRE makes it an error */
        return pol == L4_PP_REQUIRE ? L4_PP_CLOSE : L4_PP_DIRECT;
    case NB_E_AGAIN:
        if (!final)
            return L4_PP_WAIT;
        if (pol == L4_PP_REQUIRE)
            return L4_PP_CLOSE;
        /* A deadline while the signature is still being peeked is ErrNoProxyProtocol (the bytes
           stay in the reader as data); once a signature was seen, a cut-off header fails. */
        if (len == 0 || (buf[0] == v1_sig[0] && len < sizeof(v1_sig)) ||
            (buf[0] == l4_pp_v2_sig[0] && len < sizeof(l4_pp_v2_sig)))
            return L4_PP_DIRECT;
        return L4_PP_CLOSE;
    default:
        /* NB_E_PARSE: the header's error ends the connection whatever the policy */
        return L4_PP_CLOSE;
    }
}
