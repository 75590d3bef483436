/* test_shape.c - reshape, flatten, permute, concat, mean: finite
 * differences, PyTorch parity (tests/fixtures/shape.h5 from
 * tools/fixtures/gen_shape.py), view semantics, the fast permute paths
 * against a plain index loop, and thread-count independence. */
#include "vt_test.h"

#include <math.h>
#include <string.h>

/* Every op here is linear in its input, so the central difference has no
 * truncation error; the large step shrinks the fp32 rounding of the
 * output (err ~ 1e-7 * |sum R*y| / (2 eps) ~ 1e-5). */
static const vtt_gc_opts GC = {.eps = 1e-2, .rtol = 1e-3, .atol = 1e-4};

/* PyTorch parity: fp32 relative 1e-4. reshape/permute/concat move values
 * and must match exactly; mean divides a sum of at most 9 values in [-1, 1)
 * whose fp32 result is within 1e-7 absolute, so 1e-6 is the absolute floor
 * for means that cancel to near zero. */
#define PT_RTOL 1e-4
#define PT_ATOL 1e-6

/* ==== Finite differences ============================================== */

typedef struct {
    int ndim;
    int shape[VT_MAX_DIMS];
} shape_arg;

static vt_tensor *f_reshape(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    const shape_arg *s = ud;
    return vt_reshape(c, in[0], s->ndim, s->shape);
}
static vt_tensor *f_flatten(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    (void)ud;
    return vt_flatten(c, in[0]);
}
static vt_tensor *f_permute(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    return vt_permute(c, in[0], ud);
}
typedef struct {
    int n, axis;
} concat_arg;
static vt_tensor *f_concat(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    const concat_arg *a = ud;
    return vt_concat(c, a->n, in, a->axis);
}
static vt_tensor *f_mean(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    return vt_mean(c, in[0], *(int *)ud);
}

START_TEST(gradcheck_reshape_flatten)
{
    static const struct {
        int xnd, x[5];
        shape_arg to;
    } cases[] = {
        {3, {2, 3, 4}, {2, {4, -1}}},
        {3, {2, 3, 4}, {4, {3, -1, 2, 2}}},
        {5, {2, 3, 1, 2, 5}, {2, {6, 10}}},
        {1, {7}, {3, {1, 7, 1}}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_rand(&c, cases[k].xnd, cases[k].x, -1, 1, 10 + k, 1);
        double w = vtt_gradcheck("reshape", f_reshape, (void *)&cases[k].to, 1, &x, &GC);
        printf("gradcheck reshape case %zu: worst err/tol %.3f\n", k, w);
        if (cases[k].xnd >= 2) {
            w = vtt_gradcheck("flatten", f_flatten, NULL, 1, &x, &GC);
            printf("gradcheck flatten case %zu: worst err/tol %.3f\n", k, w);
        }
        vt_ctx_free(&c);
    }
}
END_TEST

/* Gradients flow through a view into the op that consumes it and back:
 * x (2, 3, 4) -> (6, 4) -> linear -> (6, 5) -> (2, 15) -> tanh -> * x2. */
static vt_tensor *f_view_chain(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    (void)ud;
    vt_tensor *v = vt_reshape(c, in[0], 2, (int[]){-1, 4});
    vt_tensor *h = vt_linear(c, v, in[1], in[2]);
    vt_tensor *r = vt_tanh(c, vt_reshape(c, h, 2, (int[]){2, -1}));
    return vt_mul(c, r, vt_flatten(c, in[3]));
}

START_TEST(gradcheck_view_chain)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *in[4] = {vtt_rand(&c, VTT_SHAPE(2, 3, 4), -1, 1, 1, 1),
                        vtt_rand(&c, VTT_SHAPE(5, 4), -1, 1, 2, 1),
                        vtt_rand(&c, VTT_SHAPE(5), -1, 1, 3, 1),
                        vtt_rand(&c, VTT_SHAPE(2, 3, 5), -1, 1, 4, 1)};
    /* tanh is not linear: a smaller step keeps its truncation error
     * (~eps^2 * f''') below the tolerance. */
    vtt_gc_opts o = {.eps = 1e-3, .rtol = 1e-2, .atol = 1e-3};
    double w = vtt_gradcheck("reshape chain", f_view_chain, NULL, 4, in, &o);
    printf("gradcheck reshape->linear->reshape->tanh->mul: worst err/tol %.3f\n", w);
    vt_ctx_free(&c);
}
END_TEST

