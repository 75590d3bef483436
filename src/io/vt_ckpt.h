/* vt_ckpt.h - checkpoints: model parameters and buffers, optimizer state,
 * training position, RNG/loader states, the resolved config and the class
 * names in one HDF5 file. docs/checkpoint.md is the reference of the file
 * layout; the model group is a PyTorch state_dict as it stands:
 *
 *     sd = {k: torch.from_numpy(v[...]) for k, v in f['model'].items()}
 *
 * ==== Saving ============================================================
 *
 *     vt_ckpt ck = {0};
 *     ck.store = &model.store;  ck.optim = &opt;     (optim may be NULL)
 *     ck.pos.epoch = epoch;  ck.pos.step = opt.step;  ...
 *     vt_ckpt_add_state(&ck, "init", (uint64_t[]){seed, counter}, 2);
 *     ck.config = text;  ck.classes = names;  ck.n_classes = n;
 *     ck.model_name = model.name;
 *     if (vt_ckpt_save("runs/x/last.h5", &ck, err, sizeof err)) ...
 *
 * vt_ckpt_save is atomic: it writes "<dir>/.<base>.tmp.<pid>", flushes
 * and closes it (every HDF5 return checked, so a short write or a full
 * disk is an error), fsyncs it, renames it over the target and fsyncs the
 * directory. A crash at any moment leaves either the old file or the new
 * one under the target name, never a mixture; at worst a stray temp file,
 * which the next save to the same target removes once its writer's pid is
 * gone (a temp file whose pid still runs is never touched). On failure the
 * temp file is removed and an existing target is untouched; the one
 * exception is a failed fsync of the directory after the rename, reported
 * as "saved, but syncing directory .. failed" with the new file in place.
 * When to save (last.h5 every N steps, best.h5, epoch_NNN.h5) is the
 * trainer's choice. HDF5's file locking is off for checkpoint files, so a
 * killed writer never leaves a file others cannot open.
 *
 * ==== Loading ===========================================================
 *
 * vt_ckpt_load restores exactly what vt_ckpt_save wrote (resume): every
 * store entry must be in the checkpoint with the same shape and the
 * checkpoint must hold no other model entry; with an optimizer, its type
 * and state names must match and every trainable param's state must be
 * present; every state slot the caller lists must be present (a file
 * without /train, e.g. weights exported from PyTorch, gives position 0
 * and best_metric NaN). Everything
 * is checked before anything is read, so an architecture mismatch leaves
 * the targets untouched (a read error in a damaged file may leave them
 * partly overwritten; the caller exits anyway).
 *
 * vt_ckpt_load_partial is [train] init_from: it loads every model entry
 * whose name and shape match, keeps the model's own initialisation for
 * the others and reports each name (loaded, shape mismatch, missing from
 * the checkpoint, unused) through a callback.
 *
 * vt_ckpt_read_info reads only the metadata (config text, class names,
 * position, model name): veval and vpredict default to the config a
 * checkpoint was trained with.
 *
 * ==== Errors ============================================================
 *
 * Every function returns 0 or -1 with one message in err that starts with
 * the file name and gives the first problem (never prints, never exits):
 *
 *   runs/x/last.h5: parameter 'fc8.weight' has shape (487, 4096) in the
 *       checkpoint but (101, 4096) in the model
 *   x.h5: not a vtrain checkpoint (no /vtrain format attribute)
 *   x.h5: cannot open: truncated or damaged HDF5 file
 *
 * HDF5's own error printing is switched off while these functions run.
 * Debian's HDF5 is the serial, non-thread-safe build: do not call these
 * while another thread uses HDF5.
 */
#ifndef VT_CKPT_H
#define VT_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "vt_autograd.h"
#include "vt_optim.h"

/* Written to the root attribute "vtrain"; files with a larger number are
 * refused. Bump it when the layout changes incompatibly. */
#define VT_CKPT_FORMAT 1

/* Named uint64 arrays: RNG states ("init", "dropout": seed and counter)
 * and loader positions ("data": seed, epoch, batch). */
#define VT_CKPT_MAX_STATES 8
#define VT_CKPT_MAX_NAME 32 /* state names: letters, digits, '_' */

