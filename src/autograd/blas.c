/* blas.c - the one door to OpenBLAS, and the process thread count. */
#include "vt_autograd.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void vt_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
              const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc)
{
    if (m == 0 || n == 0)
        return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b,
                ldb, beta, c, ldc);
}

/* OpenBLAS's OpenMP build reads the OpenMP thread count, but also keeps its
 * own copy: set both so a GEMM and an omp loop use the same number. */
void vt_set_threads(int n)
{
    if (n < 1)
        n = 1;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int vt_get_threads(void) { return omp_get_max_threads(); }

int vt_cpu_avx2(void)
{
    static int avx2 = -1;
    if (avx2 < 0) {
        const char *off = getenv("VT_NO_AVX2");
        __builtin_cpu_init();
        avx2 = !(off && *off && strcmp(off, "0")) && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
    }
    return avx2;
}

/* ==== Small-M GEMM: the recurrent steps' ================================
 *
 * An LSTM step multiplies N (the batch: 4-16) hidden states by W_hh (4H x
 * H, 4 MB for H = 512), T times in a chain. OpenBLAS packs both operands
 * for every such call, and for M = 8 the packing is most of the work: its
 * copy routines took a quarter of the LSTM's profile. These kernels read
 * both operands in place: W_hh streams through once a call, the few rows
 * of A stay in L1.
 *
 * Every element of C is one FMA chain over k in order (for trans_b, eight
 * lane chains summed in a fixed tree), whatever m, n or the slice of
 * columns a thread asks for: the sweep's column split across threads
 * leaves results bit-identical to one thread's. */

#include "avx2_lanes.h"


VT_AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* C (m x n) (+)= A (m x k) . B^T, B (n x k): dot products, 4 rows of A by
 * 3 of B in 12 accumulators. A row or column past the edge repeats the
 * last one and is not stored. */
VT_AVX2 static void small_nt(int m, int n, int k, const float *a, int lda,
                             const float *b, int ldb, int beta, float *c, int ldc)
{
    const int k8 = k & ~7;
    const __m256i tail = avx2_lane_mask(k - k8);
    for (int j0 = 0; j0 < n; j0 += 3) {
        const float *b0 = b + (size_t)j0 * ldb;
        const float *b1 = b + (size_t)(j0 + 1 < n ? j0 + 1 : n - 1) * ldb;
        const float *b2 = b + (size_t)(j0 + 2 < n ? j0 + 2 : n - 1) * ldb;
        for (int i0 = 0; i0 < m; i0 += 4) {
            const float *ar[4];
            for (int r = 0; r < 4; r++)
                ar[r] = a + (size_t)(i0 + r < m ? i0 + r : m - 1) * lda;
            __m256 s[4][3];
            for (int r = 0; r < 4; r++)
                s[r][0] = s[r][1] = s[r][2] = _mm256_setzero_ps();
#define SM_NT_STEP(LOAD)                                                        \
    do {                                                                        \
        const __m256 w0 = LOAD(b0), w1 = LOAD(b1), w2 = LOAD(b2);                \
        for (int r = 0; r < 4; r++) {                                           \
            const __m256 x = LOAD(ar[r]);                                       \
            s[r][0] = _mm256_fmadd_ps(x, w0, s[r][0]);                          \
            s[r][1] = _mm256_fmadd_ps(x, w1, s[r][1]);                          \
            s[r][2] = _mm256_fmadd_ps(x, w2, s[r][2]);                          \
        }                                                                       \
    } while (0)
            int kk = 0;
#define LD_FULL(p) _mm256_loadu_ps((p) + kk)
#define LD_TAIL(p) _mm256_maskload_ps((p) + kk, tail)
            for (; kk < k8; kk += 8)
                SM_NT_STEP(LD_FULL);
            if (kk < k)
                SM_NT_STEP(LD_TAIL);
#undef LD_FULL
#undef LD_TAIL
#undef SM_NT_STEP
            for (int r = 0; r < 4 && i0 + r < m; r++)
                for (int q = 0; q < 3 && j0 + q < n; q++) {
                    float *e = c + (size_t)(i0 + r) * ldc + j0 + q;
                    const float v = hsum8(s[r][q]);
                    *e = beta ? *e + v : v;
                }
        }
    }
}

/* C (m x n) (+)= A (m x k) . B, B (k x n): B streams through once, row by
 * row, against a block of C's columns held in L1 (all m rows, 16 KB), two
 * rows of B per pass: each C vector is loaded and stored once per two FMAs
 * of each of 4 rows of A. Reading B by blocks of columns instead (a row's
 * 96 bytes, then the next row's, 32 KB away in fc6's weight) missed the
 * TLB and the prefetchers: 15 ms against 19.6 for OpenBLAS on fc6's data
 * gradient at batch 4. Columns past the block's end are masked. */
VT_AVX2 static void small_nn(int m, int n, int k, const float *a, int lda,
                             const float *b, int ldb, int beta, float *c, int ldc)
{
    const int m4 = (m + 3) & ~3;
    const int jb = 4096 / m4 < 64 ? 64 : 4096 / m4 / 8 * 8;
    for (int j0 = 0; j0 < n; j0 += jb) {
        const int nj = n - j0 < jb ? n - j0 : jb;
        if (!beta)
            for (int i = 0; i < m; i++)
                memset(c + (size_t)i * ldc + j0, 0, (size_t)nj * sizeof(float));
        for (int kk = 0; kk < k; kk += 2) {
            const int two = kk + 1 < k;
            const float *b0 = b + (size_t)kk * ldb + j0, *b1 = two ? b0 + ldb : b0;
            for (int i0 = 0; i0 < m; i0 += 4) {
                const int mi = m - i0 < 4 ? m - i0 : 4;
                float *cr[4];
                __m256 x0[4], x1[4];
                for (int r = 0; r < 4; r++) {
                    const int i = i0 + r < m ? i0 + r : m - 1;
                    cr[r] = c + (size_t)i * ldc + j0;
                    x0[r] = _mm256_broadcast_ss(a + (size_t)i * lda + kk);
                    x1[r] = two ? _mm256_broadcast_ss(a + (size_t)i * lda + kk + 1)
                                : _mm256_setzero_ps();
                }
                /* plain loads and stores but at the ragged end: a masked
                 * store is microcoded on AMD's cores */
                int j = 0;
                for (; j + 8 <= nj; j += 8) {
                    const __m256 w0 = _mm256_loadu_ps(b0 + j), w1 = _mm256_loadu_ps(b1 + j);
                    for (int r = 0; r < mi; r++) {
                        __m256 v = _mm256_loadu_ps(cr[r] + j);
                        v = _mm256_fmadd_ps(x0[r], w0, v);
                        if (two)
                            v = _mm256_fmadd_ps(x1[r], w1, v);
                        _mm256_storeu_ps(cr[r] + j, v);
                    }
                }
                if (j < nj) {
                    const __m256i mk = avx2_lane_mask(nj - j);
                    const __m256 w0 = _mm256_maskload_ps(b0 + j, mk);
                    const __m256 w1 = _mm256_maskload_ps(b1 + j, mk);
                    for (int r = 0; r < mi; r++) {
                        __m256 v = _mm256_maskload_ps(cr[r] + j, mk);
                        v = _mm256_fmadd_ps(x0[r], w0, v);
                        if (two)
                            v = _mm256_fmadd_ps(x1[r], w1, v);
                        _mm256_maskstore_ps(cr[r] + j, mk, v);
                    }
                }
            }
        }
    }
}

void vt_sgemm_small(int trans_b, int m, int n, int k, const float *a, int lda,
                    const float *b, int ldb, int beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0 || m > VT_SGEMM_SMALL_MAX_M || !vt_cpu_avx2()) {
        vt_sgemm(0, trans_b, m, n, k, 1.0f, a, lda, b, ldb, beta ? 1.0f : 0.0f, c, ldc);
        return;
    }
    /* Outside a parallel region, large products split their columns over
     * the threads, in whole kernel blocks; no element's sum changes. */
    const int unit = trans_b ? 3 : 8, blocks = (n + unit - 1) / unit;
    const int th = omp_in_parallel() || (double)m * n * k < 1e6 ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(th) if (th > 1)
    {
        const int nt = omp_get_num_threads(), id = omp_get_thread_num();
        const int j0 = (int)((long)blocks * id / nt) * unit;
        int j1 = (int)((long)blocks * (id + 1) / nt) * unit;
        j1 = j1 < n ? j1 : n;
        if (j1 > j0) {
            if (trans_b)
                small_nt(m, j1 - j0, k, a, lda, b + (size_t)j0 * ldb, ldb, beta, c + j0, ldc);
            else
                small_nn(m, j1 - j0, k, a, lda, b + j0, ldb, beta, c + j0, ldc);
        }
    }
}
