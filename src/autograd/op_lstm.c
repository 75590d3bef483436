/* op_lstm.c - nn.LSTM(batch_first=True): stacked layers, optional reverse
 * direction, full backpropagation through time.
 *
 * Shapes: x (N, T, F). Per layer l and direction d (D = 1 or 2):
 *   w_ih (4H, F_l), w_hh (4H, H), b_ih (4H), b_hh (4H), gate rows i, f, g, o;
 *   F_0 = F, F_l = D*H above. h0/c0 (L*D, N, H), slice l*D + d.
 * Output y (N, T, D*H): every hidden state of the last layer; h_n, c_n
 * (L*D, N, H).
 *
 * The whole stack is one tape node. Each direction writes its hidden states
 * straight into columns [d*H, d*H + H) of its layer's (N, T, D*H) output, so
 * neither the bidirectional concatenation nor the next layer's input costs a
 * copy, and the per-step GEMMs read h_{t-1} in place through a row stride.
 *
 * Saved for backward, per (layer, direction): gate activations (N, T, 4H)
 * (i, f, g, o after their nonlinearity) and cell states c_t (N, T, H); every
 * layer's output (the last one is y itself). tanh(c_t) is recomputed.
 *
 * Determinism: every reduction over time or batch (weight and bias
 * gradients, dX) is a GEMM or a column sum over all N*T rows done once
 * after the sweep in a fixed order, never accumulated across threads.
 */
#include "vt_ops.h"
#include "avx2_lanes.h"
#include "avx2_math.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* Below this many elements an omp loop costs more to fork than it saves. */
#define PAR_MIN 16384

typedef struct {
    int N, T, F, H, L, D;
    int h0_at, c0_at;    /* node input index, -1 when absent (zeros) */
    float **acts, **cells; /* [L*D] (N, T, 4H) and (N, T, H) */
    float **ys;          /* [L] (N, T, D*H); ys[L-1] is y's data */
} lstm_saved;

static inline float sigm(float v) { return 1.0f / (1.0f + expf(-v)); }

/* ==== gate updates, 8 hidden units at a time ==========================
 *
 * One step's elementwise part for hidden units [j0, j1) of every batch
 * row, with avx2_math.h's sigmoid and tanh. The last, partial group of 8
 * goes through the same code with masked loads and stores, so a unit's
 * value does not depend on where a thread's slice of units begins: one
 * thread and two give the same bits. Without AVX2, the scalar loops in
 * dir_forward and dir_sweep run instead (libm). */

/* acts' row holds the pre-activations i, f, g, o at 0, H, 2H, 3H and gets
 * their activations; cp: c_{t-1} of the row (NULL: zeros); cell and h get
 * c_t and h_t. */
VT_AVX2 static void gates_fwd_avx2(int H, int j0, int j1, float *g, const float *cp,
                                   float *cell, float *h)
{
    for (int j = j0; j < j1; j += 8) {
        const __m256i m = avx2_lane_mask(j1 - j);
        const __m256 i = avx2_sigmoid(_mm256_maskload_ps(g + j, m));
        const __m256 f = avx2_sigmoid(_mm256_maskload_ps(g + H + j, m));
        const __m256 gg = avx2_tanh(_mm256_maskload_ps(g + 2 * H + j, m));
        const __m256 o = avx2_sigmoid(_mm256_maskload_ps(g + 3 * H + j, m));
        __m256 cv = _mm256_mul_ps(i, gg);
        if (cp)
            cv = _mm256_add_ps(cv, _mm256_mul_ps(f, _mm256_maskload_ps(cp + j, m)));
        _mm256_maskstore_ps(g + j, m, i);
        _mm256_maskstore_ps(g + H + j, m, f);
        _mm256_maskstore_ps(g + 2 * H + j, m, gg);
        _mm256_maskstore_ps(g + 3 * H + j, m, o);
        _mm256_maskstore_ps(cell + j, m, cv);
        _mm256_maskstore_ps(h + j, m, _mm256_mul_ps(o, avx2_tanh(cv)));
    }
}

