/* op_pool.c - max, average and adaptive average pooling over (T, H, W).
 *
 * Shapes: x (N, C, T, H, W) -> y (N, C, To, Ho, Wo); maxpool2d_frames is
 * maxpool3d with a 1-frame window in time (kt = 1, stride 1, no padding)
 * and records the same "maxpool3d" node.
 * Saved for backward: max pooling keeps, per output element, the int32
 * offset of its maximum inside the input's (T, H, W) plane (arena); the
 * average pools save nothing (the windows are recomputed from the shapes).
 *
 * Every loop runs over (n, c) planes: an output and its whole window live in
 * one plane, so the backward scatter of each thread stays inside planes no
 * other thread touches (race-free, no atomics) and sums keep a fixed order.
 */
#include "vt_ops.h"
#include "avx2_lanes.h"

#include <immintrin.h>
#include <math.h>

/* Below this many input elements a parallel region costs more than the
 * pooling it shares out. */
#define PAR_WORTH(x) ((x)->numel > 32768)

/* Window extents resolved once per call. */
typedef struct {
    int k[3], s[3], p[3];
    int in[3], out[3];
    int ceil_mode;
} pool_geom;

static int floor_div(int a, int b)
{
    int q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

int vt_pool_out_size(int in, int k, int stride, int pad, int ceil_mode)
{
    if (stride <= 0)
        stride = k;
    int out = floor_div(in + 2 * pad - k + (ceil_mode ? stride - 1 : 0), stride) + 1;
    /* PyTorch's rule: with ceil_mode the last window must start inside the
     * input or the left padding, never wholly in the right padding. */
    if (ceil_mode && (out - 1) * stride >= in + pad)
        out--;
    return out;
}

static pool_geom make_geom(const vt_tensor *x, const int *k, const int *s,
                           const int *p, int ceil_mode, const char *who)
{
    char sb[64];
    VT_ASSERT(x->ndim == 5, "%s: input %s is not (N, C, T, H, W)", who,
              vt_shape_str(x, sb, sizeof sb));
    pool_geom g;
    g.ceil_mode = ceil_mode;
    for (int d = 0; d < 3; d++) {
        g.k[d] = k[d];
        g.s[d] = s[d] > 0 ? s[d] : k[d];
        g.p[d] = p[d];
        g.in[d] = x->shape[2 + d];
        VT_ASSERT(k[d] >= 1 && p[d] >= 0 && 2 * p[d] <= k[d],
                  "%s: dim %d kernel %d / padding %d (need pad <= kernel/2)",
                  who, d, k[d], p[d]);
        g.out[d] = vt_pool_out_size(g.in[d], g.k[d], g.s[d], g.p[d], ceil_mode);
        VT_ASSERT(g.out[d] >= 1, "%s: input %s too small for kernel %d in dim %d",
                  who, vt_shape_str(x, sb, sizeof sb), k[d], d);
    }
    return g;
}

static vt_tensor *pool_output(vt_ctx *c, const vt_tensor *x, const pool_geom *g)
{
    return vt_empty(c, 5, x->shape[0], x->shape[1], g->out[0], g->out[1], g->out[2]);
}

/* Window of output o along dim d clipped to the input: [*lo, *hi). */
static inline void window(const pool_geom *g, int d, int o, int *lo, int *hi)
{
    int a = o * g->s[d] - g->p[d];
    int b = a + g->k[d];
    *lo = a < 0 ? 0 : a;
    *hi = b > g->in[d] ? g->in[d] : b;
}

/* ==== max pooling ====================================================== */

typedef struct {
    int32_t *argmax; /* (N, C, To, Ho, Wo) offsets within the input plane */
} maxpool_saved;

static void maxpool_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *x = nd->in[0], *y = nd->out[0];
    const maxpool_saved *s = nd->saved;
    if (!x->requires_grad)
        return;
    float *gx = vt_grad(c, x);
    const float *gy = y->grad;
    long planes = (long)x->shape[0] * x->shape[1];
    size_t in_plane = (size_t)x->shape[2] * x->shape[3] * x->shape[4];
    size_t out_plane = (size_t)y->shape[2] * y->shape[3] * y->shape[4];
#pragma omp parallel for schedule(static) if (PAR_WORTH(x))
    for (long pl = 0; pl < planes; pl++) {
        float *gxp = gx + (size_t)pl * in_plane;
        const float *gyp = gy + (size_t)pl * out_plane;
        const int32_t *ap = s->argmax + (size_t)pl * out_plane;
        for (size_t o = 0; o < out_plane; o++)
            gxp[ap[o]] += gyp[o];
    }
}
const vt_op_def vt_op_maxpool3d = {"maxpool3d", maxpool_backward};

