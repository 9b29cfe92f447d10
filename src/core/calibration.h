// Calibrating a query knob against recall: the exact nearest neighbours of a few calibration
// queries over every row of an index, gathered while a build reads its rows, and the recall
// of candidate lists against them.
//
// Queries are usually rows of the index itself (the build's sample), so each one's own row is
// left out of its neighbours (the row would otherwise be found at distance 0 every time); a
// query from elsewhere has the id kNoQueryRow.
// Distances are those the quantizers see: squared L2 between the rows as given (normalized
// for cosine), or the negative inner product; they come from the same blocked kernel as
// k-means assignment (kmeans.h DotTile), several queries per pass over a chunk of rows, so
// the truth of 100 queries over GloVe-100's 331,479 rows costs a fraction of a second.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace scann {

inline constexpr uint64_t kNoQueryRow = UINT64_MAX;  // the query is not a row of the index

class NeighborTruth {
 public:
  struct Neighbor {
    float score;  // smaller is nearer
    uint64_t id;
  };

  // queries: nq x dims floats; query_ids[q] is query q's own row id (never its neighbour).
  NeighborTruth(const float* queries, const uint64_t* query_ids, int nq, int dims,
                bool inner_product, int k);

  int queries() const { return nq_; }
  // Query q's own row id (kNoQueryRow for a query from elsewhere).
  uint64_t query_id(int q) const { return query_ids_[q]; }
  int k() const { return k_; }

  // Offers n rows (n x dims floats) with their ids.
  void Add(const float* rows, const uint64_t* ids, size_t n);

  // Query q's neighbours so far, nearest first (ties by id), at most k.
  const std::vector<Neighbor>& Nearest(int q) const { return best_[q]; }

  // Offers another's neighbours of query q (a parallel participant's, read back).
  void Merge(int q, const Neighbor* neighbors, int count);

  // Fraction of query q's neighbours whose ids are among `ids` (n of them, any order); 1 when
  // q has no neighbour.
  double Recall(int q, const uint64_t* ids, size_t n) const;

 private:
  void Offer(int q, float score, uint64_t id);

  int nq_, dims_, k_;
  bool inner_product_;
  std::vector<uint64_t> query_ids_;
  std::vector<float> packed_;  // queries in blocks of 16, dimension-major (kmeans.h DotTile)
  std::vector<float> query_norms_;
  std::vector<std::vector<Neighbor>> best_;
};

}  // namespace scann
