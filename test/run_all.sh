#!/usr/bin/env bash
# The whole pg_scann test suite, from a clean checkout on Debian 12, needing no running
# server: installs what is missing, builds and installs the extension, prepares the real
# data sets, then runs the core unit tests (GoogleTest), pg_regress, the isolation tests,
# the TAP suite (PostgreSQL::Test::Cluster) and the benchmark harness's smoke test.  Every
# step prints what it is doing as it goes (a line per pg_regress test and per TAP file, with
# its result and time); a failure shows the failing test's own log (the unit test's output,
# pg_regress's diffs, the TAP file's assertions and regress_log).  It closes with one line
# "N passed, N failed" over all of them and exits non-zero on any failure.  Run as root
# (servers then run as the OS user postgres) or as a user with sudo.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${PG_SCANN_TEST_DIR:-/var/tmp/pg_scann-test}
export PG_SCANN_DATA=${PG_SCANN_DATA:-/var/tmp/pg_scann-data}
PYTHON=/usr/bin/python3
passed=0
failed=0
failures=()
skipped=()  # TAP files that skipped themselves (something they need is missing), with why
START=$(date +%s)
STEP=0
STEPS=7

# "mm:ss" since $1 (default: the start of the suite).
since() { date -u -d "@$(($(date +%s) - ${1:-$START}))" +%M:%S; }
step() {
  STEP=$((STEP + 1))
  STEP_START=$(date +%s)
  printf '\n=== [%d/%d] %s (at %s) ===\n' "$STEP" "$STEPS" "$*" "$(since)"
}
# count PASSED FAILED LABEL [WHAT_FAILED]
count() {
  passed=$((passed + $1))
  failed=$((failed + $2))
  [ "$2" -eq 0 ] || failures+=("${4:-$3}")
  echo "--- $3: $1 passed, $2 failed ($(since "$STEP_START"))"
}

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
  step "dependencies (Debian packages, test/install_deps.sh)"
  "$ROOT/test/install_deps.sh" || exit 1
  PGBIN=$(pg_config --bindir)
  PGXS_SRC=$(dirname "$(dirname "$(pg_config --pgxs)")")
  export PATH="$PGBIN:$PATH"

  step "build and install"
  "$ROOT/test/build.sh" build/core_tests build/micro_bench || exit 1

  step "data sets (bench/datasets.py, cached in $PG_SCANN_DATA)"
  $SUDO env PG_SCANN_DATA="$PG_SCANN_DATA" $PYTHON "$ROOT/bench/datasets.py" prepare minilm fashion-mnist glove-100 || exit 1

  $SUDO rm -rf "$WORK"
  mkdir -p "$WORK" 2>/dev/null || $SUDO mkdir -p "$WORK"
  $SUDO chown "$TEST_USER" "$WORK"
}

unit_tests() {
  step "core unit tests (GoogleTest)"
  local out="$WORK/unit.log"
  echo "  build/core_tests (log: $out)"
  "$ROOT/build/core_tests" --gtest_brief=1 >"$out" 2>&1
  local rc=$?
  local ok bad
  ok=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
  bad=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
  ok=${ok:-0}
  bad=${bad:-0}
  [ $rc -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
  grep -E '^\[ recall \]|^\[==========\]|^\[  PASSED  \]' "$out"
  if [ $rc -ne 0 ]; then
    # --gtest_brief prints only the failing tests, each with its own output.
    echo "failing unit tests: $(sed -n 's/^\[  FAILED  \] \([A-Za-z_][A-Za-z0-9_/.]*\).*/\1/p' "$out" | sort -u | tr '\n' ' ')"
    echo "--- $out (first 200 lines):"
    head -n 200 "$out"
  fi
  count "$ok" "$bad" "unit" "unit tests ($out)"
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
  count "$ok" "$bad" "$label" "${4:-$label}"
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
      --dbname=contrib_regression $tests) 2>&1 | tee "$out" | quiet_setup
  rc=${PIPESTATUS[0]}
  show_diffs "$WORK/regress" $rc
  count_regress "$out" $rc "pg_regress" "pg_regress: $(failed_tests "$out") (diffs: $WORK/regress/regression.diffs)"

  tests=$(make -s -C "$ROOT" print-isolation)
  if [ -n "$tests" ]; then
    out="$WORK/isolation.log"
    (cd "$ROOT" && as_test_user "$PGXS_SRC/test/isolation/pg_isolation_regress" \
        --bindir="$PGBIN" --inputdir="$ROOT/test/isolation" --outputdir="$WORK/isolation" \
        --host="$WORK" --port="$PORT" --dbname=isolation_regression $tests) 2>&1 | tee "$out" | quiet_setup
    rc=${PIPESTATUS[0]}
    show_diffs "$WORK/isolation" $rc
    count_regress "$out" $rc "isolation" "isolation: $(failed_tests "$out") (diffs: $WORK/isolation/regression.diffs)"
  fi
  stop_cluster
}

# pg_regress's output without the command tags of its database setup.
quiet_setup() { grep --line-buffered -vE '^(SET|DROP DATABASE|CREATE DATABASE|ALTER DATABASE)$'; }

