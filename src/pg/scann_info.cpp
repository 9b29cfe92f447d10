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
#include "utils/lsyscache.h"
#include "utils/syscache.h"
}

namespace scann::pg {

namespace {

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

// Opens `relid` if it is a valid scann index whose table the caller may read, else raises an
// error.  Existence, kind and privilege are checked in the catalogs before the lock is taken,
// as PostgreSQL's own functions do, so that a caller without privileges does not queue
// behind the index's lock.
Relation OpenScannIndex(Oid relid) {
  HeapTuple tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
  if (!HeapTupleIsValid(tuple))
    ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
                    errmsg("relation with OID %u does not exist", relid)));
  const Form_pg_class form = reinterpret_cast<Form_pg_class>(GETSTRUCT(tuple));
  const bool is_scann =
      form->relkind == RELKIND_INDEX && form->relam == get_index_am_oid("scann", false);
  ReleaseSysCache(tuple);
  if (!is_scann)
    ereport(ERROR, (errcode(ERRCODE_WRONG_OBJECT_TYPE),
                    errmsg("\"%s\" is not a scann index", get_rel_name(relid)),
                    errhint("Pass the name of an index created USING scann.")));
  const Oid heap = IndexGetRelation(relid, true);
  if (heap != InvalidOid && pg_class_aclcheck(heap, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
    ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                    errmsg("permission denied for table %s", get_rel_name(heap)),
                    errdetail("scann_index_info needs SELECT on the indexed table.")));
  Relation index = try_relation_open(relid, AccessShareLock);
  if (index == nullptr)  // dropped while we waited for the lock
    ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
                    errmsg("relation with OID %u does not exist", relid)));
  if (!index->rd_index->indisvalid || RelationGetNumberOfBlocks(index) == 0)
    ereport(ERROR,
            (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
             errmsg("scann index \"%s\" is not valid", RelationGetRelationName(index)),
             errdetail("A CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY that failed or was "
                       "cancelled left it behind, or it is being built right now."),
             errhint("DROP INDEX or REINDEX INDEX it.")));
  return index;
}

}  // namespace

}  // namespace scann::pg

extern "C" {

PG_FUNCTION_INFO_V1(scann_index_info);

// One row: the variant and the options frozen at build (annoy's trees and leaf size, null for
// IVF and for an untrained index, which has no forest), and per-list counts of the slots on
// the pages (for annoy, a row fills a slot in one leaf of every tree).
Datum scann_index_info(PG_FUNCTION_ARGS) {
  using namespace scann::pg;
  TupleDesc desc;
  if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
    elog(ERROR, "scann_index_info must be called in a context that accepts a record");
  Relation index = OpenScannIndex(PG_GETARG_OID(0));
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
  Datum values[16];
  bool nulls[16] = {};
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
  PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

}  // extern "C"
