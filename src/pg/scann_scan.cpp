// The search pipeline of one query:
//   rank the lists by centroid distance -> probe them a "ring" of scann.nprobe lists at a
//   time -> FastScan every block of the ring's lists against uint8 lookup tables (held
//   within work_mem, core/lut.h), keeping the best scann.reorder candidates by their exact
//   integer keys (a SIMD threshold test rejects the rest) -> fetch the candidates' heap
//   tuples in block order, compute exact distances, sort -> return.
// When the executor asks for more, the next batch takes the next-best candidates of the
// same ring (those whose key, then TID, comes after the last one taken; each batch of a ring
// twice the size of the one before), then the next ring of lists, up to scann.max_probes
// lists.  Every batch is in exact order; batches follow each other in approximate order.
#include "pg/scann_scan.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/distance.h"
#include "core/fastscan.h"
#include "core/kmeans.h"
#include "core/lut.h"
#include "core/pq.h"
#include "core/topk.h"
#include "pg/scann_index.h"
#include "pg/scann_list.h"
#include "pg/scann_options.h"
#include "pg/scann_vector.h"
#include "pg/vector_arg.h"

extern "C" {
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "executor/executor.h"
#include "executor/instrument.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/buf_internals.h"
#include "utils/memutils.h"
#include "utils/float.h"
}

namespace scann::pg {

namespace {

struct Result {
  ItemPointerData tid;
  double distance;
};

struct ScanState {
  // A copy of the metapage; centroids and codebooks are looked up through GetIndexState()
  // at each use, because a relcache flush (possible whenever a heap fetch takes a lock, as
  // detoasting does) frees the cached state.
  ScannMetaPage meta;
  Relation index;
  Metric metric;
  int dims;
  bool has_query;
  bool null_query;  // ORDER BY col <op> NULL: a zero query, rows in no meaningful order
  float* query;     // as given (exact distances)
  float* query_pq;  // normalized for cosine: what centroids and codes see
  int nprobe;
  int reorder;  // 0: approximate order, no heap fetches
  uint32 probe_limit;

  // Lists ranked by centroid distance, the first `ranked_count` of them so far; the current
  // ring is ranked[ring_begin, ring_end).
  int32* ranked;
  uint32 ranked_count;
  uint32 ring_begin;
  uint32 ring_end;
  bool ring_open;
  bool ring_done;  // the last batch took every remaining candidate of the ring
  bool exhausted;

  // Lookup tables of the ring, and its lists' centroids.
  QueryLuts* luts;
  const float** ring_centroids;

  // Candidates of the current batch, ranked by their integer keys (core/lut.h), and where
  // the last batch of this ring ended.  A ring's batches grow geometrically (base_batch,
  // twice that, ...), so a scan that keeps going rescans a ring O(log rows) times.
  KeyTopK* topk;
  uint32 base_batch;
  uint32 batch;
  uint32 results_cap;
  bool has_floor;
  int64 floor_key;
  uint64 floor_id;
  uint16* scores;
  uint32* selected;

  Result* results;
  int nresults;
  int next_result;

