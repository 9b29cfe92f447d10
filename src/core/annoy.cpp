#include "core/annoy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/distance.h"
#include "core/rng.h"

namespace scann {

namespace {

// The sixteen lanes of AnnoyDot, added pairwise in a fixed order.
float SumLanes(const float acc[kAnnoyDotLanes]) {
  float s[8];
  for (int j = 0; j < 8; j++) s[j] = acc[j] + acc[j + 8];
  return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

}  // namespace

namespace scalar {

float AnnoyDot(const float* x, const float* y, int dims) {
  float acc[kAnnoyDotLanes] = {};
  int i = 0;
  for (; i + kAnnoyDotLanes <= dims; i += kAnnoyDotLanes)
    for (int j = 0; j < kAnnoyDotLanes; j++) acc[j] += x[i + j] * y[i + j];
  for (int j = 0; i < dims; i++, j++) acc[j] += x[i] * y[i];
  return SumLanes(acc);
}

}  // namespace scalar

#if defined(__SSE2__)
// Four SSE2 vectors hold the sixteen lanes: the scalar twin's sums, bit for bit.
float AnnoyDot(const float* x, const float* y, int dims) {
  __m128 a0 = _mm_setzero_ps(), a1 = _mm_setzero_ps(), a2 = _mm_setzero_ps(), a3 = _mm_setzero_ps();
  int i = 0;
  for (; i + kAnnoyDotLanes <= dims; i += kAnnoyDotLanes) {
    a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_loadu_ps(x + i), _mm_loadu_ps(y + i)));
    a1 = _mm_add_ps(a1, _mm_mul_ps(_mm_loadu_ps(x + i + 4), _mm_loadu_ps(y + i + 4)));
    a2 = _mm_add_ps(a2, _mm_mul_ps(_mm_loadu_ps(x + i + 8), _mm_loadu_ps(y + i + 8)));
    a3 = _mm_add_ps(a3, _mm_mul_ps(_mm_loadu_ps(x + i + 12), _mm_loadu_ps(y + i + 12)));
  }
  float acc[kAnnoyDotLanes];
  _mm_storeu_ps(acc, a0);
  _mm_storeu_ps(acc + 4, a1);
  _mm_storeu_ps(acc + 8, a2);
  _mm_storeu_ps(acc + 12, a3);
  for (int j = 0; i < dims; i++, j++) acc[j] += x[i] * y[i];
  return SumLanes(acc);
}
#else
float AnnoyDot(const float* x, const float* y, int dims) { return scalar::AnnoyDot(x, y, dims); }
#endif

