/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_WEB_INDEX_HTML_H
#define NB_WEB_INDEX_HTML_H

/*
 * web/index.html, embedded at build time by web/embed.cmake (the definitions are generated into
 * the build tree). The page data goes where the marker NB_WEB_DATA_MARKER sits: bytes
 * [0, data_at) come before it and [data_at + data_len, len) after it. Use http/errpage.h rather
 * than these bytes directly: it makes the data safe to place inside the <script> element.
 */

#include <stddef.h>

/* Must match NB_WEB_DATA_MARKER in web/CMakeLists.txt (a unit test checks the bytes). */
#define NB_WEB_DATA_MARKER "/*NB_DATA*/{}"

extern const unsigned char nb_web_index_html[]; /* NUL-terminated; the NUL is not in _len */
extern const size_t nb_web_index_html_len;
extern const size_t nb_web_index_html_data_at;  /* offset of the marker */
extern const size_t nb_web_index_html_data_len; /* length of the marker */

#endif
