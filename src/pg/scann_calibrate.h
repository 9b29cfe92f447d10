// Recall calibration: how the recall@10 of an index rises with its query knob, measured on the
// index's own rows (core/calibration.h) and kept in the metapage (ScannCalibration), so that a
// scan can ask for a recall (scann.target_recall) instead of a knob.
#pragma once

#include "core/calibration.h"
#include "pg/scann_page.h"

extern "C" {
#include "utils/relcache.h"
}

namespace scann::pg {

// Calibration queries per index: enough to measure recall@10 within about +-0.01, few enough
// for their exact neighbours to cost a fraction of a build.  Fewer for wide rows, so that the
// queries a parallel build shares stay within kCalibrationFloats.
inline constexpr int kCalibrationQueries = 100;
inline constexpr size_t kCalibrationFloats = 256 * 1024;
inline constexpr int kCalibrationK = 10;

int CalibrationQueries(int dims, uint32 sample_rows);

// Recall of the index at a ladder of knob values for nq queries (as the quantizers see them)
// whose exact neighbours `truth` holds, with scann.reorder candidates per query.  Reads the
// index through its pages (it must be complete).
ScannCalibration MeasureCalibration(Relation index, const float* queries, int nq,
                                    const NeighborTruth& truth);

}  // namespace scann::pg
