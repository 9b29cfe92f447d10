"""Loading vectors into `TABLE(id bigint primary key, embedding real[])`: the data set prefix
into `items`, its query vectors into `queries`, and typed copies of them (pgvector types).

Rows go in with COPY ... FORMAT binary from the client, built straight from the float32
file with numpy (no text formatting or float parsing on either side); the primary key is
added after the copy, then VACUUM ANALYZE. Each table carries a comment naming what it
holds (data set, row count), so a kept cluster or an existing server reuses a matching
table instead of loading it again; a typed copy carries its source's comment.
"""
import time

import numpy as np

from progress import Progress, Step

TABLE = "items"
QUERY_TABLE = "queries"
_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)
_FLOAT4_OID = 700


def _row_dtype(dim):
    """One COPY binary tuple: (id int8, embedding float4[dim]), all big-endian, packed."""
    return np.dtype([
        ("nfields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("arr_len", ">i4"),
        ("ndim", ">i4"), ("has_nulls", ">i4"), ("elem_oid", ">i4"), ("dim", ">i4"),
        ("lbound", ">i4"), ("elems", [("len", ">i4"), ("value", ">f4")], (dim,)),
    ])


def _encode_rows(vectors, first_id):
    rows = np.zeros(len(vectors), dtype=_row_dtype(vectors.shape[1]))
    rows["nfields"], rows["id_len"] = 2, 8
    rows["id"] = np.arange(first_id, first_id + len(vectors))
    rows["arr_len"] = 20 + 8 * vectors.shape[1]
    rows["ndim"], rows["elem_oid"], rows["lbound"] = 1, _FLOAT4_OID, 1
    rows["dim"] = vectors.shape[1]
    rows["elems"]["len"] = 4
    rows["elems"]["value"] = vectors
    return rows.tobytes()


class _CopyStream:
    """File-like object psycopg2's copy_expert reads: header, encoded row chunks, trailer."""

    def __init__(self, vectors, progress, chunk_rows=8192):
        self.vectors, self.progress, self.chunk_rows = vectors, progress, chunk_rows
        self.next_row, self.buffer, self.done = 0, bytearray(_HEADER), False

    def _refill(self):
        if self.next_row >= len(self.vectors):
            self.buffer += _TRAILER
            self.done = True
            return
        end = min(self.next_row + self.chunk_rows, len(self.vectors))
        self.buffer += _encode_rows(np.asarray(self.vectors[self.next_row:end]), self.next_row)
        self.progress.advance(end - self.next_row)
        self.next_row = end

    def read(self, size=-1):
        while not self.done and len(self.buffer) < max(size, 1):
            self._refill()
        size = len(self.buffer) if size < 0 else size
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out


def table_tag(dataset, rows):
    return f"pg_scann bench: {dataset} rows={rows}"


def query_table_tag(dataset, queries):
    return f"pg_scann bench: {dataset} queries={queries}"


def loaded_tag(conn, table=TABLE):
    with conn.cursor() as cur:
        cur.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (table,))
        return cur.fetchone()[0]


def load(conn, table, tag, vectors):
    """(Re)create and fill `table` with `vectors` (ids 0..n-1); return timings in seconds."""
    timings = {}
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        cur.execute(f"CREATE TABLE {table} (id bigint, embedding real[])")
        progress = Progress(f"loading {len(vectors):,} rows into {table} (COPY binary)",
                            len(vectors))
        start = time.monotonic()
        cur.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT binary)",
                        _CopyStream(vectors, progress), size=1 << 20)
        progress.finish()
        timings["copy_s"] = time.monotonic() - start
        with Step(f"{table}: primary key + VACUUM ANALYZE") as step:
            cur.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
            cur.execute(f"VACUUM ANALYZE {table}")
        timings["pkey_vacuum_s"] = step.seconds
        cur.execute(f"COMMENT ON TABLE {table} IS %s", (tag,))
    return timings


def ensure_cast_copy(conn, source, target, type_sql):
    """`target` as `source` with the embedding cast to `type_sql` (e.g. vector(100)), kept
    and reused while it carries the source's comment (same data set and rows)."""
    source_tag = loaded_tag(conn, source)
    if loaded_tag(conn, target) == source_tag:
        return
    with conn.cursor() as cur, Step(f"copying {source} into {target} ({type_sql})"):
        cur.execute(f"DROP TABLE IF EXISTS {target}")
        cur.execute(f"CREATE TABLE {target} AS SELECT id, embedding::{type_sql} AS embedding "
                    f"FROM {source}")
        cur.execute(f"ALTER TABLE {target} ADD PRIMARY KEY (id)")
        cur.execute(f"VACUUM ANALYZE {target}")
        cur.execute(f"COMMENT ON TABLE {target} IS %s", (source_tag,))
