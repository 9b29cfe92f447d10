#include "core/pq.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <xsimd/xsimd.hpp>

#include "core/rng.h"

namespace scann {

namespace {

// SIMD of the baseline this file is compiled for (SSE2 on x86-64): the 16 codewords of a
// subspace are handled side by side.
using FloatBatch = xsimd::batch<float>;
using DoubleBatch = xsimd::batch<double>;
constexpr int kFloatBatches = kPqCodewords / FloatBatch::size;
constexpr int kDoubleBatches = kPqCodewords / DoubleBatch::size;
static_assert(kPqCodewords % DoubleBatch::size == 0, "16 codewords fill whole batches");

// Largest t = T^2 / ||x||^2 used in eta: eta(1/2) = d - 1 (see pq.h).
constexpr double kMaxThresholdRatio = 0.5;
// Rounds of anisotropic encoding and codebook update that end score-aware training.
constexpr int kAnisotropicRounds = 3;
// Least relative weight of a row in score-aware training: keeps weights from underflowing to
// zero (recall on GloVe was the same for floors from 1e-12 to 1e-3 and fell above).
constexpr double kMinRelevance = 1e-6;

void CheckInterrupts(const InterruptCheck& check) {
  if (check) check();
}

// Solves a * w = b for a symmetric positive definite n x n matrix (row-major) by Cholesky,
// in place; false when a is not numerically positive definite.
bool SolveSpd(std::vector<double>& a, std::vector<double>& b, int n) {
  double scale = 0.0;
  for (int i = 0; i < n; i++) scale = std::max(scale, a[i * n + i]);
  for (int j = 0; j < n; j++) {
    double diag = a[j * n + j];
    for (int p = 0; p < j; p++) diag -= a[j * n + p] * a[j * n + p];
    if (!(diag > 1e-12 * scale)) return false;
    const double l = std::sqrt(diag);
    a[j * n + j] = l;
    for (int i = j + 1; i < n; i++) {
      double v = a[i * n + j];
      for (int p = 0; p < j; p++) v -= a[i * n + p] * a[j * n + p];
      a[i * n + j] = v / l;
    }
  }
  for (int i = 0; i < n; i++) {  // L y = b
    double v = b[i];
    for (int p = 0; p < i; p++) v -= a[i * n + p] * b[p];
    b[i] = v / a[i * n + i];
  }
  for (int i = n - 1; i >= 0; i--) {  // L^T w = y
    double v = b[i];
    for (int p = i + 1; p < n; p++) v -= a[p * n + i] * b[p];
    b[i] = v / a[i * n + i];
  }
  return true;
}

// (r - w) . x over one sub-vector of `width` floats, in double.
double ErrorDot(const float* r, const float* w, const float* x, int width) {
  double s = 0.0;
  for (int j = 0; j < width; j++) s += (static_cast<double>(r[j]) - w[j]) * x[j];
  return s;
}

double SquaredNorm(const float* x, int dim) {
  double s = 0.0;
  for (int j = 0; j < dim; j++) s += static_cast<double>(x[j]) * x[j];
  return s;
}

// log of h_perp(||x||) = integral over [0, theta0] of sin^d(theta), theta0 = acos(T / ||x||):
// how much row x matters for queries with <q, x> >= T (q uniform on the unit sphere); minus
// infinity when no such query exists. The integrand is sharply peaked at theta0 for large d,
// so the midpoint rule runs over the last ~40 e-folds only, in log space.
double LogRelevance(double norm, double threshold, int dim) {
  const double tau = threshold / norm;
  if (!(tau < 1.0)) return -INFINITY;
  const double theta0 = std::acos(tau);
  const double cot0 = tau / std::sqrt(1.0 - tau * tau);
  const double lo = std::max(0.0, theta0 - 40.0 / (dim * cot0));
  constexpr int kSteps = 128;
  const double step = (theta0 - lo) / kSteps;
  double peak = -INFINITY;
  double terms[kSteps];
  for (int i = 0; i < kSteps; i++) {
    terms[i] = dim * std::log(std::sin(lo + (i + 0.5) * step));
    peak = std::max(peak, terms[i]);
  }
  double sum = 0.0;
  for (double t : terms) sum += std::exp(t - peak);
  return peak + std::log(sum * step);
}

// Per-row weights of the full score-aware loss: h_perp(||x||) relative to the largest (all 1
// on unit-norm rows, where the loss is exactly ScaNN's; on rows of varied norm they favour
// the long rows that large inner products come from).
std::vector<double> RelevanceWeights(const float* points, size_t n, int dim, double threshold) {
  std::vector<double> weight(n);
  double top = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    weight[i] = LogRelevance(std::sqrt(SquaredNorm(points + i * dim, dim)), threshold, dim);
    top = std::max(top, weight[i]);
  }
  for (double& w : weight) w = std::isinf(top) ? 1.0 : std::max(kMinRelevance, std::exp(w - top));
  return weight;
}

PqOptions PlainOptions(int dims_per_subspace) {
  PqOptions opt;
  opt.dims_per_subspace = dims_per_subspace;
  return opt;
}

}  // namespace

