// CREATE INDEX: count rows -> sample -> train centroids and codebooks -> write them (the
// streams after the metapage) -> assign and encode every row (sorted by list in a
// tuplesort, so memory stays within maintenance_work_mem) -> write the directory, the list
// chains and the metapage -> WAL-log the whole range.
//
// The assign-and-encode pass, the per-row work, runs in parallel workers when the planner
// grants them (plan_create_index_workers: max_parallel_maintenance_workers, the table's
// size or its parallel_workers option, maintenance_work_mem of at least 32 MB per
// participant). The leader trains alone; the workers read the centroids and codebooks from
// the streams it has written (through shared buffers), so the DSM segment stays small
// however large lists x dims is (a container's /dev/shm often holds 64 MB in all). Each
// participant (the workers, and the leader unless
// parallel_leader_participation is off) encodes the blocks of a parallel heap scan into its
// own run of a shared tuplesort, which the leader merges. The sort key (list, heap TID) is
// unique, so the merged order, and with it every page of the index, is the same as in a
// serial build.
#include "pg/scann_build.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/distance.h"
#include "core/fastscan.h"
#include "core/kmeans.h"
#include "core/pq.h"
#include "core/rng.h"
#include "pg/scann_calibrate.h"
#include "pg/scann_index.h"
#include "pg/scann_list.h"
#include "pg/scann_options.h"
#include "pg/scann_scan.h"
#include "pg/scann_variant.h"
#include "pg/scann_vector.h"

extern "C" {
#include "access/parallel.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_operator_d.h"
#include "catalog/pg_type_d.h"
#include "commands/progress.h"
#include "executor/instrument.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "optimizer/optimizer.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/bufmgr.h"
#include "storage/condition_variable.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/backend_progress.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplesort.h"
#include "utils/wait_event.h"

PGDLLEXPORT void scann_parallel_build_main(dsm_segment* seg, shm_toc* toc);
}

namespace scann::pg {

namespace {

// Progress sub-phases reported in pg_stat_progress_create_index.
enum BuildPhase : int64 {
  kPhaseCount = 2,
  kPhaseSample,
  kPhaseTrain,
  kPhaseEncode,
  kPhaseSort,
  kPhaseWrite,
  kPhaseCalibrate,
};

static_assert(kPhaseWrite < kFirstVariantBuildPhase, "variants number their phases after ours");

constexpr uint64_t kSeed = 0x5ca11ab1e0f5ca1ull;
constexpr int kPqIterations = 8;

// The state a parallel encoding pass shares in its DSM segment (ParallelTableScanDesc after
// it). Participants add their rows to `indexed` and `done` when their run is sorted.
struct ParallelShared {
  Oid heap_relid;
  Oid index_relid;
  bool concurrent;
  int dims;
  uint32 lists;
  uint32 dims_per_subspace;
  float anisotropic_threshold;  // as the build resolved it (scaled for ip)
  int sort_mem;                 // kB per participant
  // The trained model, already written to the index (the streams after the metapage): the
  // workers read it from there, so the segment stays small whatever lists x dims is.
  BlockNumber centroid_start;
  BlockNumber codebook_start;
  size_t codebook_floats;
  uint16 variant;
  uint32 fanout;
  BlockNumber partition_start;  // InvalidBlockNumber: none
  uint32 partition_bytes;
  BlockNumber sq8_start;  // InvalidBlockNumber: no re-ranking records
  ConditionVariable done_cv;
  slock_t mutex;
  int done;                  // participants whose run is sorted
  pg_atomic_uint64 encoded;  // rows put into the runs: progress, then the build's count
};

ParallelTableScanDesc ParallelScanOf(ParallelShared* shared) {
  return reinterpret_cast<ParallelTableScanDesc>(reinterpret_cast<char*>(shared) +
                                                 BUFFERALIGN(sizeof(ParallelShared)));
}

// Keys of the parallel build's DSM table of contents.
constexpr uint64 kKeyShared = UINT64CONST(0x5CA0000000000001);
constexpr uint64 kKeySort = UINT64CONST(0x5CA0000000000002);
constexpr uint64 kKeyQueryText = UINT64CONST(0x5CA0000000000005);
constexpr uint64 kKeyBufferUsage = UINT64CONST(0x5CA0000000000006);
constexpr uint64 kKeyWalUsage = UINT64CONST(0x5CA0000000000007);
constexpr uint64 kKeyCalibration = UINT64CONST(0x5CA0000000000008);

// The calibration queries a parallel pass shares and each worker's neighbours of them:
// nq x dims floats, nq ids, then per worker nq x kCalibrationK neighbours and nq counts.
struct CalibrationShared {
  int nq;
  int workers;
};

size_t CalibrationSharedBytes(int nq, int dims, int workers) {
  return MAXALIGN(sizeof(CalibrationShared)) + MAXALIGN(sizeof(float) * size_t(nq) * dims) +
         MAXALIGN(sizeof(uint64) * nq) +
         size_t(workers) * (MAXALIGN(sizeof(NeighborTruth::Neighbor) * nq * kCalibrationK) +
                            MAXALIGN(sizeof(int) * nq));
}

float* CalibrationQueriesOf(CalibrationShared* cs) {
  return reinterpret_cast<float*>(reinterpret_cast<char*>(cs) + MAXALIGN(sizeof(CalibrationShared)));
}

uint64* CalibrationIdsOf(CalibrationShared* cs, int dims) {
  return reinterpret_cast<uint64*>(reinterpret_cast<char*>(CalibrationQueriesOf(cs)) +
                                   MAXALIGN(sizeof(float) * size_t(cs->nq) * dims));
}

// Worker w's neighbours (nq x kCalibrationK) and their counts (nq).
NeighborTruth::Neighbor* CalibrationNeighborsOf(CalibrationShared* cs, int dims, int w) {
  char* base = reinterpret_cast<char*>(CalibrationIdsOf(cs, dims)) + MAXALIGN(sizeof(uint64) * cs->nq);
  const size_t per_worker = MAXALIGN(sizeof(NeighborTruth::Neighbor) * cs->nq * kCalibrationK) +
                            MAXALIGN(sizeof(int) * cs->nq);
  return reinterpret_cast<NeighborTruth::Neighbor*>(base + size_t(w) * per_worker);
}

int* CalibrationCountsOf(CalibrationShared* cs, int dims, int w) {
  return reinterpret_cast<int*>(reinterpret_cast<char*>(CalibrationNeighborsOf(cs, dims, w)) +
                                MAXALIGN(sizeof(NeighborTruth::Neighbor) * cs->nq * kCalibrationK));
}

struct BuildState {
  Relation heap;
  Relation index;
  IndexInfo* index_info;
  ForkNumber fork;
  Metric metric;
  int dims;
  double rows;     // rows with a value (pass 1)
  double indexed;  // rows encoded (pass 3)
  MemoryContext row_cxt;

  // Sampling (pass 2): reservoir of `sample_cap` rows, with their row ids.
  float* sample;
  uint64* sample_ids;
  uint32 sample_cap;
  uint32 sample_rows;
  uint32 sample_kept;  // rows left after DropOutlierRows, at the front of the sample
  double seen;
  Rng* rng;

