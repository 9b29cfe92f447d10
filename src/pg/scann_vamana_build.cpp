// CREATE INDEX of the vamana variant, after the shared steps (count, sample, product quantizer
// and scalar quantizer trained, streams written): load every row (its vector, 4-bit code and
// TID) into a temporary file -> build the graph on the full-precision vectors (DiskANN's
// passes, a batch of rows at a time: core/vamana.h BatchedBuild), in parallel workers when
// PostgreSQL grants them -> link the nodes no path reaches (RepairReachability) -> write the
// node pages in row order.
//
// Memory.  The graph is built in memory when the rows' vectors, the graph's lists and the codes
// fit in maintenance_work_mem.  Past that, DiskANN's build for data larger than memory: k-means
// shards (trained on the sample) with each row in its two nearest, a graph per shard built in
// memory, the shards' lists merged per row and pruned back to R (scann_vamana_shards.cpp).
//
// Parallel workers.  A build in memory keeps the vectors and the graph in dynamic shared memory
// and every participant runs each batch's two steps on its share (SearchBatch, then LinkBatch,
// a barrier after each): they touch disjoint parts of the graph, so no locks are needed, and
// the graph, hence every page, is the same whatever the number of participants.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "pg/scann_list.h"
#include "pg/scann_vamana.h"
#include "pg/scann_vamana_build.h"
#include "pg/scann_vector.h"

extern "C" {
#include "access/parallel.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "commands/progress.h"
#include "miscadmin.h"
#include "optimizer/optimizer.h"
#include "pgstat.h"
#include "storage/barrier.h"
#include "storage/buffile.h"
#include "storage/condition_variable.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/backend_progress.h"
#include "utils/wait_event.h"

PGDLLEXPORT void scann_vamana_build_main(dsm_segment* seg, shm_toc* toc);
}

namespace scann::pg {

namespace {

constexpr uint64 kKeyGraph = UINT64CONST(0x5CA0000000000101);
constexpr uint64 kKeyQueryText = UINT64CONST(0x5CA0000000000102);

// ---- The rows file -----------------------------------------------------------------------

struct LoadState {
  VariantBuild* vb;
  RowsFile* rows;
  uint8_t* record;
  float* residual;
  MemoryContext row_cxt;
};

// One row into the rows file: its vector (as the codes see it), its code and its TID.
void LoadCallback(Relation index, ItemPointer tid, Datum* values, bool* isnull, bool alive,
                  void* arg) {
  LoadState* ls = static_cast<LoadState*>(arg);
  if (isnull[0]) return;
  VariantBuild* vb = ls->vb;
  RowsFile* rows = ls->rows;
  MemoryContext old = MemoryContextSwitchTo(ls->row_cxt);
  float* vec = reinterpret_cast<float*>(ls->record);
  if (ReadIndexVector(values[0], vb->metric, vb->dims, index, tid, vec, nullptr)) {
    uint8_t* code = ls->record + rows->code_offset;
    if (vb->trained) EncodeInList(vb->pq, vb->centroid, vb->dims, 0, vec, ls->residual, code);
    std::memcpy(ls->record + rows->tid_offset, tid, sizeof(ItemPointerData));
    BufFileWrite(rows->file, ls->record, rows->record_bytes);
    if (++rows->rows % 1024 == 0)
      pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, int64(rows->rows));
  }
  MemoryContextSwitchTo(old);
  MemoryContextReset(ls->row_cxt);
}

}  // namespace

void RowsFileInit(RowsFile* rows, int dims, uint32 subspaces) {
  rows->dims = dims;
  rows->subspaces = subspaces;
  rows->code_offset = sizeof(float) * size_t(dims);
  rows->tid_offset = rows->code_offset + subspaces;
  rows->record_bytes = rows->tid_offset + sizeof(ItemPointerData);
  rows->rows = 0;
  rows->file = BufFileCreateTemp(false);
}

void RowsFileRead(RowsFile* rows, uint32 row, uint8_t* record) {
  const off_t at = off_t(row) * off_t(rows->record_bytes);
  if (BufFileSeekBlock(rows->file, long(at / BLCKSZ)) != 0 ||
      BufFileSeek(rows->file, 0, at % BLCKSZ, SEEK_CUR) != 0 ||
      BufFileRead(rows->file, record, rows->record_bytes) != rows->record_bytes)
    ereport(ERROR, (errcode_for_file_access(), errmsg("could not read vamana build rows file")));
}

