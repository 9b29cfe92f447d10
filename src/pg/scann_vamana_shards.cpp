// A vamana build past memory (DiskANN's method for data larger than memory), when the rows'
// vectors and the graph do not fit in maintenance_work_mem: k-means centroids trained on the
// sample split the rows into k shards, each row in its two nearest shards with room (shards are
// capped at the rows whose graph fits in memory) -> a graph per shard, built in memory like the
// whole graph otherwise (with the same workers) -> the shards' lists sorted by row in a
// tuplesort -> per row, the union of its two lists pruned back to R (RobustPrune with exact
// distances, the vectors read from the rows file) -> the nodes written, then their blocks of
// neighbour codes filled from the neighbours' own codes on the node pages.  Memory: one shard's
// graph at a time, the sort's work memory, and O(R) per row merged.
#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "core/distance.h"
#include "core/kmeans.h"
#include "pg/scann_vamana_build.h"

extern "C" {
#include "catalog/pg_operator_d.h"
#include "catalog/pg_type_d.h"
#include "commands/progress.h"
#include "miscadmin.h"
#include "utils/backend_progress.h"
#include "utils/tuplesort.h"
}

namespace scann::pg {

namespace {

constexpr uint64_t kShardSeed = 0x5ca15a4d5ca15a4dull;
constexpr int kShardKMeansIterations = 10;
constexpr int kShardsPerRow = 2;
// maintenance_work_mem is split between a shard's graph and the sort of the shards' lists.
constexpr double kShardShare = 0.75;

// Shard assignment: k centroids and the rows each shard holds (its capacity).
struct Sharding {
  int k;
  uint32 capacity;
  float* centroids;
  uint32* sizes;
  BufFile* assignments;  // kShardsPerRow shard numbers per row, in row order
};

// k and the capacity of a shard: as many rows as a graph in memory takes, and enough shards
// for every row to sit in two of them with room to spare.
void PlanShards(const VariantBuild* vb, const RowsFile* rows, const VamanaParams& params,
                Sharding* sh) {
  const double budget = kShardShare * double(maintenance_work_mem) * 1024.0;
  const double fixed = InMemoryBytes(0, rows->dims, rows->subspaces, params);
  const double per_row = InMemoryBytes(1, rows->dims, rows->subspaces, params) - fixed;
  sh->capacity = uint32(Max((budget - fixed) / per_row, double(params.graph_degree + 1)));
  sh->k = int(Max(2.0, std::ceil(1.25 * kShardsPerRow * double(rows->rows) / sh->capacity)));
  sh->k = Min(sh->k, int(Max(vb->sample_rows, 2u)));
  // Few sample rows and many shards (tiny maintenance_work_mem): capacities grow to fit.
  sh->capacity =
      Max(sh->capacity, uint32(std::ceil(1.25 * kShardsPerRow * double(rows->rows) / sh->k)));
}

// The two nearest shards with room of every row, in row order, into the assignments file.
void AssignRows(VariantBuild* vb, RowsFile* rows, Sharding* sh) {
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kVamanaPhaseShard);
  const int dims = rows->dims;
  sh->centroids = static_cast<float*>(palloc(sizeof(float) * size_t(sh->k) * dims));
  sh->sizes = static_cast<uint32*>(palloc0(sizeof(uint32) * sh->k));
  CppGuard([&] {
    KMeansOptions km;
    km.iterations = kShardKMeansIterations;
    km.seed = kShardSeed;
    km.check_interrupts = CheckInterrupts;
    TrainKMeans(vb->sample, vb->sample_rows, dims, sh->k, km, sh->centroids);
  });
  FreeSample(vb);
  float* norms = static_cast<float*>(palloc(sizeof(float) * sh->k));
  int32* ranked = static_cast<int32*>(palloc(sizeof(int32) * sh->k));
  uint64* scratch = static_cast<uint64*>(palloc(sizeof(uint64) * sh->k));
  CppGuard([&] { CentroidNorms(sh->centroids, sh->k, dims, norms); });
  uint8_t* record = static_cast<uint8_t*>(palloc(rows->record_bytes));
  sh->assignments = BufFileCreateTemp(false);
  RowsFileRewind(rows);
  for (uint32 i = 0; i < rows->rows; i++) {
    RowsFileReadNext(rows, record);
    CppGuard([&] {
      RankCentroids(reinterpret_cast<const float*>(record), sh->centroids, norms, sh->k, dims,
                    false, sh->k, ranked, scratch);
    });
    int32 chosen[kShardsPerRow] = {-1, -1};
    for (int r = 0, c = 0; r < sh->k && c < kShardsPerRow; r++)
      if (sh->sizes[ranked[r]] < sh->capacity) {
        chosen[c++] = ranked[r];
        sh->sizes[ranked[r]]++;
      }
    BufFileWrite(sh->assignments, chosen, sizeof(chosen));
    if (i % 1024 == 0) {
      pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, int64(i));
      CHECK_FOR_INTERRUPTS();
    }
  }
}