  // Encoding (pass 3).
  BuildOptions opts;
  bool trained;
  float* centroids;
  ProductQuantizer* pq;
  // The partitioner and what it trained besides the centroids: the lists a row is filed
  // in, its own structure, and what it keeps in the metapage.
  const ListPartitioner* partitioner;
  uint32 fanout;
  char* partition;
  uint32 partition_bytes;
  uint32 variant_words[16];
  // Where WriteModel put the centroid, codebook and partition streams.
  BlockNumber centroid_start;
  BlockNumber codebook_start;
  BlockNumber partition_start;
  uint32 centroid_pages;
  uint32 codebook_pages;
  uint32 partition_pages;
  float* vec;
  float* residual;
  uint8_t* codes;  // the row's 4-bit codes (code_bytes), then its record (record_bytes)
  uint32 code_bytes;
  // Re-ranking records (rerank = 'sq8'): the scalar quantizer and where its stream went.
  ScalarQuantizer* sq;
  uint32 record_bytes;
  BlockNumber sq8_start;
  uint32 sq8_pages;
  Tuplesortstate* sort;
  // Rows of a trained build wait in a chunk so that their lists are found together, by
  // AssignNearest's blocked kernel (faster than one row against every centroid at a time).
  float* chunk;  // chunk_cap rows of dims floats
  ItemPointerData* chunk_tids;
  uint64* chunk_ids;
  int32* chunk_lists;  // fanout per row
  uint32 chunk_cap;
  uint32 chunk_rows;

  // Calibration: queries picked from the sample, and their exact neighbours among every row
  // encoded (core/calibration.h).
  float* cal_queries;
  uint64* cal_ids;
  int cal_n;
  NeighborTruth* truth;
  CalibrationShared* cal_shared;  // parallel passes only
  int worker;                     // this participant's worker number; -1 in the leader

  // Parallel encoding (null / 0 in a serial build).
  bool report_progress;  // false in workers
  ParallelShared* shared;
  Sharedsort* sharedsort;
  ParallelContext* pcxt;  // leader only, from here on
  Snapshot snapshot;
  int participants;  // tuplesorts to merge: workers launched, plus the leader's own
  BufferUsage* buffer_usage;
  WalUsage* wal_usage;
};

// The partition model as the build has it so far.
PartitionModel Model(const BuildState* bs) {
  PartitionModel model;
  model.index = bs->index;
  model.dims = bs->dims;
  model.lists = bs->opts.lists;
  model.fanout = bs->fanout;
  model.centroids = bs->centroids;
  model.norms = nullptr;
  model.partition = bs->partition;
  model.partition_bytes = bs->partition_bytes;
  return model;
}

// Pass 1: rows to index, and the dimensions of the first one.
void CountCallback(Relation index, ItemPointer tid, Datum* values, bool* isnull, bool alive,
                   void* arg) {
  BuildState* bs = static_cast<BuildState*>(arg);
  if (isnull[0]) return;
  if (bs->dims == 0) {
    MemoryContext old = MemoryContextSwitchTo(bs->row_cxt);
    ReadIndexVector(values[0], bs->metric, 0, bs->index, tid, nullptr, &bs->dims);
    MemoryContextSwitchTo(old);
    MemoryContextReset(bs->row_cxt);
  }
  bs->rows += 1;
}

// Pass 2: reservoir sampling (Algorithm R) with our own seeded generator, so the same
// table contents always train the same quantizers.
void SampleCallback(Relation index, ItemPointer tid, Datum* values, bool* isnull, bool alive,
                    void* arg) {
  BuildState* bs = static_cast<BuildState*>(arg);
  if (isnull[0]) return;
  uint64 slot = bs->sample_rows < bs->sample_cap
                    ? bs->sample_rows
                    : bs->rng->Below(static_cast<uint64>(bs->seen) + 1);
  bs->seen += 1;
  if (slot >= bs->sample_cap) return;
  MemoryContext old = MemoryContextSwitchTo(bs->row_cxt);
  // A zero vector under cosine is not indexed, so it takes no slot either.
  if (ReadIndexVector(values[0], bs->metric, bs->dims, bs->index, tid, bs->vec, nullptr)) {
    std::memcpy(bs->sample + size_t(slot) * bs->dims, bs->vec, sizeof(float) * bs->dims);
    bs->sample_ids[slot] = TidToId(tid);
    if (slot == bs->sample_rows) bs->sample_rows++;
  }
  MemoryContextSwitchTo(old);
  MemoryContextReset(bs->row_cxt);
  CHECK_FOR_INTERRUPTS();
}

// Sort key that orders bytea by (list, heap TID): big-endian list, block and offset.
void PutSortKey(uint8_t* key, uint32 list, ItemPointer tid) {
  BlockNumber blk = ItemPointerGetBlockNumber(tid);
  OffsetNumber off = ItemPointerGetOffsetNumber(tid);
  const uint8_t k[10] = {uint8_t(list >> 24), uint8_t(list >> 16), uint8_t(list >> 8),
                         uint8_t(list),       uint8_t(blk >> 24),  uint8_t(blk >> 16),
                         uint8_t(blk >> 8),   uint8_t(blk),        uint8_t(off >> 8),
                         uint8_t(off)};
  std::memcpy(key, k, sizeof(k));
}

constexpr size_t kSortKeyBytes = 10;

// Rows of a trained build per chunk: at most this many, and at most kChunkBytes of floats.
constexpr uint32 kChunkRows = 4096;
constexpr size_t kChunkBytes = 8 << 20;

// The sort record of one row: its list and TID (the key), then bs->codes (its codes and
// its re-ranking record).
void PutRecord(BuildState* bs, uint32 list, ItemPointer tid) {
  size_t len = VARHDRSZ + kSortKeyBytes + bs->code_bytes + bs->record_bytes;
  bytea* rec = static_cast<bytea*>(palloc(len));
  SET_VARSIZE(rec, len);
  uint8_t* p = reinterpret_cast<uint8_t*>(VARDATA(rec));
  PutSortKey(p, list, tid);
  std::memcpy(p + kSortKeyBytes, bs->codes, bs->code_bytes + bs->record_bytes);
  tuplesort_putdatum(bs->sort, PointerGetDatum(rec), false);
  pfree(rec);
}

// Lists and codes of the chunk's rows, into the sort.
void FlushChunk(BuildState* bs) {
  const uint32 n = bs->chunk_rows;
  if (n == 0) return;
  bs->partitioner->assign(Model(bs), bs->chunk, n, bs->chunk_lists);
  if (bs->truth) {
    for (uint32 i = 0; i < n; i++) bs->chunk_ids[i] = TidToId(&bs->chunk_tids[i]);
    CppGuard([&] { bs->truth->Add(bs->chunk, bs->chunk_ids, n); });
  }
  for (uint32 i = 0; i < n; i++) {
    if (bs->record_bytes > 0)
      EncodeRecord(bs->sq, bs->chunk + size_t(i) * bs->dims, bs->codes + bs->code_bytes);
    for (uint32 t = 0; t < bs->fanout; t++) {
      const uint32 list = uint32(bs->chunk_lists[size_t(i) * bs->fanout + t]);
      EncodeInList(bs->pq, bs->centroids, bs->dims, list, bs->chunk + size_t(i) * bs->dims,
                   bs->residual, bs->codes);
      PutRecord(bs, list, &bs->chunk_tids[i]);
    }
  }
  bs->indexed += n;
  bs->chunk_rows = 0;
  int64 done =
      bs->shared ? int64(pg_atomic_add_fetch_u64(&bs->shared->encoded, n)) : int64(bs->indexed);
  if (bs->report_progress) pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, done);
  CHECK_FOR_INTERRUPTS();
}

// Pass 3: nearest centroid, codes, and a sort record for every row.
void EncodeCallback(Relation index, ItemPointer tid, Datum* values, bool* isnull, bool alive,
                    void* arg) {
  BuildState* bs = static_cast<BuildState*>(arg);
  if (isnull[0]) return;
  MemoryContext old = MemoryContextSwitchTo(bs->row_cxt);
  if (!bs->trained) {  // one list, no codes
    if (ReadIndexVector(values[0], bs->metric, bs->dims, bs->index, tid, bs->vec, nullptr)) {
      PutRecord(bs, 0, tid);
      bs->indexed += 1;
      pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, int64(bs->indexed));
    }
  } else if (ReadIndexVector(values[0], bs->metric, bs->dims, bs->index, tid,
                             bs->chunk + size_t(bs->chunk_rows) * bs->dims, nullptr)) {
    bs->chunk_tids[bs->chunk_rows++] = *tid;
  }
  MemoryContextSwitchTo(old);
  MemoryContextReset(bs->row_cxt);
  if (bs->trained && bs->chunk_rows == bs->chunk_cap) FlushChunk(bs);
}

