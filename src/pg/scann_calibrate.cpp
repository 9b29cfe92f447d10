#include "pg/scann_calibrate.h"

#include <algorithm>
#include <cmath>

#include "core/rng.h"
#include "pg/scann_index.h"
#include "pg/scann_options.h"
#include "pg/scann_scan.h"
#include "pg/scann_variant.h"
#include "pg/scann_vector.h"
#include "pg/vector_arg.h"

extern "C" {
#include "access/generic_xlog.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_class.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
}

namespace scann::pg {

namespace {

// Recall above which higher knobs are not measured, and the plateau where they stop too:
// past this recall, a step that gains less than kPlateauGain (the scann.reorder candidates,
// not the partitions searched, then bound the recall).
constexpr double kSaturated = 0.999;
constexpr double kPlateauFrom = 0.95;
constexpr double kPlateauGain = 0.005;

// The knob values to measure, into knobs[kCalibrationPoints]: from `lowest` up to `limit` in
// roughly geometric steps; returns how many.
int Ladder(uint32 lowest, uint32 limit, uint32* knobs) {
  lowest = Max(lowest, 1u);
  limit = Max(limit, lowest);
  const double ratio =
      std::max(1.25, std::pow(double(limit) / lowest, 1.0 / (kCalibrationPoints - 1)));
  int n = 0;
  for (double v = lowest; n < kCalibrationPoints;) {
    const uint32 k = Min(limit, uint32(std::lround(v)));
    if (n == 0 || k > knobs[n - 1]) knobs[n++] = k;
    if (k >= limit) break;
    v = std::max(v * ratio, double(k + 1));
  }
  return n;
}

// Recall of one knob value: every query's first batch (all of which the scan re-ranks) against
// its neighbours.
double RecallAt(Relation index, const ScannMetaPage& meta, const float* queries, int nq,
                const NeighborTruth& truth, uint32 knob, MemoryContext cxt) {
  const CandidateSource* source = VariantOf(meta).scan;
  double sum = 0;
  const uint32 batch = uint32(Max(g_reorder, 1));
  for (int q = 0; q < nq; q++) {
    MemoryContext old = MemoryContextSwitchTo(cxt);
    ScanContext sc = {};
    sc.meta = meta;
    sc.index = index;
    sc.metric = Metric(meta.metric);
    sc.dims = int(meta.dims);
    sc.query_pq = queries + size_t(q) * meta.dims;
    sc.knob = int(knob);
    sc.probe_limit = knob;
    sc.batch = batch;
    sc.hidden_id = truth.query_id(q) == kNoQueryRow ? 0 : truth.query_id(q);
    sc.scan_cxt = cxt;
    sc.topk = NewInContext<KeyTopK>(cxt);
    void* state = source->begin(&sc);
    double scale;
    size_t n = 0;
    uint64* ids = nullptr;
    if (source->next_batch(&sc, state, &scale)) {
      ids = static_cast<uint64*>(palloc(sizeof(uint64) * Max(sc.topk->size(), size_t(1))));
      for (; n < sc.topk->size(); n++) ids[n] = (*sc.topk)[n].id;
    }
    MemoryContextSwitchTo(old);
    sum += CppGuard([&] { return truth.Recall(q, ids, n); });
    MemoryContextReset(cxt);
    CHECK_FOR_INTERRUPTS();
  }
  return sum / nq;
}

}  // namespace

int CalibrationQueries(int dims, uint32 sample_rows) {
  const size_t by_size = kCalibrationFloats / size_t(Max(dims, 1));
  return int(Min(size_t(Min(uint32(kCalibrationQueries), sample_rows)), by_size));
}

ScannCalibration MeasureCalibration(Relation index, const float* queries, int nq,
                                    const NeighborTruth& truth) {
  const ScannMetaPage meta = ReadMetaPage(index);
  ScannCalibration c = {};
  c.queries = uint16(nq);
  c.reorder = uint32(Max(g_reorder, 1));
  c.measured_at = GetCurrentTimestamp();
  if (!meta.trained || nq == 0) return c;
  MemoryContext cxt =
      AllocSetContextCreate(CurrentMemoryContext, "scann calibration", ALLOCSET_DEFAULT_SIZES);
  uint32 knobs[kCalibrationPoints];
  uint32 lowest, highest;
  VariantOf(meta).knob->ladder(meta, &lowest, &highest);
  const int steps = Ladder(lowest, highest, knobs);
  for (int i = 0; i < steps; i++) {
    const double recall = RecallAt(index, meta, queries, nq, truth, knobs[i], cxt);
    const bool plateau = c.points > 0 && recall >= kPlateauFrom &&
                         recall - c.recall[c.points - 1] < kPlateauGain;
    c.knob[c.points] = knobs[i];
    c.recall[c.points++] = float(recall);
    if (recall >= kSaturated || plateau) break;
  }
  MemoryContextDelete(cxt);
  return c;
}

}  // namespace scann::pg

