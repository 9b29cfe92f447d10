-- Scans never lose or repeat a row: candidates tied with a batch's cut-off, many dead
-- entries, small scann.reorder, all three operator classes; one huge row or an extreme
-- query; builds on degenerate options; scann_index_info's errors.
SET client_min_messages = notice;

-- 3,000 rows over 10 distinct vectors (every row ties with 299 others), a third of them
-- updated (dead entries until VACUUM).
CREATE TABLE tie (id int PRIMARY KEY, g int, v real[]) WITH (fillfactor = 50, autovacuum_enabled = off);
INSERT INTO tie SELECT i, i % 10, ARRAY[i % 10, (i % 10) * 0.5, 1, 2, 3, 4, 5, (i % 10) * 0.25]
  FROM generate_series(1, 3000) i;

-- For each reorder: rows and distinct rows of a full ordered scan, and rows of a filtered one.
CREATE FUNCTION tie_scan(op text, reorders int[]) RETURNS TABLE (reorder int, rows bigint, ids bigint, filtered bigint)
LANGUAGE plpgsql AS $$
BEGIN
  SET LOCAL enable_seqscan = off;
  FOREACH reorder IN ARRAY reorders LOOP
    PERFORM set_config('scann.reorder', reorder::text, true);
    EXECUTE format('SELECT count(*), count(DISTINCT id) FROM (SELECT id FROM tie ORDER BY v %s %L) s',
                   op, '{0,0,1,2,3,4,5,0}') INTO rows, ids;
    EXECUTE format('SELECT count(*) FROM (SELECT id FROM tie WHERE g = 2 ORDER BY v %s %L LIMIT 1000) s',
                   op, '{0,0,1,2,3,4,5,0}') INTO filtered;
    RETURN NEXT;
  END LOOP;
END $$;

CREATE INDEX tie_v ON tie USING scann (v l2_ops) WITH (lists = 1);
UPDATE tie SET g = (g + 1) % 10,
  v = ARRAY[(g + 1) % 10, ((g + 1) % 10) * 0.5, 1, 2, 3, 4, 5, ((g + 1) % 10) * 0.25] WHERE id % 3 = 0;
SELECT * FROM tie_scan('<->', '{1,7,100,5000}');
DROP INDEX tie_v;
CREATE INDEX tie_v ON tie USING scann (v ip_ops) WITH (lists = 1);
UPDATE tie SET v = v WHERE id % 3 = 1;
SELECT * FROM tie_scan('<#>', '{1,7,100,5000}');
DROP INDEX tie_v;
CREATE INDEX tie_v ON tie USING scann (v cosine_ops) WITH (lists = 4);
UPDATE tie SET v = v WHERE id % 3 = 2;
SELECT * FROM tie_scan('<=>', '{1,7,100,5000}');
VACUUM tie;
SELECT * FROM tie_scan('<=>', '{3,100}');

-- One huge but finite row among ordinary ones: every row stays reachable, and a query that
-- probes every list returns what a sequential scan returns.
SELECT setseed(0.25);
CREATE TABLE big_row (id int PRIMARY KEY, v real[]);
INSERT INTO big_row SELECT i, ARRAY[random(), random(), random(), random()] FROM generate_series(1, 2000) i;
INSERT INTO big_row VALUES (0, '{1e20,1e20,1e20,0}');
CREATE INDEX big_row_v ON big_row USING scann (v) WITH (lists = 10);
CREATE FUNCTION top_ids(tbl regclass, op text, q real[], k int, use_index boolean) RETURNS int[]
LANGUAGE plpgsql AS $$
DECLARE ids int[];
BEGIN
  PERFORM set_config('enable_seqscan', CASE WHEN use_index THEN 'off' ELSE 'on' END, true);
  PERFORM set_config('enable_indexscan', CASE WHEN use_index THEN 'on' ELSE 'off' END, true);
  EXECUTE format('SELECT array_agg(id) FROM (SELECT id FROM %s ORDER BY v %s $1, id LIMIT %s) s', tbl, op, k)
    INTO ids USING q;
  RETURN ids;
END $$;
SET scann.nprobe = 10;
SET scann.reorder = 10000;
SELECT top_ids('big_row', '<->', '{0.5,0.5,0.5,0.5}', 10, true) = top_ids('big_row', '<->', '{0.5,0.5,0.5,0.5}', 10, false) AS same,
       array_length(top_ids('big_row', '<->', '{0.5,0.5,0.5,0.5}', 10, true), 1) AS rows;