void CountRows(BuildState* bs) {
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kPhaseCount);
  table_index_build_scan(bs->heap, bs->index, bs->index_info, false, true, CountCallback, bs,
                         nullptr);
}

void SampleRows(BuildState* bs) {
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kPhaseSample);
  // Room for the calibration queries too, which leave the sample before training.
  const double wanted = double(bs->opts.sample) + CalibrationQueries(bs->dims, bs->opts.sample);
  bs->sample_cap = static_cast<uint32>(std::min<double>(wanted, bs->rows));
  bs->sample = static_cast<float*>(MemoryContextAllocHuge(
      CurrentMemoryContext,
      sizeof(float) * std::max<size_t>(1, size_t(bs->sample_cap) * bs->dims)));
  bs->sample_ids = static_cast<uint64*>(MemoryContextAllocHuge(
      CurrentMemoryContext, sizeof(uint64) * std::max<size_t>(1, bs->sample_cap)));
  bs->rng = new (palloc(sizeof(Rng))) Rng(kSeed);  // trivially destructible
  bs->vec = static_cast<float*>(palloc(sizeof(float) * bs->dims));
  table_index_build_scan(bs->heap, bs->index, bs->index_info, false, true, SampleCallback, bs,
                         nullptr);
}

// Copies the calibration queries, sample rows chosen with their own seeded generator, before
// training reorders the sample, and takes them out of the sample.
void PickCalibrationQueries(BuildState* bs) {
  bs->cal_n = CalibrationQueries(bs->dims, bs->sample_rows);
  bs->cal_queries = static_cast<float*>(palloc(sizeof(float) * std::max<size_t>(1, size_t(bs->cal_n) * bs->dims)));
  bs->cal_ids = static_cast<uint64*>(palloc(sizeof(uint64) * std::max(1, bs->cal_n)));
  uint32* slots = static_cast<uint32*>(palloc(sizeof(uint32) * bs->sample_rows));
  for (uint32 i = 0; i < bs->sample_rows; i++) slots[i] = i;
  Rng rng(kSeed ^ 0xCA11B4A7E5ull);
  for (int q = 0; q < bs->cal_n; q++) {  // a partial Fisher-Yates shuffle
    const uint32 pick = q + uint32(rng.Below(bs->sample_rows - q));
    std::swap(slots[q], slots[pick]);
    std::memcpy(bs->cal_queries + size_t(q) * bs->dims, bs->sample + size_t(slots[q]) * bs->dims,
                sizeof(float) * bs->dims);
    bs->cal_ids[q] = bs->sample_ids[slots[q]];
  }
  // The queries stay out of training as far as the table allows (the reservoir took up to
  // cal_n rows more than the training sample): rows the partitions and codebooks were fitted
  // to find their neighbours more easily than the queries users send.  Training keeps
  // exactly min(sample, rows) rows either way.
  const uint32 spare = bs->sample_rows > uint32(bs->opts.sample)
                           ? bs->sample_rows - uint32(bs->opts.sample)
                           : 0;
  const uint32 held_out = Min(spare, uint32(bs->cal_n));
  if (held_out > 0) {
    bool* held = static_cast<bool*>(palloc0(sizeof(bool) * bs->sample_rows));
    for (uint32 q = 0; q < held_out; q++) held[slots[q]] = true;
    uint32 kept = 0;
    for (uint32 i = 0; i < bs->sample_rows; i++) {
      if (held[i]) continue;
      if (kept != i) {
        std::memcpy(bs->sample + size_t(kept) * bs->dims, bs->sample + size_t(i) * bs->dims,
                    sizeof(float) * bs->dims);
        bs->sample_ids[kept] = bs->sample_ids[i];
      }
      kept++;
    }
    bs->sample_rows = kept;
    pfree(held);
  }
  pfree(slots);
}

// For ip, T (given for unit-norm rows, as with cosine) is scaled by the sample's median
// norm, so that the score-aware loss weighs rows as ScaNN does on normalized data.  Norms are
// taken in double (rows with components near 1e20 overflow a float norm) and the result is
// kept within float's range.
void ScaleThresholdToNorms(BuildState* bs) {
  const uint32 n = bs->sample_rows;
  double* norms = static_cast<double*>(palloc(sizeof(double) * n));
  for (uint32 i = 0; i < n; i++) {
    const float* x = bs->sample + size_t(i) * bs->dims;
    double sum = 0;
    for (int j = 0; j < bs->dims; j++) sum += double(x[j]) * x[j];
    norms[i] = std::sqrt(sum);
  }
  CppGuard([&] { std::nth_element(norms, norms + n / 2, norms + n); });
  const double threshold = double(bs->opts.anisotropic_threshold) * norms[n / 2];
  if (threshold > 0)
    bs->opts.anisotropic_threshold = float(Min(threshold, double(FLT_MAX)));
  else  // a median row of zeros: no scale to take, train plain codes
    bs->opts.anisotropic_threshold = 0;
  pfree(norms);
}

int32* TrainMeanCentroid(BuildState* bs);

