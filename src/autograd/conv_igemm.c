/* conv_igemm.c - implicit-GEMM convolution on AVX2+FMA CPUs: the forward,
 * the data gradient (as a forward convolution of dy, or through a column
 * buffer with W^T packed once) and the weight gradient (see "Backward,
 * weight" below for its blocking, and "Backward, weight, taps x filters"
 * for layers like C3D's conv1a and conv2a).
 *
 * Why not vol2col + OpenBLAS: that route writes a column matrix (K x P,
 * 173 MB a sample for C3D's conv3b), reads it back to pack it, and repacks
 * the weights for every tile; on C3D's layers the conv then ran at 60-65
 * GFLOP per CPU-second where the same GEMM alone runs at 82-88 (see
 * docs/performance.md). Here the weights are packed once per call, the
 * columns are packed straight from a zero-padded copy of x into the
 * micro-kernel's panel layout (16 positions x KC taps, a few hundred KB),
 * and the bias goes into the first K block's store.
 *
 * Blocking (BLIS order): a work item is a chunk of up to NC output
 * positions counted across the batch, and a share of the output channels
 * when chunks are fewer than threads; for each KC block of taps the chunk's
 * columns are packed (L2/L3), then for each MC block of output channels
 * (its packed weights stay in L2) every 16-position micro-panel (L1) meets
 * every 6-channel weight micro-panel in the 6x16 register kernel.
 *
 * Determinism: each output element is bias + the sum over KC blocks, in
 * order, of one FMA chain over the block's taps, whatever the chunk, the
 * thread or the thread count, so results do not depend on threads at all.
 */
#include "vt_autograd.h"
#include "op_conv3d_internal.h"
#include "avx2_lanes.h"

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    MR = 6,    /* output channels per micro-tile */
    NR = 16,   /* output positions per micro-tile (two ymm) */
    KC = 256,  /* taps per K block: a 16 KB column micro-panel fits L1 */
    MCP = 24,  /* weight micro-panels per MC block at most: 144 x KC = 144 KB, L2 */
    NC = 1024, /* positions per work item at most */
};

int vt_conv_igemm_supported(void) { return vt_cpu_avx2(); }


static void *xalloc(size_t bytes, const char *what)
{
    void *p = vt_alloc_big(bytes);
    VT_ASSERT(p, "conv: out of memory for %s (%zu bytes)", what, bytes);
    return p;
}


/* The 6x16 micro-kernel: c (mv x nv, row stride ldc) = init + A.B, or
 * += A.B when init is NULL; b is kc x NR. Column j is c[j], or c[cols[j]]
 * when cols is given (a micro-tile that spans two samples). The edge path
 * adds the same two numbers as the full one, so an element's value never
 * depends on whether its micro-tile was ragged. Two variants, which differ
 * only in where A's 6 values of tap k are: kernel_6x16 reads packed
 * panels, kernel_6x16_rows the data gradient's weights in place. They
 * share the FMA step and the store; the packed one keeps its single loop
 * (a generic loop over runs served both at first; it was not measurably
 * slower, but the packed kernel is the hot one of every pass). */

/* C's rows are a whole output row apart: fetch them now, or their misses
 * land after the loop, exposed. */
#define C_PREFETCH()                                                            \
    for (int i_ = 0; i_ < MR && !cols; i_++) {                                  \
        _mm_prefetch((const char *)(c + (size_t)i_ * ldc), _MM_HINT_T0);        \
        _mm_prefetch((const char *)(c + (size_t)i_ * ldc + NR - 1), _MM_HINT_T0); \
    }

#define C_ZERO()                                                                \
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, \
           c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00

/* rows i and j of the tile: A's values at pi and pj times B's b0, b1 */
#define FMA_ROWS(pi, pj, ci0, ci1, cj0, cj1)                                    \
    do {                                                                        \
        const __m256 ai = _mm256_broadcast_ss(pi), aj = _mm256_broadcast_ss(pj); \
        ci0 = _mm256_fmadd_ps(ai, b0, ci0);                                     \
        ci1 = _mm256_fmadd_ps(ai, b1, ci1);                                     \
        cj0 = _mm256_fmadd_ps(aj, b0, cj0);                                     \
        cj1 = _mm256_fmadd_ps(aj, b1, cj1);                                     \
    } while (0)

/* one tap: A's 6 values at p0..p5, B's 16 at bk */
#define FMA_STEP(bk, p0, p1, p2, p3, p4, p5)                                    \
    do {                                                                        \
        const __m256 b0 = _mm256_load_ps(bk), b1 = _mm256_load_ps((bk) + 8);   \
        FMA_ROWS(p0, p1, c00, c01, c10, c11);                                   \
        FMA_ROWS(p2, p3, c20, c21, c30, c31);                                   \
        FMA_ROWS(p4, p5, c40, c41, c50, c51);                                   \
    } while (0)

VT_AVX2 static inline __attribute__((always_inline)) void
store_6x16(__m256 c00, __m256 c01, __m256 c10, __m256 c11, __m256 c20, __m256 c21,
           __m256 c30, __m256 c31, __m256 c40, __m256 c41, __m256 c50, __m256 c51,
           float *c, size_t ldc, const float *init, int mv, int nv, const ptrdiff_t *cols,
           int relu)
{
    /* relu: max(v, +0) returns +0 for NaN and -0, as op_elementwise.c's
     * ReLU (v where v > 0, else +0) does */
    const __m256 zero = _mm256_setzero_ps();
    if (mv == MR && nv == NR && !cols) {
#define ROW(i, lo, hi)                                                          \
    do {                                                                        \
        float *r = c + (size_t)(i) * ldc;                                       \
        __m256 s0 = init ? _mm256_set1_ps(init[i]) : _mm256_loadu_ps(r);        \
        __m256 s1 = init ? s0 : _mm256_loadu_ps(r + 8);                         \
        s0 = _mm256_add_ps(s0, lo);                                             \
        s1 = _mm256_add_ps(s1, hi);                                             \
        _mm256_storeu_ps(r, relu ? _mm256_max_ps(s0, zero) : s0);               \
        _mm256_storeu_ps(r + 8, relu ? _mm256_max_ps(s1, zero) : s1);           \
    } while (0)
        ROW(0, c00, c01);
        ROW(1, c10, c11);
        ROW(2, c20, c21);
        ROW(3, c30, c31);
        ROW(4, c40, c41);
        ROW(5, c50, c51);
#undef ROW
        return;
    }
    _Alignas(32) float t[MR * NR];
    _mm256_store_ps(t + 0 * NR, c00);
    _mm256_store_ps(t + 0 * NR + 8, c01);
    _mm256_store_ps(t + 1 * NR, c10);
    _mm256_store_ps(t + 1 * NR + 8, c11);
    _mm256_store_ps(t + 2 * NR, c20);
    _mm256_store_ps(t + 2 * NR + 8, c21);
    _mm256_store_ps(t + 3 * NR, c30);
    _mm256_store_ps(t + 3 * NR + 8, c31);
    _mm256_store_ps(t + 4 * NR, c40);
    _mm256_store_ps(t + 4 * NR + 8, c41);
    _mm256_store_ps(t + 5 * NR, c50);
    _mm256_store_ps(t + 5 * NR + 8, c51);
    for (int i = 0; i < mv; i++) {
        float *r = c + (size_t)i * ldc;
        for (int j = 0; j < nv; j++) {
            float *e = r + (cols ? cols[j] : j);
            const float v = (init ? init[i] : *e) + t[i * NR + j];
            *e = !relu || v > 0.0f ? v : 0.0f;
        }
    }
}

#define C_STORE()                                                               \
    store_6x16(c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c, ldc, init, \
               mv, nv, cols, relu)

/* a: a packed panel, kc x MR tap-major. relu: the tile's last K block,
 * of a ReLU-fused forward: store max(c, 0). */
VT_AVX2 static void kernel_6x16(int kc, const float *a, const float *b, float *c,
                                size_t ldc, const float *init, int mv, int nv,
                                const ptrdiff_t *cols, int relu)
{
    C_PREFETCH();
    C_ZERO();
    /* Unrolled by 4, the taps' loads take immediate offsets, and the
     * pointer updates and the branch come once per 4 taps. On this Zen 3
     * that alone made C3D's layers 5-13% faster, batch 2, 2 threads,
     * medians of 5-8 alternating rounds: conv4a forward 80.3 -> 70.3 ms,
     * data gradient 84.0 -> 72.8, weight gradient 86.0 -> 76.6; conv3b
     * forward 320.9 -> 287.5; conv2a forward 332.8 -> 299.0. The sums are
     * the same FMA chains, bit for bit. */
#pragma GCC unroll 4
    for (int k = 0; k < kc; k++) {
        const float *ak = a + (size_t)k * MR;
        FMA_STEP(b + (size_t)k * NR, ak, ak + 1, ak + 2, ak + 3, ak + 4, ak + 5);
    }
    C_STORE();
}

/* the FMA steps of kernel_6x16 over the runs (start, length) rs, rl only */
#define SEL_LOOP()                                                              \
    for (int r = 0; r < nrun; r++) {                                            \
        const float *ar = a + (size_t)rs[r] * MR, *br = b + (size_t)rs[r] * NR; \
        _Pragma("GCC unroll 4") for (int k = 0; k < rl[r]; k++)                 \
        {                                                                       \
            const float *ak = ar + (size_t)k * MR;                              \
            FMA_STEP(br + (size_t)k * NR, ak, ak + 1, ak + 2, ak + 3, ak + 4, ak + 5); \
        }                                                                       \
    }

/* kernel_6x16 over the runs (start, length) of the block's taps only
 * (see tap_runs): a and b as there, the same FMA order within them. */
VT_AVX2 static void kernel_6x16_sel(int nrun, const int *rs, const int *rl, const float *a,
                                    const float *b, float *c, size_t ldc, const float *init,
                                    int mv, int nv, const ptrdiff_t *cols, int relu)
{
    C_PREFETCH();
    C_ZERO();
    SEL_LOOP();
    C_STORE();
}

/* a: MR rows of taps in place, rs apart, in runs of run taps (kc a
 * multiple), each run jump after the last's start: the data gradient's
 * layer weights (runs of one filter's taps, see igemm_forward), or a
 * ragged panel's copy (rs its row length, one run). */
VT_AVX2 static void kernel_6x16_rows(int kc, const float *a, ptrdiff_t rs, int run,
                                     ptrdiff_t jump, const float *b, float *c, size_t ldc,
                                     const float *init, int mv, int nv,
                                     const ptrdiff_t *cols, int relu)
{
    C_PREFETCH();
    C_ZERO();
    for (int k0 = 0; k0 < kc; k0 += run, a += jump) {
        const float *ar = a, *ar3 = a + 3 * rs;
#pragma GCC unroll 4
        for (int k = 0; k < run; k++)
            FMA_STEP(b + (size_t)k * NR, ar + k, ar + rs + k, ar + 2 * rs + k, ar3 + k,
                     ar3 + rs + k, ar3 + 2 * rs + k);
        b += (size_t)run * NR;
    }
    C_STORE();
}

/* src[0], src[2], ..., src[14]: a w-stride-2 run. */
VT_AVX2 static inline __m256 even_lanes(const float *src)
{
    return avx2_even(_mm256_loadu_ps(src), _mm256_loadu_ps(src + 8));
}

/* Weight panels per MC block: blocks of equal size, at most MCP, so a
 * column micro-panel is not fetched again for a short last block (128
 * filters: one block of 22 panels, not 16 + 6). */
static int mc_panels(int panels)
{
    int blocks = (panels + MCP - 1) / MCP;
    return blocks ? (panels + blocks - 1) / blocks : 1;
}

/* The input, zero-padded on every side by the conv's padding, with GUARD
 * zero floats before and after: every tap of every window then lies
 * inside it, so packing needs no bounds checks, and a micro-panel's loads
 * (16 floats, 32 at w stride 2, which may start up to 15 or 30 floats
 * before a segment) stay inside the allocation. */
enum { GUARD = 2 * NR };

typedef struct {
    int tp, hp, wp; /* padded extents */
    size_t vol, xs; /* one channel, one sample */
} padded;

/* The padded input's extents; 0 when its offsets would not fit the 32
 * bits the kernels use (the caller then takes another path). */
static int padded_of(const vt_conv_geom *g, padded *pd)
{
    pd->tp = g->t + 2 * g->pt;
    pd->hp = g->h + 2 * g->ph;
    pd->wp = g->w + 2 * g->pw;
    pd->vol = (size_t)pd->tp * pd->hp * pd->wp;
    pd->xs = (size_t)g->c * pd->vol;
    return (size_t)g->n * pd->xs + 2 * GUARD < ((size_t)1 << 31);
}

