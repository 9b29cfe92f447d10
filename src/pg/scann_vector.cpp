#include "pg/scann_vector.h"

#include <cmath>
#include <cstring>

#include "core/distance.h"
#include "pg/vector_arg.h"

namespace scann::pg {

bool Normalize(float* v, int dims) {
  double norm = std::sqrt(static_cast<double>(Distances().inner_product(v, v, dims)));
  if (norm == 0) return false;
  float inv = static_cast<float>(1.0 / norm);
  for (int i = 0; i < dims; i++) v[i] *= inv;
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
