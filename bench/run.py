#!/usr/bin/python3
"""pg_scann benchmark: recall, speed, build time and size of several systems, side by side.

    /usr/bin/python3 bench/run.py --dataset glove-100 --systems exact,scann,pgvector-hnsw,hnswlib \\
        --rows 331479 --queries 1000 --nprobe 1,2,4,8,16,32 --reorder 100,200 \\
        --out bench/results/glove-100
    /usr/bin/python3 bench/run.py --smoke        # end-to-end check on MiniLM (CI)

See bench/README.md for every option, output column and how memory is measured.
"""
import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import traceback

import numpy as np

import datasets
import groundtruth
import loader
import measure
import pgbench
import plot
import report
from cluster import ScratchCluster, Server, install_extension, scratch_settings
from progress import Step, note
from recall import recall_at_k
from references import REFERENCES
from systems import COLUMN_TYPES, SQL_SYSTEMS

SYSTEMS = {**SQL_SYSTEMS, **REFERENCES}
# Created when the server offers them, in this order (pg_scann_pgvector needs the other two).
OPTIONAL_EXTENSIONS = ("vector", "pg_scann_pgvector", "pg_prewarm")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ints(text):
    return [int(x) for x in text.split(",") if x]


def _floats(text):
    return [float(x) for x in text.split(",") if x]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="small end-to-end check on MiniLM with assertions (for CI)")
    p.add_argument("--dataset", default="glove-100", choices=sorted(datasets.SOURCES))
    p.add_argument("--metric", choices=groundtruth.METRICS, help="default: the data set's")
    p.add_argument("--rows", type=int, help="base rows to load (a prefix; default: all)")
    p.add_argument("--queries", type=int, default=1000, help="held-out queries to run")
    p.add_argument("--k", type=int, default=10, choices=(10, 100),
                   help="LIMIT of every query; 100 also reports recall@100")
    p.add_argument("--systems", default="exact,scann",
                   help=f"comma-separated, from {','.join(SYSTEMS)}")
    p.add_argument("--column-type", default="real[]", choices=COLUMN_TYPES,
                   help="type of the embedding column every system queries (pgvector's "
                        "systems use vector when this is real[])")
    p.add_argument("--scann-opts", default="", help="WITH (...) of the scann index")
    p.add_argument("--nprobe", type=_ints, default="1,2,4,8,16,32", help="scann.nprobe values")
    p.add_argument("--reorder", type=_ints, default="100", help="scann.reorder values")
    p.add_argument("--target-recall", type=_floats, default="0.95",
                   help="scann.target_recall values, measured with scann.nprobe unset (-1) "
                        "at each --reorder: the defaults' points")
    p.add_argument("--annoy-opts", default="",
                   help="WITH (...) of the scann-annoy index, besides variant = 'annoy'")
    p.add_argument("--annoy-nprobe", type=_ints, default="8,16,32,64,128,256",
                   help="scann.nprobe values of scann-annoy (leaves)")
    p.add_argument("--vamana-opts", default="",
                   help="WITH (...) of the scann-vamana index, besides variant = 'vamana'")
    p.add_argument("--search-list", type=_ints, default="100,200,400,800",
                   help="scann.search_list values of scann-vamana")
    p.add_argument("--hnsw-opts", default="m = 16, ef_construction = 64")
    p.add_argument("--ef-search", type=_ints, default="10,20,40,80,160,320")
    p.add_argument("--ivfflat-opts", default="", help="default: lists = rows / 1000")
    p.add_argument("--probes", type=_ints, default="1,2,4,8,16,32")
    p.add_argument("--faiss-opts", default="",
                   help="faiss index_factory string (default: IVF<sqrt(rows)>,PQ<dim/2>x4fs,RFlat)")
    p.add_argument("--clients", type=int, default=2,
                   help="concurrent pgbench clients (threads, for the in-process references)")
    p.add_argument("--duration", type=int, default=10, help="seconds of each pgbench run")
    p.add_argument("--warmup", type=int, default=50, help="untimed queries before each setting")
    p.add_argument("--dsn", help="use this running server instead of a scratch cluster")
    p.add_argument("--cluster-dir", help="keep the scratch cluster here and reuse it next time")
    p.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                   help="extra postgresql.conf setting of the scratch cluster (repeatable)")
    p.add_argument("--install", action="store_true", help="run `make -s install` first")
    p.add_argument("--reload", action="store_true", help="reload the table even if it matches")
    p.add_argument("--out", help="results directory (default: bench/results/DATASET-METRIC-ROWS)")
    args = p.parse_args(argv)
    if args.smoke:
        args.dataset, args.rows, args.queries, args.k = "minilm", None, 100, 100
        args.systems, args.nprobe, args.reorder = ("exact,scann,scann-annoy,scann-vamana,pgvector-hnsw,hnswlib",
                                                   [1, 4], [100])
        args.annoy_opts, args.annoy_nprobe = "", [4, 16]
        args.vamana_opts, args.search_list = "", [100]
        args.target_recall = [0.95]
        args.ef_search, args.hnsw_opts = [40], "m = 16, ef_construction = 64"
        args.column_type = "real[]"
        args.clients, args.duration, args.warmup, args.dsn = 2, 1, 5, None
        args.metric, args.scann_opts = None, ""
    args.systems = [s for s in args.systems.split(",") if s]
    for s in args.systems:
        if s not in SYSTEMS:
            p.error(f"unknown system {s!r}; known: {', '.join(SYSTEMS)}")
    return args