/* The backward of the same: a (the row's activations), cell (c_t), cp
 * (c_{t-1} or NULL), gy (h_t's gradient from above); dh, dc (carried, dc
 * updated in place); dg gets the pre-activation gradients. Each product
 * in the scalar loop's order. */
VT_AVX2 static void gates_bwd_avx2(int H, int j0, int j1, const float *a, const float *cell,
                                   const float *cp, const float *gy, const float *dh,
                                   float *dc, float *dg)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int j = j0; j < j1; j += 8) {
        const __m256i m = avx2_lane_mask(j1 - j);
        const __m256 i = _mm256_maskload_ps(a + j, m), f = _mm256_maskload_ps(a + H + j, m);
        const __m256 gg = _mm256_maskload_ps(a + 2 * H + j, m);
        const __m256 o = _mm256_maskload_ps(a + 3 * H + j, m);
        const __m256 tc = avx2_tanh(_mm256_maskload_ps(cell + j, m));
        const __m256 cprev = cp ? _mm256_maskload_ps(cp + j, m) : _mm256_setzero_ps();
        const __m256 dhv = _mm256_add_ps(_mm256_maskload_ps(dh + j, m),
                                         _mm256_maskload_ps(gy + j, m));
        const __m256 dcv = _mm256_add_ps(
            _mm256_maskload_ps(dc + j, m),
            _mm256_mul_ps(_mm256_mul_ps(dhv, o), _mm256_sub_ps(one, _mm256_mul_ps(tc, tc))));
        _mm256_maskstore_ps(dg + j, m,
                            _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(dcv, gg), i),
                                          _mm256_sub_ps(one, i)));
        _mm256_maskstore_ps(dg + H + j, m,
                            _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(dcv, cprev), f),
                                          _mm256_sub_ps(one, f)));
        _mm256_maskstore_ps(dg + 2 * H + j, m,
                            _mm256_mul_ps(_mm256_mul_ps(dcv, i),
                                          _mm256_sub_ps(one, _mm256_mul_ps(gg, gg))));
        _mm256_maskstore_ps(dg + 3 * H + j, m,
                            _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(dhv, tc), o),
                                          _mm256_sub_ps(one, o)));
        _mm256_maskstore_ps(dc + j, m, _mm256_mul_ps(dcv, f));
    }
}

/* Work split of a recurrent sweep. The steps are a chain of small GEMMs
 * (M = N), so forking per step twice (OpenBLAS, then the gate loop) costs
 * more than it gains and collapses when the cores are shared. Instead one
 * parallel region spans the whole sweep and each thread owns a slice of
 * the hidden units: its gate columns in the GEMM, its cells in the update.
 * A step then needs a single barrier (everyone's h_{t-1} before the next
 * GEMM), and the GEMMs inside the region run single-threaded. */
static int sweep_threads(int N, int H)
{
    return (size_t)N * (size_t)H >= PAR_MIN / 4 && !omp_in_parallel() ? vt_get_threads()
                                                                        : 1;
}

/* Directions of a bidirectional layer are independent chains: with two or
 * more threads they run side by side, one thread each, with no barrier,
 * once a direction's multiply-adds (N T 4H (F_l + H)) repay the fork. */
static int concurrent_dirs(int D, int N, int T, int Fl, int H)
{
    double work = (double)N * T * 4.0 * H * (Fl + H);
    return D == 2 && work >= 1e6 && vt_get_threads() >= 2 && !omp_in_parallel();
}

/* wt's rows [j0, j1) (wt: H x G) = W_hh^T's: row j holds W_hh[g][j] for
 * every g. The backward's dh_{t-1} = dG_t W_hh then reads contiguous rows,
 * as dot products (vt_sgemm_small's trans_b form). Read in place, W_hh's
 * columns [j0, j1) are 2048 strided pieces of 1 KB: that GEMM ran at half
 * the forward's speed (4.3-5.4 ms of a T=16 sweep against 2.4-3.1). */
