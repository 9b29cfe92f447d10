#include "pg/scann_vector.h"

#include <cmath>
#include <cstring>

#include "core/distance.h"
#include "pg/vector_arg.h"

extern "C" {
#include "access/genam.h"
#include "catalog/pg_type.h"
#include "parser/parse_coerce.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
}

namespace scann::pg {

namespace {

// SQL giving the indexed value `key` as real[], for the hint's query: the value itself for
// real[], a cast where the type has one, else the operator class's conversion.
const char* RealArraySql(Relation index, const char* key) {
  const Oid type = index->rd_opcintype[0];
  if (type == FLOAT4ARRAYOID) return key;
  Oid cast;
  if (find_coercion_pathway(FLOAT4ARRAYOID, type, COERCION_EXPLICIT, &cast) != COERCION_PATH_NONE)
    return psprintf("(%s)::real[]", key);
  const Oid proc = index_getprocid(index, 1, kToRealProc);
  const char* name =
      quote_qualified_identifier(get_namespace_name(get_func_namespace(proc)), get_func_name(proc));
  static const char* const kCastArgs[] = {"", ", -1", ", -1, false"};
  return psprintf("%s(%s%s)", name, key, kCastArgs[Min(Max(get_func_nargs(proc), 1), 3) - 1]);
}

// The dimension error.  A row the build meets is named by its ctid (for a heap-only tuple,
// the root of its HOT chain), and the hint's query lists every row of another length; a
// new row is the one the failing statement writes, rolled back with it.
void ReportWrongDims(Relation index, ItemPointer tid, int got, int dims) {
  const Oid heap = index->rd_index->indrelid;
  const char* table = get_rel_name(heap);
  if (tid == nullptr)
    ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION),
                    errmsg("vector of the new row in table \"%s\" has %d dimensions, expected %d "
                           "dimensions",
                           table, got, dims),
                    errdetail("Every vector in a scann index has the dimensions of the index.")));
  const char* qualified =
      quote_qualified_identifier(get_namespace_name(get_rel_namespace(heap)), table);
  const char* key = pg_get_indexdef_columns(RelationGetRelid(index), true);
  ereport(ERROR,
          (errcode(ERRCODE_DATA_EXCEPTION),
           errmsg("vector of the row at ctid (%u,%u) in table \"%s\" has %d dimensions, expected "
                  "%d dimensions",
                  ItemPointerGetBlockNumberNoCheck(tid), ItemPointerGetOffsetNumberNoCheck(tid),
                  table, got, dims),
           errdetail("Every vector in a scann index has the dimensions of the index."),
           errhint("SELECT ctid, * FROM %s WHERE cardinality(%s) <> %d lists the rows of another "
                   "length.",
                   qualified, RealArraySql(index, key), dims)));
}

// The row an error context names: in the table by its TID, or the new row (tid null).
struct RowRef {
  Relation index;
  ItemPointer tid;
};

void RowErrorContext(void* arg) {
  const RowRef* row = static_cast<const RowRef*>(arg);
  const char* table = get_rel_name(row->index->rd_index->indrelid);
  if (row->tid == nullptr)
    errcontext("new row of table \"%s\", indexed by \"%s\"", table,
               RelationGetRelationName(row->index));
  else
    errcontext("row at ctid (%u,%u) of table \"%s\", indexed by \"%s\"",
               ItemPointerGetBlockNumberNoCheck(row->tid),
               ItemPointerGetOffsetNumberNoCheck(row->tid), table,
               RelationGetRelationName(row->index));
}

}  // namespace

Datum ToRealArray(Relation index, Datum value) {
  if (!OidIsValid(index_getprocid(index, 1, kToRealProc))) return value;
  FmgrInfo* proc = index_getprocinfo(index, 1, kToRealProc);
  const Oid collation = index->rd_indcollation[0];
  // A cast function also takes the target's typmod (none) and whether the cast is explicit.
  switch (proc->fn_nargs) {
    case 1:
      return FunctionCall1Coll(proc, collation, value);
    case 2:
      return FunctionCall2Coll(proc, collation, value, Int32GetDatum(-1));
    default:
      return FunctionCall3Coll(proc, collation, value, Int32GetDatum(-1), BoolGetDatum(false));
  }
}

bool Normalize(float* v, int dims) {
  // In double: a float sum of squares underflows to 0 for rows near 1e-20 and overflows for
  // rows near 1e20, which would drop them or index them as zero vectors.
  double sum = 0;
  for (int i = 0; i < dims; i++) sum += double(v[i]) * v[i];
  const double norm = std::sqrt(sum);
  if (norm == 0) return false;
  const double inv = 1.0 / norm;
  for (int i = 0; i < dims; i++) v[i] = static_cast<float>(v[i] * inv);
  return true;
}

bool ReadIndexVector(Datum value, Metric metric, int dims, Relation index, ItemPointer tid,
                     float* out, int* got_dims) {
  RowRef row = {index, tid};
  ErrorContextCallback callback = {error_context_stack, RowErrorContext, &row};
  error_context_stack = &callback;
  VectorArg v = ReadVector(ToRealArray(index, value), "indexed vector");
  error_context_stack = callback.previous;
  if (dims != 0 && v.dim != dims) ReportWrongDims(index, tid, v.dim, dims);
  if (got_dims) *got_dims = v.dim;
  if (out == nullptr) return true;
  std::memcpy(out, v.data, sizeof(float) * v.dim);
  if (metric == Metric::kCosine) return Normalize(out, v.dim);
  return true;
}

}  // namespace scann::pg