/* Offset of tap k (input channel, i, j, l of the kernel) from its
 * window's origin, in the padded input of one group. */
static int *tap_offsets(const vt_conv_geom *g, const padded *pd, int kg)
{
    const int kvol = g->kt * g->kh * g->kw;
    int *off = xalloc((size_t)kg * sizeof *off, "tap table");
    for (int k = 0; k < kg; k++) {
        int ch = k / kvol, kk = k % kvol;
        int i = kk / (g->kh * g->kw), j = kk / g->kw % g->kh, l = kk % g->kw;
        off[k] = (int)((size_t)ch * pd->vol) +
                 (i * g->dt * pd->hp + j * g->dh) * pd->wp + l * g->dw;
    }
    return off;
}

/* Each thread's scratch is kept between calls, grown when a call needs
 * more: the column panel (1 MB), the position table (90 KB) and the
 * weight gradient's dy panel. Allocated fresh each call, they came back
 * from glibc as new pages to fault in again: some 100 faults a pass in
 * conv1a's, on a VM where faults are slow. A thread runs one conv call at
 * a time, so the forward and the weight gradient share them. */
typedef vt_conv_scratch scratch;
static _Thread_local scratch scr_cols, scr_tab, scr_dy;

void *vt_conv_scratch_get(vt_conv_scratch *s, size_t bytes, const char *what)
                          {
                          if (bytes > s->cap) {
                          free(s->p);
        s->p = xalloc(bytes, what);
        s->cap = bytes;
    }
    return s->p;
}

/* The padded input's buffer is kept between calls, one per thread, grown
 * when a layer needs more: a fresh one each call paid its page faults
 * again, and on this VM first touches are slow and erratic: C3D's conv2a
 * data gradient at batch 2 pads 62 MB, which took 7 to 147 ms to fill
 * fresh (3-4 ms for a reused 31 MB one), in a 300 ms convolution. The
 * C3D training step at batch 4 went from 7.10 to 6.75 s (medians of 3
 * alternating runs), and its peak RSS down from 1448 to 1431 MB: fewer
 * mappings come and go. */
static _Thread_local float *pad_buf;
static _Thread_local size_t pad_cap;

static float *pad_input(const vt_conv_geom *g, const float *x, const padded *pd)
{
    const size_t nvol = (size_t)g->n * g->c, need = nvol * pd->vol + 2 * GUARD;
    if (need > pad_cap) {
        free(pad_buf);
        pad_buf = xalloc(need * sizeof *pad_buf, "padded input");
        pad_cap = need;
    }
    float *xp = pad_buf;
    memset(xp, 0, GUARD * sizeof *xp);
    memset(xp + GUARD + nvol * pd->vol, 0, GUARD * sizeof *xp);
#pragma omp parallel for schedule(static) if (nvol * pd->vol > 65536)
    for (size_t v = 0; v < nvol; v++) {
        float *d = xp + GUARD + v * pd->vol;
        const float *src = x + v * (size_t)g->t * g->h * g->w;
        for (int t = 0; t < pd->tp; t++)
            for (int h = 0; h < pd->hp; h++, d += pd->wp) {
                int ti = t - g->pt, hi = h - g->ph;
                if (ti < 0 || ti >= g->t || hi < 0 || hi >= g->h) {
                    memset(d, 0, (size_t)pd->wp * sizeof *d);
                    continue;
                }
                memset(d, 0, (size_t)g->pw * sizeof *d);
                memcpy(d + g->pw, src + ((size_t)ti * g->h + hi) * g->w,
                       (size_t)g->w * sizeof *d);
                memset(d + g->pw + g->w, 0, (size_t)(pd->wp - g->pw - g->w) * sizeof *d);
            }
    }
    return xp + GUARD;
}

/* ==== Taps in the temporal padding ====================================
 *
 * An output frame near the clip's ends has windows whose first (or last)
 * kernel frames lie wholly in the padding: C3D's conv5 (2 frames, kt 3,
 * padding 1) has a third of every window there, conv4 a sixth on
 * average, conv3 a twelfth. Those taps read zeros; a micro-panel whose
 * positions all lie in such frames skips them: its kernel runs over the
 * taps of the other kernel frames only (tap_runs), in their order, so its
 * sums are those of the full chain less the products with padding. Taps
 * are counted channel-major (tap k: channel k / kvol, kernel frame k %
 * kvol / (kh kw)), so a kernel frame's taps are runs of kh kw. Only the
 * temporal padding: a spatial border's taps are spread through the
 * panel's positions (a row end), not whole panels. The forward kernels
 * (a layer's forward and its unit-stride data gradient) skip them here;
 * the weight gradient, whose 16-tap panels would mix kernel frames (9
 * taps each for 3x3), reorders its taps first (see wstore). */

/* Bit i: kernel frame i of output frame to's windows lies in the input
 * (not the padding). All bits for kt > 31: nothing skipped. */
static unsigned frame_taps(const vt_conv_geom *g, int to)
{
    if (g->kt > 31)
        return ~0u;
    unsigned m = 0;
    for (int i = 0; i < g->kt; i++) {
        const int ti = to * g->st - g->pt + i * g->dt;
        if (ti >= 0 && ti < g->t)
            m |= 1u << i;
    }
    return m;
}

static unsigned all_taps(const vt_conv_geom *g)
{
    return g->kt > 31 ? ~0u : (1u << g->kt) - 1;
}

/* Does any output frame have taps in the padding? */
static int frames_skip(const vt_conv_geom *g)
{
    for (int to = 0; to < g->to; to++)
        if (frame_taps(g, to) != all_taps(g))
            return 1;
    return 0;
}

/* [start, start + len) appended to the n runs (start, length) in rs, rl:
 * the last one lengthened where they touch. */
static inline void run_add(int *rs, int *rl, int *n, int start, int len)
{
    if (*n && rs[*n - 1] + rl[*n - 1] == start)
        rl[*n - 1] += len;
    else {
        rs[*n] = start;
        rl[*n] = len;
        (*n)++;
    }
}

/* The taps of [k0, k0 + kc) whose kernel frame is in mask, as runs (start
 * from k0, length) in order; returns their count (at most kc). */
static int tap_runs(const vt_conv_geom *g, unsigned mask, int k0, int kc, int *rs, int *rl)
{
    const int khw = g->kh * g->kw, kvol = g->kt * khw;
    int n = 0;
    for (int k = k0; k < k0 + kc;) {
        const int i = k % kvol, end0 = k + khw - i % khw;
        const int end = end0 < k0 + kc ? end0 : k0 + kc;
        if (mask >> (i / khw) & 1)
            run_add(rs, rl, &n, k - k0, end - k);
        k = end;
    }
    return n;
}

/* The first and last taps of mask's kernel frames (mask not 0), over the
 * whole K (cg channels of kvol taps): the K blocks holding them take the
 * bias and apply the ReLU. */
static void mask_ends(const vt_conv_geom *g, unsigned mask, int kg, int *kf, int *kl)
{
    const int khw = g->kh * g->kw, kvol = g->kt * khw;
    int lo = 0, hi = g->kt - 1;
    while (!(mask >> lo & 1))
        lo++;
    while (!(mask >> hi & 1))
        hi--;
    *kf = lo * khw;
    *kl = kg - kvol + (hi + 1) * khw - 1;
}

/* The runs of one K block for each panel class (or'ed frame_taps) met in
 * it, computed once a block: a block's panels come in a few classes (the
 * first frames', the last frames', the inner ones'). */
enum { RUN_CLASSES = 4 };
typedef struct {
    int n; /* classes held; set to 0 at each K block */
    unsigned mask[RUN_CLASSES];
    int nrun[RUN_CLASSES], first[RUN_CLASSES], last[RUN_CLASSES];
    int rs[RUN_CLASSES][KC + 1], rl[RUN_CLASSES][KC + 1];
} run_cache;

/* mask's entry for block [k0, k0 + kc) (kc <= KC): its runs, and whether
 * the block holds the class's first live tap (the bias) and its last (the
 * ReLU); -1 once RUN_CLASSES are held (the panel then keeps every tap). */
static int run_class(run_cache *rc, const vt_conv_geom *g, unsigned mask, int kg, int k0,
                     int kc)
{
    for (int c = 0; c < rc->n; c++)
        if (rc->mask[c] == mask)
            return c;
    if (rc->n == RUN_CLASSES)
        return -1;
    const int c = rc->n++;
    int kf, kl;
    rc->mask[c] = mask;
    rc->nrun[c] = tap_runs(g, mask, k0, kc, rc->rs[c], rc->rl[c]);
    mask_ends(g, mask, kg, &kf, &kl);
    rc->first[c] = k0 <= kf && kf < k0 + kc;
    rc->last[c] = k0 <= kl && kl < k0 + kc;
    return c;
}

/* A chunk: positions counted across the batch (q = sample * P + p), so a
 * layer with small maps (C3D's conv5: 98 a sample) still gets wide chunks
 * and reads its weights once per chunk, not once per sample. Each
 * micro-panel of 16 positions (8: a piece of the weight gradient's
 * columns, with lanes = 8 below) is a few segments, runs of positions whose
 * windows are sw apart in the padded input: one output row, or the end of
 * one and the start of the next. */
typedef struct {
    _Alignas(32) int org[NC];     /* window origin in the padded input */
    ptrdiff_t yoff[NC];           /* the position's element of y's first channel */
    unsigned char cross[NC / NR]; /* micro-panel spans two samples */
    int seg0[NC / 8 + 1];         /* segments of panel jb: seg0[jb] .. seg0[jb+1] */
    int soff[NC];                 /* segment: org of its lane 0 (first - j0 * sw) */
    _Alignas(32) int smask[NC][NR]; /* segment: its lanes, -1 / 0 */
    unsigned tcls[NC / 8];        /* panel: frame_taps of its positions, or'ed */
} chunk_tab;

static void chunk_tab_fill(const vt_conv_geom *g, const padded *pd, long q0, int nc,
                           int npan, int lanes, chunk_tab *ct)
{
    const int hw = g->ho * g->wo;
    const long p = (long)g->to * hw;
    const size_t ys = (size_t)g->o * (size_t)p;
    int n0 = 0, ns = 0, fto = -1;
    unsigned fm = 0; /* frame_taps of frame fto: a chunk's positions share few frames */
    for (int j = 0; j < npan * lanes; j++) {
        const int l = j % lanes;
        if (l == 0) {
            ct->seg0[j / lanes] = ns;
            ct->tcls[j / lanes] = 0;
        }
        if (j >= nc) {
            ct->org[j] = 0;
            ct->yoff[j] = 0;
            continue;
        }
        long q = q0 + j;
        int n = (int)(q / p), pp = (int)(q % p);
        int to = pp / hw, ho = pp % hw / g->wo, wo = pp % g->wo;
        if (l == 0)
            n0 = n;
        if (to != fto) {
            fto = to;
            fm = frame_taps(g, to);
        }
        ct->tcls[j / lanes] |= fm;
        ct->org[j] = (int)((size_t)n * pd->xs) +
                     (to * g->st * pd->hp + ho * g->sh) * pd->wp + wo * g->sw;
        ct->yoff[j] = (ptrdiff_t)((size_t)n * ys) + pp;
        if (l == lanes - 1 || j == nc - 1)
            ct->cross[j / lanes] = n != n0;
        if (l == 0 || ct->org[j] != ct->org[j - 1] + g->sw) {
            ct->soff[ns] = ct->org[j] - l * g->sw;
            memset(ct->smask[ns], 0, sizeof ct->smask[ns]);
            ns++;
        }
        ct->smask[ns - 1][l] = -1;
    }
    ct->seg0[npan] = ns;
}

/* Columns of taps [k0, k0 + kc) for the chunk's npan micro-panels, laid
 * out [panel][tap][NR]; taps in padding are 0 (read from the padded
 * input), lanes past the chunk's end 0. xg is the padded input of the
 * group's first channel of sample 0, off the tap offsets. */
