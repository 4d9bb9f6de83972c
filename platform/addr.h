/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_PLATFORM_ADDR_H
#define NB_PLATFORM_ADDR_H

/* Socket address helpers: parsing "ip:port" forms and printing them. No DNS. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NB_ADDRSTRLEN 64 /* "[v6%scope]:65535" and NUL */

/*
 * Parses "1.2.3.4:80", "[::1]:80", ":80" (any address, IPv6 dual-stack when allow_any_v6) or
 * "localhost:80" (127.0.0.1). The host must be an IP literal otherwise. NB_OK or NB_E_PARSE.
 */
int nb_addr_parse(const char *s, struct sockaddr_storage *out, socklen_t *len);
/* Parses an IP literal (v4 or v6) with a separate port. */
int nb_addr_from_ip(const char *ip, uint16_t port, struct sockaddr_storage *out, socklen_t *len);
/* Length of the concrete sockaddr inside ss (sizeof sockaddr_in or sockaddr_in6), 0 if unknown. */
socklen_t nb_addr_len(const struct sockaddr *sa);
/* "1.2.3.4:80" or "[::1]:80"; always NUL-terminates; returns buf. */
const char *nb_addr_str(const struct sockaddr *sa, char buf[NB_ADDRSTRLEN]);
/* "1.2.3.4" or "::1" without the port. */
const char *nb_addr_ip_str(const struct sockaddr *sa, char buf[NB_ADDRSTRLEN]);
uint16_t nb_addr_port(const struct sockaddr *sa);
bool nb_addr_equal(const struct sockaddr *a, const struct sockaddr *b);

#endif
