// Pinning pages that scans read again and again (list pages, heap pages of re-ranked rows)
// through the buffer that held them last, instead of a lookup in the shared buffer table.
#pragma once

#include "pg/pg_headers.h"

extern "C" {
#include "storage/bufmgr.h"
#include "utils/rel.h"
}

namespace scann::pg {

// Pins block `blkno` of `rel`'s main fork like ReadBuffer(), trying first the buffer that held
// it when this backend last read it (ReadRecentBuffer(): one buffer-header check instead of a
// buffer-table lookup), and raises that buffer's usage count as ReadBuffer() would.
Buffer ReadBufferRecent(Relation rel, BlockNumber blkno);

// Prefetches the header of the buffer that last held the block, before ReadBufferRecent().
void PrefetchRecent(Relation rel, BlockNumber blkno);

}  // namespace scann::pg
