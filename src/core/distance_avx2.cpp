// AVX2 + FMA distance kernels (compiled with -mavx2 -mfma; entered only after DetectIsa()).
#include <xsimd/xsimd.hpp>

#include "core/distance.h"

namespace scann {
namespace avx2 {

namespace {

using Batch = xsimd::batch<float, xsimd::fma3<xsimd::avx2>>;
constexpr size_t kLanes = Batch::size;

// Sum of f(a_i, b_i) over four accumulators of kLanes (enough independent FMA chains to
// hide their latency), then a scalar tail.
template <typename Step, typename Tail>
float Reduce(const float* a, const float* b, size_t n, Step step, Tail tail) {
  Batch acc[4] = {Batch(0.0f), Batch(0.0f), Batch(0.0f), Batch(0.0f)};
  size_t i = 0;
  for (; i + 4 * kLanes <= n; i += 4 * kLanes)
    for (size_t k = 0; k < 4; k++)
      acc[k] = step(Batch::load_unaligned(a + i + k * kLanes),
                    Batch::load_unaligned(b + i + k * kLanes), acc[k]);
  for (size_t k = 0; i + kLanes <= n; i += kLanes, k++)
    acc[k] = step(Batch::load_unaligned(a + i), Batch::load_unaligned(b + i), acc[k]);
  float s = xsimd::hadd((acc[0] + acc[1]) + (acc[2] + acc[3]));
  for (; i < n; i++) s += tail(a[i], b[i]);
  return s;
}

}  // namespace

float L2Squared(const float* a, const float* b, size_t n) {
  return Reduce(
      a, b, n,
      [](Batch x, Batch y, Batch acc) {
        Batch d = x - y;
        return xsimd::fma(d, d, acc);
      },
      [](float x, float y) { return (x - y) * (x - y); });
}

float InnerProduct(const float* a, const float* b, size_t n) {
  return Reduce(
      a, b, n, [](Batch x, Batch y, Batch acc) { return xsimd::fma(x, y, acc); },
      [](float x, float y) { return x * y; });
}

void CosineParts(const float* a, const float* b, size_t n, float out[3]) {
  Batch dot(0.0f), na(0.0f), nb(0.0f);
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    Batch x = Batch::load_unaligned(a + i), y = Batch::load_unaligned(b + i);
    dot = xsimd::fma(x, y, dot);
    na = xsimd::fma(x, x, na);
    nb = xsimd::fma(y, y, nb);
  }
  float d = xsimd::hadd(dot), sa = xsimd::hadd(na), sb = xsimd::hadd(nb);
  for (; i < n; i++) {
    d += a[i] * b[i];
    sa += a[i] * a[i];
    sb += b[i] * b[i];
  }
  out[0] = d;
  out[1] = sa;
  out[2] = sb;
}

}  // namespace avx2
}  // namespace scann
