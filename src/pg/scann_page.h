// The on-disk format of a scann index: every page, every struct, and the locking protocol.
//
// Block 0 is the metapage.  It is followed by the centroid stream (lists x dims floats),
// the codebook stream (the product quantizer's subspaces x 16 x dims_per_subspace floats)
// and the list directory (one ScannListEntry per list), each on consecutive pages written
// once at build.  List pages come after them, one chain per list linked by `next`.
//
// A list holds 32-vector FastScan blocks.  A block is S = kTidUnits + L + pairs 32-byte
// units: the 32 slots' heap TIDs (6 bytes each, 192 bytes = 6 units), then L units locating
// the slots' re-ranking records (below; L = 0 with rerank = 'heap'), then the packed 4-bit
// codes, one unit per pair of subspaces (src/core/fastscan.h).  A free slot has an invalid
// TID (all zero bytes); its code bytes and record mean nothing.  When S fits in a page, a page
// holds floor(kUnitsPerPage / S) whole blocks; otherwise one block spans
// ceil(S / kUnitsPerPage) consecutive pages of the chain: the first (its "home") holds the
// TIDs, the locator and the first codes, the following pages only codes.
//
// Re-ranking records (rerank = 'sq8').  Every slot has a record of record_bytes = 4 + dims
// bytes rounded up to 4: the float error bound eps, then the row's 8-bit scalar codes
// (src/core/sq8.h; trained on the sample, parameters in the sq8 stream after the codebooks).
// Records live on kRecords pages, packed from the payload's start, per_page =
// RecordsPerPage(record_bytes) to a page; pd_lower marks the records in use.  A block's 32
// records are a run: run record g (slot g) is record first + g counted from the start of the
// locator's first page, on its page (first + g) / per_page at index (first + g) % per_page.
// A list's runs follow each other densely (a run starts where the list's last one ended, on
// that page if it has room), so a run spans up to RecordPagesPerBlock pages.  Locator unit 0
// holds `first` (uint32) and the first 7 page numbers, later units 8 page numbers each.  A
// slot's record is rewritten by the insert that fills the slot; the record of a free slot is
// never read.

// Locking protocol (all through the buffer manager, WAL through GenericXLog):
//  * Scans take a share lock on one list page at a time, score it, and release it; they
//    hold no lock across pages.  A multi-page block is scored from its home page's TIDs and
//    every page's codes; a slot freed and reused between those reads only mis-scores a
//    dead TID, which the heap fetch with the scan's MVCC snapshot then rejects.
//  * Inserts lock the home page of the block they fill exclusively for the whole insert,
//    write the slot's codes on later pages first and its TID last, so a crash or a
//    concurrent scan never sees a valid TID with half-written codes; the slot's record is
//    written in the record that writes its TID (or before).  Inserts and VACUUM lock list
//    pages in chain order, record pages after any list page, and the directory page after
//    any list or record page, never the other way round, so they cannot deadlock.
//  * Scans read a candidate's record after releasing the list page it came from.  A slot
//    freed by VACUUM and filled by an insert in between yields the new row's record for the
//    old TID; the old TID is dead to every snapshot VACUUM waited for, so the executor never
//    returns it with that record's bound.
//  * New pages are added at a chain's tail only, under the tail page's exclusive lock and
//    the relation extension lock; the directory's `last` is a hint that may lag behind the
//    real tail, which inserts reach by following `next`.
//  * VACUUM marks dead slots free (invalid TID) under the home page's exclusive lock; inserts
//    reuse free slots starting from the directory's `insert_hint`.
//  * Relation extension is not WAL-logged, so an insert that crashes between extending the
//    index and the record that links the new page leaves an all-zero page nothing points
//    to.  VACUUM records such pages in the free space map; it reads the index's length
//    under the extension lock, which an inserter holds until it has locked its new page,
//    so a page being added is never seen all-zero.  An insert that takes a page from the
//    map uses it only if it gets its exclusive lock without waiting and finds it still
//    all-zero or kFree (the map is a hint: not WAL-logged, stale after a promotion).
//  * Pages an insert initializes (kList, kListContinuation and kRecords) carry the inserting
//    transaction's id in the page header's pd_prune_xid, which index pages do not otherwise
//    use (0 on pages written at build).  A block wider than a page writes its continuation
//    pages, and a block whose records take pages of their own writes those, in WAL records
//    of their own before the one that links the block, so an insert that fails or crashes in
//    between leaves initialized pages that no chain or locator reaches.
//    VACUUM's cleanup takes them back: it reads GetOldestActiveTransactionId() first, then
//    every page, then follows the chains from the directory through the `next` links it
//    read, and the locators of the blocks on the pages it reached.  A chain or record page
//    nothing reaches whose stamp precedes that horizon is an orphan:
//    only the inserting transaction links its pages, links are never removed or changed,
//    and that transaction ended before the pass began, so any link it made was read.  Such
//    a page is rewritten as kFree (WAL-logged, full image) and recorded in the free space
//    map; inserts take kFree pages like all-zero ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "pg/pg_headers.h"

