// The shared half of every scan: the query and settings, a variant's candidate source for
// batches of candidates (scann_scan.h), and the re-ranking and return of each batch: the
// candidates' heap tuples are fetched in block order, their exact distances computed, and
// the batch returned in exact order with the exact distance as the ORDER BY value (no recheck).
// When the executor asks for more, the source's next batch follows; batches follow each
// other in approximate order.
#include "pg/scann_scan.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/distance.h"
#include "core/sq8.h"
#include "core/topk.h"
#include "pg/recent_buffer.h"
#include "pg/scann_index.h"
#include "pg/scann_options.h"
#include "pg/scann_variant.h"
#include "pg/scann_vector.h"
#include "pg/vector_arg.h"

extern "C" {
#include "access/genam.h"
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
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/float.h"
}

namespace scann::pg {

namespace {

struct Result {
  ItemPointerData tid;
  double distance;  // exact, approximate, or a lower bound (recheck)
  uint64 record;    // where the candidate's re-ranking record is (0: none)
  bool exact;       // a batch re-ranked from records: the distance is exact anyway
};

// The ids a scan has returned, when a row may be a candidate more than once (a fanout above
// 1): an open-addressing set that doubles when half full.
struct IdSet {
  uint64* slots;  // 0 = empty (ids are TIDs: block and offset, never 0 for a valid TID)
  uint32 capacity;
  uint32 count;
};

// Inserts id; false when it was there already.
bool IdSetInsert(IdSet* set, uint64 id) {
  if (2 * (set->count + 1) > set->capacity) {
    const uint32 capacity = Max(2 * set->capacity, 1024u);
    IdSet grown = {
        static_cast<uint64*>(MemoryContextAllocExtended(
            CurrentMemoryContext, sizeof(uint64) * capacity, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO)),
        capacity, 0};
    for (uint32 i = 0; i < set->capacity; i++)
      if (set->slots[i]) IdSetInsert(&grown, set->slots[i]);
    if (set->slots) pfree(set->slots);
    *set = grown;
  }
  uint32 i = uint32((id * 0x9E3779B97F4A7C15ull) >> 32) & (set->capacity - 1);
  while (set->slots[i]) {
    if (set->slots[i] == id) return false;
    i = (i + 1) & (set->capacity - 1);
  }
  set->slots[i] = id;
  set->count++;
  return true;
}

struct ScanState {
  ScanContext sc;
  const CandidateSource* source;
  void* source_state;
  bool has_query;
  bool null_query;  // ORDER BY col <op> NULL: a zero query, rows in no meaningful order
  bool started;     // the source has begun for this rescan
  bool exhausted;
  float* query;    // as given (exact distances)
  int reorder;     // 0: approximate order, no heap fetches
  IdSet returned;  // fanout above 1 only
  // Exact distances come from the index's own kernel when it computes the ORDER BY operator's
  // values bit for bit (pg_scann's operators); otherwise from the operator's function itself,
  // called on the row and the query as given, in their type's own arithmetic (pgvector's loops
  // round differently from the kernels in the last bits).
  bool kernel_exact;
  bool convert;  // the column's type is read through support function 2
  FmgrInfo* operator_fn;
  Oid collation;
  Datum query_value;  // the ORDER BY argument, detoasted once
  // Re-ranking from the index's records (rerank = 'sq8'): the quantizer (a copy, so a relcache
  // flush cannot free it under the scan) and the query prepared for it; the batch's values
  // are then lower bounds the executor rechecks.
  ScalarQuantizer* sq;
  Sq8Query* sq_query;
  float* decoded;  // a record decoded (dims floats)
  bool recheck;

