// QueryLuts: the integer keys of a query's lookup tables over a ring of lists, their agreement
// with the plain SIMD quantization on ordinary tables, the memory-bounded (streamed) mode, and
// finite keys for huge rows and queries.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <random>
#include <vector>

#include "core/fastscan.h"
#include "core/kmeans.h"
#include "core/lut.h"
#include "core/pq.h"
#include "test_data.h"

namespace scann {
namespace {

struct Fixture {
  int dim, dsub;
  std::vector<float> codebooks;  // m x 16 x dsub
  std::vector<float> centroids;  // lists x dim
  std::vector<const float*> pointers;
  std::vector<float> query;
};

Fixture Random(int dim, int dsub, int lists, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Fixture f{dim, dsub, {}, {}, {}, {}};
  const int m = (dim + dsub - 1) / dsub;
  f.codebooks.resize(size_t(m) * 16 * dsub);
  for (auto& v : f.codebooks) v = 0.2f * u(rng);
  f.centroids.resize(size_t(lists) * dim);
  for (auto& v : f.centroids) v = u(rng);
  for (int l = 0; l < lists; l++) f.pointers.push_back(f.centroids.data() + size_t(l) * dim);
  f.query.resize(dim);
  for (auto& v : f.query) v = u(rng);
  return f;
}

// The float score of codes in list l: the sum of the float table entries plus the list's bias.
double FloatScore(const ProductQuantizer& pq, LutMetric metric, const Fixture& f, int l,
                  const std::vector<uint8_t>& codes) {
  const int m = pq.num_subspaces();
  std::vector<double> lut(size_t(m) * 16);
  double bias = 0;
  if (metric == LutMetric::kL2) {
    std::vector<double> r(f.dim);
    for (int j = 0; j < f.dim; j++) r[j] = double(f.query[j]) - f.pointers[l][j];
    pq.L2LutExact(r.data(), lut.data());
  } else {
    pq.IpLutExact(f.query.data(), lut.data());
    for (int j = 0; j < f.dim; j++) bias -= double(f.query[j]) * f.pointers[l][j];
  }
  double sum = bias;
  for (int s = 0; s < m; s++) sum += lut[s * 16 + codes[s]];
  return sum;
}

uint32_t Score(const uint8_t* qlut, const std::vector<uint8_t>& codes) {
  uint32_t sum = 0;
  for (size_t s = 0; s < codes.size(); s++)
    sum += qlut[(s / 2) * kFastScanUnit + (s % 2) * 16 + codes[s]];
  return sum;
}

// On ordinary tables the keys are the SIMD quantization's own bytes and offsets, so an index's
// ranking does not change with the integer keys.
TEST(QueryLuts, OrdinaryTablesMatchThePlainQuantization) {
  for (LutMetric metric : {LutMetric::kL2, LutMetric::kInnerProduct}) {
    Fixture f = Random(100, 2, 20, 1);
    ProductQuantizer pq(f.dim, f.dsub, f.codebooks.data());
    const int m = pq.num_subspaces();
    QueryLuts luts;
    luts.Prepare(pq, metric, f.query.data(), f.pointers.data(), 20, 1 << 30);
    EXPECT_FALSE(luts.streamed());
    EXPECT_FALSE(luts.clipped());
    const int nt = metric == LutMetric::kL2 ? 20 : 1;
    std::vector<float> tables(size_t(nt) * m * 16);
    for (int t = 0; t < nt; t++) {
      if (metric == LutMetric::kL2) {
        std::vector<float> r(f.dim);
        for (int j = 0; j < f.dim; j++) r[j] = f.query[j] - f.pointers[t][j];
        pq.L2Lut(r.data(), tables.data() + size_t(t) * m * 16);
      } else {
        pq.IpLut(f.query.data(), tables.data());
      }
    }
    const float scale = FastScanLutScale(tables.data(), nt, m);
    EXPECT_EQ(luts.scale(), double(scale));
    for (int l = 0; l < 20; l++) {
      std::vector<uint8_t> want(FastScanCodeBytes(m));
      const int t = metric == LutMetric::kL2 ? l : 0;
      const double offset =
          FastScanQuantizeLut(tables.data() + size_t(t) * m * 16, m, scale, want.data());
      const uint8_t* got = luts.Table(l);
      ASSERT_TRUE(std::equal(want.begin(), want.end(), got)) << "list " << l;
      if (metric == LutMetric::kL2) {
        EXPECT_EQ(luts.Offset(l), std::llround(offset * scale));
      }
    }
  }
}

// Keys approximate the float scores within the quantization's bound: m half-steps, plus half a
// step for the offset's rounding.
TEST(QueryLuts, KeysApproximateFloatScores) {
  std::mt19937 rng(3);
  for (LutMetric metric : {LutMetric::kL2, LutMetric::kInnerProduct}) {
    for (int dim : {3, 17, 100, 384}) {
      Fixture f = Random(dim, 2, 8, uint32_t(dim));
      ProductQuantizer pq(f.dim, f.dsub, f.codebooks.data());
      const int m = pq.num_subspaces();
      QueryLuts luts;
      luts.Prepare(pq, metric, f.query.data(), f.pointers.data(), 8, 1 << 30);
      for (int l = 0; l < 8; l++) {
        const uint8_t* qlut = luts.Table(l);
        for (int trial = 0; trial < 50; trial++) {
          std::vector<uint8_t> codes(m);
          for (auto& c : codes) c = uint8_t(rng() & 15);
          const double approx = double(luts.Offset(l) + Score(qlut, codes)) / luts.scale();
          const double exact = FloatScore(pq, metric, f, l, codes);
          EXPECT_NEAR(approx, exact,
                      (m * 0.5 + 0.5 + 1e-3) / luts.scale() + 1e-5 * std::fabs(exact))
              << "dim " << dim << " list " << l;
        }
      }
    }
  }
}

// Tables that do not fit the budget are computed again per list: the same bytes and offsets,
// for ordinary tables and for tables that need double precision and clipping.
TEST(QueryLuts, StreamedTablesEqualMaterializedOnes) {
  for (int outliers = 0; outliers < 2; outliers++) {
    Fixture f = Random(64, 1, 30, 5);
    if (outliers) {
      f.codebooks[size_t(5) * 16 + 3] = 1e15f;  // one codeword far out: clipping
      f.centroids[size_t(7) * 64 + 2] = 1e20f;  // list 7's float table overflows
    }
    ProductQuantizer pq(f.dim, f.dsub, f.codebooks.data());
    const int m = pq.num_subspaces();
    QueryLuts all, one;
    all.Prepare(pq, LutMetric::kL2, f.query.data(), f.pointers.data(), 30, 1 << 30);
    one.Prepare(pq, LutMetric::kL2, f.query.data(), f.pointers.data(), 30, 1);
    EXPECT_FALSE(all.streamed());
    EXPECT_TRUE(one.streamed());
    EXPECT_EQ(all.scale(), one.scale());
    EXPECT_EQ(all.clipped(), outliers == 1);
    for (int l = 0; l < 30; l++) {
      const std::vector<uint8_t> a(all.Table(l), all.Table(l) + FastScanCodeBytes(m));
      const uint8_t* b = one.Table(l);
      ASSERT_TRUE(std::equal(a.begin(), a.end(), b)) << "list " << l;
      EXPECT_EQ(all.Offset(l), one.Offset(l)) << "list " << l;
    }
  }
}

// A list whose centroid lies at 1e20 (its float table overflows) gets finite keys that rank
// its rows last, and leaves the other lists' tables as they would be without it.
TEST(QueryLuts, HugeCentroidKeepsOtherListsResolved) {
  Fixture f = Random(4, 2, 10, 7);
  for (int j = 0; j < 3; j++) f.centroids[size_t(9) * 4 + j] = 1e20f;
  ProductQuantizer pq(f.dim, f.dsub, f.codebooks.data());
  QueryLuts luts, ordinary;
  luts.Prepare(pq, LutMetric::kL2, f.query.data(), f.pointers.data(), 10, 1 << 30);
  ordinary.Prepare(pq, LutMetric::kL2, f.query.data(), f.pointers.data(), 9, 1 << 30);
  EXPECT_FLOAT_EQ(float(luts.scale()), float(ordinary.scale()));
  int64_t worst_ordinary = std::numeric_limits<int64_t>::min();
  for (int l = 0; l < 9; l++) {
    luts.Table(l);
    worst_ordinary = std::max(worst_ordinary, luts.Offset(l) + 255 * pq.num_subspaces());
  }
  luts.Table(9);
  EXPECT_GT(luts.Offset(9), worst_ordinary);
}

// A list far from the others (its centroid at 1e3 .. 1e15) has ranges far above the others'
// (or, past float's precision, none at all): they are clipped instead of setting the scale, so
// the other lists keep their resolution, and its rows still rank after theirs.
TEST(QueryLuts, FarListIsClipped) {
  for (float far : {1e3f, 1e5f, 1e12f, 1e15f}) {
    Fixture f = Random(32, 2, 7, 9);
    ProductQuantizer pq(f.dim, f.dsub, f.codebooks.data());
    for (int j = 0; j < 32; j++) f.centroids[size_t(6) * 32 + j] = far;
    QueryLuts with, without;
    with.Prepare(pq, LutMetric::kL2, f.query.data(), f.pointers.data(), 7, 1 << 30);
    without.Prepare(pq, LutMetric::kL2, f.query.data(), f.pointers.data(), 6, 1 << 30);
    if (far < 1e6f) {
      EXPECT_TRUE(with.clipped()) << far;
    }
    EXPECT_FALSE(without.clipped());
    EXPECT_GT(with.scale(), without.scale() / 16) << far;
    int64_t worst = std::numeric_limits<int64_t>::min();
    for (int l = 0; l < 6; l++) {
      with.Table(l);
      worst = std::max(worst, with.Offset(l) + 255 * pq.num_subspaces());
    }
    with.Table(6);
    EXPECT_GT(with.Offset(6), worst) << far;
  }
}

// Queries at the edge of float's range (inner product): the float table overflows, the double
// one does not, and the keys order codes as their exact scores do.
TEST(QueryLuts, ExtremeQueriesGiveOrderedFiniteKeys) {
  for (float q : {1e38f, -3e38f, 3.4e38f}) {
    Fixture f = Random(8, 2, 3, 11);
    for (auto& v : f.query) v = q;
    ProductQuantizer pq(f.dim, f.dsub, f.codebooks.data());
    const int m = pq.num_subspaces();
    QueryLuts luts;
    luts.Prepare(pq, LutMetric::kInnerProduct, f.query.data(), f.pointers.data(), 3, 1 << 30);
    ASSERT_TRUE(std::isfinite(luts.scale()) && luts.scale() > 0) << q;
    std::mt19937 rng(13);
    std::vector<std::pair<double, int64_t>> scored;
    for (int trial = 0; trial < 200; trial++) {
      std::vector<uint8_t> codes(m);
      for (auto& c : codes) c = uint8_t(rng() & 15);
      scored.push_back({FloatScore(pq, LutMetric::kInnerProduct, f, 0, codes),
                        luts.Offset(0) + int64_t(Score(luts.Table(0), codes))});
    }
    // Exact order up to the quantization: a pair of codes whose exact scores differ by more
    // than m steps keeps its order.
    for (const auto& a : scored)
      for (const auto& b : scored)
        if (a.first + (m + 1) / luts.scale() < b.first) {
          EXPECT_LE(a.second, b.second) << q;
        }
  }
}

// On real data (GloVe-100 cosine as inner product, Fashion-MNIST l2), with lists and codebooks
// trained as a build trains them, no query's tables need double precision or clipping: the
// outlier handling never changes an ordinary index's ranking.
TEST(QueryLuts, RealDataNeverClips) {
  struct Set {
    const char* name;
    int dim;
    LutMetric metric;
  };
  for (const Set& set : {Set{"glove-100", 100, LutMetric::kInnerProduct},
                         Set{"fashion-mnist", 784, LutMetric::kL2}}) {
    const size_t n = 5000, lists = 70;
    auto base = test::ReadRows(test::DataPath(set.name, "base.f32"), set.dim, 0, n);
    const auto queries = test::ReadRows(test::DataPath(set.name, "queries.f32"), set.dim, 0, 30);
    ASSERT_FALSE(base.empty() || queries.empty())
        << set.name << " is not prepared: run bench/datasets.py prepare " << set.name;
    std::vector<float> centroids(lists * set.dim);
    TrainKMeans(base.data(), n, set.dim, int(lists), KMeansOptions{}, centroids.data());
    std::vector<int32_t> assign(n);
    AssignNearest(base.data(), n, set.dim, centroids.data(), int(lists), assign.data());
    std::vector<float> residuals(base.size());
    for (size_t i = 0; i < n; i++)
      for (int j = 0; j < set.dim; j++)
        residuals[i * set.dim + j] = base[i * set.dim + j] - centroids[assign[i] * set.dim + j];
    PqOptions opt;
    opt.iterations = 4;
    ProductQuantizer pq(set.dim, opt);
    pq.Train(residuals.data(), base.data(), n);
    std::vector<float> norms(lists);
    CentroidNorms(centroids.data(), int(lists), set.dim, norms.data());
    std::vector<int32_t> ranked(lists);
    std::vector<uint64_t> scratch(lists);
    for (size_t q = 0; q < 30; q++) {
      const float* query = queries.data() + q * set.dim;
      RankCentroids(query, centroids.data(), norms.data(), int(lists), set.dim,
                    set.metric == LutMetric::kInnerProduct, int(lists), ranked.data(),
                    scratch.data());
      std::vector<const float*> ring;
      for (int32_t l : ranked) ring.push_back(centroids.data() + size_t(l) * set.dim);
      QueryLuts luts;
      luts.Prepare(pq, set.metric, query, ring.data(), int(lists), 1 << 30);
      EXPECT_FALSE(luts.clipped()) << set.name << " query " << q;
    }
  }
}

}  // namespace
}  // namespace scann
