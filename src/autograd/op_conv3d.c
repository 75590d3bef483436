/* op_conv3d.c - conv3d, and conv2d applied to every frame.
 *
 * Shapes: x (N, C, T, H, W), w (O, C/groups, kt, kh, kw), b (O) or NULL
 *   -> y (N, O, To, Ho, Wo), as torch.nn.functional.conv3d.
 *   conv2d_frames: w (O, C/groups, kh, kw) is laid out exactly like a conv3d
 *   weight with kt = 1, and a (1, kh, kw) kernel with unit time stride and
 *   no time padding is nn.Conv2d on each frame, so both ops share one kernel.
 * Saved for backward: the geometry only (a few ints). The node's inputs x
 *   and w stay alive (arena / store); backward rebuilds the columns from x
 *   rather than keeping them.
 *
 * Fast path, per sample and group (K = C/groups * kt*kh*kw, P = To*Ho*Wo):
 *   forward          y (Og x P)   = W (Og x K) . col (K x P) + b
 *   backward, data   dcol (K x P) = W^T . dy, scattered back by col2vol
 *   backward, weight dW (Og x K) += dy . col^T
 * col is built for a tile of output rows (to, ho) at a time so its buffer
 * stays near the tile budget: a whole sample of C3D's conv2a would need
 * K = 1728 by P = 50176, 350 MB. Kernels 1x1x1 with unit stride and no
 * padding skip col: x itself is the (C x P) matrix.
 *
 * The tile budget (8 MB, see op_conv3d_internal.h) is per thread; a short
 * K takes less (tile_rows).
 *
 * Backward builds col once per tile for both gradients: gw += dy . col^T,
 * then col is reused for W^T . dy and scattered into gx.
 *
 * Two paths. Layers whose per-thread tile would hold under 256 positions
 * (C3D's conv4b-conv5b: large K, small maps) take shared tiles (see "Shared
 * tiles" below): one 32 MB tile at a time for all threads, spanning
 * samples, with each GEMM split over output rows; no weight-gradient
 * partials. The rest take per-thread tiles as follows.
 *
 * On CPUs with AVX2+FMA (vt_cpu_avx2) the forward, the weight gradient
 * (of 128 taps or more; of fewer, without groups, a taps-by-filters
 * variant that also sums the bias), and the data gradient of unit-stride
 * layers run instead on the implicit-GEMM kernel of conv_igemm.c (no
 * column matrix);
 * other data gradients use its kernel for the W^T . dy GEMM of the paths
 * below. vt_conv_set_path (op_conv3d_internal.h) forces one.
 *
 * Threads: forward and backward run a sample per thread when the batch
 * shares out evenly (see sample_parallel), each GEMM single-threaded. Else
 * a sample at a time with OpenBLAS threading each GEMM, vol2col parallel
 * over its rows and col2vol over input channels, so no two threads ever add
 * into the same gx element. The weight gradient of any layer of 1e6 MACs
 * or more splits over threads (by samples, or by (sample, tile) items when
 * gx is not wanted or samples do not share out): each thread sums its items
 * into its own partial, (threads - 1) weight-sized buffers while backward
 * runs, and the partials are added in thread order (backward_threads); bias gradients
 * go per output channel in a fixed order. Bit-identical results for a given
 * thread count, no atomics; across thread counts they differ by rounding.
 */
#include "vt_ops.h"
#include "op_conv3d_internal.h"

#include <omp.h>
#include <string.h>

static size_t tile_bytes = VT_CONV_TILE_BYTES_DEFAULT;
static size_t shared_bytes = VT_CONV_SHARED_BYTES_DEFAULT;
static int path_forced = VT_CONV_PATH_AUTO;

size_t vt_conv_set_tile_bytes(size_t bytes)
{
    size_t old = tile_bytes;
    tile_bytes = bytes ? bytes : VT_CONV_TILE_BYTES_DEFAULT;
    shared_bytes = bytes ? bytes : VT_CONV_SHARED_BYTES_DEFAULT;
    return old;
}

int vt_conv_set_path(int path)
{
    int old = path_forced;
    path_forced = path;
    return old;
}

int vt_conv_path_named(const char *name)
{
    static const char *const names[] = {"auto", "sample", "shared", "igemm", "winograd"};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (!strcmp(name, names[i]))
            return i;
    return -1;
}

/* Floor division for a possibly negative numerator. */
static int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

int vt_conv_out_size(int in, int k, int stride, int pad, int dilation)
{
    if (stride <= 0)
        stride = 1;
    if (dilation <= 0)
        dilation = 1;
    return floor_div(in + 2 * pad - dilation * (k - 1) - 1, stride) + 1;
}

/* ==== Geometry ========================================================= */

typedef vt_conv_geom geom;

static int one_if_zero(int v) { return v ? v : 1; }

static void geom_init(geom *g, const vt_tensor *x, int o, int cg, int kt,
                      int kh, int kw, const vt_conv3d_args *a)
{
    char buf[64];
    VT_ASSERT(x->ndim == 5, "conv: x must be (N, C, T, H, W), got %s",
              vt_shape_str(x, buf, sizeof buf));
    g->n = x->shape[0];
    g->c = x->shape[1];
    g->t = x->shape[2];
    g->h = x->shape[3];
    g->w = x->shape[4];
    g->o = o;
    g->kt = kt;
    g->kh = kh;
    g->kw = kw;
    g->st = one_if_zero(a->stride[0]);
    g->sh = one_if_zero(a->stride[1]);
    g->sw = one_if_zero(a->stride[2]);
    g->pt = a->pad[0];
    g->ph = a->pad[1];
    g->pw = a->pad[2];
    g->dt = one_if_zero(a->dilation[0]);
    g->dh = one_if_zero(a->dilation[1]);
    g->dw = one_if_zero(a->dilation[2]);
    g->groups = one_if_zero(a->groups);
    VT_ASSERT(g->st > 0 && g->sh > 0 && g->sw > 0 && g->dt > 0 && g->dh > 0 &&
                  g->dw > 0 && g->groups > 0 && g->pt >= 0 && g->ph >= 0 &&
                  g->pw >= 0 && kt > 0 && kh > 0 && kw > 0,
              "conv: bad stride/dilation/padding/groups/kernel");
    VT_ASSERT(g->c % g->groups == 0 && o % g->groups == 0,
              "conv: %d input and %d output channels not divisible by %d groups",
              g->c, o, g->groups);
    VT_ASSERT(cg == g->c / g->groups,
              "conv: weight has %d input channels per group, x gives %d", cg,
              g->c / g->groups);
    g->to = vt_conv_out_size(g->t, kt, g->st, g->pt, g->dt);
    g->ho = vt_conv_out_size(g->h, kh, g->sh, g->ph, g->dh);
    g->wo = vt_conv_out_size(g->w, kw, g->sw, g->pw, g->dw);
    VT_ASSERT(g->to > 0 && g->ho > 0 && g->wo > 0,
              "conv: input %s too small for the kernel (%d, %d, %d)",
              vt_shape_str(x, buf, sizeof buf), kt, kh, kw);
}

