-- The scann access method on small tables: options and their errors, the opclass
-- validator, bad rows at build and insert, tiny and empty tables, NULL and zero vectors,
-- plans, and the scan settings.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_scann;
RESET client_min_messages;
SET client_min_messages = notice;

-- The operator classes pass the validator.
SELECT opcname, amvalidate(opc.oid) FROM pg_opclass opc JOIN pg_am am ON am.oid = opc.opcmethod
 WHERE amname = 'scann' ORDER BY opcname;

CREATE TABLE t (id int PRIMARY KEY, v real[]);
-- Options are validated.
CREATE INDEX ON t USING scann (v) WITH (lists = -1);
CREATE INDEX ON t USING scann (v) WITH (dims_per_subspace = 0);
CREATE INDEX ON t USING scann (v) WITH (sample = -5);
CREATE INDEX ON t USING scann (v) WITH (anisotropic_threshold = -0.5);
CREATE INDEX ON t USING scann (v) WITH (variant = 'hnsw');
CREATE INDEX ON t USING scann (v) WITH (nonsense = 1);
CREATE INDEX ON t USING scann (id);

-- An index on an empty table holds what is inserted later, in exact order, and says that
-- a REINDEX after loading makes it fast.
CREATE INDEX t_v ON t USING scann (v);
INSERT INTO t VALUES (1, '{0,0}'), (2, '{1,0}'), (3, '{0,2}'), (4, '{3,3}'), (5, '{-1,-1}'), (6, NULL);
-- The first row inserted fixed the index's dimension (in its metapage, so in every session):
-- a row of another length fails, naming both.
INSERT INTO t VALUES (7, '{1,2,3}');
\c -
INSERT INTO t VALUES (7, '{1,2,3}');
-- Like a sequence, the recorded dimension stays when the first row's transaction rolls back.
CREATE TABLE e (v real[]);
CREATE INDEX e_v ON e USING scann (v);
BEGIN;
INSERT INTO e VALUES ('{1,2,3}');
ROLLBACK;
INSERT INTO e VALUES ('{1,2}');
DROP TABLE e;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM t ORDER BY v <-> '{0.9,0.1}' LIMIT 3;
SELECT id, round((v <-> '{0.9,0.1}')::numeric, 4) AS d FROM t ORDER BY v <-> '{0.9,0.1}' LIMIT 3;
-- Every non-NULL row comes back, in exact order, even past scann.reorder.
SET scann.reorder = 2;
SELECT array_agg(id) FROM (SELECT id FROM t ORDER BY v <-> '{0,0}' LIMIT 100) s;
RESET scann.reorder;
-- ORDER BY v <-> NULL: every distance is NULL, so any order is correct, and LIMIT n gives n
-- rows whichever plan runs.  A literal NULL is folded away by the planner (the operator is
-- strict) and the ORDER BY with it: any scan of the table, rows with a NULL vector included.
EXPLAIN (COSTS OFF) SELECT id FROM t ORDER BY v <-> NULL LIMIT 3;
SELECT count(*) FROM (SELECT id FROM t ORDER BY v <-> NULL LIMIT 3) s;
-- A NULL parameter under a generic plan, or a sub-select, reaches the index, which returns its
-- rows (not those with a NULL vector) in no particular order.
PREPARE knn(real[]) AS SELECT id FROM t ORDER BY v <-> $1 LIMIT 3;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE knn(NULL);
CREATE TEMP TABLE knn_null AS EXECUTE knn(NULL);
SELECT count(*), count(DISTINCT id) FROM knn_null;
EXECUTE knn('{0,0}');
RESET plan_cache_mode;
DEALLOCATE knn;
SELECT count(*) AS all_indexed_rows, count(*) FILTER (WHERE v IS NULL) AS null_vectors
  FROM (SELECT v FROM t ORDER BY v <-> (SELECT NULL::real[]) LIMIT 10) s;
-- A query of the wrong dimension, or bad query vectors, fail clearly.
SELECT id FROM t ORDER BY v <-> '{1,2,3}' LIMIT 1;
SELECT id FROM t ORDER BY v <-> '{1,NaN}' LIMIT 1;
SELECT id FROM t ORDER BY v <-> '{}' LIMIT 1;
DROP INDEX t_v;

