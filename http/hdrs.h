/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_HTTP_HDRS_H
#define NB_HTTP_HDRS_H

/*
 * An editable list of header fields, the common currency between the parser (h1_parse gives
 * pointers into the connection's head buffer), the proxy rules (http/rewrite.h edits a copy for
 * the upstream request) and the serialiser. Names and values are (pointer, length) slices that
 * are NOT copied by the list: they point into the head buffer or into the request's arena, and
 * must outlive the list. The array itself lives in the arena given at init and grows there.
 *
 * Order is kept (HTTP semantics allow combining, but backends see what the client sent). Lookups
 * are case-insensitive on names (RFC 9110 §5.1).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nb_arena;
struct h1_header;

struct http_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct http_hdrs {
    struct http_field *v;
    uint32_t n;
    uint32_t cap;
    struct nb_arena *arena; /* where v grows and copies go */
};

void http_hdrs_init(struct http_hdrs *h, struct nb_arena *arena);
/* Copies the parser's field array (the slices, not the bytes). NB_OK or NB_E_NOMEM. */
int http_hdrs_from_h1(struct http_hdrs *h, const struct h1_header *f, size_t n)
    __attribute__((warn_unused_result));
/* Appends a field; the slices are referenced, not copied. NB_OK or NB_E_NOMEM. */
int http_hdrs_add(struct http_hdrs *h, const char *name, size_t name_len, const char *value,
                  size_t value_len) __attribute__((warn_unused_result));
/* Appends a field with NUL-terminated name and value, both copied into the arena. */
int http_hdrs_add_copy(struct http_hdrs *h, const char *name, const char *value)
    __attribute__((warn_unused_result));
/* Removes every field called `name`; returns how many were removed. */
unsigned http_hdrs_del(struct http_hdrs *h, const char *name);
/* Removes every `name` field, then appends one (slices referenced). */
int http_hdrs_set(struct http_hdrs *h, const char *name, const char *value, size_t value_len)
    __attribute__((warn_unused_result));
/* First field called `name`, or NULL. */
const struct http_field *http_hdrs_get(const struct http_hdrs *h, const char *name);
/* Number of fields called `name`. */
unsigned http_hdrs_count(const struct http_hdrs *h, const char *name);
/*
 * The values of every `name` field joined with ", " (as RFC 9110 §5.3 allows for list fields),
 * in the arena; NULL (and *len 0) when there is none. A single field is returned without a copy.
 */
const char *http_hdrs_join(const struct http_hdrs *h, const char *name, size_t *len);

/* Case-insensitive equality of a slice and a NUL-terminated ASCII string. */
bool http_ieq_full(const char *s, size_t n, const char *lit);
/* The same, inline: most calls compare a field name with a name it is not, and the first byte
 * (OR 0x20 folds ASCII case; equal bytes stay equal) tells them apart without a call. */
static inline bool http_ieq(const char *s, size_t n, const char *lit)
{
    if (n == 0)
        return lit[0] == '\0';
    if (((unsigned char)s[0] | 0x20) != ((unsigned char)lit[0] | 0x20))
        return false;
    return http_ieq_full(s, n, lit);
}
/* True when the comma-separated list value contains `token` (case-insensitive, OWS trimmed). */
bool http_list_has(const char *value, size_t len, const char *token);

/*
 * Appends the fields of "Name: value\r\n" lines (a trailer section as h1_chunked hands it over,
 * already validated) to h; slices point into buf, which must outlive h. Values are OWS-trimmed.
 * NB_OK, NB_E_PARSE (a line without CRLF or colon), NB_E_NOMEM.
 */
int http_hdrs_parse_lines(struct http_hdrs *h, const char *buf, size_t len)
    __attribute__((warn_unused_result));

/*
 * Serialised size of "Name: value\r\n" for every field (no final CRLF), and the writer that puts
 * them at dst (which must have that many bytes); returns the bytes written.
 */
size_t http_hdrs_wire_len(const struct http_hdrs *h);
size_t http_hdrs_write(const struct http_hdrs *h, char *dst);

#endif