// The partition (the variant's partitioner, on the sample), then the product quantizer on
// the sample's residuals to the first list each row is filed in.
void Train(BuildState* bs) {
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kPhaseTrain);
  const int dims = bs->dims;
  const uint32 n = bs->sample_rows;
  if (bs->metric == Metric::kInnerProduct && bs->opts.anisotropic_threshold > 0)
    ScaleThresholdToNorms(bs);
  int32* assign;
  if (bs->partitioner) {
    PartitionTraining training = {};
    training.index = bs->index;
    training.metric = bs->metric;
    training.dims = dims;
    training.sample = bs->sample;
    training.sample_rows = n;
    training.table_rows = bs->rows;
    training.lists = bs->opts.lists;
    training.lists_requested = bs->opts.lists_requested;
    bs->partitioner->train(&training);
    bs->opts.lists = training.lists;
    bs->fanout = training.fanout;
    bs->centroids = training.centroids;
    bs->partition = training.partition;
    bs->partition_bytes = training.partition_bytes;
    std::memcpy(bs->variant_words, training.variant_words, sizeof(bs->variant_words));
    assign = static_cast<int32*>(
        MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int32) * size_t(n) * bs->fanout));
    bs->partitioner->assign(Model(bs), bs->sample, n, assign);
  } else {
    assign = TrainMeanCentroid(bs);
  }
  PqOptions pq_opts = EncodingOptions(bs->opts.dims_per_subspace, bs->opts.anisotropic_threshold);
  pq_opts.iterations = kPqIterations;
  pq_opts.seed = kSeed;
  pq_opts.check_interrupts = CheckInterrupts;
  bs->pq = NewInContext<ProductQuantizer>(CurrentMemoryContext, dims, pq_opts);
  if (bs->opts.rerank == Rerank::kSq8) {
    bs->sq = NewInContext<ScalarQuantizer>(CurrentMemoryContext);
    bs->record_bytes = RecordBytes(uint32(dims));
  }
  CppGuard([&] {
    std::vector<float> residuals(size_t(n) * dims);
    for (uint32 i = 0; i < n; i++) {
      const float* c = bs->centroids + size_t(assign[size_t(i) * bs->fanout]) * dims;
      for (int j = 0; j < dims; j++)
        residuals[size_t(i) * dims + j] = bs->sample[size_t(i) * dims + j] - c[j];
    }
    const size_t kept = DropOutlierRows(residuals.data(), bs->sample, n, dims);
    bs->pq->Train(residuals.data(), bs->sample, kept);
    // The records' ranges, on the same rows (an outlier would stretch every step).
    if (bs->sq) bs->sq->Train(bs->sample, kept, dims);
    bs->sample_kept = uint32(kept);
  });
  pfree(assign);
  if (bs->partitioner) {  // a variant with its own build may use the sample
    pfree(bs->sample);
    bs->sample = nullptr;
  }
}

// Codes of a variant that is not list-based are residuals to one centroid, the sample's mean;
// returns every sample row's list (0).
int32* TrainMeanCentroid(BuildState* bs) {
  const uint32 n = bs->sample_rows;
  bs->opts.lists = 1;
  bs->fanout = 1;
  bs->centroids = static_cast<float*>(palloc0(sizeof(float) * bs->dims));
  std::vector<double> sum(size_t(bs->dims), 0.0);
  for (uint32 i = 0; i < n; i++)
    for (int j = 0; j < bs->dims; j++) sum[j] += bs->sample[size_t(i) * bs->dims + j];
  for (int j = 0; j < bs->dims; j++) bs->centroids[j] = float(sum[j] / Max(n, 1u));
  return static_cast<int32*>(palloc0(sizeof(int32) * Max(n, 1u)));
}

// Per-row buffers of the encoding pass.
void BeginEncoding(BuildState* bs) {
  int dims = Max(bs->dims, 1);
  if (bs->vec == nullptr) bs->vec = static_cast<float*>(palloc(sizeof(float) * dims));
  bs->residual = static_cast<float*>(palloc(sizeof(float) * dims));
  bs->codes =
      static_cast<uint8_t*>(palloc0(std::max<uint32>(bs->code_bytes + bs->record_bytes, 1)));
  if (bs->trained) {
    bs->chunk_cap = uint32(std::max<size_t>(
        1, std::min<size_t>(kChunkRows, kChunkBytes / (sizeof(float) * size_t(dims)))));
    bs->chunk = static_cast<float*>(palloc(sizeof(float) * size_t(bs->chunk_cap) * dims));
    bs->chunk_tids = static_cast<ItemPointerData*>(palloc(sizeof(ItemPointerData) * bs->chunk_cap));
    bs->chunk_lists = static_cast<int32*>(palloc(sizeof(int32) * bs->chunk_cap * bs->fanout));
    bs->chunk_ids = static_cast<uint64*>(palloc(sizeof(uint64) * bs->chunk_cap));
    if (bs->cal_n > 0)
      bs->truth = NewInContext<NeighborTruth>(CurrentMemoryContext, bs->cal_queries, bs->cal_ids,
                                              bs->cal_n, bs->dims,
                                              bs->metric == Metric::kInnerProduct, kCalibrationK);
    bs->chunk_rows = 0;
  }
}

// A sort of records by (list, TID): a serial build's (coordinate null), a participant's run
// or the leader's merge of the runs.
Tuplesortstate* BeginSort(int sort_mem, SortCoordinate coordinate) {
  return tuplesort_begin_datum(BYTEAOID, ByteaLessOperator, InvalidOid, false, sort_mem, coordinate,
                               TUPLESORT_NONE);
}

// One participant's share of a parallel pass: the blocks of the parallel heap scan it gets,
// encoded into its sorted run.  A broken HOT chain a worker meets (which makes index_build
// set indcheckxmin) needs no report to the leader: the leader's counting pass read every
// chain of the table with the same snapshot rules before, and the table's lock has kept
// new ones from forming since.
void EncodeShare(BuildState* bs, int sort_mem, bool progress) {
  SortCoordinate coordinate = static_cast<SortCoordinate>(palloc0(sizeof(SortCoordinateData)));
  coordinate->isWorker = true;
  coordinate->nParticipants = -1;
  coordinate->sharedsort = bs->sharedsort;
  bs->sort = BeginSort(sort_mem, coordinate);
  TableScanDesc scan = table_beginscan_parallel(bs->heap, ParallelScanOf(bs->shared));
  table_index_build_scan(bs->heap, bs->index, bs->index_info, true, progress, EncodeCallback, bs,
                         scan);  // ends the scan
  FlushChunk(bs);
  if (bs->truth && bs->worker >= 0) {  // the leader keeps its share in its own truth
    CalibrationShared* cs = bs->cal_shared;
    NeighborTruth::Neighbor* out = CalibrationNeighborsOf(cs, bs->dims, bs->worker);
    int* counts = CalibrationCountsOf(cs, bs->dims, bs->worker);
    for (int q = 0; q < cs->nq; q++) {
      const auto& nearest = bs->truth->Nearest(q);
      counts[q] = int(nearest.size());
      std::copy(nearest.begin(), nearest.end(), out + size_t(q) * kCalibrationK);
    }
  }
  tuplesort_performsort(bs->sort);
  tuplesort_end(bs->sort);
  bs->sort = nullptr;
  SpinLockAcquire(&bs->shared->mutex);
  bs->shared->done++;
  SpinLockRelease(&bs->shared->mutex);
  ConditionVariableSignal(&bs->shared->done_cv);
}

void EndParallel(BuildState* bs) {
  if (bs->pcxt == nullptr) return;
  WaitForParallelWorkersToFinish(bs->pcxt);
  for (int i = 0; i < bs->pcxt->nworkers_launched; i++)
    InstrAccumParallelQuery(&bs->buffer_usage[i], &bs->wal_usage[i]);
  if (IsMVCCSnapshot(bs->snapshot)) UnregisterSnapshot(bs->snapshot);
  DestroyParallelContext(bs->pcxt);
  ExitParallelMode();
  bs->pcxt = nullptr;
}

