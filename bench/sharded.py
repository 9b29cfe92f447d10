#!/usr/bin/python3
"""pg_scann scaled out with postgres_fdw, on one machine: a coordinator and two shard servers.

    /usr/bin/python3 bench/sharded.py --dataset fashion-mnist --queries 1000 \\
        --nprobe 10,20 --reorder 100 --cluster-dir /var/tmp/pg_scann-sharded

Three scratch clusters on Unix sockets (bench/cluster.py): the coordinator holds `items`, all
rows of the data set with one scann index (the single node), and `items_sharded`, hash
partitioned by id into two postgres_fdw foreign tables whose rows live on the shards, each
with its own scann index.  For every setting (scann.nprobe x scann.reorder, given to the
shards through their servers' `options` and to the coordinator's session by SET) each query
form runs every query as a prepared statement with a generic plan, one connection:

  single   SELECT id FROM items ORDER BY embedding <op> $1 LIMIT k (one node, all rows)
  floor    a primary-key lookup of a missing id on both shards, asynchronously: the round
           trips postgres_fdw makes for any query, the least a sharded query can cost
  plain    the same query on items_sharded (Merge Append; no LIMIT reaches the shards)
  union    a UNION ALL of per-shard ORDER BY ... LIMIT k subqueries, async, vectors shipped
  knn      the SQL of scann_knn_query (distances and ids shipped; README "Scaling out")

and reports recall@10 against the exact answers, queries/s, median latency, and the rows and
bytes the shards sent per query (and the bytes sent to them).  Rows and bytes are counted on
the wire by a relay between the coordinator and each shard (PostgreSQL protocol messages,
DataRow = one row) in a separate pass, so the relay costs no time in the timed pass.  On a
2-core machine this measures correctness and overhead, not speed-up: the three servers share
the cores.
"""
import argparse
import contextlib
import json
import os
import re
import socket
import sys
import threading

import numpy as np

import datasets
import groundtruth
import loader
import measure
from cluster import ScratchCluster, install_extension, scratch_settings
from progress import Step, note
from recall import recall_at_k

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPERATORS = {"l2": "<->", "ip": "<#>", "cosine": "<=>"}
SHARDS = (1, 2)
FORMS = ("single", "floor", "plain", "union", "knn")


def _ints(text):
    return [int(x) for x in text.split(",") if x]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist", choices=sorted(datasets.SOURCES))
    p.add_argument("--rows", type=int, help="base rows to load (a prefix; default: all)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--nprobe", type=_ints, default="10,20")
    p.add_argument("--reorder", type=_ints, default="100")
    p.add_argument("--forms", default=",".join(FORMS), help=f"from {','.join(FORMS)}")
    p.add_argument("--wire-queries", type=int, default=200,
                   help="queries of the pass that counts rows and bytes on the wire")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--cluster-dir", help="keep the three clusters under this directory")
    p.add_argument("--install", action="store_true", help="run `make -s install` first")
    p.add_argument("--out", help="write results.json and results.md here")
    args = p.parse_args(argv)
    args.forms = [f for f in args.forms.split(",") if f]
    for f in args.forms:
        if f not in FORMS:
            p.error(f"unknown form {f!r}; known: {', '.join(FORMS)}")
    return args


# ----------------------------------------------------------------------------- the wire

class Relay:
    """A Unix-socket relay in front of one server that counts what crosses it: bytes each
    way and the DataRow messages (rows) the server sends.  Clients connect to
    `directory`/.s.PGSQL.`port` as they would to the server."""

    def __init__(self, directory, target_path, port):
        self.directory, self.target_path, self.port = directory, target_path, port
        self.lock = threading.Lock()
        self.to_server = self.to_client = self.rows = 0
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o777)
        self.path = os.path.join(directory, f".s.PGSQL.{port}")
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o777)
        self.listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def counters(self):
        with self.lock:
            return self.to_server, self.to_client, self.rows

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self.target_path)
            threading.Thread(target=self._pump_up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(server, client), daemon=True).start()

    def _pump_up(self, src, dst):
        """Client to server: bytes only."""
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                with self.lock:
                    self.to_server += len(data)
                dst.sendall(data)
        _close(src, dst)

    def _pump_down(self, src, dst):
        """Server to client: bytes, and the messages parsed to count DataRow ('D') ones."""
        pending = b""
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                pending += data
                rows = 0
                while len(pending) >= 5:
                    length = int.from_bytes(pending[1:5], "big")
                    if len(pending) < 1 + length:
                        break
                    rows += pending[0:1] == b"D"
                    pending = pending[1 + length:]
                with self.lock:
                    self.to_client += len(data)
                    self.rows += rows
                dst.sendall(data)
        _close(src, dst)

    def close(self):
        self.listener.close()