void RowsFileReadNext(RowsFile* rows, uint8_t* record) {
  if (BufFileRead(rows->file, record, rows->record_bytes) != rows->record_bytes)
    ereport(ERROR, (errcode_for_file_access(), errmsg("could not read vamana build rows file")));
}

void RowsFileRewind(RowsFile* rows) {
  if (BufFileSeek(rows->file, 0, 0, SEEK_SET) != 0)
    ereport(ERROR, (errcode_for_file_access(), errmsg("could not seek vamana build rows file")));
}

namespace {

// Pass over the table: every row with a value into the rows file, in the table's order (the
// order of the node ids, so the same rows give the same index).
void LoadRows(VariantBuild* vb, RowsFile* rows) {
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kVamanaPhaseLoad);
  pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, int64(vb->rows));
  LoadState ls;
  ls.vb = vb;
  ls.rows = rows;
  ls.record = static_cast<uint8_t*>(palloc0(rows->record_bytes));
  ls.residual = static_cast<float*>(palloc(sizeof(float) * Max(vb->dims, 1)));
  ls.row_cxt =
      AllocSetContextCreate(CurrentMemoryContext, "scann vamana row", ALLOCSET_DEFAULT_SIZES);
  table_index_build_scan(vb->heap, vb->index, vb->index_info, true, true, LoadCallback, &ls,
                         nullptr);
  pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, int64(rows->rows));
  MemoryContextDelete(ls.row_cxt);
}

// ---- The graph in (shared) memory --------------------------------------------------------

// The state of a graph build, followed by its arrays: in dynamic shared memory when workers
// help, else in the leader's memory.
struct GraphShared {
  uint32 n;
  int dims;
  uint16 metric;  // VamanaMetric
  uint32 degree;
  uint32 build_list;
  float alpha;
  uint32 passes;
  uint64 seed;
  uint32 entry;
  int parts;
  bool leader_participates;
  // The start gate: workers attach to the barrier, then wait for `go`, so that every
  // participant has attached before the first one arrives.
  slock_t mutex;
  int attached;
  bool go;
  ConditionVariable gate_cv;
  Barrier barrier;
  pg_atomic_uint64 done;  // rows searched (progress)
  // Byte offsets of the arrays from the start of this struct.
  size_t vectors_at;
  size_t degrees_at;
  size_t neighbors_at;
  size_t order_at;
  size_t out_at;
  size_t out_degrees_at;
};

template <typename T>
T* ArrayAt(GraphShared* s, size_t at) {
  return reinterpret_cast<T*>(reinterpret_cast<char*>(s) + at);
}

VamanaParams ParamsOf(const GraphShared* s) {
  VamanaParams p;
  p.graph_degree = int(s->degree);
  p.build_list = int(s->build_list);
  p.alpha = s->alpha;
  p.passes = int(s->passes);
  p.metric = VamanaMetric(s->metric);
  p.seed = s->seed;
  p.check_interrupts = CheckInterrupts;
  return p;
}

// Lays out the arrays after the header; returns the total bytes.
size_t LayOut(GraphShared* s, const BatchedBuild& plan) {
  size_t at = MAXALIGN(sizeof(GraphShared));
  auto take = [&](size_t bytes) {
    const size_t here = at;
    at += MAXALIGN(bytes);
    return here;
  };
  s->vectors_at = take(sizeof(float) * size_t(s->n) * s->dims);
  s->degrees_at = take(sizeof(uint32) * size_t(s->n));
  s->neighbors_at = take(sizeof(uint32) * size_t(s->n) * plan.slots);
  s->order_at = take(sizeof(uint32) * size_t(s->n));
  s->out_at = take(sizeof(uint32) * plan.batch * s->degree);
  s->out_degrees_at = take(sizeof(uint32) * plan.batch);
  return at;
}

GraphArrays ArraysOf(GraphShared* s, const BatchedBuild& plan) {
  return GraphArrays{ArrayAt<uint32>(s, s->degrees_at), ArrayAt<uint32>(s, s->neighbors_at),
                     plan.slots, s->n};
}

