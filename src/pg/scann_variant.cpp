#include "pg/scann_variant.h"

#include "pg/scann_index.h"

namespace scann::pg {

namespace {

const VariantOps kIvf = {"ivf",        &kIvfPartitioner, ListInsert,
                         &kListSource, ListBulkDelete,   ListCleanup};
const VariantOps kAnnoy = {"annoy",      &kAnnoyPartitioner, ListInsert,
                           &kListSource, ListBulkDelete,     ListCleanup};

}  // namespace

const VariantOps& VariantOf(Variant variant) {
  switch (variant) {
    case Variant::kIvf:
      return kIvf;
    case Variant::kAnnoy:
      return kAnnoy;
    case Variant::kVamana:
      break;
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
