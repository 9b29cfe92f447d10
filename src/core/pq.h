// 4-bit product quantizer of IVF residuals, with ScaNN's score-aware (anisotropic) loss.
//
// A vector of dim floats is cut into m = ceil(dim / dims_per_subspace) sub-vectors; the last
// one is padded with zeros, and its codewords are zero there too, so padding never changes a
// distance. Each sub-vector is replaced by the index (0..15) of one of 16 codewords; one set
// of codebooks is shared by all IVF lists and encodes residuals r = x - c.
//
// Score-aware loss (Guo et al. 2020, "Accelerating Large-Scale Inference with Anisotropic
// Vector Quantization", Theorem 3.2): for a row x and quantization error e = r - r~ (= x - x~),
//   loss = h_perp(||x||) * (eta * ||e_par||^2 + ||e_perp||^2)
//        = h_perp(||x||) * (||e||^2 + (eta - 1) * (e.x)^2 / ||x||^2),
//   eta  = (d - 1) * t / (1 - t),  t = T^2 / ||x||^2  (ScaNN's approximation, Theorem 3.4),
// where h_perp(||x||) = integral of sin^d over [0, acos(T / ||x||)] measures how often x meets
// a unit query with <q, x> >= T. The error along x, which shifts every large inner product,
// costs eta times more. Encoding uses eta alone (the per-row factor does not change a row's
// best codes); codebook training uses the whole loss. On unit-norm rows h_perp is a constant
// and this is exactly ScaNN's loss; on unnormalized rows it favours long rows, and that is
// where most of the gain on unnormalized GloVe comes from (test_pq.cpp).
//
// T is on the scale of <q, x> for unit q: 0.2 suits unit-norm rows (cosine). For rows of norm
// around N it must grow with N: with T << N every eta < 1 and h_perp is flat, which ranks
// worse than plain PQ (unnormalized GloVe, median norm 5.4: T = 0.2 loses, T = 2 wins).
// t is clamped to at most 1/2, i.e. eta <= d - 1: rows with ||x|| <= sqrt(2) T (which the
// formula would weigh infinitely, or negatively) get the parallel error weighted like all
// d - 1 perpendicular directions together. Zero rows use the plain loss.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/kmeans.h"

namespace scann {

struct PqOptions {
  int dims_per_subspace = 2;  // the last subspace may be shorter: padded with zeros
  bool anisotropic = false;   // score-aware loss (for inner product / cosine)
  float threshold = 0.2f;     // ScaNN's T (must be > 0 when anisotropic)
  int iterations = 10;        // codebook k-means iterations (and weighted Lloyd rounds)
  int encode_rounds = 3;      // coordinate-descent rounds for anisotropic encoding
  uint64_t seed = 0x5ca1ab1e;
  InterruptCheck check_interrupts;
};

constexpr int kPqCodewords = 16;

// The anisotropic weight eta of a row with squared norm `norm_sq` in `dim` dimensions, as
// clamped above (1 for a zero row).
double AnisotropicEta(double norm_sq, double threshold, int dim);

// Rows whose residual norm is above this many times the median are left out of codebook
// training.
constexpr double kPqOutlierRatio = 64.0;

// Keeps, in order at the front of both row-major arrays (n rows of dim floats), the rows fit
// for codebook training and returns how many: rows whose residual is non-finite or has a norm
// above kPqOutlierRatio times the median are dropped (their contents are overwritten).  A
// single row at 1e20 among rows near 1 would otherwise take a codeword of its own in some
// subspaces, and every query's lookup table would then span 1e20 and lose all resolution.
// When the median norm is 0 only non-finite rows are dropped.
size_t DropOutlierRows(float* residuals, float* points, size_t n, int dim);

class ProductQuantizer {
 public:
  // An untrained quantizer (all codewords zero); throws std::invalid_argument on dim < 1,
  // dims_per_subspace < 1, negative iterations / rounds, or a threshold that is not > 0.
  ProductQuantizer(int dim, const PqOptions& opt);
  // Rebuilds a trained quantizer from codebooks() as stored on disk. Pass the options the
  // index was built with so that rows inserted later are encoded like the build's rows
  // (anisotropic, threshold and encode_rounds matter to Encode; training options do not).
  ProductQuantizer(int dim, const PqOptions& opt, const float* codebooks);
  // The same with plain options (anisotropic = false).
  ProductQuantizer(int dim, int dims_per_subspace, const float* codebooks);

