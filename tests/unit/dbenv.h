/* For tests against the throwaway servers of tests/servers/db.sh: read a setting from
 * the env file that db.sh wrote (its path is in $ETL_DB_ENV, set by ctest). */
#ifndef ETL_TEST_DBENV_H
#define ETL_TEST_DBENV_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of key (e.g. "ETL_PG_PORT"), or NULL. Also exports every setting into the
 * process environment on first use, so pipelines can say ${env:ETL_PG_PASSWORD}. */
static inline const char *dbenv(const char *key)
{
    static char lines[64][512];
    static int n = -1;
    if (n < 0) {
        n = 0;
        const char *path = getenv("ETL_DB_ENV");
        FILE *f = path ? fopen(path, "r") : NULL;
        if (!f) {
            fprintf(stderr, "dbenv: cannot read $ETL_DB_ENV (%s): run through ctest, which "
                            "starts the servers\n", path ? path : "unset");
            exit(1);
        }
        while (n < 64 && fgets(lines[n], sizeof lines[n], f)) {
            lines[n][strcspn(lines[n], "\n")] = '\0';
            char *eq = strchr(lines[n], '=');
            if (!eq)
                continue;
            *eq = '\0';
            setenv(lines[n], eq + 1, 1);
            *eq = '=';
            n++;
        }
        fclose(f);
    }
    size_t kl = strlen(key);
    for (int i = 0; i < n; i++)
        if (strncmp(lines[i], key, kl) == 0 && lines[i][kl] == '=')
            return lines[i] + kl + 1;
    return NULL;
}

#endif
