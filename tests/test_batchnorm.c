/* test_batchnorm.c - vt_batchnorm on (N, C, T, H, W), (N, F) and
 * channel-last (N, T, F): finite differences in training mode (through the
 * batch statistics) and eval mode, PyTorch parity of y, every gradient and
 * the running statistics (tests/fixtures/batchnorm.h5 from
 * tools/fixtures/gen_batchnorm.py), running statistics after two training
 * calls, and thread-count determinism.
 *
 * Tolerances: gradcheck eps 5e-3, rtol 1e-2, atol 1e-3: the training-mode
 * objective sums a few hundred fp32 outputs, each rounded to ~1e-7, and the
 * larger step keeps that noise (divided by 2 * eps) well below atol.
 * PyTorch parity rtol 1e-4 with an absolute floor of 1e-5: y and the
 * gradients are O(1) and the x gradient in training mode is a difference of
 * O(1) terms (gy - mean(gy) - xhat * mean(gy * xhat)), so its small entries
 * carry absolute, not relative, fp32 error.
 */
#include "vt_test.h"

#include <math.h>
#include <string.h>

#include "vt_h5.h"

#define FX_RTOL 1e-4
#define FX_ATOL 1e-5

typedef struct {
    int axis;
    int affine;
    vt_tensor *rm, *rv;
    float momentum, eps;
} bn_spec;

static vt_tensor *f_bn(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    const bn_spec *s = ud;
    return vt_batchnorm(c, in[0], s->axis, s->affine ? in[1] : NULL,
                        s->affine ? in[2] : NULL, s->rm, s->rv, s->momentum, s->eps);
}

/* ==== gradient checks ================================================== */

typedef struct {
    const char *name;
    int ndim, shape[5], axis, affine;
} gc_case;

static const gc_case GC_CASES[] = {
    {"5-D (N,C,T,H,W)", 5, {3, 4, 2, 3, 3}, 1, 1},
    {"5-D odd, no affine", 5, {2, 3, 3, 1, 5}, 1, 0},
    {"(N,F)", 2, {7, 5}, 1, 1},
    {"channel-last (N,T,F)", 3, {3, 5, 4}, 2, 1},
};

static void gradcheck_mode(int training)
{
    const vtt_gc_opts o = {.eps = 5e-3, .rtol = 1e-2, .atol = 1e-3, .training = training};
    double worst = 0;
    for (size_t i = 0; i < sizeof GC_CASES / sizeof GC_CASES[0]; i++) {
        const gc_case *g = &GC_CASES[i];
        vt_ctx c;
        vt_ctx_init(&c, 1);
        int ch = g->shape[g->axis];
        /* A non-zero mean and spread: exercises the centring. */
        vt_tensor *x = vtt_rand(&c, g->ndim, g->shape, -1, 3, 60 + i, 1);
        vt_tensor *gamma = vtt_rand(&c, 1, &ch, 0.5f, 1.5f, 70 + i, 1);
        vt_tensor *beta = vtt_rand(&c, 1, &ch, -0.5f, 0.5f, 80 + i, 1);
        bn_spec s = {g->axis, g->affine, vtt_rand(&c, 1, &ch, -0.5f, 0.5f, 90 + i, 0),
                     vtt_rand(&c, 1, &ch, 0.5f, 2.0f, 100 + i, 0), 0.1f, 1e-5f};
        vt_tensor *in[3] = {x, gamma, beta};
        char what[128];
        snprintf(what, sizeof what, "batchnorm %s %s", g->name, training ? "train" : "eval");
        double r = vtt_gradcheck(what, f_bn, &s, g->affine ? 3 : 1, in, &o);
        worst = fmax(worst, r);
        vt_ctx_free(&c);
    }
    printf("batchnorm gradcheck (%s): worst err/tol %.3g\n", training ? "train" : "eval",
           worst);
}

START_TEST(gradcheck_training) { gradcheck_mode(1); }
END_TEST