namespace {

constexpr uint32_t kMagic = 0x594f4e41;  // "ANOY" in the first four bytes (little-endian)
constexpr uint32_t kVersion = 1;
enum HeaderWord : size_t {
  kWordMagic,
  kWordVersion,
  kWordDims,
  kWordMetric,
  kWordTrees,
  kWordLeaves,
  kWordNodes,
  kWordChecksum,
  kHeaderWords
};
constexpr int kMaxTrees = 4096;
constexpr uint32_t kMaxDims = 1u << 20;

constexpr int kTwoMeansSteps = 200;  // Annoy's iteration_steps
constexpr int kSplitAttempts = 3;    // Annoy's attempts at a balanced hyperplane
constexpr double kGoodImbalance = 0.95;
constexpr double kWorstImbalance = 0.99;
// Floats of work (rows x dims) between two interrupt checks during the build.
constexpr size_t kWorkPerCheck = size_t{1} << 22;
// (row, tree) walks RouteBatch keeps in flight, and rows it routes tree after tree (measured
// on GloVe-100 with 16 trees: 240,000 rows/s row after row, 400,000 in blocks of 4,096; on
// Fashion-MNIST 23,000 and 43,000).
constexpr int kLanes = 16;
constexpr size_t kRouteRows = 4096;

// The margin w.x + b that decides sides, for the build and every route alike; NaN (an
// overflowing dot product) counts as 0.
float PlaneMargin(const float* w, float b, const float* x, int dims) {
  const float m = AnnoyDot(w, x, dims) + b;
  return m == m ? m : 0.0f;
}

// The uint32 / int32 at p (a stream may be any buffer; memcpy reads it whatever its type).
uint32_t LoadWord(const unsigned char* p) {
  uint32_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

int32_t LoadRef(const unsigned char* p) {
  int32_t r;
  std::memcpy(&r, p, sizeof r);
  return r;
}

// One FNV-1a step of a checksum lane.
uint64_t MixChecksumLane(uint64_t h, uint32_t word) {
  return (h ^ word) * 0x100000001b3ULL;  // FNV-1a's 64-bit prime, one 32-bit word per step
}

// Refuses a stream, saying why.
[[noreturn]] void Corrupt(const std::string& what) {
  throw std::invalid_argument("annoy forest stream: " + what);
}

}  // namespace

uint32_t AnnoyChecksum(const void* bytes, size_t size) {
  if (size < kHeaderWords * 4 || size % 4 != 0) return 0;
  const unsigned char* p = static_cast<const unsigned char*>(bytes);
  const size_t words = size / 4;
  // Four independent lanes (word i feeds lane i % 4) keep the multiplies in flight.
  uint64_t h[4] = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL, 0x9e3779b97f4a7c15ULL,
                   0xbf58476d1ce4e5b9ULL};
  for (size_t i = 0; i < kHeaderWords; i++)
    h[i % 4] = MixChecksumLane(h[i % 4], i == kWordChecksum ? 0 : LoadWord(p + 4 * i));
  size_t i = kHeaderWords;
  for (; i + 4 <= words; i += 4)
    for (int j = 0; j < 4; j++) h[j] = MixChecksumLane(h[j], LoadWord(p + 4 * (i + j)));
  for (; i < words; i++) h[i % 4] = MixChecksumLane(h[i % 4], LoadWord(p + 4 * i));
  // Each step is a bijection of the lane, so a change in one lane always changes x.
  uint64_t x = words;
  for (uint64_t lane : h) {
    x = (x ^ lane) * 0x100000001b3ULL;
    x ^= x >> 32;
  }
  uint64_t state = x;
  x = SplitMix64(&state);
  return static_cast<uint32_t>(x ^ (x >> 32));
}

AnnoyForest AnnoyForest::View(const void* bytes, size_t size) {
  if (bytes == nullptr) Corrupt("no bytes");
  if (reinterpret_cast<uintptr_t>(bytes) % alignof(float) != 0) Corrupt("not 4-byte aligned");
  AnnoyForest f;
  f.base_ = static_cast<const unsigned char*>(bytes);
  f.size_ = size;
  f.Open();
  return f;
}

AnnoyForest AnnoyForest::Deserialize(const void* bytes, size_t size) {
  if (bytes == nullptr) Corrupt("no bytes");
  if (size < kHeaderWords * 4 || size % 4 != 0)
    Corrupt("size " + std::to_string(size) + " is not a header plus whole words");
  auto words = std::make_shared<std::vector<uint32_t>>(size / 4);
  std::memcpy(words->data(), bytes, size);
  AnnoyForest f;
  f.base_ = reinterpret_cast<const unsigned char*>(words->data());
  f.size_ = size;
  f.owned_ = std::move(words);
  f.Open();
  return f;
}

void AnnoyForest::Serialize(void* out) const {
  if (size_ > 0) std::memcpy(out, base_, size_);
}

int AnnoyForest::FirstLeaf(int tree) const {
  return LoadRef(first_leaf_ + 4 * static_cast<size_t>(tree));
}

float AnnoyForest::Margin(int32_t node, const float* x) const {
  const float* w = NodeFloats(node);
  return PlaneMargin(w, w[dims_], x, dims_);
}

int32_t AnnoyForest::Child(int32_t node, int side) const {
  return LoadRef(reinterpret_cast<const unsigned char*>(NodeFloats(node) + dims_ + 1 + side));
}

int32_t AnnoyForest::Root(int tree) const {
  return LoadRef(roots_ + 4 * static_cast<size_t>(tree));
}

