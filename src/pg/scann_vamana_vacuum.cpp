// VACUUM of a vamana index (FreshDiskANN's delete consolidation), following the protocol of
// scann_page.h: mark the nodes of dead rows kDeleted -> wait until no insert that started before
// the marks is running (the metapage's page lock) -> replace the entry point if it was deleted
// -> repair every live node that points to a deleted one (RobustPrune of its live neighbours
// and its deleted neighbours' live neighbours, from decoded codes) -> free the deleted nodes and
// lower the insert hint to the first page that has one -> link the live nodes no path from the
// entry point reaches any more.  Also: the graph statistics and check of scann_index_info.
#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "pg/scann_vamana.h"

extern "C" {
#include "access/generic_xlog.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/indexfsm.h"
#include "storage/lmgr.h"
}

namespace scann::pg {

namespace {

// The graph as VACUUM sees it: lists and codes read from the pages, the deleted nodes from its
// own first step, distances from decoded codes; a list is written under its page's exclusive
// lock, merged with what inserts appended since it was read.
class VacuumStore : public GraphStore {
 public:
  VacuumStore(Relation index, const VamanaIndex& vi, const std::unordered_set<uint32_t>& deleted,
              DecodedNodes* decoded)
      : index_(index), vi_(vi), deleted_(deleted), decoded_(decoded) {}

  size_t Capacity() const override { return vi_.layout.degree_bound; }

  size_t GetNeighbors(uint32_t node, uint32_t* ids) override {
    const VamanaNodeLayout& l = vi_.layout;
    const uint32 m = l.subspaces;
    std::vector<uint8_t> own(m), codes(size_t(l.degree_bound) * m);
    uint32 degree = 0;
    PgCall([&] {
      Buffer buf = ReadBuffer(index_, VamanaNodeBlock(l, node));
      LockBuffer(buf, BUFFER_LOCK_SHARE);
      const uint8_t* n = VamanaNode(l, BufferGetPage(buf), VamanaNodeSlot(l, node));
      if (VamanaHeader(const_cast<uint8_t*>(n))->state != uint8(VamanaNodeState::kFree)) {
        degree = GetNodeList(l, n, ids, codes.data());
        UnpackOwnCode(n + l.own_code_offset, m, own.data());
      }
      UnlockReleaseBuffer(buf);
    });
    read_[node].assign(ids, ids + degree);
    Remember(node, own.data());
    for (uint32 i = 0; i < degree; i++) Remember(ids[i], codes.data() + size_t(i) * m);
    return degree;
  }

  void SetNeighbors(uint32_t node, const uint32_t* ids, size_t count) override;

  void Distances(uint32_t from, const uint32_t* to, size_t count, float* out) override {
    for (size_t i = 0; i < count; i++) out[i] = decoded_->Distance(from, to[i]);
  }

  bool IsDeleted(uint32_t node) override { return deleted_.count(node) > 0; }

  // Forgets what was read (between nodes).
  void Clear() {
    read_.clear();
    codes_.clear();
    decoded_->Clear();
  }

 private:
  void Remember(uint32_t node, const uint8_t* code) {
    const uint32 m = vi_.layout.subspaces;
    auto [it, added] = codes_.emplace(node, std::vector<uint8_t>(code, code + m));
    if (added) decoded_->Put(node, code);
  }

