/* op_elementwise.c - relu, sigmoid, tanh, dropout, add, mul.
 *
 * Shapes: any; add/mul take two tensors of the same shape.
 * Saved for backward: relu/sigmoid/tanh reuse their own output (out->data),
 * so nothing extra; dropout recomputes its mask from (seed, stream, base);
 * mul keeps pointers to both inputs.
 */
#include "vt_ops.h"

#include <math.h>
#include <string.h>

#define PAR_FOR _Pragma("omp parallel for schedule(static) if (n > 32768)")

/* ==== relu ============================================================= */

static void relu_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *x = nd->in[0], *y = nd->out[0];
    if (!x->requires_grad)
        return;
    float *gx = vt_grad(c, x);
    const float *gy = y->grad, *yv = y->data;
    size_t n = y->numel;
    PAR_FOR
    for (size_t i = 0; i < n; i++)
        gx[i] += yv[i] > 0.0f ? gy[i] : 0.0f;
}
const vt_op_def vt_op_relu = {"relu", relu_backward};

vt_tensor *vt_relu(vt_ctx *c, vt_tensor *x)
{
    vt_tensor *y = vt_tensor_like(c, x);
    const float *xv = x->data;
    float *yv = y->data;
    size_t n = x->numel;
    PAR_FOR
    for (size_t i = 0; i < n; i++)
        yv[i] = xv[i] > 0.0f ? xv[i] : 0.0f;
    if (vt_needs_grad(c, 1, &x))
        vt_record(c, &vt_op_relu, 1, &x, 1, &y, NULL);
    return y;
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
        vt_record(c, &vt_op_dropout, 1, &x, 1, &y, s);
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
        vt_record(c, &vt_op_add, 2, in, 1, &y, NULL);
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
