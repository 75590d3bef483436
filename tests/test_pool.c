/* test_pool.c - maxpool3d, maxpool2d_frames, avgpool3d, adaptive_avgpool3d:
 * output sizes against a brute-force count of windows, finite differences,
 * PyTorch parity (tests/fixtures/pool.h5 from tools/fixtures/gen_pool.py),
 * thread-count determinism and eval mode.
 *
 * Tolerances: gradcheck rtol 1e-2 / atol 1e-3 (central differences of an
 * fp32 forward, eps 1e-3). PyTorch parity rtol 1e-4 with an absolute floor
 * of 1e-6: inputs and gy are O(1), and the reference is float64 rounded once
 * to fp32, so only our fp32 summation order differs.
 */
#include "vt_test.h"

#include <math.h>
#include <string.h>

#define FX_RTOL 1e-4
#define FX_ATOL 1e-6

enum { MAX3D, MAX2D, AVG3D, ADAPTIVE };

typedef struct {
    int kind;
    int k[3], s[3], p[3], ceil_mode; /* 2-D cases use [0], [1] */
    int out[3];                      /* adaptive */
} pool_spec;

static vt_tensor *run_pool(vt_ctx *c, vt_tensor *x, const pool_spec *p)
{
    switch (p->kind) {
    case MAX3D: {
        vt_pool3d_args a = {{p->k[0], p->k[1], p->k[2]}, {p->s[0], p->s[1], p->s[2]},
                            {p->p[0], p->p[1], p->p[2]}, p->ceil_mode};
        return vt_maxpool3d(c, x, &a);
    }
    case MAX2D: {
        vt_pool2d_args a = {{p->k[0], p->k[1]}, {p->s[0], p->s[1]}, {p->p[0], p->p[1]},
                            p->ceil_mode};
        return vt_maxpool2d_frames(c, x, &a);
    }
    case AVG3D: {
        vt_pool3d_args a = {{p->k[0], p->k[1], p->k[2]}, {p->s[0], p->s[1], p->s[2]},
                            {p->p[0], p->p[1], p->p[2]}, p->ceil_mode};
        return vt_avgpool3d(c, x, &a);
    }
    default:
        return vt_adaptive_avgpool3d(c, x, p->out[0], p->out[1], p->out[2]);
    }
}

static vt_tensor *f_pool(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    return run_pool(c, in[0], ud);
}

/* A random permutation of 0..n-1 spaced 0.01 apart: no two elements of a
 * window are within 2 * eps of each other, so a perturbation never moves
 * the argmax (no kink inside the central difference). */
static void fill_distinct(vt_tensor *t, uint64_t seed)
{
    size_t n = t->numel;
    for (size_t i = 0; i < n; i++)
        t->data[i] = (float)i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(vt_hash64(seed, 3, i) % (i + 1));
        float tmp = t->data[i];
        t->data[i] = t->data[j];
        t->data[j] = tmp;
    }
    for (size_t i = 0; i < n; i++)
        t->data[i] = 0.01f * (t->data[i] - 0.5f * (float)n);
}

/* ==== output size ====================================================== */

/* Counts windows one by one: window i covers [i*s - p, i*s - p + k). Floor
 * mode keeps those inside the padded input [-p, in + p); ceil mode also
 * keeps the first one that runs past its end, provided the previous window
 * had not reached the end yet and it starts inside the input. */
static int brute_out_size(int in, int k, int s, int p, int ceil_mode)
{
    int n = 0;
    for (int i = 0;; i++) {
        int start = i * s - p;
        if (start + k <= in + p) {
            n++;
            continue;
        }
        int prev_end = (i - 1) * s - p + k; /* i >= 1: window 0 fits */
        if (ceil_mode && prev_end < in + p && start < in)
            n++;
        return n;
    }
}

START_TEST(out_size_matches_window_count)
{
    int checked = 0;
    for (int in = 1; in <= 13; in++)
        for (int k = 1; k <= 5; k++)
            for (int s = 1; s <= 4; s++)
                for (int p = 0; 2 * p <= k; p++)
                    for (int cm = 0; cm < 2; cm++) {
                        if (in + 2 * p < k)
                            continue;
                        int want = brute_out_size(in, k, s, p, cm);
                        int got = vt_pool_out_size(in, k, s, p, cm);
                        ck_assert_msg(got == want,
                                      "in %d k %d s %d p %d ceil %d: got %d want %d",
                                      in, k, s, p, cm, got, want);
                        checked++;
                    }
    ck_assert_int_gt(checked, 500);
    /* Stride 0 means the kernel. */
    ck_assert_int_eq(vt_pool_out_size(7, 2, 0, 0, 1), vt_pool_out_size(7, 2, 2, 0, 1));
}
END_TEST