static void geom_from_3d(geom *g, const vt_tensor *x, const vt_tensor *w,
                         const vt_conv3d_args *a)
{
    char buf[64];
    VT_ASSERT(w->ndim == 5, "conv3d: w must be (O, C/groups, kt, kh, kw), got %s",
              vt_shape_str(w, buf, sizeof buf));
    geom_init(g, x, w->shape[0], w->shape[1], w->shape[2], w->shape[3],
              w->shape[4], a);
}

static int is_pointwise(const geom *g)
{
    return g->kt == 1 && g->kh == 1 && g->kw == 1 && g->st == 1 && g->sh == 1 &&
           g->sw == 1 && g->pt == 0 && g->ph == 0 && g->pw == 0;
}

/* Output columns wo whose input column wo*sw + off lies in [0, w). */
static void valid_cols(const geom *g, int off, int *lo, int *hi)
{
    int l = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
    int h = g->w - off > 0 ? (g->w - off + g->sw - 1) / g->sw : 0;
    *lo = l < g->wo ? l : g->wo;
    *hi = h < g->wo ? h : g->wo;
    if (*hi < *lo)
        *hi = *lo;
}

/* ==== vol2col / col2vol ================================================ */

/* Output rows counted across the batch (row r is sample r / (To*Ho),
 * output row (to, ho) = r % (To*Ho) of it), walked in order: stepped
 * rather than divided out per row. */
typedef struct {
    int n, to, ho;
} row_walk;

static row_walk row_walk_at(const geom *g, int r)
{
    const int prow = g->to * g->ho;
    return (row_walk){r / prow, r % prow / g->ho, r % g->ho};
}

/* The current row's sample, and the input frame *ti and row *hi its tap
 * (i, j) reads; then steps to the next row. */
static int row_walk_next(const geom *g, row_walk *rw, int i, int j, int *ti, int *hi)
{
    const int n = rw->n;
    *ti = rw->to * g->st - g->pt + i * g->dt;
    *hi = rw->ho * g->sh - g->ph + j * g->dh;
    if (++rw->ho == g->ho) {
        rw->ho = 0;
        if (++rw->to == g->to) {
            rw->to = 0;
            rw->n++;
        }
    }
    return n;
}

/* Row k (input channel, tap) of the columns of output rows [r0, r0 + nr).
 * Rows are counted across the batch (row_walk), so a tile may span
 * samples; x is the whole batch. col is (C*kt*kh*kw, nr*Wo), row index (c, i, j, l) as the
 * weight. */
static void vol2col_row(const geom *g, const float *x, int r0, int nr, int k,
                        float *col)
{
    const int kvol = g->kt * g->kh * g->kw;
    const size_t xs = (size_t)g->c * g->t * g->h * g->w;
    int ch = k / kvol, kk = k % kvol;
    int i = kk / (g->kh * g->kw), j = kk / g->kw % g->kh, l = kk % g->kw;
    int off = l * g->dw - g->pw, lo, hi;
    valid_cols(g, off, &lo, &hi);
    float *dst = col + (size_t)k * nr * g->wo;
    row_walk rw = row_walk_at(g, r0);
    for (int r = r0; r < r0 + nr; r++, dst += g->wo) {
        int ti, hi_;
        const int sn = row_walk_next(g, &rw, i, j, &ti, &hi_);
        if (ti < 0 || ti >= g->t || hi_ < 0 || hi_ >= g->h) {
            memset(dst, 0, (size_t)g->wo * sizeof *dst);
            continue;
        }
        const float *src = x + (size_t)sn * xs + (size_t)ch * g->t * g->h * g->w +
                           ((size_t)ti * g->h + (size_t)hi_) * g->w;
        for (int wo = 0; wo < lo; wo++)
            dst[wo] = 0.0f;
        if (g->sw == 1 && hi > lo)
            memcpy(dst + lo, src + lo + off, (size_t)(hi - lo) * sizeof *dst);
        else if (g->sw > 1)
            for (int wo = lo; wo < hi; wo++)
                dst[wo] = src[wo * g->sw + off];
        for (int wo = hi; wo < g->wo; wo++)
            dst[wo] = 0.0f;
    }
}

static void vol2col(const geom *g, const float *x, int r0, int nr, float *col)
{
    const int rows = g->c * g->kt * g->kh * g->kw;
#pragma omp parallel for schedule(static) if ((size_t)rows * nr * g->wo > 32768)
    for (int k = 0; k < rows; k++)
        vol2col_row(g, x, r0, nr, k, col);
}

/* gx += the scatter of col's rows of input channel ch (the adjoint of
 * vol2col; rows counted across the batch as there, gx the whole batch).
 * Callers run one thread per channel, rows in a fixed order: no races,
 * the same sums for any thread count. */
static void col2vol_channel(const geom *g, const float *col, int r0, int nr,
                            int ch, float *gx)
{
    const int kvol = g->kt * g->kh * g->kw;
    const size_t ld = (size_t)nr * (size_t)g->wo;
    const size_t xs = (size_t)g->c * g->t * g->h * g->w;
    float *gc = gx + (size_t)ch * g->t * g->h * g->w;
    for (int kk = 0; kk < kvol; kk++) {
        int i = kk / (g->kh * g->kw), j = kk / g->kw % g->kh, l = kk % g->kw;
        int off = l * g->dw - g->pw, lo, hi;
        valid_cols(g, off, &lo, &hi);
        const float *src = col + ((size_t)ch * kvol + (size_t)kk) * ld;
        row_walk rw = row_walk_at(g, r0);
        for (int r = r0; r < r0 + nr; r++, src += g->wo) {
            int ti, hi_;
            const int sn = row_walk_next(g, &rw, i, j, &ti, &hi_);
            if (ti < 0 || ti >= g->t || hi_ < 0 || hi_ >= g->h)
                continue;
            float *dst = gc + (size_t)sn * xs + ((size_t)ti * g->h + (size_t)hi_) * g->w;
            if (g->sw == 1)
                for (int wo = lo; wo < hi; wo++)
                    dst[wo + off] += src[wo];
            else
                for (int wo = lo; wo < hi; wo++)
                    dst[wo * g->sw + off] += src[wo];
        }
    }
}

