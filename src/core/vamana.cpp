#include "core/vamana.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

#include "core/distance.h"
#include "core/rng.h"

namespace scann {

namespace {

// DiskANN's GRAPH_SLACK_FACTOR: during the build a list grows to 1.3 R before a back-edge
// forces a prune, so most back-edges are a plain append.
constexpr double kBuildSlack = 1.3;
// Rows (build) or nodes (merge, consolidation) between two interrupt checks.
constexpr size_t kNodesPerCheck = 256;
constexpr size_t kInitialHashSlots = 1024;
// Rows ahead whose vectors the exact distance loops prefetch.
constexpr size_t kPrefetchAhead = 4;
constexpr size_t kCacheLine = 64;
// Kept neighbours a candidate is compared with per distance call in RobustPrune.
constexpr size_t kOccludeBatch = 8;

void CheckInterrupts(const InterruptCheck& check) {
  if (check) check();
}

size_t HashSlot(uint32_t id, size_t mask) {
  return static_cast<size_t>((id * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

// A fixed pseudo-random order of ids for p, to break exact distance ties: a bijection of id
// for each p, so the order is total and the same for every run.
uint64_t TieKey(uint32_t p, uint32_t id) {
  uint64_t state = (static_cast<uint64_t>(p) << 32) | id;
  return SplitMix64(&state);
}

void PrefetchRow(const float* row, size_t bytes) {
  const char* c = reinterpret_cast<const char*>(row);
  for (size_t off = 0; off < bytes; off += kCacheLine) __builtin_prefetch(c + off);
}

// The metric's distance between two rows with the kernel looked up once (a lookup per
// distance cost 2% of the build): sign * l2_squared, or sign * inner_product with sign -1.
struct RowMetric {
  explicit RowMetric(VamanaMetric metric)
      : kernel(metric == VamanaMetric::kL2 ? Distances().l2_squared : Distances().inner_product),
        sign(metric == VamanaMetric::kL2 ? 1.0f : -1.0f) {}
  float operator()(const float* a, const float* b, size_t dims) const {
    return sign * kernel(a, b, dims);
  }
  float (*kernel)(const float*, const float*, size_t);
  float sign;
};

// Whether kept candidate p*, at distance `to_kept` from p', occludes p' (at distance
// `to_p` from p).
bool Occludes(VamanaMetric metric, float alpha, float to_kept, float to_p) {
  if (metric == VamanaMetric::kL2) return to_p > 0 && alpha * to_kept <= to_p;
  return -to_kept > alpha * -to_p;
}

float NotNan(float d) { return std::isnan(d) ? std::numeric_limits<float>::infinity() : d; }

}  // namespace

GraphArrays ArraysOf(VamanaGraph* graph) {
  GraphArrays arrays;
  arrays.degrees = graph->degrees.data();
  arrays.neighbors = graph->neighbors.data();
  arrays.stride = static_cast<size_t>(graph->degree_bound);
  arrays.size = graph->size();
  return arrays;
}

VisitedSet::VisitedSet(size_t dense_bound) : dense_(dense_bound > 0) {
  stamps_.assign(dense_ ? dense_bound : kInitialHashSlots, 0);
  if (!dense_) keys_.assign(kInitialHashSlots, 0);
}

void VisitedSet::Clear() {
  count_ = 0;
  if (++epoch_ == 0) {  // after 2^32 clears every stale stamp could match again
    std::fill(stamps_.begin(), stamps_.end(), 0);
    epoch_ = 1;
  }
}

bool VisitedSet::Insert(uint32_t id) {
  if (dense_) {
    if (stamps_[id] == epoch_) return false;
    stamps_[id] = epoch_;
    ++count_;
    return true;
  }
  if ((count_ + 1) * 2 > stamps_.size()) Grow();
  const size_t mask = stamps_.size() - 1;
  size_t i = HashSlot(id, mask);
  for (; stamps_[i] == epoch_; i = (i + 1) & mask)
    if (keys_[i] == id) return false;
  stamps_[i] = epoch_;
  keys_[i] = id;
  ++count_;
  return true;
}

bool VisitedSet::Contains(uint32_t id) const {
  if (dense_) return stamps_[id] == epoch_;
  const size_t mask = stamps_.size() - 1;
  for (size_t i = HashSlot(id, mask); stamps_[i] == epoch_; i = (i + 1) & mask)
    if (keys_[i] == id) return true;
  return false;
}

void VisitedSet::Reserve(size_t ids) {
  while (!dense_ && (ids + 1) * 2 > stamps_.size()) Grow();
}

// Doubles the hash table and re-inserts the ids of the current epoch.
void VisitedSet::Grow() {
  std::vector<uint32_t> live;
  live.reserve(count_);
  for (size_t i = 0; i < stamps_.size(); i++)
    if (stamps_[i] == epoch_) live.push_back(keys_[i]);
  const size_t slots = stamps_.size() * 2;
  stamps_.assign(slots, 0);
  keys_.assign(slots, 0);
  epoch_ = 1;
  count_ = 0;
  for (uint32_t id : live) Insert(id);
}

GreedySearch::GreedySearch(size_t max_degree, size_t dense_bound)
    : ids_(max_degree), distances_(max_degree), visited_(dense_bound) {}

bool GreedySearch::Closer(const Entry& a, const Entry& b) const {
  return a.distance < b.distance ||
         (a.distance == b.distance && TieKey(tie_seed_, a.id) < TieKey(tie_seed_, b.id));
}

void GreedySearch::Start(const Candidate* entries, size_t count, size_t list_size,
                         uint32_t tie_seed) {
  list_size_ = std::max<size_t>(list_size, 1);
  tie_seed_ = tie_seed;
  cursor_ = 0;
  returned_ = 0;
  list_.clear();
  list_.reserve(list_size_ + 1);
  evicted_.clear();
  expanded_.clear();
  visited_.Clear();
  for (size_t i = 0; i < count; i++)
    if (visited_.Insert(entries[i].id))
      Insert({NotNan(entries[i].distance), entries[i].id, false, false});
}

// Puts e in the sorted list; the entry it pushes out (or e itself, when it is farther than
// every entry of a full list) goes aside for Widen.
void GreedySearch::Insert(const Entry& e) {
  if (list_.size() == list_size_) {
    if (!Closer(e, list_.back())) {
      evicted_.push_back(e);
      return;
    }
    evicted_.push_back(list_.back());
    list_.pop_back();
  }
  const auto it = std::upper_bound(list_.begin(), list_.end(), e,
                                   [this](const Entry& a, const Entry& b) { return Closer(a, b); });
  const size_t pos = static_cast<size_t>(it - list_.begin());
  list_.insert(it, e);
  if (pos < cursor_) cursor_ = pos;
}

void GreedySearch::Run(NodeExpander& expander) {
  while (cursor_ < list_.size()) {
    Entry& e = list_[cursor_];
    e.expanded = true;
    const uint32_t node = e.id;
    expanded_.push_back({e.distance, node});
    ++cursor_;
    const size_t count = expander.Expand(node, visited_, ids_.data(), distances_.data());
    for (size_t i = 0; i < count; i++)
      if (visited_.Insert(ids_[i])) Insert({NotNan(distances_[i]), ids_[i], false, false});
    while (cursor_ < list_.size() && list_[cursor_].expanded) ++cursor_;
  }
}

// Every entry set aside is at least as far as every list entry (it was pushed out of, or
// refused by, a full list whose last entry only moves closer), so the closest of them extend
// the sorted list at its end.
void GreedySearch::Widen(size_t list_size) {
  if (list_size <= list_size_) return;
  const size_t add = std::min(list_size - list_.size(), evicted_.size());
  if (add > 0) {
    const auto closer = [this](const Entry& a, const Entry& b) { return Closer(a, b); };
    if (add < evicted_.size())
      std::nth_element(evicted_.begin(), evicted_.begin() + add, evicted_.end(), closer);
    std::sort(evicted_.begin(), evicted_.begin() + add, closer);
    const size_t old_size = list_.size();
    list_.insert(list_.end(), evicted_.begin(), evicted_.begin() + add);
    evicted_.erase(evicted_.begin(), evicted_.begin() + add);
    cursor_ = std::min(cursor_, old_size);
    while (cursor_ < list_.size() && list_[cursor_].expanded) ++cursor_;
  }
  list_size_ = list_size;
}

size_t GreedySearch::Next(size_t k, Candidate* out) {
  size_t n = 0;
  for (size_t i = 0; i < list_.size() && n < k; i++) {
    if (list_[i].returned) continue;
    list_[i].returned = true;
    out[n++] = {list_[i].distance, list_[i].id};
  }
  returned_ += n;
  return n;
}

bool GreedySearch::Exhausted() const {
  return cursor_ == list_.size() && evicted_.empty() && returned_ == list_.size();
}

void RobustPrune(uint32_t p, std::vector<Candidate>* pool, float alpha, const VamanaParams& params,
                 PairDistances& distances, VamanaScratch* scratch, std::vector<uint32_t>* out) {
  auto& c = *pool;
  for (Candidate& x : c) x.distance = NotNan(x.distance);
  // Repeated ids keep their closest distance; p itself is no candidate.
  std::sort(c.begin(), c.end(), [](const Candidate& a, const Candidate& b) {
    return a.id < b.id || (a.id == b.id && a.distance < b.distance);
  });
  c.erase(std::unique(c.begin(), c.end(),
                      [](const Candidate& a, const Candidate& b) { return a.id == b.id; }),
          c.end());
  c.erase(std::remove_if(c.begin(), c.end(), [p](const Candidate& a) { return a.id == p; }),
          c.end());
  std::sort(c.begin(), c.end(), [p](const Candidate& a, const Candidate& b) {
    return a.distance < b.distance ||
           (a.distance == b.distance && TieKey(p, a.id) < TieKey(p, b.id));
  });
  if (c.size() > static_cast<size_t>(params.max_candidates)) c.resize(params.max_candidates);

  // Candidate-major, as occlusion of a candidate depends only on those kept before it: a
  // candidate is compared with the kept ones a few at a time (the first, closest, occludes
  // most), and candidates past the R-th kept one are never looked at.
  const size_t degree = static_cast<size_t>(params.graph_degree);
  out->clear();
  scratch->candidate_distances.resize(kOccludeBatch);
  float* batch = scratch->candidate_distances.data();
  for (size_t i = 0; i < c.size() && out->size() < degree; i++) {
    bool occluded = false;
    if (params.metric != VamanaMetric::kL2 || c[i].distance > 0) {
      for (size_t k = 0, step = 1; k < out->size() && !occluded; k += step, step *= 2) {
        const size_t count = std::min({step, kOccludeBatch, out->size() - k});
        step = count;
        distances.Distances(c[i].id, out->data() + k, count, batch);
        for (size_t j = 0; j < count && !occluded; j++)
          occluded = Occludes(params.metric, alpha, batch[j], c[i].distance);
      }
    }
    if (!occluded) out->push_back(c[i].id);
  }
}

void AddBackEdge(uint32_t q, uint32_t p, float alpha, const VamanaParams& params, GraphStore& store,
                 VamanaScratch* scratch) {
  const size_t capacity = store.Capacity();
  scratch->ids.resize(capacity + 1);
  scratch->distances.resize(capacity + 1);
  uint32_t* ids = scratch->ids.data();
  const size_t degree = store.GetNeighbors(q, ids);
  if (std::find(ids, ids + degree, p) != ids + degree) return;
  ids[degree] = p;
  if (degree < capacity) {
    store.SetNeighbors(q, ids, degree + 1);
    return;
  }
  store.Distances(q, ids, degree + 1, scratch->distances.data());
  scratch->pool.clear();
  for (size_t i = 0; i <= degree; i++) scratch->pool.push_back({scratch->distances[i], ids[i]});
  RobustPrune(q, &scratch->pool, alpha, params, store, scratch, &scratch->pruned);
  store.SetNeighbors(q, scratch->pruned.data(), scratch->pruned.size());
}

void InterInsert(uint32_t p, const uint32_t* neighbors, size_t count, float alpha,
                 const VamanaParams& params, GraphStore& store, VamanaScratch* scratch) {
  for (size_t n = 0; n < count; n++) AddBackEdge(neighbors[n], p, alpha, params, store, scratch);
}

void SearchForPointAndPrune(uint32_t p, const Candidate* entries, size_t entry_count, float alpha,
                            const VamanaParams& params, NodeExpander& expander, GraphStore& store,
                            VamanaScratch* scratch, bool search_distances_are_pair_distances) {
  GreedySearch& search = scratch->search;
  search.Start(entries, entry_count, static_cast<size_t>(params.build_list), p);
  search.Run(expander);
  auto& pool = scratch->pool;
  pool.clear();
  for (const Candidate& c : search.expanded())
    if (c.id != p && !store.IsDeleted(c.id)) pool.push_back(c);
  if (!search_distances_are_pair_distances) {
    scratch->candidate_ids.resize(pool.size());
    scratch->candidate_distances.resize(pool.size());
    for (size_t i = 0; i < pool.size(); i++) scratch->candidate_ids[i] = pool[i].id;
    store.Distances(p, scratch->candidate_ids.data(), pool.size(),
                    scratch->candidate_distances.data());
    for (size_t i = 0; i < pool.size(); i++) pool[i].distance = scratch->candidate_distances[i];
  }
  scratch->ids.resize(store.Capacity() + 1);
  scratch->distances.resize(store.Capacity() + 1);
  const size_t degree = store.GetNeighbors(p, scratch->ids.data());
  store.Distances(p, scratch->ids.data(), degree, scratch->distances.data());
  for (size_t i = 0; i < degree; i++)
    if (!store.IsDeleted(scratch->ids[i])) pool.push_back({scratch->distances[i], scratch->ids[i]});
  RobustPrune(p, &pool, alpha, params, store, scratch, &scratch->neighbors);
}

namespace {

// A graph in arrays with exact distances between its rows; lists have `stride` slots.
class InMemoryStore : public GraphStore {
 public:
  InMemoryStore(const GraphArrays& graph, const float* data, size_t dims, VamanaMetric metric)
      : graph_(graph), data_(data), dims_(dims), distance_(metric) {}

  size_t Capacity() const override { return graph_.stride; }

  size_t GetNeighbors(uint32_t node, uint32_t* ids) override {
    const uint32_t degree = graph_.degrees[node];
    std::copy(graph_.Neighbors(node), graph_.Neighbors(node) + degree, ids);
    return degree;
  }

  void SetNeighbors(uint32_t node, const uint32_t* ids, size_t count) override {
    std::copy(ids, ids + count, graph_.neighbors + static_cast<size_t>(node) * graph_.stride);
    graph_.degrees[node] = static_cast<uint32_t>(count);
  }

  void Distances(uint32_t from, const uint32_t* to, size_t count, float* out) override {
    const float* a = Row(from);
    const size_t bytes = dims_ * sizeof(float);
    for (size_t i = 0; i < std::min(count, kPrefetchAhead); i++) PrefetchRow(Row(to[i]), bytes);
    for (size_t i = 0; i < count; i++) {
      if (i + kPrefetchAhead < count) PrefetchRow(Row(to[i + kPrefetchAhead]), bytes);
      out[i] = distance_(a, Row(to[i]), dims_);
    }
  }

  bool IsDeleted(uint32_t) override { return false; }

 private:
  const float* Row(uint32_t id) const { return data_ + static_cast<size_t>(id) * dims_; }

  GraphArrays graph_;
  const float* data_;
  size_t dims_;
  RowMetric distance_;
};

// Out-degree min(R, n - 1), distinct neighbours other than the node itself.
void RandomStartGraph(const GraphArrays& graph, size_t degree, Rng* rng) {
  const size_t n = graph.size;
  for (size_t v = 0; v < n; v++) {
    uint32_t* list = graph.neighbors + v * graph.stride;
    size_t count = 0;
    if (n - 1 <= degree) {
      for (size_t u = 0; u < n; u++)
        if (u != v) list[count++] = static_cast<uint32_t>(u);
    } else {
      while (count < degree) {
        const uint32_t u = static_cast<uint32_t>(rng->Below(n));
        if (u != v && std::find(list, list + count, u) == list + count) list[count++] = u;
      }
    }
    graph.degrees[v] = static_cast<uint32_t>(count);
  }
}

// One pass of the build: every row, in `order`, searched for and linked with this alpha.
void BuildPass(const std::vector<uint32_t>& order, const float* data, size_t dims, float alpha,
               const VamanaParams& params, ExactExpander& expander, InMemoryStore& store,
               uint32_t entry_point, VamanaScratch* scratch) {
  for (size_t i = 0; i < order.size(); i++) {
    if (i % kNodesPerCheck == 0) CheckInterrupts(params.check_interrupts);
    const uint32_t p = order[i];
    expander.SetQuery(data + static_cast<size_t>(p) * dims);
    const Candidate entry{expander.Distance(entry_point), entry_point};
    SearchForPointAndPrune(p, &entry, 1, alpha, params, expander, store, scratch, true);
    store.SetNeighbors(p, scratch->neighbors.data(), scratch->neighbors.size());
    InterInsert(p, scratch->neighbors.data(), scratch->neighbors.size(), alpha, params, store,
                scratch);
  }
}

// RobustPrune(alpha) of v's list to R when the build's slack let it grow longer.
void PruneOne(uint32_t v, const VamanaParams& params, InMemoryStore& store,
              VamanaScratch* scratch) {
  scratch->ids.resize(store.Capacity() + 1);
  scratch->distances.resize(store.Capacity() + 1);
  const size_t count = store.GetNeighbors(v, scratch->ids.data());
  if (count <= static_cast<size_t>(params.graph_degree)) return;
  store.Distances(v, scratch->ids.data(), count, scratch->distances.data());
  scratch->pool.clear();
  for (size_t i = 0; i < count; i++)
    scratch->pool.push_back({scratch->distances[i], scratch->ids[i]});
  RobustPrune(v, &scratch->pool, params.alpha, params, store, scratch, &scratch->pruned);
  store.SetNeighbors(v, scratch->pruned.data(), scratch->pruned.size());
}

// Packs lists of stride graph->degree_bound (all of them at most R long) to a stride of R, in
// place.
void PackToDegree(VamanaGraph* graph, size_t degree) {
  const size_t stride = static_cast<size_t>(graph->degree_bound);
  for (size_t v = 0; v < graph->size(); v++)
    std::copy(graph->neighbors.begin() + v * stride,
              graph->neighbors.begin() + v * stride + graph->degrees[v],
              graph->neighbors.begin() + v * degree);
  graph->neighbors.resize(graph->size() * degree);
  graph->neighbors.shrink_to_fit();
  graph->degree_bound = static_cast<int>(degree);
}

// Prunes every list longer than R (the slack the build allowed) and packs the lists to a
// stride of R, in place.
void PruneToDegree(VamanaGraph* graph, const VamanaParams& params, InMemoryStore& store,
                   VamanaScratch* scratch) {
  for (size_t v = 0; v < graph->size(); v++) {
    if (v % kNodesPerCheck == 0) CheckInterrupts(params.check_interrupts);
    PruneOne(static_cast<uint32_t>(v), params, store, scratch);
  }
  PackToDegree(graph, static_cast<size_t>(params.graph_degree));
}

void CheckParams(const VamanaParams& params) {
  if (params.graph_degree < 1) throw std::invalid_argument("vamana: graph_degree must be >= 1");
  if (params.build_list < 1) throw std::invalid_argument("vamana: build_list must be >= 1");
  if (!(params.alpha >= 1.0f)) throw std::invalid_argument("vamana: alpha must be >= 1");
  if (params.max_candidates < 1) throw std::invalid_argument("vamana: max_candidates must be >= 1");
  if (params.passes != 1 && params.passes != 2)
    throw std::invalid_argument("vamana: passes must be 1 or 2");
}

}  // namespace

void InsertPoint(uint32_t p, const Candidate* entries, size_t entry_count,
                 const VamanaParams& params, NodeExpander& expander, GraphStore& store,
                 VamanaScratch* scratch) {
  SearchForPointAndPrune(p, entries, entry_count, params.alpha, params, expander, store, scratch,
                         false);
  store.SetNeighbors(p, scratch->neighbors.data(), scratch->neighbors.size());
  InterInsert(p, scratch->neighbors.data(), scratch->neighbors.size(), params.alpha, params, store,
              scratch);
}

bool ConsolidateNode(uint32_t p, const VamanaParams& params, GraphStore& store,
                     VamanaScratch* scratch) {
  scratch->ids.resize(store.Capacity() + 1);
  const size_t degree = store.GetNeighbors(p, scratch->ids.data());
  std::vector<uint32_t>& own = scratch->pruned;
  own.assign(scratch->ids.begin(), scratch->ids.begin() + degree);
  bool any_deleted = false;
  auto& candidates = scratch->candidate_ids;
  candidates.clear();
  for (uint32_t v : own) {
    if (!store.IsDeleted(v)) {
      candidates.push_back(v);
      continue;
    }
    any_deleted = true;
    const size_t count = store.GetNeighbors(v, scratch->ids.data());
    for (size_t i = 0; i < count; i++) {
      const uint32_t w = scratch->ids[i];
      if (w != p && !store.IsDeleted(w)) candidates.push_back(w);
    }
  }
  if (!any_deleted) return false;
  scratch->candidate_distances.resize(candidates.size());
  store.Distances(p, candidates.data(), candidates.size(), scratch->candidate_distances.data());
  scratch->pool.clear();
  for (size_t i = 0; i < candidates.size(); i++)
    scratch->pool.push_back({scratch->candidate_distances[i], candidates[i]});
  RobustPrune(p, &scratch->pool, params.alpha, params, store, scratch, &scratch->neighbors);
  store.SetNeighbors(p, scratch->neighbors.data(), scratch->neighbors.size());
  return true;
}

size_t ConsolidateDeletes(size_t node_count, const VamanaParams& params, GraphStore& store,
                          VamanaScratch* scratch) {
  size_t changed = 0;
  for (size_t v = 0; v < node_count; v++) {
    if (v % kNodesPerCheck == 0) CheckInterrupts(params.check_interrupts);
    const uint32_t node = static_cast<uint32_t>(v);
    if (!store.IsDeleted(node) && ConsolidateNode(node, params, store, scratch)) ++changed;
  }
  return changed;
}

uint32_t ReplaceEntryPoint(uint32_t old_entry, GraphStore& store, VamanaScratch* scratch) {
  scratch->ids.resize(store.Capacity() + 1);
  scratch->distances.resize(store.Capacity() + 1);
  const size_t degree = store.GetNeighbors(old_entry, scratch->ids.data());
  store.Distances(old_entry, scratch->ids.data(), degree, scratch->distances.data());
  uint32_t best = kNoNode;
  float best_distance = std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < degree; i++) {
    const uint32_t v = scratch->ids[i];
    const float d = NotNan(scratch->distances[i]);
    if (store.IsDeleted(v)) continue;
    if (best == kNoNode || d < best_distance || (d == best_distance && v < best)) {
      best = v;
      best_distance = d;
    }
  }
  if (best != kNoNode) return best;
  // Breadth-first through deleted nodes to the first live one.
  VisitedSet seen;
  std::vector<uint32_t> queue{old_entry};
  seen.Insert(old_entry);
  for (size_t head = 0; head < queue.size(); head++) {
    const size_t count = store.GetNeighbors(queue[head], scratch->ids.data());
    for (size_t i = 0; i < count; i++) {
      const uint32_t v = scratch->ids[i];
      if (!seen.Insert(v)) continue;
      if (!store.IsDeleted(v)) return v;
      queue.push_back(v);
    }
  }
  return kNoNode;
}

uint32_t CalculateEntryPoint(const float* data, size_t n, int dims) {
  if (n == 0) return kNoNode;
  const size_t d = static_cast<size_t>(dims);
  std::vector<double> sum(d, 0.0);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < d; j++) sum[j] += data[i * d + j];
  std::vector<float> mean(d);
  for (size_t j = 0; j < d; j++) mean[j] = static_cast<float>(sum[j] / static_cast<double>(n));
  uint32_t best = 0;
  float best_distance = std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < n; i++) {
    const float dist = Distances().l2_squared(mean.data(), data + i * d, d);
    if (dist < best_distance) {
      best_distance = dist;
      best = static_cast<uint32_t>(i);
    }
  }
  return best;
}

VamanaGraph BuildVamana(const float* data, size_t n, int dims, const VamanaParams& params) {
  CheckParams(params);
  if (dims < 1) throw std::invalid_argument("vamana: dims must be >= 1");
  if (n >= kNoNode) throw std::invalid_argument("vamana: too many rows for 32-bit node ids");
  const size_t degree = static_cast<size_t>(params.graph_degree);
  const size_t capacity = static_cast<size_t>(std::ceil(kBuildSlack * degree));
  VamanaGraph graph;
  graph.degree_bound = static_cast<int>(capacity);
  graph.degrees.assign(n, 0);
  graph.neighbors.assign(n * capacity, 0);
  Rng rng(params.seed);
  RandomStartGraph(ArraysOf(&graph), degree, &rng);
  graph.entry_point = CalculateEntryPoint(data, n, dims);
  std::vector<uint32_t> order(n);
  for (size_t i = 0; i < n; i++) order[i] = static_cast<uint32_t>(i);
  for (size_t i = n; i > 1; i--) std::swap(order[i - 1], order[rng.Below(i)]);
  const size_t d = static_cast<size_t>(dims);
  ExactExpander expander(graph, data, dims, params.metric);
  InMemoryStore store(ArraysOf(&graph), data, d, params.metric);
  VamanaScratch scratch(capacity, std::max<size_t>(n, 1));
  if (n > 0) {
    if (params.passes == 2)
      BuildPass(order, data, d, 1.0f, params, expander, store, graph.entry_point, &scratch);
    BuildPass(order, data, d, params.alpha, params, expander, store, graph.entry_point, &scratch);
  }
  PruneToDegree(&graph, params, store, &scratch);
  return graph;
}

namespace {

// Rows per batch of the batched build: small enough that the rows of a batch, which do not see
// each other's new lists, are a small share of the graph, large enough that the barriers
// between the steps cost little.
constexpr size_t kMinBatchRows = 64;
constexpr size_t kMaxBatchRows = 4096;
constexpr size_t kBatchesPerPass = 256;

}  // namespace

BatchedBuild PlanBatchedBuild(size_t n, const VamanaParams& params) {
  BatchedBuild plan;
  plan.slots = static_cast<size_t>(std::ceil(kBuildSlack * params.graph_degree));
  plan.batch = std::clamp(n / kBatchesPerPass, kMinBatchRows, kMaxBatchRows);
  plan.passes = static_cast<size_t>(params.passes);
  plan.batches_per_pass = (n + plan.batch - 1) / plan.batch;
  return plan;
}

uint32_t StartBatchedBuild(const float* data, size_t n, int dims, const VamanaParams& params,
                           const BatchedBuild& plan, GraphArrays* graph, uint32_t* order) {
  CheckParams(params);
  if (dims < 1) throw std::invalid_argument("vamana: dims must be >= 1");
  if (n >= kNoNode) throw std::invalid_argument("vamana: too many rows for 32-bit node ids");
  graph->size = n;
  graph->stride = plan.slots;
  Rng rng(params.seed);
  RandomStartGraph(*graph, static_cast<size_t>(params.graph_degree), &rng);
  for (size_t i = 0; i < n; i++) order[i] = static_cast<uint32_t>(i);
  for (size_t i = n; i > 1; i--) std::swap(order[i - 1], order[rng.Below(i)]);
  return CalculateEntryPoint(data, n, dims);
}

void SearchBatch(const GraphArrays& graph, const float* data, int dims, uint32_t entry_point,
                 const VamanaParams& params, float alpha, const uint32_t* rows, size_t count,
                 size_t part, size_t parts, uint32_t* out, uint32_t* out_degrees,
                 VamanaScratch* scratch) {
  ExactExpander expander(graph, data, dims, params.metric);
  InMemoryStore store(graph, data, static_cast<size_t>(dims), params.metric);
  const size_t degree = static_cast<size_t>(params.graph_degree);
  for (size_t i = part, done = 0; i < count; i += parts, done++) {
    if (done % kNodesPerCheck == 0) CheckInterrupts(params.check_interrupts);
    const uint32_t p = rows[i];
    expander.SetQuery(data + static_cast<size_t>(p) * dims);
    const Candidate entry{expander.Distance(entry_point), entry_point};
    SearchForPointAndPrune(p, &entry, 1, alpha, params, expander, store, scratch, true);
    std::copy(scratch->neighbors.begin(), scratch->neighbors.end(), out + i * degree);
    out_degrees[i] = static_cast<uint32_t>(scratch->neighbors.size());
  }
}

void LinkBatch(const GraphArrays& graph, const float* data, int dims, const VamanaParams& params,
               float alpha, const uint32_t* rows, size_t count, const uint32_t* out,
               const uint32_t* out_degrees, size_t part, size_t parts, VamanaScratch* scratch) {
  InMemoryStore store(graph, data, static_cast<size_t>(dims), params.metric);
  const size_t degree = static_cast<size_t>(params.graph_degree);
  for (size_t i = 0; i < count; i++)
    if (rows[i] % parts == part) store.SetNeighbors(rows[i], out + i * degree, out_degrees[i]);
  for (size_t i = 0; i < count; i++) {
    if (i % kNodesPerCheck == 0) CheckInterrupts(params.check_interrupts);
    for (size_t k = 0; k < out_degrees[i]; k++) {
      const uint32_t q = out[i * degree + k];
      if (q % parts == part) AddBackEdge(q, rows[i], alpha, params, store, scratch);
    }
  }
}

void FinishBatchedBuild(const GraphArrays& graph, const float* data, int dims,
                        const VamanaParams& params, size_t part, size_t parts,
                        VamanaScratch* scratch) {
  InMemoryStore store(graph, data, static_cast<size_t>(dims), params.metric);
  for (size_t v = part, done = 0; v < graph.size; v += parts, done++) {
    if (done % kNodesPerCheck == 0) CheckInterrupts(params.check_interrupts);
    PruneOne(static_cast<uint32_t>(v), params, store, scratch);
  }
}

namespace {

// Marks reached[] from `from` through the lists (nodes already marked stop the walk); returns
// how many it marked.
size_t MarkReachable(const GraphArrays& graph, uint32_t from, std::vector<uint8_t>* reached,
                     std::vector<uint32_t>* queue) {
  if ((*reached)[from]) return 0;
  queue->assign(1, from);
  (*reached)[from] = 1;
  for (size_t head = 0; head < queue->size(); head++) {
    const uint32_t v = (*queue)[head];
    for (uint32_t i = 0; i < graph.degrees[v]; i++) {
      const uint32_t w = graph.Neighbors(v)[i];
      if (!(*reached)[w]) {
        (*reached)[w] = 1;
        queue->push_back(w);
      }
    }
  }
  return queue->size();
}

// Links unreachable node u from the nearest expanded node of a search for it with room in its
// list (else from the nearest one, replacing its farthest neighbour).
void LinkUnreachable(const GraphArrays& graph, uint32_t u, uint32_t entry_point,
                     const VamanaParams& params, ExactExpander& expander, VamanaScratch* scratch) {
  GreedySearch& search = scratch->search;
  const Candidate entry{expander.Distance(entry_point), entry_point};
  search.Start(&entry, 1, static_cast<size_t>(params.build_list), u);
  search.Run(expander);
  const size_t degree = static_cast<size_t>(params.graph_degree);
  uint32_t nearest = kNoNode, roomy = kNoNode;
  float nearest_d = 0, roomy_d = 0;
  for (const Candidate& c : search.expanded()) {
    if (c.id == u) continue;
    if (nearest == kNoNode || c.distance < nearest_d) nearest = c.id, nearest_d = c.distance;
    if (graph.degrees[c.id] < degree && (roomy == kNoNode || c.distance < roomy_d))
      roomy = c.id, roomy_d = c.distance;
  }
  const uint32_t from = roomy != kNoNode ? roomy : nearest;
  if (from == kNoNode) return;
  uint32_t* list = graph.neighbors + static_cast<size_t>(from) * graph.stride;
  if (graph.degrees[from] < degree)
    list[graph.degrees[from]++] = u;
  else
    list[degree - 1] = u;
}

}  // namespace

size_t RepairReachability(const GraphArrays& graph, const float* data, int dims,
                          uint32_t entry_point, const VamanaParams& params, int rounds,
                          VamanaScratch* scratch) {
  const size_t n = graph.size;
  if (n == 0 || entry_point == kNoNode) return 0;
  std::vector<uint8_t> reached(n);
  std::vector<uint32_t> queue;
  ExactExpander expander(graph, data, dims, params.metric);
  size_t count = 0;
  for (int round = 0; round <= rounds; round++) {
    std::fill(reached.begin(), reached.end(), 0);
    count = MarkReachable(graph, entry_point, &reached, &queue);
    if (count == n || round == rounds) break;
    for (uint32_t u = 0; u < n; u++) {
      if (reached[u]) continue;
      if (u % kNodesPerCheck == 0) CheckInterrupts(params.check_interrupts);
      expander.SetQuery(data + static_cast<size_t>(u) * dims);
      LinkUnreachable(graph, u, entry_point, params, expander, scratch);
      MarkReachable(graph, u, &reached, &queue);
    }
  }
  return n - count;
}

VamanaGraph BuildVamanaBatched(const float* data, size_t n, int dims, const VamanaParams& params) {
  const BatchedBuild plan = PlanBatchedBuild(n, params);
  VamanaGraph graph;
  graph.degree_bound = static_cast<int>(plan.slots);
  graph.degrees.assign(n, 0);
  graph.neighbors.assign(n * plan.slots, 0);
  GraphArrays arrays = ArraysOf(&graph);
  std::vector<uint32_t> order(n);
  graph.entry_point = StartBatchedBuild(data, n, dims, params, plan, &arrays, order.data());
  const size_t degree = static_cast<size_t>(params.graph_degree);
  std::vector<uint32_t> out(plan.batch * degree), out_degrees(plan.batch);
  VamanaScratch scratch(plan.slots, std::max<size_t>(n, 1));
  for (size_t pass = 0; pass < plan.passes; pass++) {
    const float alpha = pass + 1 < plan.passes ? 1.0f : params.alpha;
    for (size_t b = 0; b < plan.batches_per_pass; b++) {
      const size_t count = std::min(plan.batch, n - plan.First(b));
      const uint32_t* rows = order.data() + plan.First(b);
      SearchBatch(arrays, data, dims, graph.entry_point, params, alpha, rows, count, 0, 1,
                  out.data(), out_degrees.data(), &scratch);
      LinkBatch(arrays, data, dims, params, alpha, rows, count, out.data(), out_degrees.data(), 0,
                1, &scratch);
    }
  }
  FinishBatchedBuild(arrays, data, dims, params, 0, 1, &scratch);
  RepairReachability(arrays, data, dims, graph.entry_point, params, kRepairRounds, &scratch);
  PackToDegree(&graph, degree);
  return graph;
}

ExactExpander::ExactExpander(const VamanaGraph& graph, const float* data, int dims,
                             VamanaMetric metric)
    : ExactExpander(ArraysOf(const_cast<VamanaGraph*>(&graph)), data, dims, metric) {}

ExactExpander::ExactExpander(const GraphArrays& graph, const float* data, int dims,
                             VamanaMetric metric)
    : graph_(graph),
      data_(data),
      dims_(static_cast<size_t>(dims)),
      kernel_(metric == VamanaMetric::kL2 ? Distances().l2_squared : Distances().inner_product),
      sign_(metric == VamanaMetric::kL2 ? 1.0f : -1.0f) {}

float ExactExpander::Distance(uint32_t row) const {
  ++distance_count_;
  return sign_ * kernel_(query_, data_ + static_cast<size_t>(row) * dims_, dims_);
}

size_t ExactExpander::Expand(uint32_t node, const VisitedSet& visited, uint32_t* ids,
                             float* distances) {
  const uint32_t* list = graph_.Neighbors(node);
  const uint32_t degree = graph_.degrees[node];
  const size_t bytes = dims_ * sizeof(float);
  size_t count = 0;
  for (uint32_t i = 0; i < degree; i++) {
    if (visited.Contains(list[i])) continue;
    if (count < kPrefetchAhead) PrefetchRow(data_ + static_cast<size_t>(list[i]) * dims_, bytes);
    ids[count++] = list[i];
  }
  for (size_t i = 0; i < count; i++) {
    if (i + kPrefetchAhead < count)
      PrefetchRow(data_ + static_cast<size_t>(ids[i + kPrefetchAhead]) * dims_, bytes);
    distances[i] = sign_ * kernel_(query_, data_ + static_cast<size_t>(ids[i]) * dims_, dims_);
  }
  distance_count_ += count;
  return count;
}

void AssignShards(const float* data, size_t n, int dims, const float* centroids, int k, int per_row,
                  int32_t* out) {
  if (dims < 1 || k < 1) throw std::invalid_argument("vamana: shards need dims >= 1 and k >= 1");
  if (per_row < 1 || per_row > k)
    throw std::invalid_argument("vamana: shards per row must be between 1 and the shard count");
  std::vector<float> norms(static_cast<size_t>(k));
  CentroidNorms(centroids, k, dims, norms.data());
  std::vector<uint64_t> scratch(static_cast<size_t>(k));
  for (size_t i = 0; i < n; i++)
    RankCentroids(data + i * static_cast<size_t>(dims), centroids, norms.data(), k, dims, false,
                  per_row, out + i * static_cast<size_t>(per_row), scratch.data());
}

ShardGraphMerger::ShardGraphMerger(size_t total_rows, const VamanaParams& params)
    : params_(params), scratch_(static_cast<size_t>(params.graph_degree)) {
  CheckParams(params);
  graph_.degree_bound = params.graph_degree;
  graph_.degrees.assign(total_rows, 0);
  graph_.neighbors.assign(total_rows * static_cast<size_t>(params.graph_degree), 0);
}

void ShardGraphMerger::AddShard(const VamanaGraph& shard, const uint32_t* global_ids,
                                PairDistances& distances) {
  const size_t degree = static_cast<size_t>(params_.graph_degree);
  auto& ids = scratch_.pruned;
  for (size_t i = 0; i < shard.size(); i++) {
    if (i % kNodesPerCheck == 0) CheckInterrupts(params_.check_interrupts);
    const uint32_t g = global_ids[i];
    uint32_t* list = graph_.neighbors.data() + static_cast<size_t>(g) * degree;
    ids.assign(list, list + graph_.degrees[g]);
    const size_t own = ids.size();
    for (uint32_t k = 0; k < shard.Degree(static_cast<uint32_t>(i)); k++) {
      const uint32_t v = global_ids[shard.Neighbors(static_cast<uint32_t>(i))[k]];
      if (std::find(ids.begin(), ids.begin() + own, v) == ids.begin() + own) ids.push_back(v);
    }
    if (ids.size() > degree) {
      scratch_.candidate_distances.resize(ids.size());
      distances.Distances(g, ids.data(), ids.size(), scratch_.candidate_distances.data());
      scratch_.pool.clear();
      for (size_t k = 0; k < ids.size(); k++)
        scratch_.pool.push_back({scratch_.candidate_distances[k], ids[k]});
      RobustPrune(g, &scratch_.pool, params_.alpha, params_, distances, &scratch_,
                  &scratch_.neighbors);
      ids.assign(scratch_.neighbors.begin(), scratch_.neighbors.end());
    }
    std::copy(ids.begin(), ids.end(), list);
    graph_.degrees[g] = static_cast<uint32_t>(ids.size());
  }
}

VamanaGraph ShardGraphMerger::Finish(uint32_t entry_point) {
  graph_.entry_point = entry_point;
  return std::move(graph_);
}

VamanaGraph MergeShardGraphs(const std::vector<VamanaGraph>& shards,
                             const std::vector<const uint32_t*>& ids, size_t total_rows,
                             uint32_t entry_point, const VamanaParams& params,
                             PairDistances& distances) {
  ShardGraphMerger merger(total_rows, params);
  for (size_t s = 0; s < shards.size(); s++) merger.AddShard(shards[s], ids[s], distances);
  return merger.Finish(entry_point);
}

}  // namespace scann
