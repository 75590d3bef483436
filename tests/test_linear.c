/* test_linear.c - vt_linear and vt_matmul: finite differences, PyTorch
 * parity (tests/fixtures/linear.h5 from tools/fixtures/gen_linear.py) and
 * thread-count independence of the bias gradient. */
#include "vt_test.h"

#include <math.h>
#include <string.h>

/* Both ops are linear in each input, so a central difference has no
 * truncation error and a large step only shrinks the effect of the fp32
 * rounding of the output: err ~ 1e-7 * |sum R*y| / (2 eps) ~ 1e-5. */
static const vtt_gc_opts GC = {.eps = 1e-2, .rtol = 1e-3, .atol = 1e-4};

/* PyTorch parity: fp32 relative 1e-4. Inputs and weights lie in [-1, 1),
 * so every output and gradient is a sum of at most 33 products of size
 * <= 1 whose fp32 rounding is <= 33 * 6e-8 = 2e-6 absolute; 1e-5 is the
 * absolute floor for entries that cancel to near zero. */
#define PT_RTOL 1e-4
#define PT_ATOL 1e-5

static vt_tensor *f_linear(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    (void)ud;
    return vt_linear(c, in[0], in[1], in[2]);
}
static vt_tensor *f_linear_nobias(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    (void)ud;
    return vt_linear(c, in[0], in[1], NULL);
}
static vt_tensor *f_matmul(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    (void)ud;
    return vt_matmul(c, in[0], in[1]);
}

/* ==== Finite differences ============================================== */

START_TEST(gradcheck_linear)
{
    static const struct {
        int ndim, x[4], o, bias, x_grad;
    } cases[] = {
        {2, {1, 1}, 1, 1, 1},       /* smallest */
        {2, {5, 7}, 3, 1, 1},
        {3, {2, 5, 7}, 4, 1, 1},    /* (N, T, F) */
        {4, {2, 1, 3, 9}, 11, 1, 1},
        {2, {3, 6}, 5, 0, 1},       /* no bias */
        {3, {3, 4, 5}, 2, 0, 1},
        {2, {4, 3}, 6, 1, 0},       /* frozen input: only w and b */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        int f = cases[k].x[cases[k].ndim - 1], o = cases[k].o;
        vt_tensor *in[3];
        in[0] = vtt_rand(&c, cases[k].ndim, cases[k].x, -1, 1, 10 + k,
                         cases[k].x_grad);
        in[1] = vtt_rand(&c, 2, (int[]){o, f}, -1, 1, 20 + k, 1);
        in[2] = vtt_rand(&c, 1, &o, -1, 1, 30 + k, 1);
        double w = cases[k].bias
                       ? vtt_gradcheck("linear", f_linear, NULL, 3, in, &GC)
                       : vtt_gradcheck("linear no bias", f_linear_nobias, NULL,
                                       2, in, &GC);
        printf("gradcheck linear case %zu: worst err/tol %.3f\n", k, w);
        vt_ctx_free(&c);
    }
}
END_TEST

START_TEST(gradcheck_matmul)
{
    static const struct {
        int ndim, a[3], b[3];
    } cases[] = {
        {2, {4, 6}, {6, 5}},
        {2, {1, 7}, {7, 1}},
        {2, {3, 1}, {1, 5}},       /* K = 1: an outer product */
        {3, {3, 4, 5}, {3, 5, 2}},
        {3, {2, 1, 3}, {2, 3, 1}},
        {3, {1, 3, 3}, {1, 3, 4}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *in[2] = {
            vtt_rand(&c, cases[k].ndim, cases[k].a, -1, 1, 40 + k, 1),
            vtt_rand(&c, cases[k].ndim, cases[k].b, -1, 1, 50 + k, 1)};
        double w = vtt_gradcheck("matmul", f_matmul, NULL, 2, in, &GC);
        printf("gradcheck matmul case %zu: worst err/tol %.3f\n", k, w);
        vt_ctx_free(&c);
    }
}
END_TEST

/* ==== PyTorch parity =================================================== */

START_TEST(parity_linear)
{
    static const struct {
        const char *name;
        int bias;
    } cases[] = {{"lin_2d", 1}, {"lin_odd", 1}, {"lin_3d", 1},
                 {"lin_4d", 1}, {"lin_nobias", 0}};
    hid_t f = vtt_fixture_open("linear.h5");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *kase = cases[k].name;
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_load_case(&c, f, kase, "x", 1), *w = vtt_load_case(&c, f, kase, "w", 1);
        vt_tensor *b = cases[k].bias ? vtt_load_case(&c, f, kase, "b", 1) : NULL;
        vt_tensor *y = vt_linear(&c, x, w, b);
        vt_tensor *want = vtt_load_case(&c, f, kase, "y", 1);
        ck_assert_int_eq(y->ndim, want->ndim);
        for (int d = 0; d < y->ndim; d++)
            ck_assert_int_eq(y->shape[d], want->shape[d]);
        vtt_parity(f, kase, "y", y->data, y->numel, PT_RTOL, PT_ATOL);
        vtt_backward_fixture(&c, y, f, kase);
        vtt_parity(f, kase, "g_x", x->grad, x->numel, PT_RTOL, PT_ATOL);
        vtt_parity(f, kase, "g_w", w->grad, w->numel, PT_RTOL, PT_ATOL);
        if (b)
            vtt_parity(f, kase, "g_b", b->grad, b->numel, PT_RTOL, PT_ATOL);
        vt_ctx_free(&c);
    }
    H5Fclose(f);
}
END_TEST

