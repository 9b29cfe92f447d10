// Inserts into a vamana index (FreshDiskANN's insert), following the protocol of scann_page.h:
// take a free node for the row (or a new node page) and store its TID, own code and record ->
// search the graph for the row from the entry point with the build's list size, like a scan ->
// RobustPrune the nodes it expanded into the row's list -> write the list -> add the back-edges
// one neighbour page at a time, pruning a neighbour whose list is full with distances from the
// codes on its own page.  Distances between stored nodes come from their decoded codes, those
// to the new row from its vector.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/lut.h"
#include "pg/scann_list.h"
#include "pg/scann_vamana.h"

extern "C" {
#include "access/generic_xlog.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
}

namespace scann::pg {

namespace {

// The first free node of a locked node page, or nodes_per_page.
uint32 FreeSlot(const VamanaNodeLayout& l, Page page) {
  if (PageIsNew(page) || PageOpaque(page)->type != uint16(PageType::kVamanaNodes))
    return l.nodes_per_page;
  for (uint32 slot = 0; slot < l.nodes_per_page; slot++)
    if (VamanaHeader(VamanaNode(l, page, slot))->state == uint8(VamanaNodeState::kFree))
      return slot;
  return l.nodes_per_page;
}

// Stores the row in node `slot` of the exclusively locked page (a new page is initialized in
// the same record, written whole).
void StoreRow(Relation index, const VamanaNodeLayout& l, Buffer buf, uint32 slot, bool new_page,
              ItemPointer tid, const uint8_t* codes, const uint8_t* record) {
  GenericXLogState* state = GenericXLogStart(index);
  Page page = GenericXLogRegisterBuffer(state, buf, new_page ? GENERIC_XLOG_FULL_IMAGE : 0);
  if (new_page) InitNodePage(page, l, true);
  uint8_t* node = VamanaNode(l, page, slot);
  std::memset(node, 0, l.node_bytes);
  VamanaHeader(node)->tid = *tid;
  VamanaHeader(node)->state = uint8(VamanaNodeState::kLive);
  if (l.subspaces > 0) PackOwnCode(codes, l.subspaces, node + l.own_code_offset);
  if (record) std::memcpy(node + l.record_offset, record, l.record_bytes);
  GenericXLogFinish(state);
}

// Takes a free node for the row, from the insert hint on, or on a new page; returns its id.
uint32 ClaimNode(Relation index, const VamanaIndex& vi, ItemPointer tid, const uint8_t* codes,
                 const uint8_t* record) {
  const VamanaNodeLayout& l = vi.layout;
  const BlockNumber hint = ReadInsertHint(index);
  const BlockNumber nblocks = RelationGetNumberOfBlocks(index);
  BlockNumber block = Max(hint, vi.first_node_block);
  uint32 slot = l.nodes_per_page;
  Buffer buf = InvalidBuffer;
  for (; block < nblocks; block++) {
    buf = ReadBuffer(index, block);
    LockBuffer(buf, BUFFER_LOCK_SHARE);
    if (FreeSlot(l, BufferGetPage(buf)) < l.nodes_per_page) {
      LockBuffer(buf, BUFFER_LOCK_UNLOCK);
      LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
      slot = FreeSlot(l, BufferGetPage(buf));  // again: another insert may have taken it
      if (slot < l.nodes_per_page) break;
    }
    UnlockReleaseBuffer(buf);
    buf = InvalidBuffer;
  }
  bool new_page = false;
  if (!BufferIsValid(buf)) {
    buf = NewInsertPage(index, PageType::kVamanaNodes);
    block = BufferGetBlockNumber(buf);
    slot = 0;
    new_page = true;
  }
  CheckNodeBlock(index, l, block);
  StoreRow(index, l, buf, slot, new_page, tid, codes, record);
  UnlockReleaseBuffer(buf);
  // No free node lies before `block` (every page passed was full, as of its read).
  if (block != hint) CompareAndSetMetaWord(index, kVamanaInsertHint, hint, block);
  return VamanaNodeId(l, block, slot);
}

// The graph as the new row's search and prune see it: expanded nodes' decoded codes, the new
// row's own vector, and expanded nodes that are not live as deleted.
class InsertStore : public GraphStore {
 public:
  InsertStore(uint32_t p, const PageExpander& expander, DecodedNodes* decoded, size_t degree)
      : p_(p), expander_(expander), decoded_(decoded), degree_(degree) {}
  size_t Capacity() const override { return degree_; }
  size_t GetNeighbors(uint32_t node, uint32_t* ids) override { return 0; }  // p has none yet
  void SetNeighbors(uint32_t, const uint32_t*, size_t) override {}
  bool IsDeleted(uint32_t node) override {
    const ExpandedNode* seen = expander_.Seen(node);
    return seen == nullptr || seen->state != uint8(VamanaNodeState::kLive);
  }
  void Distances(uint32_t from, const uint32_t* to, size_t count, float* out) override {
    Decode(from);
    for (size_t i = 0; i < count; i++) {
      Decode(to[i]);
      out[i] = decoded_->Distance(from, to[i]);
    }
  }

