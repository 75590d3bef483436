/* veval.c - test-split accuracy of a checkpoint: clip and video accuracy
 * (top-1, top-5), mean class accuracy, per-class accuracy and the
 * confusion matrix (CSV and SVG), a summary table and optional JSON.
 * Exit status: 0 done, 1 runtime failure (damaged checkpoint, unreadable
 * data), 2 bad arguments or config.
 *
 * Under an MPI launcher (mpirun -np N veval ...) each rank scores a block of
 * the test videos and rank 0 reports the combined numbers, the same as one
 * process's (docs/distributed.md). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toolcommon.h"
#include "vt_dist.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: veval --checkpoint CKPT [options]\n"
            "\n"
            "Evaluates a checkpoint on the test list of a split: every test video is\n"
            "seen as K clips spread uniformly over it x 1 (centre) or 3 crops, and the\n"
            "class probabilities of its clips are averaged. Reports clip accuracy,\n"
            "video accuracy (top-1 and top-5), the mean class accuracy and the mean\n"
            "clip cross-entropy, and writes to the output directory:\n"
            "  eval_<ckpt>_split<N>_per_class.csv   class,accuracy,videos\n"
            "  eval_<ckpt>_split<N>_confusion.csv   rows: true class, columns: predicted\n"
            "  eval_<ckpt>_split<N>_confusion.svg   the same as a picture\n"
            "  eval_<ckpt>_split<N>_videos.csv      video,true,predicted\n"
            "\n"
            "The run config stored in the checkpoint (the one it was trained with) is\n"
            "used unless --config gives another; its [data] section says where the\n"
            "videos are and how clips are made.\n"
            "\n"
            "options:\n"
            "  --checkpoint CKPT   a vtrain checkpoint (e.g. runs/c3d/best.h5)\n"
            "  --config FILE       run config to use instead of the stored one (its\n"
            "                      model must match the checkpoint exactly)\n"
            "  --split N           split number ([data] split)\n"
            "  --clips K           clips per test video ([data] clips_per_video)\n"
            "  --crops 1|3         crops per clip ([data] crops)\n"
            "  --batch N           clips per forward pass ([train] batch_size)\n"
            "  --threads N         compute threads ([train] threads; 0: every core)\n"
            "  --set SEC.KEY=VAL   override a config value (repeatable)\n"
            "  --out DIR           where the CSV and SVG files go (default: the\n"
            "                      checkpoint's directory)\n"
            "  --json FILE         also write every number as JSON ('-': stdout,\n"
            "                      the table then goes to stderr)\n"
            "  -h, --help          this text\n"
            "\n"
            "exit status: 0 done, 1 runtime failure (damaged checkpoint, unreadable\n"
            "data), 2 bad arguments or config (including a config whose model does\n"
            "not match the checkpoint)\n");
}

static int bad_arg(const char *fmt, const char *a)
{
    fprintf(stderr, "veval: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n(see veval --help)\n");
    return 2;
}

/* ==== Progress and loader warnings ====================================== */

/* The loader warns from its worker threads while the main thread redraws
 * the progress line. */
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static vt_progress prog;

static void on_warn(void *ud, const char *msg)
{
    (void)ud;
    pthread_mutex_lock(&out_mu);
    vt_progress_clear(&prog);
    fprintf(stderr, "veval: warning: %s\n", msg);
    pthread_mutex_unlock(&out_mu);
}

static void on_progress(void *ud, long done, long total)
{
    (void)ud;
    pthread_mutex_lock(&out_mu);
    double t = vt_now() - prog.t0, rate = done / (t + 1e-9);
    double eta = rate > 0 ? (total - done) / rate : 0;
    vt_progress_show(&prog, done == total, "veval: batch %ld/%ld (%.0f%%)  %.1f batches/s  ETA %dm%02ds",
                     done, total, 100.0 * done / (total ? total : 1), rate, (int)eta / 60,
                     (int)eta % 60);
    pthread_mutex_unlock(&out_mu);
}

/* ==== Output files ====================================================== */