void AnnoyForest::Open() {
  if (size_ < kHeaderWords * 4 || size_ % 4 != 0)
    Corrupt("size " + std::to_string(size_) + " is not a header plus whole words");
  uint32_t h[kHeaderWords];
  for (size_t i = 0; i < kHeaderWords; i++) h[i] = LoadWord(base_ + 4 * i);
  if (h[kWordMagic] != kMagic) Corrupt("bad magic number");
  if (h[kWordVersion] != kVersion)
    Corrupt("format version " + std::to_string(h[kWordVersion]) + ", expected " +
            std::to_string(kVersion));
  if (h[kWordDims] < 1 || h[kWordDims] > kMaxDims) Corrupt("bad dimension count");
  if (h[kWordMetric] > static_cast<uint32_t>(AnnoyMetric::kAngular)) Corrupt("unknown metric");
  if (h[kWordTrees] < 1 || h[kWordTrees] > static_cast<uint32_t>(kMaxTrees))
    Corrupt("bad tree count");
  if (h[kWordLeaves] < h[kWordTrees] || h[kWordLeaves] > uint32_t{INT32_MAX})
    Corrupt("bad leaf count");
  if (h[kWordNodes] != h[kWordLeaves] - h[kWordTrees])
    Corrupt("internal nodes must number leaves - trees");
  const uint64_t stride = uint64_t{h[kWordDims]} + 3;
  const uint64_t words = kHeaderWords + 2 * uint64_t{h[kWordTrees]} + 1 + h[kWordNodes] * stride;
  if (words * 4 != size_)
    Corrupt("size " + std::to_string(size_) + ", expected " + std::to_string(words * 4));
  if (AnnoyChecksum(base_, size_) != h[kWordChecksum]) Corrupt("checksum mismatch");

  dims_ = static_cast<int>(h[kWordDims]);
  metric_ = static_cast<AnnoyMetric>(h[kWordMetric]);
  trees_ = static_cast<int>(h[kWordTrees]);
  leaves_ = static_cast<int>(h[kWordLeaves]);
  nodes_ = static_cast<int>(h[kWordNodes]);
  stride_ = static_cast<size_t>(stride);
  roots_ = base_ + 4 * kHeaderWords;
  first_leaf_ = roots_ + 4 * static_cast<size_t>(trees_);
  nodes_base_ = first_leaf_ + 4 * (static_cast<size_t>(trees_) + 1);
  CheckTrees();
}

void AnnoyForest::CheckTrees() {
  if (FirstLeaf(0) != 0 || FirstLeaf(trees_) != leaves_) Corrupt("bad leaf ranges");
  for (int t = 0; t < trees_; t++)
    if (FirstLeaf(t + 1) <= FirstLeaf(t)) Corrupt("bad leaf ranges");
  // Every node and leaf of tree t must hang from exactly one node of the same tree with a
  // lower number (its root from the roots array): then the nodes form one tree and every
  // walk moves to higher numbers, so it ends.
  std::vector<uint8_t> leaf_seen(leaves_, 0);
  std::vector<int32_t> depth(nodes_, 0);  // internal nodes from the root to the node; 0 = unseen
  max_depth_ = 0;
  for (int t = 0; t < trees_; t++) {
    const int32_t first_leaf = FirstLeaf(t), end_leaf = FirstLeaf(t + 1);
    const int32_t first_node = first_leaf - t, end_node = end_leaf - t - 1;
    const int32_t root = Root(t);
    if (first_node == end_node) {
      if (root != ~first_leaf) Corrupt("tree " + std::to_string(t) + " has a bad root");
      leaf_seen[first_leaf] = 1;
      continue;
    }
    if (root != first_node) Corrupt("tree " + std::to_string(t) + " has a bad root");
    depth[root] = 1;
    for (int32_t node = first_node; node < end_node; node++) {
      if (depth[node] == 0) Corrupt("node " + std::to_string(node) + " is unreachable");
      if (!AllFinite(NodeFloats(node), dims_ + 1)) Corrupt("non-finite hyperplane");
      for (int side = 0; side < 2; side++) {
        const int32_t child = Child(node, side);
        if (child >= 0) {
          if (child <= node || child >= end_node || depth[child] != 0)
            Corrupt("node " + std::to_string(node) + " has a bad child");
          depth[child] = depth[node] + 1;
        } else {
          const int32_t leaf = ~child;
          if (leaf < first_leaf || leaf >= end_leaf || leaf_seen[leaf])
            Corrupt("node " + std::to_string(node) + " has a bad leaf");
          leaf_seen[leaf] = 1;
          max_depth_ = std::max(max_depth_, depth[node]);
        }
      }
    }
  }
  // Counts: nodes = leaves - trees and every node reached once, so every leaf was reached once.
}

