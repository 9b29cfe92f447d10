#include "pg/scann_options.h"

#include "pg/scann_variant.h"

#include <cmath>
#include <cstring>

#include "pg/scann_vector.h"

extern "C" {
#include "access/genam.h"
#include "access/heaptoast.h"
#include "access/reloptions.h"
#include "access/xlog.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/rel.h"
}

namespace scann::pg {

int g_nprobe = -1;
double g_target_recall = kDefaultTargetRecall;
int g_reorder = 100;
int g_max_probes = -1;
int g_search_list = -1;

namespace {

// scann.inject_fault (see InjectFaultBeforeLink).
enum FaultSetting { kFaultNone, kFaultErrorBeforeLink, kFaultPanicBeforeLink };
int g_inject_fault = kFaultNone;

const struct config_enum_entry kFaultOptions[] = {
    {"none", kFaultNone, false},
    {"error_before_link", kFaultErrorBeforeLink, false},
    {"panic_before_link", kFaultPanicBeforeLink, false},
    {nullptr, 0, false}};

}  // namespace

void InjectFaultBeforeLink() {
  if (likely(g_inject_fault == kFaultNone)) return;
  if (g_inject_fault == kFaultPanicBeforeLink) {
    XLogFlush(XactLastRecEnd);  // this backend's records, as if the WAL writer had written them
    ereport(PANIC, (errmsg("scann.inject_fault: crash before linking a new block")));
  }
  ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
                  errmsg("scann.inject_fault: error before linking a new block")));
}

namespace {

relopt_kind g_relopt_kind;

constexpr int kMaxDimsPerSubspace = 64;
constexpr int kMaxSample = 10000000;
// Rows of training per list, and the floor of the default sample.
constexpr int kSamplePerList = 64;
constexpr int kMinDefaultSample = 10000;
constexpr int kMaxSearchList = 100000;
// vamana's option bounds: a node keeps at most kMaxGraphDegree neighbours (two FastScan blocks).
constexpr int kMinGraphDegree = 2;
constexpr int kMaxBuildList = 10000;
constexpr double kMaxAlpha = 4.0;

constexpr int kMaxTrees = 64;
constexpr int kMaxLeafSize = 1000000000;

void ValidateVariant(const char* value) {
  if (value == nullptr || std::strcmp(value, "ivf") == 0 || std::strcmp(value, "annoy") == 0 ||
      std::strcmp(value, "vamana") == 0)
    return;
  ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                  errmsg("invalid value for scann option \"variant\": \"%s\"", value),
                  errdetail("Expected \"ivf\", \"annoy\" or \"vamana\".")));
}

// The variant named by the options (the default, IVF, when they do not say).
const char* VariantName(const ScannRelOptions* rel) {
  return rel && rel->variant_offset ? reinterpret_cast<const char*>(rel) + rel->variant_offset
                                    : "ivf";
}

// An option set for a variant other than the index's: refused rather than ignored, so that a
// typo or a forgotten `variant` does not silently build another index than the one asked for.
void RefuseForeignOption(bool set, const char* option, const char* owner, const char* variant,
                         const char* hint) {
  if (!set) return;
  ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                  errmsg("scann option \"%s\" applies to variant \"%s\" only", option, owner),
                  errdetail("The index's variant is \"%s\".", variant), errhint("%s", hint)));
}

