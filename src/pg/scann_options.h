// CREATE INDEX options (reloptions), the scan GUCs, and the values a build resolves from
// them (defaults that depend on the table and the metric).
#pragma once

#include "pg/scann_page.h"

extern "C" {
#include "utils/relcache.h"
}

namespace scann::pg {

// The reloptions varlena (WITH (...) of CREATE INDEX).
struct ScannRelOptions {
  int32 vl_len_;
  int lists;                     // 0: about sqrt(rows), chosen at build; -1: not set
  int dims_per_subspace;         // dimensions per 4-bit subspace
  int sample;                    // training rows; 0: chosen at build
  double anisotropic_threshold;  // ScaNN's T for ip/cosine; 0 disables
  int variant_offset;            // string option "variant"
  int rerank_offset;             // string option "rerank"; 0 when not set
  int trees;                     // annoy: trees in the forest; -1: not set
  int leaf_size;                 // annoy: table rows per leaf; 0: chosen at build; -1: not set
  // vamana's options; -1 when not set (dims_per_subspace too: its default depends on the
  // variant).
  int graph_degree;
  int build_list;
  double alpha;
};

// GUCs.
extern int g_nprobe;            // scann.nprobe: -1 = from the index's calibration
extern double g_target_recall;  // scann.target_recall
inline constexpr double kDefaultTargetRecall = 0.95;
// scann.nprobe when an index has no calibration (built untrained, or by an older release).
inline constexpr int kDefaultNprobe = 10;
extern int g_reorder;      // scann.reorder
extern int g_max_probes;   // scann.max_probes: -1 = all lists
extern int g_search_list;  // scann.search_list: vamana's beam; -1 = from the calibration

// Where the developer-only GUC scann.inject_fault makes an insert fail, for the tests of
// what a failure or crash there leaves behind (PostgreSQL 15 has no injection points):
// AppendBlock, after a block's new pages are written and before the record linking them.
// 'error_before_link' raises an ERROR; 'panic_before_link' flushes the WAL written so far
// and raises a PANIC (a crash).
void InjectFaultBeforeLink();

// Registers the reloption kind and the GUCs (from _PG_init).
void InitOptions();

// amoptions.
bytea* ParseRelOptions(Datum reloptions, bool validate);

// Fewer sampled rows than this leave the index untrained: it stores TIDs only and every
// scan re-ranks all of them exactly.
inline constexpr uint32 kMinTrainingRows = 100;
// Lists an index may have: IVF's `lists`, annoy's leaves of all its trees.
inline constexpr uint32 kMaxLists = 1000000;
// Training rows each k-means centroid needs at least: with fewer, lists are cut to fit (one
// row per centroid left Fashion-MNIST's recall@10 at 0.12 with 167 lists).
inline constexpr uint32 kMinRowsPerList = 32;

// The annoy variant's forest as its options ask for it over `rows` table rows: trees, and
// the table rows per leaf (leaf_size; by default sqrt(rows) / 2: smaller leaves find more
// neighbours per row scanned, but every probed leaf costs a lookup table and every leaf a
// centroid in each backend's cache; see README for the measurements).
inline constexpr int kDefaultTrees = 4;
struct AnnoyShape {
  uint32 trees;
  uint32 leaf_size;
  bool leaf_size_requested;  // set by the user (WITH (leaf_size = ...)), not chosen at build
};
AnnoyShape ResolveAnnoyShape(Relation index, double rows);

// The options of one build, after defaults and bounds.
struct BuildOptions {
  uint32 lists;          // IVF's lists; annoy: the leaves per tree that leaf_size asks for
  bool lists_requested;  // set by the user (WITH (lists = ...)), not chosen at build
  uint32 dims_per_subspace;
  uint32 sample;
  float anisotropic_threshold;
  Variant variant;
  Rerank rerank;
  // vamana (scann_vamana.h)
  uint32 graph_degree;
  uint32 build_list;
  float alpha;
};

// vamana's defaults (README: measured on GloVe-100 and Fashion-MNIST).
inline constexpr uint32 kDefaultGraphDegree = 32;
inline constexpr uint32 kDefaultBuildList = 50;
inline constexpr float kDefaultAlpha = 1.2f;
// scann.search_list when an index has no calibration.
inline constexpr int kDefaultSearchList = 100;

// The query knob a scan of an index uses: its variant's knob GUC (scann.nprobe, or
// scann.search_list for vamana) when set, else the smallest value whose calibrated recall
// reaches scann.target_recall (the largest measured when none does).
int QueryKnob(const ScannMetaPage& meta);

// The variant an index is built as (its `variant` option).
Variant IndexVariant(Relation index);

// What re-ranks an index's candidates: its `rerank` option, or by default sq8 for rows the
// table stores out of line (TOAST) and heap for narrower ones; sq8 needs a record to fit a
// page (an error if the user asked for it on wider rows).
Rerank ResolveRerank(Relation index, int dims);

// Resolves options for a build over an estimated `rows` rows of `dims` dimensions.
BuildOptions ResolveBuildOptions(Relation index, Metric metric, double rows, int dims);

// vamana's graph_degree, build_list and alpha as the index's options give them (defaults for
// those not set).
void ResolveVamanaOptions(Relation index, BuildOptions* out);

// The metric of an index: what its operator class's support function 1 names.
Metric IndexMetric(Relation index);

// The metric a support function 1 names ('l2', 'ip' or 'cosine'); false for another name.
bool MetricFromName(const char* name, Metric* metric);

}  // namespace scann::pg