VT_AVX2 static void transpose_units(int G, int H, int j0, int j1, const float *w, float *wt)
{
    int j = j0;
    for (; j + 8 <= j1; j += 8) {
        int g = 0;
        for (; g + 8 <= G; g += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = _mm256_loadu_ps(w + (size_t)(g + i) * H + j);
            avx2_transpose8(r);
            for (int i = 0; i < 8; i++)
                _mm256_storeu_ps(wt + (size_t)(j + i) * G + g, r[i]);
        }
        for (; g < G; g++)
            for (int i = 0; i < 8; i++)
                wt[(size_t)(j + i) * G + g] = w[(size_t)g * H + j + i];
    }
    for (; j < j1; j++)
        for (int g = 0; g < G; g++)
            wt[(size_t)j * G + g] = w[(size_t)g * H + j];
}

/* ==== forward ========================================================== */

/* One layer and direction. xin (N, T, Fl); y is the layer output (N, T, D*H)
 * of which columns [d*H, d*H + H) are written. h0/c0 (N, H) or NULL. */
static void dir_forward(int N, int T, int Fl, int H, int D, int d,
                        const float *xin, const float *w_ih, const float *w_hh,
                        const float *b_ih, const float *b_hh, const float *h0,
                        const float *c0, float *acts, float *cells, float *y)
{
    const int G = 4 * H, DH = D * H;
    const size_t rows = (size_t)N * (size_t)T;

    /* Input projection of every time step at once: the only GEMM with a
     * large M, so it carries most of the forward FLOPs efficiently. */
    vt_sgemm(0, 1, N * T, G, Fl, 1.0f, xin, Fl, w_ih, Fl, 0.0f, acts, G);
#pragma omp parallel for schedule(static) if (rows * (size_t)G >= PAR_MIN)
    for (size_t r = 0; r < rows; r++)
        for (int k = 0; k < G; k++)
            acts[r * (size_t)G + (size_t)k] += b_ih[k] + b_hh[k];

    const int nth = sweep_threads(N, H), avx2 = vt_cpu_avx2();
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        const int nt = omp_get_num_threads(), id = omp_get_thread_num();
        const int j0 = (int)((long)H * id / nt), j1 = (int)((long)H * (id + 1) / nt);
        for (int s = 0; s < T; s++) {
            const int t = d ? T - 1 - s : s, tp = d ? t + 1 : t - 1;
            float *gt = acts + (size_t)t * (size_t)G;
            const float *hp = s ? y + (size_t)tp * (size_t)DH + (size_t)d * (size_t)H : h0;
            const float *cp = s ? cells + (size_t)tp * (size_t)H : c0;
            const int ldh = s ? T * DH : H;
            const size_t ldc = s ? (size_t)T * (size_t)H : (size_t)H;
            if (hp && j1 > j0)
                for (int q = 0; q < 4; q++)
                    vt_sgemm_small(1, N, j1 - j0, H, hp, ldh,
                                   w_hh + (size_t)(q * H + j0) * (size_t)H, H, 1,
                                   gt + q * H + j0, T * G);
            for (int n = 0; n < N; n++) {
                const size_t row = (size_t)n * (size_t)T + (size_t)t;
                float *g = acts + row * (size_t)G;
                if (avx2) {
                    gates_fwd_avx2(H, j0, j1, g, cp ? cp + (size_t)n * ldc : NULL,
                                   cells + row * (size_t)H,
                                   y + row * (size_t)DH + (size_t)d * (size_t)H);
                    continue;
                }
                for (int j = j0; j < j1; j++) {
                    float i = sigm(g[j]), f = sigm(g[H + j]);
                    float gg = tanhf(g[2 * H + j]), o = sigm(g[3 * H + j]);
                    float cv = i * gg;
                    if (cp)
                        cv += f * cp[(size_t)n * ldc + (size_t)j];
                    g[j] = i;
                    g[H + j] = f;
                    g[2 * H + j] = gg;
                    g[3 * H + j] = o;
                    cells[row * (size_t)H + (size_t)j] = cv;
                    y[row * (size_t)DH + (size_t)d * (size_t)H + (size_t)j] = o * tanhf(cv);
                }
            }
#pragma omp barrier
        }
    }
}

/* ==== backward ========================================================= */

