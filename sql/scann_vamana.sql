-- The vamana variant (a DiskANN graph): its options and their errors, answers equal to a
-- sequential scan's for every operator class and both ways of re-ranking, small batches (every
-- row once, filtered queries get their LIMIT rows), NULL handling, tiny and empty tables,
-- inserts, deletes, VACUUM (no edge left to a freed node, nodes reused), scann_index_info and
-- idx_scan.
SET client_min_messages = notice;

CREATE TABLE vt (id int PRIMARY KEY, g int, v real[]);
INSERT INTO vt SELECT i, i % 10, ARRAY[sin(i), cos(i * 0.7), (i % 13) / 13.0, (i % 5)::real / 3, sin(i * 0.3)]
  FROM generate_series(1, 2000) i;

-- A statement's error as "SQLSTATE: message" (or ok).
CREATE FUNCTION try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE stmt;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- Options: bounds, and options of another variant.
SELECT try($$CREATE INDEX ON vt USING scann (v) WITH (variant = 'vamana', graph_degree = 1)$$);
SELECT try($$CREATE INDEX ON vt USING scann (v) WITH (variant = 'vamana', graph_degree = 65)$$);
SELECT try($$CREATE INDEX ON vt USING scann (v) WITH (variant = 'vamana', build_list = 0)$$);
SELECT try($$CREATE INDEX ON vt USING scann (v) WITH (variant = 'vamana', alpha = 0.9)$$);
SELECT try($$CREATE INDEX ON vt USING scann (v) WITH (variant = 'vamana', alpha = 5)$$);
SELECT try($$CREATE INDEX ON vt USING scann (v) WITH (variant = 'vamana', dims_per_subspace = 0)$$);
SELECT try($$CREATE INDEX ON vt USING scann (v) WITH (variant = 'vamana', lists = 10)$$);
SELECT try($$CREATE INDEX ON vt USING scann (v) WITH (graph_degree = 16)$$);
SELECT try($$CREATE INDEX ON vt USING scann (v) WITH (variant = 'ivf', build_list = 20)$$);
CREATE INDEX ON vt USING scann (v) WITH (variant = 'ivf', alpha = 1.1);
CREATE INDEX vt_ivf ON vt USING scann (v) WITH (lists = 4);
ALTER INDEX vt_ivf SET (graph_degree = 16);
DROP INDEX vt_ivf;
SELECT try($$SET scann.search_list = 0$$);
SELECT try($$SET scann.search_list = 100001$$);
-- A node that does not fit in a page: 8,000 dimensions with one per subspace.
CREATE TABLE vwide (id int, v real[]);
INSERT INTO vwide SELECT i, array_fill((i % 7)::real, ARRAY[8000]) FROM generate_series(1, 120) i;
CREATE INDEX ON vwide USING scann (v) WITH (variant = 'vamana', dims_per_subspace = 1);
-- The default codes are made coarse enough for a node to fit.
CREATE INDEX vwide_v ON vwide USING scann (v) WITH (variant = 'vamana');
SELECT variant, dims_per_subspace, entries, bad_edges FROM scann_index_info('vwide_v');
DROP TABLE vwide;

