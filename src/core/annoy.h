// The partitioner of the `annoy` variant: a forest of random-projection trees after Erik
// Bernhardsson's Annoy (spotify/annoy), whose leaves play the part IVF's k-means lists play.
// Every tree partitions the whole space, so a row lives in one leaf of every tree; each leaf
// is a FastScan list of the PQ codes of residuals to the leaf's centroid.
//
// Build (BuildForest, on the build's sample rows): each tree splits its node's rows in two by
// a hyperplane from Annoy's create_split: two_means (two rows drawn at random, then 200 rows
// drawn at random each pulled into the nearer of the two count-weighted means) gives means p
// and q; the normal is p - q (unit length). kEuclidean cuts halfway between the means,
// w.x + b = 0 with b = -w.(p + q) / 2; kAngular draws the means of normalized rows, normalizes
// them and cuts through the origin (b = 0): the plane bisecting their angle. A node splits
// while it holds more than max_sample_rows_per_leaf sample rows, so leaves hold from about half
// of that to all of it (0.7 of it on average on GloVe and Fashion-MNIST). As in Annoy's
// _make_tree, up to three draws are tried until fewer than 95% of the rows fall on one side;
// when even the best leaves more than 99% on one side (rows on a line, duplicates), the plane
// moves to the median of the rows' margins along the best normal (or along the direction from
// the first row to the row farthest from it), which balances the split but for ties. Annoy
// then assigns sides at random instead; a random split cannot be routed (table rows equal to
// the sample's all reach one side), so here a node whose rows are all equal, where no plane
// separates anything, becomes a leaf however many rows it holds. Every split leaves rows on
// both sides, so every leaf has at least one sample row, a tree's depth stays below the sample
// size, and the build walks the trees with an explicit stack.
//
// Which metric for which opclass:
//   l2_ops      kEuclidean on the rows, plain centroids, the query as it is;
//   cosine_ops  kAngular on the normalized rows, unit_centroids, the normalized query;
//   ip_ops      kAngular on the raw rows, plain centroids (residuals, and the bias <q, c>),
//               the raw query. Angular margins have no offset, so the leaf order does not
//               depend on |q|, as the inner-product ranking does not. Measured on
//               unnormalized GloVe (50,000 rows, 1,000 queries, exact inner-product top 10;
//               8 trees of 322 leaves, 8% of the rows scanned): angular splits on the raw rows
//               find 0.684 of the top 10, euclidean splits on the raw rows 0.558, euclidean
//               splits on rows augmented to equal norm (x, sqrt(M^2 - |x|^2)) 0.526; IVF
//               (lists ranked by <q, c>) 0.836 (test_annoy.cpp, AnnoyMeasure.InnerProduct).
//
// Leaves are numbered 0 .. leaves() - 1 over the whole forest, tree t's leaves in the
// contiguous range [FirstLeaf(t), FirstLeaf(t + 1)), in depth-first order (the leaves of any
// subtree are contiguous too). BuildForest also returns every leaf's centroid (see
// unit_centroids) and how many sample rows reached it. The glue stores the centroids as it
// stores IVF's and encodes each row's residual to them.
//
// Routing (Route, RouteBatch): a row goes to child 1 of a node when its margin w.x + b > 0,
// else to child 0 (a NaN margin counts as 0). A sample row's route is the leaf the build put
// it in. Inserts route the new row and append it to one leaf per tree; the trees never change.
// So each row is stored once per tree: an index of T trees holds T codes per row (T times the
// size and the encoding work of IVF's), and a scan that probes leaves of several trees meets a
// row up to T times and must skip the repeats (by heap TID).
//
// Search (AnnoyLeafSearch): Annoy's _get_all_nns order. One max-priority queue holds every
// tree's root at +infinity; popping an internal node with priority d and query margin m pushes
// child 1 with min(d, m) and child 0 with min(d, -m); popped leaves come out in that order,
// each exactly once, until all leaves() have come out. A leaf's priority is the smallest
// signed margin along its path, so the leaf the query routes to in each tree (every margin on
// its path in its favour) comes out before any leaf it would not reach; when no margin on
// those paths is exactly 0, the first trees() leaves are exactly Route(query). Leaves are
// smaller than IVF lists of the same count of lists per tree: to scan as many rows as IVF's
// nprobe lists of L rows, probe about nprobe x L / (mean leaf rows) leaves.
//
// Storage: the forest is one flat byte stream, the in-memory form and the on-disk form alike
// (native byte order, as PostgreSQL pages are): the glue writes bytes() to pages, reads them
// back into a 4-byte aligned buffer it owns and either wraps it (AnnoyForest::View, no copy)
// or copies it (Deserialize). Both check it whole before use and throw std::invalid_argument
// for anything a build could not have written, so a corrupt stream is refused, never walked:
//
//   header, 8 x uint32: magic "ANOY", format version, dims, metric, trees, leaves,
//                        internal nodes (= leaves - trees), checksum of the stream
//   int32 roots[trees]:  each tree's root (a node reference, below)
//   int32 first_leaf[trees + 1]: first leaf id of each tree; first_leaf[trees] = leaves
//   nodes[internal nodes], each dims + 3 words: float normal[dims], float offset,
//                        int32 child[2]
//
// A node reference r >= 0 is internal node r; r < 0 is leaf ~r (so leaves take no space).
// Tree t's internal nodes are numbered contiguously in preorder (its root first) and every
// child's number is above its parent's; the check enforces this, so every walk ends. The
// checksum (AnnoyChecksum) covers every byte but its own four. The stream, and the leaf
// centroids beside it, each take about 4 x trees x leaves per tree x dims bytes: 2.7 MB each
// for GloVe-100 (331,479 rows) at 4 trees of 1,660 leaves.
//
// Choosing trees and leaf size (table rows per leaf at most; the glue passes
// max_sample_rows_per_leaf = leaf_size x sample rows / table rows): more trees and smaller
// leaves both find more neighbours per row scanned, at T times the index and finer lists.
// Proposed defaults: trees = 4, leaf_size = sqrt(rows) / 2. Measured (test_annoy.cpp,
// AnnoyMeasure.*: partition recall@10 when 4% of the rows are scanned, rows counted once per
// leaf they are in): GloVe-100, all 331,479 rows, cosine: 1 / 2 / 4 / 8 / 16 trees 0.633 /
// 0.711 / 0.773 / 0.817 / 0.852 at leaf_size 288; leaf_size 576 / 288 / 144 at 4 trees 0.746 /
// 0.773 / 0.790; IVF (576 lists) 0.888. k-means lists of the same size as the leaves always
// found more (IVF with 2,303 lists: 0.947).
//
// Determinism: the same rows, options and seed give the same stream on every run. The random
// draws come from the project's Rng (one stream per tree, seeded from seed and the tree
// number, so the first trees of a larger forest are the trees of a smaller one), and margins
// are summed in one fixed order whatever the instruction set, so machines with and without
// AVX2 build and route alike.
//
// Pure C++: callers own the inputs and outputs; work arrays live in std::vector, so an
// exception from check_interrupts unwinds cleanly. Routing and the leaf search allocate
// nothing per row or per leaf.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/kmeans.h"

