/* vt_optim.h - SGD, Adam and AdamW over a vt_store, gradient clipping by
 * global norm, and learning-rate schedules; all with torch.optim semantics.
 *
 * ==== Training step =====================================================
 *
 *     vt_optim opt;  vt_schedule sched;          (from [optim], [schedule])
 *     vt_optim_init(&opt, &store, &cfg, err, n); (after vt_store_finalize and
 *                                                 after setting trainable /
 *                                                 lr_mult of every param)
 *     each step:
 *         vt_store_zero_grad(&store);  forward;  backward;
 *         if (cfg.clip_grad_norm > 0)
 *             vt_optim_clip_grad_norm(&opt, cfg.clip_grad_norm);
 *         vt_optim_step(&opt, vt_schedule_lr(&sched, opt.step));
 *
 * A schedule is a pure function of the step count, so resuming from a
 * checkpoint (which restores opt.step) continues the same lr sequence.
 *
 * ==== Parameters ========================================================
 *
 * Only params with trainable != 0 are read or written: frozen params and
 * buffers (BN running stats) are untouched, their gradients ignored, and
 * they do not count in the clipping norm. Param p uses lr * p->lr_mult, as
 * a torch param group with that lr would (AdamW's decoupled decay uses it
 * too: p *= 1 - lr * lr_mult * weight_decay). Weight decay applies to every
 * trainable param, biases and BN affine params included (torch's default).
 * Changing trainable or lr_mult after vt_optim_init requires
 * vt_optim_refresh(). The kernels are flat OpenMP loops over fixed blocks
 * of VT_OPTIM_BLOCK elements of one param, so results are independent of
 * the thread count (the clipping norm too: per-block partial sums in
 * double, added in block order).
 *
 * ==== Update rules (element-wise, fp32, in torch 1.13's operation order) ==
 *
 *   g = grad;  lr_p = lr * lr_mult;  t = step count after this step (1, 2..)
 *   SGD:   if weight_decay: g = g + wd * p
 *          if momentum:     b = (t == 1) ? g : momentum * b + (1 - dampening) * g
 *                           g = nesterov ? g + momentum * b : b
 *          p = p - lr_p * g
 *   Adam:  if weight_decay: g = g + wd * p              (L2, torch.optim.Adam)
 *   AdamW: p = p * (1 - lr_p * wd)                      (decoupled)
 *   both:  m = beta1 * m + (1 - beta1) * g
 *          v = beta2 * v + (1 - beta2) * g * g
 *          if amsgrad: vmax = max(vmax, v), v used below is vmax
 *          p = p - lr_p / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 *
 * ==== State, for checkpoints ============================================
 *
 * opt.step (int64, torch's state['step']) and n_state flat blocks, each
 * store->total floats parallel to store->data, so param i's slice is
 * state[k] + store->p[i].offset, numel elements. Names (torch's state keys):
 *
 *   SGD with momentum != 0   state[0] "momentum_buffer"
 *   SGD without momentum     (none)
 *   Adam / AdamW             state[0] "exp_avg", state[1] "exp_avg_sq",
 *                            state[2] "max_exp_avg_sq" (amsgrad only)
 *
 * A checkpoint stores, for every trainable param P and every k,
 * "optim/<P>.<state_name[k]>" (P's shape), e.g. "optim/conv1a.weight.exp_avg",
 * plus "optim/step"; vt_optim_state_name() and vt_optim_param_state() give
 * the names and slices. Restoring those values and opt.step into a fresh
 * optimizer with the same config continues bit-identically.
 * Frozen params keep zero state. (Unlike torch, a param that becomes
 * trainable mid-run starts from zero state rather than a fresh one: for SGD
 * its first momentum step is then (1 - dampening) * g, not g.)
 *
 * ==== Config: [optim] ===================================================
 *
 *   key             type    applies to     default          meaning
 *   type            string  -              required         sgd | adam | adamw
 *   momentum        float   sgd            0                momentum factor, >= 0
 *   dampening       float   sgd            0                dampening for momentum, >= 0
 *   nesterov        bool    sgd            0                Nesterov momentum (needs
 *                                                           momentum > 0, dampening = 0)
 *   weight_decay    float   all            0; adamw 0.01    >= 0: L2 term added to the
 *                                                           gradient (sgd, adam) or
 *                                                           decoupled decay (adamw)
 *   beta1           float   adam, adamw    0.9              in [0, 1)
 *   beta2           float   adam, adamw    0.999            in [0, 1)
 *   eps             float   adam, adamw    1e-8             >= 0, added to sqrt(v)
 *   amsgrad         bool    adam, adamw    0                use max of v over steps
 *   clip_grad_norm  float   all            0 (off)          >= 0: clip the global L2
 *                                                           norm of all gradients
 *
 * Both sections are optional: without [optim] the trainer uses
 * vt_optim_config_default(VT_OPTIM_SGD) (plain SGD), without [schedule] a
 * constant lr; a present [optim] must give type. The defaults are torch's.
 * The base learning rate is not here: it is the trainer's ([train] lr) and
 * reaches the optimizer through the schedule.
 * A key that does not apply to the chosen type is an error (e.g. momentum
 * with adam); on the command line, "--set optim.momentum=" removes one.
 *
 * ==== Config: [schedule] ================================================
 *
 * All step counts are optimizer steps; lr(t) is the lr of step t = 0, 1, ..
 *
 *   key           type     applies to        default    meaning
 *   type          string   -                 constant   constant | step | multistep | cosine
 *   step_size     int      step              required   > 0
 *   gamma         float    step, multistep   0.1        > 0, decay factor
 *   milestones    ints     multistep         required   > 0 each, e.g. 3000, 6000 (at most
 *                                                       VT_SCHED_MAX_MILESTONES; a repeated
 *                                                       milestone applies gamma twice)
 *   t_max         int      cosine            see below  > 0, half period in steps
 *   eta_min       float    cosine            0          >= 0, lr at t_max
 *   warmup        int      all               0          >= 0, linear warmup steps
 *   warmup_start  float    warmup > 0        1/3        in (0, 1], first warmup lr / lr
 *
 * With base lr L, warmup W and s = t - W (the main schedule starts after
 * the warmup, as torch's SequentialLR([LinearLR, main], milestones=[W])):
 *
 *   t < W:       L * (warmup_start + (1 - warmup_start) * t / W)   (LinearLR)
 *   constant:    L
 *   step:        L * gamma^floor(s / step_size)                    (StepLR)
 *   multistep:   L * gamma^(number of milestones <= s)             (MultiStepLR)
 *   cosine:      eta_min + (L - eta_min) * (1 + cos(pi * s / t_max)) / 2
 *                                                      (CosineAnnealingLR)
 *
 * Past t_max the cosine rises again, as torch's does; t_max defaults to the
 * run's total steps minus warmup when the trainer passes them (else it is
 * required). lr_mult scales the scheduled lr, eta_min included.
 */