void AnnoyForest::Route(const float* x, int32_t* out_leaves) const { RouteBatch(x, 1, out_leaves); }

void AnnoyForest::RouteBatch(const float* rows, size_t n, int32_t* out_leaves) const {
  for (size_t begin = 0; begin < n; begin += kRouteRows)
    RouteBlock(rows, begin, std::min(n, begin + kRouteRows), out_leaves);
}

void AnnoyForest::RouteBlock(const float* rows, size_t begin, size_t end,
                             int32_t* out_leaves) const {
  struct Walk {
    const float* x;
    size_t out;
    int32_t ref;
  };
  // Walk k is row begin + k % block in tree k / block: tree after tree, so one tree's nodes stay
  // in cache while the block's rows pass through it.
  const size_t block = end - begin, total = block * static_cast<size_t>(trees_);
  size_t next = 0;
  auto start = [&](Walk& w) {
    const size_t tree = next / block, row = begin + next % block;
    w.x = rows + row * static_cast<size_t>(dims_);
    w.out = row * static_cast<size_t>(trees_) + tree;
    w.ref = Root(static_cast<int>(tree));
    next++;
  };
  Walk lanes[kLanes];
  int active = 0;
  while (active < kLanes && next < total) start(lanes[active++]);
  // One step of every walk in turn: the steps are independent, so their dot products overlap
  // where one walk alone would wait on each margin before loading the next node.
  while (active > 0) {
    for (int i = 0; i < active;) {
      Walk& w = lanes[i];
      if (w.ref >= 0) {
        w.ref = Child(w.ref, Margin(w.ref, w.x) > 0.0f);
        i++;
        continue;
      }
      out_leaves[w.out] = ~w.ref;
      if (next < total) {
        start(w);
      } else {
        w = lanes[--active];
      }
    }
  }
}

// Builds one tree after another into one stream (see BuildForest).
struct AnnoyBuilder {
  AnnoyBuilder(const float* rows, size_t n, int dims, const AnnoyOptions& opt)
      : rows(rows),
        n(n),
        dims(dims),
        opt(opt),
        angular(opt.metric == AnnoyMetric::kAngular),
        stride(static_cast<size_t>(dims) + 3),
        perm(n),
        margins(n),
        best_margins(n),
        p(dims),
        q(dims),
        w(dims),
        normal(dims),
        best_normal(dims),
        w_float(dims),
        mean(dims) {}

  // A node range still to be made: rows perm[begin, end), to hang from `parent` (-1: the
  // root) on `side`; [parent_begin, parent_end) is the parent's range.
  struct Pending {
    uint32_t begin, end, parent_begin, parent_end;
    int32_t parent;
    int side;
  };

  // The sample row at position i of the current tree's order.
  const float* Row(size_t i) const { return rows + static_cast<size_t>(perm[i]) * dims; }

  // Counts `work` floats of work; calls check_interrupts once per kWorkPerCheck of them.
  void CheckInterrupts(size_t work) {
    work_since_check += work;
    if (work_since_check < kWorkPerCheck) return;
    work_since_check = 0;
    if (opt.check_interrupts) opt.check_interrupts();
  }

  // Annoy's _make_tree for tree t, depth first with an explicit stack (child 0 first), so
  // nodes come out in preorder and leaves in depth-first order.
  void MakeTree(int t) {
    Rng rng(opt.seed ^ (0x9e3779b97f4a7c15ULL * (static_cast<uint64_t>(t) + 1)));
    std::iota(perm.begin(), perm.end(), uint32_t{0});
    first_leaf.push_back(static_cast<int32_t>(leaf_sample_rows.size()));
    const uint32_t rows_u = static_cast<uint32_t>(n);
    std::vector<Pending> stack{{0, rows_u, 0, rows_u, -1, 0}};
    while (!stack.empty()) {
      const Pending item = stack.back();
      stack.pop_back();
      uint32_t mid = 0;
      float offset = 0;
      const bool split =
          item.end - item.begin > static_cast<uint32_t>(opt.max_sample_rows_per_leaf) &&
          CreateSplit(item.begin, item.end, rng, &offset, &mid);
      int32_t ref;
      if (split) {
        ref = AppendNode(offset);
        stack.push_back({mid, item.end, item.begin, item.end, ref, 1});
        stack.push_back({item.begin, mid, item.begin, item.end, ref, 0});
      } else {
        ref = ~AppendLeaf(item);
      }
      if (item.parent < 0) {
        roots.push_back(ref);
      } else {
        node_words[static_cast<size_t>(item.parent) * stride + dims + 1 + item.side] =
            static_cast<uint32_t>(ref);
      }
    }
  }

