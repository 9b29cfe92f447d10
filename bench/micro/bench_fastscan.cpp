// FastScan scoring rate per core (AVX2 and scalar) against the memory read ceiling.
// items_per_second = vectors scored, bytes_per_second = code bytes streamed; compare the
// "cold" kernel runs (codes in a 1 GiB buffer, beyond every cache) with BM_MemoryRead.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "core/fastscan.h"

namespace scann {
namespace {

constexpr size_t kColdBytes = size_t(1) << 30;  // beyond L2 and the host's L3
constexpr size_t kHotBytes = size_t(1) << 20;   // fits L2: the compute-bound rate
constexpr size_t kChunkBlocks = 64;             // blocks scored per acc reuse (one list)

// One shared buffer of pseudo-random bytes, built on first use.
const std::vector<uint8_t>& Buffer() {
  static const std::vector<uint8_t> buffer = [] {
    std::vector<uint8_t> b(kColdBytes);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i + 8 <= b.size(); i += 8) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::memcpy(&b[i], &x, 8);
    }
    return b;
  }();
  return buffer;
}

// Args: m, isa (0 scalar, 1 avx2), working-set bytes.
void BM_FastScanAccumulate(benchmark::State& state) {
  const int m = int(state.range(0));
  const Isa isa = Isa(state.range(1));
  if (isa == Isa::kAvx2 && DetectIsa() != Isa::kAvx2) {
    state.SkipWithError("CPU lacks AVX2+FMA");
    return;
  }
  const FastScanKernels& kernels = FastScanKernelsFor(isa);
  const size_t code_bytes = FastScanCodeBytes(m);
  const size_t nblocks = size_t(state.range(2)) / code_bytes / kChunkBlocks * kChunkBlocks;
  const uint8_t* codes = Buffer().data();
  const std::vector<uint8_t> qlut(Buffer().end() - code_bytes, Buffer().end());
  std::vector<uint16_t> acc(kChunkBlocks * kFastScanBlock);
  for (auto _ : state) {
    for (size_t b = 0; b < nblocks; b += kChunkBlocks) {
      std::memset(acc.data(), 0, acc.size() * sizeof(uint16_t));
      kernels.accumulate_blocks(codes + b * code_bytes, kChunkBlocks, code_bytes, FastScanPairs(m),
                                qlut.data(), acc.data());
      benchmark::DoNotOptimize(acc.data());
      benchmark::ClobberMemory();
    }
  }
  state.SetLabel(IsaName(isa));
  state.SetItemsProcessed(int64_t(state.iterations() * nblocks * kFastScanBlock));
  state.SetBytesProcessed(int64_t(state.iterations() * nblocks * code_bytes));
}

void FastScanArgs(benchmark::internal::Benchmark* b) {
  for (int64_t bytes : {int64_t(kColdBytes), int64_t(kHotBytes)})
    for (int64_t m : {50, 192, 392})
      for (int64_t isa : {1, 0}) b->Args({m, isa, bytes});
  b->ArgNames({"m", "avx2", "bytes"})->UseRealTime();
}
BENCHMARK(BM_FastScanAccumulate)->Apply(FastScanArgs);

// Selecting ~1% of a list's scores, as the threshold test does once the top-k is full.
void BM_FastScanSelectBelow(benchmark::State& state) {
  const Isa isa = Isa(state.range(0));
  if (isa == Isa::kAvx2 && DetectIsa() != Isa::kAvx2) {
    state.SkipWithError("CPU lacks AVX2+FMA");
    return;
  }
  const size_t n = kChunkBlocks * kFastScanBlock;
  const uint16_t* scores = reinterpret_cast<const uint16_t*>(Buffer().data());
  std::vector<uint32_t> idx(n);
  size_t found = 0;
  for (auto _ : state) {
    found = FastScanKernelsFor(isa).select_below(scores, n, 655, idx.data());
    benchmark::DoNotOptimize(idx.data());
  }
  state.SetLabel(IsaName(isa));
  state.counters["selected"] = double(found);
  state.SetItemsProcessed(int64_t(state.iterations() * n));
}
BENCHMARK(BM_FastScanSelectBelow)->Arg(1)->Arg(0)->ArgName("avx2");

// The ceiling: one core streaming through the buffer (sum of 64-bit words, four chains).
void BM_MemoryRead(benchmark::State& state) {
  const size_t bytes = size_t(state.range(0));
  const uint8_t* data = Buffer().data();
  for (auto _ : state) {
    uint64_t s[4] = {0, 0, 0, 0};
    for (size_t i = 0; i + 32 <= bytes; i += 32)
      for (int k = 0; k < 4; k++) {
        uint64_t w;
        std::memcpy(&w, data + i + 8 * k, 8);
        s[k] += w;
      }
    benchmark::DoNotOptimize(s[0] + s[1] + s[2] + s[3]);
  }
  state.SetBytesProcessed(int64_t(state.iterations() * bytes));
}
BENCHMARK(BM_MemoryRead)->Arg(int64_t(256) << 20)->Arg(int64_t(kColdBytes))->UseRealTime();

}  // namespace
}  // namespace scann