  IndexFetchTableData* fetch;
  TupleTableSlot* slot;
  EState* estate;
  IndexInfo* index_info;   // for expression indexes
  MemoryContext base_cxt;  // lives as long as the scan
  MemoryContext scan_cxt;  // reset by every rescan
  MemoryContext tuple_cxt;
};

// Whether the last re-ranking in this backend read heap blocks from outside shared buffers.
bool g_reorder_reads_seen = true;

// Which shared buffer last held a block, per backend, direct-mapped by relation and block.
// ReadRecentBuffer() pins that buffer after checking its tag: one buffer-header read,
// prefetched ahead, instead of a buffer-table lookup (several dependent cache misses).  A
// stale or colliding entry fails the check and falls back to ReadBuffer().
// GloVe-100, nprobe 40, reorder 100 (heap and list pages): ~245 -> ~200 us per query.
constexpr uint32 kRecentSlots = 1u << 16;
Buffer* g_recent = nullptr;

Buffer* RecentSlot(Relation rel, BlockNumber blkno) {
  if (!g_recent)
    g_recent = static_cast<Buffer*>(
        MemoryContextAllocZero(TopMemoryContext, sizeof(Buffer) * kRecentSlots));
  const uint32 h = (blkno * 0x9E3779B1u) ^ (rel->rd_node.relNode * 0x85EBCA77u);
  return &g_recent[(h ^ (h >> 16)) & (kRecentSlots - 1)];
}

void PrefetchRecent(Relation rel, BlockNumber blkno) {
  if (RelationUsesLocalBuffers(rel)) return;
  const Buffer b = *RecentSlot(rel, blkno);
  if (b > 0) __builtin_prefetch(GetBufferDescriptor(b - 1), 1);
}

// What ReadBuffer() does for the clock sweep and ReadRecentBuffer() does not (PostgreSQL 15
// pins with PinBuffer_Locked, which leaves the usage count alone): raises the usage count
// of a pinned shared buffer by one, up to BM_MAX_USAGE_COUNT, so that pages scans keep
// reading stay in shared buffers.  One compare-and-swap on the header state, the protocol
// of PinBuffer(); skipped while the header is locked or when the swap races, since the
// count is a hint.  Forcing every 8th read through ReadBuffer() instead cost ~10 us per
// query (GloVe-100, nprobe 40, reorder 100) in buffer-table lookups.
void RaiseUsageCount(Buffer buf) {
  BufferDesc* hdr = GetBufferDescriptor(buf - 1);
  uint32 state = pg_atomic_read_u32(&hdr->state);
  if ((state & BM_LOCKED) || BUF_STATE_GET_USAGECOUNT(state) >= BM_MAX_USAGE_COUNT) return;
  pg_atomic_compare_exchange_u32(&hdr->state, &state, state + BUF_USAGECOUNT_ONE);
}

Buffer ReadBufferRecent(Relation rel, BlockNumber blkno) {
  if (RelationUsesLocalBuffers(rel)) return ReadBuffer(rel, blkno);
  Buffer* slot = RecentSlot(rel, blkno);
  if (*slot > 0 && ReadRecentBuffer(rel->rd_node, MAIN_FORKNUM, blkno, *slot)) {
    RaiseUsageCount(*slot);
    pgstat_count_buffer_read(rel);
    pgstat_count_buffer_hit(rel);
    return *slot;
  }
  const Buffer buf = ReadBuffer(rel, blkno);
  *slot = buf;
  return buf;
}

uint64 TidToId(const ItemPointerData* tid) {
  return (uint64(ItemPointerGetBlockNumber(tid)) << 16) | ItemPointerGetOffsetNumber(tid);
}

void IdToTid(uint64 id, ItemPointer tid) {
  ItemPointerSet(tid, BlockNumber(id >> 16), OffsetNumber(id & 0xFFFF));
}

// Exact distance of a stored vector to the query, in the operator's own units.
double ExactDistance(const ScanState* so, const float* v) {
  const DistanceKernels& k = Distances();
  switch (so->metric) {
    case Metric::kL2:
      return std::sqrt(double(k.l2_squared(so->query, v, so->dims)));
    case Metric::kInnerProduct:
      return -double(k.inner_product(so->query, v, so->dims));
    case Metric::kCosine: {
      float parts[3];
      k.cosine_parts(so->query, v, so->dims, parts);
      return CosineDistanceFromParts(parts);
    }
  }
  return 0;
}

// An approximate score (what the codes give) in the operator's units, for scann.reorder = 0.
double ApproximateDistance(const ScanState* so, double score) {
  switch (so->metric) {
    case Metric::kL2:
      return std::sqrt(Max(score, 0.0));
    case Metric::kInnerProduct:
      return score;
    case Metric::kCosine:  // ||q - x||^2 = 2 - 2 cos for unit q and x
      return Max(score, 0.0) / 2.0;
  }
  return score;
}

// Ranks the `count` lists whose centroids are nearest the query (an untrained index has a
// single list).  Scans rank only what their rings need, and more when they go on.
void RankLists(ScanState* so, uint32 count) {
  const ScannMetaPage& meta = so->meta;
  so->ranked_count = count;
  if (!meta.trained) {
    so->ranked[0] = 0;
    return;
  }
  uint64* scratch = static_cast<uint64*>(palloc(sizeof(uint64) * meta.lists));
  const IndexState* state = GetIndexState(so->index);
  // L2, and cosine (unit centroids and query: L2 order is inner-product order); inner
  // product: the lists whose centroids score highest against the query.
  CppGuard([&] {
    RankCentroids(so->query_pq, state->centroids, state->norms, int(meta.lists), so->dims,
                  so->metric == Metric::kInnerProduct, int(count), so->ranked, scratch);
  });
  pfree(scratch);
}

// Lookup tables for the lists of the current ring, within work_mem (core/lut.h).
void BuildRingLuts(ScanState* so) {
  const ScannMetaPage& meta = so->meta;
  if (meta.subspaces == 0) return;
  const float* centroids = GetIndexState(so->index)->centroids;
  const uint32 ring = so->ring_end - so->ring_begin;
  for (uint32 i = 0; i < ring; i++)
    so->ring_centroids[i] = centroids + size_t(so->ranked[so->ring_begin + i]) * so->dims;
  const ProductQuantizer* pq = GetQuantizer(so->index);
  // Cosine ranks by the L2 distance of the normalized query to the normalized rows, whose
  // error is second order near the query (||e||^2 + 2 <q - x, e>), where the inner product's
  // is first order (<q, e>): on 3-d rows with every list probed, recall@10 was 0.44 through
  // inner-product tables and 1.00 through L2 ones; on GloVe-100 the same within 0.004.
  const LutMetric metric =
      so->metric == Metric::kInnerProduct ? LutMetric::kInnerProduct : LutMetric::kL2;
  CppGuard([&] {
    so->luts->Prepare(*pq, metric, so->query_pq, so->ring_centroids, int(ring),
                      size_t(work_mem) * 1024);
  });
}

// Whether (key, id) comes after the end of the previous batch of this ring.
inline bool AfterFloor(const ScanState* so, int64 key, uint64 id) {
  return !so->has_floor || key > so->floor_key || (key == so->floor_key && id > so->floor_id);
}

// Offers the slots of `nblocks` scored blocks (TIDs at tid_blocks + b * stride) of a list
// whose keys are offset + score, those that can enter the batch: all while it is not full,
// then those whose key is at most the batch's threshold, an exact integer test.
void OfferBlocks(ScanState* so, const uint8_t* tid_blocks, size_t stride, uint32 nblocks,
                 int64 offset) {
  const uint32 n = nblocks * 32;
  uint32 count = n;
  bool every_slot = true;
  if (so->topk->Full()) {
    const int64 room = so->topk->Threshold() - offset;  // largest score that may enter
    if (room < 0) return;
    if (room < 65535) {
      count = uint32(
          FastScanKernelsActive().select_below(so->scores, n, uint16(room + 1), so->selected));
      every_slot = false;
    }
  }
  for (uint32 j = 0; j < count; j++) {
    const uint32 i = every_slot ? j : so->selected[j];
    ItemPointerData tid;
    std::memcpy(&tid, tid_blocks + size_t(i / 32) * stride + (i % 32) * kTidBytes, kTidBytes);
    if (!ItemPointerIsValid(&tid)) continue;
    const int64 key = offset + so->scores[i];
    const uint64 id = TidToId(&tid);
    if (AfterFloor(so, key, id)) so->topk->Push(key, id);
  }
}

// Scores one list of the ring: whole blocks page by page, or one block over its pages.
void ScoreList(ScanState* so, Relation index, uint32 ring_index) {
  const ScannMetaPage& meta = so->meta;
  const uint32 s = meta.block_units, pairs = (meta.subspaces + 1) / 2;
  const uint8_t* qlut = nullptr;
  int64 offset = 0;
  if (meta.subspaces > 0) {
    qlut = CppGuard([&] { return so->luts->Table(int(ring_index)); });
    offset = so->luts->Offset(int(ring_index));
  }
  const FastScanKernels& k = FastScanKernelsActive();
  const BlockNumber first = ListFirstPage(index, uint32(so->ranked[so->ring_begin + ring_index]));
  uint8_t tids[32 * kTidBytes];
  uint32 block_unit = 0;  // position inside a block that spans pages
  for (BlockNumber blkno = first; blkno != InvalidBlockNumber;) {
    Buffer buf = ReadBufferRecent(index, blkno);
    LockBuffer(buf, BUFFER_LOCK_SHARE);
    Page page = BufferGetPage(buf);
    const uint32 used = PageUnits(page);
    if (s <= kUnitsPerPage) {
      uint32 nblocks = used / s;
      if (nblocks > 0) {
        std::memset(so->scores, 0, sizeof(uint16) * 32 * nblocks);
        if (pairs > 0)
          k.accumulate_blocks(PageUnit(page, kTidUnits), nblocks, s * kUnitBytes, int(pairs), qlut,
                              so->scores);
        OfferBlocks(so, PageUnit(page, 0), s * kUnitBytes, nblocks, offset);
      }
    } else {
      if (PageOpaque(page)->type == uint16(PageType::kList)) {
        std::memset(so->scores, 0, sizeof(uint16) * 32);
        std::memcpy(tids, PageUnit(page, 0), sizeof(tids));
        block_unit = 0;
      }
      uint32 first = Max(block_unit, kTidUnits);  // first code unit of the block on this page
      if (used > 0 && block_unit + used > kTidUnits)
        k.accumulate_blocks(PageUnit(page, first - block_unit), 1, 0,
                            int(block_unit + used - first),
                            qlut + size_t(first - kTidUnits) * kUnitBytes, so->scores);
      block_unit += used;
      if (block_unit == s) OfferBlocks(so, tids, 0, 1, offset);
    }
    blkno = PageOpaque(page)->next;
    UnlockReleaseBuffer(buf);
  }
  CHECK_FOR_INTERRUPTS();
}

// Opens the next ring of lists; false when the probe limit is reached.
bool OpenNextRing(ScanState* so) {
  if (so->ring_open) so->ring_begin = so->ring_end;
  uint32 lists = so->meta.lists;
  uint32 limit = Min(so->probe_limit, lists);
  if (so->ring_begin >= limit) return false;
  so->ring_end = Min(limit, so->ring_begin + uint32(so->nprobe));
  if (so->ring_end > so->ranked_count)
    RankLists(so, Min(limit, Max(so->ring_end, 2 * so->ranked_count)));
  so->ring_open = true;
  so->ring_done = false;
  so->has_floor = false;
  so->batch = so->base_batch;
  BuildRingLuts(so);
  return true;
}

// The indexed value of the fetched row (a column or an index expression).
Datum IndexedValue(ScanState* so, IndexScanDesc scan, bool* isnull) {
  AttrNumber attno = scan->indexRelation->rd_index->indkey.values[0];
  if (attno != 0) return slot_getattr(so->slot, attno, isnull);
  Datum values[INDEX_MAX_KEYS];
  bool nulls[INDEX_MAX_KEYS];
  ExprContext* econtext = GetPerTupleExprContext(so->estate);
  econtext->ecxt_scantuple = so->slot;
  FormIndexDatum(so->index_info, so->slot, so->estate, values, nulls);
  *isnull = nulls[0];
  return values[0];
}

// Exact order: distance, NaN last, then TID (a strict weak order, as std::sort needs).
bool ResultLess(const Result& x, const Result& y) {
  const bool xnan = std::isnan(x.distance), ynan = std::isnan(y.distance);
  if (xnan != ynan) return ynan;
  if (!xnan && x.distance != y.distance) return x.distance < y.distance;
  return TidToId(&x.tid) < TidToId(&y.tid);
}

bool TidLess(const Result& x, const Result& y) { return TidToId(&x.tid) < TidToId(&y.tid); }

// Pins the heap blocks of the next few candidates (the batch is in TID order) before any
// of them is read, then prefetches their line pointers and tuples.  Re-ranking one tuple at
// a time waits for a chain of cache misses per candidate (buffer table, buffer header, page
// header, line pointer, tuple); in groups, the misses of different candidates overlap.
// GloVe-100, nprobe 40, reorder 100: ~290 -> ~240 us per query with 4 blocks; 6 (with
// ReadBufferRecent) gained another ~5%.  The backend keeps its first 8 pins in an array and
// spills further ones into a hash table, which was slower (14 blocks: ~280 us).
struct HeapPinGroup {
  static constexpr int kBlocks = 6;
  BlockNumber blocks[kBlocks];
  Buffer bufs[kBlocks];
  int nbufs = 0;
  int end = 0;  // candidates [start, end) belong to the group

