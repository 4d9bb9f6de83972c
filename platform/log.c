/* SPDX-License-Identifier: BSD-3-Clause */
#include "platform/log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum nb_log_level nb_log_threshold = NB_LOG_INFO;

static const char *const level_names[] = {"panic", "fatal", "error", "warn",
                                          "info",  "debug", "trace"};
static const char *const level_tags[] = {"PANIC", "FATAL", "ERROR", "WARN ",
                                         "INFO ", "DEBUG", "TRACE"};

int nb_log_level_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return (int)i;
    if (strcasecmp(name, "warning") == 0)
        return NB_LOG_WARN;
    return -1;
}

const char *nb_log_level_name(enum nb_log_level lvl)
{
    return (unsigned)lvl < sizeof level_names / sizeof level_names[0] ? level_names[lvl] : "?";
}

void nb_log_set_level(enum nb_log_level lvl)
{
    nb_log_threshold = lvl;
}

void nb_log_vwrite(enum nb_log_level lvl, const char *mod, const char *fmt, va_list ap)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_tags[lvl], mod);
    if (n < 0)
        return;
    if ((size_t)n < sizeof line) {
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2; /* truncated: keep one line */
    /* One write per record so concurrent processes sharing stderr do not interleave lines. */
    for (int i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
    fflush(stderr);
}

void nb_log_write(enum nb_log_level lvl, const char *mod, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    nb_log_vwrite(lvl, mod, fmt, ap);
    va_end(ap);
}
