// Reading the indexed value of a row as the float vector the quantizers see.
#pragma once

#include "pg/scann_page.h"

extern "C" {
#include "utils/relcache.h"
}

namespace scann::pg {

// Copies the real[] datum into out (dims floats) after the same checks as the operators;
// for cosine, normalizes it.  Returns false for a vector that cannot be indexed (a zero
// vector under cosine: it has no direction).  A dimension other than `dims` fails, naming
// the table of `index` and the row: by its TID when it is in the table, as the new row when
// tid is null; dims == 0 accepts any length and sets *got_dims.
bool ReadIndexVector(Datum value, Metric metric, int dims, Relation index, ItemPointer tid,
                     float* out, int* got_dims);

// Normalizes v in place to unit length; false for a zero vector (left unchanged).
bool Normalize(float* v, int dims);

}  // namespace scann::pg