# ----------------------------------------------------------------------------- setup

def resolve_data(args):
    """Prepare the set and its ground truth; fill in metric/rows/queries/dim on args."""
    info = datasets.prepare(args.dataset)
    args.metric = args.metric or info["metric"]
    args.rows = min(args.rows or info["rows"], info["rows"])
    args.queries = min(args.queries, info["queries"])
    args.dim = info["dim"]
    gt = datasets.ground_truth(args.dataset, args.metric, args.rows, args.queries)
    return info, datasets.base(args.dataset, args.rows), datasets.queries(args.dataset,
                                                                          args.queries), gt


def make_server(args):
    if args.dsn:
        return Server(args.dsn)
    settings = scratch_settings(args.rows * (4 * args.dim + 64))
    for item in args.pg_setting:
        name, _, value = item.partition("=")
        settings[name.strip()] = value.strip()
    return ScratchCluster(settings, directory=args.cluster_dir)


def ensure_extensions(conn, fresh):
    """pg_scann (recreated in a scratch cluster so it matches the installed build) and those
    of OPTIONAL_EXTENSIONS the server has; returns the extensions' versions."""
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM pg_available_extensions WHERE name = ANY(%s)",
                    (["pg_scann", *OPTIONAL_EXTENSIONS],))
        available = {r[0] for r in cur.fetchall()}
        if "pg_scann" not in available:
            sys.exit("pg_scann is not installed in this server: run `make install` as root "
                     "(or pass --install)")
        if fresh:
            cur.execute("DROP EXTENSION IF EXISTS pg_scann CASCADE")
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_scann")
        for name in OPTIONAL_EXTENSIONS:
            if name in available:
                cur.execute(f"CREATE EXTENSION IF NOT EXISTS {name}")
        cur.execute("SELECT extname, extversion FROM pg_extension ORDER BY extname")
        return dict(cur.fetchall())