-- A tiny table: the NOTICE, then correct results.
CREATE INDEX t_v ON t USING scann (v);
SELECT id FROM t ORDER BY v <-> '{3,2}' LIMIT 2;
-- Rows of the wrong dimension, NULL elements or NaN fail the insert, naming the problem.
INSERT INTO t VALUES (7, '{1,2,3}');
INSERT INTO t VALUES (8, '{1,NULL}');
INSERT INTO t VALUES (9, '{1,Infinity}');
INSERT INTO t VALUES (10, '{{1,2},{3,4}}');
DROP TABLE t;

-- A trained index: enough rows for k-means and the codebooks.
CREATE TABLE pts (id int PRIMARY KEY, v real[]);
INSERT INTO pts SELECT i, ARRAY[sin(i)::real, cos(i * 0.7)::real, sin(i * 1.3)::real,
                                (i % 17)::real / 17, cos(i * 0.11)::real]
  FROM generate_series(1, 3000) i;
CREATE INDEX pts_l2 ON pts USING scann (v l2_ops) WITH (lists = 20, dims_per_subspace = 2);
SELECT relname, reloptions FROM pg_class WHERE relname = 'pts_l2';
-- With every list probed and every row re-ranked, the index answers exactly.
SET scann.nprobe = 20;
SET scann.reorder = 3000;
SELECT array_agg(id) = (SELECT array_agg(id) FROM (SELECT id FROM pts ORDER BY l2_distance(v, '{0.1,0.2,0.3,0.4,0.5}'), id LIMIT 10) e)
  AS exact_top10
  FROM (SELECT id FROM pts ORDER BY v <-> '{0.1,0.2,0.3,0.4,0.5}' LIMIT 10) s;
-- The ORDER BY value is the exact distance.
SELECT bool_and(abs(d - l2_distance(v, '{0.1,0.2,0.3,0.4,0.5}')) < 1e-9) AS exact_distances
  FROM (SELECT v, v <-> '{0.1,0.2,0.3,0.4,0.5}' AS d FROM pts ORDER BY v <-> '{0.1,0.2,0.3,0.4,0.5}' LIMIT 50) s;
-- Approximate order (no re-ranking) still returns rows.
SET scann.reorder = 0;
SELECT count(*) FROM (SELECT id FROM pts ORDER BY v <-> '{0.1,0.2,0.3,0.4,0.5}' LIMIT 10) s;
RESET scann.reorder;
RESET scann.nprobe;
-- Without LIMIT... the planner prefers a sequential scan and a sort where that is cheaper.
RESET enable_seqscan;
EXPLAIN (COSTS OFF) SELECT id FROM pts ORDER BY v <-> '{0.1,0.2,0.3,0.4,0.5}';
EXPLAIN (COSTS OFF) SELECT id FROM pts ORDER BY v <-> '{0.1,0.2,0.3,0.4,0.5}' LIMIT 5;
-- A row of the wrong dimension fails the build, naming the row (by its ctid) and both
-- dimensions; the query of the hint lists it.
DROP INDEX pts_l2;
INSERT INTO pts VALUES (5000, '{1,2,3}');
CREATE INDEX ON pts USING scann (v);
SELECT id FROM pts WHERE ctid = '(28,5)';
SELECT ctid, * FROM public.pts WHERE cardinality(v) <> 5;
DELETE FROM pts WHERE id = 5000;
CREATE INDEX pts_l2 ON pts USING scann (v l2_ops) WITH (lists = 20);
-- The index stays usable after inserts, deletes and VACUUM.
INSERT INTO pts SELECT i, ARRAY[0.5, 0.5, 0.5, 0.5, (i - 3000)::real / 100] FROM generate_series(3001, 3100) i;
DELETE FROM pts WHERE id % 2 = 0;
VACUUM pts;
SET enable_seqscan = off;
SET scann.nprobe = 20;
SET scann.reorder = 3000;
SELECT count(*) AS rows_found, bool_and(id % 2 = 1) AS only_live
  FROM (SELECT id FROM pts ORDER BY v <-> '{0.5,0.5,0.5,0.5,0.3}' LIMIT 5000) s;
