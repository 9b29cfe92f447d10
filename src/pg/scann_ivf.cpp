// The IVF partitioner: k-means centroids split the space into `lists` cells; a row is filed
// in the list of its nearest centroid, and a query searches the lists whose centroids are
// nearest to it.
#include <algorithm>

#include "core/kmeans.h"
#include "pg/scann_index.h"
#include "pg/scann_options.h"
#include "pg/scann_variant.h"
#include "pg/scann_vector.h"

extern "C" {
#include "utils/memutils.h"
}

namespace scann::pg {

namespace {

constexpr uint64_t kSeed = 0x5ca11ab1e0f5ca1ull;
constexpr int kKMeansIterations = 10;

// Lists are cut so that every centroid has kMinRowsPerList training rows, with a NOTICE when
// the user asked for more.
uint32 CapLists(const PartitionTraining* t) {
  const uint32 cap = Max(1u, t->sample_rows / kMinRowsPerList);
  if (t->lists <= cap) return t->lists;
  if (t->lists_requested)
    ereport(NOTICE,
            (errmsg("scann index \"%s\" gets %u lists instead of %u",
                    RelationGetRelationName(t->index), cap, t->lists),
             errdetail("Each list needs %u training rows, and the quantizers are trained on a "
                       "sample of %u rows.",
                       kMinRowsPerList, t->sample_rows),
             errhint("Ask for fewer lists, or raise the sample option (or "
                     "maintenance_work_mem, which bounds it).")));
  return cap;
}

// k-means on the sample; for cosine, unit centroids, so that the L2 cell of a row is the list
// whose centroid has the largest inner product with it, the order in which scans probe lists.
void Train(PartitionTraining* t) {
  t->lists = CapLists(t);
  t->fanout = 1;
  t->partition = nullptr;
  t->partition_bytes = 0;
  t->centroids = static_cast<float*>(
      MemoryContextAllocHuge(CurrentMemoryContext, sizeof(float) * size_t(t->lists) * t->dims));
  CppGuard([&] {
    KMeansOptions km;
    km.iterations = kKMeansIterations;
    km.seed = kSeed;
    km.check_interrupts = CheckInterrupts;
    TrainKMeans(t->sample, t->sample_rows, t->dims, int(t->lists), km, t->centroids);
  });
  if (t->metric == Metric::kCosine)
    for (uint32 l = 0; l < t->lists; l++) Normalize(t->centroids + size_t(l) * t->dims, t->dims);
}

// The nearest (L2) centroid of each row: one row against norms kept for it (inserts), or a
// chunk by the blocked kernel (builds).
void Assign(const PartitionModel& model, const float* rows, uint32 n, int32* out) {
  CppGuard([&] {
    if (n == 1 && model.norms)
      out[0] = NearestCentroidWithNorms(rows, model.centroids, model.norms, int(model.lists),
                                        model.dims);
    else
      AssignNearest(rows, n, model.dims, model.centroids, int(model.lists), out);
  });
}

// Lists ranked so far for a query: the first `ranked` of ranking[], handed out from `next`.
struct Ranking {
  int32* order;
  uint64* scratch;
  uint32 ranked;
  uint32 next;
};

void* RankBegin(ScanContext* sc) {
  Ranking* r = static_cast<Ranking*>(palloc0(sizeof(Ranking)));
  r->order = static_cast<int32*>(palloc(sizeof(int32) * Max(sc->meta.lists, 1u)));
  return r;
}

// Ranks the `count` lists whose centroids are nearest the query: L2, and cosine (unit
// centroids and query: L2 order is inner-product order); inner product: the lists whose
// centroids score highest.  Only what the rounds need is ranked, and twice as much when
// they need more.
uint32 RankNext(ScanContext* sc, void* state, uint32 count, int32* out) {
  Ranking* r = static_cast<Ranking*>(state);
  const uint32 lists = sc->meta.lists;
  const uint32 want = Min(lists, r->next + count);
  if (want > r->ranked) {
    const uint32 rank = Min(lists, Max(want, 2 * r->ranked));
    if (!r->scratch) r->scratch = static_cast<uint64*>(palloc(sizeof(uint64) * lists));
    const IndexState* state_now = GetIndexState(sc->index);
    CppGuard([&] {
      RankCentroids(sc->query_pq, state_now->centroids, state_now->norms, int(lists), sc->dims,
                    sc->metric == Metric::kInnerProduct, int(rank), r->order, r->scratch);
    });
    r->ranked = rank;
  }
  const uint32 n = want - r->next;
  std::copy(r->order + r->next, r->order + want, out);
  r->next = want;
  return n;
}

}  // namespace

const ListPartitioner kIvfPartitioner = {Train, Assign, RankBegin, RankNext};

}  // namespace scann::pg
