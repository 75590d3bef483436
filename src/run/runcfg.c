/* runcfg.c - the [train] and [data] sections and loading a whole run
 * config: parse, overrides, model, optimizer, schedule, data. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vt_run.h"

/* ==== Schemas =========================================================== */

static const vt_ini_key TRAIN_KEYS[] = {
    {"epochs", VT_INI_INT, VT_INI_POSITIVE, NULL, "passes over the training list (default 10)"},
    {"steps", VT_INI_INT, VT_INI_NONNEG, NULL, "> 0: train this many steps instead of epochs"},
    {"batch_size", VT_INI_INT, VT_INI_POSITIVE, NULL, "clips per step (default 8)"},
    {"lr", VT_INI_FLOAT, VT_INI_POSITIVE, NULL, "base learning rate (default 0.01)"},
    {"label_smoothing", VT_INI_FLOAT, VT_INI_UNIT, NULL, "cross-entropy label smoothing (default 0)"},
    {"out_dir", VT_INI_STRING, 0, NULL, "run directory (default runs/<model name>)"},
    {"val_every", VT_INI_INT, VT_INI_NONNEG, NULL,
     "epochs between validations on the test list (default 1; 0: only at the end)"},
    {"val_clips", VT_INI_INT, VT_INI_POSITIVE, NULL,
     "clips per video when validating (default [data] clips_per_video)"},
    {"checkpoint_every", VT_INI_INT, VT_INI_NONNEG, NULL,
     "steps between last.h5 saves (default 200; 0: epoch ends only)"},
    {"save_epochs", VT_INI_BOOL, 0, NULL, "1: keep epoch_NNN.h5 at every epoch end"},
    {"init_from", VT_INI_STRING, 0, NULL,
     "checkpoint to fine-tune from: parameters whose name and shape match are loaded"},
    {"threads", VT_INI_INT, VT_INI_NONNEG, NULL, "compute threads (default 0: every core)"},
    {"seed", VT_INI_INT, VT_INI_NONNEG, NULL, "seed of data order, augmentation and dropout (default 1)"},
    {"log_every", VT_INI_INT, VT_INI_POSITIVE, NULL, "steps between metrics rows (default 10)"},
};
const vt_ini_section_schema vt_train_ini_schema = {
    "train", VT_INI_RUN, TRAIN_KEYS, (int)(sizeof TRAIN_KEYS / sizeof TRAIN_KEYS[0]), 0,
    "how long and how to train, where to write the run"};

static const vt_ini_key DATA_KEYS[] = {
    {"root", VT_INI_STRING, 0, NULL, "dataset root: <root>/<Class>/<video> (default data/synth)"},
    {"splits", VT_INI_STRING, 0, NULL, "folder of classInd.txt and the lists (default <root>/ucfTrainTestlist)"},
    {"store", VT_INI_STRING, 0, NULL, "HDF5 clip store made by vprep; used instead of decoding videos"},
    {"split", VT_INI_INT, VT_INI_POSITIVE, NULL, "split number (default 1)"},
    {"clip_len", VT_INI_INT, VT_INI_POSITIVE, NULL, "frames per clip; must equal the model's T"},
    {"frame_stride", VT_INI_INT, VT_INI_POSITIVE, NULL, "take every n-th frame (default 1)"},
    {"fps", VT_INI_FLOAT, VT_INI_NONNEG, NULL, "resample videos to this rate first (default 0: as decoded)"},
    {"resize", VT_INI_SHAPE2, VT_INI_POSITIVE, NULL, "decoded frame size HxW (default 128x171)"},
    {"short_side", VT_INI_INT, VT_INI_POSITIVE, NULL, "instead of resize: shorter side, aspect kept"},
    {"flip", VT_INI_BOOL, 0, NULL, "training: mirror clips left-right with p = 0.5 (default 1)"},
    {"norm", VT_INI_STRING, 0, "meanstd|c3d", "meanstd: (v/255 - mean)/std; c3d: v - 255*mean or the mean cube"},
    {"mean", VT_INI_STRING, 0, NULL, "R,G,B in [0, 1] (default 0.432,0.395,0.376)"},
    {"std", VT_INI_STRING, 0, NULL, "R,G,B (default 0.228,0.221,0.217)"},
    {"mean_file", VT_INI_STRING, 0, NULL, "c3d: HDF5 file with a (3, T, H, W) dataset 'mean'"},
    {"clips_per_video", VT_INI_INT, VT_INI_POSITIVE, NULL, "test clips per video (default 10)"},
    {"crops", VT_INI_INT, VT_INI_POSITIVE, NULL, "test crops per clip: 1 (centre) or 3 (default 1)"},
    {"threads", VT_INI_INT, VT_INI_NONNEG, NULL, "loader threads (default 2; 0: in the training thread)"},
    {"prefetch", VT_INI_INT, VT_INI_POSITIVE, NULL, "batches prepared ahead (default 4)"},
};
const vt_ini_section_schema vt_data_ini_schema = {
    "data", VT_INI_RUN, DATA_KEYS, (int)(sizeof DATA_KEYS / sizeof DATA_KEYS[0]), 0,
    "where the videos are and how clips are sampled"};

