// What the two ways of building a vamana graph share (scann_vamana_build.cpp builds in memory,
// scann_vamana_shards.cpp in k-means shards past memory): the rows file and the node writer.
#pragma once

#include "pg/scann_vamana.h"

extern "C" {
#include "storage/buffile.h"
}

namespace scann::pg {

// Every row of the table as the build loaded it, in a temporary file of fixed-size records:
// its vector (dims floats, as the codes see it), its code (m bytes, one per subspace) and its
// TID.  Row i (the i-th row of the table) is record i and becomes node i of the node pages.
struct RowsFile {
  BufFile* file;
  int dims;
  uint32 subspaces;
  size_t code_offset;
  size_t tid_offset;
  size_t record_bytes;
  uint32 rows;
};

void RowsFileInit(RowsFile* rows, int dims, uint32 subspaces);
// Record `row` (random access).
void RowsFileRead(RowsFile* rows, uint32 row, uint8_t* record);
// The next record (sequential access, after RowsFileRewind).
void RowsFileReadNext(RowsFile* rows, uint8_t* record);
void RowsFileRewind(RowsFile* rows);

// Writes the node pages of a build, one row after another (row i is node NodeWriterIdOf(i)).
struct NodeWriter {
  VariantBuild* vb;
  VamanaNodeLayout layout;
  BlockNumber first;  // the first node page: the index's end when the writer starts
  Buffer buf;         // the page being filled
  uint32 written;
  uint8_t* codes;  // scratch: neighbour codes
  uint32* ids;     // scratch: neighbour node ids
};

void NodeWriterInit(NodeWriter* w, VariantBuild* vb, const VamanaNodeLayout& layout);
uint32 NodeWriterFirstId(const NodeWriter* w);
uint32 NodeWriterIdOf(const NodeWriter* w, uint32 row);
// Writes the next row's node: its TID, code and record from its rows-file record, its list
// (neighbours as row numbers, their codes degree x m, one per byte).
void NodeWriterAdd(NodeWriter* w, const uint8_t* row_record, const RowsFile* rows,
                   const uint32* neighbor_rows, uint32 degree, const uint8_t* neighbor_codes);
// Releases the last page.
void NodeWriterFlush(NodeWriter* w);

// A graph over n rows in memory, as BuildGraph hands it over: lists of `stride` slots (at most
// R used), and the entry point (a row).
struct GraphResult {
  const uint32* degrees;
  const uint32* neighbors;
  size_t stride;
  uint32 entry;
};

// Builds the graph of n rows in memory (shared with parallel workers when PostgreSQL grants
// them): fill(arg, vectors) writes the rows' vectors (n x dims floats, as the codes see them),
// then done(arg, graph) reads the result before the memory is freed.
void BuildGraph(VariantBuild* vb, const VamanaParams& params, uint32 n,
                void (*fill)(void* arg, float* vectors),
                void (*done)(void* arg, const GraphResult& graph), void* arg);

// The memory a graph over n rows takes when built in memory (what must fit in
// maintenance_work_mem): vectors, lists, codes, a batch's out-lists, visited sets.
double InMemoryBytes(double n, int dims, uint32 m, const VamanaParams& params);

// Frees the training sample once the build no longer needs it (it counts against
// maintenance_work_mem).
void FreeSample(VariantBuild* vb);

// The sharded build (DiskANN's build past memory) of the rows file's rows; writes every node
// and returns the number of shards, with the entry point's row in *entry_row.
uint32 BuildInShards(VariantBuild* vb, RowsFile* rows, const VamanaParams& params,
                     const VamanaNodeLayout& layout, NodeWriter* w, uint32* entry_row);

}  // namespace scann::pg
