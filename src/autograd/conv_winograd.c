/* conv_winograd.c - 3x3 (x kt) convolutions of unit spatial stride by
 * Winograd's F(2x2, 3x3) over height and width, summed over the kernel
 * frames as a plain reduction: the forward, and the data gradient as the
 * forward of dy by the swapped, reversed weights.
 *
 * Why: C3D's conv2a-conv5b and ConvLSTM's residual convolutions are all
 * 3x3 in space with unit stride. The implicit GEMM (conv_igemm.c) runs
 * them near the FMA peak, so the only way to be faster is fewer
 * multiplies: F(2x2, 3x3) makes 16 per 2x2 output tile and input channel
 * and kernel frame where the direct form makes 36, and the rest of the
 * work (the transforms) is linear in the input and output sizes, not in
 * their product.
 *
 * Per tile of 2x2 outputs (one output frame), with d the 4x4 input patch
 * of channel c in input frame f and g the 3x3 kernel of (k, c, kt):
 *     y = A^T [ sum over (kt, c) of (G g G^T) . (B^T d B) ] A
 * so for each of the 16 points xi of the transformed tile the sum is a
 * GEMM: M[xi] (K x tiles) = U[xi] (K x R) . V[xi] (R x tiles), where
 * R = kernel frames x channels. It runs on conv_igemm.c's 6x16 kernel:
 * U packed in 6-filter panels once per call, V packed straight by the
 * input transform into 16-tile panels.
 *
 * Tiles are grouped by which kernel frames reach inside the clip (output
 * frames at the clip's ends see fewer), so a chunk's sums run over its
 * frames' taps only: the temporal padding costs nothing.
 *
 * Blocking: a work item is a chunk of up to PC tiles of one frame class
 * (PC: chunk_tiles, up to 256, so that M below stays within 8 MB)
 * (any samples and frames). Per KC block of R it transforms its patches
 * into V (16 x KC x PC), then for every xi, per MC block of filter panels
 * (U's, L2), every 16-tile panel meets every filter panel; the sums stay
 * in M (16 x K x PC) until the inverse transform adds the bias and stores
 * y (or adds into it).
 *
 * Determinism: a tile's sums run over the same (kt, c) in the same KC
 * blocks whatever the chunk, thread or thread count: results do not
 * depend on the threads.
 *
 * Accuracy: the transforms' coefficients are 0, +-1 and 1/2, but the
 * transformed sums are larger than the outputs they cancel down to, so
 * the rounding about doubles: against float64 on a 64-channel C3D-like
 * layer, RMS relative error 3.6e-7 (y) and 4.1e-7 (dx), where the implicit
 * GEMM gives 2.0e-7 and 2.0e-7 and PyTorch's oneDNN 2.5e-7 and 2.6e-7 on
 * the same kind of data. test_conv checks every case against the
 * reference kernels at the same tolerance as the rest, and the models'
 * PyTorch parity tests pass with it. The weight gradient stays on the
 * implicit GEMM: by Winograd (tried) its rounding doubled as well, and
 * c3d_small's 10-step Adam parity then failed on a weight whose gradient
 * is near zero, whose Adam steps follow the rounding's sign.
 */
#include "vt_autograd.h"
#include "op_conv3d_internal.h"
#include "avx2_lanes.h"

#include <immintrin.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum {
    MR = VT_CONV_IGEMM_PANEL, /* filters per micro-tile */
    NR = 16,                  /* tiles per micro-tile */
    XI = 16,                  /* points of a transformed tile */
    KC = 256,                 /* taps per block: a 16 KB V micro-panel, L1 */
    MCP = 24,                 /* filter panels per MC block: 144 KB of U, L2 */
};

/* Per-thread buffers kept between calls (their page faults cost more than
 * their memory, see conv_igemm.c's pad_buf). */
static _Thread_local vt_conv_scratch buf_v, buf_m;
static _Thread_local vt_conv_scratch buf_lanes, buf_strips, buf_nstrips, buf_oruns;

