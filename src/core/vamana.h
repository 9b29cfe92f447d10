// Vamana graphs (DiskANN: Subramanya et al. 2019; FreshDiskANN: Singh et al. 2021) for the
// `vamana` variant: the in-memory build, the sharded build past memory, the beam search and
// the incremental updates, each a named step of the papers (and of DiskANN's src/index.cpp)
// that the PostgreSQL glue drives.  Pure C++: no threads, no PostgreSQL; callers own their
// vectors, and every work array is a std::vector so an exception thrown by the interrupt
// callback (or by a callback of the glue) unwinds without leaking.
//
// Distances.  Smaller is closer everywhere.  kL2 uses squared Euclidean distances; cosine is
// kL2 on rows (and queries) the caller has normalized to unit length, since |x - y|^2 =
// 2 - 2 cos(x, y) ranks as the cosine distance does.  kInnerProduct uses -<x, y> directly, for
// queries and between rows alike; RobustPrune then occludes a candidate p' of p when
// <p*, p'> > alpha <p, p'> for an already kept p* (DiskANN's rule for inner product).  The
// MIPS-to-L2 transform (rows get a last coordinate sqrt(M^2 - |x|^2), queries a 0, and the
// graph is built by L2) lost clearly: on GloVe-100's first 50,000 rows, unnormalized, R 32,
// L 75, recall@10 at search lists 40 / 200 was 0.853 / 0.970 searching -<q, x> directly and
// 0.613 / 0.785 with the transform, whose large extra coordinate dominates the distances
// between rows.  alpha applies to the distances as given (squared for kL2, as in DiskANN's
// code: alpha 1.2 there is 1.095 on plain Euclidean distances).
//
// Where the graph lives.  The build works on an in-memory VamanaGraph.  The search and the
// updates work through two small interfaces the glue implements on pages:
//   NodeExpander  one node's out-neighbours with their (approximate) distances to the query:
//                 in the index one page read plus one FastScan call over the neighbours'
//                 packed 4-bit codes;
//   GraphStore    read and write a node's neighbour list, distances between stored nodes
//                 (the glue has only quantized vectors for them), and which nodes are deleted.
// With graph_degree R = 32 a node's neighbours are exactly one 32-vector FastScan block;
// R = 48 or 64 needs two blocks (a second kernel call and twice the code bytes per node).
//
// The glue's uses, step by step:
//   CREATE INDEX, rows fit in memory: BuildVamana, then write each node's list (and its
//     neighbours' codes) to pages.
//   CREATE INDEX past memory (DiskANN's SSD build): TrainKMeans on a sample, AssignShards
//     (2 per row) while streaming the rows, for each shard BuildVamana over its rows (a worker
//     per shard), ShardGraphMerger::AddShard for each shard graph (distances read from wherever
//     the vectors are), Finish with the row nearest the mean (CalculateEntryPoint in memory; past
//     memory one streamed pass for the mean and one for the nearest row).
//   Scan: one GreedySearch per scan; Start at the entry point, Run, Next(k) for candidates to
//     re-rank; when the executor wants more, Widen (a larger L), Run, Next again.
//   INSERT: store the new node's code in a free slot, then InsertPoint with an expander for
//     the new row's vector.
//   VACUUM: mark the dead nodes deleted; if the entry point is among them ReplaceEntryPoint
//     first; ConsolidateNode on every live node (ConsolidateDeletes in memory); then the
//     deleted slots are free.
// No function here is thread-safe; one scratch or search object per backend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/kmeans.h"

