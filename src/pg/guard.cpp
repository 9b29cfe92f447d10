#include "pg/guard.h"

extern "C" {
#include "miscadmin.h"
}

namespace scann::pg {
namespace detail {

void Capture(CaughtError* out, int sqlstate, const char* prefix, const char* what) noexcept {
  out->sqlstate = sqlstate;
  snprintf(out->message, sizeof(out->message), "%s%s", prefix, what ? what : "");
}

void Raise(const CaughtError& caught) {
  if (caught.pg_error) ReThrowError(caught.pg_error);
  ereport(ERROR, (errcode(caught.sqlstate), errmsg("%s", caught.message)));
  pg_unreachable();
}

}  // namespace detail

void CheckInterrupts() {
  PgCall([] { CHECK_FOR_INTERRUPTS(); });
}

}  // namespace scann::pg