  // Pins the blocks of candidates [start, end) and gives each page the opportunistic prune
  // heapam's own index fetch gives a page it moves to.
  void Start(Relation heap, const Result* results, int start, int n) {
    Release();
    for (end = start; end < n; end++) {
      const BlockNumber b = ItemPointerGetBlockNumber(&results[end].tid);
      if (nbufs > 0 && b == blocks[nbufs - 1]) continue;
      if (nbufs == kBlocks) break;
      blocks[nbufs++] = b;
    }
    for (int j = 0; j < nbufs; j++) PrefetchRecent(heap, blocks[j]);
    for (int j = 0; j < nbufs; j++) bufs[j] = ReadBufferRecent(heap, blocks[j]);
    // Page headers (one wave of misses), line pointers (a second), then the tuples the line
    // pointers point to (a third).  The pages are pinned but not locked: line pointers are
    // read only to aim prefetches, and a stale one costs a useless prefetch, nothing else.
    for (int j = 0; j < nbufs; j++) __builtin_prefetch(BufferGetPage(bufs[j]));
    for (int j = 0; j < nbufs; j++) heap_page_prune_opt(heap, bufs[j]);
    for (int pass = 0; pass < 2; pass++) {
      for (int j = start; j < end; j++) {
        const char* page = BufferGetPage(BufferOf(ItemPointerGetBlockNumber(&results[j].tid)));
        const OffsetNumber off = ItemPointerGetOffsetNumber(&results[j].tid);
        if (off < FirstOffsetNumber || off > MaxHeapTuplesPerPage) continue;
        const ItemId lp = PageGetItemId(const_cast<char*>(page), off);
        if (pass == 0) {
          __builtin_prefetch(lp);
          continue;
        }
        const uint32 start_byte = ItemIdGetOffset(lp);
        const uint32 len = Min(ItemIdGetLength(lp), uint32(kTuplePrefetchBytes));
        if (start_byte < SizeOfPageHeaderData || start_byte + len > BLCKSZ) continue;
        for (uint32 b = 0; b < len; b += 64) __builtin_prefetch(page + start_byte + b);
      }
    }
  }

