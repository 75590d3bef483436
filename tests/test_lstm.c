/* test_lstm.c - vt_lstm: finite differences through y, h_n and c_n, the
 * fast path against the plain reference (vt_lstm_ref_forward), PyTorch
 * parity (tests/fixtures/lstm.h5 from tools/fixtures/gen_lstm.py), eval
 * mode, thread-count independence, and the recurrent sweep's own kernels:
 * vt_sgemm_small against OpenBLAS, the vector sigmoid and tanh against
 * double precision. */
#include "vt_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vt_h5.h"
#include "avx2_math.h"

/* Central differences of step 1e-3 on a smooth function: truncation error
 * ~ eps^2 |f'''| ~ 1e-6, fp32 rounding of a sum of ~100 outputs of size ~1
 * divided by 2 eps ~ 1e-4 absolute at worst, hence the atol. */
static const vtt_gc_opts GC = {.eps = 1e-3, .rtol = 5e-3, .atol = 5e-4};

/* PyTorch parity: fp32 relative 1e-4. The reference is float64; our error
 * is the fp32 rounding of dot products of length <= 4H + F = 84 with terms
 * <= 1 accumulated over T = 12 steps, ~1e-6 absolute, so 1e-5 is the floor
 * for entries that cancel to near zero. */
#define PT_RTOL 1e-4
#define PT_ATOL 1e-5

/* ==== A test-only op: y, h_n and c_n as one vector ===================== */

/* vtt_gradcheck differentiates a single output; packing all three makes its
 * random weighting a loss that reads the sequence and both final states. */
static void pack_backward(vt_ctx *c, vt_node *nd)
{
    const float *g = nd->out[0]->grad;
    size_t o = 0;
    for (int i = 0; i < nd->n_in; i++) {
        vt_tensor *t = nd->in[i];
        if (t->requires_grad) {
            float *gt = vt_grad(c, t);
            for (size_t k = 0; k < t->numel; k++)
                gt[k] += g[o + k];
        }
        o += t->numel;
    }
}
static const vt_op_def pack_op = {"test_pack", pack_backward};

static vt_tensor *pack(vt_ctx *c, int n, vt_tensor **ts)
{
    int total = 0;
    for (int i = 0; i < n; i++)
        total += (int)ts[i]->numel;
    vt_tensor *y = vt_empty(c, 1, total);
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        memcpy(y->data + o, ts[i]->data, ts[i]->numel * sizeof(float));
        o += ts[i]->numel;
    }
    if (vt_needs_grad(c, n, ts))
        vt_record(c, &pack_op, n, ts, 1, &y, NULL);
    return y;
}

/* ==== Cases ============================================================ */

enum { LOSS_ALL, LOSS_Y, LOSS_STATES };

typedef struct {
    int N, T, F, H, L, bidir, h0, c0, loss;
} lstm_case;

static int n_params(const lstm_case *k) { return 4 * k->L * (k->bidir ? 2 : 1); }

/* in = x, parameters in state_dict order, then h0 and c0 when used. */
static int make_inputs(vt_ctx *c, const lstm_case *k, vt_tensor **in,
                       float lo, float hi, uint64_t seed)
{
    const int D = k->bidir ? 2 : 1, G = 4 * k->H;
    const float r = 1.0f / sqrtf((float)k->H);
    int n = 0;
    in[n++] = vtt_rand(c, VTT_SHAPE(k->N, k->T, k->F), lo, hi, seed, 1);
    for (int l = 0; l < k->L; l++)
        for (int d = 0; d < D; d++) {
            int fl = l ? D * k->H : k->F;
            uint64_t sd = seed + 10 * (uint64_t)n;
            in[n++] = vtt_rand(c, VTT_SHAPE(G, fl), -r, r, sd + 1, 1);
            in[n++] = vtt_rand(c, VTT_SHAPE(G, k->H), -r, r, sd + 2, 1);
            in[n++] = vtt_rand(c, VTT_SHAPE(G), -r, r, sd + 3, 1);
            in[n++] = vtt_rand(c, VTT_SHAPE(G), -r, r, sd + 4, 1);
        }
    if (k->h0)
        in[n++] = vtt_rand(c, VTT_SHAPE(k->L * D, k->N, k->H), -0.5f, 0.5f, seed + 7, 1);
    if (k->c0)
        in[n++] = vtt_rand(c, VTT_SHAPE(k->L * D, k->N, k->H), -0.5f, 0.5f, seed + 8, 1);
    return n;
}

