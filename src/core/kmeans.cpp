#include "core/kmeans.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/distance.h"
#include "core/isa.h"
#include "core/rng.h"

namespace scann {

namespace scalar {

// Reference twin of avx2::DotTile: the same per-lane sums, without fused multiply-add.
// One row at a time keeps the 16 sums in registers on any target.
void DotTile(const float* rows, size_t stride, const float* block, int dim, float* out) {
  for (int r = 0; r < kTileRows; r++) {
    const float* x = rows + r * stride;
    float acc[kTileCols] = {};
    for (int i = 0; i < dim; i++) {
      const float* c = block + static_cast<size_t>(i) * kTileCols;
      for (int j = 0; j < kTileCols; j++) acc[j] += x[i] * c[j];
    }
    std::copy(acc, acc + kTileCols, out + r * kTileCols);
  }
}

// Reference twin of avx2::DotRows: the same lanes, without fused multiply-add.
void DotRows(const float* q, const float* rows, size_t stride, int dim, float* out) {
  constexpr int kLanes = 8;
  for (int r = 0; r < kDotRows; r++) {
    const float* x = rows + r * stride;
    float a[kLanes] = {};
    for (int i = 0; i < dim; i++) a[i % kLanes] += q[i] * x[i];
    out[r] = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
  }
}

}  // namespace scalar

namespace {

using DotTileFn = void (*)(const float*, size_t, const float*, int, float*);

DotTileFn ActiveDotTile() { return ActiveIsa() == Isa::kAvx2 ? avx2::DotTile : scalar::DotTile; }

using DotRowsFn = void (*)(const float*, const float*, size_t, int, float*);

DotRowsFn ActiveDotRows() { return ActiveIsa() == Isa::kAvx2 ? avx2::DotRows : scalar::DotRows; }

// Rows handled together: a multiple of kTileRows whose floats stay in L1/L2 while every
// centroid chunk passes over them.
constexpr size_t kRowChunk = 16 * kTileRows;
// Bytes of packed centroids visited per pass over a row chunk (fits in L2).
constexpr size_t kCentroidChunkBytes = 256 * 1024;
// Rows assigned between two interrupt checks during training.
constexpr size_t kRowsPerCheck = 4096;

void CheckCentroids(int dim, int k) {
  if (dim < 1) throw std::invalid_argument("k-means: dimension must be at least 1");
  if (k < 1) throw std::invalid_argument("k-means: k must be at least 1");
}

void CheckInterrupts(const InterruptCheck& check) {
  if (check) check();
}

// AssignNearest's layout: blocks of 16 centroids, dimension-major as in DotTile, then every
// centroid's squared norm (+infinity for the padding of the last block).
size_t PackedFloats(int k, int dim) {
  const size_t padded = static_cast<size_t>((k + kTileCols - 1) / kTileCols) * kTileCols;
  return padded * static_cast<size_t>(dim) + padded;
}

void PackForAssign(const float* centroids, int k, int dim, float* layout) {
  CheckCentroids(dim, k);
  const size_t padded = static_cast<size_t>((k + kTileCols - 1) / kTileCols) * kTileCols;
  const size_t block_floats = static_cast<size_t>(dim) * kTileCols;
  float* norms = layout + padded * dim;
  std::fill(layout, layout + padded * dim, 0.0f);
  std::fill(norms, norms + padded, std::numeric_limits<float>::infinity());
  for (int c = 0; c < k; c++) {
    const float* src = centroids + static_cast<size_t>(c) * dim;
    float* dst = layout + (c / kTileCols) * block_floats + c % kTileCols;
    for (int i = 0; i < dim; i++) dst[static_cast<size_t>(i) * kTileCols] = src[i];
    norms[c] = Distances().inner_product(src, src, dim);
  }
}

// Centroids in the DotTile layout with their squared norms, as PackForAssign writes them;
// the padding centroids of the last block have an infinite norm so they never win.
class PackedCentroids {
 public:
  PackedCentroids(const float* centroids, int k, int dim)
      : dim_(dim), blocks_((k + kTileCols - 1) / kTileCols), layout_(PackedFloats(k, dim)) {
    PackForAssign(centroids, k, dim, layout_.data());
  }

