// VACUUM of the list-based variants: ambulkdelete frees the slots of dead TIDs;
// amvacuumcleanup takes back pages no list reaches (the orphan protocol of scann_page.h) and
// reports statistics.
#include <cstring>

#include "pg/scann_index.h"
#include "pg/scann_list.h"
#include "pg/scann_variant.h"

extern "C" {
#include "access/generic_xlog.h"
#include "access/transam.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/indexfsm.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
}

namespace scann::pg {

namespace {

// Rewrites an orphaned chain page (the protocol in scann_page.h) as kFree; false when,
// under the exclusive lock, it is no longer the page the pass read.
bool TakeBackOrphan(Relation index, BlockNumber blkno, TransactionId stamp) {
  Buffer buf = ReadBuffer(index, blkno);
  LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
  Page page = BufferGetPage(buf);
  const bool same = !PageIsReusable(page) && ((PageHeader)page)->pd_prune_xid == stamp;
  if (same) {
    GenericXLogState* state = GenericXLogStart(index);
    InitPage(GenericXLogRegisterBuffer(state, buf, GENERIC_XLOG_FULL_IMAGE), PageType::kFree);
    GenericXLogFinish(state);
  }
  UnlockReleaseBuffer(buf);
  return same;
}

// One pass over every page after the metapage: records the reusable pages in the free
// space map, for inserts to reuse, and returns how many there are; with `live`, also counts
// the valid slots of the home pages.  Reusable are:
//  * all-zero pages, added by an insert that crashed before the WAL record linking them
//    into a chain (relation extension is not WAL-logged).  A page being added right now is
//    never seen all-zero: the extension lock, held here while the length is read, is held
//    by an inserter until it has locked its new page, and the share lock taken here waits
//    until the page is initialized;
//  * kFree pages, and the orphaned chain pages this pass takes back as kFree (the protocol
//    in scann_page.h): pages of an insert that failed or crashed before linking them.
// Every slot holding a valid TID is on a chain (a slot's TID and the link to its page are
// written in the same record), so counting page by page counts what the chains hold.
BlockNumber ScanPages(Relation index, const ScannMetaPage& meta, BufferAccessStrategy strategy,
                      double* live) {
  // Read before any page: an insert whose transaction ended earlier has linked every page
  // it will ever link.
  const TransactionId horizon = GetOldestActiveTransactionId();
  const bool need_lock = !RELATION_IS_LOCAL(index);
  if (need_lock) LockRelationForExtension(index, ExclusiveLock);
  const BlockNumber nblocks = RelationGetNumberOfBlocks(index);
  if (need_lock) UnlockRelationForExtension(index, ExclusiveLock);
  // Per page: the `next` link read (chain pages), and the stamp of the chain pages an
  // ended transaction added (orphans unless a chain reaches them).
  BlockNumber* next = static_cast<BlockNumber*>(
      palloc_extended(sizeof(BlockNumber) * Max(nblocks, 1u), MCXT_ALLOC_HUGE));
  TransactionId* ended = static_cast<TransactionId*>(
      palloc_extended(sizeof(TransactionId) * Max(nblocks, 1u), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO));
  BlockNumber free_pages = 0, candidates = 0;
  // The record pages the blocks of each home page locate, as (home page, record page).
  struct Located {
    BlockNumber home;
    BlockNumber records;
  };
  Located* located = nullptr;
  size_t nlocated = 0, located_cap = 0;
  const uint32 record_pages = meta.record_bytes > 0 ? RecordPagesPerBlock(meta.record_bytes) : 0;
  for (BlockNumber blkno = 0; blkno < nblocks; blkno++) next[blkno] = InvalidBlockNumber;
  for (BlockNumber blkno = kMetaBlock + 1; blkno < nblocks; blkno++) {
    vacuum_delay_point();
    Buffer buf = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL, strategy);
    LockBuffer(buf, BUFFER_LOCK_SHARE);
    Page page = BufferGetPage(buf);
    const uint16 type = PageIsNew(page) ? 0 : PageOpaque(page)->type;
    if (PageIsReusable(page)) {
      RecordFreeIndexPage(index, blkno);
      free_pages++;
    } else if (type == uint16(PageType::kList) || type == uint16(PageType::kListContinuation) ||
               type == uint16(PageType::kRecords)) {
      if (type != uint16(PageType::kRecords)) next[blkno] = PageOpaque(page)->next;
      const TransactionId stamp = ((PageHeader)page)->pd_prune_xid;
      if (TransactionIdIsNormal(stamp) && TransactionIdPrecedes(stamp, horizon)) {
        ended[blkno] = stamp;
        candidates++;
      }
      if (live && type == uint16(PageType::kList))
        ForEachSlot(meta, page, [&](ItemPointer tid) { *live += ItemPointerIsValid(tid); });
      if (record_pages > 0 && type == uint16(PageType::kList))
        ForEachBlock(meta, page, [&](const uint8_t* block) {
          const uint8_t* locator = block + kTidUnits * kUnitBytes;
          const uint32 pages = Min(record_pages, RunPages(locator, meta.record_bytes));
          for (uint32 p = 0; p < pages; p++) {
            if (nlocated == located_cap) {
              located_cap = Max(located_cap * 2, size_t(1024));
              located = static_cast<Located*>(
                  located ? repalloc_huge(located, sizeof(Located) * located_cap)
                          : palloc_extended(sizeof(Located) * located_cap, MCXT_ALLOC_HUGE));
            }
            located[nlocated++] = {blkno, LocatorPage(locator, p)};
          }
        });
    }
    UnlockReleaseBuffer(buf);
  }
  if (candidates > 0) {
    // Everything the chains reach, through the links as read: a link made after a page
    // was read belongs to a transaction that had not ended at the horizon.
    for (uint32 list = 0; list < meta.lists; list++) {
      for (BlockNumber b = ListFirstPage(index, list);
           b < nblocks && ended[b] != FrozenTransactionId;) {
        ended[b] = FrozenTransactionId;  // reached
        b = next[b];
      }
    }
    // ... and the record pages the blocks of reached home pages locate.
    for (size_t i = 0; i < nlocated; i++)
      if (ended[located[i].home] == FrozenTransactionId && located[i].records < nblocks)
        ended[located[i].records] = FrozenTransactionId;
    for (BlockNumber blkno = kMetaBlock + 1; blkno < nblocks; blkno++) {
      if (!TransactionIdIsNormal(ended[blkno])) continue;
      vacuum_delay_point();
      if (TakeBackOrphan(index, blkno, ended[blkno])) {
        RecordFreeIndexPage(index, blkno);
        free_pages++;
      }
    }
  }
  pfree(next);
  pfree(ended);
  if (located) pfree(located);
  IndexFreeSpaceMapVacuum(index);
  return free_pages;
}

}  // namespace

