// 8-bit scalar quantization of whole rows (FAISS's SQ8): the finer code that re-ranks the
// 4-bit candidates inside the index, so that only the rows a query returns are read from the
// table.
//
// Code.  Dimension j of a row is stored as one byte c_j, decoded as lo_j + c_j * step_j, with
// lo_j and step_j trained per dimension on the sample (its minimum and range / 255).  A
// dimension whose sample values are all integers spanning at most 255 gets step 1, so integer
// data (pixels, counts) is stored exactly.  Values outside the trained range are clipped.
//
// Error bound.  Each row also keeps eps = ||x - x~||, computed in double and rounded up to a
// float, so a score from the code bounds the exact one: |<q, x> - <q, x~>| <= ||q|| eps and
// |d(q, x) - d(q, x~)| <= eps.  The lower bounds below also cover the float rounding of the
// exact distance functions (which accumulate in float) and of these kernels: a bound never
// exceeds the distance the operator computes, the guarantee an index scan needs to hand the
// executor "lower bound, recheck" ORDER BY values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/isa.h"

namespace scann {

class ScalarQuantizer {
 public:
  ScalarQuantizer() = default;
  // From stored parameters (param_floats() floats: lo[dim] then step[dim]).
  ScalarQuantizer(int dim, const float* params);

  // Trains lo and step on n rows of dim floats (non-finite values are ignored).
  void Train(const float* rows, size_t n, int dim);

  int dim() const { return dim_; }
  const float* params() const { return params_.data(); }
  size_t param_floats() const { return params_.size(); }
  const float* lo() const { return params_.data(); }
  const float* step() const { return params_.data() + dim_; }

  // Codes of x (dim bytes) and its error bound eps (rounded up; +inf if x is not finite).
  float Encode(const float* x, uint8_t* codes) const;
  // lo + c x step for each dimension, computed in double and rounded once to float: for a row
  // whose eps is 0 that is the row itself, bit for bit (c x step is exact in double, and a
  // sum that equals a float needs no rounding).
  void Decode(const uint8_t* codes, float* out) const;

 private:
  int dim_ = 0;
  std::vector<float> params_;
};

// What scoring codes against one query needs, computed once per query.
struct Sq8Query {
  std::vector<float> shifted;   // q_j - lo_j (L2)
  std::vector<float> weighted;  // q_j * step_j (inner product)
  double dot_lo = 0;            // sum_j q_j lo_j
  double query_norm = 0;        // ||q||
  double abs_bound = 0;    // sum_j |q_j| max(|lo_j|, |lo_j + 255 step_j|): bounds sum |q_j x~_j|
  double shift_error = 0;  // bounds the rounding of `shifted`, in distance: 2u (||q|| + ||lo||)
  int dim = 0;
};

// Prepares q (dim floats) for a quantizer.
void Sq8PrepareQuery(const ScalarQuantizer& sq, const float* q, Sq8Query* out);

struct Sq8Kernels {
  // sum_j (shifted_j - c_j step_j)^2, accumulated in float.
  float (*l2_squared)(const float* shifted, const float* step, const uint8_t* codes, size_t n);
  // sum_j weighted_j c_j, accumulated in float.
  float (*dot)(const float* weighted, const uint8_t* codes, size_t n);
  // out_j = lo_j + c_j step_j in double, rounded once to float (ScalarQuantizer::Decode).
  void (*decode)(const float* lo, const float* step, const uint8_t* codes, float* out, size_t n);
};

const Sq8Kernels& Sq8KernelsFor(Isa isa);
inline const Sq8Kernels& Sq8KernelsActive() { return Sq8KernelsFor(ActiveIsa()); }

// Lower bounds, in the operators' units, of the exact distance of the row a code stands for:
// Euclidean distance, negative inner product, and cosine distance (the code then stands for the
// normalized row, and q must be normalized).  -inf when the code's score is not finite.
double Sq8L2LowerBound(const Sq8Query& q, const ScalarQuantizer& sq, const uint8_t* codes,
                       float eps);
double Sq8NegativeDotLowerBound(const Sq8Query& q, const uint8_t* codes, float eps);
double Sq8CosineLowerBound(const Sq8Query& q, const uint8_t* codes, float eps);

namespace scalar {
float Sq8L2Squared(const float* shifted, const float* step, const uint8_t* codes, size_t n);
float Sq8Dot(const float* weighted, const uint8_t* codes, size_t n);
void Sq8Decode(const float* lo, const float* step, const uint8_t* codes, float* out, size_t n);
}  // namespace scalar
namespace avx2 {
float Sq8L2Squared(const float* shifted, const float* step, const uint8_t* codes, size_t n);
float Sq8Dot(const float* weighted, const uint8_t* codes, size_t n);
void Sq8Decode(const float* lo, const float* step, const uint8_t* codes, float* out, size_t n);
}  // namespace avx2

}  // namespace scann
