#include "pg/scann_vector.h"

#include <cmath>
#include <cstring>

#include "core/distance.h"
#include "pg/vector_arg.h"

extern "C" {
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
}

namespace scann::pg {

namespace {

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
                   qualified, key, dims)));
}

}  // namespace

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
  VectorArg v = ReadVector(value, "indexed vector");
  if (dims != 0 && v.dim != dims) ReportWrongDims(index, tid, v.dim, dims);
  if (got_dims) *got_dims = v.dim;
  if (out == nullptr) return true;
  std::memcpy(out, v.data, sizeof(float) * v.dim);
  if (metric == Metric::kCosine) return Normalize(out, v.dim);
  return true;
}

}  // namespace scann::pg
