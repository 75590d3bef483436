/* bench_ops.c - conv3d on C3D's layer shapes and the LSTM, forward and
 * backward, median of timed repetitions after two warm-ups.
 *
 *   bench_ops [--reps N] [--threads T] [--only NAME] [--pass PASS]
 *             [--path auto|sample|shared|igemm|winograd] [--tile-mb MB]
 *             [--batch N]
 *
 * --pass keeps one conv pass (fwd, bwd_data or bwd_weight), for a
 * profile of that pass alone. --path and --tile-mb force the conv's fast
 * path and column budget (op_conv3d_internal.h), to compare them on the
 * real layer shapes.
 * Prints one line per measurement, "ROW <name> <pass> <median_ms> <gflops>",
 * the format benchmarks/compare.py reads to put PyTorch beside it. Conv
 * rows go on with the median process CPU time and the GFLOP per CPU-second:
 * on a shared machine that moves much less with other jobs' load than the
 * wall time does (run with OMP_WAIT_POLICY=PASSIVE so waiting threads do
 * not count). VT_BENCH_ALL=1 also prints every conv repetition to stderr,
 * "REPS <name> <pass> <ms>...", for A/B comparisons by minimum or
 * percentile: on this VM a median of 5 moves by 10-30% between runs.
 * The last line, "RSS <MB>", is the process's peak resident set: run with
 * --only NAME it is that layer's (compare.py does). */
#include <omp.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "op_conv3d_internal.h"
#include "vt_ops.h"

typedef struct {
    const char *name;
    int cin, cout, t, h, w;
} conv_shape;