// Refuses the options of the variants the index is not.
void ValidateVariantOptions(const ScannRelOptions* rel) {
  const char* variant = VariantName(rel);
  const bool annoy = std::strcmp(variant, "annoy") == 0;
  const bool vamana = std::strcmp(variant, "vamana") == 0;
  if (annoy)
    RefuseForeignOption(rel->lists >= 0, "lists", "ivf", variant,
                        "An annoy index's lists are the leaves of its trees: set leaf_size "
                        "(table rows per leaf) instead.");
  if (vamana)
    RefuseForeignOption(rel->lists >= 0, "lists", "ivf", variant,
                        "A vamana index is a graph without lists: leave the option out.");
  if (!annoy) {
    const char* hint = "Add variant = 'annoy', or leave the option out.";
    RefuseForeignOption(rel->trees >= 0, "trees", "annoy", variant, hint);
    RefuseForeignOption(rel->leaf_size >= 0, "leaf_size", "annoy", variant, hint);
  }
  if (!vamana) {
    const char* hint = "Add variant = 'vamana', or leave the option out.";
    RefuseForeignOption(rel->graph_degree >= 0, "graph_degree", "vamana", variant, hint);
    RefuseForeignOption(rel->build_list >= 0, "build_list", "vamana", variant, hint);
    RefuseForeignOption(rel->alpha >= 0, "alpha", "vamana", variant, hint);
  }
}

void ValidateRerank(const char* value) {
  if (value == nullptr || std::strcmp(value, "sq8") == 0 || std::strcmp(value, "heap") == 0) return;
  ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                  errmsg("invalid value for scann option \"rerank\": \"%s\"", value),
                  errdetail("Expected \"sq8\" (8-bit codes in the index) or \"heap\" (the "
                            "table's rows).")));
}

// scann.nprobe = 0 means nothing; -1 asks the index's calibration.
bool CheckKnob(int* value, void** extra, GucSource source) {
  if (*value != 0) return true;
  GUC_check_errdetail(
      "Use a positive number of lists, or -1 to let each index choose it for "
      "scann.target_recall.");
  return false;
}

// scann.search_list = 0 means nothing; -1 asks the index's calibration.
bool CheckSearchList(int* value, void** extra, GucSource source) {
  if (*value != 0) return true;
  GUC_check_errdetail(
      "Use a positive list size, or -1 to let each index choose it for scann.target_recall.");
  return false;
}

