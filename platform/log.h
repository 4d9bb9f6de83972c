/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_PLATFORM_LOG_H
#define NB_PLATFORM_LOG_H

/*
 * Levelled logging to stderr, one line per record:
 *   2026-11-23T16:42:01.123Z INFO  [module] message
 * Levels follow netbird-proxy's names (panic, fatal, error, warn, info, debug, trace). Never pass
 * a secret (key, token, cookie, header-auth value) to these functions.
 */

#include <stdarg.h>

enum nb_log_level {
    NB_LOG_PANIC = 0,
    NB_LOG_FATAL,
    NB_LOG_ERROR,
    NB_LOG_WARN,
    NB_LOG_INFO,
    NB_LOG_DEBUG,
    NB_LOG_TRACE,
};

extern enum nb_log_level nb_log_threshold;

/* Parses a level name ("info", "WARN", "warning"); -1 if unknown. */
int nb_log_level_parse(const char *name);
const char *nb_log_level_name(enum nb_log_level lvl);
void nb_log_set_level(enum nb_log_level lvl);

void nb_log_write(enum nb_log_level lvl, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void nb_log_vwrite(enum nb_log_level lvl, const char *mod, const char *fmt, va_list ap);

#define NB_LOG(lvl, mod, ...)                        \
    do {                                             \
        if ((lvl) <= nb_log_threshold)               \
            nb_log_write((lvl), (mod), __VA_ARGS__); \
    } while (0)
#define nb_error(mod, ...) NB_LOG(NB_LOG_ERROR, mod, __VA_ARGS__)
#define nb_warn(mod, ...)  NB_LOG(NB_LOG_WARN, mod, __VA_ARGS__)
#define nb_info(mod, ...)  NB_LOG(NB_LOG_INFO, mod, __VA_ARGS__)
#define nb_debug(mod, ...) NB_LOG(NB_LOG_DEBUG, mod, __VA_ARGS__)
#define nb_trace(mod, ...) NB_LOG(NB_LOG_TRACE, mod, __VA_ARGS__)

#endif
