// CREATE INDEX for scann: ambuild and ambuildempty.
#pragma once

#include "pg/pg_headers.h"

extern "C" {
#include "access/amapi.h"
#include "nodes/execnodes.h"
}

namespace scann::pg {

IndexBuildResult* Build(Relation heap, Relation index, IndexInfo* index_info);
void BuildEmpty(Relation index);
char* BuildPhaseName(int64 phase);

// Progress phases of a variant's own build (VariantOps::build) are numbered from here on,
// after the shared ones; their names come from the variant.
inline constexpr int64 kFirstVariantBuildPhase = 8;
char* VamanaBuildPhaseName(int64 phase);

}  // namespace scann::pg
