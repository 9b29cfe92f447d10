// The candidate source of the list-based variants (IVF, annoy): the partitioner ranks lists for
// the query -> they are searched a "ring" of scann.nprobe lists at a time -> every 32-row
// block of a ring's lists is scored by the FastScan kernel against uint8 lookup tables
// (core/lut.h, held within work_mem) -> the best candidates are kept by their exact integer
// keys (a SIMD threshold test rejects most rows in a few instructions).
// A ring yields batches in key order: the next batch takes the candidates whose key, then TID,
// comes after the last one taken, each batch twice the size of the one before (so a scan that
// keeps going rescans a ring O(log rows) times); then the next ring, up to scann.max_probes
// lists.
#include <algorithm>
#include <cstring>

#include "core/fastscan.h"
#include "core/lut.h"
#include "pg/recent_buffer.h"
#include "pg/scann_index.h"
#include "pg/scann_list.h"
#include "pg/scann_variant.h"

extern "C" {
#include "miscadmin.h"
}

namespace scann::pg {

namespace {

struct ListScan {
  const ListPartitioner* partitioner;  // null for an untrained index (one list, no codes)
  void* ranking;
  // The current ring: lists ring[0, ring_size).
  int32* ring;
  uint32 ring_size;
  uint32 probed;  // lists of all rings opened so far
  bool ring_open;
  bool ring_done;  // the last batch took every remaining candidate of the ring
  QueryLuts* luts;
  const float** ring_centroids;
  // Where the last batch of this ring ended, and the size of the next one.
  uint32 batch;
  bool has_floor;
  int64 floor_key;
  uint64 floor_id;
  uint16* scores;
  uint32* selected;
};

// Total slots of an index: the capacity an untrained index's single batch needs.
// Counted on the pages rather than taken from the directory's block counts, which a crash
// between an insert's two WAL records can leave one block behind.
uint32 CountSlots(Relation index, const ScannMetaPage& meta) {
  double slots = 0;
  ForEachListPage(index, meta, BUFFER_LOCK_SHARE, [&](uint32, Buffer, Page page) {
    slots += 32.0 * (PageUnits(page) / meta.block_units);
  });
  return uint32(Min(slots + 32, double(PG_INT32_MAX / 2)));
}

void* Begin(ScanContext* sc) {
  const ScannMetaPage& meta = sc->meta;
  ListScan* ls = static_cast<ListScan*>(palloc0(sizeof(ListScan)));
  const uint32 ring = std::min<uint32>(Max(sc->knob, 1), Max(meta.lists, 1u));
  ls->ring = static_cast<int32*>(palloc(sizeof(int32) * ring));
  if (meta.trained) {
    ls->partitioner = VariantOf(meta).partitioner;
    ls->ranking = ls->partitioner->rank_begin(sc);
    ls->luts = NewInContext<QueryLuts>(sc->scan_cxt);
    ls->ring_centroids = static_cast<const float**>(palloc(sizeof(float*) * ring));
  } else {  // every row in one batch
    sc->batch = CountSlots(sc->index, meta);
  }
  const uint32 per_page = std::max<uint32>(BlocksPerPage(meta.block_units), 1);
  ls->scores = static_cast<uint16*>(palloc(sizeof(uint16) * 32 * per_page));
  ls->selected = static_cast<uint32*>(palloc(sizeof(uint32) * 32 * per_page));
  return ls;
}

// Lookup tables for the lists of the current ring, within work_mem (core/lut.h).
void BuildRingLuts(ScanContext* sc, ListScan* ls) {
  if (sc->meta.subspaces == 0) return;
  const float* centroids = GetIndexState(sc->index)->centroids;
  for (uint32 i = 0; i < ls->ring_size; i++)
    ls->ring_centroids[i] = centroids + size_t(ls->ring[i]) * sc->dims;
  const ProductQuantizer* pq = GetQuantizer(sc->index);
  // Cosine ranks by the L2 distance of the normalized query to the normalized rows, whose
  // error is second order near the query (||e||^2 + 2 <q - x, e>), where the inner product's
  // is first order (<q, e>): on 3-d rows with every list probed, recall@10 was 0.44 through
  // inner-product tables and 1.00 through L2 ones; on GloVe-100 the same within 0.004.
  const LutMetric metric =
      sc->metric == Metric::kInnerProduct ? LutMetric::kInnerProduct : LutMetric::kL2;
  CppGuard([&] {
    ls->luts->Prepare(*pq, metric, sc->query_pq, ls->ring_centroids, int(ls->ring_size),
                      size_t(work_mem) * 1024);
  });
}

// Opens the next ring of lists; false when the probe limit is reached or no list is left.
bool OpenNextRing(ScanContext* sc, ListScan* ls) {
  const uint32 limit = Min(sc->probe_limit, Max(sc->meta.lists, 1u));
  if (ls->probed >= limit) return false;
  const uint32 want = Min(uint32(Max(sc->knob, 1)), limit - ls->probed);
  if (ls->partitioner) {
    ls->ring_size = ls->partitioner->rank_next(sc, ls->ranking, want, ls->ring);
  } else {
    ls->ring[0] = 0;
    ls->ring_size = 1;
  }
  if (ls->ring_size == 0) return false;
  ls->probed += ls->ring_size;
  ls->ring_open = true;
  ls->ring_done = false;
  ls->has_floor = false;
  ls->batch = sc->batch;
  BuildRingLuts(sc, ls);
  return true;
}

// Whether (key, id) comes after the end of the previous batch of this ring.
inline bool AfterFloor(const ListScan* ls, int64 key, uint64 id) {
  return !ls->has_floor || key > ls->floor_key || (key == ls->floor_key && id > ls->floor_id);
}

// Offers the slots of `nblocks` scored blocks (block b's TIDs, then its record locator, at
// blocks + b * stride) of a list whose keys are offset + score, those that can enter the
// batch: all while it is not full, then those whose key is at most the batch's threshold,
// an exact integer test.  Each carries the address of its re-ranking record (0 without).
void OfferBlocks(ScanContext* sc, ListScan* ls, const uint8_t* blocks, size_t stride,
                 uint32 nblocks, int64 offset) {
  KeyTopK* topk = sc->topk;
  const uint32 n = nblocks * 32;
  uint32 count = n;
  bool every_slot = true;
  if (topk->Full()) {
    const int64 room = topk->Threshold() - offset;  // largest score that may enter
    if (room < 0) return;
    if (room < 65535) {
      count = uint32(
          FastScanKernelsActive().select_below(ls->scores, n, uint16(room + 1), ls->selected));
      every_slot = false;
    }
  }
  for (uint32 j = 0; j < count; j++) {
    const uint32 i = every_slot ? j : ls->selected[j];
    const uint8_t* block = blocks + size_t(i / 32) * stride;
    ItemPointerData tid;
    std::memcpy(&tid, block + (i % 32) * kTidBytes, kTidBytes);
    if (!ItemPointerIsValid(&tid)) continue;
    const int64 key = offset + ls->scores[i];
    const uint64 id = TidToId(&tid);
    if (!AfterFloor(ls, key, id)) continue;
    const uint32 record_bytes = sc->meta.record_bytes;
    topk->Push(key, id,
               record_bytes
                   ? RecordAddress(block + kTidUnits * kUnitBytes, record_bytes, int(i % 32))
                   : 0);
  }
}

// Scores one list of the ring: whole blocks page by page, or one block over its pages.
void ScoreList(ScanContext* sc, ListScan* ls, uint32 ring_index) {
  const ScannMetaPage& meta = sc->meta;
  const uint32 s = meta.block_units, pairs = (meta.subspaces + 1) / 2, code = CodeUnit(meta);
  const uint8_t* qlut = nullptr;
  int64 offset = 0;
  if (meta.subspaces > 0) {
    qlut = CppGuard([&] { return ls->luts->Table(int(ring_index)); });
    offset = ls->luts->Offset(int(ring_index));
  }
  const FastScanKernels& k = FastScanKernelsActive();
  const BlockNumber first = ListFirstPage(sc->index, uint32(ls->ring[ring_index]));
  // A spanning block's TIDs and locator, copied from its home page.
  uint8_t head[(kTidUnits + kMaxLocatorUnits) * kUnitBytes];
  uint32 block_unit = 0;  // position inside a block that spans pages
  for (BlockNumber blkno = first; blkno != InvalidBlockNumber;) {
    Buffer buf = ReadBufferRecent(sc->index, blkno);
    LockBuffer(buf, BUFFER_LOCK_SHARE);
    Page page = BufferGetPage(buf);
    const uint32 used = PageUnits(page);
    if (s <= kUnitsPerPage) {
      uint32 nblocks = used / s;
      if (nblocks > 0) {
        std::memset(ls->scores, 0, sizeof(uint16) * 32 * nblocks);
        if (pairs > 0)
          k.accumulate_blocks(PageUnit(page, code), nblocks, s * kUnitBytes, int(pairs), qlut,
                              ls->scores);
        OfferBlocks(sc, ls, PageUnit(page, 0), s * kUnitBytes, nblocks, offset);
      }
    } else {
      if (PageOpaque(page)->type == uint16(PageType::kList)) {
        std::memset(ls->scores, 0, sizeof(uint16) * 32);
        std::memcpy(head, PageUnit(page, 0), size_t(code) * kUnitBytes);
        block_unit = 0;
      }
      uint32 first_code = Max(block_unit, code);  // first code unit of the block here
      if (used > 0 && block_unit + used > code)
        k.accumulate_blocks(PageUnit(page, first_code - block_unit), 1, 0,
                            int(block_unit + used - first_code),
                            qlut + size_t(first_code - code) * kUnitBytes, ls->scores);
      block_unit += used;
      if (block_unit == s) OfferBlocks(sc, ls, head, 0, 1, offset);
    }
    blkno = PageOpaque(page)->next;
    UnlockReleaseBuffer(buf);
  }
  CHECK_FOR_INTERRUPTS();
}

// The next batch of the same ring takes twice as many candidates (up to kMaxBatch), so that
// continuing costs O(log rows) scans of the ring instead of rows / scann.reorder.
void GrowBatch(ListScan* ls) {
  constexpr uint32 kMaxBatch = 1u << 24;
  ls->batch = Min(kMaxBatch, Max(ls->batch, ls->batch * 2));
}

bool NextBatch(ScanContext* sc, void* state, double* scale) {
  ListScan* ls = static_cast<ListScan*>(state);
  for (;;) {
    if ((!ls->ring_open || ls->ring_done) && !OpenNextRing(sc, ls)) return false;
    CppGuard([&] { sc->topk->Reset(ls->batch); });
    for (uint32 i = 0; i < ls->ring_size; i++) ScoreList(sc, ls, i);
    if (sc->topk->size() == 0) {
      ls->ring_done = true;
      continue;
    }
    CppGuard([&] { sc->topk->SortAscending(); });
    const KeyTopK& topk = *sc->topk;
    ls->has_floor = true;
    ls->floor_key = topk[topk.size() - 1].score;
    ls->floor_id = topk[topk.size() - 1].id;
    ls->ring_done = topk.size() < ls->batch;
    *scale = sc->meta.subspaces > 0 ? ls->luts->scale() : 1.0;
    GrowBatch(ls);
    return true;
  }
}

}  // namespace

const CandidateSource kListSource = {Begin, NextBatch};

}  // namespace scann::pg
