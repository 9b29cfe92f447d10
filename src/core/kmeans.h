// K-means (L2) for the IVF partitions and the PQ codebooks, and nearest-centroid search.
// Pure C++: callers own every input and output buffer; work arrays live in std::vector so an
// exception thrown by the interrupt callback unwinds without leaking.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

namespace scann {

// Called every so often from long loops; it may throw (a C++ exception that must unwind
// cleanly). May be empty.
using InterruptCheck = std::function<void()>;

struct KMeansOptions {
  int iterations = 10;
  uint64_t seed = 0x5ca1ab1e;
  InterruptCheck check_interrupts;
};

// Trains k centroids on n row-major rows of dim floats and writes k * dim floats. Lloyd's
// algorithm from k distinct rows drawn with the seeded Rng (k-means++ seeding cost more than
// an iteration and reached the same objective on GloVe, 50,000 rows, k = 600); a cluster
// left empty is re-seeded with the row farthest from its centroid (taken from a cluster of
// two or more). Requires
// n >= 1, dim >= 1 and 1 <= k <= n (std::invalid_argument otherwise). Deterministic for
// equal input, seed and instruction set. iterations = 0 returns the initial rows.
void TrainKMeans(const float* data, size_t n, int dim, int k, const KMeansOptions& opt,
                 float* centroids);

// Nearest centroid of each of n rows into out[n], by the blocked ||c||^2 - 2 x.c kernel.
// On a near-tie it may pick a different centroid than a direct distance search (rounding
// differs).  Each call repacks the centroids (k * dim floats): give it thousands of rows at a
// time, and use NearestCentroidWithNorms for a single row.
void AssignNearest(const float* data, size_t n, int dim, const float* centroids, int k,
                   int32_t* out);

// Index of the first smallest of 16 floats (std::min_element's answer): the nearest of 16
// centroids or codewords. SSE2 (x86-64's baseline) finds it without the data-dependent
// branches of the scalar twin, which mispredict on most rows: they were the largest single
// cost of codebook training and encoding. With NaN among the values the index may differ
// from the scalar twin's, but it is always in 0..15.
int FirstMinimum16(const float* d);
namespace scalar {
int FirstMinimum16(const float* d);
}

// Squared norms of k row-major centroids into norms[k]: what RankCentroids and
// NearestCentroidWithNorms need besides the centroids.
void CentroidNorms(const float* centroids, int k, int dim, float* norms);

// The `count` (0 <= count <= k) best of k row-major centroids for q into out_idx[count],
// best first, ties by index: by ||c||^2 - 2 q.c (squared L2 distance less ||q||^2:
// the order of direct squared L2 distances up to float rounding) or, with inner_product, by the
// largest q.c. norms from CentroidNorms (unused with inner_product).  scratch holds k keys (scores
// with their indexes); NaN scores rank last.  Allocates nothing.
void RankCentroids(const float* q, const float* centroids, const float* norms, int k, int dim,
                   bool inner_product, int count, int32_t* out_idx, uint64_t* scratch);

// Index of the nearest of k row-major centroids to x by ||c||^2 - 2 x.c (the lowest index
// among equal scores; a direct distance search's answer up to float rounding).  For one row
// at a time with norms computed once (inserts).
int NearestCentroidWithNorms(const float* x, const float* centroids, const float* norms, int k,
                             int dim);

// The micro-kernel behind AssignNearest, one per instruction set: out[r * 16 + j] =
// <rows[r], block[:, j]> for 6 rows (row r at rows + r * stride) and one block of 16
// centroids packed dimension-major (block[i * 16 + j] = centroid j, coordinate i).
// Exposed so tests can hold the SIMD twin to the scalar reference.
constexpr int kTileRows = 6;
constexpr int kTileCols = 16;
namespace scalar {
void DotTile(const float* rows, size_t stride, const float* block, int dim, float* out);
}
namespace avx2 {
void DotTile(const float* rows, size_t stride, const float* block, int dim, float* out);
}

// The micro-kernel behind RankCentroids: out[r] = <q, rows[r]> for 8 rows at rows + r *
// stride; coordinate i summed into lane i % 8 of the row's accumulator, the lanes added
// pairwise at the end.
constexpr int kDotRows = 8;
namespace scalar {
void DotRows(const float* q, const float* rows, size_t stride, int dim, float* out);
}
namespace avx2 {
void DotRows(const float* q, const float* rows, size_t stride, int dim, float* out);
}

}  // namespace scann