static vt_tensor *run_lstm(vt_ctx *c, const lstm_case *k, vt_tensor *const *in,
                           vt_tensor **hn, vt_tensor **cn)
{
    vt_lstm_args a = {k->F, k->H, k->L, k->bidir};
    int np = n_params(k);
    vt_tensor *h0 = k->h0 ? in[1 + np] : NULL;
    vt_tensor *c0 = k->c0 ? in[1 + np + k->h0] : NULL;
    return vt_lstm(c, in[0], &a, in + 1, h0, c0, hn, cn);
}

static vt_tensor *f_lstm(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    const lstm_case *k = ud;
    vt_tensor *hn, *cn;
    vt_tensor *y = run_lstm(c, k, in, &hn, &cn);
    vt_tensor *all[3] = {y, hn, cn};
    switch (k->loss) {
    case LOSS_Y:
        return y;
    case LOSS_STATES:
        return pack(c, 2, all + 1);
    default:
        return pack(c, 3, all);
    }
}

/* ==== Finite differences ============================================== */

START_TEST(gradcheck_lstm)
{
    static const lstm_case cases[] = {
        /* N  T  F  H  L bi h0 c0 loss */
        {2, 6, 5, 3, 1, 0, 0, 0, LOSS_ALL},
        {2, 6, 5, 3, 1, 0, 1, 1, LOSS_ALL},
        {2, 6, 5, 3, 2, 1, 0, 0, LOSS_ALL},
        {2, 5, 5, 3, 2, 1, 1, 1, LOSS_ALL},
        {3, 5, 4, 2, 3, 0, 1, 0, LOSS_Y},      /* 3 layers, h0 only */
        {1, 1, 7, 5, 1, 1, 0, 1, LOSS_STATES}, /* T = 1, c0 only */
        {2, 7, 3, 4, 2, 1, 1, 1, LOSS_STATES}, /* no gradient from y */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vt_ctx c;
        vt_ctx_init(&c, 1);
        vt_tensor *in[64];
        int n = make_inputs(&c, &cases[i], in, -1, 1, 40 + 100 * i);
        double w = vtt_gradcheck("lstm", f_lstm, (void *)&cases[i], n, in, &GC);
        printf("gradcheck lstm case %zu (L=%d D=%d h0=%d c0=%d): worst err/tol %.3f\n",
               i, cases[i].L, cases[i].bidir + 1, cases[i].h0, cases[i].c0, w);
        vt_ctx_free(&c);
    }
}
END_TEST

/* Frozen bottom layer and input: the sweep stops above them, and the
 * layers that still learn get the same gradients, bit for bit. */
START_TEST(frozen_bottom_layer)
{
    const lstm_case k = {2, 5, 4, 3, 3, 1, 0, 0, LOSS_ALL};
    const int np = n_params(&k), frozen = 1 + 4 * 2; /* x, layer 0 */
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *in[64];
    int n = make_inputs(&c, &k, in, -1, 1, 333);
    ck_assert_int_eq(n, 1 + np);

    /* Reference: everything learns. */
    vt_ctx run;
    vt_ctx_init(&run, 1);
    vt_tensor *y = f_lstm(&run, in, (void *)&k);
    float *seed = malloc(y->numel * sizeof(float));
    vtt_fill(seed, y->numel, -1, 1, 9);
    vt_backward_seed(&run, y, seed);
    float *want[64];
    for (int i = frozen; i < n; i++) {
        want[i] = malloc(in[i]->numel * sizeof(float));
        memcpy(want[i], in[i]->grad, in[i]->numel * sizeof(float));
        memset(in[i]->grad, 0, in[i]->numel * sizeof(float));
    }
    for (int i = 0; i < frozen; i++) {
        in[i]->requires_grad = 0;
        memset(in[i]->grad, 0, in[i]->numel * sizeof(float));
    }
    vt_ctx_reset(&run);
    y = f_lstm(&run, in, (void *)&k);
    vt_backward_seed(&run, y, seed);
    for (int i = 0; i < frozen; i++)
        for (size_t e = 0; e < in[i]->numel; e++)
            ck_assert_msg(in[i]->grad[e] == 0.0f, "frozen input %d got a gradient", i);
    for (int i = frozen; i < n; i++) {
        ck_assert_mem_eq(in[i]->grad, want[i], in[i]->numel * sizeof(float));
        free(want[i]);
    }
    double w = vtt_gradcheck("lstm frozen bottom", f_lstm, (void *)&k, n, in, &GC);
    printf("gradcheck lstm, layer 0 and x frozen: worst err/tol %.3f; upper layers' "
           "gradients bit-identical to the unfrozen run\n", w);
    free(seed);
    vt_ctx_free(&run);
    vt_ctx_free(&c);
}
END_TEST

