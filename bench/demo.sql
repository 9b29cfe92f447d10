-- The demo's SQL: load (once), build, query, compare with exact.  Variables: set (data set
-- directory), nq (number of queries).  Its objects are fashion_mnist, fashion_mnist_queries
-- and the index fashion_mnist_embedding_idx; a rerun keeps the loaded rows, reloads the
-- queries, rebuilds the index, and touches nothing else.
\pset footer off
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_scann;
CREATE TABLE IF NOT EXISTS fashion_mnist_queries (id bigint PRIMARY KEY, embedding real[]);
RESET client_min_messages;
SELECT to_regclass('fashion_mnist') IS NULL AS need_load \gset
\set base_file :set '/base.tsv'
\set query_file :set '/queries.tsv'
\if :need_load
\echo == loading 60,000 Fashion-MNIST images (784-d): COPY, then VACUUM ANALYZE, each timed
-- One transaction: an interrupted load leaves no half-filled table for the next run to reuse.
BEGIN;
CREATE TABLE fashion_mnist (id bigint PRIMARY KEY, embedding real[]);
\timing on
COPY fashion_mnist FROM :'base_file';
\timing off
COMMIT;
\timing on
VACUUM ANALYZE fashion_mnist;
\timing off
\else
SELECT to_char(count(*), 'FM999,999,999') AS rows FROM fashion_mnist \gset
\echo == reusing table fashion_mnist (:rows rows) loaded by an earlier run
\endif
\echo == loading the first :nq held-out queries into fashion_mnist_queries
TRUNCATE fashion_mnist_queries;
\set query_cmd 'head -n ' :nq ' ' :query_file
COPY fashion_mnist_queries FROM PROGRAM :'query_cmd';

\echo == building the scann index (l2_ops, defaults; the demo rebuilds it on every run)
SET client_min_messages = warning;
DROP INDEX IF EXISTS fashion_mnist_embedding_idx;
RESET client_min_messages;
\timing on
CREATE INDEX fashion_mnist_embedding_idx ON fashion_mnist USING scann (embedding l2_ops);
\timing off
SELECT pg_size_pretty(pg_relation_size('fashion_mnist_embedding_idx')) AS index_size,
       pg_size_pretty(pg_table_size('fashion_mnist')) AS table_size;

\echo == the recall the build measured per number of lists searched (scann.nprobe picks from it)
SELECT lists, calibration_knob AS nprobe, calibration_recall AS "recall@10"
  FROM scann_index_info('fashion_mnist_embedding_idx');

\echo == the plan of a k-NN query
EXPLAIN (COSTS OFF) SELECT id FROM fashion_mnist
 ORDER BY embedding <-> (SELECT embedding FROM fashion_mnist_queries WHERE id = 0) LIMIT 10;

\echo == neighbours of query 0: scann, then exact
SELECT id, round((f.embedding <-> q.embedding)::numeric, 1) AS distance
  FROM fashion_mnist f, (SELECT embedding FROM fashion_mnist_queries WHERE id = 0) q
 ORDER BY f.embedding <-> q.embedding LIMIT 5;
SET enable_indexscan = off;
SELECT id, round((f.embedding <-> q.embedding)::numeric, 1) AS distance
  FROM fashion_mnist f, (SELECT embedding FROM fashion_mnist_queries WHERE id = 0) q
 ORDER BY f.embedding <-> q.embedding LIMIT 5;
RESET enable_indexscan;

\echo == recall@10 and time over the queries: exact scans first (a few seconds per 10), then scann
-- A session's own function (pg_temp): nothing is left behind in the database.
CREATE FUNCTION pg_temp.knn_run(use_index boolean, OUT qid bigint, OUT ids bigint[], OUT kth float8)
RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE
  q record;
  done int := 0;
  total int := (SELECT count(*) FROM fashion_mnist_queries);
  started timestamptz := clock_timestamp();
  shown timestamptz := clock_timestamp();
BEGIN
  EXECUTE format('SET LOCAL enable_indexscan = %s', use_index);
  EXECUTE format('SET LOCAL enable_seqscan = %s', NOT use_index);
  FOR q IN SELECT id, embedding FROM fashion_mnist_queries ORDER BY id LOOP
    qid := q.id;
    -- Dynamic SQL: planned per call, under this call's settings (a cached plan would not be).
    EXECUTE 'SELECT array_agg(id), max(d) FROM (SELECT id, embedding <-> $1 AS d FROM fashion_mnist '
            'ORDER BY embedding <-> $1 LIMIT 10) s' INTO ids, kth USING q.embedding;
    RETURN NEXT;
    done := done + 1;
    -- Progress of the slow (exact) pass, every few seconds.
    IF clock_timestamp() - shown > interval '3 s' AND done < total THEN
      RAISE NOTICE '% scan: %/% queries, % s', CASE WHEN use_index THEN 'scann' ELSE 'exact' END,
        done, total, round(extract(epoch FROM clock_timestamp() - started));
      shown := clock_timestamp();
    END IF;
  END LOOP;
END $$;
CREATE TEMP TABLE timing (system text, seconds float8);
CREATE TEMP TABLE exact AS SELECT * FROM pg_temp.knn_run(false) LIMIT 0;
DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN
  INSERT INTO exact SELECT * FROM pg_temp.knn_run(false);
  INSERT INTO timing VALUES ('exact', extract(epoch FROM clock_timestamp() - t0)); END $$;
CREATE TEMP TABLE approx AS SELECT * FROM pg_temp.knn_run(true) LIMIT 0;
DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN
  INSERT INTO approx SELECT * FROM pg_temp.knn_run(true);
  INSERT INTO timing VALUES ('scann', extract(epoch FROM clock_timestamp() - t0)); END $$;
-- Fashion-MNIST has duplicate images: a returned row counts as a hit when its distance is
-- within the exact 10th distance.
WITH hits AS (
  SELECT a.qid, (SELECT count(*) FROM unnest(a.ids) r(id) JOIN fashion_mnist i ON i.id = r.id
                  JOIN fashion_mnist_queries q ON q.id = a.qid
                 WHERE (i.embedding <-> q.embedding) <= e.kth + 1e-6) AS hit
    FROM approx a JOIN exact e USING (qid))
SELECT current_setting('scann.target_recall') AS target_recall,
       current_setting('scann.reorder') AS reorder,
       (SELECT count(*) FROM fashion_mnist_queries) AS queries,
       round(avg(hit) / 10.0, 4) AS "recall@10",
       round((SELECT count(*) FROM fashion_mnist_queries) / (SELECT seconds FROM timing WHERE system = 'scann'))::int AS "scann q/s",
       round((SELECT count(*) FROM fashion_mnist_queries) / (SELECT seconds FROM timing WHERE system = 'exact'))::int AS "exact q/s",
       round(((SELECT seconds FROM timing WHERE system = 'exact') /
              (SELECT seconds FROM timing WHERE system = 'scann'))::numeric, 1) AS speedup
  FROM hits;
