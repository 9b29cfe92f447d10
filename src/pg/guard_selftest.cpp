// scann_guard_selftest(mode): proves the C++/PostgreSQL boundary from SQL.  Each mode raises
// an error from inside guarded C++ code that owns an object with a destructor; the
// regression tests check that each error arrives as an ordinary SQL error, that the
// destructor ran (count returned by mode 'destructors'), and that the session goes on.
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "pg/guard.h"

using scann::pg::CppGuard;
using scann::pg::PgCall;
using scann::pg::SqlError;

namespace {

int64 g_destructors_run = 0;

// Owns heap memory and counts its own destruction.
struct Tracked {
  std::string payload = std::string(64, 'x');
  ~Tracked() { g_destructors_run++; }
};

int64 RunMode(const char* mode) {
  Tracked tracked;
  if (std::strcmp(mode, "destructors") == 0) return g_destructors_run;
  if (std::strcmp(mode, "ok") == 0) return static_cast<int64>(tracked.payload.size());
  if (std::strcmp(mode, "cpp_exception") == 0) throw std::runtime_error("test exception from C++");
  if (std::strcmp(mode, "bad_alloc") == 0) throw std::bad_alloc();
  if (std::strcmp(mode, "sql_error") == 0)
    throw SqlError(ERRCODE_INVALID_PARAMETER_VALUE, "test SQL error raised from C++");
  if (std::strcmp(mode, "pg_error") == 0) {
    PgCall([] {
      ereport(ERROR, (errcode(ERRCODE_DIVISION_BY_ZERO),
                      errmsg("test PostgreSQL error raised inside C++")));
    });
  }
  if (std::strcmp(mode, "pg_call") == 0)
    return PgCall([] { return static_cast<int64>(pg_strcasecmp("A", "a") == 0); });
  throw SqlError(ERRCODE_INVALID_PARAMETER_VALUE,
                 std::string("unknown mode \"") + mode +
                     "\": expected ok, destructors, cpp_exception, bad_alloc, sql_error, "
                     "pg_error or pg_call");
}

}  // namespace

extern "C" {

PG_FUNCTION_INFO_V1(scann_guard_selftest);

Datum scann_guard_selftest(PG_FUNCTION_ARGS) {
  const char* mode = text_to_cstring(PG_GETARG_TEXT_PP(0));
  PG_RETURN_INT64(CppGuard([&] { return RunMode(mode); }));
}

}  // extern "C"
