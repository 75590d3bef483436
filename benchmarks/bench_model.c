/* bench_model.c - whole-model steps and single ops, vtrain side. One row
 * per process (so peak RSS is the row's own), median of timed repetitions
 * after warm-up. benchmarks/run.py runs it beside bench_model_torch.py.
 *
 *   bench_model --config C.ini --batch B --mode train|forward [--reps N] [--threads T]
 *   bench_model --op maxpool|batchnorm|relu|optim [--reps N] [--threads T]
 *
 * Prints "RESULT <median_s> <peak_rss_mb> <flops_per_rep>". */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "op_conv3d_internal.h"
#include "vt_ops.h"
#include "vt_optim.h"
#include "vt_run.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static void fill(float *x, size_t n, uint64_t seed, float scale)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        x[i] = (vt_hash_uniform(seed, 3, i) - 0.5f) * scale;
}

static int bench_config(const char *path, int batch, int train, int reps)
{
    vt_run r;
    char err[1024];
    const char *sets[] = {"train.threads=0"};
    if (vt_run_load(&r, path, NULL, sets, 1, err, sizeof err) ||
        vt_run_finish(&r, 1000, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    /* The optimizer (momentum, 314 MB for C3D) only when training, as in
     * bench_model_torch.py. */
    vt_optim opt;
    memset(&opt, 0, sizeof opt);
    vt_optim_config oc;
    vt_optim_config_default(&oc, VT_OPTIM_SGD);
    oc.momentum = 0.9;
    if (train && vt_optim_init(&opt, &r.model.store, &oc, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    const int *s = r.model.in_shape;
    size_t n = (size_t)batch * s[0] * s[1] * s[2] * s[3];
    float *x = malloc(n * sizeof *x);
    fill(x, n, 1, 2.0f);
    int *labels = malloc((size_t)batch * sizeof *labels);
    for (int i = 0; i < batch; i++)
        labels[i] = i % r.model.classes;
    vt_ctx c;
    vt_ctx_init(&c, 1);
    c.training = train;
    c.grad_enabled = train;
    double *t = malloc((size_t)reps * sizeof *t);
    for (int it = -2; it < reps; it++) {
        double t0 = now();
        vt_ctx_reset(&c);
        vt_tensor *xt = vt_tensor_wrap(&c, x, 5, (int[]){batch, s[0], s[1], s[2], s[3]});
        vt_tensor *y = vt_model_forward(&r.model, &c, xt);
        if (train) {
            vt_tensor *loss = vt_model_loss(&r.model, &c, y, labels, 0.0f);
            vt_store_zero_grad(&r.model.store);
            vt_backward(&c, loss);
            vt_optim_step(&opt, 1e-4);
        }
        if (it >= 0)
            t[it] = now() - t0;
    }
    double flops = 2.0 * vt_model_madds(&r.model) * batch * (train ? 3 : 1);
    printf("RESULT %.6f %.1f %.6g\n", median(t, reps), peak_rss_mb(), flops);
    fprintf(stderr, "arena peak %.1f MB; pool: peak %.1f MB in use at once, %.1f MB held\n",
            c.arena.peak / 1048576.0, c.arena.pool_peak / 1048576.0,
            c.arena.pool_held / 1048576.0);
    vt_optim_free(&opt);
    vt_ctx_free(&c);
    vt_run_free(&r);
    free(x);
    free(labels);
    free(t);
    return 0;
}

/* C3D-sized tensors: pool1's input (2, 64, 16, 112, 112) for the pooling,
 * batch norm and ReLU rows (forward + backward); the optimizer row steps
 * SGD with momentum over C3D's 78,409,573 parameters. */
static int bench_op(const char *op, int reps)
{
    double *t = malloc((size_t)reps * sizeof *t);
    vt_ctx c;
    vt_ctx_init(&c, 1);
    if (!strcmp(op, "optim")) {
        vt_store st;
        vt_store_init(&st);
        vt_store_add(&st, "w", 1, (int[]){78409573}, 1);
        vt_store_finalize(&st);
        fill(st.data, st.total, 1, 1.0f);
        fill(st.grad, st.total, 2, 1e-3f);
        vt_optim opt;
        vt_optim_config oc;
        char err[256];
        vt_optim_config_default(&oc, VT_OPTIM_SGD);
        oc.momentum = 0.9;
        oc.weight_decay = 5e-4;
        vt_optim_init(&opt, &st, &oc, err, sizeof err);
        for (int it = -2; it < reps; it++) {
            double t0 = now();
            vt_optim_step(&opt, 1e-3);
            if (it >= 0)
                t[it] = now() - t0;
        }
        printf("RESULT %.6f %.1f %.6g\n", median(t, reps), peak_rss_mb(), 4.0 * 78409573);
        vt_optim_free(&opt);
        vt_store_free(&st);
        free(t);
        return 0;
    }
    int shape[5] = {2, 64, 16, 112, 112};
    size_t n = vt_shape_numel(5, shape);
    float *xd = malloc(n * sizeof *xd), *xg = calloc(n, sizeof *xg), *seed = malloc(n * sizeof *seed);
    fill(xd, n, 1, 2.0f);
    /* The upstream gradient is made once, outside the timed region (every
     * op here keeps the shape, or shrinks it: the first numel suffice). */
    fill(seed, n, 2, 1.0f);
    float gmd[64], btd[64], rmd[64], rvd[64], gmg[64], btg[64];
    for (int i = 0; i < 64; i++) {
        gmd[i] = rvd[i] = 1.0f;
        btd[i] = rmd[i] = 0.0f;
    }
    /* One context reset every repetition, as in training: the arena's
     * memory is reused, not faulted in again. */
    for (int it = -2; it < reps; it++) {
        vt_ctx_reset(&c);
        vt_tensor *x = vt_tensor_wrap(&c, xd, 5, shape);
        x->requires_grad = 1;
        x->grad = xg;
        double t0 = now();
        vt_tensor *y;
        if (!strcmp(op, "maxpool")) {
            vt_pool3d_args a = {{1, 2, 2}, {1, 2, 2}, {0, 0, 0}, 0};
            y = vt_maxpool3d(&c, x, &a);
        } else if (!strcmp(op, "batchnorm")) {
            vt_tensor *gm = vt_tensor_wrap(&c, gmd, 1, (int[]){64});
            vt_tensor *bt = vt_tensor_wrap(&c, btd, 1, (int[]){64});
            gm->requires_grad = bt->requires_grad = 1;
            gm->grad = gmg;
            bt->grad = btg;
            y = vt_batchnorm(&c, x, 1, gm, bt, vt_tensor_wrap(&c, rmd, 1, (int[]){64}),
                             vt_tensor_wrap(&c, rvd, 1, (int[]){64}), 0.1f, 1e-5f);
        } else if (!strcmp(op, "relu")) {
            y = vt_relu(&c, x);
        } else {
            fprintf(stderr, "bench_model: unknown op '%s'\n", op);
            return 2;
        }
        vt_backward_seed(&c, y, seed);
        if (it >= 0)
            t[it] = now() - t0;
    }
    printf("RESULT %.6f %.1f %.6g\n", median(t, reps), peak_rss_mb(), (double)n);
    vt_ctx_free(&c);
    free(xd);
    free(xg);
    free(seed);
    free(t);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *mode = "train", *op = NULL;
    int batch = 4, reps = 5, threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--config"))
            config = argv[i + 1];
        else if (!strcmp(argv[i], "--batch"))
            batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--mode"))
            mode = argv[i + 1];
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--op"))
            op = argv[i + 1];
        else if (!strcmp(argv[i], "--conv-path")) {
            /* A/B of the conv kernels on whole models */
            const int path = vt_conv_path_named(argv[i + 1]);
            if (path < 0) {
                fprintf(stderr,
                        "bench_model: --conv-path auto, sample, shared, igemm or winograd, "
                        "not %s\n",
                        argv[i + 1]);
                return 2;
            }
            vt_conv_set_path(path);
        } else {
            fprintf(stderr, "bench_model: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (threads > 0)
        vt_set_threads(threads);
    if (reps < 1)
        reps = 1;
    if (op)
        return bench_op(op, reps);
    if (!config) {
        fprintf(stderr, "usage: bench_model --config C.ini [--batch B] [--mode train|forward] "
                        "[--reps N] [--threads T] "
                        "[--conv-path auto|sample|shared|igemm|winograd] "
                        "| --op maxpool|batchnorm|relu|optim\n");
        return 2;
    }
    return bench_config(config, batch, strcmp(mode, "forward") != 0, reps);
}