/* ==== gradient checks ================================================== */

typedef struct {
    const char *name;
    int shape[5];
    pool_spec p;
} gc_case;

static const gc_case GC_CASES[] = {
    {"max3d pad s(1,2,2)", {2, 3, 5, 7, 6}, {MAX3D, {2, 3, 2}, {1, 2, 2}, {1, 1, 0}, 0, {0}}},
    {"max3d ceil pad", {1, 2, 5, 7, 8}, {MAX3D, {3, 3, 3}, {2, 2, 2}, {1, 0, 1}, 1, {0}}},
    {"max3d c3d pool1", {1, 2, 3, 6, 7}, {MAX3D, {1, 2, 2}, {1, 2, 2}, {0, 0, 0}, 0, {0}}},
    {"max3d c3d pool5 pad", {1, 2, 3, 5, 5}, {MAX3D, {2, 2, 2}, {2, 2, 2}, {0, 1, 1}, 0, {0}}},
    {"max3d c3d pool5 ceil", {2, 2, 3, 5, 5}, {MAX3D, {2, 2, 2}, {0, 0, 0}, {0, 0, 0}, 1, {0}}},
    {"max2d frames pad ceil", {2, 2, 3, 7, 5}, {MAX2D, {3, 3}, {2, 2}, {1, 1}, 1, {0}}},
    {"max2d frames floor", {1, 3, 2, 5, 6}, {MAX2D, {2, 3}, {0, 0}, {1, 0}, 0, {0}}},
    {"avg3d pad", {2, 3, 5, 7, 6}, {AVG3D, {3, 3, 2}, {2, 2, 2}, {1, 1, 1}, 0, {0}}},
    {"avg3d ceil pad clipped", {1, 2, 6, 6, 7}, {AVG3D, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, 1, {0}}},
    {"avg3d ceil nopad", {2, 2, 5, 5, 3}, {AVG3D, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, 1, {0}}},
    {"adaptive (1,1,1)", {2, 3, 4, 5, 3}, {ADAPTIVE, {0}, {0}, {0}, 0, {1, 1, 1}}},
    {"adaptive (1,H,W)", {2, 2, 4, 5, 3}, {ADAPTIVE, {0}, {0}, {0}, 0, {1, 5, 3}}},
    {"adaptive (T,1,1)", {2, 2, 4, 5, 3}, {ADAPTIVE, {0}, {0}, {0}, 0, {4, 1, 1}}},
    {"adaptive 5->3", {1, 2, 5, 5, 7}, {ADAPTIVE, {0}, {0}, {0}, 0, {3, 3, 4}}},
};

START_TEST(gradcheck_pools)
{
    const vtt_gc_opts o = {.eps = 1e-3, .rtol = 1e-2, .atol = 1e-3};
    double worst = 0;
    for (size_t i = 0; i < sizeof GC_CASES / sizeof GC_CASES[0]; i++) {
        const gc_case *g = &GC_CASES[i];
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vt_leaf(&c, 5, g->shape, 1);
        if (g->p.kind == MAX3D || g->p.kind == MAX2D)
            fill_distinct(x, 40 + i);
        else
            vtt_fill(x->data, x->numel, -2, 2, 40 + i);
        double r = vtt_gradcheck(g->name, f_pool, (void *)&g->p, 1, &x, &o);
        worst = fmax(worst, r);
        vt_ctx_free(&c);
    }
    printf("pool gradcheck: worst err/tol %.3g\n", worst);
}
END_TEST

/* ==== PyTorch parity =================================================== */

typedef struct {
    const char *name;
    int kind;
} fx_case;

static const fx_case FX_CASES[] = {
    {"max3d_basic", MAX3D},          {"max3d_ceil", MAX3D},
    {"max3d_c3d_pool1", MAX3D},      {"max3d_c3d_pool5_pad", MAX3D},
    {"max3d_c3d_pool5_ceil", MAX3D}, {"max2d_pad_ceil", MAX2D},
    {"max2d_default_stride", MAX2D}, {"avg3d_basic", AVG3D},
    {"avg3d_ceil_pad", AVG3D},       {"avg3d_ceil_nopad", AVG3D},
    {"avg3d_frames", AVG3D},         {"adaptive_111", ADAPTIVE},
    {"adaptive_1hw", ADAPTIVE},      {"adaptive_t11", ADAPTIVE},
    {"adaptive_nondiv", ADAPTIVE},   {"adaptive_up", ADAPTIVE},
};

