/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_NETSTACK_ARCH_CC_H
#define NB_NETSTACK_ARCH_CC_H

/*
 * lwIP architecture glue for Linux/glibc (lwip/arch.h includes this first). Types come from
 * <stdint.h>; byte order from the compiler. Assertions abort: an lwIP assert is a bug in our use
 * of it, never an input condition (inputs are validated before lwIP sees them).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define LWIP_ERRNO_STDINCLUDE 1
#define LWIP_TIMEVAL_PRIVATE  0
#include <sys/time.h>

#include <endian.h> /* BYTE_ORDER, LITTLE_ENDIAN (same values lwIP uses) */

#define LWIP_PLATFORM_DIAG(x) \
    do {                      \
        printf x;             \
    } while (0)
#define LWIP_PLATFORM_ASSERT(x)                                                \
    do {                                                                       \
        fprintf(stderr, "lwIP assert: %s (%s:%d)\n", (x), __FILE__, __LINE__); \
        abort();                                                               \
    } while (0)

/* libsodium's CSPRNG (sodium_init() is called by ns_init()); see LWIP_RAND in lwipopts.h. */
uint32_t randombytes_random(void);

/* The capped heap behind MEM_LIBC_MALLOC (netstack/lwip_port.c). */
void *ns__mem_malloc(size_t size);
void *ns__mem_calloc(size_t n, size_t size);
void ns__mem_free(void *p);

#endif
