/* op_linear.c - linear (fully connected) layer and matrix products.
 *
 * linear: x (..., F) viewed as (R, F) with R the product of the leading
 *         dims, w (O, F), b (O) or NULL -> y (..., O) = x w^T + b.
 * matmul: a (M, K) @ b (K, N) -> (M, N), or batched
 *         a (B, M, K) @ b (B, K, N) -> (B, M, N).
 * Saved for backward: nothing beyond the node's inputs; both ops read the
 * inputs' data, which no op ever overwrites within a step.
 */
#include "vt_ops.h"

#include <string.h>

/* ==== linear =========================================================== */

/* Columns per work item of the bias-gradient sum: each item owns whole
 * columns and adds rows in order, so the result does not depend on the
 * thread count. */
#define BIAS_COLS 64

static void bias_grad(const float *gy, int rows, int cols, float *gb)
{
    int nblk = (cols + BIAS_COLS - 1) / BIAS_COLS;
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
    for (int blk = 0; blk < nblk; blk++) {
        int j0 = blk * BIAS_COLS;
        int nj = cols - j0 < BIAS_COLS ? cols - j0 : BIAS_COLS;
        double acc[BIAS_COLS] = {0};
        for (int r = 0; r < rows; r++) {
            const float *g = gy + (size_t)r * cols + j0;
            for (int j = 0; j < nj; j++)
                acc[j] += g[j];
        }
        for (int j = 0; j < nj; j++)
            gb[j0 + j] += (float)acc[j];
    }
}

static void linear_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *x = nd->in[0], *w = nd->in[1];
    vt_tensor *b = nd->n_in > 2 ? nd->in[2] : NULL;
    const float *gy = nd->out[0]->grad;
    int o = w->shape[0], f = w->shape[1];
    int rows = (int)(f ? x->numel / (size_t)f : 0);
    /* dx (R, F) += gy (R, O) @ w (O, F), w read once, row by row, for a
     * few rows (fc6's: 9-10.5 ms against OpenBLAS's 19-21 at batch 4) */
    if (x->requires_grad && o > 0)
        vt_sgemm_small(0, rows, f, o, gy, o, w->data, f, 1, vt_grad(c, x), f);
    if (w->requires_grad && rows > 0) /* dw (O, F) += gy^T (O, R) @ x (R, F) */
        vt_sgemm(1, 0, o, f, rows, 1.0f, gy, o, x->data, f, 1.0f,
                 vt_grad(c, w), f);
    if (b && b->requires_grad)
        bias_grad(gy, rows, o, vt_grad(c, b));
}
const vt_op_def vt_op_linear = {"linear", linear_backward};

