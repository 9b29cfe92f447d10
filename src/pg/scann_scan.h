// Index scans for ORDER BY col <op> query LIMIT k: ambeginscan, amrescan, amgettuple,
// amendscan.
#pragma once

#include "pg/pg_headers.h"

extern "C" {
#include "access/amapi.h"
#include "access/relscan.h"
}

namespace scann::pg {

IndexScanDesc BeginScan(Relation index, int nkeys, int norderbys);
void Rescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys, int norderbys);
bool GetTuple(IndexScanDesc scan, ScanDirection dir);
void EndScan(IndexScanDesc scan);

}  // namespace scann::pg
