#!/usr/bin/python3
"""Plots of a run (matplotlib, Agg): recall_qps.png and build.png in the results directory.

    /usr/bin/python3 bench/plot.py bench/results/NAME     # redraw from results.json

recall_qps.png: recall@10 (x) against queries/s over one connection (y, log), one curve
per system (scann: per scann.reorder value) through its first knob's values (scann.nprobe,
hnsw.ef_search, ivfflat.probes): the ann-benchmarks picture, up and right is better.
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


def recall_qps(results, path):
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for label, pts in _series(results["points"]).items():
        if label == "ceiling":  # no recall: the round trip every system pays
            ax.axhline(pts[0]["qps"], color="0.5", linestyle="--",
                       label=f"ceiling (parse only): {pts[0]['qps']:,.0f} q/s")
            continue
        ax.plot([p["recall@10"] for p in pts], [p["qps"] for p in pts], marker="o", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries/s (1 connection, log scale)")
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
    recall_qps(results, os.path.join(out_dir, "recall_qps.png"))
    build_bars(results, os.path.join(out_dir, "build.png"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} RESULTS_DIR")
    with open(os.path.join(sys.argv[1], "results.json")) as f:
        draw(json.load(f), sys.argv[1])
