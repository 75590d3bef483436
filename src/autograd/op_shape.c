/* op_shape.c - reshape, flatten, permute, concat, mean.
 *
 * reshape: x (any) -> same numel, new shape; the output is a view sharing
 *          x->data (no copy). flatten (N, ...) -> (N, prod(...)) is a
 *          reshape.
 * permute: x up to 5 dims -> out.shape[i] = x.shape[perm[i]], contiguous;
 *          typical uses (N, C, T, H, W) <-> (N, T, C, H, W) and
 *          (N, C, T) -> (N, T, C) after pooling space away.
 * concat:  n inputs equal except along axis -> the inputs side by side.
 * mean:    x (..., L, ...) -> the axis of length L removed.
 * Saved for backward: permute its perm, concat and mean their axis;
 * reshape nothing (shapes are on the node's tensors).
 */
#include "vt_ops.h"

#include <string.h>

#define PAR_MIN 32768 /* elements below which a loop stays single-threaded */

/* ==== reshape, flatten ================================================= */

/* The view has its own gradient buffer (the tape allocates one per tensor),
 * so backward moves it over to the input's. */
static void reshape_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *x = nd->in[0], *y = nd->out[0];
    if (!x->requires_grad)
        return;
    float *gx = vt_grad(c, x);
    const float *gy = y->grad;
    size_t n = y->numel;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++)
        gx[i] += gy[i];
}
const vt_op_def vt_op_reshape = {"reshape", reshape_backward};

vt_tensor *vt_reshape(vt_ctx *c, vt_tensor *x, int ndim, const int *shape)
{
    char sx[64];
    VT_ASSERT(ndim >= 1 && ndim <= VT_MAX_DIMS, "reshape: rank %d", ndim);
    int s[VT_MAX_DIMS], free_dim = -1;
    size_t known = 1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1) {
            VT_ASSERT(free_dim < 0, "reshape: more than one -1");
            free_dim = i;
        } else {
            VT_ASSERT(s[i] >= 0, "reshape: extent %d in dim %d", s[i], i);
            known *= (size_t)s[i];
        }
    }
    if (free_dim >= 0) {
        VT_ASSERT(known > 0 && x->numel % known == 0,
                  "reshape: cannot infer -1 for %s", vt_shape_str(x, sx, sizeof sx));
        s[free_dim] = (int)(x->numel / known);
        known *= (size_t)s[free_dim];
    }
    VT_ASSERT(known == x->numel, "reshape: %s has %zu elements, new shape %zu",
              vt_shape_str(x, sx, sizeof sx), x->numel, known);
    vt_tensor *y = vt_tensor_wrap(c, x->data, ndim, s);
    if (vt_needs_grad(c, 1, &x))
        vt_node_no_data(c, vt_record(c, &vt_op_reshape, 1, &x, 1, &y, NULL),
                        VT_BWD_NO_IN_DATA | VT_BWD_NO_OUT_DATA);
    return y;
}

vt_tensor *vt_flatten(vt_ctx *c, vt_tensor *x)
{
    char sx[64];
    VT_ASSERT(x->ndim >= 2, "flatten: %s has no dims after the batch",
              vt_shape_str(x, sx, sizeof sx));
    /* Explicit extents rather than -1, which cannot be inferred when N = 0. */
    int s[2] = {x->shape[0], (int)vt_shape_numel(x->ndim - 1, x->shape + 1)};
    return vt_reshape(c, x, 2, s);
}

/* ==== permute ========================================================== */

#define TILE 32

/* dst = src.permute(perm) (or dst += it), src contiguous of src_shape.
 * Dims of extent 1 are dropped and output dims that stay adjacent in src
 * are merged first, so e.g. (N, C, T, H, W) -> (N, T, C, H, W) becomes
 * rows of H*W contiguous floats, and (N, C, T, 1, 1) -> (N, T, C, 1, 1) a
 * batch of (C, T) transposes done in cache-sized tiles. Every dst element
 * is written by exactly one iteration. */