static void col2vol(const geom *g, const float *col, int r0, int nr, float *gx)
{
    const int kvol = g->kt * g->kh * g->kw;
#pragma omp parallel for schedule(static) if ((size_t)g->c * kvol * nr * g->wo > 32768)
    for (int ch = 0; ch < g->c; ch++)
        col2vol_channel(g, col, r0, nr, ch, gx);
}

/* Output rows per tile: as many as fit the budget, at least one. A short
 * K (conv1a: 81) gets a fat tile from far less: keeping it near L2 size
 * (512 KB, still ~1600 positions for K = 81) lets the GEMM pack col while
 * vol2col's writes are still in cache (conv1a forward: faster in 3 of 4
 * paired runs, docs/performance.md). */
static int tile_rows(const geom *g)
{
    size_t k = (size_t)g->c * g->kt * g->kh * g->kw, row = k * g->wo * sizeof(float);
    size_t fat = k * 1536 * sizeof(float), l2 = (size_t)512 << 10;
    size_t budget = fat > l2 ? fat : l2;
    if (budget > tile_bytes)
        budget = tile_bytes;
    size_t n = budget / row;
    size_t all = (size_t)g->to * (size_t)g->ho;
    return (int)(n < 1 ? 1 : n > all ? all : n);
}

static float *col_alloc(const geom *g, int rows)
{
    size_t n = (size_t)g->c * g->kt * g->kh * g->kw * (size_t)rows * g->wo;
    float *col = malloc(n * sizeof *col);
    VT_ASSERT(col, "conv: out of memory for a %zu-byte column tile",
              n * sizeof *col);
    return col;
}

/* ==== Fast kernels ===================================================== */

/* Samples run one per thread, each GEMM single-threaded (OpenBLAS inside an
 * omp region), when they share out evenly: measured a little faster than
 * threading every GEMM, since no call waits on the other core. Otherwise
 * (a batch of 1, say) one sample at a time with OpenBLAS threading each
 * GEMM and vol2col/col2vol parallel inside. Either way every output element
 * is computed by one fixed sequence of operations for a given thread count. */
static int sample_parallel(const geom *g)
{
    int th = omp_get_max_threads();
    /* Small convolutions (tests, tiny layers) stay out of a parallel region:
     * waking the team costs more than the work. */
    double macs = (double)g->o * g->c / g->groups * g->kt * g->kh * g->kw *
                  g->to * g->ho * g->wo;
    return th > 1 && !omp_in_parallel() && macs >= 1e6 &&
           (g->n % th == 0 || g->n >= 4 * th);
}

/* Large enough to be worth a parallel region (see sample_parallel). */
static int big_enough(const geom *g)
{
    double macs = (double)g->o * g->c / g->groups * g->kt * g->kh * g->kw *
                  g->to * g->ho * g->wo;
    return omp_get_max_threads() > 1 && !omp_in_parallel() && macs >= 1e6;
}

/* y (O, P) of one sample; col is a tile buffer or NULL when pointwise. */
static void forward_sample(const geom *g, const float *x, const float *w,
                           const float *b, float *y, float *col, int rows)
{
    const int og = g->o / g->groups, cg = g->c / g->groups;
    const int kg = cg * g->kt * g->kh * g->kw;
    const size_t p = (size_t)g->to * g->ho * g->wo;
    const float beta = b ? 1.0f : 0.0f;
    if (!col) {
        if (b) {
#pragma omp parallel for schedule(static) if ((size_t)g->o * p > 32768)
            for (int o = 0; o < g->o; o++)
                for (size_t i = 0; i < p; i++)
                    y[(size_t)o * p + i] = b[o];
        }
        for (int gr = 0; gr < g->groups; gr++)
            vt_sgemm(0, 0, og, (int)p, cg, 1.0f, w + (size_t)gr * og * kg, kg,
                     x + (size_t)gr * cg * p, (int)p, beta,
                     y + (size_t)gr * og * p, (int)p);
        return;
    }
    for (int r0 = 0; r0 < g->to * g->ho; r0 += rows) {
        int nr = g->to * g->ho - r0 < rows ? g->to * g->ho - r0 : rows;
        int pt = nr * g->wo;
        vol2col(g, x, r0, nr, col);
        /* the bias goes in tile by tile, so the GEMM reads it from cache */
        if (b)
            for (int o = 0; o < g->o; o++) {
                float *yo = y + (size_t)o * p + (size_t)r0 * g->wo;
                for (int i = 0; i < pt; i++)
                    yo[i] = b[o];
            }
        for (int gr = 0; gr < g->groups; gr++)
            vt_sgemm(0, 0, og, pt, kg, 1.0f, w + (size_t)gr * og * kg, kg,
                     col + (size_t)gr * kg * pt, pt, beta,
                     y + (size_t)gr * og * p + (size_t)r0 * g->wo, (int)p);
    }
}

/* One tile of rows [r0, r0 + nr) of one sample, both gradients from a
 * single vol2col: gw += dy . col^T first, then col is overwritten with
 * W^T . dy and scattered into gx. Either of gw, gx may be NULL. Pointwise
 * (col NULL): x and gx themselves are the (C x P) matrices. */