IndexBulkDeleteResult* ListBulkDelete(IndexVacuumInfo* info, IndexBulkDeleteResult* stats,
                                      IndexBulkDeleteCallback callback, void* callback_state) {
  Relation index = info->index;
  if (stats == nullptr)
    stats = static_cast<IndexBulkDeleteResult*>(palloc0(sizeof(IndexBulkDeleteResult)));
  ScannMetaPage meta = ReadMetaPage(index);
  // Lowest page of each list where a slot was freed: inserts start looking there.
  BlockNumber* freed_at = static_cast<BlockNumber*>(palloc(sizeof(BlockNumber) * meta.lists));
  for (uint32 i = 0; i < meta.lists; i++) freed_at[i] = InvalidBlockNumber;
  double live = 0;
  // Slot ordinals (in ForEachSlot order) of the dead TIDs of one page: at most every slot
  // of the smallest blocks (TIDs only) that fit in a page.
  uint16 dead[(kUnitsPerPage / kTidUnits) * 32];
  // Continuation pages hold no TIDs.
  ForEachListPage(index, meta, BUFFER_LOCK_EXCLUSIVE, [&](uint32 list, Buffer buf, Page page) {
    if (PageOpaque(page)->type != uint16(PageType::kList)) return;
    int ndead = 0, ordinal = 0;
    ForEachSlot(meta, page, [&](ItemPointer tid) {
      int i = ordinal++;
      if (!ItemPointerIsValid(tid)) return;
      ItemPointerData copy;
      std::memcpy(&copy, tid, sizeof(copy));
      if (callback(&copy, callback_state))
        dead[ndead++] = uint16(i);
      else
        live += 1;
    });
    if (ndead == 0) return;
    GenericXLogState* state = GenericXLogStart(index);
    Page image = GenericXLogRegisterBuffer(state, buf, 0);
    int next = 0;
    ordinal = 0;
    ForEachSlot(meta, image, [&](ItemPointer tid) {
      if (next < ndead && dead[next] == ordinal) {
        std::memset(static_cast<void*>(tid), 0, sizeof(ItemPointerData));
        next++;
      }
      ordinal++;
    });
    stats->tuples_removed += ndead;
    GenericXLogFinish(state);
    if (freed_at[list] == InvalidBlockNumber) freed_at[list] = BufferGetBlockNumber(buf);
  });
  // Chains only grow at their tails, so the first page where a slot was freed is the
  // earliest place an insert can find room.
  for (uint32 list = 0; list < meta.lists; list++) {
    if (freed_at[list] == InvalidBlockNumber) continue;
    BlockNumber at = freed_at[list];
    UpdateListEntry(index, meta, list, [&](ScannListEntry* e) { e->insert_hint = at; });
  }
  stats->num_index_tuples = live;
  stats->num_pages = RelationGetNumberOfBlocks(index);
  return stats;
}

IndexBulkDeleteResult* ListCleanup(IndexVacuumInfo* info, IndexBulkDeleteResult* stats) {
  if (info->analyze_only) return stats;
  Relation index = info->index;
  double live = 0;
  const bool count = stats == nullptr;  // no bulk delete ran (nothing dead): count here
  if (count) stats = static_cast<IndexBulkDeleteResult*>(palloc0(sizeof(IndexBulkDeleteResult)));
  stats->pages_free =
      ScanPages(index, ReadMetaPage(index), info->strategy, count ? &live : nullptr);
  if (count) stats->num_index_tuples = live;
  stats->num_pages = RelationGetNumberOfBlocks(index);
  stats->estimated_count = false;
  return stats;
}

}  // namespace scann::pg
