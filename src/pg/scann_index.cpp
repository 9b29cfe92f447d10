#include "pg/scann_index.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "core/kmeans.h"
#include "pg/scann_options.h"

extern "C" {
#include "access/generic_xlog.h"
#include "utils/syscache.h"
#include "utils/lsyscache.h"
#include "utils/acl.h"
#include "commands/defrem.h"
#include "catalog/pg_class.h"
#include "catalog/index.h"
#include "access/relation.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "storage/indexfsm.h"
#include "storage/lmgr.h"
#include "utils/inval.h"
#include "utils/memutils.h"
}

namespace scann::pg {

void InitPage(Page page, PageType type) {
  PageInit(page, BLCKSZ, sizeof(ScannPageOpaque));
  ScannPageOpaque* opaque = PageOpaque(page);
  opaque->next = InvalidBlockNumber;
  opaque->type = static_cast<uint16>(type);
  opaque->page_id = kScannPageId;
}

Buffer NewPage(Relation index, ForkNumber fork, PageType type) {
  // Extension lock: concurrent inserts may extend the same index.
  bool need_lock = !RELATION_IS_LOCAL(index) || fork == INIT_FORKNUM;
  if (need_lock) LockRelationForExtension(index, ExclusiveLock);
  Buffer buf = ReadBufferExtended(index, fork, P_NEW, RBM_NORMAL, nullptr);
  LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
  if (need_lock) UnlockRelationForExtension(index, ExclusiveLock);
  InitPage(BufferGetPage(buf), type);
  return buf;
}

void InitInsertPage(Page page, PageType type) {
  InitPage(page, type);
  ((PageHeader)page)->pd_prune_xid = GetCurrentTransactionId();
}

bool PageIsReusable(Page page) {
  return PageIsNew(page) || (PageOpaque(page)->page_id == kScannPageId &&
                             PageOpaque(page)->type == uint16(PageType::kFree));
}

Buffer NewInsertPage(Relation index, PageType type) {
  for (;;) {
    BlockNumber blkno = GetFreeIndexPage(index);  // marks it used in the map
    if (blkno == InvalidBlockNumber) break;
    // The map is only a hint (not WAL-logged, stale after a promotion): a page is reused
    // only if it is still reusable under our exclusive lock.  No waiting for the lock:
    // the caller holds a list page's lock, and a locked page is in use anyway.
    if (blkno >= RelationGetNumberOfBlocks(index)) continue;
    Buffer buf = ReadBuffer(index, blkno);
    if (ConditionalLockBuffer(buf)) {
      if (PageIsReusable(BufferGetPage(buf))) {
        InitInsertPage(BufferGetPage(buf), type);
        return buf;
      }
      LockBuffer(buf, BUFFER_LOCK_UNLOCK);
    }
    ReleaseBuffer(buf);
  }
  Buffer buf = NewPage(index, MAIN_FORKNUM, type);
  InitInsertPage(BufferGetPage(buf), type);
  return buf;
}

BlockNumber WriteStream(Relation index, ForkNumber fork, const void* data, size_t bytes,
                        uint32* pages) {
  const char* src = static_cast<const char*>(data);
  BlockNumber first = InvalidBlockNumber;
  Buffer prev = InvalidBuffer;
  *pages = 0;
  do {
    Buffer buf = NewPage(index, fork, PageType::kStream);
    Page page = BufferGetPage(buf);
    size_t chunk = Min(bytes, kPagePayload);
    if (chunk > 0) std::memcpy(PagePayload(page), src, chunk);
    ((PageHeader)page)->pd_lower += chunk;
    src += chunk;
    bytes -= chunk;
    if (first == InvalidBlockNumber) first = BufferGetBlockNumber(buf);
    if (BufferIsValid(prev)) {
      PageOpaque(BufferGetPage(prev))->next = BufferGetBlockNumber(buf);
      MarkBufferDirty(prev);
      UnlockReleaseBuffer(prev);
    }
    prev = buf;
    (*pages)++;
  } while (bytes > 0);
  MarkBufferDirty(prev);
  UnlockReleaseBuffer(prev);
  return first;
}

void ReadStream(Relation index, BlockNumber start, void* out, size_t bytes) {
  char* dst = static_cast<char*>(out);
  BlockNumber blkno = start;
  while (bytes > 0) {
    if (blkno == InvalidBlockNumber)
      ereport(ERROR,
              (errcode(ERRCODE_INDEX_CORRUPTED), errmsg("scann index \"%s\" has a truncated stream",
                                                        RelationGetRelationName(index))));
    Buffer buf = ReadBuffer(index, blkno);
    LockBuffer(buf, BUFFER_LOCK_SHARE);
    Page page = BufferGetPage(buf);
    size_t chunk = Min(bytes, kPagePayload);
    std::memcpy(dst, PagePayload(page), chunk);
    blkno = PageOpaque(page)->next;
    UnlockReleaseBuffer(buf);
    dst += chunk;
    bytes -= chunk;
  }
}

// Opens `relid` if it is a valid scann index whose table the caller may read, else raises an
// error.  Existence, kind and privilege are checked in the catalogs before the lock is taken,
// as PostgreSQL's own functions do, so that a caller without privileges does not queue
// behind the index's lock.
Relation OpenScannIndex(Oid relid, LOCKMODE lockmode, const char* function) {
  HeapTuple tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
  if (!HeapTupleIsValid(tuple))
    ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
                    errmsg("relation with OID %u does not exist", relid)));
  const Form_pg_class form = reinterpret_cast<Form_pg_class>(GETSTRUCT(tuple));
  const bool is_scann =
      form->relkind == RELKIND_INDEX && form->relam == get_index_am_oid("scann", false);
  ReleaseSysCache(tuple);
  if (!is_scann)
    ereport(ERROR, (errcode(ERRCODE_WRONG_OBJECT_TYPE),
                    errmsg("\"%s\" is not a scann index", get_rel_name(relid)),
                    errhint("Pass the name of an index created USING scann.")));
  const Oid heap = IndexGetRelation(relid, true);
  if (heap != InvalidOid && pg_class_aclcheck(heap, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
    ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                    errmsg("permission denied for table %s", get_rel_name(heap)),
                    errdetail("%s needs SELECT on the indexed table.", function)));
  Relation index = try_relation_open(relid, lockmode);
  if (index == nullptr)  // dropped while we waited for the lock
    ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
                    errmsg("relation with OID %u does not exist", relid)));
  if (!index->rd_index->indisvalid || RelationGetNumberOfBlocks(index) == 0)
    ereport(ERROR,
            (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
             errmsg("scann index \"%s\" is not valid", RelationGetRelationName(index)),
             errdetail("A CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY that failed or was "
                       "cancelled left it behind, or it is being built right now."),
             errhint("DROP INDEX or REINDEX INDEX it.")));
  return index;
}

