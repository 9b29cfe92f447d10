// Distance kernels, SIMD against their scalar twins: vectors compared per second.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "core/distance.h"

namespace scann {
namespace {

// A deterministic float stream (the values do not matter for speed).
std::vector<float> Fill(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  for (auto& x : v) {
    seed = seed * 1664525u + 1013904223u;
    x = float(seed >> 8) / float(1 << 24) - 0.5f;
  }
  return v;
}

// One query against a block of 1,024 rows (fits in L2 for d <= 256), as an exact scan does.
template <typename Run>
void Loop(benchmark::State& state, Run run) {
  const size_t dim = state.range(0), rows = 1024;
  auto base = Fill(dim * rows, 1), query = Fill(dim, 2);
  for (auto _ : state) {
    float acc = 0;
    for (size_t r = 0; r < rows; r++) acc += run(query.data(), base.data() + r * dim, dim);
    benchmark::DoNotOptimize(acc);
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * rows);
  state.SetBytesProcessed(int64_t(state.iterations()) * rows * dim * sizeof(float));
}

void BM_L2Squared(benchmark::State& state, Isa isa) {
  auto fn = DistanceKernelsFor(isa).l2_squared;
  Loop(state, [fn](const float* a, const float* b, size_t n) { return fn(a, b, n); });
}

void BM_InnerProduct(benchmark::State& state, Isa isa) {
  auto fn = DistanceKernelsFor(isa).inner_product;
  Loop(state, [fn](const float* a, const float* b, size_t n) { return fn(a, b, n); });
}

void BM_CosineParts(benchmark::State& state, Isa isa) {
  auto fn = DistanceKernelsFor(isa).cosine_parts;
  Loop(state, [fn](const float* a, const float* b, size_t n) {
    float parts[3];
    fn(a, b, n, parts);
    return parts[0];
  });
}

#define DIMS ->Arg(100)->Arg(384)->Arg(784)->Arg(1536)
BENCHMARK_CAPTURE(BM_L2Squared, scalar, Isa::kScalar) DIMS;
BENCHMARK_CAPTURE(BM_L2Squared, avx2, Isa::kAvx2) DIMS;
BENCHMARK_CAPTURE(BM_InnerProduct, scalar, Isa::kScalar) DIMS;
BENCHMARK_CAPTURE(BM_InnerProduct, avx2, Isa::kAvx2) DIMS;
BENCHMARK_CAPTURE(BM_CosineParts, scalar, Isa::kScalar) DIMS;
BENCHMARK_CAPTURE(BM_CosineParts, avx2, Isa::kAvx2) DIMS;

}  // namespace
}  // namespace scann