/* The recurrent sweep of one layer and direction: fills dG (N, T, 4H) with
 * the pre-activation gate gradients of every step, given gy (N, T, D*H)
 * (the layer output's gradient) and ghn/gcn (N, H) or NULL. dh, dc (N, H)
 * are scratch; gh0/gc0 (N, H), if not NULL, receive the initial states'
 * gradients. */
static void dir_sweep(int N, int T, int H, int D, int d, const float *w_hh,
                      const float *c0, const float *acts, const float *cells,
                      const float *gy, const float *ghn, const float *gcn,
                      float *dG, float *dh, float *dc, float *gh0, float *gc0, float *wt)
{
    const int G = 4 * H, DH = D * H, nh = N * H;
    if (ghn)
        memcpy(dh, ghn, (size_t)nh * sizeof(float));
    else
        memset(dh, 0, (size_t)nh * sizeof(float));
    if (gcn)
        memcpy(dc, gcn, (size_t)nh * sizeof(float));
    else
        memset(dc, 0, (size_t)nh * sizeof(float));

    const int nth = sweep_threads(N, H), avx2 = vt_cpu_avx2();
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        const int nt = omp_get_num_threads(), id = omp_get_thread_num();
        const int j0 = (int)((long)H * id / nt), j1 = (int)((long)H * (id + 1) / nt);
        /* each thread reads only its own rows of wt: no barrier */
        if (wt)
            transpose_units(G, H, j0, j1, w_hh, wt);
        for (int s = T - 1; s >= 0; s--) {
            const int t = d ? T - 1 - s : s, tp = d ? t + 1 : t - 1;
            const float *cp = s ? cells + (size_t)tp * (size_t)H : c0;
            const size_t ldc = s ? (size_t)T * (size_t)H : (size_t)H;
            for (int n = 0; n < N; n++) {
                const size_t row = (size_t)n * (size_t)T + (size_t)t;
                const float *a = acts + row * (size_t)G;
                float *g = dG + row * (size_t)G;
                if (avx2) {
                    gates_bwd_avx2(H, j0, j1, a, cells + row * (size_t)H,
                                   cp ? cp + (size_t)n * ldc : NULL,
                                   gy + row * (size_t)DH + (size_t)d * (size_t)H,
                                   dh + (size_t)n * H, dc + (size_t)n * H, g);
                    continue;
                }
                for (int j = j0; j < j1; j++) {
                    const int e = n * H + j;
                    float i = a[j], f = a[H + j], gg = a[2 * H + j], o = a[3 * H + j];
                    float tc = tanhf(cells[row * (size_t)H + (size_t)j]);
                    float cprev = cp ? cp[(size_t)n * ldc + (size_t)j] : 0.0f;
                    float dhv = dh[e] + gy[row * (size_t)DH + (size_t)d * (size_t)H + (size_t)j];
                    float dcv = dc[e] + dhv * o * (1.0f - tc * tc);
                    g[j] = dcv * gg * i * (1.0f - i);
                    g[H + j] = dcv * cprev * f * (1.0f - f);
                    g[2 * H + j] = dcv * i * (1.0f - gg * gg);
                    g[3 * H + j] = dhv * tc * o * (1.0f - o);
                    dc[e] = dcv * f;
                }
            }
#pragma omp barrier
            /* dh_{t-1} = dGates_t W_hh, each thread its own columns, which
             * are the only ones its next step reads: no second barrier. At
             * the first step only h0 wants it. */
            if ((s > 0 || gh0) && j1 > j0) {
                if (wt)
                    vt_sgemm_small(1, N, j1 - j0, G, dG + (size_t)t * (size_t)G, T * G,
                                   wt + (size_t)j0 * G, G, 0, dh + j0, H);
                else
                    vt_sgemm_small(0, N, j1 - j0, G, dG + (size_t)t * (size_t)G, T * G,
                                   w_hh + j0, H, 0, dh + j0, H);
            }
        }
    }
    if (gh0)
        for (int e = 0; e < nh; e++)
            gh0[e] += dh[e];
    if (gc0)
        for (int e = 0; e < nh; e++)
            gc0[e] += dc[e];
}

