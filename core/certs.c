/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The certificate store (core/certs.h). Everything runs on the loop: the inotify fd is an nb_io,
 * the debounce and the poll are timers, and a reload reads a few small files synchronously
 * (PEM files of at most 1 MiB, tls_cert_load_pem's limit), as the reference does.
 */
#include "core/certs.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <unistd.h>

#define DEFAULT_DEBOUNCE_MS 500u
#define DEFAULT_POLL_MS     30000u
#define MAX_WATCHES         3
#define MAX_WILDCARDS       256u

struct wildcard {
    char *name; /* file base name without ".crt" */
    struct tls_cert *cert;
};

struct nb_certs {
    struct nb_loop *loop;
    char *cert_path, *key_path;
    char *cert_base, *key_base; /* basenames the watcher looks for */
    char *wildcard_dir;
    struct tls_cert *stat; /* static pair */
    struct tls_cert *self; /* self-signed */
    struct wildcard *wc;
    uint32_t n_wc;
    tls_select_fn acme;
    void *acme_arg;
    int ino_fd;
    int wd[MAX_WATCHES];
    int wd_kind[MAX_WATCHES]; /* bit 0: static dir, bit 1: wildcard dir */
    struct nb_io io;
    struct nb_timer debounce, poll;
    uint32_t debounce_ms, poll_ms;
    struct nb_certs_stats st;
};

static const char *serial_hex(const struct tls_cert *c, char out[80])
{
    const uint8_t *s;
    size_t n = tls_cert_serial(c, &s);
    size_t o = 0;
    for (size_t i = 0; i < n && o + 3 < 80; i++)
        o += (size_t)snprintf(out + o, 80 - o, "%02X", s[i]);
    out[o] = '\0';
    return out;
}

bool nb_wildcard_match(const char *suffix, const char *host)
{
    size_t sl = strlen(suffix), hl = strlen(host);
    if (sl == 0 || hl < sl + 2)
        return false;
    const char *tail = host + hl - sl;
    if (tail[-1] != '.' || strcasecmp(tail, suffix) != 0)
        return false;
    /* one non-empty label before the suffix */
    return memchr(host, '.', (size_t)(tail - 1 - host)) == NULL;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static char *dir_name(const char *p)
{
    const char *s = strrchr(p, '/');
    if (s == NULL)
        return strdup(".");
    if (s == p)
        return strdup("/");
    return strndup(p, (size_t)(s - p));
}

/* ---- static pair ---- */

static int load_static(struct nb_certs *c, bool initial, char *err, size_t errlen)
{
    struct tls_cert *n = NULL;
    int rc = tls_cert_load_pem(c->cert_path, c->key_path, &n);
    if (rc != NB_OK) {
        if (initial)
            return nb_errf(err, errlen, rc, "certificate %s / key %s: %s", c->cert_path,
                           c->key_path, rc == NB_E_IO ? strerror(errno) : nb_strerror(rc));
        c->st.reload_failures++;
        nb_warn("certs", "reloading %s: %s; keeping the current certificate", c->cert_path,
                nb_strerror(rc));
        return rc;
    }
    char hex[80];
    if (c->stat && tls_cert_same_leaf(c->stat, n)) {
        c->st.reload_skipped++;
        tls_cert_unref(n);
        return NB_OK;
    }
    if (c->stat) {
        c->st.reloads++;
        nb_info("certs", "reloaded %s: serial %s", c->cert_path, serial_hex(n, hex));
    } else {
        nb_info("certs", "loaded %s: serial %s", c->cert_path, serial_hex(n, hex));
    }
    tls_cert_unref(c->stat);
    c->stat = n;
    return NB_OK;
}

/* ---- wildcard directory ---- */

static bool has_wildcard_san(const struct tls_cert *cert)
{
    for (size_t i = 0; i < tls_cert_san_count(cert); i++)
        if (strncmp(tls_cert_san(cert, i), "*.", 2) == 0)
            return true;
    return false;
}

static struct wildcard *find_wc(struct wildcard *v, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return &v[i];
    return NULL;
}

static void free_wc(struct wildcard *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        free(v[i].name);
        tls_cert_unref(v[i].cert);
    }
    free(v);
}

/* Scans the directory; keeps old entries whose files fail. */
static int load_wildcards(struct nb_certs *c, bool initial, char *err, size_t errlen)
{
    DIR *d = opendir(c->wildcard_dir);
    if (d == NULL) {
        if (initial)
            return nb_errf(err, errlen, NB_E_IO, "--wildcard-cert-dir %s: %s", c->wildcard_dir,
                           strerror(errno));
        c->st.reload_failures++;
        nb_warn("certs", "wildcard directory %s: %s; keeping the current certificates",
                c->wildcard_dir, strerror(errno));
        return NB_E_IO;
    }
    struct wildcard *nv = calloc(MAX_WILDCARDS, sizeof *nv);
    uint32_t nn = 0;
    if (nv == NULL) {
        closedir(d);
        return NB_E_NOMEM;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && nn < MAX_WILDCARDS) {
        size_t l = strlen(e->d_name);
        if (l <= 4 || strcmp(e->d_name + l - 4, ".crt") != 0 || e->d_name[0] == '.')
            continue;
        char name[NAME_MAX + 1], crt[PATH_MAX], key[PATH_MAX];
        snprintf(name, sizeof name, "%.*s", (int)(l - 4), e->d_name);
        snprintf(crt, sizeof crt, "%s/%s.crt", c->wildcard_dir, name);
        snprintf(key, sizeof key, "%s/%s.key", c->wildcard_dir, name);
        if (access(key, F_OK) != 0)
            continue;
        struct wildcard *old = find_wc(c->wc, c->n_wc, name);
        struct tls_cert *cert = NULL;
        int rc = tls_cert_load_pem(crt, key, &cert);
        if (rc != NB_OK) {
            c->st.reload_failures++;
            nb_warn("certs", "wildcard certificate %s: %s%s", crt, nb_strerror(rc),
                    old ? "; keeping the current one" : "");
            if (old == NULL)
                continue;
            cert = tls_cert_ref(old->cert);
        } else if (old && tls_cert_same_leaf(old->cert, cert)) {
            c->st.reload_skipped++;
            tls_cert_unref(cert);
            cert = tls_cert_ref(old->cert);
        } else {
            char hex[80];
            if (old)
                c->st.reloads++;
            nb_info("certs", "%s wildcard certificate %s: serial %s", old ? "reloaded" : "loaded",
                    crt, serial_hex(cert, hex));
        }
        if ((nv[nn].name = strdup(name)) == NULL) {
            tls_cert_unref(cert);
            break;
        }
        nv[nn++].cert = cert;
    }
    closedir(d);
    if (initial) {
        bool any = false;
        for (uint32_t i = 0; i < nn && !any; i++)
            any = has_wildcard_san(nv[i].cert);
        if (!any) {
            free_wc(nv, nn);
            return nb_errf(err, errlen, NB_E_INVAL,
                           "--wildcard-cert-dir %s: no certificate with a wildcard (*.domain) name",
                           c->wildcard_dir);
        }
    }
    free_wc(c->wc, c->n_wc);
    c->wc = nv;
    c->n_wc = nn;
    c->st.wildcard_certs = nn;
    return NB_OK;
}

static struct tls_cert *match_wildcard(const struct nb_certs *c, const char *host)
{
    for (uint32_t i = 0; i < c->n_wc; i++) {
        const struct tls_cert *cert = c->wc[i].cert;
        for (size_t j = 0; j < tls_cert_san_count(cert); j++) {
            const char *san = tls_cert_san(cert, j);
            if (strncmp(san, "*.", 2) == 0 && nb_wildcard_match(san + 2, host))
                return c->wc[i].cert;
        }
    }
    return NULL;
}

/* ---- watching ---- */

void nb_certs_reload(struct nb_certs *c)
{
    if (c->cert_path)
        (void)load_static(c, false, NULL, 0);
    if (c->wildcard_dir)
        (void)load_wildcards(c, false, NULL, 0);
}

static void debounce_fire(struct nb_timer *t)
{
    nb_certs_reload(t->arg);
}

static void poll_fire(struct nb_timer *t)
{
    struct nb_certs *c = t->arg;
    nb_certs_reload(c);
    nb_timer_arm(c->loop, &c->poll, c->poll_ms);
}

static bool relevant(const struct nb_certs *c, int kind, const char *name)
{
    if ((kind & 1) && (strcmp(name, c->cert_base) == 0 || strcmp(name, c->key_base) == 0 ||
                       strcmp(name, "..data") == 0))
        return true;
    if (kind & 2) {
        size_t l = strlen(name);
        if (l > 4 && (strcmp(name + l - 4, ".crt") == 0 || strcmp(name + l - 4, ".key") == 0))
            return true;
        if (strcmp(name, "..data") == 0)
            return true;
    }
    return false;
}

static void ino_ready(struct nb_io *io, uint32_t events)
{
    struct nb_certs *c = io->arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool hit = false;
    for (int rounds = 0; rounds < 16; rounds++) {
        ssize_t n = read(c->ino_fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->len == 0)
                continue;
            for (int i = 0; i < MAX_WATCHES; i++)
                if (c->wd[i] == ev->wd && relevant(c, c->wd_kind[i], ev->name))
                    hit = true;
        }
    }
    if (hit)
        nb_timer_arm(c->loop, &c->debounce, c->debounce_ms);
}