/* C3D with batch 2 on a 3x16x112x112 clip: the input of every conv layer. */
static const conv_shape C3D[] = {
    {"conv1a", 3, 64, 16, 112, 112},  {"conv2a", 64, 128, 16, 56, 56},
    {"conv3a", 128, 256, 8, 28, 28},  {"conv3b", 256, 256, 8, 28, 28},
    {"conv4a", 256, 512, 4, 14, 14},  {"conv4b", 512, 512, 4, 14, 14},
    {"conv5a", 512, 512, 2, 7, 7},    {"conv5b", 512, 512, 2, 7, 7},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void fill(vt_tensor *t, uint64_t seed)
{
    for (size_t i = 0; i < t->numel; i++)
        t->data[i] = vt_hash_uniform(seed, 1, i) - 0.5f;
}

static void row(const char *name, const char *pass, double sec, double flops)
{
    printf("ROW %-8s %-10s %9.2f ms %8.1f GFLOP/s\n", name, pass, sec * 1e3,
           flops / sec * 1e-9);
    fflush(stdout);
}

static void row_cpu(const char *name, const char *pass, double sec, double cpu,
                    double flops)
{
    printf("ROW %-8s %-10s %9.2f ms %8.1f GFLOP/s  cpu %9.2f ms %6.1f GFLOP/cpu-s\n",
           name, pass, sec * 1e3, flops / sec * 1e-9, cpu * 1e3, flops / cpu * 1e-9);
    fflush(stdout);
}

/* pass: 0 forward, 1 backward-data, 2 backward-weight (incl. bias).
 * Returns the median wall time, the median CPU time in *cpu. */
static double time_conv(const conv_shape *s, int batch, int pass, int reps, double *cpu)
{
    double *ts = malloc((size_t)reps * sizeof *ts), *cs = malloc((size_t)reps * sizeof *cs);
    vt_ctx c;
    vt_ctx_init(&c, 1);
    /* Two warm-ups, as bench_model: the pool plans its region at the
     * first reset, and a backward pass's buffers settle only at the second
     * (their lifetimes differ once the first step's came from malloc); a
     * rep on a new region pays its page faults inside the timed call. */
    for (int r = -2; r < reps; r++) {
        vt_ctx_reset(&c);
        vt_tensor *x = vt_leaf(&c, 5, (int[]){batch, s->cin, s->t, s->h, s->w}, pass == 1);
        vt_tensor *w = vt_leaf(&c, 5, (int[]){s->cout, s->cin, 3, 3, 3}, pass == 2);
        vt_tensor *b = vt_leaf(&c, 1, (int[]){s->cout}, pass == 2);
        fill(x, 1);
        fill(w, 2);
        fill(b, 3);
        vt_conv3d_args a = {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1};
        c.grad_enabled = pass != 0;
        double t0 = now(), c0 = cpu_now();
        vt_tensor *y = vt_conv3d(&c, x, w, b, &a);
        double t1 = now(), c1 = cpu_now();
        if (pass) {
            /* y's gradient is set up before the clock starts and only the
             * conv node's backward is timed, as PyTorch's side passes its
             * gradient to autograd.grad as it is. Timing vt_backward_seed
             * also counted allocating, zeroing and filling y's gradient
             * (103 MB for conv1a at batch 2): 20-40% of conv1a's rows. */
            float *g = vt_grad(&c, y);
            for (size_t i = 0; i < y->numel; i++)
                g[i] = 1e-3f;
            t0 = now();
            c0 = cpu_now();
            y->node->op->backward(&c, y->node);
            t1 = now();
            c1 = cpu_now();
        }
        if (r >= 0) {
            ts[r] = t1 - t0;
            cs[r] = c1 - c0;
        }
    }
    if (getenv("VT_BENCH_ALL")) {
        fprintf(stderr, "REPS %s %d", s->name, pass);
        for (int r = 0; r < reps; r++)
            fprintf(stderr, " %.2f", ts[r] * 1e3);
        fprintf(stderr, "\n");
    }
    double m = median(ts, reps);
    *cpu = median(cs, reps);
    vt_ctx_free(&c);
    free(ts);
    free(cs);
    return m;
}

static void bench_lstm(int T, int reps)
{
    const int N = 8, F = 512, H = 512;
    double *tf = malloc((size_t)reps * sizeof *tf), *tb = malloc((size_t)reps * sizeof *tb);
    vt_ctx c;
    vt_ctx_init(&c, 1);
    for (int r = -1; r < reps; r++) {
        vt_ctx_reset(&c);
        vt_tensor *x = vt_leaf(&c, 3, (int[]){N, T, F}, 1);
        vt_tensor *p[4] = {vt_leaf(&c, 2, (int[]){4 * H, F}, 1),
                           vt_leaf(&c, 2, (int[]){4 * H, H}, 1),
                           vt_leaf(&c, 1, (int[]){4 * H}, 1),
                           vt_leaf(&c, 1, (int[]){4 * H}, 1)};
        fill(x, 4);
        for (int k = 0; k < 4; k++) {
            fill(p[k], 5 + k);
            for (size_t i = 0; i < p[k]->numel; i++)
                p[k]->data[i] *= 0.08f;
        }
        vt_lstm_args a = {F, H, 1, 0};
        double t0 = now();
        vt_tensor *y = vt_lstm(&c, x, &a, p, NULL, NULL, NULL, NULL);
        double t1 = now();
        float *seed = vt_arena_alloc(&c.arena, y->numel * sizeof(float));
        for (size_t i = 0; i < y->numel; i++)
            seed[i] = 1e-3f;
        vt_backward_seed(&c, y, seed);
        double t2 = now();
        if (r >= 0) {
            tf[r] = t1 - t0;
            tb[r] = t2 - t0;
        }
    }
    /* Forward: 2 GEMMs of 2*N*T*4H*(F or H) flops; backward twice that. */
    double ff = 2.0 * N * T * 4 * H * (F + H);
    char name[16];
    snprintf(name, sizeof name, "lstm_t%d", T);
    row(name, "fwd", median(tf, reps), ff);
    row(name, "fwd+bwd", median(tb, reps), 3 * ff);
    vt_ctx_free(&c);
    free(tf);
    free(tb);
}

int main(int argc, char **argv)
{
    int reps = 5, threads = 0;
    const char *only = NULL, *only_pass = NULL;
    int batch = 2; /* the conv rows' (the issue's); --batch for others */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--pass") && i + 1 < argc) {
            only_pass = argv[++i];
            if (strcmp(only_pass, "fwd") && strcmp(only_pass, "bwd_data") &&
                strcmp(only_pass, "bwd_weight")) {
                fprintf(stderr, "--pass: fwd, bwd_data or bwd_weight, not '%s'\n", only_pass);
                return 2;
            }
        }
        else if (!strcmp(argv[i], "--path") && i + 1 < argc) {
            const char *p = argv[++i];
            const int path = vt_conv_path_named(p);
            if (path < 0) {
                fprintf(stderr, "--path: auto, sample, shared, igemm or winograd, not '%s'\n", p);
                return 2;
            }
            vt_conv_set_path(path);
        } else if (!strcmp(argv[i], "--tile-mb") && i + 1 < argc)
            vt_conv_set_tile_bytes((size_t)(atof(argv[++i]) * (1 << 20)));
        else {
            fprintf(stderr,
                    "usage: %s [--reps N] [--threads T] [--only NAME] [--pass PASS] "
                    "[--path auto|sample|shared|igemm|winograd] [--tile-mb MB] [--batch N]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1)
        reps = 1;
    if (batch < 1)
        batch = 1;
    if (threads > 0)
        vt_set_threads(threads);
    printf("# vtrain bench_ops: %d threads, %d timed repetitions (median)\n",
           vt_get_threads(), reps);
    for (size_t i = 0; i < sizeof C3D / sizeof C3D[0]; i++) {
        const conv_shape *s = &C3D[i];
        if (only && strcmp(only, s->name))
            continue;
        double flops = 2.0 * batch * s->cout * s->t * s->h * s->w * s->cin * 27.0;
        static const char *const pass[3] = {"fwd", "bwd_data", "bwd_weight"};
        for (int p = 0; p < 3; p++) {
            if (only_pass && strcmp(only_pass, pass[p]))
                continue;
            double cpu, t = time_conv(s, batch, p, reps, &cpu);
            row_cpu(s->name, pass[p], t, cpu, flops);
        }
    }
    if (!only || !strcmp(only, "lstm")) {
        bench_lstm(16, reps);
        bench_lstm(64, reps);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("RSS %.0f\n", (double)ru.ru_maxrss / 1024.0);
    return 0;
}