namespace scann::pg {

namespace {

// Rows of a recalibration: a reservoir of query rows (pass 1), then every row in chunks
// for their neighbours (pass 2).
struct Recalibration {
  Relation index;
  Metric metric;
  int dims;
  MemoryContext row_cxt;
  float* vec;
  // Pass 1.
  Rng* rng;
  int cap;
  int taken;
  double seen;
  float* queries;
  uint64* ids;
  // Pass 2.
  NeighborTruth* truth;
  float* chunk;
  uint64* chunk_ids;
  uint32 chunk_rows;
  uint32 chunk_cap;
};

void SampleQueryRow(Relation, ItemPointer tid, Datum* values, bool* isnull, bool, void* arg) {
  Recalibration* r = static_cast<Recalibration*>(arg);
  if (isnull[0]) return;
  const uint64 slot = r->taken < r->cap ? uint64(r->taken) : r->rng->Below(uint64(r->seen) + 1);
  r->seen += 1;
  if (slot >= uint64(r->cap)) return;
  MemoryContext old = MemoryContextSwitchTo(r->row_cxt);
  if (ReadIndexVector(values[0], r->metric, r->dims, r->index, tid, r->vec, nullptr)) {
    std::copy(r->vec, r->vec + r->dims, r->queries + size_t(slot) * r->dims);
    r->ids[slot] = TidToId(tid);
    if (int(slot) == r->taken) r->taken++;
  }
  MemoryContextSwitchTo(old);
  MemoryContextReset(r->row_cxt);
  CHECK_FOR_INTERRUPTS();
}

void FlushTruthChunk(Recalibration* r) {
  if (r->chunk_rows == 0) return;
  CppGuard([&] { r->truth->Add(r->chunk, r->chunk_ids, r->chunk_rows); });
  r->chunk_rows = 0;
  CHECK_FOR_INTERRUPTS();
}

void AddTruthRow(Relation, ItemPointer tid, Datum* values, bool* isnull, bool, void* arg) {
  Recalibration* r = static_cast<Recalibration*>(arg);
  if (isnull[0]) return;
  MemoryContext old = MemoryContextSwitchTo(r->row_cxt);
  if (ReadIndexVector(values[0], r->metric, r->dims, r->index, tid,
                      r->chunk + size_t(r->chunk_rows) * r->dims, nullptr))
    r->chunk_ids[r->chunk_rows++] = TidToId(tid);
  MemoryContextSwitchTo(old);
  MemoryContextReset(r->row_cxt);
  if (r->chunk_rows == r->chunk_cap) FlushTruthChunk(r);
}

// The calibration queries the caller gives: the first r->cap vectors `sql` returns, in the
// indexed column's type.  NULLs and (under cosine) zero vectors are skipped; none left fails.
void ReadSuppliedQueries(const char* sql, Recalibration* r) {
  const Oid want = TupleDescAttr(RelationGetDescr(r->index), 0)->atttypid;
  if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "SPI_connect failed");
  const int rc = SPI_execute(sql, true, r->cap);  // its first rows only
  if (rc != SPI_OK_SELECT || SPI_tuptable == nullptr)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("queries must be a SELECT returning one vector per row")));
  TupleDesc desc = SPI_tuptable->tupdesc;
  if (desc->natts != 1 || TupleDescAttr(desc, 0)->atttypid != want)
    ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                    errmsg("queries must return a single column of type %s",
                           format_type_be(want)),
                    desc->natts == 1
                        ? errdetail("It returns type %s.",
                                    format_type_be(TupleDescAttr(desc, 0)->atttypid))
                        : errdetail("It returns %d columns.", desc->natts)));
  for (uint64 i = 0; i < SPI_processed && r->taken < r->cap; i++) {
    bool isnull;
    const Datum value = SPI_getbinval(SPI_tuptable->vals[i], desc, 1, &isnull);
    if (isnull) continue;
    VectorArg v = ReadVector(ToRealArray(r->index, value), "calibration query");
    CheckSameDims(r->dims, v.dim);
    float* out = r->queries + size_t(r->taken) * r->dims;
    std::copy(v.data, v.data + v.dim, out);
    if (r->metric == Metric::kCosine && !Normalize(out, r->dims)) continue;
    r->ids[r->taken++] = kNoQueryRow;  // no row of the table is the query itself
  }
  SPI_finish();
  if (r->taken == 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("queries returned no vector to calibrate with"),
                    errhint("Pass NULL to calibrate with rows of the table.")));
}