static void watch_dir(struct nb_certs *c, const char *dir, int kind)
{
    if (c->ino_fd < 0)
        return;
    int wd = inotify_add_watch(c->ino_fd, dir,
                               IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MODIFY);
    if (wd < 0) {
        nb_warn("certs", "cannot watch %s (%s): polling every %u s", dir, strerror(errno),
                c->poll_ms / 1000);
        return;
    }
    for (int i = 0; i < MAX_WATCHES; i++) {
        if (c->wd[i] == wd) {
            c->wd_kind[i] |= kind;
            return;
        }
        if (c->wd[i] < 0) {
            c->wd[i] = wd;
            c->wd_kind[i] = kind;
            return;
        }
    }
}

/* ---- the store ---- */

int nb_certs_new(struct nb_loop *loop, const struct nb_certs_opts *o, struct nb_certs **out,
                 char *err, size_t errlen)
{
    *out = NULL;
    struct nb_certs *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NB_E_NOMEM;
    c->loop = loop;
    c->ino_fd = -1;
    for (int i = 0; i < MAX_WATCHES; i++)
        c->wd[i] = -1;
    c->debounce_ms = o->debounce_ms ? o->debounce_ms : DEFAULT_DEBOUNCE_MS;
    c->poll_ms = o->poll_ms ? o->poll_ms : DEFAULT_POLL_MS;
    nb_timer_init(&c->debounce, debounce_fire, c);
    nb_timer_init(&c->poll, poll_fire, c);
    int rc = NB_E_NOMEM;
    if (o->cert_path) {
        if ((c->cert_path = strdup(o->cert_path)) == NULL ||
            (c->key_path = strdup(o->key_path ? o->key_path : "")) == NULL ||
            (c->cert_base = strdup(base_name(o->cert_path))) == NULL ||
            (c->key_base = strdup(base_name(c->key_path))) == NULL)
            goto fail;
        if ((rc = load_static(c, true, err, errlen)) != NB_OK)
            goto fail;
        c->st.has_static = true;
    }
    if (o->wildcard_dir && o->wildcard_dir[0]) {
        rc = NB_E_NOMEM;
        if ((c->wildcard_dir = strdup(o->wildcard_dir)) == NULL)
            goto fail;
        if ((rc = load_wildcards(c, true, err, errlen)) != NB_OK)
            goto fail;
    }
    if (c->stat == NULL && o->n_selfsigned) {
        rc = tls_selfsigned_new(o->selfsigned_names, o->n_selfsigned, 0, &c->self);
        if (rc != NB_OK) {
            nb_errf(err, errlen, rc, "cannot make a self-signed certificate: %s", nb_strerror(rc));
            goto fail;
        }
        c->st.selfsigned = true;
        char names[512] = "";
        for (size_t i = 0; i < o->n_selfsigned; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                     o->selfsigned_names[i]);
        nb_warn("certs",
                "no certificate configured and ACME off: serving a SELF-SIGNED certificate for "
                "%s (clients will not trust it)",
                names);
    }
    if (c->cert_path || c->wildcard_dir) {
        c->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (c->ino_fd < 0)
            nb_warn("certs", "inotify unavailable (%s): polling every %u s", strerror(errno),
                    c->poll_ms / 1000);
        if (c->cert_path) {
            char *d1 = dir_name(c->cert_path), *d2 = dir_name(c->key_path);
            if (d1)
                watch_dir(c, d1, 1);
            if (d2)
                watch_dir(c, d2, 1);
            free(d1);
            free(d2);
        }
        if (c->wildcard_dir)
            watch_dir(c, c->wildcard_dir, 2);
        if (c->ino_fd >= 0 &&
            nb_io_start(loop, &c->io, c->ino_fd, NB_IO_READ, ino_ready, c) != NB_OK) {
            close(c->ino_fd);
            c->ino_fd = -1;
        }
        nb_timer_arm(loop, &c->poll, c->poll_ms);
    }
    *out = c;
    return NB_OK;
fail:
    nb_certs_free(c);
    return rc;
}