// Waits at the barrier with the other participants (none in a serial build).
void Sync(GraphShared* s) {
  if (s->parts > 1)
    PgCall([&] { BarrierArriveAndWait(&s->barrier, WAIT_EVENT_PARALLEL_CREATE_INDEX_SCAN); });
}

// One participant's share of every batch of every pass, then of the final prune.
void RunGraphBuild(GraphShared* s, int part, bool report) {
  const VamanaParams params = ParamsOf(s);
  const BatchedBuild plan = PlanBatchedBuild(s->n, params);
  const GraphArrays graph = ArraysOf(s, plan);
  const float* vectors = ArrayAt<float>(s, s->vectors_at);
  const uint32* order = ArrayAt<uint32>(s, s->order_at);
  uint32* out = ArrayAt<uint32>(s, s->out_at);
  uint32* out_degrees = ArrayAt<uint32>(s, s->out_degrees_at);
  const size_t parts = size_t(s->parts);
  CppGuard([&] {
    VamanaScratch scratch(plan.slots, Max(s->n, 1u));
    for (size_t pass = 0; pass < plan.passes; pass++) {
      const float alpha = pass + 1 < plan.passes ? 1.0f : params.alpha;
      for (size_t b = 0; b < plan.batches_per_pass; b++) {
        const size_t count = std::min(plan.batch, size_t(s->n) - plan.First(b));
        const uint32* rows = order + plan.First(b);
        SearchBatch(graph, vectors, s->dims, s->entry, params, alpha, rows, count, size_t(part),
                    parts, out, out_degrees, &scratch);
        Sync(s);
        LinkBatch(graph, vectors, s->dims, params, alpha, rows, count, out, out_degrees,
                  size_t(part), parts, &scratch);
        Sync(s);
        if (report)
          pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE,
                                       int64(pass * s->n + plan.First(b) + count));
      }
    }
    FinishBatchedBuild(graph, vectors, s->dims, params, size_t(part), parts, &scratch);
  });
}

// Attaches to the barrier and waits until every participant has (see GraphShared).
void PassGate(GraphShared* s) {
  BarrierAttach(&s->barrier);
  SpinLockAcquire(&s->mutex);
  s->attached++;
  SpinLockRelease(&s->mutex);
  ConditionVariableBroadcast(&s->gate_cv);
  for (;;) {
    SpinLockAcquire(&s->mutex);
    const bool go = s->go;
    SpinLockRelease(&s->mutex);
    if (go) break;
    ConditionVariableSleep(&s->gate_cv, WAIT_EVENT_PARALLEL_CREATE_INDEX_SCAN);
  }
  ConditionVariableCancelSleep();
}

// The leader opens the gate once `expected` participants have attached.
void OpenGate(GraphShared* s, int expected) {
  for (;;) {
    SpinLockAcquire(&s->mutex);
    const bool all = s->attached >= expected;
    if (all) s->go = true;
    SpinLockRelease(&s->mutex);
    if (all) break;
    ConditionVariableSleep(&s->gate_cv, WAIT_EVENT_PARALLEL_CREATE_INDEX_SCAN);
  }
  ConditionVariableCancelSleep();
  ConditionVariableBroadcast(&s->gate_cv);
}

struct GraphBuild {
  GraphShared* shared;
  ParallelContext* pcxt;  // null: serial, the arrays in the leader's memory
  BatchedBuild plan;
};

void InitShared(GraphShared* s, uint32 n, const VariantBuild* vb, const VamanaParams& params,
                const BatchedBuild& plan) {
  s->n = n;
  s->dims = vb->dims;
  s->metric = uint16(params.metric);
  s->degree = uint32(params.graph_degree);
  s->build_list = uint32(params.build_list);
  s->alpha = params.alpha;
  s->passes = uint32(params.passes);
  s->seed = params.seed;
  s->entry = kNoEntry;
  s->parts = 1;
  s->leader_participates = true;
  SpinLockInit(&s->mutex);
  s->attached = 0;
  s->go = false;
  ConditionVariableInit(&s->gate_cv);
  BarrierInit(&s->barrier, 0);
  pg_atomic_init_u64(&s->done, 0);
  LayOut(s, plan);
}

