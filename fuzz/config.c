/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target: the configuration parsers an operator's file reaches: the standalone JSON
 * (nb_standalone_parse), wg-quick files (nb_wgquick_parse), addresses, prefixes, Go durations
 * and keys. The first byte picks the parser. Invariants: a failed parse leaves nothing
 * allocated (LeakSanitizer) and writes a NUL-terminated error naming something; a successful
 * one is freed without error.
 */
#include "core/config.h"
#include "core/standalone.h"
#include "platform/addr.h"
#include "platform/err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    char err[256];
    err[0] = '\0';
    switch (data[0] % 4) {
    case 0: {
        struct nb_standalone s;
        /* A base directory that does not exist: relative wg-quick paths fail to open. */
        int rc =
            nb_standalone_parse(text, size - 1, "/nonexistent-nbproxy-fuzz", &s, err, sizeof err);
        if (rc == NB_OK)
            nb_standalone_free(&s);
        else if (err[0] == '\0' && rc != NB_E_NOMEM)
            abort(); /* every rejection must say why */
        break;
    }
    case 1: {
        struct nb_account_conf a;
        memset(&a, 0, sizeof a);
        int rc = nb_wgquick_parse(text, &a, err, sizeof err);
        if (rc != NB_OK && err[0] == '\0' && rc != NB_E_NOMEM)
            abort();
        struct nb_standalone s = {.accounts = &a, .n_accounts = 1};
        /* nb_standalone_free frees the array itself: move the account into a heap copy. */
        s.accounts = malloc(sizeof a);
        if (s.accounts) {
            memcpy(s.accounts, &a, sizeof a);
            nb_standalone_free(&s);
        }
        break;
    }
    case 2: {
        struct sockaddr_storage ss;
        socklen_t len;
        char buf[NB_ADDRSTRLEN];
        if (nb_addr_parse(text, &ss, &len) == NB_OK)
            nb_addr_str((struct sockaddr *)&ss, buf);
        struct nb_prefix p;
        if (nb_prefix_parse(text, &p) == NB_OK && p.len > (p.family == AF_INET ? 32 : 128))
            abort();
        break;
    }
    default: {
        uint64_t ms;
        bool b;
        uint8_t key[NB_KEY_LEN];
        (void)nb_parse_duration_ms(text, &ms);
        (void)nb_parse_bool(text, &b);
        (void)nb_key_parse(text, key);
        break;
    }
    }
    free(text);
    return 0;
}
