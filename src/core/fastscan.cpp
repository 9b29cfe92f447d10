#include "core/fastscan.h"

#include <algorithm>
#include <cstring>

namespace scann {

namespace {

constexpr int kHalf = kFastScanBlock / 2;  // slots sharing one byte: j and j + 16

// Uint16 headroom left for rounding: each entry may round up by half a step, plus one step
// for the float rounding of the scale and of (lut - min) * scale.
double SumBudget(int m) { return 65535.0 - 0.5 * m - 1.0; }

}  // namespace

void FastScanSetSlot(uint8_t* units, int pair_begin, int npairs, int m, int slot,
                     const uint8_t* codes) {
  const int j = slot % kHalf;
  const int shift = slot < kHalf ? 0 : 4;
  const uint8_t keep = static_cast<uint8_t>(0xF0 >> shift);
  for (int p = 0; p < npairs; p++) {
    const int s = 2 * (pair_begin + p);
    const int c0 = codes[s] & 0x0F;
    const int c1 = s + 1 < m ? codes[s + 1] & 0x0F : 0;
    uint8_t* unit = units + size_t(p) * kFastScanUnit;
    unit[j] = static_cast<uint8_t>((unit[j] & keep) | (c0 << shift));
    unit[kHalf + j] = static_cast<uint8_t>((unit[kHalf + j] & keep) | (c1 << shift));
  }
}

void FastScanGetSlot(const uint8_t* units, int pair_begin, int npairs, int m, int slot,
                     uint8_t* codes) {
  const int j = slot % kHalf;
  const int shift = slot < kHalf ? 0 : 4;
  for (int p = 0; p < npairs; p++) {
    const int s = 2 * (pair_begin + p);
    const uint8_t* unit = units + size_t(p) * kFastScanUnit;
    codes[s] = (unit[j] >> shift) & 0x0F;
    if (s + 1 < m) codes[s + 1] = (unit[kHalf + j] >> shift) & 0x0F;
  }
}

void FastScanPackBlock(const uint8_t* codes, int n, int m, uint8_t* block) {
  std::memset(block, 0, FastScanCodeBytes(m));
  for (int i = 0; i < n; i++)
    FastScanSetSlot(block, 0, FastScanPairs(m), m, i, codes + size_t(i) * m);
}

LutRanges FastScanLutRanges(const float* luts, int nluts, int m) {
  double max_range = 0, max_sum = 0;
  float nonfinite = 0;  // x - x is 0 for finite x, NaN for infinities and NaN
  for (int t = 0; t < nluts; t++) {
    double sum = 0;
    for (int s = 0; s < m; s++) {
      const float* sub = luts + (size_t(t) * m + s) * 16;
      for (int c = 0; c < 16; c++) nonfinite += sub[c] - sub[c];
      const auto [lo, hi] = std::minmax_element(sub, sub + 16);
      // The same float subtraction as in FastScanQuantizeLut, so its bound holds there.
      const float range = *hi - *lo;
      max_range = std::max(max_range, double(range));
      sum += range;
    }
    max_sum = std::max(max_sum, sum);
  }
  return {max_range, max_sum, nonfinite == 0};
}

float FastScanLutScale(const float* luts, int nluts, int m) {
  const LutRanges r = FastScanLutRanges(luts, nluts, m);
  return FastScanScaleFromRanges(r.max_range, r.max_sum, m);
}

float FastScanScaleFromRanges(double max_range, double max_sum, int m) {
  return static_cast<float>(FastScanScale(max_range, max_sum, m));
}

double FastScanScale(double max_range, double max_sum, int m) {
  if (max_range <= 0) return 1.0;  // every table is constant: any scale gives score 0
  return std::min(255.0 / max_range, SumBudget(m) / max_sum);
}

double FastScanQuantizeLut(const float* lut, int m, float scale, uint8_t* qlut) {
  double offset = 0;
  for (int s = 0; s < m; s++) {
    const float* sub = lut + size_t(s) * 16;
    const float lo = *std::min_element(sub, sub + 16);
    offset += lo;
    uint8_t* dst = qlut + size_t(s / 2) * kFastScanUnit + (s % 2) * 16;
    for (int c = 0; c < 16; c++) {
      const float x = (sub[c] - lo) * scale;
      // x >= 0; adding 0.5 and truncating rounds to nearest (within float rounding).
      dst[c] = x < 255.0f ? static_cast<uint8_t>(x + 0.5f) : 255;
    }
  }
  if (m % 2) std::memset(qlut + size_t(m / 2) * kFastScanUnit + 16, 0, 16);
  return offset;
}

namespace scalar {

// The reference the SIMD kernels must match bit for bit: per block, sum the lookups of each
// slot in 32-bit and add the result to acc modulo 2^16.
void FastScanAccumulateBlocks(const uint8_t* blocks, size_t nblocks, size_t stride_bytes,
                              int npairs, const uint8_t* qlut, uint16_t* acc) {
  for (size_t b = 0; b < nblocks; b++) {
    const uint8_t* units = blocks + b * stride_bytes;
    uint32_t sum[kFastScanBlock] = {};
    for (int p = 0; p < npairs; p++) {
      const uint8_t* unit = units + size_t(p) * kFastScanUnit;
      const uint8_t* lut0 = qlut + size_t(p) * kFastScanUnit;
      const uint8_t* lut1 = lut0 + 16;
      for (int j = 0; j < kHalf; j++) {
        const uint8_t c0 = unit[j], c1 = unit[kHalf + j];
        sum[j] += lut0[c0 & 0x0F] + lut1[c1 & 0x0F];
        sum[kHalf + j] += lut0[c0 >> 4] + lut1[c1 >> 4];
      }
    }
    uint16_t* out = acc + b * kFastScanBlock;
    for (int i = 0; i < kFastScanBlock; i++) out[i] = static_cast<uint16_t>(out[i] + sum[i]);
  }
}

size_t FastScanSelectBelow(const uint16_t* scores, size_t n, uint16_t threshold, uint32_t* idx) {
  size_t count = 0;
  // Branch-free: always write, advance only on a hit (count <= i, so idx[count] is in range).
  for (size_t i = 0; i < n; i++) {
    idx[count] = static_cast<uint32_t>(i);
    count += scores[i] < threshold;
  }
  return count;
}

}  // namespace scalar

namespace {

const FastScanKernels kScalar = {scalar::FastScanAccumulateBlocks, scalar::FastScanSelectBelow,
                                 FastScanQuantizeLut, FastScanLutRanges};
const FastScanKernels kAvx2 = {avx2::FastScanAccumulateBlocks, avx2::FastScanSelectBelow,
                               avx2::FastScanQuantizeLut, avx2::FastScanLutRanges};

}  // namespace

const FastScanKernels& FastScanKernelsFor(Isa isa) {
  return isa == Isa::kAvx2 && DetectIsa() == Isa::kAvx2 ? kAvx2 : kScalar;
}

}  // namespace scann
