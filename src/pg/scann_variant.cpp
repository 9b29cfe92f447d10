#include "pg/scann_variant.h"

#include "pg/scann_index.h"

namespace scann::pg {

namespace {

// A list-based variant's knob, nprobe, is worth measuring from one list to all of them.
void ListLadder(const ScannMetaPage& meta, uint32* lowest, uint32* highest) {
  *lowest = 1;
  *highest = Max(meta.lists, 1u);
}

const QueryKnobSpec kNprobe = {"nprobe", &g_nprobe, kDefaultNprobe, ListLadder};

const VariantOps kIvf = {"ivf",        &kIvfPartitioner, nullptr,     ListInsert,
                         &kListSource, ListBulkDelete,   ListCleanup, &kNprobe};
const VariantOps kAnnoy = {"annoy",      &kAnnoyPartitioner, nullptr,     ListInsert,
                           &kListSource, ListBulkDelete,     ListCleanup, &kNprobe};

}  // namespace

const VariantOps& VariantOf(Variant variant) {
  switch (variant) {
    case Variant::kIvf:
      return kIvf;
    case Variant::kAnnoy:
      return kAnnoy;
    case Variant::kVamana:
      return kVamanaOps;
  }
  ereport(ERROR, (errcode(ERRCODE_INDEX_CORRUPTED),
                  errmsg("scann index of unknown variant %d", int(variant)),
                  errhint("REINDEX the index.")));
  pg_unreachable();
}

const VariantOps& VariantOf(const ScannMetaPage& meta) { return VariantOf(Variant(meta.variant)); }

PartitionModel ModelOf(Relation index) {
  const IndexState* state = GetIndexState(index);
  PartitionModel model;
  model.index = index;
  model.dims = int(state->meta.dims);
  model.lists = state->meta.lists;
  model.fanout = state->meta.fanout;
  model.centroids = state->centroids;
  model.norms = state->norms;
  model.partition = state->partition;
  model.partition_bytes = state->meta.partition_bytes;
  return model;
}

}  // namespace scann::pg