  // The pinned buffer of one of the group's blocks.
  Buffer BufferOf(BlockNumber blkno) const {
    int j = 0;
    while (blocks[j] != blkno) j++;
    return bufs[j];
  }

  void Release() {
    for (int k = 0; k < nbufs; k++) ReleaseBuffer(bufs[k]);
    nbufs = 0;
  }

  // Enough for a 100-d float4 row; longer rows are followed by the hardware prefetcher.
  static constexpr uint32 kTuplePrefetchBytes = 2048;
};

// Exact distances of the batch's candidates from their heap tuples, visible ones only.
void Reorder(ScanState* so, IndexScanDesc scan) {
  Relation heap = scan->heapRelation;
  int n = so->nresults;
  std::sort(so->results, so->results + n, TidLess);  // heap order: reads become hits
  // Prefetching costs a buffer-table lookup per block even when the block is cached, so it
  // is only done while re-ranking keeps missing shared buffers.
  if (g_reorder_reads_seen)
    for (int i = 0; i < n; i++)
      if (i == 0 || ItemPointerGetBlockNumber(&so->results[i].tid) !=
                        ItemPointerGetBlockNumber(&so->results[i - 1].tid))
        PrefetchBuffer(heap, MAIN_FORKNUM, ItemPointerGetBlockNumber(&so->results[i].tid));
  const int64 reads_before = pgBufferUsage.shared_blks_read;
  // Table AMs other than heap are read through the table AM only: their TIDs need not name
  // blocks of the relation.
  const bool pin_ahead = heap->rd_tableam == GetHeapamTableAmRoutine();
  const AttrNumber attno = scan->indexRelation->rd_index->indkey.values[0];
  HeapPinGroup group;
  int kept = 0;
  for (int i = 0; i < n; i++) {
    if (pin_ahead && i == group.end) group.Start(heap, so->results, i, n);
    MemoryContext old = MemoryContextSwitchTo(so->tuple_cxt);
    bool found, isnull = true;
    Datum value = 0;
    if (pin_ahead && attno != 0) {
      // Heap column: what heapam's index fetch does, on the buffer the group pinned, without
      // a second buffer-table lookup or a slot.  The value is read after the share lock is
      // released: the pin keeps the tuple in place (moving it needs a cleanup lock).
      const Buffer buf = group.BufferOf(ItemPointerGetBlockNumber(&so->results[i].tid));
      ItemPointerData tid = so->results[i].tid;
      HeapTupleData tuple;
      bool all_dead = false;
      LockBuffer(buf, BUFFER_LOCK_SHARE);
      found = heap_hot_search_buffer(&tid, heap, buf, scan->xs_snapshot, &tuple, &all_dead, true);
      LockBuffer(buf, BUFFER_LOCK_UNLOCK);
      if (found) value = heap_getattr(&tuple, attno, RelationGetDescr(heap), &isnull);
    } else {
      ItemPointerData tid = so->results[i].tid;
      bool call_again = false, all_dead = false;
      found = table_index_fetch_tuple(so->fetch, &tid, scan->xs_snapshot, so->slot, &call_again,
                                      &all_dead);
      if (found) value = IndexedValue(so, scan, &isnull);
    }
    if (found && !isnull) {
      VectorArg v = ReadVector(value, "indexed vector", false);  // checked at insert
      CheckSameDims(so->dims, v.dim);
      so->results[kept].tid = so->results[i].tid;
      so->results[kept++].distance = ExactDistance(so, v.data);
    }
    if (!TTS_EMPTY(so->slot)) ExecClearTuple(so->slot);
    MemoryContextSwitchTo(old);
    MemoryContextReset(so->tuple_cxt);
    if (so->estate) ResetPerTupleExprContext(so->estate);
  }
  group.Release();
  so->nresults = kept;
  g_reorder_reads_seen = pgBufferUsage.shared_blks_read != reads_before;
  std::sort(so->results, so->results + kept, ResultLess);
}

// The next batch of the same ring takes twice as many candidates (up to kMaxBatch), so that
// continuing costs O(log rows) scans of the ring instead of rows / scann.reorder.
void GrowBatch(ScanState* so) {
  constexpr uint32 kMaxBatch = 1u << 24;
  so->batch = Min(kMaxBatch, Max(so->batch, so->batch * 2));
  if (so->batch > so->results_cap) {
    so->results = static_cast<Result*>(repalloc_huge(so->results, sizeof(Result) * so->batch));
    so->results_cap = so->batch;
  }
}

// Collects the next batch of candidates; false when the probe limit is exhausted.
bool NextBatch(ScanState* so, IndexScanDesc scan) {
  for (;;) {
    if ((!so->ring_open || so->ring_done) && !OpenNextRing(so)) return false;
    CppGuard([&] { so->topk->Reset(so->batch); });
    for (uint32 i = 0; i < so->ring_end - so->ring_begin; i++)
      ScoreList(so, scan->indexRelation, i);
    if (so->topk->size() == 0) {
      if (!OpenNextRing(so)) return false;
      continue;
    }
    CppGuard([&] { so->topk->SortAscending(); });
    const KeyTopK& topk = *so->topk;
    so->has_floor = true;
    so->floor_key = topk[topk.size() - 1].score;
    so->floor_id = topk[topk.size() - 1].id;
    so->ring_done = topk.size() < so->batch;
    so->nresults = int(topk.size());
    const double scale = so->meta.subspaces > 0 ? so->luts->scale() : 1.0;
    for (int i = 0; i < so->nresults; i++) {
      IdToTid(topk[i].id, &so->results[i].tid);
      so->results[i].distance = ApproximateDistance(so, double(topk[i].score) / scale);
    }
    GrowBatch(so);
    so->next_result = 0;
    if (so->reorder > 0) Reorder(so, scan);
    if (so->nresults > 0) return true;
  }
}

// Total slots of an index: the capacity an untrained index's single batch needs.
// Counted on the pages rather than taken from the directory's block counts, which a crash
// between an insert's two WAL records can leave one block behind.
uint32 CountSlots(Relation index, const ScannMetaPage& meta) {
  double slots = 0;
  ForEachListPage(index, meta, BUFFER_LOCK_SHARE, [&](uint32, Buffer, Page page) {
    slots += 32.0 * (PageUnits(page) / meta.block_units);
  });
  return uint32(Min(slots + 32, double(PG_INT32_MAX / 2)));
}

// First call after a rescan: settings, query tables, list ranking.
void StartScan(ScanState* so, IndexScanDesc scan) {
  const ScannMetaPage& meta = so->meta;
  so->nprobe = g_nprobe;
  so->reorder = g_reorder;
  so->probe_limit = g_max_probes < 0 ? meta.lists : Max(uint32(g_max_probes), uint32(so->nprobe));
  so->probe_limit = Min(so->probe_limit, meta.lists);
  so->batch = so->reorder > 0 ? uint32(so->reorder) : 100;
  if (!meta.trained) {  // every row in one exactly re-ranked batch
    so->batch = CountSlots(scan->indexRelation, meta);
    so->reorder = Max(so->reorder, 1);
    so->nprobe = 1;
  }
  if (so->null_query) so->reorder = 0;  // no distance to rank by: skip the heap fetches
  so->base_batch = so->batch;
  const uint32 ring = std::min<uint32>(so->nprobe, meta.lists);
  if (meta.subspaces > 0) {
    so->luts = NewInContext<QueryLuts>(so->scan_cxt);
    so->ring_centroids = static_cast<const float**>(palloc(sizeof(float*) * ring));
  }
  uint32 per_page = std::max<uint32>(BlocksPerPage(meta.block_units), 1);
  so->scores = static_cast<uint16*>(palloc(sizeof(uint16) * 32 * per_page));
  so->selected = static_cast<uint32*>(palloc(sizeof(uint32) * 32 * per_page));
  so->results =
      static_cast<Result*>(MemoryContextAllocHuge(so->scan_cxt, sizeof(Result) * so->batch));
  so->results_cap = so->batch;
  if (!so->topk) so->topk = NewInContext<KeyTopK>(so->scan_cxt);
  so->ranked = static_cast<int32*>(palloc(sizeof(int32) * meta.lists));
  so->ranked_count = 0;
}

}  // namespace

IndexScanDesc BeginScan(Relation index, int nkeys, int norderbys) {
  IndexScanDesc scan = RelationGetIndexScan(index, nkeys, norderbys);
  scan->xs_orderbyvals = static_cast<Datum*>(palloc0(sizeof(Datum) * Max(norderbys, 1)));
  scan->xs_orderbynulls = static_cast<bool*>(palloc(sizeof(bool) * Max(norderbys, 1)));
  ScanState* so = static_cast<ScanState*>(palloc0(sizeof(ScanState)));
  so->meta = GetIndexState(index)->meta;
  so->index = index;
  so->metric = Metric(so->meta.metric);
  so->base_cxt = CurrentMemoryContext;
  so->scan_cxt = AllocSetContextCreate(CurrentMemoryContext, "scann scan", ALLOCSET_DEFAULT_SIZES);
  so->tuple_cxt =
      AllocSetContextCreate(CurrentMemoryContext, "scann scan tuple", ALLOCSET_DEFAULT_SIZES);
  scan->opaque = so;
  return scan;
}

void Rescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys, int norderbys) {
  ScanState* so = static_cast<ScanState*>(scan->opaque);
  if (orderbys && scan->numberOfOrderBys > 0)
    memmove(scan->orderByData, orderbys, scan->numberOfOrderBys * sizeof(ScanKeyData));
  // Per-query memory lives in scan_cxt; C++ objects in it are deleted with it.
  MemoryContextReset(so->scan_cxt);
  MemoryContext old = MemoryContextSwitchTo(so->scan_cxt);
  so->topk = nullptr;
  so->ring_begin = so->ring_end = 0;
  so->ring_open = so->ring_done = so->exhausted = false;
  so->ranked = nullptr;
  so->nresults = so->next_result = 0;
  so->has_query = so->null_query = false;
  so->dims = int(so->meta.dims);
  if (scan->numberOfOrderBys > 0 && (scan->orderByData[0].sk_flags & SK_ISNULL)) {
    // Every distance to NULL is NULL, so any order is correct: the indexed rows come back in
    // the order a zero query's codes give them (no heap fetches), as pgvector returns them.
    so->query = so->query_pq = static_cast<float*>(palloc0(sizeof(float) * Max(so->dims, 1)));
    so->has_query = so->null_query = true;
  } else if (scan->numberOfOrderBys > 0) {
    VectorArg q = ReadVector(scan->orderByData[0].sk_argument, "query vector");
    if (so->dims == 0) so->dims = q.dim;  // an untrained index built on an empty table
    CheckSameDims(so->dims, q.dim);
    so->query = static_cast<float*>(palloc(sizeof(float) * q.dim));
    std::memcpy(so->query, q.data, sizeof(float) * q.dim);
    so->query_pq = static_cast<float*>(palloc(sizeof(float) * q.dim));
    std::memcpy(so->query_pq, q.data, sizeof(float) * q.dim);
    if (so->metric == Metric::kCosine) Normalize(so->query_pq, q.dim);  // zero stays zero
    so->has_query = true;
  }
  MemoryContextSwitchTo(old);
}

