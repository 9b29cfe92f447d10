-- The annoy variant (WITH (variant = 'annoy')) on small tables: its options and their errors,
-- empty and tiny tables, scann_index_info's annoy columns, every row returned once although
-- each sits in one leaf of every tree, exact order, filtered queries, inserts and VACUUM.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_scann;
RESET client_min_messages;
SET client_min_messages = notice;

CREATE TABLE a (id int PRIMARY KEY, v real[]);
-- Bad values, with their SQLSTATEs.
\set VERBOSITY sqlstate
CREATE INDEX ON a USING scann (v) WITH (variant = 'annoy', trees = 0);
CREATE INDEX ON a USING scann (v) WITH (variant = 'annoy', trees = 65);
CREATE INDEX ON a USING scann (v) WITH (variant = 'annoy', leaf_size = -1);
CREATE INDEX ON a USING scann (v) WITH (variant = 'annoy', trees = 'many');
CREATE INDEX ON a USING scann (v) WITH (variant = 'annoy', graph_degree = 16);
\set VERBOSITY default
CREATE INDEX ON a USING scann (v) WITH (variant = 'annoy', trees = 0);
CREATE INDEX ON a USING scann (v) WITH (variant = 'annoy', leaf_size = -1);
CREATE INDEX ON a USING scann (v) WITH (variant = 'vamana', trees = 4);
CREATE INDEX ON a USING scann (v) WITH (variant = 'Annoy');
-- An option of the other variant is refused, not ignored: lists with annoy, trees and
-- leaf_size with ivf (the default variant), also through ALTER INDEX.
CREATE INDEX ON a USING scann (v) WITH (variant = 'annoy', lists = 100);
CREATE INDEX ON a USING scann (v) WITH (variant = 'annoy', lists = 0);
CREATE INDEX ON a USING scann (v) WITH (trees = 4);
CREATE INDEX ON a USING scann (v) WITH (variant = 'ivf', leaf_size = 0);
CREATE INDEX a_ivf ON a USING scann (v) WITH (lists = 4);
ALTER INDEX a_ivf SET (trees = 2);
ALTER INDEX a_ivf SET (variant = 'annoy');
DROP INDEX a_ivf;

-- On an empty table: untrained (no forest), rows inserted later come back in exact order.
CREATE INDEX a_v ON a USING scann (v) WITH (variant = 'annoy', trees = 3);
SELECT trained, variant, metric, dims, lists, trees, leaf_size, entries FROM scann_index_info('a_v');
INSERT INTO a VALUES (1, '{0,0}'), (2, '{1,0}'), (3, '{0,2}'), (4, '{3,3}'), (5, '{-1,-1}'), (6, NULL);
SET enable_seqscan = off;
SELECT id, round((v <-> '{0.9,0.1}')::numeric, 4) AS d FROM a ORDER BY v <-> '{0.9,0.1}' LIMIT 3;
SELECT trained, variant, dims, lists, trees, entries FROM scann_index_info('a_v');
-- A tiny table: the NOTICE of an untrained build, then exact results.
REINDEX INDEX a_v;
SELECT id FROM a ORDER BY v <-> '{3,2}' LIMIT 2;
RESET enable_seqscan;
DROP TABLE a;

-- 3,000 rows on a closed curve in 4 dimensions (many near-equal distances).
CREATE TABLE pts (id int PRIMARY KEY, v real[]);
INSERT INTO pts SELECT i, ARRAY[cos(i * 0.01), sin(i * 0.01), cos(i * 0.037), sin(i * 0.05)]
  FROM generate_series(1, 3000) i;
CREATE INDEX pts_v ON pts USING scann (v l2_ops) WITH (variant = 'annoy', trees = 3, leaf_size = 100);
-- Each row fills a slot in one leaf of each of the 3 trees; leaf_size is what the build aimed at.
SELECT trained, variant, metric, dims, trees, leaf_size, build_rows, entries, entries / trees AS rows,
       lists > trees AS several_leaves_per_tree, largest_list <= leaf_size AS leaves_within_size
  FROM scann_index_info('pts_v');