void vt_run_schema(vt_schema_buf *out)
{
    static const vt_ini_section_schema *const extra[] = {
        &vt_train_ini_schema, &vt_data_ini_schema, &vt_optim_ini_schema,
        &vt_schedule_ini_schema};
    vt_model_schema(out, extra, 4);
}

/* ==== Loading =========================================================== */

static int read_rgb(vt_run *r, vt_ini_section *s, const char *key, const char *def,
                    float *out, char *err, size_t errlen)
{
    const char *v = vt_ini_str(s, key, def);
    char tail;
    if (sscanf(v, " %f , %f , %f %c", &out[0], &out[1], &out[2], &tail) != 3 ||
        !isfinite(out[0]) || !isfinite(out[1]) || !isfinite(out[2]))
        return vt_ini_errorf(&r->ini, s, key, err, errlen,
                             "expected three numbers R,G,B (e.g. %s), got '%s'", def, v);
    return 0;
}

static void copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static int read_train(vt_run *r, char *err, size_t errlen)
{
    vt_ini_section *s = vt_ini_find(&r->ini, "train");
    vt_train_config *t = &r->train;
    t->epochs = vt_ini_int(s, "epochs", 10);
    t->steps = vt_ini_int(s, "steps", 0);
    t->batch_size = vt_ini_int(s, "batch_size", 8);
    t->lr = vt_ini_float(s, "lr", 0.01);
    t->label_smoothing = (float)vt_ini_float(s, "label_smoothing", 0.0);
    char def_out[300];
    snprintf(def_out, sizeof def_out, "runs/%s", r->model.name);
    copy_str(t->out_dir, sizeof t->out_dir, vt_ini_str(s, "out_dir", def_out));
    t->val_every = vt_ini_int(s, "val_every", 1);
    t->checkpoint_every = vt_ini_int(s, "checkpoint_every", 200);
    t->save_epochs = vt_ini_bool(s, "save_epochs", 0);
    copy_str(t->init_from, sizeof t->init_from, vt_ini_str(s, "init_from", ""));
    t->threads = vt_ini_int(s, "threads", 0);
    t->seed = (uint64_t)vt_ini_int(s, "seed", 1);
    t->log_every = vt_ini_int(s, "log_every", 10);
    if (!t->out_dir[0])
        return vt_ini_errorf(&r->ini, s, "out_dir", err, errlen, "out_dir must not be empty");
    return 0;
}

static int read_data(vt_run *r, char *err, size_t errlen)
{
    vt_ini_section *s = vt_ini_find(&r->ini, "data");
    vt_data_config *d = &r->data;
    r->has_data = s != NULL;
    vt_data_config_default(d);
    copy_str(r->data_root, sizeof r->data_root, vt_ini_str(s, "root", "data/synth"));
    char def_splits[600];
    snprintf(def_splits, sizeof def_splits, "%s/ucfTrainTestlist", r->data_root);
    copy_str(r->data_splits, sizeof r->data_splits, vt_ini_str(s, "splits", def_splits));
    copy_str(r->data_store, sizeof r->data_store, vt_ini_str(s, "store", ""));
    copy_str(r->data_mean_file, sizeof r->data_mean_file, vt_ini_str(s, "mean_file", ""));
    d->root = r->data_root;
    d->splits = r->data_splits;
    d->store = r->data_store[0] ? r->data_store : NULL;
    d->mean_file = r->data_mean_file[0] ? r->data_mean_file : NULL;
    d->split = vt_ini_int(s, "split", 1);
    int T = r->model.in_shape[1];
    d->clip_len = vt_ini_int(s, "clip_len", T);
    if (d->clip_len != T)
        return vt_ini_errorf(&r->ini, s, "clip_len", err, errlen,
                             "clip_len = %d but the model's input has T = %d ([model] input)",
                             d->clip_len, T);
    d->frame_stride = vt_ini_int(s, "frame_stride", 1);
    d->fps = vt_ini_float(s, "fps", 0.0);
    if (vt_ini_has(s, "short_side")) {
        if (vt_ini_has(s, "resize"))
            return vt_ini_errorf(&r->ini, s, "short_side", err, errlen,
                                 "give either resize or short_side, not both");
        d->short_side = vt_ini_int(s, "short_side", 128);
        d->resize_h = d->resize_w = 0;
    } else {
        int rs[2];
        vt_ini_shape2(s, "resize", (const int[]){128, 171}, rs);
        d->resize_h = rs[0];
        d->resize_w = rs[1];
        d->short_side = 0;
    }
    d->crop_h = r->model.in_shape[2];
    d->crop_w = r->model.in_shape[3];
    if (d->resize_h && (d->resize_h < d->crop_h || d->resize_w < d->crop_w))
        return vt_ini_errorf(&r->ini, s, "resize", err, errlen,
                             "frames of %dx%d are smaller than the model's %dx%d input crop",
                             d->resize_h, d->resize_w, d->crop_h, d->crop_w);
    d->flip = vt_ini_bool(s, "flip", 1);
    d->norm = strcmp(vt_ini_str(s, "norm", "meanstd"), "c3d") == 0 ? VT_NORM_C3D : VT_NORM_MEAN_STD;
    if (read_rgb(r, s, "mean", "0.432,0.395,0.376", d->mean, err, errlen) ||
        read_rgb(r, s, "std", "0.228,0.221,0.217", d->std, err, errlen))
        return -1;
    for (int c = 0; c < 3; c++)
        if (!(d->std[c] > 0))
            return vt_ini_errorf(&r->ini, s, "std", err, errlen, "std values must be > 0");
    d->clips_per_video = vt_ini_int(s, "clips_per_video", 10);
    d->crops = vt_ini_int(s, "crops", 1);
    if (d->crops != 1 && d->crops != 3)
        return vt_ini_errorf(&r->ini, s, "crops", err, errlen, "crops must be 1 or 3, got %d",
                             d->crops);
    d->threads = vt_ini_int(s, "threads", 2);
    d->prefetch = vt_ini_int(s, "prefetch", 4);
    d->batch = r->train.batch_size;
    d->seed = r->train.seed;
    d->drop_last = 1;
    d->shuffle = 1;
    r->train.val_clips = vt_ini_int(vt_ini_find(&r->ini, "train"), "val_clips", d->clips_per_video);
    return 0;
}