/* VT_NO_WINOGRAD=1 turns it off (the implicit GEMM then runs these
 * layers), for comparisons and for runs that want the direct sums. */
static int wino_off(void)
{
    static int off = -1;
    if (off < 0) {
        const char *e = getenv("VT_NO_WINOGRAD");
        off = e && *e && strcmp(e, "0");
    }
    return off;
}

int vt_conv_wino_fits(const vt_conv_geom *g)
{
    if (!vt_cpu_avx2() || wino_off() || g->groups != 1 || g->kh != 3 || g->kw != 3 || g->sh != 1 ||
        g->sw != 1 || g->dh != 1 || g->dw != 1 || g->ph < 0 || g->pw < 0 || g->ph > 2 ||
        g->pw > 2 || g->to < 1 || g->ho < 1 || g->wo < 1)
        return 0;
    /* the lanes' offsets into x, and the weights' gathers, are 32-bit */
    return (double)g->n * g->c * g->t * g->h * g->w < (double)INT_MAX / 2 &&
           (double)g->c * g->o * g->kt * 9 < (double)INT_MAX / 2;
}

/* ---- weights ---------------------------------------------------------- */

/* U = G g G^T for every (k, kt, c), packed per xi in 6-filter panels,
 * tap-major over r = kt * C + c: u + ((xi * panels + p) * R + r) * MR.
 * swapped: w is the layer weight of the convolution whose data gradient
 * this is, read with filters and channels swapped and taps reversed. */
VT_AVX2 static void transform_weights(const vt_conv_geom *g, const float *w, int swapped,
                                      float *u)
{
    const int K = g->o, C = g->c, KT = g->kt, panels = (K + MR - 1) / MR;
    const size_t R = (size_t)KT * C, xs = (size_t)panels * R * MR;
    /* lanes are a panel's filters, gathered (filters lie C*KT*9 floats
     * apart, or KT*9 swapped), so each point's 6 values are one store */
    const int kstride = swapped ? KT * 9 : C * KT * 9;
    const __m256 half = _mm256_set1_ps(0.5f), zero = _mm256_setzero_ps();
#pragma omp for schedule(static)
    for (int p = 0; p < panels; p++) {
        const int live = K - p * MR < MR ? K - p * MR : MR;
        const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                               _mm256_set1_epi32(kstride));
        const __m256 mask = _mm256_castsi256_ps(avx2_lane_mask(live));
        for (size_t r = 0; r < R; r++) {
            const int kt = (int)(r / C), c = (int)(r % C);
            const float *base =
                swapped ? w + (((size_t)c * K + (size_t)p * MR) * KT + (KT - 1 - kt)) * 9
                        : w + (((size_t)p * MR * C + c) * KT + kt) * 9;
            __m256 gg[9];
            for (int q = 0; q < 9; q++)
                gg[q] = _mm256_mask_i32gather_ps(zero, base + (swapped ? 8 - q : q), idx, mask, 4);
            __m256 t[4][3];
            for (int j = 0; j < 3; j++) {
                const __m256 g0 = gg[j], g1 = gg[3 + j], g2 = gg[6 + j];
                const __m256 s02 = _mm256_add_ps(g0, g2);
                t[0][j] = g0;
                t[1][j] = _mm256_mul_ps(half, _mm256_add_ps(s02, g1));
                t[2][j] = _mm256_mul_ps(half, _mm256_sub_ps(s02, g1));
                t[3][j] = g2;
            }
            float *d = u + ((size_t)p * R + r) * MR;
            const int last = r + 1 == R;
            for (int i = 0; i < 4; i++) {
                const __m256 u0 = t[i][0], u1 = t[i][1], u2 = t[i][2];
                const __m256 s02 = _mm256_add_ps(u0, u2);
                const __m256 o[4] = {u0, _mm256_mul_ps(half, _mm256_add_ps(s02, u1)),
                                     _mm256_mul_ps(half, _mm256_sub_ps(s02, u1)), u2};
                for (int j = 0; j < 4; j++) {
                    float *e = d + (size_t)(4 * i + j) * xs;
                    if (!last) {
                        /* 8 floats: the next tap's 2 are written over by it */
                        _mm256_storeu_ps(e, o[j]);
                    } else {
                        _mm_storeu_ps(e, _mm256_castps256_ps128(o[j]));
                        _mm_storel_pi((__m64 *)(e + 4), _mm256_extractf128_ps(o[j], 1));
                    }
                }
            }
        }
    }
}

