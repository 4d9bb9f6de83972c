/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * rs/xid-compatible IDs: the request ID of every HTTP request (error pages, access log log_id)
 * and the log_id of L4 entries. Written from the format description in xid.h; the process-wide
 * generator is seeded once (machine id, pid, random counter start) and then only bumps an atomic
 * counter, so making an ID costs one atomic add and a time() call.
 */
#include "platform/xid.h"

#include "platform/err.h"

#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static const char alphabet[32] = "0123456789abcdefghijklmnopqrstuv";

void nb_xid_gen_init(struct nb_xid_gen *g, const uint8_t machine[3], uint16_t pid,
                     uint32_t counter_start)
{
    memcpy(g->machine, machine, 3);
    g->pid = pid;
    g->counter = counter_start;
}

static void assemble(nb_xid id, uint32_t now_sec, const uint8_t machine[3], uint16_t pid,
                     uint32_t counter)
{
    id[0] = (uint8_t)(now_sec >> 24);
    id[1] = (uint8_t)(now_sec >> 16);
    id[2] = (uint8_t)(now_sec >> 8);
    id[3] = (uint8_t)now_sec;
    memcpy(id + 4, machine, 3);
    id[7] = (uint8_t)(pid >> 8);
    id[8] = (uint8_t)pid;
    id[9] = (uint8_t)(counter >> 16);
    id[10] = (uint8_t)(counter >> 8);
    id[11] = (uint8_t)counter;
}

void nb_xid_gen_next(struct nb_xid_gen *g, uint32_t now_sec, nb_xid id)
{
    g->counter++;
    assemble(id, now_sec, g->machine, g->pid, g->counter);
}

void nb_xid_encode(const nb_xid id, char out[NB_XID_STR_LEN + 1])
{
    /* 96 bits, MSB first, 5 at a time: 19 full groups and a 20th with 1 bit + 4 zero bits. */
    uint32_t acc = 0;
    unsigned bits = 0, o = 0;
    for (unsigned i = 0; i < NB_XID_LEN; i++) {
        acc = (acc << 8) | id[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = alphabet[(acc >> bits) & 31u];
        }
    }
    out[o++] = alphabet[(acc << (5 - bits)) & 31u]; /* bits == 1 here */
    out[o] = '\0';
}

static int digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'v')
        return c - 'a' + 10;
    return -1;
}

int nb_xid_decode(const char *s, size_t len, nb_xid id)
{
    if (s == NULL || len != NB_XID_STR_LEN)
        return NB_E_PARSE;
    uint32_t acc = 0;
    unsigned bits = 0, o = 0;
    for (size_t i = 0; i < len; i++) {
        int d = digit(s[i]);
        if (d < 0)
            return NB_E_PARSE;
        acc = (acc << 5) | (uint32_t)d;
        bits += 5;
        if (bits >= 8 && o < NB_XID_LEN) {
            bits -= 8;
            id[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* 100 bits read, 96 used: the 4 left over are padding and must be zero. */
    if (o != NB_XID_LEN || bits != 4 || (acc & 15u) != 0)
        return NB_E_PARSE;
    return NB_OK;
}

uint32_t nb_xid_time(const nb_xid id)
{
    return (uint32_t)id[0] << 24 | (uint32_t)id[1] << 16 | (uint32_t)id[2] << 8 | id[3];
}

uint32_t nb_xid_counter(const nb_xid id)
{
    return (uint32_t)id[9] << 16 | (uint32_t)id[10] << 8 | id[11];
}

uint16_t nb_xid_pid(const nb_xid id)
{
    return (uint16_t)((unsigned)id[7] << 8 | id[8]);
}

/* FNV-1a: any stable spread of the bytes will do, the id only has to differ between hosts. */
static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static bool hash_trimmed(const char *s, uint8_t out[3])
{
    if (s == NULL)
        return false;
    size_t b = 0, e = strlen(s);
    while (b < e && isspace((unsigned char)s[b]))
        b++;
    while (e > b && isspace((unsigned char)s[e - 1]))
        e--;
    if (e == b)
        return false;
    uint64_t h = fnv1a(s + b, e - b);
    out[0] = (uint8_t)(h >> 56);
    out[1] = (uint8_t)(h >> 48);
    out[2] = (uint8_t)(h >> 40);
    return true;
}

bool nb_xid_machine_from(const char *machine_id, const char *hostname, uint8_t out[3])
{
    return hash_trimmed(machine_id, out) || hash_trimmed(hostname, out);
}

/* ---- the process generator ---- */

static uint8_t proc_machine[3];
static uint16_t proc_pid;
static _Atomic uint32_t proc_counter;
static pthread_once_t proc_once = PTHREAD_ONCE_INIT;

static void random_bytes(void *buf, size_t n)
{
    if (getrandom(buf, n, GRND_NONBLOCK) == (ssize_t)n)
        return;
    /* No entropy yet (early boot): uniqueness, not secrecy, is what matters here. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid() << 40;
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static void proc_init(void)
{
    char mid[256] = "", host[256] = "";
    int fd = open("/etc/machine-id", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, mid, sizeof mid - 1);
        mid[n > 0 ? n : 0] = '\0';
        close(fd);
    }
    if (gethostname(host, sizeof host - 1) != 0)
        host[0] = '\0';
    host[sizeof host - 1] = '\0';
    if (!nb_xid_machine_from(mid, host, proc_machine))
        random_bytes(proc_machine, sizeof proc_machine);
    proc_pid = (uint16_t)getpid();
    uint32_t start;
    random_bytes(&start, sizeof start);
    atomic_store(&proc_counter, start);
}

void nb_xid_make_raw(uint32_t now_sec, nb_xid id)
{
    pthread_once(&proc_once, proc_init);
    uint32_t c = atomic_fetch_add(&proc_counter, 1) + 1;
    assemble(id, now_sec, proc_machine, proc_pid, c);
}

void nb_xid_make(uint32_t now_sec, char out[NB_XID_STR_LEN + 1])
{
    nb_xid id;
    nb_xid_make_raw(now_sec, id);
    nb_xid_encode(id, out);
}

void nb_xid_new(char out[NB_XID_STR_LEN + 1])
{
    nb_xid_make((uint32_t)time(NULL), out);
}