VT_AVX2 static void pack_cols(const vt_conv_geom *g, const float *xg,
                              const chunk_tab *ct, int npan, const int *off,
                              int k0, int kc, float *bp)
{
    const __m256 zero = _mm256_setzero_ps();
    for (int jb = 0; jb < npan; jb++) {
        float *dst = bp + (size_t)jb * kc * NR;
        const int s0 = ct->seg0[jb], s1 = ct->seg0[jb + 1];
        if (g->sw == 2) {
            /* every other float of 32: even lanes by shuffles (ConvLSTM's
             * 7x7 stride-2 stem), then the segments' lanes blended */
            for (int k = k0; k < k0 + kc; k++, dst += NR) {
                __m256 va = zero, vb = zero;
                for (int sg = s0; sg < s1; sg++) {
                    const float *src = xg + ct->soff[sg] + off[k];
                    va = _mm256_blendv_ps(va, even_lanes(src),
                                          _mm256_load_ps((const float *)ct->smask[sg]));
                    vb = _mm256_blendv_ps(vb, even_lanes(src + 16),
                                          _mm256_load_ps((const float *)ct->smask[sg] + 8));
                }
                _mm256_store_ps(dst, va);
                _mm256_store_ps(dst + 8, vb);
            }
            continue;
        }
        if (g->sw != 1) {
            /* wider strides: a gather per half, every lane in bounds */
            const int *o = ct->org + jb * NR;
            const __m256i ia = _mm256_load_si256((const __m256i *)o),
                          ib = _mm256_load_si256((const __m256i *)(o + 8));
            for (int k = k0; k < k0 + kc; k++, dst += NR) {
                const float *base = xg + off[k];
                _mm256_store_ps(dst, _mm256_i32gather_ps(base, ia, 4));
                _mm256_store_ps(dst + 8, _mm256_i32gather_ps(base, ib, 4));
            }
            continue;
        }
        if (s1 - s0 == 1 && ct->smask[s0][0] && ct->smask[s0][NR - 1]) {
            /* the panel two ahead (32 positions on, when the row goes
             * on) reads these rows' next line: fetched now, the kernel
             * runs while it comes (conv2a at batch 2, 6 alternating
             * rounds: forward 277.1 -> 270.6 ms, data gradient 297.4 ->
             * 288.0; the same for the blended panels did not help) */
            const float *src = xg + ct->soff[s0];
            for (int k = k0; k < k0 + kc; k++, dst += NR) {
                _mm_prefetch((const char *)(src + off[k] + 2 * NR), _MM_HINT_T0);
                _mm256_store_ps(dst, _mm256_loadu_ps(src + off[k]));
                _mm256_store_ps(dst + 8, _mm256_loadu_ps(src + off[k] + 8));
            }
            continue;
        }
        for (int k = k0; k < k0 + kc; k++, dst += NR) {
            __m256 va = zero, vb = zero;
            for (int sg = s0; sg < s1; sg++) {
                const float *src = xg + ct->soff[sg] + off[k];
                va = _mm256_blendv_ps(va, _mm256_loadu_ps(src),
                                      _mm256_load_ps((const float *)ct->smask[sg]));
                vb = _mm256_blendv_ps(vb, _mm256_loadu_ps(src + 8),
                                      _mm256_load_ps((const float *)ct->smask[sg] + 8));
            }
            _mm256_store_ps(dst, va);
            _mm256_store_ps(dst + 8, vb);
        }
    }
}

/* Weights of every group as [group][K block][panel of MR channels][tap of
 * the block][MR], rows past the group's channel count zero: the panels one
 * MC block multiplies with one K block are one contiguous run. Where panel
 * ir of group gr starts in K block k0 (kc taps long): */
static float *packed_panel(float *ap, int mp, int kg, int gr, int ir, int k0, int kc)
{
    return ap + (size_t)gr * mp * kg * MR + ((size_t)k0 * mp + (size_t)ir * kc) * MR;
}

VT_AVX2 static void pack_weights(const float *w, int groups, int og, int kg, int mp,
                                 float *ap)
{
    /* 8 taps of the panel's 6 rows at a time, transposed; the next panel
     * (another thread's) follows directly, so the last store keeps to 6
     * lanes. Was a scalar loop: 8% of conv5's forward, whose weights (28 MB) are
     * used by only 98 positions a sample. */
    const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
#pragma omp parallel for schedule(static) if ((size_t)groups * og * kg > 65536 && !omp_in_parallel())
    for (int q = 0; q < groups * mp; q++) {
        const int gr = q / mp, ir = q % mp;
        const int live = og - ir * MR < MR ? og - ir * MR : MR;
        for (int k0 = 0; k0 < kg; k0 += KC) {
            const int kc = kg - k0 < KC ? kg - k0 : KC;
            float *d = packed_panel(ap, mp, kg, gr, ir, k0, kc);
            const float *s[MR];
            for (int i = 0; i < MR; i++)
                s[i] = w + ((size_t)gr * og + (size_t)ir * MR + (size_t)(i < live ? i : 0)) * kg + k0;
            int k = 0;
            for (; k + 8 <= kc; k += 8, d += 8 * MR) {
                __m256 r[8];
                for (int i = 0; i < 8; i++)
                    r[i] = i < live ? _mm256_loadu_ps(s[i] + k) : _mm256_setzero_ps();
                avx2_transpose8(r);
                /* 8 floats a tap, the last 2 overwritten by the next tap,
                 * except past the panel's end (masked: vmaskmovps is slow
                 * on AMD, so only there) */
                for (int l = 0; l < 7; l++)
                    _mm256_storeu_ps(d + l * MR, r[l]);
                if (k + 8 < kc)
                    _mm256_storeu_ps(d + 7 * MR, r[7]);
                else
                    _mm256_maskstore_ps(d + 7 * MR, six, r[7]);
            }
            for (; k < kc; k++, d += MR)
                for (int i = 0; i < MR; i++)
                    d[i] = i < live ? s[i][k] : 0.0f;
        }
    }
}

/* The same layout for the data gradient's convolution (see "Backward,
 * data, unit stride"), packed straight from the layer's weight w (O x C/g
 * x kvol): that convolution's output channel c, tap k = o * kvol + i is
 * w[o][c][kvol - 1 - i]. Saves building the swapped weights first (28 MB
 * for C3D's conv5, a fresh allocation and a pass each call). og and kg are
 * the swapped convolution's (C/g and O/g * kvol). */
static void pack_weights_swapped(const float *w, int groups, int og, int kg, int kvol,
                                 int mp, float *ap)
{
    const int ol = kg / kvol; /* the layer's filters per group */
#pragma omp parallel for schedule(static) if ((size_t)groups * og * kg > 65536 && !omp_in_parallel())
    for (int q = 0; q < groups * mp; q++) {
        const int gr = q / mp, ir = q % mp;
        const int live = og - ir * MR < MR ? og - ir * MR : MR;
        for (int k0 = 0; k0 < kg; k0 += KC) {
            const int kc = kg - k0 < KC ? kg - k0 : KC;
            float *d = packed_panel(ap, mp, kg, gr, ir, k0, kc);
            int o = k0 / kvol, i = k0 % kvol;
            for (int k = 0; k < kc; k++, d += MR) {
                const float *src =
                    w + (((size_t)gr * ol + o) * og + (size_t)ir * MR) * kvol + (kvol - 1 - i);
                for (int r = 0; r < MR; r++)
                    d[r] = r < live ? src[(size_t)r * kvol] : 0.0f;
                if (++i == kvol) {
                    i = 0;
                    o++;
                }
            }
        }
    }
}

static const float zeros[MR];

/* The packed weights' buffer is kept between calls: C3D's are up to 28 MB
 * (conv5's; its data gradient packs them only from batch 11 on, and reads
 * them in place below that), and a fresh allocation each call pays its
 * page faults again (with the old packing loop, packing and faults were
 * 15% of conv5a's forward). One per thread, as ops may run inside a
 * parallel region. */
static _Thread_local float *packed;
static _Thread_local size_t packed_cap;

static float *packed_weights(size_t n)
{
    if (n > packed_cap) {
        free(packed);
        packed = xalloc(n * sizeof *packed, "packed weights");
        packed_cap = n;
    }
    return packed;
}

float *vt_conv_packed_buffer(size_t n) { return packed_weights(n); }

void vt_conv_gemm_6x16(int kc, const float *a, const float *b, float *c, size_t ldc, int add)
{
    kernel_6x16(kc, a, b, c, ldc, add ? NULL : zeros, MR, NR, NULL, 0);
}

/* ==== Forward, few positions: positions x filters =====================
 *
 * C3D's conv5 has 196 positions at batch 2 (98 a sample) against 13824
 * taps and 512 filters (28 MB of weights). The blocking above gives each
 * weight to 13 micro-panels of 16 positions (208 lanes for 196, 94% used),
 * packs all the weights first (a 28 MB write and read-back, 8% of the
 * pass), and reads each K block's weights from memory in its first
 * pass over the panels: the forward ran at 57-61% of the FMA peak, the
 * data gradient (the same convolution of dy by the swapped weights) at
 * 49-55%.
 *
 * Here the roles swap: the kernel's 6 rows are positions (33 panels, 198
 * lanes for 196) and its 16 columns filters (32 panels, all used). The
 * columns of every K block are packed once, by all threads (11 MB for
 * conv5, L3), then each work item, a range of filter panels, packs one
 * 16-filter panel of weights at a time (16 KB, L1) straight from the
 * layer's weights, swapped or not, and runs it against every position
 * panel: each weight is read from memory once, and never written back.
 * The item sums into tile-major tiles of its own (L2) over the K blocks,
 * and writes y (bias, ReLU, or adding into y) once at the end. Batch 2, 2
 * threads, medians of 6 alternating rounds: conv5a's forward 23.3 ->
 * 20.0 ms, its data gradient 25.6 -> 20.5; conv5b's 22.8 -> 19.7 and
 * 26.0 -> 20.7.
 *
 * Each output is init + the K blocks' FMA chains in order, as above, so
 * results do not depend on the threads. */
enum { FEW_MAX = 512 }; /* positions at most */

static int few_positions(const vt_conv_geom *g)
{
    const long total = (long)g->n * g->to * g->ho * g->wo;
    const int kg = g->c / g->groups * g->kt * g->kh * g->kw;
    return g->groups == 1 && total <= FEW_MAX && g->o >= 2 * NR && kg >= KC;
}

/* Filters [16 fp, 16 fp + 16) of taps [k0, k0 + kc) as [tap][16], filters
 * past og 0. w: the layer's weight (og x kg), or with swapped the weight
 * of the layer whose data gradient this is (kg / kvol x og x kvol), tap
 * o * kvol + i of filter c being w[o][c][kvol - 1 - i]; k0 and kc are then
 * multiples of kvol. */
VT_AVX2 static void pack_few_b(const float *w, int og, int kg, int kvol, int swapped, int fp,
                               int k0, int kc, float *d)
{
    const int o0 = fp * NR, live = og - o0 < NR ? og - o0 : NR;
    for (int h = 0; h < NR; h += 8) {
        const int lv = live - h < 0 ? 0 : live - h < 8 ? live - h : 8;
        if (!swapped) {
            const float *s = w + (size_t)(o0 + h) * kg + k0;
            int k = 0;
            for (; k + 8 <= kc; k += 8) {
                __m256 r[8];
                for (int j = 0; j < 8; j++)
                    r[j] = j < lv ? _mm256_loadu_ps(s + (size_t)j * kg + k) : _mm256_setzero_ps();
                avx2_transpose8(r);
                for (int l = 0; l < 8; l++)
                    _mm256_store_ps(d + (size_t)(k + l) * NR + h, r[l]);
            }
            for (; k < kc; k++)
                for (int j = 0; j < 8; j++)
                    d[(size_t)k * NR + h + j] = j < lv ? s[(size_t)j * kg + k] : 0.0f;
            continue;
        }
        /* per filter o of the layer, its 8 channels' kvol taps are 8 rows
         * kvol apart: transposed 8 taps at a time, taps reversed */
        for (int o = k0 / kvol; o < (k0 + kc) / kvol; o++) {
            const float *s = w + ((size_t)o * og + o0 + h) * kvol;
            float *dd = d + (size_t)(o * kvol - k0) * NR + h;
            int i = 0;
            for (; i < kvol && kvol >= 8; i += 8) {
                /* the last 8 taps again for a ragged end (27: 0-7, 8-15,
                 * 16-23, then 19-26, storing 24-26) */
                const int i0 = i + 8 <= kvol ? i : kvol - 8;
                __m256 r[8];
                for (int j = 0; j < 8; j++)
                    r[j] = j < lv ? _mm256_loadu_ps(s + (size_t)j * kvol + i0)
                                  : _mm256_setzero_ps();
                avx2_transpose8(r);
                for (int l = i - i0; l < 8; l++)
                    _mm256_store_ps(dd + (size_t)(kvol - 1 - i0 - l) * NR, r[l]);
            }
            for (; i < kvol; i++)
                for (int j = 0; j < 8; j++)
                    dd[(size_t)(kvol - 1 - i) * NR + j] = j < lv ? s[(size_t)j * kvol + i] : 0.0f;
        }
    }
}