/* ---- tiles -------------------------------------------------------------- */

/* A frame class: the output frames whose live kernel frames are [lo, hi]. */
typedef struct {
    int lo, hi;
    int nplanes;
    int *planes; /* n * To + to */
} frame_class;

/* One tile lane's whereabouts. */
typedef struct {
    int xoff;      /* offset in x of (n, c 0, frame to*st - pt, row 2th - ph, col 2tw - pw) */
    int row, col;  /* 2th - ph, 2tw - pw */
    size_t yoff;   /* offset in y of (n, k 0, to, 2th, 2tw) */
    int yh, yw;    /* 2th, 2tw */
} lane;

static void lane_of(const vt_conv_geom *g, const frame_class *fc, long t, lane *l)
{
    const int th_n = (g->ho + 1) / 2, tw_n = (g->wo + 1) / 2, per = th_n * tw_n;
    const int plane = fc->planes[t / per], tp = (int)(t % per);
    const int n = plane / g->to, to = plane % g->to, th = tp / tw_n, tw = tp % tw_n;
    const int f = to * g->st - g->pt;
    l->row = 2 * th - g->ph;
    l->col = 2 * tw - g->pw;
    l->xoff = (int)((((long)n * g->c * g->t + f) * g->h + l->row) * g->w + l->col);
    l->yh = 2 * th;
    l->yw = 2 * tw;
    l->yoff = (((size_t)n * g->o * g->to + to) * g->ho + l->yh) * g->wo + l->yw;
}

/* ---- input transform ---------------------------------------------------- */

/* B^T d B of 8 tiles at once, d[4 * i + j] the patch's (i, j) across them,
 * stored at v + xi * xs. */
VT_AVX2 static inline void btdb_store(const __m256 d[16], float *v, size_t xs)
{
    __m256 t[16];
    for (int j = 0; j < 4; j++) {
        t[0 + j] = _mm256_sub_ps(d[0 + j], d[8 + j]);
        t[4 + j] = _mm256_add_ps(d[4 + j], d[8 + j]);
        t[8 + j] = _mm256_sub_ps(d[8 + j], d[4 + j]);
        t[12 + j] = _mm256_sub_ps(d[4 + j], d[12 + j]);
    }
    for (int i = 0; i < 4; i++) {
        const __m256 t0 = t[4 * i], t1 = t[4 * i + 1], t2 = t[4 * i + 2], t3 = t[4 * i + 3];
        _mm256_store_ps(v + (size_t)(4 * i + 0) * xs, _mm256_sub_ps(t0, t2));
        _mm256_store_ps(v + (size_t)(4 * i + 1) * xs, _mm256_add_ps(t1, t2));
        _mm256_store_ps(v + (size_t)(4 * i + 2) * xs, _mm256_sub_ps(t2, t1));
        _mm256_store_ps(v + (size_t)(4 * i + 3) * xs, _mm256_sub_ps(t1, t3));
    }
}

/* A run of a lane group's tiles that are consecutive in one tile row:
 * read as one strip of x, its columns deinterleaved into the lanes. off:
 * x's offset of the strip's origin, the column lane 0 would start at
 * (2 floats a lane before the run's first tile); rows: bit i when the
 * patches' row i lies inside x; m: the four loads' masks (columns inside
 * x and belonging to the run's lanes; the others read as zeros, so the
 * runs of a group add up, and no load strays outside x). */
