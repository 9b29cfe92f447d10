// Reading real[] and double precision[] arguments as dense float vectors, with the checks
// every entry point shares.
#pragma once

#include "pg/pg_headers.h"

namespace scann::pg {

struct VectorArg {
  const float* data;
  int dim;
};

// Validates a real[] or double precision[] datum (one dimension, at least one element, no
// NULLs, all finite) and returns a view of its elements: in place for real[]; for double
// precision[], a palloc'd copy rounded to float, and an error for a value outside float's
// range.  ereports with an SQLSTATE otherwise.  `what` names the value in messages
// ("vector", "query vector", ...).  check_finite = false skips the pass over a real[]'s
// values, for vectors an index already validated when it stored them.
VectorArg ReadVector(Datum array_datum, const char* what, bool check_finite = true);

// A real[] array datum of the dim floats (palloc'd in the current memory context).
Datum MakeRealArray(const float* data, int dim);

// Errors unless two vectors have the same number of dimensions.
void CheckSameDims(int expected, int got);

}  // namespace scann::pg