START_TEST(gradcheck_permute)
{
    static const struct {
        int ndim, x[5], perm[5];
    } cases[] = {
        {2, {3, 5}, {1, 0}},
        {3, {3, 4, 5}, {0, 2, 1}},
        {3, {3, 4, 5}, {2, 0, 1}},
        {3, {2, 1, 5}, {1, 2, 0}},
        {4, {2, 3, 4, 5}, {0, 2, 3, 1}},
        {4, {2, 3, 4, 5}, {3, 1, 0, 2}},
        {5, {2, 3, 4, 3, 2}, {0, 2, 1, 3, 4}},  /* (N,C,T,H,W)->(N,T,C,H,W) */
        {5, {2, 5, 3, 1, 1}, {0, 2, 1, 3, 4}},  /* (N,C,T,1,1)->(N,T,C,1,1) */
        {5, {2, 3, 4, 3, 2}, {4, 3, 2, 1, 0}},
        {5, {1, 3, 2, 3, 5}, {0, 1, 2, 3, 4}},  /* identity */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_rand(&c, cases[k].ndim, cases[k].x, -1, 1, 20 + k, 1);
        double w = vtt_gradcheck("permute", f_permute, (void *)cases[k].perm, 1, &x, &GC);
        printf("gradcheck permute case %zu (%d-D): worst err/tol %.3f\n", k,
               cases[k].ndim, w);
        vt_ctx_free(&c);
    }
}
END_TEST

START_TEST(gradcheck_concat)
{
    static const struct {
        int n, ndim, axis, s[3][4];
    } cases[] = {
        {2, 3, 0, {{2, 3, 4}, {3, 3, 4}}},
        {3, 3, 0, {{1, 3, 2}, {4, 3, 2}, {2, 3, 2}}},
        {2, 3, 1, {{2, 1, 4}, {2, 3, 4}}},
        {3, 3, 1, {{2, 1, 4}, {2, 3, 4}, {2, 2, 4}}},
        {2, 4, 2, {{2, 3, 1, 2}, {2, 3, 4, 2}}},
        {3, 4, 2, {{2, 1, 3, 2}, {2, 1, 1, 2}, {2, 1, 2, 2}}},
        {2, 4, -1, {{2, 3, 4, 5}, {2, 3, 4, 1}}},
        {3, 3, 2, {{2, 3, 5}, {2, 3, 1}, {2, 3, 2}}}, /* last, positive */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *in[3];
        for (int i = 0; i < cases[k].n; i++)
            in[i] = vtt_rand(&c, cases[k].ndim, cases[k].s[i], -1, 1,
                             30 + 3 * k + (size_t)i, 1);
        concat_arg a = {cases[k].n, cases[k].axis};
        double w = vtt_gradcheck("concat", f_concat, &a, cases[k].n, in, &GC);
        printf("gradcheck concat case %zu (axis %d, %d inputs): worst err/tol %.3f\n",
               k, cases[k].axis, cases[k].n, w);
        vt_ctx_free(&c);
    }
}
END_TEST

static vt_tensor *f_narrow(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    const int *a = ud; /* axis, start, length */
    return vt_narrow(c, in[0], a[0], a[1], a[2]);
}

START_TEST(gradcheck_narrow)
{
    static const struct {
        int ndim, x[5], arg[3];
    } cases[] = {
        {3, {3, 5, 4}, {1, 4, 1}},          /* the last time step */
        {4, {2, 3, 7, 2}, {2, 2, 3}},       /* a middle window */
        {5, {1, 2, 3, 5, 3}, {4, 0, 2}},    /* the innermost axis */
        {2, {4, 3}, {0, 0, 4}},             /* everything */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_rand(&c, cases[k].ndim, cases[k].x, -1, 1, 80 + k, 1);
        double w = vtt_gradcheck("narrow", f_narrow, (void *)cases[k].arg, 1, &x, &GC);
        printf("gradcheck narrow case %zu: worst err/tol %.3f\n", k, w);
        vt_ctx_free(&c);
    }
}
END_TEST