namespace scann {

enum class VamanaMetric { kL2, kInnerProduct };

// Id of no node: an empty entry point, a graph with no live node.
constexpr uint32_t kNoNode = UINT32_MAX;

struct Candidate {
  float distance;
  uint32_t id;
};

struct VamanaParams {
  int graph_degree = 32;     // R: most out-neighbours a node keeps
  int build_list = 75;       // L: the search list of GreedySearch during build and inserts
  float alpha = 1.2f;        // A: RobustPrune's distance factor of the second pass
  int max_candidates = 750;  // RobustPrune looks at the closest this many (DiskANN's maxc)
  int passes = 2;            // 2: an alpha = 1 pass, then alpha = A; 1: the alpha = A pass only
  VamanaMetric metric = VamanaMetric::kL2;
  uint64_t seed = 0x5ca1ab1e;  // start graph and visiting order
  InterruptCheck check_interrupts;
};

// A graph with at most degree_bound out-neighbours per node, stored with a fixed stride so
// that a node's list maps onto a fixed-size slot of a page.  Node ids are 0 .. size() - 1.
struct VamanaGraph {
  int degree_bound = 0;
  uint32_t entry_point = kNoNode;   // the medoid, where every search starts
  std::vector<uint32_t> degrees;    // size() entries
  std::vector<uint32_t> neighbors;  // size() * degree_bound; node v's list starts at v * bound

  size_t size() const { return degrees.size(); }
  const uint32_t* Neighbors(uint32_t v) const {
    return neighbors.data() + static_cast<size_t>(v) * degree_bound;
  }
  uint32_t Degree(uint32_t v) const { return degrees[v]; }
};

// A graph in caller-owned arrays: node v's list is neighbors[v * stride, v * stride +
// degrees[v]).  The batched build works on these, so that the processes of a parallel build
// can share them.
struct GraphArrays {
  uint32_t* degrees = nullptr;
  uint32_t* neighbors = nullptr;
  size_t stride = 0;
  size_t size = 0;
  const uint32_t* Neighbors(uint32_t v) const {
    return neighbors + static_cast<size_t>(v) * stride;
  }
};

// The arrays of an in-memory graph.
GraphArrays ArraysOf(VamanaGraph* graph);

// A set of node ids that empties in O(1): slots are stamped with the current epoch and
// Clear() moves to the next.  With a dense bound n it is an array of n stamps (ids < n, for
// the build; a bitset cleared word by word measured slower); without, an open-addressing
// hash table that grows with the ids inserted, so a query that touches a few thousand nodes
// of an index of millions holds a few thousand slots.
class VisitedSet {
 public:
  explicit VisitedSet(size_t dense_bound = 0);
  void Clear();
  // Adds id; true when it was not there.
  bool Insert(uint32_t id);
  bool Contains(uint32_t id) const;
  size_t size() const { return count_; }
  // Hashed: makes room for `ids` ids without growing (a search that knows roughly how many
  // nodes it will touch skips the rehashes); dense: nothing to do.
  void Reserve(size_t ids);

 private:
  void Grow();

  bool dense_;
  uint32_t epoch_ = 1;
  size_t count_ = 0;
  std::vector<uint32_t> stamps_;  // dense: stamp per id; hashed: stamp per slot
  std::vector<uint32_t> keys_;    // hashed only: the id in each slot
};

// One node's out-neighbours with their distances to the current query.
class NodeExpander {
 public:
  virtual ~NodeExpander() = default;
  // Writes node's out-neighbours (at most the max_degree the search was made with) and
  // their distances into ids and distances; returns how many.  Neighbours already in
  // visited may be left out (the search skips them anyway), which saves their distances.
  virtual size_t Expand(uint32_t node, const VisitedSet& visited, uint32_t* ids,
                        float* distances) = 0;
};

// Distances between stored nodes (rows of the build, or the glue's quantized vectors).
class PairDistances {
 public:
  virtual ~PairDistances() = default;
  // out[i] = distance(from, to[i]) for i < count, in the metric's convention.
  virtual void Distances(uint32_t from, const uint32_t* to, size_t count, float* out) = 0;
};

// A graph the updates can read and write: the glue's pages, or an in-memory graph.
class GraphStore : public PairDistances {
 public:
  // Neighbour slots per node (>= graph_degree): InterInsert appends a back-edge while a list
  // has room and prunes it to graph_degree when it is full.
  virtual size_t Capacity() const = 0;
  // Writes node's out-neighbours into ids (Capacity() slots); returns how many.
  virtual size_t GetNeighbors(uint32_t node, uint32_t* ids) = 0;
  virtual void SetNeighbors(uint32_t node, const uint32_t* ids, size_t count) = 0;
  // Deleted nodes are still walked through by searches until ConsolidateDeletes; no new
  // edge points to one.
  virtual bool IsDeleted(uint32_t node) = 0;
};

// Beam search (the papers' GreedySearch) with a candidate list of size L: expands the
// closest unexpanded candidate until the L closest are all expanded.  Candidates pushed out
// of the list are kept aside, so Widen() can grow L and Run() continue without revisiting a
// node: Next() then hands out candidates not returned before, in approximate order of
// distance (filtered queries that need more rows).  Memory: about 40 bytes per node touched
// (visited set, candidates set aside, expanded list), plus 16 bytes per list entry.
class GreedySearch {
 public:
  // max_degree: most neighbours an Expand call writes; dense_bound as for VisitedSet.
  explicit GreedySearch(size_t max_degree, size_t dense_bound = 0);