void DefineGucs() {
  DefineCustomIntVariable(
      "scann.nprobe", "Number of lists (partitions) a scann scan searches.",
      "Higher values raise recall and cost time; -1 (the default) lets each index choose the "
      "fewest whose recall, measured at build, reaches scann.target_recall.",
      &g_nprobe, -1, -1, int(kMaxLists), PGC_USERSET, 0, CheckKnob, nullptr, nullptr);
  DefineCustomRealVariable(
      "scann.target_recall", "Recall@10 a scann scan aims at when its knob is not set.",
      "Each index picks the cheapest setting whose recall, measured on its own rows at build "
      "(or by scann_recalibrate), reaches this; an explicit scann.nprobe wins.",
      &g_target_recall, kDefaultTargetRecall, 0.01, 1.0, PGC_USERSET, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable(
      "scann.reorder", "Number of candidates a scann scan re-ranks with exact distances.",
      "0 returns rows in the approximate order of their codes, without re-ranking.", &g_reorder,
      100, 0, 1000000, PGC_USERSET, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable(
      "scann.max_probes",
      "Lists a scann scan may search in all when the executor keeps asking for rows.",
      "A WHERE clause that rejects rows, or a LIMIT above scann.reorder, makes the scan go "
      "on past scann.nprobe lists, up to this bound (never below scann.nprobe); -1 means all "
      "lists.",
      &g_max_probes, -1, -1, int(kMaxLists), PGC_USERSET, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable(
      "scann.search_list", "Candidate list size of a vamana index's beam search.",
      "Higher values raise recall and cost time; -1 (the default) lets each index choose the "
      "smallest whose recall, measured at build, reaches scann.target_recall.  When the "
      "executor keeps asking for rows the list grows beyond it.",
      &g_search_list, -1, -1, kMaxSearchList, PGC_USERSET, 0, CheckSearchList, nullptr, nullptr);
  DefineCustomEnumVariable(
      "scann.inject_fault", "Developer option: makes scann inserts fail at a chosen point.",
      "For tests only: error_before_link or panic_before_link fail an insert that adds "
      "pages to a list after writing them and before linking them.",
      &g_inject_fault, kFaultNone, kFaultOptions, PGC_SUSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
      nullptr, nullptr, nullptr);
  MarkGUCPrefixReserved("scann");
}

}  // namespace

void InitOptions() {
  g_relopt_kind = add_reloption_kind();
  // Options of one variant default to -1, outside their range, so that setting them for
  // another variant is seen and refused (ValidateVariantOptions).
  add_int_reloption(g_relopt_kind, "lists",
                    "Number of IVF lists (k-means partitions); 0 chooses about sqrt(rows)", -1, 0,
                    int(kMaxLists), AccessExclusiveLock);
  // Not set (-1): 2, and for vamana 4 below 256 dimensions and 8 from there on.
  add_int_reloption(g_relopt_kind, "dims_per_subspace",
                    "Dimensions encoded by each 4-bit product-quantization subspace", -1, 1,
                    kMaxDimsPerSubspace, AccessExclusiveLock);
  add_int_reloption(g_relopt_kind, "sample", "Rows sampled to train the quantizers; 0 chooses", 0,
                    0, kMaxSample, AccessExclusiveLock);
  add_real_reloption(g_relopt_kind, "anisotropic_threshold",
                     "ScaNN's score-aware threshold T for ip and cosine (0 disables)", 0.2, 0.0,
                     1000.0, AccessExclusiveLock);
  add_string_reloption(g_relopt_kind, "rerank",
                       "What re-ranks candidates: sq8 (8-bit codes in the index; the default for "
                       "rows stored out of line) or heap (the table's rows)",
                       nullptr, ValidateRerank, AccessExclusiveLock);
  add_string_reloption(g_relopt_kind, "variant", "Partitioner: ivf, annoy or vamana", "ivf",
                       ValidateVariant, AccessExclusiveLock);
  add_int_reloption(g_relopt_kind, "trees", "annoy: random-projection trees in the forest", -1, 1,
                    kMaxTrees, AccessExclusiveLock);
  add_int_reloption(g_relopt_kind, "leaf_size",
                    "annoy: table rows per leaf at most; 0 chooses about sqrt(rows) / 2", -1, 0,
                    kMaxLeafSize, AccessExclusiveLock);
  add_int_reloption(g_relopt_kind, "graph_degree",
                    "vamana: most out-neighbours a graph node keeps (R)", -1, kMinGraphDegree,
                    int(kMaxGraphDegree), AccessExclusiveLock);
  add_int_reloption(g_relopt_kind, "build_list",
                    "vamana: candidate list size of the build's searches (L)", -1, 1, kMaxBuildList,
                    AccessExclusiveLock);
  add_real_reloption(g_relopt_kind, "alpha", "vamana: RobustPrune's distance factor", -1, 1.0,
                     kMaxAlpha, AccessExclusiveLock);
  DefineGucs();
}

bytea* ParseRelOptions(Datum reloptions, bool validate) {
  static const relopt_parse_elt table[] = {
      {"lists", RELOPT_TYPE_INT, offsetof(ScannRelOptions, lists)},
      {"dims_per_subspace", RELOPT_TYPE_INT, offsetof(ScannRelOptions, dims_per_subspace)},
      {"sample", RELOPT_TYPE_INT, offsetof(ScannRelOptions, sample)},
      {"anisotropic_threshold", RELOPT_TYPE_REAL, offsetof(ScannRelOptions, anisotropic_threshold)},
      {"variant", RELOPT_TYPE_STRING, offsetof(ScannRelOptions, variant_offset)},
      {"rerank", RELOPT_TYPE_STRING, offsetof(ScannRelOptions, rerank_offset)},
      {"trees", RELOPT_TYPE_INT, offsetof(ScannRelOptions, trees)},
      {"leaf_size", RELOPT_TYPE_INT, offsetof(ScannRelOptions, leaf_size)},
      {"graph_degree", RELOPT_TYPE_INT, offsetof(ScannRelOptions, graph_degree)},
      {"build_list", RELOPT_TYPE_INT, offsetof(ScannRelOptions, build_list)},
      {"alpha", RELOPT_TYPE_REAL, offsetof(ScannRelOptions, alpha)},
  };
  bytea* options = static_cast<bytea*>(build_reloptions(
      reloptions, validate, g_relopt_kind, sizeof(ScannRelOptions), table, lengthof(table)));
  if (validate && options) ValidateVariantOptions(reinterpret_cast<ScannRelOptions*>(options));
  return options;
}

int QueryKnob(const ScannMetaPage& meta) {
  const QueryKnobSpec& knob = *VariantOf(meta).knob;
  if (*knob.setting > 0) return *knob.setting;
  const ScannCalibration& c = meta.calibration;
  if (c.points == 0) return knob.uncalibrated;
  for (int i = 0; i < c.points; i++) {
    if (c.recall[i] < g_target_recall) continue;
    if (i == 0) return int(c.knob[0]);
    // Between two measured values, along the chord: recall curves are concave, so the
    // recall there is at least the target.
    const double from = c.recall[i - 1], to = c.recall[i];
    const double at = c.knob[i - 1] + (g_target_recall - from) / Max(to - from, 1e-9) *
                                          (double(c.knob[i]) - c.knob[i - 1]);
    return Min(int(c.knob[i]), int(std::ceil(at)));
  }
  return int(c.knob[c.points - 1]);
}

Variant IndexVariant(Relation index) {
  const char* name = VariantName(reinterpret_cast<const ScannRelOptions*>(index->rd_options));
  if (std::strcmp(name, "annoy") == 0) return Variant::kAnnoy;
  if (std::strcmp(name, "vamana") == 0) return Variant::kVamana;
  return Variant::kIvf;
}

AnnoyShape ResolveAnnoyShape(Relation index, double rows) {
  const ScannRelOptions* rel = reinterpret_cast<const ScannRelOptions*>(index->rd_options);
  AnnoyShape shape;
  shape.trees = rel && rel->trees > 0 ? uint32(rel->trees) : kDefaultTrees;
  shape.leaf_size_requested = rel && rel->leaf_size > 0;
  shape.leaf_size = shape.leaf_size_requested
                        ? uint32(rel->leaf_size)
                        : uint32(Max(1L, std::lround(std::sqrt(Max(rows, 1.0)) / 2)));
  return shape;
}

// Whether a vector of `dims` floats alone passes the size at which PostgreSQL compresses a row
// or moves it out of line (TOAST): fetching such a row to re-rank it costs about 6 us (784-d
// Fashion-MNIST) against well under 1 us for an inline one, which re-ranking from records
// saves.  Measured per query (CPU time, nprobe 5 and 20, reorder 100): Fashion-MNIST 589 us
// from the heap, 311-389 us from records; GloVe-100 (inline rows) 160 us from the heap, 187
// from records.
bool RowsLeaveTheHeapTuple(int dims) {
  return sizeof(float) * size_t(dims) + ARR_OVERHEAD_NONULLS(1) > TOAST_TUPLE_THRESHOLD;
}

// Whether WITH (rerank = ...) was given.
bool RerankAsked(const ScannRelOptions* rel) { return rel && rel->rerank_offset; }

// Whether a vamana node of a graph of `degree` over rows of `dims` dimensions, coded with
// `dims_per_subspace`, fits in a page.
bool VamanaNodeFits(uint32 degree, uint32 dims, uint32 dims_per_subspace, Rerank rerank) {
  const uint32 subspaces = (dims + dims_per_subspace - 1) / dims_per_subspace;
  return MakeVamanaLayout(degree, subspaces, rerank == Rerank::kSq8 ? RecordBytes(dims) : 0)
             .nodes_per_page > 0;
}

Rerank ResolveRerank(Relation index, int dims) {
  const ScannRelOptions* rel = reinterpret_cast<const ScannRelOptions*>(index->rd_options);
  const char* asked =
      rel && rel->rerank_offset ? reinterpret_cast<const char*>(rel) + rel->rerank_offset : nullptr;
  if (asked && std::strcmp(asked, "heap") == 0) return Rerank::kHeap;
  if (dims <= int(kMaxRecordDims) && (asked || RowsLeaveTheHeapTuple(dims))) return Rerank::kSq8;
  if (asked)
    ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                    errmsg("scann rerank = 'sq8' supports at most %u dimensions, the rows have %d",
                           kMaxRecordDims, dims),
                    errhint("Use rerank = 'heap'.")));
  return Rerank::kHeap;  // narrow rows, or records too wide for a page: from the table
}