#ifndef VT_OPTIM_H
#define VT_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "vt_autograd.h"
#include "vt_ini.h"

/* ==== Optimizers ======================================================== */

typedef enum { VT_OPTIM_SGD, VT_OPTIM_ADAM, VT_OPTIM_ADAMW } vt_optim_type;

typedef struct {
    vt_optim_type type;
    double weight_decay;
    double momentum, dampening; /* sgd */
    int nesterov;
    double beta1, beta2, eps;   /* adam, adamw */
    int amsgrad;
    double clip_grad_norm;      /* 0 = off; applied by the caller */
} vt_optim_config;

/* Torch's defaults for type (weight_decay 0.01 for adamw, else 0). */
void vt_optim_config_default(vt_optim_config *cfg, vt_optim_type type);
/* The combinations torch rejects (nesterov without momentum, ...). */
int vt_optim_config_check(const vt_optim_config *cfg, char *err, size_t errlen);

/* Elements per work block: fixed, so sums do not depend on the threads. */
#define VT_OPTIM_BLOCK 8192

typedef struct {
    size_t off, n;   /* element range in the store's blocks */
    float lr_mult;
} vt_optim_block;

typedef struct {
    vt_optim_config cfg;
    vt_store *store;
    int64_t step;            /* steps taken */
    int n_state;
    float *state[3];         /* store->total floats each; see above */
    /* Work split over trainable params (vt_optim_refresh). */
    vt_optim_block *blk;
    int n_blk;
    double *partial;         /* per-block sums of the norm */
} vt_optim;