typedef struct {
    char name[VT_CKPT_MAX_NAME];
    /* Save: n words to write. Load: if v is set, the stored array must
     * have exactly n words and is read into v; if v is NULL, it is
     * malloc'd (the caller frees it) and n set to the stored count. */
    uint64_t *v;
    size_t n;
} vt_ckpt_state;

/* Training position; the trainer defines the meaning, this module only
 * stores it. Suggested: epoch = epochs completed, step = optimizer steps
 * (opt.step), epoch_step = steps into the current epoch, samples = clips
 * seen, best_metric = best validation accuracy (NaN: none yet) reached
 * at best_epoch (-1: none). */
typedef struct {
    int64_t epoch, step, epoch_step, samples;
    double best_metric;
    int64_t best_epoch;
} vt_ckpt_pos;

typedef struct {
    vt_store *store;          /* params and buffers (required) */
    vt_optim *optim;          /* NULL: no optimizer state */
    vt_ckpt_pos pos;          /* save: written; load: filled */
    vt_ckpt_state state[VT_CKPT_MAX_STATES];
    int n_states;
    /* Save only (load them with vt_ckpt_read_info). NULL = empty. */
    const char *config;       /* resolved config text (vt_ini_serialize) */
    const char *const *classes;
    int n_classes;
    const char *model_name;
} vt_ckpt;

/* Appends a state slot (name copied, v borrowed). -1 when the table is
 * full or the name is invalid: a programming error, message in neither
 * case, so callers may VT_ASSERT on it. */
int vt_ckpt_add_state(vt_ckpt *ck, const char *name, uint64_t *v, size_t n);
vt_ckpt_state *vt_ckpt_find_state(vt_ckpt *ck, const char *name);

/* Atomic save (see above). Also removes stale temp files of this target
 * left by writers that no longer run. */
int vt_ckpt_save(const char *path, const vt_ckpt *ck, char *err,
                 size_t errlen);

/* Exact restore into ck->store (and ck->optim's state and step, when set),
 * ck->pos and the listed states. */
int vt_ckpt_load(const char *path, vt_ckpt *ck, char *err, size_t errlen);

/* ==== init_from ========================================================= */

typedef enum {
    VT_CKPT_LOADED,   /* name and shape match: value loaded */
    VT_CKPT_SHAPE,    /* same name, other shape: model's init kept */
    VT_CKPT_MISSING,  /* model entry absent from the checkpoint: init kept */
    VT_CKPT_UNUSED,   /* checkpoint entry the model does not have */
} vt_ckpt_status;

/* detail: for VT_CKPT_SHAPE "(487, 4096) in the checkpoint, (101, 4096)
 * in the model"; for the others the shape. Called in store order, then
 * the unused entries in name order. */
typedef void (*vt_ckpt_report_fn)(void *ud, const char *name,
                                  vt_ckpt_status st, const char *detail);

typedef struct {
    int loaded, shape, missing, unused;
} vt_ckpt_partial_result;

/* Loads the /model entries of path whose name and shape match into store;
 * optimizer state, position and states are ignored. report may be NULL;
 * res may be NULL. Fails when the file is not a readable vtrain
 * checkpoint, or when not a single entry matches (surely the wrong file). */
int vt_ckpt_load_partial(const char *path, vt_store *store,
                         vt_ckpt_report_fn report, void *ud,
                         vt_ckpt_partial_result *res, char *err,
                         size_t errlen);
/* "loaded", "skipped (shape differs)", "not in checkpoint (initialised)",
 * "unused (not in model)". */
const char *vt_ckpt_status_name(vt_ckpt_status st);

/* ==== Metadata ========================================================== */

typedef struct {
    int format;
    char *model_name;         /* "" when not saved */
    char *config;             /* "" when not saved */
    char **classes;
    int n_classes;
    vt_ckpt_pos pos;
    char *optim_type;         /* "sgd", "adam", "adamw"; NULL: no optimizer */
    int64_t optim_step;
    int n_params;             /* entries in /model */
} vt_ckpt_info;

/* Checks the file as vt_ckpt_load does (opens, marker, format) and reads
 * the metadata; nothing is matched against a model. */
int vt_ckpt_read_info(const char *path, vt_ckpt_info *info, char *err,
                      size_t errlen);
void vt_ckpt_info_free(vt_ckpt_info *info);

#endif