/* ==== Fast path against the reference ================================= */

/* The reference accumulates in double, the fast path in fp32 GEMMs. */
#define REF_RTOL 1e-5
#define REF_ATOL 1e-6

/* Runs the reference layer by layer and direction by direction, stacking
 * like nn.LSTM, and compares y, h_n and c_n with vt_lstm. */
static double compare_with_ref(const lstm_case *k, uint64_t seed)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *in[64];
    make_inputs(&c, k, in, -1, 1, seed);
    vt_tensor *hn, *cn;
    vt_tensor *y = run_lstm(&c, k, in, &hn, &cn);

    const int D = k->bidir ? 2 : 1, N = k->N, T = k->T, H = k->H, np = n_params(k);
    const size_t nh = (size_t)N * H;
    const float *h0 = k->h0 ? in[1 + np]->data : NULL;
    const float *c0 = k->c0 ? in[1 + np + k->h0]->data : NULL;
    vt_tensor *xin = in[0];
    float *yd = malloc((size_t)N * T * H * sizeof(float));
    float *hn_ref = malloc((size_t)k->L * D * nh * sizeof(float));
    float *cn_ref = malloc((size_t)k->L * D * nh * sizeof(float));
    vt_tensor *layer = NULL;
    for (int l = 0; l < k->L; l++) {
        layer = vt_empty(&c, 3, N, T, D * H);
        for (int d = 0; d < D; d++) {
            const int s = l * D + d;
            vt_tensor *const *w = in + 1 + 4 * s;
            vt_lstm_ref_forward(xin, w[0], w[1], w[2], w[3], h0 ? h0 + s * nh : NULL,
                                c0 ? c0 + s * nh : NULL, d, yd, hn_ref + s * nh,
                                cn_ref + s * nh);
            for (int r = 0; r < N * T; r++)
                memcpy(layer->data + ((size_t)r * D + d) * H, yd + (size_t)r * H,
                       (size_t)H * sizeof(float));
        }
        xin = layer;
    }
    double w = vtt_assert_close("lstm fast vs ref: y", y->data, layer->data, y->numel,
                                REF_RTOL, REF_ATOL);
    w = fmax(w, vtt_assert_close("lstm fast vs ref: h_n", hn->data, hn_ref, hn->numel,
                                 REF_RTOL, REF_ATOL));
    w = fmax(w, vtt_assert_close("lstm fast vs ref: c_n", cn->data, cn_ref, cn->numel,
                                 REF_RTOL, REF_ATOL));
    free(yd);
    free(hn_ref);
    free(cn_ref);
    vt_ctx_free(&c);
    return w;
}

