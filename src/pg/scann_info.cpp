// scann_index_info(index): what a scann index holds, read from its pages, for deciding
// when it needs a REINDEX (built untrained, grown far past its build, lists lopsided).
#include "pg/scann_index.h"
#include "pg/scann_list.h"
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

}  // namespace

}  // namespace scann::pg

extern "C" {

PG_FUNCTION_INFO_V1(scann_index_info);

// One row: the variant and the options frozen at build (annoy's trees and leaf size, null for
// IVF and for an untrained index, which has no forest), per-list counts of the slots on the
// pages (for annoy, a row fills a slot in one leaf of every tree), the re-ranking and the
// recall calibration.
Datum scann_index_info(PG_FUNCTION_ARGS) {
  using namespace scann::pg;
  TupleDesc desc;
  if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
    elog(ERROR, "scann_index_info must be called in a context that accepts a record");
  Relation index = OpenScannIndex(PG_GETARG_OID(0), AccessShareLock, "scann_index_info");
  const ScannMetaPage meta = ReadMetaPage(index);
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
  Datum values[22];
  bool nulls[22] = {};
  values[0] = BoolGetDatum(meta.trained != 0);
  values[1] = CStringGetTextDatum(VariantOf(meta).name);
  values[2] = CStringGetTextDatum(MetricName(meta.metric));
  values[3] = Int32GetDatum(int32(meta.dims));
  values[4] = Int32GetDatum(int32(meta.lists));
  values[5] = Int32GetDatum(int32(meta.variant_words[kAnnoyWordTrees]));
  nulls[5] = !forest;
  values[6] = Int32GetDatum(int32(meta.variant_words[kAnnoyWordLeafSize]));
  nulls[6] = !forest;
  values[7] = Int32GetDatum(int32(meta.dims_per_subspace));
  values[8] = Int32GetDatum(int32(meta.sample_rows));
  values[9] = Float8GetDatum(meta.build_rows);
  values[10] = Int64GetDatum(entries);
  values[11] = Int64GetDatum(free_slots);
  values[12] = Int64GetDatum(smallest);
  values[13] = Int64GetDatum(largest);
  values[14] = Int64GetDatum(empty);
  values[15] = Int64GetDatum(pages);
  values[16] = CStringGetTextDatum(Rerank(meta.rerank) == Rerank::kSq8 ? "sq8" : "heap");
  const ScannCalibration& c = meta.calibration;
  if (c.points == 0) {
    nulls[17] = nulls[18] = nulls[19] = nulls[20] = nulls[21] = true;
  } else {
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
  PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

}  // extern "C"