-- The same columns of an IVF index: no trees, no leaf size.
CREATE INDEX pts_ivf ON pts USING scann (v) WITH (lists = 10);
SELECT trained, variant, lists, trees, leaf_size, entries FROM scann_index_info('pts_ivf');
DROP INDEX pts_ivf;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM pts ORDER BY v <-> '{1,0,1,0}' LIMIT 5;
-- Every row once in a full ordered scan, whatever the batch size and leaves per round,
-- although the scan meets each row in up to 3 leaves.
SET scann.reorder = 7;
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_ids
  FROM (SELECT id FROM pts ORDER BY v <-> '{1,0,1,0}' LIMIT 5000) s;
SET scann.nprobe = 1;
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_ids
  FROM (SELECT id FROM pts ORDER BY v <-> '{0.3,-0.9,0.5,0.1}' LIMIT 5000) s;
SET scann.nprobe = 100000;
SET scann.reorder = 5000;
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_ids
  FROM (SELECT id FROM pts ORDER BY v <-> '{0,0,0,0}' LIMIT 5000) s;
-- With every leaf probed and every row re-ranked, the exact answer.
CREATE TEMP TABLE idx_top AS SELECT array_agg(id ORDER BY d, id) AS ids
  FROM (SELECT id, v <-> '{0.6,0.8,-1,0}' AS d FROM pts ORDER BY v <-> '{0.6,0.8,-1,0}' LIMIT 20) s;
RESET enable_seqscan;
SET enable_indexscan = off;
SELECT (SELECT ids FROM idx_top) = array_agg(id ORDER BY d, id) AS exact
  FROM (SELECT id, v <-> '{0.6,0.8,-1,0}' AS d FROM pts ORDER BY v <-> '{0.6,0.8,-1,0}' LIMIT 20) s;
RESET enable_indexscan;
SET enable_seqscan = off;
RESET scann.reorder;
-- A filter that keeps a tenth of the rows: LIMIT 20 still returns 20 rows, each once.
SET scann.nprobe = 2;
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_ids, bool_and(id % 10 = 3) AS filtered
  FROM (SELECT id FROM pts WHERE id % 10 = 3 ORDER BY v <-> '{1,0,1,0}' LIMIT 20) s;
RESET scann.nprobe;

-- Inserts go to one leaf of every tree; deletes and VACUUM free all three slots of a row.
INSERT INTO pts SELECT i, ARRAY[cos(i * 0.01), sin(i * 0.01), cos(i * 0.037), sin(i * 0.05)]
  FROM generate_series(3001, 3300) i;
SELECT entries, build_rows FROM scann_index_info('pts_v');
DELETE FROM pts WHERE id % 3 = 0;
VACUUM pts;
SELECT entries, entries / 3 AS rows, (SELECT count(*) FROM pts) AS table_rows FROM scann_index_info('pts_v');
SET scann.reorder = 11;
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_ids, count(*) FILTER (WHERE id % 3 = 0) AS deleted
  FROM (SELECT id FROM pts ORDER BY v <-> '{1,0,1,0}' LIMIT 5000) s;
RESET scann.reorder;

-- A leaf size below what the sample can train is raised, with a NOTICE.
CREATE INDEX pts_small ON pts USING scann (v) WITH (variant = 'annoy', leaf_size = 5);
SELECT trees, leaf_size FROM scann_index_info('pts_small');
DROP INDEX pts_small;

-- Cosine and inner product, on rows whose norms differ: every row once.
UPDATE pts SET v = ARRAY[v[1] * (1 + id % 7), v[2] * (1 + id % 7), v[3], v[4]];
CREATE INDEX pts_cos ON pts USING scann (v cosine_ops) WITH (variant = 'annoy', trees = 2);
CREATE INDEX pts_ip ON pts USING scann (v ip_ops) WITH (variant = 'annoy', trees = 2);
SELECT metric, trees, entries / trees AS rows FROM scann_index_info('pts_cos')
UNION ALL SELECT metric, trees, entries / trees FROM scann_index_info('pts_ip');
SET scann.reorder = 13;
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_ids
  FROM (SELECT id FROM pts ORDER BY v <=> '{1,1,0,0}' LIMIT 5000) s;
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_ids
  FROM (SELECT id FROM pts ORDER BY v <#> '{1,1,0,0}' LIMIT 5000) s;
RESET scann.reorder;
-- A row of 1e20s (its squared norm overflows a float) builds, and is found.
INSERT INTO pts VALUES (100000, '{1e20,1e20,1e20,1e20}');
REINDEX INDEX pts_ip;
SELECT id FROM pts ORDER BY v <#> '{1,1,1,1}' LIMIT 1;
RESET enable_seqscan;
DROP TABLE pts;
