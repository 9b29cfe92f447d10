"""The systems a benchmark compares inside PostgreSQL, each as the SQL it needs.

exact            sequential scan of the table (index scans disabled; the plan is checked)
scann            CREATE INDEX ... USING scann (embedding <opclass>) WITH (--scann-opts);
                 knobs scann.nprobe x scann.reorder
scann-serial     the same build with max_parallel_maintenance_workers = 0, for the build
                 time and memory of a serial build; no queries (its pages are the same)
scann-annoy      CREATE INDEX ... USING scann (...) WITH (variant = 'annoy', --annoy-opts);
                 knobs as scann's, with --annoy-nprobe (leaves, not lists) for --nprobe
scann-vamana     CREATE INDEX ... USING scann (...) WITH (variant = 'vamana', --vamana-opts);
                 knobs scann.search_list (--search-list, and -1 at --target-recall) x
                 scann.reorder
pgvector-hnsw    pgvector's HNSW on a pgvector column (vector, or halfvec); knob hnsw.ef_search
pgvector-ivfflat pgvector's IVFFlat on the same column; knob ivfflat.probes
ceiling          a prepared query that only parses the vector: the round trip every system
                 pays, i.e. the most queries/s any of them could reach (its recall is 0)

Every system queries one table of (id bigint primary key, embedding <column type>): `items`
(real[], loaded by loader.py) or its copy in a pgvector type (`items_vector`,
`items_halfvec`: same rows, same ids), with `SELECT id FROM <table> ORDER BY embedding <op>
<vector> LIMIT k`. The query vectors sit in a table of the same type (`queries`,
`queries_vector`, ...; id = 0-based query number) for the in-server loop and pgbench.
The in-process references (hnswlib, faiss) are in references.py.
"""
import itertools
import re

import loader

OPERATORS = {"l2": "<->", "ip": "<#>", "cosine": "<=>"}
COLUMN_TYPES = ("real[]", "vector", "halfvec")
PGVECTOR_TYPES = ("vector", "halfvec")
TABLES = {"real[]": "items", "vector": "items_vector", "halfvec": "items_halfvec"}
QUERY_TABLES = {"real[]": "queries", "vector": "queries_vector", "halfvec": "queries_halfvec"}

# Operator class of `USING scann` per column type and metric. Those of pgvector's types come
# from the companion extension pg_scann_pgvector; the harness skips scann on such a column
# while the server lacks the class.
SCANN_OPCLASSES = {
    "real[]": {"l2": "l2_ops", "ip": "ip_ops", "cosine": "cosine_ops"},
    "vector": {"l2": "vector_l2_ops", "ip": "vector_ip_ops", "cosine": "vector_cosine_ops"},
    "halfvec": {"l2": "halfvec_l2_ops", "ip": "halfvec_ip_ops", "cosine": "halfvec_cosine_ops"},
}
# pgvector's own operator classes (USING hnsw / ivfflat).
PGVECTOR_OPCLASSES = {
    "vector": {"l2": "vector_l2_ops", "ip": "vector_ip_ops", "cosine": "vector_cosine_ops"},
    "halfvec": {"l2": "halfvec_l2_ops", "ip": "halfvec_ip_ops", "cosine": "halfvec_cosine_ops"},
}


class PlanError(RuntimeError):
    pass


def _with_clause(opts):
    return f" WITH ({opts})" if opts else ""


def _exists(conn, sql, params=()):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone() is not None


def _has_extension(conn, name):
    return _exists(conn, "SELECT 1 FROM pg_extension WHERE extname = %s", (name,))


def type_sql(column_type, dim):
    """The column's SQL type with its dimension, as a cast target."""
    return column_type if column_type == "real[]" else f"{column_type}({dim})"


def ensure_typed_tables(conn, column_type, dim):
    """The pgvector-typed copies of `items` and `queries` a system on that type reads."""
    if column_type != "real[]":
        for source, target in ((TABLES["real[]"], TABLES[column_type]),
                               (QUERY_TABLES["real[]"], QUERY_TABLES[column_type])):
            loader.ensure_cast_copy(conn, source, target, type_sql(column_type, dim))


class Exact:
    name = "exact"
    index = None
    options = ""
    in_process = False
    # set in every session of the system, before the knob settings of a point
    session_settings = {"enable_indexscan": "off", "enable_bitmapscan": "off"}

    def __init__(self, cfg):
        self.cfg = cfg
        self.column_type = self._column_type(cfg.column_type)
        self.table = TABLES[self.column_type]
        self.query_table = QUERY_TABLES[self.column_type]

    def _column_type(self, requested):
        return requested

    def unavailable(self, conn):
        if self.column_type in PGVECTOR_TYPES and not _has_extension(conn, "vector"):
            return (f"a {self.column_type} column needs the vector extension (pgvector), "
                    "which this server does not have")
        return None

    def prepare(self, conn):
        ensure_typed_tables(conn, self.column_type, self.cfg.dim)

    def build_sql(self):
        return None

    def points(self):
        return [{}]

    def query_sql(self, k, vector="$1"):
        """The query, with `vector` (a real[] parameter, a PL/pgSQL variable or a
        subquery) as the query vector."""
        if self.column_type != "real[]":
            vector = f"{vector}::{type_sql(self.column_type, self.cfg.dim)}"
        return (f"SELECT id FROM {self.table} ORDER BY embedding {OPERATORS[self.cfg.metric]} "
                f"{vector} LIMIT {k}")

    def scanned_relation(self):
        """The relation whose scan count must grow by one per query (None: no scan)."""
        return self.table

    def check_plan(self, plan):
        if f"Seq Scan on {self.table}" not in plan or "Index" in plan:
            raise PlanError(f"{self.name}: expected a sequential scan, got:\n{plan}")

    def cleanup(self, conn):
        pass


