#include "core/calibration.h"

#include <algorithm>
#include <unordered_set>

#include "core/distance.h"
#include "core/isa.h"
#include "core/kmeans.h"

namespace scann {

namespace {

bool Nearer(const NeighborTruth::Neighbor& a, const NeighborTruth::Neighbor& b) {
  return a.score < b.score || (a.score == b.score && a.id < b.id);
}

}  // namespace

NeighborTruth::NeighborTruth(const float* queries, const uint64_t* query_ids, int nq, int dims,
                             bool inner_product, int k)
    : nq_(nq),
      dims_(dims),
      k_(k),
      inner_product_(inner_product),
      query_ids_(query_ids, query_ids + nq),
      query_norms_(nq),
      best_(nq) {
  const int blocks = (nq + kTileCols - 1) / kTileCols;
  packed_.assign(static_cast<size_t>(blocks) * kTileCols * dims, 0.0f);
  for (int q = 0; q < nq; q++) {
    const float* src = queries + static_cast<size_t>(q) * dims;
    float* dst = packed_.data() + static_cast<size_t>(q / kTileCols) * kTileCols * dims +
                 q % kTileCols;
    for (int i = 0; i < dims; i++) dst[static_cast<size_t>(i) * kTileCols] = src[i];
    query_norms_[q] = Distances().inner_product(src, src, static_cast<size_t>(dims));
  }
  for (auto& b : best_) b.reserve(k + 1);
}

void NeighborTruth::Add(const float* rows, const uint64_t* ids, size_t n) {
  const auto tile = ActiveIsa() == Isa::kAvx2 ? avx2::DotTile : scalar::DotTile;
  const int blocks = (nq_ + kTileCols - 1) / kTileCols;
  std::vector<float> pad(static_cast<size_t>(kTileRows) * dims_, 0.0f);
  float dots[kTileRows * kTileCols];
  float norms[kTileRows];
  for (size_t t = 0; t < n; t += kTileRows) {
    const size_t live = std::min<size_t>(kTileRows, n - t);
    const float* x = rows + t * dims_;
    if (live < size_t(kTileRows)) {  // the last partial tile reads a zero-padded copy
      std::fill(pad.begin(), pad.end(), 0.0f);
      std::copy(x, x + live * dims_, pad.begin());
      x = pad.data();
    }
    for (size_t r = 0; r < live; r++)
      norms[r] = inner_product_
                     ? 0.0f
                     : Distances().inner_product(x + r * dims_, x + r * dims_, size_t(dims_));
    for (int b = 0; b < blocks; b++) {
      tile(x, size_t(dims_), packed_.data() + static_cast<size_t>(b) * kTileCols * dims_, dims_,
           dots);
      for (size_t r = 0; r < live; r++)
        for (int j = 0; j < kTileCols && b * kTileCols + j < nq_; j++) {
          const int q = b * kTileCols + j;
          const float dot = dots[r * kTileCols + j];
          Offer(q, inner_product_ ? -dot : norms[r] - 2.0f * dot + query_norms_[q], ids[t + r]);
        }
    }
  }
}

void NeighborTruth::Offer(int q, float score, uint64_t id) {
  std::vector<Neighbor>& best = best_[q];
  const Neighbor n{score, id};
  if (int(best.size()) == k_ && !Nearer(n, best.back())) return;
  if (id == query_ids_[q]) return;
  best.insert(std::upper_bound(best.begin(), best.end(), n, Nearer), n);
  if (int(best.size()) > k_) best.pop_back();
}

void NeighborTruth::Merge(int q, const Neighbor* neighbors, int count) {
  for (int i = 0; i < count; i++) Offer(q, neighbors[i].score, neighbors[i].id);
}

double NeighborTruth::Recall(int q, const uint64_t* ids, size_t n) const {
  const std::vector<Neighbor>& best = best_[q];
  if (best.empty()) return 1.0;
  const std::unordered_set<uint64_t> found(ids, ids + n);
  int hits = 0;
  for (const Neighbor& b : best) hits += found.count(b.id) > 0;
  return double(hits) / double(best.size());
}

}  // namespace scann