/* The lines of the weights pack_few_b reads for (fp, k0, kc), at most
 * few_lines(kc) of them, into a; returns their count. The next panel's are
 * fetched into L2 while the kernel runs this one's: each weight is read
 * once, from memory, and without this the packing waited on it (conv5's
 * data gradient: 130-165 M cycles of packing, 50-70 with it). Listed once
 * a panel, so the kernel's loop only issues them (computed there, with
 * divisions, they cost the kernel what they saved the packing). */
static long few_lines(int kc) { return 2L * kc + 2 * NR; }

static long few_line_list(const float *w, int og, int kg, int kvol, int swapped, int fp, int k0,
                          int kc, const float **a)
{
    const int o0 = fp * NR, live = og - o0 < NR ? og - o0 : NR;
    long n = 0;
    if (swapped) {
        /* filter o's taps of the live channels: one span of live * kvol */
        const long span = (long)live * kvol;
        for (int o = k0 / kvol; o < (k0 + kc) / kvol; o++) {
            const float *s = w + ((size_t)o * og + o0) * kvol;
            for (long c = 0; c < span; c += 16)
                a[n++] = s + c;
            a[n++] = s + span - 1;
        }
    } else {
        for (int j = 0; j < live; j++) {
            const float *s = w + (size_t)(o0 + j) * kg + k0;
            for (int c = 0; c < kc; c += 16)
                a[n++] = s + c;
            a[n++] = s + kc - 1;
        }
    }
    return n;
}

VT_AVX2 static void forward_few(const vt_conv_geom *g, const padded *pd, const float *x,
                                const float *w, const float *b, float *y, int accumulate,
                                int swapped, int relu)
{
    const int og = g->o, kvol = g->kt * g->kh * g->kw, kg = g->c * kvol;
    const int p = g->to * g->ho * g->wo, hw = g->ho * g->wo;
    const int total = g->n * p, npp = (total + MR - 1) / MR, fpan = (og + NR - 1) / NR;
    const int kcb = !swapped ? KC : kvol <= KC ? KC / kvol * kvol : kvol;
    const int kblocks = (kg + kcb - 1) / kcb;
    int org[FEW_MAX + MR];
    ptrdiff_t yoff[FEW_MAX];
    /* position panel pp's frame_taps, or'ed (see tap_runs) */
    unsigned tcls[FEW_MAX / MR + 1] = {0};
    for (int q = 0; q < npp * MR; q++) {
        if (q >= total) {
            org[q] = org[0]; /* a valid address; the lane is masked */
            continue;
        }
        const int n = q / p, pp = q % p, to = pp / hw, ho = pp % hw / g->wo, wo = pp % g->wo;
        tcls[q / MR] |= frame_taps(g, to);
        org[q] = (int)((size_t)n * pd->xs) + (to * g->st * pd->hp + ho * g->sh) * pd->wp +
                 wo * g->sw;
        yoff[q] = (ptrdiff_t)n * og * p + pp;
    }
    int *off = tap_offsets(g, pd, kg);
    const float *xp = pad_input(g, x, pd);
    /* columns: [K block][position panel][tap of the block][6] */
    float *ap = packed_weights((size_t)kg * npp * MR + 8);
    const int th = omp_in_parallel() ? 1 : omp_get_max_threads();
    /* one item a thread: every item reads all the columns from L3 at
     * every K block (conv5a, 8 alternating rounds, one item a thread
     * against 2: forward 18.71 vs 19.60 ms, data gradient 19.57 vs 19.86;
     * 4 a thread 18.79 and 20.23, 8 a thread 21.91 and 20.98) */
    const int items = fpan < th ? fpan : th;
    const double macs = (double)og * kg * (double)total;
    /* (blocks of one kvol above KC taps, rare, keep every tap: the runs'
     * arrays below hold KC) */
    const int tskip = kcb <= KC && frames_skip(g);
    const unsigned tall = all_taps(g);
    const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);

#pragma omp parallel num_threads(th) if (th > 1 && macs >= 1e6)
    {
#pragma omp for schedule(static)
        for (long u = 0; u < (long)kblocks * npp; u++) {
            const int kb = (int)(u / npp), pp = (int)(u % npp);
            const int k0 = kb * kcb, kc = kg - k0 < kcb ? kg - k0 : kcb;
            float *d = ap + (size_t)k0 * npp * MR + (size_t)pp * kc * MR;
            const int live = total - pp * MR < MR ? total - pp * MR : MR;
            const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(live),
                                                     _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            const int *oq = org + pp * MR;
            /* 8 lanes a tap, the last 2 overwritten by the next tap's; the
             * panel's last tap keeps to its 6 (the next panel may be
             * another thread's) */
#define FEW_STORE(v)                                                            \
    do {                                                                        \
        if (k + 1 < kc)                                                         \
            _mm256_storeu_ps(d + (size_t)k * MR, v);                            \
        else                                                                    \
            _mm256_maskstore_ps(d + (size_t)k * MR, six, v);                    \
    } while (0)
            /* at unit w stride the 6 positions are at most two runs (rows
             * of 6 or more): two loads and a blend a tap, against a
             * gather (conv5's column packing took 9-10% of its passes
             * with gathers) */
            int split = live;
            for (int l = 1; l < live; l++)
                if (oq[l] != oq[l - 1] + 1) {
                    split = l;
                    break;
                }
            int runs2 = g->sw == 1;
            for (int l = split + 1; l < live && runs2; l++)
                runs2 = oq[l] == oq[l - 1] + 1;
            if (runs2) {
                /* lanes below split from the first run, the rest from the
                 * second; a lane past live reads a finite value of x that
                 * lands in a row never stored (GUARD bounds the loads) */
                const float *sa = xp + oq[0], *sb = xp + (split < live ? oq[split] - split : oq[0]);
                const __m256 mb = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(split - 1)));
                for (int k = 0; k < kc; k++) {
                    const int ok = off[k0 + k];
                    const __m256 v = _mm256_blendv_ps(_mm256_loadu_ps(sa + ok),
                                                      _mm256_loadu_ps(sb + ok), mb);
                    FEW_STORE(v);
                }
                continue;
            }
            const __m256i o = _mm256_loadu_si256((const __m256i *)oq);
            for (int k = 0; k < kc; k++) {
                const __m256 v = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xp + off[k0 + k], o,
                                                          _mm256_castsi256_ps(lanes), 4);
                FEW_STORE(v);
            }
#undef FEW_STORE
        }
        float *bp = vt_conv_scratch_get(&scr_cols,
                                        (size_t)kcb * NR * sizeof(float), "weight panel");
        const int fper = (fpan + items - 1) / items;
        float *acc = vt_conv_scratch_get(&scr_dy, (size_t)fper * npp * MR * NR * sizeof(float),
                                         "output tiles");
        const float **pfl = vt_conv_scratch_get(&scr_tab, (size_t)few_lines(kcb) * sizeof *pfl,
                                                "prefetch list");
        run_cache rc;
        int pcls[FEW_MAX / MR + 1]; /* panel pp's run_class, -1: every tap */
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < items; it++) {
            const int f0 = it * fper, f1 = f0 + fper < fpan ? f0 + fper : fpan;
            for (int kb = 0; kb < kblocks; kb++) {
                const int k0 = kb * kcb, kc = kg - k0 < kcb ? kg - k0 : kcb;
                const float *ab = ap + (size_t)k0 * npp * MR;
                rc.n = 0;
                for (int pp = 0; pp < npp; pp++)
                    pcls[pp] = tskip && tcls[pp] != tall && tcls[pp]
                                   ? run_class(&rc, g, tcls[pp], kg, k0, kc)
                                   : -1;
                for (int fp = f0; fp < f1; fp++) {
                    pack_few_b(w, og, kg, kvol, swapped, fp, k0, kc, bp);
                    /* the next panel: the item's next filter panel, or its
                     * first one in the next K block */
                    const int nf = fp + 1 < f1 ? fp + 1 : f0, nk0 = fp + 1 < f1 ? k0 : k0 + kcb;
                    const int nkc = kg - nk0 < kcb ? kg - nk0 : kcb;
                    const long nl =
                        nk0 < kg ? few_line_list(w, og, kg, kvol, swapped, nf, nk0, nkc, pfl) : 0;
                    for (int pp = 0; pp < npp; pp++) {
                        for (long l = nl * pp / npp; l < nl * (pp + 1) / npp; l++)
                            _mm_prefetch((const char *)pfl[l], _MM_HINT_T1);
                        float *at = acc + ((size_t)(fp - f0) * npp + pp) * MR * NR;
                        const int c = pcls[pp];
                        if (c < 0)
                            kernel_6x16(kc, ab + (size_t)pp * kc * MR, bp, at, NR,
                                        kb ? NULL : zeros, MR, NR, NULL, 0);
                        else if (rc.nrun[c])
                            kernel_6x16_sel(rc.nrun[c], rc.rs[c], rc.rl[c],
                                            ab + (size_t)pp * kc * MR, bp, at, NR,
                                            rc.first[c] ? zeros : NULL, MR, NR, NULL, 0);
                    }
                }
            }
            /* y: filter o's row, position by position */
            for (int o = f0 * NR; o < f1 * NR && o < og; o++) {
                const float *a = acc + (size_t)(o / NR - f0) * npp * MR * NR + o % NR;
                const float bias = b ? b[o] : 0.0f;
                float *yo = y + (size_t)o * p;
                for (int q = 0; q < total; q++) {
                    float *e = yo + yoff[q];
                    float v = a[(size_t)q * NR] + (accumulate ? *e : bias);
                    *e = !relu || v > 0.0f ? v : 0.0f;
                }
            }
        }
    }
    free(off);
}

/* Positions per chunk at most: NC, or fewer, so that the chunk's outputs
 * (og x chunk, loaded and stored at every K block) stay within 512 KB,
 * this CPU's L2 a core (1 MB of them, 256 filters at 1024 positions,
 * cannot stay there between blocks). C3D at batch 2, 2 threads, medians of 5
 * alternating rounds: conv3b (256 filters, 512 positions) forward 291.9
 * -> 275.5 ms, its data gradient 283.2 -> 275.9; conv3a 145.2 -> 138.6;
 * conv4b (512 filters, 256) 136.1 -> 129.4, conv4a 67.8 -> 65.9. conv2a's
 * 128 filters keep 1024 (at 512: forward 292.0 -> 287.3, data gradient
 * 305.7 -> 318.0). */
static long nc_max(int og)
{
    long n = (128L << 10) / (og > 0 ? og : 1) / NR * NR;
    return n < 256 ? 256 : n > NC ? NC : n;
}

static int igemm_forward(const vt_conv_geom *g, const float *x, const float *w,
                         const float *b, float *y, int accumulate, int swapped, int relu);

int vt_conv_igemm_forward(const vt_conv_geom *g, const float *x, const float *w,
                          const float *b, float *y, int relu)
{
    return igemm_forward(g, x, w, b, y, 0, 0, relu);
}

/* y = conv(x, w) + b, or y += conv(x, w) when accumulate (b then NULL).
 * swapped: w is a layer weight to be read swapped and reversed (see
 * pack_weights_swapped). relu: y = max(that, 0), applied as the last K
 * block stores each tile, while it is in registers. */