static void backward_tile(const geom *g, const float *x, const float *w,
                          const float *wt, const float *gy, float *gx, float *gw,
                          float *col, int r0, int nr)
{
    const int og = g->o / g->groups, cg = g->c / g->groups;
    const int kg = cg * g->kt * g->kh * g->kw;
    const int p = g->to * g->ho * g->wo, pt = nr * g->wo;
    const size_t off = (size_t)r0 * g->wo;
    const float *b = col ? col : x + off;
    const int ldb = col ? pt : p;
    if (gw) {
        if (col)
            vol2col(g, x, r0, nr, col);
        for (int gr = 0; gr < g->groups; gr++)
            vt_sgemm(0, 1, og, kg, pt, 1.0f, gy + (size_t)gr * og * p + off, p,
                     b + (size_t)gr * kg * ldb, ldb, 1.0f,
                     gw + (size_t)gr * og * kg, kg);
    }
    if (!gx)
        return;
    if (wt && col) {
        const int panels = (kg + VT_CONV_IGEMM_PANEL - 1) / VT_CONV_IGEMM_PANEL;
        for (int gr = 0; gr < g->groups; gr++)
            vt_conv_igemm_dcol(g, wt, gr, 0, panels, gy + (size_t)gr * og * p + off, (size_t)p,
                               pt, col + (size_t)gr * kg * pt, (size_t)pt);
        col2vol(g, col, r0, nr, gx);
        return;
    }
    for (int gr = 0; gr < g->groups; gr++)
        vt_sgemm(1, 0, kg, pt, og, 1.0f, w + (size_t)gr * og * kg, kg,
                 gy + (size_t)gr * og * p + off, p, col ? 0.0f : 1.0f,
                 col ? col + (size_t)gr * kg * pt : gx + (size_t)gr * cg * p + off,
                 ldb);
    if (col)
        col2vol(g, col, r0, nr, gx);
}

/* Backward over work items (sample, tile) split into one contiguous range
 * per thread, GEMMs single-threaded. With gx the items are whole samples:
 * col2vol of neighbouring tiles of one sample add into the same rows of gx.
 * The weight gradient sums over items, so each thread accumulates its own
 * partial (thread 0 straight into gw, the others into zeroed buffers) and
 * the partials are added in thread order: fixed for a given thread count,
 * no atomics. Costs (threads - 1) weight-sized buffers while it runs. */
static void backward_threads(const geom *g, const float *x, const float *w,
                             const float *wt, const float *gy, float *gx, float *gw,
                             int rows)
{
    const size_t xs = (size_t)g->c * g->t * g->h * g->w;
    const size_t ys = (size_t)g->o * g->to * g->ho * g->wo;
    const size_t wsz = (size_t)g->o * (g->c / g->groups) * g->kt * g->kh * g->kw;
    const int nrows = g->to * g->ho, ntiles = (nrows + rows - 1) / rows;
    const int pointwise = is_pointwise(g), th = omp_get_max_threads();
    const long items = gx ? g->n : (long)g->n * ntiles;
    float *part = NULL;
    if (gw && th > 1) {
        part = calloc((size_t)(th - 1) * wsz, sizeof *part);
        VT_ASSERT(part, "conv: out of memory for %d weight-gradient partials",
                  th - 1);
    }
#pragma omp parallel num_threads(th)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        float *col = pointwise ? NULL : col_alloc(g, rows);
        float *gwt = !gw ? NULL : t == 0 ? gw : part + (size_t)(t - 1) * wsz;
        const long lo = items * t / nt, hi = items * (t + 1) / nt;
        for (long it = lo; it < hi; it++) {
            int n = gx ? (int)it : (int)(it / ntiles);
            int t0 = gx ? 0 : (int)(it % ntiles), t1 = gx ? ntiles : t0 + 1;
            for (int ti = t0; ti < t1; ti++) {
                int r0 = ti * rows, nr = nrows - r0 < rows ? nrows - r0 : rows;
                backward_tile(g, x + (size_t)n * xs, w, wt, gy + (size_t)n * ys,
                              gx ? gx + (size_t)n * xs : NULL, gwt, col, r0, nr);
            }
        }
        free(col);
    }
    if (part) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < wsz; i++) {
            float s = gw[i];
            for (int t = 0; t < th - 1; t++)
                s += part[(size_t)t * wsz + i];
            gw[i] = s;
        }
        free(part);
    }
}

/* ==== Shared tiles ====================================================
 *
 * For a large weight on small maps (C3D's conv4b-conv5b: K = 13824, W
 * = 28 MB, a sample of conv5 only 98 positions) per-thread tiles are thin
 * GEMMs and every one of them streams all of W again. Here all threads work
 * on one tile at a time, a tile of output rows counted across the batch (so
 * conv5's whole batch, 196 positions, is one tile): vol2col is split over
 * col rows, then each GEMM over its output rows, so each thread packs only
 * its slice of W once per tile and the tile is fat. Every output element
 * has one owner and is summed in tile order, so there are no weight-gradient
 * partials, and results are the same for any thread count up to OpenBLAS's
 * blocking of a slice. */

/* The slice [*lo, *hi) of m rows that thread t of nt owns: multiples of 16
 * (OpenBLAS's sgemm unroll) so slices do not leave ragged kernel edges. */
static void slice(int m, int t, int nt, int *lo, int *hi)
{
    int chunk = ((m + nt - 1) / nt + 15) & ~15;
    *lo = t * chunk < m ? t * chunk : m;
    *hi = *lo + chunk < m ? *lo + chunk : m;
}

/* Output rows (across the batch) per shared tile. */
static int shared_rows(const geom *g)
{
    size_t row = (size_t)g->c * g->kt * g->kh * g->kw * (size_t)g->wo * sizeof(float);
    size_t n = shared_bytes / row;
    size_t all = (size_t)g->n * g->to * g->ho;
    return (int)(n < 1 ? 1 : n > all ? all : n);
}

/* The tile matrix m is (O, nr*Wo) for rows r0.. counted across the batch;
 * in the (N, O, P) tensor those rows are runs, one per sample. Returns the
 * run starting at tile row r, in rows, and the offset of its output row o
 * in the tensor. */
static int tile_run(const geom *g, int r0, int nr, int r, int o, size_t *toff)
{
    const int prow = g->to * g->ho, n = r / prow, rl = r % prow;
    *toff = ((size_t)n * g->o + o) * prow * g->wo + (size_t)rl * g->wo;
    return prow - rl < r0 + nr - r ? prow - rl : r0 + nr - r;
}

