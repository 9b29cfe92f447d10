// AVX2 + FMA micro-kernels of AssignNearest and RankCentroids (compiled with -mavx2 -mfma;
// entered only after DetectIsa()). DotTile: twelve accumulators (6 rows x 2 vectors of 8
// centroids) hide the FMA latency; each step loads two centroid vectors and broadcasts six
// row coordinates.
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

// One query: four accumulators (even and odd coordinates x two vectors of 8 centroids)
// keep two FMA chains per output vector in flight.
void DotRow(const float* q, const float* block, int dim, float* out) {
  Batch even0(0.0f), even1(0.0f), odd0(0.0f), odd1(0.0f);
  int i = 0;
  for (; i + 1 < dim; i += 2) {
    const float* c = block + static_cast<size_t>(i) * kTileCols;
    const Batch x(q[i]), y(q[i + 1]);
    even0 = xsimd::fma(x, Batch::load_unaligned(c), even0);
    even1 = xsimd::fma(x, Batch::load_unaligned(c + Batch::size), even1);
    odd0 = xsimd::fma(y, Batch::load_unaligned(c + kTileCols), odd0);
    odd1 = xsimd::fma(y, Batch::load_unaligned(c + kTileCols + Batch::size), odd1);
  }
  if (i < dim) {
    const float* c = block + static_cast<size_t>(i) * kTileCols;
    const Batch x(q[i]);
    even0 = xsimd::fma(x, Batch::load_unaligned(c), even0);
    even1 = xsimd::fma(x, Batch::load_unaligned(c + Batch::size), even1);
  }
  (even0 + odd0).store_unaligned(out);
  (even1 + odd1).store_unaligned(out + Batch::size);
}

}  // namespace avx2
}  // namespace scann