# Names of the tests a pg_regress run reports FAILED.
failed_tests() { sed -n 's/^[ ]*\(test\|permutation\)\{0,1\} *\([A-Za-z0-9_]*\) *\.\.\. FAILED.*/\2/p' "$1" | tr '\n' ' '; }

# After a failed pg_regress run: its diffs, which name each failing test's files, and the
# end of the server log.
show_diffs() {
  local dir=$1 rc=$2
  [ "$rc" -ne 0 ] || return 0
  echo "--- $dir/regression.diffs (first 200 lines):"
  head -n 200 "$dir/regression.diffs" 2>/dev/null
  echo "--- $WORK/server.log (last 20 lines):"
  tail -n 20 "$WORK/server.log" 2>/dev/null
}

# One TAP file: a line with its result and time; on failure, its failing assertions, the
# end of its regress_log and of its servers' logs.
tap_file() {
  local file=$1 i=$2 n=$3 name out rc ok bad t0 log skip
  name=$(basename "$file" .pl)
  out="$WORK/tap/$name.out"
  log="$WORK/tap/tmp_check/log/regress_log_$name"
  printf '  [%d/%d] %-28s ' "$i" "$n" "$name"
  t0=$(date +%s)
  (cd "$ROOT" && as_test_user env TESTDIR="$WORK/tap" PG_REGRESS="$PGXS_SRC/test/regress/pg_regress" \
      TEMP_CONFIG="$WORK/tap/small_buffers.conf" \
      prove -v -I "$PGXS_SRC/test/perl" -I "$ROOT/test" "$file") >"$out" 2>&1 &
  local pid=$! beat=$((t0 + 30)) beats=0
  # A file that runs long says every 30 s how many of its assertions have passed so far
  # (counted in its regress_log, which is written as it goes; prove's output is buffered).
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ "$(date +%s)" -ge "$beat" ] && kill -0 "$pid" 2>/dev/null; then
      [ "$beats" -gt 0 ] || echo "running"
      beats=$((beats + 1))
      beat=$((beat + 30))
      echo "        $(grep -cE '^\[[0-9:.]+\]\([0-9.]+s\) ok [0-9]+' "$log" 2>/dev/null) assertions passed so far, $(since "$t0")"
    fi
  done
  wait "$pid"
  rc=$?
  [ "$beats" -eq 0 ] || printf '  [%d/%d] %-28s ' "$i" "$n" "$name"
  ok=$(grep -cE '^ok [0-9]+' "$out")
  bad=$(grep -cE '^not ok [0-9]+' "$out")
  [ $rc -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
  skip=$(sed -n 's/^[^ ]*\.pl \.\. skipped: *//p' "$out" | head -n 1)  # prove's line for plan skip_all
  if [ $rc -eq 0 ] && [ -n "$skip" ]; then
    printf 'skipped: %s\n' "$skip"
    skipped+=("$name ($skip)")
  elif [ $rc -eq 0 ]; then
    printf 'ok, %d tests, %s\n' "$ok" "$(since "$t0")"
  else
    printf 'FAILED, %d of %d tests, %s\n' "$bad" $((ok + bad)) "$(since "$t0")"
    echo "--- $name: what prove reported ($out):"
    grep -E '^not ok|^#\s+(Failed test|at |got:|expected:|Looks like|Tests were run)|^Dubious|^Bail out' "$out" | head -n 60
    echo "--- $log (last 60 lines):"
    tail -n 60 "$log" 2>/dev/null
    for f in "$WORK/tap/tmp_check/log/${name}"_*.log; do
      [ -f "$f" ] || continue
      echo "--- $f (last 15 lines):"
      tail -n 15 "$f"
    done
  fi
  count "$ok" "$bad" "$name" "TAP $name ($log)" >/dev/null
}

tap_tests() {
  local files n i=0
  files=("$ROOT"/test/t/*.pl)
  n=${#files[@]}
  step "TAP (PostgreSQL::Test::Cluster), $n files one by one"
  local passed_before=$passed failed_before=$failed
  as_test_user mkdir -p "$WORK/tap"
  echo "shared_buffers = $SMALL_BUFFERS" | as_test_user tee "$WORK/tap/small_buffers.conf" >/dev/null
  for f in "${files[@]}"; do
    i=$((i + 1))
    tap_file "test/t/$(basename "$f")" "$i" "$n"
  done
  echo "--- TAP: $((passed - passed_before)) passed, $((failed - failed_before)) failed ($(since "$STEP_START"))"
}

bench_smoke() {
  step "benchmark harness smoke test (bench/run.py --smoke)"
  local out="$WORK/bench-smoke.log" rc
  (cd "$ROOT" && $PYTHON bench/run.py --smoke) >"$out" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    tail -n 1 "$out"
    count 1 0 "bench smoke"
  else
    echo "--- $out (last 40 lines):"
    tail -n 40 "$out"
    count 0 1 "bench smoke" "bench smoke ($out)"
  fi
}

setup
unit_tests
regress_tests
tap_tests
bench_smoke
echo
echo "whole suite: $(since) (mm:ss)"
for f in "${skipped[@]}"; do echo "skipped: $f"; done
for f in "${failures[@]}"; do echo "failed: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
