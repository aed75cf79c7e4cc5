/* Helpers shared by the unit tests that work in a temporary folder: a fresh folder under
 * $TMPDIR (else /tmp), and its removal with everything in it (header-only, static
 * functions). */
#ifndef ETL_TEST_TMP_DIR_H
#define ETL_TEST_TMP_DIR_H

#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* A new folder named PREFIX.XXXXXX (the Xs made unique) in $TMPDIR, else /tmp, written
 * into buf; false when it cannot be made (or buf is too small). */
static inline bool tmp_dir_make(char *buf, size_t len, const char *prefix)
{
    const char *base = getenv("TMPDIR");
    int n = snprintf(buf, len, "%s/%s.XXXXXX", base && *base ? base : "/tmp", prefix);
    return n > 0 && (size_t)n < len && mkdtemp(buf) != NULL;
}

static int tmp_dir_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *w)
{
    (void)sb;
    (void)flag;
    (void)w;
    return remove(p);
}

/* Remove dir and everything in it, not following symbolic links; errors are ignored. */
static inline void tmp_dir_remove(const char *dir)
{
    nftw(dir, tmp_dir_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
