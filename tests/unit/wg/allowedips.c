/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * Allowed-IPs trie: fixed cases, then a differential test against a deliberately naive linear
 * table (after Linux's horrible_allowedips) over random inserts, lookups and removals.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <sys/socket.h>

#include "platform/err.h"
#include "wg/allowedips.h"

static void ip(int family, const char *s, uint8_t *out)
{
    assert_int_equal(inet_pton(family, s, out), 1);
}

static void test_basic(void **state)
{
    struct wg_allowedips t;
    int p1, p2, p3, p4;
    uint8_t a[16];

    wg_allowedips_init(&t, 0);
    ip(AF_INET, "10.0.0.0", a);
    assert_int_equal(wg_allowedips_insert(&t, AF_INET, a, 8, &p1), NB_OK);
    ip(AF_INET, "10.1.0.0", a);
    assert_int_equal(wg_allowedips_insert(&t, AF_INET, a, 16, &p2), NB_OK);
    ip(AF_INET, "10.1.2.3", a);
    assert_int_equal(wg_allowedips_insert(&t, AF_INET, a, 32, &p3), NB_OK);
    ip(AF_INET, "0.0.0.0", a);
    assert_int_equal(wg_allowedips_insert(&t, AF_INET, a, 0, &p4), NB_OK);

    ip(AF_INET, "10.1.2.3", a);
    assert_ptr_equal(wg_allowedips_lookup(&t, AF_INET, a), &p3);
    ip(AF_INET, "10.1.2.4", a);
    assert_ptr_equal(wg_allowedips_lookup(&t, AF_INET, a), &p2);
    ip(AF_INET, "10.2.0.1", a);
    assert_ptr_equal(wg_allowedips_lookup(&t, AF_INET, a), &p1);
    ip(AF_INET, "192.168.1.1", a);
    assert_ptr_equal(wg_allowedips_lookup(&t, AF_INET, a), &p4);

    /* Host bits are masked; same prefix replaces the peer. */
    ip(AF_INET, "10.1.255.255", a);
    assert_int_equal(wg_allowedips_insert(&t, AF_INET, a, 16, &p1), NB_OK);
    ip(AF_INET, "10.1.9.9", a);
    assert_ptr_equal(wg_allowedips_lookup(&t, AF_INET, a), &p1);

    wg_allowedips_remove_by_peer(&t, &p4);
    ip(AF_INET, "192.168.1.1", a);
    assert_null(wg_allowedips_lookup(&t, AF_INET, a));
    wg_allowedips_remove_by_peer(&t, &p1);
    ip(AF_INET, "10.1.2.3", a);
    assert_ptr_equal(wg_allowedips_lookup(&t, AF_INET, a), &p3);
    ip(AF_INET, "10.1.9.9", a);
    assert_null(wg_allowedips_lookup(&t, AF_INET, a));

    ip(AF_INET6, "fd00::", a);
    assert_int_equal(wg_allowedips_insert(&t, AF_INET6, a, 64, &p1), NB_OK);
    ip(AF_INET6, "fd00::1234", a);
    assert_ptr_equal(wg_allowedips_lookup(&t, AF_INET6, a), &p1);
    ip(AF_INET6, "fd01::1", a);
    assert_null(wg_allowedips_lookup(&t, AF_INET6, a));

    /* Invalid arguments. */
    assert_int_equal(wg_allowedips_insert(&t, AF_INET, a, 33, &p1), NB_E_INVAL);
    assert_int_equal(wg_allowedips_insert(&t, AF_INET6, a, 129, &p1), NB_E_INVAL);
    assert_int_equal(wg_allowedips_insert(&t, AF_UNIX, a, 8, &p1), NB_E_INVAL);
    assert_int_equal(wg_allowedips_insert(&t, AF_INET, a, 8, NULL), NB_E_INVAL);

    wg_allowedips_free(&t);
    assert_int_equal(t.nodes, 0);
}

static void test_node_cap(void **state)
{
    struct wg_allowedips t;
    uint8_t a[4] = {10, 0, 0, 0};
    int p, i, err = NB_OK;

    wg_allowedips_init(&t, 8);
    for (i = 0; i < 64 && err == NB_OK; i++) {
        a[3] = (uint8_t)(i * 4);
        err = wg_allowedips_insert(&t, AF_INET, a, 32, &p);
    }
    assert_int_equal(err, NB_E_NOMEM);
    assert_true(t.nodes <= 8);
    wg_allowedips_free(&t);
}

/* ---- naive reference ---- */

struct ref_entry {
    int family;
    uint8_t addr[16];
    uint8_t cidr;
    void *peer;
};

struct ref {
    struct ref_entry *e;
    size_t n;
};

static int prefix_match(const uint8_t *a, const uint8_t *b, unsigned cidr)
{
    unsigned i;

    for (i = 0; i < cidr; i++) {
        unsigned bit = 7 - (i & 7);

        if (((a[i >> 3] >> bit) & 1) != ((b[i >> 3] >> bit) & 1))
            return 0;
    }
    return 1;
}

static void ref_insert(struct ref *r, int family, const uint8_t *addr, uint8_t cidr, void *peer)
{
    size_t i;

    for (i = 0; i < r->n; i++) {
        if (r->e[i].family == family && r->e[i].cidr == cidr &&
            prefix_match(r->e[i].addr, addr, cidr)) {
            r->e[i].peer = peer;
            return;
        }
    }
    r->e[r->n].family = family;
    memcpy(r->e[r->n].addr, addr, family == AF_INET ? 4 : 16);
    r->e[r->n].cidr = cidr;
    r->e[r->n].peer = peer;
    r->n++;
}

static void ref_remove(struct ref *r, void *peer)
{
    size_t i, j = 0;

    for (i = 0; i < r->n; i++)
        if (r->e[i].peer != peer)
            r->e[j++] = r->e[i];
    r->n = j;
}

static void *ref_lookup(const struct ref *r, int family, const uint8_t *addr)
{
    void *best = NULL;
    int best_cidr = -1;
    size_t i;

    for (i = 0; i < r->n; i++) {
        if (r->e[i].family == family && (int)r->e[i].cidr > best_cidr &&
            prefix_match(r->e[i].addr, addr, r->e[i].cidr)) {
            best = r->e[i].peer;
            best_cidr = r->e[i].cidr;
        }
    }
    return best;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/*
 * Addresses are drawn near a few bases so prefixes overlap heavily (random 128-bit values would
 * almost never share prefixes and test little).
 */
static void rand_addr(int family, uint8_t *a)
{
    static const uint8_t base4[4][4] = {{10, 0, 0, 0}, {10, 1, 0, 0}, {192, 168, 0, 0}, {0}};
    unsigned len = family == AF_INET ? 4 : 16, i, keep = (unsigned)(rnd() % (len * 8));

    for (i = 0; i < len; i++)
        a[i] = (uint8_t)rnd();
    if (family == AF_INET) {
        const uint8_t *b = base4[rnd() % 4];

        for (i = 0; i < keep && i < 32; i++) {
            unsigned bit = 7 - (i & 7);

            a[i >> 3] = (uint8_t)((a[i >> 3] & ~(1u << bit)) | (b[i >> 3] & (1u << bit)));
        }
    } else {
        a[0] = 0xfd;
        a[1] = (uint8_t)(rnd() % 3);
        if (keep > 64)
            memset(a + 2, 0, 6);
    }
}

static void run_differential(int family, unsigned ninsert, unsigned nlookup)
{
    enum { NPEERS = 64 };
    struct wg_allowedips t;
    struct ref r;
    int peers[NPEERS];
    uint8_t a[16];
    unsigned i, width = family == AF_INET ? 32 : 128, mismatches = 0;

    r.e = calloc(ninsert, sizeof(*r.e));
    r.n = 0;
    wg_allowedips_init(&t, 1u << 20);

    for (i = 0; i < ninsert; i++) {
        uint8_t cidr = (uint8_t)(rnd() % (width + 1));
        void *p = &peers[rnd() % NPEERS];

        rand_addr(family, a);
        assert_int_equal(wg_allowedips_insert(&t, family, a, cidr, p), NB_OK);
        ref_insert(&r, family, a, cidr, p);
        if (i % 97 == 96) {
            void *victim = &peers[rnd() % NPEERS];

            wg_allowedips_remove_by_peer(&t, victim);
            ref_remove(&r, victim);
        }
    }
    for (i = 0; i < nlookup; i++) {
        rand_addr(family, a);
        if (wg_allowedips_lookup(&t, family, a) != ref_lookup(&r, family, a))
            mismatches++;
        /* Also probe exactly at inserted prefixes. */
        if (r.n) {
            const struct ref_entry *e = &r.e[rnd() % r.n];

            if (wg_allowedips_lookup(&t, family, e->addr) != ref_lookup(&r, family, e->addr))
                mismatches++;
        }
    }
    assert_int_equal(mismatches, 0);

    /* Remove everything: the trie must be empty again (no leaked interior nodes). */
    for (i = 0; i < NPEERS; i++)
        wg_allowedips_remove_by_peer(&t, &peers[i]);
    assert_int_equal(t.nodes, 0);
    wg_allowedips_free(&t);
    free(r.e);
}

static void test_differential_v4(void **state)
{
    run_differential(AF_INET, 4000, 6000);
}

static void test_differential_v6(void **state)
{
    run_differential(AF_INET6, 4000, 6000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_node_cap),
        cmocka_unit_test(test_differential_v4),
        cmocka_unit_test(test_differential_v6),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
