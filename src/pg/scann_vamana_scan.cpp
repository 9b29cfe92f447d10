// The vamana variant's candidate source: a beam search (core/vamana.h GreedySearch) from the
// entry point with a list of ScanContext::knob candidates (scann.search_list, or as the
// index's calibration chooses it; scann.reorder if larger), each
// expanded node one page read and one FastScan call over its neighbours' codes (scann_page.h)
// against the query's quantized table -> every candidate of the list, by its exact integer key
// (offset + score), in one batch for the shared re-ranking.
//
// When the executor asks for more (a WHERE clause rejected rows, or LIMIT exceeds the
// candidates), the list widens (twice as long each time, up to kMaxWidenedList or
// its first size if larger) and the search runs on from where it stopped; its candidates
// come in approximate order and never twice.  Once the list has run out, the scan sweeps every
// node page: the live nodes the search did not return, by their own codes, in batches of
// growing size after the last key returned, so a scan that keeps going returns every row of
// the index, also those no path from the entry point reaches.
#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "core/lut.h"
#include "pg/recent_buffer.h"
#include "pg/scann_options.h"
#include "pg/scann_vamana.h"

extern "C" {
#include "miscadmin.h"
}

namespace scann::pg {

namespace {

// Past this list size the search stops widening and the scan sweeps the node pages: each
// candidate the search inserts costs O(list) (a sorted vector).
constexpr uint32 kMaxWidenedList = 2048;
constexpr uint32 kMaxBatch = 1u << 24;
// Nodes a search touches per entry of its list (about 20 per expansion on GloVe and
// Fashion-MNIST at R 32): the visited set is sized for them up front.
constexpr size_t kVisitedPerListEntry = 24;

enum class Phase { kSearch, kSweep, kDone };

struct VamanaScan {
  VamanaIndex vi;
  Phase phase;
  QueryLuts* luts;
  const uint8_t* qlut;
  int64 offset;
  double scale;
  PageExpander* expander;
  GreedySearch* search;
  Candidate* out;  // Next()'s output
  uint32 out_cap;
  uint32 list_size;
  uint32 list_cap;
  bool need_run;
  uint32 batch;
  std::unordered_set<uint32_t>* returned;  // nodes the search returned
  // The sweep: candidates after (floor_key, floor_id).
  bool has_floor;
  int64 floor_key;
  uint64 floor_id;
};

uint32 GrowBatch(uint32 batch) { return Min(kMaxBatch, Max(batch, batch * 2)); }

// The query's quantized table: one "list" whose centroid is the codes' centroid.
void PrepareTable(ScanContext* sc, VamanaScan* vs) {
  const float* centroid = GetIndexState(sc->index)->centroids;
  const ProductQuantizer* pq = GetQuantizer(sc->index);
  const LutMetric metric =
      sc->metric == Metric::kInnerProduct ? LutMetric::kInnerProduct : LutMetric::kL2;
  vs->luts = NewInContext<QueryLuts>(sc->scan_cxt);
  CppGuard([&] {
    vs->luts->Prepare(*pq, metric, sc->query_pq, &centroid, 1, size_t(work_mem) * 1024);
    vs->qlut = vs->luts->Table(0);
  });
  vs->offset = vs->luts->Offset(0);
  vs->scale = vs->luts->scale();
}

void* Begin(ScanContext* sc) {
  VamanaScan* vs = static_cast<VamanaScan*>(palloc0(sizeof(VamanaScan)));
  vs->vi = VamanaIndexOf(sc->meta);
  vs->scale = 1.0;
  vs->batch = sc->batch;
  vs->returned = NewInContext<std::unordered_set<uint32_t>>(sc->scan_cxt);
  const uint32 entry = ReadEntryPoint(sc->index);
  if (!vs->vi.trained || entry == kNoEntry) {
    // No codes (every row in one batch, re-ranked exactly) or no graph: sweep at once.
    vs->phase = Phase::kSweep;
    if (!vs->vi.trained)
      vs->batch =
          uint32(Min(double(RelationGetNumberOfBlocks(sc->index)) * vs->vi.layout.nodes_per_page,
                     double(kMaxBatch)));
    return vs;
  }
  PrepareTable(sc, vs);
  vs->phase = Phase::kSearch;
  // Every candidate of the list is re-ranked (coarse codes rank the list's candidates poorly:
  // GloVe-100 50,000 rows, search list 800, recall@10 0.813 re-ranking the best 100 by code,
  // 0.973 re-ranking all 800), so the list holds at least scann.reorder candidates.
  vs->list_size = Max(uint32(Max(sc->knob, 1)), vs->batch);
  vs->batch = vs->list_size;
  vs->list_cap = Max(vs->list_size, kMaxWidenedList);
  vs->expander = NewInContext<PageExpander>(sc->scan_cxt, sc->index, vs->vi, false);
  vs->search = NewInContext<GreedySearch>(sc->scan_cxt, vs->vi.layout.degree_bound);
  vs->expander->SetTable(vs->qlut);
  vs->expander->Hide(sc->hidden_id);
  CppGuard([&] {
    const Candidate start{vs->expander->ScoreNode(entry), entry};
    vs->search->Start(&start, 1, vs->list_size);
    vs->search->Reserve(size_t(vs->list_size) * kVisitedPerListEntry);
  });
  vs->need_run = true;
  return vs;
}

// The search's next candidates that are live rows into the collector; false when the list
// has none left to return.
bool TakeFromSearch(ScanContext* sc, VamanaScan* vs) {
  if (vs->out_cap < vs->batch) {
    vs->out = static_cast<Candidate*>(
        vs->out ? repalloc_huge(vs->out, sizeof(Candidate) * vs->batch)
                : palloc_extended(sizeof(Candidate) * vs->batch, MCXT_ALLOC_HUGE));
    vs->out_cap = vs->batch;
  }
  for (;;) {
    if (vs->need_run) {
      CppGuard([&] { vs->search->Run(*vs->expander); });
      vs->need_run = false;
    }
    const size_t n = CppGuard([&] { return vs->search->Next(vs->batch, vs->out); });
    if (n == 0) return false;
    CppGuard([&] {
      sc->topk->Reset(n);
      for (size_t i = 0; i < n; i++) {
        const ExpandedNode* seen = vs->expander->Seen(vs->out[i].id);
        if (seen == nullptr || seen->state != uint8(VamanaNodeState::kLive) ||
            !ItemPointerIsValid(&seen->tid))
          continue;
        vs->returned->insert(vs->out[i].id);
        sc->topk->Push(vs->offset + int64(vs->out[i].distance), TidToId(&seen->tid), seen->record);
      }
    });
    if (sc->topk->size() > 0) return true;
  }
}

// Widens the search's list for more candidates; false when it may not grow (or has no more).
bool Widen(VamanaScan* vs) {
  if (vs->search->Exhausted() || vs->list_size >= vs->list_cap) return false;
  vs->list_size = Min(vs->list_cap, vs->list_size * 2);
  CppGuard([&] { vs->search->Widen(vs->list_size); });
  vs->need_run = true;
  return true;
}

inline bool AfterFloor(const VamanaScan* vs, int64 key, uint64 id) {
  return !vs->has_floor || key > vs->floor_key || (key == vs->floor_key && id > vs->floor_id);
}

// One pass over every node page: the best `batch` live nodes the search did not return whose
// (key, TID) come after the floor.
void SweepPages(ScanContext* sc, VamanaScan* vs) {
  const VamanaNodeLayout& l = vs->vi.layout;
  const BlockNumber nblocks = RelationGetNumberOfBlocks(sc->index);
  KeyTopK* topk = sc->topk;
  for (BlockNumber block = vs->vi.first_node_block; block < nblocks; block++) {
    Buffer buf = ReadBufferRecent(sc->index, block);
    LockBuffer(buf, BUFFER_LOCK_SHARE);
    Page page = BufferGetPage(buf);
    if (!PageIsNew(page) && PageOpaque(page)->type == uint16(PageType::kVamanaNodes)) {
      for (uint32 slot = 0; slot < l.nodes_per_page; slot++) {
        uint8_t* node = VamanaNode(l, page, slot);
        const VamanaNodeHeader* h = VamanaHeader(node);
        if (h->state != uint8(VamanaNodeState::kLive) || !ItemPointerIsValid(&h->tid)) continue;
        const int64 key = l.subspaces > 0 ? vs->offset + ScoreOwnCode(node + l.own_code_offset,
                                                                      l.subspaces, vs->qlut)
                                          : 0;
        const uint64 id = TidToId(&h->tid);
        if (!AfterFloor(vs, key, id) || (topk->Full() && key > topk->Threshold())) continue;
        if (vs->returned->count(VamanaNodeId(l, block, slot))) continue;
        topk->Push(key, id,
                   l.record_bytes
                       ? (uint64(block) << 16) | (size_t(slot) * l.node_bytes + l.record_offset)
                       : 0);
      }
    }
    UnlockReleaseBuffer(buf);
    CHECK_FOR_INTERRUPTS();
  }
}

bool Sweep(ScanContext* sc, VamanaScan* vs, double* scale) {
  CppGuard([&] { sc->topk->Reset(vs->batch); });
  SweepPages(sc, vs);
  if (sc->topk->size() == 0) {
    vs->phase = Phase::kDone;
    return false;
  }
  CppGuard([&] { sc->topk->SortAscending(); });
  const KeyTopK& topk = *sc->topk;
  vs->has_floor = true;
  vs->floor_key = topk[topk.size() - 1].score;
  vs->floor_id = topk[topk.size() - 1].id;
  *scale = vs->scale;
  vs->batch = GrowBatch(vs->batch);
  return true;
}

bool NextBatch(ScanContext* sc, void* state, double* scale) {
  VamanaScan* vs = static_cast<VamanaScan*>(state);
  while (vs->phase == Phase::kSearch) {
    if (TakeFromSearch(sc, vs)) {
      CppGuard([&] { sc->topk->SortAscending(); });
      *scale = vs->scale;
      vs->batch = GrowBatch(vs->batch);
      return true;
    }
    if (!Widen(vs)) vs->phase = Phase::kSweep;
  }
  if (vs->phase == Phase::kSweep) return Sweep(sc, vs, scale);
  return false;
}

}  // namespace

const CandidateSource kVamanaSource = {Begin, NextBatch};

}  // namespace scann::pg
