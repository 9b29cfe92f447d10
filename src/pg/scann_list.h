// List chains: packing 32-vector blocks, writing chains at build, adding one vector to a
// list (insert), and the arithmetic of where a block's units lie.
#pragma once

#include "core/pq.h"
#include "pg/scann_index.h"

extern "C" {
#include "commands/vacuum.h"
}

namespace scann::pg {

// Collects up to 32 (TID, codes) pairs and packs them into one block image.
struct BlockPacker {
  uint32 subspaces;
  uint32 block_units;
  int count;
  ItemPointerData tids[32];
  uint8_t* codes;  // 32 x subspaces, one code per byte
  uint8_t* block;  // block_units x 32 bytes
};

void BlockPackerInit(BlockPacker* packer, const ScannMetaPage& meta);
// Adds one pair; true when the block is full and packed into packer->block.
bool BlockPackerAdd(BlockPacker* packer, ItemPointer tid, const uint8_t* codes);

// Appends block images to one list's chain during build (pages logged by the caller).
struct ChainWriter {
  Relation index;
  ForkNumber fork;
  uint32 block_units;
  Buffer current;
  BlockNumber first;
  BlockNumber last_home;  // home page of the last block
};

void ChainWriterInit(ChainWriter* writer, Relation index, ForkNumber fork, uint32 block_units);
void ChainWriterAppend(ChainWriter* writer, const uint8_t* block);
// Flushes a partial block, releases the last page and fills the list's directory entry.
void FinishList(BlockPacker* packer, ChainWriter* writer, ScannListEntry* entry);
// Overwrites the directory stream written at build with the final entries.
void WriteDirectory(Relation index, ForkNumber fork, const ScannMetaPage& meta,
                    const ScannListEntry* entries);

// The codes of vec's residual to the centroid of `list`.
void EncodeInList(const ProductQuantizer* pq, const float* centroids, int dims, uint32 list,
                  const float* vec, float* residual, uint8_t* codes);

// Adds one vector (its codes, one byte per subspace) to a list, WAL-logged, following the
// locking protocol of scann_page.h.
void InsertIntoList(Relation index, const ScannMetaPage& meta, uint32 list, ItemPointer tid,
                    const uint8_t* codes);

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
