/* Checkpoints: what a resumed run needs to skip work that already completed.
 *
 * scheduler --ckpt_record--> writer thread --> RUN/checkpoints/NNNNNNNN.jsonl
 * resume: ckpt_load(RUN) --> replay tables --> scheduler
 *
 * Records (JSON objects, one per line):
 *   {"k":"dones","path":P,"state":S,"caught":B,"items":{"i":V,...}}
 *                                             iterations or branches P/S[i] completed
 *                                             with output V (caught: only because a
 *                                             Catch handled an error in them: not
 *                                             replayed)
 *   {"k":"done","path":P/S[i],"output":V,"caught":B}  the same for one (read only)
 *   {"k":"at","path":P,"state":S,"input":V}   path P entered the Map/Parallel state S with
 *                                             raw input V (where P resumes)
 *   {"k":"fail","path":P,"state":S,"input":V} path P failed at state S (resumes there)
 * Paths name frames: "" is the top level, P/S[i] the i-th iteration or branch of state S
 * entered by path P.
 *
 * DESIGN: the scheduler thread only queues a record: a few words and references to the
 * JSON values (path, input, output), which the engine never changes once made. Every
 * 100 ms while records come, the writer thread makes the JSON lines of what is queued
 * (on the other core, while the run goes on), reading the values but never touching
 * their reference counts, and writes them as a batch: a new file written under a
 * temporary name, fsynced and renamed, then the directory fsynced, so a kill -9 at any
 * instant leaves whole batch files only. It hands the records back, and the scheduler
 * thread drops the references at its next records or at ckpt_close, so that a value is
 * only freed after the writer is done with it (the queue's mutex orders the two). A lost
 * last batch (at most 100 ms of completions) costs only re-running those iterations:
 * loads are made idempotent per run by the load ledger.
 * At the end of a run, what is queued is written only when a resume may read it: a run
 * that succeeded is never resumed, so its last records are dropped (a kill -9 just
 * before the end would have lost as much). The writer thread starts only when it has
 * work: the first batch due, or the scheduler about to wait with records queued; a run
 * that succeeds sooner never starts it. Records are queued in blocks, which go back and
 * forth between the threads and are used again. Lock order: c->mu is a leaf. */
#ifndef ETL_CHECKPOINT_H
#define ETL_CHECKPOINT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ckpt ckpt;

/* Start recording into run_path/checkpoints/ (made with the first batch: a run that
 * writes none has none). NULL with msg on failure. */
ckpt *ckpt_open(const char *run_path, char *msg, size_t len);
/* Queue a "done" record (scheduler thread): the iteration or branch `index` of state
 * `state` (a name that outlives c), entered by the frame at parent_path (a JSON string),
 * completed with output. Takes its own references. */
void ckpt_done(ckpt *c, json_t *parent_path, const char *state, long long index,
               json_t *output, bool caught);
/* Queue an "at" or a "fail" record of the frame at path (scheduler thread). */
typedef enum { CKPT_AT, CKPT_FAIL } ckpt_kind;
void ckpt_state(ckpt *c, ckpt_kind kind, json_t *path, const char *state, json_t *input);
/* Queue the records gathered so far (the scheduler thread gathers a few before it takes
 * the queue's lock), drop the references of those already written, and start the writer
 * if it has not started yet: the scheduler calls it before it waits for work. */
void ckpt_flush(ckpt *c);
/* The scheduler between two rounds of work, at now_ns (CLOCK_MONOTONIC): once the first
 * batch is due, ckpt_flush at every round that gathered records, so that a run that
 * never waits has its batches too. Until then, and in a run that ends sooner, the writer
 * thread is not even started. */
void ckpt_tick(ckpt *c, int64_t now_ns);
/* The run ended (the scheduler's thread, after sched_run): the writer writes what is
 * queued when write_rest (a resume may read it: the run failed, was interrupted, or
 * caught errors), else drops it, and stops; this does not wait (the end of the run goes
 * on meanwhile); ckpt_close then waits. Only the first call counts. */
void ckpt_end(ckpt *c, bool write_rest);
/* ckpt_end(c, true) unless ended already, then wait for the writer to stop and drop the
 * records' references (the scheduler's thread). Returns false when any batch could not
 * be written (the message says why); frees c. */
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