static int igemm_forward(const vt_conv_geom *g, const float *x, const float *w,
                         const float *b, float *y, int accumulate, int swapped, int relu)
{
    if (!vt_conv_igemm_supported())
        return 0;
    padded pd;
    if (!padded_of(g, &pd))
        return 0;
    if (few_positions(g)) {
        forward_few(g, &pd, x, w, b, y, accumulate, swapped, relu);
        return 1;
    }
    const int og = g->o / g->groups, cg = g->c / g->groups;
    const int kvol = g->kt * g->kh * g->kw, kg = cg * kvol;
    const int mp = (og + MR - 1) / MR;
    const int p = g->to * g->ho * g->wo;

    /* Work items: a chunk of at most NC positions (counted across the
     * batch), times a share of the output channels. Few positions would
     * leave threads idle, and every item streams its channels' weights, so
     * such layers split channels, not positions: each thread then reads
     * only its share of the weights. */
    const int th = omp_in_parallel() ? 1 : omp_get_max_threads();
    const long total = (long)g->n * p;
    const long ncm = nc_max(og);
    long per = (total + ncm - 1) / ncm;
    int chunk = (int)(((total + per - 1) / per + NR - 1) / NR * NR);
    /* A whole number of chunks a thread, where up to a quarter more
     * chunks give it: 13 (C3D's conv4 at batch 4) left one thread a chunk
     * more, 7.7% of the pass idle on the other; conv3's 49 become 56. A
     * chunk's values do not depend on its bounds (see Determinism above),
     * so this may follow the threads. */
    const long most = per + (per / 4 > 2L * th ? per / 4 : 2L * th);
    for (long want = per + 1; per >= 4L * th && per % th && want <= most; want++) {
        const int c2 = (int)(((total + want - 1) / want + NR - 1) / NR * NR);
        if ((total + c2 - 1) / c2 % th == 0) {
            chunk = c2;
            per = (total + c2 - 1) / c2;
        }
    }
    int msplit = 1;
    if (per < 4L * th) {
        /* each split packs the chunk's columns again: as few as give every
         * thread the same number of items */
        msplit = (int)((th + per - 1) / per);
        while ((per * msplit) % th)
            msplit++;
        if (msplit > mp)
            msplit = mp;
    }
    const long items = per * msplit;
    const double macs = (double)g->o * kg * (double)total;

    /* The data gradient with one chunk reads its weights in place (C3D's
     * conv5 did, until forward_few took shapes like it; this now serves
     * one-chunk layers that path does not take: groups, fewer than 32
     * channels or 256 taps, 513-1024 positions): every weight is used by
     * that chunk alone, so the swapped pack (a gather, 28 MB for conv5, 20-25%
     * of the pass) only wrote and read back a copy. Tap o * kvol + i of
     * its output channel c is w[o][c][kvol - 1 - i]; reversing the
     * columns' taps within each filter makes that w[o][c][i], runs of kvol
     * floats in place, rows kvol apart and runs og * kvol apart, and the K
     * blocks hold whole runs. A ragged last panel (og not a multiple of 6)
     * is copied, with zero rows, so no row is read past the weights' end.
     * Measured, not assumed: the forward's weights read in place (6 rows
     * kg apart) were no faster than packed, even with the one chunk, and
     * the runs' loop with several chunks was slower than packing once
     * (conv3a's data gradient: 5-20% slower). */
    const int direct = per == 1 && swapped;
    const int kcb = !direct ? KC : kvol <= KC ? KC / kvol * kvol : kvol;
    float *ap = NULL, *rag = NULL;
    if (!direct) {
        ap = packed_weights((size_t)g->groups * mp * kg * MR);
        if (swapped)
            pack_weights_swapped(w, g->groups, og, kg, kvol, mp, ap);
        else
            pack_weights(w, g->groups, og, kg, mp, ap);
    } else if (og % MR) {
        const int live = og - (mp - 1) * MR;
        rag = xalloc((size_t)g->groups * MR * kg * sizeof *rag, "ragged weight panel");
        for (int gr = 0; gr < g->groups; gr++)
            for (int r = 0; r < MR; r++) {
                float *d = rag + ((size_t)gr * MR + r) * kg;
                const int c = (mp - 1) * MR + r;
                if (r >= live)
                    memset(d, 0, (size_t)kg * sizeof *d);
                else
                    for (int o = 0; o < kg / kvol; o++)
                        memcpy(d + (size_t)o * kvol,
                               w + (((size_t)gr * (kg / kvol) + o) * og + c) * kvol,
                               (size_t)kvol * sizeof *d);
            }
    }
    int *off = tap_offsets(g, &pd, kg);
    if (direct)
        for (int k = 0; k < kg; k += kvol)
            for (int i = 0, j = kvol - 1; i < j; i++, j--) {
                const int t = off[k + i];
                off[k + i] = off[k + j];
                off[k + j] = t;
            }
    float *xp = pad_input(g, x, &pd);
    /* the weights read in place keep every tap (their kernel has no runs) */
    const int tskip = ap && frames_skip(g);
    const unsigned tall = all_taps(g);

#pragma omp parallel num_threads(th) if (th > 1 && items > 1 && macs >= 1e6)
    {
        float *bp = vt_conv_scratch_get(&scr_cols,
                                        (size_t)kcb * chunk * sizeof(float), "column panel");
        chunk_tab *ct = vt_conv_scratch_get(&scr_tab, sizeof *ct, "position table");
        run_cache rc;
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < items; it++) {
            const int s = (int)(it % msplit);
            const long q0 = it / msplit * chunk;
            const int m0 = (int)((long)mp * s / msplit), m1 = (int)((long)mp * (s + 1) / msplit);
            const int nc = total - q0 < chunk ? (int)(total - q0) : chunk;
            const int npan = (nc + NR - 1) / NR;
            chunk_tab_fill(g, &pd, q0, nc, npan, NR, ct);
            for (int gr = 0; gr < g->groups; gr++) {
                const float *xg = xp + (size_t)gr * cg * pd.vol;
                float *yg = y + (size_t)gr * og * p;
                const float *wg = w + (size_t)gr * og * kg; /* og * kg: either way */
                for (int k0 = 0; k0 < kg; k0 += kcb) {
                    const int kc = kg - k0 < kcb ? kg - k0 : kcb;
                    const int last = relu && k0 + kc == kg;
                    rc.n = 0;
                    pack_cols(g, xg, ct, npan, off, k0, kc, bp);
                    const int mcp = mc_panels(m1 - m0);
                    for (int ic = m0; ic < m1; ic += mcp) {
                        const int ie = ic + mcp < m1 ? ic + mcp : m1;
                        /* Read in place, the next block's weights are
                         * fetched into L2 while this one runs: one run per
                         * filter of the layer, too many streams for the
                         * prefetcher, and few positions hide no misses. */
                        const float *nb = NULL;
                        long nspan = 0, slen = 0, sstr = 0;
                        int nk0 = k0, ni0 = ie;
                        if (ni0 >= m1) {
                            nk0 = k0 + kcb;
                            ni0 = m0;
                        }
                        if (direct && nk0 < kg) {
                            const int nkc = kg - nk0 < kcb ? kg - nk0 : kcb;
                            const int ni1 = ni0 + mcp < m1 ? ni0 + mcp : m1;
                            const int r0 = ni0 * MR, r1 = ni1 * MR < og ? ni1 * MR : og;
                            nb = wg + ((size_t)(nk0 / kvol) * og + r0) * kvol;
                            nspan = nkc / kvol;
                            slen = (long)(r1 - r0) * kvol;
                            sstr = (long)og * kvol;
                        }
                        const long lps = (slen + 15) / 16 + 1, nlines = nspan * lps;
                        for (int jb = 0; jb < npan; jb++) {
                            for (long l = nlines * jb / npan; l < nlines * (jb + 1) / npan; l++) {
                                const long sp = l / lps, cl = l % lps;
                                _mm_prefetch((const char *)(nb + sp * sstr +
                                                            (cl * 16 < slen ? cl * 16 : slen - 1)),
                                             _MM_HINT_T1);
                            }
                            const int nv = nc - jb * NR < NR ? nc - jb * NR : NR;
                            const float *bj = bp + (size_t)jb * kc * NR;
                            const ptrdiff_t *cols = ct->cross[jb] ? ct->yoff + jb * NR : NULL;
                            float *cj = yg + (cols ? 0 : ct->yoff[jb * NR]);
                            /* the panel's taps in the padding skipped; the
                             * blocks of its first and last live taps take
                             * the bias and the ReLU */
                            const unsigned cls = ct->tcls[jb];
                            const int sel = tskip && cls != tall && cls
                                                ? run_class(&rc, g, cls, kg, k0, kc)
                                                : -1;
                            int first = k0 == 0, lastb = last;
                            if (sel >= 0) {
                                if (!rc.nrun[sel])
                                    continue;
                                first = rc.first[sel];
                                lastb = relu && rc.last[sel];
                            }
                            for (int ir = ic; ir < ie; ir++) {
                                const int mv = og - ir * MR < MR ? og - ir * MR : MR;
                                const float *init = !first || accumulate ? NULL
                                                    : b ? b + (size_t)gr * og + (size_t)ir * MR
                                                        : zeros;
                                float *ct0 = cj + (size_t)ir * MR * p;
                                if (sel >= 0)
                                    kernel_6x16_sel(rc.nrun[sel], rc.rs[sel], rc.rl[sel],
                                                    packed_panel(ap, mp, kg, gr, ir, k0, kc), bj,
                                                    ct0, (size_t)p, init, mv, nv, cols, lastb);
                                else if (ap)
                                    kernel_6x16(kc, packed_panel(ap, mp, kg, gr, ir, k0, kc), bj,
                                                ct0, (size_t)p, init, mv, nv, cols, last);
                                else if (mv < MR)
                                    kernel_6x16_rows(kc, rag + (size_t)gr * MR * kg + k0, kg,
                                                     kc, 0, bj, ct0, (size_t)p, init, mv, nv,
                                                     cols, last);
                                else
                                    kernel_6x16_rows(
                                        kc, wg + ((size_t)(k0 / kvol) * og + (size_t)ir * MR) * kvol,
                                        kvol, kvol, (ptrdiff_t)og * kvol, bj, ct0, (size_t)p, init,
                                        mv, nv, cols, last);
                            }
                        }
                    }
                }
            }
        }
    }
    free(rag);
    free(off);
    return 1;
}

/* ==== Backward, data: the column gradient =============================
 *
 * dcol (K x P) = W^T (K x O) . dy (O x P) per group, then col2vol (in
 * op_conv3d.c). BLAS repacks W^T for every tile (7 MB for C3D's conv3b,
 * a tile of ~300 positions); here it is packed once per call. */

float *vt_conv_igemm_pack_wt(const vt_conv_geom *g, const float *w)
{
    if (!vt_conv_igemm_supported())
        return NULL;
    const int og = g->o / g->groups, kg = g->c / g->groups * g->kt * g->kh * g->kw;
    const int mp = (kg + MR - 1) / MR;
    float *wt = packed_weights((size_t)g->groups * mp * og * MR);
    /* [group][block of KC filters][panel of MR taps][filter of the block][MR] */
#pragma omp parallel for schedule(static) if ((size_t)g->o * kg > 65536 && !omp_in_parallel())
    for (int q = 0; q < g->groups * mp; q++) {
        const int gr = q / mp, ir = q % mp;
        const int live = kg - ir * MR < MR ? kg - ir * MR : MR;
        for (int o0 = 0; o0 < og; o0 += KC) {
            const int oc = og - o0 < KC ? og - o0 : KC;
            float *d = wt + (size_t)gr * mp * og * MR + ((size_t)o0 * mp + (size_t)ir * oc) * MR;
            for (int o = o0; o < o0 + oc; o++, d += MR) {
                const float *src = w + ((size_t)gr * og + o) * kg + (size_t)ir * MR;
                for (int i = 0; i < MR; i++)
                    d[i] = i < live ? src[i] : 0.0f;
            }
        }
    }
    return wt;
}

/* A thread's panel of dy (KC filters x NC positions), kept between calls:
 * a tile's GEMM is one of many. */
static _Thread_local float *dy_panel;

VT_AVX2 static void pack_dy(const float *dy, size_t lddy, int kc, int nc, int npan,
                            float *bp)
{
    for (int jb = 0; jb < npan; jb++) {
        float *d = bp + (size_t)jb * kc * NR;
        const int j0 = jb * NR, nv = nc - j0 < NR ? nc - j0 : NR;
        for (int o = 0; o < kc; o++, d += NR) {
            const float *s = dy + (size_t)o * lddy + j0;
            if (nv == NR) {
                _mm256_store_ps(d, _mm256_loadu_ps(s));
                _mm256_store_ps(d + 8, _mm256_loadu_ps(s + 8));
            } else {
                for (int j = 0; j < NR; j++)
                    d[j] = j < nv ? s[j] : 0.0f;
            }
        }
    }
}