// One shard's graph: its member rows (ascending), their vectors loaded from the rows file, the
// graph's lists (in rows) into the sort.
struct ShardBuild {
  RowsFile* rows;
  Tuplesortstate* sort;
  uint32* members;
  uint32 count;
  int shard;
  uint32 degree;
};

void FillShard(void* arg, float* vectors) {
  ShardBuild* sb = static_cast<ShardBuild*>(arg);
  RowsFile* rows = sb->rows;
  uint8_t* record = static_cast<uint8_t*>(palloc(rows->record_bytes));
  for (uint32 i = 0; i < sb->count; i++) {
    RowsFileRead(rows, sb->members[i], record);
    std::memcpy(vectors + size_t(i) * rows->dims, record, sizeof(float) * rows->dims);
    if (i % 1024 == 0) CHECK_FOR_INTERRUPTS();
  }
  pfree(record);
}

// Sort record: row and shard (big-endian, the key), then the list's length and its rows.
constexpr size_t kListKeyBytes = 8;

void PutBigEndian(uint8_t* p, uint32 v) {
  p[0] = uint8_t(v >> 24);
  p[1] = uint8_t(v >> 16);
  p[2] = uint8_t(v >> 8);
  p[3] = uint8_t(v);
}

uint32 GetBigEndian(const uint8_t* p) {
  return (uint32(p[0]) << 24) | (uint32(p[1]) << 16) | (uint32(p[2]) << 8) | p[3];
}

void SortShardLists(void* arg, const GraphResult& graph) {
  ShardBuild* sb = static_cast<ShardBuild*>(arg);
  const size_t max_len = VARHDRSZ + kListKeyBytes + sizeof(uint32) * (1 + sb->degree);
  bytea* rec = static_cast<bytea*>(palloc(max_len));
  for (uint32 i = 0; i < sb->count; i++) {
    const uint32 degree = graph.degrees[i];
    const size_t len = VARHDRSZ + kListKeyBytes + sizeof(uint32) * (1 + degree);
    SET_VARSIZE(rec, len);
    uint8_t* p = reinterpret_cast<uint8_t*>(VARDATA(rec));
    PutBigEndian(p, sb->members[i]);
    PutBigEndian(p + 4, uint32(sb->shard));
    std::memcpy(p + kListKeyBytes, &degree, sizeof(degree));
    uint32* list = reinterpret_cast<uint32*>(p + kListKeyBytes + sizeof(uint32));
    for (uint32 k = 0; k < degree; k++)
      list[k] = sb->members[graph.neighbors[size_t(i) * graph.stride + k]];
    tuplesort_putdatum(sb->sort, PointerGetDatum(rec), false);
  }
  pfree(rec);
}

// The member rows of shard s, read from the assignments file.
uint32 ShardMembers(Sharding* sh, uint32 nrows, int s, uint32* members) {
  if (BufFileSeek(sh->assignments, 0, 0, SEEK_SET) != 0)
    ereport(ERROR, (errcode_for_file_access(), errmsg("could not seek vamana shard file")));
  uint32 count = 0;
  int32 chosen[kShardsPerRow];
  for (uint32 i = 0; i < nrows; i++) {
    if (BufFileRead(sh->assignments, chosen, sizeof(chosen)) != sizeof(chosen))
      ereport(ERROR, (errcode_for_file_access(), errmsg("could not read vamana shard file")));
    if (chosen[0] == s || chosen[1] == s) members[count++] = i;
  }
  return count;
}

// Distances between rows, from their vectors in the rows file (kept for the row being merged).
class RowsFileDistances : public PairDistances {
 public:
  RowsFileDistances(RowsFile* rows, VamanaMetric metric)
      : rows_(rows), metric_(metric), record_(rows->record_bytes) {}
  void Clear() {
    at_.clear();
    vectors_.clear();
  }
  void Distances(uint32_t from, const uint32_t* to, size_t count, float* out) override {
    const size_t dims = size_t(rows_->dims);
    const float* a = Vector(from);
    const DistanceKernels& k = scann::Distances();
    for (size_t i = 0; i < count; i++) {
      const float* b = Vector(to[i]);
      a = Vector(from);  // the map may have moved it
      out[i] =
          metric_ == VamanaMetric::kL2 ? k.l2_squared(a, b, dims) : -k.inner_product(a, b, dims);
    }
  }