def _close(*sockets):
    """Closing one side of a relayed connection ends the other's pump too."""
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


# ----------------------------------------------------------------------------- setup

def shard_setup(conn, tag):
    """The shard's table (rows arrive through the coordinator) unless it holds the set."""
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_scann")
        cur.execute("SELECT obj_description(to_regclass('items'), 'pg_class')")
        if cur.fetchone()[0] == tag:
            return False
        cur.execute("DROP TABLE IF EXISTS items")
        cur.execute("CREATE TABLE items (id bigint PRIMARY KEY, embedding real[])")
    return True


def coordinator_setup(conn, args, base, shards, tag):
    """The single-node table (loaded unless it holds the set), the foreign servers and the
    sharded table (made anew)."""
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_scann")
        cur.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
    if loader.loaded_tag(conn) != tag:
        loader.load(conn, args.dataset, base)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS items_sharded")
        for i, shard in zip(SHARDS, shards):
            cur.execute(f"DROP SERVER IF EXISTS shard{i} CASCADE")
            cur.execute(f"""CREATE SERVER shard{i} FOREIGN DATA WRAPPER postgres_fdw OPTIONS (
                host '{shard.directory}', port '5432', dbname 'postgres',
                extensions 'pg_scann', async_capable 'true', fdw_tuple_cost '0.2',
                parallel_commit 'true', batch_size '1000', options '')""")
            cur.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER shard{i}")
        cur.execute("CREATE TABLE items_sharded (id bigint, embedding real[]) "
                    "PARTITION BY HASH (id)")
        for i in SHARDS:
            cur.execute(f"""CREATE FOREIGN TABLE items_shard{i} PARTITION OF items_sharded
                FOR VALUES WITH (MODULUS {len(SHARDS)}, REMAINDER {i - 1})
                SERVER shard{i} OPTIONS (table_name 'items', use_remote_estimate 'false')""")


def route_rows(conn):
    """INSERT ... SELECT through the coordinator: rows go to their shards in batches."""
    with Step("routing the rows to the shards (INSERT INTO items_sharded SELECT ...)"), \
            conn.cursor() as cur:
        cur.execute("INSERT INTO items_sharded SELECT id, embedding FROM items")


def build_indexes(conns, metric, tag):
    """One scann index per node, built side by side would share the cores: one at a time."""
    for name, conn, table in conns:
        with conn.cursor() as cur:
            cur.execute(f"SELECT 1 FROM pg_indexes WHERE tablename = '{table}' "
                        "AND indexdef LIKE '%USING scann%'")
            if cur.fetchone():
                continue
            with Step(f"{name}: CREATE INDEX ON {table} USING scann (embedding {metric}_ops)"):
                cur.execute(f"CREATE INDEX ON {table} USING scann (embedding {metric}_ops)")
            cur.execute(f"VACUUM ANALYZE {table}")
            cur.execute(f"COMMENT ON TABLE {table} IS %s", (tag,))


# ----------------------------------------------------------------------------- forms

def union_sql(op, k):
    """Per-shard ORDER BY ... LIMIT k subqueries: postgres_fdw ships ORDER BY and LIMIT of
    each, runs them asynchronously, and brings back the vectors to compute the distance."""
    branches = "\n  UNION ALL\n".join(
        f"  (SELECT id, embedding {op} $1 AS distance FROM items_shard{i} "
        f"ORDER BY 2 LIMIT {k})" for i in SHARDS)
    return (f"WITH per_shard AS MATERIALIZED (\n{branches})\n"
            f"SELECT id FROM per_shard ORDER BY distance, id LIMIT {k}")


class Form:
    """A query form: its prepared SQL, the remote-estimate setting of the shards' foreign
    tables it needs, and the plan it must have."""

    def __init__(self, name, sql, remote_estimate, plan_must):
        self.name, self.sql, self.remote_estimate, self.plan_must = name, sql, remote_estimate, plan_must
        self.session_settings = {}

    def query_sql(self, k):
        return self.sql

    def check_plan(self, plan):
        for needle, count in self.plan_must:
            if plan.count(needle) != count:
                raise RuntimeError(f"{self.name}: expected {count} x {needle!r} in:\n{plan}")