// The codes' default width: 2 dimensions a subspace for the list variants (README,
// "Tuning", has what coarser codes measured).  A vamana node keeps its neighbours' codes, one
// FastScan block per 32 of them: coarser codes than IVF's keep the index smaller than the
// rows' float vectors (README, "The vamana variant", has the measurements), and coarser still
// while a node would not fit a page.
uint32 DefaultDimsPerSubspace(const BuildOptions& out, int dims) {
  if (out.variant != Variant::kVamana) return 2;
  uint32 d = dims < 256 ? 4 : 8;
  while (d < uint32(dims) && !VamanaNodeFits(out.graph_degree, uint32(dims), d, out.rerank)) d *= 2;
  return d;
}

// A vamana index whose nodes would not fit in a page is refused before any training.
void CheckVamanaNodeFits(Relation index, const BuildOptions& out, uint32 dims) {
  if (VamanaNodeFits(out.graph_degree, dims, out.dims_per_subspace, out.rerank)) return;
  const uint32 subspaces = (dims + out.dims_per_subspace - 1) / out.dims_per_subspace;
  const VamanaNodeLayout l = MakeVamanaLayout(out.graph_degree, subspaces,
                                              out.rerank == Rerank::kSq8 ? RecordBytes(dims) : 0);
  ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                  errmsg("scann vamana node of %u bytes does not fit in a page of index \"%s\"",
                         l.node_bytes, RelationGetRelationName(index)),
                  errdetail("A node keeps %u neighbour ids and their codes (%u subspaces of %u "
                            "dimensions)%s.",
                            l.degree_bound, subspaces, out.dims_per_subspace,
                            l.record_bytes ? " and its re-ranking record" : ""),
                  errhint("Raise dims_per_subspace, lower graph_degree, or use rerank = 'heap'.")));
}

