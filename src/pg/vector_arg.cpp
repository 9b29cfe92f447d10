#include "pg/vector_arg.h"

#include <cmath>
#include <cstring>

#include "core/distance.h"

extern "C" {
#include "catalog/pg_type.h"
}

namespace scann::pg {

namespace {

// The doubles rounded to floats, as PostgreSQL's cast to real rounds them; a finite value
// beyond float's range is an error (the cast's "value out of range: overflow").
const float* RoundToFloat(const double* values, int dim, const char* what) {
  float* out = static_cast<float*>(palloc(sizeof(float) * dim));
  for (int i = 0; i < dim; i++) {
    if (!std::isfinite(values[i]))
      ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION),
                      errmsg("%s must not contain NaN or infinite values", what)));
    out[i] = static_cast<float>(values[i]);
    if (std::isinf(out[i]))
      ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
                      errmsg("%s has a value out of range for type real: %g at position %d", what,
                             values[i], i + 1),
                      errdetail("Distances of double precision[] vectors are computed in real "
                                "(float4) precision.")));
  }
  return out;
}

}  // namespace

VectorArg ReadVector(Datum array_datum, const char* what, bool check_finite) {
  ArrayType* array = DatumGetArrayTypeP(array_datum);

  const Oid element = ARR_ELEMTYPE(array);
  if (element != FLOAT4OID && element != FLOAT8OID)
    ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                    errmsg("%s must be a real[] or double precision[] array", what)));
  if (ARR_NDIM(array) > 1)
    ereport(ERROR, (errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
                    errmsg("%s must be a one-dimensional array, got %d dimensions", what,
                           ARR_NDIM(array))));
  int dim = ARR_NDIM(array) == 0 ? 0 : ARR_DIMS(array)[0];
  if (dim == 0)
    ereport(ERROR,
            (errcode(ERRCODE_DATA_EXCEPTION), errmsg("%s must have at least 1 dimension", what)));
  if (array_contains_nulls(array))
    ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                    errmsg("%s must not contain NULL elements", what)));

  if (element == FLOAT8OID)
    return VectorArg{RoundToFloat(reinterpret_cast<const double*>(ARR_DATA_PTR(array)), dim, what),
                     dim};
  const float* data = reinterpret_cast<const float*>(ARR_DATA_PTR(array));
  if (check_finite && !AllFinite(data, static_cast<size_t>(dim)))
    ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION),
                    errmsg("%s must not contain NaN or infinite values", what)));
  return VectorArg{data, dim};
}

Datum MakeRealArray(const float* data, int dim) {
  const size_t bytes = ARR_OVERHEAD_NONULLS(1) + sizeof(float) * size_t(dim);
  ArrayType* array = static_cast<ArrayType*>(palloc(bytes));
  SET_VARSIZE(array, bytes);
  array->ndim = 1;
  array->dataoffset = 0;
  array->elemtype = FLOAT4OID;
  ARR_DIMS(array)[0] = dim;
  ARR_LBOUND(array)[0] = 1;
  std::memcpy(ARR_DATA_PTR(array), data, sizeof(float) * size_t(dim));
  return PointerGetDatum(array);
}

void CheckSameDims(int expected, int got) {
  if (expected != got)
    ereport(ERROR,
            (errcode(ERRCODE_DATA_EXCEPTION),
             errmsg("vector dimensions differ: expected %d dimensions, got %d", expected, got)));
}

}  // namespace scann::pg
