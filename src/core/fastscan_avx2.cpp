// AVX2 FastScan kernels (compiled with -mavx2 -mfma; entered only after DetectIsa()).
// Raw intrinsics rather than xsimd: the kernel is built around vpshufb with a run-time
// table and byte/word reinterpretation, which xsimd 8 does not expose.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "core/fastscan.h"

namespace scann {
namespace avx2 {

namespace {

// Software prefetch distance: the hardware prefetcher alone left the kernel at ~65% of the
// memory read rate on codes streamed from DRAM; 2 KiB ahead reaches ~95%.
constexpr uintptr_t kPrefetchBytes = 2048;

inline __m256i Load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Adds 16 uint16 scores, given as even/odd-slot word vectors whose low lanes hold the even
// subspaces' part and high lanes the odd subspaces' part, into out[0..16) in slot order.
inline void AddSlots(__m256i even, __m256i odd, uint16_t* out) {
  const __m256i first = _mm256_unpacklo_epi16(even, odd);   // per lane: slots 0..7
  const __m256i second = _mm256_unpackhi_epi16(even, odd);  // per lane: slots 8..15
  const __m256i sum = _mm256_add_epi16(_mm256_permute2x128_si256(first, second, 0x20),
                                       _mm256_permute2x128_si256(first, second, 0x31));
  __m256i* dst = reinterpret_cast<__m256i*>(out);
  _mm256_storeu_si256(dst, _mm256_add_epi16(_mm256_loadu_si256(dst), sum));
}

}  // namespace

// Each byte lookup yields the scores of two neighbouring slots in one uint16 word (even slot
// low byte, odd slot high byte).  Summing the words and, separately, the high bytes gives,
// modulo 2^16, the odd-slot sums and (words - odd << 8) the even-slot sums, so the
// accumulation is exact modulo 2^16 just like the scalar twin.
void FastScanAccumulateBlocks(const uint8_t* blocks, size_t nblocks, size_t stride_bytes,
                              int npairs, const uint8_t* qlut, uint16_t* acc) {
  if (nblocks == 0 || npairs <= 0) return;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  // Prefetches stay inside this call's bytes: past them lies memory the caller may not scan
  // next (another page), and fetching it would waste bandwidth.
  const uintptr_t last = reinterpret_cast<uintptr_t>(blocks) + (nblocks - 1) * stride_bytes +
                         size_t(npairs) * kFastScanUnit - 1;
  for (size_t b = 0; b < nblocks; b++) {
    const uint8_t* units = blocks + b * stride_bytes;
    __m256i words_lo = _mm256_setzero_si256(), odd_lo = _mm256_setzero_si256();
    __m256i words_hi = _mm256_setzero_si256(), odd_hi = _mm256_setzero_si256();
    // Unrolling by two spares GCC's register copies of the accumulators (~8% when hot).
#pragma GCC unroll 2
    for (int p = 0; p < npairs; p++) {
      const uintptr_t ahead =
          reinterpret_cast<uintptr_t>(units) + size_t(p) * kFastScanUnit + kPrefetchBytes;
      _mm_prefetch(reinterpret_cast<const char*>(ahead < last ? ahead : last), _MM_HINT_T0);
      const __m256i codes = Load(units + size_t(p) * kFastScanUnit);
      const __m256i lut = Load(qlut + size_t(p) * kFastScanUnit);
      const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(codes, low4));
      const __m256i hi =
          _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(codes, 4), low4));
      words_lo = _mm256_add_epi16(words_lo, lo);
      odd_lo = _mm256_add_epi16(odd_lo, _mm256_srli_epi16(lo, 8));
      words_hi = _mm256_add_epi16(words_hi, hi);
      odd_hi = _mm256_add_epi16(odd_hi, _mm256_srli_epi16(hi, 8));
    }
    uint16_t* out = acc + b * kFastScanBlock;
    AddSlots(_mm256_sub_epi16(words_lo, _mm256_slli_epi16(odd_lo, 8)), odd_lo, out);
    AddSlots(_mm256_sub_epi16(words_hi, _mm256_slli_epi16(odd_hi, 8)), odd_hi, out + 16);
  }
}