def make_forms(conn, op, k, names):
    with conn.cursor() as cur:
        cur.execute("SELECT scann_knn_query('items_sharded', 'embedding', %s, %s, 'id')",
                    (k, op))
        knn = cur.fetchone()[0]
    knn = knn.replace("SELECT ids.id, per_partition.distance", "SELECT ids.id")
    forms = {
        "single": Form("single", f"SELECT id FROM items ORDER BY embedding {op} $1 LIMIT {k}",
                       False, [("Index Scan using", 1)]),
        "floor": Form("floor", " UNION ALL ".join(
            f"SELECT id FROM items_shard{i} WHERE id = -1" for i in SHARDS), False,
            [("Async Foreign Scan", 2)]),
        "plain": Form("plain", f"SELECT id FROM items_sharded ORDER BY embedding {op} $1 "
                      f"LIMIT {k}", False, [("Merge Append", 1), ("Foreign Scan", 2)]),
        "union": Form("union", union_sql(op, k), False,
                      [("Async Foreign Scan", 2), (f"LIMIT {k}::bigint", 2)]),
        "knn": Form("knn", knn, True, [("Async Foreign Scan", 2), ("array_agg(id)", 2),
                                       (f"LIMIT {k}::bigint", 2)]),
    }
    return [forms[n] for n in names]


def configure(conn, form, nprobe, reorder):
    """The shards' settings through their servers' options, the foreign tables' remote
    estimates as the form needs them (both take effect at the next transaction)."""
    estimate = "true" if form.remote_estimate else "false"
    with conn.cursor() as cur:
        for i in SHARDS:
            cur.execute(f"ALTER SERVER shard{i} OPTIONS (SET options "
                        f"'-c scann.nprobe={nprobe} -c scann.reorder={reorder}')")
            cur.execute(f"ALTER FOREIGN TABLE items_shard{i} OPTIONS "
                        f"(SET use_remote_estimate '{estimate}')")


# ----------------------------------------------------------------------------- measuring

def explain_verbose(conn, query_literal):
    """EXPLAIN (VERBOSE) of the prepared `q`, whose Remote SQL lines show what each shard
    is asked; vector literals shortened to '{...}'."""
    with conn.cursor() as cur:
        cur.execute("EXPLAIN (VERBOSE, COSTS OFF) EXECUTE q(%s)", (query_literal,))
        return "\n".join(re.sub(r"'\{[^']*\}'", "'{...}'", r[0]) for r in cur.fetchall())


def wire_pass(coordinator, form, settings, args, literals, relays, shards):
    """(rows, bytes from the shards, bytes to the shards) per query, through the relays."""
    admin = coordinator.connect()
    try:
        with admin.cursor() as cur:
            for i, relay in zip(SHARDS, relays):
                cur.execute(f"ALTER SERVER shard{i} OPTIONS (SET host '{relay.directory}')")
        conn = measure.session(coordinator, form, settings, args.k)
        try:
            part = literals[:args.wire_queries]
            measure.run_single(conn, part[:5], 0, f"{form.name} wire warm-up")
            before = [r.counters() for r in relays]
            measure.run_single(conn, part, 0, f"{form.name} on the wire")
            after = [r.counters() for r in relays]
        finally:
            conn.close()
        with admin.cursor() as cur:
            for i, shard in zip(SHARDS, shards):
                cur.execute(f"ALTER SERVER shard{i} OPTIONS (SET host '{shard.directory}')")
    finally:
        admin.close()
    up = sum(a[0] - b[0] for a, b in zip(after, before)) / len(part)
    down = sum(a[1] - b[1] for a, b in zip(after, before)) / len(part)
    rows = sum(a[2] - b[2] for a, b in zip(after, before)) / len(part)
    return rows, down, up


