#include "core/lut.h"

#include <algorithm>
#include <cmath>

#include "core/distance.h"
#include "core/fastscan.h"

namespace scann {

namespace {

// Keys stay far inside int64 whatever the offsets: a score (< 2^16) added to an offset never
// overflows, and lists this far out rank last (or first) together.
constexpr double kKeyLimit = 4611686018427387904.0;  // 2^62

// A non-finite entry of a double table (possible only from non-finite codebooks) becomes a
// large finite one, small enough that m of them still sum to a finite number.
constexpr double kEntryLimit = 1e290;

int64_t KeyOffset(double offset, double scale) {
  const double x = offset * scale;
  if (!(x > -kKeyLimit)) return x < 0 || std::isnan(x) ? int64_t(-kKeyLimit) : int64_t(kKeyLimit);
  if (x >= kKeyLimit) return int64_t(kKeyLimit);
  return std::llround(x);
}

// Quantizes a table in any precision with entries clipped at min + cap: the scalar path for
// tables the SIMD kernel cannot take (double entries, clipping).  Returns the sum of the
// subspaces' minima.
template <typename T>
double QuantizeClipped(const T* lut, int m, double scale, double cap, uint8_t* qlut) {
  double offset = 0;
  for (int s = 0; s < m; s++) {
    const T* sub = lut + size_t(s) * 16;
    const double lo = double(*std::min_element(sub, sub + 16));
    offset += lo;
    uint8_t* dst = qlut + size_t(s / 2) * kFastScanUnit + (s % 2) * 16;
    for (int c = 0; c < 16; c++) {
      const double x = std::min(double(sub[c]) - lo, cap) * scale;
      dst[c] = x < 255.0 ? static_cast<uint8_t>(x + 0.5) : 255;
    }
  }
  if (m % 2)
    std::fill(qlut + size_t(m / 2) * kFastScanUnit + 16, qlut + (m / 2 + 1) * kFastScanUnit,
              uint8_t(0));
  return offset;
}

// Sum over subspaces of min(range, cap).
template <typename T>
double ClippedSum(const T* lut, int m, double cap) {
  double sum = 0;
  for (int s = 0; s < m; s++) {
    const T* sub = lut + size_t(s) * 16;
    const auto [lo, hi] = std::minmax_element(sub, sub + 16);
    sum += std::min(double(*hi) - double(*lo), cap);
  }
  return sum;
}

}  // namespace

void QueryLuts::Prepare(const ProductQuantizer& pq, LutMetric metric, const float* query,
                        const float* const* centroids, int n, size_t budget_bytes) {
  pq_ = &pq;
  metric_ = metric;
  query_ = query;
  centroids_.assign(centroids, centroids + n);
  n_ = n;
  m_ = pq.num_subspaces();
  dims_ = pq.dim();
  const int nt = tables();
  const size_t table_floats = size_t(m_) * 16, code_bytes = FastScanCodeBytes(m_);
  streamed_ = nt > 1 && size_t(nt) * (table_floats * sizeof(float) + code_bytes) > budget_bytes;
  residual_.resize(dims_);
  residual_exact_.resize(dims_);
  info_.assign(nt, TableInfo{});
  slot_.assign(nt, 0);
  floats_.resize(streamed_ ? table_floats : table_floats * nt);
  doubles_.clear();
  any_exact_ = false;
  for (int t = 0; t < nt; t++) {
    float* out = floats_.data() + (streamed_ ? 0 : table_floats * t);
    if (FloatTable(t, out, &info_[t])) continue;
    any_exact_ = true;
    slot_[t] = streamed_ ? 0 : doubles_.size();
    if (!streamed_ || doubles_.empty()) doubles_.resize(doubles_.size() + table_floats);
    DoubleTable(t, doubles_.data() + slot_[t], &info_[t]);
  }
  ChooseCap();
  double max_range = 0, max_sum = 0;
  for (int t = 0; t < nt; t++) {
    max_range = std::max(max_range, std::min(info_[t].max_range, cap_));
    double sum = info_[t].sum_range;
    if (clipped())
      sum = info_[t].exact ? ClippedSum(DoubleAt(t), m_, cap_) : ClippedSum(FloatAt(t), m_, cap_);
    max_sum = std::max(max_sum, sum);
  }
  scale_ = any_exact_ || clipped() ? FastScanScale(max_range, max_sum, m_)
                                   : double(FastScanScaleFromRanges(max_range, max_sum, m_));
  offsets_.assign(n, 0);
  qluts_.resize(streamed_ ? code_bytes : code_bytes * nt);
  if (streamed_) return;  // Table(i) quantizes and sets Offset(i)
  for (int t = 0; t < nt; t++) Quantize(t, qluts_.data() + code_bytes * t);
  if (metric_ == LutMetric::kInnerProduct)
    for (int i = 0; i < n; i++) offsets_[i] = KeyOffset(info_[0].offset + Bias(i), scale_);
}

const uint8_t* QueryLuts::Table(int i) {
  const size_t code_bytes = FastScanCodeBytes(m_);
  if (metric_ == LutMetric::kInnerProduct) return qluts_.data();
  if (!streamed_) return qluts_.data() + code_bytes * i;
  Quantize(i, qluts_.data());
  return qluts_.data();
}

bool QueryLuts::FloatTable(int t, float* out, TableInfo* info) {
  if (metric_ == LutMetric::kL2) {
    const float* c = centroids_[t];
    for (int j = 0; j < dims_; j++) residual_[j] = query_[j] - c[j];
    pq_->L2Lut(residual_.data(), out);
  } else {
    pq_->IpLut(query_, out);
  }
  const LutRanges r = FastScanKernelsActive().lut_ranges(out, 1, m_);
  info->sum_range = r.max_sum;
  info->max_range = r.max_range;
  info->exact = false;
  return r.finite && std::isfinite(r.max_range) && std::isfinite(r.max_sum);
}

void QueryLuts::DoubleTable(int t, double* out, TableInfo* info) {
  if (metric_ == LutMetric::kL2) {
    const float* c = centroids_[t];
    for (int j = 0; j < dims_; j++) residual_exact_[j] = double(query_[j]) - double(c[j]);
    pq_->L2LutExact(residual_exact_.data(), out);
  } else {
    pq_->IpLutExact(query_, out);
  }
  info->sum_range = info->max_range = info->offset = 0;
  for (int s = 0; s < m_; s++) {
    double* sub = out + size_t(s) * 16;
    for (int c = 0; c < 16; c++)
      if (!std::isfinite(sub[c])) sub[c] = sub[c] < 0 ? -kEntryLimit : kEntryLimit;
    const auto [lo, hi] = std::minmax_element(sub, sub + 16);
    info->sum_range += *hi - *lo;
    info->max_range = std::max(info->max_range, *hi - *lo);
    info->offset += *lo;
  }
  info->exact = true;
}

const float* QueryLuts::FloatAt(int t) {
  const size_t table_floats = size_t(m_) * 16;
  if (!streamed_) return floats_.data() + table_floats * t;
  TableInfo info;
  FloatTable(t, floats_.data(), &info);
  return floats_.data();
}

const double* QueryLuts::DoubleAt(int t) {
  if (!streamed_) return doubles_.data() + slot_[t];
  TableInfo info;
  DoubleTable(t, doubles_.data(), &info);
  return doubles_.data();
}

// The clip level: kClipRatio times the median over tables of their mean subspace range, when
// some subspace range exceeds it; otherwise none (kNoCap).
void QueryLuts::ChooseCap() {
  cap_ = kNoCap;
  double max_range = 0, min_mean = kNoCap;
  for (const TableInfo& t : info_) {
    max_range = std::max(max_range, t.max_range);
    min_mean = std::min(min_mean, t.sum_range / m_);
  }
  if (max_range <= kClipRatio * min_mean) return;  // no table can have an outlier subspace
  std::vector<double> means(info_.size());
  for (size_t t = 0; t < info_.size(); t++) means[t] = info_[t].sum_range / m_;
  std::nth_element(means.begin(), means.begin() + means.size() / 2, means.end());
  const double cap = kClipRatio * means[means.size() / 2];
  if (cap > 0 && max_range > cap) cap_ = cap;
}

// Quantizes table t into qlut and, for per-list tables, sets its list's offset.
void QueryLuts::Quantize(int t, uint8_t* qlut) {
  double offset;
  if (info_[t].exact)
    offset = QuantizeClipped(DoubleAt(t), m_, scale_, cap_, qlut);
  else if (clipped())
    offset = QuantizeClipped(FloatAt(t), m_, scale_, cap_, qlut);
  else
    offset = FastScanKernelsActive().quantize_lut(FloatAt(t), m_, float(scale_), qlut);
  info_[t].offset = offset;
  if (metric_ == LutMetric::kL2) offsets_[t] = KeyOffset(offset, scale_);
}

// -<query, centroid of list i>, in double when the float product overflows.
double QueryLuts::Bias(int i) const {
  const float* c = centroids_[i];
  const float dot = Distances().inner_product(query_, c, size_t(dims_));
  if (std::isfinite(dot)) return -double(dot);
  double exact = 0;
  for (int j = 0; j < dims_; j++) exact += double(query_[j]) * double(c[j]);
  return -exact;
}

}  // namespace scann
