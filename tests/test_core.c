/* test_core.c - arena, tape semantics, parameter store, RNG. */
#include "vt_test.h"

#include <math.h>
#include <string.h>

START_TEST(arena_reuses_memory_after_reset)
{
    vt_arena a;
    vt_arena_init(&a, 1024);
    void *p1 = vt_arena_alloc(&a, 100);
    ck_assert_uint_eq((uintptr_t)p1 % 64, 0);
    for (int i = 0; i < 50; i++)
        vt_arena_alloc(&a, 1000); /* spills into more chunks */
    size_t peak = a.used;
    vt_arena_reset(&a);
    ck_assert_uint_eq(a.used, 0);
    /* After a reset the whole previous step fits one chunk: same sequence of
     * allocations must be contiguous (no new chunk). */
    unsigned char *first = vt_arena_alloc(&a, 100);
    unsigned char *last = first;
    for (int i = 0; i < 50; i++)
        last = vt_arena_alloc(&a, 1000);
    ck_assert_uint_eq(a.used, peak);
    ck_assert_uint_eq((size_t)(last - first), 128 + 49 * 1024);
    vt_arena_free(&a);
}
END_TEST

/* y = x * x + x: x is used three times; dy/dx = 2x + 1. */
START_TEST(tensor_used_twice_sums_gradients)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *x = vtt_rand(&c, VTT_SHAPE(2, 3), -2, 2, 5, 1);
    vt_tensor *y = vt_add(&c, vt_mul(&c, x, x), x);
    float seed[6] = {1, 1, 1, 1, 1, 1};
    vt_backward_seed(&c, y, seed);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq_tol(x->grad[i], 2 * x->data[i] + 1, 1e-6);
    vt_ctx_free(&c);
}
END_TEST

START_TEST(no_grad_records_nothing)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *x = vtt_rand(&c, VTT_SHAPE(4), -1, 1, 5, 1);
    c.grad_enabled = 0;
    vt_tensor *y = vt_relu(&c, vt_mul(&c, x, x));
    ck_assert_uint_eq(c.n_nodes, 0);
    ck_assert_int_eq(y->requires_grad, 0);
    ck_assert_ptr_null(y->node);
    c.grad_enabled = 1;
    /* Inputs without requires_grad: nothing recorded either. */
    vt_tensor *z = vtt_rand(&c, VTT_SHAPE(4), -1, 1, 6, 0);
    vt_relu(&c, z);
    ck_assert_uint_eq(c.n_nodes, 0);
    vt_relu(&c, x);
    ck_assert_uint_eq(c.n_nodes, 1);
    vt_ctx_free(&c);
}
END_TEST

/* Parameter gradients accumulate over two backward passes until zeroed;
 * activations' gradients live in the arena and vanish with the reset. */
START_TEST(param_grads_accumulate_until_zeroed)
{
    vt_store s;
    vt_store_init(&s);
    int w_i = vt_store_add(&s, "lin.weight", 1, (int[]){3}, 1);
    int b_i = vt_store_add(&s, "bn.running_mean", 1, (int[]){3}, 0);
    vt_store_finalize(&s);
    vt_tensor *w = vt_store_tensor(&s, w_i);
    ck_assert_ptr_null(vt_store_tensor(&s, b_i)->grad);
    ck_assert_ptr_nonnull(vt_store_find(&s, "bn.running_mean"));
    ck_assert_ptr_null(vt_store_find(&s, "nope"));
    ck_assert_uint_eq((uintptr_t)w->data % 64, 0);
    ck_assert_uint_eq((uintptr_t)vt_store_tensor(&s, b_i)->data % 64, 0);
    for (int i = 0; i < 3; i++)
        w->data[i] = (float)(i + 1);
    vt_ctx c;
    vt_ctx_init(&c, 1);
    float seed[3] = {1, 1, 1};
    for (int step = 0; step < 2; step++) {
        vt_ctx_reset(&c);
        vt_tensor *x = vtt_rand(&c, VTT_SHAPE(3), 1, 2, 8, 0);
        vt_backward_seed(&c, vt_mul(&c, w, x), seed);
        for (int i = 0; i < 3; i++)
            ck_assert_float_eq_tol(w->grad[i], (step + 1) * x->data[i], 1e-6);
    }
    vt_store_zero_grad(&s);
    for (int i = 0; i < 3; i++)
        ck_assert_float_eq(w->grad[i], 0.0f);
    ck_assert_uint_eq(vt_store_trainable_count(&s), 3);
    vt_ctx_free(&c);
    vt_store_free(&s);
}
END_TEST

/* Nodes off the loss's path are not run. */
static int side_calls;
static void side_backward(vt_ctx *c, vt_node *n)
{
    (void)c;
    (void)n;
    side_calls++;
}
static const vt_op_def side_op = {"side", side_backward};

START_TEST(backward_skips_nodes_off_the_path)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *x = vtt_rand(&c, VTT_SHAPE(2), -1, 1, 5, 1);
    vt_tensor *dead = vt_tensor_like(&c, x);
    vt_record(&c, &side_op, 1, &x, 1, &dead, NULL);
    vt_tensor *y = vt_tanh(&c, x);
    side_calls = 0;
    vt_backward_seed(&c, y, (float[]){1, 1});
    ck_assert_int_eq(side_calls, 0);
    vt_ctx_free(&c);
}
END_TEST

START_TEST(rng_is_counter_based)
{
    vt_rng a = {42, 0}, b = {42, 0}, other = {43, 0};
    float va[8], vb[8];
    int differ = 0;
    for (int i = 0; i < 8; i++) {
        va[i] = vt_rng_uniform(&a);
        vb[i] = vt_rng_uniform(&b);
        differ += va[i] != vt_rng_uniform(&other);
        ck_assert(va[i] >= 0.0f && va[i] < 1.0f);
    }
    ck_assert_mem_eq(va, vb, sizeof va);
    ck_assert_int_ge(differ, 7);
    /* Moments of 20000 normal draws. */
    double s = 0, s2 = 0;
    for (int i = 0; i < 20000; i++) {
        double v = vt_rng_normal(&a);
        s += v;
        s2 += v * v;
    }
    ck_assert_double_lt(fabs(s / 20000), 0.03);
    ck_assert_double_lt(fabs(s2 / 20000 - 1.0), 0.05);
    int hist[5] = {0};
    for (int i = 0; i < 5000; i++)
        hist[vt_rng_below(&a, 5)]++;
    for (int i = 0; i < 5; i++)
        ck_assert_int_gt(hist[i], 900);
}
END_TEST

START_TEST(shape_helpers)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *t = vt_empty(&c, 5, 2, 3, 16, 112, 112);
    char buf[64];
    ck_assert_str_eq(vt_shape_str(t, buf, sizeof buf), "(2, 3, 16, 112, 112)");
    ck_assert_uint_eq(t->numel, 2u * 3 * 16 * 112 * 112);
    ck_assert_int_gt(vt_op_table_len, 0);
    for (int i = 0; i < vt_op_table_len; i++)
        ck_assert_ptr_nonnull(vt_op_table[i]->backward);
    vt_ctx_free(&c);
}
END_TEST

static Suite *core_suite(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, arena_reuses_memory_after_reset);
    tcase_add_test(tc, tensor_used_twice_sums_gradients);
    tcase_add_test(tc, no_grad_records_nothing);
    tcase_add_test(tc, param_grads_accumulate_until_zeroed);
    tcase_add_test(tc, backward_skips_nodes_off_the_path);
    tcase_add_test(tc, rng_is_counter_based);
    tcase_add_test(tc, shape_helpers);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(core_suite)
