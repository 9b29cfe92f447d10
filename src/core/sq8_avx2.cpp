// AVX2 kernels of the 8-bit scalar quantizer (compiled with -mavx2 -mfma; entered only after
// DetectIsa()): 8 codes widened to floats per step, fused multiply-adds, two accumulators.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "core/sq8.h"

namespace scann {
namespace avx2 {

namespace {

inline __m256 Widen(const uint8_t* codes) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes));
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
}

inline float Sum(__m256 v) {
  const __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 y = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(y, _mm_shuffle_ps(y, y, 1)));
}

}  // namespace

float Sq8L2Squared(const float* shifted, const float* step, const uint8_t* codes, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 t0 =
        _mm256_fnmadd_ps(Widen(codes + i), _mm256_loadu_ps(step + i), _mm256_loadu_ps(shifted + i));
    const __m256 t1 = _mm256_fnmadd_ps(Widen(codes + i + 8), _mm256_loadu_ps(step + i + 8),
                                       _mm256_loadu_ps(shifted + i + 8));
    a0 = _mm256_fmadd_ps(t0, t0, a0);
    a1 = _mm256_fmadd_ps(t1, t1, a1);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 t =
        _mm256_fnmadd_ps(Widen(codes + i), _mm256_loadu_ps(step + i), _mm256_loadu_ps(shifted + i));
    a0 = _mm256_fmadd_ps(t, t, a0);
  }
  float s = Sum(_mm256_add_ps(a0, a1));
  for (; i < n; i++) {
    const float t = std::fma(-float(codes[i]), step[i], shifted[i]);
    s = std::fma(t, t, s);
  }
  return s;
}

float Sq8Dot(const float* weighted, const uint8_t* codes, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(Widen(codes + i), _mm256_loadu_ps(weighted + i), a0);
    a1 = _mm256_fmadd_ps(Widen(codes + i + 8), _mm256_loadu_ps(weighted + i + 8), a1);
  }
  for (; i + 8 <= n; i += 8)
    a0 = _mm256_fmadd_ps(Widen(codes + i), _mm256_loadu_ps(weighted + i), a0);
  float s = Sum(_mm256_add_ps(a0, a1));
  for (; i < n; i++) s = std::fma(float(codes[i]), weighted[i], s);
  return s;
}

// Four codes per step in double lanes: c x step is exact in double (8 bits times a float's 24),
// so the sum rounds once there, and once more to float, exactly as the scalar twin does.
void Sq8Decode(const float* lo, const float* step, const uint8_t* codes, float* out, size_t n) {
  size_t j = 0;
  for (; j + 4 <= n; j += 4) {
    int32_t four;
    std::memcpy(&four, codes + j, sizeof(four));
    const __m256d c = _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(four)));
    const __m256d l = _mm256_cvtps_pd(_mm_loadu_ps(lo + j));
    const __m256d s = _mm256_cvtps_pd(_mm_loadu_ps(step + j));
    _mm_storeu_ps(out + j, _mm256_cvtpd_ps(_mm256_add_pd(l, _mm256_mul_pd(c, s))));
  }
  for (; j < n; j++)
    out[j] = static_cast<float>(double(lo[j]) + double(codes[j]) * double(step[j]));
}

}  // namespace avx2
}  // namespace scann
