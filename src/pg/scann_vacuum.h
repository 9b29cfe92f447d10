// VACUUM: ambulkdelete frees the slots of dead TIDs; amvacuumcleanup reports statistics.
#pragma once

#include "pg/pg_headers.h"

extern "C" {
#include "access/amapi.h"
#include "access/genam.h"
}

namespace scann::pg {

IndexBulkDeleteResult* BulkDelete(IndexVacuumInfo* info, IndexBulkDeleteResult* stats,
                                  IndexBulkDeleteCallback callback, void* callback_state);
IndexBulkDeleteResult* VacuumCleanup(IndexVacuumInfo* info, IndexBulkDeleteResult* stats);

}  // namespace scann::pg
