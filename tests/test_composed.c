/* test_composed.c - whole stacks built directly in C against PyTorch:
 * a tiny C3D-shaped network and a tiny CNN + LSTM + attention network must
 * match PyTorch's loss and every parameter gradient (fixture
 * tests/fixtures/composed.h5 from tools/fixtures/gen_composed.py). Also the
 * determinism promises: the same seed and thread count give bit-identical
 * results, and 1 vs 2 threads agree within float rounding. */
#include "vt_test.h"

#include <math.h>
#include <string.h>

/* Losses are O(1): 1e-5 relative. Gradients pass through up to ~10 ops of
 * fp32 arithmetic and long sums; 1e-4 relative with an absolute floor of
 * 1e-6 (gradients here are 1e-4 .. 1e-1). */
#define LOSS_RTOL 1e-5
#define GRAD_RTOL 1e-4
#define GRAD_ATOL 1e-6

typedef struct {
    hid_t f;
    const char *kase;
    int n;
    const char *names[32];
    vt_tensor *t[32];
} params;

static vt_tensor *P(params *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->names[i], name))
            return p->t[i];
    ck_abort_msg("no parameter %s", name);
    return NULL;
}

static void load_params(vt_ctx *c, params *p, hid_t f, const char *kase,
                        const char *const *names)
{
    p->f = f;
    p->kase = kase;
    p->n = 0;
    for (; names[p->n]; p->n++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", kase, names[p->n]);
        p->names[p->n] = names[p->n];
        p->t[p->n] = vtt_load(c, f, path, 1);
    }
}

static void check_grads(params *p, vt_tensor *x)
{
    char path[256];
    for (int i = 0; i < p->n; i++) {
        snprintf(path, sizeof path, "%s/g_%s", p->kase, p->names[i]);
        vtt_check_against(path, p->t[i]->grad, p->f, path, GRAD_RTOL, GRAD_ATOL);
    }
    snprintf(path, sizeof path, "%s/g_x", p->kase);
    vtt_check_against(path, x->grad, p->f, path, GRAD_RTOL, GRAD_ATOL);
}

static const char *const C3D_NAMES[] = {"conv1.weight", "conv1.bias", "conv2.weight",
                                        "conv2.bias", "fc.weight", "fc.bias", NULL};