size_t DropOutlierRows(float* residuals, float* points, size_t n, int dim) {
  std::vector<double> norms(n);
  for (size_t i = 0; i < n; i++) norms[i] = std::sqrt(SquaredNorm(residuals + i * dim, dim));
  std::vector<double> sorted;
  for (double v : norms)
    if (std::isfinite(v)) sorted.push_back(v);
  if (sorted.empty()) return 0;
  std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
  const double median = sorted[sorted.size() / 2];
  const double limit = median > 0 ? kPqOutlierRatio * median : INFINITY;
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    if (!std::isfinite(norms[i]) || norms[i] > limit) continue;
    if (kept != i) {
      std::copy(residuals + i * dim, residuals + (i + 1) * dim, residuals + kept * dim);
      std::copy(points + i * dim, points + (i + 1) * dim, points + kept * dim);
    }
    kept++;
  }
  return kept;
}

double AnisotropicEta(double norm_sq, double threshold, int dim) {
  if (!(norm_sq > 0.0) || dim < 2) return 1.0;
  const double t = std::min(threshold * threshold / norm_sq, kMaxThresholdRatio);
  return (dim - 1) * t / (1.0 - t);
}

ProductQuantizer::ProductQuantizer(int dim, const PqOptions& opt)
    : dim_(dim), dsub_(opt.dims_per_subspace), opt_(opt) {
  if (dim < 1) throw std::invalid_argument("pq: dimension must be at least 1");
  if (dsub_ < 1) throw std::invalid_argument("pq: dims_per_subspace must be at least 1");
  if (opt.iterations < 0 || opt.encode_rounds < 0)
    throw std::invalid_argument("pq: iterations and encode_rounds must be >= 0");
  if (opt.anisotropic && !(opt.threshold > 0.0f && std::isfinite(opt.threshold)))
    throw std::invalid_argument("pq: anisotropic threshold must be a positive number");
  m_ = (dim + dsub_ - 1) / dsub_;
  codebooks_.assign(static_cast<size_t>(m_) * kPqCodewords * dsub_, 0.0f);
  RefreshColumns();
}

ProductQuantizer::ProductQuantizer(int dim, const PqOptions& opt, const float* codebooks)
    : ProductQuantizer(dim, opt) {
  if (codebooks == nullptr) throw std::invalid_argument("pq: codebooks must not be null");
  std::copy(codebooks, codebooks + codebooks_.size(), codebooks_.begin());
  RefreshColumns();
}

ProductQuantizer::ProductQuantizer(int dim, int dims_per_subspace, const float* codebooks)
    : ProductQuantizer(dim, PlainOptions(dims_per_subspace), codebooks) {}

int ProductQuantizer::width(int s) const { return std::min(dsub_, dim_ - s * dsub_); }

