-- The demo's SQL: load, build, query, compare with exact.  Variables: set (data set
-- directory), nq (number of queries).
\pset footer off
CREATE EXTENSION pg_scann;
CREATE TABLE items (id bigint PRIMARY KEY, embedding real[]);
CREATE TABLE queries (id bigint PRIMARY KEY, embedding real[]);
\echo == loading 60,000 Fashion-MNIST images (784-d) and the held-out queries
\set base_file :set '/base.tsv'
\set query_file :set '/queries.tsv'
COPY items FROM :'base_file';
\set query_cmd 'head -n ' :nq ' ' :query_file
COPY queries FROM PROGRAM :'query_cmd';
VACUUM ANALYZE items;

\echo == building the scann index (l2_ops, defaults)
\timing on
CREATE INDEX items_embedding_idx ON items USING scann (embedding l2_ops);
\timing off
SELECT pg_size_pretty(pg_relation_size('items_embedding_idx')) AS index_size,
       pg_size_pretty(pg_table_size('items')) AS table_size;

\echo == the plan of a k-NN query
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY embedding <-> (SELECT embedding FROM queries WHERE id = 0) LIMIT 10;

\echo == neighbours of query 0: scann, then exact
SELECT id, round((items.embedding <-> q.embedding)::numeric, 1) AS distance
  FROM items, (SELECT embedding FROM queries WHERE id = 0) q
 ORDER BY items.embedding <-> q.embedding LIMIT 5;
SET enable_indexscan = off;
SELECT id, round((items.embedding <-> q.embedding)::numeric, 1) AS distance
  FROM items, (SELECT embedding FROM queries WHERE id = 0) q
 ORDER BY items.embedding <-> q.embedding LIMIT 5;
RESET enable_indexscan;

\echo == recall@10 and time over the queries, scann (scann.nprobe, scann.reorder) vs exact
CREATE FUNCTION knn_run(use_index boolean, OUT qid bigint, OUT ids bigint[], OUT kth float8)
RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE q record;
BEGIN
  EXECUTE format('SET LOCAL enable_indexscan = %s', use_index);
  EXECUTE format('SET LOCAL enable_seqscan = %s', NOT use_index);
  FOR q IN SELECT id, embedding FROM queries ORDER BY id LOOP
    qid := q.id;
    -- Dynamic SQL: planned per call, under this call's settings (a cached plan would not be).
    EXECUTE 'SELECT array_agg(id), max(d) FROM (SELECT id, embedding <-> $1 AS d FROM items '
            'ORDER BY embedding <-> $1 LIMIT 10) s' INTO ids, kth USING q.embedding;
    RETURN NEXT;
  END LOOP;
END $$;
CREATE TEMP TABLE timing (system text, seconds float8);
CREATE TEMP TABLE exact AS SELECT * FROM knn_run(false) LIMIT 0;
DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN
  INSERT INTO exact SELECT * FROM knn_run(false);
  INSERT INTO timing VALUES ('exact', extract(epoch FROM clock_timestamp() - t0)); END $$;
CREATE TEMP TABLE approx AS SELECT * FROM knn_run(true) LIMIT 0;
DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN
  INSERT INTO approx SELECT * FROM knn_run(true);
  INSERT INTO timing VALUES ('scann', extract(epoch FROM clock_timestamp() - t0)); END $$;
-- Fashion-MNIST has duplicate images: a returned row counts as a hit when its distance is
-- within the exact 10th distance.
WITH hits AS (
  SELECT a.qid, (SELECT count(*) FROM unnest(a.ids) r(id) JOIN items i ON i.id = r.id
                  JOIN queries q ON q.id = a.qid
                 WHERE (i.embedding <-> q.embedding) <= e.kth + 1e-6) AS hit
    FROM approx a JOIN exact e USING (qid))
SELECT current_setting('scann.nprobe') AS nprobe, current_setting('scann.reorder') AS reorder,
       (SELECT count(*) FROM queries) AS queries,
       round(avg(hit) / 10.0, 4) AS "recall@10",
       round((SELECT count(*) FROM queries) / (SELECT seconds FROM timing WHERE system = 'scann'))::int AS "scann q/s",
       round((SELECT count(*) FROM queries) / (SELECT seconds FROM timing WHERE system = 'exact'))::int AS "exact q/s",
       round(((SELECT seconds FROM timing WHERE system = 'exact') /
              (SELECT seconds FROM timing WHERE system = 'scann'))::numeric, 1) AS speedup
  FROM hits;
