/* Dev certificates for the TLS unit tests (test_tls, test_link): a CA and a
 * server certificate for localhost and 127.0.0.1 in one temporary directory,
 * and an unrelated CA in another, for peers that must be refused. */
#ifndef BW_TESTS_DEV_CERTS_H
#define BW_TESTS_DEV_CERTS_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"

/* Remove a directory made here (anything not under /tmp/bw-tls- is left
 * alone). */
static void rm_rf(const char *dir)
{
    char cmd[PATH_MAX + 16];

    if (strncmp(dir, "/tmp/bw-tls-", 12) != 0)
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static char g_dir[PATH_MAX];   /* the server's certificates and their CA */
static char g_other[PATH_MAX]; /* an unrelated CA */

/* Fill dir and other (PATH_MAX bytes each) with new directories holding the
 * certificates. Returns 0, or -1 with the reason on stderr. */
static int dev_certs_make(char *dir, char *other)
{
    const char *names[] = {"localhost", "127.0.0.1", NULL};
    char err[256] = "";
    int created = 0;

    snprintf(dir, PATH_MAX, "/tmp/bw-tls-XXXXXX");
    snprintf(other, PATH_MAX, "/tmp/bw-tls-other-XXXXXX");
    if (mkdtemp(dir) == NULL || mkdtemp(other) == NULL)
        return -1;
    if (bw_tls_dev_certs(dir, names, &created, err, sizeof(err)) < 0 ||
        bw_tls_dev_certs(other, names, &created, err, sizeof(err)) < 0) {
        fprintf(stderr, "dev certs: %s\n", err);
        return -1;
    }
    return 0;
}

/* cmocka group setup and teardown: g_dir and g_other for every test. */
static int dev_certs_group_setup(void **state)
{
    return dev_certs_make(g_dir, g_other);
}

static int dev_certs_group_teardown(void **state)
{
    rm_rf(g_dir);
    rm_rf(g_other);
    return 0;
}

#endif /* BW_TESTS_DEV_CERTS_H */