void ProductQuantizer::Train(const float* residuals, const float* points, size_t n) {
  if (opt_.anisotropic && points == nullptr && n > 0)
    throw std::invalid_argument("pq: anisotropic training needs the original rows");
  std::fill(codebooks_.begin(), codebooks_.end(), 0.0f);
  if (n > 0) TrainSubspaceKMeans(residuals, n);
  RefreshColumns();
  if (n > 0 && opt_.anisotropic) TrainScoreAware(residuals, points, n);
}

// Plain L2 k-means of 16 codewords in every subspace, each from its own derived seed.
void ProductQuantizer::TrainSubspaceKMeans(const float* residuals, size_t n) {
  const int k = static_cast<int>(std::min<size_t>(kPqCodewords, n));
  Rng seeds(opt_.seed);
  std::vector<float> sub(n * dsub_);
  std::vector<float> centroids(static_cast<size_t>(k) * dsub_);
  for (int s = 0; s < m_; s++) {
    CheckInterrupts(opt_.check_interrupts);
    const int w = width(s);
    for (size_t i = 0; i < n; i++) {
      const float* src = residuals + i * dim_ + s * dsub_;
      float* dst = sub.data() + i * dsub_;
      std::copy(src, src + w, dst);
      std::fill(dst + w, dst + dsub_, 0.0f);
    }
    KMeansOptions km;
    km.iterations = opt_.iterations;
    km.seed = seeds.Next();
    km.check_interrupts = opt_.check_interrupts;
    TrainKMeans(sub.data(), n, dsub_, k, km, centroids.data());
    for (int c = 0; c < kPqCodewords; c++) {
      const float* src = centroids.data() + static_cast<size_t>(c % k) * dsub_;
      std::copy(src, src + w,
                codebooks_.data() + (static_cast<size_t>(s) * kPqCodewords + c) * dsub_);
    }
  }
}

// The score-aware training loss, summed over rows,
//   weight_i * (||e_i||^2 + h_i (e_i . x_i)^2),  h_i = (eta_i - 1) / ||x_i||^2,
// is lowered by alternating encoding with exact codebook updates: first `iterations` rounds
// with h = 0 (plain encoding and weighted means: a weighted Lloyd step), then
// kAnisotropicRounds rounds of anisotropic encoding and UpdateSubspace. No step raises it.
void ProductQuantizer::TrainScoreAware(const float* residuals, const float* points, size_t n) {
  const std::vector<double> weight = RelevanceWeights(points, n, dim_, opt_.threshold);
  std::vector<uint8_t> codes(n * m_);
  for (int round = 0; round < opt_.iterations; round++) {
    for (size_t i = 0; i < n; i++) {
      if (i % 4096 == 0) CheckInterrupts(opt_.check_interrupts);
      EncodePlain(residuals + i * dim_, codes.data() + i * m_);
    }
    SetWeightedMeans(residuals, n, codes.data(), weight.data());
  }
  std::vector<double> h(n), ex(n);
  for (size_t i = 0; i < n; i++) {
    const double norm_sq = SquaredNorm(points + i * dim_, dim_);
    h[i] = norm_sq > 0.0 ? (AnisotropicEta(norm_sq, opt_.threshold, dim_) - 1.0) / norm_sq : 0.0;
  }
  for (int round = 0; round < kAnisotropicRounds; round++) {
    for (size_t i = 0; i < n; i++) {
      if (i % 4096 == 0) CheckInterrupts(opt_.check_interrupts);
      const float* r = residuals + i * dim_;
      const float* x = points + i * dim_;
      uint8_t* code = codes.data() + i * m_;
      EncodePlain(r, code);
      RefineAnisotropic(r, x, code);
      double dot = 0.0;
      for (int s = 0; s < m_; s++)
        dot += ErrorDot(r + s * dsub_, codeword(s, code[s]), x + s * dsub_, width(s));
      ex[i] = dot;
    }
    for (int s = 0; s < m_; s++) {
      CheckInterrupts(opt_.check_interrupts);
      UpdateSubspace(s, residuals, points, n, codes.data(), weight.data(), h.data(), ex.data());
    }
  }
}

