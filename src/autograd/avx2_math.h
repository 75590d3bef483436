/* avx2_math.h - exp, sigmoid and tanh on 8 floats at a time, for the LSTM's
 * gate updates (internal, not part of the API). Callers run them only after
 * vt_cpu_avx2().
 *
 * Why: libm's expf and tanhf, called per element, were half of an LSTM
 * step's time outside its GEMM (2.2 ms of a 512-unit, batch-8, T=16
 * forward sweep). These follow the classic Cephes single-precision
 * minimax polynomials and stay within a few ulp of the correctly rounded
 * result (tests/test_lstm.c measures it against double precision).
 * NaN in, NaN out. exp is +inf above 88.38, as expf, and 0 below -87.34,
 * where expf gives denormals (under 1.2e-38). */
#ifndef AVX2_MATH_H
#define AVX2_MATH_H

#include <immintrin.h>

#define AVX2_MATH_FN __attribute__((target("avx2,fma"))) static inline

AVX2_MATH_FN __m256 avx2_exp(__m256 x)
{
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447504f);
    /* min/max return their second operand when one is NaN: x goes second */
    const __m256 xc = _mm256_max_ps(lo, _mm256_min_ps(hi, x));
    /* x = n ln2 + r, |r| <= ln2 / 2; ln2 in two parts, so n ln2 is exact */
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n by its exponent bits: n is in [-126, 127] after the clamp */
    const __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    /* past the clamp: +inf above, as expf; 0 below, where expf's result
     * is a denormal at most */
    const __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ),
                            _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), over));
}

/* 1 / (1 + e^-x) */
AVX2_MATH_FN __m256 avx2_sigmoid(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, avx2_exp(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

/* |x| < 0.625: an odd polynomial (1 - 2 / (e^2x + 1) would cancel there);
 * beyond, that formula on |x|, with x's sign. */
AVX2_MATH_FN __m256 avx2_tanh(__m256 x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    const __m256 ax = _mm256_andnot_ps(sign, x);
    const __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
    const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
    const __m256 e = avx2_exp(_mm256_add_ps(ax, ax));
    const __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
    /* NaN compares false: it takes the polynomial, which keeps it NaN. x's
     * sign goes onto either (the polynomial's already has it, except at
     * -0, where x + 0 would drop it). */
    const __m256 r =
        _mm256_blendv_ps(small, big, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_GE_OQ));
    return _mm256_or_ps(r, _mm256_and_ps(sign, x));
}

#endif
