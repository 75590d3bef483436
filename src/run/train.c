/* train.c - the training loop: batches from the loader, forward, loss,
 * backward, optimizer step; metrics, curves, validation, checkpoints, and
 * exact resume.
 *
 * Exact resume rests on every source of state being saved: parameters and
 * batch-norm buffers (the store), optimizer moments and step count, the
 * dropout generator's counter and the loader's position (a batch is a pure
 * function of seed, epoch and index). Validation runs in eval mode on its
 * own loader and touches none of these, so a run interrupted anywhere and
 * resumed with the same thread count retraces the same steps bit for bit. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vt_ckpt.h"
#include "vt_run.h"

volatile int vt_train_stop_requested;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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

static int save_ckpt(saver *s, const char *file, char *err, size_t errlen)
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
    if (!*test) {
        vt_data_config dc = r->data;
        dc.clips_per_video = r->train.val_clips;
        dc.warn = warn_video;
        if (vt_loader_open(&dc, VT_TEST, test, err, errlen))
            return -1;
    }
    vt_eval_result res;
    eval_prog p = {tty};
    if (vt_evaluate(&r->model, *test, &res, on_eval_progress, &p, err, errlen))
        return -1;
    if (tty)
        fprintf(stderr, "\r\033[K");
    printf("validation after epoch %lld (step %lld): clip acc %.2f%%, video acc %.2f%% "
           "(top-5 %.2f%%) over %ld videos, %ld clips, loss %.4f, %.1f s\n",
           (long long)sv->epoch, (long long)step, 100 * res.clip_top1, 100 * res.video_top1,
           100 * res.video_top5, res.videos, res.clips, res.loss, res.seconds);
    fflush(stdout);
    char path[1100], row[512];
    snprintf(path, sizeof path, "%s/val.csv", r->train.out_dir);
    snprintf(row, sizeof row, "%lld,%lld,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f\n", (long long)step,
             (long long)sv->epoch, res.clip_top1, res.clip_top5, res.video_top1,
             res.video_top5, res.mean_class_acc, res.loss);
    int rc = append_line(path, row, err, errlen);
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
    if (st != VT_CKPT_LOADED)
        printf("init_from: %-32s %s (%s)\n", name, vt_ckpt_status_name(st), detail);
}

int vt_train_run(const vt_train_opts *o, char *err, size_t errlen)
{
    vt_run r;
    if (vt_run_load(&r, o->config_path, NULL, o->sets, o->n_sets, err, errlen)) {
        vt_run_free(&r);
        return VT_TRAIN_CONFIG_ERROR;
    }
    int rc = VT_TRAIN_FAILED;
    vt_loader *train = NULL, *test = NULL;
    vt_optim opt;
    memset(&opt, 0, sizeof opt);
    char *config_text = NULL;
    char **classes = NULL;
    history h = {0};
    vt_ctx c;
    vt_ctx_init(&c, r.train.seed ^ 0x5eedd70f0u);
    int tty = isatty(STDERR_FILENO) && !o->quiet;

    vt_set_threads(r.train.threads > 0 ? r.train.threads : (int)sysconf(_SC_NPROCESSORS_ONLN));
    r.data.warn = warn_video;
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
        printf("resumed from %s at step %lld (epoch %lld)\n", o->resume,
               (long long)opt.step, (long long)sv.epoch + 1);
    } else if (r.train.init_from[0]) {
        vt_ckpt_partial_result pr;
        if (vt_ckpt_load_partial(r.train.init_from, &r.model.store, report_init, NULL, &pr, err,
                                 errlen))
            goto out;
        printf("init_from %s: %d tensors loaded, %d kept at their initial values (shape), "
               "%d missing, %d unused\n", r.train.init_from, pr.loaded, pr.shape, pr.missing,
               pr.unused);
    }
    /* Only now, with data, config and checkpoints checked, does the run
     * directory get created: a failed start leaves nothing behind. */
    if (vt_mkdirs(r.train.out_dir, err, errlen))
        goto out;
    snprintf(path, sizeof path, "%s/config.ini", r.train.out_dir);
    if (vt_write_file_atomic(path, config_text, strlen(config_text), err, errlen))
        goto out;
    char metrics[1100], valcsv[1100];
    snprintf(metrics, sizeof metrics, "%s/metrics.csv", r.train.out_dir);
    snprintf(valcsv, sizeof valcsv, "%s/val.csv", r.train.out_dir);
    if (trim_csv(metrics, METRICS_HEADER, o->resume ? opt.step : -1, &h, 0, err, errlen) ||
        trim_csv(valcsv, VAL_HEADER, o->resume ? opt.step : -1, &h, 1, err, errlen))
        goto out;

    if (!o->quiet) {
        vt_model_print(&r.model, stdout);
        printf("training %s: %lld steps (%d epochs of %lld), batch %d, %d threads, out_dir %s\n",
               r.model.name, (long long)total, epochs, (long long)per_epoch,
               r.train.batch_size, vt_get_threads(), r.train.out_dir);
        fflush(stdout);
    }

    int *labels = malloc((size_t)r.train.batch_size * sizeof *labels);
    float *probs = malloc((size_t)r.train.batch_size * r.model.classes * sizeof *probs);
    double int_loss = 0, int_t0 = now_s(), start_t = int_t0, wait0 = 0;
    long int_hit = 0, int_n = 0, int_steps = 0;
    int64_t run_steps = 0;
    vt_loader_stats ls;
    vt_loader_stats_get(train, &ls);
    wait0 = ls.wait_s;
    rc = VT_TRAIN_DONE;
    while (opt.step < total) {
        const vt_batch *b = NULL;
        int got = pending_epoch_end ? 0 : vt_loader_next(train, &b, err, errlen);
        pending_epoch_end = 0;
        if (got < 0) {
            rc = VT_TRAIN_FAILED;
            break;
        }
        if (got == 0) { /* epoch end */
            sv.epoch++;
            sv.epoch_step = 0;
            if (r.train.val_every && sv.epoch % r.train.val_every == 0) {
                if (validate(&sv, &test, opt.step, tty, err, errlen, &h)) {
                    rc = VT_TRAIN_FAILED;
                    break;
                }
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
        if (b->n == 0)
            continue;
        vt_ctx_reset(&c);
        c.training = 1;
        c.grad_enabled = 1;
        vt_tensor *x = vt_tensor_wrap(&c, b->x, 5, (int[]){b->n, 3, b->t, b->h, b->w});
        vt_tensor *logits = vt_model_forward(&r.model, &c, x);
        memcpy(labels, b->label, (size_t)b->n * sizeof *labels);
        vt_tensor *loss = vt_model_loss(&r.model, &c, logits, labels, r.train.label_smoothing);
        float lv = loss->data[0];
        if (!isfinite(lv)) {
            snprintf(err, errlen, "step %lld: the loss is %s; training stopped. The last good "
                     "checkpoint is %s/last.h5 (lower [train] lr or add gradient clipping: "
                     "[optim] clip_grad_norm)", (long long)opt.step + 1,
                     isnan(lv) ? "NaN" : "infinite", r.train.out_dir);
            rc = VT_TRAIN_FAILED;
            break;
        }
        vt_store_zero_grad(&r.model.store);
        vt_backward(&c, loss);
        if (r.optim.clip_grad_norm > 0)
            vt_optim_clip_grad_norm(&opt, r.optim.clip_grad_norm);
        double lr = vt_schedule_lr(&r.sched, opt.step);
        vt_optim_step(&opt, lr);
        run_steps++;
        sv.epoch_step++;
        sv.samples += b->n;

        vt_model_probs(&r.model, logits, probs);
        for (int i = 0; i < b->n; i++) {
            const float *p = probs + (size_t)i * r.model.classes;
            int best = 0;
            for (int k = 1; k < r.model.classes; k++)
                if (p[k] > p[best])
                    best = k;
            int_hit += best == labels[i];
        }
        int_n += b->n;
        int_loss += lv;
        int_steps++;

        int last_step = opt.step >= total;
        if (opt.step % r.train.log_every == 0 || last_step) {
            double t = now_s();
            vt_loader_stats_get(train, &ls);
            double dt = t - int_t0, wait = dt > 0 ? (ls.wait_s - wait0) / dt : 0;
            double cps = dt > 0 ? int_n / dt : 0, mloss = int_loss / int_steps,
                   acc = (double)int_hit / int_n;
            double eta = run_steps ? (t - start_t) / run_steps * (double)(total - opt.step) : 0;
            char row[256];
            snprintf(row, sizeof row, "%lld,%lld,%.6f,%.6f,%.6g,%.3f,%.4f\n",
                     (long long)opt.step, (long long)sv.epoch, mloss, acc, lr, cps, wait);
            if (append_line(metrics, row, err, errlen)) {
                rc = VT_TRAIN_FAILED;
                break;
            }
            hist_add(&h, (double)opt.step, mloss, acc);
            write_curves(r.train.out_dir, &h, r.model.name);
            if (!o->quiet)
                progress_line(tty, opt.step, total, sv.epoch, epochs, mloss, acc, lr, cps,
                              wait, eta);
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
        if (vt_train_stop_requested || (o->stop_after > 0 && run_steps >= o->stop_after)) {
            if (save_ckpt(&sv, "last.h5", err, errlen)) {
                rc = VT_TRAIN_FAILED;
                break;
            }
            if (tty)
                fprintf(stderr, "\n");
            printf("stopped after step %lld; checkpoint written. Resume with:\n"
                   "  vtrain %s --resume %s/last.h5", (long long)opt.step, o->config_path,
                   r.train.out_dir);
            for (int i = 0; i < o->n_sets; i++)
                printf(" --set '%s'", o->sets[i]);
            printf("\n");
            rc = VT_TRAIN_INTERRUPTED;
            break;
        }
    }
    if (tty && !o->quiet)
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
        if (rc == VT_TRAIN_DONE) {
            write_curves(r.train.out_dir, &h, r.model.name);
            vt_loader_stats_get(train, &ls);
            printf("done: %lld steps in %.1f s; best video accuracy %.2f%% (epoch %lld); "
                   "checkpoints in %s; %d broken videos skipped\n", (long long)opt.step,
                   now_s() - start_t, 100 * sv.best, (long long)sv.best_epoch,
                   r.train.out_dir, ls.skipped);
        }
    }
    free(labels);
    free(probs);
out:
    if (train)
        vt_loader_close(train);
    if (test)
        vt_loader_close(test);
    vt_optim_free(&opt);
    free(config_text);
    free(classes);
    hist_free(&h);
    vt_ctx_free(&c);
    vt_run_free(&r);
    return rc;
}
