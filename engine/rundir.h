/* The state directory: where each run keeps its history, staged files and summary, and
 * where the per-pipeline lock lives.
 *
 *   STATE_DIR/PIPELINE/lock                 flock()ed by the running etlrun
 *   STATE_DIR/PIPELINE/runs/RUN_ID/         one folder per run:
 *       meta.json      pipeline file, input, start time, pid, status (updated at the end)
 *       history.jsonl  the events
 *       stage/         staged files (default staging directory)
 *       summary.json   written at the end
 *
 * STATE_DIR: --state-dir, else $ETLRUN_STATE_DIR, else $XDG_STATE_HOME/etlrun, else
 * ~/.local/state/etlrun. Run ids sort by time: 20261122T030000.123Z-1a2b3c (UTC to the
 * millisecond, then 6 hex digits of randomness; a new id is always greater than the ids
 * of the pipeline's earlier runs); --name gives another.
 *
 * Everything here runs on the main thread, before the run starts or after it ended. */
#ifndef ETL_RUNDIR_H
#define ETL_RUNDIR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct rundir rundir;

/* The state directory root, resolved as above (malloc'd). */
char *rundir_root(const char *state_dir_opt);
/* Lock the pipeline's folder (creating it). wait_s < 0: fail at once when held;
 * otherwise wait up to wait_s seconds. On contention returns NULL and writes a message
 * naming the holder's pid and start time into msg; *out_locked is set true then. */
rundir *rundir_open(const char *root, const char *pipeline, double wait_s, bool *out_locked,
                    char *msg, size_t len);
/* Create the run's folder with a new run id (or name). */
bool rundir_new_run(rundir *rd, const char *name, char *msg, size_t len);
/* Continue an existing run (resume): its folder becomes the current run's. */
bool rundir_reuse_run(rundir *rd, const char *run_id, char *msg, size_t len);
const char *rundir_run_id(const rundir *rd);
const char *rundir_run_path(const rundir *rd);
/* Write NAME (e.g. "summary.json") in the run folder atomically (temp, fsync, rename). */
bool rundir_write_json(rundir *rd, const char *name, const json_t *v);
/* Keep the newest keep runs and those younger than max_age_s (0 = no age rule); the
 * current run is never removed. */
void rundir_prune(rundir *rd, int keep, double max_age_s);
/* Release the lock and free. */
void rundir_close(rundir *rd);

/* A name usable as a pipeline or run folder: 1 to 100 bytes, no '/', no control
 * character, not starting with '.'. */
bool rundir_valid_name(const char *name);
/* The runs of a pipeline, oldest first (by meta.json's "started", else the folder's
 * time): a JSON array of {"id", "path", "meta", "summary"}, meta and summary being the
 * parsed files or null. Returns a new reference; an empty array when the pipeline has no
 * runs; NULL with a message in msg when the folder cannot be read. */
json_t *rundir_list(const char *root, const char *pipeline, char *msg, size_t len);
/* The folder of run_id, searched in every pipeline of root (malloc'd), and the
 * pipeline's name in *out_pipeline (malloc'd) when out_pipeline is not NULL; NULL when
 * there is no such run. */
char *rundir_find(const char *root, const char *run_id, char **out_pipeline);
/* Whether the pid written in a run's meta.json still holds the pipeline's lock (the
 * run is in progress): the lock file names that pid and the process exists. */
bool rundir_is_running(const char *root, const char *pipeline, const json_t *meta);

#endif