typedef struct {
    __m256i m[4];
    ptrdiff_t off;
    int rows;
    int full;          /* every mask all ones */
    ptrdiff_t lo, hi;  /* the loads' extent from off: [lo, hi) */
} strip;

enum { STRIPS = 8 }; /* a group has at most 8 runs (rows of 1 tile) */

/* The runs of the group of 8 tiles ln[0..live) into st; returns their
 * count. */
VT_AVX2 static int group_strips(const vt_conv_geom *g, const lane *ln, int live, strip *st)
{
    int ns = 0;
    for (int a = 0; a < live;) {
        int e = a + 1;
        while (e < live && ln[e].yw == ln[e - 1].yw + 2)
            e++;
        strip *sp = &st[ns++];
        const int col0 = ln[a].col - 2 * a; /* lane 0's first column */
        sp->off = (ptrdiff_t)ln[a].xoff - 2 * a;
        sp->rows = 0;
        for (int i = 0; i < 4; i++)
            sp->rows |= (ln[a].row + i >= 0 && ln[a].row + i < g->h) << i;
        /* loads at +0, +8 (columns 2l, 2l+1 of lane l) and +2, +10
         * (2l + 2, 2l + 3) */
        static const int at[4] = {0, 8, 2, 10};
        int full = -1;
        for (int q = 0; q < 4; q++) {
            _Alignas(32) int m[8];
            for (int el = 0; el < 8; el++) {
                const int rel = at[q] + el, l = (rel - (q >= 2 ? 2 : 0)) / 2;
                const int col = col0 + rel;
                m[el] = l >= a && l < e && col >= 0 && col < g->w ? -1 : 0;
            }
            sp->m[q] = _mm256_load_si256((const __m256i *)m);
            full &= m[0] & m[1] & m[2] & m[3] & m[4] & m[5] & m[6] & m[7];
        }
        sp->full = full != 0;
        int r_lo = 0, r_hi = 3;
        while (r_lo < 4 && !(sp->rows >> r_lo & 1))
            r_lo++;
        while (r_hi >= 0 && !(sp->rows >> r_hi & 1))
            r_hi--;
        sp->lo = (ptrdiff_t)r_lo * g->w;
        sp->hi = (ptrdiff_t)r_hi * g->w + 18;
        a = e;
    }
    return ns;
}

/* Transforms the KC-block [r0, r0 + kc) of a group's 8 tiles (its runs
 * st[0..ns)) into v (v + xi * xs + r * NR). */
