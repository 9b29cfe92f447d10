// The variant seam.  A scann index is a partitioner feeding shared scoring and re-ranking
// (ScaNN's "tree", "score_ah" and "reorder" stages): the variant chosen at CREATE INDEX (the
// metapage's `variant`) decides how rows are partitioned and which partitions a query
// searches; everything else is shared and lives outside the variants: the product quantizer
// (training, score-aware encoding), lookup tables and FastScan kernels (core/lut.h,
// core/fastscan.h), list chains of 32-row blocks (scann_list.h), re-ranking and returning
// rows (scann_scan.cpp), pages, streams and WAL (scann_index.h), the orphan-page protocol
// (scann_vacuum.cpp), the parallel build (scann_build.cpp), options and GUCs
// (scann_options.h).
//
// Each access-method callback looks the variant up once, with VariantOf(), and calls through
// its VariantOps.  The list-based variants (IVF, annoy) share the list machinery and differ
// only in their ListPartitioner; a variant with another structure (a graph) supplies its own
// build, insert, scan source and VACUUM.
//
// A new variant: its algorithm in src/core/<name>.{h,cpp}, its glue in
// src/pg/scann_<name>*.cpp, its on-disk part in scann_page.h, a Variant value, its options in
// scann_options.cpp, and one case in VariantOf() (scann_variant.cpp).
#pragma once

#include "core/pq.h"
#include "core/sq8.h"
#include "pg/pg_headers.h"
#include "pg/scann_options.h"
#include "pg/scann_page.h"
#include "pg/scann_scan.h"

extern "C" {
#include "access/genam.h"
#include "common/relpath.h"
#include "nodes/execnodes.h"
#include "utils/relcache.h"
}