/* y rows [o0, o1) of the tile from m, plus the bias (if any). */
static void tile_scatter(const geom *g, const float *m, float *y, const float *b,
                         int r0, int nr, int o0, int o1)
{
    for (int o = o0; o < o1; o++) {
        const float bo = b ? b[o] : 0.0f;
        const float *mo = m + (size_t)o * nr * g->wo;
        for (int r = r0, run; r < r0 + nr; r += run, mo += (size_t)run * g->wo) {
            size_t off;
            run = tile_run(g, r0, nr, r, o, &off);
            for (size_t i = 0; i < (size_t)run * g->wo; i++)
                y[off + i] = mo[i] + bo;
        }
    }
}

/* Row o of the tile matrix m from the tensor gy. */
static void tile_gather(const geom *g, const float *gy, float *m, int r0, int nr,
                        int o)
{
    float *mo = m + (size_t)o * nr * g->wo;
    for (int r = r0, run; r < r0 + nr; r += run, mo += (size_t)run * g->wo) {
        size_t off;
        run = tile_run(g, r0, nr, r, o, &off);
        memcpy(mo, gy + off, (size_t)run * g->wo * sizeof *mo);
    }
}

/* What both shared-tile passes need: GEMM sizes per group, the tile's
 * rows and the two tile buffers, col (K rows) and m (O rows: the output
 * tile forward, the gathered output gradient backward). */
typedef struct {
    int og, kg, krows, rows, total;
    float *col, *m;
} shared_tile;

static shared_tile shared_tile_open(const geom *g)
{
    shared_tile st;
    st.og = g->o / g->groups;
    st.kg = g->c / g->groups * g->kt * g->kh * g->kw;
    st.krows = g->c * g->kt * g->kh * g->kw;
    st.rows = shared_rows(g);
    st.total = g->n * g->to * g->ho;
    st.col = malloc((size_t)st.krows * st.rows * g->wo * sizeof *st.col);
    st.m = malloc((size_t)g->o * st.rows * g->wo * sizeof *st.m);
    VT_ASSERT(st.col && st.m, "conv: out of memory for a %d-row shared tile", st.rows);
    return st;
}

static void shared_tile_close(shared_tile *st)
{
    free(st->col);
    free(st->m);
}

static void shared_forward(const geom *g, const float *x, const float *w,
                           const float *b, float *y)
{
    shared_tile st = shared_tile_open(g);
    const int og = st.og, kg = st.kg, krows = st.krows, rows = st.rows, total = st.total;
    float *col = st.col, *out = st.m;
#pragma omp parallel if (big_enough(g))
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        for (int r0 = 0; r0 < total; r0 += rows) {
            int nr = total - r0 < rows ? total - r0 : rows, nq = nr * g->wo;
#pragma omp for schedule(static)
            for (int k = 0; k < krows; k++)
                vol2col_row(g, x, r0, nr, k, col);
            for (int gr = 0; gr < g->groups; gr++) {
                int lo, hi;
                slice(og, t, nt, &lo, &hi);
                vt_sgemm(0, 0, hi - lo, nq, kg, 1.0f,
                         w + ((size_t)gr * og + lo) * kg, kg,
                         col + (size_t)gr * kg * nq, nq, 0.0f,
                         out + ((size_t)gr * og + lo) * nq, nq);
                tile_scatter(g, out, y, b, r0, nr, gr * og + lo, gr * og + hi);
            }
            /* the next tile's vol2col overwrites col */
#pragma omp barrier
        }
    }
    shared_tile_close(&st);
}

/* gw += dy . col^T split over output channels, then col = W^T . dy split
 * over col rows and scattered into gx split over input channels. */
static void shared_backward(const geom *g, const float *x, const float *w,
                            const float *wt, const float *gy, float *gx, float *gw)
{
    shared_tile st = shared_tile_open(g);
    const int og = st.og, kg = st.kg, krows = st.krows, rows = st.rows, total = st.total;
    float *col = st.col, *dy = st.m;
#pragma omp parallel if (big_enough(g))
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        for (int r0 = 0; r0 < total; r0 += rows) {
            int nr = total - r0 < rows ? total - r0 : rows, nq = nr * g->wo;
            if (gw) {
#pragma omp for schedule(static) nowait
                for (int k = 0; k < krows; k++)
                    vol2col_row(g, x, r0, nr, k, col);
            }
#pragma omp for schedule(static)
            for (int o = 0; o < g->o; o++)
                tile_gather(g, gy, dy, r0, nr, o);
            if (gw)
                for (int gr = 0; gr < g->groups; gr++) {
                    int lo, hi;
                    slice(og, t, nt, &lo, &hi);
                    vt_sgemm(0, 1, hi - lo, kg, nq, 1.0f,
                             dy + ((size_t)gr * og + lo) * nq, nq,
                             col + (size_t)gr * kg * nq, nq, 1.0f,
                             gw + ((size_t)gr * og + lo) * kg, kg);
                }
            if (gx) {
                /* col is about to be overwritten */
                if (gw) {
#pragma omp barrier
                }
                for (int gr = 0; gr < g->groups && wt; gr++) {
                    const int panels = (kg + VT_CONV_IGEMM_PANEL - 1) / VT_CONV_IGEMM_PANEL;
                    vt_conv_igemm_dcol(g, wt, gr, (int)((long)panels * t / nt),
                                       (int)((long)panels * (t + 1) / nt),
                                       dy + (size_t)gr * og * nq, (size_t)nq, nq,
                                       col + (size_t)gr * kg * nq, (size_t)nq);
                }
                for (int gr = 0; gr < g->groups && !wt; gr++) {
                    int lo, hi;
                    slice(kg, t, nt, &lo, &hi);
                    vt_sgemm(1, 0, hi - lo, nq, og, 1.0f,
                             w + (size_t)gr * og * kg + lo, kg,
                             dy + (size_t)gr * og * nq, nq, 0.0f,
                             col + ((size_t)gr * kg + lo) * nq, nq);
                }
#pragma omp barrier
#pragma omp for schedule(static)
                for (int ch = 0; ch < g->c; ch++)
                    col2vol_channel(g, col, r0, nr, ch, gx);
            } else {
#pragma omp barrier
            }
        }
    }
    shared_tile_close(&st);
}

/* Shared tiles when a per-thread tile would be a thin GEMM (under 256
 * positions: C3D's conv4b, 140, and conv5a/b, 98). Measured on C3D's
 * layers, batch 2, in GFLOP per CPU-second on a loaded machine
 * (docs/performance.md): conv5a/b 5-35% better than per-thread tiles,
 * conv4b within noise (-10% to +15% by pass and run), conv3b and conv4a
 * (280 and 294 positions a tile) even to ~5% worse, so they stay. */