SELECT (top_ids('big_row', '<->', '{1e20,1e20,1e20,0}', 3, true))[1] AS nearest_to_the_huge_row;
-- At ordinary settings the huge row does not blur the others' codes.
SET scann.nprobe = 3;
SET scann.reorder = 30;
SELECT cardinality(ARRAY(SELECT unnest(top_ids('big_row', '<->', '{0.5,0.5,0.5,0.5}', 10, true))
  INTERSECT SELECT unnest(top_ids('big_row', '<->', '{0.5,0.5,0.5,0.5}', 10, false)))) >= 8 AS recall_holds;

-- Extreme inner-product queries (their float tables overflow): every row comes back, in the
-- order of an exact scan (distances compared, since they overflow to infinity alike).
CREATE TABLE ipx (id int PRIMARY KEY, v real[]);
INSERT INTO ipx SELECT i, ARRAY[random(), random(), random(), random()] FROM generate_series(1, 3000) i;
CREATE INDEX ipx_v ON ipx USING scann (v ip_ops) WITH (lists = 10);
SET scann.nprobe = 10;
SET scann.reorder = 10000;
SET enable_seqscan = off;
SELECT q, count(*), count(DISTINCT id) FROM (VALUES ('{1e38,1e38,1e38,1e38}'::real[]),
    ('{-3e38,-3e38,-3e38,-3e38}'), ('{3e38,-3e38,1,0}')) qs(q),
  LATERAL (SELECT id FROM ipx ORDER BY v <#> q) s GROUP BY q ORDER BY q;
CREATE FUNCTION top_dist(q real[], use_index boolean) RETURNS float8[] LANGUAGE plpgsql AS $$
DECLARE d float8[];
BEGIN
  PERFORM set_config('enable_seqscan', CASE WHEN use_index THEN 'off' ELSE 'on' END, true);
  PERFORM set_config('enable_indexscan', CASE WHEN use_index THEN 'on' ELSE 'off' END, true);
  SELECT array_agg(x) INTO d FROM (SELECT v <#> q AS x FROM ipx ORDER BY v <#> q LIMIT 20) s;
  RETURN d;
END $$;
SELECT q, top_dist(q, true) = top_dist(q, false) AS same FROM (VALUES ('{1e38,1e38,1e38,1e38}'::real[]),
    ('{-3e38,-3e38,-3e38,-3e38}'), ('{3e38,-3e38,1,0}')) qs(q) ORDER BY q;
RESET enable_seqscan;

-- ip_ops on rows near 1e20: the threshold scaled by their median norm stays a float.
CREATE TABLE huge_ip (id int, v real[]);
INSERT INTO huge_ip SELECT i, ARRAY[1e20 * random(), 1e20 * random(), 1e20] FROM generate_series(1, 500) i;
CREATE INDEX huge_ip_v ON huge_ip USING scann (v ip_ops) WITH (lists = 4);
SELECT trained, lists FROM scann_index_info('huge_ip_v');

-- Degenerate build options get a NOTICE that says what was used and why.
CREATE TABLE opts (id int, v real[]);
INSERT INTO opts SELECT i, ARRAY[cos(i * 0.01), sin(i * 0.01), (i % 13)::real / 13] FROM generate_series(1, 3000) i;
CREATE INDEX opts_many ON opts USING scann (v) WITH (lists = 200000);
SELECT lists, sample_rows FROM scann_index_info('opts_many');
CREATE INDEX opts_sample ON opts USING scann (v) WITH (sample = 1);
SELECT trained, lists, sample_rows FROM scann_index_info('opts_sample');
CREATE TABLE wide (id int, v real[]);
INSERT INTO wide SELECT i, array_fill((i % 17)::real, ARRAY[2000]) FROM generate_series(1, 300) i;
SET maintenance_work_mem = '1MB';
CREATE INDEX wide_v ON wide USING scann (v);
RESET maintenance_work_mem;
SELECT trained, lists, sample_rows FROM scann_index_info('wide_v');

-- scann_index_info: user-class errors, with their SQLSTATEs.
\set VERBOSITY sqlstate
SELECT * FROM scann_index_info(999999);
SELECT * FROM scann_index_info('opts');
UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'opts_many'::regclass;
SELECT * FROM scann_index_info('opts_many');
\set VERBOSITY default
SELECT * FROM scann_index_info('opts_many');
UPDATE pg_index SET indisvalid = true WHERE indexrelid = 'opts_many'::regclass;

-- A database whose scann_index_info was declared by an older script than the library's (the
-- library installed over it) gets an error, not a backend crash from rows of the wrong shape.
CREATE FUNCTION old_index_info(index regclass, OUT trained boolean, OUT metric text,
    OUT dims integer) AS 'pg_scann', 'scann_index_info' LANGUAGE C STRICT;
SELECT * FROM old_index_info('opts_many');
DROP FUNCTION old_index_info;

RESET scann.nprobe;
RESET scann.reorder;
DROP TABLE tie, big_row, ipx, huge_ip, opts, wide;
DROP FUNCTION tie_scan, top_ids, top_dist;