typedef struct {
    char per_class[1200], confusion[1200], svg[1200], videos[1200];
} out_files;

static int class_videos(const vt_eval_result *r, int k)
{
    long n = 0;
    for (int j = 0; j < r->n_classes; j++)
        n += r->confusion[(size_t)k * r->n_classes + j];
    return (int)n;
}

static int write_outputs(const out_files *o, const vt_eval_result *r, char *const *names,
                         vt_loader *l, char *err, size_t errlen)
{
    int K = r->n_classes;
    vt_memfile m;
    vt_memfile_open(&m);
    fputs("class,accuracy,videos\n", m.f);
    for (int k = 0; k < K; k++) {
        vt_csv_field(m.f, names[k]);
        int n = class_videos(r, k);
        if (n)
            fprintf(m.f, ",%.6f,%d\n", r->class_acc[k], n);
        else
            fprintf(m.f, ",,0\n"); /* absent from the test list: no accuracy */
    }
    if (vt_memfile_commit(&m, o->per_class, err, errlen))
        return -1;

    vt_memfile_open(&m);
    fputs("true\\predicted", m.f);
    for (int k = 0; k < K; k++) {
        fputc(',', m.f);
        vt_csv_field(m.f, names[k]);
    }
    fputc('\n', m.f);
    for (int i = 0; i < K; i++) {
        vt_csv_field(m.f, names[i]);
        for (int j = 0; j < K; j++)
            fprintf(m.f, ",%ld", r->confusion[(size_t)i * K + j]);
        fputc('\n', m.f);
    }
    if (vt_memfile_commit(&m, o->confusion, err, errlen))
        return -1;

    vt_memfile_open(&m);
    fputs("video,true,predicted\n", m.f);
    for (int v = 0; v < vt_loader_num_videos(l); v++) {
        vt_csv_field(m.f, vt_loader_video_path(l, v));
        fputc(',', m.f);
        vt_csv_field(m.f, names[vt_loader_video_label(l, v)]);
        fputc(',', m.f);
        if (r->video_pred[v] >= 0) /* empty: the video could not be read */
            vt_csv_field(m.f, names[r->video_pred[v]]);
        fputc('\n', m.f);
    }
    if (vt_memfile_commit(&m, o->videos, err, errlen))
        return -1;
    return vt_svg_confusion(o->svg, r->confusion, K, names, err, errlen);
}

static void write_json(FILE *f, const vt_eval_result *r, char *const *names,
                       const vt_tool_model *tm, const char *ckpt, const vt_data_config *d,
                       int skipped, const out_files *o)
{
    fprintf(f, "{\n  \"checkpoint\": ");
    vt_json_str(f, ckpt);
    fprintf(f, ",\n  \"model\": ");
    vt_json_str(f, tm->run.model.name);
    fprintf(f, ",\n  \"config\": ");
    vt_json_str(f, tm->config_name);
    fprintf(f, ",\n  \"split\": %d,\n  \"clips_per_video\": %d,\n  \"crops\": %d,\n",
            d->split, d->clips_per_video, d->crops);
    fprintf(f, "  \"classes\": %d,\n  \"clips\": %ld,\n  \"videos\": %ld,\n"
               "  \"skipped_videos\": %d,\n", r->n_classes, r->clips, r->videos, skipped);
    const char *keys[] = {"clip_top1", "clip_top5", "video_top1", "video_top5",
                          "mean_class_acc", "loss", "seconds"};
    double vals[] = {r->clip_top1, r->clip_top5, r->video_top1, r->video_top5,
                     r->mean_class_acc, r->loss, r->seconds};
    for (int i = 0; i < 7; i++) {
        fprintf(f, "  \"%s\": ", keys[i]);
        vt_json_num(f, vals[i]);
        fputs(",\n", f);
    }
    fputs("  \"per_class\": [", f);
    for (int k = 0; k < r->n_classes; k++) {
        fprintf(f, "%s\n    {\"name\": ", k ? "," : "");
        vt_json_str(f, names[k]);
        fputs(", \"accuracy\": ", f);
        vt_json_num(f, r->class_acc[k]);
        fprintf(f, ", \"videos\": %d}", class_videos(r, k));
    }
    fputs("\n  ],\n  \"confusion\": [", f);
    for (int i = 0; i < r->n_classes; i++) {
        fprintf(f, "%s\n    [", i ? "," : "");
        for (int j = 0; j < r->n_classes; j++)
            fprintf(f, "%s%ld", j ? ", " : "", r->confusion[(size_t)i * r->n_classes + j]);
        fputc(']', f);
    }
    fputs("\n  ],\n  \"files\": {\"per_class\": ", f);
    vt_json_str(f, o->per_class);
    fputs(", \"confusion\": ", f);
    vt_json_str(f, o->confusion);
    fputs(", \"confusion_svg\": ", f);
    vt_json_str(f, o->svg);
    fputs(", \"videos\": ", f);
    vt_json_str(f, o->videos);
    fputs("}\n}\n", f);
}

