// The vamana variant's glue (a DiskANN graph in node pages; the format and the locking protocol
// are in scann_page.h): what its build, scans, inserts and VACUUM share.
//
//   scann_vamana.cpp         node access, codes, the page expander, entry point and hint
//   scann_vamana_build.cpp   CREATE INDEX (in memory, or k-means shards past memory; workers)
//   scann_vamana_scan.cpp    the scan's candidate source (beam search, continuation, sweep)
//   scann_vamana_insert.cpp  inserts (FreshDiskANN)
//   scann_vamana_vacuum.cpp  VACUUM (delete consolidation, freeing nodes) and the graph check
#pragma once

#include <unordered_map>
#include <vector>

#include "core/vamana.h"
#include "pg/scann_build.h"
#include "pg/scann_index.h"
#include "pg/scann_variant.h"

namespace scann::pg {

// Build phases in pg_stat_progress_create_index.
enum VamanaBuildPhase : int64 {
  kVamanaPhaseLoad = kFirstVariantBuildPhase,
  kVamanaPhaseShard,
  kVamanaPhaseGraph,
  kVamanaPhaseMerge,
  kVamanaPhaseWrite,
};

// What operations need of a vamana index: its metapage's options as the core's parameters.
struct VamanaIndex {
  VamanaNodeLayout layout;
  VamanaParams params;
  BlockNumber first_node_block;
  Metric metric;
  int dims;
  bool trained;
};
VamanaIndex VamanaIndexOf(const ScannMetaPage& meta);

// The core's metric for an index's metric (cosine rows are normalized, then compared by L2).
VamanaMetric CoreMetric(Metric metric);

// The node id of a node page's slot, and the first id of the node pages from `block` on.
inline uint32 VamanaNodeId(const VamanaNodeLayout& l, BlockNumber block, uint32 slot) {
  return block * l.nodes_per_page + slot;
}

// Node ids must stay below kNoEntry: an error when the index has grown past that.
void CheckNodeBlock(Relation index, const VamanaNodeLayout& l, BlockNumber block);

// Initializes a node page image: every node free, pd_lower past the last node.
void InitNodePage(Page page, const VamanaNodeLayout& l, bool insert);

// Own codes: m codes (one per byte, values 0..15) packed two a byte, low nibble first.
void PackOwnCode(const uint8_t* codes, uint32 m, uint8_t* packed);
void UnpackOwnCode(const uint8_t* packed, uint32 m, uint8_t* codes);
// A packed code's FastScan score against a quantized table (what the kernel sums).
uint32 ScoreOwnCode(const uint8_t* packed, uint32 m, const uint8_t* qlut);

// Writes a node's out-list: ids and the neighbours' codes (count x m, one per byte) packed into
// its blocks; slots past count get code 0.
void SetNodeList(const VamanaNodeLayout& l, uint8_t* node, const uint32* ids, const uint8_t* codes,
                 uint32 count);
// Reads a node's list back: ids and the neighbours' codes (count x m), returns count.
uint32 GetNodeList(const VamanaNodeLayout& l, const uint8_t* node, uint32* ids, uint8_t* codes);

// The entry point and the insert hint, read under the metapage's share lock.
uint32 ReadEntryPoint(Relation index);
BlockNumber ReadInsertHint(Relation index);
// Sets a metapage word to `value` if it still holds `expected` (WAL-logged); returns whether it
// did.
bool CompareAndSetMetaWord(Relation index, VamanaWord word, uint32 expected, uint32 value);

// What a search saw of a node it expanded.
struct ExpandedNode {
  ItemPointerData tid;
  uint8 state;      // VamanaNodeState
  uint8 degree;     // out-degree
  uint64 record;    // its re-ranking record's address (0: none)
  uint32 code_pos;  // where its own code was kept (keep_codes), else 0
};

// The nodes a search expanded, by id: open addressing in two arrays, doubled when half full (a
// node-based map allocated per expansion).
class ExpandedNodes {
 public:
  ExpandedNode& Insert(uint32_t id);
  const ExpandedNode* Find(uint32_t id) const;
  void Clear();