  int dim() const { return dim_; }
  int num_subspaces() const { return m_; }
  int dims_per_subspace() const { return dsub_; }
  // Flat m * 16 * dims_per_subspace floats: codebooks()[(s * 16 + c) * dsub + j].
  const float* codebooks() const { return codebooks_.data(); }
  size_t codebook_floats() const { return codebooks_.size(); }

  // Trains the codebooks on n residuals (n x dim); points are the original rows (n x dim),
  // required when anisotropic. Plain k-means per subspace; when anisotropic, then
  // `iterations` weighted Lloyd rounds and 3 rounds of anisotropic encoding, each followed
  // by an exact per-codeword least-squares update under the score-aware loss.
  // n may be below 16 (spare codewords repeat trained ones) or 0 (codewords stay zero).
  void Train(const float* residuals, const float* points, size_t n);

  // Codes (num_subspaces() values in 0..15) of one residual; point is its original row,
  // used (and required) only when anisotropic. Allocates nothing.
  void Encode(const float* residual, const float* point, uint8_t* codes) const;
  void Decode(const uint8_t* codes, float* residual_out) const;

  // Lookup tables of m * 16 floats, lut[s * 16 + c]. L2: ||q_res_s - codeword||^2 for the
  // query residual q - c. IP: -<q_s, codeword> (smaller is better; add -<q, c> per list).
  void L2Lut(const float* query_residual, float* lut) const;
  void IpLut(const float* query, float* lut) const;
  // The same tables computed in double, for inputs whose float tables overflow (every entry
  // of finite inputs is finite in double).
  void L2LutExact(const double* query_residual, double* lut) const;
  void IpLutExact(const float* query, double* lut) const;

 private:
  const float* codeword(int s, int c) const {
    return codebooks_.data() + (static_cast<size_t>(s) * kPqCodewords + c) * dsub_;
  }
  // Coordinate j of the 16 codewords of subspace s, contiguous (a copy kept by
  // RefreshColumns so the loops over codewords vectorize).
  const float* column(int s, int j) const {
    return by_dim_.data() + (static_cast<size_t>(s) * dsub_ + j) * kPqCodewords;
  }
  const double* column_double(int s, int j) const {
    return by_dim_double_.data() + (static_cast<size_t>(s) * dsub_ + j) * kPqCodewords;
  }
  void RefreshColumns();       // every subspace (sizes the copies)
  void RefreshColumns(int s);  // subspace s only
  // Floats of subspace s actually present in a dim-float vector (dsub, or fewer for the last).
  int width(int s) const;
  // out[c] = ||v - codeword(s, c)||^2 for the sub-vector v of subspace s.
  void SquaredDistances(const float* v, int s, float* out) const;
  // Nearest codeword (L2) of each sub-vector of r.
  void EncodePlain(const float* r, uint8_t* codes) const;
  // Lowers the anisotropic loss of codes by coordinate descent over subspaces.
  void RefineAnisotropic(const float* r, const float* x, uint8_t* codes) const;
  void TrainSubspaceKMeans(const float* residuals, size_t n);
  void TrainScoreAware(const float* residuals, const float* points, size_t n);
  void SetWeightedMeans(const float* residuals, size_t n, const uint8_t* codes,
                        const double* weight);
  void UpdateSubspace(int s, const float* residuals, const float* points, size_t n,
                      const uint8_t* codes, const double* weight, const double* h, double* ex);

  int dim_;
  int dsub_;
  int m_;
  PqOptions opt_;
  std::vector<float> codebooks_;
  // by_dim_[(s * dsub + j) * 16 + c] = codebooks_[(s * 16 + c) * dsub + j]
  std::vector<float> by_dim_;
  // The same columns as doubles, for the anisotropic encoding's double-precision errors.
  std::vector<double> by_dim_double_;
};

}  // namespace scann
