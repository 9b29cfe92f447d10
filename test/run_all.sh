#!/usr/bin/env bash
# The whole pg_scann test suite, from a clean checkout on Debian 12, needing no running
# server: installs what is missing, builds and installs the extension, prepares the real
# data sets, then runs the core unit tests (GoogleTest), pg_regress, the isolation tests,
# the TAP suite (PostgreSQL::Test::Cluster) and the benchmark harness's smoke test.  It
# closes with one line "N passed, N failed" over all of them and exits non-zero on any
# failure.  Run as root (servers then run as the OS user postgres) or as a user with sudo.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${PG_SCANN_TEST_DIR:-/var/tmp/pg_scann-test}
export PG_SCANN_DATA=${PG_SCANN_DATA:-/var/tmp/pg_scann-data}
PYTHON=/usr/bin/python3
passed=0
failed=0

step() { printf '\n=== %s ===\n' "$*"; }
count() { passed=$((passed + $1)); failed=$((failed + $2)); echo "--- $3: $1 passed, $2 failed"; }

# Servers refuse to run as root: as root, run them (and everything that starts them) as
# postgres; otherwise as ourselves.
if [ "$(id -u)" -eq 0 ]; then
  TEST_USER=postgres
  as_test_user() { runuser -u postgres -- env PATH="$PATH" PG_SCANN_DATA="$PG_SCANN_DATA" "$@"; }
  SUDO=""
else
  TEST_USER=$(id -un)
  as_test_user() { "$@"; }
  SUDO=sudo
fi

setup() {
  step "dependencies"
  "$ROOT/test/install_deps.sh" || exit 1
  PGBIN=$(pg_config --bindir)
  PGXS_SRC=$(dirname "$(dirname "$(pg_config --pgxs)")")
  export PATH="$PGBIN:$PATH"

  step "build and install"
  make -C "$ROOT" -s -j2 all build/core_tests build/micro_bench || exit 1
  $SUDO make -C "$ROOT" -s install || exit 1

  step "data sets"
  $SUDO env PG_SCANN_DATA="$PG_SCANN_DATA" $PYTHON "$ROOT/bench/datasets.py" prepare minilm fashion-mnist glove-100 || exit 1

  $SUDO rm -rf "$WORK"
  mkdir -p "$WORK" 2>/dev/null || $SUDO mkdir -p "$WORK"
  $SUDO chown "$TEST_USER" "$WORK"
}

unit_tests() {
  step "core unit tests (GoogleTest)"
  local out="$WORK/unit.log"
  "$ROOT/build/core_tests" --gtest_brief=1 >"$out" 2>&1
  local rc=$?
  tail -n 20 "$out"
  local ok bad
  ok=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
  bad=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
  ok=${ok:-0}
  bad=${bad:-0}
  [ $rc -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
  count "$ok" "$bad" "unit"
}

# The pg_regress, isolation and TAP servers run with 1MB of shared_buffers (128 pages), so
# index and heap pages are evicted and read back from disk all the time: a page written
# with an invalid header, or changed without being marked dirty, shows up in the tests
# instead of hiding in memory.  (Far less than this fails inside PostgreSQL itself:
# log_newpage_range pins 32 pages at once.)
SMALL_BUFFERS=1MB

# A scratch cluster for pg_regress and the isolation tester.
start_cluster() {
  PORT=$((50000 + RANDOM % 10000))
  as_test_user initdb -D "$WORK/data" -A trust --no-sync >"$WORK/initdb.log" 2>&1 || return 1
  as_test_user pg_ctl -D "$WORK/data" -l "$WORK/server.log" -w \
    -o "-p $PORT -k $WORK -c listen_addresses='' -c fsync=off -c shared_buffers=$SMALL_BUFFERS" start >/dev/null || return 1
}

stop_cluster() { as_test_user pg_ctl -D "$WORK/data" -m fast -w stop >/dev/null 2>&1; }

# Counts pg_regress-style "ok"/"FAILED" lines of one run's output.
count_regress() {
  local out=$1 rc=$2 label=$3 ok bad
  ok=$(grep -cE '\.\.\. ok( |$)' "$out")
  bad=$(grep -cE '\.\.\. FAILED' "$out")
  [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
  count "$ok" "$bad" "$label"
}

regress_tests() {
  step "pg_regress and isolation"
  if ! start_cluster; then
    cat "$WORK/initdb.log" "$WORK/server.log" 2>/dev/null
    count 0 1 "scratch cluster"
    return
  fi
  local tests rc out="$WORK/regress.log"
  tests=$(make -s -C "$ROOT" print-regress)
  (cd "$ROOT" && as_test_user "$PGXS_SRC/test/regress/pg_regress" --bindir="$PGBIN" \
      --inputdir="$ROOT" --outputdir="$WORK/regress" --host="$WORK" --port="$PORT" \
      --dbname=contrib_regression $tests) >"$out" 2>&1
  rc=$?
  cat "$out"
  [ $rc -ne 0 ] && cat "$WORK"/regress/regression.diffs 2>/dev/null | head -200
  count_regress "$out" $rc "pg_regress"

  tests=$(make -s -C "$ROOT" print-isolation)
  if [ -n "$tests" ]; then
    out="$WORK/isolation.log"
    (cd "$ROOT" && as_test_user "$PGXS_SRC/test/isolation/pg_isolation_regress" \
        --bindir="$PGBIN" --inputdir="$ROOT/test/isolation" --outputdir="$WORK/isolation" \
        --host="$WORK" --port="$PORT" --dbname=isolation_regression $tests) >"$out" 2>&1
    rc=$?
    cat "$out"
    [ $rc -ne 0 ] && cat "$WORK"/isolation/regression.diffs 2>/dev/null | head -200
    count_regress "$out" $rc "isolation"
  fi
  stop_cluster
}

tap_tests() {
  step "TAP (PostgreSQL::Test::Cluster)"
  local out="$WORK/tap.log" rc ok bad
  as_test_user mkdir -p "$WORK/tap"
  echo "shared_buffers = $SMALL_BUFFERS" | as_test_user tee "$WORK/tap/small_buffers.conf" >/dev/null
  (cd "$ROOT" && as_test_user env TESTDIR="$WORK/tap" PG_REGRESS="$PGXS_SRC/test/regress/pg_regress" \
      TEMP_CONFIG="$WORK/tap/small_buffers.conf" \
      prove -v -I "$PGXS_SRC/test/perl" -I "$ROOT/test" test/t/*.pl) >"$out" 2>&1
  rc=$?
  grep -vE '^\s*#' "$out" | tail -n 40
  ok=$(grep -cE '^ok [0-9]+' "$out")
  bad=$(grep -cE '^not ok [0-9]+' "$out")
  [ $rc -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
  [ $rc -ne 0 ] && grep -E '^\s*#' "$out" | tail -n 60
  count "$ok" "$bad" "TAP"
}

bench_smoke() {
  step "benchmark harness smoke test"
  local out="$WORK/bench-smoke.log" rc
  (cd "$ROOT" && $PYTHON bench/run.py --smoke) >"$out" 2>&1
  rc=$?
  tail -n 20 "$out"
  if [ $rc -eq 0 ]; then count 1 0 "bench smoke"; else count 0 1 "bench smoke"; fi
}

setup
unit_tests
regress_tests
tap_tests
bench_smoke
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
