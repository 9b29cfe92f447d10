// Reading the indexed value of a row, or a query, as the float vector the quantizers see,
// through the index's operator class: whatever the column's type, its support functions
// say which metric the index serves and how a value becomes a real[].
#pragma once

#include "pg/scann_page.h"

extern "C" {
#include "utils/relcache.h"
}

namespace scann::pg {

// The operator class's support functions (scann_am.cpp's validator checks their shapes):
//  1 names the metric: () -> text, 'l2', 'ip' or 'cosine' (IndexMetric);
//  2 turns a value of the column's type into real[]: (type) -> real[], or a cast function
//    (type, integer, boolean) -> real[]; absent for real[], which is read in place.
inline constexpr uint16 kMetricProc = 1;
inline constexpr uint16 kToRealProc = 2;

// The value, of the index's column type, as a real[] datum: itself for real[], else the
// result of support function 2 (allocated in the current memory context).
Datum ToRealArray(Relation index, Datum value);

// Copies the indexed value, as real[], into out (dims floats) after the same checks as the
// operators; for cosine, normalizes it.  Returns false for a vector that cannot be indexed (a
// zero vector under cosine: it has no direction).  A dimension other than `dims` fails, naming
// the table of `index` and the row: by its TID when it is in the table, as the new row when
// tid is null; errors of the conversion or the checks name the row in their context.  dims ==
// 0 accepts any length and sets *got_dims.
bool ReadIndexVector(Datum value, Metric metric, int dims, Relation index, ItemPointer tid,
                     float* out, int* got_dims);

// Normalizes v in place to unit length; false for a zero vector (left unchanged).
bool Normalize(float* v, int dims);

// Whether fn is the function of one of pg_scann's own distance operators (on real[] and double
// precision[]), and which metric's: the index's kernels then compute the operator's values bit
// for bit.  (Defined in operators.cpp, beside those functions.)
bool KernelMetric(PGFunction fn, Metric* metric);

// Whether the index's exact kernel for `metric` computes what fn (an ORDER BY operator's
// function) returns, so that a scan may report its own values as the operator's.
inline bool ComputedByKernel(PGFunction fn, Metric metric) {
  Metric computed;
  return KernelMetric(fn, &computed) && computed == metric;
}

}  // namespace scann::pg
