-- Distance functions and operators on real[]: hand-checked values, every bad-input error,
-- and use in ORDER BY ... LIMIT with a sequential scan.
CREATE EXTENSION pg_scann;

-- Hand-checked values (one argument typed: two untyped literals could be double precision[]
-- as well, see scann_types): (1,2,3) vs (4,6,3): difference (3,4,0) -> L2 5, squared 25;
-- dot 4 + 12 + 9 = 25.
SELECT l2_distance('{1,2,3}'::real[], '{4,6,3}');
SELECT l2_squared_distance('{1,2,3}'::real[], '{4,6,3}');
SELECT inner_product('{1,2,3}'::real[], '{4,6,3}');
SELECT negative_inner_product('{1,2,3}'::real[], '{4,6,3}');
SELECT '{1,2,3}'::real[] <-> '{4,6,3}'::real[] AS l2,
       '{1,2,3}'::real[] <#> '{4,6,3}'::real[] AS neg_ip,
       '{1,0}'::real[] <=> '{0,1}'::real[] AS orthogonal,
       '{1,1}'::real[] <=> '{2,2}'::real[] AS parallel,
       '{1,0}'::real[] <=> '{-1,0}'::real[] AS opposite;
-- cos((3,4), (4,3)) = 24/25, so the distance is 0.04.
SELECT round(cosine_distance('{3,4}'::real[], '{4,3}')::numeric, 6);
-- Operators are commutative and declared so.
SELECT '{4,6,3}'::real[] <-> '{1,2,3}'::real[] = '{1,2,3}'::real[] <-> '{4,6,3}'::real[];
SELECT oprname, oprcom::regoperator FROM pg_operator
 WHERE oprleft = 'real[]'::regtype AND oprname IN ('<->', '<#>', '<=>') ORDER BY 1;
-- Functions are IMMUTABLE, STRICT and PARALLEL SAFE.
SELECT proname, provolatile, proisstrict, proparallel FROM pg_proc
 WHERE proname IN ('l2_distance', 'l2_squared_distance', 'inner_product',
                   'negative_inner_product', 'cosine_distance')
   AND proargtypes[0] = 'real[]'::regtype ORDER BY 1;
-- Arrays with a lower bound other than 1 are read by position.
SELECT '[0:2]={1,2,3}'::real[] <-> '{4,6,3}'::real[];
-- A length that is not a multiple of the SIMD width, and a long vector.
SELECT l2_squared_distance(array_fill(1::real, ARRAY[13]), array_fill(0::real, ARRAY[13]));
SELECT inner_product(array_fill(0.5::real, ARRAY[16000]), array_fill(2::real, ARRAY[16000]));
-- NULL arguments give NULL (STRICT).
SELECT l2_distance(NULL::real[], '{1}') IS NULL;

-- Cosine of a zero vector has no direction: NaN, as pgvector.
SELECT '{0,0}'::real[] <=> '{1,2}'::real[] AS zero_left, '{1,2}'::real[] <=> '{0,0}'::real[] AS zero_right;

-- Bad input.
SELECT '{1,2}'::real[] <-> '{1,2,3}'::real[];
SELECT cosine_distance('{1,2,3}'::real[], '{1,2}');
SELECT '{{1,2},{3,4}}'::real[] <-> '{1,2}'::real[];
SELECT '{1,NULL}'::real[] <#> '{1,2}'::real[];
SELECT '{1,2}'::real[] <=> '{NaN,2}'::real[];
SELECT '{1,Infinity}'::real[] <-> '{1,2}'::real[];
SELECT '{1,2}'::real[] <-> '{-Infinity,2}'::real[];
SELECT '{}'::real[] <-> '{}'::real[];
\set VERBOSITY sqlstate
SELECT '{1,2}'::real[] <-> '{1,2,3}'::real[];
SELECT '{1,NULL}'::real[] <#> '{1,2}'::real[];
\set VERBOSITY default

-- ORDER BY ... LIMIT with a sequential scan.
CREATE TABLE points (id int PRIMARY KEY, v real[]);
INSERT INTO points VALUES (1, '{0,0}'), (2, '{1,0}'), (3, '{0,2}'), (4, '{3,3}'), (5, '{-1,-1}'), (6, NULL);
EXPLAIN (COSTS OFF) SELECT id FROM points ORDER BY v <-> '{0.9,0.1}' LIMIT 3;
SELECT id, round((v <-> '{0.9,0.1}')::numeric, 4) AS d FROM points ORDER BY v <-> '{0.9,0.1}' LIMIT 3;
SELECT id FROM points ORDER BY v <#> '{1,1}' LIMIT 2;
SELECT id FROM points WHERE id <> 1 ORDER BY v <=> '{1,1}', id LIMIT 3;
DROP TABLE points;
