// Index scans for ORDER BY col <op> query LIMIT k: ambeginscan, amrescan, amgettuple,
// amendscan, and the seam between the shared scan and a variant's candidate source.
//
// A scan is two stages (ScaNN's "score" and "reorder"):
//  * a candidate source, one per variant (scann_variant.h), which picks the partitions to
//    search and scores their 4-bit codes, leaving each batch's best candidates, ranked by
//    exact integer keys (core/lut.h), in the scan's collector;
//  * the shared re-ranking and return of every batch (scann_scan.cpp): exact distances from
//    the table, the exact order, the ORDER BY values.
#pragma once

#include "core/topk.h"
#include "pg/pg_headers.h"
#include "pg/scann_page.h"

extern "C" {
#include "access/amapi.h"
#include "access/relscan.h"
}

namespace scann::pg {

IndexScanDesc BeginScan(Relation index, int nkeys, int norderbys);
void Rescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys, int norderbys);
bool GetTuple(IndexScanDesc scan, ScanDirection dir);
void EndScan(IndexScanDesc scan);

// What a candidate source sees of one scan (set up before its first batch; valid until the
// next rescan).
struct ScanContext {
  // A copy of the metapage: the cached state itself (GetIndexState) may be freed by a
  // relcache flush between calls, so sources look it up again at each use.
  ScannMetaPage meta;
  Relation index;
  Metric metric;
  int dims;
  const float* query_pq;  // the query as the codes see it (normalized for cosine)
  // The variant's query knob (scann.nprobe for the list variants: partitions searched per
  // round; scann.search_list for vamana: the beam search's list size), as set or as the
  // index's calibration chooses it for scann.target_recall.
  int knob;
  uint32 probe_limit;  // partitions a scan may search in all (scann.max_probes)
  uint32 batch;        // candidates in a round's first batch (scann.reorder, or 100)
  // The calibration's query row, which a graph search must not walk through (its out-edges
  // lead straight to its neighbours, which a query from outside the index does not have);
  // 0 (no TID) otherwise.
  uint64 hidden_id;
  MemoryContext scan_cxt;  // the source's memory; reset by every rescan
  KeyTopK* topk;           // the collector each batch is left in
};

// One variant's source of candidates.  Keys approximate, per unit of `scale`, the squared L2
// distance of the (normalized, for cosine) query and row, or the negative inner product.
struct CandidateSource {
  // Prepares the source for the context's query; returns its state (palloc'd in scan_cxt).
  void* (*begin)(ScanContext* sc);
  // Leaves the next batch in sc->topk, sorted ascending by (key, TID), and its key scale in
  // *scale; false when no candidate is left within the probe limit.  Batches come in
  // approximate order.  A TID comes at most once in all of a scan's batches unless the
  // variant files a row in several partitions (the metapage's fanout above 1, as annoy's
  // trees do): the scan then returns each TID once, at its first (best) appearance.
  bool (*next_batch)(ScanContext* sc, void* state, double* scale);
};

// A TID as the 48-bit id candidates carry (block, then offset: TID order is id order).
inline uint64 TidToId(const ItemPointerData* tid) {
  return (uint64(ItemPointerGetBlockNumber(tid)) << 16) | ItemPointerGetOffsetNumber(tid);
}

inline void IdToTid(uint64 id, ItemPointer tid) {
  ItemPointerSet(tid, BlockNumber(id >> 16), OffsetNumber(id & 0xFFFF));
}

}  // namespace scann::pg