// Shared memory and workers for the graph of n rows, when PostgreSQL grants workers and a
// segment; else the leader's memory.
GraphBuild BeginGraphBuild(const VariantBuild* vb, uint32 n, const VamanaParams& params) {
  GraphBuild gb = {nullptr, nullptr, PlanBatchedBuild(n, params)};
  GraphShared probe = {};
  probe.n = n;
  probe.dims = vb->dims;
  probe.degree = uint32(params.graph_degree);
  const size_t bytes = LayOut(&probe, gb.plan);
  const int request =
      vb->heap && vb->fork == MAIN_FORKNUM
          ? plan_create_index_workers(RelationGetRelid(vb->heap), RelationGetRelid(vb->index))
          : 0;
  if (request > 0 && n >= 2 * gb.plan.batch) {
    EnterParallelMode();
    ParallelContext* pcxt = CreateParallelContext("pg_scann", "scann_vamana_build_main", request);
    shm_toc_estimate_chunk(&pcxt->estimator, bytes);
    const size_t query_bytes = debug_query_string ? strlen(debug_query_string) + 1 : 0;
    if (query_bytes) shm_toc_estimate_chunk(&pcxt->estimator, query_bytes);
    shm_toc_estimate_keys(&pcxt->estimator, query_bytes ? 2 : 1);
    InitializeParallelDSM(pcxt);
    if (pcxt->seg != nullptr) {
      gb.pcxt = pcxt;
      gb.shared = static_cast<GraphShared*>(shm_toc_allocate(pcxt->toc, bytes));
      shm_toc_insert(pcxt->toc, kKeyGraph, gb.shared);
      if (query_bytes) {
        char* query = static_cast<char*>(shm_toc_allocate(pcxt->toc, query_bytes));
        std::memcpy(query, debug_query_string, query_bytes);
        shm_toc_insert(pcxt->toc, kKeyQueryText, query);
      }
    } else {
      DestroyParallelContext(pcxt);
      ExitParallelMode();
    }
  }
  if (gb.shared == nullptr)
    gb.shared = static_cast<GraphShared*>(MemoryContextAllocHuge(CurrentMemoryContext, bytes));
  InitShared(gb.shared, n, vb, params, gb.plan);
  return gb;
}

void EndGraphBuild(GraphBuild* gb) {
  if (gb->pcxt == nullptr) {
    pfree(gb->shared);
    return;
  }
  DestroyParallelContext(gb->pcxt);
  ExitParallelMode();
  gb->pcxt = nullptr;
}

// Launches the workers (the arrays are filled) and runs the leader's share; the graph is done
// when it returns.
void RunParticipants(GraphBuild* gb) {
  GraphShared* s = gb->shared;
  int launched = 0;
  if (gb->pcxt) {
    s->leader_participates = parallel_leader_participation;
    s->parts = gb->pcxt->nworkers + (s->leader_participates ? 1 : 0);
    LaunchParallelWorkers(gb->pcxt);
    launched = gb->pcxt->nworkers_launched;
    s->parts = launched + (s->leader_participates ? 1 : 0);
    if (launched == 0) {  // none to be had: the leader alone
      s->parts = 1;
      s->leader_participates = true;
    }
    ereport(
        DEBUG1,
        (errmsg_internal("scann index builds its vamana graph with %d parallel workers", launched),
         errdetail_internal("PostgreSQL's message \"building index ... serially\" above "
                            "refers to its own planning, which gives parallel workers to "
                            "btree builds only.")));
  }
  if (launched > 0) {
    WaitForParallelWorkersToAttach(gb->pcxt);
    if (s->leader_participates) BarrierAttach(&s->barrier);
    OpenGate(s, launched);
  }
  if (s->leader_participates) RunGraphBuild(s, 0, true);
  if (launched > 0) {
    if (s->leader_participates) BarrierDetach(&s->barrier);
    WaitForParallelWorkersToFinish(gb->pcxt);
  }
}

// Row i's node id when the node pages start at `first`.
inline uint32 NodeOfRow(const VamanaNodeLayout& l, BlockNumber first, uint32 row) {
  return VamanaNodeId(l, first + row / l.nodes_per_page, row % l.nodes_per_page);
}

}  // namespace

// ---- Writing the node pages --------------------------------------------------------------