  Relation index_;
  VamanaIndex vi_;
  const std::unordered_set<uint32_t>& deleted_;
  DecodedNodes* decoded_;
  std::unordered_map<uint32_t, std::vector<uint32_t>> read_;  // lists as read
  std::unordered_map<uint32_t, std::vector<uint8_t>> codes_;  // own codes seen
};

// The repaired list, with the entries an insert appended since the read (they are live: no
// insert links to a deleted node after VACUUM's wait), as room allows.  Everything is sized
// before the page is locked: nothing under the lock allocates.
void VacuumStore::SetNeighbors(uint32_t node, const uint32_t* ids, size_t count) {
  const VamanaNodeLayout& l = vi_.layout;
  const uint32 m = l.subspaces;
  const size_t bound = l.degree_bound;
  std::vector<uint32_t> current(bound), merged(bound);
  std::vector<uint8_t> current_codes(bound * m), codes(bound * m);
  size_t n = Min(count, bound);
  for (size_t i = 0; i < n; i++) {
    merged[i] = ids[i];
    std::memcpy(codes.data() + i * m, codes_.at(ids[i]).data(), m);
  }
  const std::vector<uint32_t>& before = read_.at(node);
  PgCall([&] {
    Buffer buf = ReadBuffer(index_, VamanaNodeBlock(l, node));
    LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
    uint8_t* live = VamanaNode(l, BufferGetPage(buf), VamanaNodeSlot(l, node));
    if (VamanaHeader(live)->state == uint8(VamanaNodeState::kLive)) {
      const uint32 degree = GetNodeList(l, live, current.data(), current_codes.data());
      for (uint32 i = 0; i < degree && n < bound; i++)
        if (std::find(before.begin(), before.end(), current[i]) == before.end() &&
            std::find(merged.begin(), merged.begin() + n, current[i]) == merged.begin() + n) {
          merged[n] = current[i];
          std::memcpy(codes.data() + n * m, current_codes.data() + size_t(i) * m, m);
          n++;
        }
      GenericXLogState* state = GenericXLogStart(index_);
      Page image = GenericXLogRegisterBuffer(state, buf, 0);
      SetNodeList(l, VamanaNode(l, image, VamanaNodeSlot(l, node)), merged.data(), codes.data(),
                  uint32(n));
      GenericXLogFinish(state);
    }
    UnlockReleaseBuffer(buf);
  });
}

struct Marked {
  std::unordered_set<uint32_t>* deleted;  // nodes in state kDeleted (new and left by a crash)
  double live;
  double removed;
};

// Step 1: every live node whose row is dead becomes kDeleted; collects all deleted nodes.
void MarkDeleted(IndexVacuumInfo* info, const VamanaIndex& vi, IndexBulkDeleteCallback callback,
                 void* callback_state, Marked* marked) {
  Relation index = info->index;
  const VamanaNodeLayout& l = vi.layout;
  const BlockNumber nblocks = RelationGetNumberOfBlocks(index);
  uint32 dead[kPagePayload / sizeof(VamanaNodeHeader)];
  for (BlockNumber block = vi.first_node_block; block < nblocks; block++) {
    vacuum_delay_point();
    Buffer buf = ReadBufferExtended(index, MAIN_FORKNUM, block, RBM_NORMAL, info->strategy);
    LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
    Page page = BufferGetPage(buf);
    uint32 ndead = 0;
    if (!PageIsNew(page) && PageOpaque(page)->type == uint16(PageType::kVamanaNodes)) {
      for (uint32 slot = 0; slot < l.nodes_per_page; slot++) {
        VamanaNodeHeader* h = VamanaHeader(VamanaNode(l, page, slot));
        if (h->state == uint8(VamanaNodeState::kDeleted)) {
          CppGuard([&] { marked->deleted->insert(VamanaNodeId(l, block, slot)); });
        } else if (h->state == uint8(VamanaNodeState::kLive)) {
          ItemPointerData tid = h->tid;
          if (callback(&tid, callback_state))
            dead[ndead++] = slot;
          else
            marked->live += 1;
        }
      }
    }
    if (ndead > 0) {
      GenericXLogState* state = GenericXLogStart(index);
      Page image = GenericXLogRegisterBuffer(state, buf, 0);
      for (uint32 i = 0; i < ndead; i++)
        VamanaHeader(VamanaNode(l, image, dead[i]))->state = uint8(VamanaNodeState::kDeleted);
      GenericXLogFinish(state);
      marked->removed += ndead;
      CppGuard([&] {
        for (uint32 i = 0; i < ndead; i++) marked->deleted->insert(VamanaNodeId(l, block, dead[i]));
      });
    }
    UnlockReleaseBuffer(buf);
  }
}

// Step 3: a live entry point for a deleted one (or none left).
void ReplaceEntry(Relation index, const VamanaIndex& vi, VacuumStore* store,
                  const std::unordered_set<uint32_t>& deleted) {
  const uint32 entry = ReadEntryPoint(index);
  if (entry == kNoEntry || deleted.count(entry) == 0) return;
  const uint32 replacement = CppGuard([&] {
    VamanaScratch scratch(vi.layout.degree_bound);
    const uint32 found = ReplaceEntryPoint(entry, *store, &scratch);
    store->Clear();
    return found;
  });
  CompareAndSetMetaWord(index, kVamanaEntryPoint, entry, replacement);
}

// Step 4: every live node with a deleted out-neighbour gets its list repaired.
double Consolidate(IndexVacuumInfo* info, const VamanaIndex& vi, VacuumStore* store,
                   const std::unordered_set<uint32_t>& deleted) {
  Relation index = info->index;
  const VamanaNodeLayout& l = vi.layout;
  const BlockNumber nblocks = RelationGetNumberOfBlocks(index);
  VamanaParams params = vi.params;
  params.check_interrupts = CheckInterrupts;
  VamanaScratch* scratch = NewInContext<VamanaScratch>(CurrentMemoryContext, l.degree_bound);
  std::vector<uint32> repair;
  double repaired = 0;
  for (BlockNumber block = vi.first_node_block; block < nblocks; block++) {
    vacuum_delay_point();
    repair.clear();
    Buffer buf = ReadBufferExtended(index, MAIN_FORKNUM, block, RBM_NORMAL, info->strategy);
    LockBuffer(buf, BUFFER_LOCK_SHARE);
    Page page = BufferGetPage(buf);
    if (!PageIsNew(page) && PageOpaque(page)->type == uint16(PageType::kVamanaNodes))
      for (uint32 slot = 0; slot < l.nodes_per_page; slot++) {
        const uint8_t* node = VamanaNode(l, page, slot);
        if (VamanaHeader(const_cast<uint8_t*>(node))->state != uint8(VamanaNodeState::kLive))
          continue;
        const uint32 degree =
            Min(uint32(VamanaHeader(const_cast<uint8_t*>(node))->degree), l.degree_bound);
        for (uint32 i = 0; i < degree; i++)
          if (deleted.count(VamanaNeighbor(l, node, i))) {
            repair.push_back(VamanaNodeId(l, block, slot));
            break;
          }
      }
    UnlockReleaseBuffer(buf);
    for (uint32 p : repair) {
      CppGuard([&] {
        ConsolidateNode(p, params, *store, scratch);
        store->Clear();
      });
      repaired += 1;
    }
  }
  return repaired;
}

// Step 5: the deleted nodes become free; the insert hint moves down to the first page freed.
void FreeDeleted(IndexVacuumInfo* info, const VamanaIndex& vi,
                 const std::unordered_set<uint32_t>& deleted) {
  Relation index = info->index;
  const VamanaNodeLayout& l = vi.layout;
  std::vector<uint32> ids(deleted.begin(), deleted.end());
  std::sort(ids.begin(), ids.end());
  BlockNumber lowest = InvalidBlockNumber;
  for (size_t i = 0; i < ids.size();) {
    vacuum_delay_point();
    const BlockNumber block = VamanaNodeBlock(l, ids[i]);
    Buffer buf = ReadBufferExtended(index, MAIN_FORKNUM, block, RBM_NORMAL, info->strategy);
    LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
    GenericXLogState* state = GenericXLogStart(index);
    Page image = GenericXLogRegisterBuffer(state, buf, 0);
    for (; i < ids.size() && VamanaNodeBlock(l, ids[i]) == block; i++) {
      uint8_t* node = VamanaNode(l, image, VamanaNodeSlot(l, ids[i]));
      if (VamanaHeader(node)->state == uint8(VamanaNodeState::kDeleted))
        std::memset(node, 0, l.node_bytes);
    }
    GenericXLogFinish(state);
    UnlockReleaseBuffer(buf);
    if (lowest == InvalidBlockNumber) lowest = block;
  }
  for (;;) {
    const BlockNumber hint = ReadInsertHint(index);
    if (lowest == InvalidBlockNumber || hint <= lowest ||
        CompareAndSetMetaWord(index, kVamanaInsertHint, hint, lowest))
      break;
  }
}

}  // namespace

IndexBulkDeleteResult* VamanaBulkDelete(IndexVacuumInfo* info, IndexBulkDeleteResult* stats,
                                        IndexBulkDeleteCallback callback, void* callback_state) {
  Relation index = info->index;
  if (stats == nullptr)
    stats = static_cast<IndexBulkDeleteResult*>(palloc0(sizeof(IndexBulkDeleteResult)));
  const VamanaIndex vi = VamanaIndexOf(ReadMetaPage(index));
  Marked marked = {NewInContext<std::unordered_set<uint32_t>>(CurrentMemoryContext), 0, 0};
  MarkDeleted(info, vi, callback, callback_state, &marked);
  stats->tuples_removed += marked.removed;
  stats->num_index_tuples = marked.live;
  stats->num_pages = RelationGetNumberOfBlocks(index);
  const std::unordered_set<uint32_t>& deleted = *marked.deleted;
  if (deleted.empty()) return stats;
  // Every insert that began before the marks has ended once this lock is granted; later ones
  // see the marks and never link to a deleted node.
  LockPage(index, kMetaBlock, ExclusiveLock);
  UnlockPage(index, kMetaBlock, ExclusiveLock);
  if (vi.trained) {
    DecodedNodes* decoded = NewInContext<DecodedNodes>(
        CurrentMemoryContext, vi, GetQuantizer(index), GetIndexState(index)->centroids);
    VacuumStore* store =
        NewInContext<VacuumStore>(CurrentMemoryContext, index, vi, deleted, decoded);
    ReplaceEntry(index, vi, store, deleted);
    Consolidate(info, vi, store, deleted);
  }
  FreeDeleted(info, vi, deleted);
  // Last, the live nodes the repairs left unreachable (FreshDiskANN's consolidation does not
  // promise every node an in-edge) get one, as at build.
  if (vi.trained)
    RepairUnreachable(index, vi, GetQuantizer(index), GetIndexState(index)->centroids,
                      ReadEntryPoint(index), true);
  return stats;
}

IndexBulkDeleteResult* VamanaCleanup(IndexVacuumInfo* info, IndexBulkDeleteResult* stats) {
  if (info->analyze_only) return stats;
  Relation index = info->index;
  const ScannMetaPage meta = ReadMetaPage(index);
  const VamanaIndex vi = VamanaIndexOf(meta);
  const bool count = stats == nullptr;
  if (count) stats = static_cast<IndexBulkDeleteResult*>(palloc0(sizeof(IndexBulkDeleteResult)));
  // All-zero pages: an insert extended the index and failed before its record initialized the
  // page.  The extension lock, held while the length is read, is held by an inserter until it
  // has locked its new page, so a page being added is never seen all-zero here.
  const bool need_lock = !RELATION_IS_LOCAL(index);
  if (need_lock) LockRelationForExtension(index, ExclusiveLock);
  const BlockNumber nblocks = RelationGetNumberOfBlocks(index);
  if (need_lock) UnlockRelationForExtension(index, ExclusiveLock);
  double live = 0;
  BlockNumber free_pages = 0;
  for (BlockNumber block = vi.first_node_block; block < nblocks; block++) {
    vacuum_delay_point();
    Buffer buf = ReadBufferExtended(index, MAIN_FORKNUM, block, RBM_NORMAL, info->strategy);
    LockBuffer(buf, BUFFER_LOCK_SHARE);
    Page page = BufferGetPage(buf);
    if (PageIsReusable(page)) {
      RecordFreeIndexPage(index, block);
      free_pages++;
    } else if (count && PageOpaque(page)->type == uint16(PageType::kVamanaNodes)) {
      for (uint32 slot = 0; slot < vi.layout.nodes_per_page; slot++)
        live +=
            VamanaHeader(VamanaNode(vi.layout, page, slot))->state == uint8(VamanaNodeState::kLive);
    }
    UnlockReleaseBuffer(buf);
  }
  IndexFreeSpaceMapVacuum(index);
  if (count) stats->num_index_tuples = live;
  stats->pages_free = free_pages;
  stats->num_pages = nblocks;
  stats->estimated_count = false;
  return stats;
}

namespace {

// Node states by id for the node pages below nblocks (kStateFree, kStateLive, kStateDeleted;
// MarkReachable turns reached live nodes into kStateReached).
enum : uint8 { kStateFree = 0, kStateLive = 1, kStateDeleted = 2, kStateReached = 3 };

uint8* ReadStates(Relation index, const VamanaIndex& vi, BlockNumber nblocks) {
  const VamanaNodeLayout& l = vi.layout;
  const uint64 ids = uint64(nblocks) * l.nodes_per_page;
  uint8* state =
      static_cast<uint8*>(palloc_extended(Max(ids, uint64(1)), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO));
  for (BlockNumber block = vi.first_node_block; block < nblocks; block++) {
    Buffer buf = ReadBuffer(index, block);
    LockBuffer(buf, BUFFER_LOCK_SHARE);
    Page page = BufferGetPage(buf);
    if (!PageIsNew(page) && PageOpaque(page)->type == uint16(PageType::kVamanaNodes))
      for (uint32 slot = 0; slot < l.nodes_per_page; slot++) {
        const uint8 s = VamanaHeader(VamanaNode(l, page, slot))->state;
        state[VamanaNodeId(l, block, slot)] = s == uint8(VamanaNodeState::kLive) ? kStateLive
                                              : s == uint8(VamanaNodeState::kDeleted)
                                                  ? kStateDeleted
                                                  : kStateFree;
      }
    UnlockReleaseBuffer(buf);
    CHECK_FOR_INTERRUPTS();
  }
  return state;
}

// Marks the live nodes reachable from `from` (itself included) through live nodes; returns how
// many it marked.  queue: room for every live node.
int64 MarkReachable(Relation index, const VamanaNodeLayout& l, uint8* state, uint64 ids,
                    uint32 from, uint32* queue) {
  if (from >= ids || state[from] != kStateLive) return 0;
  int64 head = 0, tail = 0;
  state[from] = kStateReached;
  queue[tail++] = from;
  while (head < tail) {
    const uint32 v = queue[head++];
    Buffer buf = ReadBuffer(index, VamanaNodeBlock(l, v));
    LockBuffer(buf, BUFFER_LOCK_SHARE);
    const uint8_t* node = VamanaNode(l, BufferGetPage(buf), VamanaNodeSlot(l, v));
    const uint32 degree =
        Min(uint32(VamanaHeader(const_cast<uint8_t*>(node))->degree), l.degree_bound);
    for (uint32 i = 0; i < degree; i++) {
      const uint32 w = VamanaNeighbor(l, node, i);
      if (w < ids && state[w] == kStateLive) {
        state[w] = kStateReached;
        queue[tail++] = w;
      }
    }
    UnlockReleaseBuffer(buf);
    if (head % 1024 == 0) CHECK_FOR_INTERRUPTS();
  }
  return tail;
}

}  // namespace

void RepairUnreachable(Relation index, const VamanaIndex& vi, const ProductQuantizer* pq,
                       const float* centroid, uint32 entry, bool wal) {
  if (entry == kNoEntry) return;
  const VamanaNodeLayout& l = vi.layout;
  const BlockNumber nblocks = RelationGetNumberOfBlocks(index);
  const uint64 ids = uint64(nblocks) * l.nodes_per_page;
  uint8* state = ReadStates(index, vi, nblocks);
  uint32* queue =
      static_cast<uint32*>(palloc_extended(sizeof(uint32) * Max(ids, uint64(1)), MCXT_ALLOC_HUGE));
  MarkReachable(index, l, state, ids, entry, queue);
  for (uint64 u = uint64(vi.first_node_block) * l.nodes_per_page; u < ids; u++) {
    if (state[u] != kStateLive) continue;
    vacuum_delay_point();
    LinkUnreachableNode(index, vi, pq, centroid, uint32(u), entry, wal);
    MarkReachable(index, l, state, ids, uint32(u), queue);
  }
  pfree(queue);
  pfree(state);
}

VamanaGraphStats VamanaGraphInfo(Relation index, const ScannMetaPage& meta) {
  const VamanaIndex vi = VamanaIndexOf(meta);
  const VamanaNodeLayout& l = vi.layout;
  VamanaGraphStats st = {};
  st.min_degree = -1;
  const uint32 entry = ReadEntryPoint(index);
  st.entry_point = entry == kNoEntry ? -1 : int64(entry);
  const BlockNumber nblocks = RelationGetNumberOfBlocks(index);
  const uint64 ids = uint64(nblocks) * l.nodes_per_page;
  uint8* state = ReadStates(index, vi, nblocks);
  double degree_sum = 0;
  for (BlockNumber block = vi.first_node_block; block < nblocks; block++) {
    Buffer buf = ReadBuffer(index, block);
    LockBuffer(buf, BUFFER_LOCK_SHARE);
    Page page = BufferGetPage(buf);
    if (!PageIsNew(page) && PageOpaque(page)->type == uint16(PageType::kVamanaNodes))
      for (uint32 slot = 0; slot < l.nodes_per_page; slot++) {
        const uint8_t* node = VamanaNode(l, page, slot);
        const VamanaNodeHeader* h = VamanaHeader(const_cast<uint8_t*>(node));
        const uint32 id = VamanaNodeId(l, block, slot);
        st.live += h->state == uint8(VamanaNodeState::kLive);
        st.deleted += h->state == uint8(VamanaNodeState::kDeleted);
        st.free += h->state == uint8(VamanaNodeState::kFree);
        if (h->state != uint8(VamanaNodeState::kLive)) continue;
        const int64 degree = h->degree;
        degree_sum += degree;
        st.min_degree = st.min_degree < 0 ? degree : Min(st.min_degree, degree);
        st.max_degree = Max(st.max_degree, degree);
        for (uint32 i = 0; i < Min(uint32(degree), l.degree_bound); i++) {
          const uint32 v = VamanaNeighbor(l, node, i);
          st.bad_edges += v >= ids || state[v] != kStateLive || v == id;
        }
      }
    UnlockReleaseBuffer(buf);
    CHECK_FOR_INTERRUPTS();
  }
  st.mean_degree = st.live > 0 ? degree_sum / double(st.live) : 0;
  if (st.min_degree < 0) st.min_degree = 0;
  uint32* queue =
      static_cast<uint32*>(palloc_extended(sizeof(uint32) * Max(ids, uint64(1)), MCXT_ALLOC_HUGE));
  st.unreachable = st.live - MarkReachable(index, l, state, ids, entry, queue);
  pfree(queue);
  pfree(state);
  return st;
}

}  // namespace scann::pg
