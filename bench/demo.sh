#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: installs what is missing, builds and
# installs pg_scann, starts a scratch PostgreSQL 15 cluster owned by the project, loads
# Fashion-MNIST (60,000 x 784, L2), builds a scann index and runs k-NN queries, printing
# neighbours, recall@10 against an exact scan, and timings.  Run as root (the server runs
# as the OS user postgres) or as a user with sudo.  The cluster stays up afterwards; the
# last lines say how to connect and how to stop it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO=${PG_SCANN_DEMO_DIR:-/var/tmp/pg_scann-demo}
PORT=${PG_SCANN_DEMO_PORT:-55499}
QUERIES=${PG_SCANN_DEMO_QUERIES:-100}
export PG_SCANN_DATA=${PG_SCANN_DATA:-/var/tmp/pg_scann-data}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

echo "== installing dependencies, building and installing pg_scann"
"$ROOT/test/install_deps.sh"
make -C "$ROOT" -s -j2
$SUDO make -C "$ROOT" -s install
PGBIN=$(pg_config --bindir)

echo "== preparing Fashion-MNIST (apt package dataset-fashion-mnist)"
$SUDO env PG_SCANN_DATA="$PG_SCANN_DATA" /usr/bin/python3 "$ROOT/bench/datasets.py" prepare fashion-mnist
SET="$PG_SCANN_DATA/fashion-mnist"

as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
echo "== starting a scratch cluster in $DEMO (port $PORT)"
if [ -f "$DEMO/data/postmaster.pid" ]; then
  as_pg "$PGBIN/pg_ctl" -D "$DEMO/data" -m fast -w stop >/dev/null || true
fi
$SUDO rm -rf "$DEMO"
$SUDO mkdir -p "$DEMO"
[ "$(id -u)" -eq 0 ] && chown postgres "$DEMO"
as_pg "$PGBIN/initdb" -D "$DEMO/data" -A trust --no-sync >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$DEMO/data" -l "$DEMO/server.log" -w \
  -o "-p $PORT -k $DEMO -c listen_addresses='' -c shared_buffers=1GB -c maintenance_work_mem=1GB" start >/dev/null
PSQL=(as_pg "$PGBIN/psql" -X -q -h "$DEMO" -p "$PORT" -d postgres -v ON_ERROR_STOP=1)

"${PSQL[@]}" -v set="$SET" -v nq="$QUERIES" -f "$ROOT/bench/demo.sql"

echo
echo "connect: psql -h $DEMO -p $PORT postgres   (as the postgres user)"
echo "stop:    runuser -u postgres -- $PGBIN/pg_ctl -D $DEMO/data stop"