// Every used codeword becomes the weighted mean of the residual sub-vectors coded with it
// (the exact update when h = 0), in one pass over the rows.
void ProductQuantizer::SetWeightedMeans(const float* residuals, size_t n, const uint8_t* codes,
                                        const double* weight) {
  std::vector<double> sums(codebooks_.size(), 0.0),
      mass(static_cast<size_t>(m_) * kPqCodewords, 0.0);
  for (size_t i = 0; i < n; i++) {
    for (int s = 0; s < m_; s++) {
      const size_t slot = static_cast<size_t>(s) * kPqCodewords + codes[i * m_ + s];
      const float* rs = residuals + i * dim_ + s * dsub_;
      mass[slot] += weight[i];
      for (int j = 0; j < width(s); j++) sums[slot * dsub_ + j] += weight[i] * rs[j];
    }
  }
  for (size_t slot = 0; slot < mass.size(); slot++) {
    if (!(mass[slot] > 0.0)) continue;
    for (int j = 0; j < width(static_cast<int>(slot / kPqCodewords)); j++)
      codebooks_[slot * dsub_ + j] = static_cast<float>(sums[slot * dsub_ + j] / mass[slot]);
  }
  RefreshColumns();
}

// The exact update of subspace s's codewords with the others held fixed: the loss of the rows
// coded c there is a quadratic in that codeword w alone,
//   sum_i weight_i (||r_i,s - w||^2 + h_i (x_i,s . (r_i,s - w) + beta_i)^2),
// with beta_i = e_i . x_i less subspace s's share, minimised by the width x width system
//   sum_i weight_i (I + h_i x_i,s x_i,s^T) w = sum_i weight_i (r_i,s + h_i x_i,s (x_i,s . r_i,s +
//   beta_i)).
// ex[i] (= e_i . x_i) follows the new codewords.
void ProductQuantizer::UpdateSubspace(int s, const float* residuals, const float* points, size_t n,
                                      const uint8_t* codes, const double* weight, const double* h,
                                      double* ex) {
  const int w = width(s);
  std::vector<double> a(static_cast<size_t>(kPqCodewords) * w * w, 0.0);
  std::vector<double> b(static_cast<size_t>(kPqCodewords) * w, 0.0);
  std::vector<double> beta(n);
  bool used[kPqCodewords] = {};
  for (size_t i = 0; i < n; i++) {
    const float* rs = residuals + i * dim_ + s * dsub_;
    const float* xs = points + i * dim_ + s * dsub_;
    const int c = codes[i * m_ + s];
    used[c] = true;
    beta[i] = ex[i] - ErrorDot(rs, codeword(s, c), xs, w);
    double xr = 0.0;
    for (int j = 0; j < w; j++) xr += static_cast<double>(xs[j]) * rs[j];
    const double wh = weight[i] * h[i];
    double* ac = a.data() + static_cast<size_t>(c) * w * w;
    double* bc = b.data() + static_cast<size_t>(c) * w;
    for (int j = 0; j < w; j++) {
      ac[j * w + j] += weight[i];
      for (int l = 0; l < w; l++) ac[j * w + l] += wh * xs[j] * xs[l];
      bc[j] += weight[i] * rs[j] + wh * xs[j] * (xr + beta[i]);
    }
  }
  std::vector<double> system, solution;
  for (int c = 0; c < kPqCodewords; c++) {
    if (!used[c]) continue;
    system.assign(a.begin() + static_cast<size_t>(c) * w * w,
                  a.begin() + static_cast<size_t>(c + 1) * w * w);
    solution.assign(b.begin() + static_cast<size_t>(c) * w,
                    b.begin() + static_cast<size_t>(c + 1) * w);
    if (!SolveSpd(system, solution, w)) continue;  // degenerate: keep the codeword
    float* cw = codebooks_.data() + (static_cast<size_t>(s) * kPqCodewords + c) * dsub_;
    for (int j = 0; j < w; j++) cw[j] = static_cast<float>(solution[j]);
  }
  RefreshColumns(s);  // only subspace s changed
  for (size_t i = 0; i < n; i++) {
    ex[i] = beta[i] + ErrorDot(residuals + i * dim_ + s * dsub_, codeword(s, codes[i * m_ + s]),
                               points + i * dim_ + s * dsub_, w);
  }
}

