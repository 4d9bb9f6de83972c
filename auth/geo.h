/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_AUTH_GEO_H
#define NB_AUTH_GEO_H

/*
 * Geolocation for country restrictions (spec/proxy.md §10.2): a GeoLite2 City database read with
 * libmaxminddb (Debian's libmaxminddb0), looked up for `country.iso_code` only.
 *
 * Opening (auth_geo_open): nothing when disabled (NB_PROXY_DISABLE_GEOLOCATION) or the directory
 * is ""; otherwise the lexically last file named `GeoLite2-City_*.mmdb` in the directory. A file
 * that exists but does not open as a MaxMind DB is an error (the reference fails its startup).
 * Deviation: the reference downloads the database when the directory has none; nbproxy never
 * downloads at run time, so without a file there is no geo (country rules fail closed with
 * geo_unavailable) and the caller says so once in its log.
 *
 * The database is memory-mapped at open (a blocking call: startup only); lookups are in-memory
 * tree walks and never block.
 */

#include "auth/restrict.h"

#include <stdbool.h>
#include <stddef.h>

struct auth_geo;

/*
 * NB_OK: *out is the open database, or NULL when geo is off (disabled, dir "" or NULL, no
 * matching file; why is written into err then). NB_E_IO / NB_E_NOMEM: a matching file exists
 * but cannot be opened; err holds the path and libmaxminddb's reason.
 */
int auth_geo_open(const char *dir, bool disabled, struct auth_geo **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Opens one database file (any name). NB_OK, NB_E_IO, NB_E_NOMEM; reason in err. */
int auth_geo_open_file(const char *path, struct auth_geo **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void auth_geo_free(struct auth_geo *g);
/* The file in use. */
const char *auth_geo_path(const struct auth_geo *g);

/* country.iso_code of ip (upper case, NUL-terminated); false when unknown or g is NULL. */
bool auth_geo_country(const struct auth_geo *g, const struct auth_ip *ip, char cc[3]);
/* The lookup ops for auth_restrict_check(); g NULL gives ops meaning "no geo database". */
struct auth_geo_ops auth_geo_ops(const struct auth_geo *g);

#endif