bool GetTuple(IndexScanDesc scan, ScanDirection dir) {
  ScanState* so = static_cast<ScanState*>(scan->opaque);
  if (!so->has_query || so->exhausted) return false;
  if (!so->ranked) {
    if (!so->fetch) {
      MemoryContext old = MemoryContextSwitchTo(so->base_cxt);
      so->fetch = table_index_fetch_begin(scan->heapRelation);
      so->slot = table_slot_create(scan->heapRelation, nullptr);
      if (scan->indexRelation->rd_index->indkey.values[0] == 0) {
        so->estate = CreateExecutorState();
        so->index_info = BuildIndexInfo(scan->indexRelation);
      }
      MemoryContextSwitchTo(old);
    }
    MemoryContext old = MemoryContextSwitchTo(so->scan_cxt);
    StartScan(so, scan);
    MemoryContextSwitchTo(old);
    // pg_stat_*_indexes.idx_scan: counted by the access method, as btree and GiST do (the
    // executor counts only the tuples); without it the index looks unused.
    pgstat_count_index_scan(scan->indexRelation);
  }
  while (so->next_result >= so->nresults) {
    MemoryContext old = MemoryContextSwitchTo(so->scan_cxt);
    bool more = NextBatch(so, scan);
    MemoryContextSwitchTo(old);
    if (!more) {
      so->exhausted = true;
      return false;
    }
  }
  const Result& r = so->results[so->next_result++];
  scan->xs_heaptid = r.tid;
  scan->xs_recheck = false;
  scan->xs_recheckorderby = false;
  scan->xs_orderbyvals[0] = Float8GetDatum(r.distance);
  scan->xs_orderbynulls[0] = so->null_query;
  return true;
}

void EndScan(IndexScanDesc scan) {
  ScanState* so = static_cast<ScanState*>(scan->opaque);
  if (so->fetch) {
    table_index_fetch_end(so->fetch);
    ExecDropSingleTupleTableSlot(so->slot);
  }
  if (so->estate) FreeExecutorState(so->estate);
  MemoryContextDelete(so->scan_cxt);
  MemoryContextDelete(so->tuple_cxt);
  pfree(so);
  scan->opaque = nullptr;
}

}  // namespace scann::pg
