/* vt_test.c - see vt_test.h. */
#include "vt_test.h"

#include <math.h>
#include <string.h>

#include "vt_h5.h"

#ifndef VT_FIXTURE_DIR
#error "VT_FIXTURE_DIR must be defined by the build"
#endif

void vtt_fill(float *x, size_t n, float lo, float hi, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * vt_hash_uniform(seed, 7, i);
}

vt_tensor *vtt_rand(vt_ctx *c, int ndim, const int *shape, float lo, float hi,
                    uint64_t seed, int requires_grad)
{
    vt_tensor *t = vt_leaf(c, ndim, shape, requires_grad);
    vtt_fill(t->data, t->numel, lo, hi, seed);
    return t;
}

/* sum(R * f(in)) in double, in a scratch context that is reset each time. */
static double objective(vt_ctx *run, vtt_fn f, void *ud, vt_tensor *const *in,
                        const float *r, size_t rn, uint64_t rng_counter)
{
    vt_ctx_reset(run);
    run->rng.counter = rng_counter;
    vt_tensor *y = f(run, in, ud);
    ck_assert_msg(y->numel == rn, "op output changed size between evaluations");
    double s = 0;
    for (size_t i = 0; i < rn; i++)
        s += (double)r[i] * (double)y->data[i];
    return s;
}

double vtt_gradcheck(const char *what, vtt_fn f, void *ud, int n_in,
                     vt_tensor *const *in, const vtt_gc_opts *o)
{
    vt_ctx run;
    vt_ctx_init(&run, 1234);
    /* Small chunks: thousands of tiny evaluations, and meson's
     * MALLOC_PERTURB_ makes every freed byte cost a write. */
    vt_arena_free(&run.arena);
    vt_arena_init(&run.arena, (size_t)1 << 20);
    run.training = o->training;
    uint64_t counter0 = run.rng.counter;
    int max_checks = o->max_checks ? o->max_checks : 512;

    /* Analytic: one sweep seeded with R. */
    for (int k = 0; k < n_in; k++)
        if (in[k]->requires_grad)
            memset(in[k]->grad, 0, in[k]->numel * sizeof(float));
    vt_tensor *y = f(&run, in, ud);
    size_t rn = y->numel;
    float *r = malloc(rn * sizeof(float));
    vtt_fill(r, rn, -1.0f, 1.0f, 99);
    ck_assert_msg(y->requires_grad, "%s: output does not require grad", what);
    vt_backward_seed(&run, y, r);

    double worst = 0;
    run.grad_enabled = 0;
    for (int k = 0; k < n_in; k++) {
        vt_tensor *x = in[k];
        if (!x->requires_grad)
            continue;
        float *analytic = malloc(x->numel * sizeof(float));
        memcpy(analytic, x->grad, x->numel * sizeof(float));
        size_t step = x->numel > (size_t)max_checks ? x->numel / (size_t)max_checks : 1;
        for (size_t i = (step > 1 ? step / 2 : 0); i < x->numel; i += step) {
            float orig = x->data[i];
            x->data[i] = (float)(orig + o->eps);
            double hi_v = objective(&run, f, ud, in, r, rn, counter0);
            x->data[i] = (float)(orig - o->eps);
            double lo_v = objective(&run, f, ud, in, r, rn, counter0);
            /* The effective step is what fp32 could represent. */
            double h = (double)(float)(orig + o->eps) - (double)(float)(orig - o->eps);
            x->data[i] = orig;
            double num = (hi_v - lo_v) / h;
            double a = analytic[i];
            double tol = o->atol + o->rtol * fmax(fabs(a), fabs(num));
            double ratio = fabs(a - num) / tol;
            if (ratio > worst)
                worst = ratio;
            ck_assert_msg(ratio <= 1.0,
                          "%s: input %d element %zu: analytic %.7g vs numeric %.7g "
                          "(tol %.3g)", what, k, i, a, num, tol);
        }
        free(analytic);
    }
    free(r);
    vt_ctx_free(&run);
    return worst;
}

hid_t vtt_fixture_open(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", VT_FIXTURE_DIR, name);
    vt_h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "cannot open fixture %s (regenerate with tools/gen_fixtures.py)", path);
    return f;
}