static void print_summary(FILE *f, const vt_eval_result *r, char *const *names,
                          const vt_tool_model *tm, const char *ckpt, const vt_data_config *d,
                          int skipped, const out_files *o)
{
    const vt_ckpt_pos *p = &tm->info.pos;
    fprintf(f, "veval: %s (model %s, epoch %lld, step %lld), split %d\n", ckpt,
            tm->run.model.name, (long long)p->epoch, (long long)p->step, d->split);
    fprintf(f, "  %ld test videos x %d clips x %d crop%s = %ld clips, %.1f s\n", r->videos,
            d->clips_per_video, d->crops, d->crops > 1 ? "s" : "", r->clips, r->seconds);
    if (skipped)
        fprintf(f, "  %d video%s could not be read and %s left out\n", skipped,
                skipped > 1 ? "s" : "", skipped > 1 ? "are" : "is");
    int k5 = r->n_classes < 5 ? r->n_classes : 5;
    fprintf(f, "\n             top-1     top-%d\n", k5);
    fprintf(f, "  clip     %7.2f%%  %7.2f%%\n", 100 * r->clip_top1, 100 * r->clip_top5);
    fprintf(f, "  video    %7.2f%%  %7.2f%%\n", 100 * r->video_top1, 100 * r->video_top5);
    fprintf(f, "\n  mean class accuracy  %.2f%%\n  mean clip loss       %.4f\n",
            100 * r->mean_class_acc, r->loss);
    if (r->n_classes <= 30) {
        int w = 5;
        for (int k = 0; k < r->n_classes; k++)
            w = (int)strlen(names[k]) > w ? (int)strlen(names[k]) : w;
        fprintf(f, "\n  %-*s  accuracy  videos\n", w, "class");
        for (int k = 0; k < r->n_classes; k++) {
            int n = class_videos(r, k);
            if (n)
                fprintf(f, "  %-*s  %7.2f%%  %6d\n", w, names[k], 100 * r->class_acc[k], n);
            else
                fprintf(f, "  %-*s  %8s  %6d\n", w, names[k], "-", 0);
        }
    }
    fprintf(f, "\n  wrote %s\n        %s\n        %s\n        %s\n", o->per_class,
            o->confusion, o->svg, o->videos);
}

/* ==== Main ============================================================== */

