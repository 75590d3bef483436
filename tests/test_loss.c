/* test_loss.c - vt_cross_entropy on (N, K) and (N, T, K) with and without
 * label smoothing, and vt_softmax_rows: finite differences, PyTorch parity
 * (tests/fixtures/loss.h5 from tools/fixtures/gen_loss.py), stability on
 * large logits, thread-count determinism.
 *
 * Tolerances: gradcheck eps 1e-2, rtol 1e-2, atol 1e-4. The gradient
 * entries are (p - target) / rows, O(1e-2 .. 1e-1); the fp32 loss (~2)
 * carries up to 1.2e-7 rounding, 1.2e-5 after dividing by 2 * eps, and the
 * smooth loss keeps the O(eps^2) truncation error below that.
 * PyTorch parity rtol 1e-4 with an absolute floor of 1e-6: the loss is
 * summed in double, and g_logits entries are O(1e-2) so 1e-6 is two orders
 * below them.
 */
#include "vt_test.h"

#include <math.h>
#include <string.h>

#define FX_RTOL 1e-4
#define FX_ATOL 1e-6

typedef struct {
    const int *labels;
    float ls;
} ce_spec;

static vt_tensor *f_ce(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    const ce_spec *s = ud;
    return vt_cross_entropy(c, in[0], s->labels, s->ls);
}

static void random_labels(int *l, int n, int k, uint64_t seed)
{
    for (int i = 0; i < n; i++)
        l[i] = (int)(vt_hash64(seed, 5, (uint64_t)i) % (uint64_t)k);
}

/* ==== gradient checks ================================================== */

START_TEST(gradcheck_cross_entropy)
{
    static const struct {
        int ndim, shape[3];
        float ls;
    } cases[] = {
        {2, {5, 7}, 0.0f},
        {2, {5, 7}, 0.1f},
        {2, {1, 3}, 0.3f},
        {3, {3, 4, 5}, 0.0f},
        {3, {2, 3, 6}, 0.25f},
    };
    const vtt_gc_opts o = {.eps = 1e-2, .rtol = 1e-2, .atol = 1e-4};
    double worst = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *z = vtt_rand(&c, cases[i].ndim, cases[i].shape, -2, 2, 30 + i, 1);
        int k = cases[i].shape[cases[i].ndim - 1];
        int rows = (int)(z->numel / (size_t)k);
        int labels[64];
        random_labels(labels, rows, k, 50 + i);
        ce_spec s = {labels, cases[i].ls};
        char what[64];
        snprintf(what, sizeof what, "cross_entropy case %zu (ls %.2f)", i, cases[i].ls);
        worst = fmax(worst, vtt_gradcheck(what, f_ce, &s, 1, &z, &o));
        vt_ctx_free(&c);
    }
    printf("cross_entropy gradcheck: worst err/tol %.3g\n", worst);
}
END_TEST

/* ==== PyTorch parity =================================================== */

START_TEST(pytorch_parity)
{
    static const char *const cases[] = {"ce_nk", "ce_nk_ls", "ce_ntk", "ce_ntk_ls",
                                        "ce_large_logits"};
    hid_t f = vtt_fixture_open("loss.h5");
    double worst_y = 0, worst_g = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *k = cases[i];
        char path[256], what[256];
        vt_ctx c;
        vt_ctx_init(&c, 1);
        snprintf(path, sizeof path, "%s/logits", k);
        vt_tensor *z = vtt_load(&c, f, path, 1);
        snprintf(path, sizeof path, "%s/labels", k);
        size_t n;
        int *labels = vtt_load_ints(f, path, &n);
        ck_assert_uint_eq(n, z->numel / (size_t)z->shape[z->ndim - 1]);
        float ls = (float)vtt_attr_double(f, k, "label_smoothing");
        vt_tensor *y = vt_cross_entropy(&c, z, labels, ls);
        /* The op keeps its own copy of the labels for backward. */
        memset(labels, 0xff, n * sizeof *labels);
        ck_assert_int_eq(y->ndim, 1);
        ck_assert_int_eq(y->shape[0], 1);
        snprintf(path, sizeof path, "%s/y", k);
        snprintf(what, sizeof what, "%s loss", k);
        vt_ctx tmp;
        vt_ctx_init(&tmp, 0);
        vt_tensor *want = vtt_load(&tmp, f, path, 0);
        worst_y = fmax(worst_y, vtt_assert_close(what, y->data, want->data, 1, FX_RTOL,
                                                 FX_ATOL));
        vtt_backward_fixture(&c, y, f, k);
        snprintf(path, sizeof path, "%s/g_logits", k);
        vt_tensor *gw = vtt_load(&tmp, f, path, 0);
        ck_assert_uint_eq(gw->numel, z->numel);
        snprintf(what, sizeof what, "%s g_logits", k);
        worst_g = fmax(worst_g, vtt_assert_close(what, z->grad, gw->data, z->numel,
                                                 FX_RTOL, FX_ATOL));
        free(labels);
        vt_ctx_free(&tmp);
        vt_ctx_free(&c);
    }
    H5Fclose(f);
    printf("cross_entropy parity: worst err/tol loss %.3g, g_logits %.3g\n", worst_y,
           worst_g);
}
END_TEST

