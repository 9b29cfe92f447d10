// Vamana graphs: the visited set, RobustPrune's properties, the beam search and its
// continuation, the build (determinism, degenerate inputs, interrupts), and recall on real
// data (GloVe-100, Fashion-MNIST, MiniLM) for the single build, the sharded build and the
// FreshDiskANN updates.  The measurements of the report are DISABLED_ tests at the end.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <sstream>
#include <string>
#include <vector>

#include "core/distance.h"
#include "core/kmeans.h"
#include "core/vamana.h"
#include "test_data.h"
#include "test_rng.h"

namespace scann {
namespace {

std::vector<float> UniformRows(size_t n, int dims, uint64_t seed) {
  test::Rng rng(seed);
  std::vector<float> data(n * dims);
  for (auto& v : data) v = rng.Uniform(-1, 1);
  return data;
}

float Distance(VamanaMetric metric, const float* a, const float* b, int dims) {
  return metric == VamanaMetric::kL2 ? Distances().l2_squared(a, b, dims)
                                     : -Distances().inner_product(a, b, dims);
}

// Exact distances between rows of a caller-owned matrix.
class RowDistances : public PairDistances {
 public:
  RowDistances(const float* data, int dims, VamanaMetric metric)
      : data_(data), dims_(dims), metric_(metric) {}
  void Distances(uint32_t from, const uint32_t* to, size_t count, float* out) override {
    for (size_t i = 0; i < count; i++) out[i] = Distance(metric_, Row(from), Row(to[i]), dims_);
  }
  const float* Row(uint32_t id) const { return data_ + static_cast<size_t>(id) * dims_; }

 private:
  const float* data_;
  int dims_;
  VamanaMetric metric_;
};

// A GraphStore over an in-memory graph of stride R with exact distances and a deleted flag
// per node: the updates as the glue will drive them, with full-precision vectors.
class TestStore : public GraphStore {
 public:
  TestStore(VamanaGraph* graph, std::vector<float>* data, int dims, VamanaMetric metric)
      : graph_(graph), data_(data), dims_(dims), metric_(metric), deleted_(graph->size(), 0) {}
  size_t Capacity() const override { return static_cast<size_t>(graph_->degree_bound); }
  size_t GetNeighbors(uint32_t node, uint32_t* ids) override {
    std::copy(graph_->Neighbors(node), graph_->Neighbors(node) + graph_->Degree(node), ids);
    return graph_->Degree(node);
  }
  void SetNeighbors(uint32_t node, const uint32_t* ids, size_t count) override {
    EXPECT_LE(count, Capacity());
    std::copy(ids, ids + count, graph_->neighbors.begin() + size_t(node) * graph_->degree_bound);
    graph_->degrees[node] = static_cast<uint32_t>(count);
  }
  void Distances(uint32_t from, const uint32_t* to, size_t count, float* out) override {
    for (size_t i = 0; i < count; i++) out[i] = Distance(metric_, Row(from), Row(to[i]), dims_);
  }
  bool IsDeleted(uint32_t node) override { return deleted_[node] != 0; }
  void SetDeleted(uint32_t node, bool deleted) { deleted_[node] = deleted; }
  const float* Row(uint32_t id) const { return data_->data() + size_t(id) * dims_; }

