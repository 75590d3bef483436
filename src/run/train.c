/* train.c - the training loop: batches from the loader, forward, loss,
 * backward, optimizer step; metrics, curves, validation, checkpoints, and
 * exact resume.
 *
 * Exact resume rests on every source of state being saved: parameters and
 * batch-norm buffers (the store), optimizer moments and step count, the
 * dropout generator's counter and the loader's position (a batch is a pure
 * function of seed, epoch and index). Validation runs in eval mode on its
 * own loader and touches none of these, so a run interrupted anywhere and
 * resumed with the same thread count retraces the same steps bit for bit.
 *
 * Data-parallel runs (mpirun -np N, docs/distributed.md): every rank runs
 * this loop on its share of each global batch (the loader's shard); the
 * loss and gradients are the global batch's mean (each rank seeds its
 * backward with share / global batch and the gradient buckets are summed
 * over ranks), so the update is the one-process update up to float
 * rounding, and every rank applies it. One small allreduce per step
 * carries the loss, the hit count, a failure flag and the stop request, so
 * every rank leaves the loop at the same step. Rank 0 alone prints and
 * writes files; after each of its writes the ranks agree on whether it
 * worked. The checkpoint is the one-process checkpoint (the loader position
 * counts global batches), so a run resumes at any N. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vt_ckpt.h"
#include "vt_dist.h"
#include "vt_run.h"

volatile int vt_train_stop_requested;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of this thread: the step's compute (with one thread, all of
 * it) as it would take on an idle core, whatever else the machine runs. */
static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Rank 0 alone writes files: the other ranks learn whether it worked, so
 * that all take the same branch. Any rank's local failure likewise becomes
 * everyone's (with the failed rank's message). Identity with one process. */
static int agree(int rc, char *err, size_t errlen)
{
    if (vt_dist_size() == 1)
        return rc;
    return vt_dist_agree(rc ? 1 : 0, err, errlen) ? -1 : 0;
}

/* ==== Metric history (metrics.csv and curves.svg) ====================== */

typedef struct {
    double *step, *loss, *acc, *vstep, *vacc;
    int n, cap, nv, capv;
} history;

static void hist_push(double **a, int cap_old, int cap)
{
    double *p = realloc(*a, (size_t)cap * sizeof *p);
    VT_ASSERT(p, "out of memory");
    (void)cap_old;
    *a = p;
}

static void hist_add(history *h, double step, double loss, double acc)
{
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 256;
        hist_push(&h->step, h->cap, cap);
        hist_push(&h->loss, h->cap, cap);
        hist_push(&h->acc, h->cap, cap);
        h->cap = cap;
    }
    h->step[h->n] = step;
    h->loss[h->n] = loss;
    h->acc[h->n++] = acc;
}

static void hist_add_val(history *h, double step, double acc)
{
    if (h->nv == h->capv) {
        int cap = h->capv ? 2 * h->capv : 64;
        hist_push(&h->vstep, h->capv, cap);
        hist_push(&h->vacc, h->capv, cap);
        h->capv = cap;
    }
    h->vstep[h->nv] = step;
    h->vacc[h->nv++] = acc;
}

static void hist_free(history *h)
{
    free(h->step);
    free(h->loss);
    free(h->acc);
    free(h->vstep);
    free(h->vacc);
}

static const char METRICS_HEADER[] = "step,epoch,loss,accuracy,lr,clips_per_s,data_wait\n";
static const char VAL_HEADER[] =
    "step,epoch,clip_top1,clip_top5,video_top1,video_top5,mean_class_acc,loss\n";

/* Keeps the rows of a CSV whose first column (step) is <= max_step: a
 * resumed run rewrites what the interrupted one logged after its last
 * checkpoint. Fills the history from the kept rows. */