static int use_shared(const geom *g)
{
    if (is_pointwise(g) || path_forced == VT_CONV_PATH_SAMPLE)
        return 0;
    if (path_forced == VT_CONV_PATH_SHARED)
        return 1;
    return (size_t)tile_rows(g) * g->wo < 256;
}

static void conv_forward_paths(const geom *g, const float *x, const float *w,
                               const float *b, float *y);

/* Winograd F(2x2, 3x3) (conv_winograd.c) where it fits, in AUTO for
 * layers of 16 channels and 16 filters or more, and enough tiles. */
static int wino_wanted(const geom *g)
{
    if (path_forced == VT_CONV_PATH_WINOGRAD)
        return 1;
    if (path_forced != VT_CONV_PATH_AUTO || g->c < 16 || g->o < 16)
        return 0;
    /* Its set-up (the weights' transform, 16/9 their size, and reading it
     * per chunk) goes with K x R, its gain with the tiles too: C3D's conv5a
     * forward at 128 tiles (batch 4) took 19.0 ms against the implicit
     * GEMM's 19.4, at 256 (batch 8) 29.5 against 47.8. */
    const double tiles = (double)g->n * g->to * ((g->ho + 1) / 2) * ((g->wo + 1) / 2);
    return tiles >= 192;
}

/* gx += the data gradient by Winograd: the forward of gy by the swapped,
 * reversed weights (see vt_conv_igemm_backward_data), unit strides. */
static int wino_backward_data(const geom *g, const float *w, const float *gy, float *gx)
{
    vt_conv_geom b;
    if (!wino_wanted(g) || !vt_conv_swapped_geom(g, &b))
        return 0;
    return vt_conv_wino_run(&b, gy, w, 1, NULL, gx, 1, 0);
}

/* y = conv(x, w) + b, then max(y, 0) when relu: fused into the implicit
 * GEMM's store, a pass of its own on the BLAS paths. The same values
 * either way, and the same as vt_relu's (+0 for NaN and -0). */
static void conv_forward(const geom *g, const float *x, const float *w,
                         const float *b, float *y, int relu)
{
    if (wino_wanted(g) && vt_conv_wino_run(g, x, w, 0, b, y, 0, relu))
        return;
    if ((path_forced == VT_CONV_PATH_AUTO || path_forced == VT_CONV_PATH_IGEMM ||
         path_forced == VT_CONV_PATH_WINOGRAD) &&
        vt_conv_igemm_forward(g, x, w, b, y, relu))
        return;
    conv_forward_paths(g, x, w, b, y);
    if (!relu)
        return;
    const size_t n = (size_t)g->n * g->o * g->to * g->ho * g->wo;
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++)
        y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

static void conv_forward_paths(const geom *g, const float *x, const float *w,
                               const float *b, float *y)
{
    const size_t xs = (size_t)g->c * g->t * g->h * g->w;
    const size_t ys = (size_t)g->o * g->to * g->ho * g->wo;
    const int pointwise = is_pointwise(g);
    const int rows = pointwise ? 0 : tile_rows(g);
    if (use_shared(g)) {
        shared_forward(g, x, w, b, y);
        return;
    }
    if (sample_parallel(g)) {
#pragma omp parallel
        {
            float *col = pointwise ? NULL : col_alloc(g, rows);
#pragma omp for schedule(static)
            for (int n = 0; n < g->n; n++)
                forward_sample(g, x + (size_t)n * xs, w, b, y + (size_t)n * ys, col,
                               rows);
            free(col);
        }
        return;
    }
    float *col = pointwise ? NULL : col_alloc(g, rows);
    for (int n = 0; n < g->n; n++)
        forward_sample(g, x + (size_t)n * xs, w, b, y + (size_t)n * ys, col, rows);
    free(col);
}

