"""Timing one system: its build (time, size, memory) and one knob setting (latency, q/s).

Every query session sets the knob with set_config, PREPAREs the query with a real[]
parameter and runs `EXECUTE q('{...}')`; the vectors are formatted once, up front, so the
client's share of a query is one round trip. Sessions use the generic plan
(plan_cache_mode = force_generic_plan), so the plan EXPLAIN checks is the plan every
execution runs, and no execution pays for planning. Latency is wall time in the client around
execute + fetch.
"""
import re
import threading
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
    try:
        with conn.cursor() as cur, PeakMemory(conn.get_backend_pid(), monitor) as mem, \
                Step(f"{system.name}: {sql}") as step:
            cur.execute(sql)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_relation_size(%s::regclass)", (system.index,))
            size = cur.fetchone()[0]
    finally:
        monitor.close()
    return {"build_s": step.seconds, "index_bytes": size, "build_mem_mb": mem.peak_mb,
            "build_workers": mem.workers_seen}


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


def run_concurrent(server, system, settings, k, literals, clients):
    """Queries per second with `clients` connections sharing the query list (each once)."""
    conns = [session(server, system, settings, k) for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    errors = []

    def worker(conn, part):
        barrier.wait()
        try:
            with conn.cursor() as cur:
                for lit in part:
                    _execute(cur, lit)
        except Exception as e:  # reported below, in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(c, literals[i::clients]))
               for i, c in enumerate(conns)]
    for t in threads:
        t.start()
    # The clock starts before the release: once released, the workers may hold the GIL long
    # enough to finish much of their work before this thread could read the clock.
    start = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    if errors:
        raise errors[0]
    return len(literals) / elapsed