  // Finds a plane for rows [begin, end) (in normal and *offset), moves the rows with a
  // positive margin behind the others (from *mid) and returns true; false when no plane
  // separates them (all rows equal, or too close to tell apart in float).
  bool CreateSplit(uint32_t begin, uint32_t end, Rng& rng, float* offset, uint32_t* mid) {
    const size_t count = end - begin;
    double best = 2;
    float best_offset = 0;
    for (int attempt = 0; attempt < kSplitAttempts && best >= kGoodImbalance; attempt++) {
      CheckInterrupts(count * dims);
      if (!TwoMeansPlane(begin, end, rng, offset)) continue;
      const double imbalance = SideMargins(begin, end, *offset);
      if (imbalance < best) {
        best = imbalance;
        best_offset = *offset;
        std::swap(normal, best_normal);
        std::swap(margins, best_margins);
      }
    }
    if (best <= kWorstImbalance) {
      std::swap(normal, best_normal);
      std::swap(margins, best_margins);
      *offset = best_offset;
    } else {
      // Balance by moving the plane to the median margin: along the best normal if a draw
      // gave one, else (or if that fails) towards the row farthest from the first row.
      bool ok = best <= 1 && MedianPlane(begin, end, best_normal.data(), offset);
      if (!ok)
        ok = FarthestDirection(begin, end) && MedianPlane(begin, end, w_float.data(), offset);
      if (!ok) return false;
    }
    *mid = Partition(begin, end);
    return true;
  }

  // Annoy's two_means: means p and q from two distinct random rows, then kTwoMeansSteps random
  // rows each pulled into the nearer mean, distances weighted by the means' counts (which
  // keeps the two sides balanced). Angular draws normalized rows and cosine distances. Writes
  // the plane between the means (see annoy.h) to normal / *offset; false if the means coincide.
  bool TwoMeansPlane(uint32_t begin, uint32_t end, Rng& rng, float* offset) {
    const uint64_t count = end - begin;
    const uint64_t i = rng.Below(count);
    uint64_t j = rng.Below(count - 1);
    j += j >= i;
    LoadPoint(Row(begin + i), &p);
    LoadPoint(Row(begin + j), &q);
    double ic = 1, jc = 1;
    for (int step = 0; step < kTwoMeansSteps; step++) {
      const float* x = Row(begin + rng.Below(count));
      const double scale = angular ? 1 / std::sqrt(SquaredNorm(x)) : 1;
      if (!(scale > 0) || !std::isfinite(scale)) continue;
      const double di = ic * PointDistance(p, x, scale);
      const double dj = jc * PointDistance(q, x, scale);
      if (di < dj) {
        MoveMean(&p, x, scale, ++ic);
      } else if (dj < di) {
        MoveMean(&q, x, scale, ++jc);
      }
    }
    if (angular && !(Normalize(&p) && Normalize(&q))) return false;
    for (int z = 0; z < dims; z++) w[z] = p[z] - q[z];
    if (!Normalize(&w)) return false;
    double b = 0;
    if (!angular)
      for (int z = 0; z < dims; z++) b -= w[z] * (p[z] + q[z]) / 2;
    *offset = static_cast<float>(b);
    for (int z = 0; z < dims; z++) normal[z] = static_cast<float>(w[z]);
    return std::isfinite(*offset);
  }

  // Row x as doubles into *v (angular: normalized; a zero row stays zero).
  void LoadPoint(const float* x, std::vector<double>* v) const {
    for (int z = 0; z < dims; z++) (*v)[z] = x[z];
    if (angular) Normalize(v);
  }

  // |x|^2 of a row, in double.
  double SquaredNorm(const float* x) const {
    double s = 0;
    for (int z = 0; z < dims; z++) s += double(x[z]) * x[z];
    return s;
  }

