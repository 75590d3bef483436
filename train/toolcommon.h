/* toolcommon.h - what veval and vpredict share: a model restored from a
 * checkpoint together with the run config it was trained with (or one the
 * user gives), JSON and CSV text, and a progress line on a TTY.
 *
 * Exit statuses follow the tools' convention: 2 for usage and config
 * errors (bad options, a missing file named on the command line, a config
 * that does not describe the checkpoint's model), 1 for runtime failures
 * (a damaged or foreign checkpoint, unreadable data). */
#ifndef VT_TOOLCOMMON_H
#define VT_TOOLCOMMON_H

#include <stdio.h>

#include "vt_ckpt.h"
#include "vt_run.h"

/* ==== A model from a checkpoint ========================================= */

typedef struct {
    vt_ckpt_info info;
    vt_run run;
    int have_info, have_run;
    char config_name[1100]; /* "<ckpt>:config" or the --config path */
    char **classes;         /* [run.model.classes]: the checkpoint's names,
                               or "class N" when it has none that fit */
} vt_tool_model;

/* Reads the checkpoint's metadata, loads the run config (the checkpoint's
 * own text, or `config` when not NULL) with the overrides applied, builds
 * the model, restores its weights (exact match) and sets the thread count
 * from [train] threads. Returns 0, or the exit status with one message in
 * err (no program name prefix). */
int vt_tool_model_open(vt_tool_model *tm, const char *ckpt, const char *config,
                       const char *const *sets, int n_sets, char *err,
                       size_t errlen);
void vt_tool_model_close(vt_tool_model *tm);

/* ==== Arguments ========================================================= */

/* Strict decimal int in [lo, hi]; -1 when s is anything else. */
int vt_tool_parse_int(const char *s, long lo, long hi, int *out);

/* A growable list of "SECTION.KEY=VALUE" overrides (pointers borrowed,
 * or owned when made by vt_tool_sets_addf). */
typedef struct {
    const char **v;
    char **owned;
    int n, n_owned, cap;
} vt_tool_sets;
void vt_tool_sets_add(vt_tool_sets *s, const char *set);
void vt_tool_sets_addf(vt_tool_sets *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void vt_tool_sets_free(vt_tool_sets *s);

/* ==== Text output ======================================================= */

/* A JSON string literal, escaped. */
void vt_json_str(FILE *f, const char *s);
/* A JSON number; NaN and infinities (not JSON) become null. */
void vt_json_num(FILE *f, double v);
/* A CSV field, quoted when it holds a comma, quote or line break. */
void vt_csv_field(FILE *f, const char *s);

/* An in-memory text file (open_memstream) written out atomically. */
typedef struct {
    FILE *f;
    char *buf;
    size_t len;
} vt_memfile;
int vt_memfile_open(vt_memfile *m);
/* Closes the stream and writes its text to path ("-": stdout). */
int vt_memfile_commit(vt_memfile *m, const char *path, char *err, size_t errlen);

/* ==== Progress ========================================================== */

/* One line on stderr, redrawn in place, only when stderr is a TTY. */
typedef struct {
    int tty, shown;
    double last, t0;
} vt_progress;
void vt_progress_init(vt_progress *p);
/* Redraws at most 5 times a second unless force. */
void vt_progress_show(vt_progress *p, int force, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Erases the line so that a message can be printed. */
void vt_progress_clear(vt_progress *p);
double vt_now(void);

#endif
