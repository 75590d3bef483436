/* op_elementwise.c - relu, sigmoid, tanh, dropout, add, mul.
 *
 * Shapes: any; add/mul take two tensors of the same shape.
 * Saved for backward: relu a bit mask of y > 0 (n/32 words in the arena),
 * so neither x nor y need outlive the forward pass (a C3D relu output
 * feeding a max pool, 205 MB, goes as soon as the pool has read it);
 * sigmoid/tanh reuse their own output (out->data); dropout recomputes its
 * mask from (seed, stream, base); mul keeps pointers to both inputs.
 */
#include "vt_ops.h"
#include "avx2_lanes.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define PAR_FOR _Pragma("omp parallel for schedule(static) if (n > 32768)")

/* ==== relu ============================================================= */

#define RELU_ON(mask, i) ((mask)[(i) >> 5] >> ((i) & 31) & 1u)

/* AVX2 forms of the loops below, a mask word (32 elements) at a time over
 * whole words [w0, w1): y = x > 0 ? x : 0 and the word's bits from the
 * same compare, in one pass; backward, the word's bits as lane masks. The
 * same operations per element as the scalar loops, so the same bits. */

VT_AVX2 static void relu_words(const float *x, float *y, uint32_t *mask, size_t w0,
                               size_t w1)
{
    const __m256 zero = _mm256_setzero_ps();
    for (size_t w = w0; w < w1; w++) {
        uint32_t bits = 0;
        for (int q = 0; q < 4; q++) {
            const size_t i = 32 * w + 8 * (size_t)q;
            __m256 v = _mm256_loadu_ps(x + i), on = _mm256_cmp_ps(v, zero, _CMP_GT_OQ);
            _mm256_storeu_ps(y + i, _mm256_and_ps(v, on));
            bits |= (uint32_t)_mm256_movemask_ps(on) << (8 * q);
        }
        if (mask)
            mask[w] = bits;
    }
}

/* gx = 0 + (on ? gy : 0) when first (gx may be gy), else gx += that. */
VT_AVX2 static void relu_back_words(const uint32_t *mask, const float *gy, float *gx,
                                    int first, size_t w0, size_t w1)
{
    const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256 zero = _mm256_setzero_ps();
    for (size_t w = w0; w < w1; w++)
        for (int q = 0; q < 4; q++) {
            const size_t i = 32 * w + 8 * (size_t)q;
            __m256i b = _mm256_and_si256(_mm256_set1_epi32((int)(mask[w] >> (8 * q) & 0xffu)),
                                         lane);
            __m256 g = _mm256_and_ps(_mm256_loadu_ps(gy + i),
                                     _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, lane)));
            _mm256_storeu_ps(gx + i, _mm256_add_ps(first ? zero : _mm256_loadu_ps(gx + i), g));
        }
}

/* Over chunks of 64 words, so each thread writes whole words; n is the
 * element count in scope. */
#define RELU_WORDS_FOR _Pragma("omp parallel for schedule(static) if (n > 32768)")

/* gx = 0 + (on ? gy : 0) when first (gx may be gy), else gx += (on ? gy : 0):
 * whole mask words vectorised where the CPU can, the rest scalar. */
static void relu_back(const uint32_t *mask, const float *gy, float *gx, size_t n, int first)
{
    size_t i0 = 0;
    if (vt_cpu_avx2()) {
        const size_t nw = n / 32;
        RELU_WORDS_FOR
        for (size_t w = 0; w < nw; w += 64)
            relu_back_words(mask, gy, gx, first, w, w + 64 < nw ? w + 64 : nw);
        i0 = 32 * nw;
    }
    PAR_FOR
    for (size_t i = i0; i < n; i++)
        gx[i] = first ? (RELU_ON(mask, i) ? 0.0f + gy[i] : 0.0f)
                      : gx[i] + (RELU_ON(mask, i) ? gy[i] : 0.0f);
}

static void relu_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *x = nd->in[0], *y = nd->out[0];
    if (!x->requires_grad)
        return;
    const uint32_t *mask = nd->saved;
    size_t n = y->numel;
    if (y->released && !x->grad) {
        /* Nothing reads gy after this node and gx would be its first
         * writer: mask gy in place and hand the buffer to x, so backward
         * holds one buffer here, not two. 0 + g as in the += path (-0
         * becomes +0), so the bits are the same. */
        float *g = y->grad;
        y->grad = NULL;
        x->grad = g;
        relu_back(mask, g, g, n, 1);
        return;
    }
    relu_back(mask, y->grad, vt_grad(c, x), n, 0);
}
const vt_op_def vt_op_relu = {"relu", relu_backward};