  // Forgets the last search (O(1) for the visited set) and seeds the list with the entry
  // points and their distances to the query.  Equal distances are ordered by a fixed
  // pseudo-random key of (tie_seed, id): the build passes the row it searches for, so that
  // among equal rows each search does not favour the same (lowest) ids.
  void Start(const Candidate* entries, size_t count, size_t list_size, uint32_t tie_seed = 0);
  // Room for `nodes` visited nodes (VisitedSet::Reserve).
  void Reserve(size_t nodes) { visited_.Reserve(nodes); }
  // Expands candidates until the list_size closest are expanded (a fixed point).
  void Run(NodeExpander& expander);
  // Grows the list to list_size (no-op if not larger) with the closest candidates pushed
  // out before; Run() again continues from there.
  void Widen(size_t list_size);
  // Writes up to k of the closest list candidates not returned before into out, closest
  // first, and marks them returned; returns how many.
  size_t Next(size_t k, Candidate* out);
  // True when every candidate seen has been returned and nothing is left to expand.
  bool Exhausted() const;

  // The nodes expanded since Start, in expansion order, with their distances (the papers'
  // visited set V, the candidates RobustPrune starts from).
  const std::vector<Candidate>& expanded() const { return expanded_; }
  // The current list, closest first (at most list_size entries).
  size_t list_count() const { return list_.size(); }
  Candidate list_at(size_t i) const { return {list_[i].distance, list_[i].id}; }
  size_t visited_count() const { return visited_.size(); }

 private:
  struct Entry {
    float distance;
    uint32_t id;
    bool expanded;
    bool returned;
  };
  bool Closer(const Entry& a, const Entry& b) const;
  void Insert(const Entry& e);

