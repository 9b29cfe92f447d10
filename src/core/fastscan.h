// FastScan: scoring 4-bit product-quantization codes 32 vectors at a time with byte-shuffle
// table lookups (the FAISS "fast scan" idea), plus the packing and LUT quantization it needs.
//
// Code layout.  Vectors are grouped in blocks of kFastScanBlock = 32 slots.  A block's codes
// are FastScanPairs(m) consecutive 32-byte units; unit p holds subspaces 2p and 2p+1 of all
// 32 slots (odd m: the padding subspace 2p+1 == m always holds code 0):
//
//   byte j      (j < 16): code of subspace 2p   for slot j | (that for slot j + 16) << 4
//   byte 16 + j (j < 16): code of subspace 2p+1 for slot j | (that for slot j + 16) << 4
//
// so one 256-bit load, a mask and a shift give the low and high nibbles, and each vpshufb
// looks up 16 slots of subspace 2p in its low 128-bit lane and the same 16 slots of subspace
// 2p+1 in its high lane.  Units are self-contained, so a block may be split across disk
// pages at any unit boundary.
//
// Quantized LUT layout (qlut).  FastScanPairs(m) 32-byte units matching the code units:
// byte 32p + c is the uint8 entry of codeword c of subspace 2p, byte 32p + 16 + c that of
// subspace 2p+1 (all zero for the padding subspace of odd m).
//
// Scores.  A slot's score is the sum over its subspaces of the qlut entry of its code,
// accumulated modulo 2^16; FastScanLutScale picks the scale so that the true sum never
// exceeds 65535, and then approx = offset + score / scale.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/isa.h"

namespace scann {

constexpr int kFastScanBlock = 32;    // vectors (slots) per block
constexpr size_t kFastScanUnit = 32;  // bytes of one subspace pair for one block

// Number of 32-byte units per block for m 4-bit subspaces.
inline int FastScanPairs(int m) { return (m + 1) / 2; }
// Code bytes of one whole block.
inline size_t FastScanCodeBytes(int m) { return size_t(FastScanPairs(m)) * kFastScanUnit; }

// Writes one slot's codes for pairs [pair_begin, pair_begin + npairs): codes[s] (indexed by
// absolute subspace s, values 0..15) for s in [2*pair_begin, min(m, 2*(pair_begin+npairs))).
// `units` points at the unit of pair_begin.  Only that slot's nibbles change; the padding
// subspace of odd m is written as 0.
void FastScanSetSlot(uint8_t* units, int pair_begin, int npairs, int m, int slot,
                     const uint8_t* codes);
// Reads back what FastScanSetSlot writes, into codes[s] for the same range of s.
void FastScanGetSlot(const uint8_t* units, int pair_begin, int npairs, int m, int slot,
                     uint8_t* codes);
// Packs n <= 32 code rows (codes[i*m + s], values 0..15) into one whole block of
// FastScanCodeBytes(m) bytes; slots n..31 get code 0.
void FastScanPackBlock(const uint8_t* codes, int n, int m, uint8_t* block);

// The largest subspace range (max - min of its 16 entries) over a set of tables, and the
// largest per-table sum of subspace ranges: what the shared scale is chosen from; `finite`
// is false when any entry is infinite or NaN (the ranges then mean nothing).
struct LutRanges {
  double max_range = 0;
  double max_sum = 0;
  bool finite = true;
};
LutRanges FastScanLutRanges(const float* luts, int nluts, int m);

// Shared scale for nluts float tables of m*16 entries each (lut[s*16 + c] = contribution of
// codeword c of subspace s, smaller = nearer; entries must be finite).  After quantization
// with it every entry is <= 255 and, for every table, the sum over subspaces of the largest
// entries is <= 65535, so uint16 accumulation cannot overflow for any m <= 65535.  Because
// all of a query's tables share it, scores of different lists compare.
float FastScanLutScale(const float* luts, int nluts, int m);

// The scale FastScanLutScale picks from the ranges of all tables (shared by its scalar and
// SIMD versions, and by tables whose ranges were gathered a few at a time).
float FastScanScaleFromRanges(double max_range, double max_sum, int m);
// The same in double, for ranges too wide for a float scale (tables computed in double).
double FastScanScale(double max_range, double max_sum, int m);

// Quantizes one table into FastScanCodeBytes(m) bytes of qlut: entry = round((lut - min_s) *
// scale) with min_s the minimum of subspace s, and returns offset = sum of the min_s.
//
// Error bound: for a scale from FastScanLutScale over a set of tables containing this one,
// and any codes c_s, with score = sum_s qlut entry (exact, no overflow):
//   | offset + score / scale  -  sum_s lut[s*16 + c_s] |  <=  m * (0.5 + 1e-4) / scale
//                                                            + float rounding of the sums,
// i.e. at most half a quantization step per subspace (the 1e-4 covers the float rounding of
// (lut - min_s) * scale); the "float rounding of the sums" term is ~2^-24 times the
// magnitudes of offset and of the exact sum.
double FastScanQuantizeLut(const float* lut, int m, float scale, uint8_t* qlut);

struct FastScanKernels {
  // For nblocks whole blocks, block b's first code unit at blocks + b * stride_bytes (stride
  // may exceed the code bytes, e.g. when TIDs follow the codes): ADDS the uint16 scores of
  // pairs [0, npairs) into acc[b*32 + slot] (logical slot order), modulo 2^16.  qlut points
  // at the LUT unit of the first pair.  A partial range of one block is nblocks = 1 with
  // blocks and qlut both advanced by pair_begin * 32 bytes.  No alignment required.
  void (*accumulate_blocks)(const uint8_t* blocks, size_t nblocks, size_t stride_bytes, int npairs,
                            const uint8_t* qlut, uint16_t* acc);
  // Writes into idx (room for n entries) the positions i < n with scores[i] < threshold,
  // ascending; returns how many.
  size_t (*select_below)(const uint16_t* scores, size_t n, uint16_t threshold, uint32_t* idx);
  // FastScanQuantizeLut, bit for bit (per-list tables of high-dimensional L2 scans make it
  // worth vectorizing).
  double (*quantize_lut)(const float* lut, int m, float scale, uint8_t* qlut);
  // FastScanLutRanges, bit for bit.
  LutRanges (*lut_ranges)(const float* luts, int nluts, int m);
};

// The kernel table for one instruction set (the scalar one when the CPU lacks it).
const FastScanKernels& FastScanKernelsFor(Isa isa);

// Kernels of the active instruction set.
inline const FastScanKernels& FastScanKernelsActive() { return FastScanKernelsFor(ActiveIsa()); }

namespace scalar {
void FastScanAccumulateBlocks(const uint8_t* blocks, size_t nblocks, size_t stride_bytes,
                              int npairs, const uint8_t* qlut, uint16_t* acc);
size_t FastScanSelectBelow(const uint16_t* scores, size_t n, uint16_t threshold, uint32_t* idx);
}  // namespace scalar

namespace avx2 {
void FastScanAccumulateBlocks(const uint8_t* blocks, size_t nblocks, size_t stride_bytes,
                              int npairs, const uint8_t* qlut, uint16_t* acc);
size_t FastScanSelectBelow(const uint16_t* scores, size_t n, uint16_t threshold, uint32_t* idx);
double FastScanQuantizeLut(const float* lut, int m, float scale, uint8_t* qlut);
LutRanges FastScanLutRanges(const float* luts, int nluts, int m);
}  // namespace avx2

}  // namespace scann