def ensure_table(conn, args, base, queries):
    """Load the base prefix and the queries unless their tables already hold exactly them;
    returns the load record (of the base table)."""
    load = {"copy_s": None, "pkey_vacuum_s": None}
    if args.reload or loader.loaded_tag(conn) != loader.table_tag(args.dataset, args.rows):
        load.update(loader.load(conn, loader.TABLE, loader.table_tag(args.dataset, args.rows),
                                base))
    else:
        note(f"reusing table {loader.TABLE} ({args.dataset}, {args.rows:,} rows)")
    query_tag = loader.query_table_tag(args.dataset, args.queries)
    if args.reload or loader.loaded_tag(conn, loader.QUERY_TABLE) != query_tag:
        loader.load(conn, loader.QUERY_TABLE, query_tag, queries)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_total_relation_size(%s)", (loader.TABLE,))
        load["table_bytes"] = cur.fetchone()[0]
    return load


def _library_versions():
    versions = {}
    for name in ("hnswlib", "faiss"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        versions[name] = getattr(module, "__version__", "installed")
        if name == "faiss":
            versions["faiss_compile_options"] = module.get_compile_options()
    return versions


def describe(conn, args, info, extensions):
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('server_version'), current_setting('shared_buffers'),"
                    " current_setting('maintenance_work_mem'), current_setting('work_mem'),"
                    " current_setting('max_parallel_workers_per_gather'), current_setting('jit')")
        version, *settings = cur.fetchone()
    names = ["shared_buffers", "maintenance_work_mem", "work_mem",
             "max_parallel_workers_per_gather", "jit"]
    return {
        "dataset": args.dataset, "source": info["source"], "metric": args.metric,
        "rows": args.rows, "dim": args.dim, "queries": args.queries, "k": args.k,
        "column_type": args.column_type, "clients": args.clients,
        "pgbench_seconds": args.duration, "warmup": args.warmup, "server_version": version,
        "extensions": extensions, "libraries": _library_versions(),
        "server": "dsn" if args.dsn else "scratch cluster", "settings": dict(zip(names, settings)),
        "cpu": _cpu_model(), "nproc": os.cpu_count(), "commit": _commit(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv), "python": platform.python_version(),
        "load1_start": os.getloadavg()[0],
    }


def _cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _commit():
    git = ["git", "-C", REPO]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return None
    dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + ("+dirty" if dirty else "")


# ----------------------------------------------------------------------------- measuring

def prewarm(conn, system):
    with conn.cursor() as cur:
        for rel in filter(None, (system.table, system.index)):
            cur.execute("SELECT pg_prewarm(%s)", (rel,))


def _recall_fields(args, qs, base, gt, ids, suffix=""):
    gt_ids, gt_dists = gt
    found_d = groundtruth.distances(args.metric, qs, base, ids)
    return {f"recall@10{suffix}": recall_at_k(ids, gt_ids, gt_dists, 10, found_d),
            f"recall@100{suffix}": (recall_at_k(ids, gt_ids, gt_dists, 100, found_d)
                                    if args.k >= 100 else None)}


def _label(knobs):
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in knobs.items())


def _point_note(point):
    figures = [f"recall@10 {point['recall@10']:.4f}", f"{point['server_us']:,.1f} us/query"
               + (f" (p50 {point['server_p50_us']:,.1f})" if point["server_p50_us"] else "")]
    if point["qps"] is not None:
        figures.append(f"{point['qps']:,.1f} q/s (1 conn), p50 {point['p50_ms']:.2f} ms")
    if point["qps_clients"] is not None:
        figures.append(f"{point['qps_clients']:,.1f} q/s ({point['clients']} clients)")
    note(f"  {point['system']} {point['params']}".rstrip() + ": " + ", ".join(figures))


