-- Re-ranking from 8-bit records in the index (rerank = 'sq8'): a batch goes to the executor
-- ordered by lower bounds of the exact distances, which it rechecks on the rows it returns,
-- so results and ORDER BY values equal a sequential scan's; rows stored exactly by their codes
-- (integers) skip the recheck.  Records follow inserts, VACUUM and slot reuse.
SET client_min_messages = notice;

CREATE TABLE rr (id int PRIMARY KEY, g int, v real[]);
INSERT INTO rr SELECT i, i % 7, ARRAY[sin(i), cos(i * 0.7), (i % 13) / 13.0, (i % 5)::real / 3]
  FROM generate_series(1, 2000) i;

-- The first n rows of ORDER BY v <op> q through the index and through a sequential scan:
-- whether the distances agree in order, and whether the same rows come back.
CREATE FUNCTION same_as_seqscan(tbl regclass, op text, q real[], n int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE by_index float8[]; by_seq float8[]; ids_index int[]; ids_seq int[];
BEGIN
  SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = on;
  EXECUTE format('SELECT array_agg(d ORDER BY n), array_agg(id ORDER BY id) FROM (SELECT id, v %s $1 AS d, '
                 'row_number() OVER () AS n FROM (SELECT id, v FROM %s ORDER BY v %s $1 LIMIT %s) s) t',
                 op, tbl, op, n) INTO by_index, ids_index USING q;
  SET LOCAL enable_seqscan = on; SET LOCAL enable_indexscan = off;
  EXECUTE format('SELECT array_agg(d ORDER BY n), array_agg(id ORDER BY id) FROM (SELECT id, v %s $1 AS d, '
                 'row_number() OVER () AS n FROM (SELECT id, v FROM %s ORDER BY v %s $1, id LIMIT %s) s) t',
                 op, tbl, op, n) INTO by_seq, ids_seq USING q;
  RETURN CASE WHEN by_index IS DISTINCT FROM by_seq THEN 'distances differ'
              WHEN cardinality(by_index) = (SELECT count(*) FROM rr) AND ids_index IS DISTINCT FROM ids_seq THEN 'rows differ'
              ELSE 'same' END;
END $$;

-- Every list probed, every candidate re-ranked: the exact answer, for each operator class.
SET scann.nprobe = 100;
SET scann.reorder = 5000;
CREATE INDEX rr_v ON rr USING scann (v l2_ops) WITH (rerank = 'sq8', lists = 8);
SELECT same_as_seqscan('rr', '<->', '{0.2,0.5,0.3,0.4}', 2000) AS l2_all, same_as_seqscan('rr', '<->', '{3,-1,0,0}', 10) AS l2_top10;
DROP INDEX rr_v;
CREATE INDEX rr_v ON rr USING scann (v ip_ops) WITH (rerank = 'sq8', lists = 8);
SELECT same_as_seqscan('rr', '<#>', '{0.2,0.5,0.3,0.4}', 2000) AS ip_all, same_as_seqscan('rr', '<#>', '{3,-1,0,0}', 10) AS ip_top10;
DROP INDEX rr_v;
CREATE INDEX rr_v ON rr USING scann (v cosine_ops) WITH (rerank = 'sq8', lists = 8);
SELECT same_as_seqscan('rr', '<=>', '{0.2,0.5,0.3,0.4}', 2000) AS cosine_all, same_as_seqscan('rr', '<=>', '{3,-1,0,0}', 10) AS cosine_top10;

-- Small batches: every row once; a filtered query gets its LIMIT rows; scann.reorder = 0
-- returns the codes' order without re-ranking.
SET enable_seqscan = off;
SET scann.reorder = 3;
SELECT count(*), count(DISTINCT id) FROM (SELECT id FROM rr ORDER BY v <=> '{0.2,0.5,0.3,0.4}') s;
SELECT count(*) FROM (SELECT id FROM rr WHERE g = 3 ORDER BY v <=> '{0.2,0.5,0.3,0.4}' LIMIT 100) s;
SET scann.reorder = 0;
SELECT count(*), count(DISTINCT id) FROM (SELECT id FROM rr ORDER BY v <=> '{0.2,0.5,0.3,0.4}') s;
RESET enable_seqscan;

-- Inserts write their rows' records (new blocks, runs continuing on a shared page and on new
-- pages), deletes and VACUUM free slots, and reinserts reuse them with their records.
DROP INDEX rr_v;
CREATE INDEX rr_v ON rr USING scann (v l2_ops) WITH (rerank = 'sq8', lists = 4);
INSERT INTO rr SELECT i, i % 7, ARRAY[sin(i), cos(i * 0.7), (i % 13) / 13.0, (i % 5)::real / 3]
  FROM generate_series(2001, 2600) i;
SET scann.reorder = 5000;
SELECT same_as_seqscan('rr', '<->', '{0.2,0.5,0.3,0.4}', 2600) AS after_inserts;
DELETE FROM rr WHERE id % 3 = 0;
VACUUM rr;
INSERT INTO rr SELECT i, i % 7, ARRAY[cos(i), sin(i * 0.3), 1, 0] FROM generate_series(3000, 3500) i;
SELECT same_as_seqscan('rr', '<->', '{0.2,0.5,0.3,0.4}', 5000) AS after_vacuum_and_reuse,
       (SELECT count(*) FROM rr) AS rows;

-- Integer rows are stored exactly by their codes: the same answers, without rechecks.
CREATE TABLE ri (id int PRIMARY KEY, v real[]);
INSERT INTO ri SELECT i, ARRAY[i % 17, (i * 7) % 23, (i * 3) % 11, 200] FROM generate_series(1, 1500) i;
CREATE INDEX ri_v ON ri USING scann (v l2_ops) WITH (rerank = 'sq8', lists = 4);
CREATE FUNCTION ri_same(q real[]) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE a float8[]; b float8[];
BEGIN
  SET LOCAL enable_seqscan = off;
  SELECT array_agg(v <-> q) INTO a FROM (SELECT v FROM ri ORDER BY v <-> q LIMIT 50) s;
  SET LOCAL enable_seqscan = on; SET LOCAL enable_indexscan = off;
  SELECT array_agg(v <-> q) INTO b FROM (SELECT v FROM ri ORDER BY v <-> q LIMIT 50) s;
  RETURN a = b;
END $$;
SELECT ri_same('{3,4,5,200}'), ri_same('{16.5,0,10,199}');

-- Options: what rerank accepts, and rows too wide for a record.
CREATE INDEX rr_bad ON rr USING scann (v) WITH (rerank = 'exact');
CREATE TABLE too_wide (v real[]);
INSERT INTO too_wide SELECT array_fill(i::real, ARRAY[8200]) FROM generate_series(1, 3) i;
CREATE INDEX too_wide_v ON too_wide USING scann (v) WITH (rerank = 'sq8');
CREATE INDEX too_wide_v ON too_wide USING scann (v);
DROP TABLE too_wide;

RESET scann.nprobe;
RESET scann.reorder;
DROP TABLE rr, ri;
DROP FUNCTION same_as_seqscan, ri_same;
