// The C++ / PostgreSQL boundary, in both directions.
//
// PostgreSQL reports errors with longjmp; C++ unwinds with exceptions.  Neither may cross
// the other: a longjmp over a C++ frame skips its destructors, and an exception that
// reaches PostgreSQL's C frames terminates the backend.  So:
//
//  * CppGuard(fn) wraps every entry from PostgreSQL into C++ code that may throw or own
//    objects with destructors.  It catches everything and raises the PostgreSQL error only
//    after the catch block has ended, when no C++ object of fn is alive any more.
//  * PgCall(fn) wraps every call from such C++ code back into PostgreSQL.  A PostgreSQL
//    error inside fn is caught with sigsetjmp (PG_TRY), copied out of ErrorContext and
//    thrown as PgError, which unwinds the C++ frames and is re-raised by CppGuard.  fn
//    itself must hold only trivially destructible state.
//
// Glue code written in PostgreSQL's own style (palloc, ereport, no destructors) needs
// neither; it calls into C++ only through CppGuard.
#pragma once

#include <cstdio>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "pg/pg_headers.h"

namespace scann::pg {

// A PostgreSQL error carried through C++ frames; CppGuard re-raises it unchanged.
class PgError : public std::exception {
 public:
  explicit PgError(ErrorData* edata) : edata_(edata) {}
  ErrorData* edata() const { return edata_; }
  const char* what() const noexcept override {
    return edata_ && edata_->message ? edata_->message : "PostgreSQL error";
  }

 private:
  ErrorData* edata_;
};

// An error for the user, raised from C++ with its SQLSTATE (an ERRCODE_* value).
class SqlError : public std::runtime_error {
 public:
  SqlError(int sqlstate, const std::string& message)
      : std::runtime_error(message), sqlstate_(sqlstate) {}
  int sqlstate() const { return sqlstate_; }

 private:
  int sqlstate_;
};

namespace detail {

// What CppGuard caught, kept in plain storage so nothing needs destroying afterwards.
struct CaughtError {
  ErrorData* pg_error = nullptr;
  int sqlstate = 0;
  char message[1024] = {0};
};

void Capture(CaughtError* out, int sqlstate, const char* prefix, const char* what) noexcept;

// Raises the captured error as a PostgreSQL ERROR; never returns.
[[noreturn]] void Raise(const CaughtError& caught);

}  // namespace detail

// Runs fn (PostgreSQL -> C++ entry); any exception becomes an ordinary SQL error.
template <typename Fn>
auto CppGuard(Fn&& fn) -> decltype(fn()) {
  detail::CaughtError caught;
  try {
    return fn();
  } catch (const PgError& e) {
    caught.pg_error = e.edata();
  } catch (const SqlError& e) {
    detail::Capture(&caught, e.sqlstate(), "", e.what());
  } catch (const std::bad_alloc&) {
    detail::Capture(&caught, ERRCODE_OUT_OF_MEMORY, "", "out of memory in pg_scann");
  } catch (const std::invalid_argument& e) {
    detail::Capture(&caught, ERRCODE_INVALID_PARAMETER_VALUE, "", e.what());
  } catch (const std::exception& e) {
    detail::Capture(&caught, ERRCODE_INTERNAL_ERROR, "pg_scann internal error: ", e.what());
  } catch (...) {
    detail::Capture(&caught, ERRCODE_INTERNAL_ERROR,
                    "pg_scann internal error: ", "unknown exception");
  }
  detail::Raise(caught);
}

// Runs fn (C++ -> PostgreSQL call) and turns a PostgreSQL error into PgError.
template <typename Fn>
void PgCallVoid(Fn&& fn) {
  MemoryContext caller_context = CurrentMemoryContext;
  ErrorData* volatile edata = nullptr;
  PG_TRY();
  { fn(); }
  PG_CATCH();
  {
    MemoryContextSwitchTo(caller_context);
    edata = CopyErrorData();
    FlushErrorState();
  }
  PG_END_TRY();
  if (edata) throw PgError(edata);
}

template <typename Fn>
auto PgCall(Fn&& fn) -> decltype(fn()) {
  using R = decltype(fn());
  if constexpr (std::is_void_v<R>) {
    PgCallVoid(std::forward<Fn>(fn));
  } else {
    static_assert(std::is_trivially_copyable_v<R>, "PgCall returns plain values only");
    R result{};
    PgCallVoid([&] { result = fn(); });
    return result;
  }
}

// CHECK_FOR_INTERRUPTS from C++ code: a cancel arrives as PgError and unwinds.
void CheckInterrupts();

}  // namespace scann::pg