/* Everything dG feeds once the sweep is done, each a single GEMM or column
 * sum over all N*T rows: dW_hh = dG^T H_prev, dW_ih = dG^T X, dX = dG W_ih,
 * db = column sums. hp (N, T, H) is scratch. Any output may be NULL. */
static void dir_reduce(int N, int T, int Fl, int H, int D, int d,
                       const float *xin, const float *w_ih, const float *h0,
                       const float *y, const float *dG, float *hp, float *gx,
                       float *gw_ih, float *gw_hh, float *gb_ih, float *gb_hh)
{
    const int G = 4 * H, DH = D * H;
    const size_t rows = (size_t)N * (size_t)T;
    if (gw_hh) {
        /* h_{t-1} laid out row for row beside dG, so dW_hh is one GEMM
         * over all N*T rows instead of T small ones. */
        const int tfirst = d ? T - 1 : 0;
#pragma omp parallel for schedule(static) if (rows * (size_t)H >= PAR_MIN)
        for (size_t r = 0; r < rows; r++) {
            const int n = (int)(r / (size_t)T), t = (int)(r % (size_t)T);
            float *dst = hp + r * (size_t)H;
            if (t != tfirst) {
                const int tp = d ? t + 1 : t - 1;
                memcpy(dst, y + ((size_t)n * (size_t)T + (size_t)tp) * (size_t)DH +
                                (size_t)d * (size_t)H,
                       (size_t)H * sizeof(float));
            } else if (h0) {
                memcpy(dst, h0 + (size_t)n * (size_t)H, (size_t)H * sizeof(float));
            } else {
                memset(dst, 0, (size_t)H * sizeof(float));
            }
        }
        vt_sgemm(1, 0, G, H, N * T, 1.0f, dG, G, hp, H, 1.0f, gw_hh, H);
    }
    if (gw_ih)
        vt_sgemm(1, 0, G, Fl, N * T, 1.0f, dG, G, xin, Fl, 1.0f, gw_ih, Fl);
    if (gx)
        vt_sgemm(0, 0, N * T, Fl, G, 1.0f, dG, G, w_ih, Fl, 1.0f, gx, Fl);
    if (gb_ih || gb_hh) {
        /* Column sums, parallel over column blocks: each column is summed
         * by one thread in row order whatever the thread count. */
        enum { CB = 64 };
        const int nblk = (G + CB - 1) / CB;
#pragma omp parallel for schedule(static) if (rows * (size_t)G >= PAR_MIN)
        for (int b = 0; b < nblk; b++) {
            const int k0 = b * CB, k1 = k0 + CB < G ? k0 + CB : G;
            float acc[CB] = {0};
            for (size_t r = 0; r < rows; r++)
                for (int k = k0; k < k1; k++)
                    acc[k - k0] += dG[r * (size_t)G + (size_t)k];
            for (int k = k0; k < k1; k++) {
                if (gb_ih)
                    gb_ih[k] += acc[k - k0];
                if (gb_hh)
                    gb_hh[k] += acc[k - k0];
            }
        }
    }
}

static float *grad_or_null(vt_ctx *c, vt_tensor *t)
{
    return t && t->requires_grad ? vt_grad(c, t) : NULL;
}