void vt_conv_igemm_dcol(const vt_conv_geom *g, const float *wt, int gr, int p_lo,
                        int p_hi, const float *dy, size_t lddy, int nq, float *col,
                        size_t ldcol)
{
    const int og = g->o / g->groups, kg = g->c / g->groups * g->kt * g->kh * g->kw;
    const int mp = (kg + MR - 1) / MR;
    const float *wg = wt + (size_t)gr * mp * og * MR;
    if (!dy_panel)
        dy_panel = xalloc((size_t)KC * NC * sizeof(float), "dy panel");
    for (int p0 = 0; p0 < nq; p0 += NC) {
        const int nc = nq - p0 < NC ? nq - p0 : NC, npan = (nc + NR - 1) / NR;
        for (int o0 = 0; o0 < og; o0 += KC) {
            const int oc = og - o0 < KC ? og - o0 : KC;
            pack_dy(dy + (size_t)o0 * lddy + p0, lddy, oc, nc, npan, dy_panel);
            const int mcp = mc_panels(p_hi - p_lo);
            /* What the next pack_dy reads: the next block of filters, or
             * of positions (in this call, or the caller's next tile, whose
             * positions follow in dy's rows). dy comes from memory, a
             * stream per filter, more than the prefetcher follows: conv1a's
             * pack_dy took 0.19 of a tile's 0.85 M cycles stalled on it,
             * 0.04 with this, and its data gradient went 44.7 -> 42.5 and
             * 43.8 -> 40.5 ms (8 alternating rounds, each order). Fetched
             * into L2 over the first MC block's panels, within a row's
             * stride (a prefetch never faults). */
            const int no0 = o0 + KC < og ? o0 + KC : 0, np0 = o0 + KC < og ? p0 : p0 + NC;
            const int noc = og - no0 < KC ? og - no0 : KC;
            const long lpr = NC / 16, nlines = lpr * noc;
            for (int ic = p_lo; ic < p_hi; ic += mcp) {
                const int ie = ic + mcp < p_hi ? ic + mcp : p_hi;
                const long nl = ic == p_lo ? nlines : 0;
                for (int jb = 0; jb < npan; jb++) {
                    for (long l = nl * jb / npan; l < nl * (jb + 1) / npan; l++) {
                        const size_t c = (size_t)np0 + (size_t)(l % lpr) * 16;
                        if (c < lddy)
                            _mm_prefetch((const char *)(dy + (size_t)(no0 + l / lpr) * lddy + c),
                                         _MM_HINT_T1);
                    }
                    const int nv = nc - jb * NR < NR ? nc - jb * NR : NR;
                    const float *bj = dy_panel + (size_t)jb * oc * NR;
                    for (int ir = ic; ir < ie; ir++) {
                        const int mv = kg - ir * MR < MR ? kg - ir * MR : MR;
                        kernel_6x16(oc, wg + ((size_t)o0 * mp + (size_t)ir * oc) * MR, bj,
                                    col + (size_t)ir * MR * ldcol + p0 + (size_t)jb * NR,
                                    ldcol, o0 ? NULL : zeros, mv, nv, NULL, 0);
                    }
                }
            }
        }
    }
}

/* ==== Backward, data, unit stride: a forward convolution ===============
 *
 * With unit strides, gx[c, t] = sum over o, i of dy[o, t + p - i*d] *
 * W[o, c, i] (one dimension shown) is itself a convolution: of dy, by the
 * weights with filters and channels swapped and taps reversed, padded by
 * d*(k-1) - p. So the forward kernel computes it, adding into gx, with no
 * column buffer and no scatter. */
int vt_conv_swapped_geom(const vt_conv_geom *g, vt_conv_geom *b)
{
    *b = *g;
    b->c = g->o;
    b->t = g->to;
    b->h = g->ho;
    b->w = g->wo;
    b->o = g->c;
    b->pt = g->dt * (g->kt - 1) - g->pt;
    b->ph = g->dh * (g->kh - 1) - g->ph;
    b->pw = g->dw * (g->kw - 1) - g->pw;
    b->to = g->t;
    b->ho = g->h;
    b->wo = g->w;
    return g->st == 1 && g->sh == 1 && g->sw == 1 && b->pt >= 0 && b->ph >= 0 && b->pw >= 0;
}

int vt_conv_igemm_backward_data(const vt_conv_geom *g, const float *w, const float *gy,
                                float *gx)
{
    /* Its output channels are the layer's input channels: with few (C3D's
     * conv1a: 3) the 6-row micro-tiles run mostly empty, and the column
     * route (vt_conv_igemm_dcol) is faster (conv1a: 63 vs 17 GFLOP/s). */
    vt_conv_geom b;
    if (!vt_conv_igemm_supported() || g->c / g->groups < 32 || !vt_conv_swapped_geom(g, &b))
        return 0;
    return igemm_forward(&b, gy, w, NULL, gx, 1, 1, 0);
}

/* ==== Backward, weight ==================================================
 *
 * gw (Og x K) += dy (Og x Q) . col^T (Q x K) per group, the sum running
 * over every position q of the batch. The same 6x16 kernel, with the
 * positions as its depth: 6 filters by 16 taps, so each micro-tile is a
 * contiguous run of gw's rows. Both operands are packed per block of KQ
 * positions, the taps' columns straight from the padded input.
 *
 * The positions go in pieces of 8 in batch order, each piece a few
 * segments of the padded input as in the forward's micro-panels (a row
 * end, a sample end), so no lane is padding: rows of 28, 14 or 7 would
 * waste 12-14% of the work in row-aligned pieces.
 *
 * Blocking: a work item is a block of at most NT tap panels (16 taps each)
 * of one group, times one of S segments of the positions. Per KQ block of
 * positions the item packs its taps' columns (NT x 16 x KQ, L2/L3), then
 * per MC block of filters their dy panels (L2), and every tap panel meets
 * every filter panel in the kernel, adding into gw.
 *
 * Determinism: S depends on the shape only, segment 0 adds into gw and the
 * others into zeroed partials that are added afterwards in segment order,
 * and within a segment the blocks go in order: results do not depend on
 * the threads at all. */

enum {
    KQ = 256,       /* positions per block: a 16 KB tap micro-panel, L1 */
    NT = 64,        /* tap panels per work item at most: 1 MB of columns */
    PIECE = 8,      /* positions per piece (one ymm) */
    WITEMS = 8,     /* work items wanted, for the segment count */
    WSKIP_SHARE = 8, /* the skip's least share of padded pairs: 1 / this */
};
#define WPART_MAX ((size_t)4 << 20) /* floats of partials at most (16 MB) */

/* One tap's 8 positions of piece q, as a vector: lanes outside the
 * piece's segments are 0. mode 0: one whole segment at w stride 1, 1: any
 * segments at stride 1, 2 and 3 the same at stride 2 (even lanes of 16
 * floats, by shuffles), 4: a gather at wider strides. */
VT_AVX2 static inline __m256 piece_tap(const float *xk, const chunk_tab *ct, int q, int s0,
                                       int s1, int mode)
{
    __m256 v = _mm256_setzero_ps();
    switch (mode) {
    case 0:
        return _mm256_loadu_ps(xk + ct->soff[s0]);
    case 1:
        for (int sg = s0; sg < s1; sg++)
            v = _mm256_blendv_ps(v, _mm256_loadu_ps(xk + ct->soff[sg]),
                                 _mm256_load_ps((const float *)ct->smask[sg]));
        return v;
    case 2:
    case 3:
        for (int sg = s0; sg < s1; sg++) {
            const __m256 e = even_lanes(xk + ct->soff[sg]);
            if (mode == 2)
                return e;
            v = _mm256_blendv_ps(v, e, _mm256_load_ps((const float *)ct->smask[sg]));
        }
        return v;
    default: {
        /* lanes past the block's end have org 0, in bounds; the mask
         * zeroes them */
        __m256 m = v;
        for (int sg = s0; sg < s1; sg++)
            m = _mm256_or_ps(m, _mm256_load_ps((const float *)ct->smask[sg]));
        return _mm256_and_ps(
            m, _mm256_i32gather_ps(xk, _mm256_load_si256((const __m256i *)(ct->org + q * PIECE)),
                                   4));
    }
    }
}

/* Columns of tap panels [t0, t1) for the pieces of one block of positions
 * (ct, filled with 8 lanes), laid out [panel][position][16]; taps past kg
 * and lanes past the block's end are 0. Each tap's 8 positions are loaded
 * as a vector, then 8 taps' vectors are transposed into 8 positions' half
 * rows. */
VT_AVX2 static void pack_wcols(const vt_conv_geom *g, const float *xg, const chunk_tab *ct,
                               const int *off, int kg, int t0, int t1, int np, float *bp)
{
    for (int q = 0; q < np; q++) {
        const int s0 = ct->seg0[q], s1 = ct->seg0[q + 1];
        const int whole = s1 - s0 == 1 && ct->smask[s0][0] && ct->smask[s0][PIECE - 1];
        const int mode = g->sw == 1 ? !whole : g->sw == 2 ? 3 - whole : 4;
        for (int tp = t0; tp < t1; tp++) {
            float *d = bp + ((size_t)(tp - t0) * KQ + (size_t)q * PIECE) * 16;
            for (int h = 0; h < 16; h += 8) {
                const int k0 = tp * 16 + h, live = kg - k0 < 8 ? kg - k0 : 8;
                __m256 r[8];
                if (mode == 0 && live == 8) {
                    /* the common case, unrolled so r stays in registers */
                    const float *src = xg + ct->soff[s0];
#pragma GCC unroll 8
                    for (int j = 0; j < 8; j++)
                        r[j] = _mm256_loadu_ps(src + off[k0 + j]);
                } else {
#pragma GCC unroll 8
                    for (int j = 0; j < 8; j++)
                        r[j] = j < live ? piece_tap(xg + off[k0 + j], ct, q, s0, s1, mode)
                                        : _mm256_setzero_ps();
                }
                avx2_transpose8(r);
                for (int l = 0; l < PIECE; l++)
                    _mm256_store_ps(d + l * 16 + h, r[l]);
            }
        }
    }
}

/* dy of up to 8 filters (live of them; rows p apart from s) at the 8
 * positions of piece q, as each position's filters, rows stride apart from
 * d: width floats each (filters past live 0), or 8 where a piece within
 * one sample is loaded whole and transposed; a position past nc is 0. */
VT_AVX2 static inline void dy_piece(const float *s, size_t p, int live, int width,
                                    const chunk_tab *ct, int q, int nc, float *d, int stride)
{
    const int j0 = q * PIECE;
    if (j0 + PIECE <= nc && !ct->cross[q]) {
        __m256 r[8];
        for (int i = 0; i < 8; i++)
            r[i] = i < live ? _mm256_loadu_ps(s + (size_t)i * p + ct->yoff[j0])
                            : _mm256_setzero_ps();
        avx2_transpose8(r);
        for (int l = 0; l < PIECE; l++)
            _mm256_storeu_ps(d + l * stride, r[l]);
        return;
    }
    for (int l = 0; l < PIECE; l++)
        for (int i = 0; i < width; i++)
            d[l * stride + i] =
                i < live && j0 + l < nc ? s[(size_t)i * p + ct->yoff[j0 + l]] : 0.0f;
}

/* dy panels of filters [6*f0, 6*f1) of the group (dg: its first filter)
 * for the nc positions of the block, laid out [panel][position][6];
 * filters past og and positions past nc are 0. A piece within one sample
 * is 8 consecutive floats of each filter's dy: 6 loads and a transpose.
 * ap has 2 floats of slack at the end: each position's 6 values are
 * stored as 8, the last 2 overwritten by the next position's. */
VT_AVX2 static void pack_wdy(const vt_conv_geom *g, const float *dg, const chunk_tab *ct,
                             int og, int f0, int f1, int nc, int np, float *ap)
{
    const size_t p = (size_t)g->to * g->ho * g->wo;
    for (int fp = f0; fp < f1; fp++) {
        float *d = ap + (size_t)(fp - f0) * KQ * MR;
        const int live = og - fp * MR < MR ? og - fp * MR : MR;
        for (int q = 0; q < np; q++, d += PIECE * MR)
            dy_piece(dg + (size_t)fp * MR * p, p, live, MR, ct, q, nc, d, MR);
    }
}

/* Leaving out the taps that read temporal padding (see tap_runs), along
 * the positions: a tap panel's kernel runs only over the pieces of
 * positions whose windows see one of its kernel frames in the input. For
 * that a panel must hold one kernel frame, so under the skip the taps go
 * in channel blocks, frame-major within a block (block of cb channels,
 * kernel frame, then the block's channels' kh x kw taps, see wskip_tap),
 * cb = 16 / gcd(kh kw, 16), so that a block's frame is whole panels
 * (C3D's 3x3: 16 channels, 9 panels a frame). gw keeps its layout
 * (channel, frame, kh x kw), so a panel's taps lie in gw's row as runs:
 * the kernel adds each run through the 8-float window that puts the
 * tile's lanes on their columns, with a blend keeping the window's other
 * floats where the run is not the whole window. Those are other taps of
 * the same channel block, which a work item holds whole, so no other
 * thread writes them meanwhile. A panel whose windows would leave its
 * block (or with more runs, or ragged) is added lane by lane: for 3x3,
 * the ninth taps' panel, one of 9; the other 8 are whole windows.
 *
 * The windows cost: the code around the kernel's loop (the stores and
 * prefetches) takes 15% of its time here, against 4% for a plain tile
 * (perf, conv5a). So the skip is taken where an eighth of the (position,
 * tap) pairs or more are padding: C3D's conv5 (a third) and conv4 (a
 * sixth), not conv3 (a twelfth: no faster). Batch 2, 1 thread, conv5a:
 * 29.3-30.9 -> 22.4-23.7 ms (the plain kernel -> this); 2 threads
 * 14.0-15.0 -> 11.6-13.3. Before, the items summed tile-major and added
 * the tiles into gw at their end, lane by lane: conv4 gained, but that
 * pass cost conv5 more than the skip saved (17.7 -> 19.6 ms). */
