// The lookup tables of one query over a set of lists (a "ring"), quantized for FastScan.
//
// Keys.  Every table shares one scale, and list i gets an integer offset Offset(i), so the key
// Offset(i) + score (score: the uint16 FastScan sum of a candidate's uint8 entries) orders the
// candidates of all the ring's lists on one integer scale.  Scans compare keys only as
// integers: a cut-off between batches, a top-k bound and the SIMD threshold test then agree
// exactly, so a candidate tied with a cut-off is never skipped by one test and excluded by
// another.  key / scale() approximates the float score (the sum of the float table entries
// plus the list's bias), within m half-steps of the quantization.
//
// Tables.  L2: one table per list, of the residual query - centroid.  Inner product: one table
// shared by all lists, and per list the bias -<query, centroid>.  Tables are computed in float
// with the SIMD kernels; a table whose float entries overflow (a finite but huge row or query)
// is computed again in double, where every entry of finite inputs is finite.
//
// Outliers.  One subspace range far above the others (a list whose centroid or codewords lie
// at 1e20 among rows near 1) would set the shared scale alone and quantize every other entry
// to 0.  Entries are therefore clipped at min + kClipRatio (16) x the median over tables of their
// mean subspace range: a clipped entry makes its candidate look nearer than it is (it may be
// re-ranked for nothing) but never hides a candidate.  Ordinary data never clips.
//
// Memory.  The float and uint8 tables of all lists are kept when they fit in the budget given
// to Prepare; otherwise only one list's table is held, and Table(i) computes list i's table
// again just before it is scored (same bytes, computed twice).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/pq.h"

namespace scann {

enum class LutMetric { kL2, kInnerProduct };

class QueryLuts {
 public:
  // Entries above min + kClipRatio x (median mean range) are clipped (see above).
  static constexpr double kClipRatio = 16.0;

  // Prepares the tables of `query` (pq.dim() floats) for the n lists whose centroids are
  // centroids[0..n) (each pq.dim() floats; they must stay valid until the last Table() call of
  // this ring).  pq must have at least one subspace.
  void Prepare(const ProductQuantizer& pq, LutMetric metric, const float* query,
               const float* const* centroids, int n, size_t budget_bytes);

  // The uint8 table of list i (FastScanCodeBytes(m) bytes), valid until the next call.
  const uint8_t* Table(int i);
  // The integer offset of list i.
  int64_t Offset(int i) const { return offsets_[i]; }
  // Candidates' keys divided by this approximate their float scores.
  double scale() const { return scale_; }
  // Whether the tables are computed again per list (they did not fit in the budget).
  bool streamed() const { return streamed_; }
  // Whether any entry was clipped (for tests).
  bool clipped() const { return cap_ < kNoCap; }

 private:
  static constexpr double kNoCap = 1e300;

  struct TableInfo {
    double sum_range;  // sum over subspaces of max - min
    double max_range;  // largest subspace range
    double offset;     // sum over subspaces of min (the unclipped, unscaled offset)
    bool exact;        // computed in double
  };

  int tables() const { return metric_ == LutMetric::kL2 ? n_ : 1; }
  // Fills float table t into out; false when an entry or range is not finite.
  bool FloatTable(int t, float* out, TableInfo* info);
  // Fills table t in double into out.
  void DoubleTable(int t, double* out, TableInfo* info);
  // Table t's entries in whichever precision it uses, at floats_/doubles_ (materialized) or
  // into the single scratch table (streamed).
  const float* FloatAt(int t);
  const double* DoubleAt(int t);
  void ChooseCap();
  void Quantize(int t, uint8_t* qlut);
  double Bias(int i) const;

  const ProductQuantizer* pq_ = nullptr;
  LutMetric metric_ = LutMetric::kL2;
  const float* query_ = nullptr;
  std::vector<const float*> centroids_;
  int n_ = 0, m_ = 0, dims_ = 0;
  bool streamed_ = false;
  bool any_exact_ = false;
  double cap_ = kNoCap;
  double scale_ = 1.0;
  std::vector<TableInfo> info_;
  std::vector<float> floats_;     // materialized float tables (or one scratch table)
  std::vector<double> doubles_;   // materialized double tables of exact tables (or scratch)
  std::vector<size_t> slot_;      // where table t lies in floats_ / doubles_
  std::vector<uint8_t> qluts_;    // materialized uint8 tables (or one)
  std::vector<int64_t> offsets_;  // per list
  std::vector<float> residual_;
  std::vector<double> residual_exact_;
};

}  // namespace scann
