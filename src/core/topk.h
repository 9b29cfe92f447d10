// A bounded collector of the k smallest (score, id) pairs, for float scores or for the exact
// integer keys of scans (core/lut.h).  Pairs that pass the current
// bound are appended to a buffer of k + min(k, 4096); when it fills, a selection
// (nth_element) keeps the k smallest and tightens the bound to the k-th of them.  Appending costs
// O(1) where a heap costs O(log k) per pair, and a scan pushes hundreds of pairs per query. Entries
// are ordered by score, then id, so the kept set and the sorted results do not depend on the order
// of the pushes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace scann {

template <typename Score>
class BasicTopK {
 public:
  struct Entry {
    Score score;
    uint64_t id;
    uint64_t aux;  // carried along, not compared (where a scan finds the row's record)
  };

  BasicTopK() = default;
  explicit BasicTopK(size_t k) { Reset(k); }

  // Empties the collector and preallocates its buffer; no allocation until the next Reset
  // with a larger k.
  void Reset(size_t k) {
    k_ = k;
    cap_ = k + std::min<size_t>(k, kMaxSlack);
    buf_.clear();
    buf_.reserve(cap_);
    bounded_ = k == 0;
    bound_ = Entry{Lowest(), 0, 0};
  }

  size_t k() const { return k_; }
  // Entries kept: min(k, pairs accepted so far).
  size_t size() const { return std::min(buf_.size(), k_); }
  // Whether k pairs have been accepted (Threshold() is then finite or -inf).
  bool Full() const { return bounded_; }

  // The highest score until k pairs are kept (+inf for floats), then a bound on the worst of
  // the k best seen so far (the lowest score when k == 0): a score above it cannot enter; one
  // equal to it enters only with a smaller id.  It never rises, and after SortAscending() it is
  // exactly the k-th smallest score.
  Score Threshold() const { return bounded_ ? bound_.score : Highest(); }
  // The id of the pair the threshold belongs to (meaningful once Full()).
  uint64_t ThresholdId() const { return bound_.id; }

  // Offers one pair, in amortized O(1); NaN scores are ignored.
  void Push(Score score, uint64_t id, uint64_t aux = 0) {
    if constexpr (std::is_floating_point_v<Score>)
      if (std::isnan(score)) return;
    const Entry e{score, id, aux};
    if (bounded_ && !Less(e, bound_)) return;
    buf_.push_back(e);
    if (!bounded_ && buf_.size() == k_) {
      bound_ = *std::max_element(buf_.begin(), buf_.end(), Less);
      bounded_ = true;
    } else if (buf_.size() >= cap_) {
      Compact();
    }
  }

  // Keeps exactly the k smallest, sorted ascending by (score, id); read them with
  // begin()/end()/[].  Pushing again afterwards is allowed.
  void SortAscending() {
    Compact();
    std::sort(buf_.begin(), buf_.end(), Less);
  }

  const Entry* begin() const { return buf_.data(); }
  const Entry* end() const { return buf_.data() + size(); }
  const Entry& operator[](size_t i) const { return buf_[i]; }

 private:
  static bool Less(const Entry& a, const Entry& b) {
    return a.score < b.score || (a.score == b.score && a.id < b.id);
  }
  static constexpr Score Lowest() {
    if constexpr (std::is_floating_point_v<Score>) return -std::numeric_limits<Score>::infinity();
    return std::numeric_limits<Score>::min();
  }
  static constexpr Score Highest() {
    if constexpr (std::is_floating_point_v<Score>) return std::numeric_limits<Score>::infinity();
    return std::numeric_limits<Score>::max();
  }

  // Drops all but the k smallest; the k-th becomes the bound.
  void Compact() {
    if (buf_.size() <= k_) return;
    std::nth_element(buf_.begin(), buf_.begin() + (k_ - 1), buf_.end(), Less);
    buf_.resize(k_);
    bound_ = buf_[k_ - 1];
  }

  static constexpr size_t kMaxSlack = 4096;  // entries beyond k before a selection

  size_t k_ = 0;
  size_t cap_ = 0;
  std::vector<Entry> buf_;
  bool bounded_ = true;
  Entry bound_{Lowest(), 0, 0};
};

using TopK = BasicTopK<float>;
// Candidates of a scan ranked by their integer keys (core/lut.h).
using KeyTopK = BasicTopK<int64_t>;

}  // namespace scann