VT_AVX2 static void transform_group(const vt_conv_geom *g, const float *x, const strip *st,
                                    int ns, int lo, int r0, int kc, float *v, size_t xs)
{
    const int C = g->c, W = g->w;
    const size_t hw = (size_t)g->h * W, thw = (size_t)g->t * hw;
    const ptrdiff_t total = (ptrdiff_t)((size_t)g->n * C * thw);
    const __m256 zero = _mm256_setzero_ps();
    for (int r = r0; r < r0 + kc; r++) {
        const int kt = lo + r / C, c = r % C;
        const ptrdiff_t base = (ptrdiff_t)((size_t)c * thw + (size_t)kt * g->dt * hw);
        __m256 d[16];
        for (int q = 0; q < 16; q++)
            d[q] = zero;
        for (int s = 0; s < ns; s++) {
            const strip *sp = &st[s];
            /* the strip's origin may lie before x (a run starting at lane
             * a > 0, or at column -1): plain loads, masked after, where
             * its extent lies inside x; masked loads at x's ends */
            const ptrdiff_t at = base + sp->off;
            const int inside = at + sp->lo >= 0 && at + sp->hi <= total;
            const float *p = x + at;
            for (int i = 0; i < 4; i++) {
                if (!(sp->rows >> i & 1))
                    continue;
                const float *pr = p + (ptrdiff_t)i * W;
                __m256 a0, b0, a2, b2;
                if (sp->full) {
                    a0 = _mm256_loadu_ps(pr);
                    b0 = _mm256_loadu_ps(pr + 8);
                    a2 = _mm256_loadu_ps(pr + 2);
                    b2 = _mm256_loadu_ps(pr + 10);
                } else if (inside) {
                    a0 = _mm256_and_ps(_mm256_loadu_ps(pr), _mm256_castsi256_ps(sp->m[0]));
                    b0 = _mm256_and_ps(_mm256_loadu_ps(pr + 8), _mm256_castsi256_ps(sp->m[1]));
                    a2 = _mm256_and_ps(_mm256_loadu_ps(pr + 2), _mm256_castsi256_ps(sp->m[2]));
                    b2 = _mm256_and_ps(_mm256_loadu_ps(pr + 10), _mm256_castsi256_ps(sp->m[3]));
                } else {
                    a0 = _mm256_maskload_ps(pr, sp->m[0]);
                    b0 = _mm256_maskload_ps(pr + 8, sp->m[1]);
                    a2 = _mm256_maskload_ps(pr + 2, sp->m[2]);
                    b2 = _mm256_maskload_ps(pr + 10, sp->m[3]);
                }
                if (ns == 1) {
                    d[4 * i + 0] = avx2_even(a0, b0);
                    d[4 * i + 1] = avx2_odd(a0, b0);
                    d[4 * i + 2] = avx2_even(a2, b2);
                    d[4 * i + 3] = avx2_odd(a2, b2);
                } else {
                    d[4 * i + 0] = _mm256_add_ps(d[4 * i + 0], avx2_even(a0, b0));
                    d[4 * i + 1] = _mm256_add_ps(d[4 * i + 1], avx2_odd(a0, b0));
                    d[4 * i + 2] = _mm256_add_ps(d[4 * i + 2], avx2_even(a2, b2));
                    d[4 * i + 3] = _mm256_add_ps(d[4 * i + 3], avx2_odd(a2, b2));
                }
            }
        }
        btdb_store(d, v + (size_t)(r - r0) * NR, xs);
    }
}

/* ---- output transform ---------------------------------------------------- */

/* Where a group's 8 tiles go in y, the same for every filter: runs of
 * tiles consecutive in one tile row, each a span of its output rows cut
 * at y's right edge; whole when the group is one run of 8 inside y. */
typedef struct {
    int n, whole;
    struct {
        size_t yoff; /* y's offset of the run's first output (filter 0) */
        short a, nc, rows;
    } run[STRIPS];
} out_runs;

static void group_out_runs(const vt_conv_geom *g, const lane *ln, int live, out_runs *o)
{
    o->whole = live == 8 && ln[7].yh == ln[0].yh && ln[7].yw == ln[0].yw + 14 &&
               ln[0].yh + 1 < g->ho && ln[7].yw + 1 < g->wo;
    o->n = 0;
    for (int a = 0; a < live;) {
        int e = a + 1;
        while (e < live && ln[e].yw == ln[e - 1].yw + 2)
            e++;
        const int nc = 2 * (e - a) < g->wo - ln[a].yw ? 2 * (e - a) : g->wo - ln[a].yw;
        o->run[o->n].yoff = ln[a].yoff;
        o->run[o->n].a = (short)a;
        o->run[o->n].nc = (short)nc;
        o->run[o->n].rows = (short)(ln[a].yh + 1 < g->ho ? 2 : 1);
        o->n++;
        a = e;
    }
}

/* A^T M A of 8 tiles for filter k (m: M's row of xi 0, xs apart), plus
 * bias, ReLU, stored or added into y at the group's runs runs. */