  Result* results;
  uint32 results_cap;
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

// Exact distance of a stored vector to the query, in the operator's own units.
double ExactDistance(const ScanState* so, const float* v) {
  const DistanceKernels& k = Distances();
  const size_t dims = size_t(so->sc.dims);
  switch (so->sc.metric) {
    case Metric::kL2:
      return std::sqrt(double(k.l2_squared(so->query, v, dims)));
    case Metric::kInnerProduct:
      return -double(k.inner_product(so->query, v, dims));
    case Metric::kCosine: {
      float parts[3];
      k.cosine_parts(so->query, v, dims, parts);
      return CosineDistanceFromParts(parts);
    }
  }
  return 0;
}

// Exact distance of a row's indexed value to the query, as the ORDER BY operator computes it.
double RowDistance(const ScanState* so, Relation index, Datum value) {
  if (!so->kernel_exact)
    return DatumGetFloat8(
        FunctionCall2Coll(so->operator_fn, so->collation, value, so->query_value));
  VectorArg v = ReadVector(so->convert ? ToRealArray(index, value) : value, "indexed vector",
                           false);  // checked at insert
  CheckSameDims(so->sc.dims, v.dim);
  return ExactDistance(so, v.data);
}

// An approximate score (what the codes give) in the operator's units, for scann.reorder = 0.
double ApproximateDistance(const ScanState* so, double score) {
  switch (so->sc.metric) {
    case Metric::kL2:
      return std::sqrt(Max(score, 0.0));
    case Metric::kInnerProduct:
      return score;
    case Metric::kCosine:  // ||q - x||^2 = 2 - 2 cos for unit q and x
      return Max(score, 0.0) / 2.0;
  }
  return score;
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
      so->results[kept].tid = so->results[i].tid;
      so->results[kept++].distance = RowDistance(so, scan->indexRelation, value);
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

// Room for n results.
void ReserveResults(ScanState* so, uint32 n) {
  if (n <= so->results_cap) return;
  so->results =
      static_cast<Result*>(so->results ? repalloc_huge(so->results, sizeof(Result) * n)
                                       : MemoryContextAllocHuge(so->scan_cxt, sizeof(Result) * n));
  so->results_cap = n;
}

// The distance of a candidate from its record: exact when the record stores the row exactly,
// else a lower bound (core/sq8.h).
void ScoreRecord(ScanState* so, const uint8_t* record, Result* r) {
  float eps;
  std::memcpy(&eps, record, sizeof(eps));
  const uint8_t* codes = record + sizeof(float);
  r->exact = eps == 0.0f && so->sc.metric != Metric::kCosine && so->kernel_exact;
  if (r->exact) {
    // The codes store the row exactly (integer data on a step-1 grid): decoded, they are the
    // row itself, bit for bit (core/sq8.h), so the operator's own kernel gives the operator's
    // own value and the executor need not fetch the row to recheck it.  (Cosine records hold
    // the normalized row: not the one the operator sees.  An operator the kernels do not
    // reproduce gets the bound and its recheck.)
    so->sq->Decode(codes, so->decoded);
    r->distance = ExactDistance(so, so->decoded);
    return;
  }
  switch (so->sc.metric) {
    case Metric::kL2:
      r->distance = Sq8L2LowerBound(*so->sq_query, *so->sq, codes, eps);
      break;
    case Metric::kInnerProduct:
      r->distance = Sq8NegativeDotLowerBound(*so->sq_query, codes, eps);
      break;
    case Metric::kCosine:
      r->distance = Sq8CosineLowerBound(*so->sq_query, codes, eps);
      break;
  }
}

// Orders the batch by lower bounds of the exact distances, from the candidates' records in the
// index instead of their heap tuples: the executor fetches only the rows it returns (and those
// whose bound undercuts them), recomputes their distances and orders them exactly
// (xs_recheckorderby).  Records are read in page order, one pin per page.
void RerankFromRecords(ScanState* so) {
  const int n = so->nresults;
  std::sort(so->results, so->results + n,
            [](const Result& a, const Result& b) { return a.record < b.record; });
  const uint32 record_bytes = so->sc.meta.record_bytes;
  // Records come from RAM, not the CPU's caches: the pages of the next few candidates are
  // pinned and all their records' lines prefetched before any is read, so the misses overlap
  // instead of following one another.
  constexpr int kPages = 8;
  Buffer bufs[kPages];
  BlockNumber pages[kPages];
  for (int start = 0; start < n;) {
    int npages = 0, end = start;
    for (; end < n; end++) {
      const BlockNumber page_no = RecordPage(so->results[end].record);
      if (npages > 0 && pages[npages - 1] == page_no) continue;
      if (npages == kPages) break;
      pages[npages] = page_no;
      bufs[npages++] = ReadBufferRecent(so->sc.index, page_no);
    }
    for (int i = start, p = 0; i < end; i++) {
      while (pages[p] != RecordPage(so->results[i].record)) p++;
      const char* record =
          PagePayload(BufferGetPage(bufs[p])) + RecordOffset(so->results[i].record);
      for (uint32 b = 0; b < record_bytes; b += 64) __builtin_prefetch(record + b);
    }
    for (int i = start, p = -1; i < end; i++) {
      Result& r = so->results[i];
      if (p < 0 || pages[p] != RecordPage(r.record)) {
        if (p >= 0) LockBuffer(bufs[p], BUFFER_LOCK_UNLOCK);
        while (pages[++p] != RecordPage(r.record)) {
        }
        LockBuffer(bufs[p], BUFFER_LOCK_SHARE);
      }
      const uint8_t* record =
          reinterpret_cast<const uint8_t*>(PagePayload(BufferGetPage(bufs[p]))) +
          RecordOffset(r.record);
      ScoreRecord(so, record, &r);
      if (i + 1 == end) LockBuffer(bufs[p], BUFFER_LOCK_UNLOCK);
    }
    for (int p = 0; p < npages; p++) ReleaseBuffer(bufs[p]);
    start = end;
  }
  std::sort(so->results, so->results + n, ResultLess);
}

// Takes the source's next batch (each TID once, for a fanout above 1) and re-ranks it; false
// when the source is exhausted.
bool NextBatch(ScanState* so, IndexScanDesc scan) {
  const bool dedup = so->sc.meta.fanout > 1;
  for (;;) {
    double scale = 1.0;
    if (!so->source->next_batch(&so->sc, so->source_state, &scale)) return false;
    const KeyTopK& topk = *so->sc.topk;
    ReserveResults(so, uint32(topk.size()));
    so->nresults = 0;
    for (size_t i = 0; i < topk.size(); i++) {
      if (dedup && !IdSetInsert(&so->returned, topk[i].id)) continue;
      Result& r = so->results[so->nresults++];
      IdToTid(topk[i].id, &r.tid);
      r.distance = ApproximateDistance(so, double(topk[i].score) / scale);
      r.record = topk[i].aux;
      r.exact = false;
    }
    so->next_result = 0;
    so->recheck = so->reorder > 0 && so->sq != nullptr;
    if (so->recheck)
      RerankFromRecords(so);
    else if (so->reorder > 0)
      Reorder(so, scan);
    if (so->nresults > 0) return true;
  }
}

// First call after a rescan: settings, then the variant's source for the query.
void StartScan(ScanState* so) {
  ScanContext* sc = &so->sc;
  const ScannMetaPage& meta = sc->meta;
  sc->knob = QueryKnob(meta);
  const QueryKnobSpec& knob = *VariantOf(meta).knob;
  if (*knob.setting < 0 && meta.calibration.points > 0)
    ereport(DEBUG1, (errmsg_internal("scann index \"%s\": %s %d for target recall %.3f",
                                     RelationGetRelationName(sc->index), knob.name, sc->knob,
                                     g_target_recall)));
  so->reorder = g_reorder;
  sc->probe_limit = g_max_probes < 0 ? UINT32_MAX : Max(uint32(g_max_probes), uint32(sc->knob));
  sc->batch = so->reorder > 0 ? uint32(so->reorder) : 100;
  if (!meta.trained) so->reorder = Max(so->reorder, 1);  // no codes: every row re-ranked
  if (so->null_query) so->reorder = 0;  // no distance to rank by: skip the heap fetches
  sc->scan_cxt = so->scan_cxt;
  sc->topk = NewInContext<KeyTopK>(so->scan_cxt);
  so->sq = nullptr;
  if (meta.record_bytes > 0 && meta.trained && so->reorder > 0) {
    const float* params = GetIndexState(sc->index)->sq8;
    so->sq = NewInContext<ScalarQuantizer>(so->scan_cxt, sc->dims, params);
    so->sq_query = NewInContext<Sq8Query>(so->scan_cxt);
    so->decoded = static_cast<float*>(palloc(sizeof(float) * sc->dims));
    CppGuard([&] { Sq8PrepareQuery(*so->sq, sc->query_pq, so->sq_query); });
  }
  so->source = VariantOf(meta).scan;
  so->source_state = so->source->begin(sc);
}

}  // namespace

IndexScanDesc BeginScan(Relation index, int nkeys, int norderbys) {
  IndexScanDesc scan = RelationGetIndexScan(index, nkeys, norderbys);
  scan->xs_orderbyvals = static_cast<Datum*>(palloc0(sizeof(Datum) * Max(norderbys, 1)));
  scan->xs_orderbynulls = static_cast<bool*>(palloc(sizeof(bool) * Max(norderbys, 1)));
  ScanState* so = static_cast<ScanState*>(palloc0(sizeof(ScanState)));
  so->sc.meta = GetIndexState(index)->meta;
  so->sc.index = index;
  so->sc.metric = Metric(so->sc.meta.metric);
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
  ScanContext* sc = &so->sc;
  sc->topk = nullptr;
  so->started = so->exhausted = false;
  so->results = nullptr;
  so->results_cap = 0;
  so->returned = IdSet{nullptr, 0, 0};
  so->nresults = so->next_result = 0;
  so->has_query = so->null_query = false;
  sc->dims = int(sc->meta.dims);
  if (scan->numberOfOrderBys > 0 && (scan->orderByData[0].sk_flags & SK_ISNULL)) {
    // Every distance to NULL is NULL, so any order is correct: the indexed rows come back in
    // the order a zero query's codes give them (no heap fetches), as pgvector returns them.
    so->query = static_cast<float*>(palloc0(sizeof(float) * Max(sc->dims, 1)));
    sc->query_pq = so->query;
    so->has_query = so->null_query = true;
  } else if (scan->numberOfOrderBys > 0) {
    const ScanKey key = &scan->orderByData[0];
    so->convert = OidIsValid(index_getprocid(scan->indexRelation, 1, kToRealProc));
    so->kernel_exact = ComputedByKernel(key->sk_func.fn_addr, sc->metric);
    so->operator_fn = &key->sk_func;
    so->collation = key->sk_collation;
    so->query_value = key->sk_argument;
    if (!so->kernel_exact && get_typlen(key->sk_subtype) == -1)
      so->query_value = PointerGetDatum(PG_DETOAST_DATUM(key->sk_argument));
    VectorArg q = ReadVector(ToRealArray(scan->indexRelation, key->sk_argument), "query vector");
    if (sc->dims == 0) sc->dims = q.dim;  // an untrained index built on an empty table
    CheckSameDims(sc->dims, q.dim);
    so->query = static_cast<float*>(palloc(sizeof(float) * q.dim));
    std::memcpy(so->query, q.data, sizeof(float) * q.dim);
    float* query_pq = static_cast<float*>(palloc(sizeof(float) * q.dim));
    std::memcpy(query_pq, q.data, sizeof(float) * q.dim);
    if (sc->metric == Metric::kCosine) Normalize(query_pq, q.dim);  // zero stays zero
    sc->query_pq = query_pq;
    so->has_query = true;
  }
  MemoryContextSwitchTo(old);
}

bool GetTuple(IndexScanDesc scan, ScanDirection dir) {
  ScanState* so = static_cast<ScanState*>(scan->opaque);
  if (!so->has_query || so->exhausted) return false;
  if (!so->started) {
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
    StartScan(so);
    MemoryContextSwitchTo(old);
    so->started = true;
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
  scan->xs_recheckorderby = so->recheck && !r.exact;
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