  // Adds x * scale to the running mean *m, which then averages `count` points.
  void MoveMean(std::vector<double>* m, const float* x, double scale, double count) const {
    const double step = 1 / count;
    double* v = m->data();
    const int d = dims;  // a local bound: the stores may not alias it
    for (int z = 0; z < d; z++) v[z] += (x[z] * scale - v[z]) * step;
  }

  // Distance of x * scale from mean m: squared L2, or angular 2 - 2 cos (2 for a zero mean).
  // Four partial sums let the loops vectorize.
  double PointDistance(const std::vector<double>& m, const float* x, double scale) const {
    const double* v = m.data();
    const int d = dims;
    double a[4] = {}, b[4] = {};
    int z = 0;
    if (!angular) {
      for (; z + 4 <= d; z += 4) {
        for (int j = 0; j < 4; j++) {
          const double e = v[z + j] - x[z + j] * scale;
          a[j] += e * e;
        }
      }
      for (; z < d; z++) a[0] += (v[z] - x[z] * scale) * (v[z] - x[z] * scale);
      return (a[0] + a[1]) + (a[2] + a[3]);
    }
    for (; z + 4 <= d; z += 4) {
      for (int j = 0; j < 4; j++) {
        a[j] += v[z + j] * v[z + j];
        b[j] += v[z + j] * x[z + j];
      }
    }
    for (; z < d; z++) {
      a[0] += v[z] * v[z];
      b[0] += v[z] * x[z];
    }
    const double mm = (a[0] + a[1]) + (a[2] + a[3]), mx = ((b[0] + b[1]) + (b[2] + b[3])) * scale;
    return mm > 0 ? 2 - 2 * mx / std::sqrt(mm) : 2;
  }

  // Scales *v to unit length; false (v unchanged) when its length is zero or not finite.
  static bool Normalize(std::vector<double>* v) {
    double s = 0;
    for (double e : *v) s += e * e;
    if (!(s > 0) || !std::isfinite(s)) return false;
    const double inv = 1 / std::sqrt(s);
    for (double& e : *v) e *= inv;
    return true;
  }

  // margins[i - begin] = the margin of row i for the plane (normal, offset); returns Annoy's
  // _split_imbalance, max(left, right) / count.
  double SideMargins(uint32_t begin, uint32_t end, float offset) {
    size_t right = 0;
    for (uint32_t i = begin; i < end; i++) {
      const float m = PlaneMargin(normal.data(), offset, Row(i), dims);
      margins[i - begin] = m;
      right += m > 0.0f;
    }
    const size_t count = end - begin;
    return static_cast<double>(std::max(right, count - right)) / static_cast<double>(count);
  }

  // Sets normal = dir and *offset so that the plane cuts the rows' margins at the boundary
  // between distinct values nearest their median; false when all margins are equal.
  bool MedianPlane(uint32_t begin, uint32_t end, const float* dir, float* offset) {
    CheckInterrupts(size_t{end - begin} * dims);
    std::copy(dir, dir + dims, normal.begin());
    const size_t count = end - begin;
    sorted.resize(count);
    for (uint32_t i = begin; i < end; i++) sorted[i - begin] = PlaneMargin(dir, 0, Row(i), dims);
    std::sort(sorted.begin(), sorted.end());
    // The cut k (rows below it go to child 0) nearest count / 2 between two distinct values.
    size_t k = 0;
    for (size_t d = 0; d <= count / 2 && k == 0; d++) {
      for (size_t c : {count / 2 - d, count / 2 + d})
        if (k == 0 && c >= 1 && c < count && sorted[c - 1] < sorted[c]) k = c;
    }
    if (k == 0) return false;
    const float lo = sorted[k - 1], hi = sorted[k];
    float t = lo + (hi - lo) / 2;
    if (!(t >= lo && t < hi)) t = lo;
    if (!std::isfinite(t)) return false;
    *offset = -t;
    const double imbalance = SideMargins(begin, end, *offset);
    return imbalance < 1;
  }