ScannMetaPage ReadMetaPage(Relation index) {
  Buffer buf = ReadBuffer(index, kMetaBlock);
  LockBuffer(buf, BUFFER_LOCK_SHARE);
  ScannMetaPage meta = *MetaPageData(BufferGetPage(buf));
  UnlockReleaseBuffer(buf);
  if (meta.magic != kScannMagic)
    ereport(ERROR, (errcode(ERRCODE_INDEX_CORRUPTED),
                    errmsg("\"%s\" is not a scann index", RelationGetRelationName(index))));
  if (meta.version != kScannFormatVersion)
    ereport(ERROR, (errcode(ERRCODE_INDEX_CORRUPTED),
                    errmsg("scann index \"%s\" has format version %u, expected %u",
                           RelationGetRelationName(index), meta.version, kScannFormatVersion),
                    errhint("REINDEX the index.")));
  return meta;
}

const IndexState* GetIndexState(Relation index) {
  if (index->rd_amcache) return static_cast<const IndexState*>(index->rd_amcache);
  ScannMetaPage meta = ReadMetaPage(index);
  // An untrained index wrote empty centroid and codebook streams (one empty page each).
  size_t centroid_floats = meta.trained ? size_t(meta.lists) * meta.dims : 0;
  size_t codebook_floats = meta.trained ? size_t(meta.subspaces) * 16 * meta.dims_per_subspace : 0;
  size_t norm_floats = meta.trained ? meta.lists : 0;
  const size_t partition_bytes =
      meta.partition_start != InvalidBlockNumber ? meta.partition_bytes : 0;
  const size_t sq8_floats = meta.record_bytes > 0 ? 2 * size_t(meta.dims) : 0;
  char* mem = static_cast<char*>(MemoryContextAllocHuge(
      index->rd_indexcxt,
      MAXALIGN(sizeof(IndexState)) +
          (centroid_floats + codebook_floats + norm_floats + sq8_floats) * sizeof(float) +
          sizeof(BlockNumber) * meta.lists + MAXALIGN(partition_bytes)));
  IndexState* state = reinterpret_cast<IndexState*>(mem);
  float* centroids = reinterpret_cast<float*>(mem + MAXALIGN(sizeof(IndexState)));
  float* codebooks = centroids + centroid_floats;
  float* norms = codebooks + codebook_floats;
  float* sq8 = norms + norm_floats;
  BlockNumber* list_first = reinterpret_cast<BlockNumber*>(sq8 + sq8_floats);
  char* partition = reinterpret_cast<char*>(list_first + meta.lists);
  ReadStream(index, meta.centroid_start, centroids, centroid_floats * sizeof(float));
  ReadStream(index, meta.codebook_start, codebooks, codebook_floats * sizeof(float));
  if (partition_bytes > 0) ReadStream(index, meta.partition_start, partition, partition_bytes);
  if (sq8_floats > 0) ReadStream(index, meta.sq8_start, sq8, sq8_floats * sizeof(float));
  // The directory is read once, only for the first pages; it is not kept.
  ScannListEntry* entries =
      static_cast<ScannListEntry*>(palloc(sizeof(ScannListEntry) * Max(meta.lists, 1u)));
  ReadStream(index, meta.directory_start, entries, sizeof(ScannListEntry) * meta.lists);
  for (uint32 i = 0; i < meta.lists; i++) list_first[i] = entries[i].first;
  pfree(entries);
  if (meta.trained)
    CppGuard([&] { CentroidNorms(centroids, int(meta.lists), int(meta.dims), norms); });
  state->meta = meta;
  state->centroids = centroids;
  state->codebooks = codebooks;
  state->list_first = list_first;
  state->norms = meta.trained ? norms : nullptr;
  state->partition = partition_bytes > 0 ? partition : nullptr;
  state->sq8 = sq8_floats > 0 ? sq8 : nullptr;
  index->rd_amcache = state;
  return state;
}

