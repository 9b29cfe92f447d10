"""recall@k that tolerates ties: the one definition used by the benchmarks and the tests.

A returned row counts as a hit when its id is among the true top k, or, when the caller
passes the returned rows' distances, when that distance is no larger than the k-th true
distance (within a float tolerance). The second rule matters for data with duplicate rows
or ties at the k-th distance (Fashion-MNIST): any of the tied rows is a correct answer,
and an exact scan may legitimately return a different one than the ground truth lists.
Only the first k returned rows are looked at, and each query's recall is hits / k.
"""
import numpy as np

RTOL = 1e-5  # ~ float32 rounding of a distance summed over a few hundred dimensions
ATOL = 1e-6


def recall_per_query(found_ids, true_ids, true_dists=None, k=10, found_dists=None,
                     rtol=RTOL, atol=ATOL):
    """Array of recall@k, one per query.

    found_ids:   per query, the ids returned, best first (sequences; may be shorter than k)
    true_ids:    Q x K array (K >= k) of exact neighbour ids, ascending distance
    true_dists:  Q x K array of their distances (needed only with found_dists)
    found_dists: per query, the distances of found_ids (same metric as true_dists)
    """
    true_ids = np.asarray(true_ids)
    if len(found_ids) != len(true_ids):
        raise ValueError(f"{len(found_ids)} result lists for {len(true_ids)} queries")
    if true_ids.shape[1] < k:
        raise ValueError(f"ground truth has {true_ids.shape[1]} neighbours, need k={k}")
    out = np.empty(len(true_ids), dtype=np.float64)
    for i, found in enumerate(found_ids):
        found = np.asarray(found, dtype=np.int64)[:k]
        hit = np.isin(found, true_ids[i, :k])
        if found_dists is not None:
            kth = float(true_dists[i][k - 1])
            d = np.asarray(found_dists[i], dtype=np.float64)[:k]
            hit |= d <= kth + atol + rtol * abs(kth)
        out[i] = np.count_nonzero(hit) / k
    return out


def recall_at_k(found_ids, true_ids, true_dists=None, k=10, found_dists=None,
                rtol=RTOL, atol=ATOL):
    """Mean recall@k over all queries (see recall_per_query)."""
    return float(recall_per_query(found_ids, true_ids, true_dists, k, found_dists,
                                  rtol, atol).mean())
