// Distances between float vectors: the exact kernels behind the SQL operators and the
// reorder step.  All take caller-owned arrays of n floats (no alignment required) and
// accumulate in float, as pgvector does for its vector type.
#pragma once

#include <cstddef>

#include "core/isa.h"

namespace scann {

struct DistanceKernels {
  float (*l2_squared)(const float* a, const float* b, size_t n);
  float (*inner_product)(const float* a, const float* b, size_t n);
  // Writes dot(a, b), |a|^2 and |b|^2 in one pass.
  void (*cosine_parts)(const float* a, const float* b, size_t n, float out[3]);
};

// The kernel table for one instruction set (the scalar one for any ISA not compiled in).
const DistanceKernels& DistanceKernelsFor(Isa isa);

// Kernels of the active instruction set.
inline const DistanceKernels& Distances() { return DistanceKernelsFor(ActiveIsa()); }

// True when no element is NaN or infinite (one pass that vectorizes: x - x is NaN exactly
// for those values).
bool AllFinite(const float* a, size_t n);

// Cosine distance 1 - cos(a, b) from the parts; NaN when either vector is zero, as
// pgvector returns.  Clamped to [0, 2] against rounding.
double CosineDistanceFromParts(const float parts[3]);

namespace scalar {
float L2Squared(const float* a, const float* b, size_t n);
float InnerProduct(const float* a, const float* b, size_t n);
void CosineParts(const float* a, const float* b, size_t n, float out[3]);
}  // namespace scalar

namespace avx2 {
float L2Squared(const float* a, const float* b, size_t n);
float InnerProduct(const float* a, const float* b, size_t n);
void CosineParts(const float* a, const float* b, size_t n, float out[3]);
}  // namespace avx2

}  // namespace scann