enum { WSEGS = 3 }; /* runs a half at most, for the windows */
typedef struct {
    unsigned frames;   /* kernel frames of the panel's taps */
    int vec;           /* stored by windows (2: each half one whole run), or 0:
                          lane by lane */
    int nseg[2];       /* runs of each half */
    int win[2][WSEGS]; /* a run's window: the column of the half's lane 0 */
    int mask[2][WSEGS][8]; /* the run's lanes, -1 / 0 */
    int col[16];       /* each lane's column, -1 past kg */
} wstore;

/* Channels a block under the skip: a block's kernel frame of cb kh kw taps
 * is whole 16-tap panels. */
static int wskip_block(const vt_conv_geom *g)
{
    int a = g->kh * g->kw, b = 16;
    while (b) {
        const int t = a % b;
        a = b;
        b = t;
    }
    return 16 / a;
}

/* Tap k' of the skip's order as gw's tap index (channel, frame, kh x kw
 * tap). Within a block's kernel frame (nb channels, cb but for a short
 * last block), each channel's kh kw taps go in runs of 8, every channel's
 * runs first, then every channel's rest (kh kw mod 8 taps): a run is a
 * half panel of 8 lanes that lies whole in gw (one window, no blend). */
static int wskip_tap(const vt_conv_geom *g, int cg, int cb, int kp)
{
    const int khw = g->kh * g->kw, kvol = g->kt * khw, full = khw / 8 * 8;
    const int blk = kp / (cb * kvol), r = kp % (cb * kvol);
    const int nb = cg - blk * cb < cb ? cg - blk * cb : cb;
    const int d = r / (nb * khw), r2 = r % (nb * khw);
    int c, sp;
    if (r2 < nb * full) {
        c = r2 / full;
        sp = r2 % full;
    } else {
        c = (r2 - nb * full) / (khw - full);
        sp = full + (r2 - nb * full) % (khw - full);
    }
    return (blk * cb + c) * kvol + d * khw + sp;
}

/* Panel tp's store: nat[k'] is tap k''s column, [lo, hi) the columns of
 * the panel's channel block. */
static void wstore_fill(const vt_conv_geom *g, const int *nat, int kg, int tp, int lo, int hi,
                        wstore *ws)
{
    const int khw = g->kh * g->kw, kvol = g->kt * khw;
    memset(ws, 0, sizeof *ws);
    ws->vec = 1;
    for (int j = 0; j < 16; j++) {
        const int kp = tp * 16 + j;
        ws->col[j] = kp < kg ? nat[kp] : -1;
        if (ws->col[j] < 0) {
            ws->vec = 0;
            continue;
        }
        ws->frames |= 1u << (ws->col[j] % kvol / khw);
    }
    for (int h = 0; h < 2 && ws->vec; h++)
        for (int l = 0; l < 8; l++) {
            const int *cl = ws->col + 8 * h;
            if (l && cl[l] == cl[l - 1] + 1) {
                ws->mask[h][ws->nseg[h] - 1][l] = -1;
                continue;
            }
            const int w = cl[l] - l;
            if (ws->nseg[h] == WSEGS || w < lo || w + 8 > hi) {
                ws->vec = 0;
                break;
            }
            ws->win[h][ws->nseg[h]] = w;
            ws->mask[h][ws->nseg[h]++][l] = -1;
        }
    if (ws->vec && ws->nseg[0] == 1 && ws->nseg[1] == 1)
        ws->vec = 2; /* each half one run: all 8 lanes, a lane not continuing a
                        run starts one */
}

/* One row of a tile into gw (row: its start) through the panel's windows */
VT_AVX2 static inline __attribute__((always_inline)) void
wstore_row(float *row, __m256 lo, __m256 hi, const wstore *ws)
{
    if (ws->vec == 2) {
        float *p = row + ws->win[0][0], *q = row + ws->win[1][0];
        _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), lo));
        _mm256_storeu_ps(q, _mm256_add_ps(_mm256_loadu_ps(q), hi));
        return;
    }
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < ws->nseg[h]; s++) {
            float *p = row + ws->win[h][s];
            const __m256 x = _mm256_loadu_ps(p);
            _mm256_storeu_ps(p, _mm256_blendv_ps(x, _mm256_add_ps(x, h ? hi : lo),
                                                 _mm256_loadu_ps((const float *)ws->mask[h][s])));
        }
}

/* kernel_6x16_sel for the skip: c is the panel's filters' first gw row,
 * a tile's lanes go to ws's columns; adds into gw. */
VT_AVX2 static void kernel_6x16_wsel(int nrun, const int *rs, const int *rl, const float *a,
                                     const float *b, float *c, size_t ldc, int mv,
                                     const wstore *ws)
{
    for (int i = 0; i < mv; i++) {
        const float *row = c + (size_t)i * ldc;
        if (!ws->vec)
            for (int j = 0; j < 16; j++)
                _mm_prefetch((const char *)(row + (ws->col[j] < 0 ? 0 : ws->col[j])), _MM_HINT_T0);
        for (int h = 0; h < 2 && ws->vec; h++)
            for (int s = 0; s < ws->nseg[h]; s++) {
                _mm_prefetch((const char *)(row + ws->win[h][s]), _MM_HINT_T0);
                _mm_prefetch((const char *)(row + ws->win[h][s] + 7), _MM_HINT_T0);
            }
    }
    C_ZERO();
    SEL_LOOP();
    if (ws->vec) {
        wstore_row(c, c00, c01, ws);
        if (mv > 1)
            wstore_row(c + ldc, c10, c11, ws);
        if (mv > 2)
            wstore_row(c + 2 * ldc, c20, c21, ws);
        if (mv > 3)
            wstore_row(c + 3 * ldc, c30, c31, ws);
        if (mv > 4)
            wstore_row(c + 4 * ldc, c40, c41, ws);
        if (mv > 5)
            wstore_row(c + 5 * ldc, c50, c51, ws);
        return;
    }
    _Alignas(32) float t[MR * NR];
    const __m256 v[2 * MR] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
    for (int i = 0; i < 2 * MR; i++)
        _mm256_store_ps(t + 8 * i, v[i]);
    for (int i = 0; i < mv; i++)
        for (int j = 0; j < 16; j++)
            if (ws->col[j] >= 0)
                c[(size_t)i * ldc + ws->col[j]] += t[i * NR + j];
}

/* Segments of the positions for `per` items of another kind (tap blocks,
 * groups): enough for WITEMS items in all, no more than the blocks of
 * positions, and their partial sums (all but the first segment's, wsz
 * floats each) within WPART_MAX. */
static long seg_count(long per, long qblocks, size_t wsz)
{
    long segs = (WITEMS + per - 1) / per;
    if (segs > qblocks)
        segs = qblocks;
    if ((size_t)(segs - 1) * wsz > WPART_MAX)
        segs = 1 + (long)(WPART_MAX / wsz);
    return segs < 1 ? 1 : segs;
}

int vt_conv_igemm_backward_weight(const vt_conv_geom *g, const float *x, const float *gy,
                                  float *gw)
{
    if (!vt_conv_igemm_supported())
        return 0;
    padded pd;
    if (!padded_of(g, &pd))
        return 0;
    const int og = g->o / g->groups, cg = g->c / g->groups;
    const int khw = g->kh * g->kw, kvol = g->kt * khw, kg = cg * kvol;
    const int tpan = (kg + 15) / 16, fpan = (og + MR - 1) / MR;
    const long total = (long)g->n * g->to * g->ho * g->wo;
    const long qblocks = (total + KQ - 1) / KQ;
    const size_t wsz = (size_t)g->o * kg;

    /* The temporal padding's taps left out (see wstore) where they are
     * 1 / WSKIP_SHARE of the (position, tap) pairs or more. */
    long padded_pairs = 0;
    for (int to = 0; to < g->to && g->kt <= 31; to++)
        padded_pairs += g->kt - __builtin_popcount(frame_taps(g, to));
    const int wskip = padded_pairs && padded_pairs * WSKIP_SHARE >= (long)g->to * g->kt;
    /* Tap blocks of whole units: a channel block's panels under the skip
     * (the last block's may be fewer), else one panel. */
    const int cb = wskip ? wskip_block(g) : 0;
    const int unit = wskip ? cb * kvol / 16 : 1, units = wskip ? (cg + cb - 1) / cb : tpan;
    const int uper0 = NT / unit > 1 ? NT / unit : 1;
    const int tblocks = (units + uper0 - 1) / uper0;
    const int tper = (units + tblocks - 1) / tblocks * unit;

    /* Segments of the positions: enough items to share out, within the
     * partials' budget; from the shape alone. */
    const long segs = seg_count((long)g->groups * tblocks, qblocks, wsz);
    float *part = NULL;
    if (segs > 1) {
        part = calloc((size_t)(segs - 1) * wsz, sizeof *part);
        VT_ASSERT(part, "conv: out of memory for %ld weight-gradient partials", segs - 1);
    }
    int *off = tap_offsets(g, &pd, kg);
    wstore *wst = NULL;
    if (wskip) {
        /* the taps' offsets in the skip's order, and each panel's store */
        int *nat = xalloc((size_t)kg * sizeof *nat, "tap order");
        int *offp = xalloc((size_t)kg * sizeof *offp, "tap table");
        for (int kp = 0; kp < kg; kp++) {
            nat[kp] = wskip_tap(g, cg, cb, kp);
            offp[kp] = off[nat[kp]];
        }
        free(off);
        off = offp;
        wst = xalloc((size_t)tpan * sizeof *wst, "tap panel stores");
        for (int tp = 0; tp < tpan; tp++) {
            const int lo = tp * 16 / (cb * kvol) * cb * kvol;
            wstore_fill(g, nat, kg, tp, lo, lo + cb * kvol < kg ? lo + cb * kvol : kg, wst + tp);
        }
        free(nat);
    }
    float *xp = pad_input(g, x, &pd);
    const long items = (long)g->groups * tblocks * segs;
    const double macs = (double)g->o * kg * (double)g->n * g->to * g->ho * g->wo;
    const int th = omp_in_parallel() ? 1 : omp_get_max_threads();
    const int mcp = mc_panels(fpan);

#pragma omp parallel num_threads(th) if (th > 1 && items > 1 && macs >= 1e6)
    {
        float *bp = vt_conv_scratch_get(&scr_cols,
                                        (size_t)tper * 16 * KQ * sizeof(float), "column panel");
        float *ap = vt_conv_scratch_get(&scr_dy,
                                        ((size_t)mcp * MR * KQ + 2) * sizeof(float), "dy panel");
        chunk_tab *ct = vt_conv_scratch_get(&scr_tab, sizeof *ct, "position table");
        int rs[KQ / PIECE + 1], rl[KQ / PIECE + 1];
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < items; it++) {
            const int s = (int)(it % segs);
            const int tb = (int)(it / segs % tblocks), gr = (int)(it / segs / tblocks);
            const int t0 = tb * tper, t1 = t0 + tper < tpan ? t0 + tper : tpan;
            const long b0 = qblocks * s / segs, b1 = qblocks * (s + 1) / segs;
            float *gwg = (s ? part + (size_t)(s - 1) * wsz : gw) + (size_t)gr * og * kg;
            const float *xg = xp + (size_t)gr * cg * pd.vol;
            const float *dg = gy + (size_t)gr * og * g->to * g->ho * g->wo;
            for (long qb = b0; qb < b1; qb++) {
                const long q0 = qb * KQ;
                const int nc = total - q0 < KQ ? (int)(total - q0) : KQ;
                const int np = (nc + PIECE - 1) / PIECE, kq = np * PIECE;
                chunk_tab_fill(g, &pd, q0, nc, np, PIECE, ct);
                pack_wcols(g, xg, ct, off, kg, t0, t1, np, bp);
                for (int f0 = 0; f0 < fpan; f0 += mcp) {
                    const int f1 = f0 + mcp < fpan ? f0 + mcp : fpan;
                    pack_wdy(g, dg, ct, og, f0, f1, nc, np, ap);
                    for (int tp = t0; tp < t1; tp++) {
                        const int nv = kg - tp * 16 < 16 ? kg - tp * 16 : 16;
                        const float *bj = bp + (size_t)(tp - t0) * KQ * 16;
                        if (!wskip) {
                            for (int fp = f0; fp < f1; fp++) {
                                const int mv = og - fp * MR < MR ? og - fp * MR : MR;
                                kernel_6x16(kq, ap + (size_t)(fp - f0) * KQ * MR, bj,
                                            gwg + (size_t)fp * MR * kg + (size_t)tp * 16,
                                            (size_t)kg, NULL, mv, nv, NULL, 0);
                            }
                            continue;
                        }
                        /* the pieces that see one of the panel's frames */
                        int nrun = 0;
                        for (int q = 0; q < np; q++)
                            if (ct->tcls[q] & wst[tp].frames)
                                run_add(rs, rl, &nrun, q * PIECE, PIECE);
                        for (int fp = f0; fp < f1 && nrun; fp++) {
                            const int mv = og - fp * MR < MR ? og - fp * MR : MR;
                            kernel_6x16_wsel(nrun, rs, rl, ap + (size_t)(fp - f0) * KQ * MR, bj,
                                             gwg + (size_t)fp * MR * kg, (size_t)kg, mv,
                                             wst + tp);
                        }
                    }
                }
            }
        }
    }
    free(wst);
    if (part) {
#pragma omp parallel for schedule(static) if (wsz > 65536 && th > 1)
        for (size_t i = 0; i < wsz; i++) {
            float v = gw[i];
            for (long s = 1; s < segs; s++)
                v += part[(size_t)(s - 1) * wsz + i];
            gw[i] = v;
        }
        free(part);
    }
    free(off);
    return 1;
}

