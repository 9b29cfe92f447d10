// The scann index access method: handler, insert, cost estimate and the opclass validator.
#include "core/pq.h"
#include "pg/scann_build.h"
#include "pg/scann_index.h"
#include "pg/scann_list.h"
#include "pg/scann_options.h"
#include "pg/scann_scan.h"
#include "pg/scann_variant.h"
#include "pg/scann_vector.h"

extern "C" {
#include "access/amvalidate.h"
#include "access/htup_details.h"
#include "catalog/pg_amop.h"
#include "catalog/pg_amproc.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_opfamily.h"
#include "catalog/pg_type.h"
#include "commands/vacuum.h"
#include "optimizer/optimizer.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/float.h"
#include "utils/selfuncs.h"
#include "utils/syscache.h"
}

namespace scann::pg {

namespace {

bool Insert(Relation index, Datum* values, bool* isnull, ItemPointer heap_tid, Relation heap,
            IndexUniqueCheck check_unique, bool index_unchanged, IndexInfo* index_info) {
  if (isnull[0]) return false;
  MemoryContext cxt =
      AllocSetContextCreate(CurrentMemoryContext, "scann insert", ALLOCSET_SMALL_SIZES);
  MemoryContext old = MemoryContextSwitchTo(cxt);
  const ScannMetaPage meta = GetIndexState(index)->meta;
  Metric metric = Metric(meta.metric);
  int dims = int(meta.dims);
  int got = dims;
  // A row CREATE INDEX CONCURRENTLY adds in its validation pass is in the table already.
  ItemPointer row = index_info->ii_Concurrent ? heap_tid : nullptr;
  if (dims == 0) {  // built on an empty table: the first row inserted fixes the dimension
    ReadIndexVector(values[0], metric, 0, index, row, nullptr, &got);
    dims = int(LearnDims(index, uint32(got)));
  }
  float* vec = static_cast<float*>(palloc(sizeof(float) * got));
  if (ReadIndexVector(values[0], metric, dims, index, row, vec, nullptr))
    VariantOf(meta).insert(index, vec, heap_tid);
  MemoryContextSwitchTo(old);
  MemoryContextDelete(cxt);
  return false;
}

// Like pgvector's ivfflat estimate: the scan reads nprobe of the lists before its first row,
// entries for nprobe x fanout / lists of the table's rows (a row sits in `fanout` lists),
// then re-ranks up to scann.reorder heap tuples.
void CostEstimate(PlannerInfo* root, IndexPath* path, double loop_count, Cost* startup_cost,
                  Cost* total_cost, Selectivity* selectivity, double* correlation, double* pages) {
  GenericCosts costs = {};
  if (path->indexorderbys == NIL) {  // only ORDER BY <op> LIMIT scans use this index
    *startup_cost = *total_cost = get_float8_infinity();
    *selectivity = 0;
    *correlation = 0;
    *pages = 0;
    return;
  }
  Relation index = index_open(path->indexinfo->indexoid, NoLock);
  ScannMetaPage meta = GetIndexState(index)->meta;  // cached: no buffer read per plan
  index_close(index, NoLock);
  double ratio =
      meta.trained
          ? Min(1.0, double(QueryKnob(meta)) * meta.fanout / std::max<uint32>(meta.lists, 1))
          : 1.0;
  double tuples = path->indexinfo->tuples;
  // vamana: a search reads the pages of about 1.2 x its list's nodes (and re-ranks the list).
  const bool vamana = Variant(meta.variant) == Variant::kVamana;
  const double list = Max(QueryKnob(meta), g_reorder);
  if (vamana && meta.trained && tuples > 0 && path->indexinfo->pages > 0)
    ratio = Min(1.0, 1.2 * list / path->indexinfo->pages);
  costs.numIndexTuples = Max(tuples * ratio, 1.0);
  genericcostestimate(root, path, loop_count, &costs);
  // Codes are scored many per instruction: charge a fraction of a tuple's CPU cost.
  costs.indexTotalCost -= costs.numIndexTuples * cpu_index_tuple_cost * 0.75;
  double reorder = meta.trained ? std::min<double>(vamana ? list : g_reorder, tuples) : tuples;
  if (meta.record_bytes > 0)  // re-ranked from records in the index pages: no heap reads
    costs.indexTotalCost += reorder * cpu_operator_cost * meta.dims / 16;
  else
    costs.indexTotalCost += reorder * (random_page_cost * 0.25 + cpu_operator_cost * meta.dims / 4);
  *startup_cost = costs.indexTotalCost;
  *total_cost = costs.indexTotalCost;
  *selectivity = costs.indexSelectivity;
  *correlation = 0;
  *pages = costs.numIndexPages;
}

// The operator classes must each order by one real[] distance operator (strategy 1) and
// name its function as support function 1.
bool Validate(Oid opclassoid) {
  bool result = true;
  HeapTuple classtup = SearchSysCache1(CLAOID, ObjectIdGetDatum(opclassoid));
  if (!HeapTupleIsValid(classtup))
    elog(ERROR, "cache lookup failed for operator class %u", opclassoid);
  Form_pg_opclass classform = (Form_pg_opclass)GETSTRUCT(classtup);
  Oid opfamilyoid = classform->opcfamily;
  Oid opcintype = classform->opcintype;
  char* opclassname = NameStr(classform->opcname);
  HeapTuple familytup = SearchSysCache1(OPFAMILYOID, ObjectIdGetDatum(opfamilyoid));
  if (!HeapTupleIsValid(familytup))
    elog(ERROR, "cache lookup failed for operator family %u", opfamilyoid);
  char* opfamilyname = NameStr(((Form_pg_opfamily)GETSTRUCT(familytup))->opfname);
  CatCList* oprlist = SearchSysCacheList1(AMOPSTRATEGY, ObjectIdGetDatum(opfamilyoid));
  CatCList* proclist = SearchSysCacheList1(AMPROCNUM, ObjectIdGetDatum(opfamilyoid));
  Oid real_array = FLOAT4ARRAYOID;

  if (opcintype != real_array) {
    ereport(INFO, (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
                   errmsg("scann operator class \"%s\" indexes type %s, expected real[]",
                          opclassname, format_type_be(opcintype))));
    result = false;
  }
  int procs = 0;
  for (int i = 0; i < proclist->n_members; i++) {
    Form_pg_amproc proc = (Form_pg_amproc)GETSTRUCT(&proclist->members[i]->tuple);
    if (proc->amprocnum != 1 ||
        !check_amproc_signature(proc->amproc, FLOAT8OID, true, 2, 2, real_array, real_array)) {
      ereport(INFO, (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
                     errmsg("scann operator family \"%s\" has support function %s with wrong "
                            "number %d or signature; expected 1: (real[], real[]) -> float8",
                            opfamilyname, format_procedure(proc->amproc), proc->amprocnum)));
      result = false;
    }
    procs++;
  }
  if (procs != 1) {
    ereport(INFO,
            (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
             errmsg("scann operator family \"%s\" must have exactly one support function, has %d",
                    opfamilyname, procs)));
    result = false;
  }
  int orderings = 0;
  for (int i = 0; i < oprlist->n_members; i++) {
    Form_pg_amop op = (Form_pg_amop)GETSTRUCT(&oprlist->members[i]->tuple);
    if (op->amopstrategy != 1 || op->amoppurpose != AMOP_ORDER ||
        !check_amop_signature(op->amopopr, FLOAT8OID, real_array, real_array)) {
      ereport(INFO, (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
                     errmsg("scann operator family \"%s\" has operator %s with wrong strategy, "
                            "purpose or signature; expected strategy 1 FOR ORDER BY "
                            "(real[], real[]) -> float8",
                            opfamilyname, format_operator(op->amopopr))));
      result = false;
    }
    orderings++;
  }
  if (orderings != 1) {
    ereport(INFO,
            (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
             errmsg("scann operator family \"%s\" must have exactly one ordering operator, has %d",
                    opfamilyname, orderings)));
    result = false;
  }
  ReleaseCatCacheList(proclist);
  ReleaseCatCacheList(oprlist);
  ReleaseSysCache(familytup);
  ReleaseSysCache(classtup);
  return result;
}

bytea* Options(Datum reloptions, bool validate) { return ParseRelOptions(reloptions, validate); }

// VACUUM dispatches on the variant like every other callback.
IndexBulkDeleteResult* BulkDelete(IndexVacuumInfo* info, IndexBulkDeleteResult* stats,
                                  IndexBulkDeleteCallback callback, void* callback_state) {
  return VariantOf(ReadMetaPage(info->index)).bulk_delete(info, stats, callback, callback_state);
}

IndexBulkDeleteResult* VacuumCleanup(IndexVacuumInfo* info, IndexBulkDeleteResult* stats) {
  return VariantOf(ReadMetaPage(info->index)).cleanup(info, stats);
}

}  // namespace

}  // namespace scann::pg

