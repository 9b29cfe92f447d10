"""The systems a benchmark compares, each as the SQL it needs.

exact            sequential scan of `items` (index scans disabled; the plan is checked)
scann            CREATE INDEX ... USING scann (embedding <metric>_ops) WITH (--scann-opts);
                 knobs scann.nprobe x scann.reorder
scann-serial     the same build with max_parallel_maintenance_workers = 0, for the build
                 time and memory of a serial build; no queries (its pages are the same)
pgvector-hnsw    pgvector's HNSW on a vector(d) copy of the table; knob hnsw.ef_search
pgvector-ivfflat pgvector's IVFFlat on the same copy; knob ivfflat.probes
ceiling          a prepared query that only parses the vector: the round trip every system
                 pays, i.e. the most queries/s any of them could reach (its recall is 0)
Every query is `SELECT id FROM <table> ORDER BY embedding <op> $1 LIMIT k` as a prepared
statement with a real[] parameter.
"""
import itertools

from progress import Step

OPERATORS = {"l2": "<->", "ip": "<#>", "cosine": "<=>"}
PGVECTOR_TABLE = "items_vec"


class PlanError(RuntimeError):
    pass


def _with_clause(opts):
    return f" WITH ({opts})" if opts else ""


def _exists(conn, sql, params):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone() is not None


class Exact:
    name = "exact"
    table = "items"
    index = None
    options = ""
    # set in every session of the system, before the knob settings of a point
    session_settings = {"enable_indexscan": "off", "enable_bitmapscan": "off"}

    def __init__(self, cfg):
        self.cfg = cfg

    def unavailable(self, conn):
        return None

    def prepare(self, conn):
        pass

    def build_sql(self):
        return None

    def points(self):
        return [{}]

    def query_sql(self, k):
        return (f"SELECT id FROM {self.table} ORDER BY embedding {OPERATORS[self.cfg.metric]} $1 "
                f"LIMIT {k}")

    def check_plan(self, plan):
        if "Seq Scan" not in plan or "Index" in plan:
            raise PlanError(f"{self.name}: expected a sequential scan, got:\n{plan}")

    def cleanup(self, conn):
        pass


class Ceiling(Exact):
    name = "ceiling"
    session_settings = {}

    def query_sql(self, k):
        return "SELECT -1::bigint AS id WHERE $1::real[] IS NOT NULL"

    def check_plan(self, plan):
        if "Scan" in plan:
            raise PlanError(f"{self.name}: expected no scan at all, got:\n{plan}")


class _Indexed(Exact):
    """A system with an index that its queries must use. The planner's cost model, which
    may prefer a sequential scan on a small table, does not choose what is measured."""
    session_settings = {"enable_seqscan": "off"}

    def check_plan(self, plan):
        if f"Index Scan using {self.index}" not in plan:
            raise PlanError(f"{self.name}: the plan does not use {self.index}:\n{plan}")

    def cleanup(self, conn):
        with conn.cursor() as cur:
            cur.execute(f"DROP INDEX IF EXISTS {self.index}")


class Scann(_Indexed):
    name = "scann"
    index = "items_scann_idx"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.options = cfg.scann_opts

    def unavailable(self, conn):
        if not _exists(conn, "SELECT 1 FROM pg_am WHERE amname = 'scann'", ()):
            return "the scann access method is not in this build of pg_scann"
        return None

    def build_sql(self):
        return (f"CREATE INDEX {self.index} ON {self.table} USING scann "
                f"(embedding {self.cfg.metric}_ops){_with_clause(self.options)}")

    def points(self):
        return [{"scann.nprobe": str(n), "scann.reorder": str(r)}
                for n, r in itertools.product(self.cfg.nprobe, self.cfg.reorder)]


class ScannSerial(Scann):
    name = "scann-serial"
    index = "items_scann_serial_idx"

    def build_sql(self):
        return ("SET max_parallel_maintenance_workers = 0; " + super().build_sql()
                + "; RESET max_parallel_maintenance_workers")

    def points(self):
        return []


class _Pgvector(_Indexed):
    """Common part of pgvector's two index types: the vector(d) copy of the table."""
    table = PGVECTOR_TABLE
    method = None
    opclasses = {"l2": "vector_l2_ops", "ip": "vector_ip_ops", "cosine": "vector_cosine_ops"}

    def unavailable(self, conn):
        if not _exists(conn, "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'", ()):
            return "the vector extension (pgvector) is not available in this server"
        return None

    def prepare(self, conn):
        """A vector(d) copy of items (kept, and reused while it has the same rows)."""
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
            cur.execute("SELECT obj_description(to_regclass(%s), 'pg_class'), "
                        "obj_description(to_regclass('items'), 'pg_class')", (self.table,))
            copy_tag, items_tag = cur.fetchone()
            if copy_tag == items_tag:
                return
            with Step(f"copying items into {self.table} (vector({self.cfg.dim}))"):
                cur.execute(f"DROP TABLE IF EXISTS {self.table}")
                cur.execute(f"CREATE TABLE {self.table} AS SELECT id, "
                            f"embedding::vector({self.cfg.dim}) AS embedding FROM items")
                cur.execute(f"ALTER TABLE {self.table} ADD PRIMARY KEY (id)")
                cur.execute(f"VACUUM ANALYZE {self.table}")
                cur.execute(f"COMMENT ON TABLE {self.table} IS %s", (items_tag,))

    def build_sql(self):
        return (f"CREATE INDEX {self.index} ON {self.table} USING {self.method} "
                f"(embedding {self.opclasses[self.cfg.metric]}){_with_clause(self.options)}")

    def query_sql(self, k):
        return (f"SELECT id FROM {self.table} ORDER BY embedding {OPERATORS[self.cfg.metric]} "
                f"$1::vector({self.cfg.dim}) LIMIT {k}")


class PgvectorHnsw(_Pgvector):
    name = "pgvector-hnsw"
    index = "items_vec_hnsw_idx"
    method = "hnsw"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.options = cfg.hnsw_opts

    def points(self):
        return [{"hnsw.ef_search": str(e)} for e in self.cfg.ef_search]


class PgvectorIvfflat(_Pgvector):
    name = "pgvector-ivfflat"
    index = "items_vec_ivfflat_idx"
    method = "ivfflat"

    def __init__(self, cfg):
        super().__init__(cfg)
        # pgvector's advice: lists = rows / 1000 up to a million rows
        self.options = cfg.ivfflat_opts or f"lists = {max(1, cfg.rows // 1000)}"

    def points(self):
        return [{"ivfflat.probes": str(p)} for p in self.cfg.probes]


SYSTEMS = {cls.name: cls for cls in (Exact, Scann, ScannSerial, PgvectorHnsw, PgvectorIvfflat,
                                     Ceiling)}
