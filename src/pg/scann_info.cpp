// scann_index_info(index): what a scann index holds, read from its pages, for deciding
// when it needs a REINDEX (built untrained, grown far past its build, lists lopsided).
#include "pg/scann_index.h"
#include "pg/scann_list.h"
#include "pg/scann_vamana.h"
#include "pg/scann_variant.h"

extern "C" {
#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/index.h"
#include "catalog/pg_class.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/array.h"
#include "catalog/pg_type.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
}

namespace scann::pg {

namespace {

// Growth of the index (rows filed since, over rows calibrated on) past which its calibration
// counts as stale.
constexpr double kStaleGrowth = 1.25;

const char* MetricName(uint16 metric) {
  switch (Metric(metric)) {
    case Metric::kL2:
      return "l2";
    case Metric::kInnerProduct:
      return "ip";
    case Metric::kCosine:
      return "cosine";
  }
  return "unknown";
}

// The types of scann_index_info's columns, in order, as sql/pg_scann--*.sql declares them.
constexpr Oid kInfoColumnTypes[] = {
    BOOLOID, TEXTOID, TEXTOID, INT4OID, INT4OID, INT4OID, INT4OID, INT4OID, INT4OID, FLOAT8OID,
    INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID, INT4ARRAYOID, FLOAT4ARRAYOID,
    TIMESTAMPTZOID, BOOLOID, TEXTOID,
    // vamana's graph
    INT4OID, INT8OID, INT8OID, INT4OID, FLOAT8OID, INT4OID, INT8OID, INT8OID};
constexpr int kInfoColumns = int(sizeof(kInfoColumnTypes) / sizeof(kInfoColumnTypes[0]));

// Errors when the function's SQL definition in this database is not the one this library
// fills (a library installed over a database whose extension objects are older): forming the
// row with the wrong types would crash the backend.
void CheckInfoColumns(TupleDesc desc) {
  bool same = desc->natts == kInfoColumns;
  for (int i = 0; same && i < kInfoColumns; i++)
    same = TupleDescAttr(desc, i)->atttypid == kInfoColumnTypes[i];
  if (!same)
    ereport(ERROR,
            (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
             errmsg("scann_index_info's SQL definition does not match the installed pg_scann "
                    "library"),
             errdetail("The library returns %d columns; this database's function declares %d, "
                       "or other types.",
                       kInfoColumns, desc->natts),
             errhint("Recreate the extension's objects: DROP EXTENSION pg_scann CASCADE; CREATE "
                     "EXTENSION pg_scann; (its indexes are dropped with it and must be created "
                     "again).")));
}

// The columns every variant fills: the options frozen at build, the slots (a vamana graph's
// live and deleted nodes, and its free ones), the pages, the re-ranking and the calibration.
void FillCommonColumns(const ScannMetaPage& meta, int64 entries, int64 free_slots, int64 pages,
                       Datum* values, bool* nulls) {
  values[0] = BoolGetDatum(meta.trained != 0);
  values[1] = CStringGetTextDatum(VariantOf(meta).name);
  values[2] = CStringGetTextDatum(MetricName(meta.metric));
  values[3] = Int32GetDatum(int32(meta.dims));
  values[7] = Int32GetDatum(int32(meta.dims_per_subspace));
  values[8] = Int32GetDatum(int32(meta.sample_rows));
  values[9] = Float8GetDatum(meta.build_rows);
  values[10] = Int64GetDatum(entries);
  values[11] = Int64GetDatum(free_slots);
  values[15] = Int64GetDatum(pages);
  values[16] = CStringGetTextDatum(Rerank(meta.rerank) == Rerank::kSq8 ? "sq8" : "heap");
  const ScannCalibration& c = meta.calibration;
  if (c.points == 0) {
    nulls[17] = nulls[18] = nulls[19] = nulls[20] = nulls[21] = true;
    return;
  }
  Datum knobs[kCalibrationPoints], recalls[kCalibrationPoints];
  for (int i = 0; i < c.points; i++) {
    knobs[i] = Int32GetDatum(int32(c.knob[i]));
    recalls[i] = Float4GetDatum(c.recall[i]);
  }
  values[17] = PointerGetDatum(construct_array(knobs, c.points, INT4OID, 4, true, TYPALIGN_INT));
  values[18] =
      PointerGetDatum(construct_array(recalls, c.points, FLOAT4OID, 4, true, TYPALIGN_INT));
  values[19] = TimestampTzGetDatum(c.measured_at);
  // Stale once the rows filed since have grown the index by a quarter.
  values[20] = BoolGetDatum(double(entries) / Max(meta.fanout, 1u) > kStaleGrowth * c.rows);
  values[21] = CStringGetTextDatum(
      CalibrationSource(c.source) == CalibrationSource::kSupplied ? "queries" : "rows");
}

// The row of a vamana index: its graph's nodes in the slot columns (live nodes and those of
// deleted rows as entries, free nodes as free slots), the graph's own columns, no lists.
Datum VamanaInfoRow(TupleDesc desc, const ScannMetaPage& meta, const VamanaGraphStats& st,
                    int64 pages) {
  Datum values[kInfoColumns];
  bool nulls[kInfoColumns] = {};
  FillCommonColumns(meta, st.live + st.deleted, st.free, pages, values, nulls);
  nulls[4] = nulls[5] = nulls[6] = nulls[12] = nulls[13] = nulls[14] = true;
  values[22] = Int32GetDatum(int32(meta.variant_words[kVamanaGraphDegree]));
  values[23] = Int64GetDatum(st.entry_point);
  nulls[23] = st.entry_point < 0;
  values[24] = Int64GetDatum(st.deleted);
  values[25] = Int32GetDatum(int32(st.min_degree));
  values[26] = Float8GetDatum(st.mean_degree);
  values[27] = Int32GetDatum(int32(st.max_degree));
  values[28] = Int64GetDatum(st.bad_edges);
  values[29] = Int64GetDatum(st.unreachable);
  return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

}  // namespace

}  // namespace scann::pg

extern "C" {

PG_FUNCTION_INFO_V1(scann_index_info);

// One row: the variant and the options frozen at build (annoy's trees and leaf size, null for
// IVF and for an untrained index, which has no forest), per-list counts of the slots on the
// pages (for annoy, a row fills a slot in one leaf of every tree; for vamana, its graph
// instead), the re-ranking and the recall calibration.
Datum scann_index_info(PG_FUNCTION_ARGS) {
  using namespace scann::pg;
  TupleDesc desc;
  if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
    elog(ERROR, "scann_index_info must be called in a context that accepts a record");
  CheckInfoColumns(desc);
  Relation index = OpenScannIndex(PG_GETARG_OID(0), AccessShareLock, "scann_index_info");
  const ScannMetaPage meta = ReadMetaPage(index);
  if (Variant(meta.variant) == Variant::kVamana) {
    const VamanaGraphStats st = VamanaGraphInfo(index, meta);
    const int64 pages = RelationGetNumberOfBlocks(index);
    relation_close(index, AccessShareLock);
    PG_RETURN_DATUM(VamanaInfoRow(desc, meta, st, pages));
  }
  int64* in_list = static_cast<int64*>(palloc0(sizeof(int64) * meta.lists));
  int64 free_slots = 0;
  ForEachListPage(index, meta, BUFFER_LOCK_SHARE, [&](uint32 list, Buffer, Page page) {
    if (PageOpaque(page)->type != uint16(PageType::kList)) return;  // no TIDs
    ForEachSlot(meta, page, [&](ItemPointer tid) {
      if (ItemPointerIsValid(tid))
        in_list[list]++;
      else
        free_slots++;
    });
  });
  int64 entries = 0, smallest = in_list[0], largest = 0, empty = 0;  // lists >= 1
  for (uint32 list = 0; list < meta.lists; list++) {
    entries += in_list[list];
    smallest = Min(smallest, in_list[list]);
    largest = Max(largest, in_list[list]);
    empty += in_list[list] == 0;
  }
  const int64 pages = RelationGetNumberOfBlocks(index);
  relation_close(index, AccessShareLock);

  const bool forest = meta.variant == uint16(Variant::kAnnoy) && meta.trained;
  Datum values[kInfoColumns];
  bool nulls[kInfoColumns] = {};
  FillCommonColumns(meta, entries, free_slots, pages, values, nulls);
  values[4] = Int32GetDatum(int32(meta.lists));
  values[5] = Int32GetDatum(int32(meta.variant_words[kAnnoyWordTrees]));
  nulls[5] = !forest;
  values[6] = Int32GetDatum(int32(meta.variant_words[kAnnoyWordLeafSize]));
  nulls[6] = !forest;
  values[12] = Int64GetDatum(smallest);
  values[13] = Int64GetDatum(largest);
  values[14] = Int64GetDatum(empty);
  for (int i = 22; i < kInfoColumns; i++) nulls[i] = true;
  PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

}  // extern "C"
