/* SPDX-License-Identifier: BSD-3-Clause */
#include "acme/cache.h"

#include "acme/jws.h"
#include "platform/err.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char cert_begin[] = "-----BEGIN CERTIFICATE-----";

int acme_cache_split(const char *pem, size_t len, const char **key, size_t *key_len,
                     const char **chain, size_t *chain_len)
{
    const char *c = memmem(pem, len, cert_begin, sizeof cert_begin - 1);
    if (!c)
        return NB_E_PARSE;
    size_t kl = (size_t)(c - pem);
    if (!memmem(pem, kl, "PRIVATE KEY-----", 16))
        return NB_E_PARSE;
    *key = pem;
    *key_len = kl;
    *chain = c;
    *chain_len = len - kl;
    return NB_OK;
}

int64_t acme_renew_at(int64_t not_before, int64_t not_after)
{
    int64_t life = not_after - not_before;
    int64_t before = 30 * 86400;
    if (life > 0 && life / 3 < before)
        before = life / 3;
    return not_after - before;
}

int acme_cache_name_ok(const char *name)
{
    size_t l = name ? strlen(name) : 0;
    return l > 0 && l <= 255 && !strchr(name, '/') && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

static int path_of(char *out, size_t cap, const char *dir, const char *name)
{
    if (!acme_cache_name_ok(name))
        return NB_E_INVAL;
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap ? NB_OK : NB_E_INVAL;
}

int acme_cache_get(const char *dir, const char *name, char **out, size_t *len)
{
    char p[4096];
    if (path_of(p, sizeof p, dir, name) != NB_OK)
        return NB_E_INVAL;
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? NB_E_NOTFOUND : NB_E_IO;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NB_E_IO;
    }
    if (st.st_size > (off_t)ACME_CACHE_MAX) {
        close(fd);
        return NB_E_TOO_BIG;
    }
    size_t cap = (size_t)st.st_size + 1;
    char *b = malloc(cap);
    if (!b) {
        close(fd);
        return NB_E_NOMEM;
    }
    size_t got = 0;
    while (got + 1 < cap) {
        ssize_t r = read(fd, b + got, cap - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    b[got] = '\0';
    *out = b;
    *len = got;
    return NB_OK;
}

int acme_cache_put(const char *dir, const char *name, const void *data, size_t len)
{
    char p[4096], tmp[4096];
    if (path_of(p, sizeof p, dir, name) != NB_OK)
        return NB_E_INVAL;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return NB_E_IO;
    uint32_t r = randombytes_random();
    int n = snprintf(tmp, sizeof tmp, "%s/.%s.%08x.tmp", dir, name, r);
    if (n <= 0 || (size_t)n >= sizeof tmp)
        return NB_E_INVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return NB_E_IO;
    const char *d = data;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, d + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    int ok = off == len && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, p) != 0) {
        unlink(tmp);
        return NB_E_IO;
    }
    return NB_OK;
}

void acme_cache_del(const char *dir, const char *name)
{
    char p[4096];
    if (path_of(p, sizeof p, dir, name) == NB_OK)
        unlink(p);
}