namespace scann::pg {

// A list partitioner's model, as trained at build or as read back from the index: what
// filing a row in its lists and ranking lists for a query need.
struct PartitionModel {
  // The index the model belongs to (its relation id and relfilenode key the partitioners'
  // per-backend caches); at build, the index being built.
  Relation index;
  int dims;
  uint32 lists;
  uint32 fanout;           // lists each row is filed in
  const float* centroids;  // lists x dims: the codes of a list are residuals to its centroid
  const float* norms;      // the centroids' squared norms (core/kmeans.h CentroidNorms)
  const char* partition;   // the variant's own structure (its stream), or null
  uint32 partition_bytes;
};

// What a list partitioner trains at build, on the sample.
struct PartitionTraining {
  // In: the index (for its options), the metric, the sample as the quantizers see it
  // (normalized for cosine; it may be reordered), and the lists asked for or chosen from the
  // table's size (IVF's `lists`; others may choose their own).
  Relation index;
  Metric metric;
  int dims;
  float* sample;
  uint32 sample_rows;
  double table_rows;
  uint32 lists;
  bool lists_requested;  // the user set `lists` (WITH (lists = ...))
  // Out (palloc'd in the caller's context): the lists, their centroids, the fan-out, the
  // variant's own structure, and what it keeps in the metapage (ScannMetaPage::variant_words).
  uint32 fanout;
  float* centroids;
  char* partition;
  uint32 partition_bytes;
  uint32 variant_words[16];
};

struct ListPartitioner {
  // Build: trains the partition on the sample and fills the training's out fields.
  void (*train)(PartitionTraining* training);
  // Build and insert: the lists of n rows (as the quantizers see them), fanout per row, into
  // out[i * fanout + t]; at build whole chunks of rows come at once.
  void (*assign)(const PartitionModel& model, const float* rows, uint32 n, int32* out);
  // Scan: prepares the ranking of lists for the context's query; returns its state
  // (palloc'd in sc->scan_cxt).
  void* (*rank_begin)(ScanContext* sc);
  // Scan: the next lists in rank order, up to `count`, into out; returns how many (0 when
  // every list has been ranked).
  uint32 (*rank_next)(ScanContext* sc, void* state, uint32 count, int32* out);
};

// What CREATE INDEX hands a variant that is not list-based, once the shared steps are done:
// the rows counted and sampled, the quantizers trained on the sample (codes are residuals to
// one centroid, the sample's mean) and the streams and the metapage's shared fields written.
struct VariantBuild {
  Relation heap;
  Relation index;
  IndexInfo* index_info;
  ForkNumber fork;
  Metric metric;
  int dims;
  double rows;  // rows with a value, as the counting pass saw them
  bool trained;
  const BuildOptions* opts;
  const ProductQuantizer* pq;  // null when untrained
  const ScalarQuantizer* sq;   // null without re-ranking records
  const float* centroid;       // the codes' centroid (dims floats); null when untrained
  float* sample;  // the training sample (sample_rows x dims, as the codes see rows): the
                  // variant's to use and free
  uint32 sample_rows;
  // Out: rows indexed.
  double indexed;
};

// A variant's query knob: the GUC a scan reads it from and the values the recall calibration
// measures it at.
struct QueryKnobSpec {
  const char* name;    // the GUC without "scann.": nprobe, search_list
  const int* setting;  // the GUC's value; -1 lets the index's calibration choose
  int uncalibrated;    // the value an index without calibration uses
  // The lowest and highest values worth measuring for the index.
  void (*ladder)(const ScannMetaPage& meta, uint32* lowest, uint32* highest);
};

struct VariantOps {
  const char* name;
  // The list-based variants' partitioner (null for others).
  const ListPartitioner* partitioner;
  // CREATE INDEX of a variant that is not list-based: indexes every row, writes its pages after
  // the streams and fills the metapage's variant fields (null for the list-based variants).
  void (*build)(VariantBuild* build, ScannMetaPage* meta);
  // aminsert of one row, already validated (normalized for cosine): files it in the index.
  void (*insert)(Relation index, const float* vec, ItemPointer tid);
  // The scan's candidate source.
  const CandidateSource* scan;
  // ambulkdelete and amvacuumcleanup.
  IndexBulkDeleteResult* (*bulk_delete)(IndexVacuumInfo* info, IndexBulkDeleteResult* stats,
                                        IndexBulkDeleteCallback callback, void* callback_state);
  IndexBulkDeleteResult* (*cleanup)(IndexVacuumInfo* info, IndexBulkDeleteResult* stats);
  // The query knob (scann.nprobe for the list-based variants).
  const QueryKnobSpec* knob;
};

// The operations of an index's variant (errors for a variant this build does not know).
const VariantOps& VariantOf(const ScannMetaPage& meta);
const VariantOps& VariantOf(Variant variant);

// The partition model of an index, from its cached state (valid until the next call that
// can process invalidations).
PartitionModel ModelOf(Relation index);

// The list-based variants' shared operations (scann_list.cpp, scann_list_scan.cpp,
// scann_vacuum.cpp).
void ListInsert(Relation index, const float* vec, ItemPointer tid);
extern const CandidateSource kListSource;
IndexBulkDeleteResult* ListBulkDelete(IndexVacuumInfo* info, IndexBulkDeleteResult* stats,
                                      IndexBulkDeleteCallback callback, void* callback_state);
IndexBulkDeleteResult* ListCleanup(IndexVacuumInfo* info, IndexBulkDeleteResult* stats);

// The partitioners.
extern const ListPartitioner kIvfPartitioner;
extern const ListPartitioner kAnnoyPartitioner;

// What the annoy variant keeps in ScannMetaPage::variant_words (the others are 0): the
// trees, the table rows per leaf the build aimed at, and the sample rows a leaf may hold
// (the core's max_sample_rows_per_leaf).
enum AnnoyWord { kAnnoyWordTrees = 0, kAnnoyWordLeafSize = 1, kAnnoyWordSampleRowsPerLeaf = 2 };

// Registers the invalidation callback of the annoy partitioner's per-backend forest cache
// (from _PG_init).
void InitAnnoyCache();

// The vamana variant's operations (scann_vamana*.cpp).
extern const VariantOps kVamanaOps;

}  // namespace scann::pg