def measure_point(server, conn, system, settings, args, data):
    """One knob setting: plan checks, client latency run, in-server loop, recall, pgbench."""
    qs, base, gt, literals = data
    label = _label(settings)
    title = f"{system.name} {label}".strip()
    session = measure.session(server, system, settings, args.k)
    try:
        plan = measure.explain(session, literals[0])
        system.check_plan(plan)
        pgbench_plan = pgbench.explain(session, system, args.k)
        system.check_plan(pgbench_plan)
        ids, lat = measure.run_single(session, literals, args.warmup, title)
        with Step(f"{title}: in-server loop over {len(qs):,} queries"):
            server_ids, server_s, server_times = measure.run_server_loop(
                session, system, args.k, len(qs), args.warmup)
    finally:
        session.close()
    point = {"system": system.name, "params": label, "knobs": settings, "k": args.k,
             **_recall_fields(args, qs, base, gt, ids), "server_us": 1e6 * server_s,
             "server_p50_us": 1e6 * float(np.percentile(server_times, 50)),
             **_recall_fields(args, qs, base, gt, server_ids, "_server"),
             "qps": len(lat) / lat.sum(), "p50_ms": 1e3 * float(np.percentile(lat, 50)),
             "p99_ms": 1e3 * float(np.percentile(lat, 99)), "clients": args.clients,
             "qps_clients": None, "in_process": False, "load1": None, "plan": plan,
             "pgbench_plan": pgbench_plan}
    if point["recall@10_server"] != point["recall@10"]:
        note(f"  {title}: the server loop's recall@10 "
             f"{point['recall@10_server']:.4f} differs from the client's")
    if os.path.exists(server.tool("pgbench")):
        point["qps_clients"] = pgbench.run(server, conn, system, settings, args.k, len(qs),
                                           args.clients, args.duration)
    point["load1"] = os.getloadavg()[0]
    _point_note(point)
    return point


def reference_point(system, knobs, args, data):
    """One knob setting of an in-process reference: recall, µs/query on 1 thread, q/s on C."""
    qs, base, gt, _ = data
    queries = np.ascontiguousarray(qs, dtype=np.float32)
    system.search(knobs, queries[:args.warmup], args.k, 1)
    ids, seconds = system.search(knobs, queries, args.k, 1)
    _, seconds_c = system.search(knobs, queries, args.k, args.clients)
    point = {"system": system.name, "params": _label(knobs), "knobs": knobs, "k": args.k,
             **_recall_fields(args, qs, base, gt, ids), "server_us": 1e6 * seconds,
             "server_p50_us": None, "qps": None, "p50_ms": None, "p99_ms": None,
             "clients": args.clients,
             "qps_clients": 1.0 / seconds_c, "in_process": True, "load1": os.getloadavg()[0]}
    _point_note(point)
    return point


def run_system(server, conn, system, args, data, can_prewarm):
    """Build, sweep, drop: (build record, points)."""
    if system.in_process:
        built = system.build(data[1])
        return ({"system": system.name, "options": system.options, "in_process": True, **built},
                [reference_point(system, knobs, args, data) for knobs in system.points()])
    system.cleanup(conn)  # an index left behind by an interrupted run
    system.prepare(conn)
    built = measure.build(server, conn, system)
    if can_prewarm:
        prewarm(conn, system)
    points = [measure_point(server, conn, system, s, args, data) for s in system.points()]
    system.cleanup(conn)
    return ({"system": system.name, "options": system.options, "in_process": False, **built},
            points)


def benchmark(args):
    info, base, qs, gt = resolve_data(args)
    literals = [measure.literal(q) for q in qs]
    results = {"builds": [], "points": [], "skipped": []}
    with make_server(args) as server:
        conn = server.connect()
        extensions = ensure_extensions(conn, fresh=not args.dsn)
        can_prewarm = "pg_prewarm" in extensions
        results["meta"] = describe(conn, args, info, extensions)
        results["load"] = ensure_table(conn, args, base, qs)
        if not os.path.exists(server.tool("pgbench")):
            note(f"{server.tool('pgbench')} is missing: no q/s of concurrent clients")
        for name in args.systems:
            system = SYSTEMS[name](args)
            reason = system.unavailable() if system.in_process else system.unavailable(conn)
            if reason:
                note(f"{name}: skipped ({reason})")
                results["skipped"].append({"system": name, "reason": reason})
                continue
            build, points = run_system(server, conn, system, args, (qs, base, gt, literals),
                                       can_prewarm)
            results["builds"].append(build)
            results["points"] += points
        conn.close()
    results["meta"]["load1_end"] = os.getloadavg()[0]
    return results