START_TEST(gradcheck_mean)
{
    static const struct {
        int ndim, x[5];
    } cases[] = {
        {1, {7}},
        {3, {3, 4, 5}},       /* (N, T, F) */
        {2, {1, 9}},
        {5, {2, 3, 2, 3, 2}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_rand(&c, cases[k].ndim, cases[k].x, -1, 1, 60 + k, 1);
        for (int axis = 0; axis < cases[k].ndim; axis++) {
            double w = vtt_gradcheck("mean", f_mean, &axis, 1, &x, &GC);
            printf("gradcheck mean case %zu axis %d: worst err/tol %.3f\n", k, axis, w);
        }
        vt_ctx_free(&c);
    }
}
END_TEST

/* ==== PyTorch parity =================================================== */

/* Output values, output shape, then backward from the fixture's gy and
 * every input's gradient. */
static void check_case(vt_ctx *c, hid_t f, const char *kase, vt_tensor *y,
                       int n_in, vt_tensor *const *in, const char *const *names)
{
    vt_tensor *want = vtt_load_case(c, f, kase, "y", 1);
    ck_assert_msg(y->ndim == want->ndim, "%s: rank %d, torch %d", kase,
                  y->ndim, want->ndim);
    for (int d = 0; d < y->ndim; d++)
        ck_assert_msg(y->shape[d] == want->shape[d], "%s: dim %d is %d, torch %d",
                      kase, d, y->shape[d], want->shape[d]);
    vtt_parity(f, kase, "y", y->data, y->numel, PT_RTOL, PT_ATOL);
    vtt_backward_fixture(c, y, f, kase);
    for (int i = 0; i < n_in; i++) {
        char g[32];
        snprintf(g, sizeof g, "g_%s", names[i]);
        vtt_parity(f, kase, g, in[i]->grad, in[i]->numel, PT_RTOL, PT_ATOL);
    }
}

START_TEST(parity_shape)
{
    static const char *const x_name[] = {"x"};
    hid_t f = vtt_fixture_open("shape.h5");
    static const char *reshapes[] = {"reshape_3d", "reshape_5d"};
    for (size_t k = 0; k < 2; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_load_case(&c, f, reshapes[k], "x", 1);
        int s[2];
        vtt_attr_ints(f, reshapes[k], "shape", s, 2);
        vt_tensor *y = vt_reshape(&c, x, 2, s);
        check_case(&c, f, reshapes[k], y, 1, &x, x_name);
        vt_ctx_free(&c);
    }
    static const char *flattens[] = {"flatten_5d", "flatten_3d"};
    for (size_t k = 0; k < 2; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_load_case(&c, f, flattens[k], "x", 1);
        check_case(&c, f, flattens[k], vt_flatten(&c, x), 1, &x, x_name);
        vt_ctx_free(&c);
    }
    static const char *permutes[] = {"permute_3d", "permute_4d", "permute_nctHW",
                                     "permute_ntcHW", "permute_nct11",
                                     "permute_5d_any", "permute_big_tile"};
    for (size_t k = 0; k < sizeof permutes / sizeof permutes[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_load_case(&c, f, permutes[k], "x", 1);
        int perm[VT_MAX_DIMS];
        vtt_attr_ints(f, permutes[k], "perm", perm, x->ndim);
        check_case(&c, f, permutes[k], vt_permute(&c, x, perm), 1, &x, x_name);
        vt_ctx_free(&c);
    }
    static const char *concats[] = {"concat_ax0", "concat_ax1", "concat_ax2",
                                    "concat_last", "concat_ax0_3"};
    static const char *const x_names[] = {"x0", "x1", "x2"};
    for (size_t k = 0; k < sizeof concats / sizeof concats[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        int n, axis;
        vtt_attr_ints(f, concats[k], "n", &n, 1);
        vtt_attr_ints(f, concats[k], "axis", &axis, 1);
        ck_assert_int_le(n, 3);
        vt_tensor *xs[3];
        for (int i = 0; i < n; i++)
            xs[i] = vtt_load_case(&c, f, concats[k], x_names[i], 1);
        check_case(&c, f, concats[k], vt_concat(&c, n, xs, axis), n, xs, x_names);
        vt_ctx_free(&c);
    }
    static const char *means[] = {"mean_ax0", "mean_ax1", "mean_ax2",
                                  "mean_time", "mean_5d_ax3"};
    for (size_t k = 0; k < sizeof means / sizeof means[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_load_case(&c, f, means[k], "x", 1);
        int axis;
        vtt_attr_ints(f, means[k], "axis", &axis, 1);
        check_case(&c, f, means[k], vt_mean(&c, x, axis), 1, &x, x_name);
        vt_ctx_free(&c);
    }
    static const char *narrows[] = {"narrow_last_step", "narrow_mid", "narrow_whole"};
    for (size_t k = 0; k < sizeof narrows / sizeof narrows[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_load_case(&c, f, narrows[k], "x", 1);
        int axis, start, length;
        vtt_attr_ints(f, narrows[k], "axis", &axis, 1);
        vtt_attr_ints(f, narrows[k], "start", &start, 1);
        vtt_attr_ints(f, narrows[k], "length", &length, 1);
        check_case(&c, f, narrows[k], vt_narrow(&c, x, axis, start, length), 1, &x, x_name);
        vt_ctx_free(&c);
    }
    H5Fclose(f);
}
END_TEST

/* ==== Semantics ======================================================= */

START_TEST(reshape_is_a_view)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *x = vtt_rand(&c, VTT_SHAPE(2, 3, 4), -1, 1, 1, 1);
    vt_tensor *y = vt_reshape(&c, x, 3, (int[]){-1, 2, 3});
    ck_assert_ptr_eq(y->data, x->data);
    ck_assert_int_eq(y->ndim, 3);
    ck_assert_int_eq(y->shape[0], 4);
    ck_assert_int_eq(y->shape[1], 2);
    ck_assert_int_eq(y->shape[2], 3);
    vt_tensor *fl = vt_flatten(&c, x);
    ck_assert_ptr_eq(fl->data, x->data);
    ck_assert_int_eq(fl->shape[0], 2);
    ck_assert_int_eq(fl->shape[1], 12);
    /* Backward adds onto what x->grad already holds. */
    for (int i = 0; i < 24; i++)
        x->grad[i] = 1.0f;
    float seed[24];
    for (int i = 0; i < 24; i++)
        seed[i] = (float)i;
    vt_backward_seed(&c, y, seed);
    for (int i = 0; i < 24; i++)
        ck_assert_float_eq(x->grad[i], 1.0f + (float)i);
    /* No-grad mode: still a view, nothing on the tape. */
    size_t before = c.n_nodes;
    c.grad_enabled = 0;
    vt_tensor *z = vt_reshape(&c, x, 1, (int[]){24});
    ck_assert_ptr_eq(z->data, x->data);
    ck_assert_uint_eq(c.n_nodes, before);
    ck_assert_int_eq(z->requires_grad, 0);
    vt_ctx_free(&c);
}
END_TEST

/* Plain index loop: out[i] = x[sum_d idx_d * xstride[perm[d]]]. */
static void permute_naive(const vt_tensor *x, const int *perm, float *out)
{
    int nd = x->ndim, oshape[VT_MAX_DIMS];
    size_t xs[VT_MAX_DIMS], acc = 1;
    for (int d = nd - 1; d >= 0; d--) {
        xs[d] = acc;
        acc *= (size_t)x->shape[d];
    }
    for (int d = 0; d < nd; d++)
        oshape[d] = x->shape[perm[d]];
    for (size_t i = 0; i < x->numel; i++) {
        size_t q = i, off = 0;
        for (int d = nd - 1; d >= 0; d--) {
            off += (q % (size_t)oshape[d]) * xs[perm[d]];
            q /= (size_t)oshape[d];
        }
        out[i] = x->data[off];
    }
}

/* Sizes above the parallel threshold and tiles with ragged edges, for the
 * three kernels (contiguous rows, tiled transpose, plain copy) and their
 * inverse in backward. */
START_TEST(permute_fast_paths_match_index_loop)
{
    static const struct {
        int ndim, x[5], perm[5];
    } cases[] = {
        {5, {2, 24, 8, 14, 14}, {0, 2, 1, 3, 4}},  /* rows of H*W */
        {5, {2, 8, 24, 14, 14}, {0, 2, 1, 3, 4}},  /* and back */
        {5, {3, 130, 100, 1, 1}, {0, 2, 1, 3, 4}}, /* tiled (C, T) */
        {3, {3, 100, 130}, {0, 2, 1}},
        {4, {5, 33, 7, 41}, {3, 1, 0, 2}},         /* general */
        {3, {40, 30, 30}, {0, 1, 2}},              /* copy */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_rand(&c, cases[k].ndim, cases[k].x, -1, 1, 70 + k, 1);
        vt_tensor *y = vt_permute(&c, x, cases[k].perm);
        float *want = malloc(x->numel * sizeof(float));
        permute_naive(x, cases[k].perm, want);
        ck_assert_mem_eq(y->data, want, x->numel * sizeof(float));
        /* Backward: the gradient of sum(gy * y) is gy permuted back, added
         * to what is there (1). Check via y' = permute(gx - 1) == gy. */
        float *seed = malloc(y->numel * sizeof(float));
        vtt_fill(seed, y->numel, -1, 1, 80 + k);
        for (size_t i = 0; i < y->numel; i++) /* so that 1 + s - 1 == s */
            seed[i] = roundf(seed[i] * 256.0f) / 256.0f;
        for (size_t i = 0; i < x->numel; i++)
            x->grad[i] = 1.0f;
        vt_backward_seed(&c, y, seed);
        vt_tensor *g = vt_leaf(&c, x->ndim, x->shape, 0);
        for (size_t i = 0; i < x->numel; i++)
            g->data[i] = x->grad[i] - 1.0f;
        permute_naive(g, cases[k].perm, want);
        for (size_t i = 0; i < x->numel; i++) /* values: -0 + 1 - 1 is +0 */
            ck_assert_msg(want[i] == seed[i], "case %zu: gradient %zu is %g, want %g",
                          k, i, want[i], seed[i]);
        free(seed);
        free(want);
        vt_ctx_free(&c);
    }
}
END_TEST

/* Mean and concat split their work by output, so every bit agrees between
 * 1 and 2 threads (sizes above the parallel threshold). */
START_TEST(thread_count_independent)
{
    int saved = vt_get_threads();
    float *ref[3] = {NULL, NULL, NULL};
    for (int th = 1; th <= 2; th++) {
        vt_set_threads(th);
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_rand(&c, VTT_SHAPE(4, 300, 100), -1, 1, 1, 1);
        vt_tensor *x2 = vtt_rand(&c, VTT_SHAPE(4, 300, 37), -1, 1, 2, 1);
        vt_tensor *m0 = vt_mean(&c, x, 0), *m1 = vt_mean(&c, x, 1);
        vt_tensor *cat = vt_concat(&c, 2, (vt_tensor *[]){x, x2}, 2);
        vt_tensor *outs[3] = {m0, m1, cat};
        for (int i = 0; i < 3; i++) {
            if (th == 1) {
                ref[i] = malloc(outs[i]->numel * sizeof(float));
                memcpy(ref[i], outs[i]->data, outs[i]->numel * sizeof(float));
            } else {
                ck_assert_mem_eq(ref[i], outs[i]->data, outs[i]->numel * sizeof(float));
            }
        }
        vt_ctx_free(&c);
    }
    for (int i = 0; i < 3; i++)
        free(ref[i]);
    vt_set_threads(saved);
}
END_TEST

static Suite *shape_suite(void)
{
    Suite *s = suite_create("shape");
    TCase *tc = tcase_create("shape");
    tcase_add_test(tc, gradcheck_reshape_flatten);
    tcase_add_test(tc, gradcheck_view_chain);
    tcase_add_test(tc, gradcheck_permute);
    tcase_add_test(tc, gradcheck_concat);
    tcase_add_test(tc, gradcheck_mean);
    tcase_add_test(tc, gradcheck_narrow);
    tcase_add_test(tc, parity_shape);
    tcase_add_test(tc, reshape_is_a_view);
    tcase_add_test(tc, permute_fast_paths_match_index_loop);
    tcase_add_test(tc, thread_count_independent);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(shape_suite)