// One pass over the visible rows of the table (with the root TIDs of HOT chains, as the index
// holds them).
void ScanRows(Relation heap, Relation index, IndexInfo* info, IndexBuildCallback callback,
              void* state) {
  Snapshot snapshot = RegisterSnapshot(GetTransactionSnapshot());
  TableScanDesc scan = table_beginscan_strat(heap, snapshot, 0, nullptr, true, false);
  table_index_build_scan(heap, index, info, true, false, callback, state, scan);  // ends it
  UnregisterSnapshot(snapshot);
}

// The index's calibration, written to its metapage (WAL-logged).  The transaction takes an
// xid first, so that its commit record flushes the WAL and carries the relcache invalidation
// to standbys: their sessions then drop the metapage they cached and choose knobs from the
// new calibration, as sessions of the primary do.
void StoreCalibration(Relation index, const ScannCalibration& c) {
  (void)GetTopTransactionId();
  Buffer buf = ReadBuffer(index, kMetaBlock);
  LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
  GenericXLogState* state = GenericXLogStart(index);
  MetaPageData(GenericXLogRegisterBuffer(state, buf, 0))->calibration = c;
  GenericXLogFinish(state);
  UnlockReleaseBuffer(buf);
  CacheInvalidateRelcache(index);
}

}  // namespace

}  // namespace scann::pg

extern "C" {

PG_FUNCTION_INFO_V1(scann_recalibrate);

// scann_recalibrate(index, queries): measures the index's recall again on its current rows,
// for random rows of the table or for the rows `queries` returns.
Datum scann_recalibrate(PG_FUNCTION_ARGS) {
  using namespace scann::pg;
  if (PG_ARGISNULL(0))
    ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                    errmsg("scann_recalibrate needs an index, not NULL")));
  const Oid relid = PG_GETARG_OID(0);
  // Ownership before the lock (an index of another kind fails in OpenScannIndex).
  const Oid owner_heap = IndexGetRelation(relid, true);
  if (owner_heap != InvalidOid && !pg_class_ownercheck(owner_heap, GetUserId()))
    ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                    errmsg("must be owner of table %s", get_rel_name(owner_heap)),
                    errdetail("scann_recalibrate writes the index's metapage.")));
  Relation index = OpenScannIndex(relid, RowExclusiveLock, "scann_recalibrate");
  const Oid heap_oid = index->rd_index->indrelid;
  const ScannMetaPage meta = ReadMetaPage(index);
  if (!meta.trained)
    ereport(ERROR,
            (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
             errmsg("scann index \"%s\" has no quantizers to calibrate",
                    RelationGetRelationName(index)),
             errdetail("It was built on fewer than %u rows.", kMinTrainingRows),
             errhint("REINDEX the index after loading rows.")));
  Relation heap = table_open(heap_oid, AccessShareLock);
  IndexInfo* info = BuildIndexInfo(index);
  Recalibration r = {};
  r.index = index;
  r.metric = Metric(meta.metric);
  r.dims = int(meta.dims);
  r.row_cxt = AllocSetContextCreate(CurrentMemoryContext, "scann recalibration row",
                                    ALLOCSET_DEFAULT_SIZES);
  r.vec = static_cast<float*>(palloc(sizeof(float) * r.dims));
  r.rng = new (palloc(sizeof(scann::Rng))) scann::Rng(0xCA11B4A7E5ull);
  r.cap = CalibrationQueries(r.dims, kCalibrationQueries);
  r.queries = static_cast<float*>(palloc(sizeof(float) * size_t(r.cap) * r.dims));
  r.ids = static_cast<uint64*>(palloc(sizeof(uint64) * r.cap));
  const bool supplied = !PG_ARGISNULL(1);
  if (supplied)
    ReadSuppliedQueries(text_to_cstring(PG_GETARG_TEXT_PP(1)), &r);
  else
    ScanRows(heap, index, info, SampleQueryRow, &r);
  r.truth = NewInContext<scann::NeighborTruth>(CurrentMemoryContext, r.queries, r.ids, r.taken,
                                               r.dims, r.metric == Metric::kInnerProduct,
                                               kCalibrationK);
  r.chunk_cap = uint32(Max(size_t(1), Min(size_t(4096), (size_t(8) << 20) / (sizeof(float) * r.dims))));
  r.chunk = static_cast<float*>(palloc(sizeof(float) * size_t(r.chunk_cap) * r.dims));
  r.chunk_ids = static_cast<uint64*>(palloc(sizeof(uint64) * r.chunk_cap));
  ScanRows(heap, index, info, AddTruthRow, &r);
  FlushTruthChunk(&r);
  ScannCalibration c = MeasureCalibration(index, r.queries, r.taken, *r.truth);
  c.rows = r.seen;
  c.source = uint8(supplied ? CalibrationSource::kSupplied : CalibrationSource::kRows);
  StoreCalibration(index, c);
  table_close(heap, AccessShareLock);
  relation_close(index, RowExclusiveLock);
  PG_RETURN_VOID();
}

}  // extern "C"
