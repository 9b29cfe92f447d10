"""In-process references: ANN libraries searched from this Python process, NOT inside
PostgreSQL, so pg_scann's figures can be set beside a library's own.

hnswlib   python3-hnswlib (Debian): HNSW with --hnsw-opts' m and ef_construction (16, 64 by
          default, as pgvector's), built with every core; knob ef = --ef-search
faiss     python3-faiss (Debian): the factory string --faiss-opts (default
          IVF<sqrt(rows)>,PQ<dim/2>x4fs,RFlat: IVF lists, 4-bit FastScan PQ codes of two
          dimensions each and exact re-ranking, pg_scann's defaults); knobs nprobe
          (--nprobe) x reorder (--reorder: k_factor = reorder / k); trained and built on
          one thread: its OpenMP barriers over many tiny parallel regions (a k-means per
          PQ subspace) made a 2-thread training 30 times slower than 1 thread on this
          machine while other processes shared its 2 cores

Each point's `server_us` is the library's search call over all the queries in one batch
on one thread, per query (no client, no SQL, no per-query Python); `qps_clients` is the
same batch on C threads (--clients). Recall is computed like every other system's. Build
memory is the peak RssAnon this process added while building; index bytes are the
library's serialized index (faiss's RFlat stage holds a copy of every vector).
"""
import os
import re
import tempfile
import time

import numpy as np

from memwatch import PeakMemory
from progress import Step


def _knob_values(opts):
    """{'m': '16', 'ef_construction': '64'} from 'm = 16, ef_construction = 64'."""
    return {k.strip().lower(): v.strip() for k, _, v in
            (item.partition("=") for item in opts.split(",") if item.strip())}


def _normalized(x):
    x = np.array(x, dtype=np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-30))
    return x


class _Reference:
    in_process = True
    index = None

    def __init__(self, cfg):
        self.cfg = cfg

    def build(self, base):
        """Build on `base`; the build record (as measure.build's, workers = threads)."""
        data = np.ascontiguousarray(base, dtype=np.float32)
        with PeakMemory(os.getpid(), None) as mem, Step(f"{self.name}: {self.options}") as step:
            self._build(data)
        return {"build_s": step.seconds, "index_bytes": self._index_bytes(),
                "build_mem_mb": mem.peak_mb, "build_workers": self.build_threads}

    def search(self, knobs, queries, k, threads):
        """(ids per query, seconds per query) of one batch search on `threads` threads."""
        start = time.perf_counter()
        ids = self._search(knobs, queries, k, threads)
        return ids, (time.perf_counter() - start) / len(queries)


class Hnswlib(_Reference):
    name = "hnswlib"
    spaces = {"l2": "l2", "ip": "ip", "cosine": "cosine"}
    build_threads = os.cpu_count()

    def __init__(self, cfg):
        super().__init__(cfg)
        knobs = _knob_values(cfg.hnsw_opts)
        self.m, self.ef_construction = int(knobs["m"]), int(knobs["ef_construction"])
        self.options = f"M = {self.m}, ef_construction = {self.ef_construction}"

    def unavailable(self):
        try:
            import hnswlib  # noqa: F401  (only whether it imports)
        except ImportError:
            return "python3-hnswlib is not installed (apt-get install python3-hnswlib)"
        return None

    def _build(self, data):
        import hnswlib
        self.index = hnswlib.Index(space=self.spaces[self.cfg.metric], dim=data.shape[1])
        self.index.init_index(max_elements=len(data), M=self.m,
                              ef_construction=self.ef_construction, random_seed=100)
        self.index.add_items(data, np.arange(len(data)), num_threads=self.build_threads)

    def _index_bytes(self):
        with tempfile.NamedTemporaryFile(prefix="pg_scann-hnswlib-") as f:
            self.index.save_index(f.name)
            return os.path.getsize(f.name)

    def points(self):
        return [{"ef": str(e)} for e in self.cfg.ef_search]

    def _search(self, knobs, queries, k, threads):
        self.index.set_ef(int(knobs["ef"]))
        labels, _ = self.index.knn_query(queries, k=k, num_threads=threads)
        return [row.tolist() for row in labels]


class Faiss(_Reference):
    name = "faiss"
    build_threads = 1

    def __init__(self, cfg):
        super().__init__(cfg)
        self.options = cfg.faiss_opts or (f"IVF{max(1, round(cfg.rows ** 0.5))},"
                                          f"PQ{max(1, cfg.dim // 2)}x4fs,RFlat")

    def unavailable(self):
        try:
            import faiss  # noqa: F401  (only whether it imports)
        except ImportError:
            return "python3-faiss is not installed (apt-get install python3-faiss)"
        return None

    def _prepared(self, x):
        return _normalized(x) if self.cfg.metric == "cosine" else np.ascontiguousarray(x)

    def _build(self, data):
        import faiss
        metric = faiss.METRIC_L2 if self.cfg.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        faiss.omp_set_num_threads(self.build_threads)
        self.index = faiss.index_factory(data.shape[1], self.options, metric)
        data = self._prepared(data)
        self.index.train(data)
        self.index.add(data)

    def _index_bytes(self):
        import faiss
        return int(faiss.serialize_index(self.index).nbytes)

    def points(self):
        return [{"nprobe": str(n), "reorder": str(r)}
                for n in self.cfg.nprobe for r in self.cfg.reorder]

    def _search(self, knobs, queries, k, threads):
        import faiss
        faiss.omp_set_num_threads(threads)
        index = faiss.downcast_index(self.index)
        if re.search(r"\bRFlat$", self.options):
            index.k_factor = max(1.0, int(knobs["reorder"]) / k)
            faiss.downcast_index(index.base_index).nprobe = int(knobs["nprobe"])
        else:
            faiss.extract_index_ivf(index).nprobe = int(knobs["nprobe"])
        _, labels = self.index.search(self._prepared(queries), k)
        return [[i for i in row.tolist() if i >= 0] for row in labels]


REFERENCES = {cls.name: cls for cls in (Hnswlib, Faiss)}