START_TEST(gradcheck_eval) { gradcheck_mode(0); }
END_TEST

/* ==== PyTorch parity =================================================== */

static const char *const FX_CASES[] = {
    "bn5d_train", "bn5d_eval",   "bn2d_train",          "bn2d_eval",
    "bnseq_train", "bnseq_eval", "bn5d_noaffine_train",
};

static double check(hid_t f, const char *kase, const char *ds, const float *got,
                    size_t n)
{
    char path[256], what[256];
    snprintf(path, sizeof path, "%s/%s", kase, ds);
    snprintf(what, sizeof what, "%s %s", kase, ds);
    vt_ctx tmp;
    vt_ctx_init(&tmp, 0);
    vt_tensor *want = vtt_load(&tmp, f, path, 0);
    ck_assert_msg(want->numel == n, "%s: %zu values, fixture %zu", what, n, want->numel);
    double r = vtt_assert_close(what, got, want->data, n, FX_RTOL, FX_ATOL);
    vt_ctx_free(&tmp);
    return r;
}

static vt_tensor *load(vt_ctx *c, hid_t f, const char *kase, const char *ds, int rg)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", kase, ds);
    if (!vt_h5_exists(f, path))
        return NULL;
    return vtt_load(c, f, path, rg);
}

START_TEST(pytorch_parity)
{
    hid_t f = vtt_fixture_open("batchnorm.h5");
    double worst = 0;
    for (size_t i = 0; i < sizeof FX_CASES / sizeof FX_CASES[0]; i++) {
        const char *k = FX_CASES[i];
        int axis, training;
        vtt_attr_ints(f, k, "axis", &axis, 1);
        vtt_attr_ints(f, k, "training", &training, 1);
        float momentum = (float)vtt_attr_double(f, k, "momentum");
        float eps = (float)vtt_attr_double(f, k, "eps");
        vt_ctx c;
        vt_ctx_init(&c, 1);
        c.training = training;
        vt_tensor *x = load(&c, f, k, "x", 1);
        vt_tensor *gamma = load(&c, f, k, "gamma", 1);
        vt_tensor *beta = load(&c, f, k, "beta", 1);
        vt_tensor *rm = load(&c, f, k, "rm0", 0);
        vt_tensor *rv = load(&c, f, k, "rv0", 0);
        ck_assert_ptr_nonnull(x);
        ck_assert_ptr_nonnull(rm);
        ck_assert_ptr_nonnull(rv);
        vt_tensor *y = vt_batchnorm(&c, x, axis, gamma, beta, rm, rv, momentum, eps);
        worst = fmax(worst, check(f, k, "y", y->data, y->numel));
        worst = fmax(worst, check(f, k, "rm", rm->data, rm->numel));
        worst = fmax(worst, check(f, k, "rv", rv->data, rv->numel));
        vtt_backward_fixture(&c, y, f, k);
        worst = fmax(worst, check(f, k, "g_x", x->grad, x->numel));
        if (gamma) {
            worst = fmax(worst, check(f, k, "g_gamma", gamma->grad, gamma->numel));
            worst = fmax(worst, check(f, k, "g_beta", beta->grad, beta->numel));
        }
        vt_ctx_free(&c);
    }
    H5Fclose(f);
    printf("batchnorm parity: worst err/tol %.3g\n", worst);
}
END_TEST

/* nn.BatchNorm3d called twice in training: outputs and compounded running
 * statistics after each call. */
