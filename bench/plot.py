#!/usr/bin/python3
"""Plots of a run (matplotlib, Agg), in the results directory.

    /usr/bin/python3 bench/plot.py bench/results/NAME     # redraw from results.json

recall_qps.png: recall@10 (x) against queries/s over one connection (y, log), one curve
per system (scann: per scann.reorder value) through its first knob's values (scann.nprobe,
hnsw.ef_search, ivfflat.probes): the ann-benchmarks picture, up and right is better.
recall_server.png: the same with the server's queries/s (1e6 / server µs per query, the
in-server loop), the in-process references dashed. recall_clients.png: the same with
pgbench's transactions/s of C clients (references: C threads).
build.png: build time and index size per system, with the table itself (load time, heap
size) as the reference bar.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def _title(meta):
    return (f"{meta['dataset']} ({meta['metric']}), {meta['rows']:,} rows x {meta['dim']}, "
            f"{meta['queries']:,} queries, k={meta['k']}")


def _series(points):
    """Curves to draw: one per system and value of its knobs after the first (scann: one
    per scann.reorder), each through the first knob's values in sweep order."""
    curves = {}
    for p in points:
        rest = list(p["knobs"].items())[1:]
        label = p["system"] + (" (" + ", ".join(f"{k.split('.')[-1]}={v}" for k, v in rest) + ")"
                               if rest else "")
        curves.setdefault(label, []).append(p)
    return curves


# file, the y value of a point, its axis label
VIEWS = (
    ("recall_qps.png", lambda p: p["qps"], "queries/s (1 connection, log scale)"),
    ("recall_server.png", lambda p: 1e6 / p["server_us"],
     "queries/s in the server (1e6 / server µs per query, log scale)"),
    ("recall_clients.png", lambda p: p["qps_clients"],
     "queries/s of {clients} pgbench clients (log scale)"),
)


def recall_view(results, path, value, ylabel):
    """recall@10 against one speed figure; systems without that figure are left out."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for label, pts in _series(results["points"]).items():
        if value(pts[0]) is None:
            continue
        if label == "ceiling":  # no recall: what every system pays besides the index work
            for p, style in zip(pts, ("--", ":")):  # listed first and last: the run's drift
                ax.axhline(value(p), color="0.5", linestyle=style,
                           label=f"ceiling (no index work): {value(p):,.0f} q/s")
            continue
        style = "--" if pts[0].get("in_process") else "-"
        suffix = " (in-process, not PostgreSQL)" if pts[0].get("in_process") else ""
        ax.plot([p["recall@10"] for p in pts], [value(p) for p in pts], marker="o",
                linestyle=style, label=label + suffix)
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel(ylabel.format(clients=results["meta"]["clients"]))
    ax.set_title(_title(results["meta"]), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_bars(results, path):
    load, builds = results["load"], [b for b in results["builds"] if b["build_s"] is not None]
    load_s = (load.get("copy_s") or 0) + (load.get("pkey_vacuum_s") or 0)
    names = ["table (load)"] + [b["system"] for b in builds]
    seconds = [load_s] + [b["build_s"] for b in builds]
    megabytes = [load["table_bytes"] / 2**20] + [b["index_bytes"] / 2**20 for b in builds]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    colors = ["0.6"] + [f"C{i}" for i in range(len(builds))]
    for ax, values, label in ((left, seconds, "seconds (load / build)"),
                              (right, megabytes, "MB (table / index)")):
        bars = ax.bar(names, values, color=colors)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.set_ylabel(label)
        ax.tick_params(axis="x", labelrotation=20)
    fig.suptitle(_title(results["meta"]), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw(results, out_dir):
    for name, value, ylabel in VIEWS:
        recall_view(results, os.path.join(out_dir, name), value, ylabel)
    build_bars(results, os.path.join(out_dir, "build.png"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} RESULTS_DIR")
    with open(os.path.join(sys.argv[1], "results.json")) as f:
        draw(json.load(f), sys.argv[1])