 private:
  const float* Vector(uint32_t row) {
    auto [it, added] = at_.emplace(row, vectors_.size());
    if (added) {
      PgCall([&] { RowsFileRead(rows_, row, record_.data()); });
      const float* v = reinterpret_cast<const float*>(record_.data());
      vectors_.insert(vectors_.end(), v, v + rows_->dims);
    }
    return vectors_.data() + it->second;
  }

  RowsFile* rows_;
  VamanaMetric metric_;
  std::vector<uint8_t> record_;
  std::unordered_map<uint32_t, size_t> at_;
  std::vector<float> vectors_;
};

// DiskANN's calculate_entry_point in two streamed passes: the mean of all rows, then the row
// nearest to it.
uint32 EntryRow(RowsFile* rows) {
  const int dims = rows->dims;
  double* sum = static_cast<double*>(palloc0(sizeof(double) * dims));
  float* mean = static_cast<float*>(palloc(sizeof(float) * dims));
  uint8_t* record = static_cast<uint8_t*>(palloc(rows->record_bytes));
  const float* v = reinterpret_cast<const float*>(record);
  RowsFileRewind(rows);
  for (uint32 i = 0; i < rows->rows; i++) {
    RowsFileReadNext(rows, record);
    for (int j = 0; j < dims; j++) sum[j] += v[j];
  }
  for (int j = 0; j < dims; j++) mean[j] = float(sum[j] / rows->rows);
  uint32 best = 0;
  float best_distance = 0;
  RowsFileRewind(rows);
  for (uint32 i = 0; i < rows->rows; i++) {
    RowsFileReadNext(rows, record);
    const float d = Distances().l2_squared(mean, v, size_t(dims));
    if (i == 0 || d < best_distance) {
      best = i;
      best_distance = d;
    }
  }
  return best;
}

// Reads the sort's lists row by row, merges each row's lists (pruned to R when longer) and
// writes its node, without neighbour codes yet.
void MergeAndWrite(RowsFile* rows, Tuplesortstate* sort, const VamanaParams& params,
                   NodeWriter* w) {
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kVamanaPhaseMerge);
  pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, 0);
  const uint32 degree = uint32(params.graph_degree);
  uint8_t* record = static_cast<uint8_t*>(palloc(rows->record_bytes));
  uint32* merged = static_cast<uint32*>(palloc(sizeof(uint32) * kShardsPerRow * degree));
  uint8_t* zero_codes = static_cast<uint8_t*>(palloc0(size_t(degree) * Max(rows->subspaces, 1u)));
  RowsFileDistances* distances =
      NewInContext<RowsFileDistances>(CurrentMemoryContext, rows, params.metric);
  VamanaScratch* scratch =
      NewInContext<VamanaScratch>(CurrentMemoryContext, size_t(kShardsPerRow) * degree);
  Datum value;
  bool isnull;
  bool have = tuplesort_getdatum(sort, true, &value, &isnull, nullptr);
  for (uint32 row = 0; row < rows->rows; row++) {
    uint32 count = 0;
    while (have) {
      const uint8_t* p = reinterpret_cast<const uint8_t*>(VARDATA_ANY(DatumGetPointer(value)));
      if (GetBigEndian(p) != row) break;
      uint32 len;
      std::memcpy(&len, p + kListKeyBytes, sizeof(len));
      const uint32* list = reinterpret_cast<const uint32*>(p + kListKeyBytes + sizeof(uint32));
      for (uint32 k = 0; k < len; k++)
        if (std::find(merged, merged + count, list[k]) == merged + count) merged[count++] = list[k];
      pfree(DatumGetPointer(value));
      have = tuplesort_getdatum(sort, true, &value, &isnull, nullptr);
    }
    if (count > degree) {
      CppGuard([&] {
        distances->Clear();
        std::vector<float> to(count);
        distances->Distances(row, merged, count, to.data());
        scratch->pool.clear();
        for (uint32 k = 0; k < count; k++) scratch->pool.push_back({to[k], merged[k]});
        RobustPrune(row, &scratch->pool, params.alpha, params, *distances, scratch,
                    &scratch->neighbors);
        count = uint32(scratch->neighbors.size());
        std::copy(scratch->neighbors.begin(), scratch->neighbors.end(), merged);
      });
    }
    RowsFileRead(rows, row, record);
    NodeWriterAdd(w, record, rows, merged, count, zero_codes);
  }
  NodeWriterFlush(w);
}