// Launches the workers the planner grants the encoding pass and shares the trained model
// with them. Leaves bs->shared null (a serial pass) when none could be launched.
void BeginParallel(BuildState* bs) {
  if (!bs->trained || bs->heap == nullptr || bs->fork != MAIN_FORKNUM) return;
  int request = plan_create_index_workers(RelationGetRelid(bs->heap), RelationGetRelid(bs->index));
  if (request <= 0) return;
  const bool leader_participates = parallel_leader_participation;
  const int sorts = request + (leader_participates ? 1 : 0);

  EnterParallelMode();
  ParallelContext* pcxt = CreateParallelContext("pg_scann", "scann_parallel_build_main", request);
  Snapshot snapshot =
      bs->index_info->ii_Concurrent ? RegisterSnapshot(GetTransactionSnapshot()) : SnapshotAny;
  Size shared_bytes = add_size(BUFFERALIGN(sizeof(ParallelShared)),
                               table_parallelscan_estimate(bs->heap, snapshot));
  shm_toc_estimate_chunk(&pcxt->estimator, shared_bytes);
  shm_toc_estimate_chunk(&pcxt->estimator, tuplesort_estimate_shared(sorts));
  shm_toc_estimate_chunk(&pcxt->estimator, mul_size(sizeof(BufferUsage), pcxt->nworkers));
  shm_toc_estimate_chunk(&pcxt->estimator, mul_size(sizeof(WalUsage), pcxt->nworkers));
  size_t query_bytes = debug_query_string ? strlen(debug_query_string) + 1 : 0;
  if (query_bytes) shm_toc_estimate_chunk(&pcxt->estimator, query_bytes);
  const size_t cal_bytes =
      bs->cal_n > 0 ? CalibrationSharedBytes(bs->cal_n, bs->dims, pcxt->nworkers) : 0;
  if (cal_bytes) shm_toc_estimate_chunk(&pcxt->estimator, cal_bytes);
  shm_toc_estimate_keys(&pcxt->estimator, 4 + (query_bytes ? 1 : 0) + (cal_bytes ? 1 : 0));
  InitializeParallelDSM(pcxt);
  bs->pcxt = pcxt;
  bs->snapshot = snapshot;
  if (pcxt->seg == nullptr) {  // no dynamic shared memory to be had: build serially
    EndParallel(bs);
    return;
  }

  ParallelShared* shared = static_cast<ParallelShared*>(shm_toc_allocate(pcxt->toc, shared_bytes));
  shared->heap_relid = RelationGetRelid(bs->heap);
  shared->index_relid = RelationGetRelid(bs->index);
  shared->concurrent = bs->index_info->ii_Concurrent;
  shared->dims = bs->dims;
  shared->lists = bs->opts.lists;
  shared->dims_per_subspace = bs->opts.dims_per_subspace;
  shared->anisotropic_threshold = bs->opts.anisotropic_threshold;
  shared->sort_mem = Max(maintenance_work_mem / sorts, 64);
  shared->centroid_start = bs->centroid_start;
  shared->codebook_start = bs->codebook_start;
  shared->codebook_floats = bs->pq->codebook_floats();
  shared->variant = uint16(bs->opts.variant);
  shared->fanout = bs->fanout;
  shared->partition_start = bs->partition_start;
  shared->partition_bytes = bs->partition_bytes;
  shared->sq8_start = bs->sq8_start;
  ConditionVariableInit(&shared->done_cv);
  SpinLockInit(&shared->mutex);
  shared->done = 0;
  pg_atomic_init_u64(&shared->encoded, 0);
  table_parallelscan_initialize(bs->heap, ParallelScanOf(shared), snapshot);
  Sharedsort* sharedsort =
      static_cast<Sharedsort*>(shm_toc_allocate(pcxt->toc, tuplesort_estimate_shared(sorts)));
  tuplesort_initialize_shared(sharedsort, sorts, pcxt->seg);
  bs->buffer_usage = static_cast<BufferUsage*>(
      shm_toc_allocate(pcxt->toc, mul_size(sizeof(BufferUsage), pcxt->nworkers)));
  bs->wal_usage = static_cast<WalUsage*>(
      shm_toc_allocate(pcxt->toc, mul_size(sizeof(WalUsage), pcxt->nworkers)));
  shm_toc_insert(pcxt->toc, kKeyShared, shared);
  shm_toc_insert(pcxt->toc, kKeySort, sharedsort);
  shm_toc_insert(pcxt->toc, kKeyBufferUsage, bs->buffer_usage);
  shm_toc_insert(pcxt->toc, kKeyWalUsage, bs->wal_usage);
  if (query_bytes) {
    char* query = static_cast<char*>(shm_toc_allocate(pcxt->toc, query_bytes));
    std::memcpy(query, debug_query_string, query_bytes);
    shm_toc_insert(pcxt->toc, kKeyQueryText, query);
  }
  if (cal_bytes) {
    CalibrationShared* cs = static_cast<CalibrationShared*>(shm_toc_allocate(pcxt->toc, cal_bytes));
    cs->nq = bs->cal_n;
    cs->workers = pcxt->nworkers;
    std::memcpy(CalibrationQueriesOf(cs), bs->cal_queries,
                sizeof(float) * size_t(bs->cal_n) * bs->dims);
    std::memcpy(CalibrationIdsOf(cs, bs->dims), bs->cal_ids, sizeof(uint64) * bs->cal_n);
    for (int w = 0; w < pcxt->nworkers; w++)
      std::memset(CalibrationCountsOf(cs, bs->dims, w), 0, sizeof(int) * bs->cal_n);
    shm_toc_insert(pcxt->toc, kKeyCalibration, cs);
    bs->cal_shared = cs;
  }

  LaunchParallelWorkers(pcxt);
  if (pcxt->nworkers_launched == 0) {  // none to be had: build serially
    EndParallel(bs);
    return;
  }
  bs->shared = shared;
  bs->sharedsort = sharedsort;
  bs->participants = pcxt->nworkers_launched + (leader_participates ? 1 : 0);
  // PostgreSQL 15's index_build plans parallel workers for btree only and has just logged
  // "building index ... serially" for this one; this says what happens instead.
  ereport(DEBUG1, (errmsg_internal("scann index \"%s\" encodes rows with %d parallel workers",
                                   RelationGetRelationName(bs->index), pcxt->nworkers_launched),
                   errdetail_internal(
                       "PostgreSQL's message \"building index ... serially\" above refers to "
                       "its own planning, which gives parallel workers to btree builds "
                       "only; scann launches its own for the encoding pass, after the "
                       "leader has trained the quantizers.")));
  if (leader_participates) EncodeShare(bs, shared->sort_mem, true);
  // Should a worker fail to start, this errors out instead of waiting for it forever below.
  WaitForParallelWorkersToAttach(pcxt);
}

