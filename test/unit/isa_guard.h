// Restores the active instruction set when a test that changes it ends.
#pragma once

#include "core/isa.h"

namespace scann::test {

class IsaGuard {
 public:
  IsaGuard() : saved_(ActiveIsa()) {}
  ~IsaGuard() { SetActiveIsa(saved_); }

 private:
  Isa saved_;
};

}  // namespace scann::test