vt_tensor *vtt_load(vt_ctx *c, hid_t f, const char *path, int requires_grad)
{
    float *data;
    int nd, shape[VT_H5_MAX_DIMS];
    char err[256];
    int rc = vt_h5_read_f32(f, path, &data, &nd, shape, err, sizeof err);
    ck_assert_msg(rc == 0, "fixture: %s", err);
    if (nd == 0) {
        nd = 1;
        shape[0] = 1;
    }
    ck_assert_msg(nd <= VT_MAX_DIMS, "fixture %s has rank %d", path, nd);
    vt_tensor *t = vt_leaf(c, nd, shape, requires_grad);
    memcpy(t->data, data, t->numel * sizeof(float));
    free(data);
    return t;
}

void vtt_attr_ints(hid_t f, const char *obj, const char *name, int *v, int n)
{
    char err[256];
    ck_assert_msg(vt_h5_attr_int(f, obj, name, v, n, err, sizeof err) == 0,
                  "fixture: %s", err);
}

double vtt_attr_double(hid_t f, const char *obj, const char *name)
{
    char err[256];
    double v;
    ck_assert_msg(vt_h5_attr_double(f, obj, name, &v, 1, err, sizeof err) == 0,
                  "fixture: %s", err);
    return v;
}

int *vtt_load_ints(hid_t f, const char *path, size_t *n)
{
    char err[256];
    int *v;
    ck_assert_msg(vt_h5_read_i32(f, path, &v, n, err, sizeof err) == 0,
                  "fixture: %s", err);
    return v;
}

void vtt_check_against(const char *what, const float *got, hid_t f,
                       const char *path, double rtol, double atol)
{
    float *want;
    int nd, shape[VT_H5_MAX_DIMS];
    char err[256];
    ck_assert_msg(vt_h5_read_f32(f, path, &want, &nd, shape, err, sizeof err) == 0,
                  "fixture: %s", err);
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)shape[i];
    vtt_assert_close(what, got, want, n, rtol, atol);
    free(want);
}

void vtt_backward_fixture(vt_ctx *c, vt_tensor *y, hid_t f, const char *kase)
{
    char path[512];
    snprintf(path, sizeof path, "%s/gy", kase);
    vt_ctx tmp;
    vt_ctx_init(&tmp, 0);
    vt_arena_free(&tmp.arena);
    vt_arena_init(&tmp.arena, (size_t)1 << 16);
    vt_tensor *gy = vtt_load(&tmp, f, path, 0);
    ck_assert_msg(gy->numel == y->numel, "%s: gy has %zu elements, y %zu", kase,
                  gy->numel, y->numel);
    vt_backward_seed(c, y, gy->data);
    vt_ctx_free(&tmp);
}

vt_tensor *vtt_load_case(vt_ctx *c, hid_t f, const char *kase, const char *name,
                         int requires_grad)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", kase, name);
    return vtt_load(c, f, path, requires_grad);
}

double vtt_parity(hid_t f, const char *kase, const char *name, const float *got,
                  size_t n, double rtol, double atol)
{
    char what[256];
    snprintf(what, sizeof what, "%s %s", kase, name);
    vt_ctx tmp;
    vt_ctx_init(&tmp, 0);
    vt_arena_free(&tmp.arena);
    vt_arena_init(&tmp.arena, (size_t)1 << 16);
    vt_tensor *want = vtt_load_case(&tmp, f, kase, name, 0);
    ck_assert_msg(want->numel == n, "%s: %zu elements, fixture %zu", what, n, want->numel);
    double maxabs = 0;
    for (size_t i = 0; i < n; i++)
        maxabs = fmax(maxabs, fabs((double)got[i] - want->data[i]));
    double r = vtt_assert_close(what, got, want->data, n, rtol, atol);
    printf("parity %-16s %-5s max |diff| %.2e  err/tol %.3f\n", kase, name, maxabs, r);
    vt_ctx_free(&tmp);
    return r;
}

double vtt_assert_close(const char *what, const float *got, const float *want,
                        size_t n, double rtol, double atol)
{
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double ratio = d / (atol + rtol * fabs((double)want[i]));
        if (!(ratio <= worst)) { /* also catches NaN */
            worst = isnan(ratio) ? INFINITY : ratio;
            wi = i;
        }
    }
    ck_assert_msg(worst <= 1.0, "%s: element %zu: got %.8g want %.8g (rtol %.1e atol %.1e)",
                  what, wi, n ? got[wi] : 0.0, n ? want[wi] : 0.0, rtol, atol);
    return worst;
}

int vtt_run_suite(Suite *s)
{
    const char *th = getenv("VT_THREADS");
    if (th)
        vt_set_threads(atoi(th));
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
