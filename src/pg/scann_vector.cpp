#include "pg/scann_vector.h"

#include <cmath>
#include <cstring>

#include "core/distance.h"
#include "pg/vector_arg.h"

namespace scann::pg {

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

bool ReadIndexVector(Datum value, Metric metric, int dims, ItemPointer tid, float* out,
                     int* got_dims) {
  VectorArg v = ReadVector(value, "indexed vector");
  if (dims != 0 && v.dim != dims)
    ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION),
                    errmsg("vector of row (%u,%u) has %d dimensions, expected %d dimensions",
                           ItemPointerGetBlockNumberNoCheck(tid),
                           ItemPointerGetOffsetNumberNoCheck(tid), v.dim, dims),
                    errdetail("Every vector in a scann index has the dimensions of the index.")));
  if (got_dims) *got_dims = v.dim;
  if (out == nullptr) return true;
  std::memcpy(out, v.data, sizeof(float) * v.dim);
  if (metric == Metric::kCosine) return Normalize(out, v.dim);
  return true;
}

}  // namespace scann::pg