void NodeWriterInit(NodeWriter* w, VariantBuild* vb, const VamanaNodeLayout& layout) {
  w->vb = vb;
  w->layout = layout;
  w->first = RelationGetNumberOfBlocksInFork(vb->index, vb->fork);
  w->buf = InvalidBuffer;
  w->written = 0;
  w->codes = static_cast<uint8_t*>(
      palloc0(size_t(Max(layout.degree_bound, 1u)) * Max(layout.subspaces, 1u)));
  w->ids = static_cast<uint32*>(palloc(sizeof(uint32) * Max(layout.degree_bound, 1u)));
}

uint32 NodeWriterFirstId(const NodeWriter* w) { return NodeOfRow(w->layout, w->first, 0); }

uint32 NodeWriterIdOf(const NodeWriter* w, uint32 row) {
  return NodeOfRow(w->layout, w->first, row);
}

void NodeWriterAdd(NodeWriter* w, const uint8_t* row_record, const RowsFile* rows,
                   const uint32* neighbor_rows, uint32 degree, const uint8_t* neighbor_codes) {
  const VamanaNodeLayout& l = w->layout;
  const uint32 slot = w->written % l.nodes_per_page;
  if (slot == 0) {
    const BlockNumber expected = w->first + w->written / l.nodes_per_page;
    CheckNodeBlock(w->vb->index, l, expected);
    w->buf = NewPage(w->vb->index, w->vb->fork, PageType::kVamanaNodes);
    if (BufferGetBlockNumber(w->buf) != expected)
      elog(ERROR, "scann vamana build: node page %u written at block %u", expected,
           BufferGetBlockNumber(w->buf));
    InitNodePage(BufferGetPage(w->buf), l, false);
  }
  uint8_t* node = VamanaNode(l, BufferGetPage(w->buf), slot);
  VamanaNodeHeader* h = VamanaHeader(node);
  std::memcpy(&h->tid, row_record + rows->tid_offset, sizeof(ItemPointerData));
  h->state = uint8(VamanaNodeState::kLive);
  for (uint32 i = 0; i < degree; i++) w->ids[i] = NodeOfRow(l, w->first, neighbor_rows[i]);
  if (l.subspaces > 0) {
    SetNodeList(l, node, w->ids, neighbor_codes, degree);
    PackOwnCode(row_record + rows->code_offset, l.subspaces, node + l.own_code_offset);
  }
  if (l.record_bytes > 0)
    EncodeRecord(w->vb->sq, reinterpret_cast<const float*>(row_record), node + l.record_offset);
  if (slot + 1 == l.nodes_per_page) NodeWriterFlush(w);
  if (++w->written % 1024 == 0) {
    pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, int64(w->written));
    CHECK_FOR_INTERRUPTS();
  }
}

void NodeWriterFlush(NodeWriter* w) {
  if (!BufferIsValid(w->buf)) return;
  MarkBufferDirty(w->buf);
  UnlockReleaseBuffer(w->buf);
  w->buf = InvalidBuffer;
}

namespace {

// Writes every row's node from an in-memory graph over rows 0 .. n-1 (lists of stride `slots`,
// at most R long) with the rows' codes in `codes` (n x m).
void WriteGraphNodes(VariantBuild* vb, RowsFile* rows, const VamanaNodeLayout& layout,
                     const uint32* degrees, const uint32* neighbors, size_t slots,
                     const uint8_t* codes, NodeWriter* w) {
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kVamanaPhaseWrite);
  pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, 0);
  const uint32 m = layout.subspaces;
  uint8_t* record = static_cast<uint8_t*>(palloc(rows->record_bytes));
  uint8_t* neighbor_codes =
      static_cast<uint8_t*>(palloc0(size_t(Max(layout.degree_bound, 1u)) * Max(m, 1u)));
  RowsFileRewind(rows);
  for (uint32 i = 0; i < rows->rows; i++) {
    RowsFileReadNext(rows, record);
    const uint32 degree = degrees ? degrees[i] : 0;
    const uint32* list = neighbors ? neighbors + size_t(i) * slots : nullptr;
    for (uint32 k = 0; k < degree; k++)
      std::memcpy(neighbor_codes + size_t(k) * m, codes + size_t(list[k]) * m, m);
    NodeWriterAdd(w, record, rows, list, degree, neighbor_codes);
  }
  NodeWriterFlush(w);
}

}  // namespace