START_TEST(fast_matches_reference)
{
    static const lstm_case cases[] = {
        {2, 6, 5, 3, 1, 0, 0, 0, 0},
        {2, 6, 5, 3, 1, 1, 1, 1, 0},
        {3, 9, 17, 11, 2, 1, 1, 0, 0},
        {1, 1, 4, 2, 1, 1, 0, 1, 0},
        {5, 13, 33, 40, 2, 0, 1, 1, 0},
        {4, 8, 24, 64, 2, 1, 1, 1, 0},
        /* N*H = 4096: the parallel sweep (uni) and side-by-side directions
         * (bi) when run with two threads or more. */
        {16, 3, 8, 256, 1, 0, 1, 1, 0},
        {16, 3, 8, 256, 1, 1, 1, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double w = compare_with_ref(&cases[i], 900 + i);
        printf("lstm fast vs ref case %zu (N=%d T=%d F=%d H=%d L=%d D=%d): worst err/tol %.3f\n",
               i, cases[i].N, cases[i].T, cases[i].F, cases[i].H, cases[i].L,
               cases[i].bidir + 1, w);
    }
}
END_TEST

/* ==== PyTorch parity ================================================== */

static void param_name(char *buf, size_t len, int kind, int l, int d)
{
    static const char *const kinds[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    snprintf(buf, len, "%s_l%d%s", kinds[kind], l, d ? "_reverse" : "");
}

/* Compares got with dataset <kase>/<nm>; returns the worst err / tol. */
static double check_ds(vt_ctx *c, hid_t f, const char *kase, const char *nm,
                       const vt_tensor *t, const float *got)
{
    char path[256], what[160];
    snprintf(path, sizeof path, "%s/%s", kase, nm);
    vt_tensor *want = vtt_load(c, f, path, 0);
    ck_assert_msg(want->numel == t->numel, "%s: %zu values, fixture %zu", path,
                  t->numel, want->numel);
    snprintf(what, sizeof what, "lstm %s: %s", kase, nm);
    return vtt_assert_close(what, got, want->data, t->numel, PT_RTOL, PT_ATOL);
}

static void parity_case(hid_t f, const char *kase)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    char path[256], name[64], gname[80];
    int F, H, L, bi;
    vtt_attr_ints(f, kase, "input_size", &F, 1);
    vtt_attr_ints(f, kase, "hidden", &H, 1);
    vtt_attr_ints(f, kase, "layers", &L, 1);
    vtt_attr_ints(f, kase, "bidirectional", &bi, 1);
    const int D = bi ? 2 : 1;

#define LOAD(nm, rg) (snprintf(path, sizeof path, "%s/%s", kase, nm), vtt_load(&c, f, path, rg))
    vt_tensor *x = LOAD("x", 1);
    vt_tensor *p[64];
    for (int l = 0; l < L; l++)
        for (int d = 0; d < D; d++)
            for (int kd = 0; kd < 4; kd++) {
                param_name(name, sizeof name, kd, l, d);
                p[4 * (l * D + d) + kd] = LOAD(name, 1);
            }
    snprintf(path, sizeof path, "%s/h0", kase);
    vt_tensor *h0 = vt_h5_exists(f, path) ? LOAD("h0", 1) : NULL;
    snprintf(path, sizeof path, "%s/c0", kase);
    vt_tensor *c0 = vt_h5_exists(f, path) ? LOAD("c0", 1) : NULL;

    vt_lstm_args a = {F, H, L, bi};
    vt_tensor *hn, *cn;
    vt_tensor *y = vt_lstm(&c, x, &a, p, h0, c0, &hn, &cn);
    double wf = check_ds(&c, f, kase, "y", y, y->data);
    wf = fmax(wf, check_ds(&c, f, kase, "h_n", hn, hn->data));
    wf = fmax(wf, check_ds(&c, f, kase, "c_n", cn, cn->data));

    /* Upstream gradient on all three outputs: preload h_n's and c_n's, then
     * seed y's; the sweep adds, so the node sees all three. */
    vt_tensor *ghn = LOAD("ghn", 0), *gcn = LOAD("gcn", 0), *gy = LOAD("gy", 0);
#undef LOAD
    memcpy(vt_grad(&c, hn), ghn->data, hn->numel * sizeof(float));
    memcpy(vt_grad(&c, cn), gcn->data, cn->numel * sizeof(float));
    vt_backward_seed(&c, y, gy->data);

    double wb = check_ds(&c, f, kase, "g_x", x, x->grad);
    if (h0)
        wb = fmax(wb, check_ds(&c, f, kase, "g_h0", h0, h0->grad));
    if (c0)
        wb = fmax(wb, check_ds(&c, f, kase, "g_c0", c0, c0->grad));
    for (int l = 0; l < L; l++)
        for (int d = 0; d < D; d++)
            for (int kd = 0; kd < 4; kd++) {
                vt_tensor *t = p[4 * (l * D + d) + kd];
                param_name(name, sizeof name, kd, l, d);
                snprintf(gname, sizeof gname, "g_%s", name);
                wb = fmax(wb, check_ds(&c, f, kase, gname, t, t->grad));
            }
    printf("lstm parity %s: worst err/tol forward %.3f, gradients %.3f\n", kase, wf, wb);
    vt_ctx_free(&c);
}

START_TEST(pytorch_parity)
{
    static const char *const cases[] = {"uni1", "uni1_h0c0", "bi2_h0c0",
                                        "bi1_h0", "uni3_c0", "bi2_mid"};
    hid_t f = vtt_fixture_open("lstm.h5");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        parity_case(f, cases[i]);
    H5Fclose(f);
}
END_TEST

/* ==== Eval mode and threads =========================================== */

START_TEST(eval_mode_records_nothing)
{
    const lstm_case k = {3, 5, 6, 4, 2, 1, 1, 1, 0};
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *in[64];
    make_inputs(&c, &k, in, -1, 1, 77);
    vt_tensor *hn, *cn, *hn2, *cn2;
    vt_tensor *y = run_lstm(&c, &k, in, &hn, &cn);
    ck_assert_uint_eq(c.n_nodes, 1);
    c.grad_enabled = 0;
    vt_tensor *y2 = run_lstm(&c, &k, in, &hn2, &cn2);
    ck_assert_uint_eq(c.n_nodes, 1);
    ck_assert_int_eq(y2->requires_grad, 0);
    ck_assert_mem_eq(y->data, y2->data, y->numel * sizeof(float));
    ck_assert_mem_eq(hn->data, hn2->data, hn->numel * sizeof(float));
    ck_assert_mem_eq(cn->data, cn2->data, cn->numel * sizeof(float));
    vt_ctx_free(&c);
}
END_TEST

/* Forward and backward of a shape large enough to take every parallel
 * path; returns y followed by every gradient, malloc'd. */
static float *run_threads(const lstm_case *k, int threads, size_t *n_out)
{
    vt_set_threads(threads);
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *in[64];
    int n = make_inputs(&c, k, in, -1, 1, 4242);
    vt_tensor *hn, *cn;
    vt_tensor *y = run_lstm(&c, k, in, &hn, &cn);
    float *seed = malloc(y->numel * sizeof(float));
    vtt_fill(seed, y->numel, -1, 1, 5);
    vtt_fill(vt_grad(&c, hn), hn->numel, -1, 1, 6);
    vtt_fill(vt_grad(&c, cn), cn->numel, -1, 1, 7);
    vt_backward_seed(&c, y, seed);
    size_t total = y->numel;
    for (int i = 0; i < n; i++)
        total += in[i]->numel;
    float *out = malloc(total * sizeof(float)), *o = out;
    memcpy(o, y->data, y->numel * sizeof(float));
    o += y->numel;
    for (int i = 0; i < n; i++) {
        memcpy(o, in[i]->grad, in[i]->numel * sizeof(float));
        o += in[i]->numel;
    }
    free(seed);
    vt_ctx_free(&c);
    *n_out = total;
    return out;
}

START_TEST(threads_agree)
{
    /* N*H = 4096 and N*T*4H = 65536 exceed the parallel thresholds. The
     * unidirectional stack splits each sweep over hidden units; the
     * bidirectional one runs its two directions side by side. */
    static const lstm_case cases[] = {
        {16, 4, 24, 256, 2, 0, 1, 1, 0},
        {16, 4, 24, 256, 2, 1, 1, 1, 0},
    };
    int saved = vt_get_threads();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n1, n2, n3;
        float *a = run_threads(&cases[i], 1, &n1);
        float *b = run_threads(&cases[i], 2, &n2);
        float *b2 = run_threads(&cases[i], 2, &n3);
        vt_set_threads(saved);
        ck_assert_uint_eq(n1, n2);
        ck_assert_mem_eq(b, b2, n2 * sizeof(float));
        double w = vtt_assert_close("lstm 1 vs 2 threads", b, a, n1, 1e-4, 1e-6);
        size_t diff = 0;
        for (size_t k = 0; k < n1; k++)
            diff += a[k] != b[k];
        printf("lstm 1 vs 2 threads, D=%d: worst err/tol %.3f, %zu of %zu values "
               "differ; 2 threads twice: bit-identical\n",
               cases[i].bidir + 1, w, diff, n1);
        free(a);
        free(b);
        free(b2);
    }
}
END_TEST

