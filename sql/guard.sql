-- The C++/PostgreSQL boundary (src/pg/guard.h): errors raised inside guarded C++ code come
-- back as ordinary SQL errors, C++ destructors still run, and the session goes on.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_scann;
RESET client_min_messages;
SELECT scann_guard_selftest('ok');
SELECT scann_guard_selftest('destructors') AS before \gset
-- A C++ exception.
SELECT scann_guard_selftest('cpp_exception');
-- An out-of-memory exception keeps its SQLSTATE (only SQLSTATEs are shown below).
\set VERBOSITY sqlstate
SELECT scann_guard_selftest('bad_alloc');
-- A PostgreSQL error (ereport) raised inside C++ code, rethrown unchanged with its SQLSTATE.
SELECT scann_guard_selftest('pg_error');
-- An SQL error raised from C++ with its own SQLSTATE.
SELECT scann_guard_selftest('sql_error');
\set VERBOSITY default
-- The same errors with their messages.
SELECT scann_guard_selftest('bad_alloc');
SELECT scann_guard_selftest('pg_error');
SELECT scann_guard_selftest('sql_error');
SELECT scann_guard_selftest('nonsense');
-- C++ calling PostgreSQL successfully.
SELECT scann_guard_selftest('pg_call');
-- Every error above unwound its C++ frame: the 8 errors, 'pg_call' and the 'before' call
-- itself (counted after it returned) each destroyed one object: 10.
SELECT scann_guard_selftest('destructors') - :before AS destructors_run;
-- The session keeps working, including inside a transaction after a rolled-back error.
BEGIN;
SAVEPOINT s;
SELECT scann_guard_selftest('pg_error');
ROLLBACK TO SAVEPOINT s;
SELECT '{1,2,3}'::real[] <-> '{1,2,4}'::real[] AS still_working;
COMMIT;