START_TEST(running_stats_two_calls)
{
    hid_t f = vtt_fixture_open("batchnorm.h5");
    const char *k = "bn_two_calls";
    float momentum = (float)vtt_attr_double(f, k, "momentum");
    float eps = (float)vtt_attr_double(f, k, "eps");
    vt_ctx c;
    vt_ctx_init(&c, 1);
    c.training = 1;
    vt_tensor *gamma = load(&c, f, k, "gamma", 1);
    vt_tensor *beta = load(&c, f, k, "beta", 1);
    vt_tensor *rm = load(&c, f, k, "rm0", 0);
    vt_tensor *rv = load(&c, f, k, "rv0", 0);
    double worst = 0;
    for (int call = 1; call <= 2; call++) {
        char nm[8];
        snprintf(nm, sizeof nm, "x%d", call);
        vt_tensor *x = load(&c, f, k, nm, 0);
        ck_assert_ptr_nonnull(x);
        vt_tensor *y = vt_batchnorm(&c, x, 1, gamma, beta, rm, rv, momentum, eps);
        snprintf(nm, sizeof nm, "y%d", call);
        worst = fmax(worst, check(f, k, nm, y->data, y->numel));
        snprintf(nm, sizeof nm, "rm%d", call);
        worst = fmax(worst, check(f, k, nm, rm->data, rm->numel));
        snprintf(nm, sizeof nm, "rv%d", call);
        worst = fmax(worst, check(f, k, nm, rv->data, rv->numel));
    }
    /* Eval mode leaves them alone. */
    c.training = 0;
    float before[4];
    ck_assert_uint_eq(rm->numel, 4);
    memcpy(before, rv->data, sizeof before);
    vt_batchnorm(&c, load(&c, f, k, "x1", 0), 1, gamma, beta, rm, rv, momentum, eps);
    ck_assert_mem_eq(before, rv->data, sizeof before);
    vt_ctx_free(&c);
    H5Fclose(f);
    printf("batchnorm two calls: worst err/tol %.3g\n", worst);
}
END_TEST

/* ==== determinism and eval mode ======================================= */

static float *run_once(int threads, size_t *n)
{
    vt_set_threads(threads);
    vt_ctx c;
    vt_ctx_init(&c, 1);
    int shape[5] = {4, 6, 4, 20, 20}, ch = 6; /* above the parallel threshold */
    vt_tensor *x = vtt_rand(&c, 5, shape, -1, 3, 5, 1);
    vt_tensor *gamma = vtt_rand(&c, 1, &ch, 0.5f, 1.5f, 6, 1);
    vt_tensor *beta = vtt_rand(&c, 1, &ch, -0.5f, 0.5f, 7, 1);
    vt_tensor *rm = vt_tensor_zeros(&c, 1, &ch), *rv = vt_tensor_zeros(&c, 1, &ch);
    vt_tensor *y = vt_batchnorm(&c, x, 1, gamma, beta, rm, rv, 0.1f, 1e-5f);
    float *seed = malloc(y->numel * sizeof(float));
    vtt_fill(seed, y->numel, -1, 1, 8);
    vt_backward_seed(&c, y, seed);
    free(seed);
    *n = 2 * x->numel + 4 * (size_t)ch;
    float *out = malloc(*n * sizeof(float)), *p = out;
    memcpy(p, y->data, x->numel * sizeof(float));
    memcpy(p += x->numel, x->grad, x->numel * sizeof(float));
    memcpy(p += x->numel, gamma->grad, (size_t)ch * sizeof(float));
    memcpy(p += ch, beta->grad, (size_t)ch * sizeof(float));
    memcpy(p += ch, rm->data, (size_t)ch * sizeof(float));
    memcpy(p += ch, rv->data, (size_t)ch * sizeof(float));
    vt_ctx_free(&c);
    return out;
}

START_TEST(bit_identical_across_threads)
{
    int saved = vt_get_threads();
    size_t n1, n2;
    float *a = run_once(1, &n1);
    float *b = run_once(2, &n2);
    vt_set_threads(saved);
    ck_assert_uint_eq(n1, n2);
    ck_assert_mem_eq(a, b, n1 * sizeof(float));
    free(a);
    free(b);
}
END_TEST