static vt_tensor *c3d_forward(vt_ctx *c, params *p, vt_tensor *x, const int *labels)
{
    vt_conv3d_args a1 = {{1, 1, 1}, {0, 1, 1}, {1, 1, 1}, 1};
    vt_conv3d_args a2 = {{2, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1};
    vt_pool3d_args pool = {{1, 2, 2}, {1, 2, 2}, {0, 0, 0}, 1};
    vt_tensor *h = vt_relu(c, vt_conv3d(c, x, P(p, "conv1.weight"), P(p, "conv1.bias"), &a1));
    h = vt_maxpool3d(c, h, &pool);
    h = vt_relu(c, vt_conv3d(c, h, P(p, "conv2.weight"), P(p, "conv2.bias"), &a2));
    h = vt_flatten(c, vt_adaptive_avgpool3d(c, h, 1, 1, 1));
    h = vt_linear(c, h, P(p, "fc.weight"), P(p, "fc.bias"));
    return vt_cross_entropy(c, h, labels, 0.0f);
}

START_TEST(c3d_stack_matches_pytorch)
{
    hid_t f = vtt_fixture_open("composed.h5");
    vt_ctx c;
    vt_ctx_init(&c, 1);
    params p;
    load_params(&c, &p, f, "c3d", C3D_NAMES);
    vt_tensor *x = vtt_load(&c, f, "c3d/x", 1);
    size_t nl;
    int *labels = vtt_load_ints(f, "c3d/labels", &nl);
    vt_tensor *loss = c3d_forward(&c, &p, x, labels);
    vtt_check_against("c3d loss", loss->data, f, "c3d/loss", LOSS_RTOL, 0);
    vt_backward(&c, loss);
    check_grads(&p, x);
    free(labels);
    vt_ctx_free(&c);
    H5Fclose(f);
}
END_TEST

#define HID 3
static const char *const CONVLSTM_NAMES[] = {
    "enc.weight", "enc.bias", "latent.weight", "latent.bias", "bn.weight", "bn.bias",
    "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0",
    "lstm.weight_ih_l0_reverse", "lstm.weight_hh_l0_reverse", "lstm.bias_ih_l0_reverse",
    "lstm.bias_hh_l0_reverse",
    "lstm.weight_ih_l1", "lstm.weight_hh_l1", "lstm.bias_ih_l1", "lstm.bias_hh_l1",
    "lstm.weight_ih_l1_reverse", "lstm.weight_hh_l1_reverse", "lstm.bias_ih_l1_reverse",
    "lstm.bias_hh_l1_reverse",
    "att.weight", "att.bias", "head.weight", "head.bias", NULL};

static vt_tensor *convlstm_forward(vt_ctx *c, params *p, vt_tensor *x, const int *labels,
                                   vt_tensor *rm, vt_tensor *rv)
{
    int N = x->shape[0], T = x->shape[2];
    vt_conv2d_args ca = {{1, 1}, {1, 1}, {1, 1}, 1};
    vt_pool2d_args pa = {{2, 2}, {2, 2}, {0, 0}, 0};
    vt_tensor *h = vt_conv2d_frames(c, x, P(p, "enc.weight"), P(p, "enc.bias"), &ca);
    h = vt_maxpool2d_frames(c, vt_relu(c, h), &pa);
    h = vt_adaptive_avgpool3d(c, h, T, 1, 1);                   /* (N, 4, T, 1, 1) */
    h = vt_reshape(c, h, 3, (int[]){N, h->shape[1], T});        /* (N, 4, T) */
    h = vt_permute(c, h, (int[]){0, 2, 1});                     /* (N, T, 4) */
    h = vt_linear(c, h, P(p, "latent.weight"), P(p, "latent.bias"));
    h = vt_batchnorm(c, h, 2, P(p, "bn.weight"), P(p, "bn.bias"), rm, rv, 0.1f, 1e-5f);
    vt_lstm_args la = {6, HID, 2, 1};
    vt_tensor *lp[16];
    for (int i = 0; i < 16; i++)
        lp[i] = P(p, CONVLSTM_NAMES[6 + i]);
    h = vt_lstm(c, h, &la, lp, NULL, NULL, NULL, NULL);
    h = vt_attention_pool(c, h, P(p, "att.weight"), P(p, "att.bias"));
    h = vt_linear(c, h, P(p, "head.weight"), P(p, "head.bias"));
    return vt_cross_entropy(c, h, labels, 0.0f);
}

START_TEST(convlstm_stack_matches_pytorch)
{
    hid_t f = vtt_fixture_open("composed.h5");
    vt_ctx c;
    vt_ctx_init(&c, 1);
    params p;
    load_params(&c, &p, f, "convlstm", CONVLSTM_NAMES);
    vt_tensor *x = vtt_load(&c, f, "convlstm/x", 1);
    vt_tensor *rm = vt_leaf(&c, 1, (int[]){6}, 0), *rv = vt_leaf(&c, 1, (int[]){6}, 0);
    for (int i = 0; i < 6; i++)
        rv->data[i] = 1.0f;
    size_t nl;
    int *labels = vtt_load_ints(f, "convlstm/labels", &nl);
    vt_tensor *loss = convlstm_forward(&c, &p, x, labels, rm, rv);
    vtt_check_against("convlstm loss", loss->data, f, "convlstm/loss", LOSS_RTOL, 0);
    vtt_check_against("running_mean", rm->data, f, "convlstm/bn.running_mean", 1e-5, 1e-7);
    vtt_check_against("running_var", rv->data, f, "convlstm/bn.running_var", 1e-5, 1e-7);
    vt_backward(&c, loss);
    check_grads(&p, x);
    free(labels);
    vt_ctx_free(&c);
    H5Fclose(f);
}
END_TEST

/* Runs the C3D stack on a larger random input (so parallel loops really
 * split) and returns the loss and a copy of every gradient, flattened. */
static float *c3d_run(int threads, size_t *n_out, float *loss_out)
{
    vt_set_threads(threads);
    hid_t f = vtt_fixture_open("composed.h5");
    vt_ctx c;
    vt_ctx_init(&c, 1);
    params p;
    load_params(&c, &p, f, "c3d", C3D_NAMES);
    vt_tensor *x = vtt_rand(&c, VTT_SHAPE(4, 3, 8, 33, 31), -1, 1, 5, 1);
    int labels[4] = {0, 1, 2, 1};
    vt_tensor *loss = c3d_forward(&c, &p, x, labels);
    vt_backward(&c, loss);
    size_t n = x->numel;
    for (int i = 0; i < p.n; i++)
        n += p.t[i]->numel;
    float *g = malloc(n * sizeof(float)), *o = g;
    memcpy(o, x->grad, x->numel * sizeof(float));
    o += x->numel;
    for (int i = 0; i < p.n; i++) {
        memcpy(o, p.t[i]->grad, p.t[i]->numel * sizeof(float));
        o += p.t[i]->numel;
    }
    *n_out = n;
    *loss_out = loss->data[0];
    vt_ctx_free(&c);
    H5Fclose(f);
    return g;
}

START_TEST(same_threads_bit_identical_and_1_vs_2_threads_close)
{
    size_t n1, n2, n3;
    float l1, l2, l3;
    float *g2 = c3d_run(2, &n2, &l2);
    float *g3 = c3d_run(2, &n3, &l3);
    float *g1 = c3d_run(1, &n1, &l1);
    ck_assert_uint_eq(n1, n2);
    ck_assert_mem_eq(&l2, &l3, sizeof l2);
    ck_assert_mem_eq(g2, g3, n2 * sizeof(float));
    ck_assert_float_eq_tol(l1, l2, 1e-6f * fabsf(l1));
    /* Different thread counts may sum in a different order: rounding only. */
    vtt_assert_close("1 vs 2 threads", g1, g2, n1, 1e-4, 1e-7);
    free(g1);
    free(g2);
    free(g3);
    vt_set_threads(2);
}
END_TEST

static Suite *composed_suite(void)
{
    Suite *s = suite_create("composed");
    TCase *tc = tcase_create("composed");
    tcase_add_test(tc, c3d_stack_matches_pytorch);
    tcase_add_test(tc, convlstm_stack_matches_pytorch);
    tcase_add_test(tc, same_threads_bit_identical_and_1_vs_2_threads_close);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(composed_suite)
