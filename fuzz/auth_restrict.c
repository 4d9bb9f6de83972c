/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * libFuzzer target: arbitrary AccessRestrictions into auth_restrict_new, then the check. Input:
 * lines; the first byte of a line picks its list ('a' allowed CIDR, 'b' blocked CIDR, 'c'
 * allowed country, 'd' blocked country, 'm' crowdsec mode, anything else an address to check).
 * Asserts: every kept CIDR prints a canonical form that compiles alone to itself; kept + skipped
 * = given; the check is deterministic, an overlay check only ever allows or says ip_restricted,
 * and the CIDR step decides alike with and without overlay; with no filter everything passes.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/restrict.h"
#include "platform/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_LINES 64

static bool fake_country(void *ctx, const struct auth_ip *ip, char cc[3])
{
    (void)ctx;
    if (ip->b[0] % 3 == 0)
        return false;
    cc[0] = (char)('A' + ip->b[0] % 26);
    cc[1] = (char)('A' + ip->b[1] % 26);
    cc[2] = '\0';
    return true;
}

static void canonical_roundtrip(const struct auth_restrict *f, bool blocked)
{
    for (size_t i = 0; i < auth_restrict_n_cidrs(f, blocked); i++) {
        char s[64], t[64];
        auth_restrict_cidr_str(f, blocked, i, s, sizeof s);
        const char *one[] = {s};
        struct auth_restrict_spec spec = {.allowed_cidrs = one, .n_allowed_cidrs = 1};
        struct auth_restrict *g = NULL;
        size_t skipped = 0;
        if (auth_restrict_new(&spec, &g, &skipped) != NB_OK)
            return; /* out of memory */
        if (skipped != 0 || g == NULL || auth_restrict_n_cidrs(g, false) != 1)
            abort();
        if (strcmp(auth_restrict_cidr_str(g, false, 0, t, sizeof t), s) != 0)
            abort();
        auth_restrict_unref(g);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    const char *lists[4][MAX_LINES];
    size_t n[4] = {0, 0, 0, 0}, n_ips = 0;
    const char *mode = NULL, *ips[MAX_LINES];
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        int k = line[0] == 'a'   ? 0
                : line[0] == 'b' ? 1
                : line[0] == 'c' ? 2
                : line[0] == 'd' ? 3
                                 : -1;
        if (k >= 0 && n[k] < MAX_LINES)
            lists[k][n[k]++] = line + 1;
        else if (line[0] == 'm')
            mode = line + 1;
        else if (k < 0 && n_ips < MAX_LINES)
            ips[n_ips++] = line;
    }
    struct auth_restrict_spec spec = {
        .allowed_cidrs = lists[0],
        .n_allowed_cidrs = n[0],
        .blocked_cidrs = lists[1],
        .n_blocked_cidrs = n[1],
        .allowed_countries = lists[2],
        .n_allowed_countries = n[2],
        .blocked_countries = lists[3],
        .n_blocked_countries = n[3],
        .crowdsec_mode = mode,
    };
    struct auth_restrict *f = NULL;
    size_t skipped = 0;
    if (auth_restrict_new(&spec, &f, &skipped) != NB_OK) {
        free(buf);
        return 0;
    }
    if (f &&
        auth_restrict_n_cidrs(f, false) + auth_restrict_n_cidrs(f, true) + skipped != n[0] + n[1])
        abort();
    canonical_roundtrip(f, false);
    canonical_roundtrip(f, true);
    struct auth_geo_ops geo = {.country = fake_country};
    for (size_t i = 0; i < n_ips; i++) {
        struct auth_ip ip;
        if (!auth_ip_parse(ips[i], &ip))
            continue;
        enum auth_verdict pub = auth_restrict_check(f, &ip, false, &geo);
        enum auth_verdict ovl = auth_restrict_check(f, &ip, true, NULL);
        if (pub != auth_restrict_check(f, &ip, false, &geo))
            abort();
        if (ovl != AUTH_ALLOW && ovl != AUTH_DENY_IP)
            abort();
        if ((pub == AUTH_DENY_IP) != (ovl == AUTH_DENY_IP))
            abort();
        if (f == NULL && (pub != AUTH_ALLOW || ovl != AUTH_ALLOW))
            abort();
    }
    auth_restrict_unref(f);
    free(buf);
    return 0;
}