SELECT id FROM pts ORDER BY v <-> '{0.5,0.5,0.5,0.5,0.31}' LIMIT 3;
-- scann.max_probes bounds how far a scan goes when the executor keeps asking: with one
-- list, far fewer rows come back; with no bound (-1, the default) all of them do.
SET scann.nprobe = 1;
SET scann.reorder = 10;
SET scann.max_probes = 1;
SELECT count(*) < 500 AS bounded FROM (SELECT id FROM pts ORDER BY v <-> '{0.5,0.5,0.5,0.5,0.3}' LIMIT 5000) s;
SET scann.max_probes = -1;
SELECT count(*) AS unbounded, count(DISTINCT id) AS distinct_ids FROM (SELECT id FROM pts ORDER BY v <-> '{0.5,0.5,0.5,0.5,0.3}' LIMIT 5000) s;
-- A bound below scann.nprobe acts as scann.nprobe (as pgvector's ivfflat.max_probes below
-- ivfflat.probes does): the first scann.nprobe lists are always searched.
SET scann.nprobe = 3;
SET scann.max_probes = 1;
SELECT count(*) AS max_probes_1 FROM (SELECT id FROM pts ORDER BY v <-> '{0.5,0.5,0.5,0.5,0.3}' LIMIT 5000) s;
SET scann.max_probes = 3;
SELECT count(*) AS max_probes_3 FROM (SELECT id FROM pts ORDER BY v <-> '{0.5,0.5,0.5,0.5,0.3}' LIMIT 5000) s;
SET scann.nprobe = 1;
SET scann.max_probes = -1;
SELECT count(*) AS filtered FROM (SELECT id FROM pts WHERE id % 10 = 1 ORDER BY v <-> '{0.5,0.5,0.5,0.5,0.3}' LIMIT 50) s;
RESET ALL;

-- Updated rows: re-ranking follows a HOT chain to the version the snapshot sees, and the
-- entry an update of the vector leaves behind never returns the old version.
CREATE TABLE upd (id int PRIMARY KEY, tag text, v real[]) WITH (fillfactor = 50);
INSERT INTO upd SELECT i, 'old', ARRAY[sin(i)::real, cos(i * 0.7)::real, (i % 13)::real / 13]
  FROM generate_series(1, 2000) i;
CREATE INDEX upd_v ON upd USING scann (v) WITH (lists = 10);
SET enable_seqscan = off;
SET scann.nprobe = 10;
SET scann.reorder = 2000;
BEGIN;
UPDATE upd SET tag = 'hot1' WHERE id % 100 = 7;
UPDATE upd SET tag = 'hot2' WHERE id % 100 = 7;
UPDATE upd SET v = ARRAY[5, 5, 5] WHERE id = 9;
SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'upd';
SELECT id, tag, v <-> (SELECT v FROM upd WHERE id = 107) AS d
  FROM upd ORDER BY v <-> (SELECT v FROM upd WHERE id = 107) LIMIT 1;
COMMIT;
SELECT count(*) AS all_rows, count(DISTINCT id) AS distinct_ids,
       count(*) FILTER (WHERE tag = 'hot2') AS hot2, count(*) FILTER (WHERE tag = 'hot1') AS hot1
  FROM (SELECT id, tag FROM upd ORDER BY v <-> '{0,0,0}' LIMIT 5000) s;
SELECT id, v <-> '{5,5,5}' AS d FROM upd ORDER BY v <-> '{5,5,5}' LIMIT 1;
SELECT id FROM upd ORDER BY v <-> ARRAY[sin(9), cos(9 * 0.7), (9 % 13)::real / 13]::real[] LIMIT 1;
SELECT array_agg(id) = (SELECT array_agg(id) FROM (SELECT id FROM upd ORDER BY l2_distance(v, '{0.3,-0.2,0.5}'), id LIMIT 20) e)
  AS exact_top20
  FROM (SELECT id FROM upd ORDER BY v <-> '{0.3,-0.2,0.5}' LIMIT 20) s;
RESET ALL;
DROP TABLE upd;

-- Cosine: zero vectors have no direction and are not indexed; inner product orders by <#>.
CREATE TABLE dirs (id int, v real[]);
INSERT INTO dirs SELECT i, ARRAY[cos(i * 0.05)::real, sin(i * 0.05)::real, (i % 3)::real] FROM generate_series(1, 500) i;
INSERT INTO dirs VALUES (0, '{0,0,0}');
CREATE INDEX dirs_cos ON dirs USING scann (v cosine_ops);
CREATE INDEX dirs_ip ON dirs USING scann (v ip_ops);
SET enable_seqscan = off;
SET scann.nprobe = 100;
SET scann.reorder = 1000;
SELECT count(*) FILTER (WHERE id = 0) AS zero_rows_returned, count(*) AS rows
  FROM (SELECT id FROM dirs ORDER BY v <=> '{1,0,0}' LIMIT 1000) s;