// The leader waits until every participant has sorted its run, then merges the runs.
void MergeShares(BuildState* bs) {
  for (;;) {
    SpinLockAcquire(&bs->shared->mutex);
    int done = bs->shared->done;
    SpinLockRelease(&bs->shared->mutex);
    if (done == bs->participants) break;
    ConditionVariableSleep(&bs->shared->done_cv, WAIT_EVENT_PARALLEL_CREATE_INDEX_SCAN);
  }
  ConditionVariableCancelSleep();
  bs->indexed = double(pg_atomic_read_u64(&bs->shared->encoded));
  pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, int64(bs->indexed));
  if (bs->truth && bs->cal_shared) {
    CalibrationShared* cs = bs->cal_shared;
    for (int w = 0; w < bs->pcxt->nworkers_launched; w++)
      for (int q = 0; q < cs->nq; q++)
        CppGuard([&] {
          bs->truth->Merge(q, CalibrationNeighborsOf(cs, bs->dims, w) + size_t(q) * kCalibrationK,
                           CalibrationCountsOf(cs, bs->dims, w)[q]);
        });
  }
  SortCoordinate coordinate = static_cast<SortCoordinate>(palloc0(sizeof(SortCoordinateData)));
  coordinate->isWorker = false;
  coordinate->nParticipants = bs->participants;
  coordinate->sharedsort = bs->sharedsort;
  bs->sort = BeginSort(maintenance_work_mem, coordinate);
}

void EncodeRows(BuildState* bs) {
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kPhaseEncode);
  pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, int64(bs->rows));
  BeginEncoding(bs);
  BeginParallel(bs);
  if (bs->shared) {
    MergeShares(bs);
  } else {
    bs->sort = BeginSort(maintenance_work_mem, nullptr);
    table_index_build_scan(bs->heap, bs->index, bs->index_info, true, true, EncodeCallback, bs,
                           nullptr);
    if (bs->trained) FlushChunk(bs);
  }
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kPhaseSort);
  tuplesort_performsort(bs->sort);
}

// Reads the sorted records back and appends them, 32 at a time, to their lists' chains.
void WriteLists(BuildState* bs, const ScannMetaPage& meta, ScannListEntry* entries) {
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kPhaseWrite);
  BlockPacker packer;
  BlockPackerInit(&packer, meta);
  ChainWriter writer;
  int64 current = -1;
  int64 written = 0;
  Datum value;
  bool isnull;
  while (tuplesort_getdatum(bs->sort, true, &value, &isnull, nullptr)) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(VARDATA_ANY(DatumGetPointer(value)));
    uint32 list = (uint32(p[0]) << 24) | (uint32(p[1]) << 16) | (uint32(p[2]) << 8) | p[3];
    ItemPointerData tid;
    ItemPointerSet(&tid, (uint32(p[4]) << 24) | (uint32(p[5]) << 16) | (uint32(p[6]) << 8) | p[7],
                   uint16((p[8] << 8) | p[9]));
    if (int64(list) != current) {
      if (current >= 0) FinishList(&packer, &writer, &entries[current]);
      current = list;
      ChainWriterInit(&writer, bs->index, bs->fork, meta);
    }
    BlockPackerAdd(&packer, &writer, &tid, p + kSortKeyBytes, p + kSortKeyBytes + meta.subspaces);
    pfree(DatumGetPointer(value));
    if (++written % 1024 == 0) {
      pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, written);
      CHECK_FOR_INTERRUPTS();
    }
  }
  if (current >= 0) FinishList(&packer, &writer, &entries[current]);
  tuplesort_end(bs->sort);
}

// Writes the centroid and codebook streams, the blocks after the metapage, before the rows
// are encoded: parallel workers read the model from them.
void WriteModel(BuildState* bs) {
  size_t centroid_bytes = bs->trained ? sizeof(float) * size_t(bs->opts.lists) * bs->dims : 0;
  size_t codebook_bytes = bs->trained ? sizeof(float) * bs->pq->codebook_floats() : 0;
  bs->centroid_start =
      WriteStream(bs->index, bs->fork, bs->centroids, centroid_bytes, &bs->centroid_pages);
  bs->codebook_start = WriteStream(bs->index, bs->fork, bs->trained ? bs->pq->codebooks() : nullptr,
                                   codebook_bytes, &bs->codebook_pages);
  bs->partition_start = InvalidBlockNumber;
  if (bs->trained && bs->partition_bytes > 0)
    bs->partition_start =
        WriteStream(bs->index, bs->fork, bs->partition, bs->partition_bytes, &bs->partition_pages);
  bs->sq8_start = InvalidBlockNumber;
  if (bs->trained && bs->sq)
    bs->sq8_start = WriteStream(bs->index, bs->fork, bs->sq->params(),
                                sizeof(float) * bs->sq->param_floats(), &bs->sq8_pages);
}

// Writes everything after the model streams; returns the metapage to store in block 0.
ScannMetaPage WriteIndex(BuildState* bs) {
  ScannMetaPage meta = {};
  meta.magic = kScannMagic;
  meta.version = kScannFormatVersion;
  meta.dims = bs->dims;
  meta.metric = uint16(bs->metric);
  meta.variant = uint16(bs->opts.variant);
  meta.lists = bs->opts.lists;
  meta.dims_per_subspace = bs->opts.dims_per_subspace;
  meta.subspaces = bs->trained ? bs->pq->num_subspaces() : 0;
  meta.rerank = uint16(bs->record_bytes > 0 ? Rerank::kSq8 : Rerank::kHeap);
  meta.record_bytes = bs->record_bytes;
  meta.locator_units = bs->record_bytes > 0 ? LocatorUnits(bs->record_bytes) : 0;
  meta.sq8_start = bs->sq8_start;
  meta.sq8_pages = bs->sq8_pages;
  meta.block_units = BlockUnits(meta.subspaces, meta.locator_units);
  meta.trained = bs->trained;
  meta.anisotropic_threshold = bs->opts.anisotropic_threshold;
  meta.sample_rows = bs->sample_rows;
  meta.build_rows = bs->indexed;

  meta.centroid_start = bs->centroid_start;
  meta.centroid_pages = bs->centroid_pages;
  meta.codebook_start = bs->codebook_start;
  meta.codebook_pages = bs->codebook_pages;
  meta.fanout = bs->fanout;
  meta.partition_start = bs->partition_start;
  meta.partition_pages = bs->partition_pages;
  meta.partition_bytes = bs->partition_start != InvalidBlockNumber ? bs->partition_bytes : 0;
  std::memcpy(meta.variant_words, bs->variant_words, sizeof(meta.variant_words));
  ScannListEntry* entries = static_cast<ScannListEntry*>(
      MemoryContextAllocHuge(CurrentMemoryContext, sizeof(ScannListEntry) * meta.lists));
  for (uint32 i = 0; i < meta.lists; i++)
    entries[i] = {InvalidBlockNumber, InvalidBlockNumber, InvalidBlockNumber};
  // The directory is written empty first so that it precedes the list pages, then filled.
  meta.directory_start = WriteStream(bs->index, bs->fork, entries,
                                     sizeof(ScannListEntry) * meta.lists, &meta.directory_pages);
  if (bs->sort) WriteLists(bs, meta, entries);
  WriteDirectory(bs->index, bs->fork, meta, entries);
  return meta;
}

