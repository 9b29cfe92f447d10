// List chains: packing 32-vector blocks, writing chains at build, adding one vector to a
// list (insert), and the arithmetic of where a block's units lie.
#pragma once

#include "core/pq.h"
#include "core/sq8.h"
#include "pg/scann_index.h"

extern "C" {
#include "commands/vacuum.h"
}

namespace scann::pg {

// Collects up to 32 rows (TID, codes, re-ranking record) and packs them into one block image.
struct BlockPacker {
  uint32 subspaces;
  uint32 block_units;
  uint32 code_unit;
  uint32 record_bytes;  // 0: no records (rerank = 'heap')
  int count;
  ItemPointerData tids[32];
  uint8_t* codes;    // 32 x subspaces, one code per byte
  uint8_t* records;  // 32 x record_bytes
  uint8_t* block;    // block_units x 32 bytes
};

// Writes one list's chain and its blocks' record runs during build (the pages are logged by
// the caller's newpage range).
struct ChainWriter {
  Relation index;
  ForkNumber fork;
  uint32 block_units;
  uint32 record_bytes;
  Buffer current;
  Buffer records;  // the record page runs go to while they fit there
  BlockNumber first;
  BlockNumber last_home;  // home page of the last block
};

void BlockPackerInit(BlockPacker* packer, const ScannMetaPage& meta);
void ChainWriterInit(ChainWriter* writer, Relation index, ForkNumber fork,
                     const ScannMetaPage& meta);
// Adds one row (record: record_bytes bytes, or null without records); every 32nd appends the
// block to the chain.
void BlockPackerAdd(BlockPacker* packer, ChainWriter* writer, ItemPointer tid, const uint8_t* codes,
                    const uint8_t* record);
// Appends a partial last block, releases the last pages and fills the list's directory entry.
void FinishList(BlockPacker* packer, ChainWriter* writer, ScannListEntry* entry);
// Overwrites the directory stream written at build with the final entries.
void WriteDirectory(Relation index, ForkNumber fork, const ScannMetaPage& meta,
                    const ScannListEntry* entries);

// The re-ranking record of vec: its error bound, then its 8-bit codes (scann_page.h).
void EncodeRecord(const ScalarQuantizer* sq, const float* vec, uint8_t* record);

// The codes of vec's residual to the centroid of `list`.
void EncodeInList(const ProductQuantizer* pq, const float* centroids, int dims, uint32 list,
                  const float* vec, float* residual, uint8_t* codes);

// Adds one row (its codes, one byte per subspace, and its re-ranking record or null) to a
// list, WAL-logged, following the locking protocol of scann_page.h.
void InsertIntoList(Relation index, const ScannMetaPage& meta, uint32 list, ItemPointer tid,
                    const uint8_t* codes, const uint8_t* record);

// The TID of slot `slot` in a block starting at `block` (its first unit).
inline ItemPointer SlotTid(uint8_t* block, int slot) {
  return reinterpret_cast<ItemPointer>(block + slot * kTidBytes);
}

// Visits every page of every list's chain, list by list, as visit(list, buffer, page) with
// the page locked in `lock_mode` (BUFFER_LOCK_SHARE or BUFFER_LOCK_EXCLUSIVE).  Before each
// page it calls vacuum_delay_point(): an interrupt check, and VACUUM's cost-based delay
// when run by VACUUM (never while a page is locked).
template <typename Visit>
void ForEachListPage(Relation index, const ScannMetaPage& meta, int lock_mode, Visit visit) {
  for (uint32 list = 0; list < meta.lists; list++) {
    for (BlockNumber blkno = ListFirstPage(index, list); blkno != InvalidBlockNumber;) {
      vacuum_delay_point();
      Buffer buf = ReadBuffer(index, blkno);
      LockBuffer(buf, lock_mode);
      Page page = BufferGetPage(buf);
      visit(list, buf, page);
      blkno = PageOpaque(page)->next;
      UnlockReleaseBuffer(buf);
    }
  }
}

// Calls fn(block's first unit) for every block whose home is `page` (a kList page).
template <typename Fn>
void ForEachBlock(const ScannMetaPage& meta, Page page, Fn fn) {
  const uint32 s = meta.block_units, used = PageUnits(page);
  const uint32 step = s <= kUnitsPerPage ? s : used + 1;
  for (uint32 u = 0; u + Min(s, kUnitsPerPage) <= used; u += step) fn(PageUnit(page, u));
}

// Calls fn(slot TID pointer) for every slot of the blocks whose home is `page` (a kList
// page; continuation pages hold no TIDs).
template <typename Fn>
void ForEachSlot(const ScannMetaPage& meta, Page page, Fn fn) {
  const uint32 s = meta.block_units, used = PageUnits(page);
  const uint32 step = s <= kUnitsPerPage ? s : used + 1;
  for (uint32 u = 0; u + Min(s, kUnitsPerPage) <= used; u += step)
    for (int slot = 0; slot < 32; slot++) fn(SlotTid(PageUnit(page, u), slot));
}

}  // namespace scann::pg