static vt_tensor *relu_into(vt_ctx *c, vt_tensor *x, vt_tensor *y)
{
    const float *xv = x->data;
    float *yv = y->data;
    size_t n = x->numel;
    /* Word w holds elements 32w..32w+31: one thread writes each word. */
    const size_t nw = (n + 31) / 32;
    uint32_t *mask = vt_needs_grad(c, 1, &x) ? vt_arena_alloc(&c->arena, nw * sizeof *mask)
                                             : NULL;
    size_t whole = 0;
    if (vt_cpu_avx2()) {
        whole = n / 32;
        RELU_WORDS_FOR
        for (size_t w = 0; w < whole; w += 64)
            relu_words(xv, yv, mask, w, w + 64 < whole ? w + 64 : whole);
    }
    PAR_FOR
    for (size_t i = 32 * whole; i < n; i++)
        yv[i] = xv[i] > 0.0f ? xv[i] : 0.0f;
    if (mask) {
        PAR_FOR
        for (size_t w = whole; w < nw; w++) {
            uint32_t bits = 0;
            size_t end = 32 * w + 32 < n ? 32 * w + 32 : n;
            for (size_t i = 32 * w; i < end; i++)
                bits |= (uint32_t)(yv[i] > 0.0f) << (i - 32 * w);
            mask[w] = bits;
        }
        vt_node_no_data(c, vt_record(c, &vt_op_relu, 1, &x, 1, &y, mask),
                        VT_BWD_NO_IN_DATA | VT_BWD_NO_OUT_DATA);
    }
    return y;
}

vt_tensor *vt_relu(vt_ctx *c, vt_tensor *x)
{
    return relu_into(c, x, vt_tensor_like(c, x));
}

vt_tensor *vt_relu_inplace(vt_ctx *c, vt_tensor *x)
{
    /* In place only over a whole pool buffer that no recorded backward
     * reads (backward itself needs only the mask). */
    if (c->keep_all || x->released || vt_arena_pool_base(&c->arena, x->data) != x->data ||
        vt_arena_pool_pins(&c->arena, x->data) != 0) {
        vt_tensor *y = vt_relu(c, x);
        vt_release(c, x);
        return y;
    }
    vt_tensor *y = vt_tensor_wrap(c, x->data, x->ndim, x->shape);
    /* The buffer is y's now; x keeps only its gradient, which goes back
     * after x's producer has run backward. */
    x->released = 1;
    return relu_into(c, x, y);
}

/* ==== sigmoid ========================================================== */

static void sigmoid_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *x = nd->in[0], *y = nd->out[0];
    if (!x->requires_grad)
        return;
    float *gx = vt_grad(c, x);
    const float *gy = y->grad, *yv = y->data;
    size_t n = y->numel;
    PAR_FOR
    for (size_t i = 0; i < n; i++)
        gx[i] += gy[i] * yv[i] * (1.0f - yv[i]);
}
const vt_op_def vt_op_sigmoid = {"sigmoid", sigmoid_backward};

vt_tensor *vt_sigmoid(vt_ctx *c, vt_tensor *x)
{
    vt_tensor *y = vt_tensor_like(c, x);
    const float *xv = x->data;
    float *yv = y->data;
    size_t n = x->numel;
    PAR_FOR
    for (size_t i = 0; i < n; i++)
        yv[i] = 1.0f / (1.0f + expf(-xv[i]));
    if (vt_needs_grad(c, 1, &x))
        vt_record(c, &vt_op_sigmoid, 1, &x, 1, &y, NULL);
    return y;
}

/* ==== tanh ============================================================= */

static void tanh_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *x = nd->in[0], *y = nd->out[0];
    if (!x->requires_grad)
        return;
    float *gx = vt_grad(c, x);
    const float *gy = y->grad, *yv = y->data;
    size_t n = y->numel;
    PAR_FOR
    for (size_t i = 0; i < n; i++)
        gx[i] += gy[i] * (1.0f - yv[i] * yv[i]);
}
const vt_op_def vt_op_tanh = {"tanh", tanh_backward};

vt_tensor *vt_tanh(vt_ctx *c, vt_tensor *x)
{
    vt_tensor *y = vt_tensor_like(c, x);
    const float *xv = x->data;
    float *yv = y->data;
    size_t n = x->numel;
    PAR_FOR
    for (size_t i = 0; i < n; i++)
        yv[i] = tanhf(xv[i]);
    if (vt_needs_grad(c, 1, &x))
        vt_record(c, &vt_op_tanh, 1, &x, 1, &y, NULL);
    return y;
}

/* ==== dropout ========================================================== */

typedef struct {
    uint64_t seed, stream, base;
    float p, scale;
} dropout_saved;

static inline float keep_scale(uint64_t seed, uint64_t stream, size_t i,
                               float p, float scale)
{
    return vt_hash_uniform(seed, stream, i) >= p ? scale : 0.0f;
}

