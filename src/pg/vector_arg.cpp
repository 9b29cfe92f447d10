#include "pg/vector_arg.h"

#include "core/distance.h"

extern "C" {
#include "catalog/pg_type.h"
}

namespace scann::pg {

VectorArg ReadVector(Datum array_datum, const char* what, bool check_finite) {
  ArrayType* array = DatumGetArrayTypeP(array_datum);

  if (ARR_ELEMTYPE(array) != FLOAT4OID)
    ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH), errmsg("%s must be a real[] array", what)));
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

  const float* data = reinterpret_cast<const float*>(ARR_DATA_PTR(array));
  if (check_finite && !AllFinite(data, static_cast<size_t>(dim)))
    ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION),
                    errmsg("%s must not contain NaN or infinite values", what)));
  return VectorArg{data, dim};
}

void CheckSameDims(int expected, int got) {
  if (expected != got)
    ereport(ERROR,
            (errcode(ERRCODE_DATA_EXCEPTION),
             errmsg("vector dimensions differ: expected %d dimensions, got %d", expected, got)));
}

}  // namespace scann::pg