namespace scann {

enum class AnnoyMetric : uint32_t { kEuclidean = 0, kAngular = 1 };

struct AnnoyOptions {
  AnnoyMetric metric = AnnoyMetric::kEuclidean;
  int trees = 4;
  // A node splits while it holds more sample rows than this. For a table leaf size S (rows)
  // and a sample of s of the table's N rows, pass about S * s / N.
  int max_sample_rows_per_leaf = 64;
  // Leaf centroids of unit length (cosine): the normalized mean of the leaf's sample rows,
  // and where that mean is zero the parent's normalized mean (or zero if that is zero too).
  // Otherwise the plain mean.
  bool unit_centroids = false;
  uint64_t seed = 0x5ca1ab1e;
  // Called every few million floats of work; it may throw.
  InterruptCheck check_interrupts;
};

// A built forest, read-only: a view of a checked byte stream (see the file comment) that it
// either owns or borrows. Copies are cheap and share the bytes.
class AnnoyForest {
 public:
  // An empty forest: no trees, no bytes; a search over it returns no leaf.
  AnnoyForest() = default;

  // Wraps size bytes at `bytes` without copying: they must stay alive and unchanged while
  // this forest (or a copy, or a search over it) is used, and be 4-byte aligned. Throws
  // std::invalid_argument when the stream is not a forest this code wrote (wrong size, magic,
  // version, checksum, counts, references or non-finite numbers) or is misaligned.
  static AnnoyForest View(const void* bytes, size_t size);
  // The same checks, on an owned copy of the bytes (any alignment).
  static AnnoyForest Deserialize(const void* bytes, size_t size);

  // The stream: SerializedBytes() bytes at bytes(); Serialize copies them to out.
  const void* bytes() const { return base_; }
  size_t SerializedBytes() const { return size_; }
  void Serialize(void* out) const;

  int dims() const { return dims_; }
  AnnoyMetric metric() const { return metric_; }
  int trees() const { return trees_; }
  int leaves() const { return leaves_; }
  int internal_nodes() const { return nodes_; }
  // First leaf id of tree t (0 <= t <= trees(); FirstLeaf(trees()) = leaves()).
  int FirstLeaf(int tree) const;
  // The longest root-to-leaf path, in internal nodes (0 for a tree that is one leaf).
  int max_depth() const { return max_depth_; }

