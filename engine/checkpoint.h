/* Checkpoints: what a resumed run needs to skip work that already completed.
 *
 * scheduler --ckpt_record--> writer thread --> RUN/checkpoints/NNNNNNNN.jsonl
 * resume: ckpt_load(RUN) --> replay tables --> scheduler
 *
 * Records (JSON objects, one per line):
 *   {"k":"done","path":P,"output":V,"caught":B} a Map iteration or Parallel branch
 *                                             completed (caught: only because a Catch
 *                                             handled an error in it: not replayed)
 *   {"k":"at","path":P,"state":S,"input":V}   path P entered the Map/Parallel state S with
 *                                             raw input V (where P resumes)
 *   {"k":"fail","path":P,"state":S,"input":V} path P failed at state S (resumes there)
 * Paths name frames: "" is the top level, P/S[i] the i-th iteration or branch of state S
 * entered by path P.
 *
 * DESIGN: the scheduler thread only serializes a record and queues it; a writer thread
 * writes batches every 100 ms, each as a new file written under a temporary name,
 * fsynced and renamed, then the directory fsynced, so a kill -9 at any instant leaves
 * whole batch files only. A lost last batch (at most 100 ms of completions) costs only
 * re-running those iterations: loads are made idempotent per run by the load ledger.
 * Lock order: c->mu is a leaf. */
#ifndef ETL_CHECKPOINT_H
#define ETL_CHECKPOINT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct ckpt ckpt;

/* Start recording into run_path/checkpoints/ (created). NULL with msg on failure. */
ckpt *ckpt_open(const char *run_path, char *msg, size_t len);
/* Queue one record (scheduler thread; rec is borrowed). */
void ckpt_record(ckpt *c, const json_t *rec);
/* Write what is queued and stop the writer. Returns false when any batch could not be
 * written (the message says why); frees c. */
bool ckpt_close(ckpt *c, char *msg, size_t len);

/* What a resumed run replays, from every batch of run_path/checkpoints/ in order:
 * done: path -> output; resume: path -> {"state","input"} (the path's last "at" or
 * "fail" record). NEW references; both empty when there are no checkpoints. */
typedef struct ckpt_replay {
    json_t *done;
    json_t *resume;
} ckpt_replay;
bool ckpt_load(const char *run_path, ckpt_replay *out, char *msg, size_t len);
void ckpt_replay_free(ckpt_replay *r);

#endif
