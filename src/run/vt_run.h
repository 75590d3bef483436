/* vt_run.h - a training run as the command-line tools see it: the run
 * config ([model] + layers + [data] [train] [optim] [schedule]), the
 * training loop with checkpoints and exact resume, and evaluation
 * (clip/video accuracy over K clips x crops per video).
 *
 * Library code: returns 0 / -1 with one message in err; the tools in
 * train/ print it and choose the exit status (2 for config errors). */
#ifndef VT_RUN_H
#define VT_RUN_H

#include <stdint.h>
#include <stdio.h>

#include "vt_data.h"
#include "vt_ini.h"
#include "vt_model.h"
#include "vt_optim.h"

/* ==== Run config ======================================================== */

typedef struct {
    /* [train] */
    int epochs;            /* passes over the training list */
    int64_t steps;         /* > 0: stop after this many steps instead */
    int batch_size;
    double lr;
    float label_smoothing;
    char out_dir[512];
    int val_every;         /* epochs between validations (0: only at the end) */
    int val_clips;         /* clips per video when validating */
    int64_t checkpoint_every; /* steps between last.h5 saves (0: epoch ends) */
    int save_epochs;       /* 1: also epoch_NNN.h5 at every epoch end */
    char init_from[512];
    int threads;           /* 0: every core */
    uint64_t seed;         /* data order, augmentation, dropout */
    int log_every;         /* steps between metric rows */
    int bad_loss_limit;    /* unused; NaN/Inf stops at once */
} vt_train_config;

typedef struct {
    vt_ini ini;
    vt_schema_buf schema;
    vt_model model;
    vt_train_config train;
    vt_data_config data;
    char data_root[512], data_splits[512], data_store[512], data_mean_file[512];
    vt_optim_config optim;
    vt_schedule sched;
    int has_data;          /* a [data] section */
} vt_run;

/* Every section a run config may hold. */
void vt_run_schema(vt_schema_buf *out);
/* Markdown tables of every section and key (docs/config.md embeds them;
 * a test keeps the two equal). */
void vt_run_print_reference(FILE *f);

/* Parses (from a file, or from text a checkpoint stored, when text is
 * set: then path names it in messages), applies the overrides, builds the
 * model and reads [train], [data] and [optim]. */
int vt_run_load(vt_run *r, const char *path, const char *text,
                const char *const *sets, int n_sets, char *err, size_t errlen);
void vt_run_free(vt_run *r);
/* Training only: reads [schedule] once the run's total step count is
 * known (cosine's default t_max), then rejects keys no reader used. */
int vt_run_finish(vt_run *r, int64_t total_steps, char *err, size_t errlen);

/* ==== Evaluation ======================================================== */

typedef struct {
    int n_classes;
    long clips, videos;
    double clip_top1, clip_top5;
    double video_top1, video_top5;
    double mean_class_acc;        /* mean over classes of video accuracy */
    double *class_acc;            /* [n_classes]; NaN for absent classes */
    long *confusion;              /* [n_classes * n_classes] rows: true */
    int *video_pred;              /* [videos] predicted label */
    double loss;                  /* mean clip cross-entropy */
    double seconds;
} vt_eval_result;

/* Runs the model (eval mode, no grad) over every test view of the loader
 * (opened in VT_TEST mode) and averages class probabilities per video.
 * progress: called after each batch with (batches done, batches in all),
 * may be NULL. */
int vt_evaluate(vt_model *m, vt_loader *l, vt_eval_result *res,
                void (*progress)(void *ud, long done, long total), void *ud,
                char *err, size_t errlen);
void vt_eval_result_free(vt_eval_result *r);

/* ==== Training ========================================================== */

typedef struct {
    const char *config_path;
    const char *const *sets;
    int n_sets;
    const char *resume;   /* checkpoint to continue from, or NULL */
    int64_t stop_after;   /* > 0: stop (with a checkpoint) after this many
                             steps of this invocation, as if interrupted */
    int quiet;
} vt_train_opts;

/* Set from a signal handler: the loop finishes its step, saves last.h5
 * and returns VT_TRAIN_INTERRUPTED. */
extern volatile int vt_train_stop_requested;

enum { VT_TRAIN_DONE = 0, VT_TRAIN_INTERRUPTED = 1, VT_TRAIN_FAILED = -1,
       VT_TRAIN_CONFIG_ERROR = -2 };

int vt_train_run(const vt_train_opts *o, char *err, size_t errlen);

/* ==== Output helpers ==================================================== */

/* Writes an SVG line chart of up to 4 series against x (atomically). */
typedef struct {
    const char *name;
    const double *y;
    int n;
    const double *x;
} vt_series;
int vt_svg_lines(const char *path, const char *title, const char *xlabel,
                 const vt_series *s, int n_series, char *err, size_t errlen);
/* Confusion matrix as an SVG heat map. */
int vt_svg_confusion(const char *path, const long *conf, int n,
                     char *const *names, char *err, size_t errlen);
/* Writes text to path atomically (temp file + fsync + rename). */
int vt_write_file_atomic(const char *path, const char *text, size_t len,
                         char *err, size_t errlen);
/* mkdir -p; -1 with a message when it cannot be created or written. */
int vt_mkdirs(const char *path, char *err, size_t errlen);

#endif