void nb_certs_free(struct nb_certs *c)
{
    if (c == NULL)
        return;
    nb_timer_cancel(&c->debounce);
    nb_timer_cancel(&c->poll);
    nb_io_stop(&c->io);
    if (c->ino_fd >= 0)
        close(c->ino_fd);
    tls_cert_unref(c->stat);
    tls_cert_unref(c->self);
    free_wc(c->wc, c->n_wc);
    free(c->cert_path);
    free(c->key_path);
    free(c->cert_base);
    free(c->key_base);
    free(c->wildcard_dir);
    free(c);
}

struct tls_cert *nb_certs_select(void *arg, const struct tls_hello *h)
{
    struct nb_certs *c = arg;
    if (h->acme_only)
        return c->acme ? c->acme(c->acme_arg, h) : NULL;
    if (h->sni[0]) {
        struct tls_cert *w = match_wildcard(c, h->sni);
        if (w)
            return w;
    }
    if (c->stat)
        return c->stat;
    if (c->acme) {
        struct tls_cert *a = c->acme(c->acme_arg, h);
        if (a)
            return a;
    }
    return c->self;
}

void nb_certs_set_acme(struct nb_certs *c, tls_select_fn fn, void *arg)
{
    c->acme = fn;
    c->acme_arg = arg;
}

bool nb_certs_check_domain(struct nb_certs *c, const char *domain)
{
    if (domain == NULL || domain[0] == '\0')
        return false;
    if (match_wildcard(c, domain))
        return true;
    if (c->stat) {
        if (tls_cert_covers(c->stat, domain))
            return true;
        nb_warn("certs", "the certificate %s does not cover %s (clients will see a name mismatch)",
                c->cert_path, domain);
    }
    return false;
}

void nb_certs_stats(const struct nb_certs *c, struct nb_certs_stats *st)
{
    *st = c->st;
}