  int blocks() const { return blocks_; }
  const float* block(int b) const {
    return layout_.data() + static_cast<size_t>(b) * dim_ * kTileCols;
  }
  const float* norms(int b) const { return block(blocks_) + static_cast<size_t>(b) * kTileCols; }

 private:
  int dim_;
  int blocks_;
  std::vector<float> layout_;
};

// For rows [begin, end): out[i] = argmin_c ||c||^2 - 2 x_i.c and score[i] = that minimum.
void AssignRange(const float* data, size_t begin, size_t end, int dim, const PackedCentroids& pc,
                 int32_t* out, float* score) {
  const DotTileFn tile = ActiveDotTile();
  const size_t block_bytes = static_cast<size_t>(dim) * kTileCols * sizeof(float);
  const int blocks_per_chunk =
      static_cast<int>(std::max<size_t>(1, kCentroidChunkBytes / block_bytes));
  std::vector<float> pad(static_cast<size_t>(kTileRows) * dim);
  float dots[kTileRows * kTileCols];
  for (size_t r0 = begin; r0 < end; r0 += kRowChunk) {
    const size_t rows = std::min(kRowChunk, end - r0);
    const size_t full_tiles = rows / kTileRows;
    if (rows % kTileRows != 0) {
      // The last partial tile reads from a zero-padded copy instead of past the input.
      std::fill(pad.begin(), pad.end(), 0.0f);
      const float* src = data + (r0 + full_tiles * kTileRows) * dim;
      std::copy(src, src + (rows % kTileRows) * dim, pad.begin());
    }
    for (size_t r = 0; r < rows; r++) {
      score[r0 + r] = std::numeric_limits<float>::infinity();
      out[r0 + r] = 0;
    }
    for (int b0 = 0; b0 < pc.blocks(); b0 += blocks_per_chunk) {
      const int b1 = std::min(pc.blocks(), b0 + blocks_per_chunk);
      for (size_t t = 0; t < rows; t += kTileRows) {
        const float* x = t / kTileRows < full_tiles ? data + (r0 + t) * dim : pad.data();
        const size_t live = std::min<size_t>(kTileRows, rows - t);
        for (int b = b0; b < b1; b++) {
          tile(x, dim, pc.block(b), dim, dots);
          const float* norms = pc.norms(b);
          for (size_t r = 0; r < live; r++) {
            float s[kTileCols];
            for (int j = 0; j < kTileCols; j++) s[j] = norms[j] - 2.0f * dots[r * kTileCols + j];
            // The block's first smallest, taken if strictly below the best so far: the
            // first smallest over all blocks, as a scan of every centroid in order finds it.
            const int j = FirstMinimum16(s);
            float& best = score[r0 + t + r];
            if (s[j] < best) {
              best = s[j];
              out[r0 + t + r] = b * kTileCols + j;
            }
          }
        }
      }
    }
  }
}

// Copies k distinct rows, chosen uniformly by the seeded Rng, as the initial centroids.
void SampleInitialCentroids(const float* data, size_t n, int dim, int k, uint64_t seed,
                            float* centroids) {
  Rng rng(seed);
  std::vector<size_t> perm(n);
  std::iota(perm.begin(), perm.end(), size_t{0});
  for (int i = 0; i < k; i++) {
    const size_t j = i + rng.Below(n - i);
    std::swap(perm[i], perm[j]);
    const float* src = data + perm[i] * dim;
    std::copy(src, src + dim, centroids + static_cast<size_t>(i) * dim);
  }
}

// Gives every empty cluster the row farthest from its centroid among rows whose cluster
// keeps at least one other row: that removes the largest term of the objective.
void ReseedEmptyClusters(const std::vector<float>& dist, std::vector<int32_t>& assign,
                         std::vector<size_t>& counts) {
  if (std::find(counts.begin(), counts.end(), size_t{0}) == counts.end()) return;
  std::vector<size_t> order(assign.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return dist[a] > dist[b] || (dist[a] == dist[b] && a < b); });
  size_t next = 0;
  for (size_t c = 0; c < counts.size(); c++) {
    if (counts[c] != 0) continue;
    while (counts[assign[order[next]]] < 2) next++;  // k <= n: some cluster has two rows
    const size_t row = order[next++];
    counts[assign[row]]--;
    assign[row] = static_cast<int32_t>(c);
    counts[c] = 1;
  }
}

// Centroid = mean of its rows, summed in double so the order of rows barely matters.
void UpdateMeans(const float* data, size_t n, int dim, const std::vector<int32_t>& assign,
                 const std::vector<size_t>& counts, float* centroids) {
  const size_t k = counts.size();
  std::vector<double> sums(k * dim, 0.0);
  for (size_t i = 0; i < n; i++) {
    const float* x = data + i * dim;
    double* s = sums.data() + static_cast<size_t>(assign[i]) * dim;
    for (int j = 0; j < dim; j++) s[j] += x[j];
  }
  for (size_t c = 0; c < k; c++) {
    if (counts[c] == 0) continue;
    const double inv = 1.0 / static_cast<double>(counts[c]);
    for (int j = 0; j < dim; j++)
      centroids[c * dim + j] = static_cast<float>(sums[c * dim + j] * inv);
  }
}

}  // namespace

