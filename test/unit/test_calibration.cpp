// NeighborTruth: the exact neighbours of calibration queries, gathered chunk by chunk, equal a
// brute-force search on real data (GloVe-100) for both metrics, skip each query's own row,
// merge across participants, and give recall of candidate lists.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/calibration.h"
#include "core/distance.h"
#include "test_data.h"

namespace scann {
namespace {

std::vector<float> Glove(size_t first, size_t count) {
  return test::ReadRows(test::DataPath("glove-100", "base.f32"), 100, first, count);
}

// The k nearest ids of row q among all rows but itself, by brute force.
std::vector<uint64_t> BruteForce(const std::vector<float>& rows, size_t q, bool ip, int k) {
  const size_t n = rows.size() / 100;
  std::vector<std::pair<double, uint64_t>> all;
  for (size_t i = 0; i < n; i++) {
    if (i == q) continue;
    double s = 0;
    for (int j = 0; j < 100; j++) {
      const double a = rows[q * 100 + j], b = rows[i * 100 + j];
      s += ip ? -a * b : (a - b) * (a - b);
    }
    all.push_back({s, i});
  }
  std::partial_sort(all.begin(), all.begin() + k, all.end());
  std::vector<uint64_t> ids;
  for (int i = 0; i < k; i++) ids.push_back(all[i].second);
  return ids;
}

TEST(NeighborTruth, EqualsBruteForceOnGlove) {
  const size_t n = 5000;
  const auto rows = Glove(0, n);
  ASSERT_FALSE(rows.empty()) << "run bench/datasets.py prepare glove-100";
  std::vector<uint64_t> ids(n);
  for (size_t i = 0; i < n; i++) ids[i] = i;
  const int nq = 37;  // not a multiple of the 16-query blocks
  std::vector<float> queries;
  std::vector<uint64_t> query_ids;
  for (int q = 0; q < nq; q++) {
    const size_t row = size_t(q) * 131;
    queries.insert(queries.end(), rows.begin() + row * 100, rows.begin() + (row + 1) * 100);
    query_ids.push_back(row);
  }
  for (bool ip : {false, true}) {
    NeighborTruth truth(queries.data(), query_ids.data(), nq, 100, ip, 10);
    // Chunks of odd sizes, as a build's chunks and participants' shares come.
    for (size_t start = 0; start < n;) {
      const size_t count = std::min<size_t>(n - start, 777);
      truth.Add(rows.data() + start * 100, ids.data() + start, count);
      start += count;
    }
    int agree = 0;
    for (int q = 0; q < nq; q++) {
      const auto want = BruteForce(rows, query_ids[q], ip, 10);
      const auto& got = truth.Nearest(q);
      ASSERT_EQ(got.size(), 10u);
      for (const auto& g : got) EXPECT_NE(g.id, query_ids[q]) << "a query is not its own neighbour";
      std::vector<uint64_t> got_ids;
      for (const auto& g : got) got_ids.push_back(g.id);
      agree += int(std::count_if(want.begin(), want.end(), [&](uint64_t w) {
        return std::find(got_ids.begin(), got_ids.end(), w) != got_ids.end();
      }));
      EXPECT_DOUBLE_EQ(
          truth.Recall(q, want.data(), want.size()),
          double(std::count_if(
              got_ids.begin(), got_ids.end(),
              [&](uint64_t g) { return std::find(want.begin(), want.end(), g) != want.end(); })) /
              10.0);
    }
    // Float rounding of the blocked kernel may swap a near-tie at the 10th place.
    EXPECT_GE(agree, nq * 10 - 3) << (ip ? "ip" : "l2");
  }
}

// Two participants' halves merged give the whole table's answer.
TEST(NeighborTruth, MergedHalvesEqualTheWhole) {
  const size_t n = 3000;
  const auto rows = Glove(10000, n);
  ASSERT_FALSE(rows.empty()) << "run bench/datasets.py prepare glove-100";
  std::vector<uint64_t> ids(n);
  for (size_t i = 0; i < n; i++) ids[i] = 1000 + i;
  const uint64_t qid[2] = {1000 + 5, 1000 + 2500};
  std::vector<float> queries(rows.begin() + 5 * 100, rows.begin() + 6 * 100);
  queries.insert(queries.end(), rows.begin() + 2500 * 100, rows.begin() + 2501 * 100);
  NeighborTruth whole(queries.data(), qid, 2, 100, false, 10);
  NeighborTruth a(queries.data(), qid, 2, 100, false, 10),
      b(queries.data(), qid, 2, 100, false, 10);
  whole.Add(rows.data(), ids.data(), n);
  a.Add(rows.data(), ids.data(), 1400);
  b.Add(rows.data() + 1400 * 100, ids.data() + 1400, n - 1400);
  for (int q = 0; q < 2; q++) {
    a.Merge(q, b.Nearest(q).data(), int(b.Nearest(q).size()));
    ASSERT_EQ(a.Nearest(q).size(), whole.Nearest(q).size());
    for (size_t i = 0; i < a.Nearest(q).size(); i++)
      EXPECT_EQ(a.Nearest(q)[i].id, whole.Nearest(q)[i].id);
  }
  EXPECT_EQ(whole.Recall(0, nullptr, 0), 0.0);
}

}  // namespace
}  // namespace scann
