// The annoy partitioner: a forest of random-projection trees (core/annoy.h) whose leaves are
// the lists.  Every row is filed in one leaf of every tree (the fan-out is the number of
// trees), a leaf's centroid is the mean of the sample rows the build put in it (the codes are
// residuals to it), the forest's byte stream is the index's partition stream, and a query
// searches leaves in the order of Annoy's priority-queue walk over all the trees, so that
// scann.nprobe counts leaves.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "core/annoy.h"
#include "pg/scann_index.h"
#include "pg/scann_options.h"
#include "pg/scann_variant.h"

extern "C" {
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
}

namespace scann::pg {

namespace {

constexpr uint64_t kSeed = 0x5ca11ab1e0f5ca1ull;

// Forests checked once per backend and index: checking a stream reads all of it, far more
// than routing a row costs.  Keyed like GetQuantizer's cache (relation and relfilenode, which
// REINDEX changes) and dropped by relcache invalidation.  Each entry owns its bytes, and a
// scan's leaf search holds a share of them: a relcache flush between two batches of a scan
// (any heap fetch that takes a lock may process one) drops the entry and frees rd_amcache,
// but not the bytes the search walks.
struct CachedForest {
  Oid relid;
  RelFileNode node;
  AnnoyForest forest;
};

std::vector<std::unique_ptr<CachedForest>>* g_forests = nullptr;

void ForgetForests(Datum, Oid relid) {
  if (!g_forests) return;
  auto& v = *g_forests;
  v.erase(std::remove_if(v.begin(), v.end(),
                         [&](const std::unique_ptr<CachedForest>& c) {
                           return relid == InvalidOid || c->relid == relid;
                         }),
          v.end());
}

// Splits per operator class (core/annoy.h): euclidean planes for l2_ops; planes through the
// origin for cosine_ops (normalized rows) and ip_ops (raw rows), whose leaf order then does
// not depend on the query's norm, as inner-product ranking does not.
AnnoyMetric SplitMetric(Metric metric) {
  return metric == Metric::kL2 ? AnnoyMetric::kEuclidean : AnnoyMetric::kAngular;
}

[[noreturn]] void ReportCorruptForest(Relation index, const char* why) {
  ereport(ERROR,
          (errcode(ERRCODE_INDEX_CORRUPTED),
           errmsg("scann index \"%s\" has a corrupt annoy forest", RelationGetRelationName(index)),
           errdetail("%s", why), errhint("REINDEX the index.")));
  pg_unreachable();
}

// The model's forest, checked: this backend's copy, or a new copy of the model's stream.  A
// stream that is not a forest pg_scann wrote, or whose leaves and trees are not the model's
// lists and fan-out (routing would then name lists the index does not have), is an index
// corruption error.
const AnnoyForest& ForestOf(const PartitionModel& model) {
  Relation index = model.index;
  char why[512] = "";
  const AnnoyForest* forest = CppGuard([&]() -> const AnnoyForest* {
    if (!g_forests) g_forests = new std::vector<std::unique_ptr<CachedForest>>();
    for (const auto& c : *g_forests)
      if (c->relid == RelationGetRelid(index) && RelFileNodeEquals(c->node, index->rd_node))
        return &c->forest;
    AnnoyForest f;
    try {
      f = AnnoyForest::Deserialize(model.partition, model.partition_bytes);
    } catch (const std::invalid_argument& e) {
      snprintf(why, sizeof(why), "The forest stream fails its check: %s.", e.what());
      return nullptr;
    }
    if (f.dims() != model.dims || uint32(f.leaves()) != model.lists ||
        uint32(f.trees()) != model.fanout) {
      snprintf(why, sizeof(why),
               "The forest has %d trees of %d leaves in all over %d dimensions; the "
               "metapage says %u trees, %u lists and %d dimensions.",
               f.trees(), f.leaves(), f.dims(), model.fanout, model.lists, model.dims);
      return nullptr;
    }
    g_forests->push_back(std::make_unique<CachedForest>(
        CachedForest{RelationGetRelid(index), index->rd_node, std::move(f)}));
    return &g_forests->back()->forest;
  });
  if (!forest) ReportCorruptForest(index, why);
  return *forest;
}

// How large the build makes leaves, in the sample and in the table.
struct LeafPlan {
  uint32 sample_rows;  // the core's max_sample_rows_per_leaf
  uint32 table_rows;   // the leaf size this amounts to in the table
};

// Sample rows a leaf may hold: leaf_size table rows at the sample's rate, but at least
// kMinRowsPerList (a leaf's centroid, and the residuals the codebooks learn from, average its
// rows), and enough that the forest keeps within kMaxLists leaves (a leaf holds about half of
// this or more).  A NOTICE says when a requested leaf size is raised, as IVF's does when it
// cuts requested lists.
LeafPlan PlanLeaves(const PartitionTraining* t, const AnnoyShape& shape) {
  const double rate = double(t->sample_rows) / Max(t->table_rows, double(t->sample_rows));
  const double asked = Max(1.0, std::round(shape.leaf_size * rate));
  const double for_lists = std::ceil(2.0 * shape.trees * t->sample_rows / kMaxLists);
  const double fewest = Max(double(kMinRowsPerList), for_lists);
  if (asked >= fewest) return {uint32(Min(asked, double(PG_INT32_MAX))), shape.leaf_size};
  const LeafPlan plan = {uint32(fewest), uint32(Min(std::round(fewest / rate), 1e9))};
  if (!shape.leaf_size_requested) return plan;
  const char* name = RelationGetRelationName(t->index);
  if (for_lists > kMinRowsPerList)
    ereport(NOTICE,
            (errmsg("scann index \"%s\" gets leaves of up to %u rows instead of %u", name,
                    plan.table_rows, shape.leaf_size),
             errdetail("An index has at most %u lists, and %u trees of smaller leaves would "
                       "have more.",
                       kMaxLists, shape.trees),
             errhint("Ask for fewer trees or larger leaves.")));
  else
    ereport(NOTICE,
            (errmsg("scann index \"%s\" gets leaves of up to %u rows instead of %u", name,
                    plan.table_rows, shape.leaf_size),
             errdetail("A leaf splits only while it holds more than %u training rows, and the "
                       "quantizers are trained on a sample of %u of the table's %.0f rows.",
                       kMinRowsPerList, t->sample_rows, t->table_rows),
             errhint("Ask for larger leaves, or raise the sample option (or "
                     "maintenance_work_mem, which bounds it).")));
  return plan;
}

// The forest on the sample; its leaves become the lists and their centroids the lists'.
void Train(PartitionTraining* t) {
  const AnnoyShape shape = ResolveAnnoyShape(t->index, t->table_rows);
  const LeafPlan leaves = PlanLeaves(t, shape);
  AnnoyOptions opt;
  opt.metric = SplitMetric(t->metric);
  opt.trees = int(shape.trees);
  opt.max_sample_rows_per_leaf = int(leaves.sample_rows);
  opt.unit_centroids = t->metric == Metric::kCosine;
  opt.seed = kSeed;
  opt.check_interrupts = CheckInterrupts;
  AnnoyBuild* built = NewInContext<AnnoyBuild>(CurrentMemoryContext);
  const size_t bytes = CppGuard([&] {
    *built = BuildForest(t->sample, t->sample_rows, t->dims, opt);
    return built->forest.SerializedBytes();
  });
  if (bytes > PG_UINT32_MAX)
    ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                    errmsg("annoy forest of scann index \"%s\" takes %zu bytes, more than 4 GB",
                           RelationGetRelationName(t->index), bytes),
                    errhint("Ask for fewer trees or larger leaves.")));
  t->lists = uint32(built->forest.leaves());
  t->fanout = shape.trees;
  const size_t centroid_bytes = sizeof(float) * size_t(t->lists) * t->dims;
  t->centroids = static_cast<float*>(MemoryContextAllocHuge(CurrentMemoryContext, centroid_bytes));
  std::memcpy(t->centroids, built->leaf_centroids.data(), centroid_bytes);
  t->partition = static_cast<char*>(MemoryContextAllocHuge(CurrentMemoryContext, bytes));
  built->forest.Serialize(t->partition);
  t->partition_bytes = uint32(bytes);
  t->variant_words[kAnnoyWordTrees] = shape.trees;
  t->variant_words[kAnnoyWordLeafSize] = leaves.table_rows;
  t->variant_words[kAnnoyWordSampleRowsPerLeaf] = leaves.sample_rows;
}

