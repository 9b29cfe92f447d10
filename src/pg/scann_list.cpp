#include "pg/scann_list.h"

#include <algorithm>
#include <cstring>

#include "core/fastscan.h"
#include "core/kmeans.h"
#include "pg/scann_options.h"
#include "pg/scann_variant.h"

extern "C" {
#include "miscadmin.h"
}

namespace scann::pg {

void BlockPackerInit(BlockPacker* packer, const ScannMetaPage& meta) {
  packer->subspaces = meta.subspaces;
  packer->block_units = meta.block_units;
  packer->count = 0;
  packer->codes = static_cast<uint8_t*>(palloc0(std::max<size_t>(32 * meta.subspaces, 1)));
  packer->block = static_cast<uint8_t*>(palloc0(size_t(meta.block_units) * kUnitBytes));
}

namespace {

// Packs the collected pairs into packer->block; unused slots keep invalid (zero) TIDs.
void PackBlock(BlockPacker* packer) {
  std::memset(packer->block, 0, size_t(packer->block_units) * kUnitBytes);
  for (int i = 0; i < packer->count; i++) *SlotTid(packer->block, i) = packer->tids[i];
  if (packer->subspaces > 0)
    FastScanPackBlock(packer->codes, packer->count, int(packer->subspaces),
                      packer->block + kTidUnits * kUnitBytes);
  packer->count = 0;
}

// Links a new page after `prev` (build: no WAL) and makes it current.
void ChainWriterNewPage(ChainWriter* writer, PageType type) {
  Buffer buf = NewPage(writer->index, writer->fork, type);
  if (BufferIsValid(writer->current)) {
    PageOpaque(BufferGetPage(writer->current))->next = BufferGetBlockNumber(buf);
    MarkBufferDirty(writer->current);
    UnlockReleaseBuffer(writer->current);
  } else {
    writer->first = BufferGetBlockNumber(buf);
  }
  writer->current = buf;
}

// Copies `units` units to the end of the current page.
void ChainWriterCopy(ChainWriter* writer, const uint8_t* src, uint32 units) {
  Page page = BufferGetPage(writer->current);
  uint32 used = PageUnits(page);
  std::memcpy(PageUnit(page, used), src, size_t(units) * kUnitBytes);
  SetPageUnits(page, used + units);
}

}  // namespace

bool BlockPackerAdd(BlockPacker* packer, ItemPointer tid, const uint8_t* codes) {
  packer->tids[packer->count] = *tid;
  std::memcpy(packer->codes + size_t(packer->count) * packer->subspaces, codes, packer->subspaces);
  if (++packer->count < 32) return false;
  PackBlock(packer);
  return true;
}

void ChainWriterInit(ChainWriter* writer, Relation index, ForkNumber fork, uint32 block_units) {
  writer->index = index;
  writer->fork = fork;
  writer->block_units = block_units;
  writer->current = InvalidBuffer;
  writer->first = InvalidBlockNumber;
  writer->last_home = InvalidBlockNumber;
}

void ChainWriterAppend(ChainWriter* writer, const uint8_t* block) {
  const uint32 s = writer->block_units;
  if (s <= kUnitsPerPage) {
    if (!BufferIsValid(writer->current) ||
        PageUnits(BufferGetPage(writer->current)) + s > kUnitsPerPage)
      ChainWriterNewPage(writer, PageType::kList);
    writer->last_home = BufferGetBlockNumber(writer->current);
    ChainWriterCopy(writer, block, s);
  } else {
    for (uint32 done = 0; done < s; done += kUnitsPerPage) {
      ChainWriterNewPage(writer, done == 0 ? PageType::kList : PageType::kListContinuation);
      if (done == 0) writer->last_home = BufferGetBlockNumber(writer->current);
      ChainWriterCopy(writer, block + size_t(done) * kUnitBytes, Min(kUnitsPerPage, s - done));
    }
  }
}

void FinishList(BlockPacker* packer, ChainWriter* writer, ScannListEntry* entry) {
  if (packer->count > 0) {
    PackBlock(packer);
    ChainWriterAppend(writer, packer->block);
  }
  BlockNumber last = BufferGetBlockNumber(writer->current);
  MarkBufferDirty(writer->current);
  UnlockReleaseBuffer(writer->current);
  writer->current = InvalidBuffer;
  *entry = {writer->first, last, writer->last_home};
}

void WriteDirectory(Relation index, ForkNumber fork, const ScannMetaPage& meta,
                    const ScannListEntry* entries) {
  for (uint32 p = 0; p < meta.directory_pages; p++) {
    uint32 begin = p * kEntriesPerPage, end = Min(meta.lists, begin + kEntriesPerPage);
    Buffer buf = ReadBufferExtended(index, fork, meta.directory_start + p, RBM_NORMAL, nullptr);
    LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
    std::memcpy(PagePayload(BufferGetPage(buf)), entries + begin,
                sizeof(ScannListEntry) * (end - begin));
    MarkBufferDirty(buf);
    UnlockReleaseBuffer(buf);
  }
}

void EncodeInList(const ProductQuantizer* pq, const float* centroids, int dims, uint32 list,
                  const float* vec, float* residual, uint8_t* codes) {
  CppGuard([&] {
    const float* c = centroids + size_t(list) * dims;
    for (int j = 0; j < dims; j++) residual[j] = vec[j] - c[j];
    pq->Encode(residual, vec, codes);
  });
}

// ---- Insert ------------------------------------------------------------------------------

namespace {

// Writes one slot's codes for the block units [unit_begin, unit_begin + units) that lie at
// `dst` (the TID units 0..kTidUnits-1 are skipped: the TID is written separately, last).
void WriteSlotCodes(uint8_t* dst, uint32 unit_begin, uint32 units, uint32 subspaces, int slot,
                    const uint8_t* codes) {
  uint32 unit_end = unit_begin + units;
  if (unit_end <= kTidUnits || subspaces == 0) return;
  uint32 first = Max(unit_begin, kTidUnits);
  dst += size_t(first - unit_begin) * kUnitBytes;
  FastScanSetSlot(dst, int(first - kTidUnits), int(unit_end - first), int(subspaces), slot, codes);
}

// Registers buffers with GenericXLog in batches of at most MAX_GENERIC_XLOG_PAGES.
struct WalBatch {
  Relation index;
  GenericXLogState* state;
  Buffer buffers[MAX_GENERIC_XLOG_PAGES];
  int count;
};

void WalBatchStart(WalBatch* batch, Relation index) {
  batch->index = index;
  batch->state = nullptr;
  batch->count = 0;
}

// Finishes the open record and releases its buffers (except those in `keep`).
void WalBatchFinish(WalBatch* batch, Buffer keep) {
  if (batch->state) GenericXLogFinish(batch->state);
  for (int i = 0; i < batch->count; i++)
    if (batch->buffers[i] != keep) UnlockReleaseBuffer(batch->buffers[i]);
  batch->state = nullptr;
  batch->count = 0;
}

Page WalBatchAdd(WalBatch* batch, Buffer buf, int flags) {
  if (batch->count == MAX_GENERIC_XLOG_PAGES) WalBatchFinish(batch, InvalidBuffer);
  if (!batch->state) batch->state = GenericXLogStart(batch->index);
  batch->buffers[batch->count++] = buf;
  return GenericXLogRegisterBuffer(batch->state, buf, flags);
}

// Writes slot `slot` of a block spanning pages whose home page is `home` (locked, image
// registered by the caller as `home_page`): codes on the continuation pages first, in their
// own records when there are many; `fresh` pages were just allocated and are already
// locked and given in conts[].
void WriteSpanningSlot(Relation index, const ScannMetaPage& meta, Page home_page, Buffer home,
                       int slot, const uint8_t* codes, const Buffer* fresh) {
  const uint32 s = meta.block_units;
  const uint32 pages = PagesPerBlock(s);
  WalBatch batch;
  WalBatchStart(&batch, index);
  BlockNumber next = PageOpaque(home_page)->next;
  for (uint32 j = 1; j < pages; j++) {
    Buffer buf;
    if (fresh) {
      buf = fresh[j];
    } else {
      buf = ReadBuffer(index, next);
      LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
    }
    Page page = WalBatchAdd(&batch, buf, fresh ? GENERIC_XLOG_FULL_IMAGE : 0);
    if (fresh) {
      InitInsertPage(page, PageType::kListContinuation);
      SetPageUnits(page, Min(kUnitsPerPage, s - j * kUnitsPerPage));
      if (j + 1 < pages) PageOpaque(page)->next = BufferGetBlockNumber(fresh[j + 1]);
    }
    next = PageOpaque(page)->next;
    uint32 begin = j * kUnitsPerPage;
    WriteSlotCodes(PageUnit(page, 0), begin, Min(kUnitsPerPage, s - begin), meta.subspaces, slot,
                   codes);
  }
  WalBatchFinish(&batch, InvalidBuffer);
}

// Tries to fill a free slot of a block whose home is this page; true when done.  The page
// is locked exclusively by the caller.
bool FillFreeSlot(Relation index, const ScannMetaPage& meta, Buffer buf, ItemPointer tid,
                  const uint8_t* codes) {
  Page page = BufferGetPage(buf);
  if (PageOpaque(page)->type != uint16(PageType::kList)) return false;
  const uint32 s = meta.block_units, used = PageUnits(page);
  const uint32 step = s <= kUnitsPerPage ? s : used + 1;
  for (uint32 u = 0; u + Min(s, kUnitsPerPage) <= used; u += step) {
    for (int slot = 0; slot < 32; slot++) {
      if (ItemPointerIsValid(SlotTid(PageUnit(page, u), slot))) continue;
      if (s > kUnitsPerPage) WriteSpanningSlot(index, meta, page, buf, slot, codes, nullptr);
      GenericXLogState* state = GenericXLogStart(index);
      Page image = GenericXLogRegisterBuffer(state, buf, 0);
      WriteSlotCodes(PageUnit(image, u), 0, Min(s, kUnitsPerPage), meta.subspaces, slot, codes);
      *SlotTid(PageUnit(image, u), slot) = *tid;
      GenericXLogFinish(state);
      return true;
    }
  }
  return false;
}

// Starts a new block holding only (tid, codes) at the tail page `tail` (locked exclusively,
// next == Invalid); returns the new tail page.
BlockNumber AppendBlock(Relation index, const ScannMetaPage& meta, Buffer tail, ItemPointer tid,
                        const uint8_t* codes) {
  const uint32 s = meta.block_units;
  Page tail_page = BufferGetPage(tail);
  if (s <= kUnitsPerPage && PageUnits(tail_page) + s <= kUnitsPerPage) {
    GenericXLogState* state = GenericXLogStart(index);
    Page image = GenericXLogRegisterBuffer(state, tail, 0);
    uint32 u = PageUnits(image);
    std::memset(PageUnit(image, u), 0, size_t(s) * kUnitBytes);
    SetPageUnits(image, u + s);
    WriteSlotCodes(PageUnit(image, u), 0, s, meta.subspaces, 0, codes);
    *SlotTid(PageUnit(image, u), 0) = *tid;
    GenericXLogFinish(state);
    return BufferGetBlockNumber(tail);
  }
  // A fresh home page (and continuation pages), linked from the tail in the last record.
  const uint32 pages = s <= kUnitsPerPage ? 1 : PagesPerBlock(s);
  Buffer* fresh = static_cast<Buffer*>(palloc(sizeof(Buffer) * pages));
  for (uint32 j = 0; j < pages; j++)
    fresh[j] = NewInsertPage(index, j == 0 ? PageType::kList : PageType::kListContinuation);
  GenericXLogState* state;
  Page home;
  if (pages > 1) {
    // Continuation pages need the home's `next` first; the home image is written below.
    PageOpaque(BufferGetPage(fresh[0]))->next = BufferGetBlockNumber(fresh[1]);
    WriteSpanningSlot(index, meta, BufferGetPage(fresh[0]), fresh[0], 0, codes, fresh);
  }
  InjectFaultBeforeLink();
  state = GenericXLogStart(index);
  Page tail_image = GenericXLogRegisterBuffer(state, tail, 0);
  home = GenericXLogRegisterBuffer(state, fresh[0], GENERIC_XLOG_FULL_IMAGE);
  InitInsertPage(home, PageType::kList);
  if (pages > 1) PageOpaque(home)->next = BufferGetBlockNumber(fresh[1]);
  uint32 home_units = Min(s, kUnitsPerPage);
  std::memset(PageUnit(home, 0), 0, size_t(home_units) * kUnitBytes);
  SetPageUnits(home, home_units);
  WriteSlotCodes(PageUnit(home, 0), 0, home_units, meta.subspaces, 0, codes);
  *SlotTid(PageUnit(home, 0), 0) = *tid;
  PageOpaque(tail_image)->next = BufferGetBlockNumber(fresh[0]);
  GenericXLogFinish(state);
  BlockNumber new_tail =
      pages > 1 ? BufferGetBlockNumber(fresh[pages - 1]) : BufferGetBlockNumber(fresh[0]);
  UnlockReleaseBuffer(fresh[0]);
  pfree(fresh);
  return new_tail;
}

// Gives an empty list its first (empty) page, linked from the directory in one record.
void CreateFirstPage(Relation index, const ScannMetaPage& meta, uint32 list) {
  Buffer dir = ReadBuffer(index, ListEntryBlock(meta, list));
  LockBuffer(dir, BUFFER_LOCK_EXCLUSIVE);
  if (ListEntryIn(BufferGetPage(dir), list)->first == InvalidBlockNumber) {
    Buffer buf = NewInsertPage(index, PageType::kList);
    GenericXLogState* state = GenericXLogStart(index);
    Page dir_image = GenericXLogRegisterBuffer(state, dir, 0);
    Page image = GenericXLogRegisterBuffer(state, buf, GENERIC_XLOG_FULL_IMAGE);
    InitInsertPage(image, PageType::kList);
    BlockNumber blkno = BufferGetBlockNumber(buf);
    ScannListEntry* entry = ListEntryIn(dir_image, list);
    entry->first = entry->last = entry->insert_hint = blkno;
    GenericXLogFinish(state);
    UnlockReleaseBuffer(buf);
  }
  UnlockReleaseBuffer(dir);
}

}  // namespace

void ListInsert(Relation index, const float* vec, ItemPointer tid) {
  const ScannMetaPage meta = GetIndexState(index)->meta;
  uint8_t* codes = static_cast<uint8_t*>(palloc0(std::max<uint32>(meta.subspaces, 1)));
  if (!meta.trained) {  // one list of TIDs
    InsertIntoList(index, meta, 0, tid, codes);
    return;
  }
  int32* lists = static_cast<int32*>(palloc(sizeof(int32) * meta.fanout));
  VariantOf(meta).partitioner->assign(ModelOf(index), vec, 1, lists);
  float* residual = static_cast<float*>(palloc(sizeof(float) * meta.dims));
  for (uint32 t = 0; t < meta.fanout; t++) {
    EncodeInList(GetQuantizer(index), GetIndexState(index)->centroids, int(meta.dims),
                 uint32(lists[t]), vec, residual, codes);
    InsertIntoList(index, meta, uint32(lists[t]), tid, codes);
  }
}

void InsertIntoList(Relation index, const ScannMetaPage& meta, uint32 list, ItemPointer tid,
                    const uint8_t* codes) {
  ScannListEntry entry = ReadListEntry(index, meta, list);
  if (entry.first == InvalidBlockNumber) {
    CreateFirstPage(index, meta, list);
    entry = ReadListEntry(index, meta, list);
  }
  BlockNumber blkno = entry.insert_hint != InvalidBlockNumber ? entry.insert_hint : entry.first;
  uint32 skipped = 0;
  for (;;) {
    Buffer buf = ReadBuffer(index, blkno);
    LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
    if (FillFreeSlot(index, meta, buf, tid, codes)) {
      UnlockReleaseBuffer(buf);
      // Pages passed without a free slot need not be searched again.
      if (skipped > 0)
        UpdateListEntry(index, meta, list, [&](ScannListEntry* e) { e->insert_hint = blkno; });
      return;
    }
    BlockNumber next = PageOpaque(BufferGetPage(buf))->next;
    if (next == InvalidBlockNumber) {
      BlockNumber new_tail = AppendBlock(index, meta, buf, tid, codes);
      UnlockReleaseBuffer(buf);
      UpdateListEntry(index, meta, list, [&](ScannListEntry* e) {
        e->last = new_tail;
        if (skipped > 0) e->insert_hint = blkno;
      });
      return;
    }
    UnlockReleaseBuffer(buf);
    blkno = next;
    skipped++;
  }
}

}  // namespace scann::pg