 private:
  void Decode(uint32_t node) {
    if (node == p_ || decoded_->Has(node)) return;
    decoded_->Put(node, expander_.Code(*expander_.Seen(node)));
  }

  uint32_t p_;
  const PageExpander& expander_;
  DecodedNodes* decoded_;
  size_t degree_;
};

// Distances among a node's list and the new row, from the codes on the node's page.
class PageDistances : public PairDistances {
 public:
  explicit PageDistances(DecodedNodes* decoded) : decoded_(decoded) {}
  void Distances(uint32_t from, const uint32_t* to, size_t count, float* out) override {
    for (size_t i = 0; i < count; i++) out[i] = decoded_->Distance(from, to[i]);
  }

 private:
  DecodedNodes* decoded_;
};

// Everything an insert's graph work needs.
struct Insert {
  Relation index;
  VamanaIndex vi;
  const float* vec;
  uint32 p;
  const uint8_t* codes;  // p's own code (m, one per byte)
  PageExpander* expander;
  DecodedNodes* decoded;
  VamanaScratch* scratch;
  std::vector<uint8_t>* list_codes;  // scratch: a list's codes
  std::vector<uint32_t>* list_ids;
};

// Writes p's list (the prune's result) and the neighbours' codes the search kept.
void WriteOwnList(Insert* in, const std::vector<uint32_t>& list) {
  const VamanaNodeLayout& l = in->vi.layout;
  const uint32 m = l.subspaces;
  CppGuard([&] {
    in->list_codes->resize(size_t(list.size()) * m);
    for (size_t i = 0; i < list.size(); i++)
      std::memcpy(in->list_codes->data() + i * m, in->expander->Code(*in->expander->Seen(list[i])),
                  m);
  });
  Buffer buf = ReadBuffer(in->index, VamanaNodeBlock(l, in->p));
  LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
  GenericXLogState* state = GenericXLogStart(in->index);
  Page page = GenericXLogRegisterBuffer(state, buf, 0);
  SetNodeList(l, VamanaNode(l, page, VamanaNodeSlot(l, in->p)), list.data(), in->list_codes->data(),
              uint32(list.size()));
  GenericXLogFinish(state);
  UnlockReleaseBuffer(buf);
}

// The back-edge q -> p: under q's page's exclusive lock, p appended to q's list, or the list
// and p pruned to R with distances from the codes on q's page and p's vector.
void AddBackEdgeLocked(Insert* in, uint32 q) {
  const VamanaNodeLayout& l = in->vi.layout;
  const uint32 m = l.subspaces;
  Buffer buf = ReadBuffer(in->index, VamanaNodeBlock(l, q));
  LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
  uint8_t* node = VamanaNode(l, BufferGetPage(buf), VamanaNodeSlot(l, q));
  if (PageOpaque(BufferGetPage(buf))->type != uint16(PageType::kVamanaNodes) ||
      VamanaHeader(node)->state != uint8(VamanaNodeState::kLive)) {
    UnlockReleaseBuffer(buf);  // deleted meanwhile: its list no longer matters
    return;
  }
  std::vector<uint32_t>& ids = *in->list_ids;
  std::vector<uint8_t>& codes = *in->list_codes;
  uint32 degree = 0;
  bool changed = CppGuard([&] {
    ids.resize(l.degree_bound + 1);
    codes.resize(size_t(l.degree_bound + 1) * m);
    degree = GetNodeList(l, node, ids.data(), codes.data());
    if (std::find(ids.begin(), ids.begin() + degree, in->p) != ids.begin() + degree) return false;
    ids[degree] = in->p;
    std::memcpy(codes.data() + size_t(degree) * m, in->codes, m);
    if (++degree <= l.degree_bound) return true;
    // Full: RobustPrune(q, its list + p) on decoded codes, p by its vector.
    DecodedNodes& d = *in->decoded;
    d.Clear();
    std::vector<uint8_t> own(m);
    UnpackOwnCode(node + l.own_code_offset, m, own.data());
    d.Put(q, own.data());
    for (uint32 i = 0; i + 1 < degree; i++) d.Put(ids[i], codes.data() + size_t(i) * m);
    d.PutExact(in->p, in->vec);
    PageDistances distances(&d);
    auto& pool = in->scratch->pool;
    pool.clear();
    for (uint32 i = 0; i < degree; i++) pool.push_back({d.Distance(q, ids[i]), ids[i]});
    RobustPrune(q, &pool, in->vi.params.alpha, in->vi.params, distances, in->scratch,
                &in->scratch->pruned);
    std::vector<uint8_t> kept(in->scratch->pruned.size() * m);
    for (size_t i = 0; i < in->scratch->pruned.size(); i++) {
      const size_t at = size_t(
          std::find(ids.begin(), ids.begin() + degree, in->scratch->pruned[i]) - ids.begin());
      std::memcpy(kept.data() + i * m, codes.data() + at * m, m);
    }
    degree = uint32(in->scratch->pruned.size());
    std::copy(in->scratch->pruned.begin(), in->scratch->pruned.end(), ids.begin());
    std::copy(kept.begin(), kept.end(), codes.begin());
    return true;
  });
  if (changed) {
    GenericXLogState* state = GenericXLogStart(in->index);
    Page page = GenericXLogRegisterBuffer(state, buf, 0);
    SetNodeList(l, VamanaNode(l, page, VamanaNodeSlot(l, q)), ids.data(), codes.data(), degree);
    GenericXLogFinish(state);
  }
  UnlockReleaseBuffer(buf);
}

// Links node p into the graph: search from the entry point, prune, own list, back-edges.
void LinkNode(Insert* in, uint32 entry) {
  const ProductQuantizer* pq = GetQuantizer(in->index);
  const float* centroid = GetIndexState(in->index)->centroids;
  QueryLuts* luts = NewInContext<QueryLuts>(CurrentMemoryContext);
  const LutMetric metric =
      in->vi.metric == Metric::kInnerProduct ? LutMetric::kInnerProduct : LutMetric::kL2;
  std::vector<uint32_t> list;
  CppGuard([&] {
    luts->Prepare(*pq, metric, in->vec, &centroid, 1, size_t(work_mem) * 1024);
    in->expander->SetTable(luts->Table(0));
    InsertStore store(in->p, *in->expander, in->decoded, in->vi.layout.degree_bound);
    in->decoded->PutExact(in->p, in->vec);
    const Candidate start{in->expander->ScoreNode(entry), entry};
    SearchForPointAndPrune(in->p, &start, 1, in->vi.params.alpha, in->vi.params, *in->expander,
                           store, in->scratch, false);
    list = in->scratch->neighbors;
  });
  WriteOwnList(in, list);
  for (uint32 q : list) AddBackEdgeLocked(in, q);
}

}  // namespace

void VamanaInsert(Relation index, const float* vec, ItemPointer tid) {
  const ScannMetaPage meta = GetIndexState(index)->meta;
  const VamanaIndex vi = VamanaIndexOf(meta);
  const uint32 m = vi.layout.subspaces;
  uint8_t* codes = static_cast<uint8_t*>(palloc0(Max(m, 1u)));
  uint8_t* record = nullptr;
  if (vi.trained) {
    float* residual = static_cast<float*>(palloc(sizeof(float) * vi.dims));
    EncodeInList(GetQuantizer(index), GetIndexState(index)->centroids, vi.dims, 0, vec, residual,
                 codes);
    if (meta.record_bytes > 0) {
      record = static_cast<uint8_t*>(palloc0(meta.record_bytes));
      EncodeRecord(GetScalarQuantizer(index), vec, record);
    }
  }
  // The insert lock of the protocol: VACUUM waits for it before it repairs and frees nodes.
  LockPage(index, kMetaBlock, ShareLock);
  Insert in = {};
  in.index = index;
  in.vi = vi;
  in.vec = vec;
  in.codes = codes;
  in.p = ClaimNode(index, vi, tid, codes, record);
  if (vi.trained) {
    uint32 entry = ReadEntryPoint(index);
    if (entry == kNoEntry && CompareAndSetMetaWord(index, kVamanaEntryPoint, kNoEntry, in.p))
      entry = in.p;  // the first node of an empty graph
    else if (entry == kNoEntry)
      entry = ReadEntryPoint(index);
    if (entry != in.p) {
      in.expander = NewInContext<PageExpander>(CurrentMemoryContext, index, vi, true);
      in.decoded = NewInContext<DecodedNodes>(CurrentMemoryContext, vi, GetQuantizer(index),
                                              GetIndexState(index)->centroids);
      in.scratch = NewInContext<VamanaScratch>(CurrentMemoryContext, vi.layout.degree_bound);
      in.list_codes = NewInContext<std::vector<uint8_t>>(CurrentMemoryContext);
      in.list_ids = NewInContext<std::vector<uint32_t>>(CurrentMemoryContext);
      LinkNode(&in, entry);
    }
  }
  UnlockPage(index, kMetaBlock, ShareLock);
}

}  // namespace scann::pg