// 32 scores per step: signed compare after flipping the sign bit (AVX2 has no unsigned
// 16-bit compare), pack to one byte per score, one movemask, then walk the set bits.
size_t FastScanSelectBelow(const uint16_t* scores, size_t n, uint16_t threshold, uint32_t* idx) {
  if (threshold == 0) return 0;
  const __m256i flip = _mm256_set1_epi16(static_cast<short>(0x8000));
  const __m256i limit = _mm256_xor_si256(_mm256_set1_epi16(static_cast<short>(threshold)), flip);
  size_t count = 0, i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_xor_si256(Load(scores + i), flip);
    const __m256i b = _mm256_xor_si256(Load(scores + i + 16), flip);
    // packs interleaves the 128-bit lanes of a and b; the permute restores score order.
    const __m256i below = _mm256_permute4x64_epi64(
        _mm256_packs_epi16(_mm256_cmpgt_epi16(limit, a), _mm256_cmpgt_epi16(limit, b)),
        _MM_SHUFFLE(3, 1, 2, 0));
    uint32_t mask = static_cast<uint32_t>(_mm256_movemask_epi8(below));
    while (mask) {
      idx[count++] = static_cast<uint32_t>(i + __builtin_ctz(mask));
      mask &= mask - 1;
    }
  }
  for (; i < n; i++) {
    idx[count] = static_cast<uint32_t>(i);
    count += scores[i] < threshold;
  }
  return count;
}

// FastScanQuantizeLut with the same float operations in the same order per entry (minimum,
// subtract, scale, +0.5, truncate, cap at 255), so the bytes and the offset are identical.
double FastScanQuantizeLut(const float* lut, int m, float scale, uint8_t* qlut) {
  const __m256 vscale = _mm256_set1_ps(scale), half = _mm256_set1_ps(0.5f),
               cap = _mm256_set1_ps(255.0f);
  double offset = 0;
  for (int s = 0; s < m; s++) {
    const float* sub = lut + size_t(s) * 16;
    const __m256 a = _mm256_loadu_ps(sub), b = _mm256_loadu_ps(sub + 8);
    __m256 lo = _mm256_min_ps(a, b);
    lo = _mm256_min_ps(lo, _mm256_permute2f128_ps(lo, lo, 1));
    lo = _mm256_min_ps(lo, _mm256_shuffle_ps(lo, lo, 0x4E));
    lo = _mm256_min_ps(lo, _mm256_shuffle_ps(lo, lo, 0xB1));
    offset += _mm256_cvtss_f32(lo);
    // x < 255 ? trunc(x + 0.5) : 255  ==  trunc(min(x + 0.5, 255)) for x >= 0.
    const __m256i ia = _mm256_cvttps_epi32(
        _mm256_min_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(a, lo), vscale), half), cap));
    const __m256i ib = _mm256_cvttps_epi32(
        _mm256_min_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(b, lo), vscale), half), cap));
    const __m256i words = _mm256_permute4x64_epi64(_mm256_packus_epi32(ia, ib), 0xD8);
    const __m128i bytes =
        _mm_packus_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
    _mm_storeu_si128(
        reinterpret_cast<__m128i*>(qlut + size_t(s / 2) * kFastScanUnit + (s % 2) * 16), bytes);
  }
  if (m % 2)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qlut + size_t(m / 2) * kFastScanUnit + 16),
                     _mm_setzero_si128());
  return offset;
}

// FastScanLutRanges: the same float ranges (hi - lo of each subspace) summed in the same
// order in double, so the ranges are identical.
LutRanges FastScanLutRanges(const float* luts, int nluts, int m) {
  double max_range = 0, max_sum = 0;
  __m256 nonfinite = _mm256_setzero_ps();  // x - x is 0 for finite x, NaN otherwise
  for (int t = 0; t < nluts; t++) {
    double sum = 0;
    for (int s = 0; s < m; s++) {
      const float* sub = luts + (size_t(t) * m + s) * 16;
      const __m256 a = _mm256_loadu_ps(sub), b = _mm256_loadu_ps(sub + 8);
      nonfinite = _mm256_add_ps(nonfinite, _mm256_sub_ps(a, a));
      nonfinite = _mm256_add_ps(nonfinite, _mm256_sub_ps(b, b));
      __m256 lo = _mm256_min_ps(a, b), hi = _mm256_max_ps(a, b);
      lo = _mm256_min_ps(lo, _mm256_permute2f128_ps(lo, lo, 1));
      hi = _mm256_max_ps(hi, _mm256_permute2f128_ps(hi, hi, 1));
      lo = _mm256_min_ps(lo, _mm256_shuffle_ps(lo, lo, 0x4E));
      hi = _mm256_max_ps(hi, _mm256_shuffle_ps(hi, hi, 0x4E));
      lo = _mm256_min_ps(lo, _mm256_shuffle_ps(lo, lo, 0xB1));
      hi = _mm256_max_ps(hi, _mm256_shuffle_ps(hi, hi, 0xB1));
      const float range = _mm256_cvtss_f32(hi) - _mm256_cvtss_f32(lo);
      max_range = std::max(max_range, double(range));
      sum += range;
    }
    max_sum = std::max(max_sum, sum);
  }
  const bool finite =
      _mm256_movemask_ps(_mm256_cmp_ps(nonfinite, _mm256_setzero_ps(), _CMP_NEQ_UQ)) == 0;
  return {max_range, max_sum, finite};
}

}  // namespace avx2
}  // namespace scann