START_TEST(pytorch_parity)
{
    hid_t f = vtt_fixture_open("pool.h5");
    double worst_y = 0, worst_g = 0;
    for (size_t i = 0; i < sizeof FX_CASES / sizeof FX_CASES[0]; i++) {
        const char *nm = FX_CASES[i].name;
        pool_spec p = {.kind = FX_CASES[i].kind};
        int nd = p.kind == MAX2D ? 2 : 3;
        if (p.kind == ADAPTIVE) {
            vtt_attr_ints(f, nm, "out", p.out, 3);
        } else {
            vtt_attr_ints(f, nm, "kernel", p.k, nd);
            vtt_attr_ints(f, nm, "stride", p.s, nd);
            vtt_attr_ints(f, nm, "pad", p.p, nd);
            vtt_attr_ints(f, nm, "ceil_mode", &p.ceil_mode, 1);
        }
        vt_ctx c;
        vt_ctx_init(&c, 1);
        char path[256], what[256];
        snprintf(path, sizeof path, "%s/x", nm);
        vt_tensor *x = vtt_load(&c, f, path, 1);
        vt_tensor *y = run_pool(&c, x, &p);
        vt_ctx tmp;
        vt_ctx_init(&tmp, 0);
        snprintf(path, sizeof path, "%s/y", nm);
        vt_tensor *want = vtt_load(&tmp, f, path, 0);
        char s1[64], s2[64];
        ck_assert_msg(vt_same_shape(y, want), "%s: output %s, PyTorch %s", nm,
                      vt_shape_str(y, s1, sizeof s1), vt_shape_str(want, s2, sizeof s2));
        snprintf(what, sizeof what, "%s y", nm);
        worst_y = fmax(worst_y, vtt_assert_close(what, y->data, want->data, y->numel,
                                                 FX_RTOL, FX_ATOL));
        vtt_backward_fixture(&c, y, f, nm);
        snprintf(path, sizeof path, "%s/g_x", nm);
        vt_tensor *gwant = vtt_load(&tmp, f, path, 0);
        snprintf(what, sizeof what, "%s g_x", nm);
        ck_assert_uint_eq(gwant->numel, x->numel);
        worst_g = fmax(worst_g, vtt_assert_close(what, x->grad, gwant->data, x->numel,
                                                 FX_RTOL, FX_ATOL));
        vt_ctx_free(&tmp);
        vt_ctx_free(&c);
    }
    H5Fclose(f);
    printf("pool parity: worst err/tol y %.3g, g_x %.3g\n", worst_y, worst_g);
}
END_TEST

/* ==== determinism and eval mode ======================================= */

/* Forward + backward of every pool on one input; returns the input grad
 * concatenated after the outputs (malloc'd). */
static float *run_all(int threads, size_t *n_out)
{
    vt_set_threads(threads);
    vt_ctx c, cx; /* x outlives the per-case resets of c */
    vt_ctx_init(&c, 1);
    vt_ctx_init(&cx, 1);
    int shape[5] = {2, 8, 8, 24, 24}; /* above the parallel threshold */
    vt_tensor *x = vt_leaf(&cx, 5, shape, 1);
    fill_distinct(x, 5);
    size_t total = 0;
    float *buf = NULL;
    for (size_t i = 0; i < sizeof GC_CASES / sizeof GC_CASES[0]; i++) {
        memset(x->grad, 0, x->numel * sizeof(float));
        vt_ctx_reset(&c);
        vt_tensor *y = run_pool(&c, x, &GC_CASES[i].p);
        float *seed = malloc(y->numel * sizeof(float));
        vtt_fill(seed, y->numel, -1, 1, 9);
        vt_backward_seed(&c, y, seed);
        free(seed);
        buf = realloc(buf, (total + y->numel + x->numel) * sizeof(float));
        memcpy(buf + total, y->data, y->numel * sizeof(float));
        memcpy(buf + total + y->numel, x->grad, x->numel * sizeof(float));
        total += y->numel + x->numel;
    }
    vt_ctx_free(&c);
    vt_ctx_free(&cx);
    *n_out = total;
    return buf;
}