namespace scalar {
int FirstMinimum16(const float* d) { return static_cast<int>(std::min_element(d, d + 16) - d); }
}  // namespace scalar

int FirstMinimum16(const float* d) {
#if defined(__SSE2__)
  const __m128 a = _mm_loadu_ps(d), b = _mm_loadu_ps(d + 4), c = _mm_loadu_ps(d + 8),
               e = _mm_loadu_ps(d + 12);
  __m128 lo = _mm_min_ps(_mm_min_ps(a, b), _mm_min_ps(c, e));
  lo = _mm_min_ps(lo, _mm_shuffle_ps(lo, lo, _MM_SHUFFLE(2, 3, 0, 1)));
  lo = _mm_min_ps(lo, _mm_shuffle_ps(lo, lo, _MM_SHUFFLE(1, 0, 3, 2)));
  const int at =
      _mm_movemask_ps(_mm_cmpeq_ps(a, lo)) | (_mm_movemask_ps(_mm_cmpeq_ps(b, lo)) << 4) |
      (_mm_movemask_ps(_mm_cmpeq_ps(c, lo)) << 8) | (_mm_movemask_ps(_mm_cmpeq_ps(e, lo)) << 12);
  if (at == 0) return scalar::FirstMinimum16(d);  // NaN reached the minimum
  return __builtin_ctz(static_cast<unsigned>(at));
#else
  return scalar::FirstMinimum16(d);
#endif
}

void TrainKMeans(const float* data, size_t n, int dim, int k, const KMeansOptions& opt,
                 float* centroids) {
  CheckCentroids(dim, k);
  if (n < static_cast<size_t>(k))
    throw std::invalid_argument("k-means: k must not exceed the number of rows");
  if (opt.iterations < 0) throw std::invalid_argument("k-means: iterations must be >= 0");
  SampleInitialCentroids(data, n, dim, k, opt.seed, centroids);
  if (opt.iterations == 0) return;

  std::vector<float> row_norms(n);
  for (size_t i = 0; i < n; i++)
    row_norms[i] = Distances().inner_product(data + i * dim, data + i * dim, dim);
  std::vector<int32_t> assign(n);
  std::vector<float> dist(n);
  std::vector<size_t> counts(k);
  for (int it = 0; it < opt.iterations; it++) {
    const PackedCentroids packed(centroids, k, dim);
    for (size_t r0 = 0; r0 < n; r0 += kRowsPerCheck) {
      CheckInterrupts(opt.check_interrupts);
      AssignRange(data, r0, std::min(n, r0 + kRowsPerCheck), dim, packed, assign.data(),
                  dist.data());
    }
    std::fill(counts.begin(), counts.end(), size_t{0});
    for (size_t i = 0; i < n; i++) {
      counts[assign[i]]++;
      dist[i] = std::max(0.0f, dist[i] + row_norms[i]);
    }
    ReseedEmptyClusters(dist, assign, counts);
    UpdateMeans(data, n, dim, assign, counts, centroids);
  }
}