/* Outputs [ow0, ow1) of one output row whose time and height windows are
 * [t0, t1) x [h0, h1): the maximum, and its offset in the plane. */
static void maxpool_span(const pool_geom *g, const float *xp, int t0, int t1, int h0,
                         int h1, int ow0, int ow1, float *yp, int32_t *ap)
{
    const int H = g->in[1], W = g->in[2];
    for (int ow = ow0; ow < ow1; ow++) {
        int w0, w1;
        window(g, 2, ow, &w0, &w1);
        /* Padding is -inf; the first valid element stands in when the
         * whole window is -inf, as in PyTorch. */
        int best = (t0 * H + h0) * W + w0;
        float m = -INFINITY;
        for (int t = t0; t < t1; t++)
            for (int h = h0; h < h1; h++) {
                int row = (t * H + h) * W;
                for (int w = w0; w < w1; w++) {
                    float v = xp[row + w];
                    /* Strict '>' keeps the first maximum; NaN propagates
                     * (PyTorch's exact test). */
                    if (v > m || isnan(v)) {
                        m = v;
                        best = row + w;
                    }
                }
            }
        yp[ow] = m;
        if (ap)
            ap[ow] = best;
    }
}

/* The same for 8 outputs at a time, every w window whole (no padding):
 * the same visiting order and the same test per lane, so the same maxima
 * and offsets bit for bit. Returns where it stopped. */
__attribute__((target("avx2,fma"))) static int
maxpool_span8(const pool_geom *g, const float *xp, int t0, int t1, int h0, int h1,
              int ow0, int ow1, float *yp, int32_t *ap)
{
    const int H = g->in[1], W = g->in[2], sw = g->s[2], kw = g->k[2];
    const __m256i lane = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32(sw));
    int ow = ow0;
    for (; ow + 8 <= ow1; ow += 8) {
        const __m256i wv = _mm256_add_epi32(lane, _mm256_set1_epi32(ow * sw - g->p[2]));
        __m256 m = _mm256_set1_ps(-INFINITY);
        __m256i best = _mm256_add_epi32(wv, _mm256_set1_epi32((t0 * H + h0) * W));
#define TAKE(v, idx)                                                                  \
    do {                                                                              \
        __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ),                   \
                                   _mm256_cmp_ps(v, v, _CMP_UNORD_Q));                \
        m = _mm256_blendv_ps(m, v, take);                                             \
        best = _mm256_castps_si256(                                                   \
            _mm256_blendv_ps(_mm256_castsi256_ps(best), _mm256_castsi256_ps(idx), take)); \
    } while (0)
        if (sw == 2 && kw == 2) {
            /* C3D's pools: the even and odd columns of 16 floats, by
             * shuffles rather than gathers */
            for (int t = t0; t < t1; t++)
                for (int h = h0; h < h1; h++) {
                    const int row = (t * H + h) * W;
                    const float *r = xp + row + ow * 2 - g->p[2];
                    __m256 a = _mm256_loadu_ps(r), b = _mm256_loadu_ps(r + 8);
                    __m256 ev = avx2_even(a, b), od = avx2_odd(a, b);
                    __m256i idx = _mm256_add_epi32(wv, _mm256_set1_epi32(row));
                    TAKE(ev, idx);
                    TAKE(od, _mm256_add_epi32(idx, _mm256_set1_epi32(1)));
                }
            goto store;
        }
        for (int t = t0; t < t1; t++)
            for (int h = h0; h < h1; h++)
                for (int l = 0; l < kw; l++) {
                    __m256i idx = _mm256_add_epi32(wv, _mm256_set1_epi32((t * H + h) * W + l));
                    const float *r = xp + (t * H + h) * W + ow * sw - g->p[2] + l;
                    __m256 v;
                    if (sw == 1)
                        v = _mm256_loadu_ps(r);
                    else if (sw == 2 && ow + 9 <= ow1)
                        /* the even floats of r[0..15]; r[15] lies in the
                         * window of output ow + 8, still inside the row */
                        v = avx2_even(_mm256_loadu_ps(r), _mm256_loadu_ps(r + 8));
                    else
                        v = _mm256_i32gather_ps(xp, idx, 4);
                    TAKE(v, idx);
                }