static void lstm_backward(vt_ctx *c, vt_node *nd)
{
    const lstm_saved *s = nd->saved;
    const int N = s->N, T = s->T, H = s->H, L = s->L, D = s->D;
    const int DH = D * H, G = 4 * H;
    const size_t rows = (size_t)N * (size_t)T, nh = (size_t)N * (size_t)H;
    vt_tensor *x = nd->in[0], *const *p = nd->in + 1;
    vt_tensor *h0 = s->h0_at >= 0 ? nd->in[s->h0_at] : NULL;
    vt_tensor *c0 = s->c0_at >= 0 ? nd->in[s->c0_at] : NULL;
    vt_tensor *y = nd->out[0], *hn = nd->out[1], *cn = nd->out[2];

    /* Every arena allocation (vt_grad included) happens here, outside the
     * parallel regions: the arena is not thread-safe. */
    float *dG[2], *dh[2], *dc[2], *wt[2] = {NULL, NULL};
    /* W_hh^T for the sweep's dot-product GEMM, where vt_sgemm_small runs
     * its own kernels (else it calls OpenBLAS, which transposes anyway) */
    const int transposed = vt_cpu_avx2() && N <= VT_SGEMM_SMALL_MAX_M;
    for (int d = 0; d < D; d++) {
        dG[d] = vt_arena_alloc(&c->arena, rows * (size_t)G * sizeof(float));
        dh[d] = vt_arena_alloc(&c->arena, nh * sizeof(float));
        dc[d] = vt_arena_alloc(&c->arena, nh * sizeof(float));
        if (transposed)
            wt[d] = vt_arena_alloc(&c->arena, (size_t)G * H * sizeof(float));
    }
    float *hp = vt_arena_alloc(&c->arena, rows * (size_t)H * sizeof(float));
    float *gh0 = grad_or_null(c, h0), *gc0 = grad_or_null(c, c0);
    float **gp = vt_arena_alloc(&c->arena, (size_t)(4 * L * D) * sizeof *gp);
    for (int i = 0; i < 4 * L * D; i++)
        gp[i] = grad_or_null(c, p[i]);
    /* Layers at and below `lowest` hold nothing that wants a gradient
     * (frozen bottom layers): the sweep stops above them. */
    int lowest = -1;
    if (!x->requires_grad && !gh0 && !gc0) {
        lowest = L - 1;
        for (int i = 0; i < 4 * L * D && lowest >= 0; i++)
            if (gp[i] && i / (4 * D) <= lowest)
                lowest = i / (4 * D) - 1;
    }

    /* Gradient of the current layer's output; zeros if only h_n / c_n
     * reached this node. */
    const float *gy = y->grad;
    if (!gy)
        gy = vt_arena_calloc(&c->arena, rows * (size_t)DH * sizeof(float));
    for (int l = L - 1; l > lowest; l--) {
        const int Fl = l ? DH : s->F;
        const float *xin = l ? s->ys[l - 1] : x->data;
        float *gin = l > lowest + 1 ? vt_arena_calloc(&c->arena, rows * (size_t)DH * sizeof(float))
                     : l == 0         ? grad_or_null(c, x)
                                      : NULL;
        const int conc = concurrent_dirs(D, N, T, Fl, H);
#pragma omp parallel for schedule(static) num_threads(D) if (conc)
        for (int d = 0; d < D; d++) {
            const int k = l * D + d;
            const size_t off = (size_t)k * nh;
            dir_sweep(N, T, H, D, d, p[4 * k + 1]->data, c0 ? c0->data + off : NULL,
                      s->acts[k], s->cells[k], gy, hn->grad ? hn->grad + off : NULL,
                      cn->grad ? cn->grad + off : NULL, dG[d], dh[d], dc[d],
                      gh0 ? gh0 + off : NULL, gc0 ? gc0 + off : NULL, wt[d]);
        }
        /* Both directions add into gin: one after the other, in order. */
        for (int d = 0; d < D; d++) {
            const int k = l * D + d;
            dir_reduce(N, T, Fl, H, D, d, xin, p[4 * k]->data,
                       h0 ? h0->data + (size_t)k * nh : NULL, s->ys[l], dG[d], hp, gin,
                       gp[4 * k], gp[4 * k + 1], gp[4 * k + 2], gp[4 * k + 3]);
        }
        gy = gin;
    }
}
const vt_op_def vt_op_lstm = {"lstm", lstm_backward};

static void check_shape(const vt_tensor *t, int ndim, const int *shape,
                        const char *what, int l, int d)
{
    char buf[64], name[64];
    int ok = t && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (l >= 0)
        snprintf(name, sizeof name, "%s_l%d%s", what, l, d ? "_reverse" : "");
    else
        snprintf(name, sizeof name, "%s", what);
    VT_ASSERT(ok, "lstm: %s has shape %s", name,
              t ? vt_shape_str(t, buf, sizeof buf) : "NULL");
}

