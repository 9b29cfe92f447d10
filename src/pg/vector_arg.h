// Reading real[] arguments as dense float vectors, with the checks every entry point shares.
#pragma once

#include "pg/pg_headers.h"

namespace scann::pg {

struct VectorArg {
  const float* data;
  int dim;
};

// Validates a real[] datum (one dimension, at least one element, no NULLs, all finite)
// and returns a view of its elements; ereports with an SQLSTATE otherwise.  `what` names
// the value in messages ("vector", "query vector", ...).  check_finite = false skips the
// pass over the values, for vectors an index already validated when it stored them.
VectorArg ReadVector(Datum array_datum, const char* what, bool check_finite = true);

// Errors unless two vectors have the same number of dimensions.
void CheckSameDims(int expected, int got);

}  // namespace scann::pg