VT_AVX2 static void store_group(const vt_conv_geom *g, const out_runs *runs, const float *m,
                                size_t xs, int k, float bias, int accumulate, int relu,
                                float *y)
{
    __m256 s[8];
    for (int j = 0; j < 4; j++) {
        const __m256 m0 = _mm256_load_ps(m + (size_t)j * xs),
                     m1 = _mm256_load_ps(m + (size_t)(4 + j) * xs),
                     m2 = _mm256_load_ps(m + (size_t)(8 + j) * xs),
                     m3 = _mm256_load_ps(m + (size_t)(12 + j) * xs);
        s[j] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
        s[4 + j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
    }
    const __m256 bv = _mm256_set1_ps(bias), zero = _mm256_setzero_ps();
    __m256 o[4];
    for (int i = 0; i < 2; i++) {
        o[2 * i] = _mm256_add_ps(_mm256_add_ps(s[4 * i], s[4 * i + 1]), s[4 * i + 2]);
        o[2 * i + 1] = _mm256_sub_ps(_mm256_sub_ps(s[4 * i + 1], s[4 * i + 2]), s[4 * i + 3]);
    }
    if (!accumulate)
        for (int q = 0; q < 4; q++) {
            o[q] = _mm256_add_ps(o[q], bv);
            if (relu)
                o[q] = _mm256_max_ps(o[q], zero);
        }
    const size_t kp = (size_t)k * g->to * g->ho * g->wo;
    /* the two output rows of the 8 tiles, interleaved: 16 floats each */
    __m256 r[2][2];
    for (int i = 0; i < 2; i++) {
        const __m256 lo = _mm256_unpacklo_ps(o[2 * i], o[2 * i + 1]),
                     hi = _mm256_unpackhi_ps(o[2 * i], o[2 * i + 1]);
        r[i][0] = _mm256_permute2f128_ps(lo, hi, 0x20);
        r[i][1] = _mm256_permute2f128_ps(lo, hi, 0x31);
    }
    if (runs->whole) {
        /* one row of 8 tiles inside y: two rows of 16 outputs */
        for (int i = 0; i < 2; i++) {
            float *d = y + runs->run[0].yoff + kp + (size_t)i * g->wo;
            __m256 a = r[i][0], b = r[i][1];
            if (accumulate) {
                a = _mm256_add_ps(a, _mm256_loadu_ps(d));
                b = _mm256_add_ps(b, _mm256_loadu_ps(d + 8));
            }
            _mm256_storeu_ps(d, a);
            _mm256_storeu_ps(d + 8, b);
        }
        return;
    }
    _Alignas(32) float t[2][16];
    for (int i = 0; i < 2; i++) {
        _mm256_store_ps(t[i], r[i][0]);
        _mm256_store_ps(t[i] + 8, r[i][1]);
    }
    for (int q = 0; q < runs->n; q++) {
        const int nc = runs->run[q].nc;
        for (int i = 0; i < runs->run[q].rows; i++) {
            float *d = y + runs->run[q].yoff + kp + (size_t)i * g->wo;
            const float *src = t[i] + 2 * runs->run[q].a;
            if (accumulate)
                for (int j = 0; j < nc; j++)
                    d[j] += src[j];
            else
                for (int j = 0; j < nc; j++)
                    d[j] = src[j];
        }
    }
}

/* ---- the convolution ----------------------------------------------------- */

/* the per-chunk tile count: M (16 x K x PC) up to 8 MB. Every chunk reads
 * all of U (50 MB for C3D's conv4b), so chunks are large: at 2 MB, conv4b
 * streamed U from memory 17 times a batch of 4. */
static int chunk_tiles(int kp)
{
    int pc = (int)(((size_t)8 << 20) / sizeof(float) / XI / (size_t)kp) / NR * NR;
    return pc < NR ? NR : pc > 256 ? 256 : pc;
}

typedef struct {
    int cls;
    long t0;
    int nt;
} work;

/* Groups the output frames into classes by their live kernel frames (fc
 * and plist sized for g->to classes and n * to planes); cls_of[to] gets
 * each frame's class, or -1 when no kernel frame reaches inside the clip.
 * Returns the class count. */
static int classes_of(const vt_conv_geom *g, frame_class *fc, int *plist, int *cls_of)
{
    int ncls = 0;
    for (int to = 0; to < g->to; to++) {
        int lo = -1, hi = -2;
        for (int kt = 0; kt < g->kt; kt++) {
            const int f = to * g->st - g->pt + kt * g->dt;
            if (f >= 0 && f < g->t) {
                if (lo < 0)
                    lo = kt;
                hi = kt;
            }
        }
        cls_of[to] = -1;
        if (lo < 0)
            continue;
        int c = 0;
        while (c < ncls && !(fc[c].lo == lo && fc[c].hi == hi))
            c++;
        if (c == ncls) {
            fc[c].lo = lo;
            fc[c].hi = hi;
            fc[c].nplanes = 0;
            ncls++;
        }
        fc[c].nplanes += g->n;
        cls_of[to] = c;
    }
    for (int c = 0, used = 0; c < ncls; c++) {
        fc[c].planes = plist + used;
        used += fc[c].nplanes;
        fc[c].nplanes = 0;
    }
    for (int n = 0; n < g->n; n++)
        for (int to = 0; to < g->to; to++)
            if (cls_of[to] >= 0) {
                frame_class *f = &fc[cls_of[to]];
                f->planes[f->nplanes++] = n * g->to + to;
            }
    return ncls;
}

/* Chunks of whole 16-tile panels, at most pc tiles, spread evenly over
 * each class; *wk is the caller's to free. Returns their count. */
static long chunks_of(const frame_class *fc, int ncls, int per, int pc, work **wk)
{
    long nwork = 0;
    for (int c = 0; c < ncls; c++)
        nwork += ((long)fc[c].nplanes * per + pc - 1) / pc;
    *wk = malloc((size_t)(nwork ? nwork : 1) * sizeof **wk);
    VT_ASSERT(*wk, "conv: out of memory for work items");
    nwork = 0;
    for (int c = 0; c < ncls; c++) {
        const long tiles = (long)fc[c].nplanes * per;
        const long nc = (tiles + pc - 1) / pc;
        const long panels_c = (tiles + NR - 1) / NR;
        const long ppc = (panels_c + nc - 1) / nc;
        for (long t0 = 0; t0 < tiles; t0 += ppc * NR) {
            (*wk)[nwork].cls = c;
            (*wk)[nwork].t0 = t0;
            (*wk)[nwork].nt = (int)(tiles - t0 < ppc * NR ? tiles - t0 : ppc * NR);
            nwork++;
        }
    }
    return nwork;
}

int vt_conv_wino_run(const vt_conv_geom *g, const float *x, const float *w, int swapped,
                     const float *b, float *y, int accumulate, int relu)
{
    if (!vt_conv_wino_fits(g))
        return 0;
    const int K = g->o, C = g->c, panels = (K + MR - 1) / MR, kp = panels * MR;
    const size_t R = (size_t)g->kt * C;
    const int th_n = (g->ho + 1) / 2, tw_n = (g->wo + 1) / 2, per = th_n * tw_n;
    const size_t ys = (size_t)g->to * g->ho * g->wo;

    frame_class *fc = calloc((size_t)g->to, sizeof *fc);
    int *plist = malloc((size_t)g->n * g->to * sizeof *plist);
    int *cls_of = malloc((size_t)g->to * sizeof *cls_of);
    VT_ASSERT(fc && plist && cls_of, "conv: out of memory for frame classes");
    const int ncls = classes_of(g, fc, plist, cls_of);
    for (int to = 0; to < g->to && !accumulate; to++) {
        if (cls_of[to] >= 0)
            continue;
        /* no kernel frame reaches inside: y = bias */
        for (int n = 0; n < g->n; n++)
            for (int k = 0; k < K; k++) {
                float v = b ? b[k] : 0.0f;
                v = relu && !(v > 0.0f) ? 0.0f : v;
                float *d = y + (size_t)n * K * ys + (size_t)k * ys + (size_t)to * g->ho * g->wo;
                for (int q = 0; q < g->ho * g->wo; q++)
                    d[q] = v;
            }
    }
    free(cls_of);
    const int pc = chunk_tiles(kp);
    work *wk;
    const long nwork = chunks_of(fc, ncls, per, pc, &wk);

    float *u = vt_conv_packed_buffer((size_t)XI * kp * R);
#pragma omp parallel
    {
        transform_weights(g, w, swapped, u);
        /* implicit barrier: U is whole */
        const size_t vpan = (size_t)KC * NR; /* one V micro-panel */
        float *v = vt_conv_scratch_get(&buf_v,
                                       (size_t)XI * ((pc + NR - 1) / NR) * vpan * sizeof(float),
                                       "winograd V");
        const int pcp = (pc + NR - 1) / NR * NR;
        float *mm = vt_conv_scratch_get(&buf_m,
                                        (size_t)XI * kp * pcp * sizeof(float), "winograd M");
        lane *ln = vt_conv_scratch_get(&buf_lanes, (size_t)pcp * sizeof(lane), "winograd lanes");
        strip *sts = vt_conv_scratch_get(&buf_strips, (size_t)pcp / 8 * STRIPS * sizeof(strip),
                                         "winograd strips");
        int *nst = vt_conv_scratch_get(&buf_nstrips,
                                       (size_t)pcp / 8 * sizeof(int), "winograd strips");
        out_runs *ors = vt_conv_scratch_get(&buf_oruns, (size_t)pcp / 8 * sizeof(out_runs),
                                            "winograd output runs");
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < nwork; it++) {
            const work *wi = &wk[it];
            const frame_class *cl = &fc[wi->cls];
            const int np = (wi->nt + NR - 1) / NR, ldm = np * NR;
            for (int q = 0; q < wi->nt; q++)
                lane_of(g, cl, wi->t0 + q, &ln[q]);
            for (int q0 = 0; q0 < np * NR; q0 += 8) {
                const int live = wi->nt - q0 < 0 ? 0 : wi->nt - q0 > 8 ? 8 : wi->nt - q0;
                nst[q0 / 8] = group_strips(g, ln + q0, live, sts + (size_t)q0 / 8 * STRIPS);
                group_out_runs(g, ln + q0, live, &ors[q0 / 8]);
            }
            const size_t rc = (size_t)(cl->hi - cl->lo + 1) * C, rbase = (size_t)cl->lo * C;
            const size_t vxs = (size_t)np * vpan; /* V: xi-major, then panel */
            const size_t mxs = (size_t)kp * ldm;  /* M: xi-major, then filter row */
            for (size_t r0 = 0; r0 < rc; r0 += KC) {
                const int kc = rc - r0 < KC ? (int)(rc - r0) : KC;
                for (int q0 = 0; q0 < np * NR; q0 += 8)
                    transform_group(g, x, sts + (size_t)q0 / 8 * STRIPS, nst[q0 / 8], cl->lo,
                                    (int)r0, kc, v + (size_t)(q0 / NR) * vpan + q0 % NR, vxs);
                for (int xi = 0; xi < XI; xi++) {
                    const float *ux = u + (size_t)xi * panels * R * MR;
                    float *mx = mm + (size_t)xi * mxs;
                    const float *vx = v + (size_t)xi * vxs;
                    for (int i0 = 0; i0 < panels; i0 += MCP) {
                        const int i1 = i0 + MCP < panels ? i0 + MCP : panels;
                        for (int j = 0; j < np; j++)
                            for (int i = i0; i < i1; i++)
                                vt_conv_gemm_6x16(kc, ux + ((size_t)i * R + rbase + r0) * MR,
                                                  vx + (size_t)j * vpan,
                                                  mx + (size_t)i * MR * ldm + (size_t)j * NR,
                                                  (size_t)ldm, r0 > 0);
                    }
                }
            }
            for (int k = 0; k < K; k++)
                for (int q0 = 0; q0 < wi->nt; q0 += 8)
                    store_group(g, &ors[q0 / 8], mm + (size_t)k * ldm + q0, mxs, k,
                                b ? b[k] : 0.0f, accumulate, relu, y);
        }
    }
    free(wk);
    free(fc);
    free(plist);
    return 1;
}