SELECT id FROM dirs ORDER BY v <=> '{1,0.1,0}' LIMIT 3;
SELECT id FROM dirs ORDER BY v <#> '{1,0.1,2}' LIMIT 3;
-- A NULL query through the shared lookup tables of cosine and inner product: every indexed row.
SELECT count(*) AS cosine_rows FROM (SELECT id FROM dirs ORDER BY v <=> (SELECT NULL::real[]) LIMIT 1000) s;
SELECT count(*) AS ip_rows FROM (SELECT id FROM dirs ORDER BY v <#> (SELECT NULL::real[]) LIMIT 1000) s;
RESET ALL;

-- Unlogged tables get an init fork: the index works and survives TRUNCATE.
CREATE UNLOGGED TABLE u (id int, v real[]);
INSERT INTO u SELECT i, ARRAY[i::real, (i * 2)::real] FROM generate_series(1, 200) i;
CREATE INDEX u_v ON u USING scann (v);
SET enable_seqscan = off;
SELECT id FROM u ORDER BY v <-> '{10,20}' LIMIT 2;
TRUNCATE u;
INSERT INTO u VALUES (1, '{5,5}');
SELECT id FROM u ORDER BY v <-> '{10,20}' LIMIT 2;
RESET ALL;
DROP TABLE pts, dirs, u;

-- 16,000 dimensions (pgvector stops at 2,000): 8,000 subspaces, so one 32-vector block
-- spans 16 pages; build, insert and scan it.
CREATE TABLE wide (id int PRIMARY KEY, v real[]);
INSERT INTO wide SELECT i, (SELECT array_agg(sin(i * 0.37 + j * 0.011)::real) FROM generate_series(1, 16000) j)
  FROM generate_series(1, 110) i;
CREATE INDEX wide_v ON wide USING scann (v) WITH (lists = 3);
INSERT INTO wide SELECT i, (SELECT array_agg(sin(i * 0.37 + j * 0.011)::real) FROM generate_series(1, 16000) j)
  FROM generate_series(111, 150) i;
SET enable_seqscan = off;
SET scann.nprobe = 3;
SET scann.reorder = 150;
SELECT array_agg(id ORDER BY id) AS nearest_five FROM (
  SELECT id FROM wide ORDER BY v <-> (SELECT v FROM wide WHERE id = 140) LIMIT 5) s;
SELECT count(*) AS all_rows FROM (SELECT id FROM wide ORDER BY v <-> (SELECT v FROM wide WHERE id = 1) LIMIT 1000) s;
RESET ALL;
SELECT array_agg(id ORDER BY id) AS exact_five FROM (
  SELECT id FROM wide ORDER BY v <-> (SELECT v FROM wide WHERE id = 140) LIMIT 5) s;
DROP TABLE wide;
-- Too few rows to train, and rows wider than one page: the index still answers exactly.
CREATE TABLE wide_tiny (id int, v real[]);
INSERT INTO wide_tiny
  SELECT i, array(SELECT sin(i * j)::real FROM generate_series(1, 3000) j) FROM generate_series(1, 5) i;
CREATE INDEX wide_tiny_v ON wide_tiny USING scann (v);
SET enable_seqscan = off;
SELECT id FROM wide_tiny ORDER BY v <-> (SELECT v FROM wide_tiny WHERE id = 2) LIMIT 3;
INSERT INTO wide_tiny SELECT 6, v FROM wide_tiny WHERE id = 2;
SELECT id, round((v <-> (SELECT v FROM wide_tiny WHERE id = 2))::numeric, 3) AS d
  FROM wide_tiny ORDER BY v <-> (SELECT v FROM wide_tiny WHERE id = 2) LIMIT 3;
RESET enable_seqscan;
DROP TABLE wide_tiny;

-- An expression index: the re-ranking evaluates the expression on each fetched row.
CREATE TABLE ex (id int PRIMARY KEY, x real, y real);
INSERT INTO ex SELECT i, cos(i * 0.1), sin(i * 0.13) FROM generate_series(1, 500) i;
CREATE INDEX ex_idx ON ex USING scann ((ARRAY[x, y]) l2_ops);
SET enable_seqscan = off;
SET scann.nprobe = 100;
EXPLAIN (COSTS OFF) SELECT id FROM ex ORDER BY ARRAY[x, y] <-> '{0.5,0.5}' LIMIT 3;
SELECT id, round((ARRAY[x, y] <-> '{0.5,0.5}')::numeric, 5) AS d FROM ex ORDER BY ARRAY[x, y] <-> '{0.5,0.5}' LIMIT 3;
RESET ALL;
SELECT id, round((ARRAY[x, y] <-> '{0.5,0.5}')::numeric, 5) AS d FROM ex ORDER BY ARRAY[x, y] <-> '{0.5,0.5}' LIMIT 3;
DROP TABLE ex;

-- Scans are counted in pg_stat_user_indexes.idx_scan (an index that shows 0 there looks
-- unused and gets dropped), and the rows they return in idx_tup_read.
CREATE TABLE counted (id int, v real[]);
INSERT INTO counted SELECT i, ARRAY[cos(i * 0.1), sin(i * 0.1)] FROM generate_series(1, 300) i;
CREATE INDEX counted_v ON counted USING scann (v);
SET enable_seqscan = off;
SELECT id FROM counted ORDER BY v <-> '{1,0}' LIMIT 2;
SELECT id FROM counted ORDER BY v <-> '{0,1}' LIMIT 3;
RESET enable_seqscan;
SELECT pg_stat_force_next_flush();
SELECT idx_scan, idx_tup_read FROM pg_stat_user_indexes WHERE indexrelid = 'counted_v'::regclass;
DROP TABLE counted;

-- scann_index_info: what an index holds, for deciding when to REINDEX.
CREATE TABLE infot (id int, v real[]);
INSERT INTO infot SELECT i, ARRAY[cos(i * 0.1), sin(i * 0.1), i % 7] FROM generate_series(1, 400) i;
CREATE INDEX infot_v ON infot USING scann (v cosine_ops) WITH (lists = 8);
SELECT trained, metric, dims, lists, dims_per_subspace, sample_rows, build_rows, entries,
       free_slots, smallest_list, largest_list, empty_lists, pages, rerank, calibration_knob,
       calibration_recall, calibrated_at > now() - interval '1 hour' AS calibrated_now,
       calibration_stale
  FROM scann_index_info('infot_v');
DELETE FROM infot WHERE id % 4 = 0;
VACUUM infot;
INSERT INTO infot SELECT i, ARRAY[1, 0, 0] FROM generate_series(401, 420) i;
SELECT trained, entries, free_slots, entries + free_slots AS slots, build_rows
  FROM scann_index_info('infot_v');
CREATE TABLE infot_tiny (v real[]);
INSERT INTO infot_tiny VALUES ('{1,2}'), ('{3,4}');
CREATE INDEX infot_tiny_v ON infot_tiny USING scann (v);
SELECT trained, metric, dims, lists, entries, free_slots, build_rows FROM scann_index_info('infot_tiny_v');
SELECT * FROM scann_index_info('infot');
CREATE INDEX infot_btree ON infot (id);
SELECT * FROM scann_index_info('infot_btree');
CREATE ROLE regress_scann_reader;
SET ROLE regress_scann_reader;
SELECT entries FROM scann_index_info('infot_v');
RESET ROLE;
GRANT SELECT ON infot TO regress_scann_reader;
SET ROLE regress_scann_reader;
SELECT entries FROM scann_index_info('infot_v');
-- The developer option that makes inserts fail (TAP 009) is for superusers only.
SET scann.inject_fault = 'error_before_link';
RESET ROLE;
SET scann.inject_fault = 'sometimes';
-- With it set, an insert that finds room in its list succeeds; one that needs a new page fails
-- before linking it.
SET scann.inject_fault = 'error_before_link';
INSERT INTO infot VALUES (421, '{0,1,0}');
INSERT INTO infot SELECT i, ARRAY[0, 1, 0] FROM generate_series(422, 3500) i;
RESET scann.inject_fault;
SELECT count(*) FROM infot;
REVOKE SELECT ON infot FROM regress_scann_reader;
DROP ROLE regress_scann_reader;
DROP TABLE infot, infot_tiny;
