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
  packer->code_unit = CodeUnit(meta);
  packer->record_bytes = meta.record_bytes;
  packer->count = 0;
  packer->codes = static_cast<uint8_t*>(palloc0(std::max<size_t>(32 * meta.subspaces, 1)));
  packer->records = static_cast<uint8_t*>(palloc0(std::max<size_t>(32 * meta.record_bytes, 1)));
  packer->block = static_cast<uint8_t*>(palloc0(size_t(meta.block_units) * kUnitBytes));
}

namespace {

// Packs the collected pairs into packer->block; unused slots keep invalid (zero) TIDs.
void PackBlock(BlockPacker* packer) {
  std::memset(packer->block, 0, size_t(packer->block_units) * kUnitBytes);
  for (int i = 0; i < packer->count; i++) *SlotTid(packer->block, i) = packer->tids[i];
  if (packer->subspaces > 0)
    FastScanPackBlock(packer->codes, packer->count, int(packer->subspaces),
                      packer->block + packer->code_unit * kUnitBytes);
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

// A new record page for the list's runs (the last one is released).
void ChainWriterNewRecordPage(ChainWriter* writer) {
  if (BufferIsValid(writer->records)) {
    MarkBufferDirty(writer->records);
    UnlockReleaseBuffer(writer->records);
  }
  writer->records = NewPage(writer->index, writer->fork, PageType::kRecords);
}

// Puts the packed block's 32 records on record pages, right after the list's last run, and
// fills the block's locator.
void ChainWriterPlaceRecords(ChainWriter* writer, BlockPacker* packer) {
  const uint32 bytes = writer->record_bytes, per_page = RecordsPerPage(bytes);
  uint8_t* locator = packer->block + kTidUnits * kUnitBytes;
  if (!BufferIsValid(writer->records) ||
      RecordsUsed(BufferGetPage(writer->records), bytes) == per_page)
    ChainWriterNewRecordPage(writer);
  const uint32 first = RecordsUsed(BufferGetPage(writer->records), bytes);
  std::memcpy(locator, &first, sizeof(first));
  SetLocatorPage(locator, 0, BufferGetBlockNumber(writer->records));
  for (uint32 g = 0, p = 0; g < 32; g++) {
    Page page = BufferGetPage(writer->records);
    uint32 used = RecordsUsed(page, bytes);
    if (used == per_page) {
      ChainWriterNewRecordPage(writer);
      page = BufferGetPage(writer->records);
      used = 0;
      SetLocatorPage(locator, ++p, BufferGetBlockNumber(writer->records));
    }
    std::memcpy(PagePayload(page) + size_t(used) * bytes, packer->records + size_t(g) * bytes,
                bytes);
    SetRecordsUsed(page, bytes, used + 1);
  }
}

// Appends the packed block image to the chain.
void ChainWriterAppendBlock(ChainWriter* writer, const uint8_t* block) {
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

// Packs the packer's rows into a block, places their records and appends the block.
void ChainWriterFlush(ChainWriter* writer, BlockPacker* packer) {
  PackBlock(packer);
  if (writer->record_bytes > 0) ChainWriterPlaceRecords(writer, packer);
  ChainWriterAppendBlock(writer, packer->block);
  packer->count = 0;
  std::memset(packer->records, 0, size_t(32) * packer->record_bytes);
}

}  // namespace

void BlockPackerAdd(BlockPacker* packer, ChainWriter* writer, ItemPointer tid, const uint8_t* codes,
                    const uint8_t* record) {
  packer->tids[packer->count] = *tid;
  std::memcpy(packer->codes + size_t(packer->count) * packer->subspaces, codes, packer->subspaces);
  if (packer->record_bytes > 0)
    std::memcpy(packer->records + size_t(packer->count) * packer->record_bytes, record,
                packer->record_bytes);
  if (++packer->count == 32) ChainWriterFlush(writer, packer);
}

void ChainWriterInit(ChainWriter* writer, Relation index, ForkNumber fork,
                     const ScannMetaPage& meta) {
  writer->index = index;
  writer->fork = fork;
  writer->block_units = meta.block_units;
  writer->record_bytes = meta.record_bytes;
  writer->current = InvalidBuffer;
  writer->records = InvalidBuffer;
  writer->first = InvalidBlockNumber;
  writer->last_home = InvalidBlockNumber;
}

void FinishList(BlockPacker* packer, ChainWriter* writer, ScannListEntry* entry) {
  if (packer->count > 0) ChainWriterFlush(writer, packer);
  BlockNumber last = BufferGetBlockNumber(writer->current);
  MarkBufferDirty(writer->current);
  UnlockReleaseBuffer(writer->current);
  writer->current = InvalidBuffer;
  if (BufferIsValid(writer->records)) {
    MarkBufferDirty(writer->records);
    UnlockReleaseBuffer(writer->records);
    writer->records = InvalidBuffer;
  }
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

void EncodeRecord(const ScalarQuantizer* sq, const float* vec, uint8_t* record) {
  CppGuard([&] {
    const float eps = sq->Encode(vec, record + sizeof(float));
    std::memcpy(record, &eps, sizeof(eps));
  });
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
// `dst` (units before code_unit, the TIDs and the locator, are skipped: the TID is written
// separately, last).
void WriteSlotCodes(uint8_t* dst, uint32 unit_begin, uint32 units, uint32 code_unit,
                    uint32 subspaces, int slot, const uint8_t* codes) {
  uint32 unit_end = unit_begin + units;
  if (unit_end <= code_unit || subspaces == 0) return;
  uint32 first = Max(unit_begin, code_unit);
  dst += size_t(first - unit_begin) * kUnitBytes;
  FastScanSetSlot(dst, int(first - code_unit), int(unit_end - first), int(subspaces), slot, codes);
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
    WriteSlotCodes(PageUnit(page, 0), begin, Min(kUnitsPerPage, s - begin), CodeUnit(meta),
                   meta.subspaces, slot, codes);
  }
  WalBatchFinish(&batch, InvalidBuffer);
}

// The record page of slot `slot` of the block at `block` (its first unit), locked
// exclusively; *offset is the record's byte offset in the payload.
Buffer LockSlotRecord(Relation index, const ScannMetaPage& meta, const uint8_t* block, int slot,
                      uint32* offset) {
  const uint64 address = RecordAddress(block + kTidUnits * kUnitBytes, meta.record_bytes, slot);
  *offset = RecordOffset(address);
  Buffer buf = ReadBuffer(index, RecordPage(address));
  LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
  return buf;
}

// Tries to fill a free slot of a block whose home is this page; true when done.  The page
// is locked exclusively by the caller.  The slot's record is written in the record that
// writes its TID.
bool FillFreeSlot(Relation index, const ScannMetaPage& meta, Buffer buf, ItemPointer tid,
                  const uint8_t* codes, const uint8_t* record) {
  Page page = BufferGetPage(buf);
  if (PageOpaque(page)->type != uint16(PageType::kList)) return false;
  const uint32 s = meta.block_units, used = PageUnits(page);
  const uint32 step = s <= kUnitsPerPage ? s : used + 1;
  for (uint32 u = 0; u + Min(s, kUnitsPerPage) <= used; u += step) {
    for (int slot = 0; slot < 32; slot++) {
      if (ItemPointerIsValid(SlotTid(PageUnit(page, u), slot))) continue;
      if (s > kUnitsPerPage) WriteSpanningSlot(index, meta, page, buf, slot, codes, nullptr);
      Buffer record_buf = InvalidBuffer;
      uint32 offset = 0;
      if (record) record_buf = LockSlotRecord(index, meta, PageUnit(page, u), slot, &offset);
      GenericXLogState* state = GenericXLogStart(index);
      Page image = GenericXLogRegisterBuffer(state, buf, 0);
      if (record) {
        Page records = GenericXLogRegisterBuffer(state, record_buf, 0);
        std::memcpy(PagePayload(records) + offset, record, meta.record_bytes);
      }
      WriteSlotCodes(PageUnit(image, u), 0, Min(s, kUnitsPerPage), CodeUnit(meta), meta.subspaces,
                     slot, codes);
      *SlotTid(PageUnit(image, u), slot) = *tid;
      GenericXLogFinish(state);
      if (record) UnlockReleaseBuffer(record_buf);
      return true;
    }
  }
  return false;
}

// Where a new block's 32 records go: `shared` is the record page the list's last run ended
// on (locked exclusively, to be registered in the WAL record that links the block), holding
// the run from record `first` on when it has room; the rest of the run is on new pages of its
// own, written (full images, slot 0's record there when it is not on `shared`) in WAL records
// of their own before the block is linked (orphans if the insert ends in between).
// `locator` is the block's.
struct NewRun {
  Buffer shared;  // InvalidBuffer: the run starts on a new page
  uint32 first;
  uint8_t* locator;
  bool new_pages;  // some of the run is on new pages
};

// Places the record run of a new block appended after the blocks of `tail_page` (locked).
NewRun PlaceNewRun(Relation index, const ScannMetaPage& meta, Page tail_page,
                   const uint8_t* record) {
  const uint32 bytes = meta.record_bytes, per_page = RecordsPerPage(bytes);
  NewRun run = {InvalidBuffer, 0,
                static_cast<uint8_t*>(palloc0(size_t(meta.locator_units) * kUnitBytes)), false};
  const uint32 s = meta.block_units, used = PageUnits(tail_page);
  if (PageOpaque(tail_page)->type == uint16(PageType::kList) && s <= kUnitsPerPage && used >= s) {
    const uint8_t* last = PageUnit(tail_page, (used / s - 1) * s) + kTidUnits * kUnitBytes;
    Buffer buf = ReadBuffer(index, LocatorPage(last, RunPages(last, bytes) - 1));
    LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
    if (RecordsUsed(BufferGetPage(buf), bytes) < per_page)
      run.shared = buf;
    else
      UnlockReleaseBuffer(buf);
  }
  const uint32 room =
      BufferIsValid(run.shared) ? per_page - RecordsUsed(BufferGetPage(run.shared), bytes) : 0;
  run.first = BufferIsValid(run.shared) ? per_page - room : 0;
  std::memcpy(run.locator, &run.first, sizeof(run.first));
  uint32 p = 0;
  if (BufferIsValid(run.shared)) SetLocatorPage(run.locator, p++, BufferGetBlockNumber(run.shared));
  WalBatch batch;
  WalBatchStart(&batch, index);
  for (uint32 placed = Min(room, 32u); placed < 32; placed += per_page) {
    Buffer buf = NewInsertPage(index, PageType::kRecords);
    Page page = WalBatchAdd(&batch, buf, GENERIC_XLOG_FULL_IMAGE);
    InitInsertPage(page, PageType::kRecords);
    SetRecordsUsed(page, bytes, Min(per_page, 32 - placed));
    if (placed == 0) std::memcpy(PagePayload(page), record, bytes);
    SetLocatorPage(run.locator, p++, BufferGetBlockNumber(buf));
    run.new_pages = true;
  }
  WalBatchFinish(&batch, InvalidBuffer);
  return run;
}

// Reserves the run's records on its shared page and writes slot 0's record there when it is
// there, in the WAL record `state` that links the block.
void FinishNewRun(GenericXLogState* state, const ScannMetaPage& meta, const NewRun& run,
                  const uint8_t* record) {
  if (!BufferIsValid(run.shared)) return;
  const uint32 per_page = RecordsPerPage(meta.record_bytes);
  Page page = GenericXLogRegisterBuffer(state, run.shared, 0);
  std::memcpy(PagePayload(page) + size_t(run.first) * meta.record_bytes, record, meta.record_bytes);
  SetRecordsUsed(page, meta.record_bytes, Min(per_page, run.first + 32));
}

// A new block image's first `units` units at `dst`: zeros, its locator, slot 0's codes and
// TID.
void StartBlock(uint8_t* dst, uint32 units, const ScannMetaPage& meta, const NewRun* run,
                ItemPointer tid, const uint8_t* codes) {
  std::memset(dst, 0, size_t(units) * kUnitBytes);
  if (run)
    std::memcpy(dst + kTidUnits * kUnitBytes, run->locator,
                size_t(meta.locator_units) * kUnitBytes);
  WriteSlotCodes(dst, 0, units, CodeUnit(meta), meta.subspaces, 0, codes);
  *SlotTid(dst, 0) = *tid;
}

// Starts a new block holding only (tid, codes, record) at the tail page `tail` (locked
// exclusively, next == Invalid); returns the new tail page.
BlockNumber AppendBlock(Relation index, const ScannMetaPage& meta, Buffer tail, ItemPointer tid,
                        const uint8_t* codes, const uint8_t* record) {
  const uint32 s = meta.block_units;
  Page tail_page = BufferGetPage(tail);
  NewRun run = {};
  if (record) run = PlaceNewRun(index, meta, tail_page, record);
  if (s <= kUnitsPerPage && PageUnits(tail_page) + s <= kUnitsPerPage) {
    if (run.new_pages) InjectFaultBeforeLink();
    GenericXLogState* state = GenericXLogStart(index);
    Page image = GenericXLogRegisterBuffer(state, tail, 0);
    uint32 u = PageUnits(image);
    StartBlock(PageUnit(image, u), s, meta, record ? &run : nullptr, tid, codes);
    SetPageUnits(image, u + s);
    if (record) FinishNewRun(state, meta, run, record);
    GenericXLogFinish(state);
    if (BufferIsValid(run.shared)) UnlockReleaseBuffer(run.shared);
    return BufferGetBlockNumber(tail);
  }
  // A fresh home page (and continuation pages), linked from the tail in the last record.
  const uint32 pages = s <= kUnitsPerPage ? 1 : PagesPerBlock(s);
  Buffer* fresh = static_cast<Buffer*>(palloc(sizeof(Buffer) * pages));
  for (uint32 j = 0; j < pages; j++)
    fresh[j] = NewInsertPage(index, j == 0 ? PageType::kList : PageType::kListContinuation);
  if (pages > 1) {
    // Continuation pages need the home's `next` first; the home image is written below.
    PageOpaque(BufferGetPage(fresh[0]))->next = BufferGetBlockNumber(fresh[1]);
    WriteSpanningSlot(index, meta, BufferGetPage(fresh[0]), fresh[0], 0, codes, fresh);
  }
  InjectFaultBeforeLink();
  GenericXLogState* state = GenericXLogStart(index);
  Page tail_image = GenericXLogRegisterBuffer(state, tail, 0);
  Page home = GenericXLogRegisterBuffer(state, fresh[0], GENERIC_XLOG_FULL_IMAGE);
  InitInsertPage(home, PageType::kList);
  if (pages > 1) PageOpaque(home)->next = BufferGetBlockNumber(fresh[1]);
  uint32 home_units = Min(s, kUnitsPerPage);
  StartBlock(PageUnit(home, 0), home_units, meta, record ? &run : nullptr, tid, codes);
  SetPageUnits(home, home_units);
  if (record) FinishNewRun(state, meta, run, record);
  PageOpaque(tail_image)->next = BufferGetBlockNumber(fresh[0]);
  GenericXLogFinish(state);
  if (BufferIsValid(run.shared)) UnlockReleaseBuffer(run.shared);
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
    InsertIntoList(index, meta, 0, tid, codes, nullptr);
    return;
  }
  uint8_t* record = nullptr;
  if (meta.record_bytes > 0) {
    record = static_cast<uint8_t*>(palloc0(meta.record_bytes));
    EncodeRecord(GetScalarQuantizer(index), vec, record);
  }
  int32* lists = static_cast<int32*>(palloc(sizeof(int32) * meta.fanout));
  VariantOf(meta).partitioner->assign(ModelOf(index), vec, 1, lists);
  float* residual = static_cast<float*>(palloc(sizeof(float) * meta.dims));
  for (uint32 t = 0; t < meta.fanout; t++) {
    EncodeInList(GetQuantizer(index), GetIndexState(index)->centroids, int(meta.dims),
                 uint32(lists[t]), vec, residual, codes);
    InsertIntoList(index, meta, uint32(lists[t]), tid, codes, record);
  }
}

void InsertIntoList(Relation index, const ScannMetaPage& meta, uint32 list, ItemPointer tid,
                    const uint8_t* codes, const uint8_t* record) {
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
    if (FillFreeSlot(index, meta, buf, tid, codes, record)) {
      UnlockReleaseBuffer(buf);
      // Pages passed without a free slot need not be searched again.
      if (skipped > 0)
        UpdateListEntry(index, meta, list, [&](ScannListEntry* e) { e->insert_hint = blkno; });
      return;
    }
    BlockNumber next = PageOpaque(BufferGetPage(buf))->next;
    if (next == InvalidBlockNumber) {
      BlockNumber new_tail = AppendBlock(index, meta, buf, tid, codes, record);
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