START_TEST(bit_identical_across_threads)
{
    int saved = vt_get_threads();
    size_t n1, n2;
    float *a = run_all(1, &n1);
    float *b = run_all(2, &n2);
    vt_set_threads(saved);
    ck_assert_uint_eq(n1, n2);
    ck_assert_mem_eq(a, b, n1 * sizeof(float));
    free(a);
    free(b);
}
END_TEST

START_TEST(eval_mode_records_nothing)
{
    for (size_t i = 0; i < sizeof GC_CASES / sizeof GC_CASES[0]; i++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vt_leaf(&c, 5, GC_CASES[i].shape, 1);
        fill_distinct(x, 8);
        vt_tensor *y1 = run_pool(&c, x, &GC_CASES[i].p);
        ck_assert_uint_eq(c.n_nodes, 1);
        c.grad_enabled = 0;
        size_t used = c.arena.used;
        vt_tensor *y2 = run_pool(&c, x, &GC_CASES[i].p);
        /* Only the output header and data: no argmax, no saved state. */
        ck_assert_uint_le(c.arena.used - used,
                          sizeof(vt_tensor) + y2->numel * sizeof(float) + 2 * 64);
        ck_assert_uint_eq(c.n_nodes, 1);
        ck_assert_int_eq(y2->requires_grad, 0);
        ck_assert_mem_eq(y1->data, y2->data, y1->numel * sizeof(float));
        vt_ctx_free(&c);
    }
}
END_TEST

/* Equal values in a window: the gradient goes to the first in scan order
 * (t, then h, then w), as PyTorch's CPU kernel. */
START_TEST(max_ties_go_to_first)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    int shape[5] = {1, 1, 2, 2, 2};
    vt_tensor *x = vt_leaf(&c, 5, shape, 1);
    for (int i = 0; i < 8; i++)
        x->data[i] = i == 0 ? -1.0f : 3.0f;
    vt_pool3d_args a = {{2, 2, 2}, {0, 0, 0}, {0, 0, 0}, 0};
    vt_tensor *y = vt_maxpool3d(&c, x, &a);
    ck_assert_uint_eq(y->numel, 1);
    ck_assert_float_eq(y->data[0], 3.0f);
    vt_backward(&c, y);
    for (int i = 0; i < 8; i++)
        ck_assert_float_eq(x->grad[i], (i == 1 ? 1.0f : 0.0f));
    vt_ctx_free(&c);
}
END_TEST

/* Wide rows, where the vectorised max pool (8 outputs at a time, AVX2)
 * runs beside the scalar loop on the ragged ends and at padding: maxima and
 * the gradient's routing against a plain loop, with values quantised so
 * windows hold ties, and -inf and NaN sprinkled in. Under VT_NO_AVX2=1
 * (the _portable test) the same cases check the scalar loop alone. */