/* ==== The sweep's kernels: small-M GEMM, vector sigmoid and tanh ======= */

/* Distance in units of the last place of want (as a float). Below the
 * smallest normal float the unit is that number (1.2e-38): the kernels
 * give 0 where the true value is a denormal (sigmoid(-100) = 3.7e-44). */
static double ulps(float got, double want)
{
    float w = (float)want;
    double ulp = fmax(nextafterf(fabsf(w), INFINITY) - fabsf(w), 1.1754944e-38);
    return fabs((double)got - want) / ulp;
}

/* s, t = sigmoid and tanh of x[0..8), by avx2_math.h */
__attribute__((target("avx2,fma"))) static void sig_tanh8(const float *x, float *s, float *t)
{
    const __m256 v = _mm256_loadu_ps(x);
    _mm256_storeu_ps(s, avx2_sigmoid(v));
    _mm256_storeu_ps(t, avx2_tanh(v));
}

START_TEST(vector_math_accuracy)
{
    if (!vt_cpu_avx2())
        return; /* the portable loops call libm */
    enum { NX = 200000 };
    static float x[NX + 16];
    int n = 0;
    for (int i = 0; i < NX; i++)
        x[n++] = -40.0f + 80.0f * (float)i / NX;
    const float special[] = {0.0f,    -0.0f,  1e-30f, -1e-30f, 1e-8f,    -1e-8f,
                             0.625f,  -0.625f, 0.62499994f, 87.0f, -87.5f, 88.5f,
                             -100.0f, 100.0f};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        x[n++] = special[i];
    while (n % 8)
        x[n++] = 1.0f;
    double worst_s = 0, worst_t = 0;
    for (int i = 0; i < n; i += 8) {
        float s[8], t[8];
        sig_tanh8(x + i, s, t);
        for (int l = 0; l < 8; l++) {
            const double xd = x[i + l];
            double es = ulps(s[l], 1.0 / (1.0 + exp(-xd))), et = ulps(t[l], tanh(xd));
            ck_assert_msg(es <= 4 && et <= 4, "x = %.9g: sigmoid %.9g (%.1f ulp), tanh %.9g (%.1f ulp)",
                          xd, s[l], es, t[l], et);
            worst_s = fmax(worst_s, es);
            worst_t = fmax(worst_t, et);
        }
    }
    /* the edges: infinities and NaN */
    const float edge[8] = {INFINITY, -INFINITY, NAN, -0.0f, 0, 0, 0, 0};
    float es[8], et[8];
    sig_tanh8(edge, es, et);
    ck_assert(es[0] == 1.0f && es[1] == 0.0f && isnan(es[2]));
    ck_assert(et[0] == 1.0f && et[1] == -1.0f && isnan(et[2]) && et[3] == 0.0f && signbit(et[3]));
    printf("vector sigmoid, tanh over %d points in [-40, 40] and edges: worst %.2f and %.2f ulp\n",
           n, worst_s, worst_t);
}
END_TEST