/* Adds into whichever of gx, gw, gb is not NULL. */
static void conv_backward(const geom *g, const float *x, const float *w,
                          const float *gy, float *gx, float *gw, float *gb)
{
    const size_t p = (size_t)g->to * g->ho * g->wo;
    const size_t xs = (size_t)g->c * g->t * g->h * g->w, ys = (size_t)g->o * p;
    const int pointwise = is_pointwise(g), nrows = g->to * g->ho;
    const int rows = pointwise ? nrows : tile_rows(g);

    const int igemm = path_forced == VT_CONV_PATH_AUTO || path_forced == VT_CONV_PATH_IGEMM ||
                      path_forced == VT_CONV_PATH_WINOGRAD;
    const int kg = g->c / g->groups * g->kt * g->kh * g->kw;
    /* The taps-by-filters kernel (conv_igemm.c), which reads x in place
     * and sums the bias in the same pass over dy: for few taps (C3D's
     * conv1a, 81; with BLAS and a bias pass its weight gradient at batch
     * 2 took 50.8 ms, this 43.6, medians of 4 alternating rounds), and
     * for long output rows, over which its runs of taps amortise their
     * set-up: conv2a's (56 wide) 312.9 -> 291.5 ms, 5 of 6 alternating
     * rounds; conv3a's (28 wide) went 148.8 -> 154-158, conv5a's (7)
     * 18 -> 28. And for 128 filters or fewer, where the other kernel's
     * packed columns each feed too few FMAs: ConvLSTM's layers at batch
     * 4, 2 threads, res1a (32 filters) 8.1 -> 5.8 ms, res2b (64) 6.9 ->
     * 5.8, res3b (128) 7.3 -> 6.0. Not 1x1x1 ones: BLAS reads x in place
     * there, this would copy it first. */
    if (gw && igemm && (kg < 128 || g->wo >= 40 || g->o <= 128) && !is_pointwise(g) &&
        vt_conv_igemm_backward_weight_taps(g, x, gy, gw, gb)) {
        gw = NULL;
        gb = NULL;
        if (!gx)
            return;
    }
    if (gb) {
#pragma omp parallel for schedule(static) if ((size_t)g->n * ys > 32768)
        for (int o = 0; o < g->o; o++) {
            /* eight partial sums, lane l taking elements l mod 8 of each
             * row, so the loop vectorises (one chain was latency-bound:
             * conv1a's weight gradient at batch 2 took 70 ms, now 50);
             * added in a fixed order, so still independent of threads */
            double s8[8] = {0};
            for (int n = 0; n < g->n; n++) {
                const float *r = gy + (size_t)n * ys + (size_t)o * p;
                size_t i = 0;
                for (; i + 8 <= p; i += 8)
                    for (int l = 0; l < 8; l++)
                        s8[l] += r[i + l];
                for (; i < p; i++)
                    s8[i % 8] += r[i];
            }
            gb[o] += (float)(((s8[0] + s8[1]) + (s8[2] + s8[3])) +
                             ((s8[4] + s8[5]) + (s8[6] + s8[7])));
        }
    }
    if (!gx && !gw)
        return;
    /* The implicit-GEMM kernel, in AUTO and IGEMM (the forced BLAS paths
     * keep BLAS throughout): with unit strides the data gradient is a
     * forward convolution; else W^T is packed once for its column
     * gradient. */
    /* The weight gradient of 128 taps or more. Fewer taps in groups (the
     * taps-by-filters kernel above takes groups of 1) stay on BLAS unless
     * forced: this kernel's 16-tap panels run part empty there and packing
     * costs more per multiply (conv1a, batch 2: 69-82 vs 92-131 ms). */
    const int forced = path_forced == VT_CONV_PATH_IGEMM || path_forced == VT_CONV_PATH_WINOGRAD;
    if (gw && igemm && (kg >= 128 || forced) && vt_conv_igemm_backward_weight(g, x, gy, gw)) {
        gw = NULL;
        if (!gx)
            return;
    }
    if (gx && !pointwise && wino_backward_data(g, w, gy, gx)) {
        gx = NULL;
        if (!gw)
            return;
    }
    if (gx && igemm && !pointwise && vt_conv_igemm_backward_data(g, w, gy, gx)) {
        gx = NULL;
        if (!gw)
            return;
    }
    /* packed only for the two paths that use it (not the batch-of-1 one) */
    const int shared = use_shared(g), threaded = gx ? sample_parallel(g) : big_enough(g);
    const float *wt = gx && !pointwise && igemm && (shared || threaded)
                          ? vt_conv_igemm_pack_wt(g, w)
                          : NULL;
    if (shared) {
        shared_backward(g, x, w, wt, gy, gx, gw);
        return;
    }
    if (threaded) {
        backward_threads(g, x, w, wt, gy, gx, gw, rows);
        return;
    }
    /* Samples do not share out (a batch of 1, say): the weight gradient
     * still splits over tiles, and the data gradient goes a sample at a time
     * with threads inside each GEMM, vol2col and col2vol. */
    if (gw && big_enough(g)) {
        backward_threads(g, x, w, NULL, gy, NULL, gw, rows);
        gw = NULL;
    }
    float *col = pointwise ? NULL : col_alloc(g, rows);
    for (int n = 0; n < g->n; n++)
        for (int r0 = 0; r0 < nrows; r0 += rows)
            backward_tile(g, x + (size_t)n * xs, w, NULL, gy + (size_t)n * ys,
                          gx ? gx + (size_t)n * xs : NULL, gw, col, r0,
                          nrows - r0 < rows ? nrows - r0 : rows);
    free(col);
}

/* ==== Ops ============================================================== */

/* Both ops record x, w (and b) as inputs and the geometry as saved state;
 * w keeps its own shape, so its gradient lands in the tensor passed in. */
static void conv_op_backward(vt_ctx *c, vt_node *nd)
{
    const geom *g = nd->saved;
    vt_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->n_in > 2 ? nd->in[2] : NULL;
    vt_tensor *y = nd->out[0];
    float *gx = x->requires_grad ? vt_grad(c, x) : NULL;
    float *gw = w->requires_grad ? vt_grad(c, w) : NULL;
    float *gb = b && b->requires_grad ? vt_grad(c, b) : NULL;
    conv_backward(g, x->data, w->data, y->grad, gx, gw, gb);
}
const vt_op_def vt_op_conv3d = {"conv3d", conv_op_backward};
const vt_op_def vt_op_conv2d_frames = {"conv2d_frames", conv_op_backward};

/* relu: with a gradient to record, the conv's node then vt_relu_inplace
 * (whose bit mask is all the pair saves); without, fused into the conv. */
static vt_tensor *conv_run(vt_ctx *c, const vt_op_def *op, const geom *g,
                           vt_tensor *x, vt_tensor *w, vt_tensor *b, int relu)
{
    char buf[64];
    if (b)
        VT_ASSERT(b->numel == (size_t)g->o, "conv: bias %s for %d filters",
                  vt_shape_str(b, buf, sizeof buf), g->o);
    vt_tensor *y = vt_empty(c, 5, g->n, g->o, g->to, g->ho, g->wo);
    vt_tensor *in[3] = {x, w, b};
    int n_in = b ? 3 : 2;
    const int grad = vt_needs_grad(c, n_in, in);
    conv_forward(g, x->data, w->data, b ? b->data : NULL, y->data, relu && !grad);
    if (!grad)
        return y;
    geom *s = vt_arena_alloc(&c->arena, sizeof *s);
    *s = *g;
    vt_node_no_data(c, vt_record(c, op, n_in, in, 1, &y, s), VT_BWD_NO_OUT_DATA);
    return relu ? vt_relu_inplace(c, y) : y;
}

vt_tensor *vt_conv3d(vt_ctx *c, vt_tensor *x, vt_tensor *w, vt_tensor *b,
                     const vt_conv3d_args *a)
{
    geom g;
    geom_from_3d(&g, x, w, a);
    return conv_run(c, &vt_op_conv3d, &g, x, w, b, 0);
}

vt_tensor *vt_conv3d_relu(vt_ctx *c, vt_tensor *x, vt_tensor *w, vt_tensor *b,
                          const vt_conv3d_args *a)
{
    geom g;
    geom_from_3d(&g, x, w, a);
    return conv_run(c, &vt_op_conv3d, &g, x, w, b, 1);
}

