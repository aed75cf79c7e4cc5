/* bench/sched_only.c: one pipeline through the scheduler alone, without or with
 * checkpoints, to measure what checkpoints cost (bench/checkpoints.sh drives it).
 *
 *   sched_only off|on|all PIPELINE INPUT.json TMPDIR
 *
 * Runs the pipeline once and prints the wall time of the run in milliseconds on stdout.
 * "on" includes ckpt_open and ckpt_close as `etlrun run` does them after a run that
 * succeeded (records not yet in a batch are dropped); "all" writes and fsyncs them as a
 * last batch, as after a run that failed. Their checkpoint folder is made in TMPDIR and removed after the run,
 * outside the timed part. One run per process: runs in one process would share the
 * allocator's state, and the records of an "on" run change what the next run pays for
 * memory. The run must succeed with an array output as long as the input's "items";
 * else the program says why on stderr and exits 1. */
#include <dirent.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "diag.h"
#include "machine.h"
#include "scheduler.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Remove dir/checkpoints/<files>, dir/checkpoints and dir (one level of files). */
static void remove_run_dir(const char *dir)
{
    char sub[PATH_MAX + 16], file[PATH_MAX + 300];
    snprintf(sub, sizeof sub, "%s/checkpoints", dir);
    DIR *d = opendir(sub);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                snprintf(file, sizeof file, "%s/%s", sub, de->d_name);
                unlink(file);
            }
        closedir(d);
    }
    rmdir(sub);
    rmdir(dir);
}

/* One timed run; false (with a message on stderr) when it did not produce the output. */
static bool one_run(const pipeline *pl, json_t *input, const char *mode, const char *tmp,
                    double *out_ms)
{
    char run_dir[PATH_MAX], msg[1024];
    ckpt *cp = NULL;
    sched_outcome out = {0};
    bool ok = false, with_ckpt = strcmp(mode, "off") != 0;
    snprintf(run_dir, sizeof run_dir, "%s/run.XXXXXX", tmp);
    if (with_ckpt && !mkdtemp(run_dir)) {
        perror("sched_only: mkdtemp");
        return false;
    }
    double t0 = now_ms();
    if (with_ckpt && !(cp = ckpt_open(run_dir, msg, sizeof msg))) {
        fprintf(stderr, "sched_only: %s\n", msg);
        goto out;
    }
    sched_options opt = {.jobs = 8, .wake_fd = -1, .name = "bench", .ckpt = cp};
    sched_run(pl, input, &opt, &out);
    ckpt_end(cp, strcmp(mode, "all") == 0 || out.status != ETL_OK);
    bool ckpt_ok = ckpt_close(cp, msg, sizeof msg);
    cp = NULL;
    *out_ms = now_ms() - t0;
    if (!ckpt_ok) {
        fprintf(stderr, "sched_only: %s\n", msg);
        goto out;
    }
    if (out.status != ETL_OK) {
        fprintf(stderr, "sched_only: the run failed: %s: %s\n", out.err.name, out.err.cause);
        goto out;
    }
    size_t want = json_array_size(json_object_get(input, "items"));
    if (!json_is_array(out.output) || json_array_size(out.output) != want) {
        fprintf(stderr, "sched_only: the output is not an array of %zu values\n", want);
        goto out;
    }
    ok = true;
out:
    ckpt_close(cp, msg, sizeof msg);
    json_decref(out.output);
    if (with_ckpt)
        remove_run_dir(run_dir);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc != 5 || (strcmp(argv[1], "off") != 0 && strcmp(argv[1], "on") != 0 &&
                      strcmp(argv[1], "all") != 0)) {
        fprintf(stderr, "usage: sched_only off|on|all PIPELINE INPUT.json TMPDIR\n");
        return 2;
    }
    int rc = 1;
    diag *d = diag_new(argv[2]);
    pipeline *pl = d ? pipeline_load(argv[2], d) : NULL;
    json_error_t je;
    json_t *input = json_load_file(argv[3], JSON_DECODE_ANY, &je);
    double ms = 0;
    if (!pl) {
        if (d)
            diag_print(d, stderr);
        goto out;
    }
    if (!input) {
        fprintf(stderr, "sched_only: %s: %s\n", argv[3], je.text);
        goto out;
    }
    if (!one_run(pl, input, argv[1], argv[4], &ms))
        goto out;
    printf("%.3f\n", ms);
    rc = 0;
out:
    json_decref(input);
    pipeline_free(pl);
    diag_free(d);
    return rc;
}