// Measures recall at a ladder of the query knob on the finished index (the pages are
// complete) and records it in the metapage, which the build's newpage range then logs.
void Calibrate(BuildState* bs) {
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kPhaseCalibrate);
  const TimestampTz start = GetCurrentTimestamp();
  ScannCalibration c = MeasureCalibration(bs->index, bs->cal_queries, bs->cal_n, *bs->truth);
  c.rows = bs->indexed;
  Buffer buf = ReadBufferExtended(bs->index, bs->fork, kMetaBlock, RBM_NORMAL, nullptr);
  LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
  MetaPageData(BufferGetPage(buf))->calibration = c;
  MarkBufferDirty(buf);
  UnlockReleaseBuffer(buf);
  // The cached state read during the measurement predates it.
  bs->index->rd_amcache = nullptr;
  long secs;
  int usecs;
  TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
  StringInfoData ladder;
  initStringInfo(&ladder);
  for (int i = 0; i < c.points; i++)
    appendStringInfo(&ladder, "%s%u: %.3f", i ? ", " : "", c.knob[i], c.recall[i]);
  ereport(DEBUG1, (errmsg_internal("scann index \"%s\" measured recall at %d knob values with %d "
                                   "queries in %.3f s",
                                   RelationGetRelationName(bs->index), int(c.points), bs->cal_n,
                                   secs + usecs / 1e6),
                   errdetail_internal("%s", ladder.data)));
}

void WriteMetaPage(Relation index, ForkNumber fork, const ScannMetaPage& meta) {
  Buffer buf = ReadBufferExtended(index, fork, kMetaBlock, RBM_NORMAL, nullptr);
  LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
  Page page = BufferGetPage(buf);
  // The whole page anew: the reserved page may have been evicted during the build and read
  // back as zeros, and a header left zero makes the page "invalid" on its next read.
  InitPage(page, PageType::kMeta);
  *MetaPageData(page) = meta;
  ((PageHeader)page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + sizeof(ScannMetaPage);
  MarkBufferDirty(buf);
  UnlockReleaseBuffer(buf);
}

void InitBuildState(BuildState* bs, Relation heap, Relation index, IndexInfo* info,
                    ForkNumber fork) {
  std::memset(bs, 0, sizeof(*bs));
  bs->heap = heap;
  bs->index = index;
  bs->index_info = info;
  bs->fork = fork;
  bs->metric = IndexMetric(index);
  bs->opts.variant = IndexVariant(index);
  bs->partitioner = VariantOf(bs->opts.variant).partitioner;
  bs->fanout = 1;
  bs->worker = -1;
  bs->partition_start = InvalidBlockNumber;
  bs->sq8_start = InvalidBlockNumber;
  bs->row_cxt =
      AllocSetContextCreate(CurrentMemoryContext, "scann build row", ALLOCSET_DEFAULT_SIZES);
  bs->report_progress = true;
}

// The truth pass's chunk of rows, offered to the calibration's neighbours.
void FlushTruthChunk(BuildState* bs) {
  if (bs->chunk_rows == 0) return;
  CppGuard([&] { bs->truth->Add(bs->chunk, bs->chunk_ids, bs->chunk_rows); });
  bs->chunk_rows = 0;
  CHECK_FOR_INTERRUPTS();
}

void TruthCallback(Relation index, ItemPointer tid, Datum* values, bool* isnull, bool alive,
                   void* arg) {
  BuildState* bs = static_cast<BuildState*>(arg);
  if (isnull[0]) return;
  MemoryContext old = MemoryContextSwitchTo(bs->row_cxt);
  if (ReadIndexVector(values[0], bs->metric, bs->dims, index, tid,
                      bs->chunk + size_t(bs->chunk_rows) * bs->dims, nullptr))
    bs->chunk_ids[bs->chunk_rows++] = TidToId(tid);
  MemoryContextSwitchTo(old);
  MemoryContextReset(bs->row_cxt);
  if (bs->chunk_rows == bs->chunk_cap) FlushTruthChunk(bs);
}

// The calibration queries' exact neighbours for a variant that reads the rows itself (the
// list-based variants gather them while encoding): one more pass over the table, in chunks.
void GatherTruth(BuildState* bs) {
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kPhaseCalibrate);
  bs->chunk_cap = uint32(std::max<size_t>(
      1, std::min<size_t>(kChunkRows, kChunkBytes / (sizeof(float) * size_t(bs->dims)))));
  bs->chunk = static_cast<float*>(palloc(sizeof(float) * size_t(bs->chunk_cap) * bs->dims));
  bs->chunk_ids = static_cast<uint64*>(palloc(sizeof(uint64) * bs->chunk_cap));
  bs->chunk_rows = 0;
  bs->truth =
      NewInContext<NeighborTruth>(CurrentMemoryContext, bs->cal_queries, bs->cal_ids, bs->cal_n,
                                  bs->dims, bs->metric == Metric::kInnerProduct, kCalibrationK);
  table_index_build_scan(bs->heap, bs->index, bs->index_info, true, false, TruthCallback, bs,
                         nullptr);
  FlushTruthChunk(bs);
}

// The rest of the build of a variant that is not list-based: its own pages after the streams.
void BuildVariant(BuildState* bs, const VariantOps& ops, ScannMetaPage* meta) {
  VariantBuild build = {};
  build.heap = bs->heap;
  build.index = bs->index;
  build.index_info = bs->index_info;
  build.fork = bs->fork;
  build.metric = bs->metric;
  build.dims = bs->dims;
  build.rows = bs->rows;
  build.trained = bs->trained;
  build.opts = &bs->opts;
  build.pq = bs->trained ? bs->pq : nullptr;
  build.sq = bs->trained ? bs->sq : nullptr;
  build.centroid = bs->trained ? bs->centroids : nullptr;
  build.sample = bs->sample;
  build.sample_rows = bs->trained ? bs->sample_kept : 0;
  ops.build(&build, meta);
  bs->sample = nullptr;  // the variant's to free, and freed
  bs->indexed = build.indexed;
  if (bs->heap && bs->trained && bs->cal_n > 0) GatherTruth(bs);
}

void BuildIndex(BuildState* bs) {
  // Block 0 first, filled in last (an initialized page meanwhile, should it be evicted).
  Buffer meta_buf = NewPage(bs->index, bs->fork, PageType::kMeta);
  MarkBufferDirty(meta_buf);
  UnlockReleaseBuffer(meta_buf);
  if (bs->heap) {
    CountRows(bs);
    if (bs->rows > 0) {
      bs->opts = ResolveBuildOptions(bs->index, bs->metric, bs->rows, bs->dims);
      SampleRows(bs);
    }
  }
  bs->trained = bs->sample_rows >= kMinTrainingRows;
  if (bs->trained) {
    PickCalibrationQueries(bs);
    Train(bs);
    bs->code_bytes = bs->pq->num_subspaces();
  } else {
    bs->opts.lists = 1;
    bs->opts.dims_per_subspace =
        bs->dims > 0 ? std::min<uint32>(std::max<uint32>(bs->opts.dims_per_subspace, 1), bs->dims)
                     : 2;
    bs->code_bytes = 0;
  }
  WriteModel(bs);
  const VariantOps& ops = VariantOf(bs->opts.variant);
  if (bs->heap && bs->rows > 0 && ops.build == nullptr) EncodeRows(bs);
  ScannMetaPage meta = WriteIndex(bs);
  if (ops.build) BuildVariant(bs, ops, &meta);
  EndParallel(bs);  // after the merge has been read back
  WriteMetaPage(bs->index, bs->fork, meta);
  if (bs->truth) Calibrate(bs);
  if (bs->fork == INIT_FORKNUM || RelationNeedsWAL(bs->index))
    log_newpage_range(bs->index, bs->fork, 0, RelationGetNumberOfBlocksInFork(bs->index, bs->fork),
                      true);
  if (bs->heap && !bs->trained)
    ereport(NOTICE,
            (errmsg("scann index \"%s\" was built on %.0f rows, too few to train its quantizers",
                    RelationGetRelationName(bs->index), bs->rows),
             errdetail("Until it is rebuilt, every scan of it re-ranks all its rows exactly."),
             errhint("REINDEX the index after loading data to make it fast.")));
}

}  // namespace