void ProductQuantizer::EncodePlain(const float* r, uint8_t* codes) const {
  float dist[kPqCodewords];
  for (int s = 0; s < m_; s++) {
    SquaredDistances(r + s * dsub_, s, dist);
    codes[s] = static_cast<uint8_t>(FirstMinimum16(dist));
  }
}

// The 16 codewords' squared distances to the sub-vector v of subspace s, summed over the
// coordinates in order, the codewords side by side in SIMD lanes of the build's baseline.
void ProductQuantizer::SquaredDistances(const float* v, int s, float* out) const {
  FloatBatch acc[kFloatBatches];
  for (auto& a : acc) a = FloatBatch(0.0f);
  for (int j = 0; j < width(s); j++) {
    const FloatBatch vj(v[j]);
    const float* col = column(s, j);
    for (int b = 0; b < kFloatBatches; b++) {
      const FloatBatch e = vj - FloatBatch::load_unaligned(col + b * FloatBatch::size);
      acc[b] += e * e;
    }
  }
  for (int b = 0; b < kFloatBatches; b++) acc[b].store_unaligned(out + b * FloatBatch::size);
}

// Coordinate descent on loss = sum_s ||e_s||^2 + h (sum_s e_s . x_s)^2, keeping e.x current.
// ||e_s||^2 and e_s . x_s of every candidate codeword depend only on the row, so the first
// round computes them and later rounds reuse them.
void ProductQuantizer::RefineAnisotropic(const float* r, const float* x, uint8_t* codes) const {
  const double norm_sq = SquaredNorm(x, dim_);
  if (!(norm_sq > 0.0)) return;
  const double h = (AnisotropicEta(norm_sq, opt_.threshold, dim_) - 1.0) / norm_sq;
  double ex = 0.0;
  for (int s = 0; s < m_; s++)
    ex += ErrorDot(r + s * dsub_, codeword(s, codes[s]), x + s * dsub_, width(s));
  // dd (m x 16) then ed (m x 16).
  std::vector<double> tables(static_cast<size_t>(2) * m_ * kPqCodewords);
  for (int round = 0; round < opt_.encode_rounds; round++) {
    bool changed = false;
    for (int s = 0; s < m_; s++) {
      double* dd = tables.data() + static_cast<size_t>(s) * kPqCodewords;
      double* ed = dd + static_cast<size_t>(m_) * kPqCodewords;
      if (round == 0) {
        const float* rs = r + s * dsub_;
        const float* xs = x + s * dsub_;
        // ||e_s||^2 and e_s . x_s for every candidate codeword, side by side in SIMD lanes.
        DoubleBatch dd_acc[kDoubleBatches], ed_acc[kDoubleBatches];
        for (int b = 0; b < kDoubleBatches; b++) dd_acc[b] = ed_acc[b] = DoubleBatch(0.0);
        for (int j = 0; j < width(s); j++) {
          const DoubleBatch rj(rs[j]), xj(xs[j]);
          const double* col = column_double(s, j);
          for (int b = 0; b < kDoubleBatches; b++) {
            const DoubleBatch e = rj - DoubleBatch::load_unaligned(col + b * DoubleBatch::size);
            dd_acc[b] += e * e;
            ed_acc[b] += e * xj;
          }
        }
        for (int b = 0; b < kDoubleBatches; b++) {
          dd_acc[b].store_unaligned(dd + b * DoubleBatch::size);
          ed_acc[b].store_unaligned(ed + b * DoubleBatch::size);
        }
      }
      const int current = codes[s];
      const double base = ex - ed[current];
      int best = current;
      double best_loss = dd[current] + h * (base + ed[current]) * (base + ed[current]);
      for (int c = 0; c < kPqCodewords; c++) {
        // Strictly lower only, so that rounding noise cannot make codes cycle.
        const double loss = dd[c] + h * (base + ed[c]) * (base + ed[c]);
        if (loss < best_loss) {
          best_loss = loss;
          best = c;
        }
      }
      changed |= best != current;
      codes[s] = static_cast<uint8_t>(best);
      ex = base + ed[best];
    }
    if (!changed) break;
  }
}