static vt_tensor *conv2d_frames(vt_ctx *c, vt_tensor *x, vt_tensor *w, vt_tensor *b,
                                const vt_conv2d_args *a, int relu)
{
    char buf[64];
    VT_ASSERT(w->ndim == 4, "conv2d_frames: w must be (O, C/groups, kh, kw), got %s",
              vt_shape_str(w, buf, sizeof buf));
    vt_conv3d_args a3 = {
        .stride = {1, a->stride[0], a->stride[1]},
        .pad = {0, a->pad[0], a->pad[1]},
        .dilation = {1, a->dilation[0], a->dilation[1]},
        .groups = a->groups,
    };
    geom g;
    geom_init(&g, x, w->shape[0], w->shape[1], 1, w->shape[2], w->shape[3], &a3);
    return conv_run(c, &vt_op_conv2d_frames, &g, x, w, b, relu);
}

vt_tensor *vt_conv2d_frames(vt_ctx *c, vt_tensor *x, vt_tensor *w,
                            vt_tensor *b, const vt_conv2d_args *a)
{
    return conv2d_frames(c, x, w, b, a, 0);
}

vt_tensor *vt_conv2d_frames_relu(vt_ctx *c, vt_tensor *x, vt_tensor *w,
                                 vt_tensor *b, const vt_conv2d_args *a)
{
    return conv2d_frames(c, x, w, b, a, 1);
}

/* ==== Reference kernels ================================================ */

/* Direct loops, no BLAS, no threads: the definition the fast path is
 * tested against. Gathers (y, gw, gb) sum in double; gx is scattered. */

/* Flat index of x[n, ch, ti, hi, wi], or -1 when the tap falls in padding. */
static long tap(const geom *g, int n, int ch, int to, int ho, int wo, int i,
                int j, int l)
{
    int ti = to * g->st - g->pt + i * g->dt;
    int hi = ho * g->sh - g->ph + j * g->dh;
    int wi = wo * g->sw - g->pw + l * g->dw;
    if (ti < 0 || ti >= g->t || hi < 0 || hi >= g->h || wi < 0 || wi >= g->w)
        return -1;
    return (((long)n * g->c + ch) * g->t + ti) * (long)g->h * g->w +
           (long)hi * g->w + wi;
}

void vt_conv3d_ref_forward(const vt_tensor *x, const vt_tensor *w,
                           const vt_tensor *b, const vt_conv3d_args *a,
                           vt_tensor *y)
{
    geom g;
    geom_from_3d(&g, x, w, a);
    VT_ASSERT(y->ndim == 5 && y->shape[0] == g.n && y->shape[1] == g.o &&
                  y->shape[2] == g.to && y->shape[3] == g.ho && y->shape[4] == g.wo,
              "conv3d_ref_forward: y has the wrong shape");
    const int og = g.o / g.groups, cg = g.c / g.groups;
    float *yv = y->data;
    for (int n = 0; n < g.n; n++)
        for (int o = 0; o < g.o; o++)
            for (int to = 0; to < g.to; to++)
                for (int ho = 0; ho < g.ho; ho++)
                    for (int wo = 0; wo < g.wo; wo++) {
                        double s = b ? b->data[o] : 0.0;
                        for (int ci = 0; ci < cg; ci++)
                            for (int i = 0; i < g.kt; i++)
                                for (int j = 0; j < g.kh; j++)
                                    for (int l = 0; l < g.kw; l++) {
                                        long xi = tap(&g, n, o / og * cg + ci, to,
                                                      ho, wo, i, j, l);
                                        if (xi < 0)
                                            continue;
                                        size_t wi = (((size_t)o * cg + ci) * g.kt + i) *
                                                        g.kh * g.kw + (size_t)j * g.kw + l;
                                        s += (double)x->data[xi] * w->data[wi];
                                    }
                        *yv++ = (float)s;
                    }
}

void vt_conv3d_ref_backward(const vt_tensor *x, const vt_tensor *w,
                            const vt_conv3d_args *a, const float *gy,
                            float *gx, float *gw, float *gb)
{
    geom g;
    geom_from_3d(&g, x, w, a);
    const int og = g.o / g.groups, cg = g.c / g.groups;
    const size_t p = (size_t)g.to * g.ho * g.wo;
    if (gb)
        for (int o = 0; o < g.o; o++) {
            double s = 0;
            for (int n = 0; n < g.n; n++)
                for (size_t i = 0; i < p; i++)
                    s += gy[((size_t)n * g.o + o) * p + i];
            gb[o] += (float)s;
        }
    if (gw)
        for (int o = 0; o < g.o; o++)
            for (int ci = 0; ci < cg; ci++)
                for (int i = 0; i < g.kt; i++)
                    for (int j = 0; j < g.kh; j++)
                        for (int l = 0; l < g.kw; l++) {
                            double s = 0;
                            const float *gyo = gy + (size_t)o * p;
                            for (int n = 0; n < g.n; n++, gyo += (size_t)g.o * p)
                                for (int to = 0; to < g.to; to++)
                                    for (int ho = 0; ho < g.ho; ho++)
                                        for (int wo = 0; wo < g.wo; wo++) {
                                            long xi = tap(&g, n, o / og * cg + ci,
                                                          to, ho, wo, i, j, l);
                                            if (xi >= 0)
                                                s += (double)gyo[((size_t)to * g.ho + ho) *
                                                                 g.wo + wo] * x->data[xi];
                                        }
                            gw[(((size_t)o * cg + ci) * g.kt + i) * g.kh * g.kw +
                               (size_t)j * g.kw + l] += (float)s;
                        }
    if (gx)
        for (int n = 0; n < g.n; n++)
            for (int o = 0; o < g.o; o++)
                for (int to = 0; to < g.to; to++)
                    for (int ho = 0; ho < g.ho; ho++)
                        for (int wo = 0; wo < g.wo; wo++) {
                            float d = gy[(((size_t)n * g.o + o) * g.to + to) * g.ho * g.wo +
                                         (size_t)ho * g.wo + wo];
                            for (int ci = 0; ci < cg; ci++)
                                for (int i = 0; i < g.kt; i++)
                                    for (int j = 0; j < g.kh; j++)
                                        for (int l = 0; l < g.kw; l++) {
                                            long xi = tap(&g, n, o / og * cg + ci, to,
                                                          ho, wo, i, j, l);
                                            if (xi >= 0)
                                                gx[xi] += d * w->data[(((size_t)o * cg + ci) *
                                                                           g.kt + i) * g.kh * g.kw +
                                                                          (size_t)j * g.kw + l];
                                        }
                        }
}