 private:
  VamanaGraph* graph_;
  std::vector<float>* data_;
  int dims_;
  VamanaMetric metric_;
  std::vector<uint8_t> deleted_;
};

// The k closest by beam search with list size L from the graph's entry point.
std::vector<Candidate> Search(const VamanaGraph& graph, ExactExpander* expander,
                              GreedySearch* search, const float* query, size_t list_size,
                              size_t k) {
  expander->SetQuery(query);
  const Candidate entry{expander->Distance(graph.entry_point), graph.entry_point};
  search->Start(&entry, 1, list_size);
  search->Run(*expander);
  std::vector<Candidate> out(k);
  out.resize(search->Next(k, out.data()));
  return out;
}

// Nodes reachable from the entry point by out-edges.
size_t Reachable(const VamanaGraph& graph) {
  std::vector<uint8_t> seen(graph.size(), 0);
  std::vector<uint32_t> queue{graph.entry_point};
  seen[graph.entry_point] = 1;
  for (size_t head = 0; head < queue.size(); head++)
    for (uint32_t i = 0; i < graph.Degree(queue[head]); i++) {
      const uint32_t v = graph.Neighbors(queue[head])[i];
      if (!seen[v]) {
        seen[v] = 1;
        queue.push_back(v);
      }
    }
  return queue.size();
}

// Every list: at most R entries, no self-loop, no repeated id, ids in range.
void CheckLists(const VamanaGraph& graph, int degree) {
  ASSERT_EQ(graph.degree_bound, degree);
  ASSERT_EQ(graph.neighbors.size(), graph.size() * degree);
  for (uint32_t v = 0; v < graph.size(); v++) {
    ASSERT_LE(graph.Degree(v), uint32_t(degree));
    std::vector<uint32_t> list(graph.Neighbors(v), graph.Neighbors(v) + graph.Degree(v));
    for (uint32_t u : list) {
      ASSERT_LT(u, graph.size());
      ASSERT_NE(u, v);
    }
    std::sort(list.begin(), list.end());
    ASSERT_TRUE(std::adjacent_find(list.begin(), list.end()) == list.end()) << "node " << v;
  }
}

TEST(VamanaVisitedSet, DenseAndHashedAgree) {
  VisitedSet dense(100000), hashed;
  test::Rng rng(3);
  for (int round = 0; round < 3; round++) {
    dense.Clear();
    hashed.Clear();
    std::vector<uint8_t> truth(100000, 0);
    for (int i = 0; i < 20000; i++) {
      const uint32_t id = static_cast<uint32_t>(rng.Next() % 100000);
      EXPECT_EQ(dense.Insert(id), truth[id] == 0);
      EXPECT_EQ(hashed.Insert(id), truth[id] == 0);
      truth[id] = 1;
    }
    size_t count = 0;
    for (uint32_t id = 0; id < 100000; id++) {
      count += truth[id];
      ASSERT_EQ(dense.Contains(id), truth[id] != 0);
      ASSERT_EQ(hashed.Contains(id), truth[id] != 0);
    }
    EXPECT_EQ(dense.size(), count);
    EXPECT_EQ(hashed.size(), count);
  }
  hashed.Clear();
  EXPECT_FALSE(hashed.Contains(0));
  EXPECT_TRUE(hashed.Insert(UINT32_MAX - 1));
  EXPECT_TRUE(hashed.Contains(UINT32_MAX - 1));
}

std::vector<uint32_t> Prune(uint32_t p, std::vector<Candidate> pool, float alpha, int degree,
                            const std::vector<float>& data, int dims,
                            VamanaMetric metric = VamanaMetric::kL2) {
  VamanaParams params;
  params.graph_degree = degree;
  params.metric = metric;
  RowDistances distances(data.data(), dims, metric);
  VamanaScratch scratch(degree);
  std::vector<uint32_t> out;
  RobustPrune(p, &pool, alpha, params, distances, &scratch, &out);
  return out;
}

std::vector<Candidate> PoolFor(uint32_t p, const std::vector<float>& data, int dims,
                               VamanaMetric metric = VamanaMetric::kL2) {
  std::vector<Candidate> pool;
  const size_t n = data.size() / dims;
  for (uint32_t i = 0; i < n; i++)
    pool.push_back({Distance(metric, &data[p * dims], &data[i * dims], dims), i});
  return pool;
}

// On a line, p = 0 with candidates at 1 and 10: alpha = 1 keeps only the near one (1 is
// closer to 10 than p is); alpha = 1.5 on squared distances (81 * 1.5 > 100) keeps the long
// edge too.
TEST(VamanaRobustPrune, LargerAlphaKeepsLongEdges) {
  const std::vector<float> line = {0, 1, 10};
  EXPECT_EQ(Prune(0, PoolFor(0, line, 1), 1.0f, 8, line, 1), (std::vector<uint32_t>{1}));
  EXPECT_EQ(Prune(0, PoolFor(0, line, 1), 1.5f, 8, line, 1), (std::vector<uint32_t>{1, 2}));

  const int dims = 16;
  const auto data = UniformRows(2000, dims, 5);
  size_t kept1 = 0, kept12 = 0;
  for (uint32_t p = 0; p < 50; p++) {
    const auto a = Prune(p, PoolFor(p, data, dims), 1.0f, 32, data, dims);
    const auto b = Prune(p, PoolFor(p, data, dims), 1.2f, 32, data, dims);
    ASSERT_LE(a.size(), 32u);
    ASSERT_LE(b.size(), 32u);
    ASSERT_FALSE(a.empty());
    EXPECT_EQ(a[0], b[0]) << "the nearest candidate is always kept";
    kept1 += a.size();
    kept12 += b.size();
  }
  EXPECT_GT(kept12, kept1);
}

TEST(VamanaRobustPrune, DegreeBoundSelfAndDuplicates) {
  const int dims = 8;
  const auto data = UniformRows(500, dims, 6);
  for (int degree : {1, 4, 32}) {
    auto pool = PoolFor(7, data, dims);
    pool.insert(pool.end(), pool.begin(), pool.begin() + 100);  // repeated ids
    const auto out = Prune(7, pool, 2.0f, degree, data, dims);
    ASSERT_LE(out.size(), size_t(degree));
    ASSERT_GE(out.size(), 1u);
    std::vector<uint32_t> sorted = out;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_TRUE(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    EXPECT_TRUE(std::find(out.begin(), out.end(), 7u) == out.end());
  }
  EXPECT_TRUE(Prune(0, {}, 1.2f, 8, data, dims).empty());
}

// Exact ties are broken by a fixed order per node, not by the order of the pool: shuffled
// pools give one answer.  All-equal rows are duplicates of p, which are never occluded.
TEST(VamanaRobustPrune, TiesDeterministic) {
  const int dims = 3;
  const std::vector<float> same(40 * dims, 0.5f);
  auto pool = PoolFor(0, same, dims);
  const auto first = Prune(0, pool, 1.2f, 8, same, dims);
  EXPECT_EQ(first.size(), 8u);
  test::Rng rng(9);
  for (int trial = 0; trial < 10; trial++) {
    for (size_t i = pool.size(); i > 1; i--) std::swap(pool[i - 1], pool[rng.Next() % i]);
    EXPECT_EQ(Prune(0, pool, 1.2f, 8, same, dims), first);
  }
  EXPECT_NE(Prune(1, PoolFor(1, same, dims), 1.2f, 8, same, dims), first)
      << "another node breaks the same ties in another order";
}

TEST(VamanaRobustPrune, InnerProductKeepsBestFirst) {
  const int dims = 8;
  const auto data = UniformRows(300, dims, 8);
  const auto pool = PoolFor(3, data, dims, VamanaMetric::kInnerProduct);
  const auto out = Prune(3, pool, 1.2f, 16, data, dims, VamanaMetric::kInnerProduct);
  ASSERT_FALSE(out.empty());
  ASSERT_LE(out.size(), 16u);
  uint32_t best = 0;
  for (const auto& c : pool)
    if (c.id != 3 && (best == 3 || c.distance < pool[best].distance)) best = c.id;
  EXPECT_EQ(out[0], best);
}

VamanaParams Params(int degree, int list, float alpha = 1.2f,
                    VamanaMetric metric = VamanaMetric::kL2) {
  VamanaParams p;
  p.graph_degree = degree;
  p.build_list = list;
  p.alpha = alpha;
  p.metric = metric;
  return p;
}

TEST(VamanaBuild, SameSeedSameGraph) {
  const int dims = 10;
  const auto data = UniformRows(3000, dims, 11);
  auto params = Params(16, 40);
  const auto a = BuildVamana(data.data(), 3000, dims, params);
  const auto b = BuildVamana(data.data(), 3000, dims, params);
  CheckLists(a, 16);
  EXPECT_EQ(a.entry_point, b.entry_point);
  EXPECT_EQ(a.degrees, b.degrees);
  EXPECT_EQ(a.neighbors, b.neighbors);
  params.seed = 77;
  const auto c = BuildVamana(data.data(), 3000, dims, params);
  EXPECT_EQ(a.entry_point, c.entry_point) << "the medoid does not depend on the seed";
  EXPECT_NE(a.neighbors, c.neighbors);
}

TEST(VamanaBuild, DegenerateInputs) {
  const auto one = UniformRows(1, 4, 1);
  const auto g1 = BuildVamana(one.data(), 1, 4, Params(8, 10));
  ASSERT_EQ(g1.size(), 1u);
  EXPECT_EQ(g1.entry_point, 0u);
  EXPECT_EQ(g1.Degree(0), 0u);

  const auto g0 = BuildVamana(one.data(), 0, 4, Params(8, 10));
  EXPECT_EQ(g0.size(), 0u);
  EXPECT_EQ(g0.entry_point, kNoNode);

  // n <= R: every row is found.
  const auto few = UniformRows(6, 5, 2);
  const auto g6 = BuildVamana(few.data(), 6, 5, Params(8, 10));
  CheckLists(g6, 8);
  EXPECT_EQ(Reachable(g6), 6u);
  ExactExpander ex6(g6, few.data(), 5, VamanaMetric::kL2);
  GreedySearch s6(8);
  EXPECT_EQ(Search(g6, &ex6, &s6, few.data() + 10, 10, 6).size(), 6u);

  // All rows equal: every distance is 0, RobustPrune occludes none, ties fall in a
  // pseudo-random order per row; the search returns k rows.  Nodes the first searches
  // expand collect back-edges, so a few (10 of 500 measured) end without an in-edge.
  const std::vector<float> same(500 * 3, 0.25f);
  const auto ge = BuildVamana(same.data(), 500, 3, Params(8, 20));
  CheckLists(ge, 8);
  EXPECT_GE(Reachable(ge), 485u);
  ExactExpander exe(ge, same.data(), 3, VamanaMetric::kL2);
  GreedySearch se(8);
  const auto res = Search(ge, &exe, &se, same.data(), 20, 10);
  ASSERT_EQ(res.size(), 10u);
  for (const auto& c : res) EXPECT_EQ(c.distance, 0.0f);

  // One dimension: exact neighbours on a line.
  const int n = 2000;
  const auto line = UniformRows(n, 1, 3);
  const auto gl = BuildVamana(line.data(), n, 1, Params(8, 30));
  CheckLists(gl, 8);
  ExactExpander exl(gl, line.data(), 1, VamanaMetric::kL2);
  GreedySearch sl(8, n);
  size_t hits = 0;
  for (int q = 0; q < 100; q++) {
    const float query = -1.0f + 0.02f * q;
    std::vector<float> d(n);
    for (int i = 0; i < n; i++) d[i] = (line[i] - query) * (line[i] - query);
    std::nth_element(d.begin(), d.begin() + 9, d.end());
    for (const auto& c : Search(gl, &exl, &sl, &query, 30, 10)) hits += c.distance <= d[9];
  }
  EXPECT_GE(hits, 990u);
}

TEST(VamanaBuild, BadParamsThrow) {
  const auto data = UniformRows(10, 2, 1);
  EXPECT_THROW(BuildVamana(data.data(), 10, 0, Params(8, 10)), std::invalid_argument);
  EXPECT_THROW(BuildVamana(data.data(), 10, 2, Params(0, 10)), std::invalid_argument);
  EXPECT_THROW(BuildVamana(data.data(), 10, 2, Params(8, 0)), std::invalid_argument);
  EXPECT_THROW(BuildVamana(data.data(), 10, 2, Params(8, 10, 0.9f)), std::invalid_argument);
  EXPECT_THROW(BuildVamana(data.data(), 10, 2, Params(8, 10, std::nanf(""))),
               std::invalid_argument);
}

// The interrupt callback's exception leaves the build (and the merge) through every frame.
TEST(VamanaBuild, InterruptUnwinds) {
  const int dims = 8;
  const auto data = UniformRows(5000, dims, 4);
  auto params = Params(16, 30);
  int calls = 0;
  params.check_interrupts = [&calls] {
    if (++calls == 25) throw std::runtime_error("cancel");
  };
  EXPECT_THROW(BuildVamana(data.data(), 5000, dims, params), std::runtime_error);
  EXPECT_EQ(calls, 25);  // 5000 rows / 256 per check = 20 per pass: inside the second pass

  calls = 0;
  params.check_interrupts = nullptr;
  const auto g = BuildVamana(data.data(), 5000, dims, params);
  std::vector<uint32_t> ids(5000);
  std::iota(ids.begin(), ids.end(), 0);
  RowDistances distances(data.data(), dims, VamanaMetric::kL2);
  params.check_interrupts = [&calls] {
    if (++calls == 3) throw std::runtime_error("cancel");
  };
  ShardGraphMerger merger(5000, params);
  EXPECT_THROW(merger.AddShard(g, ids.data(), distances), std::runtime_error);
}

// ---------------------------------------------------------------------------------------
// Real data, as cached by bench/datasets.py; the tests skip (with the reason) without it.

void Normalize(std::vector<float>* data, int dims) {
  for (size_t i = 0; i < data->size(); i += dims) {
    float* x = data->data() + i;
    const float norm = std::sqrt(Distances().inner_product(x, x, dims));
    if (norm > 0)
      for (int j = 0; j < dims; j++) x[j] /= norm;
  }
}

struct DataSet {
  std::string name;
  int dims = 0;
  VamanaMetric metric = VamanaMetric::kL2;  // of the build and the search
  VamanaMetric truth = VamanaMetric::kL2;   // of the ground truth
  std::vector<float> base, queries;
  size_t rows() const { return base.size() / dims; }
  size_t nq() const { return queries.size() / dims; }
  const float* row(size_t i) const { return base.data() + i * dims; }
  const float* query(size_t i) const { return queries.data() + i * dims; }
};

// GloVe-100 (cosine: normalized, searched by L2), Fashion-MNIST (l2) or MiniLM (cosine).
DataSet Load(const std::string& name, size_t rows, size_t queries, bool normalize,
             VamanaMetric metric = VamanaMetric::kL2) {
  DataSet ds;
  ds.name = name;
  ds.metric = metric;
  ds.truth = metric;
  ds.dims = name == "glove-100" ? 100 : name == "fashion-mnist" ? 784 : 384;
  ds.base = test::ReadRows(test::DataPath(name, "base.f32"), ds.dims, 0, rows);
  ds.queries = test::ReadRows(test::DataPath(name, "queries.f32"), ds.dims, 0, queries);
  if (ds.rows() < std::min<size_t>(rows, 778) || ds.nq() == 0) return DataSet{};
  if (normalize) {
    Normalize(&ds.base, ds.dims);
    Normalize(&ds.queries, ds.dims);
  }
  return ds;
}

#define LOAD_OR_SKIP(ds, ...)                                         \
  DataSet ds = Load(__VA_ARGS__);                                     \
  if (ds.base.empty())                                                \
  GTEST_SKIP() << "data set missing under " << test::DataPath("", "") \
               << ": run `bench/datasets.py prepare minilm fashion-mnist glove-100`"

// The k-th smallest exact distance from each query to the first `rows` base rows (or to
// the rows with live[i] set): a result is a hit when its exact distance is at most this,
// so ties at the k-th distance (Fashion-MNIST's duplicates) count.
std::vector<float> KthDistances(const DataSet& ds, size_t k, size_t rows,
                                const std::vector<uint8_t>* live = nullptr) {
  std::vector<float> kth(ds.nq());
  std::vector<float> d;
  for (size_t q = 0; q < ds.nq(); q++) {
    d.clear();
    for (size_t i = 0; i < rows; i++)
      if (!live || (*live)[i]) d.push_back(Distance(ds.truth, ds.query(q), ds.row(i), ds.dims));
    std::nth_element(d.begin(), d.begin() + (k - 1), d.end());
    kth[q] = d[k - 1];
  }
  return kth;
}

struct SearchFigures {
  double recall;
  double distances_per_query;
  double expanded_per_query;  // the page reads of a search on disk
};

SearchFigures MeasureSearch(const VamanaGraph& graph, const DataSet& ds,
                            const std::vector<float>& kth, size_t list_size, size_t k = 10) {
  ExactExpander expander(graph, ds.base.data(), ds.dims, ds.metric);
  GreedySearch search(graph.degree_bound);
  size_t hits = 0, expanded = 0;
  for (size_t q = 0; q < ds.nq(); q++) {
    const auto res = Search(graph, &expander, &search, ds.query(q), list_size, k);
    for (const auto& c : res)
      hits += Distance(ds.truth, ds.query(q), ds.row(c.id), ds.dims) <= kth[q];
    expanded += search.expanded().size();
  }
  return {double(hits) / double(k * ds.nq()), double(expander.distance_count()) / ds.nq(),
          double(expanded) / ds.nq()};
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Recall@10 at rising search lists; the thresholds are the measured figures less a margin.
void ExpectRecall(const DataSet& ds, const VamanaParams& params,
                  const std::vector<std::pair<size_t, double>>& thresholds) {
  const auto start = std::chrono::steady_clock::now();
  const auto graph = BuildVamana(ds.base.data(), ds.rows(), ds.dims, params);
  const double build_s = Seconds(start);
  CheckLists(graph, params.graph_degree);
  std::printf("%s: %zu of %zu nodes reachable from the entry point\n", ds.name.c_str(),
              Reachable(graph), ds.rows());
  // Not every node: measured 66 of Fashion-MNIST's 20,000 (duplicate rows) and 59 of
  // GloVe's 50,000 by inner product (rows no query's neighbours lead to) are unreachable.
  EXPECT_GE(Reachable(graph), ds.rows() * 995 / 1000);
  const auto kth = KthDistances(ds, 10, ds.rows());
  double previous = 0;
  for (const auto& [list, threshold] : thresholds) {
    const auto f = MeasureSearch(graph, ds, kth, list);
    std::printf(
        "%s %zu rows R=%d L=%d: build %.2f s; search L=%zu recall@10 %.4f, %.0f distances/query\n",
        ds.name.c_str(), ds.rows(), params.graph_degree, params.build_list, build_s, list, f.recall,
        f.distances_per_query);
    EXPECT_GE(f.recall, threshold) << ds.name << " L=" << list;
    EXPECT_GE(f.recall, previous) << "recall rises with the search list";
    previous = f.recall;
  }
}

TEST(VamanaRecall, GloVe50kCosine) {
  LOAD_OR_SKIP(ds, "glove-100", 50000, 500, true);
  ExpectRecall(ds, Params(32, 75), {{10, 0.55}, {20, 0.68}, {50, 0.80}, {100, 0.87}});
}

TEST(VamanaRecall, FashionMnist20kL2) {
  LOAD_OR_SKIP(ds, "fashion-mnist", 20000, 200, false);
  ExpectRecall(ds, Params(32, 75), {{10, 0.96}, {20, 0.98}, {50, 0.99}});
}

TEST(VamanaRecall, MiniLmCosine) {
  LOAD_OR_SKIP(ds, "minilm", 778, 100, true);
  ExpectRecall(ds, Params(32, 75), {{10, 0.97}, {20, 0.99}, {50, 0.99}});
}

// Recall@10 of a graph at one search list, with the k-th distances over `live` rows.
double RecallAt(const VamanaGraph& graph, const DataSet& ds, size_t list_size,
                const std::vector<uint8_t>* live = nullptr) {
  return MeasureSearch(graph, ds, KthDistances(ds, 10, ds.rows(), live), list_size).recall;
}

// DiskANN's build past memory on GloVe: 4 k-means shards, each row in its 2 nearest, a graph
// per shard, the merge; recall within 0.01 of the single build with the same settings.
TEST(VamanaShards, FourShardsTwoPerRowMatchSingleBuild) {
  LOAD_OR_SKIP(ds, "glove-100", 30000, 300, true);
  const auto params = Params(32, 75);
  const size_t n = ds.rows();
  const int k = 4, per_row = 2;
  std::vector<float> centroids(k * ds.dims);
  KMeansOptions km;
  TrainKMeans(ds.base.data(), n, ds.dims, k, km, centroids.data());
  std::vector<int32_t> assignment(n * per_row);
  AssignShards(ds.base.data(), n, ds.dims, centroids.data(), k, per_row, assignment.data());
  std::vector<std::vector<uint32_t>> members(k);
  for (size_t i = 0; i < n; i++) {
    EXPECT_NE(assignment[i * 2], assignment[i * 2 + 1]);
    for (int j = 0; j < per_row; j++) members[assignment[i * per_row + j]].push_back(uint32_t(i));
  }
  std::vector<VamanaGraph> shards;
  std::vector<const uint32_t*> ids;
  for (int s = 0; s < k; s++) {
    std::vector<float> rows;
    for (uint32_t id : members[s]) rows.insert(rows.end(), ds.row(id), ds.row(id) + ds.dims);
    shards.push_back(BuildVamana(rows.data(), members[s].size(), ds.dims, params));
    ids.push_back(members[s].data());
  }
  RowDistances distances(ds.base.data(), ds.dims, VamanaMetric::kL2);
  const auto merged = MergeShardGraphs(
      shards, ids, n, CalculateEntryPoint(ds.base.data(), n, ds.dims), params, distances);
  CheckLists(merged, 32);
  EXPECT_EQ(Reachable(merged), n);
  const auto single = BuildVamana(ds.base.data(), n, ds.dims, params);
  for (size_t list : {20, 50, 100}) {
    const double r_merged = RecallAt(merged, ds, list), r_single = RecallAt(single, ds, list);
    std::printf("glove-100 %zu rows, search L=%zu: single build %.4f, 4 shards x 2 %.4f\n", n, list,
                r_single, r_merged);
    EXPECT_GE(r_merged, r_single - 0.01) << "L=" << list;
  }
}

// FreshDiskANN on GloVe: delete 20% (the entry point among them), consolidate, insert new rows
// into the freed slots, with the updates driven through GraphStore as the glue will.
TEST(VamanaUpdates, DeleteConsolidateInsert) {
  LOAD_OR_SKIP(ds, "glove-100", 40000, 300, true);
  const size_t n = 30000, fresh = ds.rows() - n;
  ASSERT_GE(fresh, 6000u);
  auto params = Params(32, 75);
  DataSet now = ds;  // rows 0 .. n - 1 are the index; rows n .. are inserted later
  now.base.resize(n * ds.dims);
  VamanaGraph graph = BuildVamana(now.base.data(), n, ds.dims, params);
  const size_t list = 150;
  const double before = RecallAt(graph, now, list);

  TestStore store(&graph, &now.base, ds.dims, VamanaMetric::kL2);
  test::Rng rng(21);
  std::vector<uint32_t> deleted;
  std::vector<uint8_t> live(n, 1);
  for (uint32_t v = 0; v < n; v++)
    if (v == graph.entry_point || rng.Next() % 5 == 0) deleted.push_back(v);
  for (uint32_t v : deleted) {
    store.SetDeleted(v, true);
    live[v] = 0;
  }
  VamanaScratch scratch(32);
  graph.entry_point = ReplaceEntryPoint(graph.entry_point, store, &scratch);
  ASSERT_NE(graph.entry_point, kNoNode);
  EXPECT_FALSE(store.IsDeleted(graph.entry_point));
  EXPECT_GT(ConsolidateDeletes(n, params, store, &scratch), 0u);
  for (uint32_t v = 0; v < n; v++) {
    if (!live[v]) continue;
    for (uint32_t i = 0; i < graph.Degree(v); i++)
      ASSERT_TRUE(live[graph.Neighbors(v)[i]]) << v << " -> deleted " << graph.Neighbors(v)[i];
  }
  const double after_delete = RecallAt(graph, now, list, &live);

  // The freed slots take new rows: the slot's list is emptied, the row stored, then inserted.
  ExactExpander expander(graph, now.base.data(), ds.dims, VamanaMetric::kL2);
  for (size_t i = 0; i < deleted.size() && i < fresh; i++) {
    const uint32_t slot = deleted[i];
    std::copy(ds.row(n + i), ds.row(n + i) + ds.dims, now.base.begin() + size_t(slot) * ds.dims);
    store.SetNeighbors(slot, nullptr, 0);
    store.SetDeleted(slot, false);
    live[slot] = 1;
    expander.SetQuery(now.row(slot));
    const Candidate entry{expander.Distance(graph.entry_point), graph.entry_point};
    InsertPoint(slot, &entry, 1, params, expander, store, &scratch);
  }
  CheckLists(graph, 32);
  const double after_insert = RecallAt(graph, now, list, &live);
  std::printf(
      "glove-100 %zu rows, L=%zu: recall %.4f built, %.4f after deleting %zu and "
      "consolidating, %.4f after inserting %zu new rows\n",
      n, list, before, after_delete, deleted.size(), after_insert, std::min(deleted.size(), fresh));
  EXPECT_GE(after_delete, 0.95);
  EXPECT_GE(after_insert, 0.95);
  EXPECT_GE(after_insert, before - 0.01);
}

// Continuation: widening the list and running on returns new candidates, each batch farther
// on average than the one before, without returning a node twice.
TEST(VamanaSearch, ContinuationReturnsNewCandidatesInOrder) {
  LOAD_OR_SKIP(ds, "glove-100", 20000, 100, true);
  const auto graph = BuildVamana(ds.base.data(), ds.rows(), ds.dims, Params(32, 75));
  ExactExpander expander(graph, ds.base.data(), ds.dims, VamanaMetric::kL2);
  GreedySearch search(32);
  const size_t batch = 10, rounds = 10;
  std::vector<double> mean(rounds, 0.0);
  size_t in_true_top = 0;
  for (size_t q = 0; q < ds.nq(); q++) {
    expander.SetQuery(ds.query(q));
    const Candidate entry{expander.Distance(graph.entry_point), graph.entry_point};
    search.Start(&entry, 1, batch);
    std::vector<uint32_t> seen;
    for (size_t r = 0; r < rounds; r++) {
      search.Widen(batch * (r + 1));
      search.Run(expander);
      Candidate out[batch];
      const size_t got = search.Next(batch, out);
      ASSERT_EQ(got, batch);
      for (size_t i = 0; i < got; i++) {
        mean[r] += out[i].distance / double(batch * ds.nq());
        seen.push_back(out[i].id);
      }
    }
    std::vector<uint32_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    ASSERT_TRUE(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    // The 100 returned against the exact 100 nearest.
    std::vector<float> d(ds.rows());
    for (size_t i = 0; i < ds.rows(); i++)
      d[i] = Distances().l2_squared(ds.query(q), ds.row(i), ds.dims);
    std::vector<float> top = d;
    std::nth_element(top.begin(), top.begin() + 99, top.end());
    for (uint32_t id : seen) in_true_top += d[id] <= top[99];
  }
  for (size_t r = 1; r < rounds; r++) EXPECT_GT(mean[r], mean[r - 1]) << "batch " << r;
  const double recall100 = double(in_true_top) / double(100 * ds.nq());
  std::printf(
      "continuation on glove-100 20000 rows: 10 batches of 10, recall@100 %.4f, mean "
      "distance of batch 1 %.3f, batch 10 %.3f\n",
      recall100, mean[0], mean[rounds - 1]);
  EXPECT_GE(recall100, 0.85);
}

// A small graph searched to the end: every node comes back exactly once, then Exhausted().
TEST(VamanaSearch, ContinuationRunsToExhaustion) {
  const int dims = 6;
  const size_t n = 700;
  const auto data = UniformRows(n, dims, 12);
  const auto graph = BuildVamana(data.data(), n, dims, Params(12, 30));
  ExactExpander expander(graph, data.data(), dims, VamanaMetric::kL2);
  GreedySearch search(12);
  expander.SetQuery(data.data());
  const Candidate entry{expander.Distance(graph.entry_point), graph.entry_point};
  search.Start(&entry, 1, 16);
  std::vector<uint32_t> all;
  for (size_t list = 16; !search.Exhausted(); list += 64) {
    search.Widen(list);
    search.Run(expander);
    Candidate out[64];
    for (size_t got; (got = search.Next(64, out)) > 0;)
      for (size_t i = 0; i < got; i++) all.push_back(out[i].id);
    ASSERT_LT(list, 4 * n) << "no end";
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all.size(), n);
  EXPECT_TRUE(std::adjacent_find(all.begin(), all.end()) == all.end());
  EXPECT_EQ(expander.distance_count(), n) << "each node's distance computed once";
}

TEST(VamanaRecall, GloVe50kInnerProduct) {
  LOAD_OR_SKIP(ds, "glove-100", 50000, 500, false, VamanaMetric::kInnerProduct);
  ExpectRecall(ds, Params(32, 75, 1.2f, VamanaMetric::kInnerProduct),
               {{10, 0.60}, {20, 0.70}, {50, 0.83}, {100, 0.90}});
}

// The batched build's steps run by three participants, one after another as if between
// barriers, give the same graph as one participant (what makes a parallel build's pages equal
// to a serial build's).
TEST(VamanaBatched, SameGraphForAnyNumberOfParts) {
  const int dims = 10;
  const size_t n = 3000;
  const auto data = UniformRows(n, dims, 31);
  const auto params = Params(16, 30);
  const auto single = BuildVamanaBatched(data.data(), n, dims, params);
  CheckLists(single, 16);
  const BatchedBuild plan = PlanBatchedBuild(n, params);
  std::vector<uint32_t> degrees(n), neighbors(n * plan.slots), order(n);
  GraphArrays graph{degrees.data(), neighbors.data(), plan.slots, n};
  const uint32_t entry =
      StartBatchedBuild(data.data(), n, dims, params, plan, &graph, order.data());
  EXPECT_EQ(entry, single.entry_point);
  const size_t parts = 3;
  std::vector<VamanaScratch> scratch;
  for (size_t p = 0; p < parts; p++) scratch.emplace_back(plan.slots, n);
  std::vector<uint32_t> out(plan.batch * 16), out_degrees(plan.batch);
  for (size_t pass = 0; pass < plan.passes; pass++) {
    const float alpha = pass + 1 < plan.passes ? 1.0f : params.alpha;
    for (size_t b = 0; b < plan.batches_per_pass; b++) {
      const size_t count = std::min(plan.batch, n - plan.First(b));
      const uint32_t* rows = order.data() + plan.First(b);
      for (size_t p = 0; p < parts; p++)
        SearchBatch(graph, data.data(), dims, entry, params, alpha, rows, count, p, parts,
                    out.data(), out_degrees.data(), &scratch[p]);
      for (size_t p = 0; p < parts; p++)
        LinkBatch(graph, data.data(), dims, params, alpha, rows, count, out.data(),
                  out_degrees.data(), p, parts, &scratch[p]);
    }
  }
  for (size_t p = 0; p < parts; p++)
    FinishBatchedBuild(graph, data.data(), dims, params, p, parts, &scratch[p]);
  for (uint32_t v = 0; v < n; v++) {
    ASSERT_EQ(degrees[v], single.Degree(v)) << "node " << v;
    ASSERT_TRUE(std::equal(single.Neighbors(v), single.Neighbors(v) + degrees[v],
                           neighbors.begin() + size_t(v) * plan.slots))
        << "node " << v;
  }
}

// The repair pass leaves no node unreachable, on rows where inner-product graphs strand many
// (small 5-d rows: rows that are no other row's best partner) and on GloVe by inner product.
TEST(VamanaBatched, RepairMakesEveryNodeReachable) {
  const int dims = 5;
  const size_t n = 2000;
  std::vector<float> data(n * dims);
  for (size_t i = 0; i < n; i++) {
    const double x = double(i + 1);
    const float row[dims] = {float(std::sin(x)), float(std::cos(x * 0.7)), float((i + 1) % 13) / 13,
                             float((i + 1) % 5) / 3, float(std::sin(x * 0.3))};
    std::copy(row, row + dims, data.begin() + i * dims);
  }
  auto params = Params(32, 50, 1.2f, VamanaMetric::kInnerProduct);
  const auto unrepaired = BuildVamana(data.data(), n, dims, params);
  const auto repaired = BuildVamanaBatched(data.data(), n, dims, params);
  CheckLists(repaired, 32);
  std::printf("2,000 5-d rows by inner product: %zu reachable without repair, %zu with\n",
              Reachable(unrepaired), Reachable(repaired));
  EXPECT_LT(Reachable(unrepaired), n * 9 / 10);
  EXPECT_EQ(Reachable(repaired), n);

  LOAD_OR_SKIP(ds, "glove-100", 50000, 300, false, VamanaMetric::kInnerProduct);
  params = Params(32, 50, 1.2f, VamanaMetric::kInnerProduct);
  const auto glove = BuildVamanaBatched(ds.base.data(), ds.rows(), ds.dims, params);
  EXPECT_EQ(Reachable(glove), ds.rows());
}

// Batches lose little against inserting one row at a time: recall within 0.01 of the
// sequential build at the same settings.
TEST(VamanaBatched, RecallMatchesSequentialBuild) {
  LOAD_OR_SKIP(ds, "glove-100", 50000, 300, true);
  const auto params = Params(32, 50);
  const auto sequential = BuildVamana(ds.base.data(), ds.rows(), ds.dims, params);
  const auto batched = BuildVamanaBatched(ds.base.data(), ds.rows(), ds.dims, params);
  CheckLists(batched, 32);
  EXPECT_GE(Reachable(batched), ds.rows() * 995 / 1000);
  for (size_t list : {50, 100, 200}) {
    const double r_seq = RecallAt(sequential, ds, list), r_batch = RecallAt(batched, ds, list);
    std::printf("glove-100 %zu rows, search L=%zu: sequential build %.4f, batched %.4f\n",
                ds.rows(), list, r_seq, r_batch);
    EXPECT_GE(r_batch, r_seq - 0.01) << "L=" << list;
  }
}

// ---------------------------------------------------------------------------------------
// Measurements for the variant's defaults (not timed tests: run them by hand on a quiet
// machine).  VAMANA_BENCH = set:rows:metric (metric l2, cosine or ip), VAMANA_R, VAMANA_L,
// VAMANA_ALPHA and VAMANA_SEARCH_L are comma-separated lists, VAMANA_QUERIES a count, e.g.
//   VAMANA_BENCH=glove-100:331479:cosine VAMANA_R=16,32,48 VAMANA_L=50,75,100,125
//     ./build/core_tests --gtest_also_run_disabled_tests --gtest_filter='*VamanaMeasure*'

std::vector<double> EnvList(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  std::stringstream in(v && *v ? v : fallback);
  std::vector<double> out;
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stod(item));
  return out;
}

// The MIPS-to-L2 transform: rows get a last coordinate sqrt(M^2 - |x|^2) (M the largest
// norm), queries a 0, so |q - x|^2 = |q|^2 + M^2 - 2 <q, x> ranks as -<q, x>; the graph is built
// and searched by L2, the truth stays the inner product (the extra query coordinate is 0).
void AugmentForL2(DataSet* ds) {
  const int d = ds->dims;
  float max_norm2 = 0;
  for (size_t i = 0; i < ds->rows(); i++)
    max_norm2 = std::max(max_norm2, Distances().inner_product(ds->row(i), ds->row(i), d));
  auto augment = [d](const std::vector<float>& in, const std::function<float(const float*)>& last) {
    std::vector<float> out;
    for (size_t i = 0; i < in.size(); i += d) {
      out.insert(out.end(), in.begin() + i, in.begin() + i + d);
      out.push_back(last(in.data() + i));
    }
    return out;
  };
  ds->base = augment(ds->base, [&](const float* x) {
    return std::sqrt(std::max(0.0f, max_norm2 - Distances().inner_product(x, x, d)));
  });
  ds->queries = augment(ds->queries, [](const float*) { return 0.0f; });
  ds->dims = d + 1;
  ds->metric = VamanaMetric::kL2;
  ds->truth = VamanaMetric::kInnerProduct;
}

double CpuSeconds() { return double(std::clock()) / CLOCKS_PER_SEC; }

TEST(VamanaMeasure, DISABLED_BuildAndSearch) {
  const char* bench = std::getenv("VAMANA_BENCH");
  std::stringstream spec(bench && *bench ? bench : "glove-100:50000:cosine");
  std::string name, rows, metric;
  std::getline(spec, name, ':');
  std::getline(spec, rows, ':');
  std::getline(spec, metric, ':');
  const size_t nq = static_cast<size_t>(EnvList("VAMANA_QUERIES", "1000")[0]);
  LOAD_OR_SKIP(
      ds, name, std::stoul(rows), nq, metric == "cosine",
      metric == "ip" || metric == "ip-l2" ? VamanaMetric::kInnerProduct : VamanaMetric::kL2);
  if (metric == "ip-l2") AugmentForL2(&ds);
  const auto kth = KthDistances(ds, 10, ds.rows());
  std::printf(
      "| set | rows | R | L | alpha | passes | build s (wall) | build s (cpu) | search L | "
      "recall@10 | distances/query | expanded/query | cpu us/query |\n");
  for (double r : EnvList("VAMANA_R", "32"))
    for (double l : EnvList("VAMANA_L", "75"))
      for (double a : EnvList("VAMANA_ALPHA", "1.2")) {
        auto params = Params(int(r), int(l), float(a), ds.metric);
        params.passes = int(EnvList("VAMANA_PASSES", "2")[0]);
        const auto start = std::chrono::steady_clock::now();
        const double cpu = CpuSeconds();
        const auto graph = BuildVamana(ds.base.data(), ds.rows(), ds.dims, params);
        const double build_cpu = CpuSeconds() - cpu, build_wall = Seconds(start);
        for (double sl : EnvList("VAMANA_SEARCH_L", "10,20,40,80,120,200")) {
          const double c0 = CpuSeconds();
          const auto f = MeasureSearch(graph, ds, kth, size_t(sl));
          const double us = (CpuSeconds() - c0) * 1e6 / ds.nq();
          std::printf(
              "| %s %s | %zu | %d | %d | %.2f | %d | %.1f | %.1f | %d | %.4f | %.0f | %.0f | %.0f "
              "|\n",
              ds.name.c_str(), metric.c_str(), ds.rows(), int(r), int(l), a, params.passes,
              build_wall, build_cpu, int(sl), f.recall, f.distances_per_query, f.expanded_per_query,
              us);
        }
        std::fflush(stdout);
      }
}

}  // namespace
}  // namespace scann
