// The 8-bit scalar quantizer: training (integer data stored exactly), the error bound of every
// code, the AVX2 kernels against their scalar twins, and the lower bounds of the exact
// distances on real data (GloVe-100, Fashion-MNIST) and on extreme magnitudes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/distance.h"
#include "core/isa.h"
#include "core/sq8.h"
#include "test_data.h"
#include "isa_guard.h"

namespace scann {
namespace {

using test::IsaGuard;

void NormalizeRows(std::vector<float>* rows, int dim) {
  for (size_t i = 0; i < rows->size() / dim; i++) {
    double norm = 0;
    for (int j = 0; j < dim; j++) norm += double((*rows)[i * dim + j]) * (*rows)[i * dim + j];
    norm = std::sqrt(norm);
    for (int j = 0; j < dim; j++) (*rows)[i * dim + j] = float((*rows)[i * dim + j] / norm);
  }
}

// The exact distances as the SQL operators compute them.
double OperatorL2(const float* a, const float* b, int dim) {
  return std::sqrt(double(Distances().l2_squared(a, b, size_t(dim))));
}
double OperatorNegativeDot(const float* a, const float* b, int dim) {
  return -double(Distances().inner_product(a, b, size_t(dim)));
}
double OperatorCosine(const float* a, const float* b, int dim) {
  float parts[3];
  Distances().cosine_parts(a, b, size_t(dim), parts);
  return CosineDistanceFromParts(parts);
}

TEST(ScalarQuantizer, IntegerDataIsStoredExactly) {
  const int dim = 784;
  const auto train = test::ReadRows(test::DataPath("fashion-mnist", "base.f32"), dim, 0, 5000);
  const auto rows = test::ReadRows(test::DataPath("fashion-mnist", "base.f32"), dim, 5000, 500);
  ASSERT_FALSE(train.empty() || rows.empty()) << "run bench/datasets.py prepare fashion-mnist";
  ScalarQuantizer sq;
  sq.Train(train.data(), 5000, dim);
  std::vector<uint8_t> codes(dim);
  std::vector<float> back(dim);
  int exact = 0;
  for (size_t i = 0; i < 500; i++) {
    const float* x = rows.data() + i * dim;
    const float eps = sq.Encode(x, codes.data());
    sq.Decode(codes.data(), back.data());
    exact += eps == 0.0f && std::equal(back.begin(), back.end(), x);
  }
  // Rows with a pixel beyond the sample's range in some position are clipped there.
  EXPECT_GE(exact, 450) << "of 500 Fashion-MNIST rows stored exactly";
}

TEST(ScalarQuantizer, EpsBoundsTheError) {
  std::mt19937 rng(1);
  std::normal_distribution<float> value(0.0f, 3.0f);
  const int dim = 37;
  std::vector<float> train(300 * dim), x(dim), back(dim);
  for (auto& v : train) v = value(rng);
  ScalarQuantizer sq;
  sq.Train(train.data(), 300, dim);
  std::vector<uint8_t> codes(dim);
  for (int trial = 0; trial < 200; trial++) {
    for (auto& v : x) v = 1.5f * value(rng);  // some beyond the trained range: clipped
    const float eps = sq.Encode(x.data(), codes.data());
    double err = 0;
    for (int j = 0; j < dim; j++) {
      const double e = double(x[j]) - (double(sq.lo()[j]) + codes[j] * double(sq.step()[j]));
      err += e * e;
    }
    EXPECT_GE(double(eps), std::sqrt(err));
    EXPECT_LE(double(eps), std::sqrt(err) * (1 + 1e-6) + 1e-30);
  }
  x[3] = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(std::isinf(sq.Encode(x.data(), codes.data())));
}

// The AVX2 kernels sum in another order than their scalar twins: they agree within float's
// rounding of a sum of n terms (n u times the sum of the terms' magnitudes).
TEST(ScalarQuantizer, Avx2KernelsMatchScalar) {
  if (DetectIsa() != Isa::kAvx2) GTEST_SKIP() << "CPU lacks AVX2+FMA";
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (size_t n : {size_t(1), size_t(7), size_t(8), size_t(15), size_t(16), size_t(17), size_t(100),
                   size_t(784), size_t(1536), size_t(16000)}) {
    std::vector<float> a(n + 1), w(n + 1);
    std::vector<uint8_t> codes(n + 1);
    for (size_t i = 0; i <= n; i++) {
      a[i] = u(rng);
      w[i] = std::fabs(u(rng)) / 64;
      codes[i] = uint8_t(rng());
    }
    // Offsets by one: nothing is aligned.
    const float want_l2 = scalar::Sq8L2Squared(a.data() + 1, w.data() + 1, codes.data() + 1, n);
    const float got_l2 = avx2::Sq8L2Squared(a.data() + 1, w.data() + 1, codes.data() + 1, n);
    EXPECT_NEAR(got_l2, want_l2, 2.0 * n * 6e-8 * want_l2) << n;
    double magnitude = 0;
    for (size_t i = 1; i <= n; i++) magnitude += std::fabs(double(a[i]) * codes[i]);
    const float want_dot = scalar::Sq8Dot(a.data() + 1, codes.data() + 1, n);
    const float got_dot = avx2::Sq8Dot(a.data() + 1, codes.data() + 1, n);
    EXPECT_NEAR(got_dot, want_dot, 2.0 * n * 6e-8 * magnitude) << n;
  }
}

// Decoding is bit for bit the scalar twin's, whatever the parameters (an exact record's decoded
// row is the row itself, and the scan hands it to the operators' kernels).
TEST(ScalarQuantizer, Avx2DecodeMatchesScalarBitForBit) {
  if (DetectIsa() != Isa::kAvx2) GTEST_SKIP() << "CPU lacks AVX2+FMA";
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  for (size_t n :
       {size_t(1), size_t(3), size_t(4), size_t(5), size_t(100), size_t(784), size_t(16000)}) {
    std::vector<float> lo(n + 1), step(n + 1), want(n), got(n);
    std::vector<uint8_t> codes(n + 1);
    for (size_t i = 0; i <= n; i++) {
      lo[i] = std::ldexp(u(rng), int(rng() % 60) - 30);
      step[i] = i % 3 == 0 ? 1.0f : std::ldexp(std::fabs(u(rng)), int(rng() % 60) - 38);
      codes[i] = uint8_t(rng());
    }
    scalar::Sq8Decode(lo.data() + 1, step.data() + 1, codes.data() + 1, want.data(), n);
    avx2::Sq8Decode(lo.data() + 1, step.data() + 1, codes.data() + 1, got.data(), n);
    EXPECT_EQ(0, std::memcmp(want.data(), got.data(), sizeof(float) * n)) << n;
  }
}

struct Checked {
  double worst_gap = 0;   // largest (bound - exact); must be <= 0
  double mean_slack = 0;  // mean (exact - bound) / |exact|
};

// Every pair's lower bound stays at or below the operator's exact distance.
Checked CheckBounds(const std::vector<float>& rows, const std::vector<float>& queries, int dim,
                    const char* metric) {
  ScalarQuantizer sq;
  const size_t n = rows.size() / dim, nq = queries.size() / dim;
  sq.Train(rows.data(), n, dim);
  std::vector<uint8_t> codes(n * dim);
  std::vector<float> eps(n);
  for (size_t i = 0; i < n; i++) eps[i] = sq.Encode(rows.data() + i * dim, codes.data() + i * dim);
  Checked out;
  double slack = 0;
  size_t counted = 0;
  Sq8Query prepared;
  for (size_t qi = 0; qi < nq; qi++) {
    const float* q = queries.data() + qi * dim;
    Sq8PrepareQuery(sq, q, &prepared);
    for (size_t i = 0; i < n; i++) {
      const float* x = rows.data() + i * dim;
      const uint8_t* c = codes.data() + i * dim;
      double bound, exact;
      if (std::string(metric) == "l2") {
        bound = Sq8L2LowerBound(prepared, sq, c, eps[i]);
        exact = OperatorL2(q, x, dim);
      } else if (std::string(metric) == "ip") {
        bound = Sq8NegativeDotLowerBound(prepared, c, eps[i]);
        exact = OperatorNegativeDot(q, x, dim);
      } else {
        bound = Sq8CosineLowerBound(prepared, c, eps[i]);
        exact = OperatorCosine(q, x, dim);
      }
      if (std::isnan(exact)) continue;  // NaN sorts after everything: any bound holds
      out.worst_gap = std::max(out.worst_gap, bound - exact);
      if (std::isfinite(bound) && std::isfinite(exact) && exact != 0) {
        slack += (exact - bound) / std::fabs(exact);
        counted++;
      }
    }
  }
  out.mean_slack = counted ? slack / counted : 0;
  return out;
}

TEST(ScalarQuantizer, LowerBoundsOnRealData) {
  IsaGuard guard;
  const auto glove = test::ReadRows(test::DataPath("glove-100", "base.f32"), 100, 0, 3000);
  const auto glove_q = test::ReadRows(test::DataPath("glove-100", "queries.f32"), 100, 0, 40);
  const auto fashion = test::ReadRows(test::DataPath("fashion-mnist", "base.f32"), 784, 0, 2000);
  const auto fashion_q = test::ReadRows(test::DataPath("fashion-mnist", "queries.f32"), 784, 0, 20);
  ASSERT_FALSE(glove.empty() || glove_q.empty() || fashion.empty() || fashion_q.empty())
      << "run bench/datasets.py prepare glove-100 fashion-mnist";
  auto glove_unit = glove, glove_q_unit = glove_q;
  NormalizeRows(&glove_unit, 100);
  NormalizeRows(&glove_q_unit, 100);
  for (Isa isa : {Isa::kScalar, Isa::kAvx2}) {
    SetActiveIsa(isa);
    const Checked l2 = CheckBounds(fashion, fashion_q, 784, "l2");
    const Checked ip = CheckBounds(glove, glove_q, 100, "ip");
    const Checked cosine = CheckBounds(glove_unit, glove_q_unit, 100, "cosine");
    const Checked glove_l2 = CheckBounds(glove, glove_q, 100, "l2");
    EXPECT_LE(l2.worst_gap, 0.0) << IsaName(isa);
    EXPECT_LE(ip.worst_gap, 0.0) << IsaName(isa);
    EXPECT_LE(cosine.worst_gap, 0.0) << IsaName(isa);
    EXPECT_LE(glove_l2.worst_gap, 0.0) << IsaName(isa);
    // Tight enough to be useful: a few percent of the distance on average.
    EXPECT_LT(l2.mean_slack, 0.01) << IsaName(isa);
    EXPECT_LT(glove_l2.mean_slack, 0.05) << IsaName(isa);
    EXPECT_LT(cosine.mean_slack, 0.1) << IsaName(isa);
  }
}

TEST(ScalarQuantizer, LowerBoundsAtExtremeMagnitudes) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int dim = 8;
  std::vector<float> rows, queries;
  for (int i = 0; i < 300; i++)
    for (int j = 0; j < dim; j++) {
      float v = u(rng);
      if (i % 50 == 0) v *= 1e19f;
      if (i % 50 == 1) v *= 1e-30f;
      rows.push_back(v);
    }
  for (float scale : {1.0f, 1e19f, 1e-30f, 3e38f})
    for (int j = 0; j < dim; j++) queries.push_back(scale * u(rng));
  for (const char* metric : {"l2", "ip"}) {
    const Checked c = CheckBounds(rows, queries, dim, metric);
    EXPECT_LE(c.worst_gap, 0.0) << metric;
  }
}

}  // namespace
}  // namespace scann
