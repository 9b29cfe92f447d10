// Run-time choice of the instruction set for every SIMD kernel in src/core.
// Each SIMD translation unit (*_avx2.cpp) is compiled with its own target flags and is
// only called after DetectIsa() has confirmed the CPU supports it; the scalar twin runs
// everywhere and is the reference the SIMD paths are tested against.
#pragma once

namespace scann {

enum class Isa { kScalar = 0, kAvx2 = 1 };

// Best instruction set this CPU supports (AVX2 + FMA, else scalar); computed once.
Isa DetectIsa();

// The instruction set kernels use: DetectIsa(), or the override set below.
Isa ActiveIsa();

// Forces kernels to a given instruction set (clamped to what the CPU supports); used by
// tests and benchmarks to compare paths.  Not thread-safe; call before scanning.
void SetActiveIsa(Isa isa);

const char* IsaName(Isa isa);

}  // namespace scann