#undef TAKE
    store:
        _mm256_storeu_ps(yp + ow, m);
        if (ap)
            _mm256_storeu_si256((__m256i *)(ap + ow), best);
    }
    return ow;
}

static vt_tensor *maxpool_run(vt_ctx *c, vt_tensor *x, const pool_geom *g)
{
    vt_tensor *y = pool_output(c, x, g);
    int32_t *argmax = NULL;
    if (vt_needs_grad(c, 1, &x))
        argmax = vt_arena_alloc(&c->arena, y->numel * sizeof *argmax);
    long planes = (long)x->shape[0] * x->shape[1];
    size_t in_plane = (size_t)g->in[0] * g->in[1] * g->in[2];
    size_t out_plane = (size_t)g->out[0] * g->out[1] * g->out[2];
    /* outputs whose w window lies wholly inside the input: [wa, wb) */
    const int sw = g->s[2], kw = g->k[2], pw = g->p[2], W = g->in[2];
    int wa = (pw + sw - 1) / sw, wb = W - kw + pw >= 0 ? (W - kw + pw) / sw + 1 : 0;
    if (wb > g->out[2])
        wb = g->out[2];
    if (wb < wa)
        wb = wa = 0;
    const int vec = vt_cpu_avx2() && in_plane < ((size_t)1 << 31);
#pragma omp parallel for schedule(static) if (PAR_WORTH(x))
    for (long pl = 0; pl < planes; pl++) {
        const float *xp = x->data + (size_t)pl * in_plane;
        float *yp = y->data + (size_t)pl * out_plane;
        int32_t *ap = argmax ? argmax + (size_t)pl * out_plane : NULL;
        for (int ot = 0; ot < g->out[0]; ot++) {
            int t0, t1;
            window(g, 0, ot, &t0, &t1);
            for (int oh = 0; oh < g->out[1]; oh++) {
                int h0, h1;
                window(g, 1, oh, &h0, &h1);
                size_t o = ((size_t)ot * g->out[1] + oh) * g->out[2];
                float *yr = yp + o;
                int32_t *ar = ap ? ap + o : NULL;
                int done = wa;
                maxpool_span(g, xp, t0, t1, h0, h1, 0, wa, yr, ar);
                if (vec)
                    done = maxpool_span8(g, xp, t0, t1, h0, h1, wa, wb, yr, ar);
                maxpool_span(g, xp, t0, t1, h0, h1, done, g->out[2], yr, ar);
            }
        }
    }
    if (argmax) {
        maxpool_saved *s = vt_arena_alloc(&c->arena, sizeof *s);
        s->argmax = argmax;
        vt_node_no_data(c, vt_record(c, &vt_op_maxpool3d, 1, &x, 1, &y, s),
                        VT_BWD_NO_IN_DATA | VT_BWD_NO_OUT_DATA);
    }
    return y;
}

vt_tensor *vt_maxpool3d(vt_ctx *c, vt_tensor *x, const vt_pool3d_args *a)
{
    pool_geom g = make_geom(x, a->kernel, a->stride, a->pad, a->ceil_mode, "maxpool3d");
    return maxpool_run(c, x, &g);
}

vt_tensor *vt_maxpool2d_frames(vt_ctx *c, vt_tensor *x, const vt_pool2d_args *a)
{
    int k[3] = {1, a->kernel[0], a->kernel[1]};
    int s[3] = {1, a->stride[0], a->stride[1]};
    int p[3] = {0, a->pad[0], a->pad[1]};
    pool_geom g = make_geom(x, k, s, p, a->ceil_mode, "maxpool2d_frames");
    return maxpool_run(c, x, &g);
}

/* ==== average pooling (count_include_pad = True) ====================== */