static void permute_kernel(const float *src, int ndim, const int *src_shape,
                           const int *perm, float *dst, int accumulate)
{
    size_t sstride[VT_MAX_DIMS];
    size_t acc = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        sstride[i] = acc;
        acc *= (size_t)src_shape[i];
    }
    const size_t numel = acc;
    if (numel == 0)
        return;

    /* Output dims as (extent, stride in src), coalesced. */
    size_t n[VT_MAX_DIMS], s[VT_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < ndim; i++) {
        size_t e = (size_t)src_shape[perm[i]], st = sstride[perm[i]];
        if (e == 1)
            continue;
        if (k > 0 && s[k - 1] == st * e) {
            n[k - 1] *= e;
            s[k - 1] = st;
        } else {
            n[k] = e;
            s[k] = st;
            k++;
        }
    }

    if (k <= 1) { /* a plain copy: nothing moved */
#pragma omp parallel for schedule(static) if (numel > PAR_MIN)
        for (size_t i = 0; i < numel; i++)
            dst[i] = accumulate ? dst[i] + src[i] : src[i];
        return;
    }

    if (s[k - 1] == 1) { /* rows stay contiguous */
        const size_t len = n[k - 1], rows = numel / len;
#pragma omp parallel for schedule(static) if (numel > PAR_MIN)
        for (size_t r = 0; r < rows; r++) {
            size_t off = 0, q = r;
            for (int d = k - 2; d >= 0; d--) {
                off += (q % n[d]) * s[d];
                q /= n[d];
            }
            const float *sp = src + off;
            float *dp = dst + r * len;
            if (accumulate) {
                for (size_t j = 0; j < len; j++)
                    dp[j] += sp[j];
            } else {
                memcpy(dp, sp, len * sizeof(float));
            }
        }
        return;
    }

    /* A transpose of the last two output dims inside each outer index:
     * TILE x TILE blocks keep both the strided reads and the writes in
     * cache. */
    const size_t n0 = n[k - 2], n1 = n[k - 1], s0 = s[k - 2], s1 = s[k - 1];
    const size_t t0 = (n0 + TILE - 1) / TILE, t1 = (n1 + TILE - 1) / TILE;
    const size_t outer = numel / (n0 * n1), items = outer * t0 * t1;
#pragma omp parallel for schedule(static) if (numel > PAR_MIN)
    for (size_t it = 0; it < items; it++) {
        const size_t b1 = it % t1, b0 = (it / t1) % t0, outer_i = it / (t1 * t0);
        size_t off = 0, q = outer_i;
        for (int d = k - 3; d >= 0; d--) {
            off += (q % n[d]) * s[d];
            q /= n[d];
        }
        float *dbase = dst + outer_i * n0 * n1;
        size_t i0e = (b0 + 1) * TILE < n0 ? (b0 + 1) * TILE : n0;
        size_t i1e = (b1 + 1) * TILE < n1 ? (b1 + 1) * TILE : n1;
        for (size_t i0 = b0 * TILE; i0 < i0e; i0++) {
            const float *sp = src + off + i0 * s0;
            float *dp = dbase + i0 * n1;
            if (accumulate) {
                for (size_t i1 = b1 * TILE; i1 < i1e; i1++)
                    dp[i1] += sp[i1 * s1];
            } else {
                for (size_t i1 = b1 * TILE; i1 < i1e; i1++)
                    dp[i1] = sp[i1 * s1];
            }
        }
    }
}

static void permute_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *x = nd->in[0], *y = nd->out[0];
    if (!x->requires_grad)
        return;
    const int *perm = nd->saved;
    int inv[VT_MAX_DIMS];
    for (int i = 0; i < y->ndim; i++)
        inv[perm[i]] = i;
    permute_kernel(y->grad, y->ndim, y->shape, inv, vt_grad(c, x), 1);
}
const vt_op_def vt_op_permute = {"permute", permute_backward};

