/* test_elementwise.c - relu, sigmoid, tanh, dropout, add, mul:
 * finite differences and dropout's statistics. (PyTorch parity for these
 * ops is in test_parity_elementwise.c.) */
#include "vt_test.h"

#include <math.h>

static const vtt_gc_opts GC = {.eps = 1e-3, .rtol = 1e-2, .atol = 1e-3};

static vt_tensor *f_relu(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    (void)ud;
    return vt_relu(c, in[0]);
}
static vt_tensor *f_sigmoid(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    (void)ud;
    return vt_sigmoid(c, in[0]);
}
static vt_tensor *f_tanh(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    (void)ud;
    return vt_tanh(c, in[0]);
}
static vt_tensor *f_addmul(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    (void)ud;
    return vt_mul(c, vt_add(c, in[0], in[1]), in[1]);
}
static vt_tensor *f_dropout(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    return vt_dropout(c, in[0], *(float *)ud);
}

/* Keeps inputs at least 0.05 away from relu's kink so a central difference
 * of step 1e-3 never straddles it. */
static void push_off_kink(vt_tensor *t)
{
    for (size_t i = 0; i < t->numel; i++)
        if (fabsf(t->data[i]) < 0.05f)
            t->data[i] = t->data[i] < 0 ? -0.05f - t->data[i] : 0.05f + t->data[i];
}

START_TEST(gradcheck_activations)
{
    static const int shapes[][5] = {{1, 1, 1, 1, 7}, {2, 3, 5, 4, 3}, {3, 1, 2, 5, 7}};
    for (int s = 0; s < 3; s++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_rand(&c, 5, shapes[s], -3, 3, 11 + s, 1);
        push_off_kink(x);
        vtt_gradcheck("relu", f_relu, NULL, 1, &x, &GC);
        vtt_gradcheck("sigmoid", f_sigmoid, NULL, 1, &x, &GC);
        vtt_gradcheck("tanh", f_tanh, NULL, 1, &x, &GC);
        vt_tensor *y = vtt_rand(&c, 5, shapes[s], -2, 2, 21 + s, 1);
        vt_tensor *in[2] = {x, y};
        vtt_gradcheck("add+mul", f_addmul, NULL, 2, in, &GC);
        vt_ctx_free(&c);
    }
}
END_TEST

/* relu's vectorised words and scalar tail against the plain definition,
 * over special values: y = x > 0 ? x : 0 (NaN and -0 give +0), and the
 * gradient flows where y > 0, added to what is there. 100 elements: 3 whole mask words and a tail. */
START_TEST(relu_special_values)
{
    float gy[100];
    vtt_fill(gy, 100, -1, 1, 78);
    for (int pass = 0; pass < 2; pass++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_rand(&c, VTT_SHAPE(4, 25), -2, 2, 77, 1);
        const float special[] = {NAN, -0.0f, 0.0f, INFINITY, -INFINITY, 1e-30f, -1e-30f};
        for (size_t i = 0; i < x->numel; i += 9)
            x->data[i] = special[(i / 9) % 7];
        /* pass 1: a gradient already there, which backward adds to */
        float *g0 = pass ? vt_grad(&c, x) : NULL;
        for (size_t i = 0; pass && i < 100; i++)
            g0[i] = 0.5f;
        vt_tensor *y = vt_relu(&c, x);
        for (size_t i = 0; i < 100; i++) {
            float want = x->data[i] > 0.0f ? x->data[i] : 0.0f;
            ck_assert_msg(memcmp(&y->data[i], &want, sizeof want) == 0,
                          "relu(%g) = %g at %zu", x->data[i], y->data[i], i);
        }
        vt_backward_seed(&c, y, gy);
        for (size_t i = 0; i < 100; i++) {
            float want = (pass ? 0.5f : 0.0f) + (x->data[i] > 0.0f ? gy[i] : 0.0f);
            ck_assert_msg(x->grad[i] == want, "pass %d: grad %g, want %g at %zu", pass,
                          x->grad[i], want, i);
        }
        vt_ctx_free(&c);
    }
}
END_TEST

START_TEST(gradcheck_dropout)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *x = vtt_rand(&c, VTT_SHAPE(3, 5, 7), -2, 2, 3, 1);
    float p = 0.3f;
    vtt_gc_opts o = GC;
    o.training = 1;
    vtt_gradcheck("dropout", f_dropout, &p, 1, &x, &o);
    vt_ctx_free(&c);
}
END_TEST

START_TEST(dropout_semantics)
{
    vt_ctx c;
    vt_ctx_init(&c, 77);
    int n = 100000;
    vt_tensor *x = vt_leaf(&c, 1, &n, 0);
    for (int i = 0; i < n; i++)
        x->data[i] = 1.0f;
    float p = 0.25f;
    vt_tensor *y = vt_dropout(&c, x, p);
    int zeros = 0;
    for (int i = 0; i < n; i++) {
        if (y->data[i] == 0.0f)
            zeros++;
        else
            ck_assert_float_eq_tol(y->data[i], 1.0f / (1.0f - p), 1e-6);
    }
    ck_assert_int_lt(abs(zeros - n / 4), 600); /* ~4.4 sigma */
    /* A second call draws a different mask; the same seed replays it. */
    vt_tensor *y2 = vt_dropout(&c, x, p);
    int same = 0;
    for (int i = 0; i < n; i++)
        same += (y->data[i] == 0.0f) == (y2->data[i] == 0.0f);
    ck_assert_int_lt(same, n * 7 / 10);
    vt_ctx c2;
    vt_ctx_init(&c2, 77);
    vt_tensor *y3 = vt_dropout(&c2, x, p);
    ck_assert_mem_eq(y->data, y3->data, (size_t)n * sizeof(float));
    /* Eval mode is the identity. */
    c.training = 0;
    ck_assert_ptr_eq(vt_dropout(&c, x, p), x);
    vt_ctx_free(&c2);
    vt_ctx_free(&c);
}
END_TEST

static Suite *elementwise_suite(void)
{
    Suite *s = suite_create("elementwise");
    TCase *tc = tcase_create("elementwise");
    tcase_add_test(tc, gradcheck_activations);
    tcase_add_test(tc, relu_special_values);
    tcase_add_test(tc, gradcheck_dropout);
    tcase_add_test(tc, dropout_semantics);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(elementwise_suite)
