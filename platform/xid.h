/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_PLATFORM_XID_H
#define NB_PLATFORM_XID_H

/*
 * Globally unique, time-sortable IDs in the rs/xid format, which netbird-proxy uses for request
 * IDs (shown on error pages) and access-log log_id values. An ID is 12 bytes:
 *
 *   0..3   Unix time in seconds, big-endian
 *   4..6   machine id (3 bytes of a hash of /etc/machine-id, else the hostname, else random)
 *   7..8   process id, big-endian (low 16 bits)
 *   9..11  counter, big-endian (24 bits; random start, +1 per ID, wraps)
 *
 * and its string form is 20 characters of lowercase base32hex ("0-9a-v"): the 96 bits cut into
 * 5-bit groups from the most significant bit down, the last group holding the final bit followed
 * by four zero bits. Because the alphabet is in ASCII order and the time comes first, strings
 * sort by creation second (then machine, pid, counter) with plain strcmp.
 *
 * nb_xid_gen_* is the pure core (the caller supplies time, machine id, pid and counter start);
 * nb_xid_new()/nb_xid_make() use one process-wide generator seeded on first use. The process
 * generator's counter is atomic, so IDs may be made from any thread.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NB_XID_LEN     12 /* raw bytes */
#define NB_XID_STR_LEN 20 /* encoded characters, without the NUL */

typedef uint8_t nb_xid[NB_XID_LEN];

/* A generator: caller-owned, zero-initialisable, not thread-safe on its own. */
struct nb_xid_gen {
    uint8_t machine[3];
    uint16_t pid;
    uint32_t counter; /* the next ID uses counter + 1 (as rs/xid), truncated to 24 bits */
};

/* Sets up a generator with explicit identity and counter start (tests, and the process one). */
void nb_xid_gen_init(struct nb_xid_gen *g, const uint8_t machine[3], uint16_t pid,
                     uint32_t counter_start);
/* Makes the next ID for Unix time now_sec. Pure: depends only on g and now_sec. */
void nb_xid_gen_next(struct nb_xid_gen *g, uint32_t now_sec, nb_xid id);

/* Encodes id as 20 base32hex characters plus a NUL. */
void nb_xid_encode(const nb_xid id, char out[NB_XID_STR_LEN + 1]);
/*
 * Decodes a 20-character string. NB_OK, or NB_E_PARSE for a wrong length, a character outside
 * "0-9a-v" (uppercase included) or non-zero padding bits in the last character (a non-canonical
 * form that would otherwise decode to the same ID as another string).
 */
int nb_xid_decode(const char *s, size_t len, nb_xid id) __attribute__((warn_unused_result));

/* Field accessors. */
uint32_t nb_xid_time(const nb_xid id);
uint32_t nb_xid_counter(const nb_xid id);
uint16_t nb_xid_pid(const nb_xid id);

/*
 * Derives the 3-byte machine id the way the process generator does: a hash of the trimmed
 * machine_id text (the contents of /etc/machine-id) if non-empty, else of hostname if non-empty.
 * Returns false (out untouched) when both are NULL or empty; the caller then uses random bytes.
 */
bool nb_xid_machine_from(const char *machine_id, const char *hostname, uint8_t out[3]);

/* A fresh ID string from the process generator at the current wall-clock second. */
void nb_xid_new(char out[NB_XID_STR_LEN + 1]);
/* The same with the time supplied (injectable clock). */
void nb_xid_make(uint32_t now_sec, char out[NB_XID_STR_LEN + 1]);
/* The raw form of nb_xid_make. */
void nb_xid_make_raw(uint32_t now_sec, nb_xid id);

#endif
