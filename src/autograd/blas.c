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

#include <immintrin.h>

#define VT_AVX2 __attribute__((target("avx2,fma")))


VT_AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* lanes [0, live) set */
VT_AVX2 static inline __m256i lane_mask(int live)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(live), idx);
}

/* C (m x n) (+)= A (m x k) . B^T, B (n x k): dot products, 4 rows of A by
 * 3 of B in 12 accumulators. A row or column past the edge repeats the
 * last one and is not stored. */
VT_AVX2 static void small_nt(int m, int n, int k, const float *a, int lda,
                             const float *b, int ldb, int beta, float *c, int ldc)
{
    const int k8 = k & ~7;
    const __m256i tail = lane_mask(k - k8);
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

/* C (m x n) (+)= A (m x k) . B, B (k x n): 4 rows of A broadcast against 24
 * columns of B. A row past the edge repeats the last one; columns past the
 * edge are masked off. */
VT_AVX2 static void small_nn(int m, int n, int k, const float *a, int lda,
                             const float *b, int ldb, int beta, float *c, int ldc)
{
    for (int j0 = 0; j0 < n; j0 += 24) {
        const int live = n - j0 < 24 ? n - j0 : 24;
        const __m256i m0 = lane_mask(live), m1 = lane_mask(live - 8),
                      m2 = lane_mask(live - 16);
        for (int i0 = 0; i0 < m; i0 += 4) {
            const float *ar[4];
            for (int r = 0; r < 4; r++)
                ar[r] = a + (size_t)(i0 + r < m ? i0 + r : m - 1) * lda;
            __m256 s[4][3];
            for (int r = 0; r < 4; r++)
                s[r][0] = s[r][1] = s[r][2] = _mm256_setzero_ps();
            const float *bk = b + j0;
#define SM_NN_LOOP(L0, L1, L2)                                                  \
    for (int kk = 0; kk < k; kk++, bk += ldb) {                                 \
        const __m256 w0 = L0, w1 = L1, w2 = L2;                                 \
        for (int r = 0; r < 4; r++) {                                           \
            const __m256 x = _mm256_broadcast_ss(ar[r] + kk);                   \
            s[r][0] = _mm256_fmadd_ps(x, w0, s[r][0]);                          \
            s[r][1] = _mm256_fmadd_ps(x, w1, s[r][1]);                          \
            s[r][2] = _mm256_fmadd_ps(x, w2, s[r][2]);                          \
        }                                                                       \
    }
            if (live == 24) {
                SM_NN_LOOP(_mm256_loadu_ps(bk), _mm256_loadu_ps(bk + 8),
                           _mm256_loadu_ps(bk + 16))
            } else {
                SM_NN_LOOP(_mm256_maskload_ps(bk, m0), _mm256_maskload_ps(bk + 8, m1),
                           _mm256_maskload_ps(bk + 16, m2))
            }
#undef SM_NN_LOOP
            for (int r = 0; r < 4 && i0 + r < m; r++) {
                float *e = c + (size_t)(i0 + r) * ldc + j0;
                const __m256i mk[3] = {m0, m1, m2};
                for (int q = 0; q < 3; q++) {
                    __m256 v = s[r][q];
                    if (beta)
                        v = _mm256_add_ps(_mm256_maskload_ps(e + 8 * q, mk[q]), v);
                    _mm256_maskstore_ps(e + 8 * q, mk[q], v);
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
    if (trans_b)
        small_nt(m, n, k, a, lda, b, ldb, beta, c, ldc);
    else
        small_nn(m, n, k, a, lda, b, ldb, beta, c, ldc);
}