void ProductQuantizer::Encode(const float* residual, const float* point, uint8_t* codes) const {
  EncodePlain(residual, codes);
  if (!opt_.anisotropic) return;
  if (point == nullptr) throw std::invalid_argument("pq: anisotropic encoding needs the row");
  RefineAnisotropic(residual, point, codes);
}

void ProductQuantizer::Decode(const uint8_t* codes, float* residual_out) const {
  for (int s = 0; s < m_; s++) {
    const float* cw = codeword(s, codes[s]);
    std::copy(cw, cw + width(s), residual_out + s * dsub_);
  }
}

void ProductQuantizer::L2Lut(const float* query_residual, float* lut) const {
  for (int s = 0; s < m_; s++)
    SquaredDistances(query_residual + s * dsub_, s, lut + s * kPqCodewords);
}

void ProductQuantizer::IpLut(const float* query, float* lut) const {
  for (int s = 0; s < m_; s++) {
    FloatBatch acc[kFloatBatches];
    for (auto& a : acc) a = FloatBatch(0.0f);
    for (int j = 0; j < width(s); j++) {
      const FloatBatch qj(query[s * dsub_ + j]);
      const float* col = column(s, j);
      for (int b = 0; b < kFloatBatches; b++)
        acc[b] -= qj * FloatBatch::load_unaligned(col + b * FloatBatch::size);
    }
    for (int b = 0; b < kFloatBatches; b++)
      acc[b].store_unaligned(lut + s * kPqCodewords + b * FloatBatch::size);
  }
}

void ProductQuantizer::L2LutExact(const double* query_residual, double* lut) const {
  for (int s = 0; s < m_; s++)
    for (int c = 0; c < kPqCodewords; c++) {
      const float* w = codeword(s, c);
      double sum = 0.0;
      for (int j = 0; j < width(s); j++) {
        const double e = query_residual[s * dsub_ + j] - double(w[j]);
        sum += e * e;
      }
      lut[s * kPqCodewords + c] = sum;
    }
}

void ProductQuantizer::IpLutExact(const float* query, double* lut) const {
  for (int s = 0; s < m_; s++)
    for (int c = 0; c < kPqCodewords; c++) {
      const float* w = codeword(s, c);
      double sum = 0.0;
      for (int j = 0; j < width(s); j++) sum -= double(query[s * dsub_ + j]) * double(w[j]);
      lut[s * kPqCodewords + c] = sum;
    }
}

void ProductQuantizer::RefreshColumns() {
  by_dim_.resize(codebooks_.size());
  by_dim_double_.resize(codebooks_.size());
  for (int s = 0; s < m_; s++) RefreshColumns(s);
}

void ProductQuantizer::RefreshColumns(int s) {
  for (int c = 0; c < kPqCodewords; c++)
    for (int j = 0; j < dsub_; j++) {
      const size_t at = (static_cast<size_t>(s) * dsub_ + j) * kPqCodewords + c;
      by_dim_[at] = *(codeword(s, c) + j);
      by_dim_double_[at] = by_dim_[at];
    }
}

}  // namespace scann
