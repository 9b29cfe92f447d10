#!/usr/bin/env bash
# Builds pg_scann (plus any make targets given as arguments) with one line per file compiled
# or linked, "[k/N] target", then installs it into the PostgreSQL that pg_config names.
# Compiler warnings and errors pass through unchanged.  Used by bench/demo.sh and
# test/run_all.sh; runs `make install` through sudo when not root and PostgreSQL's
# directories are not writable.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
targets=(all "$@")
# Compiler and linker command lines, as make echoes them.
compile='^(g\+\+|gcc|c\+\+|cc|clang\+\+|clang) .* -o [^ ]+'

total=$(make -C "$ROOT" --no-print-directory -n "${targets[@]}" 2>/dev/null | grep -cE "$compile")
if [ "$total" -eq 0 ]; then
  echo "  up to date"
else
  echo "  files to compile or link: $total (make -j2)"
fi
make -C "$ROOT" --no-print-directory -j2 "${targets[@]}" 2>&1 | awk -v total="$total" -v re="$compile" '
  $0 ~ re { n++; match($0, / -o [^ ]+/); printf "  [%d/%d] %s\n", n, total, substr($0, RSTART + 4, RLENGTH - 4); fflush(); next }
  /^mkdir |^make: (Nothing to be done|.* is up to date)/ { next }
  { print; fflush() }'
rc=$?
[ $rc -eq 0 ] || { echo "build failed (make exit status $rc)"; exit $rc; }

sudo=""
[ "$(id -u)" -eq 0 ] || [ -w "$(pg_config --pkglibdir)" ] || sudo=sudo
echo "  installing into $(pg_config --pkglibdir) and $(pg_config --sharedir)/extension"
$sudo make -C "$ROOT" --no-print-directory -s install || { echo "make install failed"; exit 1; }
