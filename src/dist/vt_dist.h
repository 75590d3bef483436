/* vt_dist.h - data-parallel training over MPI: N processes (ranks) train
 * one model, each on its share of every global batch, and average their
 * gradients before every (identical) optimizer step. docs/distributed.md
 * describes launching and what is and is not synchronised.
 *
 * Built with MPI when meson finds it (option -Dmpi=auto|enabled|disabled);
 * otherwise, and whenever a program was not started by an MPI launcher
 * (mpirun, mpiexec, srun), every function below behaves as for one process:
 * rank 0 of 1, collectives are identities, so the same code paths run.
 *
 * Failures: library code returns statuses, but a failed MPI call leaves the
 * ranks out of step and nothing can go on. Such a failure prints one line
 * naming the rank and the call and ends the whole job (MPI_Abort); every
 * file rank 0 wrote before stays valid (checkpoints are written atomically).
 *
 * Typical use (src/run/train.c):
 *
 *     vt_dist_init("vtrain", err, n);        in main, before anything else
 *     r = vt_dist_reducer_new(&store);
 *     per step:  forward on the local share;  vt_dist_sum_double(control)
 *                vt_dist_reducer_attach(r, &ctx);
 *                vt_backward_seed(&ctx, loss, &weight);  // buckets start here
 *                vt_dist_reducer_finish(r, &ctx);        // gradients summed
 *                vt_optim_step(...);  vt_dist_average_buffers(r);
 *     vt_dist_finalize();                    in main, before returning
 */
#ifndef VT_DIST_H
#define VT_DIST_H

#include <stddef.h>

#include "vt_autograd.h"

/* ==== Processes ========================================================= */

/* Joins the MPI job when started by an MPI launcher (Open MPI's mpirun,
 * MPICH's mpiexec, Slurm's srun: recognised by their environment), else
 * does nothing. VT_DIST=0 in the environment forces one process. -1 with a
 * message when MPI is needed but missing or fails to start. */
int vt_dist_init(const char *prog, char *err, size_t errlen);
/* Leaves the job (MPI_Finalize); every rank must call it. */
void vt_dist_finalize(void);
int vt_dist_rank(void);
int vt_dist_size(void);
/* Ranks running on this machine (1 without MPI). */
int vt_dist_local_size(void);
/* 1 when this program was built with MPI. */
int vt_dist_compiled(void);
/* Compute threads per rank when the config says 0 ("all cores"): the
 * machine's cores divided among the ranks on it, and no more than the
 * cores this process may run on (a launcher's binding), at least 1. */
int vt_dist_default_threads(void);
/* Ends every rank of the job with exit status `code` (exit() alone with
 * one process). */
void vt_dist_abort(int code);
/* For a signal handler (async-signal-safe). A rank that dies leaves the
 * others blocked until the launcher ends them: mpirun (and srun with
 * --kill-on-bad-exit) sends SIGTERM, then SIGKILL. On SIGTERM, rank 0 of
 * a job of several ranks writes one line saying so to stderr. */
void vt_dist_signal_note(int sig);

/* ==== Collectives ======================================================= */

/* In place over all ranks; with one rank they return at once. Every rank
 * must call the same collectives in the same order. */
void vt_dist_sum_double(double *x, size_t n);
void vt_dist_sum_long(long *x, size_t n);
void vt_dist_sum_float(float *x, size_t n);
void vt_dist_bcast(void *x, size_t bytes, int root);
/* Agreement on a failure that some ranks may have met alone: each rank
 * passes its status (0 = fine, > 0 = failed) with its message in err.
 * Returns the status of the lowest failed rank (0 when none failed) and
 * puts that rank's message, prefixed with "rank R: " when it is not rank 0,
 * into err on every rank. */
int vt_dist_agree(int status, char *err, size_t errlen);

/* ==== Gradient averaging ================================================ */

/* Trainable gradients are cut into buckets of about VT_BUCKET_MB
 * megabytes (environment; default 2) in reverse parameter order, the order
 * backward completes them. A bucket's allreduce (MPI_Iallreduce, sum)
 * starts as soon as its last gradient is final and every earlier bucket
 * has started, while backward goes on; the assignment depends on the
 * parameter layout only, never on timing, so every run sums the same
 * numbers the same way. VT_DIST_OVERLAP=0 starts every bucket after
 * backward instead (for measuring what the overlap saves). */
typedef struct vt_dist_reducer vt_dist_reducer;

vt_dist_reducer *vt_dist_reducer_new(vt_store *s);
void vt_dist_reducer_free(vt_dist_reducer *r);
/* Hooks the reducer into c's next backward sweep (c->on_grad_ready). */
void vt_dist_reducer_attach(vt_dist_reducer *r, vt_ctx *c);
/* Starts what has not started, waits for every bucket and unhooks: each
 * gradient is then the sum over ranks of what each rank's backward left
 * in it (seed the backward with share / global batch to get the mean). */
void vt_dist_reducer_finish(vt_dist_reducer *r, vt_ctx *c);
/* Batch-norm running statistics ("*running_mean", "*running_var"; each
 * rank's come from its own share) replaced by their mean over ranks, so
 * every rank, and so any rank's checkpoint, holds the same values. */
void vt_dist_average_buffers(vt_dist_reducer *r);
/* Gradient floats summed per step, and buckets. */
size_t vt_dist_reducer_floats(const vt_dist_reducer *r);
int vt_dist_reducer_buckets(const vt_dist_reducer *r);

/* ==== Timing ============================================================ */

typedef struct {
    double blocked_s;   /* time spent inside blocking MPI calls and waits */
    double grad_wait_s; /* of which waiting for gradient buckets */
    double blocked_cpu_s; /* CPU time of the calling thread in those calls */
    long calls;         /* collectives started */
} vt_dist_stats;

void vt_dist_stats_get(vt_dist_stats *st);

#endif