/* PyTorch's divisor: the window clipped to input + padding (so a ceil_mode
 * window running past the right padding counts fewer elements), but not
 * clipped to the input itself. */
static inline int avg_divisor(const pool_geom *g, int ot, int oh, int ow)
{
    int o[3] = {ot, oh, ow}, n = 1;
    for (int d = 0; d < 3; d++) {
        int a = o[d] * g->s[d] - g->p[d];
        int b = a + g->k[d];
        int lim = g->in[d] + g->p[d];
        n *= (b > lim ? lim : b) - a;
    }
    return n;
}

typedef struct {
    pool_geom g;
} avgpool_saved;

static void avgpool_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *x = nd->in[0], *y = nd->out[0];
    const pool_geom *g = &((const avgpool_saved *)nd->saved)->g;
    if (!x->requires_grad)
        return;
    float *gx = vt_grad(c, x);
    const float *gy = y->grad;
    long planes = (long)x->shape[0] * x->shape[1];
    int H = g->in[1], W = g->in[2];
    size_t in_plane = (size_t)g->in[0] * H * W;
    size_t out_plane = (size_t)g->out[0] * g->out[1] * g->out[2];
#pragma omp parallel for schedule(static) if (PAR_WORTH(x))
    for (long pl = 0; pl < planes; pl++) {
        float *gxp = gx + (size_t)pl * in_plane;
        const float *gyp = gy + (size_t)pl * out_plane;
        size_t o = 0;
        for (int ot = 0; ot < g->out[0]; ot++) {
            int t0, t1;
            window(g, 0, ot, &t0, &t1);
            for (int oh = 0; oh < g->out[1]; oh++) {
                int h0, h1;
                window(g, 1, oh, &h0, &h1);
                for (int ow = 0; ow < g->out[2]; ow++, o++) {
                    int w0, w1;
                    window(g, 2, ow, &w0, &w1);
                    float v = gyp[o] / (float)avg_divisor(g, ot, oh, ow);
                    for (int t = t0; t < t1; t++)
                        for (int h = h0; h < h1; h++) {
                            float *row = gxp + (size_t)(t * H + h) * W;
                            for (int w = w0; w < w1; w++)
                                row[w] += v;
                        }
                }
            }
        }
    }
}
const vt_op_def vt_op_avgpool3d = {"avgpool3d", avgpool_backward};

vt_tensor *vt_avgpool3d(vt_ctx *c, vt_tensor *x, const vt_pool3d_args *a)
{
    pool_geom g = make_geom(x, a->kernel, a->stride, a->pad, a->ceil_mode, "avgpool3d");
    vt_tensor *y = pool_output(c, x, &g);
    long planes = (long)x->shape[0] * x->shape[1];
    int H = g.in[1], W = g.in[2];
    size_t in_plane = (size_t)g.in[0] * H * W;
    size_t out_plane = (size_t)g.out[0] * g.out[1] * g.out[2];
#pragma omp parallel for schedule(static) if (PAR_WORTH(x))
    for (long pl = 0; pl < planes; pl++) {
        const float *xp = x->data + (size_t)pl * in_plane;
        float *yp = y->data + (size_t)pl * out_plane;
        size_t o = 0;
        for (int ot = 0; ot < g.out[0]; ot++) {
            int t0, t1;
            window(&g, 0, ot, &t0, &t1);
            for (int oh = 0; oh < g.out[1]; oh++) {
                int h0, h1;
                window(&g, 1, oh, &h0, &h1);
                for (int ow = 0; ow < g.out[2]; ow++, o++) {
                    int w0, w1;
                    window(&g, 2, ow, &w0, &w1);
                    double s = 0;
                    for (int t = t0; t < t1; t++)
                        for (int h = h0; h < h1; h++) {
                            const float *row = xp + (size_t)(t * H + h) * W;
                            for (int w = w0; w < w1; w++)
                                s += row[w];
                        }
                    yp[o] = (float)(s / avg_divisor(&g, ot, oh, ow));
                }
            }
        }
    }
    if (vt_needs_grad(c, 1, &x)) {
        avgpool_saved *s = vt_arena_alloc(&c->arena, sizeof *s);
        s->g = g;
        vt_record(c, &vt_op_avgpool3d, 1, &x, 1, &y, s);
    }
    return y;
}

