// The annoy partitioner: determinism, degenerate inputs, the byte stream and its checks,
// interrupts, the leaf enumeration order, and partition recall on real data (GloVe,
// Fashion-MNIST). AnnoyMeasure.* (disabled by default) prints the comparison with IVF.
#include <gtest/gtest.h>

#include <algorithm>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/annoy.h"
#include "core/distance.h"
#include "core/isa.h"
#include "core/kmeans.h"
#include "core/topk.h"
#include "test_data.h"
#include "test_rng.h"

namespace scann {
namespace {

std::vector<float> Uniform(size_t n, int dims, uint64_t seed, float lo = -1, float hi = 1) {
  test::Rng rng(seed);
  std::vector<float> data(n * dims);
  for (auto& v : data) v = rng.Uniform(lo, hi);
  return data;
}

// n rows around `clusters` centres (noise of half-width 0.5 around centres in [-20, 20]).
std::vector<float> Blobs(size_t n, int dims, int clusters, uint64_t seed) {
  test::Rng rng(seed);
  std::vector<float> centres(static_cast<size_t>(clusters) * dims);
  for (auto& v : centres) v = rng.Uniform(-20, 20);
  std::vector<float> data(n * dims);
  for (size_t i = 0; i < n; i++)
    for (int j = 0; j < dims; j++)
      data[i * dims + j] = centres[(i % clusters) * dims + j] + rng.Uniform(-0.5f, 0.5f);
  return data;
}

AnnoyOptions Options(AnnoyMetric metric, int trees, int leaf, uint64_t seed = 7) {
  AnnoyOptions opt;
  opt.metric = metric;
  opt.trees = trees;
  opt.max_sample_rows_per_leaf = leaf;
  opt.unit_centroids = metric == AnnoyMetric::kAngular;  // as for cosine
  opt.seed = seed;
  return opt;
}

AnnoyBuild Build(const std::vector<float>& rows, int dims, const AnnoyOptions& opt) {
  return BuildForest(rows.data(), rows.size() / dims, dims, opt);
}

std::vector<uint8_t> Bytes(const AnnoyForest& f) {
  std::vector<uint8_t> out(f.SerializedBytes());
  f.Serialize(out.data());
  return out;
}

std::vector<int32_t> RouteAll(const AnnoyForest& f, const std::vector<float>& rows) {
  const size_t n = rows.size() / f.dims();
  std::vector<int32_t> out(n * f.trees());
  f.RouteBatch(rows.data(), n, out.data());
  return out;
}

// What every build must give: leaves numbered per tree in contiguous ranges, each sample row
// routed to the leaf the build counted it in, no empty leaf, leaves over the size limit only
// when all their rows are equal, and centroids that are the (unit_centroids: normalized)
// means.
void CheckBuild(const AnnoyBuild& b, const std::vector<float>& rows, int dims,
                const AnnoyOptions& opt) {
  const AnnoyForest& f = b.forest;
  const size_t n = rows.size() / dims;
  ASSERT_EQ(f.trees(), opt.trees);
  ASSERT_EQ(f.dims(), dims);
  ASSERT_EQ(f.internal_nodes(), f.leaves() - f.trees());
  ASSERT_EQ(b.leaf_sample_rows.size(), static_cast<size_t>(f.leaves()));
  ASSERT_EQ(b.leaf_centroids.size(), static_cast<size_t>(f.leaves()) * dims);
  EXPECT_LT(static_cast<size_t>(f.max_depth()), std::max<size_t>(n, 1));
  const auto routes = RouteAll(f, rows);
  std::vector<uint32_t> counted(f.leaves(), 0);
  std::vector<std::vector<double>> sums(f.leaves(), std::vector<double>(dims, 0.0));
  std::vector<size_t> first_row(f.leaves(), n);
  std::vector<bool> all_equal(f.leaves(), true);
  for (size_t i = 0; i < n; i++) {
    for (int t = 0; t < f.trees(); t++) {
      const int32_t leaf = routes[i * f.trees() + t];
      ASSERT_GE(leaf, f.FirstLeaf(t));
      ASSERT_LT(leaf, f.FirstLeaf(t + 1));
      counted[leaf]++;
      const float* x = rows.data() + i * dims;
      for (int z = 0; z < dims; z++) sums[leaf][z] += x[z];
      if (first_row[leaf] == n) first_row[leaf] = i;
      if (std::memcmp(x, rows.data() + first_row[leaf] * dims, dims * sizeof(float)) != 0)
        all_equal[leaf] = false;
    }
  }
  for (int leaf = 0; leaf < f.leaves(); leaf++) {
    ASSERT_EQ(counted[leaf], b.leaf_sample_rows[leaf]) << "leaf " << leaf;
    EXPECT_GE(counted[leaf], 1u);
    if (counted[leaf] > static_cast<uint32_t>(opt.max_sample_rows_per_leaf)) {
      EXPECT_TRUE(all_equal[leaf]) << "oversized leaf " << leaf << " of distinct rows";
    }
    std::vector<double> mean(dims);
    double norm = 0;
    for (int z = 0; z < dims; z++) {
      mean[z] = sums[leaf][z] / counted[leaf];
      norm += mean[z] * mean[z];
    }
    const float* c = b.leaf_centroids.data() + static_cast<size_t>(leaf) * dims;
    const bool unit = opt.unit_centroids;
    if (unit && norm == 0) continue;  // the parent's centroid (checked elsewhere)
    const double scale = unit ? 1 / std::sqrt(norm) : 1;
    for (int z = 0; z < dims; z++) {
      ASSERT_TRUE(std::isfinite(c[z]));
      EXPECT_NEAR(c[z], mean[z] * scale, 1e-5 * (std::fabs(mean[z] * scale) + 1e-30))
          << "leaf " << leaf;
    }
  }
}

// The SSE2 dot product and its scalar twin agree bit for bit on every remainder of 16 lanes
// and on magnitudes far apart.
TEST(AnnoyDot, MatchesScalarTwinBitForBit) {
  for (int dims = 1; dims <= 70; dims++) {
    for (float scale : {1.0f, 1e-20f, 1e18f}) {
      const auto x = Uniform(1, dims, dims, -scale, scale);
      const auto y = Uniform(1, dims, dims + 1000, -1, 1);
      const float a = AnnoyDot(x.data(), y.data(), dims);
      const float b = scalar::AnnoyDot(x.data(), y.data(), dims);
      ASSERT_EQ(std::memcmp(&a, &b, sizeof a), 0) << dims << " " << a << " " << b;
    }
  }
  for (int dims : {100, 784, 1536}) {
    const auto x = Uniform(1, dims, 1), y = Uniform(1, dims, 2);
    double exact = 0, abs_sum = 0;
    for (int i = 0; i < dims; i++) {
      exact += double(x[i]) * y[i];
      abs_sum += std::fabs(double(x[i]) * y[i]);
    }
    const float a = AnnoyDot(x.data(), y.data(), dims);
    EXPECT_EQ(a, scalar::AnnoyDot(x.data(), y.data(), dims));
    EXPECT_NEAR(a, exact, dims * std::numeric_limits<float>::epsilon() * abs_sum);
  }
}

TEST(AnnoyBuild, SameSeedSameForest) {
  const int dims = 9;
  const auto rows = Blobs(3000, dims, 20, 1);
  for (AnnoyMetric metric : {AnnoyMetric::kEuclidean, AnnoyMetric::kAngular}) {
    const auto opt = Options(metric, 5, 40);
    const auto a = Build(rows, dims, opt);
    const auto b = Build(rows, dims, opt);
    EXPECT_EQ(Bytes(a.forest), Bytes(b.forest));  // bit for bit
    EXPECT_EQ(a.leaf_centroids, b.leaf_centroids);
    EXPECT_EQ(a.leaf_sample_rows, b.leaf_sample_rows);
    const auto c = Build(rows, dims, Options(metric, 5, 40, 8));
    EXPECT_NE(Bytes(a.forest), Bytes(c.forest));
    // Tree t depends on the seed and t only: the first trees of a larger forest are the same.
    const auto d = Build(rows, dims, Options(metric, 7, 40));
    for (int t = 0; t < 5; t++)
      EXPECT_EQ(a.forest.FirstLeaf(t + 1) - a.forest.FirstLeaf(t),
                d.forest.FirstLeaf(t + 1) - d.forest.FirstLeaf(t));
    EXPECT_EQ(RouteAll(a.forest, rows)[0], RouteAll(d.forest, rows)[0]);
    CheckBuild(a, rows, dims, opt);
  }
}

TEST(AnnoyBuild, LeavesHoldAtMostTheLimitAndAboutHalfOfItOnAverage) {
  const int dims = 16, leaf = 50;
  const auto rows = Uniform(20000, dims, 2);
  const auto opt = Options(AnnoyMetric::kEuclidean, 3, leaf);
  const auto b = Build(rows, dims, opt);
  CheckBuild(b, rows, dims, opt);
  const double mean_rows = 20000.0 * 3 / b.forest.leaves();
  EXPECT_GT(mean_rows, 0.4 * leaf);
  EXPECT_LE(*std::max_element(b.leaf_sample_rows.begin(), b.leaf_sample_rows.end()),
            static_cast<uint32_t>(leaf));
  EXPECT_LT(b.forest.max_depth(), 40);  // balanced splits: log2(20000 / 25) is about 10
}

TEST(AnnoyBuild, BadArgumentsThrow) {
  const auto rows = Uniform(10, 3, 3);
  const auto ok = Options(AnnoyMetric::kEuclidean, 2, 4);
  EXPECT_NO_THROW(BuildForest(rows.data(), 10, 3, ok));
  EXPECT_THROW(BuildForest(rows.data(), 0, 3, ok), std::invalid_argument);
  EXPECT_THROW(BuildForest(rows.data(), 10, 0, ok), std::invalid_argument);
  EXPECT_THROW(BuildForest(nullptr, 10, 3, ok), std::invalid_argument);
  auto bad = ok;
  bad.trees = 0;
  EXPECT_THROW(BuildForest(rows.data(), 10, 3, bad), std::invalid_argument);
  bad = ok;
  bad.trees = 4097;
  EXPECT_THROW(BuildForest(rows.data(), 10, 3, bad), std::invalid_argument);
  bad = ok;
  bad.max_sample_rows_per_leaf = 0;
  EXPECT_THROW(BuildForest(rows.data(), 10, 3, bad), std::invalid_argument);
  bad = ok;
  bad.metric = static_cast<AnnoyMetric>(2);
  EXPECT_THROW(BuildForest(rows.data(), 10, 3, bad), std::invalid_argument);
  for (float v :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    auto with_bad = rows;
    with_bad[17] = v;
    EXPECT_THROW(BuildForest(with_bad.data(), 10, 3, ok), std::invalid_argument);
  }
}

TEST(AnnoyBuild, OneRowMakesOneLeafPerTree) {
  const std::vector<float> row = {1, 2, 3};
  for (AnnoyMetric metric : {AnnoyMetric::kEuclidean, AnnoyMetric::kAngular}) {
    const auto opt = Options(metric, 4, 1);
    const auto b = Build(row, 3, opt);
    EXPECT_EQ(b.forest.leaves(), 4);
    EXPECT_EQ(b.forest.internal_nodes(), 0);
    EXPECT_EQ(b.forest.max_depth(), 0);
    CheckBuild(b, row, 3, opt);
    AnnoyLeafSearch search(b.forest);
    search.Reset(row.data());
    int32_t leaves[8];
    EXPECT_EQ(search.Next(8, leaves), 4);
  }
}

TEST(AnnoyBuild, FewerRowsThanALeafMakeOneLeafPerTree) {
  const auto rows = Uniform(30, 5, 4);
  const auto opt = Options(AnnoyMetric::kEuclidean, 3, 30);
  const auto b = Build(rows, 5, opt);
  EXPECT_EQ(b.forest.leaves(), 3);
  CheckBuild(b, rows, 5, opt);
  const auto split = Build(rows, 5, Options(AnnoyMetric::kEuclidean, 3, 29));
  EXPECT_GT(split.forest.leaves(), 3);
}

// Equal rows cannot be told apart by any plane: they stay together in one leaf, however many,
// and the build ends (Annoy would split them at random into leaves no route reaches).
TEST(AnnoyBuild, EqualRowsStayInOneLeaf) {
  const int dims = 4;
  std::vector<float> rows;
  for (int i = 0; i < 1000; i++) rows.insert(rows.end(), {0.5f, -1.0f, 3.0f, 0.0f});
  for (AnnoyMetric metric : {AnnoyMetric::kEuclidean, AnnoyMetric::kAngular}) {
    const auto opt = Options(metric, 3, 10);
    const auto b = Build(rows, dims, opt);
    EXPECT_EQ(b.forest.leaves(), 3);
    CheckBuild(b, rows, dims, opt);
  }
  // 900 copies of one row among 100 distinct rows: the copies end in one leaf per tree, the
  // others in leaves of at most 10.
  auto mixed = Uniform(100, dims, 5);
  mixed.insert(mixed.end(), rows.begin(), rows.begin() + 900 * dims);
  const auto opt = Options(AnnoyMetric::kEuclidean, 3, 10);
  const auto b = Build(mixed, dims, opt);
  CheckBuild(b, mixed, dims, opt);
  EXPECT_EQ(std::count(b.leaf_sample_rows.begin(), b.leaf_sample_rows.end(), 900u), 3);
}

// Rows on a line (dims = 1), and rows that two_means cannot separate (two clusters of 1,000
// copies each plus a few others): the median fallback still splits them into small leaves.
TEST(AnnoyBuild, LinesAndDuplicatesSplit) {
  const auto line = Uniform(2000, 1, 6);
  for (AnnoyMetric metric : {AnnoyMetric::kEuclidean, AnnoyMetric::kAngular}) {
    const auto opt = Options(metric, 2, 8);
    CheckBuild(Build(line, 1, opt), line, 1, opt);
  }
  std::vector<float> lumps;
  for (int i = 0; i < 1000; i++) lumps.insert(lumps.end(), {1.0f, 1.0f});
  for (int i = 0; i < 1000; i++) lumps.insert(lumps.end(), {-1.0f, 2.0f});
  const auto extra = Uniform(20, 2, 7);
  lumps.insert(lumps.end(), extra.begin(), extra.end());
  const auto opt = Options(AnnoyMetric::kEuclidean, 4, 5);
  const auto b = Build(lumps, 2, opt);
  CheckBuild(b, lumps, 2, opt);
  EXPECT_LE(b.forest.max_depth(), 20);
}

// Scaling the rows by 1e30, 1e-30 or 1e36 (in float) leaves the forest valid, with about as
// many leaves; zero rows and opposite rows under kAngular get finite centroids (a zero mean
// takes the parent's).
TEST(AnnoyBuild, HugeTinyAndZeroRows) {
  const int dims = 12;
  const auto rows = Blobs(4000, dims, 30, 8);
  const auto opt = Options(AnnoyMetric::kEuclidean, 2, 30);
  const auto base = Build(rows, dims, opt);
  for (float scale : {1e30f, 1e-30f, 1e36f}) {
    auto scaled = rows;
    for (float& v : scaled) v *= scale;
    const auto b = Build(scaled, dims, opt);
    CheckBuild(b, scaled, dims, opt);
    const double ratio = double(b.forest.leaves()) / base.forest.leaves();
    EXPECT_GT(ratio, 0.8) << scale;
    EXPECT_LT(ratio, 1.25) << scale;
  }
  std::vector<float> angular = Uniform(500, dims, 9);
  for (size_t i = 0; i < 250 * dims; i++) angular[(250 * dims) + i] = -angular[i];  // x and -x
  angular.insert(angular.end(), 100 * dims, 0.0f);                                  // zero rows
  auto aopt = Options(AnnoyMetric::kAngular, 3, 20);
  const auto b = Build(angular, dims, aopt);
  CheckBuild(b, angular, dims, aopt);
  for (float c : b.leaf_centroids) ASSERT_TRUE(std::isfinite(c));
  aopt.unit_centroids = false;  // angular splits with plain means (inner product)
  const auto plain = Build(angular, dims, aopt);
  CheckBuild(plain, angular, dims, aopt);
  EXPECT_EQ(Bytes(plain.forest), Bytes(b.forest));  // the centroids do not shape the trees
  // A leaf of zero rows only: its centroid has no direction to take but its parent's.
  std::vector<float> pair = {1, 0, -1, 0};
  const auto opposite = Build(pair, 2, Options(AnnoyMetric::kAngular, 1, 2));
  EXPECT_EQ(opposite.forest.leaves(), 1);
  EXPECT_EQ(opposite.leaf_centroids, (std::vector<float>{0, 0}));
}

TEST(AnnoyBuild, InterruptCheckExceptionPropagates) {
  const auto rows = Uniform(20000, 32, 10);
  AnnoyOptions opt = Options(AnnoyMetric::kEuclidean, 4, 16);
  int calls = 0;
  opt.check_interrupts = [&calls] {
    if (++calls == 3) throw std::runtime_error("cancel");
  };
  EXPECT_THROW(Build(rows, 32, opt), std::runtime_error);
  EXPECT_EQ(calls, 3);
  // Checks keep coming through the build: once per tree and every 4M floats of work.
  int total = 0;
  opt.check_interrupts = [&total] { total++; };
  Build(rows, 32, opt);
  EXPECT_GE(total, 8);
}

TEST(AnnoyRoute, BatchEqualsOneRowAtATime) {
  const int dims = 20;
  const auto rows = Blobs(5000, dims, 40, 11);
  const auto b = Build(rows, dims, Options(AnnoyMetric::kEuclidean, 7, 25));
  const auto table = Uniform(1001, dims, 12, -20, 20);
  const auto batch = RouteAll(b.forest, table);
  std::vector<int32_t> one(7);
  for (size_t i = 0; i < 1001; i++) {
    b.forest.Route(table.data() + i * dims, one.data());
    ASSERT_EQ(std::vector<int32_t>(batch.begin() + i * 7, batch.begin() + i * 7 + 7), one) << i;
  }
  // A NaN query walks to some leaf of each tree rather than failing.
  std::vector<float> nan_row(dims, std::numeric_limits<float>::quiet_NaN());
  b.forest.Route(nan_row.data(), one.data());
  for (int t = 0; t < 7; t++) {
    EXPECT_GE(one[t], b.forest.FirstLeaf(t));
    EXPECT_LT(one[t], b.forest.FirstLeaf(t + 1));
  }
}

TEST(AnnoyStream, RoundTripAndView) {
  const int dims = 6;
  const auto rows = Blobs(2000, dims, 10, 13);
  const auto b = Build(rows, dims, Options(AnnoyMetric::kAngular, 4, 20));
  const auto bytes = Bytes(b.forest);
  EXPECT_EQ(bytes.size(),
            4 * (8 + 4 + 5 + static_cast<size_t>(b.forest.internal_nodes()) * (dims + 3)));
  const AnnoyForest copy = AnnoyForest::Deserialize(bytes.data(), bytes.size());
  EXPECT_EQ(Bytes(copy), bytes);
  EXPECT_EQ(copy.metric(), AnnoyMetric::kAngular);
  EXPECT_EQ(copy.max_depth(), b.forest.max_depth());
  std::vector<uint32_t> aligned(bytes.size() / 4);
  std::memcpy(aligned.data(), bytes.data(), bytes.size());
  const AnnoyForest view = AnnoyForest::View(aligned.data(), bytes.size());
  EXPECT_EQ(view.bytes(), static_cast<const void*>(aligned.data()));
  const auto want = RouteAll(b.forest, rows);
  EXPECT_EQ(RouteAll(copy, rows), want);
  EXPECT_EQ(RouteAll(view, rows), want);
  // Deserialize accepts any alignment; View refuses a misaligned buffer.
  std::vector<uint8_t> shifted(bytes.size() + 1);
  std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
  EXPECT_EQ(RouteAll(AnnoyForest::Deserialize(shifted.data() + 1, bytes.size()), rows), want);
  EXPECT_THROW(AnnoyForest::View(shifted.data() + 1, bytes.size()), std::invalid_argument);
}

// Every single flipped byte, and every truncation, is refused (the checksum sees what the
// structure checks cannot).
TEST(AnnoyStream, CorruptionIsDetected) {
  const auto rows = Blobs(300, 3, 5, 14);
  const auto b = Build(rows, 3, Options(AnnoyMetric::kEuclidean, 2, 20));
  const auto bytes = Bytes(b.forest);
  for (size_t i = 0; i < bytes.size(); i++) {
    for (uint8_t flip : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      auto bad = bytes;
      bad[i] ^= flip;
      EXPECT_THROW(AnnoyForest::Deserialize(bad.data(), bad.size()), std::invalid_argument)
          << "byte " << i;
    }
  }
  for (size_t size = 0; size < bytes.size(); size++)
    EXPECT_THROW(AnnoyForest::Deserialize(bytes.data(), size), std::invalid_argument) << size;
  auto longer = bytes;
  longer.resize(bytes.size() + 4);
  EXPECT_THROW(AnnoyForest::Deserialize(longer.data(), longer.size()), std::invalid_argument);
  EXPECT_THROW(AnnoyForest::Deserialize(nullptr, 0), std::invalid_argument);
}

// Streams whose checksum is right but whose structure is not: each is refused by the checks
// that keep every walk inside the stream and finite.
TEST(AnnoyStream, BadStructureIsDetected) {
  const int dims = 3;
  const auto rows = Blobs(400, dims, 5, 15);
  const auto b = Build(rows, dims, Options(AnnoyMetric::kEuclidean, 2, 20));
  const auto bytes = Bytes(b.forest);
  ASSERT_GE(b.forest.internal_nodes(), 4);
  const size_t trees = 2, header = 8, stride = dims + 3;
  const size_t nodes_at = header + trees + trees + 1;  // in words
  auto word = [&](std::vector<uint8_t>& s, size_t i) {
    return reinterpret_cast<uint32_t*>(&s[4 * i]);
  };
  auto refused = [&](std::vector<uint8_t> s, const char* what) {
    *word(s, 7) = AnnoyChecksum(s.data(), s.size());
    EXPECT_THROW(AnnoyForest::Deserialize(s.data(), s.size()), std::invalid_argument) << what;
  };
  auto child = [&](size_t node, int side) { return nodes_at + node * stride + dims + 1 + side; };
  {
    auto s = bytes;  // a cycle: node 1's child points back at the root
    *word(s, child(1, 0)) = 0;
    refused(s, "cycle");
  }
  {
    auto s = bytes;  // a child number past the tree's nodes
    *word(s, child(0, 1)) = static_cast<uint32_t>(b.forest.internal_nodes());
    refused(s, "node out of range");
  }
  {
    auto s = bytes;  // a leaf of the other tree
    *word(s, child(0, 0)) = static_cast<uint32_t>(~int32_t(b.forest.leaves() - 1));
    refused(s, "leaf of another tree");
  }
  {
    auto s = bytes;  // two references to one node
    *word(s, child(0, 1)) = *word(s, child(0, 0));
    refused(s, "shared child");
  }
  {
    auto s = bytes;  // a root that is not its tree's first node
    *word(s, header) = 1;
    refused(s, "bad root");
  }
  {
    auto s = bytes;  // leaf ranges out of order
    std::swap(*word(s, header + trees), *word(s, header + trees + 1));
    refused(s, "leaf ranges");
  }
  {
    auto s = bytes;  // a NaN in a normal, an infinite offset
    *word(s, nodes_at) = 0x7fc00000u;
    refused(s, "NaN normal");
    s = bytes;
    *word(s, nodes_at + dims) = 0x7f800000u;
    refused(s, "infinite offset");
  }
  for (size_t h : {size_t{0}, size_t{1}, size_t{2}, size_t{4}, size_t{5}, size_t{6}}) {
    auto s = bytes;  // every header field but the metric (either value is a forest)
    *word(s, h) += 1;
    refused(s, "header");
  }
  auto s = bytes;
  *word(s, 3) = 2;
  refused(s, "unknown metric");
}

// Random words written anywhere (with the checksum made to match): the check refuses the
// stream or it is a forest whose every route and enumeration stays inside it and ends.
TEST(AnnoyStream, RandomDamageIsRefusedOrHarmless) {
  const int dims = 4;
  const auto rows = Blobs(500, dims, 6, 18);
  const auto bytes = Bytes(Build(rows, dims, Options(AnnoyMetric::kEuclidean, 3, 20)).forest);
  test::Rng rng(19);
  int accepted = 0;
  std::vector<int32_t> routed(3), all;
  for (int trial = 0; trial < 3000; trial++) {
    auto s = bytes;
    const size_t words = s.size() / 4;
    for (int k = 0; k < 1 + trial % 3; k++) {
      const size_t at = 8 + rng.Next() % (words - 8);
      uint32_t v = static_cast<uint32_t>(rng.Next());
      if (trial % 2) v = static_cast<uint32_t>(int32_t(rng.Next() % 64) - 32);  // small refs
      std::memcpy(&s[4 * at], &v, 4);
    }
    const uint32_t sum = AnnoyChecksum(s.data(), s.size());
    std::memcpy(&s[28], &sum, 4);
    AnnoyForest f;
    try {
      f = AnnoyForest::Deserialize(s.data(), s.size());
    } catch (const std::invalid_argument&) {
      continue;
    }
    accepted++;
    for (size_t i = 0; i < 20; i++) f.Route(rows.data() + i * dims, routed.data());
    AnnoyLeafSearch search(f);
    search.Reset(rows.data());
    all.resize(f.leaves() + 1);
    ASSERT_EQ(search.Next(f.leaves() + 1, all.data()), f.leaves());
  }
  EXPECT_GT(accepted, 0);  // some damage (to normals and offsets) is a valid forest
}

// Draining the enumerator gives every leaf once; the first trees() leaves are the query's
// routed leaves; asking in pieces gives the same order; Reset reuses it.
TEST(AnnoyLeafSearch, EveryLeafOnceRoutedLeavesFirst) {
  const int dims = 10;
  const auto rows = Blobs(6000, dims, 50, 16);
  for (AnnoyMetric metric : {AnnoyMetric::kEuclidean, AnnoyMetric::kAngular}) {
    const auto b = Build(rows, dims, Options(metric, 6, 30));
    const AnnoyForest& f = b.forest;
    AnnoyLeafSearch search(f);
    const auto queries = Uniform(50, dims, 17, -20, 20);
    std::vector<int32_t> all(f.leaves() + 5), pieces, routed(f.trees());
    for (int qi = 0; qi < 50; qi++) {
      const float* q = queries.data() + qi * dims;
      search.Reset(q);
      ASSERT_EQ(search.Next(f.leaves() + 5, all.data()), f.leaves());
      EXPECT_EQ(search.Next(3, all.data() + f.leaves()), 0);
      EXPECT_EQ(search.returned(), f.leaves());
      std::vector<int32_t> sorted(all.begin(), all.begin() + f.leaves());
      std::sort(sorted.begin(), sorted.end());
      std::vector<int32_t> ids(f.leaves());
      std::iota(ids.begin(), ids.end(), 0);
      ASSERT_EQ(sorted, ids);
      f.Route(q, routed.data());
      std::vector<int32_t> head(all.begin(), all.begin() + f.trees());
      std::sort(head.begin(), head.end());
      std::sort(routed.begin(), routed.end());
      EXPECT_EQ(head, routed) << "query " << qi;
      search.Reset(q);
      pieces.clear();
      int32_t buf[7];
      EXPECT_EQ(search.Next(0, buf), 0);
      for (int got; (got = search.Next(1 + qi % 7, buf)) > 0;)
        pieces.insert(pieces.end(), buf, buf + got);
      EXPECT_EQ(pieces, std::vector<int32_t>(all.begin(), all.begin() + f.leaves()));
    }
  }
}

// ---- Partition recall on real data ----

// The lists a table row is in: per_row of them per row (trees for annoy, 1 for IVF).
struct Partition {
  int per_row = 1;
  std::vector<int32_t> row_lists;  // rows x per_row
  std::vector<uint32_t> sizes;     // table rows per list
};

Partition AnnoyPartition(const AnnoyForest& f, const std::vector<float>& table) {
  Partition p;
  p.per_row = f.trees();
  p.row_lists = RouteAll(f, table);
  p.sizes.assign(f.leaves(), 0);
  for (int32_t leaf : p.row_lists) p.sizes[leaf]++;
  return p;
}

// Per query, the rows whose score is at most the 10th best (ties at the 10th included):
// -q.x for unit rows (cosine), ||q - x||^2 for l2, -q.x for inner product. Two passes over
// blocks of rows that stay in cache while every query meets them: the 10th best, then the rows.
enum class Score { kCosine, kL2, kInnerProduct };

std::vector<std::vector<uint32_t>> ExactTop10(const std::vector<float>& table,
                                              const std::vector<float>& queries, int dims,
                                              Score score) {
  const size_t n = table.size() / dims, nq = queries.size() / dims;
  const size_t block = std::max<size_t>(16, (256 << 10) / (dims * sizeof(float)));
  auto score_of = [&](size_t qi, size_t i) {
    const float* q = queries.data() + qi * dims;
    const float* x = table.data() + i * dims;
    return score == Score::kL2 ? Distances().l2_squared(q, x, dims)
                               : -Distances().inner_product(q, x, dims);
  };
  std::vector<TopK> best(nq, TopK(10));
  for (size_t b = 0; b < n; b += block)
    for (size_t qi = 0; qi < nq; qi++)
      for (size_t i = b; i < std::min(n, b + block); i++) best[qi].Push(score_of(qi, i), i);
  std::vector<float> bound(nq);
  for (size_t qi = 0; qi < nq; qi++) {
    best[qi].SortAscending();
    bound[qi] = best[qi][best[qi].size() - 1].score;
  }
  std::vector<std::vector<uint32_t>> truth(nq);
  for (size_t b = 0; b < n; b += block)
    for (size_t qi = 0; qi < nq; qi++)
      for (size_t i = b; i < std::min(n, b + block); i++)
        if (score_of(qi, i) <= bound[qi]) truth[qi].push_back(static_cast<uint32_t>(i));
  return truth;
}

// After probing p + 1 lists of one query: rows scanned so far (a row counted once per list it
// is in) and true neighbours seen (in some probed list; at most 10).
struct Trace {
  std::vector<uint64_t> scanned;
  std::vector<uint8_t> hits;
};

Trace TraceProbes(const Partition& part, const int32_t* order, int count,
                  const std::vector<uint32_t>& truth, std::vector<uint8_t>* probed) {
  Trace tr;
  uint64_t scanned = 0;
  for (int p = 0; p < count; p++) {
    (*probed)[order[p]] = 1;
    scanned += part.sizes[order[p]];
    int hits = 0;
    for (uint32_t row : truth) {
      for (int k = 0; k < part.per_row; k++) {
        if ((*probed)[part.row_lists[static_cast<size_t>(row) * part.per_row + k]]) {
          hits++;
          break;
        }
      }
    }
    tr.scanned.push_back(scanned);
    tr.hits.push_back(static_cast<uint8_t>(std::min(hits, 10)));
  }
  for (int p = 0; p < count; p++) (*probed)[order[p]] = 0;
  return tr;
}

// Mean recall after probing `lists` lists (or all there are).
double RecallAtLists(const std::vector<Trace>& traces, int lists) {
  double sum = 0;
  for (const Trace& t : traces) sum += t.hits[std::min<size_t>(lists, t.hits.size()) - 1] / 10.0;
  return sum / traces.size();
}

// Mean recall and rows scanned when each query probes lists until it has scanned `budget` rows.
std::pair<double, double> RecallAtBudget(const std::vector<Trace>& traces, uint64_t budget) {
  double recall = 0, scanned = 0;
  for (const Trace& t : traces) {
    size_t p = 0;
    while (p + 1 < t.scanned.size() && t.scanned[p] < budget) p++;
    recall += t.hits[p] / 10.0;
    scanned += t.scanned[p];
  }
  return {recall / traces.size(), scanned / traces.size()};
}

// Each query's trace over the leaves AnnoyLeafSearch hands out, until it has probed
// min_lists leaves and scanned at least `budget` rows (or run out of leaves).
std::vector<Trace> AnnoyTraces(const AnnoyForest& f, const Partition& part,
                               const std::vector<float>& queries,
                               const std::vector<std::vector<uint32_t>>& truth, int min_lists,
                               uint64_t budget) {
  AnnoyLeafSearch search(f);
  std::vector<int32_t> order;
  std::vector<uint8_t> probed(f.leaves(), 0);
  std::vector<Trace> traces;
  int32_t chunk[16];
  for (size_t qi = 0; qi < truth.size(); qi++) {
    search.Reset(queries.data() + qi * f.dims());
    order.clear();
    uint64_t scanned = 0;
    while (static_cast<int>(order.size()) < min_lists || scanned < budget) {
      const int got = search.Next(16, chunk);
      if (got == 0) break;
      for (int i = 0; i < got; i++) scanned += part.sizes[chunk[i]];
      order.insert(order.end(), chunk, chunk + got);
    }
    traces.push_back(
        TraceProbes(part, order.data(), static_cast<int>(order.size()), truth[qi], &probed));
  }
  return traces;
}

// A seeded sample of `count` of the n rows (partial Fisher-Yates), as the build's sampling.
std::vector<float> Sample(const std::vector<float>& table, int dims, size_t count, uint64_t seed) {
  const size_t n = table.size() / dims;
  count = std::min(count, n);
  std::vector<uint32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0u);
  test::Rng rng(seed);
  std::vector<float> out(count * dims);
  for (size_t i = 0; i < count; i++) {
    std::swap(idx[i], idx[i + rng.Next() % (n - i)]);
    std::copy_n(table.data() + static_cast<size_t>(idx[i]) * dims, dims, out.data() + i * dims);
  }
  return out;
}

// A data set as an index sees it: the table, held-out queries and their exact top 10.
struct Workload {
  int dims = 0;
  Score score = Score::kL2;
  std::vector<float> table, queries;
  std::vector<std::vector<uint32_t>> truth;
};

// rows base rows and nq queries of a cached set, normalized for cosine; empty when missing.
Workload LoadWorkload(const std::string& set, int dims, Score score, size_t rows, size_t nq) {
  Workload w;
  w.dims = dims;
  w.score = score;
  w.table = test::ReadRows(test::DataPath(set, "base.f32"), dims, 0, rows);
  w.queries = test::ReadRows(test::DataPath(set, "queries.f32"), dims, 0, nq);
  if (w.table.size() != rows * dims || w.queries.size() != nq * dims) return Workload{};
  if (score == Score::kCosine) {
    test::NormalizeRows(&w.table, dims);
    test::NormalizeRows(&w.queries, dims);
  }
  w.truth = ExactTop10(w.table, w.queries, dims, score);
  return w;
}

// Sample size and sample rows per leaf for a table leaf size, as the glue will choose them:
// sample = max(10,000, 64 x table rows / leaf_size), at most the table.
std::pair<size_t, int> SampleFor(size_t rows, double leaf_size) {
  const size_t sample =
      std::min(rows, std::max<size_t>(10000, static_cast<size_t>(64 * rows / leaf_size)));
  const int per_leaf = std::max(1, static_cast<int>(std::lround(leaf_size * sample / rows)));
  return {sample, per_leaf};
}

// Partition recall of forests of 1, 4 and 8 trees on one workload: recall[trees][P].
std::vector<std::vector<double>> AnnoyRecalls(const Workload& w, AnnoyMetric metric,
                                              const std::vector<int>& trees,
                                              const std::vector<int>& probes) {
  const size_t rows = w.table.size() / w.dims;
  const auto [sample_rows, per_leaf] = SampleFor(rows, std::sqrt(double(rows)));
  const auto sample = Sample(w.table, w.dims, sample_rows, 99);
  std::vector<std::vector<double>> recall;
  for (int t : trees) {
    const auto b = Build(sample, w.dims, Options(metric, t, per_leaf));
    const auto part = AnnoyPartition(b.forest, w.table);
    const auto traces = AnnoyTraces(b.forest, part, w.queries, w.truth, probes.back(), 0);
    recall.emplace_back();
    std::printf("[ recall ] %d trees (%d leaves):", t, b.forest.leaves());
    for (int p : probes) {
      recall.back().push_back(RecallAtLists(traces, p));
      std::printf(" P=%d %.4f", p, recall.back().back());
    }
    std::printf("\n");
  }
  return recall;
}

// recall[t][p] rises with p (leaves probed) at every tree count.
void ExpectRisingWithProbes(const std::vector<std::vector<double>>& recall) {
  for (size_t t = 0; t < recall.size(); t++)
    for (size_t p = 1; p < recall[t].size(); p++)
      EXPECT_GT(recall[t][p], recall[t][p - 1]) << "trees index " << t << ", probes index " << p;
}

// recall[t][p] rises with t (trees) for every p below probes_end.
void ExpectRisingWithTrees(const std::vector<std::vector<double>>& recall, size_t probes_end) {
  for (size_t t = 1; t < recall.size(); t++)
    for (size_t p = 0; p < probes_end; p++)
      EXPECT_GT(recall[t][p], recall[t - 1][p]) << "trees index " << t << ", probes index " << p;
}

// GloVe-100, the first 50,000 rows as the table, 200 held-out queries, cosine: leaves of
// about sqrt(rows) = 224 table rows (64 of a 14,336-row sample).
TEST(AnnoyOnGlove, PartitionRecallRisesWithProbesAndTrees) {
  const Workload w = LoadWorkload("glove-100", 100, Score::kCosine, 50000, 200);
  if (w.table.empty())
    GTEST_SKIP() << "GloVe missing at " << test::DataPath("glove-100", "base.f32")
                 << ": run `bench/datasets.py prepare glove-100`";
  const std::vector<int> probes = {1, 4, 16, 64};
  const auto recall = AnnoyRecalls(w, AnnoyMetric::kAngular, {1, 4, 8}, probes);
  ExpectRisingWithProbes(recall);
  ExpectRisingWithTrees(recall, probes.size());
  // Measured: 1 tree 0.119 / 0.259 / 0.477 / 0.710, 8 trees 0.211 / 0.415 / 0.677 / 0.908
  // (P = 1 / 4 / 16 / 64 leaves of about 155 rows, i.e. 0.3% / 1.2% / 5% / 20% of the rows).
  EXPECT_GT(recall[0][3], 0.65);
  EXPECT_GT(recall[2][3], 0.85);
}

// Fashion-MNIST, the first 20,000 training images as the table, 200 test images, l2: leaves
// of about sqrt(rows) = 141 table rows (70 of a 10,000-row sample).
TEST(AnnoyOnFashionMnist, PartitionRecallRisesWithProbes) {
  const Workload w = LoadWorkload("fashion-mnist", 784, Score::kL2, 20000, 200);
  if (w.table.empty())
    GTEST_SKIP() << "Fashion-MNIST missing at " << test::DataPath("fashion-mnist", "base.f32")
                 << ": run `bench/datasets.py prepare fashion-mnist`";
  const std::vector<int> probes = {1, 4, 16, 64};
  const auto recall = AnnoyRecalls(w, AnnoyMetric::kEuclidean, {1, 4, 8}, probes);
  ExpectRisingWithProbes(recall);
  // More trees find more of the first leaf's neighbours (0.512 / 0.635 / 0.678), but from 4
  // leaves on one tree does as well as eight here: the neighbours are close, one tree's nearby
  // leaves hold them, and several trees' leaves repeat the same rows (measured P = 16: 0.994,
  // 0.987, 0.984).
  ExpectRisingWithTrees(recall, 1);
  EXPECT_GT(recall[0][2], 0.95);
  EXPECT_GT(recall[2][2], 0.95);
}

// ---- Measurements (disabled: run with --gtest_also_run_disabled_tests) ----

// CPU seconds of this thread: timings that other processes on a shared machine disturb less
// than wall time does.
double CpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// Rows-scanned budgets as fractions of the table.
const std::vector<double> kBudgets = {0.005, 0.01, 0.02, 0.04, 0.08};

void PrintBudgetHeader(const Workload& w) {
  const size_t rows = w.table.size() / w.dims;
  std::printf("| partitioner | lists/tree | mean list rows | build CPU s | route rows/CPU s |");
  for (double b : kBudgets) std::printf(" %.1f%% (%zu) |", 100 * b, size_t(b * rows));
  std::printf("\n|---|---:|---:|---:|---:|");
  for (size_t i = 0; i < kBudgets.size(); i++) std::printf("---:|");
  std::printf("\n");
}

// One table line: recall@10 at each budget (rows actually scanned, in % of the table, below).
void PrintBudgetLine(const std::string& name, const Workload& w, const Partition& part,
                     int lists_per_tree, double build_s, double route_rate,
                     const std::vector<Trace>& traces) {
  const size_t rows = w.table.size() / w.dims;
  const double mean_rows = double(rows) * part.per_row / part.sizes.size();
  std::printf("| %s | %d | %.0f | %.2f | %.0f |", name.c_str(), lists_per_tree, mean_rows, build_s,
              route_rate);
  for (double b : kBudgets) {
    const auto [recall, scanned] = RecallAtBudget(traces, static_cast<uint64_t>(b * rows));
    std::printf(" %.3f (%.1f%%) |", recall, 100 * scanned / rows);
  }
  std::printf("\n");
  std::fflush(stdout);
}

// IVF as the index builds it: k-means on the sample (lists = sqrt(rows), sample = max(10,000,
// 64 x lists)), unit centroids for cosine, rows in their nearest list, lists ranked by L2
// (cosine: on unit vectors) or by inner product.
void MeasureIvf(const Workload& w, double lists_factor) {
  const size_t rows = w.table.size() / w.dims;
  const int lists = static_cast<int>(std::lround(lists_factor * std::sqrt(double(rows))));
  const auto sample = Sample(w.table, w.dims, std::max<size_t>(10000, 64 * size_t(lists)), 99);
  KMeansOptions km;
  km.seed = 0x5ca11ab1e0f5ca1ull;
  std::vector<float> centroids(size_t(lists) * w.dims);
  double start = CpuSeconds();
  TrainKMeans(sample.data(), sample.size() / w.dims, w.dims, lists, km, centroids.data());
  const double train_s = CpuSeconds() - start;
  if (w.score == Score::kCosine) test::NormalizeRows(&centroids, w.dims);
  Partition part;
  part.row_lists.resize(rows);
  start = CpuSeconds();
  AssignNearest(w.table.data(), rows, w.dims, centroids.data(), lists, part.row_lists.data());
  const double assign_rate = rows / (CpuSeconds() - start);
  part.sizes.assign(lists, 0);
  for (int32_t l : part.row_lists) part.sizes[l]++;
  std::vector<float> norms(lists);
  CentroidNorms(centroids.data(), lists, w.dims, norms.data());
  std::vector<int32_t> order(lists);
  std::vector<uint64_t> scratch(lists);
  std::vector<uint8_t> probed(lists, 0);
  std::vector<Trace> traces;
  for (size_t qi = 0; qi < w.truth.size(); qi++) {
    RankCentroids(w.queries.data() + qi * w.dims, centroids.data(), norms.data(), lists, w.dims,
                  w.score == Score::kInnerProduct, lists, order.data(), scratch.data());
    traces.push_back(TraceProbes(part, order.data(), lists, w.truth[qi], &probed));
  }
  char name[80];
  std::snprintf(name, sizeof name, "IVF %.0fx sqrt(rows) lists (%zu sample rows)", lists_factor,
                sample.size() / w.dims);
  PrintBudgetLine(name, w, part, lists, train_s, assign_rate, traces);
}

// Annoy forests of `trees` trees with leaves of leaf_factors x sqrt(rows) table rows (nominal:
// the limit; leaves hold about 0.7 of it on average).
void MeasureAnnoy(const Workload& w, AnnoyMetric metric, const std::vector<int>& trees,
                  const std::vector<double>& leaf_factors, const std::string& label = "annoy") {
  const size_t rows = w.table.size() / w.dims;
  for (double factor : leaf_factors) {
    const double leaf_size = factor * std::sqrt(double(rows));
    const auto [sample_rows, per_leaf] = SampleFor(rows, leaf_size);
    const auto sample = Sample(w.table, w.dims, sample_rows, 99);
    for (int t : trees) {
      double start = CpuSeconds();
      const auto b = Build(sample, w.dims, Options(metric, t, per_leaf));
      const double build_s = CpuSeconds() - start;
      start = CpuSeconds();
      const auto part = AnnoyPartition(b.forest, w.table);
      const double route_rate = rows / (CpuSeconds() - start);
      const auto traces = AnnoyTraces(b.forest, part, w.queries, w.truth, 1,
                                      static_cast<uint64_t>(kBudgets.back() * rows));
      char name[160];
      std::snprintf(name, sizeof name, "%s T=%d S=%.0f (%d of %zu sample rows)", label.c_str(), t,
                    leaf_size, per_leaf, sample_rows);
      PrintBudgetLine(name, w, part, b.forest.leaves() / t, build_s, route_rate, traces);
    }
  }
}

Workload LoadOrSkip(const std::string& set, int dims, Score score, size_t rows, size_t nq) {
  const double start = CpuSeconds();
  Workload w = LoadWorkload(set, dims, score, rows, nq);
  if (!w.table.empty())
    std::printf("%s: %zu rows x %d, %zu queries, exact top 10 in %.1f CPU s\n", set.c_str(), rows,
                dims, nq, CpuSeconds() - start);
  return w;
}

TEST(AnnoyMeasure, DISABLED_Glove50k) {
  const Workload w = LoadOrSkip("glove-100", 100, Score::kCosine, 50000, 1000);
  if (w.table.empty()) GTEST_SKIP() << "GloVe missing";
  PrintBudgetHeader(w);
  for (double f : {1, 2, 4}) MeasureIvf(w, f);
  MeasureAnnoy(w, AnnoyMetric::kAngular, {1, 2, 4, 8, 16}, {0.25, 0.5, 1, 2});
}

TEST(AnnoyMeasure, DISABLED_GloveFull) {
  const Workload w = LoadOrSkip("glove-100", 100, Score::kCosine, 331479, 1000);
  if (w.table.empty()) GTEST_SKIP() << "GloVe missing";
  PrintBudgetHeader(w);
  for (double f : {1, 2, 4}) MeasureIvf(w, f);
  MeasureAnnoy(w, AnnoyMetric::kAngular, {1, 2, 4, 8, 16}, {0.25, 0.5, 1, 2});
}

TEST(AnnoyMeasure, DISABLED_FashionMnist) {
  const Workload w = LoadOrSkip("fashion-mnist", 784, Score::kL2, 60000, 1000);
  if (w.table.empty()) GTEST_SKIP() << "Fashion-MNIST missing";
  PrintBudgetHeader(w);
  for (double f : {1, 2, 4}) MeasureIvf(w, f);
  MeasureAnnoy(w, AnnoyMetric::kEuclidean, {1, 2, 4, 8, 16}, {0.25, 0.5, 1, 2});
}

// Inner product on unnormalized GloVe (50,000 rows): which splits serve ip_ops. Euclidean
// splits on the raw rows, angular splits (through the origin) on the raw rows, and euclidean
// splits on the rows augmented to equal norm (Bachrach et al.: x -> (x, sqrt(M^2 - |x|^2)),
// q -> (q, 0), so that L2 order is inner-product order).
TEST(AnnoyMeasure, DISABLED_InnerProduct) {
  Workload w = LoadOrSkip("glove-100", 100, Score::kInnerProduct, 50000, 1000);
  if (w.table.empty()) GTEST_SKIP() << "GloVe missing";
  PrintBudgetHeader(w);
  MeasureIvf(w, 1);
  MeasureAnnoy(w, AnnoyMetric::kEuclidean, {1, 4, 8}, {1}, "euclidean raw");
  MeasureAnnoy(w, AnnoyMetric::kAngular, {1, 4, 8}, {1}, "angular raw");
  const size_t rows = w.table.size() / 100, nq = w.queries.size() / 100;
  double max_sq = 0;
  for (size_t i = 0; i < rows; i++)
    max_sq = std::max<double>(max_sq,
                              Distances().inner_product(&w.table[i * 100], &w.table[i * 100], 100));
  Workload aug;
  aug.dims = 101;
  aug.score = Score::kInnerProduct;
  aug.truth = w.truth;
  for (size_t i = 0; i < rows; i++) {
    aug.table.insert(aug.table.end(), &w.table[i * 100], &w.table[i * 100] + 100);
    const double sq = Distances().inner_product(&w.table[i * 100], &w.table[i * 100], 100);
    aug.table.push_back(static_cast<float>(std::sqrt(std::max(0.0, max_sq - sq))));
  }
  for (size_t i = 0; i < nq; i++) {
    aug.queries.insert(aug.queries.end(), &w.queries[i * 100], &w.queries[i * 100] + 100);
    aug.queries.push_back(0.0f);
  }
  MeasureAnnoy(aug, AnnoyMetric::kEuclidean, {1, 4, 8}, {1}, "euclidean augmented");
}

// Build and routing costs alone (CPU seconds of this thread, best of three): the forest on the
// sample the glue would draw, every table row routed; k-means and assignment for IVF beside.
void MeasureTimes(const std::string& set, int dims, AnnoyMetric metric, size_t rows) {
  auto table = test::ReadRows(test::DataPath(set, "base.f32"), dims, 0, rows);
  if (table.size() != rows * dims) GTEST_SKIP() << set << " missing";
  if (metric == AnnoyMetric::kAngular) test::NormalizeRows(&table, dims);
  std::printf("| %s, %zu rows | trees | leaf_size | sample | build CPU s | route rows/CPU s |\n",
              set.c_str(), rows);
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  std::vector<int32_t> out;
  for (double factor : {0.5, 1.0}) {
    const double leaf_size = factor * std::sqrt(double(rows));
    const auto [sample_rows, per_leaf] = SampleFor(rows, leaf_size);
    const auto sample = Sample(table, dims, sample_rows, 99);
    for (int t : {1, 4, 16}) {
      double build = 1e30, route = 1e30;
      for (int rep = 0; rep < 3; rep++) {
        double start = CpuSeconds();
        const auto b = Build(sample, dims, Options(metric, t, per_leaf));
        build = std::min(build, CpuSeconds() - start);
        out.resize(rows * t);
        start = CpuSeconds();
        b.forest.RouteBatch(table.data(), rows, out.data());
        route = std::min(route, CpuSeconds() - start);
      }
      std::printf("| annoy | %d | %.0f | %zu | %.2f | %.0f |\n", t, leaf_size, sample_rows, build,
                  rows / route);
      std::fflush(stdout);
    }
  }
  const int lists = static_cast<int>(std::lround(std::sqrt(double(rows))));
  const auto sample = Sample(table, dims, std::max<size_t>(10000, 64 * size_t(lists)), 99);
  std::vector<float> centroids(size_t(lists) * dims);
  KMeansOptions km;
  double start = CpuSeconds();
  TrainKMeans(sample.data(), sample.size() / dims, dims, lists, km, centroids.data());
  const double train = CpuSeconds() - start;
  out.resize(rows);
  start = CpuSeconds();
  AssignNearest(table.data(), rows, dims, centroids.data(), lists, out.data());
  std::printf("| IVF k-means, %d lists (%s) | | | %zu | %.2f | %.0f |\n", lists,
              IsaName(ActiveIsa()), sample.size() / dims, train, rows / (CpuSeconds() - start));
}

TEST(AnnoyMeasure, DISABLED_Times) {
  MeasureTimes("glove-100", 100, AnnoyMetric::kAngular, 331479);
  MeasureTimes("fashion-mnist", 784, AnnoyMetric::kEuclidean, 60000);
}

}  // namespace
}  // namespace scann