vt_tensor *vt_permute(vt_ctx *c, vt_tensor *x, const int *perm)
{
    char sx[64];
    int seen[VT_MAX_DIMS] = {0}, shape[VT_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        VT_ASSERT(perm[i] >= 0 && perm[i] < x->ndim && !seen[perm[i]],
                  "permute: not a permutation of the dims of %s",
                  vt_shape_str(x, sx, sizeof sx));
        seen[perm[i]] = 1;
        shape[i] = x->shape[perm[i]];
    }
    vt_tensor *y = vt_tensor_new(c, x->ndim, shape);
    permute_kernel(x->data, x->ndim, x->shape, perm, y->data, 0);
    if (vt_needs_grad(c, 1, &x)) {
        int *saved = vt_arena_alloc(&c->arena, VT_MAX_DIMS * sizeof(int));
        memcpy(saved, perm, (size_t)x->ndim * sizeof(int));
        vt_record(c, &vt_op_permute, 1, &x, 1, &y, saved);
    }
    return y;
}

/* ==== concat =========================================================== */

/* Viewed as (outer, extent along axis * inner): input i fills a column
 * band [off_i, off_i + w_i) of every output row. */
static size_t inner_size(const vt_tensor *t, int axis)
{
    return vt_shape_numel(t->ndim - axis - 1, t->shape + axis + 1);
}

static void concat_backward(vt_ctx *c, vt_node *nd)
{
    const int axis = *(const int *)nd->saved;
    vt_tensor *y = nd->out[0];
    const float *gy = y->grad;
    const size_t outer = vt_shape_numel(axis, y->shape);
    const size_t inner = inner_size(y, axis);
    const size_t row = (size_t)y->shape[axis] * inner;
    size_t off = 0;
    for (int i = 0; i < nd->n_in; i++) {
        vt_tensor *x = nd->in[i];
        const size_t w = (size_t)x->shape[axis] * inner;
        if (x->requires_grad) {
            float *gx = vt_grad(c, x);
#pragma omp parallel for schedule(static) if (x->numel > PAR_MIN)
            for (size_t o = 0; o < outer; o++) {
                const float *sp = gy + o * row + off;
                float *dp = gx + o * w;
                for (size_t j = 0; j < w; j++)
                    dp[j] += sp[j];
            }
        }
        off += w;
    }
}
const vt_op_def vt_op_concat = {"concat", concat_backward};

