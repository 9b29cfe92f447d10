// SQL distance functions on real[] and double precision[]: the exact arithmetic behind <->,
// <#> and <=> (double precision values are rounded to real first), and the conversion of
// double precision[] to real[].
#include <cmath>

#include "core/distance.h"
#include "pg/guard.h"
#include "pg/scann_vector.h"
#include "pg/vector_arg.h"

using scann::pg::CheckSameDims;
using scann::pg::CppGuard;
using scann::pg::ReadVector;
using scann::pg::VectorArg;

namespace {

// Both arguments as validated vectors of equal length.
void ReadPair(FunctionCallInfo fcinfo, VectorArg* a, VectorArg* b) {
  *a = ReadVector(PG_GETARG_DATUM(0), "vector");
  *b = ReadVector(PG_GETARG_DATUM(1), "vector");
  CheckSameDims(a->dim, b->dim);
}

double L2Squared(const VectorArg& a, const VectorArg& b) {
  return CppGuard([&] { return scann::Distances().l2_squared(a.data, b.data, a.dim); });
}

double InnerProduct(const VectorArg& a, const VectorArg& b) {
  return CppGuard([&] { return scann::Distances().inner_product(a.data, b.data, a.dim); });
}

}  // namespace

extern "C" {

PG_FUNCTION_INFO_V1(scann_l2_distance);
PG_FUNCTION_INFO_V1(scann_l2_squared_distance);
PG_FUNCTION_INFO_V1(scann_inner_product);
PG_FUNCTION_INFO_V1(scann_negative_inner_product);
PG_FUNCTION_INFO_V1(scann_cosine_distance);
PG_FUNCTION_INFO_V1(scann_to_real);

Datum scann_l2_distance(PG_FUNCTION_ARGS) {
  VectorArg a, b;
  ReadPair(fcinfo, &a, &b);
  PG_RETURN_FLOAT8(std::sqrt(L2Squared(a, b)));
}

Datum scann_l2_squared_distance(PG_FUNCTION_ARGS) {
  VectorArg a, b;
  ReadPair(fcinfo, &a, &b);
  PG_RETURN_FLOAT8(L2Squared(a, b));
}

Datum scann_inner_product(PG_FUNCTION_ARGS) {
  VectorArg a, b;
  ReadPair(fcinfo, &a, &b);
  PG_RETURN_FLOAT8(InnerProduct(a, b));
}

Datum scann_negative_inner_product(PG_FUNCTION_ARGS) {
  VectorArg a, b;
  ReadPair(fcinfo, &a, &b);
  PG_RETURN_FLOAT8(-InnerProduct(a, b));
}

Datum scann_cosine_distance(PG_FUNCTION_ARGS) {
  VectorArg a, b;
  ReadPair(fcinfo, &a, &b);
  double distance = CppGuard([&] {
    float parts[3];
    scann::Distances().cosine_parts(a.data, b.data, a.dim, parts);
    return scann::CosineDistanceFromParts(parts);
  });
  PG_RETURN_FLOAT8(distance);
}

// The double precision[] operator classes' support function 2: the vector as the real[] the
// index stores, with the operators' checks.
Datum scann_to_real(PG_FUNCTION_ARGS) {
  VectorArg v = ReadVector(PG_GETARG_DATUM(0), "vector");
  PG_RETURN_DATUM(scann::pg::MakeRealArray(v.data, v.dim));
}

}  // extern "C"

namespace scann::pg {

bool KernelMetric(PGFunction fn, Metric* metric) {
  if (fn == scann_l2_distance)
    *metric = Metric::kL2;
  else if (fn == scann_negative_inner_product)
    *metric = Metric::kInnerProduct;
  else if (fn == scann_cosine_distance)
    *metric = Metric::kCosine;
  else
    return false;
  return true;
}

}  // namespace scann::pg