static void dropout_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *x = nd->in[0], *y = nd->out[0];
    const dropout_saved *s = nd->saved;
    if (!x->requires_grad)
        return;
    float *gx = vt_grad(c, x);
    const float *gy = y->grad;
    size_t n = y->numel;
    PAR_FOR
    for (size_t i = 0; i < n; i++)
        gx[i] += gy[i] * keep_scale(s->seed, s->stream, s->base + i, s->p, s->scale);
}
const vt_op_def vt_op_dropout = {"dropout", dropout_backward};

vt_tensor *vt_dropout(vt_ctx *c, vt_tensor *x, float p)
{
    VT_ASSERT(p >= 0.0f && p < 1.0f, "dropout probability %g not in [0, 1)", p);
    if (!c->training || p == 0.0f)
        return x;
    uint64_t stream = vt_rng_next_stream(&c->rng);
    float scale = 1.0f / (1.0f - p);
    vt_tensor *y = vt_tensor_like(c, x);
    const float *xv = x->data;
    float *yv = y->data;
    size_t n = x->numel;
    uint64_t seed = c->rng.seed;
    /* Data-parallel share of a batch (dim 0): the mask elements its samples
     * would get in the whole batch, so N processes drop what one would. */
    uint64_t base = x->shape[0] ? (uint64_t)c->shard_offset * (n / (size_t)x->shape[0]) : 0;
    PAR_FOR
    for (size_t i = 0; i < n; i++)
        yv[i] = xv[i] * keep_scale(seed, stream, base + i, p, scale);
    if (vt_needs_grad(c, 1, &x)) {
        dropout_saved *s = vt_arena_alloc(&c->arena, sizeof *s);
        *s = (dropout_saved){seed, stream, base, p, scale};
        vt_node_no_data(c, vt_record(c, &vt_op_dropout, 1, &x, 1, &y, s),
                        VT_BWD_NO_IN_DATA | VT_BWD_NO_OUT_DATA);
    }
    return y;
}

/* ==== add, mul ========================================================= */

static void add_backward(vt_ctx *c, vt_node *nd)
{
    const float *gy = nd->out[0]->grad;
    size_t n = nd->out[0]->numel;
    for (int k = 0; k < 2; k++) {
        if (!nd->in[k]->requires_grad)
            continue;
        float *g = vt_grad(c, nd->in[k]);
        PAR_FOR
        for (size_t i = 0; i < n; i++)
            g[i] += gy[i];
    }
}
const vt_op_def vt_op_add = {"add", add_backward};

vt_tensor *vt_add(vt_ctx *c, vt_tensor *a, vt_tensor *b)
{
    char sa[64], sb[64];
    VT_ASSERT(vt_same_shape(a, b), "add: shapes %s and %s differ",
              vt_shape_str(a, sa, sizeof sa), vt_shape_str(b, sb, sizeof sb));
    vt_tensor *y = vt_tensor_like(c, a);
    const float *av = a->data, *bv = b->data;
    float *yv = y->data;
    size_t n = a->numel;
    PAR_FOR
    for (size_t i = 0; i < n; i++)
        yv[i] = av[i] + bv[i];
    vt_tensor *in[2] = {a, b};
    if (vt_needs_grad(c, 2, in))
        vt_node_no_data(c, vt_record(c, &vt_op_add, 2, in, 1, &y, NULL),
                        VT_BWD_NO_IN_DATA | VT_BWD_NO_OUT_DATA);
    return y;
}

static void mul_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *a = nd->in[0], *b = nd->in[1];
    const float *gy = nd->out[0]->grad;
    size_t n = nd->out[0]->numel;
    if (a->requires_grad) {
        float *g = vt_grad(c, a);
        const float *bv = b->data;
        PAR_FOR
        for (size_t i = 0; i < n; i++)
            g[i] += gy[i] * bv[i];
    }
    if (b->requires_grad) {
        float *g = vt_grad(c, b);
        const float *av = a->data;
        PAR_FOR
        for (size_t i = 0; i < n; i++)
            g[i] += gy[i] * av[i];
    }
}
const vt_op_def vt_op_mul = {"mul", mul_backward};

vt_tensor *vt_mul(vt_ctx *c, vt_tensor *a, vt_tensor *b)
{
    char sa[64], sb[64];
    VT_ASSERT(vt_same_shape(a, b), "mul: shapes %s and %s differ",
              vt_shape_str(a, sa, sizeof sa), vt_shape_str(b, sb, sizeof sb));
    vt_tensor *y = vt_tensor_like(c, a);
    const float *av = a->data, *bv = b->data;
    float *yv = y->data;
    size_t n = a->numel;
    PAR_FOR
    for (size_t i = 0; i < n; i++)
        yv[i] = av[i] * bv[i];
    vt_tensor *in[2] = {a, b};
    if (vt_needs_grad(c, 2, in))
        vt_record(c, &vt_op_mul, 2, in, 1, &y, NULL);
    return y;
}
