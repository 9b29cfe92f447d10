"""Throughput of C concurrent clients: pgbench (PostgreSQL's own C client) drawing a random
query per transaction.

The script is

    \\set qid random(0, Q - 1)
    SELECT id FROM <table> ORDER BY embedding <op> (SELECT embedding FROM <query table>
        WHERE id = :qid) LIMIT k;

run with `-M prepared -c C -j C -T seconds -n`; the system's session settings, the knobs
and plan_cache_mode = force_generic_plan reach every connection through PGOPTIONS. The
plan of that statement (generic, as pgbench's executions use it) is checked like the
single-connection query's, and after the run the scan count of the index (the table, for
exact) must have grown by at least the number of transactions: the backends' statistics
arrive when they exit, so it is polled for a few seconds.
"""
import os
import re
import subprocess
import tempfile
import time

import measure
from progress import Step

STATS_WAIT_S = 10.0


def statement(system, k):
    """The pgbench statement, with :qid choosing the query vector."""
    return system.query_sql(k, f"(SELECT embedding FROM {system.query_table} WHERE id = :qid)")


def explain(conn, system, k):
    """The generic plan of the pgbench statement, in a session set up by measure.session."""
    with conn.cursor() as cur:
        cur.execute(f"PREPARE qb(bigint) AS {statement(system, k).replace(':qid', '$1')}")
        cur.execute("EXPLAIN EXECUTE qb(0)")
        return "\n".join(r[0] for r in cur.fetchall())


def _scans(conn, relation):
    with conn.cursor() as cur:
        cur.execute("SELECT pg_stat_get_numscans(%s::regclass)", (relation,))
        return cur.fetchone()[0]


def _pgoptions(settings):
    return " ".join(f"-c {name}={value}" for name, value in settings.items())


def _parse(output):
    tps = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", output, re.M)
    done = re.search(r"^number of transactions actually processed: (\d+)", output, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", output, re.M)
    if not tps or not done or (failed and int(failed.group(1))):
        raise RuntimeError(f"pgbench did not report a clean run:\n{output}")
    return float(tps.group(1)), int(done.group(1))


def run(server, conn, system, settings, k, queries, clients, seconds):
    """Transactions (= queries) per second of `clients` pgbench connections over `seconds`."""
    relation = system.scanned_relation()
    before = _scans(conn, relation) if relation else 0
    session = {"plan_cache_mode": "force_generic_plan", **system.session_settings, **settings}
    with tempfile.NamedTemporaryFile("w", suffix=".sql", prefix="pg_scann-pgbench-") as script, \
            Step(f"pgbench: {clients} clients, {seconds} s"):
        script.write(f"\\set qid random(0, {queries - 1})\n{statement(system, k)};\n")
        script.flush()
        result = subprocess.run(
            [server.tool("pgbench"), "-n", "-M", "prepared", "-c", str(clients), "-j",
             str(clients), "-T", str(seconds), "-f", script.name, server.dsn],
            env={**os.environ, "PGOPTIONS": _pgoptions(session)}, capture_output=True,
            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed ({result.returncode}):\n{result.stderr}")
    tps, transactions = _parse(result.stdout)
    if relation:
        deadline = time.monotonic() + STATS_WAIT_S
        while _scans(conn, relation) - before < transactions:
            if time.monotonic() > deadline:
                raise measure.ScanCountError(
                    f"{system.name}: pgbench ran {transactions} transactions but "
                    f"{relation} counted {_scans(conn, relation) - before} scans")
            time.sleep(0.1)
    return tps