extern "C" {

PG_FUNCTION_INFO_V1(scann_handler);

Datum scann_handler(PG_FUNCTION_ARGS) {
  using namespace scann::pg;
  IndexAmRoutine* am = makeNode(IndexAmRoutine);
  am->amstrategies = 1;
  am->amsupport = 1;
  am->amoptsprocnum = 0;
  am->amcanorder = false;
  am->amcanorderbyop = true;
  am->amcanbackward = false;
  am->amcanunique = false;
  am->amcanmulticol = false;
  am->amoptionalkey = true;
  am->amsearcharray = false;
  am->amsearchnulls = false;
  am->amstorage = false;
  am->amclusterable = false;
  am->ampredlocks = false;
  am->amcanparallel = false;
  am->amcaninclude = false;
  am->amusemaintenanceworkmem = false;
  am->amparallelvacuumoptions = VACUUM_OPTION_PARALLEL_BULKDEL;
  am->amkeytype = InvalidOid;
  am->ambuild = Build;
  am->ambuildempty = BuildEmpty;
  am->aminsert = Insert;
  am->ambulkdelete = BulkDelete;
  am->amvacuumcleanup = VacuumCleanup;
  am->amcanreturn = nullptr;
  am->amcostestimate = CostEstimate;
  am->amoptions = Options;
  am->amproperty = nullptr;
  am->ambuildphasename = BuildPhaseName;
  am->amvalidate = Validate;
  am->amadjustmembers = nullptr;
  am->ambeginscan = BeginScan;
  am->amrescan = Rescan;
  am->amgettuple = GetTuple;
  am->amgetbitmap = nullptr;
  am->amendscan = EndScan;
  am->ammarkpos = nullptr;
  am->amrestrpos = nullptr;
  am->amestimateparallelscan = nullptr;
  am->aminitparallelscan = nullptr;
  am->amparallelrescan = nullptr;
  PG_RETURN_POINTER(am);
}

}  // extern "C"