vt_tensor *vt_lstm(vt_ctx *c, vt_tensor *x, const vt_lstm_args *a,
                   vt_tensor *const *params, vt_tensor *h0, vt_tensor *c0,
                   vt_tensor **h_n, vt_tensor **c_n)
{
    char buf[64];
    VT_ASSERT(x->ndim == 3 && x->shape[0] > 0 && x->shape[1] > 0 &&
                  x->shape[2] == a->input_size,
              "lstm: input %s, want (N, T, %d)", vt_shape_str(x, buf, sizeof buf),
              a->input_size);
    VT_ASSERT(a->hidden > 0 && a->layers > 0, "lstm: hidden %d, layers %d",
              a->hidden, a->layers);
    const int N = x->shape[0], T = x->shape[1], F = x->shape[2];
    const int H = a->hidden, L = a->layers, D = a->bidirectional ? 2 : 1;
    const int G = 4 * H, DH = D * H, n_par = 4 * L * D;
    const size_t rows = (size_t)N * (size_t)T, nh = (size_t)N * (size_t)H;

    for (int l = 0; l < L; l++)
        for (int d = 0; d < D; d++) {
            vt_tensor *const *w = params + 4 * (l * D + d);
            check_shape(w[0], 2, (int[]){G, l ? DH : F}, "weight_ih", l, d);
            check_shape(w[1], 2, (int[]){G, H}, "weight_hh", l, d);
            check_shape(w[2], 1, (int[]){G}, "bias_ih", l, d);
            check_shape(w[3], 1, (int[]){G}, "bias_hh", l, d);
        }
    const int st_shape[3] = {L * D, N, H};
    if (h0)
        check_shape(h0, 3, st_shape, "h0", -1, -1);
    if (c0)
        check_shape(c0, 3, st_shape, "c0", -1, -1);

    const int n_in = 1 + n_par + (h0 != NULL) + (c0 != NULL);
    vt_tensor **in = vt_arena_alloc(&c->arena, (size_t)n_in * sizeof *in);
    in[0] = x;
    for (int i = 0; i < n_par; i++)
        in[1 + i] = params[i];
    int at = 1 + n_par, h0_at = -1, c0_at = -1;
    if (h0)
        in[h0_at = at++] = h0;
    if (c0)
        in[c0_at = at++] = c0;
    const int need = vt_needs_grad(c, n_in, in);

    vt_tensor *y = vt_empty(c, 3, N, T, DH);
    vt_tensor *hn = vt_empty(c, 3, L * D, N, H);
    vt_tensor *cn = vt_empty(c, 3, L * D, N, H);
    float **acts = vt_arena_alloc(&c->arena, (size_t)(L * D) * sizeof *acts);
    float **cells = vt_arena_alloc(&c->arena, (size_t)(L * D) * sizeof *cells);
    float **ys = vt_arena_alloc(&c->arena, (size_t)L * sizeof *ys);
    /* Without a tape the gate and cell buffers are scratch: one pair per
     * direction, reused by every layer. */
    float *scr_a[2] = {NULL, NULL}, *scr_c[2] = {NULL, NULL};
    for (int d = 0; !need && d < D; d++) {
        scr_a[d] = vt_arena_alloc(&c->arena, rows * (size_t)G * sizeof(float));
        scr_c[d] = vt_arena_alloc(&c->arena, rows * (size_t)H * sizeof(float));
    }
    for (int l = 0; l < L; l++) {
        ys[l] = l == L - 1 ? y->data
                           : vt_arena_alloc(&c->arena, rows * (size_t)DH * sizeof(float));
        for (int d = 0; d < D; d++) {
            const int k = l * D + d;
            acts[k] = need ? vt_arena_alloc(&c->arena, rows * (size_t)G * sizeof(float))
                           : scr_a[d];
            cells[k] = need ? vt_arena_alloc(&c->arena, rows * (size_t)H * sizeof(float))
                            : scr_c[d];
        }
        const int conc = concurrent_dirs(D, N, T, l ? DH : F, H);
#pragma omp parallel for schedule(static) num_threads(D) if (conc)
        for (int d = 0; d < D; d++) {
            const int k = l * D + d;
            vt_tensor *const *w = params + 4 * k;
            const size_t off = (size_t)k * nh;
            dir_forward(N, T, l ? DH : F, H, D, d, l ? ys[l - 1] : x->data,
                        w[0]->data, w[1]->data, w[2]->data, w[3]->data,
                        h0 ? h0->data + off : NULL, c0 ? c0->data + off : NULL,
                        acts[k], cells[k], ys[l]);
        }
        for (int d = 0; d < D; d++) {
            const int k = l * D + d;
            const size_t off = (size_t)k * nh;
            const int tl = d ? 0 : T - 1;
            for (int n = 0; n < N; n++) {
                const size_t row = (size_t)n * (size_t)T + (size_t)tl;
                memcpy(hn->data + off + (size_t)n * (size_t)H,
                       ys[l] + row * (size_t)DH + (size_t)d * (size_t)H,
                       (size_t)H * sizeof(float));
                memcpy(cn->data + off + (size_t)n * (size_t)H,
                       cells[k] + row * (size_t)H, (size_t)H * sizeof(float));
            }
        }
    }

    if (need) {
        lstm_saved *s = vt_arena_alloc(&c->arena, sizeof *s);
        *s = (lstm_saved){N, T, F, H, L, D, h0_at, c0_at, acts, cells, ys};
        vt_tensor *out[3] = {y, hn, cn};
        vt_record(c, &vt_op_lstm, n_in, in, 3, out, s);
    }
    if (h_n)
        *h_n = hn;
    if (c_n)
        *c_n = cn;
    return y;
}

