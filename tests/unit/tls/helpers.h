/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_TESTS_TLS_HELPERS_H
#define NB_TESTS_TLS_HELPERS_H

/*
 * Shared by the tls tests: a scratch directory, certificates made by the openssl command line at
 * run time, and child processes (openssl s_client / s_server, curl) started with fork/exec, whose
 * output goes to a file and which are stopped by their PID only.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tdir[256];

/* Runs `sh -c cmd` in tdir and waits; returns the exit status (or -1). Output to tdir/log. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static int sh(const char *fmt, ...)
{
    char cmd[4096], full[4096 + 2 * sizeof tdir + 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "cd %s && (%s) >>%s/log 2>&1", tdir, cmd, tdir);
    int st = system(full);
    return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Reads tdir/name into a malloc'd NUL-terminated buffer (NULL if missing). */
__attribute__((unused)) static char *slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tdir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = '\0';
    fclose(f);
    if (len)
        *len = got;
    return b;
}

__attribute__((unused)) static void tpath(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tdir, name);
}

/*
 * Starts `sh -c cmd` in tdir with stdin from `in` (a tdir file, or /dev/null when NULL) and
 * stdout+stderr to tdir/`out`. exec replaces the shell, so the PID is the tool's own.
 */
static pid_t spawn(const char *in, const char *out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), unused));
static pid_t spawn(const char *in, const char *out, const char *fmt, ...)
{
    char cmd[4096], full[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "exec %s", cmd);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    char p[512];
    if (chdir(tdir) != 0)
        _exit(126);
    if (in)
        snprintf(p, sizeof p, "%s/%s", tdir, in);
    int fi = open(in ? p : "/dev/null", O_RDONLY);
    snprintf(p, sizeof p, "%s/%s", tdir, out);
    int fo = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fi < 0 || fo < 0)
        _exit(126);
    dup2(fi, 0);
    dup2(fo, 1);
    dup2(fo, 2);
    execl("/bin/sh", "sh", "-c", full, (char *)NULL);
    _exit(127);
}

/* Non-blocking check: true (and *status) once the child has exited. */
__attribute__((unused)) static bool reaped(pid_t pid, int *status)
{
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r != pid)
        return false;
    if (status)
        *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return true;
}

__attribute__((unused)) static void stop_child(pid_t pid)
{
    if (pid <= 0)
        return;
    if (!reaped(pid, NULL)) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
}

__attribute__((unused)) static bool contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

static void make_tdir(void)
{
    snprintf(tdir, sizeof tdir, "/tmp/nbtls-XXXXXX");
    if (mkdtemp(tdir) == NULL)
        abort();
}

static void remove_tdir(void)
{
    char cmd[300];
    if (tdir[0] == '\0')
        return;
    snprintf(cmd, sizeof cmd, "rm -rf %s", tdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tdir);
}

/*
 * A test PKI made with the openssl command line: ca (ECDSA P-256, CN "NB Test CA"), ca2 (another
 * CA, never trusted by the tests), and leaves signed by ca: a (ECDSA, DNS:a.test, *.wild.test,
 * IP:127.0.0.1, an email SAN), b (RSA 2048, DNS:b.test), localhost (ECDSA, DNS:localhost,
 * IP:127.0.0.1), other (ca2-signed, DNS:localhost).
 */
static int make_pki(void)
{
    return sh("set -e\n"
              "ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1; }\n"
              "ec ca.key; openssl req -x509 -new -key ca.key -subj '/CN=NB Test CA' -days 30 "
              "  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign,cRLSign "
              "  -out ca.pem\n"
              "ec ca2.key; openssl req -x509 -new -key ca2.key -subj '/CN=Other CA' -days 30 "
              "  -addext basicConstraints=critical,CA:TRUE -out ca2.pem\n"
              "leaf() { # name keyfile ca san serial\n"
              "  openssl req -new -key $2 -subj \"/CN=$1\" -out $1.csr\n"
              "  printf 'subjectAltName=%%s\\nbasicConstraints=CA:FALSE\\n' \"$4\" > $1.ext\n"
              "  openssl x509 -req -in $1.csr -CA $3.pem -CAkey $3.key -set_serial $5 -days 20 "
              "    -sha256 -extfile $1.ext -out $1.pem\n"
              "}\n"
              "ec a.key; leaf a a.key ca 'DNS:a.test,DNS:*.wild.test,IP:127.0.0.1,"
              "email:x@a.test' 0x0a1b2c3d4e5f\n"
              "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out b.key\n"
              "leaf b b.key ca 'DNS:b.test' 4242\n"
              "ec localhost.key; leaf localhost localhost.key ca 'DNS:localhost,IP:127.0.0.1' 7\n"
              "ec other.key; leaf other other.key ca2 'DNS:localhost' 8\n"
              "cat a.pem ca.pem > a.chain\n");
}

#endif