// Fills every node's block of neighbour codes from the neighbours' own codes on their pages
// (the build has the index to itself: a page is locked while another is read).
void FillNeighborCodes(Relation index, ForkNumber fork, const NodeWriter* w) {
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kVamanaPhaseWrite);
  const VamanaNodeLayout& l = w->layout;
  const uint32 m = l.subspaces;
  uint32* ids = static_cast<uint32*>(palloc(sizeof(uint32) * l.degree_bound));
  uint8_t* codes = static_cast<uint8_t*>(palloc0(size_t(l.degree_bound) * Max(m, 1u)));
  const BlockNumber pages = (w->written + l.nodes_per_page - 1) / l.nodes_per_page;
  for (BlockNumber p = 0; p < pages; p++) {
    const BlockNumber block = w->first + p;
    Buffer buf = ReadBufferExtended(index, fork, block, RBM_NORMAL, nullptr);
    LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
    Page page = BufferGetPage(buf);
    for (uint32 slot = 0; slot < l.nodes_per_page; slot++) {
      uint8_t* node = VamanaNode(l, page, slot);
      if (VamanaHeader(node)->state != uint8(VamanaNodeState::kLive)) continue;
      const uint32 degree = Min(uint32(VamanaHeader(node)->degree), l.degree_bound);
      std::memcpy(ids, node + l.ids_offset, sizeof(uint32) * degree);
      for (uint32 k = 0; k < degree; k++) {
        const BlockNumber nb = VamanaNodeBlock(l, ids[k]);
        const uint8_t* own;
        Buffer other = InvalidBuffer;
        if (nb == block) {
          own = VamanaNode(l, page, VamanaNodeSlot(l, ids[k])) + l.own_code_offset;
        } else {
          other = ReadBufferExtended(index, fork, nb, RBM_NORMAL, nullptr);
          LockBuffer(other, BUFFER_LOCK_SHARE);
          own = VamanaNode(l, BufferGetPage(other), VamanaNodeSlot(l, ids[k])) + l.own_code_offset;
        }
        UnpackOwnCode(own, m, codes + size_t(k) * m);
        if (BufferIsValid(other)) UnlockReleaseBuffer(other);
      }
      SetNodeList(l, node, ids, codes, degree);
    }
    MarkBufferDirty(buf);
    UnlockReleaseBuffer(buf);
    pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE,
                                 int64(Min(w->written, (p + 1) * l.nodes_per_page)));
    CHECK_FOR_INTERRUPTS();
  }
}

}  // namespace

uint32 BuildInShards(VariantBuild* vb, RowsFile* rows, const VamanaParams& params,
                     const VamanaNodeLayout& layout, NodeWriter* w, uint32* entry_row) {
  Sharding sh;
  PlanShards(vb, rows, params, &sh);
  ereport(DEBUG1, (errmsg_internal("scann index builds its vamana graph in %d shards of at most "
                                   "%u rows",
                                   sh.k, sh.capacity)));
  AssignRows(vb, rows, &sh);
  const int sort_mem = Max(int((1.0 - kShardShare) * maintenance_work_mem), 64);
  Tuplesortstate* sort = tuplesort_begin_datum(BYTEAOID, ByteaLessOperator, InvalidOid, false,
                                               sort_mem, nullptr, TUPLESORT_NONE);
  ShardBuild sb = {rows, sort, nullptr, 0, 0, uint32(params.graph_degree)};
  sb.members = static_cast<uint32*>(
      MemoryContextAllocHuge(CurrentMemoryContext, sizeof(uint32) * Max(sh.capacity, 1u)));
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kVamanaPhaseGraph);
  pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, int64(sh.k));
  for (int s = 0; s < sh.k; s++) {
    sb.shard = s;
    sb.count = ShardMembers(&sh, rows->rows, s, sb.members);
    if (sb.count > 0) BuildGraph(vb, params, sb.count, FillShard, SortShardLists, &sb);
    pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kVamanaPhaseGraph);
    pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, int64(s + 1));
  }
  BufFileClose(sh.assignments);
  tuplesort_performsort(sort);
  MergeAndWrite(rows, sort, params, w);
  tuplesort_end(sort);
  FillNeighborCodes(vb->index, vb->fork, w);
  *entry_row = EntryRow(rows);
  // The merge does not promise every node an in-edge: link those no path reaches (the pages
  // are logged whole at the end of the build).
  VamanaIndex vi = {};
  vi.layout = layout;
  vi.params = params;
  vi.first_node_block = w->first;
  vi.metric = vb->metric;
  vi.dims = vb->dims;
  vi.trained = true;
  RepairUnreachable(vb->index, vi, vb->pq, vb->centroid, NodeWriterIdOf(w, *entry_row), false);
  return uint32(sh.k);
}

}  // namespace scann::pg