int vt_run_load(vt_run *r, const char *path, const char *text, const char *const *sets,
                int n_sets, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    vt_run_schema(&r->schema);
    vt_ini_init(&r->ini, &r->schema.ini);
    int rc = text ? vt_ini_parse_string(&r->ini, text, path, err, errlen)
                  : vt_ini_parse_file(&r->ini, path, err, errlen);
    for (int i = 0; !rc && i < n_sets; i++)
        rc = vt_ini_set(&r->ini, sets[i], err, errlen);
    if (!rc)
        rc = vt_ini_validate(&r->ini, err, errlen);
    if (rc)
        return -1;
    if (vt_model_build(&r->model, &r->ini, err, errlen) || read_train(r, err, errlen) ||
        read_data(r, err, errlen))
        return -1;
    vt_ini_section *os = vt_ini_find(&r->ini, "optim");
    if (os) {
        if (vt_optim_config_from_ini(&r->ini, os, &r->optim, err, errlen))
            return -1;
    } else {
        vt_optim_config_default(&r->optim, VT_OPTIM_SGD);
    }
    return 0;
}

int vt_run_finish(vt_run *r, int64_t total_steps, char *err, size_t errlen)
{
    if (vt_schedule_from_ini(&r->ini, vt_ini_find(&r->ini, "schedule"), r->train.lr,
                             total_steps, &r->sched, err, errlen))
        return -1;
    return vt_ini_check_used(&r->ini, err, errlen);
}

void vt_run_free(vt_run *r)
{
    vt_model_free(&r->model);
    vt_ini_free(&r->ini);
    memset(r, 0, sizeof *r);
}

/* ==== Reference ========================================================= */

static const char *type_name(const vt_ini_key *k)
{
    switch (k->type) {
    case VT_INI_INT: return "int";
    case VT_INI_FLOAT: return "float";
    case VT_INI_BOOL: return "bool";
    case VT_INI_STRING: return k->choices ? "choice" : "string";
    case VT_INI_SHAPE3: return "TxHxW";
    case VT_INI_SHAPE2: return "HxW";
    case VT_INI_DIMS: return "AxBx...";
    case VT_INI_INTS: return "int list";
    case VT_INI_STRINGS: return "name list";
    }
    return "?";
}

void vt_run_print_reference(FILE *f)
{
    vt_schema_buf buf;
    vt_run_schema(&buf);
    const vt_ini_schema sc = buf.ini;
    for (int pass = 0; pass < 2; pass++) {
        fprintf(f, "### %s\n\n", pass ? "Layer sections `[TYPE NAME]`" : "Run sections `[TYPE]`");
        for (int i = 0; i < sc.n_sections; i++) {
            const vt_ini_section_schema *s = sc.sections[i];
            if ((s->kind == VT_INI_LAYER) != pass)
                continue;
            fprintf(f, "#### `[%s%s]`%s\n\n%s.\n\n| key | type | required | meaning |\n"
                       "|---|---|---|---|\n", s->type, pass ? " NAME" : "",
                    s->required ? " (required)" : "", s->doc ? s->doc : "");
            for (int k = 0; k < s->n_keys; k++) {
                const vt_ini_key *key = &s->keys[k];
                fprintf(f, "| `%s` | %s%s%s%s | %s | %s |\n", key->key, type_name(key),
                        key->choices ? " `" : "", key->choices ? key->choices : "",
                        key->choices ? "`" : "", key->flags & VT_INI_REQUIRED ? "yes" : "",
                        key->doc ? key->doc : "");
            }
            fprintf(f, "\n");
        }
    }
}
