"""Timing one system: its build (time, size, memory) and one knob setting (client latency
and q/s over one connection, server time per query).

Every query session sets the knob with set_config, PREPAREs the query with a real[]
parameter and runs `EXECUTE q('{...}')`; the vectors are formatted once, up front, so the
client's share of a query is one round trip. Sessions use the generic plan
(plan_cache_mode = force_generic_plan), so the plan EXPLAIN checks is the plan every
execution runs, and no execution pays for planning. Latency is wall time in the client around
execute + fetch.

Server time is a PL/pgSQL loop in the same session: for each row of the query table it runs
the system's query (the vector a PL/pgSQL variable, so a cached generic plan) into an array
with ARRAY(...), which reads every returned row, and appends the ids to the ids of all
queries (array_append on a PL/pgSQL variable works in place), timed from first to last
query with clock_timestamp(), and each query alone for the median. The loop's own cost,
a few µs per query on this machine, is what the ceiling system's server time shows. The
loop runs in a transaction that reads pg_stat_get_xact_numscans of the index (the table,
for exact) before and after: it must have grown by exactly one scan per query.
"""
import itertools
import re
import time

import numpy as np

from memwatch import PeakMemory
from progress import Progress, Step


def literal(vector):
    """A real[] literal that round-trips float32 exactly."""
    return "{" + ",".join("%.9g" % x for x in vector.tolist()) + "}"


def build(server, conn, system):
    """Run the system's CREATE INDEX: seconds, index bytes, peak private memory (MB) of the
    backend and its parallel workers, and how many workers were seen."""
    sql = system.build_sql()
    if sql is None:
        return {"build_s": None, "index_bytes": None, "build_mem_mb": None,
                "build_workers": None}
    monitor = server.connect()
    del conn.notices[:]
    try:
        with conn.cursor() as cur:
            # scann's build reports its recall calibration's time at DEBUG1.
            cur.execute("SET client_min_messages = debug1")
        with conn.cursor() as cur, PeakMemory(conn.get_backend_pid(), monitor) as mem, \
                Step(f"{system.name}: {sql}") as step:
            cur.execute(sql)
        with conn.cursor() as cur:
            cur.execute("RESET client_min_messages")
            cur.execute("SELECT pg_relation_size(%s::regclass)", (system.index,))
            size = cur.fetchone()[0]
    finally:
        monitor.close()
    calibrate_s = None
    for notice in conn.notices:
        m = re.search(r"measured recall at \d+ knob values with \d+ queries in ([0-9.]+) s", notice)
        if m:
            calibrate_s = float(m.group(1))
    del conn.notices[:]
    return {"build_s": step.seconds, "index_bytes": size, "build_mem_mb": mem.peak_mb,
            "build_workers": mem.workers_seen, "calibrate_s": calibrate_s}


def session(server, system, settings, k):
    """A connection with the system's settings and the knobs set, the query prepared as `q`."""
    conn = server.connect()
    with conn.cursor() as cur:
        for name, value in {"plan_cache_mode": "force_generic_plan",
                            **system.session_settings, **settings}.items():
            cur.execute("SELECT set_config(%s, %s, false)", (name, value))
        cur.execute(f"PREPARE q(real[]) AS {system.query_sql(k)}")
    return conn


def explain(conn, query_literal):
    """The plan of `q` for one query, with the vector literal shortened to '{...}'."""
    with conn.cursor() as cur:
        cur.execute("EXPLAIN EXECUTE q(%s)", (query_literal,))
        return "\n".join(re.sub(r"'\{[^']*\}'", "'{...}'", r[0]) for r in cur.fetchall())


def _execute(cur, query_literal):
    cur.execute("EXECUTE q(%s)", (query_literal,))
    return [r[0] for r in cur.fetchall()]


def run_single(conn, literals, warmup, label):
    """(ids per query, latency seconds per query) over one connection, after warm-up."""
    with conn.cursor() as cur:
        for lit in literals[:warmup]:
            _execute(cur, lit)
        ids, latencies = [], np.empty(len(literals))
        progress = Progress(label, len(literals), unit="queries")
        for i, lit in enumerate(literals):
            start = time.perf_counter()
            ids.append(_execute(cur, lit))
            latencies[i] = time.perf_counter() - start
            progress.advance()
    progress.finish()
    return ids, latencies


class ScanCountError(RuntimeError):
    pass


def _server_loop_function(system, k):
    """CREATE of pg_temp.server_loop(n): runs the first n queries of the system's query table
    inside the server; returns (seconds, ids of every query concatenated, rows per query,
    each query's own time)."""
    return f"""
CREATE OR REPLACE FUNCTION pg_temp.server_loop(n int, OUT seconds float8, OUT ids bigint[],
                                               OUT counts int[], OUT times interval[])
LANGUAGE plpgsql AS $loop$
DECLARE
  q record;
  found bigint[];
  found_id bigint;
  started timestamptz;
  query_started timestamptz;
BEGIN
  ids := '{{}}';
  counts := '{{}}';
  times := '{{}}';
  started := clock_timestamp();
  FOR q IN SELECT embedding FROM {system.query_table} ORDER BY id LIMIT n LOOP
    query_started := clock_timestamp();
    found := ARRAY({system.query_sql(k, "q.embedding")});
    times := array_append(times, clock_timestamp() - query_started);
    FOREACH found_id IN ARRAY found LOOP
      ids := array_append(ids, found_id);
    END LOOP;
    counts := array_append(counts, cardinality(found));
  END LOOP;
  seconds := extract(epoch FROM clock_timestamp() - started);
END
$loop$"""


def _scans_in_transaction(cur, relation):
    cur.execute("SELECT pg_stat_get_xact_numscans(%s::regclass)", (relation,))
    return cur.fetchone()[0]


def run_server_loop(conn, system, k, queries, warmup):
    """(ids per query, mean seconds per query, each query's seconds) from the in-server loop
    over the first `queries` rows of the query table, after a loop over `warmup` of them;
    checks the scan count."""
    relation = system.scanned_relation()
    with conn.cursor() as cur:
        cur.execute(_server_loop_function(system, k))
        cur.execute("SELECT * FROM pg_temp.server_loop(%s)", (warmup,))
        cur.execute("BEGIN")
        before = _scans_in_transaction(cur, relation) if relation else 0
        cur.execute("SELECT * FROM pg_temp.server_loop(%s)", (queries,))
        seconds, flat, counts, times = cur.fetchone()
        after = _scans_in_transaction(cur, relation) if relation else 0
        cur.execute("COMMIT")
    if relation and after - before != queries:
        raise ScanCountError(f"{system.name}: the server loop ran {after - before} scans of "
                             f"{relation} for {queries} queries")
    ends = list(itertools.accumulate(counts))
    ids = [flat[end - n:end] for end, n in zip(ends, counts)]
    return ids, seconds / queries, np.array([t.total_seconds() for t in times])
