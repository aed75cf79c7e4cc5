/* LD_PRELOAD shim for the CLI tests: rename() onto a path ending in "/NAME" fails with
 * ENOSPC, as on a full disk, while ETL_TEST_FAIL_RENAME_TO=NAME is in the environment
 * (for example summary.json); every other rename goes to libc. Built as
 * tests/cli/fail_rename.so. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rename(const char *from, const char *to)
{
    static int (*real)(const char *, const char *);
    const char *name = getenv("ETL_TEST_FAIL_RENAME_TO");
    size_t n = to ? strlen(to) : 0, k = name ? strlen(name) : 0;
    if (k && n > k && to[n - k - 1] == '/' && strcmp(to + n - k, name) == 0) {
        errno = ENOSPC;
        return -1;
    }
    if (!real)
        real = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    return real(from, to);
}