START_TEST(parity_matmul)
{
    static const char *cases[] = {"mm_2d", "mm_vec", "bmm"};
    hid_t f = vtt_fixture_open("linear.h5");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *a = vtt_load_case(&c, f, cases[k], "a", 1), *b = vtt_load_case(&c, f, cases[k], "b", 1);
        vt_tensor *y = vt_matmul(&c, a, b);
        vt_tensor *want = vtt_load_case(&c, f, cases[k], "y", 1);
        ck_assert_int_eq(y->ndim, want->ndim);
        for (int d = 0; d < y->ndim; d++)
            ck_assert_int_eq(y->shape[d], want->shape[d]);
        vtt_parity(f, cases[k], "y", y->data, y->numel, PT_RTOL, PT_ATOL);
        vtt_backward_fixture(&c, y, f, cases[k]);
        vtt_parity(f, cases[k], "g_a", a->grad, a->numel, PT_RTOL, PT_ATOL);
        vtt_parity(f, cases[k], "g_b", b->grad, b->numel, PT_RTOL, PT_ATOL);
        vt_ctx_free(&c);
    }
    H5Fclose(f);
}
END_TEST

/* ==== Semantics ======================================================= */

/* Gradients add into what is there, and eval mode records nothing. */
START_TEST(linear_accumulates_and_eval_records_nothing)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *x = vtt_rand(&c, VTT_SHAPE(3, 4), -1, 1, 1, 1);
    vt_tensor *w = vtt_rand(&c, VTT_SHAPE(2, 4), -1, 1, 2, 1);
    vt_tensor *b = vtt_rand(&c, VTT_SHAPE(2), -1, 1, 3, 1);
    for (int i = 0; i < 2; i++)
        b->grad[i] = 10.0f;
    vt_tensor *y = vt_linear(&c, x, w, b);
    float seed[6] = {1, 2, 3, 4, 5, 6};
    vt_backward_seed(&c, y, seed);
    ck_assert_float_eq_tol(b->grad[0], 10.0f + 1 + 3 + 5, 1e-5);
    ck_assert_float_eq_tol(b->grad[1], 10.0f + 2 + 4 + 6, 1e-5);

    size_t before = c.n_nodes;
    c.grad_enabled = 0;
    vt_tensor *z = vt_matmul(&c, vt_linear(&c, x, w, NULL), w);
    ck_assert_uint_eq(c.n_nodes, before);
    ck_assert_int_eq(z->requires_grad, 0);
    vt_ctx_free(&c);
}
END_TEST

/* The bias gradient and the batched products split work by output, so the
 * reduction order, and thus every bit, is the same for 1 and 2 threads
 * (large enough that the parallel paths run). */
START_TEST(thread_count_independent)
{
    int saved = vt_get_threads();
    float *ref_b = NULL, *ref_y = NULL;
    size_t nb = 0, ny = 0;
    for (int th = 1; th <= 2; th++) {
        vt_set_threads(th);
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_rand(&c, VTT_SHAPE(8, 64, 48), -1, 1, 1, 0);
        vt_tensor *w = vtt_rand(&c, VTT_SHAPE(200, 48), -1, 1, 2, 0);
        vt_tensor *b = vtt_rand(&c, VTT_SHAPE(200), -1, 1, 3, 1);
        vt_tensor *y = vt_linear(&c, x, w, b);
        float *seed = malloc(y->numel * sizeof(float));
        vtt_fill(seed, y->numel, -1, 1, 4);
        vt_backward_seed(&c, y, seed);
        free(seed);
        vt_tensor *a = vtt_rand(&c, VTT_SHAPE(6, 5, 7), -1, 1, 5, 0);
        vt_tensor *m = vtt_rand(&c, VTT_SHAPE(6, 7, 3), -1, 1, 6, 0);
        vt_tensor *p = vt_matmul(&c, a, m);
        if (th == 1) {
            nb = b->numel;
            ny = p->numel;
            ref_b = malloc(nb * sizeof(float));
            ref_y = malloc(ny * sizeof(float));
            memcpy(ref_b, b->grad, nb * sizeof(float));
            memcpy(ref_y, p->data, ny * sizeof(float));
        } else {
            ck_assert_mem_eq(ref_b, b->grad, nb * sizeof(float));
            ck_assert_mem_eq(ref_y, p->data, ny * sizeof(float));
        }
        vt_ctx_free(&c);
    }
    free(ref_b);
    free(ref_y);
    vt_set_threads(saved);
}
END_TEST

static Suite *linear_suite(void)
{
    Suite *s = suite_create("linear");
    TCase *tc = tcase_create("linear");
    tcase_add_test(tc, gradcheck_linear);
    tcase_add_test(tc, gradcheck_matmul);
    tcase_add_test(tc, parity_linear);
    tcase_add_test(tc, parity_matmul);
    tcase_add_test(tc, linear_accumulates_and_eval_records_nothing);
    tcase_add_test(tc, thread_count_independent);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(linear_suite)
