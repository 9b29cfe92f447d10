// The real data sets as bench/datasets.py caches them for the core unit tests: row-major
// float32 files <root>/<set>/base.f32 and <root>/<set>/queries.f32, with root
// $PG_SCANN_DATA or /var/tmp/pg_scann-data.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace scann::test {

inline std::string DataPath(const std::string& set, const std::string& file) {
  const char* root = std::getenv("PG_SCANN_DATA");
  return std::string(root && *root ? root : "/var/tmp/pg_scann-data") + "/" + set + "/" + file;
}

// Rows [first, first + count) of a float32 file of dims columns, count clipped to the rows
// the file has; empty when the file is missing or holds no row from `first` on.
inline std::vector<float> ReadRows(const std::string& path, int dims, size_t first, size_t count) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return {};
  const size_t row_bytes = static_cast<size_t>(dims) * sizeof(float);
  const size_t total = static_cast<size_t>(in.tellg()) / row_bytes;
  if (first >= total) return {};
  count = std::min(count, total - first);
  std::vector<float> rows(count * dims);
  in.seekg(static_cast<std::streamoff>(first * row_bytes));
  in.read(reinterpret_cast<char*>(rows.data()), static_cast<std::streamsize>(count * row_bytes));
  if (!in) return {};
  return rows;
}

// Scales every row of dims floats to unit length (zero rows stay zero).
inline void NormalizeRows(std::vector<float>* rows, int dims) {
  for (size_t i = 0; i + dims <= rows->size(); i += dims) {
    double s = 0;
    for (int j = 0; j < dims; j++) s += double((*rows)[i + j]) * (*rows)[i + j];
    if (s <= 0) continue;
    const float inv = static_cast<float>(1 / std::sqrt(s));
    for (int j = 0; j < dims; j++) (*rows)[i + j] *= inv;
  }
}

}  // namespace scann::test
