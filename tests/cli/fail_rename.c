/* LD_PRELOAD shim for the CLI tests: rename() onto a path ending in /summary.json fails
 * with ENOSPC, as on a full disk, while ETL_TEST_FAIL_SUMMARY is set in the environment;
 * every other rename goes to libc. Built as tests/cli/fail_rename.so. */
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
    size_t n = to ? strlen(to) : 0, s = sizeof "/summary.json" - 1;
    if (getenv("ETL_TEST_FAIL_SUMMARY") && n >= s && strcmp(to + n - s, "/summary.json") == 0) {
        errno = ENOSPC;
        return -1;
    }
    if (!real)
        real = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    return real(from, to);
}
