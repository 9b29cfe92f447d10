#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: installs what is missing, builds and
# installs pg_scann, starts a scratch PostgreSQL 15 cluster owned by the project, loads
# Fashion-MNIST (60,000 x 784, L2), builds a scann index and runs k-NN queries, printing
# neighbours, recall@10 against an exact scan, and timings.  Run as root (the server runs
# as the OS user postgres) or as a user with sudo.  The cluster stays up afterwards and a
# rerun reuses it: what you created in it stays, and the demo rebuilds only its own index.
# The last lines say how to connect and how to stop it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO=${PG_SCANN_DEMO_DIR:-/var/tmp/pg_scann-demo}
PORT=${PG_SCANN_DEMO_PORT:-55499}
QUERIES=${PG_SCANN_DEMO_QUERIES:-100}
export PG_SCANN_DATA=${PG_SCANN_DATA:-/var/tmp/pg_scann-data}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
START=$(date +%s)

step() { printf '\n== [%s] %s\n' "$(date -u -d "@$(($(date +%s) - START))" +%M:%S)" "$*"; }

step "1/5 Debian packages pg_scann needs (test/install_deps.sh)"
"$ROOT/test/install_deps.sh"
step "2/5 building and installing pg_scann"
"$ROOT/test/build.sh"
PGBIN=$(pg_config --bindir)

step "3/5 Fashion-MNIST (apt package dataset-fashion-mnist, converted once into $PG_SCANN_DATA)"
$SUDO env PG_SCANN_DATA="$PG_SCANN_DATA" /usr/bin/python3 "$ROOT/bench/datasets.py" prepare fashion-mnist
SET="$PG_SCANN_DATA/fashion-mnist"

# Servers refuse to run as root: as root, the cluster belongs to postgres.
if [ "$(id -u)" -eq 0 ]; then
  OWNER=postgres
  as_pg() { runuser -u postgres -- "$@"; }
  STOP="runuser -u postgres -- $PGBIN/pg_ctl -D $DEMO/data stop"
else
  OWNER=$(id -un)
  as_pg() { "$@"; }
  STOP="$PGBIN/pg_ctl -D $DEMO/data stop"
fi

step "4/5 the demo's cluster in $DEMO/data (port $PORT)"
if [ -f "$DEMO/data/PG_VERSION" ]; then
  echo "  reusing the cluster of an earlier run: its databases and tables stay as they are"
  echo "  (delete $DEMO for a fresh one)"
  if as_pg "$PGBIN/pg_ctl" -D "$DEMO/data" status >/dev/null 2>&1; then
    echo "  restarting it so that it runs this build's server"
    as_pg "$PGBIN/pg_ctl" -D "$DEMO/data" -m fast -w stop >/dev/null
  fi
else
  echo "  creating it"
  $SUDO mkdir -p "$DEMO"
  [ "$(id -u)" -ne 0 ] || chown postgres "$DEMO"
  as_pg "$PGBIN/initdb" -D "$DEMO/data" -A trust --no-sync >/dev/null
fi
if ! as_pg "$PGBIN/pg_ctl" -D "$DEMO/data" -l "$DEMO/server.log" -w -o "-p $PORT -k $DEMO \
    -c listen_addresses='' -c shared_buffers=1GB -c maintenance_work_mem=1GB" start >/dev/null; then
  tail -n 20 "$DEMO/server.log"
  echo "the demo's server did not start (log above, in $DEMO/server.log)"
  exit 1
fi
# What the last lines print, checked here as this user runs it.
CONNECT="$PGBIN/psql -h $DEMO -p $PORT -U $OWNER postgres"
$CONNECT -X -q -At -c 'SELECT 1' >/dev/null

step "5/5 loading, building the index, querying (bench/demo.sql)"
# From stdin rather than -f, so that progress NOTICEs are not prefixed with file and line.
$CONNECT -X -q -v ON_ERROR_STOP=1 -v set="$SET" -v nq="$QUERIES" <"$ROOT/bench/demo.sql"

step "done in $(($(date +%s) - START)) s; the cluster keeps running"
echo "connect: $CONNECT"
echo "         (then e.g. SELECT id FROM fashion_mnist ORDER BY embedding <-> (SELECT embedding"
echo "          FROM fashion_mnist_queries WHERE id = 1) LIMIT 5;)"
echo "stop:    $STOP"