# ----------------------------------------------------------------------------- smoke

def check_recall_helper():
    """recall_at_k on a hand-made answer: ties at the k-th distance count, short lists don't."""
    true_ids = [[1, 2, 3, 4], [5, 6, 7, 8]]
    true_dists = [[0.0, 1.0, 2.0, 2.0], [0.5, 0.6, 0.7, 0.8]]
    found = [[1, 2, 9, 3], [8, 7, 100]]
    found_d = [[0.0, 1.0, 2.0, 2.0], [0.8, 0.7, 0.9]]
    by_id = recall_at_k(found, true_ids, k=4)                       # (3/4 + 2/4) / 2
    with_ties = recall_at_k(found, true_ids, true_dists, 4, found_d)  # (4/4 + 2/4) / 2
    top2 = recall_at_k(found, true_ids, true_dists, 2, found_d)       # (2/2 + 0/2) / 2
    assert abs(by_id - 0.625) < 1e-12, f"recall_at_k by id: {by_id}, expected 0.625"
    assert abs(with_ties - 0.75) < 1e-12, f"recall_at_k with ties: {with_ties}, expected 0.75"
    assert abs(top2 - 0.5) < 1e-12, f"recall_at_k@2: {top2}, expected 0.5"


def check_smoke(results, out_dir):
    exact = [p for p in results["points"] if p["system"] == "exact"]
    assert len(exact) == 1, "the exact system produced no result"
    for field in ("recall@10", "recall@100", "recall@10_server", "recall@100_server"):
        assert exact[0][field] == 1.0, f"exact {field} = {exact[0][field]}"
    for p in results["points"]:
        assert 0.0 <= p["recall@10"] <= 1.0 and p["server_us"] > 0 and p["qps_clients"] > 0, p
        assert p["in_process"] or p["qps"] > 0, p
    scann_builds = [b for b in results["builds"] if b["system"] == "scann"]
    assert scann_builds and all(b["calibrate_s"] is not None for b in scann_builds), \
        f"the scann build reported no recall calibration time: {scann_builds}"
    defaults = [p for p in results["points"]
                if p["system"] == "scann" and p["knobs"].get("scann.nprobe") == "-1"]
    assert defaults, "no scann point at scann.nprobe -1 (the target_recall default)"
    for f in ("results.json", "points.csv", "builds.csv", "results.md", "recall_qps.png",
              "recall_server.png", "recall_clients.png", "build.png"):
        assert os.path.getsize(os.path.join(out_dir, f)) > 0, f"{f} is missing or empty"


def publish(results, out_dir):
    print(report.write(results, out_dir))
    plot.draw(results, out_dir)


def smoke(args):
    """The CI check: recall helper on a known answer, then the whole harness on MiniLM."""
    check_recall_helper()
    results = benchmark(args)
    with tempfile.TemporaryDirectory(prefix="pg_scann-smoke-") as out_dir:
        publish(results, out_dir)
        check_smoke(results, out_dir)


def main(argv=None):
    args = parse_args(argv)
    if args.install:
        install_extension(REPO)
    if args.smoke:
        try:
            smoke(args)
        except Exception as e:  # any failure fails the check, with its traceback
            traceback.print_exc()
            sys.exit(f"bench smoke: FAILED: {e}")
        print("bench smoke: ok")
        return
    results = benchmark(args)
    out_dir = args.out or os.path.join(REPO, "bench", "results",
                                       f"{args.dataset}-{args.metric}-{args.rows}")
    publish(results, out_dir)
    print(f"results in {out_dir}")


if __name__ == "__main__":
    sys.exit(main())