-- The first n rows of ORDER BY v <op> q through the index and through a sequential scan of the
-- rows with a vector: the same distances in the same order, and (for every row) the same rows.
CREATE FUNCTION vamana_same_as_seqscan(tbl regclass, op text, q real[], n int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE by_index float8[]; by_seq float8[]; ids_index int[]; ids_seq int[]; total bigint;
BEGIN
  EXECUTE format('SELECT count(v) FROM %s', tbl) INTO total;
  SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = on;
  EXECUTE format('SELECT array_agg(d ORDER BY n), array_agg(id ORDER BY id) FROM (SELECT id, v %s $1 AS d, '
                 'row_number() OVER () AS n FROM (SELECT id, v FROM %s ORDER BY v %s $1 LIMIT %s) s) t',
                 op, tbl, op, n) INTO by_index, ids_index USING q;
  SET LOCAL enable_seqscan = on; SET LOCAL enable_indexscan = off;
  EXECUTE format('SELECT array_agg(d ORDER BY n), array_agg(id ORDER BY id) FROM (SELECT id, v %s $1 AS d, '
                 'row_number() OVER () AS n FROM (SELECT id, v FROM %s WHERE v IS NOT NULL '
                 'ORDER BY v %s $1, id LIMIT %s) s) t',
                 op, tbl, op, n) INTO by_seq, ids_seq USING q;
  RETURN CASE WHEN by_index IS DISTINCT FROM by_seq THEN 'distances differ'
              WHEN cardinality(by_index) = total AND ids_index IS DISTINCT FROM ids_seq THEN 'rows differ'
              ELSE 'same' END;
END $$;

-- Every candidate re-ranked (a search list as long as the table): the exact answer, for each
-- operator class, from the heap and from records.
SET scann.search_list = 2000;
SET scann.reorder = 2000;
CREATE INDEX vt_v ON vt USING scann (v l2_ops) WITH (variant = 'vamana', graph_degree = 16, build_list = 40);
SELECT vamana_same_as_seqscan('vt', '<->', '{0.2,0.5,0.3,0.4,0}', 2000) AS l2_all,
       vamana_same_as_seqscan('vt', '<->', '{3,-1,0,0,1}', 10) AS l2_top10;
DROP INDEX vt_v;
CREATE INDEX vt_v ON vt USING scann (v ip_ops) WITH (variant = 'vamana', rerank = 'sq8');
SELECT vamana_same_as_seqscan('vt', '<#>', '{0.2,0.5,0.3,0.4,0}', 2000) AS ip_all,
       vamana_same_as_seqscan('vt', '<#>', '{3,-1,0,0,1}', 10) AS ip_top10;
DROP INDEX vt_v;
CREATE INDEX vt_v ON vt USING scann (v cosine_ops) WITH (variant = 'vamana', alpha = 1.1);
SELECT vamana_same_as_seqscan('vt', '<=>', '{0.2,0.5,0.3,0.4,0}', 2000) AS cosine_all,
       vamana_same_as_seqscan('vt', '<=>', '{3,-1,0,0,1}', 10) AS cosine_top10;
SELECT variant, trained, metric, dims, lists, graph_degree, entries, free_slots, deleted_nodes,
       bad_edges, unreachable_nodes, min_degree > 0 AS linked, max_degree <= 32 AS bounded
  FROM scann_index_info('vt_v');

-- Small batches and short lists: the search widens, then sweeps the node pages; every row comes
-- back once, and a filtered query (10% of the rows) gets its LIMIT rows.
SET enable_seqscan = off;
SET scann.search_list = 5;
SET scann.reorder = 3;
SELECT count(*), count(DISTINCT id) FROM (SELECT id FROM vt ORDER BY v <=> '{0.2,0.5,0.3,0.4,0}') s;
SELECT count(*), count(DISTINCT id) FROM (SELECT id FROM vt WHERE g = 3 ORDER BY v <=> '{0.2,0.5,0.3,0.4,0}' LIMIT 150) s;
SET scann.reorder = 0;
SELECT count(*), count(DISTINCT id) FROM (SELECT id FROM vt ORDER BY v <=> '{0.2,0.5,0.3,0.4,0}') s;
RESET scann.reorder;
RESET scann.search_list;

-- NULL handling: rows with a NULL vector are not indexed; ORDER BY v <op> NULL returns the
-- indexed rows in no particular order, with NULL distances.
INSERT INTO vt VALUES (5001, 1, NULL), (5002, 1, '{0,0,0,0,0}');
SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE id = 5001) AS null_row,
       count(*) FILTER (WHERE id = 5002) AS zero_row
  FROM (SELECT id FROM vt ORDER BY v <=> '{1,1,1,1,1}') s;
PREPARE nullq(real[]) AS SELECT count(*), count(d) FROM (SELECT v <=> $1 AS d FROM vt ORDER BY v <=> $1 LIMIT 7) s;
SET plan_cache_mode = force_generic_plan;
EXECUTE nullq(NULL);
RESET plan_cache_mode;
DEALLOCATE nullq;