void BuildGraph(VariantBuild* vb, const VamanaParams& params, uint32 n,
                void (*fill)(void* arg, float* vectors),
                void (*done)(void* arg, const GraphResult& graph), void* arg) {
  GraphBuild gb = BeginGraphBuild(vb, n, params);
  GraphShared* s = gb.shared;
  float* vectors = ArrayAt<float>(s, s->vectors_at);
  fill(arg, vectors);
  GraphArrays graph = ArraysOf(s, gb.plan);
  s->entry = CppGuard([&] {
    return StartBatchedBuild(vectors, n, vb->dims, ParamsOf(s), gb.plan, &graph,
                             ArrayAt<uint32>(s, s->order_at));
  });
  RunParticipants(&gb);
  CppGuard([&] {
    VamanaScratch scratch(gb.plan.slots, Max(n, 1u));
    RepairReachability(graph, vectors, vb->dims, s->entry, ParamsOf(s), kRepairRounds, &scratch);
  });
  done(arg, GraphResult{graph.degrees, graph.neighbors, graph.stride, s->entry});
  EndGraphBuild(&gb);
}

namespace {

// The in-memory build's rows: vectors into the graph's arrays, codes kept for the nodes.
struct InMemoryRows {
  VariantBuild* vb;
  RowsFile* rows;
  const VamanaNodeLayout* layout;
  NodeWriter* writer;
  uint8_t* codes;
  uint32 entry_row;
};

void FillInMemory(void* arg, float* vectors) {
  InMemoryRows* im = static_cast<InMemoryRows*>(arg);
  RowsFile* rows = im->rows;
  const uint32 m = im->layout->subspaces;
  uint8_t* record = static_cast<uint8_t*>(palloc(rows->record_bytes));
  RowsFileRewind(rows);
  for (uint32 i = 0; i < rows->rows; i++) {
    RowsFileReadNext(rows, record);
    std::memcpy(vectors + size_t(i) * rows->dims, record, sizeof(float) * rows->dims);
    std::memcpy(im->codes + size_t(i) * m, record + rows->code_offset, m);
  }
  pfree(record);
}

void WriteInMemory(void* arg, const GraphResult& graph) {
  InMemoryRows* im = static_cast<InMemoryRows*>(arg);
  im->entry_row = graph.entry;
  WriteGraphNodes(im->vb, im->rows, *im->layout, graph.degrees, graph.neighbors, graph.stride,
                  im->codes, im->writer);
}

// The graph of every row, built in memory (by the leader and any workers), then the nodes.
void BuildInMemory(VariantBuild* vb, RowsFile* rows, const VamanaParams& params,
                   const VamanaNodeLayout& layout, NodeWriter* w, uint32* entry_row) {
  pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, kVamanaPhaseGraph);
  pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, int64(rows->rows) * params.passes);
  pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, 0);
  InMemoryRows im = {vb, rows, &layout, w, nullptr, kNoEntry};
  im.codes = static_cast<uint8_t*>(MemoryContextAllocHuge(
      CurrentMemoryContext, Max(size_t(rows->rows) * layout.subspaces, size_t(1))));
  BuildGraph(vb, params, rows->rows, FillInMemory, WriteInMemory, &im);
  *entry_row = im.entry_row;
}

// The nodes of an index too small to train: TIDs only, no graph; scans re-rank every row.
void WriteUntrainedNodes(VariantBuild* vb, RowsFile* rows, const VamanaNodeLayout& layout,
                         NodeWriter* w) {
  WriteGraphNodes(vb, rows, layout, nullptr, nullptr, 0, nullptr, w);
}

}  // namespace

void FreeSample(VariantBuild* vb) {
  if (vb->sample) pfree(vb->sample);
  vb->sample = nullptr;
}

double InMemoryBytes(double n, int dims, uint32 m, const VamanaParams& params) {
  // The batch's out-lists at their largest, whatever n.
  const BatchedBuild plan = PlanBatchedBuild(size_t(1) << 30, params);
  return n * (sizeof(float) * dims + sizeof(uint32) * (plan.slots + 2) + m) +
         double(plan.batch) * (params.graph_degree + 1) * sizeof(uint32) + 3 * n * sizeof(uint32);
}