class Ceiling(Exact):
    name = "ceiling"
    session_settings = {}

    def _column_type(self, requested):
        return "real[]"

    def query_sql(self, k, vector="$1"):
        return f"SELECT -1::bigint AS id WHERE {vector}::real[] IS NOT NULL"

    def scanned_relation(self):
        return None

    def check_plan(self, plan):
        if re.search(rf"Scan.* on {self.table}\b", plan):
            raise PlanError(f"{self.name}: expected no scan of {self.table}, got:\n{plan}")


class _Indexed(Exact):
    """A system with an index that its queries must use. The planner's cost model, which
    may prefer a sequential scan on a small table, does not choose what is measured."""
    session_settings = {"enable_seqscan": "off"}

    def scanned_relation(self):
        return self.index

    def check_plan(self, plan):
        if f"Index Scan using {self.index}" not in plan:
            raise PlanError(f"{self.name}: the plan does not use {self.index}:\n{plan}")

    def cleanup(self, conn):
        with conn.cursor() as cur:
            cur.execute(f"DROP INDEX IF EXISTS {self.index}")


class Scann(_Indexed):
    name = "scann"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.options = cfg.scann_opts
        self.index = f"{self.table}_scann_idx"
        self.opclass = SCANN_OPCLASSES[self.column_type][cfg.metric]

    def unavailable(self, conn):
        if not _exists(conn, "SELECT 1 FROM pg_am WHERE amname = 'scann'"):
            return "the scann access method is not in this build of pg_scann"
        reason = super().unavailable(conn)
        if reason is None and not _exists(
                conn, "SELECT 1 FROM pg_opclass c JOIN pg_am a ON a.oid = c.opcmethod "
                      "WHERE a.amname = 'scann' AND c.opcname = %s "
                      "AND c.opcintype = to_regtype(%s)", (self.opclass, self.column_type)):
            reason = (f"no scann operator class {self.opclass} for {self.column_type} "
                      "(it comes with the pg_scann_pgvector extension, not installed here)")
        return reason

    def build_sql(self):
        return (f"CREATE INDEX {self.index} ON {self.table} USING scann "
                f"(embedding {self.opclass}){_with_clause(self.options)}")

    def nprobe_values(self):
        return self.cfg.nprobe

    def points(self):
        # The target points first: nprobe -1 picks from the build's recall calibration.
        return ([{"scann.nprobe": "-1", "scann.target_recall": str(t), "scann.reorder": str(r)}
                 for t, r in itertools.product(self.cfg.target_recall, self.cfg.reorder)]
                + [{"scann.nprobe": str(n), "scann.reorder": str(r)}
                   for n, r in itertools.product(self.nprobe_values(), self.cfg.reorder)])


class ScannSerial(Scann):
    name = "scann-serial"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.index = f"{self.table}_scann_serial_idx"

    def build_sql(self):
        return ("SET max_parallel_maintenance_workers = 0; " + super().build_sql()
                + "; RESET max_parallel_maintenance_workers")

    def points(self):
        return []


class ScannAnnoy(Scann):
    name = "scann-annoy"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.options = ", ".join(filter(None, ("variant = 'annoy'", cfg.annoy_opts)))
        self.index = f"{self.table}_scann_annoy_idx"

    def nprobe_values(self):
        return self.cfg.annoy_nprobe


class ScannVamana(Scann):
    name = "scann-vamana"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.options = ", ".join(filter(None, ("variant = 'vamana'", cfg.vamana_opts)))
        self.index = f"{self.table}_scann_vamana_idx"

    def points(self):
        # The target points first: search_list -1 picks from the build's recall calibration.
        return ([{"scann.search_list": "-1", "scann.target_recall": str(t),
                  "scann.reorder": str(r)}
                 for t, r in itertools.product(self.cfg.target_recall, self.cfg.reorder)]
                + [{"scann.search_list": str(n), "scann.reorder": str(r)}
                   for n, r in itertools.product(self.cfg.search_list, self.cfg.reorder)])


class _Pgvector(_Indexed):
    """Common part of pgvector's two index types: a vector column unless halfvec is asked."""
    method = None

    def __init__(self, cfg):
        super().__init__(cfg)
        self.index = f"{self.table}_{self.method}_idx"

    def _column_type(self, requested):
        return requested if requested in PGVECTOR_TYPES else "vector"

    def build_sql(self):
        opclass = PGVECTOR_OPCLASSES[self.column_type][self.cfg.metric]
        return (f"CREATE INDEX {self.index} ON {self.table} USING {self.method} "
                f"(embedding {opclass}){_with_clause(self.options)}")


class PgvectorHnsw(_Pgvector):
    name = "pgvector-hnsw"
    method = "hnsw"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.options = cfg.hnsw_opts

    def points(self):
        return [{"hnsw.ef_search": str(e)} for e in self.cfg.ef_search]


class PgvectorIvfflat(_Pgvector):
    name = "pgvector-ivfflat"
    method = "ivfflat"

    def __init__(self, cfg):
        super().__init__(cfg)
        # pgvector's advice: lists = rows / 1000 up to a million rows
        self.options = cfg.ivfflat_opts or f"lists = {max(1, cfg.rows // 1000)}"

    def points(self):
        return [{"ivfflat.probes": str(p)} for p in self.cfg.probes]


SQL_SYSTEMS = {cls.name: cls for cls in (Exact, Scann, ScannSerial, ScannAnnoy, ScannVamana,
                                              PgvectorHnsw,
                                         PgvectorIvfflat, Ceiling)}