  size_t list_size_ = 0;
  uint32_t tie_seed_ = 0;
  size_t cursor_ = 0;  // first unexpanded list entry
  size_t returned_ = 0;
  std::vector<Entry> list_;
  std::vector<Entry> evicted_;
  std::vector<Candidate> expanded_;
  std::vector<uint32_t> ids_;
  std::vector<float> distances_;
  VisitedSet visited_;
};

// Work arrays of the update steps; reuse one across calls to avoid allocating per call.
// capacity: the store's Capacity() (or R for a merge); dense_bound as for VisitedSet.
struct VamanaScratch {
  explicit VamanaScratch(size_t capacity, size_t dense_bound = 0)
      : search(capacity, dense_bound), ids(capacity + 1), distances(capacity + 1) {}
  GreedySearch search;
  std::vector<Candidate> pool;          // RobustPrune's candidates
  std::vector<uint32_t> ids;            // one node's list (+1 for a back-edge)
  std::vector<float> distances;         // distances to ids
  std::vector<uint32_t> neighbors;      // the list InsertPoint or ConsolidateNode computes
  std::vector<uint32_t> pruned;         // the list InterInsert computes for a neighbour
  std::vector<uint32_t> candidate_ids;  // ids whose distances are asked in one batch
  std::vector<float> candidate_distances;
};

// RobustPrune(p, pool, alpha, R): sorts the candidates by distance to p (exact ties in a
// fixed pseudo-random order per p, so equal rows do not all pick the same neighbours), drops
// p and repeated ids, looks at the closest max_candidates, and keeps a candidate p* unless an
// already kept one occludes it (kL2: alpha d(p*, p') <= d(p, p'); a duplicate of p, at
// distance 0, is never occluded, so groups of equal rows stay connected), until R are kept.
// pool holds distances to p and is reordered; the result goes to *out.  At most R |pool|
// distances d(candidate, kept), asked of `distances` for one candidate and up to 8 kept
// neighbours at a time (so they must be symmetric).
void RobustPrune(uint32_t p, std::vector<Candidate>* pool, float alpha, const VamanaParams& params,
                 PairDistances& distances, VamanaScratch* scratch, std::vector<uint32_t>* out);

// The back-edges of p (DiskANN's inter_insert): adds p to each of its out-neighbours' lists;
// a list that has no room left is pruned (RobustPrune with alpha) to graph_degree.
void InterInsert(uint32_t p, const uint32_t* neighbors, size_t count, float alpha,
                 const VamanaParams& params, GraphStore& store, VamanaScratch* scratch);

// DiskANN's search_for_point_and_prune: GreedySearch from the entry points with list
// build_list using the expander (distances to p's vector; tie_seed p), then RobustPrune(alpha)
// of the expanded nodes that are neither p nor deleted together with p's current neighbours,
// into scratch->neighbors.  Pool distances are asked of the store unless the search's own
// distances already are the store's (search_distances_are_pair_distances).
void SearchForPointAndPrune(uint32_t p, const Candidate* entries, size_t entry_count, float alpha,
                            const VamanaParams& params, NodeExpander& expander, GraphStore& store,
                            VamanaScratch* scratch, bool search_distances_are_pair_distances);

// One back-edge of InterInsert: adds p to q's list unless it is there; a list with no room
// left is pruned (RobustPrune with alpha over its entries and p) to graph_degree.
void AddBackEdge(uint32_t q, uint32_t p, float alpha, const VamanaParams& params, GraphStore& store,
                 VamanaScratch* scratch);

// FreshDiskANN's insert of stored node p (its vector must already be in the store):
// GreedySearch from the entry points with list build_list using the expander (distances to
// p's vector), RobustPrune of the expanded nodes and p's current neighbours (distances
// from the store) with params.alpha, the result as p's list, then InterInsert.  Deleted
// nodes are walked through but never linked to.
void InsertPoint(uint32_t p, const Candidate* entries, size_t entry_count,
                 const VamanaParams& params, NodeExpander& expander, GraphStore& store,
                 VamanaScratch* scratch);

// FreshDiskANN's delete consolidation for one live node p: if p has deleted out-neighbours,
// its new list is RobustPrune(p, live neighbours + the live out-neighbours of its deleted
// neighbours, alpha, R).  Returns whether p changed.  Deleted nodes' lists must stay readable
// until every node has been consolidated; then they are free for reuse.  O(R^2) candidates
// and O(R^3) distances at worst (every neighbour deleted).
bool ConsolidateNode(uint32_t p, const VamanaParams& params, GraphStore& store,
                     VamanaScratch* scratch);

// ConsolidateNode over nodes 0 .. node_count - 1 that are not deleted; returns how many
// changed.  Calls params.check_interrupts every few hundred nodes.
size_t ConsolidateDeletes(size_t node_count, const VamanaParams& params, GraphStore& store,
                          VamanaScratch* scratch);

// A new entry point for a graph whose entry point `old_entry` is deleted (call before its
// list is freed): the live out-neighbour closest to it, else the first live node found
// breadth-first from it; kNoNode when none is reachable.
uint32_t ReplaceEntryPoint(uint32_t old_entry, GraphStore& store, VamanaScratch* scratch);

// DiskANN's calculate_entry_point: the row nearest (L2) to the mean of the n rows; rows are
// scanned twice, O(dims) memory.  With n == 0, kNoNode.
uint32_t CalculateEntryPoint(const float* data, size_t n, int dims);

// The in-memory build over n caller-owned row-major rows of dims floats: a random start
// graph of out-degree min(R, n - 1) from the seeded Rng, the medoid as entry point, then two
// passes over the rows in a seeded random order (alpha 1, then params.alpha; with passes = 1
// only the second), each row inserted as InsertPoint does with exact distances.  Lists may grow to
// ceil(1.3 R) between prunes (DiskANN's slack); a last pass prunes the longer ones to R.
// Deterministic for equal rows, params and instruction set.  Memory: n (1.3 R + 3) 4 bytes +
// O(max_candidates + L R). Throws std::invalid_argument for dims < 1, R < 1, L < 1, alpha < 1,
// passes other than 1 or 2, or n >= kNoNode.
VamanaGraph BuildVamana(const float* data, size_t n, int dims, const VamanaParams& params);

// The batched build: DiskANN's passes (a random start graph of out-degree R, the medoid as
// entry point, rows in a seeded random order, alpha 1 then alpha) with the rows of each pass
// inserted a batch at a time, as ParlayANN does: every row of a batch searches the graph as it
// was before the batch and is pruned (SearchBatch), then the batch's lists are set and their
// back-edges added (LinkBatch).  Both steps split their work by `part` of `parts`: SearchBatch
// writes only the batch's own out-arrays, LinkBatch only the lists of the nodes it owns (id mod
// parts), so participants need no locks between two barriers, and the graph is the same
// whatever `parts` is.  Lists may grow to BuildSlots(R) = ceil(1.3 R) between prunes;
// FinishBatchedBuild prunes the longer ones to R.
struct BatchedBuild {
  size_t slots;   // list slots per node while building
  size_t batch;   // rows per batch
  size_t passes;  // params.passes
  size_t batches_per_pass;
  // Batch b of pass `pass`: order[first, first + count), pruned with alpha.
  size_t First(size_t b) const { return b * batch; }
};

// The plan of a batched build over n rows.
BatchedBuild PlanBatchedBuild(size_t n, const VamanaParams& params);

// The start of a batched build: checks the parameters, fills `graph` (size n, stride
// plan.slots) with the random start graph, `order` (n ids) with the seeded visiting order, and
// returns the entry point (CalculateEntryPoint, kNoNode for n = 0).
uint32_t StartBatchedBuild(const float* data, size_t n, int dims, const VamanaParams& params,
                           const BatchedBuild& plan, GraphArrays* graph, uint32_t* order);

// Step 1 of a batch: for the batch's rows rows[i] (i < count, i mod parts == part), the pruned
// out-list of graph_degree ids into out[i * R] and its length into out_degrees[i].  Reads the
// graph only.  scratch: VamanaScratch(plan.slots, n).
void SearchBatch(const GraphArrays& graph, const float* data, int dims, uint32_t entry_point,
                 const VamanaParams& params, float alpha, const uint32_t* rows, size_t count,
                 size_t part, size_t parts, uint32_t* out, uint32_t* out_degrees,
                 VamanaScratch* scratch);

// Step 2 of a batch: the lists of the batch's rows owned by `part` become their out-lists, then
// every owned node gets the back-edges of the batch's rows that chose it, in batch order.
void LinkBatch(const GraphArrays& graph, const float* data, int dims, const VamanaParams& params,
               float alpha, const uint32_t* rows, size_t count, const uint32_t* out,
               const uint32_t* out_degrees, size_t part, size_t parts, VamanaScratch* scratch);

// Prunes the owned lists longer than graph_degree to graph_degree (the last step).
void FinishBatchedBuild(const GraphArrays& graph, const float* data, int dims,
                        const VamanaParams& params, size_t part, size_t parts,
                        VamanaScratch* scratch);

// Makes the nodes no path from the entry point reaches reachable, in up to `rounds` rounds:
// each such node (in id order) gets an edge from the nearest node a search for it from the entry
// point (list build_list, exact distances) expands that has room in its list, or if none has,
// from the nearest one, whose last neighbour it replaces.  DiskANN's graphs leave some nodes
// unreachable (exact duplicates; under inner product, rows that are no other row's best
// partner: 549 of 2,000 5-d rows), which a search then never returns.  The lists must be at
// most R long (after FinishBatchedBuild).  Returns how many nodes are still unreachable.
// scratch: VamanaScratch(graph.stride, graph.size).
size_t RepairReachability(const GraphArrays& graph, const float* data, int dims,
                          uint32_t entry_point, const VamanaParams& params, int rounds,
                          VamanaScratch* scratch);

// The whole batched build in one process, then RepairReachability (kRepairRounds), as a
// VamanaGraph of stride R (what the glue's steps give with any number of participants).
constexpr int kRepairRounds = 4;
VamanaGraph BuildVamanaBatched(const float* data, size_t n, int dims, const VamanaParams& params);

// Exact float distances from a query to the rows of an in-memory graph: the build's expander,
// and the search of tests and benchmarks.  Prefetches a neighbour's row before it is read.
class ExactExpander : public NodeExpander {
 public:
  ExactExpander(const VamanaGraph& graph, const float* data, int dims, VamanaMetric metric);
  ExactExpander(const GraphArrays& graph, const float* data, int dims, VamanaMetric metric);
  void SetQuery(const float* query) { query_ = query; }
  float Distance(uint32_t row) const;
  size_t Expand(uint32_t node, const VisitedSet& visited, uint32_t* ids, float* distances) override;
  // Distances computed so far (Expand and Distance).
  uint64_t distance_count() const { return distance_count_; }

