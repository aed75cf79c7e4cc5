/* Helpers shared by the unit tests that run processes and wait for them: a monotonic
 * clock in ms, a sleep, and "is this process gone" (header-only, static functions). */
#ifndef ETL_TEST_PROC_UTIL_H
#define ETL_TEST_PROC_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

static inline int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A process is gone when it no longer exists or is a zombie (PID 1 in a container may
 * never reap orphans). Killed processes take a moment to die: wait up to wait_ms. */
static inline bool proc_gone(pid_t pid, int wait_ms)
{
    int64_t until = now_ms() + wait_ms;
    for (;;) {
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (!f)
            return true;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')');
        if (n == 0 || (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X')))
            return true;
        if (now_ms() >= until)
            return false;
        sleep_ms(10);
    }
}

#endif