extern "C" {
#include "storage/block.h"
#include "storage/bufpage.h"
#include "storage/itemptr.h"
}

namespace scann::pg {

inline constexpr uint32 kScannMagic = 0x5CA770AB;
// Raised with every change of the layout below, so that an index written by another build
// fails with "REINDEX the index" instead of being misread.  2: 12-byte directory entries.
// 3: the variant's structure stream, fan-out and options in the metapage.  4: re-ranking
// records (block locators, kRecords pages, the sq8 stream).  5: the recall calibration.
// 6: vamana node pages.
inline constexpr uint32 kScannFormatVersion = 6;
inline constexpr uint16 kScannPageId = 0xFF85;  // last two bytes of every page, for tools

inline constexpr BlockNumber kMetaBlock = 0;

// kList pages hold block starts; kListContinuation pages hold the later codes of a block
// that spans pages; kRecords pages hold re-ranking records; kFree pages are pages VACUUM
// took back (see the protocol above), reusable like all-zero pages.
enum class PageType : uint16 {
  kMeta = 1,
  kStream = 2,
  kList = 4,
  kListContinuation = 5,
  kFree = 6,
  kRecords = 7,
  kVamanaNodes = 8
};

enum class Metric : uint16 { kL2 = 1, kInnerProduct = 2, kCosine = 3 };

// The partitioner (scann_variant.h): IVF's k-means lists, annoy's forest of random-projection
// trees whose leaves are lists, vamana's graph.
enum class Variant : uint16 { kIvf = 1, kAnnoy = 2, kVamana = 3 };

// What re-ranks a scan's candidates: their heap tuples (exact distances, every candidate read
// from the table) or their 8-bit records in the index (lower bounds the executor rechecks on
// the rows it returns; scann_scan.cpp).
enum class Rerank : uint16 { kHeap = 1, kSq8 = 2 };

// The special space of every page.
struct ScannPageOpaque {
  BlockNumber next;  // next page of the same chain or stream; InvalidBlockNumber at the end
  uint16 type;       // PageType
  uint16 page_id;    // kScannPageId
};

// Recall@10 of the variant's query knob (nprobe for the list variants), measured at build or
// by scann_recalibrate(): `queries` rows of the index searched as queries (each one's own row
// left out of its neighbours) against their exact neighbours among all rows, at the knob
// values knob[0 .. points).  Scans that are not given the knob pick the smallest value whose
// recall reaches scann.target_recall.
inline constexpr int kCalibrationPoints = 14;
enum class CalibrationSource : uint8 {
  kRows = 0,      // random rows of the table, each without itself among its neighbours
  kSupplied = 1,  // the queries given to scann_recalibrate
};

struct ScannCalibration {
  uint8 points;  // 0: not calibrated (an untrained index)
  uint8 source;  // CalibrationSource
  uint16 queries;
  uint32 knob[kCalibrationPoints];
  float recall[kCalibrationPoints];
  uint32 reorder;    // scann.reorder during the measurement: candidates per query
  double rows;       // rows in the index when measured
  int64 measured_at;  // TimestampTz
};

// Block 0.  Options are frozen here at build for the life of the index.
struct ScannMetaPage {
  uint32 magic;
  uint32 version;
  uint32 dims;
  uint16 metric;   // Metric
  uint16 variant;  // Variant
  uint32 lists;
  uint32 dims_per_subspace;
  uint32 subspaces;
  uint32 block_units;           // S: units of one 32-vector block
  uint32 trained;               // 0: built on too few rows; every scan re-ranks everything exactly
  float anisotropic_threshold;  // T as applied (for ip: scaled by the median row norm)
  uint32 sample_rows;           // rows the quantizers were trained on
  double build_rows;            // rows indexed at build
  BlockNumber centroid_start;
  BlockNumber codebook_start;
  BlockNumber directory_start;
  uint32 centroid_pages;
  uint32 codebook_pages;
  uint32 directory_pages;
  // Lists each row is filed in: 1 for IVF, the number of trees for annoy.
  uint32 fanout;
  // The variant's own structure (annoy's trees), a stream of partition_bytes bytes after the
  // codebooks; InvalidBlockNumber when it has none.
  BlockNumber partition_start;
  uint32 partition_pages;
  uint32 partition_bytes;
  // The variant's options as resolved at build, and room for its state.  IVF: all 0.  annoy
  // (scann_variant.h, AnnoyWord): [0] trees, [1] table rows per leaf the build aimed at
  // (leaf_size, after defaults and bounds), [2] sample rows a leaf may hold; the rest 0.
  uint32 variant_words[16];
  uint16 rerank;          // Rerank
  uint16 locator_units;   // L: units of a block's record locator (0 with kHeap)
  uint32 record_bytes;    // bytes of one re-ranking record (0 with kHeap)
  BlockNumber sq8_start;  // the scalar quantizer's parameters (2 x dims floats)
  uint32 sq8_pages;
  ScannCalibration calibration;
};

// One list's entry in the directory.
struct ScannListEntry {
  BlockNumber first;        // first page of the chain, InvalidBlockNumber while empty
  BlockNumber last;         // a page at or before the tail (hint; follow `next`)
  BlockNumber insert_hint;  // no free slot lies before this page (hint)
};

inline constexpr size_t kUnitBytes = 32;
inline constexpr size_t kTidBytes = sizeof(ItemPointerData);
inline constexpr uint32 kTidUnits = (32 * kTidBytes) / kUnitBytes;
inline constexpr size_t kPagePayload =
    BLCKSZ - MAXALIGN(SizeOfPageHeaderData) - MAXALIGN(sizeof(ScannPageOpaque));
inline constexpr uint32 kUnitsPerPage = kPagePayload / kUnitBytes;
inline constexpr uint32 kEntriesPerPage = kPagePayload / sizeof(ScannListEntry);

static_assert(kPagePayload % sizeof(ScannListEntry) == 0, "directory pages hold whole entries");
static_assert(kTidBytes == 6, "heap TIDs are 6 bytes on disk");
static_assert(32 * kTidBytes == kTidUnits * kUnitBytes, "32 TIDs fill whole units");
static_assert(sizeof(ScannPageOpaque) == 8, "page opaque layout is part of the format");
static_assert(sizeof(ScannListEntry) == 12, "directory entry layout is part of the format");
static_assert(sizeof(ScannCalibration) == 136, "calibration layout is part of the format");
static_assert(sizeof(ScannMetaPage) == 312, "metapage layout is part of the format");
static_assert(sizeof(ScannMetaPage) <= kPagePayload, "metapage fits in a page");
static_assert(kUnitsPerPage >= kTidUnits + 1, "a page holds a block's TIDs and some codes");

// Units of one block of a list whose codes have `subspaces` 4-bit subspaces and whose record
// locator takes `locator_units` units.
inline uint32 BlockUnits(uint32 subspaces, uint32 locator_units) {
  return kTidUnits + locator_units + (subspaces + 1) / 2;
}

// The first unit of a block's codes.
inline uint32 CodeUnit(const ScannMetaPage& meta) { return kTidUnits + meta.locator_units; }

// Re-ranking records: the bytes of one for `dims` dimensions, how many fit in a page, and
// the locator units of a block whose 32 records take ceil(32 / per_page) pages.
inline constexpr uint32 kLocatorPagesInFirstUnit = 7;
inline constexpr uint32 kLocatorPagesPerUnit = 8;
inline constexpr uint32 RecordBytes(uint32 dims) { return 4 + (dims + 3) / 4 * 4; }
inline constexpr uint32 RecordsPerPage(uint32 record_bytes) { return kPagePayload / record_bytes; }
// The most pages a run of 32 records spans (starting anywhere on its first page).
inline constexpr uint32 RecordPagesPerBlock(uint32 record_bytes) {
  const uint32 per_page = RecordsPerPage(record_bytes);
  return (per_page - 1 + 32 + per_page - 1) / per_page;
}
inline constexpr uint32 LocatorUnits(uint32 record_bytes) {
  const uint32 pages = RecordPagesPerBlock(record_bytes);
  return pages <= kLocatorPagesInFirstUnit
             ? 1
             : 1 + (pages - kLocatorPagesInFirstUnit + kLocatorPagesPerUnit - 1) /
                       kLocatorPagesPerUnit;
}
// The most dimensions a record fits a page for, and the most units a locator then takes.
inline constexpr uint32 kMaxRecordDims = kPagePayload - 4;
inline constexpr uint32 kMaxLocatorUnits = 5;
static_assert(LocatorUnits(RecordBytes(kMaxRecordDims)) == kMaxLocatorUnits,
              "one record per page: 32 pages, 7 + 8 x 4 page numbers");

// A block's record locator (its L units at unit kTidUnits).
struct RecordLocator {
  uint32 first;          // the block's first record in its run's first page
  BlockNumber pages[7];  // then 8 more page numbers per further unit
};
static_assert(sizeof(RecordLocator) == kUnitBytes, "a locator's first unit");

// The page number of a locator's page p (units after the first continue the array).
inline BlockNumber LocatorPage(const uint8_t* locator, uint32 p) {
  BlockNumber b;
  const size_t at = p < kLocatorPagesInFirstUnit
                        ? sizeof(uint32) + p * sizeof(BlockNumber)
                        : kUnitBytes + (p - kLocatorPagesInFirstUnit) * sizeof(BlockNumber);
  std::memcpy(&b, locator + at, sizeof(b));
  return b;
}
inline void SetLocatorPage(uint8_t* locator, uint32 p, BlockNumber b) {
  const size_t at = p < kLocatorPagesInFirstUnit
                        ? sizeof(uint32) + p * sizeof(BlockNumber)
                        : kUnitBytes + (p - kLocatorPagesInFirstUnit) * sizeof(BlockNumber);
  std::memcpy(locator + at, &b, sizeof(b));
}

// Where slot `slot`'s record is, as a candidate carries it: the page number in the high
// bits, the byte offset in the page's payload in the low 16 (0 means none: block 0 is the
// metapage).
inline uint64 RecordAddress(const uint8_t* locator, uint32 record_bytes, int slot) {
  uint32 first;
  std::memcpy(&first, locator, sizeof(first));
  const uint32 per_page = RecordsPerPage(record_bytes);
  const uint32 g = first + uint32(slot);
  return (uint64(LocatorPage(locator, g / per_page)) << 16) | ((g % per_page) * record_bytes);
}
inline BlockNumber RecordPage(uint64 address) { return BlockNumber(address >> 16); }

// The pages the run of a block with this locator spans.
inline uint32 RunPages(const uint8_t* locator, uint32 record_bytes) {
  uint32 first;
  std::memcpy(&first, locator, sizeof(first));
  const uint32 per_page = RecordsPerPage(record_bytes);
  return (first + 32 + per_page - 1) / per_page;
}

// Records in use on a kRecords page (pd_lower marks their end).
inline uint32 RecordsUsed(Page page, uint32 record_bytes) {
  return (((PageHeader)page)->pd_lower - MAXALIGN(SizeOfPageHeaderData)) / record_bytes;
}
inline void SetRecordsUsed(Page page, uint32 record_bytes, uint32 used) {
  ((PageHeader)page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + used * record_bytes;
}
inline uint32 RecordOffset(uint64 address) { return uint32(address & 0xFFFF); }

// Whole blocks per page when a block fits in a page; 0 when a block spans pages.
inline uint32 BlocksPerPage(uint32 block_units) {
  return block_units <= kUnitsPerPage ? kUnitsPerPage / block_units : 0;
}

// Pages one block spans when it does not fit in a page.
inline uint32 PagesPerBlock(uint32 block_units) {
  return (block_units + kUnitsPerPage - 1) / kUnitsPerPage;
}

inline ScannPageOpaque* PageOpaque(Page page) {
  return reinterpret_cast<ScannPageOpaque*>(PageGetSpecialPointer(page));
}

inline char* PagePayload(Page page) { return PageGetContents(page); }

inline ScannMetaPage* MetaPageData(Page page) {
  return reinterpret_cast<ScannMetaPage*>(PagePayload(page));
}

// ---- The vamana variant ---------------------------------------------------------------------
//
// A vamana index is a DiskANN graph (src/core/vamana.h) whose nodes live on kVamanaNodes pages,
// after the metapage and the streams (one centroid, the mean of the sample, which the codes are
// residuals to; the codebooks; the sq8 parameters; a one-entry list directory nothing uses).
// Every page from the metapage's first node block on is a node page, or a page an insert
// extended the index by and crashed before initializing (all zero; VACUUM records it in the
// free space map and inserts reuse it).
//
// Node pages hold nodes_per_page nodes of node_bytes bytes each from the payload's start; a page
// is created with all its nodes free (pd_lower covers them all).  Node id = block *
// nodes_per_page + slot, so an id names its page without a lookup.  One node:
//
//   VamanaNodeHeader   the row's heap TID (invalid for a free node), its state, its out-degree
//   ids                graph_degree uint32 node ids of its out-neighbours (degree in use)
//   own code           its own 4-bit PQ code, two subspaces a byte (low nibble first)
//   neighbour codes    ceil(graph_degree / 32) FastScan blocks (src/core/fastscan.h) holding
//                      the codes of its out-neighbours, neighbour i in slot i
//   record             with rerank = 'sq8', its re-ranking record (as on kRecords pages); a
//                      candidate's record address points here
//
// so expanding a node during a search is one page read and one FastScan call over the codes of
// all its neighbours.  The neighbour codes repeat, in each in-neighbour, the code the
// neighbour keeps as its own code; a node's block is rewritten with its list.
//
// The metapage's variant_words hold the options as built (VamanaWord) and two words that
// change: the entry point (the node every search starts from, kNoEntry when the graph has no
// node) and the insert hint (no free node lies on a node page before it), both updated in
// place with GenericXLog under the metapage's exclusive lock.
//
// Node states.  kLive: a row.  kDeleted: its row is dead to every snapshot (VACUUM's first
// step); searches still walk through it but never return it, and no new edge points to it.
// kFree: no row, no edges; an insert may take it.  An all-zero node is free.
//
// Locking protocol (buffer locks; WAL through GenericXLog):
//  * A lock on the metapage is never held while another page is locked.  Scans and inserts
//    read the entry point under its share lock.
//  * Scans lock one node page at a time in share mode, copy (or score) what they need and
//    release it; they never hold two page locks.  A list may name a node that has been freed,
//    or reused by a row inserted since the scan's snapshot: the scan expands what it finds,
//    and a reused node's new row is invisible to the scan (its insert followed the scan's
//    read of the list, so it committed after the scan's snapshot was taken).
//  * An insert first takes a free node (exclusive lock on its page: TID, state, own code and
//    record in one WAL record; a new page is written whole in that record, so an insert never
//    leaves an initialized page that nothing reaches), then searches the graph like a scan
//    (share locks, one page at a time) and writes its own list and block (exclusive lock on
//    its page), then adds its back-edges one neighbour at a time: exclusive lock on the
//    neighbour's page, its list and block read, the new node appended (or the list pruned
//    with distances from the codes on that page alone), written, released.  It never holds
//    two page locks.  Its search reads a node's state under the share lock and never links
//    to a kDeleted node.
//  * Inserts hold a share lock on the heavyweight page lock of the metapage (LockPage) for
//    their whole graph work.  VACUUM marks dead nodes kDeleted, then takes that lock in
//    exclusive mode and releases it at once: every insert that may have linked to a node
//    before it was marked has finished, and every later insert sees the mark.  Only then does
//    it repair the lists that point to deleted nodes (read without locks, written under the
//    node's exclusive lock, merged with what a concurrent insert appended meanwhile), replace
//    the entry point if it was deleted, and free the deleted nodes.
//  * A crash between an insert's records leaves a live node that some lists do not reach
//    yet; a scan that keeps going sweeps every node page at the end, so no row is lost.
inline constexpr uint32 kMaxGraphDegree = 64;
inline constexpr uint32 kNoEntry = UINT32_MAX;

enum class VamanaNodeState : uint8 { kFree = 0, kLive = 1, kDeleted = 2 };

struct VamanaNodeHeader {
  ItemPointerData tid;
  uint8 state;   // VamanaNodeState
  uint8 degree;  // out-neighbours in use
};
static_assert(sizeof(VamanaNodeHeader) == 8, "vamana node header layout is part of the format");

// What a vamana metapage keeps in variant_words.
enum VamanaWord : uint32 {
  kVamanaGraphDegree = 0,  // R
  kVamanaBuildList,        // L
  kVamanaAlphaBits,        // alpha, as float bits
  kVamanaPasses,
  kVamanaNodeBytes,
  kVamanaNodesPerPage,
  kVamanaFirstNodeBlock,
  kVamanaEntryPoint,  // changes: a node id, or kNoEntry
  kVamanaInsertHint,  // changes: a block
  kVamanaShards,      // k-means shards of the build (1: built in memory)
};

// Where the parts of a node lie, from the metapage's options.
struct VamanaNodeLayout {
  uint32 degree_bound;  // R
  uint32 blocks;        // FastScan blocks of neighbour codes
  uint32 subspaces;     // m (0: untrained, no codes)
  uint32 pairs;         // code units of one block
  uint32 own_code_bytes;
  uint32 ids_offset;
  uint32 own_code_offset;
  uint32 codes_offset;
  uint32 record_offset;
  uint32 record_bytes;
  uint32 node_bytes;
  uint32 nodes_per_page;
};

inline constexpr VamanaNodeLayout MakeVamanaLayout(uint32 degree, uint32 subspaces,
                                                   uint32 record_bytes) {
  VamanaNodeLayout l = {};
  l.degree_bound = degree;
  l.blocks = subspaces > 0 ? (degree + 31) / 32 : 0;
  l.subspaces = subspaces;
  l.pairs = (subspaces + 1) / 2;
  l.own_code_bytes = (subspaces + 1) / 2;
  l.ids_offset = sizeof(VamanaNodeHeader);
  l.own_code_offset = l.ids_offset + 4 * degree;
  l.codes_offset = l.own_code_offset + l.own_code_bytes;
  l.record_offset = l.codes_offset + l.blocks * l.pairs * kUnitBytes;
  l.record_bytes = record_bytes;
  l.node_bytes = (l.record_offset + record_bytes + 7) / 8 * 8;
  l.nodes_per_page = l.node_bytes <= kPagePayload ? uint32(kPagePayload / l.node_bytes) : 0;
  return l;
}
static_assert(MakeVamanaLayout(32, 50, 0).node_bytes == 968, "GloVe-100, 2 dims a subspace");
static_assert(MakeVamanaLayout(kMaxGraphDegree, 0, 0).nodes_per_page >= 1,
              "an untrained node (TID and list) fits a page");
static_assert(MakeVamanaLayout(32, 1, RecordBytes(kMaxRecordDims)).nodes_per_page == 0,
              "a node with the widest record does not fit: rerank = 'sq8' is refused then");

inline VamanaNodeLayout VamanaLayoutOf(const ScannMetaPage& meta) {
  return MakeVamanaLayout(meta.variant_words[kVamanaGraphDegree], meta.subspaces,
                          meta.record_bytes);
}

// A node's page and slot, and its bytes in a page.
inline BlockNumber VamanaNodeBlock(const VamanaNodeLayout& l, uint32 id) {
  return id / l.nodes_per_page;
}
inline uint32 VamanaNodeSlot(const VamanaNodeLayout& l, uint32 id) { return id % l.nodes_per_page; }
inline uint8_t* VamanaNode(const VamanaNodeLayout& l, Page page, uint32 slot) {
  return reinterpret_cast<uint8_t*>(PagePayload(page)) + size_t(slot) * l.node_bytes;
}
inline VamanaNodeHeader* VamanaHeader(uint8_t* node) {
  return reinterpret_cast<VamanaNodeHeader*>(node);
}
inline uint32 VamanaNeighbor(const VamanaNodeLayout& l, const uint8_t* node, uint32 i) {
  uint32 id;
  std::memcpy(&id, node + l.ids_offset + 4 * i, sizeof(id));
  return id;
}

}  // namespace scann::pg