uint32 LearnDims(Relation index, uint32 dims) {
  Buffer buf = ReadBuffer(index, kMetaBlock);
  LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
  uint32 known = MetaPageData(BufferGetPage(buf))->dims;
  if (known == 0) {
    GenericXLogState* state = GenericXLogStart(index);
    MetaPageData(GenericXLogRegisterBuffer(state, buf, 0))->dims = dims;
    GenericXLogFinish(state);
    known = dims;
    CacheInvalidateRelcache(index);  // other backends' cached metapage copies
  }
  UnlockReleaseBuffer(buf);
  // This backend's cached copy: the invalidation reaches it only at the next command.
  const_cast<IndexState*>(GetIndexState(index))->meta.dims = known;
  return known;
}

namespace {

// Quantizers rebuilt from stored codebooks cost a copy and a transpose of every codebook:
// worth keeping across queries.  Keyed by relation and relfilenode (REINDEX gives a new one).
struct CachedQuantizer {
  Oid relid;
  RelFileNode node;
  std::unique_ptr<ProductQuantizer> pq;
  std::unique_ptr<ScalarQuantizer> sq;  // with re-ranking records only
};

std::vector<CachedQuantizer>* g_quantizers = nullptr;

void ForgetQuantizers(Datum, Oid relid) {
  if (!g_quantizers) return;
  auto& v = *g_quantizers;
  v.erase(std::remove_if(
              v.begin(), v.end(),
              [&](const CachedQuantizer& c) { return relid == InvalidOid || c.relid == relid; }),
          v.end());
}

}  // namespace