START_TEST(no_grad_records_nothing)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    int ch = 3;
    vt_tensor *x = vtt_rand(&c, VTT_SHAPE(4, 3, 5), -1, 1, 2, 1);
    vt_tensor *gamma = vtt_rand(&c, 1, &ch, 0.5f, 1.5f, 6, 1);
    vt_tensor *rm = vt_tensor_zeros(&c, 1, &ch), *rv = vt_tensor_zeros(&c, 1, &ch);
    for (int i = 0; i < ch; i++)
        rv->data[i] = 1.0f;
    c.grad_enabled = 0;
    vt_tensor *y = vt_batchnorm(&c, x, 1, gamma, NULL, rm, rv, 0.1f, 1e-5f);
    ck_assert_uint_eq(c.n_nodes, 0);
    ck_assert_int_eq(y->requires_grad, 0);
    ck_assert_ptr_null(y->node);
    /* With grad on, one node whose inputs are exactly x and gamma (no NULL
     * placeholder for the missing beta). */
    c.grad_enabled = 1;
    y = vt_batchnorm(&c, x, 1, gamma, NULL, rm, rv, 0.1f, 1e-5f);
    ck_assert_uint_eq(c.n_nodes, 1);
    ck_assert_int_eq(y->node->n_in, 2);
    ck_assert_ptr_eq(y->node->in[0], x);
    ck_assert_ptr_eq(y->node->in[1], gamma);
    vt_ctx_free(&c);
}
END_TEST

/* Backward adds: a second step with the same inputs, seeded the same,
 * leaves exactly twice the gradients of one (x, gamma and beta alike). */
START_TEST(gradients_accumulate)
{
    for (int training = 0; training < 2; training++) {
        vt_ctx cx, c;
        vt_ctx_init(&cx, 1);
        vt_ctx_init(&c, 1);
        c.training = training;
        int ch = 4;
        vt_tensor *x = vtt_rand(&cx, VTT_SHAPE(3, 4, 2, 5), -1, 2, 12, 1);
        vt_tensor *gamma = vtt_rand(&cx, 1, &ch, 0.5f, 1.5f, 13, 1);
        vt_tensor *beta = vtt_rand(&cx, 1, &ch, -0.5f, 0.5f, 14, 1);
        vt_tensor *rm = vtt_rand(&cx, 1, &ch, -0.5f, 0.5f, 15, 0);
        vt_tensor *rv = vtt_rand(&cx, 1, &ch, 0.5f, 2.0f, 16, 0);
        vt_tensor *leaves[3] = {x, gamma, beta};
        float *once[3];
        float seed[120];
        vtt_fill(seed, 120, -1, 1, 17);
        for (int pass = 0; pass < 2; pass++) {
            vt_ctx_reset(&c);
            vt_tensor *y = vt_batchnorm(&c, x, 1, gamma, beta, rm, rv, 0.1f, 1e-5f);
            ck_assert_uint_eq(y->numel, 120);
            vt_backward_seed(&c, y, seed);
            for (int k = 0; k < 3 && pass == 0; k++) {
                once[k] = malloc(leaves[k]->numel * sizeof(float));
                memcpy(once[k], leaves[k]->grad, leaves[k]->numel * sizeof(float));
            }
        }
        for (int k = 0; k < 3; k++) {
            for (size_t i = 0; i < leaves[k]->numel; i++)
                ck_assert_float_eq(leaves[k]->grad[i], 2.0f * once[k][i]);
            free(once[k]);
        }
        vt_ctx_free(&c);
        vt_ctx_free(&cx);
    }
}
END_TEST

static Suite *batchnorm_suite(void)
{
    Suite *s = suite_create("batchnorm");
    TCase *tc = tcase_create("batchnorm");
    tcase_add_test(tc, gradcheck_training);
    tcase_add_test(tc, gradcheck_eval);
    tcase_add_test(tc, pytorch_parity);
    tcase_add_test(tc, running_stats_two_calls);
    tcase_add_test(tc, bit_identical_across_threads);
    tcase_add_test(tc, no_grad_records_nothing);
    tcase_add_test(tc, gradients_accumulate);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(batchnorm_suite)