  // The leaf of row x (dims() floats) in every tree: out_leaves[t] for t < trees().
  void Route(const float* x, int32_t* out_leaves) const;
  // Route for n row-major rows: out_leaves[i * trees() + t]. Walks several (row, tree) pairs
  // at once so their margins overlap in the CPU, and thousands of rows through one tree before
  // the next; give it thousands of rows per call.
  void RouteBatch(const float* rows, size_t n, int32_t* out_leaves) const;

  // Node access for AnnoyLeafSearch (and tests): the query's margin w.x + b at internal node
  // `node` (NaN is returned as 0), its children's references, and tree t's root reference.
  float Margin(int32_t node, const float* x) const;
  int32_t Child(int32_t node, int side) const;
  int32_t Root(int tree) const;

 private:
  // Checks the stream at base_ (size_ bytes) and fills the fields below; throws on failure.
  void Open();
  // Open's check of the trees' structure (and max_depth_), once the header is read.
  void CheckTrees();
  // RouteBatch for rows [begin, end).
  void RouteBlock(const float* rows, size_t begin, size_t end, int32_t* out_leaves) const;
  const float* NodeFloats(int32_t node) const {
    return reinterpret_cast<const float*>(nodes_base_) + static_cast<size_t>(node) * stride_;
  }

  std::shared_ptr<const std::vector<uint32_t>> owned_;
  const unsigned char* base_ = nullptr;
  size_t size_ = 0;
  int dims_ = 0;
  AnnoyMetric metric_ = AnnoyMetric::kEuclidean;
  int trees_ = 0;
  int leaves_ = 0;
  int nodes_ = 0;
  int max_depth_ = 0;
  size_t stride_ = 0;  // words per node: dims + 3
  const unsigned char* roots_ = nullptr;
  const unsigned char* first_leaf_ = nullptr;
  const unsigned char* nodes_base_ = nullptr;

  friend struct AnnoyBuilder;
};

// The checksum a stream's header holds (word 7): of every byte but that word's. size must
// be a multiple of 4 and at least the header's 32 bytes (else 0). Exposed for tools and
// tests that patch a stream on purpose.
uint32_t AnnoyChecksum(const void* bytes, size_t size);

struct AnnoyBuild {
  AnnoyForest forest;
  std::vector<float> leaf_centroids;       // leaves x dims, row-major
  std::vector<uint32_t> leaf_sample_rows;  // sample rows that reached each leaf (all >= 1)
};

// Builds trees on n row-major sample rows of dims floats (see the file comment). Requires
// n >= 1, dims >= 1, 1 <= trees <= 4096, max_sample_rows_per_leaf >= 1, n below 2^31 and
// finite rows (std::invalid_argument otherwise). Exceptions from opt.check_interrupts
// propagate.
AnnoyBuild BuildForest(const float* rows, size_t n, int dims, const AnnoyOptions& opt);

// x.y with coordinate i summed into lane i % 16 and the lanes added pairwise: the margin's
// dot product. SSE2 (x86-64's baseline) and the scalar twin give the same bits (no fused
// multiply-add, one fixed order), so a forest routes alike on every machine.
constexpr int kAnnoyDotLanes = 16;
float AnnoyDot(const float* x, const float* y, int dims);
namespace scalar {
float AnnoyDot(const float* x, const float* y, int dims);
}

// Annoy's _get_all_nns walk as an incremental leaf enumerator. One per scan (or per backend):
// Reset(query) starts a query, Next() hands out the following leaves. The constructor sizes
// every buffer, so Reset and Next never allocate. Keeps a copy of the forest (cheap; the
// bytes of a View must outlive it).
class AnnoyLeafSearch {
 public:
  explicit AnnoyLeafSearch(const AnnoyForest& forest);

  // Starts a new query (dims() floats, copied): the first Next() returns its best leaf.
  void Reset(const float* query);
  // Writes up to count (>= 0) further leaf ids, best first, to out_leaves and returns how many
  // it wrote: fewer than count only when every leaf has been returned.
  int Next(int count, int32_t* out_leaves);
  // Leaves returned since Reset.
  int returned() const { return returned_; }

 private:
  struct Entry {
    float priority;
    int32_t ref;
  };
  static bool Lower(const Entry& a, const Entry& b) {
    return a.priority < b.priority || (a.priority == b.priority && a.ref < b.ref);
  }

  AnnoyForest forest_;
  std::vector<float> query_;
  std::vector<Entry> heap_;
  int returned_ = 0;
};

}  // namespace scann
