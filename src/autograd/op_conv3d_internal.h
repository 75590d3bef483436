/* op_conv3d_internal.h - test and benchmark hooks of op_conv3d.c (not part
 * of the API).
 *
 * The fast convolution builds its column matrix for a tile of output rows
 * (to, ho) at a time, as many rows as fit in the tile budget (at least one).
 * Tests shrink the budget so small shapes span several tiles and the tile
 * boundaries get exercised. Not thread-safe: set it between ops, not during.
 */
#ifndef OP_CONV3D_INTERNAL_H
#define OP_CONV3D_INTERNAL_H

#include <stddef.h>

#define VT_CONV_TILE_BYTES_DEFAULT ((size_t)8 << 20)
/* Budget of the one column tile all threads share (layers with large K on
 * small maps, see use_shared in op_conv3d.c). */
#define VT_CONV_SHARED_BYTES_DEFAULT ((size_t)32 << 20)

/* Column-buffer budget in bytes, of either path (per thread, or the shared
 * tile); 0 restores both defaults. Returns the old per-thread one. */
size_t vt_conv_set_tile_bytes(size_t bytes);

/* Which fast path runs: chosen by layer shape (AUTO), or forced for tests
 * and benchmarks: SAMPLE tiles within a sample, a sample (or tile) per
 * thread; SHARED tiles across the batch, every thread on one tile with the
 * GEMMs split over output rows; IGEMM the implicit GEMM (conv_igemm.c);
 * WINOGRAD Winograd F(2x2, 3x3) (conv_winograd.c) for every pass and
 * shape it takes, the implicit GEMM for the rest. Returns the old
 * setting. */
enum {
    VT_CONV_PATH_AUTO,
    VT_CONV_PATH_SAMPLE,
    VT_CONV_PATH_SHARED,
    VT_CONV_PATH_IGEMM,
    VT_CONV_PATH_WINOGRAD,
};
int vt_conv_set_path(int path);
/* The path called name ("auto", "sample", "shared", "igemm" or
 * "winograd", as the enum's order), or -1: the benchmarks' --path. */
int vt_conv_path_named(const char *name);

/* The geometry of one convolution call, as op_conv3d.c derives it. */
typedef struct {
    int n, c, t, h, w;              /* input */
    int o, kt, kh, kw;              /* weight */
    int st, sh, sw, pt, ph, pw, dt, dh, dw;
    int groups;
    int to, ho, wo;                 /* output */
} vt_conv_geom;

/* Implicit-GEMM forward (conv_igemm.c): the AVX2+FMA kernel that packs its
 * columns straight from x, no column matrix; relu: y = max(conv, 0), fused
 * into the kernel's last store. Returns 0, having done nothing, when this
 * CPU lacks AVX2/FMA or the shape is out of its range (the caller then
 * takes the BLAS paths). */
int vt_conv_igemm_forward(const vt_conv_geom *g, const float *x, const float *w,
                          const float *b, float *y, int relu);
/* gx += the data gradient, for unit strides only (else returns 0, having
 * done nothing): a forward convolution of gy by the swapped, reversed
 * weights, on the kernel above. */
int vt_conv_igemm_backward_data(const vt_conv_geom *g, const float *w, const float *gy,
                                float *gx);
/* b = the geometry of g's data gradient as a forward convolution of dy
 * (by the swapped, reversed weights, padded by d*(k-1) - p); 0 when g's
 * strides are not all 1 or that padding would be negative. */
int vt_conv_swapped_geom(const vt_conv_geom *g, vt_conv_geom *b);
/* Backward-data with the same kernel: W^T packed once per call (NULL when
 * this CPU lacks AVX2/FMA; the buffer is the calling thread's, valid until
 * its next igemm call), then per tile col rows = W^T . dy for the tap
 * panels [p_lo, p_hi) of group gr (panels of 6 taps: rows 6*p_lo up to
 * min(6*p_hi, K)); dy is (O/groups x nq) with row stride lddy, col row
 * stride ldcol. Overwrites those rows of col. */
float *vt_conv_igemm_pack_wt(const vt_conv_geom *g, const float *w);
void vt_conv_igemm_dcol(const vt_conv_geom *g, const float *wt, int gr, int p_lo,
                        int p_hi, const float *dy, size_t lddy, int nq, float *col,
                        size_t ldcol);
#define VT_CONV_IGEMM_PANEL 6
/* gw += the weight gradient, summed over the batch: the kernel above with
 * the positions as its depth, the columns packed straight from x. Returns
 * 0, having done nothing, when this CPU lacks AVX2/FMA or the shape is out
 * of its range. */
int vt_conv_igemm_backward_weight(const vt_conv_geom *g, const float *x, const float *gy,
                                  float *gw);
/* The same with taps as the kernel's 6 rows, read from x in place, and
 * filters as its 16 columns (for layers of few taps, C3D's conv1a, or of
 * long output rows, conv2a), and gb += the bias gradient in the same pass
 * when gb is not NULL. Groups of 1 only;
 * returns 0, having done nothing, as above. */
int vt_conv_igemm_backward_weight_taps(const vt_conv_geom *g, const float *x, const float *gy,
                                       float *gw, float *gb);
/* Whether this CPU runs the kernel above. */
int vt_conv_igemm_supported(void);
/* c (6 x 16, row stride ldc) = a . b, or += when add: the kernel above on
 * a packed panel a (kc x 6, tap-major) and b (kc x 16). */
void vt_conv_gemm_6x16(int kc, const float *a, const float *b, float *c, size_t ldc, int add);
/* The calling thread's buffer for packed weights (conv_igemm.c's, kept
 * between calls), at least n floats. */
float *vt_conv_packed_buffer(size_t n);

/* A buffer a thread keeps between calls, grown when a call needs more
 * (zero-initialise it; conv_igemm.c's and conv_winograd.c's scratch). */
typedef struct {
    void *p;
    size_t cap;
} vt_conv_scratch;
void *vt_conv_scratch_get(vt_conv_scratch *s, size_t bytes, const char *what);

/* Winograd F(2x2, 3x3) (conv_winograd.c): whether it takes this shape
 * (3x3 in space, unit spatial stride and dilation, groups of 1, AVX2). */
int vt_conv_wino_fits(const vt_conv_geom *g);
/* y = conv(x, w) + b (ReLU'd when relu), or y += conv(x, w) when
 * accumulate; swapped: w is read with filters and channels swapped and
 * taps reversed (a data gradient's). Returns 0, having done nothing, when
 * the shape does not fit. */
int vt_conv_wino_run(const vt_conv_geom *g, const float *x, const float *w, int swapped,
                     const float *b, float *y, int accumulate, int relu);

#endif
