// A bounded collector of the k smallest (score, id) pairs: a max-heap of k entries whose top
// is the worst kept one.  Entries are ordered by score, then id, so the kept set and the
// sorted results do not depend on the order of the pushes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace scann {

class TopK {
 public:
  struct Entry {
    float score;
    uint64_t id;
  };

  TopK() = default;
  explicit TopK(size_t k) { Reset(k); }

  // Empties the collector and preallocates room for k entries; no allocation until the
  // next Reset with a larger k.
  void Reset(size_t k) {
    k_ = k;
    heap_.clear();
    heap_.reserve(k);
    sorted_ = false;
  }

  size_t k() const { return k_; }
  size_t size() const { return heap_.size(); }
  bool Full() const { return heap_.size() >= k_; }

  // +inf until k entries are kept, then the worst kept score (-inf when k == 0): a score
  // above it cannot enter; one equal to it enters only with a smaller id.
  float Threshold() const {
    if (!Full()) return std::numeric_limits<float>::infinity();
    if (k_ == 0) return -std::numeric_limits<float>::infinity();
    return sorted_ ? heap_.back().score : heap_[0].score;
  }

  // Offers one pair in O(log k); NaN scores are ignored.
  void Push(float score, uint64_t id) {
    if (std::isnan(score)) return;
    if (sorted_) Reheap();
    const Entry e{score, id};
    if (!Full()) {
      heap_.push_back(e);
      SiftUp(heap_.size() - 1);
    } else if (k_ > 0 && Less(e, heap_[0])) {
      heap_[0] = e;
      SiftDown(0);
    }
  }

  // Sorts the kept entries ascending by (score, id); read them with begin()/end()/[].
  // Pushing again afterwards is allowed (the heap is rebuilt).
  void SortAscending() {
    std::sort(heap_.begin(), heap_.end(), Less);
    sorted_ = true;
  }

  const Entry* begin() const { return heap_.data(); }
  const Entry* end() const { return heap_.data() + heap_.size(); }
  const Entry& operator[](size_t i) const { return heap_[i]; }

 private:
  static bool Less(const Entry& a, const Entry& b) {
    return a.score < b.score || (a.score == b.score && a.id < b.id);
  }

  // An ascending array reversed is a valid max-heap.
  void Reheap() {
    std::reverse(heap_.begin(), heap_.end());
    sorted_ = false;
  }

  void SiftUp(size_t i) {
    const Entry e = heap_[i];
    while (i > 0) {
      const size_t parent = (i - 1) / 2;
      if (!Less(heap_[parent], e)) break;
      heap_[i] = heap_[parent];
      i = parent;
    }
    heap_[i] = e;
  }

  void SiftDown(size_t i) {
    const Entry e = heap_[i];
    const size_t n = heap_.size();
    for (;;) {
      size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && Less(heap_[child], heap_[child + 1])) child++;
      if (!Less(e, heap_[child])) break;
      heap_[i] = heap_[child];
      i = child;
    }
    heap_[i] = e;
  }

  size_t k_ = 0;
  std::vector<Entry> heap_;
  bool sorted_ = false;
};

}  // namespace scann
