/* test_attention.c - vt_attention_pool: finite differences, PyTorch parity
 * (tests/fixtures/attention.h5 from tools/fixtures/gen_attention.py), eval
 * mode and thread-count independence. */
#include "vt_test.h"

#include <math.h>
#include <string.h>

/* Smooth op, so a large step is safe: truncation ~ eps^2 |f'''| / 6 ~ 2e-5,
 * while the fp32 rounding of sum(R * y) (~1e-6 for <= 100 outputs of size
 * ~2) divided by 2 eps stays ~5e-5; with eps = 1e-3 that noise reached
 * 0.7 of the tolerance. b's true gradient is 0, which the atol covers. */
static const vtt_gc_opts GC = {.eps = 1e-2, .rtol = 5e-3, .atol = 2e-4};

/* PyTorch parity, fp32 relative 1e-4. Entries are sums of <= 16 * 48
 * products of size <= 2 with fp32 rounding ~1e-6; g_b is 0 in float64 and a
 * cancellation residue ~1e-7 here, so the absolute floor is 1e-5. */
#define PT_RTOL 1e-4
#define PT_ATOL 1e-5

static vt_tensor *f_attn(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    (void)ud;
    return vt_attention_pool(c, in[0], in[1], in[2]);
}

START_TEST(gradcheck_attention)
{
    static const int shapes[][3] = {{3, 5, 7}, {1, 1, 4}, {2, 9, 3}, {4, 2, 1}, {2, 6, 11}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        const int *s = shapes[i];
        vt_tensor *in[3];
        in[0] = vtt_rand(&c, 3, s, -2, 2, 10 + i, 1);
        in[1] = vtt_rand(&c, VTT_SHAPE(1, s[2]), -1, 1, 20 + i, 1);
        in[2] = vtt_rand(&c, VTT_SHAPE(1), -1, 1, 30 + i, 1);
        double w = vtt_gradcheck("attention_pool", f_attn, NULL, 3, in, &GC);
        printf("gradcheck attention (%d, %d, %d): worst err/tol %.3f\n", s[0], s[1],
               s[2], w);
        vt_ctx_free(&c);
    }
}
END_TEST

START_TEST(pytorch_parity)
{
    static const char *const cases[] = {"odd", "t1", "f1", "wide"};
    hid_t f = vtt_fixture_open("attention.h5");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        char path[128], what[128];
        const char *k = cases[i];
        snprintf(path, sizeof path, "%s/h", k);
        vt_tensor *h = vtt_load(&c, f, path, 1);
        snprintf(path, sizeof path, "%s/w", k);
        vt_tensor *w = vtt_load(&c, f, path, 1);
        snprintf(path, sizeof path, "%s/b", k);
        vt_tensor *b = vtt_load(&c, f, path, 1);
        vt_tensor *y = vt_attention_pool(&c, h, w, b);
        snprintf(path, sizeof path, "%s/y", k);
        snprintf(what, sizeof what, "attention %s: y", k);
        vtt_check_against(what, y->data, f, path, PT_RTOL, PT_ATOL);
        vtt_backward_fixture(&c, y, f, k);
        const char *names[3] = {"h", "w", "b"};
        vt_tensor *ts[3] = {h, w, b};
        for (int j = 0; j < 3; j++) {
            snprintf(path, sizeof path, "%s/g_%s", k, names[j]);
            snprintf(what, sizeof what, "attention %s: g_%s", k, names[j]);
            vtt_check_against(what, ts[j]->grad, f, path, PT_RTOL, PT_ATOL);
        }
        printf("attention %s: g_b = %.3g (exactly 0 in exact arithmetic)\n", k,
               b->grad[0]);
        vt_ctx_free(&c);
    }
    H5Fclose(f);
}
END_TEST

START_TEST(eval_mode_records_nothing)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *h = vtt_rand(&c, VTT_SHAPE(3, 4, 5), -2, 2, 1, 1);
    vt_tensor *w = vtt_rand(&c, VTT_SHAPE(1, 5), -1, 1, 2, 1);
    vt_tensor *b = vtt_rand(&c, VTT_SHAPE(1), -1, 1, 3, 1);
    vt_tensor *y = vt_attention_pool(&c, h, w, b);
    ck_assert_uint_eq(c.n_nodes, 1);
    c.grad_enabled = 0;
    vt_tensor *y2 = vt_attention_pool(&c, h, w, b);
    ck_assert_uint_eq(c.n_nodes, 1);
    ck_assert_int_eq(y2->requires_grad, 0);
    ck_assert_mem_eq(y->data, y2->data, y->numel * sizeof(float));
    /* Each output is a convex combination of the frames. */
    for (int n = 0; n < 3; n++)
        for (int f = 0; f < 5; f++) {
            float lo = INFINITY, hi = -INFINITY;
            for (int t = 0; t < 4; t++) {
                float v = h->data[(n * 4 + t) * 5 + f];
                lo = fminf(lo, v);
                hi = fmaxf(hi, v);
            }
            ck_assert(y->data[n * 5 + f] >= lo - 1e-6f && y->data[n * 5 + f] <= hi + 1e-6f);
        }
    vt_ctx_free(&c);
}
END_TEST

/* y and every gradient for a shape past the parallel threshold. */
static float *run_threads(int threads, size_t *n_out)
{
    const int N = 16, T = 16, F = 160;
    vt_set_threads(threads);
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *h = vtt_rand(&c, VTT_SHAPE(N, T, F), -2, 2, 1, 1);
    vt_tensor *w = vtt_rand(&c, VTT_SHAPE(1, F), -0.3f, 0.3f, 2, 1);
    vt_tensor *b = vtt_rand(&c, VTT_SHAPE(1), -1, 1, 3, 1);
    vt_tensor *y = vt_attention_pool(&c, h, w, b);
    float *seed = malloc(y->numel * sizeof(float));
    vtt_fill(seed, y->numel, -1, 1, 4);
    vt_backward_seed(&c, y, seed);
    size_t total = y->numel + h->numel + w->numel + 1;
    float *out = malloc(total * sizeof(float)), *o = out;
    vt_tensor *ts[4] = {y, h, w, b};
    for (int i = 0; i < 4; i++) {
        memcpy(o, i ? ts[i]->grad : ts[i]->data, ts[i]->numel * sizeof(float));
        o += ts[i]->numel;
    }
    free(seed);
    vt_ctx_free(&c);
    *n_out = total;
    return out;
}

START_TEST(threads_agree)
{
    int saved = vt_get_threads();
    size_t n1, n2, n3;
    float *a = run_threads(1, &n1);
    float *b = run_threads(2, &n2);
    float *b2 = run_threads(2, &n3);
    vt_set_threads(saved);
    ck_assert_mem_eq(b, b2, n2 * sizeof(float));
    /* The last value is g_b (a near-zero cancellation residue): compared
     * with an absolute floor like the rest. */
    double w = vtt_assert_close("attention 1 vs 2 threads", b, a, n1, 1e-5, 1e-6);
    printf("attention 1 vs 2 threads: worst err/tol %.3f; 2 threads twice: "
           "bit-identical\n", w);
    free(a);
    free(b);
    free(b2);
}
END_TEST

static Suite *attention_suite(void)
{
    Suite *s = suite_create("attention");
    TCase *tc = tcase_create("attention");
    tcase_add_test(tc, gradcheck_attention);
    tcase_add_test(tc, pytorch_parity);
    tcase_add_test(tc, eval_mode_records_nothing);
    tcase_add_test(tc, threads_agree);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(attention_suite)
