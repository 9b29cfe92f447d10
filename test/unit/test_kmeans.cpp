// k-means and nearest-centroid search: edge cases, determinism, the objective, agreement of
// the SIMD tile with its scalar twin, and the speed on real data (GloVe).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/distance.h"
#include "core/isa.h"
#include "core/kmeans.h"
#include "test_rng.h"
#include "isa_guard.h"

namespace scann {
namespace {

using test::IsaGuard;

// n rows around `clusters` well-separated centres (uniform noise of half-width 0.5).
std::vector<float> Blobs(size_t n, int dim, int clusters, uint64_t seed) {
  test::Rng rng(seed);
  std::vector<float> centres(static_cast<size_t>(clusters) * dim);
  for (auto& v : centres) v = rng.Uniform(-20, 20);
  std::vector<float> data(n * dim);
  for (size_t i = 0; i < n; i++) {
    const float* c = centres.data() + (i % clusters) * dim;
    for (int j = 0; j < dim; j++) data[i * dim + j] = c[j] + rng.Uniform(-0.5f, 0.5f);
  }
  return data;
}

std::vector<float> Uniform(size_t n, int dim, uint64_t seed) {
  test::Rng rng(seed);
  std::vector<float> data(n * dim);
  for (auto& v : data) v = rng.Uniform(-1, 1);
  return data;
}

// Sum of squared distances of every row to its nearest centroid, in double.
double Objective(const std::vector<float>& data, int dim, const std::vector<float>& centroids) {
  const size_t n = data.size() / dim, k = centroids.size() / dim;
  double total = 0;
  for (size_t i = 0; i < n; i++) {
    double best = std::numeric_limits<double>::infinity();
    for (size_t c = 0; c < k; c++) {
      double d = 0;
      for (int j = 0; j < dim; j++) {
        const double e = double(data[i * dim + j]) - centroids[c * dim + j];
        d += e * e;
      }
      best = std::min(best, d);
    }
    total += best;
  }
  return total;
}

std::vector<float> Train(const std::vector<float>& data, int dim, int k, int iterations,
                         uint64_t seed = 0x5ca1ab1e) {
  KMeansOptions opt;
  opt.iterations = iterations;
  opt.seed = seed;
  std::vector<float> centroids(static_cast<size_t>(k) * dim);
  TrainKMeans(data.data(), data.size() / dim, dim, k, opt, centroids.data());
  return centroids;
}

// The branch-free search for the nearest of 16 against its scalar twin: random distances, many
// ties (values drawn from a few levels), zeros of both signs and infinities.
TEST(FirstMinimum16, MatchesScalar) {
  test::Rng rng(77);
  const float levels[] = {0.0f,
                          -0.0f,
                          0.5f,
                          1.0f,
                          3.0f,
                          std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::max()};
  float d[16];
  for (int trial = 0; trial < 100000; trial++) {
    for (float& v : d)
      v = trial % 2 ? rng.Uniform(0, 4) : levels[rng.Next() % (sizeof(levels) / sizeof(float))];
    ASSERT_EQ(FirstMinimum16(d), scalar::FirstMinimum16(d)) << "trial " << trial;
  }
  for (int c = 0; c < 16; c++) {  // a single minimum in every position
    std::fill(d, d + 16, 2.0f);
    d[c] = 1.0f;
    EXPECT_EQ(FirstMinimum16(d), c);
  }
  std::fill(d, d + 16, 1.0f);  // all equal: the first
  EXPECT_EQ(FirstMinimum16(d), 0);
  for (int c = 0; c < 16; c++) {  // NaN anywhere: still an index in range
    d[c] = std::numeric_limits<float>::quiet_NaN();
    const int got = FirstMinimum16(d);
    EXPECT_TRUE(got >= 0 && got < 16) << got;
  }
}

TEST(KMeans, SameSeedSameCentroids) {
  const int dim = 13, k = 17;
  const auto data = Blobs(3000, dim, 25, 1);
  const auto a = Train(data, dim, k, 8);
  const auto b = Train(data, dim, k, 8);
  EXPECT_EQ(a, b);  // bit for bit
  const auto c = Train(data, dim, k, 8, 0x1234);
  EXPECT_NE(a, c);
}

TEST(KMeans, ObjectiveFallsFromRandomRowsAndNeverRises) {
  const int dim = 8, k = 20;
  const auto data = Blobs(4000, dim, k, 2);
  // iterations = 0 returns the seeded random rows themselves.
  const double initial = Objective(data, dim, Train(data, dim, k, 0));
  double previous = initial;
  for (int iterations : {1, 2, 5, 10, 20}) {
    const double obj = Objective(data, dim, Train(data, dim, k, iterations));
    EXPECT_LE(obj, previous * (1 + 1e-6)) << iterations << " iterations";
    previous = obj;
  }
  // Random rows put two centroids in some blobs and none in others, and Lloyd keeps part
  // of that (measured: 0.17 of the initial objective, not the noise floor of 2667).
  EXPECT_LT(previous, 0.3 * initial);
}

TEST(KMeans, KEqualsNPutsACentroidOnEveryRow) {
  const int dim = 5;
  auto data = Uniform(40, dim, 3);
  // Duplicate rows force empty clusters, which must be re-seeded, not left NaN.
  std::copy(data.begin(), data.begin() + 10 * dim, data.begin() + 20 * dim);
  const auto centroids = Train(data, dim, 40, 5);
  for (float v : centroids) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(Objective(data, dim, centroids), 0.0);
}

TEST(KMeans, OneClusterIsTheMean) {
  const int dim = 6;
  const auto data = Uniform(1001, dim, 4);
  const auto centroid = Train(data, dim, 1, 3);
  for (int j = 0; j < dim; j++) {
    double mean = 0;
    for (size_t i = 0; i < 1001; i++) mean += data[i * dim + j];
    EXPECT_NEAR(centroid[j], mean / 1001, 1e-6);
  }
}

// Test oracles by direct squared L2 distances: the index of the nearest centroid (lowest
// index among exact ties), and every centroid ranked (ties by index) with its distance in
// dist[k].
int NearestCentroid(const float* x, const float* centroids, int k, int dim) {
  int best = 0;
  float best_dist = std::numeric_limits<float>::infinity();
  for (int c = 0; c < k; c++) {
    const float d = Distances().l2_squared(x, centroids + static_cast<size_t>(c) * dim, dim);
    if (d < best_dist) {
      best_dist = d;
      best = c;
    }
  }
  return best;
}

void NearestCentroids(const float* q, const float* centroids, int k, int dim, int32_t* out_idx,
                      float* dist) {
  for (int c = 0; c < k; c++)
    dist[c] = Distances().l2_squared(q, centroids + static_cast<size_t>(c) * dim, dim);
  std::iota(out_idx, out_idx + k, 0);
  std::sort(out_idx, out_idx + k, [dist](int32_t a, int32_t b) {
    return dist[a] < dist[b] || (dist[a] == dist[b] && a < b);
  });
}

TEST(KMeans, BadArgumentsThrow) {
  const auto data = Uniform(10, 3, 5);
  std::vector<float> out(11 * 3);
  KMeansOptions opt;
  EXPECT_THROW(TrainKMeans(data.data(), 10, 3, 0, opt, out.data()), std::invalid_argument);
  EXPECT_THROW(TrainKMeans(data.data(), 10, 3, 11, opt, out.data()), std::invalid_argument);
  EXPECT_THROW(TrainKMeans(data.data(), 10, 3, -1, opt, out.data()), std::invalid_argument);
  EXPECT_THROW(TrainKMeans(data.data(), 10, 0, 2, opt, out.data()), std::invalid_argument);
  EXPECT_THROW(TrainKMeans(data.data(), 0, 3, 1, opt, out.data()), std::invalid_argument);
  opt.iterations = -1;
  EXPECT_THROW(TrainKMeans(data.data(), 10, 3, 2, opt, out.data()), std::invalid_argument);
}

TEST(KMeans, InterruptCheckExceptionPropagates) {
  const auto data = Uniform(20000, 4, 6);
  std::vector<float> out(8 * 4);
  KMeansOptions opt;
  int calls = 0;
  opt.check_interrupts = [&calls] {
    if (++calls == 3) throw std::runtime_error("cancel");
  };
  EXPECT_THROW(TrainKMeans(data.data(), 20000, 4, 8, opt, out.data()), std::runtime_error);
  EXPECT_EQ(calls, 3);
}

// AssignNearest (||c||^2 - 2 x.c) agrees with NearestCentroid (the direct-distance oracle) except
// where two centroids are closer to tie than float rounding can tell apart.
void CheckAssignments(const std::vector<float>& data, int dim, const std::vector<float>& centroids,
                      const std::vector<int32_t>& got) {
  const size_t n = data.size() / dim;
  const int k = static_cast<int>(centroids.size() / dim);
  size_t differ = 0;
  for (size_t i = 0; i < n; i++) {
    const float* x = data.data() + i * dim;
    const int want = NearestCentroid(x, centroids.data(), k, dim);
    ASSERT_GE(got[i], 0);
    ASSERT_LT(got[i], k);
    if (got[i] == want) continue;
    differ++;
    const float d_got = Distances().l2_squared(x, centroids.data() + got[i] * dim, dim);
    const float d_want = Distances().l2_squared(x, centroids.data() + want * dim, dim);
    const double scale = Distances().inner_product(x, x, dim) +
                         Distances().inner_product(centroids.data() + want * dim,
                                                   centroids.data() + want * dim, dim);
    EXPECT_LE(d_got - d_want, 1e-5 * scale) << "row " << i;
  }
  EXPECT_LE(differ, n / 1000) << "near-ties should be rare";
}

TEST(AssignNearest, MatchesNearestCentroidOnEveryShape) {
  for (int dim : {1, 3, 16, 100}) {
    for (int k : {1, 5, 16, 17, 100}) {
      const auto data = Uniform(6 * 17 + 5, dim, dim * 1000 + k);  // partial tiles and chunks
      const auto centroids = Uniform(k, dim, dim * 1000 + k + 1);
      std::vector<int32_t> got(data.size() / dim);
      AssignNearest(data.data(), got.size(), dim, centroids.data(), k, got.data());
      CheckAssignments(data, dim, centroids, got);
    }
  }
}

TEST(AssignNearest, ScalarAndAvx2Agree) {
  if (DetectIsa() != Isa::kAvx2) GTEST_SKIP() << "CPU lacks AVX2+FMA";
  IsaGuard guard;
  const int dim = 100, k = 257;
  const auto data = Blobs(5000, dim, 300, 9);
  const auto centroids = Train(data, dim, k, 3);
  std::vector<int32_t> scalar_out(5000), avx2_out(5000);
  SetActiveIsa(Isa::kScalar);
  AssignNearest(data.data(), 5000, dim, centroids.data(), k, scalar_out.data());
  CheckAssignments(data, dim, centroids, scalar_out);
  SetActiveIsa(Isa::kAvx2);
  AssignNearest(data.data(), 5000, dim, centroids.data(), k, avx2_out.data());
  CheckAssignments(data, dim, centroids, avx2_out);
  size_t differ = 0;
  for (size_t i = 0; i < 5000; i++) differ += scalar_out[i] != avx2_out[i];
  EXPECT_LE(differ, 5u);
}

// The AVX2 tile equals the scalar one within the bound of reordered float sums with FMA:
// |difference| <= 2 * dim * eps * sum |x_i c_i|.
TEST(DotTile, Avx2WithinRoundingOfScalar) {
  if (DetectIsa() != Isa::kAvx2) GTEST_SKIP() << "CPU lacks AVX2+FMA";
  for (int dim : {1, 2, 7, 100, 784}) {
    const auto rows = Uniform(kTileRows, dim, dim);
    const auto block = Uniform(kTileCols, dim, dim + 1);
    float s[kTileRows * kTileCols], v[kTileRows * kTileCols];
    scalar::DotTile(rows.data(), dim, block.data(), dim, s);
    avx2::DotTile(rows.data(), dim, block.data(), dim, v);
    for (int r = 0; r < kTileRows; r++) {
      for (int j = 0; j < kTileCols; j++) {
        double abs_sum = 0, exact = 0;
        for (int i = 0; i < dim; i++) {
          const double t = double(rows[r * dim + i]) * block[i * kTileCols + j];
          abs_sum += std::fabs(t);
          exact += t;
        }
        const double bound = 2.0 * dim * std::numeric_limits<float>::epsilon() * abs_sum;
        EXPECT_NEAR(s[r * kTileCols + j], v[r * kTileCols + j], bound) << dim << " " << r;
        EXPECT_NEAR(s[r * kTileCols + j], exact, bound);
      }
    }
  }
}

// The AVX2 eight-row kernel equals its scalar twin (and the exact dot products) within the
// bound of float sums with FMA, for every remainder of 8 coordinates and
// rows further apart than their length.
TEST(DotRows, Avx2WithinRoundingOfScalar) {
  if (DetectIsa() != Isa::kAvx2) GTEST_SKIP() << "CPU lacks AVX2+FMA";
  for (int dim : {1, 2, 3, 7, 8, 9, 16, 23, 100, 784}) {
    for (size_t stride : {size_t(dim), size_t(dim) + 5}) {
      const auto q = Uniform(1, dim, 2 * dim);
      const auto rows = Uniform(kDotRows, int(stride), 2 * dim + 1);
      float s[kDotRows], v[kDotRows];
      scalar::DotRows(q.data(), rows.data(), stride, dim, s);
      avx2::DotRows(q.data(), rows.data(), stride, dim, v);
      for (int r = 0; r < kDotRows; r++) {
        double abs_sum = 0, exact = 0;
        for (int i = 0; i < dim; i++) {
          const double t = double(q[i]) * rows[r * stride + i];
          abs_sum += std::fabs(t);
          exact += t;
        }
        const double bound = 2.0 * dim * std::numeric_limits<float>::epsilon() * abs_sum;
        EXPECT_NEAR(s[r], v[r], bound) << dim << " " << r;
        EXPECT_NEAR(s[r], exact, bound) << dim << " " << r;
      }
    }
  }
}

std::vector<float> Norms(const std::vector<float>& centroids, int k, int dim) {
  std::vector<float> norms(k);
  CentroidNorms(centroids.data(), k, dim, norms.data());
  return norms;
}

// RankCentroids (||c||^2 - 2 q.c from the norms and the four-row kernel) ranks as
// NearestCentroids (direct distances) does, except where two distances are closer than
// float rounding can tell apart; with inner_product it ranks by the largest q.c.  Every
// shape of the last group of eight, and fewer centroids than a group.
TEST(RankCentroids, MatchesDirectRanking) {
  for (int dim : {1, 5, 37, 100}) {
    for (int k : {1, 3, 7, 8, 9, 15, 16, 17, 300}) {
      const auto centroids = Uniform(k, dim, 31 * dim + k);
      const auto queries = Uniform(8, dim, 37 * dim + k);
      const auto norms = Norms(centroids, k, dim);
      std::vector<int32_t> got(k), want(k);
      std::vector<uint64_t> scratch(k);
      std::vector<float> direct(k);
      for (int qi = 0; qi < 8; qi++) {
        const float* q = queries.data() + qi * dim;
        RankCentroids(q, centroids.data(), norms.data(), k, dim, false, k, got.data(),
                      scratch.data());
        NearestCentroids(q, centroids.data(), k, dim, want.data(), direct.data());
        const double scale = 2 * dim;  // |q|^2 + |c|^2 bound for coordinates in [-1, 1]
        for (int i = 0; i < k; i++) {
          if (got[i] != want[i]) {
            EXPECT_NEAR(direct[got[i]], direct[want[i]], 1e-5 * scale) << dim << " " << k;
          }
        }
        // Inner product: against a direct ranking by -q.c (in double), ties by index.
        RankCentroids(q, centroids.data(), norms.data(), k, dim, true, k, got.data(),
                      scratch.data());
        std::vector<double> dot(k, 0.0);
        std::vector<std::pair<double, int>> ip(k);
        for (int c = 0; c < k; c++) {
          for (int i = 0; i < dim; i++) dot[c] += double(q[i]) * centroids[c * dim + i];
          ip[c] = {-dot[c], c};
        }
        std::sort(ip.begin(), ip.end());
        for (int i = 0; i < k; i++) {
          if (got[i] != ip[i].second) {
            EXPECT_NEAR(dot[got[i]], dot[ip[i].second], 1e-5 * dim) << "ip " << dim << " " << k;
          }
        }
        // A prefix is the head of the full ranking.
        std::vector<int32_t> head(3);
        if (k >= 3) {
          RankCentroids(q, centroids.data(), norms.data(), k, dim, true, 3, head.data(),
                        scratch.data());
          EXPECT_EQ(std::vector<int32_t>(got.begin(), got.begin() + 3), head);
        }
      }
    }
  }
}

// NearestCentroidWithNorms is the head of RankCentroids' ranking, and NearestCentroid's
// answer except for near-ties (CheckAssignments' bound).
TEST(NearestCentroidWithNorms, MatchesRankingAndDirectSearch) {
  for (int dim : {1, 3, 16, 100}) {
    for (int k : {1, 5, 16, 17, 100}) {
      const auto centroids = Uniform(k, dim, 41 * dim + k);
      const auto data = Uniform(200, dim, 43 * dim + k);
      const auto norms = Norms(centroids, k, dim);
      std::vector<int32_t> got(200);
      std::vector<uint64_t> scratch(k);
      for (int i = 0; i < 200; i++) {
        const float* x = data.data() + i * dim;
        got[i] = NearestCentroidWithNorms(x, centroids.data(), norms.data(), k, dim);
        int32_t head;
        RankCentroids(x, centroids.data(), norms.data(), k, dim, false, 1, &head, scratch.data());
        EXPECT_EQ(got[i], head) << dim << " " << k << " " << i;
      }
      CheckAssignments(data, dim, centroids, got);
    }
  }
}

TEST(RankCentroids, TiesGoToTheLowerIndexAndNaNRanksLast) {
  const int dim = 2;
  const std::vector<float> centroids = {1, 0, 0, 1, -1, 0, 0, -1, 5, 5};
  const auto norms = Norms(centroids, 5, dim);
  const float origin[2] = {0, 0};
  int32_t idx[5];
  uint64_t scratch[5];
  RankCentroids(origin, centroids.data(), norms.data(), 5, dim, false, 5, idx, scratch);
  EXPECT_EQ(std::vector<int32_t>(idx, idx + 5), (std::vector<int32_t>{0, 1, 2, 3, 4}));
  const float q[2] = {1, 1};  // inner products 1, 1, -1, -1, 10
  RankCentroids(q, centroids.data(), norms.data(), 5, dim, true, 5, idx, scratch);
  EXPECT_EQ(std::vector<int32_t>(idx, idx + 5), (std::vector<int32_t>{4, 0, 1, 2, 3}));
  const float nan_q[2] = {std::numeric_limits<float>::quiet_NaN(), 0};
  RankCentroids(nan_q, centroids.data(), norms.data(), 5, dim, false, 5, idx, scratch);
  EXPECT_EQ(std::vector<int32_t>(idx, idx + 5), (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_THROW(RankCentroids(q, centroids.data(), norms.data(), 5, dim, false, 6, idx, scratch),
               std::invalid_argument);
  EXPECT_EQ(NearestCentroidWithNorms(origin, centroids.data(), norms.data(), 5, dim), 0);
}

// GloVe 100-d base vectors as cached by the project's data tool (bench/datasets.py); the
// test fails, not skips, when they are missing.
std::string GlovePath() {
  const char* root = std::getenv("PG_SCANN_DATA");
  return std::string(root && *root ? root : "/var/tmp/pg_scann-data") + "/glove-100/base.f32";
}

std::vector<float> ReadGloveRows(size_t first, size_t count, size_t* total_rows) {
  std::ifstream in(GlovePath(), std::ios::binary | std::ios::ate);
  if (!in) return {};
  *total_rows = static_cast<size_t>(in.tellg()) / (100 * sizeof(float));
  count = std::min(count, *total_rows - std::min(first, *total_rows));
  std::vector<float> rows(count * 100);
  in.seekg(static_cast<std::streamoff>(first * 100 * sizeof(float)));
  in.read(reinterpret_cast<char*>(rows.data()), static_cast<std::streamsize>(rows.size() * 4));
  if (!in) return {};
  return rows;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// The build's hot path on real data: 50,000 x 100 rows into 600 lists, then every row of
// the set assigned. Times are reported, not asserted (sanitizer and loaded CI runs vary 50x).
TEST(KMeansOnGlove, TrainAndAssignTimings) {
  size_t total = 0;
  const auto all = ReadGloveRows(0, SIZE_MAX, &total);
  ASSERT_FALSE(all.empty()) << "GloVe base vectors missing at " << GlovePath()
                            << ": run `bench/datasets.py prepare glove-100`";
  const int dim = 100, k = 600;
  const size_t n = 50000;
  ASSERT_GE(total, n);
  std::vector<float> centroids(static_cast<size_t>(k) * dim);
  KMeansOptions opt;
  auto start = std::chrono::steady_clock::now();
  TrainKMeans(all.data(), n, dim, k, opt, centroids.data());
  const double train_s = Seconds(start);
  std::vector<int32_t> assign(total);
  start = std::chrono::steady_clock::now();
  AssignNearest(all.data(), total, dim, centroids.data(), k, assign.data());
  const double assign_s = Seconds(start);
  std::printf(
      "[ timing ] %s: TrainKMeans n=%zu dim=%d k=%d 10 iterations %.2f s; "
      "AssignNearest %zu rows %.2f s\n",
      IsaName(ActiveIsa()), n, dim, k, train_s, total, assign_s);
  RecordProperty("train_seconds", std::to_string(train_s));
  RecordProperty("assign_seconds", std::to_string(assign_s));
  std::vector<size_t> sizes(k);
  for (int32_t a : assign) sizes[a]++;
  EXPECT_EQ(std::count(sizes.begin(), sizes.end(), size_t{0}), 0) << "empty lists";
}

}  // namespace
}  // namespace scann