vt_tensor *vt_linear(vt_ctx *c, vt_tensor *x, vt_tensor *w, vt_tensor *b)
{
    char sx[64], sw[64];
    VT_ASSERT(w->ndim == 2 && x->shape[x->ndim - 1] == w->shape[1],
              "linear: input %s does not match weight %s",
              vt_shape_str(x, sx, sizeof sx), vt_shape_str(w, sw, sizeof sw));
    int o = w->shape[0], f = w->shape[1];
    VT_ASSERT(!b || (b->ndim == 1 && b->shape[0] == o),
              "linear: bias %s for %d outputs", vt_shape_str(b, sx, sizeof sx), o);
    int shape[VT_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = o;
    vt_tensor *y = vt_tensor_new(c, x->ndim, shape);
    int rows = (int)(f ? x->numel / (size_t)f : vt_shape_numel(x->ndim - 1, x->shape));

    /* The bias goes in first so the GEMM adds onto it (beta = 1): one pass
     * over y instead of two. */
    float *yv = y->data;
    if (b) {
        const float *bv = b->data;
#pragma omp parallel for schedule(static) if ((size_t)rows * o > 65536)
        for (int r = 0; r < rows; r++)
            memcpy(yv + (size_t)r * o, bv, (size_t)o * sizeof(float));
    } else if (f == 0) {
        memset(yv, 0, y->numel * sizeof(float));
    }
    /* A few rows (a batch of clips into fc6) read w once, in place: OpenBLAS
     * packs all of it first (fc6's 134 MB at batch 4: 23-27 ms against
     * 4.5-5.3). Many rows go to OpenBLAS all the same. */
    if (f > 0)
        vt_sgemm_small(1, rows, o, f, x->data, f, w->data, f, b ? 1 : 0, yv, o);

    vt_tensor *in[3] = {x, w, b};
    int n_in = b ? 3 : 2;
    if (vt_needs_grad(c, n_in, in))
        vt_node_no_data(c, vt_record(c, &vt_op_linear, n_in, in, 1, &y, NULL), VT_BWD_NO_OUT_DATA);
    return y;
}

/* ==== matmul =========================================================== */

/* Independent products per batch entry; with several entries each thread
 * takes whole products (the GEMMs then run single-threaded inside the
 * region), a single product lets OpenBLAS use every thread. */
static void batched_gemm(int batch, int ta, int tb, int m, int n, int k,
                         const float *a, size_t sa, int lda, const float *b,
                         size_t sb, int ldb, float *cc, size_t sc, int ldc)
{
    if (k == 0) /* nothing to add; BLAS would reject the zero leading dim */
        return;
#pragma omp parallel for schedule(static) if (batch > 1)
    for (int i = 0; i < batch; i++)
        vt_sgemm(ta, tb, m, n, k, 1.0f, a + (size_t)i * sa, lda,
                 b + (size_t)i * sb, ldb, 1.0f, cc + (size_t)i * sc, ldc);
}

static void matmul_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *a = nd->in[0], *b = nd->in[1];
    const float *gy = nd->out[0]->grad;
    int batched = a->ndim == 3;
    int nb = batched ? a->shape[0] : 1;
    int m = a->shape[batched], k = a->shape[batched + 1];
    int n = b->shape[batched + 1];
    size_t sa = (size_t)m * k, sb = (size_t)k * n, sy = (size_t)m * n;
    if (a->requires_grad) /* da (M, K) += gy (M, N) @ b^T (N, K) */
        batched_gemm(nb, 0, 1, m, k, n, gy, sy, n, b->data, sb, n,
                     vt_grad(c, a), sa, k);
    if (b->requires_grad) /* db (K, N) += a^T (K, M) @ gy (M, N) */
        batched_gemm(nb, 1, 0, k, n, m, a->data, sa, k, gy, sy, n,
                     vt_grad(c, b), sb, n);
}
const vt_op_def vt_op_matmul = {"matmul", matmul_backward};

vt_tensor *vt_matmul(vt_ctx *c, vt_tensor *a, vt_tensor *b)
{
    char sa_[64], sb_[64];
    int batched = a->ndim == 3;
    VT_ASSERT((a->ndim == 2 || a->ndim == 3) && b->ndim == a->ndim &&
                  (!batched || a->shape[0] == b->shape[0]) &&
                  a->shape[batched + 1] == b->shape[batched],
              "matmul: shapes %s and %s do not multiply",
              vt_shape_str(a, sa_, sizeof sa_), vt_shape_str(b, sb_, sizeof sb_));
    int nb = batched ? a->shape[0] : 1;
    int m = a->shape[batched], k = a->shape[batched + 1];
    int n = b->shape[batched + 1];
    vt_tensor *y = batched ? vt_empty(c, 3, nb, m, n) : vt_empty(c, 2, m, n);
    /* beta = 1 onto zeros keeps one GEMM helper for forward and backward. */
    memset(y->data, 0, y->numel * sizeof(float));
    batched_gemm(nb, 0, 0, m, n, k, a->data, (size_t)m * k, k, b->data,
                 (size_t)k * n, n, y->data, (size_t)m * n, n);
    vt_tensor *in[2] = {a, b};
    if (vt_needs_grad(c, 2, in))
        vt_record(c, &vt_op_matmul, 2, in, 1, &y, NULL);
    return y;
}