IndexBuildResult* Build(Relation heap, Relation index, IndexInfo* index_info) {
  if (RelationGetNumberOfBlocks(index) != 0)
    elog(ERROR, "index \"%s\" already contains data", RelationGetRelationName(index));
  MemoryContext build_cxt =
      AllocSetContextCreate(CurrentMemoryContext, "scann build", ALLOCSET_DEFAULT_SIZES);
  MemoryContext old = MemoryContextSwitchTo(build_cxt);
  BuildState bs;
  InitBuildState(&bs, heap, index, index_info, MAIN_FORKNUM);
  BuildIndex(&bs);
  IndexBuildResult* result =
      static_cast<IndexBuildResult*>(MemoryContextAlloc(old, sizeof(IndexBuildResult)));
  result->heap_tuples = bs.rows;
  result->index_tuples = bs.indexed;
  MemoryContextSwitchTo(old);
  MemoryContextDelete(build_cxt);
  return result;
}

void BuildEmpty(Relation index) {
  MemoryContext build_cxt =
      AllocSetContextCreate(CurrentMemoryContext, "scann build", ALLOCSET_DEFAULT_SIZES);
  MemoryContext old = MemoryContextSwitchTo(build_cxt);
  BuildState bs;
  InitBuildState(&bs, nullptr, index, nullptr, INIT_FORKNUM);
  BuildIndex(&bs);
  MemoryContextSwitchTo(old);
  MemoryContextDelete(build_cxt);
}

char* BuildPhaseName(int64 phase) {
  switch (phase) {
    case PROGRESS_CREATEIDX_SUBPHASE_INITIALIZE:
      return const_cast<char*>("initializing");
    case kPhaseCount:
      return const_cast<char*>("counting rows");
    case kPhaseSample:
      return const_cast<char*>("sampling rows");
    case kPhaseTrain:
      return const_cast<char*>("training centroids and codebooks");
    case kPhaseEncode:
      return const_cast<char*>("assigning and encoding rows");
    case kPhaseSort:
      return const_cast<char*>("sorting rows by list");
    case kPhaseWrite:
      return const_cast<char*>("writing lists");
    case kPhaseCalibrate:
      return const_cast<char*>("measuring recall");
    default:
      return VamanaBuildPhaseName(phase);
  }
}

}  // namespace scann::pg

// A parallel worker of CREATE INDEX: encodes its share of the heap with the leader's
// centroids and codebooks into its run of the shared sort.
void scann_parallel_build_main(dsm_segment* seg, shm_toc* toc) {
  using namespace scann::pg;
  ParallelShared* shared = static_cast<ParallelShared*>(shm_toc_lookup(toc, kKeyShared, false));
  debug_query_string = static_cast<char*>(shm_toc_lookup(toc, kKeyQueryText, true));
  pgstat_report_activity(STATE_RUNNING, debug_query_string);
  // The leader's locks, as btree's workers take them (the lock group makes them compatible).
  LOCKMODE heap_lock = shared->concurrent ? ShareUpdateExclusiveLock : ShareLock;
  LOCKMODE index_lock = shared->concurrent ? RowExclusiveLock : AccessExclusiveLock;
  Relation heap = table_open(shared->heap_relid, heap_lock);
  Relation index = index_open(shared->index_relid, index_lock);
  IndexInfo* info = BuildIndexInfo(index);
  info->ii_Concurrent = shared->concurrent;
  Sharedsort* sharedsort = static_cast<Sharedsort*>(shm_toc_lookup(toc, kKeySort, false));
  tuplesort_attach_shared(sharedsort, seg);
  InstrStartParallelQuery();

  BuildState bs;
  InitBuildState(&bs, heap, index, info, MAIN_FORKNUM);
  bs.report_progress = false;
  bs.shared = shared;
  bs.sharedsort = sharedsort;
  bs.dims = shared->dims;
  bs.trained = true;
  bs.opts.lists = shared->lists;
  const size_t centroid_bytes = sizeof(float) * size_t(shared->lists) * shared->dims;
  bs.centroids = static_cast<float*>(MemoryContextAllocHuge(CurrentMemoryContext, centroid_bytes));
  ReadStream(index, shared->centroid_start, bs.centroids, centroid_bytes);
  bs.partitioner = VariantOf(Variant(shared->variant)).partitioner;
  bs.fanout = shared->fanout;
  if (shared->partition_start != InvalidBlockNumber) {
    bs.partition =
        static_cast<char*>(MemoryContextAllocHuge(CurrentMemoryContext, shared->partition_bytes));
    bs.partition_bytes = shared->partition_bytes;
    ReadStream(index, shared->partition_start, bs.partition, bs.partition_bytes);
  }
  float* codebooks = static_cast<float*>(palloc(sizeof(float) * shared->codebook_floats));
  ReadStream(index, shared->codebook_start, codebooks, sizeof(float) * shared->codebook_floats);
  bs.pq = NewInContext<scann::ProductQuantizer>(
      CurrentMemoryContext, shared->dims,
      EncodingOptions(shared->dims_per_subspace, shared->anisotropic_threshold), codebooks);
  bs.code_bytes = bs.pq->num_subspaces();
  if (shared->sq8_start != InvalidBlockNumber) {
    float* params = static_cast<float*>(palloc(sizeof(float) * 2 * size_t(shared->dims)));
    ReadStream(index, shared->sq8_start, params, sizeof(float) * 2 * size_t(shared->dims));
    bs.sq = NewInContext<scann::ScalarQuantizer>(CurrentMemoryContext, shared->dims, params);
    bs.record_bytes = RecordBytes(uint32(shared->dims));
  }
  bs.worker = ParallelWorkerNumber;
  bs.cal_shared = static_cast<CalibrationShared*>(shm_toc_lookup(toc, kKeyCalibration, true));
  if (bs.cal_shared) {
    bs.cal_n = bs.cal_shared->nq;
    bs.cal_queries = CalibrationQueriesOf(bs.cal_shared);
    bs.cal_ids = CalibrationIdsOf(bs.cal_shared, shared->dims);
  }
  BeginEncoding(&bs);
  EncodeShare(&bs, shared->sort_mem, false);

  BufferUsage* buffer_usage =
      static_cast<BufferUsage*>(shm_toc_lookup(toc, kKeyBufferUsage, false));
  WalUsage* wal_usage = static_cast<WalUsage*>(shm_toc_lookup(toc, kKeyWalUsage, false));
  InstrEndParallelQuery(&buffer_usage[ParallelWorkerNumber], &wal_usage[ParallelWorkerNumber]);
  index_close(index, index_lock);
  table_close(heap, heap_lock);
}
