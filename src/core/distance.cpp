#include "core/distance.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace scann {

namespace scalar {

// Four independent partial sums keep the scalar twin close to the SIMD summation order
// while letting the compiler pipeline the loop.
float L2Squared(const float* a, const float* b, size_t n) {
  float s[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; k++) {
      float d = a[i + k] - b[i + k];
      s[k] += d * d;
    }
  for (; i < n; i++) {
    float d = a[i] - b[i];
    s[0] += d * d;
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
}

float InnerProduct(const float* a, const float* b, size_t n) {
  float s[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; k++) s[k] += a[i + k] * b[i + k];
  for (; i < n; i++) s[0] += a[i] * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

void CosineParts(const float* a, const float* b, size_t n, float out[3]) {
  float dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < n; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  out[0] = dot;
  out[1] = na;
  out[2] = nb;
}

}  // namespace scalar

namespace {

const DistanceKernels kScalar = {scalar::L2Squared, scalar::InnerProduct, scalar::CosineParts};
const DistanceKernels kAvx2 = {avx2::L2Squared, avx2::InnerProduct, avx2::CosineParts};

}  // namespace

const DistanceKernels& DistanceKernelsFor(Isa isa) {
  return isa == Isa::kAvx2 && DetectIsa() == Isa::kAvx2 ? kAvx2 : kScalar;
}

bool AllFinite(const float* a, size_t n) {
  // NaN and infinities are the floats whose exponent bits are all set.  Integer bit tests
  // with no early exit vectorize; a float sum (x - x is NaN exactly for them) did not, its
  // one chain of dependent adds cost ~1 ns per element.
  uint32_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t bits;
    std::memcpy(&bits, a + i, sizeof(bits));
    bad |= uint32_t((bits & 0x7F800000u) == 0x7F800000u);
  }
  return bad == 0;
}

double CosineDistanceFromParts(const float parts[3]) {
  double denom = std::sqrt(static_cast<double>(parts[1]) * static_cast<double>(parts[2]));
  if (denom == 0 || !std::isfinite(denom)) return std::numeric_limits<double>::quiet_NaN();
  double sim = static_cast<double>(parts[0]) / denom;
  if (sim > 1) sim = 1;
  if (sim < -1) sim = -1;
  return 1 - sim;
}

}  // namespace scann
