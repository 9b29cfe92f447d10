-- Columns of other types than real[]: the double precision[] operators and operator classes
-- (what a user types, and how PostgreSQL resolves it beside the real[] ones), bad rows and
-- queries naming what is wrong, an operator class on another type written in SQL alone (the
-- generic path: its own distance function, not pg_scann's kernels), and the validator.
SET client_min_messages = notice;

-- Two untyped literals could be real[] or double precision[] (or pgvector's types, when it is
-- installed): PostgreSQL cannot choose, and one cast settles it.
SELECT '{1,2,3}' <-> '{1,2,4}';
SELECT l2_distance('{1,2,3}', '{1,2,4}');
SELECT '{1,2,3}'::real[] <-> '{1,2,4}' AS real_l2, '{1,2,3}'::float8[] <-> '{1,2,4}' AS float8_l2,
       l2_distance('{1,2,3}'::float8[], '{1,2,4}') AS float8_fn;
-- Values are rounded to real, then computed as for real[]: the same results bit for bit.
SELECT '{0.1,0.2,0.3}'::float8[] <-> '{1,2,4}'::float8[] = '{0.1,0.2,0.3}'::real[] <-> '{1,2,4}'::real[] AS l2,
       '{0.1,0.2,0.3}'::float8[] <#> '{1,2,4}'::float8[] = '{0.1,0.2,0.3}'::real[] <#> '{1,2,4}'::real[] AS ip,
       '{0.1,0.2,0.3}'::float8[] <=> '{1,2,4}'::float8[] = '{0.1,0.2,0.3}'::real[] <=> '{1,2,4}'::real[] AS cosine,
       inner_product('{0.1,0.2}'::float8[], '{1,2}') = inner_product('{0.1,0.2}'::real[], '{1,2}') AS fn,
       '{0.1}'::float8[] <-> '{0}'::float8[] AS rounded;
-- Tiny values round to zero as real does; values beyond real's range, NaN, NULL elements and
-- other shapes are errors.
SELECT '{1e-300,1}'::float8[] <-> '{0,1}'::float8[];
SELECT '{1e300,1}'::float8[] <-> '{0,1}'::float8[];
SELECT '{1,-3.5e38}'::float8[] <#> '{0,1}'::float8[];
SELECT '{1,NaN}'::float8[] <=> '{0,1}'::float8[];
SELECT '{1,Infinity}'::float8[] <=> '{0,1}'::float8[];
SELECT '{1,NULL}'::float8[] <-> '{0,1}'::float8[];
SELECT '{{1,2}}'::float8[] <-> '{0,1}'::float8[];
SELECT '{}'::float8[] <-> '{}'::float8[];
SELECT '{1,2}'::float8[] <-> '{0,1,2}'::float8[];
\set VERBOSITY sqlstate
SELECT '{1e300,1}'::float8[] <-> '{0,1}'::float8[];
\set VERBOSITY default
SELECT scann_to_real('{1.5,-2,1e-300}'), scann_to_real('{3.4e38}');
SELECT scann_to_real('{3.5e38}');

-- A double precision[] column: its default operator class, and the index used for what a user
-- types against it (a literal, ARRAY[...] of numeric or integers, an untyped parameter).
CREATE TABLE d8 (id int PRIMARY KEY, v float8[]);
INSERT INTO d8 SELECT i, ARRAY[sin(i), cos(i * 0.7), (i % 13) / 13.0, (i % 5) / 3.0]
  FROM generate_series(1, 2000) i;
CREATE INDEX d8_v ON d8 USING scann (v) WITH (lists = 8);
SELECT metric, dims, lists, trained FROM scann_index_info('d8_v');
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM d8 ORDER BY v <-> '{0.2,0.5,0.3,0.4}' LIMIT 3;
EXPLAIN (COSTS OFF) SELECT id FROM d8 ORDER BY v <-> ARRAY[0.2, 0.5, 0.3, 0.4] LIMIT 3;
EXPLAIN (COSTS OFF) SELECT id FROM d8 ORDER BY v <-> ARRAY[1, 0, 0, 0] LIMIT 3;
PREPARE d8_knn AS SELECT id FROM d8 ORDER BY v <-> $1 LIMIT 3;
EXPLAIN (COSTS OFF) EXECUTE d8_knn('{0.2,0.5,0.3,0.4}');
EXECUTE d8_knn('{0.2,0.5,0.3,0.4}');
DEALLOCATE d8_knn;
-- A real[] column with the same literals and arrays keeps its own operator and index.
CREATE TABLE r4 (id int PRIMARY KEY, v real[]);
INSERT INTO r4 SELECT id, v::real[] FROM d8;
CREATE INDEX r4_v ON r4 USING scann (v) WITH (lists = 8);
EXPLAIN (COSTS OFF) SELECT id FROM r4 ORDER BY v <-> '{0.2,0.5,0.3,0.4}' LIMIT 3;
EXPLAIN (COSTS OFF) SELECT id FROM r4 ORDER BY v <-> ARRAY[0.2, 0.5, 0.3, 0.4] LIMIT 3;
-- A double precision[] query against a real[] column resolves to the double precision[]
-- operator (real[] casts to double precision[] implicitly, not the other way): the same
-- values, but not that index; casting the query to real[] uses it.
EXPLAIN (COSTS OFF) SELECT id FROM r4 ORDER BY v <-> '{0.2,0.5,0.3,0.4}'::float8[] LIMIT 3;
EXPLAIN (COSTS OFF) SELECT id FROM r4 ORDER BY v <-> '{0.2,0.5,0.3,0.4}'::float8[]::real[] LIMIT 3;
SELECT (SELECT array_agg(id) FROM (SELECT id FROM r4 ORDER BY v <-> '{0.2,0.5,0.3,0.4}'::float8[] LIMIT 5) s) =
       (SELECT array_agg(id) FROM (SELECT id FROM d8 ORDER BY v <-> '{0.2,0.5,0.3,0.4}' LIMIT 5) s) AS same_rows;
RESET enable_seqscan;

-- The first n rows of ORDER BY v <op> q through the index and through a sequential scan:
-- whether the distances agree in order, and whether the same rows come back.
CREATE FUNCTION same_as_seqscan(tbl regclass, op text, q anyelement, n int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE by_index float8[]; by_seq float8[]; ids_index int[]; ids_seq int[]; total bigint;
BEGIN
  SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = on;
  EXECUTE format('SELECT array_agg(d ORDER BY n), array_agg(id ORDER BY id) FROM (SELECT id, v %s $1 AS d, '
                 'row_number() OVER () AS n FROM (SELECT id, v FROM %s ORDER BY v %s $1 LIMIT %s) s) t',
                 op, tbl, op, n) INTO by_index, ids_index USING q;
  SET LOCAL enable_seqscan = on; SET LOCAL enable_indexscan = off;
  EXECUTE format('SELECT array_agg(d ORDER BY n), array_agg(id ORDER BY id) FROM (SELECT id, v %s $1 AS d, '
                 'row_number() OVER () AS n FROM (SELECT id, v FROM %s ORDER BY v %s $1, id LIMIT %s) s) t',
                 op, tbl, op, n) INTO by_seq, ids_seq USING q;
  EXECUTE format('SELECT count(*) FROM %s WHERE v IS NOT NULL', tbl) INTO total;
  RETURN CASE WHEN by_index IS DISTINCT FROM by_seq THEN 'distances differ'
              WHEN cardinality(by_index) = total AND ids_index IS DISTINCT FROM ids_seq THEN 'rows differ'
              ELSE 'same' END;
END $$;

-- Every list probed, every candidate re-ranked: the exact answer for each double precision[]
-- operator class, re-ranked from the table and from 8-bit records.
SET scann.nprobe = 100;
SET scann.reorder = 5000;
SELECT same_as_seqscan('d8', '<->', '{0.2,0.5,0.3,0.4}'::float8[], 2000) AS l2_all,
       same_as_seqscan('d8', '<->', '{3,-1,0,0}'::float8[], 10) AS l2_top10;
DROP INDEX d8_v;
CREATE INDEX d8_v ON d8 USING scann (v float8_ip_ops) WITH (lists = 8, rerank = 'sq8');
SELECT same_as_seqscan('d8', '<#>', '{0.2,0.5,0.3,0.4}'::float8[], 2000) AS ip_all,
       same_as_seqscan('d8', '<#>', '{3,-1,0,0}'::float8[], 10) AS ip_top10;
DROP INDEX d8_v;
CREATE INDEX d8_v ON d8 USING scann (v float8_cosine_ops) WITH (lists = 8);
SELECT same_as_seqscan('d8', '<=>', '{0.2,0.5,0.3,0.4}'::float8[], 2000) AS cosine_all,
       same_as_seqscan('d8', '<=>', '{3,-1,0,0}'::float8[], 10) AS cosine_top10;
-- Inserts go through the same conversion.
INSERT INTO d8 SELECT i, ARRAY[cos(i), sin(i * 0.3), (i % 7) / 7.0, (i % 3) / 2.0]
  FROM generate_series(2001, 2500) i;
SELECT same_as_seqscan('d8', '<=>', '{0.2,0.5,0.3,0.4}'::float8[], 2500) AS cosine_after_inserts;
RESET scann.nprobe;
RESET scann.reorder;

-- Bad rows name the row: an insert names the new row, a build the row's ctid, with a hint
-- that lists the rows of another length.
INSERT INTO d8 VALUES (9001, '{1e300,0,0,0}');
INSERT INTO d8 VALUES (9002, '{0,NaN,0,0}');
INSERT INTO d8 VALUES (9003, '{0,NULL,0,0}');
INSERT INTO d8 VALUES (9004, '{{0,1},{0,0}}');
INSERT INTO d8 VALUES (9005, '{0,1,0}');
-- Bad query vectors: out of range, NaN, another length.
SET enable_seqscan = off;
SELECT id FROM d8 ORDER BY v <=> '{1e300,0,0,0}' LIMIT 1;
SELECT id FROM d8 ORDER BY v <=> '{NaN,0,0,0}' LIMIT 1;
SELECT id FROM d8 ORDER BY v <=> '{1,0,0}' LIMIT 1;
-- A NULL query reaches the index only through a sub-select: rows in no particular order.
SELECT count(*) FROM (SELECT id FROM d8 ORDER BY v <=> (SELECT NULL::float8[]) LIMIT 5) s;
RESET enable_seqscan;
DROP INDEX d8_v;
INSERT INTO d8 VALUES (9001, '{1e300,0,0,0}');
CREATE INDEX d8_v ON d8 USING scann (v float8_l2_ops);
DELETE FROM d8 WHERE id = 9001;
INSERT INTO d8 VALUES (9005, '{0,1,0}');
CREATE INDEX d8_v ON d8 USING scann (v float8_l2_ops);
DROP TABLE d8, r4;

-- An operator class on another type written in SQL alone: integer[] counts, whose distance the
-- operator computes in its own arithmetic (double precision), so the index re-ranks with that
-- function, or gives lower bounds for the executor to recheck with it (rerank = 'sq8'); either
-- way the ORDER BY values are the operator's own.
CREATE FUNCTION counts_l2(integer[], integer[]) RETURNS float8
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT sqrt(sum((a::float8 - b) ^ 2)) FROM unnest($1, $2) u(a, b) $$;
CREATE FUNCTION counts_neg_dot(integer[], integer[]) RETURNS float8
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT -sum(a::float8 * b) FROM unnest($1, $2) u(a, b) $$;
CREATE FUNCTION counts_to_real(integer[]) RETURNS real[]
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT $1::real[] $$;
CREATE OPERATOR <<->> (LEFTARG = integer[], RIGHTARG = integer[], FUNCTION = counts_l2, COMMUTATOR = <<->>);
CREATE OPERATOR <<#>> (LEFTARG = integer[], RIGHTARG = integer[], FUNCTION = counts_neg_dot, COMMUTATOR = <<#>>);
CREATE OPERATOR CLASS counts_l2_ops FOR TYPE integer[] USING scann AS
  OPERATOR 1 <<->> (integer[], integer[]) FOR ORDER BY float_ops,
  FUNCTION 1 scann_l2_metric(),
  FUNCTION 2 counts_to_real(integer[]);
CREATE OPERATOR CLASS counts_ip_ops FOR TYPE integer[] USING scann AS
  OPERATOR 1 <<#>> (integer[], integer[]) FOR ORDER BY float_ops,
  FUNCTION 1 scann_ip_metric(),
  FUNCTION 2 counts_to_real(integer[]);
SELECT opcname, amvalidate(oid) FROM pg_opclass WHERE opcname LIKE 'counts%' ORDER BY 1;
CREATE TABLE counts (id int PRIMARY KEY, v integer[]);
INSERT INTO counts SELECT i, ARRAY[(i * 7919) % 251, (i * 104729) % 241, i % 17, (i * 31) % 199, 3000 + i % 7]
  FROM generate_series(1, 2000) i;
SET scann.nprobe = 100;
SET scann.reorder = 5000;
CREATE INDEX counts_v ON counts USING scann (v counts_l2_ops) WITH (lists = 8);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM counts ORDER BY v <<->> '{1,2,3,4,5}' LIMIT 3;
RESET enable_seqscan;
SELECT same_as_seqscan('counts', '<<->>', '{10,20,3,40,3005}'::integer[], 2000) AS l2_all,
       same_as_seqscan('counts', '<<->>', '{10,20,3,40,3005}'::integer[], 10) AS l2_top10;
DROP INDEX counts_v;
CREATE INDEX counts_v ON counts USING scann (v counts_l2_ops) WITH (lists = 8, rerank = 'sq8');
SELECT same_as_seqscan('counts', '<<->>', '{10,20,3,40,3005}'::integer[], 2000) AS l2_records_all,
       same_as_seqscan('counts', '<<->>', '{10,20,3,40,3005}'::integer[], 10) AS l2_records_top10;
DROP INDEX counts_v;
CREATE INDEX counts_v ON counts USING scann (v counts_ip_ops) WITH (lists = 8, rerank = 'sq8');
SELECT same_as_seqscan('counts', '<<#>>', '{10,20,3,40,3005}'::integer[], 2000) AS ip_records_all,
       same_as_seqscan('counts', '<<#>>', '{-1,2,-3,4,1}'::integer[], 10) AS ip_records_top10;
-- A row of another length: the hint's query reads the type through its cast to real[].
INSERT INTO counts VALUES (0, '{1,2,3}');
DROP INDEX counts_v;
INSERT INTO counts VALUES (0, '{1,2,3}');
CREATE INDEX counts_v ON counts USING scann (v counts_l2_ops);
DROP TABLE counts;
RESET scann.nprobe;
RESET scann.reorder;

-- The validator checks the shape: support function 1 names a known metric, support function
-- 2 converts a type other than real[] (and only such a type) to real[], one ordering operator
-- on the type, and pg_scann's own operators with the metric they compute.
CREATE FUNCTION hamming_metric() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'hamming' $$;
CREATE FUNCTION metric_of(integer[]) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'l2' $$;
CREATE FUNCTION counts_to_float8(integer[]) RETURNS float8[] LANGUAGE sql IMMUTABLE AS $$ SELECT $1::float8[] $$;
CREATE FUNCTION real_identity(real[]) RETURNS real[] LANGUAGE sql IMMUTABLE AS $$ SELECT $1 $$;
CREATE OPERATOR CLASS bad_no_metric FOR TYPE integer[] USING scann AS
  OPERATOR 1 <<->> (integer[], integer[]) FOR ORDER BY float_ops,
  FUNCTION 2 counts_to_real(integer[]);
CREATE OPERATOR CLASS bad_unknown_metric FOR TYPE integer[] USING scann AS
  OPERATOR 1 <<->> (integer[], integer[]) FOR ORDER BY float_ops,
  FUNCTION 1 hamming_metric(), FUNCTION 2 counts_to_real(integer[]);
CREATE OPERATOR CLASS bad_metric_signature FOR TYPE integer[] USING scann AS
  OPERATOR 1 <<->> (integer[], integer[]) FOR ORDER BY float_ops,
  FUNCTION 1 metric_of(integer[]), FUNCTION 2 counts_to_real(integer[]);
CREATE OPERATOR CLASS bad_no_conversion FOR TYPE integer[] USING scann AS
  OPERATOR 1 <<->> (integer[], integer[]) FOR ORDER BY float_ops,
  FUNCTION 1 scann_l2_metric();
CREATE OPERATOR CLASS bad_conversion FOR TYPE integer[] USING scann AS
  OPERATOR 1 <<->> (integer[], integer[]) FOR ORDER BY float_ops,
  FUNCTION 1 scann_l2_metric(), FUNCTION 2 counts_to_float8(integer[]);
CREATE OPERATOR CLASS bad_real_conversion FOR TYPE real[] USING scann AS
  OPERATOR 1 <-> (real[], real[]) FOR ORDER BY float_ops,
  FUNCTION 1 scann_l2_metric(), FUNCTION 2 real_identity(real[]);
CREATE OPERATOR CLASS bad_search_operator FOR TYPE integer[] USING scann AS
  OPERATOR 1 = (anyarray, anyarray),
  FUNCTION 1 scann_l2_metric(), FUNCTION 2 counts_to_real(integer[]);
CREATE OPERATOR CLASS bad_kernel_metric FOR TYPE real[] USING scann AS
  OPERATOR 1 <-> (real[], real[]) FOR ORDER BY float_ops,
  FUNCTION 1 scann_cosine_metric();
SELECT opcname, amvalidate(oid) FROM pg_opclass WHERE opcname LIKE 'bad%' ORDER BY 1;
-- An index cannot be built with a class that names no metric, or an unknown one.
CREATE TABLE c (v integer[]);
CREATE INDEX ON c USING scann (v bad_unknown_metric);
CREATE INDEX ON c USING scann (v bad_no_metric);
DROP TABLE c;
DROP OPERATOR FAMILY bad_no_metric USING scann;
DROP OPERATOR FAMILY bad_unknown_metric USING scann;
DROP OPERATOR FAMILY bad_metric_signature USING scann;
DROP OPERATOR FAMILY bad_no_conversion USING scann;
DROP OPERATOR FAMILY bad_conversion USING scann;
DROP OPERATOR FAMILY bad_real_conversion USING scann;
DROP OPERATOR FAMILY bad_search_operator USING scann;
DROP OPERATOR FAMILY bad_kernel_metric USING scann;