/* ==== Backward, weight, taps x filters =================================
 *
 * The roles of the blocking above swapped: the kernel's 6 rows are taps,
 * read in place from the padded input along runs of positions (an output
 * row, or rows that happen to abut), and its 16 columns are filters, dy
 * packed as [position][16]. C is gw^T (taps x filters). Nothing of x is
 * packed: the blocking above transposes every tap's positions into its
 * panels, the whole column matrix (positions x taps) once per call, which
 * took 11-13% of conv2a's weight gradient (rdtsc, batch 2, 2 threads);
 * here only dy is packed (positions x filters, 13.5 times less for
 * conv2a).
 *
 * With few taps per filter (C3D's conv1a: 3 channels x 27 = 81) the
 * blocking above also runs its 16-tap panels part empty (81.5% used);
 * here the 82nd tap, a row of ones, gives the bias gradient (the sum of
 * dy over positions) in the same pass over dy: 84 of 84 x 64 used, 97.6%.
 * Before, the bias was a pass of its own over dy (103 MB at batch 2:
 * 4.4-12 ms of a 48-56 ms pass).
 *
 * Work items: a block of tap panels times a segment of the positions.
 * Each item sums into a tile-major gw^T of its own (its taps x every
 * filter: a whole tile is one contiguous 384 bytes), then adds that into
 * gw (and gb), or into its segment's partial sums, which are added into gw
 * in segment order at the end. Tap blocks cost a repacking of dy each,
 * segments a partial gw each; the split is the cheaper of the two for the
 * shape, from the shape alone, so results do not depend on the threads. */

/* c (a tile, MR x NR, rows ldc apart) += the 6 taps' values along the
 * runs times b. Tap i of run r is at t[i][ro[i][r] + k * st], k < len[r]:
 * ro[i] the runs' window origins for a tap of x, or their first
 * positions' indices times st for the row of ones or zeros. b: dy at the
 * runs' positions in order, NR floats each. */
VT_AVX2 static void kernel_6x16_runs(int nruns, const float *const *t, const int *const *ro,
                                     const int *len, int st, const float *b, float *c,
                                     size_t ldc, const float *init)
{
    const ptrdiff_t *cols = NULL;
    const int mv = MR, nv = NR, relu = 0;
    C_PREFETCH();
    C_ZERO();
    for (int r = 0; r < nruns; r++) {
        const float *p0 = t[0] + ro[0][r], *p1 = t[1] + ro[1][r], *p2 = t[2] + ro[2][r];
        const float *p3 = t[3] + ro[3][r], *p4 = t[4] + ro[4][r], *p5 = t[5] + ro[5][r];
        const int n = len[r];
        if (st == 1) {
            /* unit stride, the common case: indexed as kernel_6x16 */
#pragma GCC unroll 4
            for (int k = 0; k < n; k++)
                FMA_STEP(b + (size_t)k * NR, p0 + k, p1 + k, p2 + k, p3 + k, p4 + k, p5 + k);
        } else {
#pragma GCC unroll 4
            for (int k = 0; k < n; k++) {
                FMA_STEP(b + (size_t)k * NR, p0, p1, p2, p3, p4, p5);
                p0 += st;
                p1 += st;
                p2 += st;
                p3 += st;
                p4 += st;
                p5 += st;
            }
        }
        b += (size_t)n * NR;
    }
    C_STORE();
}

/* dy of filters [16 fp, 16 fp + 16) for the block's nc positions, laid out
 * [panel][position][16]; filters past og and positions past nc are 0. */
VT_AVX2 static void pack_fdy(const vt_conv_geom *g, const float *dg, const chunk_tab *ct,
                             int og, int fpan, int nc, int np, int kq, float *bp)
{
    const size_t p = (size_t)g->to * g->ho * g->wo;
    for (int fp = 0; fp < fpan; fp++)
        for (int q = 0; q < np; q++)
            for (int h = 0; h < NR; h += 8) {
                const int f0 = fp * NR + h, live = og - f0 < 8 ? og - f0 : 8;
                dy_piece(dg + (size_t)f0 * p, p, live, 8, ct, q, nc,
                         bp + (size_t)fp * kq * NR + (size_t)q * PIECE * NR + h, NR);
            }
}

/* The split into tap blocks and position segments: at least WITEMS items
 * where the shape allows, at the least cost of repacking dy (a tap block
 * each) and of partial sums (a segment each, within WPART_MAX). */
static void taps_split(int tpan, long qblocks, size_t wsz, size_t dysz, int *tblocks,
                       long *segs)
{
    double best = -1;
    *tblocks = 1;
    *segs = 1;
    for (int tb = 1; tb <= WITEMS && tb <= tpan; tb++) {
        const long sg = seg_count(tb, qblocks, wsz);
        if (tb * sg < WITEMS && tb < tpan && tb < WITEMS)
            continue; /* too few items while more tap blocks would do */
        const double cost = (double)sg * wsz + (double)tb * dysz;
        if (best < 0 || cost < best) {
            best = cost;
            *tblocks = tb;
            *segs = sg;
        }
    }
}

int vt_conv_igemm_backward_weight_taps(const vt_conv_geom *g, const float *x, const float *gy,
                                       float *gw, float *gb)
{
    if (!vt_conv_igemm_supported() || g->groups != 1)
        return 0;
    padded pd;
    if (!padded_of(g, &pd))
        return 0;
    const int og = g->o, kg = g->c * g->kt * g->kh * g->kw, ones = gb != NULL;
    const int tpan = (kg + ones + MR - 1) / MR, fpan = (og + NR - 1) / NR;
    const long total = (long)g->n * g->to * g->ho * g->wo;
    const long qblocks = (total + KQ - 1) / KQ;
    const size_t wsz = (size_t)og * kg + (size_t)og; /* gw, then gb */
    int tblocks;
    long segs;
    taps_split(tpan, qblocks, wsz, (size_t)og * total, &tblocks, &segs);
    const int tper = (tpan + tblocks - 1) / tblocks;
    float *part = NULL;
    if (segs > 1) {
        part = malloc((size_t)(segs - 1) * wsz * sizeof *part);
        VT_ASSERT(part, "conv: out of memory for %ld weight-gradient partials", segs - 1);
    }
    int *off = tap_offsets(g, &pd, kg);
    float *xp = pad_input(g, x, &pd);
    const long items = (long)tblocks * segs;
    const double macs = (double)og * kg * (double)total;
    const int th = omp_in_parallel() ? 1 : omp_get_max_threads();

    /* the bias tap's values and the padding taps', walked at the input's
     * stride like the others */
    float *one_run = malloc((size_t)2 * KQ * g->sw * sizeof *one_run);
    VT_ASSERT(one_run, "conv: out of memory for the bias tap");
    float *zero_run = one_run + (size_t)KQ * g->sw;
    for (int i = 0; i < KQ * g->sw; i++) {
        one_run[i] = 1.0f;
        zero_run[i] = 0.0f;
    }

#pragma omp parallel num_threads(th) if (th > 1 && items > 1 && macs >= 1e6)
    {
        float *bp = vt_conv_scratch_get(&scr_dy,
                                        (size_t)fpan * KQ * NR * sizeof(float), "dy panel");
        chunk_tab *ct = vt_conv_scratch_get(&scr_tab, sizeof *ct, "position table");
        float *acc = vt_conv_scratch_get(&scr_cols, (size_t)tper * MR * fpan * NR * sizeof(float),
                                         "weight-gradient tiles");
        int len[KQ], org[KQ], atv[KQ];
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < items; it++) {
            const long s = it % segs;
            const int tb = (int)(it / segs);
            const int t0 = tb * tper, t1 = t0 + tper < tpan ? t0 + tper : tpan, nt = t1 - t0;
            const long b0 = qblocks * s / segs, b1 = qblocks * (s + 1) / segs;
            for (long qb = b0; qb < b1; qb++) {
                const long q0 = qb * KQ;
                const int nc = total - q0 < KQ ? (int)(total - q0) : KQ;
                const int np = (nc + PIECE - 1) / PIECE, kq = np * PIECE;
                chunk_tab_fill(g, &pd, q0, nc, np, PIECE, ct);
                pack_fdy(g, gy, ct, og, fpan, nc, np, kq, bp);
                /* runs: positions whose windows lie sw apart in the padded
                 * input (an output row, or rows that happen to abut) */
                int nruns = 0;
                for (int j = 0; j < nc; j++) {
                    if (!j || ct->org[j] != ct->org[j - 1] + g->sw) {
                        org[nruns] = ct->org[j];
                        atv[nruns] = j * g->sw;
                        len[nruns++] = 0;
                    }
                    len[nruns - 1]++;
                }
                /* filters outer: a panel of dy (16 KB) stays in L1 while
                 * the item's taps, read in place, stream from L2 */
                for (int fp = 0; fp < fpan; fp++) {
                    const float *bj = bp + (size_t)fp * kq * NR;
                    for (int tp = t0; tp < t1; tp++) {
                        const float *tap[MR];
                        const int *ro[MR];
                        for (int i = 0; i < MR; i++) {
                            const int k = tp * MR + i;
                            tap[i] = k < kg ? xp + off[k] : k == kg && ones ? one_run : zero_run;
                            ro[i] = k < kg ? org : atv;
                        }
                        kernel_6x16_runs(nruns, tap, ro, len, g->sw, bj,
                                         acc + ((size_t)fp * nt + (tp - t0)) * MR * NR, NR,
                                         qb == b0 ? zeros : NULL);
                    }
                }
            }
            /* into gw and gb, or set in the segment's partials (every
             * entry belongs to one item), transposed: a filter's taps are
             * a row of gw, written in order. Tap k of filter o is at
             * (k - k0) * NR + o % NR in the filter panel's tiles. */
            float *dw = s ? part + (size_t)(s - 1) * wsz : gw, *db = s ? dw + (size_t)og * kg : gb;
            const int k0 = t0 * MR, k1 = t1 * MR < kg + ones ? t1 * MR : kg + ones;
            for (int o = 0; o < og; o++) {
                const float *a = acc + (size_t)(o / NR) * nt * MR * NR + o % NR;
                float *row = dw + (size_t)o * kg;
                for (int k = k0; k < k1; k++) {
                    const float v = a[(size_t)(k - k0) * NR];
                    float *e = k < kg ? row + k : db + o;
                    *e = s ? v : *e + v;
                }
            }
        }
    }
    if (part) {
#pragma omp parallel for schedule(static) if (wsz > 65536 && th > 1)
        for (size_t i = 0; i < wsz; i++) {
            if (i >= (size_t)og * kg && !gb)
                continue;
            float *e = i < (size_t)og * kg ? gw + i : gb + (i - (size_t)og * kg);
            float v = *e;
            for (long s = 1; s < segs; s++)
                v += part[(size_t)(s - 1) * wsz + i];
            *e = v;
        }
        free(part);
    }
    free(one_run);
    free(off);
    return 1;
}