void AssignNearest(const float* data, size_t n, int dim, const float* centroids, int k,
                   int32_t* out) {
  CheckCentroids(dim, k);
  if (n == 0) return;
  const PackedCentroids packed(centroids, k, dim);
  std::vector<float> score(n);
  AssignRange(data, 0, n, dim, packed, out, score.data());
}

namespace {

// A score and its index as one key whose unsigned order is the ranking: score (as an
// ordered bit pattern: negatives flipped whole, others with the sign bit set; -0 counts as
// +0), then index.  NaN must already be mapped to +infinity.
uint64_t RankKey(float s, int c) {
  uint32_t bits;
  s += 0.0f;  // -0 -> +0
  std::memcpy(&bits, &s, sizeof(bits));
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (uint64_t(bits) << 32) | uint32_t(c);
}

// The `count` lowest keys of keys[k] moved, in order, to the front; their indexes into
// out_idx.  Selection then a sort of the head: O(k + count log count).  The bounded heap
// this replaces took ~3% of a query's samples under perf (GloVe-100, 576 lists, nprobe 40,
// reorder 100) and ~7% with 2,048 lists; the selection does not show on its own.
void SelectLowest(uint64_t* keys, int k, int count, int32_t* out_idx) {
  if (count == 0) return;
  if (count < k) std::nth_element(keys, keys + count, keys + k);
  std::sort(keys, keys + count);
  for (int c = 0; c < count; c++) out_idx[c] = int32_t(keys[c] & 0xFFFFFFFFu);
}

// Calls score(c, s) for every row-major centroid c, in index order, with s = ||c||^2 - 2 q.c,
// or -q.c for inner_product.  Every dot product comes from the same 8-row kernel (a last
// partial group is computed as the last eight rows), so equal rows score equally.
template <typename Score>
void ScoreRows(const float* q, const float* centroids, const float* norms, int k, int dim,
               bool inner_product, Score score) {
  const auto emit = [&](int c, float dot) {
    score(c, inner_product ? -dot : norms[c] - 2.0f * dot);
  };
  if (k < kDotRows) {
    for (int c = 0; c < k; c++)
      emit(c, Distances().inner_product(q, centroids + static_cast<size_t>(c) * dim, dim));
    return;
  }
  const DotRowsFn dot_rows = ActiveDotRows();
  float dots[kDotRows];
  for (int c = 0; c < k; c += kDotRows) {
    const int first = std::min(c, k - kDotRows);
    dot_rows(q, centroids + static_cast<size_t>(first) * dim, static_cast<size_t>(dim), dim, dots);
    for (int j = c - first; j < kDotRows; j++) emit(first + j, dots[j]);
  }
}

}  // namespace

void CentroidNorms(const float* centroids, int k, int dim, float* norms) {
  CheckCentroids(dim, k);
  for (int c = 0; c < k; c++) {
    const float* row = centroids + static_cast<size_t>(c) * dim;
    norms[c] = Distances().inner_product(row, row, dim);
  }
}

void RankCentroids(const float* q, const float* centroids, const float* norms, int k, int dim,
                   bool inner_product, int count, int32_t* out_idx, uint64_t* scratch) {
  CheckCentroids(dim, k);
  if (count < 0 || count > k)
    throw std::invalid_argument("rank centroids: count must be in [0, k]");
  ScoreRows(q, centroids, norms, k, dim, inner_product, [scratch](int c, float s) {
    scratch[c] = RankKey(std::isnan(s) ? std::numeric_limits<float>::infinity() : s, c);
  });
  SelectLowest(scratch, k, count, out_idx);
}

int NearestCentroidWithNorms(const float* x, const float* centroids, const float* norms, int k,
                             int dim) {
  CheckCentroids(dim, k);
  float best = std::numeric_limits<float>::infinity();
  int best_index = 0;
  ScoreRows(x, centroids, norms, k, dim, false, [&](int c, float s) {
    if (s < best) {  // false for NaN: a NaN score never wins
      best = s;
      best_index = c;
    }
  });
  return best_index;
}

}  // namespace scann