/* vt_sgemm_small against OpenBLAS at odd sizes, with row strides past the
 * widths, both forms and both betas; and a column range split in two
 * gives the bits of the whole, as the sweep's threads rely on. */
START_TEST(small_gemm_matches_blas)
{
    static const int shapes[][3] = {{1, 1, 1},  {8, 1024, 512}, {3, 7, 5},   {5, 25, 13},
                                    {4, 24, 8}, {9, 50, 37},    {13, 3, 70}, {2, 49, 2048}};
    int checked = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
        for (int tb = 0; tb < 2; tb++)
            for (int beta = 0; beta < 2; beta++) {
                const int lda = k + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
                const size_t nb = (size_t)(tb ? n : k) * ldb;
                float *a = malloc((size_t)m * lda * sizeof *a), *b = malloc(nb * sizeof *b);
                float *c0 = malloc((size_t)m * ldc * sizeof *c0);
                float *c1 = malloc((size_t)m * ldc * sizeof *c1);
                float *c2 = malloc((size_t)m * ldc * sizeof *c2);
                vtt_fill(a, (size_t)m * lda, -1, 1, 100 + si);
                vtt_fill(b, nb, -1, 1, 200 + si);
                vtt_fill(c0, (size_t)m * ldc, -1, 1, 300 + si);
                memcpy(c1, c0, (size_t)m * ldc * sizeof *c0);
                memcpy(c2, c0, (size_t)m * ldc * sizeof *c0);
                vt_sgemm(0, tb, m, n, k, 1.0f, a, lda, b, ldb, beta ? 1.0f : 0.0f, c0, ldc);
                vt_sgemm_small(tb, m, n, k, a, lda, b, ldb, beta, c1, ldc);
                const int cut = n / 3;
                vt_sgemm_small(tb, m, cut, k, a, lda, b, ldb, beta, c2, ldc);
                vt_sgemm_small(tb, m, n - cut, k, a, lda, b + (size_t)cut * (tb ? ldb : 1),
                               ldb, beta, c2 + cut, ldc);
                char what[96];
                snprintf(what, sizeof what, "small gemm m=%d n=%d k=%d trans_b=%d beta=%d", m,
                         n, k, tb, beta);
                /* columns past n (the row padding) stay as they were */
                vtt_assert_close(what, c1, c0, (size_t)m * ldc, 1e-5, 1e-5 * sqrt(k));
                ck_assert_mem_eq(c2, c1, (size_t)m * ldc * sizeof *c1);
                checked++;
                free(a);
                free(b);
                free(c0);
                free(c1);
                free(c2);
            }
    }
    /* big enough to split its columns over the threads itself */
    const int m = 4, n = 1000, k = 700;
    float *a = malloc((size_t)m * k * sizeof *a), *bn = malloc((size_t)k * n * sizeof *bn);
    float *c1 = malloc((size_t)m * n * sizeof *c1), *c2 = malloc((size_t)m * n * sizeof *c2);
    vtt_fill(a, (size_t)m * k, -1, 1, 400);
    vtt_fill(bn, (size_t)k * n, -1, 1, 401);
    const int saved = vt_get_threads();
    for (int tb = 0; tb < 2; tb++) {
        vt_set_threads(1);
        vt_sgemm_small(tb, m, n, k, a, k, bn, tb ? k : n, 0, c1, n);
        vt_set_threads(2);
        vt_sgemm_small(tb, m, n, k, a, k, bn, tb ? k : n, 0, c2, n);
        if (vt_cpu_avx2())
            ck_assert_mem_eq(c1, c2, (size_t)m * n * sizeof *c1);
        else
            vtt_assert_close("small gemm 1 vs 2 threads", c2, c1, (size_t)m * n, 1e-5, 1e-4);
    }
    vt_set_threads(saved);
    free(a);
    free(bn);
    free(c1);
    free(c2);
    printf("small gemm: %d cases match OpenBLAS; split columns bit-identical (%s); "
           "4x1000x700 on 1 and 2 threads %s\n",
           checked, vt_cpu_avx2() ? "AVX2 kernels" : "portable: OpenBLAS itself",
           vt_cpu_avx2() ? "bit-identical" : "within rounding");
}
END_TEST

static Suite *lstm_suite(void)
{
    Suite *s = suite_create("lstm");
    TCase *tc = tcase_create("lstm");
    tcase_add_test(tc, gradcheck_lstm);
    tcase_add_test(tc, frozen_bottom_layer);
    tcase_add_test(tc, fast_matches_reference);
    tcase_add_test(tc, pytorch_parity);
    tcase_add_test(tc, eval_mode_records_nothing);
    tcase_add_test(tc, threads_agree);
    tcase_add_test(tc, vector_math_accuracy);
    tcase_add_test(tc, small_gemm_matches_blas);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(lstm_suite)