static int trim_csv(const char *path, const char *header, int64_t max_step, history *h,
                    int is_val, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    VT_ASSERT(out, "out of memory");
    n = (size_t)snprintf(out, cap, "%s", header);
    if (f) {
        char line[1024];
        int first = 1;
        while (fgets(line, sizeof line, f)) {
            if (first) {
                first = 0;
                continue;
            }
            double v[8] = {0};
            int k = sscanf(line, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3],
                           &v[4], &v[5], &v[6], &v[7]);
            if (k < 4 || v[0] > (double)max_step)
                continue;
            if (is_val)
                hist_add_val(h, v[0], v[4]);
            else
                hist_add(h, v[0], v[2], v[3]);
            size_t len = strlen(line);
            while (n + len + 1 > cap) {
                cap *= 2;
                out = realloc(out, cap);
                VT_ASSERT(out, "out of memory");
            }
            memcpy(out + n, line, len + 1);
            n += len;
        }
        fclose(f);
    }
    int rc = vt_write_file_atomic(path, out, n, err, errlen);
    free(out);
    return rc;
}

static int append_line(const char *path, const char *line, char *err, size_t errlen)
{
    FILE *f = fopen(path, "a");
    if (!f || fputs(line, f) < 0 || fclose(f) != 0) {
        snprintf(err, errlen, "%s: cannot append: %s", path, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    return 0;
}

static void write_curves(const char *dir, const history *h, const char *name)
{
    char path[1100], title[200], err[256];
    snprintf(path, sizeof path, "%s/curves.svg", dir);
    snprintf(title, sizeof title, "%s: training curves", name);
    vt_series s[3] = {{"training loss", h->loss, h->n, h->step},
                      {"training accuracy (running)", h->acc, h->n, h->step},
                      {"validation video accuracy", h->vacc, h->nv, h->vstep}};
    /* A picture that fails to write must not stop training. */
    if (vt_svg_lines(path, title, "step", s, h->nv ? 3 : 2, err, sizeof err))
        fprintf(stderr, "warning: %s\n", err);
}

/* ==== Checkpoints ======================================================= */

typedef struct {
    vt_run *r;
    vt_optim *opt;
    vt_ctx *c;
    vt_loader *train;
    const char *config_text;
    char **classes;
    int n_classes;
    int64_t epoch, epoch_step, samples;
    double best;
    int64_t best_epoch;
} saver;

static int save_ckpt_local(saver *s, const char *file, char *err, size_t errlen)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/%s", s->r->train.out_dir, file);
    int de, db;
    vt_loader_position(s->train, &de, &db);
    uint64_t rng[2] = {s->c->rng.seed, s->c->rng.counter};
    uint64_t data[3] = {s->r->train.seed, (uint64_t)de, (uint64_t)db};
    vt_ckpt ck;
    memset(&ck, 0, sizeof ck);
    ck.store = &s->r->model.store;
    ck.optim = s->opt;
    ck.pos.epoch = s->epoch;
    ck.pos.step = s->opt->step;
    ck.pos.epoch_step = s->epoch_step;
    ck.pos.samples = s->samples;
    ck.pos.best_metric = s->best;
    ck.pos.best_epoch = s->best_epoch;
    VT_ASSERT(vt_ckpt_add_state(&ck, "dropout", rng, 2) == 0, "state table");
    VT_ASSERT(vt_ckpt_add_state(&ck, "data", data, 3) == 0, "state table");
    ck.config = s->config_text;
    ck.classes = (const char *const *)s->classes;
    ck.n_classes = s->n_classes;
    ck.model_name = s->r->model.name;
    return vt_ckpt_save(path, &ck, err, errlen);
}

/* Every rank holds the same state: rank 0 writes it for all. */
static int save_ckpt(saver *s, const char *file, char *err, size_t errlen)
{
    int rc = vt_dist_rank() == 0 ? save_ckpt_local(s, file, err, errlen) : 0;
    return agree(rc, err, errlen);
}

/* ==== Progress ========================================================== */

static void progress_line(int tty, int64_t step, int64_t total, int64_t epoch, int epochs,
                          double loss, double acc, double lr, double cps, double wait,
                          double eta)
{
    char line[256];
    int eh = (int)(eta / 3600), em = (int)(fmod(eta, 3600) / 60), es = (int)fmod(eta, 60);
    snprintf(line, sizeof line,
             "epoch %lld/%d  step %lld/%lld  loss %.4f  acc %5.1f%%  lr %.3g  %.1f clips/s  "
             "data-wait %4.1f%%  ETA %d:%02d:%02d",
             (long long)epoch + 1, epochs, (long long)step, (long long)total, loss, 100 * acc,
             lr, cps, 100 * wait, eh, em, es);
    if (tty)
        fprintf(stderr, "\r%s\033[K", line);
    else
        printf("%s\n", line);
    fflush(tty ? stderr : stdout);
}

typedef struct {
    int tty;
} eval_prog;

static void on_eval_progress(void *ud, long done, long total)
{
    eval_prog *p = ud;
    if (p->tty)
        fprintf(stderr, "\r  validating: batch %ld/%ld\033[K", done, total);
}

static void warn_video(void *ud, const char *msg)
{
    (void)ud;
    fprintf(stderr, "\nwarning: %s\n", msg);
}

/* ==== The loop ========================================================== */

static int validate(saver *sv, vt_loader **test, int64_t step, int tty, char *err,
                    size_t errlen, history *h)
{
    vt_run *r = sv->r;
    int lead = vt_dist_rank() == 0;
    if (!*test) {
        /* r->data carries the shard: each rank scores its block of videos
         * and vt_evaluate combines the counts. */
        vt_data_config dc = r->data;
        dc.clips_per_video = r->train.val_clips;
        dc.warn = warn_video;
        if (agree(vt_loader_open(&dc, VT_TEST, test, err, errlen), err, errlen))
            return -1;
    }
    vt_eval_result res;
    eval_prog p = {tty};
    if (vt_evaluate(&r->model, *test, &res, on_eval_progress, &p, err, errlen))
        return -1;
    int rc = 0;
    if (lead) {
        if (tty)
            fprintf(stderr, "\r\033[K");
        printf("validation after epoch %lld (step %lld): clip acc %.2f%%, video acc %.2f%% "
               "(top-5 %.2f%%) over %ld videos, %ld clips, loss %.4f, %.1f s\n",
               (long long)sv->epoch, (long long)step, 100 * res.clip_top1,
               100 * res.video_top1, 100 * res.video_top5, res.videos, res.clips, res.loss,
               res.seconds);
        fflush(stdout);
        char path[1100], row[512];
        snprintf(path, sizeof path, "%s/val.csv", r->train.out_dir);
        snprintf(row, sizeof row, "%lld,%lld,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f\n",
                 (long long)step, (long long)sv->epoch, res.clip_top1, res.clip_top5,
                 res.video_top1, res.video_top5, res.mean_class_acc, res.loss);
        rc = append_line(path, row, err, errlen);
    }
    rc = agree(rc, err, errlen);
    hist_add_val(h, (double)step, res.video_top1);
    if (!rc && (isnan(sv->best) || res.video_top1 > sv->best)) {
        sv->best = res.video_top1;
        sv->best_epoch = sv->epoch;
        rc = save_ckpt(sv, "best.h5", err, errlen);
    }
    vt_eval_result_free(&res);
    return rc;
}

static void report_init(void *ud, const char *name, vt_ckpt_status st, const char *detail)
{
    (void)ud;
    if (st != VT_CKPT_LOADED && vt_dist_rank() == 0)
        printf("init_from: %-32s %s (%s)\n", name, vt_ckpt_status_name(st), detail);
}

/* Ranks start from rank 0's state (the same seed or checkpoint gives the
 * same anyway; this makes it certain): parameters, buffers and optimizer
 * moments. */
static void bcast_state(vt_store *s, vt_optim *opt)
{
    vt_dist_bcast(s->data, s->total * sizeof(float), 0);
    for (int k = 0; k < opt->n_state; k++)
        vt_dist_bcast(opt->state[k], s->total * sizeof(float), 0);
}

/* Every rank must hold rank 0's weights (they apply the same update to
 * the same values). Checked at the end of a run: a hash of the parameter
 * and buffer block, compared with rank 0's. 0, or -1 with a message. */
static int check_replicas(const vt_store *s, int64_t step, char *err, size_t errlen)
{
    uint64_t h = 1469598103934665603ull, h0;
    const unsigned char *p = (const unsigned char *)s->data;
    for (size_t i = 0; i < s->total * sizeof(float); i++)
        h = (h ^ p[i]) * 1099511628211ull;
    h0 = h;
    vt_dist_bcast(&h0, sizeof h0, 0);
    if (h != h0)
        snprintf(err, errlen, "after step %lld its weights differ from rank 0's (the "
                 "gradient sums were not the same on every rank)", (long long)step);
    return vt_dist_agree(h != h0, err, errlen) ? -1 : 0;
}

int vt_train_run(const vt_train_opts *o, char *err, size_t errlen)
{
    vt_run r;
    const int dist = vt_dist_size() > 1, lead = vt_dist_rank() == 0;
    /* A config file a rank cannot read fails there alone: agree first. */
    int lrc = vt_run_load(&r, o->config_path, NULL, o->sets, o->n_sets, err, errlen);
    if (vt_dist_agree(lrc ? 2 : 0, err, errlen)) {
        vt_run_free(&r);
        return VT_TRAIN_CONFIG_ERROR;
    }
    int rc = VT_TRAIN_FAILED, agreed = 0;
    vt_loader *train = NULL, *test = NULL;
    vt_optim opt;
    memset(&opt, 0, sizeof opt);
    char *config_text = NULL;
    char **classes = NULL;
    history h = {0};
    vt_dist_reducer *red = NULL;
    vt_ctx c;
    vt_ctx_init(&c, r.train.seed ^ 0x5eedd70f0u);
    const int quiet = o->quiet || !lead;
    int tty = isatty(STDERR_FILENO) && !quiet;

    if (r.train.threads > 0)
        vt_set_threads(r.train.threads);
    else /* ranks on one machine share its cores */
        vt_set_threads(dist ? vt_dist_default_threads() : (int)sysconf(_SC_NPROCESSORS_ONLN));
    r.data.warn = warn_video;
    if (dist) {
        if (r.train.batch_size % vt_dist_size()) {
            snprintf(err, errlen, "%s: [train] batch_size = %d is the global batch; it must "
                     "be divisible by the %d processes (each takes batch_size / %d clips)",
                     o->config_path, r.train.batch_size, vt_dist_size(), vt_dist_size());
            rc = VT_TRAIN_CONFIG_ERROR;
            goto out;
        }
        r.data.shard = vt_dist_rank();
        r.data.n_shards = vt_dist_size();
    }
    if (vt_loader_open(&r.data, VT_TRAIN, &train, err, errlen))
        goto out;
    int nc = vt_loader_num_classes(train);
    if (nc != r.model.classes) {
        snprintf(err, errlen, "%s: [model] classes = %d but the dataset (%s) has %d classes",
                 o->config_path, r.model.classes, r.data.store ? r.data.store : r.data.splits,
                 nc);
        rc = VT_TRAIN_CONFIG_ERROR;
        goto out;
    }
    int64_t per_epoch = vt_loader_batches_per_epoch(train);
    if (per_epoch <= 0) {
        snprintf(err, errlen, "%s: the training list has fewer videos than batch_size = %d",
                 o->config_path, r.train.batch_size);
        rc = VT_TRAIN_CONFIG_ERROR;
        goto out;
    }
    int64_t total = r.train.steps > 0 ? r.train.steps : per_epoch * r.train.epochs;
    int epochs = (int)((total + per_epoch - 1) / per_epoch);
    if (vt_run_finish(&r, total, err, errlen)) {
        rc = VT_TRAIN_CONFIG_ERROR;
        goto out;
    }
    if (vt_optim_init(&opt, &r.model.store, &r.optim, err, errlen)) {
        rc = VT_TRAIN_CONFIG_ERROR;
        goto out;
    }
    classes = malloc((size_t)nc * sizeof *classes);
    for (int k = 0; k < nc; k++)
        classes[k] = (char *)vt_loader_class_name(train, k);
    config_text = vt_ini_serialize(&r.ini, VT_INI_SER_DEFAULTS);

    saver sv = {&r, &opt, &c, train, config_text, classes, nc, 0, 0, 0, NAN, -1};
    int pending_epoch_end = 0;
    char path[1100];
    if (o->resume) {
        /* Every rank reads the checkpoint (it must be visible to all). */
        vt_ckpt ck;
        memset(&ck, 0, sizeof ck);
        ck.store = &r.model.store;
        ck.optim = &opt;
        uint64_t rng[2], data[3];
        VT_ASSERT(vt_ckpt_add_state(&ck, "dropout", rng, 2) == 0, "state table");
        VT_ASSERT(vt_ckpt_add_state(&ck, "data", data, 3) == 0, "state table");
        if (vt_ckpt_load(o->resume, &ck, err, errlen))
            goto out;
        if (data[0] != r.train.seed) {
            snprintf(err, errlen, "%s: trained with [train] seed = %llu, the config says %llu",
                     o->resume, (unsigned long long)data[0], (unsigned long long)r.train.seed);
            rc = VT_TRAIN_CONFIG_ERROR;
            goto out;
        }
        c.rng.seed = rng[0];
        c.rng.counter = rng[1];
        if (vt_loader_seek(train, (int)data[1], (int)data[2], err, errlen))
            goto out;
        sv.epoch = ck.pos.epoch;
        sv.epoch_step = ck.pos.epoch_step;
        sv.samples = ck.pos.samples;
        sv.best = ck.pos.best_metric;
        sv.best_epoch = ck.pos.best_epoch;
        /* Stopped right after an epoch's last batch: the loader already
         * points into the next epoch, so its end-of-epoch signal will not
         * come again. Run the pending epoch end first. */
        pending_epoch_end = (int64_t)data[1] > sv.epoch;
        if (lead)
            printf("resumed from %s at step %lld (epoch %lld)\n", o->resume,
                   (long long)opt.step, (long long)sv.epoch + 1);
    } else if (r.train.init_from[0]) {
        vt_ckpt_partial_result pr;
        if (vt_ckpt_load_partial(r.train.init_from, &r.model.store, report_init, NULL, &pr, err,
                                 errlen))
            goto out;
        if (lead)
            printf("init_from %s: %d tensors loaded, %d kept at their initial values (shape), "
                   "%d missing, %d unused\n", r.train.init_from, pr.loaded, pr.shape,
                   pr.missing, pr.unused);
    }
    /* Only now, with data, config and checkpoints checked, does the run
     * directory get created: a failed start leaves nothing behind. */
    char metrics[1100], valcsv[1100];
    snprintf(metrics, sizeof metrics, "%s/metrics.csv", r.train.out_dir);
    snprintf(valcsv, sizeof valcsv, "%s/val.csv", r.train.out_dir);
    if (lead) {
        if (vt_mkdirs(r.train.out_dir, err, errlen))
            goto out;
        snprintf(path, sizeof path, "%s/config.ini", r.train.out_dir);
        if (vt_write_file_atomic(path, config_text, strlen(config_text), err, errlen))
            goto out;
        if (trim_csv(metrics, METRICS_HEADER, o->resume ? opt.step : -1, &h, 0, err, errlen) ||
            trim_csv(valcsv, VAL_HEADER, o->resume ? opt.step : -1, &h, 1, err, errlen))
            goto out;
    }
    /* Every rank arrives here, or at `out` with a failure: one agreement. */
    agreed = 1;
    if ((rc = -vt_dist_agree(0, err, errlen)) != 0)
        goto out;
    rc = VT_TRAIN_FAILED;
    if (dist) {
        bcast_state(&r.model.store, &opt);
        red = vt_dist_reducer_new(&r.model.store);
    }

    if (!quiet) {
        vt_model_print(&r.model, stdout);
        printf("training %s: %lld steps (%d epochs of %lld), batch %d, %d threads, out_dir %s\n",
               r.model.name, (long long)total, epochs, (long long)per_epoch,
               r.train.batch_size, vt_get_threads(), r.train.out_dir);
        if (dist)
            printf("data-parallel: %d processes (%d on this machine), %d clips each per step; "
                   "gradients %.2f MB in %d buckets\n", vt_dist_size(), vt_dist_local_size(),
                   r.train.batch_size / vt_dist_size(),
                   4.0 * (double)vt_dist_reducer_floats(red) / 1048576.0,
                   vt_dist_reducer_buckets(red));
        fflush(stdout);
    }

    int *labels = malloc((size_t)r.train.batch_size * sizeof *labels);
    float *probs = malloc((size_t)r.train.batch_size * r.model.classes * sizeof *probs);
    double int_loss = 0, int_t0 = now_s(), start_t = int_t0, wait0 = 0;
    long int_hit = 0, int_n = 0, int_steps = 0;
    int64_t run_steps = 0;
    /* Step timing (the "timing:" line), from the second step on. */
    double time_steps = 0, time_comm = 0, time_grad = 0, time_cpu = 0;
    long timed = 0;
    vt_loader_stats ls;
    vt_loader_stats_get(train, &ls);
    wait0 = ls.wait_s;
    rc = VT_TRAIN_DONE;
    while (opt.step < total) {
        const vt_batch *b = NULL;
        double step_t0 = now_s(), step_c0 = thread_cpu_s();
        vt_dist_stats ds0;
        vt_dist_stats_get(&ds0);
        int got = pending_epoch_end ? 0 : vt_loader_next(train, &b, err, errlen);
        pending_epoch_end = 0;
        if (got < 0 && !dist) {
            rc = VT_TRAIN_FAILED;
            break;
        }
        if (got == 0) { /* epoch end: at the same batch on every rank */
            sv.epoch++;
            sv.epoch_step = 0;
            if (r.train.val_every && sv.epoch % r.train.val_every == 0) {
                if (validate(&sv, &test, opt.step, tty, err, errlen, &h)) {
                    rc = VT_TRAIN_FAILED;
                    break;
                }
                if (lead)
                    write_curves(r.train.out_dir, &h, r.model.name);
            }
            char ep[64];
            snprintf(ep, sizeof ep, "epoch_%03lld.h5", (long long)sv.epoch);
            if ((r.train.save_epochs && save_ckpt(&sv, ep, err, errlen)) ||
                save_ckpt(&sv, "last.h5", err, errlen)) {
                rc = VT_TRAIN_FAILED;
                break;
            }
            continue;
        }
        /* A rank whose batch failed to load sits this step out and says so
         * in the control sum below. */
        int n = got > 0 ? b->n : 0;
        if (n == 0 && !dist)
            continue;
        vt_tensor *logits = NULL, *loss = NULL;
        float lv = 0;
        long hits = 0;
        if (n > 0) {
            vt_ctx_reset(&c);
            c.training = 1;
            c.grad_enabled = 1;
            c.shard_offset = (size_t)b->first;
            vt_tensor *x = vt_tensor_wrap(&c, b->x, 5, (int[]){n, 3, b->t, b->h, b->w});
            logits = vt_model_forward(&r.model, &c, x);
            memcpy(labels, b->label, (size_t)n * sizeof *labels);
            loss = vt_model_loss(&r.model, &c, logits, labels, r.train.label_smoothing);
            lv = loss->data[0];
            vt_model_probs(&r.model, logits, probs);
            for (int i = 0; i < n; i++) {
                const float *p = probs + (size_t)i * r.model.classes;
                int best = 0;
                for (int k = 1; k < r.model.classes; k++)
                    if (p[k] > p[best])
                        best = k;
                hits += best == labels[i];
            }
        }
        /* The global batch's mean loss and hits, any rank's failure, and a
         * stop request (a signal at any rank): one allreduce. */
        double ctl[5] = {(double)lv * n, n, (double)hits, got < 0, vt_train_stop_requested};
        vt_dist_sum_double(ctl, 5);
        if (ctl[3] > 0) {
            vt_dist_agree(got < 0, err, errlen);
            rc = VT_TRAIN_FAILED;
            break;
        }
        if (ctl[1] == 0)
            continue;
        double gloss = dist ? ctl[0] / ctl[1] : lv;
        int stop = ctl[4] > 0;
        if (!isfinite(gloss)) {
            snprintf(err, errlen, "step %lld: the loss is %s; training stopped. The last good "
                     "checkpoint is %s/last.h5 (lower [train] lr or add gradient clipping: "
                     "[optim] clip_grad_norm)", (long long)opt.step + 1,
                     isnan(gloss) ? "NaN" : "infinite", r.train.out_dir);
            rc = VT_TRAIN_FAILED;
            break;
        }
        vt_store_zero_grad(&r.model.store);
        if (dist) {
            /* Seeded with this rank's share of the global batch, so the
             * summed gradients are those of the global mean loss. */
            float w = (float)(n / ctl[1]);
            vt_dist_reducer_attach(red, &c);
            if (n > 0)
                vt_backward_seed(&c, loss, &w);
            vt_dist_reducer_finish(red, &c);
        } else {
            vt_backward(&c, loss);
        }
        if (r.optim.clip_grad_norm > 0)
            vt_optim_clip_grad_norm(&opt, r.optim.clip_grad_norm);
        double lr = vt_schedule_lr(&r.sched, opt.step);
        vt_optim_step(&opt, lr);
        if (dist)
            vt_dist_average_buffers(red);
        run_steps++;
        sv.epoch_step++;
        sv.samples += (int64_t)ctl[1];
        int_hit += (long)ctl[2];
        int_n += (long)ctl[1];
        int_loss += gloss;
        int_steps++;
        if (run_steps > 1) {
            vt_dist_stats ds1;
            vt_dist_stats_get(&ds1);
            time_steps += now_s() - step_t0;
            time_comm += ds1.blocked_s - ds0.blocked_s;
            time_grad += ds1.grad_wait_s - ds0.grad_wait_s;
            time_cpu += thread_cpu_s() - step_c0 - (ds1.blocked_cpu_s - ds0.blocked_cpu_s);
            timed++;
        }

        int last_step = opt.step >= total;
        if (opt.step % r.train.log_every == 0 || last_step) {
            double t = now_s();
            vt_loader_stats_get(train, &ls);
            double dt = t - int_t0, wait = dt > 0 ? (ls.wait_s - wait0) / dt : 0;
            double cps = dt > 0 ? int_n / dt : 0, mloss = int_loss / int_steps,
                   acc = (double)int_hit / int_n;
            double eta = run_steps ? (t - start_t) / run_steps * (double)(total - opt.step) : 0;
            int wrc = 0;
            if (lead) {
                char row[256];
                snprintf(row, sizeof row, "%lld,%lld,%.6f,%.6f,%.6g,%.3f,%.4f\n",
                         (long long)opt.step, (long long)sv.epoch, mloss, acc, lr, cps, wait);
                wrc = append_line(metrics, row, err, errlen);
                if (!wrc) {
                    hist_add(&h, (double)opt.step, mloss, acc);
                    write_curves(r.train.out_dir, &h, r.model.name);
                    if (!quiet)
                        progress_line(tty, opt.step, total, sv.epoch, epochs, mloss, acc, lr,
                                      cps, wait, eta);
                }
            }
            if (agree(wrc, err, errlen)) {
                rc = VT_TRAIN_FAILED;
                break;
            }
            int_loss = 0;
            int_hit = int_n = int_steps = 0;
            int_t0 = t;
            wait0 = ls.wait_s;
        }
        if (r.train.checkpoint_every && opt.step % r.train.checkpoint_every == 0 &&
            save_ckpt(&sv, "last.h5", err, errlen)) {
            rc = VT_TRAIN_FAILED;
            break;
        }
        if (stop || (o->stop_after > 0 && run_steps >= o->stop_after)) {
            if (save_ckpt(&sv, "last.h5", err, errlen)) {
                rc = VT_TRAIN_FAILED;
                break;
            }
            if (lead) {
                if (tty)
                    fprintf(stderr, "\n");
                printf("stopped after step %lld; checkpoint written. Resume with:\n  ",
                       (long long)opt.step);
                if (dist)
                    printf("mpirun -np N "); /* any N dividing the batch */
                printf("vtrain %s --resume %s/last.h5", o->config_path, r.train.out_dir);
                for (int i = 0; i < o->n_sets; i++)
                    printf(" --set '%s'", o->sets[i]);
                printf("\n");
                fflush(stdout);
            }
            rc = VT_TRAIN_INTERRUPTED;
            break;
        }
    }
    if (tty && !quiet)
        fprintf(stderr, "\n");
    if (rc == VT_TRAIN_DONE) {
        /* The loop ends on the step count, before the loader reports the
         * last epoch's end: close that epoch here. */
        if (sv.epoch_step == per_epoch) {
            sv.epoch++;
            sv.epoch_step = 0;
            char ep[64];
            snprintf(ep, sizeof ep, "epoch_%03lld.h5", (long long)sv.epoch);
            if (r.train.save_epochs && save_ckpt(&sv, ep, err, errlen))
                rc = VT_TRAIN_FAILED;
        }
        if (rc == VT_TRAIN_DONE && validate(&sv, &test, opt.step, tty, err, errlen, &h))
            rc = VT_TRAIN_FAILED;
        if (rc == VT_TRAIN_DONE && save_ckpt(&sv, "last.h5", err, errlen))
            rc = VT_TRAIN_FAILED;
        if (rc == VT_TRAIN_DONE && lead) {
            write_curves(r.train.out_dir, &h, r.model.name);
            vt_loader_stats_get(train, &ls);
            printf("done: %lld steps in %.1f s; best video accuracy %.2f%% (epoch %lld); "
                   "checkpoints in %s; %d broken videos skipped\n", (long long)opt.step,
                   now_s() - start_t, 100 * sv.best, (long long)sv.best_epoch,
                   r.train.out_dir, ls.skipped);
        }
    }
    if (dist && (rc == VT_TRAIN_DONE || rc == VT_TRAIN_INTERRUPTED) &&
        check_replicas(&r.model.store, opt.step, err, errlen))
        rc = VT_TRAIN_FAILED;
    if (!quiet && timed > 0) {
        double ms = 1e3 / (double)timed;
        printf("timing: %d process%s x %d thread%s, %.1f ms per step (steps 2..%lld of this "
               "run), of which %.1f ms (%.1f%%) blocked in communication (%.1f ms waiting for "
               "gradients); main thread %.1f ms CPU per step outside communication\n",
               vt_dist_size(), dist ? "es" : "", vt_get_threads(),
               vt_get_threads() > 1 ? "s" : "", time_steps * ms, (long long)run_steps,
               time_comm * ms, time_steps > 0 ? 100 * time_comm / time_steps : 0,
               time_grad * ms, time_cpu * ms);
        fflush(stdout);
    }
    free(labels);
    free(probs);
out:
    /* A rank that failed during setup meets the others' agreement here. */
    if (!agreed && dist)
        rc = -vt_dist_agree(-rc, err, errlen);
    if (train)
        vt_loader_close(train);
    if (test)
        vt_loader_close(test);
    vt_dist_reducer_free(red);
    vt_optim_free(&opt);
    free(config_text);
    free(classes);
    hist_free(&h);
    vt_ctx_free(&c);
    vt_run_free(&r);
    return rc;
}
