// A tiny deterministic generator for unit-test inputs (not for on-disk structures).
#pragma once

#include <cstdint>

namespace scann::test {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t Next() {  // splitmix64
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float Uniform(float lo, float hi) {
    return lo + (hi - lo) * float(Next() >> 40) / float(1 << 24);
  }

 private:
  uint64_t state_;
};

}  // namespace scann::test
