/* The state directory: where each run keeps its history, staged files and summary, and
 * where the per-pipeline lock lives.
 *
 *   STATE_DIR/PIPELINE/lock                 flock()ed by the running etlrun
 *   STATE_DIR/PIPELINE/runs/RUN_ID/         one folder per run:
 *       meta.json      pipeline file, input, start time, pid (written at the start)
 *       checkpoints/   completed Map iterations and Parallel branches (checkpoint.h)
 *       history.jsonl  the events
 *       stage/         staged files (default staging directory)
 *       summary.json   written at the end: the outcome (a resume removes it first)
 *
 * STATE_DIR: --state-dir, else $ETLRUN_STATE_DIR, else $XDG_STATE_HOME/etlrun, else
 * ~/.local/state/etlrun. Run ids sort by time: 20261122T030000.123Z-1a2b3c (UTC to the
 * millisecond, then 6 hex digits of randomness; a new id is always greater than the ids
 * of the pipeline's earlier runs); --name gives another.
 *
 * Everything here is called from the main thread; the writes after a run folder's
 * publication and the pruning are done by a keeper thread of the rundir, in order. */
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
/* A new generated run id (the form above), for a run without a state directory. */
void rundir_new_id(char *buf, size_t len);
/* Whether the lock's previous holder died without releasing it normally (its line was
 * still in the lock file, which rundir_close empties): its runs may have left things
 * behind. */
bool rundir_holder_died(const rundir *rd);
/* Make the run's folder with a new run id (or name), unpublished: rundir_write_json and
 * rundir_write_text write into it, and rundir_publish gives it its name, so that no run
 * folder ever lacks the files written before (meta.json). rundir_run_path is
 * already the published path. An unpublished folder is removed by rundir_close, or by a
 * later rundir_prune when the process was killed. */
bool rundir_new_run(rundir *rd, const char *name, char *msg, size_t len);
bool rundir_publish(rundir *rd, char *msg, size_t len);
/* Continue an existing run (resume): its folder becomes the current run's. */
bool rundir_reuse_run(rundir *rd, const char *run_id, char *msg, size_t len);
const char *rundir_run_id(const rundir *rd);
const char *rundir_run_path(const rundir *rd);
/* Write NAME (e.g. "summary.json") in the run folder atomically: v indented, or text as
 * it is. Into an unpublished folder: written at once (temp, rename), and fsynced by the
 * keeper after rundir_publish. Into a published one: queued for the keeper, a thread
 * that does the folder's writes in order, each temp, fsync, rename, fsync of the
 * folder, so that the run does not wait for the disk; rundir_flush waits for them and
 * reports the first failure. Returns false only when the write could not be queued. */
bool rundir_write_json(rundir *rd, const char *name, const json_t *v);
bool rundir_write_text(rundir *rd, const char *name, const char *text, size_t len);
/* Append the len bytes of text (taken: freed here or by the keeper) to the file open at
 * fd (the caller's, open until rundir_close), by the keeper, in order with the other
 * writes: for the run's history, so that the run does not wait for the disk. Not
 * fsynced. When 8 MiB of appends wait, this waits for the keeper (memory stays bounded
 * however slow the disk). A failed append is undone (the file is truncated back), and
 * no later one is written: no hole, no line cut short. Its failure is reported by
 * rundir_appends_done, not rundir_flush. name says which file in messages. Returns false
 * only when the append could not be queued (text is freed then). */
bool rundir_append(rundir *rd, int fd, const char *name, char *text, size_t len);
/* Wait until the appends queued so far are written (not the other writes queued after
 * them); false with the first append failure in msg. */
bool rundir_appends_done(rundir *rd, char *msg, size_t len);
/* Keep the newest keep runs and those younger than max_age_s (0 = no age rule); the
 * current run is never removed. Done by the keeper, in order with the writes. */
void rundir_prune(rundir *rd, int keep, double max_age_s);
/* Remove the file tree at path (not following symlinks); errors are ignored. */
void rundir_remove_tree(const char *path);
/* Wait until the keeper has done everything queued; false with the first failure in
 * msg when a write failed. */
bool rundir_flush(rundir *rd, char *msg, size_t len);
/* After rundir_flush: whether the last queued write of NAME (rundir_write_json/text into
 * a published folder) reached the disk. */
bool rundir_wrote(rundir *rd, const char *name);
/* No more writes are coming: the keeper ends once it has done what is queued, while the
 * caller goes on (a later write is done on the caller's thread, after the keeper's). */
void rundir_finish(rundir *rd);
/* Wait for the keeper, release the lock and free. */
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