 private:
  GraphArrays graph_;
  const float* data_;
  size_t dims_;
  float (*kernel_)(const float*, const float*, size_t);
  float sign_;  // -1 turns the inner product into a distance
  const float* query_ = nullptr;
  mutable uint64_t distance_count_ = 0;
};

// Shard assignment of the sharded build (DiskANN's build past memory): the `per_row` nearest
// of k centroids (from TrainKMeans on a sample) for each of n rows into out[n * per_row],
// nearest first.  Requires 1 <= per_row <= k.  Memory: 12 k bytes besides the caller's.
void AssignShards(const float* data, size_t n, int dims, const float* centroids, int k, int per_row,
                  int32_t* out);

// MergeShardGraphs, one shard at a time: a row's lists from the shards it sits in are united
// and pruned back to R (RobustPrune with params.alpha; distances between rows, in global ids,
// from the caller).  Memory: total_rows (R + 1) 4 bytes, plus O(R) per AddShard.
class ShardGraphMerger {
 public:
  ShardGraphMerger(size_t total_rows, const VamanaParams& params);
  // shard: a BuildVamana graph over the shard's rows; global_ids[i] is its row i's id.
  void AddShard(const VamanaGraph& shard, const uint32_t* global_ids, PairDistances& distances);
  // The merged graph with the given entry point (CalculateEntryPoint over all rows).
  VamanaGraph Finish(uint32_t entry_point);

 private:
  VamanaParams params_;
  VamanaGraph graph_;
  VamanaScratch scratch_;
};

// The whole merge for shards held in memory: ShardGraphMerger over shards[i] with ids[i].
VamanaGraph MergeShardGraphs(const std::vector<VamanaGraph>& shards,
                             const std::vector<const uint32_t*>& ids, size_t total_rows,
                             uint32_t entry_point, const VamanaParams& params,
                             PairDistances& distances);

}  // namespace scann