vt_tensor *vt_concat(vt_ctx *c, int n, vt_tensor *const *xs, int axis)
{
    char s0[64], si[64];
    VT_ASSERT(n >= 1, "concat: no inputs");
    const vt_tensor *x0 = xs[0];
    if (axis < 0)
        axis += x0->ndim;
    VT_ASSERT(axis >= 0 && axis < x0->ndim, "concat: axis out of range for %s",
              vt_shape_str(x0, s0, sizeof s0));
    int shape[VT_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[axis] = 0;
    for (int i = 0; i < n; i++) {
        const vt_tensor *x = xs[i];
        int ok = x->ndim == x0->ndim;
        for (int d = 0; ok && d < x0->ndim; d++)
            ok = d == axis || x->shape[d] == x0->shape[d];
        VT_ASSERT(ok, "concat: %s and %s differ off axis %d",
                  vt_shape_str(x0, s0, sizeof s0), vt_shape_str(x, si, sizeof si),
                  axis);
        shape[axis] += x->shape[axis];
    }
    vt_tensor *y = vt_tensor_new(c, x0->ndim, shape);
    const size_t outer = vt_shape_numel(axis, shape);
    const size_t inner = inner_size(y, axis);
    const size_t row = (size_t)shape[axis] * inner;
    /* One work item per (row, input) so that axis 0 (outer = 1) still
     * spreads the n copies over threads. */
    const size_t items = outer * (size_t)n;
    float *yv = y->data;
#pragma omp parallel for schedule(static) if (y->numel > PAR_MIN)
    for (size_t it = 0; it < items; it++) {
        size_t o = it / (size_t)n;
        int i = (int)(it % (size_t)n);
        size_t off = 0;
        for (int p = 0; p < i; p++)
            off += (size_t)xs[p]->shape[axis] * inner;
        const size_t w = (size_t)xs[i]->shape[axis] * inner;
        if (w) /* an empty input may have no data pointer */
            memcpy(yv + o * row + off, xs[i]->data + o * w, w * sizeof(float));
    }
    if (vt_needs_grad(c, n, xs)) {
        int *saved = vt_arena_alloc(&c->arena, sizeof(int));
        *saved = axis;
        vt_record(c, &vt_op_concat, n, xs, 1, &y, saved);
    }
    return y;
}

/* ==== mean ============================================================= */

/* Outputs per work item: each item owns whole outputs and sums the L terms
 * in order (in double), so the result is the same for any thread count. */
#define MEAN_COLS 64

static void mean_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *x = nd->in[0];
    if (!x->requires_grad)
        return;
    const int axis = *(const int *)nd->saved;
    const float *gy = nd->out[0]->grad;
    float *gx = vt_grad(c, x);
    const size_t outer = vt_shape_numel(axis, x->shape);
    const size_t len = (size_t)x->shape[axis];
    const size_t inner = inner_size(x, axis);
    const float scale = 1.0f / (float)len;
    const size_t rows = outer * len;
#pragma omp parallel for schedule(static) if (x->numel > PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *g = gy + (r / len) * inner;
        float *d = gx + r * inner;
        for (size_t j = 0; j < inner; j++)
            d[j] += g[j] * scale;
    }
}
const vt_op_def vt_op_mean = {"mean", mean_backward};

vt_tensor *vt_mean(vt_ctx *c, vt_tensor *x, int axis)
{
    char sx[64];
    if (axis < 0)
        axis += x->ndim;
    VT_ASSERT(axis >= 0 && axis < x->ndim && x->shape[axis] > 0,
              "mean: axis %d of %s", axis, vt_shape_str(x, sx, sizeof sx));
    int shape[VT_MAX_DIMS], nd = 0;
    for (int d = 0; d < x->ndim; d++)
        if (d != axis)
            shape[nd++] = x->shape[d];
    if (nd == 0) /* a 1-D mean is a scalar, held as shape (1) */
        shape[nd++] = 1;
    vt_tensor *y = vt_tensor_new(c, nd, shape);

    const size_t outer = vt_shape_numel(axis, x->shape);
    const size_t len = (size_t)x->shape[axis];
    const size_t inner = inner_size(x, axis);
    const size_t nblk = (inner + MEAN_COLS - 1) / MEAN_COLS;
    const size_t items = outer * nblk;
    const double scale = 1.0 / (double)len;
    const float *xv = x->data;
    float *yv = y->data;
#pragma omp parallel for schedule(static) if (x->numel > PAR_MIN)
    for (size_t it = 0; it < items; it++) {
        size_t o = it / nblk, j0 = (it % nblk) * MEAN_COLS;
        size_t nj = inner - j0 < MEAN_COLS ? inner - j0 : MEAN_COLS;
        double acc[MEAN_COLS] = {0};
        const float *xp = xv + o * len * inner + j0;
        for (size_t a = 0; a < len; a++, xp += inner)
            for (size_t j = 0; j < nj; j++)
                acc[j] += xp[j];
        for (size_t j = 0; j < nj; j++)
            yv[o * inner + j0 + j] = (float)(acc[j] * scale);
    }
    if (vt_needs_grad(c, 1, &x)) {
        int *saved = vt_arena_alloc(&c->arena, sizeof(int));
        *saved = axis;
        vt_record(c, &vt_op_mean, 1, &x, 1, &y, saved);
    }
    return y;
}