-- idx_scan counts the index's scans.
SELECT pg_stat_force_next_flush();
SELECT idx_scan AS before FROM pg_stat_user_indexes WHERE indexrelname = 'vt_v' \gset
SELECT id FROM vt ORDER BY v <=> '{1,0,0,0,0}' LIMIT 1;
SELECT id FROM vt ORDER BY v <=> '{0,1,0,0,0}' LIMIT 1;
SELECT pg_stat_force_next_flush();
SELECT idx_scan - :before AS scans FROM pg_stat_user_indexes WHERE indexrelname = 'vt_v';
RESET enable_seqscan;

-- Inserts, deletes and VACUUM: no live node points to a freed one, freed nodes are reused, and
-- the answers stay exact.
DROP INDEX vt_v;
CREATE INDEX vt_v ON vt USING scann (v l2_ops) WITH (variant = 'vamana', rerank = 'sq8');
INSERT INTO vt SELECT i, i % 10, ARRAY[cos(i), sin(i * 0.7), (i % 11) / 11.0, (i % 3)::real / 2, cos(i * 0.3)]
  FROM generate_series(2001, 2600) i;
SET scann.search_list = 3000;
SET scann.reorder = 3000;
SELECT vamana_same_as_seqscan('vt', '<->', '{0.2,0.5,0.3,0.4,0}', 3000) AS after_inserts;
SELECT entries, free_slots, pages AS pages_before, bad_edges, unreachable_nodes
  FROM scann_index_info('vt_v') \gset
SELECT :entries AS entries, :bad_edges AS bad_edges, :unreachable_nodes AS unreachable_nodes;
DELETE FROM vt WHERE id % 5 = 0;
SELECT entries, deleted_nodes FROM scann_index_info('vt_v');
VACUUM vt;
SELECT entries, free_slots, deleted_nodes, bad_edges, unreachable_nodes FROM scann_index_info('vt_v');
INSERT INTO vt SELECT i, i % 10, ARRAY[cos(i), sin(i), 1, 0, 0.5] FROM generate_series(3001, 3500) i;
SELECT entries, deleted_nodes, bad_edges, pages = :pages_before AS reused
  FROM scann_index_info('vt_v');
SELECT vamana_same_as_seqscan('vt', '<->', '{0.2,0.5,0.3,0.4,0}', 3000) AS after_vacuum_and_reuse,
       (SELECT count(*) FROM vt WHERE v IS NOT NULL) AS rows;
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM vt ORDER BY v <-> '{0.2,0.5,0.3,0.4,0}' LIMIT 5000) s
 WHERE id % 5 = 0 AND id <= 2600;
RESET enable_seqscan;
RESET scann.search_list;
RESET scann.reorder;

-- Tiny tables: untrained (TIDs only, every scan exact); an empty table's index learns its
-- dimension from the first row and grows a graph only once rebuilt.
CREATE TABLE vtiny (id int, v real[]);
INSERT INTO vtiny SELECT i, ARRAY[i, i % 3] FROM generate_series(1, 20) i;
CREATE INDEX vtiny_v ON vtiny USING scann (v) WITH (variant = 'vamana');
SET enable_seqscan = off;
SELECT id FROM vtiny ORDER BY v <-> '{7.2, 1}' LIMIT 3;
SELECT trained, variant, entries, entry_point FROM scann_index_info('vtiny_v');
CREATE TABLE vempty (id int, v real[]);
CREATE INDEX vempty_v ON vempty USING scann (v cosine_ops) WITH (variant = 'vamana');
INSERT INTO vempty SELECT i, ARRAY[sin(i), cos(i), 1] FROM generate_series(1, 300) i;
SELECT id FROM vempty ORDER BY v <=> '{0.5, 0.5, 1}' LIMIT 3;
SELECT trained, dims, entries FROM scann_index_info('vempty_v');
REINDEX INDEX vempty_v;
SELECT trained, dims, entries, bad_edges, entry_point IS NOT NULL AS has_entry
  FROM scann_index_info('vempty_v');
SELECT id FROM vempty ORDER BY v <=> '{0.5, 0.5, 1}' LIMIT 3;
RESET enable_seqscan;

DROP TABLE vt, vtiny, vempty;
DROP FUNCTION try(text), vamana_same_as_seqscan(regclass, text, real[], int);