/* ==== adaptive average pooling ======================================== */

/* PyTorch's bins: [floor(i * in / out), ceil((i + 1) * in / out)); they
 * overlap when out does not divide in. */
static inline int bin_start(int i, int in, int out) { return (int)(((long)i * in) / out); }
static inline int bin_end(int i, int in, int out)
{
    return (int)(((long)(i + 1) * in + out - 1) / out);
}

static void adaptive_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *x = nd->in[0], *y = nd->out[0];
    if (!x->requires_grad)
        return;
    float *gx = vt_grad(c, x);
    const float *gy = y->grad;
    long planes = (long)x->shape[0] * x->shape[1];
    int T = x->shape[2], H = x->shape[3], W = x->shape[4];
    int OT = y->shape[2], OH = y->shape[3], OW = y->shape[4];
    size_t in_plane = (size_t)T * H * W, out_plane = (size_t)OT * OH * OW;
#pragma omp parallel for schedule(static) if (PAR_WORTH(x))
    for (long pl = 0; pl < planes; pl++) {
        float *gxp = gx + (size_t)pl * in_plane;
        const float *gyp = gy + (size_t)pl * out_plane;
        size_t o = 0;
        for (int ot = 0; ot < OT; ot++) {
            int t0 = bin_start(ot, T, OT), t1 = bin_end(ot, T, OT);
            for (int oh = 0; oh < OH; oh++) {
                int h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH);
                for (int ow = 0; ow < OW; ow++, o++) {
                    int w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
                    float v = gyp[o] / (float)((t1 - t0) * (h1 - h0) * (w1 - w0));
                    for (int t = t0; t < t1; t++)
                        for (int h = h0; h < h1; h++) {
                            float *row = gxp + (size_t)(t * H + h) * W;
                            for (int w = w0; w < w1; w++)
                                row[w] += v;
                        }
                }
            }
        }
    }
}
const vt_op_def vt_op_adaptive_avgpool3d = {"adaptive_avgpool3d", adaptive_backward};

vt_tensor *vt_adaptive_avgpool3d(vt_ctx *c, vt_tensor *x, int ot_, int oh_, int ow_)
{
    char sb[64];
    VT_ASSERT(x->ndim == 5, "adaptive_avgpool3d: input %s is not (N, C, T, H, W)",
              vt_shape_str(x, sb, sizeof sb));
    VT_ASSERT(ot_ >= 1 && oh_ >= 1 && ow_ >= 1,
              "adaptive_avgpool3d: output size (%d, %d, %d)", ot_, oh_, ow_);
    int T = x->shape[2], H = x->shape[3], W = x->shape[4];
    int OT = ot_, OH = oh_, OW = ow_;
    vt_tensor *y = vt_empty(c, 5, x->shape[0], x->shape[1], OT, OH, OW);
    long planes = (long)x->shape[0] * x->shape[1];
    size_t in_plane = (size_t)T * H * W, out_plane = (size_t)OT * OH * OW;
#pragma omp parallel for schedule(static) if (PAR_WORTH(x))
    for (long pl = 0; pl < planes; pl++) {
        const float *xp = x->data + (size_t)pl * in_plane;
        float *yp = y->data + (size_t)pl * out_plane;
        size_t o = 0;
        for (int ot = 0; ot < OT; ot++) {
            int t0 = bin_start(ot, T, OT), t1 = bin_end(ot, T, OT);
            for (int oh = 0; oh < OH; oh++) {
                int h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH);
                for (int ow = 0; ow < OW; ow++, o++) {
                    int w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
                    double s = 0;
                    for (int t = t0; t < t1; t++)
                        for (int h = h0; h < h1; h++) {
                            const float *row = xp + (size_t)(t * H + h) * W;
                            for (int w = w0; w < w1; w++)
                                s += row[w];
                        }
                    yp[o] = (float)(s / ((t1 - t0) * (h1 - h0) * (w1 - w0)));
                }
            }
        }
    }
    if (vt_needs_grad(c, 1, &x))
        vt_record(c, &vt_op_adaptive_avgpool3d, 1, &x, 1, &y, NULL);
    return y;
}
