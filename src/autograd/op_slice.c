/* op_slice.c - narrow: x.narrow(axis, start, length).contiguous().
 * Any shape; the output keeps the axis with extent `length`. Saves nothing
 * but the arguments: backward adds the gradient into the same window. */
#include <string.h>

#include "vt_ops.h"

typedef struct {
    int axis, start;
} narrow_saved;

/* The tensor as (outer, extent, inner) around axis. */
static void split_dims(const vt_tensor *x, int axis, size_t *outer, size_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < axis; d++)
        *outer *= (size_t)x->shape[d];
    for (int d = axis + 1; d < x->ndim; d++)
        *inner *= (size_t)x->shape[d];
}

static void narrow_backward(vt_ctx *c, vt_node *n)
{
    vt_tensor *x = n->in[0], *y = n->out[0];
    if (!x->requires_grad)
        return;
    const narrow_saved *s = n->saved;
    size_t outer, inner;
    split_dims(x, s->axis, &outer, &inner);
    size_t len = (size_t)y->shape[s->axis], ext = (size_t)x->shape[s->axis];
    float *gx = vt_grad(c, x);
    const float *gy = y->grad;
    for (size_t o = 0; o < outer; o++) {
        float *dst = gx + (o * ext + (size_t)s->start) * inner;
        const float *src = gy + o * len * inner;
        for (size_t i = 0; i < len * inner; i++)
            dst[i] += src[i];
    }
}
const vt_op_def vt_op_narrow = {"narrow", narrow_backward};

vt_tensor *vt_narrow(vt_ctx *c, vt_tensor *x, int axis, int start, int length)
{
    VT_ASSERT(axis >= 0 && axis < x->ndim, "narrow: axis %d of a %d-d tensor", axis, x->ndim);
    VT_ASSERT(start >= 0 && length >= 0 && start + length <= x->shape[axis],
              "narrow: [%d, %d) outside extent %d", start, start + length, x->shape[axis]);
    int shape[VT_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = length;
    vt_tensor *y = vt_tensor_new(c, x->ndim, shape);
    size_t outer, inner;
    split_dims(x, axis, &outer, &inner);
    size_t ext = (size_t)x->shape[axis];
    for (size_t o = 0; o < outer; o++)
        memcpy(y->data + o * (size_t)length * inner, x->data + (o * ext + (size_t)start) * inner,
               (size_t)length * inner * sizeof(float));
    if (vt_needs_grad(c, 1, &x)) {
        narrow_saved *s = vt_arena_alloc(&c->arena, sizeof *s);
        s->axis = axis;
        s->start = start;
        vt_record(c, &vt_op_narrow, 1, &x, 1, &y, s);
    }
    return y;
}
