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
