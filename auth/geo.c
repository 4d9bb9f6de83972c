/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The GeoLite2 reader behind country restrictions (auth/geo.h): libmaxminddb does the format;
 * this file picks the file and turns an address into a country code. Opened once by core/main.c
 * before the listeners start; read-only afterwards.
 */
#include "auth/geo.h"
#include "platform/err.h"

#include <dirent.h>
#include <errno.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GEO_PREFIX "GeoLite2-City_"
#define GEO_SUFFIX ".mmdb"

struct auth_geo {
    MMDB_s db;
    char *path;
};

static void set_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, a, b);
}

int auth_geo_open_file(const char *path, struct auth_geo **out, char *err, size_t errlen)
{
    *out = NULL;
    struct auth_geo *g = calloc(1, sizeof *g);
    if (g == NULL || (g->path = strdup(path)) == NULL) {
        free(g);
        return NB_E_NOMEM;
    }
    int rc = MMDB_open(path, MMDB_MODE_MMAP, &g->db);
    if (rc != MMDB_SUCCESS) {
        set_err(err, errlen, "open geolocation database %s: %s", path,
                rc == MMDB_IO_ERROR ? strerror(errno) : MMDB_strerror(rc));
        free(g->path);
        free(g);
        return rc == MMDB_OUT_OF_MEMORY_ERROR ? NB_E_NOMEM : NB_E_IO;
    }
    *out = g;
    return NB_OK;
}

static bool geo_name(const char *n)
{
    size_t l = strlen(n), pl = sizeof GEO_PREFIX - 1, sl = sizeof GEO_SUFFIX - 1;
    return l > pl + sl - 1 && strncmp(n, GEO_PREFIX, pl) == 0 &&
           strcmp(n + l - sl, GEO_SUFFIX) == 0;
}

int auth_geo_open(const char *dir, bool disabled, struct auth_geo **out, char *err, size_t errlen)
{
    *out = NULL;
    if (disabled) {
        set_err(err, errlen, "%s%s", "geolocation disabled (NB_PROXY_DISABLE_GEOLOCATION)", "");
        return NB_OK;
    }
    if (dir == NULL || dir[0] == '\0') {
        set_err(err, errlen, "%s%s", "no geolocation directory (--geo-data-dir is empty)", "");
        return NB_OK;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        set_err(err, errlen, "no geolocation database: cannot read %s: %s", dir, strerror(errno));
        return NB_OK;
    }
    /* The lexically last name (byte order, as Go's filepath.Glob sorts). */
    char *best = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!geo_name(e->d_name) || (best && strcmp(e->d_name, best) <= 0))
            continue;
        free(best);
        if ((best = strdup(e->d_name)) == NULL) {
            closedir(d);
            return NB_E_NOMEM;
        }
    }
    closedir(d);
    if (best == NULL) {
        set_err(err, errlen, "no geolocation database: no " GEO_PREFIX "*" GEO_SUFFIX " in %s%s",
                dir, "");
        return NB_OK;
    }
    size_t n = strlen(dir) + strlen(best) + 2;
    char *path = malloc(n);
    if (path == NULL) {
        free(best);
        return NB_E_NOMEM;
    }
    snprintf(path, n, "%s/%s", dir, best);
    free(best);
    int rc = auth_geo_open_file(path, out, err, errlen);
    free(path);
    return rc;
}

void auth_geo_free(struct auth_geo *g)
{
    if (g == NULL)
        return;
    MMDB_close(&g->db);
    free(g->path);
    free(g);
}

const char *auth_geo_path(const struct auth_geo *g)
{
    return g ? g->path : "";
}

bool auth_geo_country(const struct auth_geo *g, const struct auth_ip *ip, char cc[3])
{
    cc[0] = '\0';
    if (g == NULL || ip == NULL)
        return false;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (ip->v4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, ip->b, 4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, ip->b, 16);
    }
    int mmerr = MMDB_SUCCESS;
    /* libmaxminddb only reads the database: the const cast is its API's, not a write. */
    MMDB_lookup_result_s r =
        MMDB_lookup_sockaddr((MMDB_s *)&g->db, (const struct sockaddr *)&ss, &mmerr);
    if (mmerr != MMDB_SUCCESS || !r.found_entry)
        return false;
    MMDB_entry_data_s v;
    if (MMDB_get_value(&r.entry, &v, "country", "iso_code", NULL) != MMDB_SUCCESS || !v.has_data ||
        v.type != MMDB_DATA_TYPE_UTF8_STRING || v.data_size != 2)
        return false;
    for (int i = 0; i < 2; i++) {
        char c = v.utf8_string[i];
        cc[i] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
    cc[2] = '\0';
    return true;
}

static bool ops_country(void *ctx, const struct auth_ip *ip, char cc[3])
{
    return auth_geo_country(ctx, ip, cc);
}

struct auth_geo_ops auth_geo_ops(const struct auth_geo *g)
{
    return (struct auth_geo_ops){.country = g ? ops_country : NULL, .ctx = (void *)g};
}
