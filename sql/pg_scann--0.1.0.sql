-- pg_scann 0.1.0: distance operators on real[] and double precision[], and the scann index access method.
\echo Use "CREATE EXTENSION pg_scann" to load this file. \quit

-- Distances.  All take two real[] vectors of the same length (one-dimensional, no NULL,
-- NaN or infinite elements) and raise an error otherwise.
CREATE FUNCTION l2_distance(real[], real[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_l2_distance'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION l2_distance(real[], real[]) IS 'Euclidean distance';

CREATE FUNCTION l2_squared_distance(real[], real[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_l2_squared_distance'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION l2_squared_distance(real[], real[]) IS 'squared Euclidean distance';

CREATE FUNCTION inner_product(real[], real[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_inner_product'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION inner_product(real[], real[]) IS 'inner (dot) product';

CREATE FUNCTION negative_inner_product(real[], real[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_negative_inner_product'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION negative_inner_product(real[], real[]) IS 'negative inner product: smaller is more similar';

CREATE FUNCTION cosine_distance(real[], real[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_cosine_distance'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cosine_distance(real[], real[]) IS '1 - cosine similarity; NaN when either vector is all zeros';

CREATE OPERATOR <-> (
    LEFTARG = real[], RIGHTARG = real[], FUNCTION = l2_distance, COMMUTATOR = '<->'
);
COMMENT ON OPERATOR <->(real[], real[]) IS 'Euclidean distance';

CREATE OPERATOR <#> (
    LEFTARG = real[], RIGHTARG = real[], FUNCTION = negative_inner_product, COMMUTATOR = '<#>'
);
COMMENT ON OPERATOR <#>(real[], real[]) IS 'negative inner product';

CREATE OPERATOR <=> (
    LEFTARG = real[], RIGHTARG = real[], FUNCTION = cosine_distance, COMMUTATOR = '<=>'
);
COMMENT ON OPERATOR <=>(real[], real[]) IS 'cosine distance';

-- The scann access method: lists (IVF's k-means partitions, or annoy's tree leaves) of 4-bit
-- product-quantization codes scanned with FastScan, then exact re-ranking from the table.  See README.md for options and GUCs.
CREATE FUNCTION scann_handler(internal) RETURNS index_am_handler
    AS 'MODULE_PATHNAME' LANGUAGE C;

CREATE ACCESS METHOD scann TYPE INDEX HANDLER scann_handler;
COMMENT ON ACCESS METHOD scann IS 'approximate nearest-neighbour index (ScaNN recipe)';

-- The metric an operator class's distance stands for, named by its support function 1: the
-- index trains and scores its codes for that metric.  A scann operator class on any type
-- orders by one distance operator on that type (strategy 1), names its metric with one of
-- these, and, unless the type is real[], gives the conversion of its values to real[] as
-- support function 2 (a function (type) -> real[], or a cast function (type, integer,
-- boolean) -> real[]).  The ORDER BY values the index returns are the operator's own.
CREATE FUNCTION scann_l2_metric() RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'l2' $$;
CREATE FUNCTION scann_ip_metric() RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'ip' $$;
CREATE FUNCTION scann_cosine_metric() RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'cosine' $$;

-- One operator class per distance on real[], which the index reads in place.
CREATE OPERATOR CLASS l2_ops DEFAULT FOR TYPE real[] USING scann AS
    OPERATOR 1 <-> (real[], real[]) FOR ORDER BY float_ops,
    FUNCTION 1 scann_l2_metric();

CREATE OPERATOR CLASS ip_ops FOR TYPE real[] USING scann AS
    OPERATOR 1 <#> (real[], real[]) FOR ORDER BY float_ops,
    FUNCTION 1 scann_ip_metric();

CREATE OPERATOR CLASS cosine_ops FOR TYPE real[] USING scann AS
    OPERATOR 1 <=> (real[], real[]) FOR ORDER BY float_ops,
    FUNCTION 1 scann_cosine_metric();

-- What a scann index holds, read from its pages: the variant and the options frozen at build
-- (annoy's trees and the table rows per leaf it aimed at; null for ivf), the rows it was built
-- on, the slots holding a row (dead rows included until VACUUM removes them; annoy files a row
-- in one leaf of every tree), the free slots, the smallest and largest list (annoy: leaf) and
-- the empty ones, the index's pages, what re-ranks candidates, and the recall calibration.
-- Needs SELECT on the indexed table.
CREATE FUNCTION scann_index_info(index regclass,
    OUT trained boolean, OUT variant text, OUT metric text, OUT dims integer,
    OUT lists integer, OUT trees integer, OUT leaf_size integer,
    OUT dims_per_subspace integer, OUT sample_rows integer, OUT build_rows float8,
    OUT entries bigint, OUT free_slots bigint, OUT smallest_list bigint,
    OUT largest_list bigint, OUT empty_lists bigint, OUT pages bigint,
    OUT rerank text, OUT calibration_knob integer[], OUT calibration_recall real[],
    OUT calibrated_at timestamptz, OUT calibration_stale boolean, OUT calibrated_with text,
    -- vamana's graph (null for the other variants): out-degree bound, entry point (a node
    -- id), nodes of deleted rows not yet freed by VACUUM, out-degrees of the live nodes,
    -- edges from a live node to a node that is not live (0 after VACUUM), live nodes no path
    -- from the entry point reaches
    OUT graph_degree integer, OUT entry_point bigint, OUT deleted_nodes bigint,
    OUT min_degree integer, OUT mean_degree float8, OUT max_degree integer,
    OUT bad_edges bigint, OUT unreachable_nodes bigint)
    AS 'MODULE_PATHNAME', 'scann_index_info'
    LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

-- Measures the recall of a scann index again (as CREATE INDEX did): how recall@10 rises with
-- the query knob, which scans use for scann.target_recall.  With `queries` NULL, 100 random
-- rows of the table are the queries; otherwise `queries` is a query returning one vector per
-- row (the indexed column's type; its first 100 rows are used), for workloads whose queries
-- do not look like the rows.  WAL-logged; needs ownership of the table.
CREATE FUNCTION scann_recalibrate(index regclass, queries text DEFAULT NULL) RETURNS void
    AS 'MODULE_PATHNAME', 'scann_recalibrate'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Recall@k of an index for the caller's own queries at the current settings: `queries` is a
-- query returning one vector per row; each is searched through the index and by an exact
-- scan of the table, and a row of the index's answer counts when its distance is within the
-- exact k-th distance (ties count).  Errors when PostgreSQL does not choose this index.
CREATE FUNCTION scann_measure_recall(index regclass, queries text, k integer DEFAULT 10)
RETURNS float8 LANGUAGE plpgsql VOLATILE STRICT AS $$
DECLARE
  tbl regclass;
  col text;
  op text;
  q record;
  line text;
  used boolean := false;
  kth float8;
  found_rows bigint;
  hits bigint := 0;
  total bigint := 0;
  saved_seqscan text := current_setting('enable_seqscan');
  saved_indexscan text := current_setting('enable_indexscan');
BEGIN
  IF k < 1 THEN
    RAISE EXCEPTION 'k must be at least 1, got %', k USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT i.indrelid::regclass, pg_get_indexdef(i.indexrelid, 1, true), o.amopopr::regoperator
    INTO tbl, col, op
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
    JOIN pg_amop o ON o.amopfamily = (SELECT opcfamily FROM pg_opclass WHERE oid = i.indclass[0])
                  AND o.amopstrategy = 1
   WHERE i.indexrelid = index AND a.amname = 'scann';
  IF tbl IS NULL THEN
    RAISE EXCEPTION '"%" is not a scann index', index USING ERRCODE = 'wrong_object_type';
  END IF;
  op := split_part(op::text, '(', 1);
  FOR q IN EXECUTE format('SELECT v FROM (%s) s(v)', queries) LOOP
    PERFORM set_config('enable_seqscan', 'on', true);
    PERFORM set_config('enable_indexscan', 'off', true);
    EXECUTE format('SELECT max(d) FROM (SELECT %s %s $1 AS d FROM %s ORDER BY 1 LIMIT %s) s',
                   col, op, tbl, k) INTO kth USING q.v;
    PERFORM set_config('enable_seqscan', 'off', true);
    PERFORM set_config('enable_indexscan', 'on', true);
    IF NOT used THEN
      FOR line IN EXECUTE format('EXPLAIN (COSTS OFF) SELECT 1 FROM %s ORDER BY %s %s $1 LIMIT %s',
                                 tbl, col, op, k) USING q.v LOOP
        used := used OR line LIKE format('%%Index Scan using %s %%', index::text);
      END LOOP;
      IF NOT used THEN
        RAISE EXCEPTION 'PostgreSQL does not choose index "%" for these queries', index
          USING ERRCODE = 'object_not_in_prerequisite_state',
                HINT = 'Another index on the same column may be cheaper; measure with it dropped (in a transaction you roll back).';
      END IF;
    END IF;
    EXECUTE format('SELECT count(*) FILTER (WHERE d <= $2 + 1e-6 * abs($2) + 1e-9) FROM '
                   '(SELECT %s %s $1 AS d FROM %s ORDER BY %s %s $1 LIMIT %s) s',
                   col, op, tbl, col, op, k) INTO found_rows USING q.v, kth;
    hits := hits + found_rows;
    total := total + k;
  END LOOP;
  PERFORM set_config('enable_seqscan', saved_seqscan, true);
  PERFORM set_config('enable_indexscan', saved_indexscan, true);
  IF total = 0 THEN
    RETURN NULL;
  END IF;
  RETURN hits::float8 / total;
END $$;

-- Diagnostics: raises an error of the given kind inside guarded C++ code (see
-- src/pg/guard.h); used by the regression tests of the C++/PostgreSQL boundary.
CREATE FUNCTION scann_guard_selftest(mode text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'scann_guard_selftest'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

-- The k-nearest-neighbour query of a partitioned table whose partitions may live on other
-- servers (postgres_fdw foreign tables): one branch per leaf partition, each asking for
-- its own k nearest rows, grouped by distance so that postgres_fdw ships the distance
-- expression, the ORDER BY and the LIMIT to the shard and brings back only distances and
-- ids (PostgreSQL 15 ships a computed output column only inside a grouping); the branches
-- form one Append that runs foreign scans asynchronously, and the coordinator merges
-- k rows per partition.  $1 is the query vector; filter, if given, is SQL added to every
-- branch as WHERE (filter).  See README.md, "Scaling out".
CREATE FUNCTION scann_knn_query(partitioned regclass, vector_column name, k integer,
    operator text DEFAULT '<->', id_column name DEFAULT 'id', filter text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    vec_type oid;
    vec_typmod integer;
    op_name text;
    branches text[];
    leaf record;
BEGIN
    IF partitioned IS NULL OR vector_column IS NULL OR k IS NULL OR operator IS NULL
       OR id_column IS NULL THEN
        RAISE EXCEPTION 'scann_knn_query: only filter may be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF k < 1 THEN
        RAISE EXCEPTION 'scann_knn_query: k must be at least 1, got %', k
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT a.atttypid, a.atttypmod INTO vec_type, vec_typmod FROM pg_attribute a
     WHERE a.attrelid = partitioned AND a.attname = vector_column AND NOT a.attisdropped
       AND a.attnum > 0;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'scann_knn_query: column "%" of "%" does not exist',
            vector_column, partitioned USING ERRCODE = 'undefined_column';
    END IF;
    PERFORM 1 FROM pg_attribute a WHERE a.attrelid = partitioned AND a.attname = id_column
       AND NOT a.attisdropped AND a.attnum > 0;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'scann_knn_query: column "%" of "%" does not exist',
            id_column, partitioned USING ERRCODE = 'undefined_column';
    END IF;
    SELECT format('OPERATOR(%I.%s)', n.nspname, o.oprname) INTO op_name
      FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace
     WHERE o.oprname = operator AND o.oprleft = vec_type AND o.oprright = vec_type;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'scann_knn_query: operator % does not exist for %', operator,
            format_type(vec_type, NULL) USING ERRCODE = 'undefined_function';
    END IF;
    FOR leaf IN
        SELECT c.oid, c.relkind, format('%I.%I', n.nspname, c.relname) AS name
          FROM (SELECT relid, level, isleaf FROM pg_partition_tree(partitioned)
                UNION ALL  -- a table that is not partitioned is its own only leaf
                SELECT partitioned, 0, true
                 WHERE NOT EXISTS (SELECT FROM pg_partition_tree(partitioned))) t
          JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE t.isleaf AND c.relkind IN ('r', 'f') ORDER BY t.level, c.relname
    LOOP
        branches := branches || format(
            '    (SELECT %I %s $1::%s AS distance, array_agg(%I) AS ids FROM ONLY %s%s'
            || E'\n      GROUP BY 1 ORDER BY 1 LIMIT %s)',
            vector_column, op_name, format_type(vec_type, vec_typmod), id_column,
            leaf.name, CASE WHEN filter IS NULL THEN '' ELSE format(' WHERE (%s)', filter) END, k);
        IF leaf.relkind = 'f' THEN
            PERFORM @extschema@.scann_check_foreign_partition(leaf.oid);
        END IF;
    END LOOP;
    IF branches IS NULL THEN
        RAISE EXCEPTION 'scann_knn_query: "%" is not a table with rows to search', partitioned
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN format(E'WITH per_partition AS MATERIALIZED (\n%s)\n'
        || E'SELECT ids.%I, per_partition.distance\n'
        || E'  FROM per_partition, unnest(per_partition.ids) AS ids(%I)\n'
        || E' ORDER BY per_partition.distance, ids.%I LIMIT %s',
        array_to_string(branches, E'\n  UNION ALL\n'), id_column, id_column, id_column, k);
END
$$;
COMMENT ON FUNCTION scann_knn_query(regclass, name, integer, text, name, text) IS
    'SQL of a k-NN query over every partition of a (sharded) table; $1 = the query vector';

-- Warns about a postgres_fdw partition whose options keep scann_knn_query's plan from
-- pushing the work to its server: the operator must be shippable (pg_scann in the
-- server's extensions), remote estimates let PostgreSQL 15 choose the remote grouping, a
-- per-row cost of 0.2 keeps a plan that fetches every row from looking cheap, and
-- async_capable lets the shards run at the same time.
CREATE FUNCTION scann_check_foreign_partition(partition regclass) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    server_name name;
    opts jsonb;
BEGIN
    SELECT s.srvname INTO server_name
      FROM pg_foreign_table f JOIN pg_foreign_server s ON s.oid = f.ftserver
     WHERE f.ftrelid = partition;
    IF NOT FOUND THEN
        RAISE EXCEPTION '"%" is not a foreign table', partition USING ERRCODE = 'wrong_object_type';
    END IF;
    -- A table's option overrides its server's: jsonb keeps the last value of a key.
    SELECT coalesce(jsonb_object_agg(o.option_name, o.option_value ORDER BY o.level), '{}')
      INTO opts
      FROM pg_foreign_table f JOIN pg_foreign_server s ON s.oid = f.ftserver,
           LATERAL (SELECT 1 AS level, * FROM pg_options_to_table(s.srvoptions)
                    UNION ALL SELECT 2, * FROM pg_options_to_table(f.ftoptions)) o
     WHERE f.ftrelid = partition;
    IF NOT coalesce('pg_scann' = ANY (string_to_array(replace(opts->>'extensions', ' ', ''), ',')),
                    false) THEN
        RAISE WARNING 'foreign partition % cannot ship the distance operator to server %',
            partition, server_name
            USING HINT = format('ALTER SERVER %I OPTIONS (ADD extensions ''pg_scann'')', server_name);
    END IF;
    IF NOT coalesce((opts->>'use_remote_estimate')::boolean, false) THEN
        RAISE WARNING 'foreign partition % does not use remote estimates: its rows would come back with their vectors',
            partition
            USING HINT = format('ALTER SERVER %I OPTIONS (ADD use_remote_estimate ''true'')', server_name);
    END IF;
    IF coalesce((opts->>'fdw_tuple_cost')::float8, 0.01) < 0.2 THEN
        RAISE WARNING 'foreign partition % charges less than 0.2 per row fetched: a plan fetching all its rows with their vectors may look cheapest',
            partition
            USING HINT = format('ALTER SERVER %I OPTIONS (ADD fdw_tuple_cost ''0.2''), PostgreSQL 17''s default', server_name);
    END IF;
    IF NOT coalesce((opts->>'async_capable')::boolean, false) THEN
        RAISE WARNING 'foreign partition % is not async_capable: it would be scanned after the other partitions, not with them',
            partition
            USING HINT = format('ALTER SERVER %I OPTIONS (ADD async_capable ''true'')', server_name);
    END IF;
END
$$;

-- double precision[] vectors: the same functions and operators as on real[], computed after
-- rounding every value to real (a value beyond real's range is an error), and operator
-- classes that store them as real[].
CREATE FUNCTION l2_distance(float8[], float8[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_l2_distance'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION l2_distance(float8[], float8[]) IS 'Euclidean distance';

CREATE FUNCTION l2_squared_distance(float8[], float8[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_l2_squared_distance'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION l2_squared_distance(float8[], float8[]) IS 'squared Euclidean distance';

CREATE FUNCTION inner_product(float8[], float8[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_inner_product'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION inner_product(float8[], float8[]) IS 'inner (dot) product';

CREATE FUNCTION negative_inner_product(float8[], float8[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_negative_inner_product'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION negative_inner_product(float8[], float8[]) IS 'negative inner product: smaller is more similar';

CREATE FUNCTION cosine_distance(float8[], float8[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_cosine_distance'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cosine_distance(float8[], float8[]) IS '1 - cosine similarity; NaN when either vector is all zeros';

CREATE OPERATOR <-> (
    LEFTARG = float8[], RIGHTARG = float8[], FUNCTION = l2_distance, COMMUTATOR = '<->'
);
COMMENT ON OPERATOR <->(float8[], float8[]) IS 'Euclidean distance';

CREATE OPERATOR <#> (
    LEFTARG = float8[], RIGHTARG = float8[], FUNCTION = negative_inner_product, COMMUTATOR = '<#>'
);
COMMENT ON OPERATOR <#>(float8[], float8[]) IS 'negative inner product';

CREATE OPERATOR <=> (
    LEFTARG = float8[], RIGHTARG = float8[], FUNCTION = cosine_distance, COMMUTATOR = '<=>'
);
COMMENT ON OPERATOR <=>(float8[], float8[]) IS 'cosine distance';

-- The double precision[] vector as real[], with the operators' checks (support function 2 of
-- the operator classes below).
CREATE FUNCTION scann_to_real(float8[]) RETURNS real[]
    AS 'MODULE_PATHNAME', 'scann_to_real'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR CLASS float8_l2_ops DEFAULT FOR TYPE float8[] USING scann AS
    OPERATOR 1 <-> (float8[], float8[]) FOR ORDER BY float_ops,
    FUNCTION 1 scann_l2_metric(),
    FUNCTION 2 scann_to_real(float8[]);

CREATE OPERATOR CLASS float8_ip_ops FOR TYPE float8[] USING scann AS
    OPERATOR 1 <#> (float8[], float8[]) FOR ORDER BY float_ops,
    FUNCTION 1 scann_ip_metric(),
    FUNCTION 2 scann_to_real(float8[]);

CREATE OPERATOR CLASS float8_cosine_ops FOR TYPE float8[] USING scann AS
    OPERATOR 1 <=> (float8[], float8[]) FOR ORDER BY float_ops,
    FUNCTION 1 scann_cosine_metric(),
    FUNCTION 2 scann_to_real(float8[]);