BuildOptions ResolveBuildOptions(Relation index, Metric metric, double rows, int dims) {
  const ScannRelOptions* rel = reinterpret_cast<const ScannRelOptions*>(index->rd_options);
  BuildOptions out;
  out.variant = IndexVariant(index);
  out.rerank = ResolveRerank(index, dims);
  // A vamana scan re-ranks its whole list, hundreds of rows: from records in the nodes rather
  // than the table (GloVe-100, 331,479 rows, recall@10 0.956: 2,337 us a query against 7,687
  // us from the table), whatever the width of the rows.
  if (out.variant == Variant::kVamana && !RerankAsked(rel) && dims <= int(kMaxRecordDims))
    out.rerank = Rerank::kSq8;
  ResolveVamanaOptions(index, &out);
  if (out.variant == Variant::kVamana && out.rerank == Rerank::kSq8 && !RerankAsked(rel) &&
      !VamanaNodeFits(out.graph_degree, uint32(dims), 1, Rerank::kSq8))
    out.rerank = Rerank::kHeap;  // no room for a record beside the node: re-rank from the table
  out.dims_per_subspace = rel && rel->dims_per_subspace > 0 ? uint32(rel->dims_per_subspace)
                                                            : DefaultDimsPerSubspace(out, dims);
  if (out.dims_per_subspace > static_cast<uint32>(dims)) out.dims_per_subspace = dims;
  if (out.variant == Variant::kVamana) CheckVamanaNodeFits(index, out, uint32(dims));
  out.anisotropic_threshold =
      metric == Metric::kL2 ? 0.0f : static_cast<float>(rel ? rel->anisotropic_threshold : 0.2);

  int lists = rel ? rel->lists : -1;
  out.lists_requested = lists > 0;
  if (out.variant == Variant::kAnnoy)  // the leaves of one tree, which the sample must train
    lists = static_cast<int>(Min(
        double(kMaxLists), std::ceil(Max(rows, 1.0) / ResolveAnnoyShape(index, rows).leaf_size)));
  else if (lists <= 0)
    lists = static_cast<int>(std::lround(std::sqrt(Max(rows, 1.0))));
  out.lists = Max(lists, 1);

  int sample = rel ? rel->sample : 0;
  if (sample == 0) sample = Max(kMinDefaultSample, kSamplePerList * lists);
  sample = int(Min(double(sample), Max(rows, 1.0)));
  // Training keeps the sample and its residuals in memory: stay within maintenance_work_mem,
  // but never below the rows it takes to train the quantizers at all.
  const int fewest = int(Min(double(kMinTrainingRows), rows));
  const double budget_rows = (double(maintenance_work_mem) * 1024.0) / (2.0 * sizeof(float) * dims);
  if (sample > budget_rows) {
    const int reduced = Max(int(budget_rows), fewest);
    if (reduced < sample)
      ereport(NOTICE,
              (errmsg("scann sample reduced from %d to %d rows to fit maintenance_work_mem", sample,
                      reduced),
               reduced > budget_rows
                   ? errdetail("%d rows are the fewest that train an index's quantizers.", reduced)
                   : 0,
               errhint("Raise maintenance_work_mem to train on more rows.")));
    sample = Min(sample, reduced);
  }
  if (sample < fewest) {
    ereport(NOTICE, (errmsg("scann sample raised from %d to %d rows, the fewest that train an "
                            "index's quantizers",
                            sample, fewest)));
    sample = fewest;
  }
  out.sample = sample;
  return out;
}