void InitQuantizerCache() { CacheRegisterRelcacheCallback(ForgetQuantizers, 0); }

PqOptions EncodingOptions(uint32 dims_per_subspace, float anisotropic_threshold) {
  PqOptions o;
  o.dims_per_subspace = int(dims_per_subspace);
  o.anisotropic = anisotropic_threshold > 0;
  o.threshold = o.anisotropic ? anisotropic_threshold : 0.2f;
  return o;
}

const ProductQuantizer* GetQuantizer(Relation index) {
  const IndexState* state = GetIndexState(index);
  const ScannMetaPage& meta = state->meta;
  return CppGuard([&]() -> const ProductQuantizer* {
    if (!g_quantizers) g_quantizers = new std::vector<CachedQuantizer>();
    for (const CachedQuantizer& c : *g_quantizers)
      if (c.relid == RelationGetRelid(index) && RelFileNodeEquals(c.node, index->rd_node))
        return c.pq.get();
    auto pq = std::make_unique<ProductQuantizer>(
        int(meta.dims), EncodingOptions(meta.dims_per_subspace, meta.anisotropic_threshold),
        state->codebooks);
    std::unique_ptr<ScalarQuantizer> sq;
    if (state->sq8) sq = std::make_unique<ScalarQuantizer>(int(meta.dims), state->sq8);
    g_quantizers->push_back(
        {RelationGetRelid(index), index->rd_node, std::move(pq), std::move(sq)});
    return g_quantizers->back().pq.get();
  });
}

const ScalarQuantizer* GetScalarQuantizer(Relation index) {
  GetQuantizer(index);  // loads the entry
  for (const CachedQuantizer& c : *g_quantizers)
    if (c.relid == RelationGetRelid(index) && RelFileNodeEquals(c.node, index->rd_node))
      return c.sq.get();
  return nullptr;
}

BlockNumber ListFirstPage(Relation index, uint32 list) {
  const IndexState* state = GetIndexState(index);
  BlockNumber first = state->list_first[list];
  return first != InvalidBlockNumber ? first : ReadListEntry(index, state->meta, list).first;
}

ScannListEntry ReadListEntry(Relation index, const ScannMetaPage& meta, uint32 list) {
  Buffer buf = ReadBuffer(index, ListEntryBlock(meta, list));
  LockBuffer(buf, BUFFER_LOCK_SHARE);
  ScannListEntry entry = *ListEntryIn(BufferGetPage(buf), list);
  UnlockReleaseBuffer(buf);
  return entry;
}

namespace detail {

namespace {
struct Deleter {
  MemoryContextCallback callback;
  void (*deleter)(void*);
  void* object;
};

void RunDeleter(void* arg) {
  Deleter* d = static_cast<Deleter*>(arg);
  d->deleter(d->object);
}
}  // namespace

void* PrepareDeleter(MemoryContext context) {
  return MemoryContextAllocZero(context, sizeof(Deleter));
}

void ArmDeleter(MemoryContext context, void* prepared, void (*deleter)(void*), void* object) {
  Deleter* d = static_cast<Deleter*>(prepared);
  d->deleter = deleter;
  d->object = object;
  d->callback.func = RunDeleter;
  d->callback.arg = d;
  MemoryContextRegisterResetCallback(context, &d->callback);
}

}  // namespace detail

}  // namespace scann::pg
