/* avx2_lanes.h - lane shuffles shared by the AVX2 conv and pooling kernels
 * (internal, not part of the API). The functions are compiled for AVX2, so
 * callers run them only after vt_cpu_avx2(). */
#ifndef AVX2_LANES_H
#define AVX2_LANES_H

#include <immintrin.h>

/* The even (odd) floats of the 16 in a, b: a w-stride-2 run, by shuffles;
 * a gather is several times slower. */
__attribute__((target("avx2"))) static inline __m256 avx2_even(__m256 a, __m256 b)
{
    return _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
}

__attribute__((target("avx2"))) static inline __m256 avx2_odd(__m256 a, __m256 b)
{
    return _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}

#endif