START_TEST(max_wide_rows_match_plain_loop)
{
    static const struct {
        int x[5], k[3], s[3], p[3];
    } cases[] = {
        {{2, 3, 3, 5, 37}, {1, 2, 2}, {1, 2, 2}, {0, 0, 0}}, /* C3D pool1: shuffles */
        {{1, 2, 4, 6, 41}, {2, 3, 3}, {1, 1, 1}, {1, 1, 1}}, /* unit stride: loads */
        {{1, 2, 3, 7, 45}, {1, 3, 3}, {1, 2, 2}, {0, 1, 1}}, /* stride 2, padding */
        {{1, 2, 4, 5, 40}, {2, 2, 2}, {2, 2, 2}, {0, 1, 1}}, /* C3D pool5: shuffles, padding */
    };
    vt_ctx c;
    vt_ctx_init(&c, 1);
    for (size_t q = 0; q < sizeof cases / sizeof cases[0]; q++) {
        vt_ctx_reset(&c);
        vt_tensor *x = vt_leaf(&c, 5, cases[q].x, 1);
        vtt_fill(x->data, x->numel, 0, 1, 900 + q);
        for (size_t i = 0; i < x->numel; i++) {
            x->data[i] = floorf(x->data[i] * 6.0f); /* ties */
            if (i % 97 == 5)
                x->data[i] = -INFINITY;
            if (i % 389 == 11)
                x->data[i] = NAN;
        }
        vt_pool3d_args a = {{cases[q].k[0], cases[q].k[1], cases[q].k[2]},
                            {cases[q].s[0], cases[q].s[1], cases[q].s[2]},
                            {cases[q].p[0], cases[q].p[1], cases[q].p[2]}, 0};
        vt_tensor *y = vt_maxpool3d(&c, x, &a);
        float *gy = malloc(y->numel * sizeof *gy);
        for (size_t i = 0; i < y->numel; i++)
            gy[i] = (float)(i % 13 + 1);
        vt_backward_seed(&c, y, gy);

        const int T = x->shape[2], H = x->shape[3], W = x->shape[4];
        const int To = y->shape[2], Ho = y->shape[3], Wo = y->shape[4];
        float *gx = calloc(x->numel, sizeof *gx);
        size_t o = 0;
        for (int pl = 0; pl < x->shape[0] * x->shape[1]; pl++) {
            const float *xp = x->data + (size_t)pl * T * H * W;
            for (int ot = 0; ot < To; ot++)
                for (int oh = 0; oh < Ho; oh++)
                    for (int ow = 0; ow < Wo; ow++, o++) {
                        int b0[3] = {ot * a.stride[0] - a.pad[0], oh * a.stride[1] - a.pad[1],
                                     ow * a.stride[2] - a.pad[2]};
                        float m = -INFINITY;
                        long best = -1;
                        for (int t = b0[0]; t < b0[0] + a.kernel[0]; t++)
                            for (int h = b0[1]; h < b0[1] + a.kernel[1]; h++)
                                for (int w = b0[2]; w < b0[2] + a.kernel[2]; w++) {
                                    if (t < 0 || t >= T || h < 0 || h >= H || w < 0 || w >= W)
                                        continue;
                                    long i = ((long)t * H + h) * W + w;
                                    if (best < 0) /* an all -inf window */
                                        best = i;
                                    if (xp[i] > m || isnan(xp[i])) {
                                        m = xp[i];
                                        best = i;
                                    }
                                }
                        if (isnan(m))
                            ck_assert_msg(isnan(y->data[o]), "case %zu out %zu: want NaN", q, o);
                        else
                            ck_assert_msg(y->data[o] == m, "case %zu out %zu: %g, want %g", q,
                                          o, y->data[o], m);
                        gx[(size_t)pl * T * H * W + best] += gy[o];
                    }
        }
        ck_assert_mem_eq(x->grad, gx, x->numel * sizeof *gx);
        printf("max pool wide rows case %zu: %zu outputs match (avx2 %s)\n", q, y->numel,
               vt_cpu_avx2() ? "on" : "off");
        free(gx);
        free(gy);
    }
    vt_ctx_free(&c);
}
END_TEST

/* Backward adds: two steps with the same input and seed leave twice the
 * gradient of one, for each kind of pool. */
START_TEST(gradients_accumulate)
{
    static const size_t pick[] = {1, 5, 8, 13}; /* max3d, max2d, avg3d, adaptive */
    for (size_t q = 0; q < sizeof pick / sizeof pick[0]; q++) {
        const gc_case *g = &GC_CASES[pick[q]];
        vt_ctx cx, c;
        vt_ctx_init(&cx, 1);
        vt_ctx_init(&c, 1);
        vt_tensor *x = vt_leaf(&cx, 5, g->shape, 1);
        fill_distinct(x, 21);
        float *once = NULL;
        for (int pass = 0; pass < 2; pass++) {
            vt_ctx_reset(&c);
            vt_tensor *y = run_pool(&c, x, &g->p);
            float *seed = malloc(y->numel * sizeof(float));
            vtt_fill(seed, y->numel, -1, 1, 22);
            vt_backward_seed(&c, y, seed);
            free(seed);
            if (pass == 0) {
                once = malloc(x->numel * sizeof(float));
                memcpy(once, x->grad, x->numel * sizeof(float));
            }
        }
        /* Overlapping windows add several terms per element, in another
         * rounding order the second time: equal to fp32 rounding only. */
        for (size_t i = 0; i < x->numel; i++)
            once[i] *= 2.0f;
        vtt_assert_close(g->name, x->grad, once, x->numel, 1e-6, 1e-7);
        free(once);
        vt_ctx_free(&c);
        vt_ctx_free(&cx);
    }
}
END_TEST

static Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_add_test(tc, out_size_matches_window_count);
    tcase_add_test(tc, gradcheck_pools);
    tcase_add_test(tc, pytorch_parity);
    tcase_add_test(tc, bit_identical_across_threads);
    tcase_add_test(tc, eval_mode_records_nothing);
    tcase_add_test(tc, max_ties_go_to_first);
    tcase_add_test(tc, max_wide_rows_match_plain_loop);
    tcase_add_test(tc, gradients_accumulate);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(pool_suite)
