"""Writing a run's results: results.json (everything), points.csv, builds.csv, results.md.

results.json = {"meta": {...}, "load": {...}, "builds": [...], "points": [...],
                "skipped": [...]}; the CSV files hold the same rows as "points" and "builds".
"""
import csv
import json
import os

POINT_FIELDS = ["system", "params", "k", "recall@10", "recall@100", "server_us", "server_p50_us",
                "qps", "p50_ms", "p99_ms", "clients", "qps_clients", "recall@10_server",
                "in_process", "load1"]
BUILD_FIELDS = ["system", "options", "build_s", "calibrate_s", "index_bytes", "build_mem_mb",
                "build_workers", "in_process"]


def _csv(path, fields, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _fmt(value, spec):
    return "—" if value is None else format(value, spec)


def markdown(results):
    """The Markdown report: what was run, then the build table and the sweep table."""
    meta, load = results["meta"], results["load"]
    clients = meta["clients"]
    out = [f"## {meta['dataset']} ({meta['metric']}): {meta['rows']:,} rows x {meta['dim']}, "
           f"{meta['queries']:,} queries, LIMIT {meta['k']}",
           "",
           f"PostgreSQL {meta['server_version']}, {meta['cpu']} ({meta['nproc']} cores), "
           f"commit {meta['commit'] or '(none)'}, {meta['date']}",
           f"Load: COPY {load['copy_s']:.1f}s + primary key/VACUUM ANALYZE "
           f"{load['pkey_vacuum_s']:.1f}s; table {load['table_bytes'] / 2**20:,.0f} MB"
           if load.get("copy_s") is not None else
           f"Load: reused the existing table ({load['table_bytes'] / 2**20:,.0f} MB)",
           f"Column type {meta['column_type']}; pgbench {meta['pgbench_seconds']} s per point; "
           "extensions " + ", ".join(f"{k} {v}" for k, v in meta["extensions"].items()),
           f"Machine load (1-minute average, {meta['nproc']} cores): {meta['load1_start']:.1f} "
           f"at the start, {meta['load1_end']:.1f} at the end, at most "
           f"{max([p['load1'] for p in results['points']] or [meta['load1_end']]):.1f} "
           "after a point",
           "",
           "| system | options | build s | of which recall calibration s | index MB | "
           "build peak MB | workers |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for b in results["builds"]:
        size = None if b["index_bytes"] is None else b["index_bytes"] / 2**20
        out.append(f"| {_name(b['system'], b.get('in_process'))} | {b['options'] or '—'} | "
                   f"{_fmt(b['build_s'], '.1f')} | {_fmt(b.get('calibrate_s'), '.2f')} | "
                   f"{_fmt(size, ',.1f')} | {_fmt(b['build_mem_mb'], ',.1f')} | "
                   f"{_fmt(b['build_workers'], 'd')} |")
    r100 = " recall@100 |" if meta["k"] >= 100 else ""
    out += ["", f"| system | knobs | recall@10 |{r100} server µs/query | server p50 µs | "
                f"q/s (1 conn) | p50 ms | p99 ms | q/s ({clients} clients) |",
            "|---|---|---:|" + "---:|" * (6 + bool(r100))]
    for p in results["points"]:
        row = (f"| {_name(p['system'], p.get('in_process'))} | {p['params'] or '—'} | "
               f"{p['recall@10']:.4f} |")
        if r100:
            row += f" {p['recall@100']:.4f} |"
        row += (f" {p['server_us']:,.1f} | {_fmt(p['server_p50_us'], ',.1f')} |"
                f" {_fmt(p['qps'], ',.1f')} | {_fmt(p['p50_ms'], '.2f')} |"
                f" {_fmt(p['p99_ms'], '.2f')} | {_fmt(p['qps_clients'], ',.1f')} |")
        out.append(row)
    out += ["", "server µs/query: the in-server PL/pgSQL loop (one query after another, no "
                "client), its time / queries; server p50: the median query in it; q/s (C "
                "clients): pgbench -M prepared, a random query per transaction. * in-process "
                "reference, not PostgreSQL: its µs/query is the library's batch search on 1 "
                "thread, its q/s the same on C threads."]
    out += [f"- {s['system']}: skipped ({s['reason']})" for s in results["skipped"]]
    return "\n".join(out) + "\n"


def _name(system, in_process):
    """The system's name, starred when it is an in-process reference."""
    return system + ("*" if in_process else "")


def write(results, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    _csv(os.path.join(out_dir, "points.csv"), POINT_FIELDS, results["points"])
    _csv(os.path.join(out_dir, "builds.csv"), BUILD_FIELDS, results["builds"])
    text = markdown(results)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(text)
    return text
