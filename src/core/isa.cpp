#include "core/isa.h"

namespace scann {

namespace {

Isa Detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
  return Isa::kScalar;
}

Isa g_active = DetectIsa();

}  // namespace

Isa DetectIsa() {
  static const Isa detected = Detect();
  return detected;
}

Isa ActiveIsa() { return g_active; }

void SetActiveIsa(Isa isa) {
  g_active = static_cast<int>(isa) <= static_cast<int>(DetectIsa()) ? isa : DetectIsa();
}

const char* IsaName(Isa isa) { return isa == Isa::kAvx2 ? "avx2" : "scalar"; }

}  // namespace scann
