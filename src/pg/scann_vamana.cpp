// The vamana variant's shared pieces: node pages and their codes, the metapage's changing words
// (entry point, insert hint), the page expander of searches, decoded node vectors, the graph
// statistics of scann_index_info, and the variant's table of operations.
#include <algorithm>
#include <cstring>

#include "core/distance.h"
#include "core/fastscan.h"
#include "core/lut.h"
#include "pg/recent_buffer.h"
#include "pg/scann_vamana.h"

extern "C" {
#include "access/generic_xlog.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
}

namespace scann::pg {

VamanaMetric CoreMetric(Metric metric) {
  return metric == Metric::kInnerProduct ? VamanaMetric::kInnerProduct : VamanaMetric::kL2;
}

VamanaIndex VamanaIndexOf(const ScannMetaPage& meta) {
  VamanaIndex vi;
  vi.layout = VamanaLayoutOf(meta);
  vi.params.graph_degree = int(meta.variant_words[kVamanaGraphDegree]);
  vi.params.build_list = int(meta.variant_words[kVamanaBuildList]);
  std::memcpy(&vi.params.alpha, &meta.variant_words[kVamanaAlphaBits], sizeof(float));
  vi.params.passes = int(meta.variant_words[kVamanaPasses]);
  vi.params.metric = CoreMetric(Metric(meta.metric));
  vi.first_node_block = meta.variant_words[kVamanaFirstNodeBlock];
  vi.metric = Metric(meta.metric);
  vi.dims = int(meta.dims);
  vi.trained = meta.trained != 0;
  return vi;
}

void CheckNodeBlock(Relation index, const VamanaNodeLayout& l, BlockNumber block) {
  if (uint64(block + 1) * l.nodes_per_page >= uint64(kNoEntry))
    ereport(ERROR,
            (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
             errmsg("scann index \"%s\" has too many vamana nodes", RelationGetRelationName(index)),
             errdetail("Node ids are 32-bit: at most %u node pages of %u nodes.",
                       uint32(kNoEntry / l.nodes_per_page) - 1, l.nodes_per_page)));
}

void InitNodePage(Page page, const VamanaNodeLayout& l, bool insert) {
  if (insert)
    InitInsertPage(page, PageType::kVamanaNodes);
  else
    InitPage(page, PageType::kVamanaNodes);
  std::memset(PagePayload(page), 0, size_t(l.nodes_per_page) * l.node_bytes);
  ((PageHeader)page)->pd_lower =
      MAXALIGN(SizeOfPageHeaderData) + uint16(l.nodes_per_page * l.node_bytes);
}

void PackOwnCode(const uint8_t* codes, uint32 m, uint8_t* packed) {
  for (uint32 s = 0; s < m; s += 2)
    packed[s / 2] = uint8_t(codes[s] | (s + 1 < m ? codes[s + 1] << 4 : 0));
}

void UnpackOwnCode(const uint8_t* packed, uint32 m, uint8_t* codes) {
  for (uint32 s = 0; s < m; s++) codes[s] = (packed[s / 2] >> (4 * (s & 1))) & 0xF;
}

uint32 ScoreOwnCode(const uint8_t* packed, uint32 m, const uint8_t* qlut) {
  uint32 score = 0;
  for (uint32 s = 0; s < m; s++) {
    const uint32 code = (packed[s / 2] >> (4 * (s & 1))) & 0xF;
    score += qlut[(s / 2) * kFastScanUnit + (s & 1) * 16 + code];
  }
  return score & 0xFFFF;  // the kernel's uint16 sum (no overflow by the table's scale)
}

void SetNodeList(const VamanaNodeLayout& l, uint8_t* node, const uint32* ids, const uint8_t* codes,
                 uint32 count) {
  VamanaHeader(node)->degree = uint8(count);
  std::memset(node + l.ids_offset, 0, 4 * l.degree_bound);
  std::memcpy(node + l.ids_offset, ids, 4 * size_t(count));
  const size_t block_bytes = size_t(l.pairs) * kUnitBytes;
  for (uint32 b = 0; b < l.blocks; b++) {
    const uint32 first = b * 32, n = count > first ? Min(count - first, 32u) : 0;
    FastScanPackBlock(codes + size_t(first) * l.subspaces, int(n), int(l.subspaces),
                      node + l.codes_offset + b * block_bytes);
  }
}

uint32 GetNodeList(const VamanaNodeLayout& l, const uint8_t* node, uint32* ids, uint8_t* codes) {
  const uint32 count =
      Min(uint32(VamanaHeader(const_cast<uint8_t*>(node))->degree), l.degree_bound);
  std::memcpy(ids, node + l.ids_offset, 4 * size_t(count));
  const size_t block_bytes = size_t(l.pairs) * kUnitBytes;
  for (uint32 i = 0; i < count && l.subspaces > 0; i++)
    FastScanGetSlot(node + l.codes_offset + (i / 32) * block_bytes, 0, int(l.pairs),
                    int(l.subspaces), int(i % 32), codes + size_t(i) * l.subspaces);
  return count;
}

namespace {

uint32 ReadMetaWord(Relation index, VamanaWord word) {
  Buffer buf = ReadBuffer(index, kMetaBlock);
  LockBuffer(buf, BUFFER_LOCK_SHARE);
  const uint32 value = MetaPageData(BufferGetPage(buf))->variant_words[word];
  UnlockReleaseBuffer(buf);
  return value;
}

}  // namespace

uint32 ReadEntryPoint(Relation index) { return ReadMetaWord(index, kVamanaEntryPoint); }

BlockNumber ReadInsertHint(Relation index) { return ReadMetaWord(index, kVamanaInsertHint); }

bool CompareAndSetMetaWord(Relation index, VamanaWord word, uint32 expected, uint32 value) {
  Buffer buf = ReadBuffer(index, kMetaBlock);
  LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
  const bool same = MetaPageData(BufferGetPage(buf))->variant_words[word] == expected;
  if (same && expected != value) {
    GenericXLogState* state = GenericXLogStart(index);
    MetaPageData(GenericXLogRegisterBuffer(state, buf, 0))->variant_words[word] = value;
    GenericXLogFinish(state);
  }
  UnlockReleaseBuffer(buf);
  return same;
}

// ---- The page expander -------------------------------------------------------------------

namespace {

constexpr size_t kInitialExpandedSlots = 512;

size_t SlotOf(uint32_t id, size_t mask) {
  return size_t((id * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

}  // namespace

ExpandedNode& ExpandedNodes::Insert(uint32_t id) {
  if ((count_ + 1) * 2 > keys_.size()) Grow();
  const size_t mask = keys_.size() - 1;
  size_t i = SlotOf(id, mask);
  while (keys_[i] != kNoEntry && keys_[i] != id) i = (i + 1) & mask;
  if (keys_[i] == kNoEntry) {
    keys_[i] = id;
    count_++;
  }
  return values_[i];
}

const ExpandedNode* ExpandedNodes::Find(uint32_t id) const {
  if (keys_.empty()) return nullptr;
  const size_t mask = keys_.size() - 1;
  for (size_t i = SlotOf(id, mask); keys_[i] != kNoEntry; i = (i + 1) & mask)
    if (keys_[i] == id) return &values_[i];
  return nullptr;
}

void ExpandedNodes::Clear() {
  std::fill(keys_.begin(), keys_.end(), kNoEntry);
  count_ = 0;
}

void ExpandedNodes::Grow() {
  std::vector<uint32_t> keys(std::max(keys_.size() * 2, kInitialExpandedSlots), kNoEntry);
  std::vector<ExpandedNode> values(keys.size());
  const size_t mask = keys.size() - 1;
  for (size_t j = 0; j < keys_.size(); j++) {
    if (keys_[j] == kNoEntry) continue;
    size_t i = SlotOf(keys_[j], mask);
    while (keys[i] != kNoEntry) i = (i + 1) & mask;
    keys[i] = keys_[j];
    values[i] = values_[j];
  }
  keys_.swap(keys);
  values_.swap(values);
}

PageExpander::PageExpander(Relation index, const VamanaIndex& vi, bool keep_codes)
    : index_(index),
      vi_(vi),
      keep_codes_(keep_codes),
      ids_(vi.layout.degree_bound),
      scores_(size_t(Max(vi.layout.blocks, 1u)) * 32),
      own_(Max(vi.layout.own_code_bytes, 1u)) {}

void PageExpander::Reset() {
  seen_.Clear();
  codes_.clear();
  expansions_ = 0;
}

// Copies node's header, list and own code from its page, and with `score` its neighbours'
// scores; a slot that is not a node reads as a free node.  Plain C-style work between the pin
// and the release: nothing here throws.
void PageExpander::ReadNode(uint32_t node, bool score) {
  const VamanaNodeLayout& l = vi_.layout;
  const BlockNumber block = VamanaNodeBlock(l, node);
  const uint32 slot = VamanaNodeSlot(l, node);
  degree_ = 0;
  state_ = uint8(VamanaNodeState::kFree);
  record_ = 0;
  ItemPointerSetInvalid(&tid_);
  PgCall([&] {
    Buffer buf = ReadBufferRecent(index_, block);
    LockBuffer(buf, BUFFER_LOCK_SHARE);
    Page page = BufferGetPage(buf);
    if (!PageIsNew(page) && PageOpaque(page)->type == uint16(PageType::kVamanaNodes)) {
      uint8_t* n = VamanaNode(l, page, slot);
      const VamanaNodeHeader* h = VamanaHeader(n);
      tid_ = h->tid;
      state_ = h->state;
      degree_ =
          state_ == uint8(VamanaNodeState::kFree) ? 0 : Min(uint32(h->degree), l.degree_bound);
      std::memcpy(ids_.data(), n + l.ids_offset, 4 * size_t(degree_));
      std::memcpy(own_.data(), n + l.own_code_offset, l.own_code_bytes);
      if (score && degree_ > 0 && l.subspaces > 0) {
        std::memset(scores_.data(), 0, sizeof(uint16) * 32 * l.blocks);
        FastScanKernelsActive().accumulate_blocks(n + l.codes_offset, l.blocks,
                                                  size_t(l.pairs) * kUnitBytes, int(l.pairs), qlut_,
                                                  scores_.data());
      }
      if (l.record_bytes > 0)
        record_ = (uint64(block) << 16) | (size_t(slot) * l.node_bytes + l.record_offset);
    }
    UnlockReleaseBuffer(buf);
  });
}

size_t PageExpander::Expand(uint32_t node, const VisitedSet& visited, uint32_t* ids,
                            float* distances) {
  ReadNode(node, true);
  if (hidden_id_ != 0 && ItemPointerIsValid(&tid_) && TidToId(&tid_) == hidden_id_) {
    state_ = uint8(VamanaNodeState::kDeleted);
    degree_ = 0;
  }
  ExpandedNode& seen = seen_.Insert(node);
  seen.tid = tid_;
  seen.state = state_;
  seen.degree = uint8(degree_);
  seen.record = record_;
  seen.code_pos = 0;
  if (keep_codes_) {
    seen.code_pos = uint32(codes_.size());
    codes_.resize(codes_.size() + vi_.layout.subspaces);
    UnpackOwnCode(own_.data(), vi_.layout.subspaces, codes_.data() + seen.code_pos);
  }
  // Every neighbour goes back: the block was scored whole, and the search's own visited check
  // costs one hash probe where a check here would cost two.
  for (uint32 i = 0; i < degree_; i++) {
    ids[i] = ids_[i];
    distances[i] = float(scores_[i]);
  }
  const size_t count = degree_;
  if (++expansions_ % 64 == 0) PgCall([] { CHECK_FOR_INTERRUPTS(); });
  return count;
}

float PageExpander::ScoreNode(uint32_t node) {
  ReadNode(node, false);
  return float(ScoreOwnCode(own_.data(), vi_.layout.subspaces, qlut_));
}

const ExpandedNode* PageExpander::Seen(uint32_t node) const { return seen_.Find(node); }

// ---- Decoded node vectors ----------------------------------------------------------------

DecodedNodes::DecodedNodes(const VamanaIndex& vi, const ProductQuantizer* pq, const float* centroid)
    : vi_(vi), pq_(pq), centroid_(centroid) {}

void DecodedNodes::Put(uint32_t id, const uint8_t* codes) {
  const size_t dims = size_t(vi_.dims);
  auto [it, added] = at_.emplace(id, vectors_.size());
  if (added) vectors_.resize(vectors_.size() + dims);
  float* v = vectors_.data() + it->second;
  pq_->Decode(codes, v);
  for (size_t j = 0; j < dims; j++) v[j] += centroid_[j];
}

void DecodedNodes::PutExact(uint32_t id, const float* vec) {
  const size_t dims = size_t(vi_.dims);
  auto [it, added] = at_.emplace(id, vectors_.size());
  if (added) vectors_.resize(vectors_.size() + dims);
  std::copy(vec, vec + dims, vectors_.data() + it->second);
}

void DecodedNodes::Clear() {
  at_.clear();
  vectors_.clear();
}

float DecodedNodes::Distance(uint32_t a, uint32_t b) const {
  const DistanceKernels& k = Distances();
  const size_t dims = size_t(vi_.dims);
  if (vi_.params.metric == VamanaMetric::kL2) return k.l2_squared(Get(a), Get(b), dims);
  return -k.inner_product(Get(a), Get(b), dims);
}

// ---- Reachability repairs ------------------------------------------------------------------

void AddEdgeReplacingLast(Relation index, const VamanaIndex& vi, uint32 from, uint32 to,
                          const uint8_t* to_code, bool wal) {
  const VamanaNodeLayout& l = vi.layout;
  const uint32 m = l.subspaces;
  uint32* ids = static_cast<uint32*>(palloc(sizeof(uint32) * l.degree_bound));
  uint8_t* codes = static_cast<uint8_t*>(palloc(size_t(l.degree_bound) * Max(m, 1u)));
  Buffer buf = ReadBuffer(index, VamanaNodeBlock(l, from));
  LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
  uint8_t* node = VamanaNode(l, BufferGetPage(buf), VamanaNodeSlot(l, from));
  if (PageOpaque(BufferGetPage(buf))->type == uint16(PageType::kVamanaNodes) &&
      VamanaHeader(node)->state == uint8(VamanaNodeState::kLive)) {
    uint32 degree = GetNodeList(l, node, ids, codes);
    if (std::find(ids, ids + degree, to) == ids + degree) {
      const uint32 at = degree < l.degree_bound ? degree++ : degree - 1;
      ids[at] = to;
      std::memcpy(codes + size_t(at) * m, to_code, m);
      if (wal) {
        GenericXLogState* state = GenericXLogStart(index);
        Page image = GenericXLogRegisterBuffer(state, buf, 0);
        SetNodeList(l, VamanaNode(l, image, VamanaNodeSlot(l, from)), ids, codes, degree);
        GenericXLogFinish(state);
      } else {
        SetNodeList(l, node, ids, codes, degree);
        MarkBufferDirty(buf);
      }
    }
  }
  UnlockReleaseBuffer(buf);
  pfree(ids);
  pfree(codes);
}

void LinkUnreachableNode(Relation index, const VamanaIndex& vi, const ProductQuantizer* pq,
                         const float* centroid, uint32 u, uint32 entry, bool wal) {
  const VamanaNodeLayout& l = vi.layout;
  const uint32 m = l.subspaces;
  uint8_t* packed = static_cast<uint8_t*>(palloc(Max(l.own_code_bytes, 1u)));
  uint8_t* code = static_cast<uint8_t*>(palloc(Max(m, 1u)));
  Buffer buf = ReadBuffer(index, VamanaNodeBlock(l, u));
  LockBuffer(buf, BUFFER_LOCK_SHARE);
  std::memcpy(packed, VamanaNode(l, BufferGetPage(buf), VamanaNodeSlot(l, u)) + l.own_code_offset,
              l.own_code_bytes);
  UnlockReleaseBuffer(buf);
  UnpackOwnCode(packed, m, code);
  const LutMetric metric =
      vi.metric == Metric::kInnerProduct ? LutMetric::kInnerProduct : LutMetric::kL2;
  const uint32 from = CppGuard([&] {
    DecodedNodes decoded(vi, pq, centroid);
    decoded.Put(u, code);
    QueryLuts luts;
    luts.Prepare(*pq, metric, decoded.Get(u), &centroid, 1, size_t(work_mem) * 1024);
    PageExpander expander(index, vi, false);
    expander.SetTable(luts.Table(0));
    GreedySearch search(l.degree_bound);
    const Candidate start{expander.ScoreNode(entry), entry};
    search.Start(&start, 1, size_t(vi.params.build_list), u);
    search.Run(expander);
    uint32 nearest = kNoEntry, roomy = kNoEntry;
    float nearest_d = 0, roomy_d = 0;
    for (const Candidate& c : search.expanded()) {
      const ExpandedNode* seen = expander.Seen(c.id);
      if (c.id == u || seen->state != uint8(VamanaNodeState::kLive)) continue;
      if (nearest == kNoEntry || c.distance < nearest_d) nearest = c.id, nearest_d = c.distance;
      if (seen->degree < l.degree_bound && (roomy == kNoEntry || c.distance < roomy_d))
        roomy = c.id, roomy_d = c.distance;
    }
    return roomy != kNoEntry ? roomy : nearest;
  });
  if (from != kNoEntry) AddEdgeReplacingLast(index, vi, from, u, code, wal);
}

namespace {

// Search lists shorter than scann.reorder are searched at its length, so the ladder starts
// there (and at kMinCalibratedList); past kMaxCalibratedList a list costs more than most
// users would pay for the last thousandths of recall.
constexpr uint32 kMinCalibratedList = 10;
constexpr uint32 kMaxCalibratedList = 1000;

void VamanaLadder(const ScannMetaPage& meta, uint32* lowest, uint32* highest) {
  *lowest = Min(Max(kMinCalibratedList, uint32(Max(g_reorder, 1))), kMaxCalibratedList);
  *highest = kMaxCalibratedList;
}

const QueryKnobSpec kSearchList = {"search_list", &g_search_list, kDefaultSearchList, VamanaLadder};

}  // namespace

const VariantOps kVamanaOps = {"vamana",       nullptr,          VamanaBuild,   VamanaInsert,
                               &kVamanaSource, VamanaBulkDelete, VamanaCleanup, &kSearchList};

}  // namespace scann::pg