 private:
  void Grow();
  std::vector<uint32_t> keys_;  // kNoEntry: empty
  std::vector<ExpandedNode> values_;
  size_t count_ = 0;
};

// Expands nodes from their pages for a beam search: one page read and one FastScan call per
// node, scores against the quantized table given; remembers what it saw of each expanded node
// (and, for inserts, its own code).
class PageExpander : public NodeExpander {
 public:
  PageExpander(Relation index, const VamanaIndex& vi, bool keep_codes);
  void SetTable(const uint8_t* qlut) { qlut_ = qlut; }
  // Makes the node of the row with this id (TidToId; 0: none) look deleted and without
  // neighbours: the calibration's query row, so that it measures queries from outside.
  void Hide(uint64 id) { hidden_id_ = id; }
  // Forgets the nodes seen (a new search).
  void Reset();
  size_t Expand(uint32_t node, const VisitedSet& visited, uint32_t* ids, float* distances) override;
  // The score of a node's own code (the entry point's), from its page.
  float ScoreNode(uint32_t node);
  const ExpandedNode* Seen(uint32_t node) const;
  // The own code (m codes) of an expanded node, when kept.
  const uint8_t* Code(const ExpandedNode& seen) const { return codes_.data() + seen.code_pos; }
  uint64_t expansions() const { return expansions_; }

 private:
  void ReadNode(uint32_t node, bool score);

  Relation index_;
  VamanaIndex vi_;
  bool keep_codes_;
  const uint8_t* qlut_ = nullptr;
  uint64 hidden_id_ = 0;
  uint64_t expansions_ = 0;
  // The last node read: its header, list, scores and own code.
  ItemPointerData tid_;
  uint8 state_ = 0;
  uint32 degree_ = 0;
  uint64 record_ = 0;
  std::vector<uint32_t> ids_;
  std::vector<uint16_t> scores_;
  std::vector<uint8_t> own_;
  ExpandedNodes seen_;
  std::vector<uint8_t> codes_;
};

// Vectors of stored nodes, decoded from their codes (centroid + PQ decode), for the distances
// between nodes that inserts and VACUUM prune with; cached per operation by node id.
class DecodedNodes {
 public:
  DecodedNodes(const VamanaIndex& vi, const ProductQuantizer* pq, const float* centroid);
  // Decodes m codes (one per byte) as node `id`'s vector, replacing any earlier one.
  void Put(uint32_t id, const uint8_t* codes);
  // A vector given exactly (the row being inserted).
  void PutExact(uint32_t id, const float* vec);
  bool Has(uint32_t id) const { return at_.count(id) > 0; }
  const float* Get(uint32_t id) const { return vectors_.data() + at_.at(id); }
  void Clear();
  float Distance(uint32_t a, uint32_t b) const;

 private:
  VamanaIndex vi_;
  const ProductQuantizer* pq_;
  const float* centroid_;
  std::unordered_map<uint32_t, size_t> at_;
  std::vector<float> vectors_;
};

// Adds the edge from -> to (to's code: m codes) under from's page's exclusive lock, unless from
// is not live or has it already: appended while from's list has room, else it replaces the last
// neighbour.  For the repairs of reachability, not for inserts (which prune).  WAL-logged, or
// (wal false: during CREATE INDEX, whose pages are logged at its end) only marked dirty.
void AddEdgeReplacingLast(Relation index, const VamanaIndex& vi, uint32 from, uint32 to,
                          const uint8_t* to_code, bool wal);

// Links live node u, which no path from the entry point reaches, from the nearest live node a
// search for its decoded vector expands that has room in its list, else from the nearest.
void LinkUnreachableNode(Relation index, const VamanaIndex& vi, const ProductQuantizer* pq,
                         const float* centroid, uint32 u, uint32 entry, bool wal);

// Links every live node no path from `entry` reaches (LinkUnreachableNode), in id order, each
// newly linked node's own reach counted before the next: what VACUUM does last, and a sharded
// build after its merge.
void RepairUnreachable(Relation index, const VamanaIndex& vi, const ProductQuantizer* pq,
                       const float* centroid, uint32 entry, bool wal);

// The build (VariantOps::build), scans, inserts and VACUUM.
void VamanaBuild(VariantBuild* build, ScannMetaPage* meta);
extern const CandidateSource kVamanaSource;
void VamanaInsert(Relation index, const float* vec, ItemPointer tid);
IndexBulkDeleteResult* VamanaBulkDelete(IndexVacuumInfo* info, IndexBulkDeleteResult* stats,
                                        IndexBulkDeleteCallback callback, void* callback_state);
IndexBulkDeleteResult* VamanaCleanup(IndexVacuumInfo* info, IndexBulkDeleteResult* stats);

// The graph as scann_index_info reports it: nodes by state, the entry point, out-degrees, and
// the whole-graph check (edges from live nodes to nodes that are not live, or out of range).
struct VamanaGraphStats {
  int64 live;
  int64 deleted;
  int64 free;
  int64 entry_point;  // -1: none
  int64 min_degree;
  int64 max_degree;
  double mean_degree;
  int64 bad_edges;
  int64 unreachable;  // live nodes no path from the entry point reaches
};
VamanaGraphStats VamanaGraphInfo(Relation index, const ScannMetaPage& meta);

}  // namespace scann::pg
