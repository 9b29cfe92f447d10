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

// Whether support function 1 has the shape () -> text and names a metric, which it returns
// in *metric; reports what is wrong as an INFO.
bool ValidMetricFunction(const char* family, Oid proc, Metric* metric) {
  if (!check_amproc_signature(proc, TEXTOID, true, 0, 0)) {
    ereport(INFO, (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
                   errmsg("scann operator family \"%s\" has support function 1 %s with a wrong "
                          "signature; expected () -> text, naming the metric",
                          family, format_procedure(proc))));
    return false;
  }
  const char* name = TextDatumGetCString(OidFunctionCall0Coll(proc, InvalidOid));
  if (MetricFromName(name, metric)) return true;
  ereport(INFO, (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
                 errmsg("scann operator family \"%s\" has support function 1 %s naming an "
                        "unknown metric \"%s\"; expected 'l2', 'ip' or 'cosine'",
                        family, format_procedure(proc), name)));
  return false;
}

// Whether support function 2 turns `type` into real[]: (type) -> real[], or a cast function
// (type, integer, boolean) -> real[]; reports what is wrong as an INFO.
bool ValidConversion(const char* family, Oid proc, Oid type) {
  if (check_amproc_signature(proc, FLOAT4ARRAYOID, false, 1, 3, type, INT4OID, BOOLOID))
    return true;
  ereport(INFO,
          (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
           errmsg("scann operator family \"%s\" has support function 2 %s with a wrong "
                  "signature; expected (%s) -> real[] or (%s, integer, boolean) -> real[]",
                  family, format_procedure(proc), format_type_be(type), format_type_be(type))));
  return false;
}

// Checks the support functions of an operator class on `type` (scann_vector.h): exactly one
// naming the metric, and one conversion to real[] unless the type is real[] itself.  Sets
// *metric when function 1 names one.
bool ValidSupportFunctions(const char* family, CatCList* procs, Oid type, Metric* metric,
                           bool* named) {
  bool result = true;
  int counts[3] = {0, 0, 0};
  for (int i = 0; i < procs->n_members; i++) {
    Form_pg_amproc proc = (Form_pg_amproc)GETSTRUCT(&procs->members[i]->tuple);
    if (proc->amproclefttype != type || proc->amprocrighttype != type ||
        (proc->amprocnum != kMetricProc && proc->amprocnum != kToRealProc)) {
      ereport(INFO, (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
                     errmsg("scann operator family \"%s\" has support function %s with wrong "
                            "number %d or types; expected 1 or 2 for (%s, %s)",
                            family, format_procedure(proc->amproc), proc->amprocnum,
                            format_type_be(type), format_type_be(type))));
      result = false;
      continue;
    }
    counts[proc->amprocnum]++;
    if (proc->amprocnum == kMetricProc) {
      *named = ValidMetricFunction(family, proc->amproc, metric);
      result = result && *named;
    } else {
      result = ValidConversion(family, proc->amproc, type) && result;
    }
  }
  if (counts[kMetricProc] != 1) {
    ereport(INFO, (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
                   errmsg("scann operator family \"%s\" must have one support function 1 "
                          "naming the metric, has %d",
                          family, counts[kMetricProc])));
    result = false;
  }
  const int conversions = type == FLOAT4ARRAYOID ? 0 : 1;
  if (counts[kToRealProc] != conversions) {
    ereport(INFO, (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
                   errmsg("scann operator family \"%s\" must have %d support function 2 "
                          "(conversion to real[]) for type %s, has %d",
                          family, conversions, format_type_be(type), counts[kToRealProc])));
    result = false;
  }
  return result;
}

// Checks that an operator class on `type` orders by exactly one distance operator: strategy 1,
// FOR ORDER BY, (type, type) -> float8; and that when it is one of pg_scann's own operators, it
// computes the metric function 1 names (else the codes would rank rows by another distance).
bool ValidOrderingOperator(const char* family, CatCList* oprs, Oid type, const Metric* metric) {
  bool result = true;
  for (int i = 0; i < oprs->n_members; i++) {
    Form_pg_amop op = (Form_pg_amop)GETSTRUCT(&oprs->members[i]->tuple);
    if (op->amopstrategy != 1 || op->amoppurpose != AMOP_ORDER ||
        !check_amop_signature(op->amopopr, FLOAT8OID, type, type)) {
      ereport(INFO, (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
                     errmsg("scann operator family \"%s\" has operator %s with wrong strategy, "
                            "purpose or signature; expected strategy 1 FOR ORDER BY "
                            "(%s, %s) -> float8",
                            family, format_operator(op->amopopr), format_type_be(type),
                            format_type_be(type))));
      result = false;
      continue;
    }
    FmgrInfo fn;
    fmgr_info(get_opcode(op->amopopr), &fn);
    Metric computed;
    if (metric != nullptr && KernelMetric(fn.fn_addr, &computed) && computed != *metric) {
      ereport(INFO, (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
                     errmsg("scann operator family \"%s\" orders by operator %s, which computes "
                            "another metric than support function 1 names",
                            family, format_operator(op->amopopr))));
      result = false;
    }
  }
  if (oprs->n_members != 1) {
    ereport(INFO,
            (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
             errmsg("scann operator family \"%s\" must have exactly one ordering operator, has %d",
                    family, oprs->n_members)));
    result = false;
  }
  return result;
}

// amvalidate: an operator class indexes any type through its support functions
// (scann_vector.h) and orders by one distance operator on that type.
bool Validate(Oid opclassoid) {
  HeapTuple classtup = SearchSysCache1(CLAOID, ObjectIdGetDatum(opclassoid));
  if (!HeapTupleIsValid(classtup))
    elog(ERROR, "cache lookup failed for operator class %u", opclassoid);
  Form_pg_opclass classform = (Form_pg_opclass)GETSTRUCT(classtup);
  Oid opfamilyoid = classform->opcfamily;
  Oid type = classform->opcintype;
  HeapTuple familytup = SearchSysCache1(OPFAMILYOID, ObjectIdGetDatum(opfamilyoid));
  if (!HeapTupleIsValid(familytup))
    elog(ERROR, "cache lookup failed for operator family %u", opfamilyoid);
  char* family = NameStr(((Form_pg_opfamily)GETSTRUCT(familytup))->opfname);
  CatCList* oprlist = SearchSysCacheList1(AMOPSTRATEGY, ObjectIdGetDatum(opfamilyoid));
  CatCList* proclist = SearchSysCacheList1(AMPROCNUM, ObjectIdGetDatum(opfamilyoid));

  Metric metric;
  bool named = false;
  bool result = ValidSupportFunctions(family, proclist, type, &metric, &named);
  result = ValidOrderingOperator(family, oprlist, type, named ? &metric : nullptr) && result;

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
  am->amsupport = 2;
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
