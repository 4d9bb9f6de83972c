/* SPDX-License-Identifier: BSD-3-Clause */
#include "platform/addr.h"
#include "platform/err.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_port(const char *p, uint16_t *port)
{
    if (*p == '\0')
        return NB_E_PARSE;
    unsigned long v = 0;
    for (const char *q = p; *q; q++) {
        if (*q < '0' || *q > '9')
            return NB_E_PARSE;
        v = v * 10 + (unsigned long)(*q - '0');
        if (v > 65535)
            return NB_E_PARSE;
    }
    *port = (uint16_t)v;
    return NB_OK;
}

int nb_addr_from_ip(const char *ip, uint16_t port, struct sockaddr_storage *out, socklen_t *len)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_in *in4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, ip, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        if (len)
            *len = sizeof *in4;
        return NB_OK;
    }
    if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        if (len)
            *len = sizeof *in6;
        return NB_OK;
    }
    return NB_E_PARSE;
}

int nb_addr_parse(const char *s, struct sockaddr_storage *out, socklen_t *len)
{
    char host[NB_ADDRSTRLEN];
    const char *colon;
    uint16_t port;
    if (s == NULL)
        return NB_E_PARSE;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - s - 1) >= sizeof host)
            return NB_E_PARSE;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof host)
            return NB_E_PARSE;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        if (strchr(host, ':'))
            return NB_E_PARSE; /* bare IPv6 needs brackets */
    }
    if (parse_port(colon + 1, &port) != NB_OK)
        return NB_E_PARSE;
    if (host[0] == '\0')
        return nb_addr_from_ip("0.0.0.0", port, out, len);
    if (strcmp(host, "localhost") == 0)
        return nb_addr_from_ip("127.0.0.1", port, out, len);
    return nb_addr_from_ip(host, port, out, len);
}

socklen_t nb_addr_len(const struct sockaddr *sa)
{
    switch (sa->sa_family) {
    case AF_INET:
        return sizeof(struct sockaddr_in);
    case AF_INET6:
        return sizeof(struct sockaddr_in6);
    default:
        return 0;
    }
}

const char *nb_addr_ip_str(const struct sockaddr *sa, char buf[NB_ADDRSTRLEN])
{
    buf[0] = '\0';
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, NB_ADDRSTRLEN);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, NB_ADDRSTRLEN);
    else
        snprintf(buf, NB_ADDRSTRLEN, "?");
    return buf;
}

uint16_t nb_addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

const char *nb_addr_str(const struct sockaddr *sa, char buf[NB_ADDRSTRLEN])
{
    char ip[NB_ADDRSTRLEN];
    nb_addr_ip_str(sa, ip);
    if (sa->sa_family == AF_INET6)
        snprintf(buf, NB_ADDRSTRLEN, "[%.46s]:%u", ip, nb_addr_port(sa));
    else
        snprintf(buf, NB_ADDRSTRLEN, "%.46s:%u", ip, nb_addr_port(sa));
    return buf;
}

bool nb_addr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return false;
}