// The leaf of every row in every tree: out[i * trees + t].
void Assign(const PartitionModel& model, const float* rows, uint32 n, int32* out) {
  const AnnoyForest& forest = ForestOf(model);
  CppGuard([&] { forest.RouteBatch(rows, n, out); });
}

// A leaf search over the index's forest for the query, in the scan's memory (deleted with
// it); it shares the forest's bytes with the cache, so it outlives the cache entry.
void* RankBegin(ScanContext* sc) {
  const AnnoyForest& forest = ForestOf(ModelOf(sc->index));
  AnnoyLeafSearch* search = NewInContext<AnnoyLeafSearch>(sc->scan_cxt, forest);
  CppGuard([&] { search->Reset(sc->query_pq); });
  return search;
}

// The next leaves of the search, best first.
uint32 RankNext(ScanContext* sc, void* state, uint32 count, int32* out) {
  AnnoyLeafSearch* search = static_cast<AnnoyLeafSearch*>(state);
  const int want = int(Min(count, uint32(PG_INT32_MAX)));
  return uint32(CppGuard([&] { return search->Next(want, out); }));
}

}  // namespace

void InitAnnoyCache() { CacheRegisterRelcacheCallback(ForgetForests, 0); }

const ListPartitioner kAnnoyPartitioner = {Train, Assign, RankBegin, RankNext};

}  // namespace scann::pg