def measure_point(coordinator, form, nprobe, reorder, args, data, relays, shards):
    qs, base, (gt_ids, gt_dists), literals = data
    settings = {"scann.nprobe": str(nprobe), "scann.reorder": str(reorder)}
    admin = coordinator.connect()
    try:
        configure(admin, form, nprobe, reorder)
    finally:
        admin.close()
    conn = measure.session(coordinator, form, settings, args.k)
    try:
        plan = explain_verbose(conn, literals[0])
        form.check_plan(plan)
        ids, lat = measure.run_single(conn, literals, args.warmup,
                                      f"{form.name} nprobe={nprobe} reorder={reorder}")
    finally:
        conn.close()
    found_d = groundtruth.distances(args.metric, qs, base, ids)
    point = {"form": form.name, "nprobe": nprobe, "reorder": reorder,
             "recall@10": recall_at_k(ids, gt_ids, gt_dists, 10, found_d),
             "qps": len(lat) / lat.sum(), "p50_ms": 1e3 * float(np.percentile(lat, 50)),
             "rows": 0.0, "kb_down": 0.0, "kb_up": 0.0, "plan": plan}
    if form.name != "single":
        rows, down, up = wire_pass(coordinator, form, settings, args, literals, relays, shards)
        point.update(rows=rows, kb_down=down / 1024, kb_up=up / 1024)
    note(f"  {form.name} nprobe={nprobe} reorder={reorder}: recall@10 {point['recall@10']:.4f}, "
         f"{point['qps']:.1f} q/s, p50 {point['p50_ms']:.2f} ms, {point['rows']:.1f} rows "
         f"{point['kb_down']:.1f} kB from the shards per query")
    return point


def markdown(meta, points):
    lines = [f"**{meta['dataset']}, {meta['rows']:,} rows ({meta['shard_rows']} on the shards), "
             f"{meta['metric']}, {meta['queries']} queries, LIMIT {meta['k']}, one connection**",
             "", "| form | nprobe | reorder | recall@10 | q/s | p50 ms | rows from shards / query "
             "| kB from shards / query | kB to shards / query |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in points:
        lines.append(f"| {p['form']} | {p['nprobe']} | {p['reorder']} | {p['recall@10']:.4f} "
                     f"| {p['qps']:.1f} | {p['p50_ms']:.2f} | {p['rows']:.1f} "
                     f"| {p['kb_down']:.1f} | {p['kb_up']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.install:
        install_extension(REPO)
    info = datasets.prepare(args.dataset)
    args.metric = info["metric"]
    args.rows = min(args.rows or info["rows"], info["rows"])
    args.queries = min(args.queries, info["queries"])
    base = datasets.base(args.dataset, args.rows)
    qs = datasets.queries(args.dataset, args.queries)
    gt = datasets.ground_truth(args.dataset, args.metric, args.rows, args.queries)
    literals = [measure.literal(q) for q in qs]
    op = OPERATORS[args.metric]
    tag = loader.table_tag(args.dataset, args.rows)
    settings = scratch_settings(args.rows * (4 * info["dim"] + 64))
    root = args.cluster_dir
    with contextlib.ExitStack() as stack:
        def cluster(name):
            return stack.enter_context(ScratchCluster(
                settings, directory=os.path.join(root, name) if root else None))
        coordinator = cluster("coordinator")
        shards = [cluster(f"shard{i}") for i in SHARDS]
        relays = [Relay(os.path.join(s.directory, "relay"), os.path.join(s.directory, ".s.PGSQL.5432"),
                        5432) for s in shards]
        stack.callback(lambda: [r.close() for r in relays])
        shard_conns = [s.connect() for s in shards]
        fresh = [shard_setup(c, tag) for c in shard_conns]
        conn = coordinator.connect()
        coordinator_setup(conn, args, base, shards, tag)
        if any(fresh):
            for c in shard_conns:
                with c.cursor() as cur:
                    cur.execute("TRUNCATE items")
            route_rows(conn)
        build_indexes([("coordinator", conn, "items")]
                      + [(f"shard{i}", c, "items") for i, c in zip(SHARDS, shard_conns)],
                      args.metric, tag)
        with conn.cursor() as cur:
            cur.execute("ANALYZE items_sharded")
            cur.execute("SELECT string_agg(tableoid::regclass || ': ' || n, ', ' "
                        "ORDER BY tableoid::regclass::text) FROM (SELECT tableoid, count(*) AS n "
                        "FROM items_sharded GROUP BY 1) c")
            shard_rows = cur.fetchone()[0]
        forms = make_forms(conn, op, args.k, args.forms)
        conn.close()
        points = []
        for nprobe in args.nprobe:
            for reorder in args.reorder:
                for form in forms:
                    points.append(measure_point(coordinator, form, nprobe, reorder, args,
                                                (qs, base, gt, literals), relays, shards))
        for c in shard_conns:
            c.close()
    meta = {"dataset": args.dataset, "rows": args.rows, "shard_rows": shard_rows,
            "metric": args.metric, "queries": args.queries, "k": args.k,
            "command": " ".join(sys.argv)}
    table = markdown(meta, points)
    print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump({"meta": meta, "points": points}, f, indent=1)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    sys.exit(main())