/* Zeroed state, step 0. Fails (message in err) on an invalid config. */
int vt_optim_init(vt_optim *o, vt_store *s, const vt_optim_config *cfg,
                  char *err, size_t errlen);
void vt_optim_free(vt_optim *o);
/* Recompute the work split after changing trainable or lr_mult. */
void vt_optim_refresh(vt_optim *o);

/* One update of every trainable param with learning rate lr (times each
 * param's lr_mult); increments o->step first. */
void vt_optim_step(vt_optim *o, double lr);

/* torch.nn.utils.clip_grad_norm_(trainable params, max_norm, 2): the total
 * L2 norm of all trainable gradients (returned, before clipping); when it
 * exceeds max_norm, every gradient is scaled by max_norm / (norm + 1e-6).
 * A non-finite norm is returned as is (gradients scaled by 0 or NaN, as
 * torch does); the caller decides whether to skip the step. */
double vt_optim_clip_grad_norm(vt_optim *o, double max_norm);
/* The norm alone, gradients untouched. */
double vt_optim_grad_norm(vt_optim *o);

/* "exp_avg" etc. for k < o->n_state. */
const char *vt_optim_state_name(const vt_optim *o, int k);
/* Param idx's slice of state k (numel of the param). */
float *vt_optim_param_state(vt_optim *o, int k, int idx);

/* [optim] section (module-provided schema; add it to the trainer's). */
extern const vt_ini_section_schema vt_optim_ini_schema;
/* Reads [optim] (s from vt_ini_find(c, "optim"); must not be NULL).
 * Errors point at the offending key. */
int vt_optim_config_from_ini(const vt_ini *c, vt_ini_section *s,
                             vt_optim_config *cfg, char *err, size_t errlen);

/* ==== Learning-rate schedules =========================================== */

typedef enum {
    VT_SCHED_CONSTANT,
    VT_SCHED_STEP,
    VT_SCHED_MULTISTEP,
    VT_SCHED_COSINE,
} vt_sched_type;

#define VT_SCHED_MAX_MILESTONES 64

typedef struct {
    vt_sched_type type;
    double lr;                  /* base lr L */
    int step_size;              /* step */
    double gamma;               /* step, multistep */
    int milestones[VT_SCHED_MAX_MILESTONES]; /* multistep, ascending */
    int n_milestones;
    int t_max;                  /* cosine */
    double eta_min;
    int warmup;                 /* 0 = none */
    double warmup_start;        /* (0, 1] */
} vt_schedule;

/* A constant schedule at lr with torch's defaults for the other fields
 * (gamma 0.1, warmup_start 1/3). */
void vt_schedule_default(vt_schedule *s, double lr);
/* Ranges and required fields (also sorts milestones). */
int vt_schedule_check(vt_schedule *s, char *err, size_t errlen);
/* lr of step t (t >= 0). Pure: same t, same value. */
double vt_schedule_lr(const vt_schedule *s, int64_t t);

/* [schedule] section. */
extern const vt_ini_section_schema vt_schedule_ini_schema;
/* Reads [schedule] (s may be NULL: constant lr). lr is the base lr;
 * total_steps (0 if unknown) gives t_max's default for cosine. */
int vt_schedule_from_ini(const vt_ini *c, vt_ini_section *s, double lr,
                         int64_t total_steps, vt_schedule *out, char *err,
                         size_t errlen);

#endif