/* ==== softmax, stability, determinism ================================= */

START_TEST(softmax_rows)
{
    enum { R = 4, K = 9 };
    float in[R * K], out[R * K];
    vtt_fill(in, R * K, -3, 3, 4);
    in[2 * K + 3] = 1000.0f; /* exp overflows without the max shift */
    vt_softmax_rows(in, out, R, K);
    for (int r = 0; r < R; r++) {
        double s = 0, mx = in[r * K];
        for (int j = 0; j < K; j++)
            mx = fmax(mx, in[r * K + j]);
        for (int j = 0; j < K; j++)
            s += exp(in[r * K + j] - mx);
        for (int j = 0; j < K; j++) {
            double want = exp(in[r * K + j] - mx) / s;
            ck_assert_msg(fabs(out[r * K + j] - want) <= 1e-6 + 1e-5 * want,
                          "row %d col %d: %g vs %g", r, j, out[r * K + j], want);
        }
    }
    /* In place. */
    vt_softmax_rows(in, in, R, K);
    ck_assert_mem_eq(in, out, sizeof out);
}
END_TEST

START_TEST(bit_identical_across_threads)
{
    enum { R = 600, K = 101 }; /* above the parallel threshold */
    int saved = vt_get_threads();
    static int labels[R];
    random_labels(labels, R, K, 3);
    float loss[2], *grad[2];
    for (int t = 0; t < 2; t++) {
        vt_set_threads(t + 1);
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *z = vtt_rand(&c, VTT_SHAPE(R, K), -4, 4, 9, 1);
        vt_tensor *y = vt_cross_entropy(&c, z, labels, 0.1f);
        vt_backward(&c, y);
        loss[t] = y->data[0];
        grad[t] = malloc(z->numel * sizeof(float));
        memcpy(grad[t], z->grad, z->numel * sizeof(float));
        vt_ctx_free(&c);
    }
    vt_set_threads(saved);
    ck_assert_mem_eq(&loss[0], &loss[1], sizeof(float));
    ck_assert_mem_eq(grad[0], grad[1], (size_t)R * K * sizeof(float));
    free(grad[0]);
    free(grad[1]);
}
END_TEST

START_TEST(no_grad_records_nothing)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *z = vtt_rand(&c, VTT_SHAPE(3, 4), -1, 1, 2, 1);
    int labels[3] = {0, 3, 1};
    c.grad_enabled = 0;
    vt_tensor *y0 = vt_cross_entropy(&c, z, labels, 0.0f);
    ck_assert_uint_eq(c.n_nodes, 0);
    ck_assert_int_eq(y0->requires_grad, 0);
    c.grad_enabled = 1;
    vt_tensor *y1 = vt_cross_entropy(&c, z, labels, 0.0f);
    ck_assert_uint_eq(c.n_nodes, 1);
    ck_assert_float_eq(y0->data[0], y1->data[0]);
    vt_ctx_free(&c);
}
END_TEST

/* Backward adds: two steps with the same logits leave exactly twice the
 * gradient of one. */
START_TEST(gradients_accumulate)
{
    vt_ctx cx, c;
    vt_ctx_init(&cx, 1);
    vt_ctx_init(&c, 1);
    vt_tensor *z = vtt_rand(&cx, VTT_SHAPE(2, 3, 5), -2, 2, 4, 1);
    int labels[6] = {4, 0, 2, 2, 1, 3};
    float once[30];
    for (int pass = 0; pass < 2; pass++) {
        vt_ctx_reset(&c);
        vt_backward(&c, vt_cross_entropy(&c, z, labels, 0.1f));
        if (pass == 0)
            memcpy(once, z->grad, sizeof once);
    }
    for (int i = 0; i < 30; i++)
        ck_assert_float_eq(z->grad[i], 2.0f * once[i]);
    vt_ctx_free(&c);
    vt_ctx_free(&cx);
}
END_TEST

static Suite *loss_suite(void)
{
    Suite *s = suite_create("loss");
    TCase *tc = tcase_create("loss");
    tcase_add_test(tc, gradcheck_cross_entropy);
    tcase_add_test(tc, pytorch_parity);
    tcase_add_test(tc, softmax_rows);
    tcase_add_test(tc, bit_identical_across_threads);
    tcase_add_test(tc, no_grad_records_nothing);
    tcase_add_test(tc, gradients_accumulate);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(loss_suite)