/* ==== reference ======================================================== */

void vt_lstm_ref_forward(const vt_tensor *x, const vt_tensor *w_ih,
                         const vt_tensor *w_hh, const vt_tensor *b_ih,
                         const vt_tensor *b_hh, const float *h0,
                         const float *c0, int reverse, float *y, float *hn,
                         float *cn)
{
    const int N = x->shape[0], T = x->shape[1], F = x->shape[2];
    const int H = w_hh->shape[1];
    VT_ASSERT(w_ih->shape[0] == 4 * H && w_ih->shape[1] == F &&
                  w_hh->shape[0] == 4 * H && b_ih->numel == (size_t)(4 * H) &&
                  b_hh->numel == (size_t)(4 * H),
              "lstm_ref: inconsistent shapes");
    float *h = malloc((size_t)H * sizeof(float));
    float *cs = malloc((size_t)H * sizeof(float));
    double *z = malloc((size_t)(4 * H) * sizeof(double));
    VT_ASSERT(h && cs && z, "lstm_ref: out of memory");
    for (int n = 0; n < N; n++) {
        for (int j = 0; j < H; j++) {
            h[j] = h0 ? h0[n * H + j] : 0.0f;
            cs[j] = c0 ? c0[n * H + j] : 0.0f;
        }
        for (int s = 0; s < T; s++) {
            const int t = reverse ? T - 1 - s : s;
            const float *xt = x->data + ((size_t)n * T + t) * F;
            for (int r = 0; r < 4 * H; r++) {
                double acc = (double)b_ih->data[r] + b_hh->data[r];
                for (int k = 0; k < F; k++)
                    acc += (double)w_ih->data[(size_t)r * F + k] * xt[k];
                for (int k = 0; k < H; k++)
                    acc += (double)w_hh->data[(size_t)r * H + k] * h[k];
                z[r] = acc;
            }
            for (int j = 0; j < H; j++) {
                double i = 1.0 / (1.0 + exp(-z[j]));
                double f = 1.0 / (1.0 + exp(-z[H + j]));
                double g = tanh(z[2 * H + j]);
                double o = 1.0 / (1.0 + exp(-z[3 * H + j]));
                double cv = f * cs[j] + i * g;
                cs[j] = (float)cv;
                h[j] = (float)(o * tanh(cv));
                y[((size_t)n * T + t) * H + j] = h[j];
            }
        }
        for (int j = 0; j < H; j++) {
            if (hn)
                hn[n * H + j] = h[j];
            if (cn)
                cn[n * H + j] = cs[j];
        }
    }
    free(h);
    free(cs);
    free(z);
}
