/* test_parity_elementwise.c - relu, sigmoid, tanh, add, mul and dropout
 * against PyTorch (tests/fixtures/elementwise.h5 from
 * tools/fixtures/gen_elementwise.py): forward values and every input's
 * gradient. Dropout in training mode is checked against its own mask. */
#include "vt_test.h"

#include <math.h>
#include <string.h>

/* fp32 relative 1e-4. The references are float64; relu, add, mul and the
 * eval-mode dropout are exact or one rounding off; sigmoid and tanh go
 * through expf/tanhf (a few ulp). Values are O(1); 1e-6 is the absolute
 * floor for results near zero (a sigmoid gradient in the tails, tanh near
 * 0, a product with a tiny factor). */
#define PT_RTOL 1e-4
#define PT_ATOL 1e-6

static void check_y_shape(vt_ctx *c, hid_t f, const char *kase, vt_tensor *y)
{
    vt_tensor *want = vtt_load_case(c, f, kase, "y", 1);
    ck_assert_int_eq(y->ndim, want->ndim);
    for (int d = 0; d < y->ndim; d++)
        ck_assert_int_eq(y->shape[d], want->shape[d]);
}

START_TEST(parity_unary)
{
    static const struct {
        const char *name;
        vt_tensor *(*fn)(vt_ctx *, vt_tensor *);
    } cases[] = {{"relu", vt_relu}, {"sigmoid", vt_sigmoid}, {"tanh", vt_tanh}};
    hid_t f = vtt_fixture_open("elementwise.h5");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *x = vtt_load_case(&c, f, cases[k].name, "x", 1);
        vt_tensor *y = cases[k].fn(&c, x);
        check_y_shape(&c, f, cases[k].name, y);
        vtt_parity(f, cases[k].name, "y", y->data, y->numel, PT_RTOL, PT_ATOL);
        vtt_backward_fixture(&c, y, f, cases[k].name);
        vtt_parity(f, cases[k].name, "g_x", x->grad, x->numel, PT_RTOL, PT_ATOL);
        vt_ctx_free(&c);
    }
    H5Fclose(f);
}
END_TEST

START_TEST(parity_binary)
{
    static const struct {
        const char *name;
        vt_tensor *(*fn)(vt_ctx *, vt_tensor *, vt_tensor *);
    } cases[] = {{"add", vt_add}, {"mul", vt_mul}};
    hid_t f = vtt_fixture_open("elementwise.h5");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *a = vtt_load_case(&c, f, cases[k].name, "a", 1);
        vt_tensor *b = vtt_load_case(&c, f, cases[k].name, "b", 1);
        vt_tensor *y = cases[k].fn(&c, a, b);
        check_y_shape(&c, f, cases[k].name, y);
        vtt_parity(f, cases[k].name, "y", y->data, y->numel, PT_RTOL, PT_ATOL);
        vtt_backward_fixture(&c, y, f, cases[k].name);
        vtt_parity(f, cases[k].name, "g_a", a->grad, a->numel, PT_RTOL, PT_ATOL);
        vtt_parity(f, cases[k].name, "g_b", b->grad, b->numel, PT_RTOL, PT_ATOL);
        vt_ctx_free(&c);
    }
    H5Fclose(f);
}
END_TEST

/* F.dropout(x, p, training=False) is the identity, values and gradient. */
START_TEST(parity_dropout_eval)
{
    hid_t f = vtt_fixture_open("elementwise.h5");
    vt_ctx c;
    vt_ctx_init(&c, 1);
    c.training = 0;
    vt_tensor *x = vtt_load_case(&c, f, "dropout_eval", "x", 1);
    float p = (float)vtt_attr_double(f, "dropout_eval", "p");
    ck_assert_float_eq(p, 0.5f);
    vt_tensor *y = vt_dropout(&c, x, p);
    check_y_shape(&c, f, "dropout_eval", y);
    vtt_parity(f, "dropout_eval", "y", y->data, y->numel, PT_RTOL, PT_ATOL);
    vtt_backward_fixture(&c, y, f, "dropout_eval");
    vtt_parity(f, "dropout_eval", "g_x", x->grad, x->numel, PT_RTOL, PT_ATOL);
    vt_ctx_free(&c);
    H5Fclose(f);
}
END_TEST

/* Training-mode dropout has no PyTorch fixture: PyTorch draws its mask from
 * its own generator (Philox/mt19937), ours is a counter-based hash of
 * (seed, stream, index), so the two masks can never agree element by
 * element. What must agree is the rule: with mask m read off our own output
 * (m = y != 0, inputs kept away from 0 so a kept value is never 0),
 *   y = x * m / (1 - p)   and   dL/dx = gy * m / (1 - p).
 * The expected values are computed in double from the definition; ours
 * multiply by the fp32 scale 1/(1-p), hence a relative 1e-6. */
START_TEST(dropout_training_matches_its_mask)
{
    static const float ps[] = {0.1f, 0.3f, 0.5f, 0.8f};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        const float p = ps[k];
        vt_ctx c;
        vt_ctx_init(&c, 5 + k);
        int n = 4000;
        vt_tensor *x = vtt_rand(&c, VTT_SHAPE(4, 10, 100), 0.5f, 1.5f, 3 + k, 1);
        for (int i = 0; i < n; i += 2)
            x->data[i] = -x->data[i];
        vt_tensor *y = vt_dropout(&c, x, p);
        ck_assert_ptr_ne(y, x);
        float *gy = malloc((size_t)n * sizeof(float));
        vtt_fill(gy, (size_t)n, -1, 1, 9);
        vt_backward_seed(&c, y, gy);
        int dropped = 0;
        double worst_y = 0, worst_g = 0;
        for (int i = 0; i < n; i++) {
            double m = y->data[i] != 0.0f ? 1.0 : 0.0;
            dropped += m == 0.0;
            double wy = x->data[i] * m / (1.0 - p);
            double wg = gy[i] * m / (1.0 - p);
            worst_y = fmax(worst_y, fabs(y->data[i] - wy) / (1e-30 + fabs(wy)));
            worst_g = fmax(worst_g, fabs(x->grad[i] - wg) / (1e-30 + fabs(wg)));
            ck_assert_msg(fabs(y->data[i] - wy) <= 1e-6 * fabs(wy),
                          "p %g: y[%d] = %g, x * m / (1 - p) = %g", p, i,
                          y->data[i], wy);
            ck_assert_msg(fabs(x->grad[i] - wg) <= 1e-6 * fabs(wg),
                          "p %g: dx[%d] = %g, gy * m / (1 - p) = %g", p, i,
                          x->grad[i], wg);
        }
        /* The mask is a real Bernoulli(1 - p) draw, not all-kept or
         * all-dropped: within 5 sigma of n * p. */
        double sigma = sqrt(n * p * (1 - p));
        ck_assert_msg(fabs(dropped - n * p) < 5 * sigma,
                      "p %g: %d of %d dropped", p, dropped, n);
        printf("dropout train p %.1f: dropped %d/%d, worst rel err y %.1e dx %.1e\n",
               p, dropped, n, worst_y, worst_g);
        free(gy);
        vt_ctx_free(&c);
    }
}
END_TEST

static Suite *parity_elementwise_suite(void)
{
    Suite *s = suite_create("parity_elementwise");
    TCase *tc = tcase_create("parity_elementwise");
    tcase_add_test(tc, parity_unary);
    tcase_add_test(tc, parity_binary);
    tcase_add_test(tc, parity_dropout_eval);
    tcase_add_test(tc, dropout_training_matches_its_mask);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(parity_elementwise_suite)