  // w and w_float = the unit direction from the range's first row to the row farthest from it;
  // false when every row equals the first.
  bool FarthestDirection(uint32_t begin, uint32_t end) {
    CheckInterrupts(size_t{end - begin} * dims);
    const float* x0 = Row(begin);
    double far = 0;
    uint32_t far_row = begin;
    for (uint32_t i = begin + 1; i < end; i++) {
      const float* x = Row(i);
      double d = 0;
      for (int z = 0; z < dims; z++) {
        const double e = double(x[z]) - x0[z];
        d += e * e;
      }
      if (d > far) {
        far = d;
        far_row = i;
      }
    }
    if (!(far > 0)) return false;
    const float* x = Row(far_row);
    for (int z = 0; z < dims; z++) w[z] = double(x[z]) - x0[z];
    if (!Normalize(&w)) return false;
    for (int z = 0; z < dims; z++) w_float[z] = static_cast<float>(w[z]);
    return true;
  }

  // Moves rows with a positive margin (in margins) behind the others, keeping each side's
  // order; returns the first of them.
  uint32_t Partition(uint32_t begin, uint32_t end) {
    scratch.clear();
    uint32_t out = begin;
    for (uint32_t i = begin; i < end; i++) {
      if (margins[i - begin] > 0.0f) {
        scratch.push_back(perm[i]);
      } else {
        perm[out++] = perm[i];
      }
    }
    std::copy(scratch.begin(), scratch.end(), perm.begin() + out);
    return out;
  }

  // Appends an internal node with the plane (normal, offset) and children to be set.
  int32_t AppendNode(float offset) {
    const size_t at = node_words.size();
    node_words.resize(at + stride);
    std::memcpy(&node_words[at], normal.data(), dims * sizeof(float));
    std::memcpy(&node_words[at + dims], &offset, sizeof(float));
    return static_cast<int32_t>(at / stride);
  }

  // Numbers a leaf for rows [begin, end) and appends its centroid and sample count.
  int32_t AppendLeaf(const Pending& item) {
    const int32_t leaf = static_cast<int32_t>(leaf_sample_rows.size());
    leaf_sample_rows.push_back(item.end - item.begin);
    CheckInterrupts(size_t{item.end - item.begin} * dims);
    bool ok = Mean(item.begin, item.end);
    if (!ok) ok = Mean(item.parent_begin, item.parent_end);
    if (!ok) std::fill(mean.begin(), mean.end(), 0.0);
    for (int z = 0; z < dims; z++) centroids.push_back(static_cast<float>(mean[z]));
    return leaf;
  }

  // mean = the mean of rows [begin, end), normalized for unit_centroids; false when
  // normalizing a mean of zero length.
  bool Mean(uint32_t begin, uint32_t end) {
    std::fill(mean.begin(), mean.end(), 0.0);
    for (uint32_t i = begin; i < end; i++) {
      const float* x = Row(i);
      for (int z = 0; z < dims; z++) mean[z] += x[z];
    }
    for (double& e : mean) e /= static_cast<double>(end - begin);
    return !opt.unit_centroids || Normalize(&mean);
  }

  // The stream: header, roots, first leaves, nodes; then its checksum.
  std::vector<uint32_t> Stream() const {
    const int trees = static_cast<int>(roots.size());
    const size_t leaves = leaf_sample_rows.size();
    std::vector<uint32_t> s;
    s.reserve(kHeaderWords + 2 * trees + 1 + node_words.size());
    s.resize(kHeaderWords);
    s[kWordMagic] = kMagic;
    s[kWordVersion] = kVersion;
    s[kWordDims] = static_cast<uint32_t>(dims);
    s[kWordMetric] = static_cast<uint32_t>(opt.metric);
    s[kWordTrees] = static_cast<uint32_t>(trees);
    s[kWordLeaves] = static_cast<uint32_t>(leaves);
    s[kWordNodes] = static_cast<uint32_t>(node_words.size() / stride);
    for (int32_t r : roots) s.push_back(static_cast<uint32_t>(r));
    for (int32_t l : first_leaf) s.push_back(static_cast<uint32_t>(l));
    s.push_back(static_cast<uint32_t>(leaves));
    s.insert(s.end(), node_words.begin(), node_words.end());
    s[kWordChecksum] = AnnoyChecksum(s.data(), s.size() * 4);
    return s;
  }

