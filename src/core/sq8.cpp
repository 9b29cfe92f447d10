#include "core/sq8.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace scann {

namespace {

constexpr double kUnit = 1.0 / 16777216.0;  // float's unit roundoff, 2^-24

// Relative error allowed for a float sum of n terms, here and in the exact distance functions,
// doubled for safety.
double Gamma(int n) { return 2.0 * (n + 8) * kUnit; }

// x rounded up to a float.
float RoundUp(double x) {
  if (!(x < double(std::numeric_limits<float>::max())))
    return std::numeric_limits<float>::infinity();
  const float f = static_cast<float>(x * (1.0 + 1e-12));
  return double(f) >= x ? f : std::nextafter(f, std::numeric_limits<float>::infinity());
}

}  // namespace

ScalarQuantizer::ScalarQuantizer(int dim, const float* params)
    : dim_(dim), params_(params, params + 2 * size_t(dim)) {}

void ScalarQuantizer::Train(const float* rows, size_t n, int dim) {
  dim_ = dim;
  params_.assign(2 * size_t(dim), 0.0f);
  for (int j = 0; j < dim; j++) {
    double lo = INFINITY, hi = -INFINITY;
    bool integral = true;
    for (size_t i = 0; i < n; i++) {
      const float v = rows[i * dim + j];
      if (!std::isfinite(v)) continue;
      lo = std::min(lo, double(v));
      hi = std::max(hi, double(v));
      integral = integral && v == std::nearbyint(v);
    }
    if (!(lo <= hi)) lo = hi = 0;  // no finite value: a constant 0
    float* p = params_.data();
    p[j] = static_cast<float>(lo);
    const double range = hi - double(p[j]);
    p[dim + j] = integral && range <= 255 ? 1.0f : static_cast<float>(range / 255.0);
  }
}

float ScalarQuantizer::Encode(const float* x, uint8_t* codes) const {
  const float* lo_ = lo();
  const float* step_ = step();
  double err = 0;
  for (int j = 0; j < dim_; j++) {
    double c = 0;
    if (step_[j] > 0) c = std::nearbyint((double(x[j]) - lo_[j]) / step_[j]);
    if (!(c >= 0)) c = 0;  // also NaN
    if (c > 255) c = 255;
    codes[j] = static_cast<uint8_t>(c);
    const double e = double(x[j]) - (double(lo_[j]) + c * double(step_[j]));
    err += e * e;
  }
  return RoundUp(std::sqrt(err));
}

void ScalarQuantizer::Decode(const uint8_t* codes, float* out) const {
  Sq8KernelsActive().decode(lo(), step(), codes, out, size_t(dim_));
}

void Sq8PrepareQuery(const ScalarQuantizer& sq, const float* q, Sq8Query* out) {
  const int dim = sq.dim();
  out->dim = dim;
  out->shifted.resize(dim);
  out->weighted.resize(dim);
  double dot_lo = 0, norm = 0, abs_bound = 0, lo_norm = 0;
  for (int j = 0; j < dim; j++) {
    const float lo = sq.lo()[j], step = sq.step()[j];
    out->shifted[j] = q[j] - lo;
    out->weighted[j] = q[j] * step;
    dot_lo += double(q[j]) * lo;
    norm += double(q[j]) * q[j];
    lo_norm += double(lo) * lo;
    const double top = std::max(std::fabs(double(lo)), std::fabs(double(lo) + 255.0 * step));
    abs_bound += std::fabs(double(q[j])) * top;
  }
  out->dot_lo = dot_lo;
  out->query_norm = std::sqrt(norm);
  out->abs_bound = abs_bound;
  out->shift_error = 2.0 * kUnit * (out->query_norm + std::sqrt(lo_norm));
}

double Sq8L2LowerBound(const Sq8Query& q, const ScalarQuantizer& sq, const uint8_t* codes,
                       float eps) {
  const float s = Sq8KernelsActive().l2_squared(q.shifted.data(), sq.step(), codes, size_t(q.dim));
  if (!std::isfinite(s) || !std::isfinite(eps)) return -INFINITY;
  const double gamma = Gamma(q.dim);
  const double bound =
      (std::sqrt(double(s)) * (1.0 - 2.0 * gamma) - q.shift_error - eps) * (1.0 - gamma);
  return std::max(bound, 0.0);
}

double Sq8NegativeDotLowerBound(const Sq8Query& q, const uint8_t* codes, float eps) {
  const float d = Sq8KernelsActive().dot(q.weighted.data(), codes, size_t(q.dim));
  if (!std::isfinite(d) || !std::isfinite(eps)) return -INFINITY;
  const double dot = q.dot_lo + double(d);
  const double gamma = Gamma(q.dim);
  const double spread = q.query_norm * eps;
  return -dot - spread - 2.0 * gamma * (q.abs_bound + spread) - 4.0 * kUnit * std::fabs(q.dot_lo);
}

double Sq8CosineLowerBound(const Sq8Query& q, const uint8_t* codes, float eps) {
  const float d = Sq8KernelsActive().dot(q.weighted.data(), codes, size_t(q.dim));
  if (!std::isfinite(d) || !std::isfinite(eps)) return -INFINITY;
  const double dot = q.dot_lo + double(d);
  const double gamma = Gamma(q.dim);
  // The operator divides a float dot product by float norms: a few gamma of its own.
  const double bound = 1.0 - dot - eps - 2.0 * gamma * (q.abs_bound + 1.0 + eps) - 6.0 * gamma -
                       4.0 * kUnit * std::fabs(q.dot_lo);
  return std::min(bound, 2.0);
}

namespace scalar {

float Sq8L2Squared(const float* shifted, const float* step, const uint8_t* codes, size_t n) {
  float s[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; k++) {
      const float t = std::fma(-float(codes[i + k]), step[i + k], shifted[i + k]);
      s[k] = std::fma(t, t, s[k]);
    }
  for (; i < n; i++) {
    const float t = std::fma(-float(codes[i]), step[i], shifted[i]);
    s[0] = std::fma(t, t, s[0]);
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
}

float Sq8Dot(const float* weighted, const uint8_t* codes, size_t n) {
  float s[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; k++) s[k] = std::fma(float(codes[i + k]), weighted[i + k], s[k]);
  for (; i < n; i++) s[0] = std::fma(float(codes[i]), weighted[i], s[0]);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

void Sq8Decode(const float* lo, const float* step, const uint8_t* codes, float* out, size_t n) {
  for (size_t j = 0; j < n; j++)
    out[j] = static_cast<float>(double(lo[j]) + double(codes[j]) * double(step[j]));
}

}  // namespace scalar

namespace {
const Sq8Kernels kScalar = {scalar::Sq8L2Squared, scalar::Sq8Dot, scalar::Sq8Decode};
const Sq8Kernels kAvx2 = {avx2::Sq8L2Squared, avx2::Sq8Dot, avx2::Sq8Decode};
}  // namespace

const Sq8Kernels& Sq8KernelsFor(Isa isa) {
  return isa == Isa::kAvx2 && DetectIsa() == Isa::kAvx2 ? kAvx2 : kScalar;
}

}  // namespace scann
