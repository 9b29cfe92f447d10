"""Exact k-nearest neighbours in numpy: the reference every recall figure is measured against.

Distances follow the SQL operators: l2 = Euclidean distance (`<->`, not squared),
ip = negative inner product (`<#>`), cosine = 1 - cos(angle) (`<=>`). Arithmetic is
float64 on float32 inputs. Each query block is ranked with the fast expansion
(|q|^2 - 2 q.x + |x|^2), then every row within the k-th value (plus a margin, so rows tied
at the k-th distance all stay) is re-scored directly and ranked by (distance, id): ties are
broken by the smaller id, whatever the block layout.
"""
import numpy as np

from progress import Progress

METRICS = ("l2", "ip", "cosine")


def _normalized(x):
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return x / norms  # a zero vector has no direction: NaN, as in SQL


def _prepared(metric, x):
    """Rows in the form the metric's arithmetic wants (float64, normalized for cosine)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (expected one of {METRICS})")
    return _normalized(x) if metric == "cosine" else np.asarray(x, dtype=np.float64)


def _direct(metric, q, rows):
    """Distances from one prepared query q to prepared rows, computed directly."""
    if metric == "l2":
        return np.sqrt(((rows - q) ** 2).sum(axis=1))
    if metric == "ip":
        return -(rows @ q)
    return 1.0 - rows @ q


def _expanded(metric, q, b, b_sqnorm, out):
    """Scores in the same order as the true distances for a query block, into `out`.

    In place into one reused buffer: a fresh Q x N array per block costs more in page
    faults than the arithmetic on it.
    """
    out = out[:len(q)]
    np.matmul(q, b.T, out=out)
    if metric == "l2":
        out *= -2.0
        out += (q * q).sum(axis=1)[:, None]
        out += b_sqnorm[None, :]
    else:
        np.negative(out, out=out)
    return out


def distances(metric, queries, base, ids):
    """Exact distances from each query to base[ids[i]] (ids may be ragged lists)."""
    out = []
    for q, row_ids in zip(queries, ids):
        row_ids = np.asarray(row_ids, dtype=np.int64)
        qp = _prepared(metric, q[None, :])[0]
        out.append(_direct(metric, qp, _prepared(metric, base[row_ids])))
    return out


def _rank_one(metric, q, b, scores, k):
    """Top-k (ids, distances) of one query given approximate scores for every row."""
    kth = np.partition(scores, k - 1)[k - 1]
    margin = 1e-9 * max(1.0, abs(kth)) + 1e-9
    cand = np.flatnonzero(scores <= kth + margin)
    d = _direct(metric, q, b[cand])
    order = np.lexsort((cand, d))[:k]
    return cand[order], d[order]


def exact_topk(metric, base, queries, k, block=256, label="ground truth"):
    """(ids int32 Q x k, distances float32 Q x k) of the k nearest base rows per query."""
    if k > len(base):
        raise ValueError(f"k={k} exceeds the {len(base)} base rows")
    b = _prepared(metric, base)
    b_sqnorm = (b * b).sum(axis=1)
    qs = _prepared(metric, queries)
    ids = np.empty((len(qs), k), dtype=np.int32)
    dists = np.empty((len(qs), k), dtype=np.float32)
    buf = np.empty((min(block, len(qs)), len(b)), dtype=np.float64)
    progress = Progress(label, len(qs), unit="queries")
    for start in range(0, len(qs), block):
        qb = qs[start:start + block]
        scores = _expanded(metric, qb, b, b_sqnorm, buf)
        for j, q in enumerate(qb):
            ids[start + j], dists[start + j] = _rank_one(metric, q, b, scores[j], k)
        progress.advance(len(qb))
    progress.finish()
    return ids, dists
