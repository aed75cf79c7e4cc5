/* Leftovers of a dead run: processes that `exec` programs started and that outlived a
 * kill -9 of etlrun (the programs themselves die with it, see exec.h). exec_run marks
 * every program with ETLRUN_RUN_ID and ETLRUN_PIPELINE in its environment, which its
 * children inherit; the next run of the pipeline, holding the lock, finds them by it.
 *
 * Main thread, before the run starts. Linux only (/proc). */
#ifndef ETL_ORPHANS_H
#define ETL_ORPHANS_H

#include <stddef.h>

/* Kill (SIGKILL, whole process groups too) every process whose environment holds
 * ETLRUN_RUN_ID=<one of ids> and, when pipeline is not NULL, ETLRUN_PIPELINE=<pipeline>
 * (run ids are unique per pipeline only: --name nightly may name runs of several) --
 * left over by a dead etlrun attempt. A group is killed when its leader matched; our
 * own process and group are spared. Scans /proc again until no match remains (at most
 * ~0.5 s: a dying shell may still fork). Returns how many processes were signalled,
 * and in msg "PID (COMMAND), ..." for them (cut with "..." when longer than len);
 * -1 with the reason in msg when /proc cannot be read. */
int orphans_kill(const char *pipeline, const char *const *run_ids, size_t n, char *msg,
                 size_t len);

#endif