int main(int argc, char **argv)
{
    const char *ckpt = NULL, *config = NULL, *json = NULL, *out_dir = NULL;
    vt_tool_sets sets = {0}, flags = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            vt_tool_sets_free(&sets);
            vt_tool_sets_free(&flags);
            return 0;
        }
        int rc = 0;
        if (strncmp(a, "--", 2)) {
            rc = bad_arg("unexpected argument '%s'", a);
        } else if (i + 1 >= argc) {
            rc = bad_arg("%s needs a value", a);
        } else {
            const char *v = argv[++i];
            int n;
            if (!strcmp(a, "--checkpoint")) {
                ckpt = v;
            } else if (!strcmp(a, "--config")) {
                config = v;
            } else if (!strcmp(a, "--json")) {
                json = v;
            } else if (!strcmp(a, "--out")) {
                out_dir = v;
            } else if (!strcmp(a, "--set")) {
                vt_tool_sets_add(&sets, v);
            } else if (!strcmp(a, "--split")) {
                if (vt_tool_parse_int(v, 1, 99, &n))
                    rc = bad_arg("--split: '%s' is not a split number (1..99)", v);
                else
                    vt_tool_sets_addf(&flags, "data.split=%d", n);
            } else if (!strcmp(a, "--clips")) {
                if (vt_tool_parse_int(v, 1, 10000, &n))
                    rc = bad_arg("--clips: '%s' is not a number in 1..10000", v);
                else
                    vt_tool_sets_addf(&flags, "data.clips_per_video=%d", n);
            } else if (!strcmp(a, "--crops")) {
                if (strcmp(v, "1") && strcmp(v, "3"))
                    rc = bad_arg("--crops: '%s' must be 1 or 3", v);
                else
                    vt_tool_sets_addf(&flags, "data.crops=%s", v);
            } else if (!strcmp(a, "--batch")) {
                if (vt_tool_parse_int(v, 1, 100000, &n))
                    rc = bad_arg("--batch: '%s' is not a number in 1..100000", v);
                else
                    vt_tool_sets_addf(&flags, "train.batch_size=%d", n);
            } else if (!strcmp(a, "--threads")) {
                if (vt_tool_parse_int(v, 0, 4096, &n))
                    rc = bad_arg("--threads: '%s' is not a number in 0..4096", v);
                else
                    vt_tool_sets_addf(&flags, "train.threads=%d", n);
            } else {
                rc = bad_arg("unknown option '%s'", a);
            }
        }
        if (rc) {
            vt_tool_sets_free(&sets);
            vt_tool_sets_free(&flags);
            return rc;
        }
    }
    if (!ckpt) {
        vt_tool_sets_free(&sets);
        vt_tool_sets_free(&flags);
        return bad_arg("--checkpoint CKPT is required%s", "");
    }
    /* The dedicated options come last so that they win over --set. */
    for (int i = 0; i < flags.n; i++)
        vt_tool_sets_add(&sets, flags.v[i]);

    char err[2048];
    int status = 0;
    vt_tool_model tm;
    vt_loader *l = NULL;
    vt_eval_result res;
    memset(&res, 0, sizeof res);
    char **names = NULL;
    int n_names = 0;
    if (vt_dist_init("veval", err, sizeof err)) {
        fprintf(stderr, "veval: %s\n", err);
        vt_tool_sets_free(&sets);
        vt_tool_sets_free(&flags);
        return 1;
    }
    /* Distributed: rank 0 alone prints and writes; failures any rank meets
     * alone are agreed on so that no rank waits for another forever. */
    const int lead = vt_dist_rank() == 0;
    status = vt_tool_model_open(&tm, ckpt, config, sets.v, sets.n, err, sizeof err);
    status = vt_dist_agree(status, err, sizeof err);
    if (status) {
        if (lead)
            fprintf(stderr, "veval: %s\n", err);
        goto done;
    }
    if (tm.run.train.threads == 0 && vt_dist_size() > 1)
        vt_set_threads(vt_dist_default_threads());

    vt_data_config d = tm.run.data;
    d.batch = tm.run.train.batch_size;
    d.shuffle = 0;
    d.drop_last = 0;
    d.warn = on_warn;
    if (vt_dist_size() > 1) {
        d.shard = vt_dist_rank();
        d.n_shards = vt_dist_size();
    }
    vt_progress_init(&prog);
    status = vt_loader_open(&d, VT_TEST, &l, err, sizeof err) ? 1 : 0;
    if ((status = vt_dist_agree(status, err, sizeof err))) {
        if (lead)
            fprintf(stderr, "veval: %s\n", err);
        goto done;
    }
    n_names = vt_loader_num_classes(l);
    names = calloc((size_t)n_names, sizeof *names);
    VT_ASSERT(names, "out of memory");
    for (int k = 0; k < n_names; k++) {
        names[k] = strdup(vt_loader_class_name(l, k));
        VT_ASSERT(names[k], "out of memory");
    }
    /* Output k means the checkpoint's class k: another classInd.txt order
     * would score a good model as a bad one without any error. */
    for (int k = 0; k < n_names && tm.info.n_classes == n_names && lead; k++)
        if (strcmp(tm.info.classes[k], names[k])) {
            fprintf(stderr, "veval: warning: class %d is '%s' in the checkpoint but '%s' in "
                    "%s/classInd.txt: the accuracies below assume the dataset's order\n",
                    k + 1, tm.info.classes[k], names[k], tm.run.data_splits);
            break;
        }
    if (vt_evaluate(&tm.run.model, l, &res, lead ? on_progress : NULL, NULL, err, sizeof err)) {
        vt_progress_clear(&prog);
        if (lead)
            fprintf(stderr, "veval: %s\n", err);
        status = 1;
        goto done;
    }
    vt_progress_clear(&prog);
    vt_loader_stats st;
    vt_loader_stats_get(l, &st);
    /* Each test video belongs to one rank: the sum counts each once. */
    long skipped = st.skipped;
    vt_dist_sum_long(&skipped, 1);
    st.skipped = (int)skipped;
    if (!lead) /* rank 0 writes the outputs */
        goto done;
    if (res.videos == 0) {
        fprintf(stderr, "veval: no test video of split %d could be read (%d listed)\n",
                d.split, vt_loader_num_videos(l));
        status = 1;
        goto done;
    }

    /* Outputs next to the checkpoint unless told otherwise, named after it
     * so that evaluating last.h5 and best.h5 keeps both. */
    char dir[1024], stem[256];
    const char *slash = strrchr(ckpt, '/');
    if (out_dir)
        snprintf(dir, sizeof dir, "%s", out_dir);
    else if (slash)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - ckpt) ? (int)(slash - ckpt) : 1, ckpt);
    else
        snprintf(dir, sizeof dir, ".");
    snprintf(stem, sizeof stem, "%s", slash ? slash + 1 : ckpt);
    size_t sl = strlen(stem);
    if (sl > 3 && !strcmp(stem + sl - 3, ".h5"))
        stem[sl - 3] = '\0';
    out_files of;
    snprintf(of.per_class, sizeof of.per_class, "%s/eval_%s_split%d_per_class.csv", dir, stem, d.split);
    snprintf(of.confusion, sizeof of.confusion, "%s/eval_%s_split%d_confusion.csv", dir, stem, d.split);
    snprintf(of.svg, sizeof of.svg, "%s/eval_%s_split%d_confusion.svg", dir, stem, d.split);
    snprintf(of.videos, sizeof of.videos, "%s/eval_%s_split%d_videos.csv", dir, stem, d.split);
    if (vt_mkdirs(dir, err, sizeof err) ||
        write_outputs(&of, &res, names, l, err, sizeof err)) {
        fprintf(stderr, "veval: %s\n", err);
        status = 1;
        goto done;
    }
    int json_stdout = json && !strcmp(json, "-");
    print_summary(json_stdout ? stderr : stdout, &res, names, &tm, ckpt, &d, st.skipped, &of);
    if (json) {
        vt_memfile m;
        vt_memfile_open(&m);
        write_json(m.f, &res, names, &tm, ckpt, &d, st.skipped, &of);
        if (vt_memfile_commit(&m, json, err, sizeof err)) {
            fprintf(stderr, "veval: %s\n", err);
            status = 1;
        }
    }

done:
    if (names)
        for (int k = 0; k < n_names; k++)
            free(names[k]);
    free(names);
    vt_eval_result_free(&res);
    if (l)
        vt_loader_close(l);
    vt_tool_model_close(&tm);
    vt_tool_sets_free(&sets);
    vt_tool_sets_free(&flags);
    vt_dist_finalize();
    return status;
}