  // A forest owning `stream` (checked like any other).
  static AnnoyForest Adopt(std::vector<uint32_t> stream) {
    auto words = std::make_shared<std::vector<uint32_t>>(std::move(stream));
    AnnoyForest f;
    f.base_ = reinterpret_cast<const unsigned char*>(words->data());
    f.size_ = words->size() * 4;
    f.owned_ = std::move(words);
    f.Open();
    return f;
  }

  const float* rows;
  size_t n;
  int dims;
  const AnnoyOptions& opt;
  bool angular;
  size_t stride;
  size_t work_since_check = 0;
  std::vector<uint32_t> perm;       // the current tree's row order; a node's rows are a range
  std::vector<float> margins;       // margins of the node's rows for the plane in `normal`
  std::vector<float> best_margins;  // the same for the best plane so far (`best_normal`)
  std::vector<float> sorted;        // MedianPlane's sorted margins
  std::vector<uint32_t> scratch;    // Partition's right side
  std::vector<double> p, q, w;      // two_means' means and the plane normal, in double
  std::vector<float> normal, best_normal, w_float;
  std::vector<double> mean;
  std::vector<uint32_t> node_words;  // internal nodes, stride words each
  std::vector<int32_t> roots, first_leaf;
  std::vector<float> centroids;
  std::vector<uint32_t> leaf_sample_rows;
};

AnnoyBuild BuildForest(const float* rows, size_t n, int dims, const AnnoyOptions& opt) {
  if (n < 1 || n >= (size_t{1} << 31)) throw std::invalid_argument("annoy: need 1 to 2^31-1 rows");
  if (dims < 1 || static_cast<uint32_t>(dims) > kMaxDims)
    throw std::invalid_argument("annoy: bad dimension count");
  if (opt.trees < 1 || opt.trees > kMaxTrees)
    throw std::invalid_argument("annoy: trees must be in 1..4096");
  if (opt.max_sample_rows_per_leaf < 1)
    throw std::invalid_argument("annoy: max_sample_rows_per_leaf must be at least 1");
  if (opt.metric != AnnoyMetric::kEuclidean && opt.metric != AnnoyMetric::kAngular)
    throw std::invalid_argument("annoy: unknown metric");
  if (rows == nullptr || !AllFinite(rows, n * static_cast<size_t>(dims)))
    throw std::invalid_argument("annoy: rows must be finite");
  AnnoyBuilder b(rows, n, dims, opt);
  for (int t = 0; t < opt.trees; t++) {
    if (opt.check_interrupts) opt.check_interrupts();
    b.MakeTree(t);
  }
  AnnoyBuild out;
  out.forest = AnnoyBuilder::Adopt(b.Stream());
  out.leaf_centroids = std::move(b.centroids);
  out.leaf_sample_rows = std::move(b.leaf_sample_rows);
  return out;
}

AnnoyLeafSearch::AnnoyLeafSearch(const AnnoyForest& forest)
    : forest_(forest), query_(forest.dims()) {
  heap_.reserve(static_cast<size_t>(forest.trees()) + forest.internal_nodes() + 1);
}

void AnnoyLeafSearch::Reset(const float* query) {
  std::copy(query, query + forest_.dims(), query_.begin());
  heap_.clear();
  for (int t = 0; t < forest_.trees(); t++)
    heap_.push_back({std::numeric_limits<float>::infinity(), forest_.Root(t)});
  std::make_heap(heap_.begin(), heap_.end(), Lower);
  returned_ = 0;
}

int AnnoyLeafSearch::Next(int count, int32_t* out_leaves) {
  int written = 0;
  while (written < count && !heap_.empty()) {
    std::pop_heap(heap_.begin(), heap_.end(), Lower);
    const Entry top = heap_.back();
    heap_.pop_back();
    if (top.ref < 0) {
      out_leaves[written++] = ~top.ref;
      continue;
    }
    // Annoy's pq_distance: a child's priority is the smallest margin in its favour so far.
    const float m = forest_.Margin(top.ref, query_.data());
    heap_.push_back({std::min(top.priority, m), forest_.Child(top.ref, 1)});
    std::push_heap(heap_.begin(), heap_.end(), Lower);
    heap_.push_back({std::min(top.priority, -m), forest_.Child(top.ref, 0)});
    std::push_heap(heap_.begin(), heap_.end(), Lower);
  }
  returned_ += written;
  return written;
}

}  // namespace scann