void VamanaBuild(VariantBuild* vb, ScannMetaPage* meta) {
  BuildOptions opts = *vb->opts;
  if (opts.graph_degree == 0) ResolveVamanaOptions(vb->index, &opts);  // built on no rows
  const VamanaNodeLayout layout =
      MakeVamanaLayout(opts.graph_degree, meta->subspaces, meta->record_bytes);
  if (layout.nodes_per_page == 0)
    ereport(ERROR,
            (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
             errmsg("scann vamana node of %u bytes does not fit in a page", layout.node_bytes),
             errdetail("A node keeps %u neighbour ids, their codes (%u subspaces) and %s.",
                       layout.degree_bound, layout.subspaces,
                       layout.record_bytes ? "its re-ranking record" : "its own code"),
             errhint("Raise dims_per_subspace, lower graph_degree, or use rerank = 'heap'.")));
  VamanaParams params;
  params.graph_degree = int(opts.graph_degree);
  params.build_list = int(opts.build_list);
  params.alpha = opts.alpha;
  params.metric = CoreMetric(vb->metric);
  params.check_interrupts = CheckInterrupts;
  NodeWriter writer;
  NodeWriterInit(&writer, vb, layout);
  uint32 entry_row = kNoEntry;
  uint32 shards = 1;
  vb->indexed = 0;
  if (vb->heap && vb->rows > 0) {
    RowsFile rows;
    RowsFileInit(&rows, vb->dims, layout.subspaces);
    LoadRows(vb, &rows);
    vb->indexed = rows.rows;
    const bool fits = InMemoryBytes(rows.rows, vb->dims, layout.subspaces, params) <=
                      double(maintenance_work_mem) * 1024.0;
    if (!vb->trained || fits) FreeSample(vb);
    if (!vb->trained)
      WriteUntrainedNodes(vb, &rows, layout, &writer);
    else if (fits)
      BuildInMemory(vb, &rows, params, layout, &writer, &entry_row);
    else
      shards = BuildInShards(vb, &rows, params, layout, &writer, &entry_row);
    BufFileClose(rows.file);
  }
  uint32* w = meta->variant_words;
  w[kVamanaGraphDegree] = opts.graph_degree;
  w[kVamanaBuildList] = opts.build_list;
  std::memcpy(&w[kVamanaAlphaBits], &opts.alpha, sizeof(float));
  w[kVamanaPasses] = uint32(params.passes);
  w[kVamanaNodeBytes] = layout.node_bytes;
  w[kVamanaNodesPerPage] = layout.nodes_per_page;
  w[kVamanaFirstNodeBlock] = writer.first;
  w[kVamanaEntryPoint] =
      entry_row == kNoEntry ? kNoEntry : NodeOfRow(layout, writer.first, entry_row);
  w[kVamanaInsertHint] = writer.written > 0
                             ? writer.first + (writer.written - 1) / layout.nodes_per_page
                             : writer.first;
  w[kVamanaShards] = shards;
  meta->build_rows = vb->indexed;
}

char* VamanaBuildPhaseName(int64 phase) {
  switch (phase) {
    case kVamanaPhaseLoad:
      return const_cast<char*>("loading and encoding rows");
    case kVamanaPhaseShard:
      return const_cast<char*>("assigning rows to shards");
    case kVamanaPhaseGraph:
      return const_cast<char*>("building graph");
    case kVamanaPhaseMerge:
      return const_cast<char*>("merging shard graphs");
    case kVamanaPhaseWrite:
      return const_cast<char*>("writing graph nodes");
    default:
      return nullptr;
  }
}

}  // namespace scann::pg

// A parallel worker of a vamana build: its share of every batch of the graph build.
void scann_vamana_build_main(dsm_segment* seg, shm_toc* toc) {
  using namespace scann::pg;
  GraphShared* s = static_cast<GraphShared*>(shm_toc_lookup(toc, kKeyGraph, false));
  debug_query_string = static_cast<char*>(shm_toc_lookup(toc, kKeyQueryText, true));
  pgstat_report_activity(STATE_RUNNING, debug_query_string);
  PassGate(s);
  RunGraphBuild(s, ParallelWorkerNumber + (s->leader_participates ? 1 : 0), false);
  BarrierDetach(&s->barrier);
}
