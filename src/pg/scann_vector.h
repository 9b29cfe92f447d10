// Reading the indexed value of a row as the float vector the quantizers see.
#pragma once

#include "pg/scann_page.h"

namespace scann::pg {

// Copies the real[] datum into out (dims floats) after the same checks as the operators;
// for cosine, normalizes it.  Returns false for a vector that cannot be indexed (a zero
// vector under cosine: it has no direction).  Errors name the row's TID when a dimension
// differs from `dims`; dims == 0 accepts any length and sets *got_dims.
bool ReadIndexVector(Datum value, Metric metric, int dims, ItemPointer tid, float* out,
                     int* got_dims);

// Normalizes v in place to unit length; false for a zero vector (left unchanged).
bool Normalize(float* v, int dims);

}  // namespace scann::pg
