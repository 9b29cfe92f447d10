// AVX2 + FMA micro-kernels of AssignNearest and RankCentroids (compiled with -mavx2 -mfma;
// entered only after DetectIsa()). DotTile: twelve accumulators (6 rows x 2 vectors of 8
// centroids) hide the FMA latency; each step loads two centroid vectors and broadcasts six
// row coordinates.
#include <immintrin.h>
#include <xsimd/xsimd.hpp>

#include "core/kmeans.h"

namespace scann {
namespace avx2 {

namespace {
using Batch = xsimd::batch<float, xsimd::fma3<xsimd::avx2>>;
static_assert(Batch::size * 2 == kTileCols, "a tile row is two AVX2 vectors");
}  // namespace

void DotTile(const float* rows, size_t stride, const float* block, int dim, float* out) {
  Batch acc[kTileRows][2];
  for (auto& row : acc) row[0] = row[1] = Batch(0.0f);
  for (int i = 0; i < dim; i++) {
    const float* c = block + static_cast<size_t>(i) * kTileCols;
    const Batch c0 = Batch::load_unaligned(c);
    const Batch c1 = Batch::load_unaligned(c + Batch::size);
    for (int r = 0; r < kTileRows; r++) {
      const Batch x(rows[r * stride + i]);
      acc[r][0] = xsimd::fma(x, c0, acc[r][0]);
      acc[r][1] = xsimd::fma(x, c1, acc[r][1]);
    }
  }
  for (int r = 0; r < kTileRows; r++) {
    acc[r][0].store_unaligned(out + r * kTileCols);
    acc[r][1].store_unaligned(out + r * kTileCols + Batch::size);
  }
}

// One query against eight rows: one accumulator per row (8 FMA chains in flight) over 8
// coordinates at a time, the last 1-7 through masked loads.
void DotRows(const float* q, const float* rows, size_t stride, int dim, float* out) {
  constexpr int W = Batch::size;
  Batch acc[kDotRows];
  for (auto& a : acc) a = Batch(0.0f);
  int i = 0;
  for (; i + W <= dim; i += W) {
    const Batch u = Batch::load_unaligned(q + i);
    for (int r = 0; r < kDotRows; r++)
      acc[r] = xsimd::fma(u, Batch::load_unaligned(rows + r * stride + i), acc[r]);
  }
  if (i < dim) {  // masked loads read nothing past the row
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(dim - i), lanes);
    const Batch u(_mm256_maskload_ps(q + i, mask));
    for (int r = 0; r < kDotRows; r++)
      acc[r] = xsimd::fma(u, Batch(_mm256_maskload_ps(rows + r * stride + i, mask)), acc[r]);
  }
  // The eight horizontal sums at once: three rounds of pairwise adds leave row r's sum split
  // between lane r of the two 128-bit halves, which one permute lines up.
  const __m256 h01 = _mm256_hadd_ps(__m256(acc[0]), __m256(acc[1]));
  const __m256 h23 = _mm256_hadd_ps(__m256(acc[2]), __m256(acc[3]));
  const __m256 h45 = _mm256_hadd_ps(__m256(acc[4]), __m256(acc[5]));
  const __m256 h67 = _mm256_hadd_ps(__m256(acc[6]), __m256(acc[7]));
  const __m256 h0123 = _mm256_hadd_ps(h01, h23);  // rows 0-3: low halves | high halves
  const __m256 h4567 = _mm256_hadd_ps(h45, h67);
  const __m256 low = _mm256_permute2f128_ps(h0123, h4567, 0x20);
  const __m256 high = _mm256_permute2f128_ps(h0123, h4567, 0x31);
  _mm256_storeu_ps(out, _mm256_add_ps(low, high));
}

}  // namespace avx2
}  // namespace scann