void ResolveVamanaOptions(Relation index, BuildOptions* out) {
  const ScannRelOptions* rel = reinterpret_cast<const ScannRelOptions*>(index->rd_options);
  out->graph_degree =
      rel && rel->graph_degree > 0 ? uint32(rel->graph_degree) : kDefaultGraphDegree;
  out->build_list = rel && rel->build_list > 0 ? uint32(rel->build_list) : kDefaultBuildList;
  out->alpha = rel && rel->alpha > 0 ? float(rel->alpha) : kDefaultAlpha;
}

bool MetricFromName(const char* name, Metric* metric) {
  if (std::strcmp(name, "l2") == 0)
    *metric = Metric::kL2;
  else if (std::strcmp(name, "ip") == 0)
    *metric = Metric::kInnerProduct;
  else if (std::strcmp(name, "cosine") == 0)
    *metric = Metric::kCosine;
  else
    return false;
  return true;
}

Metric IndexMetric(Relation index) {
  if (!OidIsValid(index_getprocid(index, 1, kMetricProc)))
    ereport(ERROR, (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
                    errmsg("scann operator class of index \"%s\" names no metric",
                           RelationGetRelationName(index)),
                    errdetail("Support function 1 must return 'l2', 'ip' or 'cosine'.")));
  FmgrInfo* proc = index_getprocinfo(index, 1, kMetricProc);
  const char* name = TextDatumGetCString(FunctionCall0Coll(proc, InvalidOid));
  Metric metric;
  if (!MetricFromName(name, &metric))
    ereport(ERROR, (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
                    errmsg("scann operator class of index \"%s\" names an unknown metric \"%s\"",
                           RelationGetRelationName(index), name),
                    errdetail("Support function 1 must return 'l2', 'ip' or 'cosine'.")));
  return metric;
}

}  // namespace scann::pg
