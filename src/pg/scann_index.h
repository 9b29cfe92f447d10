// Shared machinery of the scann access method: the cached per-index state, page
// allocation, streams of floats over consecutive pages, WAL helpers, and C++ objects owned
// by PostgreSQL memory contexts.
#pragma once

#include <new>
#include <utility>

#include "core/pq.h"
#include "core/sq8.h"
#include "pg/guard.h"
#include "pg/scann_page.h"

extern "C" {
#include "access/generic_xlog.h"
#include "storage/bufmgr.h"
#include "utils/rel.h"
}

namespace scann::pg {

// What every operation needs to know of an index, read once from its metapage and
// streams and cached in rd_amcache (plain palloc memory: trivially destructible).
struct IndexState {
  ScannMetaPage meta;
  const float* centroids;  // lists x dims
  const float* codebooks;  // subspaces x 16 x dims_per_subspace
  // First page of each list as of loading (a list's first page never changes once set;
  // InvalidBlockNumber means "read the directory": the list may have been started since).
  const BlockNumber* list_first;
  // The centroids' squared norms (core/kmeans.h, CentroidNorms); nullptr for an untrained
  // index.
  const float* norms;
  // The variant's own structure stream (meta.partition_bytes bytes), or nullptr.
  const char* partition;
  // The scalar quantizer's parameters (2 x dims floats), or nullptr without records.
  const float* sq8;
};

// The index's product quantizer (codebooks and, for inserts, its score-aware encoding
// options), kept per backend and dropped by relcache invalidation.  Only for trained
// indexes; valid until the next call that can process invalidations.
const ProductQuantizer* GetQuantizer(Relation index);

// The index's 8-bit scalar quantizer (re-ranking records), kept like GetQuantizer's; only
// for indexes with records (meta.record_bytes > 0).
const ScalarQuantizer* GetScalarQuantizer(Relation index);

// The quantizer options that encoding depends on, from the options the build resolved (and
// froze in the metapage): the build's participants and later inserts encode with these.
PqOptions EncodingOptions(uint32 dims_per_subspace, float anisotropic_threshold);

// Registers the invalidation callback of GetQuantizer's cache (from _PG_init).
void InitQuantizerCache();

// First page of a list's chain, from the cached state when it is known.
BlockNumber ListFirstPage(Relation index, uint32 list);

// The cached state of an index (built on first use after each relcache load).
const IndexState* GetIndexState(Relation index);

// For an index built on an empty table (dimension 0 in the metapage): records `dims`, the
// length of the first row inserted, in the metapage (WAL-logged, not undone if that row's
// transaction aborts) and returns it; if another backend recorded one first, returns that.
uint32 LearnDims(Relation index, uint32 dims);

// Metric named by the operator class's support function 1 (defined in scann_options.cpp).
Metric IndexMetric(Relation index);

// A new page at the end of `fork`, initialised as `type`, returned exclusively locked.
Buffer NewPage(Relation index, ForkNumber fork, PageType type);
// A page for an insert, exclusively locked and initialized by InitInsertPage: a reusable
// page that VACUUM recorded in the free space map (all-zero, or kFree), or a new one.
Buffer NewInsertPage(Relation index, PageType type);

// InitPage for a page an insert adds, stamped with the inserting transaction's id (the
// orphan protocol in scann_page.h).
void InitInsertPage(Page page, PageType type);

// Whether an insert may take this page: all-zero, or taken back by VACUUM (kFree).
bool PageIsReusable(Page page);

// Initialises a page image (build and GenericXLog images alike).
void InitPage(Page page, PageType type);

// Writes `bytes` bytes as a stream over consecutive new pages of `fork`; returns the first
// block and sets *pages.  Build only (the pages are WAL-logged by the caller's newpage range).
BlockNumber WriteStream(Relation index, ForkNumber fork, const void* data, size_t bytes,
                        uint32* pages);

// Reads `bytes` bytes of the stream starting at `start` into out.
void ReadStream(Relation index, BlockNumber start, void* out, size_t bytes);

// Opens `relid` with `lockmode` if it is a valid scann index whose table the caller may read
// (SELECT), else raises a user error with its SQLSTATE; `function` names the caller in
// messages.  Existence, kind and privilege are checked before the lock is taken.
Relation OpenScannIndex(Oid relid, LOCKMODE lockmode, const char* function);

// Reads the metapage, checking magic and version.
ScannMetaPage ReadMetaPage(Relation index);

// Directory entry of one list, read under a share lock.
ScannListEntry ReadListEntry(Relation index, const ScannMetaPage& meta, uint32 list);

// Applies `update` to one list's directory entry under an exclusive lock, WAL-logged.
template <typename Update>
void UpdateListEntry(Relation index, const ScannMetaPage& meta, uint32 list, Update update);

// Location of a list's directory entry.
inline BlockNumber ListEntryBlock(const ScannMetaPage& meta, uint32 list) {
  return meta.directory_start + list / kEntriesPerPage;
}
inline ScannListEntry* ListEntryIn(Page page, uint32 list) {
  return reinterpret_cast<ScannListEntry*>(PagePayload(page)) + list % kEntriesPerPage;
}

// Units used on a list page, and marking them used.
inline uint32 PageUnits(Page page) {
  return (((PageHeader)page)->pd_lower - MAXALIGN(SizeOfPageHeaderData)) / kUnitBytes;
}
inline void SetPageUnits(Page page, uint32 units) {
  ((PageHeader)page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + units * kUnitBytes;
}
inline uint8_t* PageUnit(Page page, uint32 unit) {
  return reinterpret_cast<uint8_t*>(PagePayload(page)) + size_t(unit) * kUnitBytes;
}

// Creates a T with `new` inside CppGuard and ties its lifetime to `context`: the object is
// deleted when the context is reset or deleted, including during error cleanup, so C++
// objects held by PostgreSQL-style code never leak.
template <typename T, typename... Args>
T* NewInContext(MemoryContext context, Args&&... args);

namespace detail {
// The callback record is allocated before the object so that arming it cannot fail.
void* PrepareDeleter(MemoryContext context);
void ArmDeleter(MemoryContext context, void* prepared, void (*deleter)(void*), void* object);
}  // namespace detail

template <typename T, typename... Args>
T* NewInContext(MemoryContext context, Args&&... args) {
  void* prepared = detail::PrepareDeleter(context);
  T* object = CppGuard([&] { return new T(std::forward<Args>(args)...); });
  detail::ArmDeleter(
      context, prepared, [](void* p) { delete static_cast<T*>(p); }, object);
  return object;
}

template <typename Update>
void UpdateListEntry(Relation index, const ScannMetaPage& meta, uint32 list, Update update) {
  Buffer buf = ReadBuffer(index, ListEntryBlock(meta, list));
  LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
  GenericXLogState* state = GenericXLogStart(index);
  Page page = GenericXLogRegisterBuffer(state, buf, 0);
  update(ListEntryIn(page, list));
  GenericXLogFinish(state);
  UnlockReleaseBuffer(buf);
}

}  // namespace scann::pg
