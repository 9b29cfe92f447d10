// The dispatched SIMD distance kernels agree with their scalar twins.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "core/distance.h"
#include "test_rng.h"

namespace scann {
namespace {

// Float summation in a different order: the bound is relative to the sum of |terms|
// (n * eps * sum|terms| is the classical worst case; real error is far smaller).
double Bound(double sum_abs_terms, size_t n) {
  return 4.0 * std::sqrt(static_cast<double>(n)) * std::numeric_limits<float>::epsilon() *
             sum_abs_terms +
         1e-30;
}

class DistanceKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (DetectIsa() != Isa::kAvx2) GTEST_SKIP() << "CPU lacks AVX2+FMA: only scalar exists";
  }
};

void CheckLength(size_t n, size_t offset, test::Rng& rng) {
  std::vector<float> buf_a(n + offset), buf_b(n + offset);
  for (auto& x : buf_a) x = rng.Uniform(-2, 2);
  for (auto& x : buf_b) x = rng.Uniform(-2, 2);
  const float* a = buf_a.data() + offset;  // unaligned starts when offset % 8 != 0
  const float* b = buf_b.data() + offset;
  double l2_abs = 0, ip_abs = 0, na = 0, nb = 0;
  for (size_t i = 0; i < n; i++) {
    l2_abs += double(a[i] - b[i]) * (a[i] - b[i]);
    ip_abs += std::fabs(double(a[i]) * b[i]);
    na += double(a[i]) * a[i];
    nb += double(b[i]) * b[i];
  }
  const DistanceKernels& s = DistanceKernelsFor(Isa::kScalar);
  const DistanceKernels& v = DistanceKernelsFor(Isa::kAvx2);
  EXPECT_NEAR(s.l2_squared(a, b, n), v.l2_squared(a, b, n), Bound(l2_abs, n)) << "n=" << n;
  EXPECT_NEAR(s.inner_product(a, b, n), v.inner_product(a, b, n), Bound(ip_abs, n)) << "n=" << n;
  float ps[3], pv[3];
  s.cosine_parts(a, b, n, ps);
  v.cosine_parts(a, b, n, pv);
  EXPECT_NEAR(ps[0], pv[0], Bound(ip_abs, n)) << "n=" << n;
  EXPECT_NEAR(ps[1], pv[1], Bound(na, n)) << "n=" << n;
  EXPECT_NEAR(ps[2], pv[2], Bound(nb, n)) << "n=" << n;
  // Both also agree with a double-precision reference within the same bound.
  EXPECT_NEAR(v.l2_squared(a, b, n), l2_abs, Bound(l2_abs, n)) << "n=" << n;
}

TEST_F(DistanceKernelTest, SimdMatchesScalarForEveryLengthUpTo300) {
  test::Rng rng(1);
  for (size_t n = 1; n <= 300; n++)
    for (size_t offset : {0, 1, 3, 7}) CheckLength(n, offset, rng);
}

TEST_F(DistanceKernelTest, SimdMatchesScalarForLongVectors) {
  test::Rng rng(2);
  for (size_t n : {384, 768, 784, 1536, 3072, 4095, 8191, 16000})
    for (size_t offset : {0, 5}) CheckLength(n, offset, rng);
}

TEST(Distance, HandCheckedValues) {
  const float a[3] = {1, 2, 3}, b[3] = {4, 6, 3};
  for (Isa isa : {Isa::kScalar, DetectIsa()}) {
    const DistanceKernels& k = DistanceKernelsFor(isa);
    EXPECT_EQ(k.l2_squared(a, b, 3), 25.0f);
    EXPECT_EQ(k.inner_product(a, b, 3), 25.0f);
    float parts[3];
    k.cosine_parts(a, b, 3, parts);
    EXPECT_NEAR(CosineDistanceFromParts(parts), 1 - 25 / std::sqrt(14.0 * 61.0), 1e-7);
  }
}

TEST(Distance, CosineOfZeroVectorIsNaN) {
  const float parts[3] = {0, 0, 5};
  EXPECT_TRUE(std::isnan(CosineDistanceFromParts(parts)));
}

TEST(Distance, CosineIsClampedToItsRange) {
  const float same[3] = {1.0000001f, 1, 1}, opposite[3] = {-1.0000001f, 1, 1};
  EXPECT_EQ(CosineDistanceFromParts(same), 0.0);
  EXPECT_EQ(CosineDistanceFromParts(opposite), 2.0);
}

TEST(Distance, AllFiniteFindsNaNAndInfinityAnywhere) {
  std::vector<float> v(37, 1.5f);
  EXPECT_TRUE(AllFinite(v.data(), v.size()));
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()})
    for (size_t pos : {size_t(0), size_t(17), size_t(36)}) {
      std::vector<float> w = v;
      w[pos] = bad;
      EXPECT_FALSE(AllFinite(w.data(), w.size())) << pos;
    }
  EXPECT_TRUE(AllFinite(v.data(), 0));
  const float big[2] = {3.0e38f, -3.0e38f};  // finite extremes do not overflow the check
  EXPECT_TRUE(AllFinite(big, 2));
  const float edge[4] = {-0.0f, std::numeric_limits<float>::denorm_min(),
                         -std::numeric_limits<float>::max(), std::numeric_limits<float>::min()};
  EXPECT_TRUE(AllFinite(edge, 4));
  for (uint32_t bits : {0x7F800001u, 0xFFC00000u, 0x7FFFFFFFu, 0xFF800000u}) {  // NaN payloads, -inf
    float x;
    std::memcpy(&x, &bits, sizeof(x));
    std::vector<float> w = v;
    w[20] = x;
    EXPECT_FALSE(AllFinite(w.data(), w.size())) << std::hex << bits;
  }
}

}  // namespace
}  // namespace scann
